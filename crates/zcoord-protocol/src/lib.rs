//! Wire types only: the JSON-RPC envelope, error codes, method params and results, event payloads
//! and topics. No tokio, no zmq, no state. Mirrors proto-docs/PROTOCOL.md one to one.

pub mod clients;
pub mod duration;
pub mod errors;
pub mod events;
pub mod hitl;
pub mod ids;
pub mod jsonrpc;
pub mod limits;
pub mod methods;
pub mod models;
pub mod schema;
pub mod suggest;
mod token_encoder;
pub mod tool_schema;
pub mod types;
pub mod usage;
pub mod welcome;

#[cfg(test)]
mod golden;

/// Bumped on any incompatible change to methods, payloads or framing. 2: the welcome is opt-in
/// (`instance.welcome/<token>`) and takes no `seq` (PROTOCOL §13).
pub const PROTOCOL_VERSION: u32 = 2;
