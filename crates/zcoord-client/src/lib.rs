//! zcoord's Rust client side: what a Rust app needs to talk to a zcoord primary, on the protocol
//! crate and libzmq only.
//!
//! - [`discovery`]: the discovery file clients find the server by, and the per-user directories.
//! - [`workspace`]: which workspace's server a client uses: the walk-up rule.
//! - [`plain`]: the PLAIN credentials a tcp client presents.
//! - [`client`]: a blocking JSON-RPC client and a subscriber that waits for its welcome.
//! - [`liveness`]: whether the primary a subscriber follows is still there (heartbeats, pid).
//! - [`mirror`]: the mirror a secondary embeds: a replica kept by the Clone pattern.

pub mod client;
pub mod discovery;
pub mod liveness;
pub mod mirror;
pub mod plain;
pub mod workspace;
