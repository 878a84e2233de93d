//! The core state machine: owns sessions, messages, turns and the event sequence, and decides every
//! event. Synchronous, no I/O, no clock reads (time comes in as an argument), no randomness but
//! the injected id source. Inputs are method calls, model events, heartbeat ticks and shutdown;
//! outputs are a reply and the effects drained by `take_effects`, in the order they were decided.

use std::collections::{BTreeMap, HashMap, VecDeque};

use time::OffsetDateTime;

use super::answer::Outcome;
use super::client_tools::Claims;
use super::effects::Effect;
use super::error::CoreError;
use super::hitl::Requests;
use super::ids::IdGen;
use super::models::ModelCatalog;
use super::peers::Peers;
use super::persist::{Change, MessageRecord, SessionRecord, StoredStatus};
use super::policy::ToolPolicy;
use super::queue::QueueLimits;
use super::read::{ContextRead, Read};
use super::replay::{EventRing, ReplayLimits};
use super::session::{clip_title, title_from, Session};
use super::turn::Turn;
use crate::protocol::clients::Author;
use crate::protocol::duration::go_duration;
use crate::protocol::events::{
    DequeueReason, EndReason, Event, EventEncoder, Health, HeartbeatPayload, LlmStartPayload,
    MessageAppendPayload, MessageDequeuedPayload, PromotedPayload, SessionListPayload,
    ShutdownPayload, StatusPayload,
};
use crate::protocol::hitl::HitlListResult;
use crate::protocol::ids::{InstanceId, MessageId, SessionId, TurnId};
use crate::protocol::limits::{
    DEFAULT_CLIENT_TIMEOUT_SECS, DEFAULT_HITL_TIMEOUT_SECS, DEFAULT_MAX_SESSIONS,
    DEFAULT_TOOL_CLAIM_TIMEOUT_SECS, SESSION_LIST_EVENT_MAX,
};
use crate::protocol::methods::{
    Call, DegradedInfo, DropCounters, Endpoints, InfoResult, InterruptResult, MessageSend,
    OkResult, PingResult, ReplayInfo, ReplayRequest, ReplayResult, Reply, SendResult,
    SessionListResult, StateSyncResult, TransportInfo, WhenBusy,
};
use crate::protocol::types::{MessageStatus, Role, SessionPayload};
use crate::protocol::PROTOCOL_VERSION;

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
    pub(super) sessions: BTreeMap<SessionId, Session>,
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
            sessions: BTreeMap::new(),
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

    pub fn running_turns(&self) -> usize {
        self.turns.len()
    }

    /// The effects decided since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect> {
        std::mem::take(&mut self.effects)
    }

    /// Answers one call, or says what to read from the store to answer it (the history lives
    /// there). Events it causes are queued as effects before this returns, so a reply sent after
    /// them never overtakes them.
    pub fn call(&mut self, call: Call, ctx: &CallContext) -> Result<Outcome, CoreError> {
        let now = ctx.now;
        self.touch(&ctx.peer, now);
        let reply = match call {
            // The history lives in the store: these are answered by reading it.
            Call::MessageList { session_id, page } => {
                let s = self.session(&session_id)?;
                return Ok(Outcome::Read(Read::Page {
                    session_id: s.id,
                    count: s.message_count,
                    page,
                }));
            }
            Call::MessageGet {
                session_id,
                message_id,
            } => {
                let s = self.session(&session_id)?;
                return Ok(Outcome::Read(Read::Message {
                    session_id: s.id,
                    count: s.message_count,
                    message_id,
                }));
            }
            Call::InstancePing => Ok(Reply::Ping(PingResult {
                status: "ok".into(),
                instance_id: self.meta.instance_id,
                uptime: self.uptime(now),
            })),
            Call::InstanceInfo => Ok(Reply::Info(Box::new(self.info(ctx)))),
            Call::StateSync { project_id: _ } => Ok(Reply::StateSync(StateSyncResult {
                sessions: self.session_list(),
                active_session_id: self.active,
                instance_id: self.meta.instance_id,
                seq: self.seq,
                hitl: self.requests.pending(None),
                clients: self.peers.list(),
            })),
            Call::SessionList => Ok(Reply::SessionList(SessionListResult {
                sessions: self.session_list(),
            })),
            Call::SessionGet { session_id } => {
                Ok(Reply::Session(self.session(&session_id)?.payload()))
            }
            Call::SessionCreate { title } => {
                self.refuse_if_shutting_down()?;
                self.refuse_if_degraded()?;
                let title = clip_title(title.as_deref().unwrap_or(""));
                let id = self.create_session(title, now)?;
                Ok(Reply::Session(self.sessions[&id].payload()))
            }
            Call::SessionDelete { session_id } => {
                self.refuse_if_shutting_down()?;
                self.refuse_if_degraded()?;
                let id = self.session(&session_id)?.id;
                self.delete_session(id, now);
                Ok(Reply::Ok(OkResult { ok: true }))
            }
            Call::SessionActivate { session_id } => {
                self.refuse_if_shutting_down()?;
                self.refuse_if_degraded()?;
                let id = self.session(&session_id)?.id;
                self.activate(id, now);
                Ok(Reply::Ok(OkResult { ok: true }))
            }
            Call::SessionInterrupt {
                session_id,
                clear_queue,
            } => {
                let s = self.session(&session_id)?;
                let (id, running) = (s.id, s.running);
                // Clearing is a change the events must show, and nothing follows
                // `instance.shutdown`: the queue is kept for the restart.
                if clear_queue {
                    self.refuse_if_shutting_down()?;
                }
                // Cleared first, so the end of the turn starts nothing.
                let cleared =
                    clear_queue.then(|| self.discard_queue(id, DequeueReason::Cleared, now));
                if let Some(turn_id) = running {
                    self.effects.push(Effect::CancelTurn(turn_id));
                    self.end_turn(turn_id, EndReason::Interrupted, None, now);
                }
                Ok(Reply::Interrupt(InterruptResult {
                    ok: true,
                    interrupted: running.is_some(),
                    cleared,
                }))
            }
            Call::MessageSend(send) => {
                let author = self.author(&ctx.peer);
                self.send(send, author, now).map(Reply::Send)
            }
            Call::EventsReplay(req) => self.replay(&req).map(Reply::Replay),
            Call::HitlList { session_id } => {
                let session = match session_id {
                    Some(raw) => Some(self.session(&raw)?.id),
                    None => None,
                };
                Ok(Reply::HitlList(HitlListResult {
                    requests: self.requests.pending(session),
                }))
            }
            Call::HitlRespond(mut r) => {
                // A client that said hello is who resolved it, whatever the params claim.
                if let Some(a) = self.author(&ctx.peer) {
                    r.client_id = Some(a.client_id);
                }
                self.respond(r, now).map(Reply::Respond)
            }
            Call::ClientHello(hello) => self.hello(*hello, &ctx.peer, now).map(Reply::Hello),
            Call::ClientList => Ok(Reply::ClientList(self.client_list())),
            Call::ClientGoodbye => {
                self.goodbye(&ctx.peer, now);
                Ok(Reply::Ok(OkResult { ok: true }))
            }
            Call::ToolClaim(r) => self.claim(r, &ctx.peer, now).map(Reply::Claim),
            Call::ToolResult(r) => self.tool_result(r, &ctx.peer).map(Reply::Ok),
            Call::SessionConfigure(c) => self.configure(c, now).map(Reply::Session),
            Call::ModelList => Ok(Reply::ModelList(self.config.models.list())),
        };
        reply.map(Outcome::Reply)
    }

    fn replay(&self, req: &ReplayRequest) -> Result<ReplayResult, CoreError> {
        let unavailable = |reason: &'static str| CoreError::ReplayUnavailable {
            reason,
            oldest_seq: self.ring.oldest(),
            latest_seq: self.seq,
        };
        if let Some(id) = &req.instance_id {
            if *id != self.meta.instance_id.to_string() {
                return Err(unavailable("instance_changed"));
            }
        }
        let page = self
            .ring
            .replay(req.after_seq, &req.prefixes, req.limit)
            .map_err(|why| unavailable(why.as_str()))?;
        Ok(ReplayResult {
            instance_id: self.meta.instance_id,
            // The ring holds only envelopes this core encoded, so they parse.
            events: page
                .bodies
                .iter()
                .filter_map(|b| serde_json::from_slice(b).ok())
                .collect(),
            next_after_seq: page.next_after_seq,
            has_more: page.has_more,
            oldest_seq: self.ring.oldest(),
            latest_seq: self.seq,
        })
    }

    /// Publishes `instance.heartbeat`.
    pub fn heartbeat(&mut self, now: OffsetDateTime) {
        let payload = HeartbeatPayload {
            instance_id: self.meta.instance_id,
            active_session_id: self.active,
            session_count: self.sessions.len() as u64,
            uptime: self.uptime(now),
            started_at: self.meta.started_at,
            promoted_from: self.promoted_from,
            status: self.health(),
            reason: self.degraded.as_ref().map(|d| d.reason.clone()),
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
        };
        self.publish(Event::InstanceHeartbeat(payload), now);
    }

    /// Publishes `instance.promoted`: this instance took over from a primary that is gone.
    pub fn promoted(&mut self, previous_instance_id: Option<InstanceId>, now: OffsetDateTime) {
        self.promoted_from = previous_instance_id;
        let payload = PromotedPayload {
            instance_id: self.meta.instance_id,
            previous_instance_id,
        };
        self.publish(Event::InstancePromoted(payload), now);
    }

    /// Ends every running turn with `reason: "shutdown"`, then publishes `instance.shutdown`.
    /// After this every call that would change state is refused, so `instance.shutdown` is the
    /// last event; reads still answer.
    pub fn shutdown(&mut self, reason: &str, now: OffsetDateTime) {
        self.shutting_down = true;
        let mut running: Vec<TurnId> = self.turns.keys().copied().collect();
        running.sort();
        for turn_id in running {
            self.effects.push(Effect::CancelTurn(turn_id));
            self.end_turn(turn_id, EndReason::Shutdown, None, now);
        }
        self.publish(
            Event::InstanceShutdown(ShutdownPayload {
                instance_id: self.meta.instance_id,
                reason: reason.to_owned(),
            }),
            now,
        );
    }

    fn send(
        &mut self,
        send: MessageSend,
        author: Option<Author>,
        now: OffsetDateTime,
    ) -> Result<SendResult, CoreError> {
        // Before the idempotency lookup: a remembered answer may describe a change the failing
        // store has not saved, and must not be acknowledged again until it has.
        self.refuse_if_degraded()?;
        if let Some(done) = send.request_id.as_ref().and_then(|r| self.sent.get(r)) {
            return Ok(done.clone());
        }
        self.refuse_if_shutting_down()?;
        let request_id = send.request_id.clone();
        let existing = match &send.session_id {
            Some(raw) => {
                let s = self.session(raw)?;
                match (s.running, send.when_busy) {
                    (None, _) => Some(s),
                    (Some(_), WhenBusy::Queue) => {
                        let id = s.id;
                        let result = self.enqueue(id, send, author, now)?;
                        self.keep_answer(request_id, &result, now);
                        return Ok(result);
                    }
                    (Some(turn_id), WhenBusy::Reject) => {
                        return Err(CoreError::SessionBusy {
                            session_id: raw.clone(),
                            turn_id,
                        })
                    }
                }
            }
            None => None,
        };
        // Before anything changes: an unknown model refuses the whole call.
        let (model, entry) = self.config.models.pick(
            send.model.as_deref(),
            existing.and_then(|s| s.model.as_deref()),
        )?;
        let model = ModelChoice {
            name: model.to_owned(),
            context_bytes: entry.context_bytes,
        };
        let session_id = match existing.map(|s| s.id) {
            Some(id) => id,
            None => self.create_session(title_from(&send.content), now)?,
        };

        let message_id = MessageId(self.ids.next_id());
        let turn_id = TurnId(self.ids.next_id());
        let message = NewTurn {
            message_id,
            turn_id,
            content: send.content,
            author,
        };
        self.begin_turn(session_id, message, model, false, now);
        let result = SendResult {
            ok: true,
            session_id,
            message_id,
            turn_id,
            queued: false,
            position: None,
        };
        self.keep_answer(request_id, &result, now);
        Ok(result)
    }

    /// Remembers a send's answer under its `request_id`, in memory and in the store.
    fn keep_answer(
        &mut self,
        request_id: Option<String>,
        result: &SendResult,
        now: OffsetDateTime,
    ) {
        let Some(request_id) = request_id else {
            return;
        };
        self.persist(Change::RequestKey {
            request_id: request_id.clone(),
            result: result.clone(),
            created_at: now,
        });
        self.remember(request_id, result.clone());
    }

    /// Appends the user message `message_id` to the idle session `session_id` and starts turn
    /// `turn_id` on it: the store changes first, then (for a message that waited in the queue)
    /// its `message.dequeued`, then `message.append`, `llm.start` and `session.update`.
    pub(super) fn begin_turn(
        &mut self,
        session_id: SessionId,
        message: NewTurn,
        model: ModelChoice,
        from_queue: bool,
        now: OffsetDateTime,
    ) {
        let NewTurn {
            message_id,
            turn_id,
            content,
            author,
        } = message;
        let ModelChoice {
            name: model,
            context_bytes,
        } = model;
        let Some(session) = self.sessions.get_mut(&session_id) else {
            return;
        };
        let position = session.message_count;
        session.message_count += 1;
        session.updated_at = now;
        session.running = Some(turn_id);
        let context = ContextRead {
            session_id,
            count: session.message_count,
            max_bytes: context_bytes,
        };
        let system_prompt = session.system_prompt.clone();
        let queue_length = session.queue.len() as u64;
        let session_payload = session.payload();
        let session_record = record_of(session);
        let mut turn = Turn::new(turn_id, session_id, now);
        turn.client_tools = self.peers.offered();
        let client_tools = turn.client_tools.clone();
        self.turns.insert(turn_id, turn);
        self.persist(Change::MessageUpsert(MessageRecord {
            id: message_id,
            session_id,
            position,
            turn_id: Some(turn_id),
            role: Role::User,
            content: content.clone(),
            created_at: now,
            status: StoredStatus::Complete,
            tool: None,
            author: author.clone(),
        }));
        self.persist(Change::TurnStart {
            id: turn_id,
            session_id,
            started_at: now,
        });
        self.persist(Change::SessionUpsert(session_record));
        if from_queue {
            // After the message is stored: a crash in between finds it in the history, and
            // loading skips a queued row whose message is already there.
            self.persist(Change::QueueRemove { message_id });
            self.publish(
                Event::MessageDequeued(MessageDequeuedPayload {
                    session_id,
                    message_id,
                    turn_id,
                    reason: DequeueReason::Started,
                    queue_length,
                }),
                now,
            );
        }

        self.publish(
            Event::MessageAppend(
                MessageAppendPayload {
                    session_id,
                    message_id,
                    role: Role::User,
                    content,
                    turn_id: Some(turn_id),
                    status: MessageStatus::Complete,
                    created_at: now,
                    tool: None,
                    content_bytes: None,
                    content_truncated: false,
                    author,
                }
                .clipped(),
            ),
            now,
        );
        self.publish(
            Event::LlmStart(LlmStartPayload {
                session_id,
                turn_id,
                model: model.clone(),
            }),
            now,
        );
        self.publish(Event::SessionUpdate(session_payload), now);
        self.effects.push(Effect::StartTurn {
            turn_id,
            session_id,
            context,
            client_tools,
            model,
            system_prompt,
        });
    }

    pub(super) fn remember(&mut self, request_id: String, result: SendResult) {
        if self.config.idempotency_capacity == 0 {
            return;
        }
        while self.sent_order.len() >= self.config.idempotency_capacity {
            if let Some(old) = self.sent_order.pop_front() {
                self.sent.remove(&old);
            }
        }
        self.sent_order.push_back(request_id.clone());
        self.sent.insert(request_id, result);
    }

    /// Every new session comes through here, so the session limit holds however it was asked for.
    fn create_session(
        &mut self,
        title: String,
        now: OffsetDateTime,
    ) -> Result<SessionId, CoreError> {
        if self.sessions.len() >= self.config.max_sessions {
            return Err(CoreError::TooManySessions {
                count: self.sessions.len(),
                limit: self.config.max_sessions,
            });
        }
        let id = SessionId(self.ids.next_id());
        let session = Session::new(id, title, now);
        let payload = session.payload();
        self.persist(Change::SessionUpsert(record_of(&session)));
        self.sessions.insert(id, session);
        self.publish(Event::SessionUpdate(payload), now);
        self.publish_session_list(now);
        // The first session becomes the active one; later ones wait for `session.activate`.
        if self.active.is_none() {
            self.activate(id, now);
        }
        Ok(id)
    }

    fn delete_session(&mut self, id: SessionId, now: OffsetDateTime) {
        // Discarded first, so the end of its turn starts nothing.
        self.discard_queue(id, DequeueReason::Deleted, now);
        if let Some(turn_id) = self.sessions.get(&id).and_then(|s| s.running) {
            self.effects.push(Effect::CancelTurn(turn_id));
            self.end_turn(turn_id, EndReason::Interrupted, None, now);
        }
        let Some(session) = self.sessions.remove(&id) else {
            return;
        };
        self.persist(Change::SessionDelete {
            id,
            deleted_at: now,
        });
        if self.active == Some(id) {
            self.active = None;
            self.persist(Change::ActiveSession(None));
        }
        self.publish(Event::SessionDeleted(session.payload()), now);
        self.publish_session_list(now);
    }

    /// Makes `id` the active session; publishes `session.activated` only when it changes.
    /// Activation changes no session data, so the session's `updated_at` stays as it was.
    fn activate(&mut self, id: SessionId, now: OffsetDateTime) {
        if self.active == Some(id) {
            return;
        }
        self.active = Some(id);
        self.persist(Change::ActiveSession(Some(id)));
        let payload = self.sessions[&id].payload();
        self.publish(Event::SessionActivated(payload), now);
    }

    /// Adds a session as loaded from a store (no events: nobody is subscribed yet).
    pub(super) fn insert_session(&mut self, session: Session) {
        self.sessions.insert(session.id, session);
    }

    pub(super) fn set_active_restored(&mut self, active: Option<SessionId>) {
        self.active = active.filter(|id| self.sessions.contains_key(id));
    }

    /// `session.list`: the newest sessions only, so the event stays small (see its payload).
    fn publish_session_list(&mut self, now: OffsetDateTime) {
        let mut sessions = self.session_list();
        let session_count = sessions.len() as u64;
        let truncated = sessions.len() > SESSION_LIST_EVENT_MAX;
        sessions.truncate(SESSION_LIST_EVENT_MAX);
        let payload = SessionListPayload {
            sessions,
            session_count,
            truncated,
        };
        self.publish(Event::SessionList(payload), now);
    }

    /// Queues a change that what follows depends on (a reply or event after it waits for it).
    pub(super) fn persist(&mut self, change: Change) {
        self.effects.push(Effect::Persist {
            change,
            gating: true,
        });
    }

    /// Queues a change nothing shown to clients depends on: checkpoints, tool-call records.
    pub(super) fn persist_quietly(&mut self, change: Change) {
        self.effects.push(Effect::Persist {
            change,
            gating: false,
        });
    }

    pub(super) fn publish(&mut self, event: Event, now: OffsetDateTime) {
        self.seq += 1;
        let p = self
            .encoder
            .encode(self.seq, now, event, self.meta.instance_id);
        self.ring.push(p.seq, p.key.clone(), p.body.clone());
        self.effects.push(Effect::Publish(p));
    }

    /// Sessions, most recently updated first.
    fn session_list(&self) -> Vec<SessionPayload> {
        let mut list: Vec<&Session> = self.sessions.values().collect();
        list.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(b.id.cmp(&a.id)));
        list.into_iter().map(Session::payload).collect()
    }

    pub(super) fn session(&self, raw: &str) -> Result<&Session, CoreError> {
        SessionId::parse(raw)
            .and_then(|id| self.sessions.get(&id))
            .ok_or_else(|| CoreError::SessionNotFound(raw.to_owned()))
    }

    pub(super) fn refuse_if_degraded(&self) -> Result<(), CoreError> {
        match &self.degraded {
            Some(d) => Err(CoreError::StoreUnavailable(d.reason.clone())),
            None => Ok(()),
        }
    }

    pub fn health(&self) -> Health {
        if self.degraded.is_some() {
            Health::Degraded
        } else {
            Health::Ok
        }
    }

    /// The store's health changed: `Some(reason)` while it cannot commit. While degraded, calls
    /// that change state are refused with `store_unavailable`; reads, pings and events go on.
    /// Publishes `instance.status` when the health changes (not when only the reason does).
    pub fn store_health(&mut self, failing: Option<String>, now: OffsetDateTime) {
        let was = self.health();
        self.degraded = failing.map(|reason| Degraded {
            since: self.degraded.as_ref().map_or(now, |d| d.since),
            reason,
        });
        if self.health() == was {
            return;
        }
        let payload = StatusPayload {
            instance_id: self.meta.instance_id,
            status: self.health(),
            reason: self.degraded.as_ref().map(|d| d.reason.clone()),
            since: self.degraded.as_ref().map(|d| d.since),
        };
        self.publish(Event::InstanceStatus(payload), now);
    }

    pub(super) fn refuse_if_shutting_down(&self) -> Result<(), CoreError> {
        if self.shutting_down {
            Err(CoreError::ShuttingDown)
        } else {
            Ok(())
        }
    }

    fn uptime(&self, now: OffsetDateTime) -> String {
        let elapsed = (now - self.meta.started_at).max(time::Duration::ZERO);
        go_duration(elapsed.unsigned_abs())
    }

    fn info(&self, ctx: &CallContext) -> InfoResult {
        InfoResult {
            instance_id: self.meta.instance_id,
            version: self.meta.version.clone(),
            protocol_version: PROTOCOL_VERSION,
            pid: self.meta.pid,
            started_at: self.meta.started_at,
            uptime: self.uptime(ctx.now),
            endpoints: self.meta.endpoints.clone(),
            session_count: self.sessions.len() as u64,
            max_sessions: self.config.max_sessions as u64,
            active_session_id: self.active,
            model: self.meta.model.clone(),
            models: self.config.models.list().models,
            seq: self.seq,
            running_turns: self.turns.len() as u64,
            drops: ctx.drops.clone(),
            transport: ctx.transport.clone(),
            store: self.meta.store.clone(),
            recovered_turns: self.recovered_turns,
            promoted_from: self.promoted_from,
            replay: ReplayInfo {
                events: self.ring.len() as u64,
                bytes: self.ring.bytes() as u64,
                oldest_seq: self.ring.oldest(),
                max_events: self.config.replay.max_events as u64,
                max_bytes: self.config.replay.max_bytes as u64,
            },
            status: self.health(),
            degraded: self.degraded.as_ref().map(|d| DegradedInfo {
                reason: d.reason.clone(),
                since: d.since,
            }),
            heartbeat_interval_ms: self.config.heartbeat_interval.as_millis() as u64,
        }
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
