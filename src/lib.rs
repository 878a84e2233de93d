//! zcoord: the primary instance of an agent application, over ZeroMQ.
//!
//! - [`protocol`]: wire types (JSON-RPC envelope, errors, input limits, methods, events). No I/O.
//!   The `zcoord-protocol` crate, re-exported under this name.
//! - [`core`]: the state machine that owns sessions, messages and turns and decides every event.
//! - [`model`]: model providers behind one trait (the embedded `echo`, OpenAI-compatible servers).
//! - [`tools`]: the built-in tools a model may call.
//! - [`transport`]: the libzmq ROUTER/PUB thread and its bridge to tokio. No business logic.
//! - [`app`]: wiring: the core actor, model tasks, heartbeat, shutdown order.
//! - [`store`]: persistence behind one trait (SQLite, memory) and the writer thread.
//! - [`discovery`]: the discovery file clients find the server by (from `zcoord-client`).
//! - [`workspace`]: the walk-up rule clients find their workspace's server by (from
//!   `zcoord-client`).
//! - [`election`]: the data-directory lock that decides who is primary; standbys wait on it.
//! - [`client`]: a small blocking client used by the CLI and tests (from `zcoord-client`).
//! - [`liveness`]: whether the primary a subscriber follows is still there (from `zcoord-client`).
//! - [`mirror`]: the mirror client a secondary embeds: a replica kept by the Clone pattern (from
//!   `zcoord-client`).
//! - [`cli`]: one file per subcommand.
//! - [`harness`]: the request path without sockets, for the fuzzer and its corpus replay test.

pub mod app;
pub mod cli;
pub mod config;
pub mod core;
pub mod election;
pub mod harness;
pub mod model;
pub mod store;
pub mod tools;
pub mod transport;

// The two library crates under the names the server has always used for them, so that
// `crate::protocol::…` and `zcoord::client::…` read the same in the server, its tests and apps.
pub use zcoord_client::{client, discovery, liveness, mirror, workspace};
pub use zcoord_protocol as protocol;
