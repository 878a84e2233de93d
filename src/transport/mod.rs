//! ZeroMQ transport: the ROUTER (JSON-RPC in, replies out) and the PUB (events out). libzmq
//! sockets are not thread-safe, so each is shared behind a lock: a reply or an event goes to
//! libzmq from the thread that releases it (`replier.rs`, `publisher.rs`), while one dedicated
//! thread reads requests and subscriptions (`server.rs`). Frames become protocol types here and
//! nothing more: no business logic. Requests reach tokio through a bounded queue; nothing that
//! sends ever blocks.

pub mod auth;
mod connections;
pub mod curve;
pub mod fdlimit;
pub mod framing;
mod held;
pub mod ipc;
mod monitor;
pub mod outbound;
pub mod pace;
mod pending;
mod publisher;
mod replier;
mod server;
mod shared;
pub mod stats;
pub mod triage;

use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::mpsc;

pub use crate::protocol::jsonrpc::Calls;
pub use framing::Route;
pub use outbound::{Outbound, OutboundSender};
pub use stats::Stats;

use crate::protocol::ids::InstanceId;
use crate::protocol::limits::MAX_SUBSCRIPTION_MESSAGE_BYTES;
use auth::{TcpAuth, ZapHandler};
use connections::Connections;
use outbound::Signals;
use pending::Pending;
pub use pending::Slot;
use publisher::Publisher;
use replier::Replier;
use server::TransportThread;

/// Socket options and queue sizes.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub rpc_endpoint: String,
    pub pub_endpoint: String,
    /// Largest request frame answered normally; larger ones get `message_too_large`.
    pub max_message_bytes: usize,
    /// Per-subscriber PUB queue, in messages; beyond it that subscriber misses messages.
    pub pub_sndhwm: i32,
    /// Per-peer ROUTER queues, in messages.
    pub router_hwm: i32,
    /// ZMTP heartbeat interval and timeout, in milliseconds (dead peers are dropped).
    pub zmtp_heartbeat_ivl_ms: i32,
    pub zmtp_heartbeat_timeout_ms: i32,
    /// How long a peer may take to complete its handshake (greeting, PLAIN, ZAP) before it is
    /// dropped, in milliseconds (`ZMQ_HANDSHAKE_IVL`; libzmq's default is 30 s).
    pub handshake_ivl_ms: i32,
    /// Connections each socket holds at once; more are shut down as they are accepted. Lowered
    /// at start when the descriptor limit cannot hold both sockets' (see `fdlimit.rs`).
    pub max_connections: usize,
    /// How long queued events may still go out after close (the PUB drain bound), in ms.
    pub pub_linger_ms: i32,
    /// Requests waiting for the core; beyond it requests get `server_busy`.
    pub inbound_queue: usize,
    /// Requests one peer may have waiting for the core; beyond it, `too_many_pending`. Keep it
    /// at or below `router_hwm` (64 against 1,000 by default): above it, a client that sends
    /// more than `router_hwm` requests before reading any answer can have answers dropped at
    /// its full send queue (counted in `replies_dropped`, PROTOCOL §2) instead of refused.
    pub per_peer_pending: usize,
    /// Bytes one peer's requests (decoded) and unsent replies may hold; beyond it,
    /// `too_many_pending`.
    pub per_peer_bytes: usize,
    /// Bytes all peers' requests and unsent replies may hold together; beyond it, `server_busy`.
    pub pending_bytes: usize,
    /// Bytes of events libzmq may hold for subscribers that have not been sent them; beyond it
    /// the subscriber furthest behind is disconnected, one a second at most. Model output
    /// waits above a quarter of it (`pace.rs`).
    pub pub_held_bytes: usize,
    /// How long model output may wait for subscribers to drain before the one furthest behind
    /// is disconnected.
    pub pub_stalled_after: std::time::Duration,
    /// When set and either endpoint is tcp, both sockets require this mechanism (PLAIN with a
    /// secret, or CURVE with authorised keys), checked by the ZAP handler. `None` is no
    /// authentication (ipc, or an embedder's explicit choice; `zcoord serve` always sets one
    /// for tcp).
    pub auth: Option<TcpAuth>,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            rpc_endpoint: "tcp://127.0.0.1:0".into(),
            pub_endpoint: "tcp://127.0.0.1:0".into(),
            max_message_bytes: 1 << 20,
            pub_sndhwm: 10_000,
            router_hwm: 1_000,
            zmtp_heartbeat_ivl_ms: 5_000,
            zmtp_heartbeat_timeout_ms: 15_000,
            handshake_ivl_ms: 5_000,
            max_connections: 1_024,
            pub_linger_ms: 1_000,
            inbound_queue: 1_024,
            per_peer_pending: 64,
            per_peer_bytes: 32 << 20,
            pending_bytes: 128 << 20,
            pub_held_bytes: 64 << 20,
            pub_stalled_after: pace::STALLED_AFTER,
            auth: None,
        }
    }
}

/// Requests decoded by the transport, for the core.
#[derive(Debug)]
pub struct Inbound {
    pub route: Route,
    pub calls: Calls,
    /// The request's place in its peer's pending count; given back when this is dropped.
    pub slot: Option<Slot>,
}

/// What the transport hands the core: decoded requests. (Subscriptions it answers itself, with
/// `instance.welcome/<token>`: see `server.rs`.)
#[derive(Debug)]
pub struct Inputs {
    pub requests: mpsc::Receiver<Inbound>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot bind {endpoint}: {source}")]
    Bind {
        endpoint: String,
        source: zmq::Error,
    },
    #[error(transparent)]
    Ipc(#[from] ipc::IpcError),
    #[error("zmq socket setup failed: {0}")]
    Setup(#[from] zmq::Error),
    #[error("cannot start the transport thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// The running transport.
pub struct Transport {
    /// The endpoints as bound (a `tcp://…:0` request becomes the real port).
    pub rpc_endpoint: String,
    pub pub_endpoint: String,
    pub outbound: Arc<OutboundSender>,
    pub stats: Arc<Stats>,
    /// Whether peers must authenticate (PLAIN or CURVE over tcp).
    pub authenticated: bool,
    thread: Option<JoinHandle<()>>,
    zap: Option<ZapHandler>,
    context: Option<zmq::Context>,
}

impl Transport {
    /// Binds both sockets (errors come back here, before anything runs) and starts the thread.
    /// Returns the transport and the receivers of decoded requests and new subscriptions.
    /// `instance_id` stamps the welcomes the transport thread publishes.
    pub fn start(
        config: &TransportConfig,
        instance_id: InstanceId,
    ) -> Result<(Transport, Inputs), TransportError> {
        let context = zmq::Context::new();
        let tcp = is_tcp(&config.rpc_endpoint) || is_tcp(&config.pub_endpoint);
        // The handler must be bound before a socket that asks it accepts its first peer.
        let auth = config.auth.as_ref().filter(|_| tcp);
        let zap = auth
            .map(|a| ZapHandler::start(&context, a.clone()))
            .transpose()?;
        // The hard limit libzmq enforces by disconnecting the peer; between `max_message_bytes` and
        // this, the peer gets a `message_too_large` reply instead.
        let hard_limit = (config.max_message_bytes as i64)
            .saturating_mul(2)
            .max(64 * 1024);

        let router = context.socket(zmq::ROUTER)?;
        router.set_router_mandatory(true)?;
        router.set_maxmsgsize(hard_limit)?;
        router.set_sndhwm(config.router_hwm)?;
        router.set_rcvhwm(config.router_hwm)?;
        router.set_linger(0)?;
        set_heartbeats(&router, config)?;
        if let Some(auth) = auth {
            auth.require(&router)?;
        }

        // XPUB rather than PUB: it also hands us each subscription as it becomes live, which we
        // answer with `instance.welcome` when it asks for one (verbose: repeats too).
        let publisher = context.socket(zmq::XPUB)?;
        publisher.set_xpub_verbose(true)?;
        publisher.set_sndhwm(config.pub_sndhwm)?;
        publisher.set_linger(config.pub_linger_ms)?;
        // Subscribers only send subscriptions (and handshake commands), and a prefix longer
        // than any key matches nothing while costing libzmq's subscription trie ~33 bytes a
        // byte: a larger message disconnects its subscriber (see the constant for the sizes).
        publisher.set_maxmsgsize(MAX_SUBSCRIPTION_MESSAGE_BYTES as i64)?;
        set_heartbeats(&publisher, config)?;
        if let Some(auth) = auth {
            auth.require(&publisher)?;
        }

        // Both monitors are attached before either socket binds, so no connection goes uncounted.
        let stats = Arc::new(Stats::default());
        let hwm = u64::try_from(config.pub_sndhwm).unwrap_or(0);
        stats.pace.configure(config.pub_held_bytes as u64, hwm);
        let limit = connection_limit(config.max_connections);
        let connections = Connections::watch(&context, &router, &publisher, limit, stats.clone())?;
        bind(&router, &config.rpc_endpoint)?;
        bind(&publisher, &config.pub_endpoint)?;

        let wake_addr = format!("inproc://zcoord-wake-{}", uuid::Uuid::now_v7());
        let wake = context.socket(zmq::PAIR)?;
        wake.bind(&wake_addr)?;
        let waker = context.socket(zmq::PAIR)?;
        waker.set_linger(0)?;
        waker.connect(&wake_addr)?;

        let rpc_endpoint = last_endpoint(&router)?;
        let pub_endpoint = last_endpoint(&publisher)?;

        let (in_tx, in_rx) = mpsc::channel(config.inbound_queue);
        let signals = Arc::new(Signals::default());
        let publisher = Arc::new(Publisher::new(publisher, stats.clone(), instance_id)?);
        let replier = Arc::new(Replier::new(router, stats.clone())?);
        let server = TransportThread {
            replier: replier.clone(),
            publisher: publisher.clone(),
            wake,
            inbound: in_tx,
            signals: signals.clone(),
            stats: stats.clone(),
            max_message_bytes: config.max_message_bytes,
            pending: RefCell::new(Pending::new(pending::Limits {
                requests: config.per_peer_pending,
                peer_bytes: config.per_peer_bytes,
                total_bytes: config.pending_bytes,
            })),
            connections: RefCell::new(connections),
            pub_held_limit: config.pub_held_bytes,
            last_eviction: Cell::new(None),
            paused_since: Cell::new(None),
            stalled_after: config.pub_stalled_after,
            oversize_log: RefCell::new(auth::RefusalLog::default()),
        };
        let thread = std::thread::Builder::new()
            .name("zcoord-transport".into())
            .spawn(move || server.run())?;
        let outbound = Arc::new(OutboundSender::new(
            publisher,
            replier,
            config.pub_held_bytes as u64,
            waker,
            signals,
            stats.clone(),
        ));
        Ok((
            Transport {
                rpc_endpoint,
                pub_endpoint,
                outbound,
                stats,
                authenticated: zap.is_some(),
                thread: Some(thread),
                zap,
                context: Some(context),
            },
            Inputs { requests: in_rx },
        ))
    }

    /// Stop taking requests: new ones are answered `shutting_down` by the transport thread.
    pub fn drain(&self) {
        self.outbound.drain();
    }

    /// Closes the sockets and waits for queued events to leave (bounded by the PUB linger).
    /// Blocking: call it from a blocking context.
    pub fn close(mut self) {
        self.shut();
    }

    /// Stops the thread, then closes what the sockets depend on, in that order (the monitor
    /// readers and the ZAP handler must outlive the sockets they serve). Idempotent.
    fn shut(&mut self) {
        if let Some(t) = self.thread.take() {
            self.outbound.close();
            let _ = t.join();
        }
        // Closed by the thread as it ends; here too, should it have died first.
        self.outbound.close_sockets();
        if let Some(zap) = self.zap.take() {
            zap.stop();
        }
        // Terminating the context waits for the PUB's linger: this is the bounded drain.
        if let Some(ctx) = self.context.take() {
            drop(ctx);
        }
    }
}

/// A transport dropped without `close` (a start-up that failed after binding, a test) still
/// stops its thread and closes its sockets, instead of leaving the thread blocked in `poll`.
impl Drop for Transport {
    fn drop(&mut self) {
        self.shut();
    }
}

fn is_tcp(endpoint: &str) -> bool {
    endpoint.starts_with("tcp://")
}

/// `wanted`, or what fits the process's descriptor limit, with a warning when that is less.
fn connection_limit(wanted: usize) -> usize {
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let limit = fdlimit::per_socket(wanted as u64, soft);
    if limit < wanted as u64 {
        tracing::warn!(
            wanted,
            limit,
            descriptors = soft,
            reserve = fdlimit::RESERVE,
            "the descriptor limit cannot hold two sockets of --max-connections each plus the reserve and headroom: lowered the limit per socket (raise `ulimit -n` to allow more)"
        );
    }
    usize::try_from(limit).unwrap_or(wanted)
}

/// Peers that never finish their handshake (a raw tcp connection that sends nothing) are dropped
/// after `handshake_ivl_ms`, so they hold one of `max_connections` for that long at most.
fn set_heartbeats(sock: &zmq::Socket, config: &TransportConfig) -> Result<(), zmq::Error> {
    sock.set_handshake_ivl(config.handshake_ivl_ms)?;
    sock.set_heartbeat_ivl(config.zmtp_heartbeat_ivl_ms)?;
    sock.set_heartbeat_timeout(config.zmtp_heartbeat_timeout_ms)?;
    sock.set_heartbeat_ttl(config.zmtp_heartbeat_timeout_ms)?;
    Ok(())
}

fn bind(sock: &zmq::Socket, endpoint: &str) -> Result<(), TransportError> {
    // libzmq unlinks whatever is at an ipc path before binding: check it first.
    ipc::prepare(endpoint)?;
    sock.bind(endpoint).map_err(|source| TransportError::Bind {
        endpoint: endpoint.to_owned(),
        source,
    })
}

fn last_endpoint(sock: &zmq::Socket) -> Result<String, TransportError> {
    Ok(sock
        .get_last_endpoint()?
        .unwrap_or_else(|raw| String::from_utf8_lossy(&raw).into_owned()))
}
