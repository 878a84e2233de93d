//! zcoord: the primary instance of an agent application, over ZeroMQ.
//!
//! - [`protocol`]: wire types (JSON-RPC envelope, errors, input limits, methods, events). No I/O.
//! - [`core`]: the state machine that owns sessions, messages and turns and decides every event.
//! - [`model`]: model providers behind one trait (the embedded `echo`, OpenAI-compatible servers).
//! - [`tools`]: the built-in tools a model may call.
//! - [`transport`]: the libzmq ROUTER/PUB thread and its bridge to tokio. No business logic.
//! - [`app`]: wiring: the core actor, model tasks, heartbeat, shutdown order.
//! - [`store`]: persistence behind one trait (SQLite, memory) and the writer thread.
//! - [`discovery`]: the discovery file clients find the server by.
//! - [`election`]: the data-directory lock that decides who is primary; standbys wait on it.
//! - [`client`]: a small blocking client used by the CLI and tests.
//! - [`mirror`]: the mirror client a secondary embeds: a replica kept by the Clone pattern.
//! - [`cli`]: one file per subcommand.
//! - [`harness`]: the request path without sockets, for the fuzzer and its corpus replay test.

pub mod app;
pub mod cli;
pub mod client;
pub mod config;
pub mod core;
pub mod discovery;
pub mod election;
pub mod harness;
pub mod mirror;
pub mod model;
pub mod protocol;
pub mod store;
pub mod tools;
pub mod transport;
