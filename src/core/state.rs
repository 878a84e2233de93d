//! The core state machine's state: the `Core` and everything it owns (sessions, turns, the event
//! sequence and ring, requests, peers, claims), its configuration and the facts of its instance.
//! Synchronous, no I/O, no clock reads (time comes in as an argument), no randomness but the
//! injected id source. What it does is split by concept: `dispatch.rs` answers calls,
//! `send.rs`, `session_calls.rs`, `instance.rs`, `streaming.rs` (model events), `hitl.rs`,
//! `queue.rs`, `peers.rs` and `client_tools.rs` decide the events; `take_effects` drains them.

use std::collections::{HashMap, VecDeque};

use time::OffsetDateTime;

use super::client_tools::Claims;
use super::effects::Effect;
use super::hitl::Requests;
use super::ids::IdGen;
use super::models::ModelCatalog;
use super::peers::Peers;
use super::persist::SessionRecord;
use super::policy::ToolPolicy;
use super::queue::QueueLimits;
use super::replay::{EventRing, ReplayLimits};
use super::session::Session;
use super::sessions::Sessions;
use super::turn::Turn;
use crate::protocol::clients::Author;
use crate::protocol::events::EventEncoder;
use crate::protocol::ids::{InstanceId, MessageId, SessionId, TurnId};
use crate::protocol::limits::{
    DEFAULT_CLIENT_TIMEOUT_SECS, DEFAULT_HITL_TIMEOUT_SECS, DEFAULT_MAX_SESSIONS,
    DEFAULT_TOOL_CLAIM_TIMEOUT_SECS,
};
use crate::protocol::methods::{DropCounters, Endpoints, SendResult, TransportInfo};

/// Facts about this instance that never change while it runs.
#[derive(Debug, Clone)]
pub struct InstanceMeta {
    pub instance_id: InstanceId,
    pub started_at: OffsetDateTime,
    pub version: String,
    pub pid: u32,
    pub endpoints: Endpoints,
    pub model: String,
    /// Where state is kept, e.g. `sqlite:/path/zcoord.db` or `memory`.
    pub store: String,
}

#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// How many `message.send` `request_id`s are remembered (oldest forgotten first).
    pub idempotency_capacity: usize,
    /// A streaming reply is checkpointed to the store at most this often.
    pub checkpoint_interval: time::Duration,
    /// What the replay ring keeps for `events.replay`.
    pub replay: ReplayLimits,
    /// Sessions held at once; creating one more (explicitly or by `message.send`) is refused
    /// with `too_many_sessions`. Deleted sessions do not count.
    pub max_sessions: usize,
    /// The models by name and the default. Each says how many bytes of message content a
    /// turn of it is given (the newest messages; the newest always): its context window, so a
    /// long history is never read whole.
    pub models: ModelCatalog,
    /// Which tool calls run at once, wait for a person, or never run.
    pub tool_policy: ToolPolicy,
    /// A request unanswered this long is `expired`; `None`: never.
    pub hitl_timeout: Option<time::Duration>,
    /// The tools the server can run. A call of any other tool is not asked about: it runs, and
    /// running it says the tool is unknown.
    pub known_tools: std::collections::BTreeSet<String>,
    /// A client silent this long leaves (`client.left`, reason `timeout`).
    pub client_timeout: time::Duration,
    /// A client-run call nobody claims this long ends as an error.
    pub claim_timeout: time::Duration,
    /// How many messages, and bytes of them, may wait behind running turns.
    pub queue: QueueLimits,
    /// How often the app publishes `instance.heartbeat` (the core only reports it, in each
    /// heartbeat and in `instance.info`, so clients can tell a silent instance from a dead one).
    pub heartbeat_interval: std::time::Duration,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            idempotency_capacity: 10_000,
            checkpoint_interval: time::Duration::seconds(1),
            replay: ReplayLimits::default(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            models: ModelCatalog::default(),
            tool_policy: ToolPolicy::default(),
            hitl_timeout: Some(time::Duration::seconds(DEFAULT_HITL_TIMEOUT_SECS)),
            known_tools: crate::tools::default_names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            client_timeout: time::Duration::seconds(DEFAULT_CLIENT_TIMEOUT_SECS),
            claim_timeout: time::Duration::seconds(DEFAULT_TOOL_CLAIM_TIMEOUT_SECS),
            queue: QueueLimits::default(),
            heartbeat_interval: std::time::Duration::from_secs(5),
        }
    }
}

/// What a call sees of the world beyond the core: the time, the transport's counters, and the
/// socket it came from.
#[derive(Debug, Clone)]
pub struct CallContext {
    pub now: OffsetDateTime,
    /// The caller's socket (its ROUTER routing id, opaque): a client that said `client.hello`
    /// on it is the author of what it sends.
    pub peer: Vec<u8>,
    pub drops: DropCounters,
    pub transport: TransportInfo,
}

pub struct Core {
    pub(super) meta: InstanceMeta,
    pub(super) config: CoreConfig,
    pub(super) ids: Box<dyn IdGen>,
    /// `seq` of the last event decided; the first event is 1.
    pub(super) seq: u64,
    /// Keyed by id; v7 ids make this creation order.
    pub(super) sessions: Sessions,
    pub(super) active: Option<SessionId>,
    pub(super) turns: HashMap<TurnId, Turn>,
    /// `request_id` -> the answer it got, for idempotent `message.send`.
    pub(super) sent: HashMap<String, SendResult>,
    pub(super) sent_order: VecDeque<String>,
    pub(super) shutting_down: bool,
    /// Turns found running at start-up (left by a crash) and closed as aborted.
    pub(super) recovered_turns: u64,
    /// The primary this instance replaced, if it was promoted from standby.
    pub(super) promoted_from: Option<InstanceId>,
    pub(super) effects: Vec<Effect>,
    /// Recent events as published, for `events.replay`.
    pub(super) ring: EventRing,
    /// Reused buffers for encoding events.
    pub(super) encoder: EventEncoder,
    /// Set while the store cannot commit: calls that change state are refused.
    pub(super) degraded: Option<Degraded>,
    /// Human-in-the-loop requests waiting, and recently resolved.
    pub(super) requests: Requests,
    /// Clients that said hello.
    pub(super) peers: Peers,
    /// Client-run tool calls waiting for their claim or result.
    pub(super) claims: Claims,
    /// Bytes of content queued over all sessions (`config.queue.max_total_bytes` bounds it).
    pub(super) queued_bytes: usize,
}

/// The user message a turn starts with, and who sent it.
#[derive(Debug, Clone)]
pub(super) struct NewTurn {
    pub message_id: MessageId,
    pub turn_id: TurnId,
    pub content: String,
    pub author: Option<Author>,
}

/// The model a turn runs, resolved from the catalog.
#[derive(Debug, Clone)]
pub(super) struct ModelChoice {
    pub name: String,
    pub context_bytes: usize,
}

/// Why and since when the store cannot commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Degraded {
    pub reason: String,
    pub since: OffsetDateTime,
}

impl Core {
    pub fn new(meta: InstanceMeta, config: CoreConfig, ids: Box<dyn IdGen>) -> Self {
        let ring = EventRing::new(config.replay);
        Core {
            meta,
            config,
            ids,
            seq: 0,
            sessions: Sessions::default(),
            active: None,
            turns: HashMap::new(),
            sent: HashMap::new(),
            sent_order: VecDeque::new(),
            shutting_down: false,
            recovered_turns: 0,
            promoted_from: None,
            effects: Vec::new(),
            ring,
            encoder: EventEncoder::default(),
            degraded: None,
            requests: Requests::default(),
            peers: Peers::default(),
            claims: Claims::default(),
            queued_bytes: 0,
        }
    }

    pub fn instance_id(&self) -> InstanceId {
        self.meta.instance_id
    }

    /// `seq` of the last event decided.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    #[cfg(test)]
    pub fn running_turns(&self) -> usize {
        self.turns.len()
    }

    /// The effects decided since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }
}

/// A session's stored row.
pub(super) fn record_of(s: &Session) -> SessionRecord {
    SessionRecord {
        id: s.id,
        title: s.title.clone(),
        created_at: s.created_at,
        updated_at: s.updated_at,
        model: s.model.clone(),
        system_prompt: s.system_prompt.clone(),
        usage: s.usage,
    }
}
