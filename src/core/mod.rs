//! The core state machine: inputs in, effects out. No I/O, no clock reads, no tokio or zmq types;
//! deterministic under test with [`ids::Sequential`] and hand-picked times.

pub mod answer;
pub mod client_tools;
mod dispatch;
pub mod effects;
pub mod error;
pub mod hitl;
pub mod ids;
mod instance;
pub mod models;
pub mod peers;
pub mod persist;
pub mod policy;
pub mod queue;
pub mod read;
pub mod replay;
mod restore;
mod send;
pub mod session;
mod session_calls;
pub mod sessions;
pub mod state;
mod streaming;
mod tool_args;
pub mod turn;

#[cfg(test)]
mod bounds_tests;
#[cfg(test)]
mod clients_tests;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod stream_tests;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod welcome_replay_tests;

#[cfg(test)]
mod session_limit_tests;

#[cfg(test)]
mod proptests;

#[cfg(test)]
mod queue_tests;

pub use effects::{Effect, HistoryEntry, ModelEvent, TurnEffect, TurnStart, Verdict};
pub use error::CoreError;
pub use state::{CallContext, Core, CoreConfig, InstanceMeta};
