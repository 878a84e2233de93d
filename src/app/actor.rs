//! The actor: the one owner of the core while the server runs. Its loop turns requests (served
//! one peer at a time in turn), model output, store health and ticks into core inputs, and
//! carries out the core's effects in order: changes go to the store's writer, replies and events
//! to the [`Outbox`], which decides when they may leave (what waits for a commit is released by
//! the store's thread as it commits, `app::start`). Reads of the history (`message.list`,
//! `message.get`, a turn's context) go to the store's thread and come back as [`ReadDone`]s or
//! into the turn's task. Owns back-pressure to the models and the shutdown sequence.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use super::fair::RoundRobin;
use super::outbox::Outbox;
use super::reply_read::{ReadDone, ReplyRead};
use crate::core::answer::Answer;
use crate::core::{CallContext, Core, Effect, TurnEffect};
use crate::model::context::{Context, ContextBudget};
use crate::model::queue::{self as model_queue, ModelReceiver, ModelSender};
use crate::model::registry::Models;
use crate::model::runner::{spawn_turn, TurnHandle};
use crate::protocol::errors::RpcError;
use crate::protocol::events::Event;
use crate::protocol::ids::TurnId;
use crate::store::writer::{Closed, StoreFailure, Writer, MAX_UNSAVED_BYTES};
use crate::transport::{Inbound, Outbound, Route, Slot, Transport};

/// Model events taken in one go before their effects are applied: bounds how long requests and
/// ticks wait behind a fast stream.
const MODEL_BURST: usize = 256;
/// Requests taken off the transport's queue into the per-peer lines at most; beyond it they
/// wait in that queue, and when it too is full new ones get `server_busy`.
const MAX_TAKEN_REQUESTS: usize = 1_024;
/// Requests served before the loop looks at its other inputs again.
const REQUEST_ROUND: usize = 32;
/// How often running turns are considered for a checkpoint.
const CHECKPOINT_TICK: Duration = Duration::from_millis(500);

/// How the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Changes the store could not save before the end: lost. Non-zero makes `serve` exit 1.
    pub unsaved_changes: usize,
    /// Replies and events withheld because the changes they show were not saved.
    pub withheld: usize,
}

/// The one owner of the core.
pub(super) struct Actor<'t> {
    pub(super) core: Core,
    /// The models by name; each turn runs the one the core named.
    pub(super) models: Models,
    pub(super) model_tx: ModelSender,
    pub(super) transport: &'t Transport,
    /// Running model tasks; dropping a handle stops its task.
    pub(super) turns: HashMap<TurnId, TurnHandle>,
    pub(super) writer: Writer,
    /// The number of the last change the store has committed.
    pub(super) committed: watch::Receiver<u64>,
    /// `Some` while the store cannot commit.
    pub(super) health: watch::Receiver<Option<StoreFailure>>,
    /// Shared with the store's thread, which releases what each commit lets go
    /// (`app::start`); locked briefly, never across a wait.
    pub(super) outbox: Arc<Mutex<Outbox>>,
    /// Requests taken from the transport's queue, served in turn by peer.
    pub(super) requests: RoundRobin<Inbound>,
    /// Where the store's thread sends the replies it read.
    pub(super) reads_tx: mpsc::UnboundedSender<ReadDone>,
    /// The ticket of the next reply read from the store.
    pub(super) next_ticket: u64,
    /// The room running turns' histories share.
    pub(super) contexts: ContextBudget,
}

/// What the actor's own helpers send it: model output and replies read from the store.
pub(super) struct Receivers {
    pub model: ModelReceiver,
    pub reads: mpsc::UnboundedReceiver<ReadDone>,
}

/// What the actor's loop listens to besides its own state.
pub(super) struct Inputs<S> {
    pub requests: mpsc::Receiver<Inbound>,
    pub heartbeat_interval: Duration,
    /// How long to stay awake after answering requests (`Config::core_spin`).
    pub core_spin: Duration,
    pub shutdown: S,
}

impl<'t> Actor<'t> {
    pub(super) fn new(
        core: Core,
        models: Models,
        transport: &'t Transport,
        writer: Writer,
        outbox: Arc<Mutex<Outbox>>,
        contexts: ContextBudget,
    ) -> (Self, Receivers) {
        // Model output waiting for the core; a full queue slows the models, not the core.
        let (model_tx, model_rx) = model_queue::channel(model_queue::MAX_QUEUED_BYTES);
        // Unbounded in count, bounded by what was admitted: one per request waiting for a read.
        let (reads_tx, reads_rx) = mpsc::unbounded_channel();
        let actor = Actor {
            core,
            models,
            model_tx,
            transport,
            turns: HashMap::new(),
            committed: writer.committed(),
            health: writer.health(),
            writer,
            outbox,
            requests: RoundRobin::default(),
            reads_tx,
            next_ticket: 0,
            contexts,
        };
        (
            actor,
            Receivers {
                model: model_rx,
                reads: reads_rx,
            },
        )
    }

    /// Serves until `shutdown` resolves (with the reason to publish), then shuts down in order:
    /// stop taking requests, end running turns, publish `instance.shutdown`, answer what was
    /// already queued, flush the store, release what waited on it.
    pub(super) async fn run<S: Future<Output = String>>(
        mut self,
        inputs: Inputs<S>,
        receivers: Receivers,
    ) -> Stopped {
        let Receivers {
            model: mut model_rx,
            reads: mut reads_rx,
        } = receivers;
        let Inputs {
            requests: mut inbound,
            heartbeat_interval,
            core_spin,
            shutdown,
        } = inputs;
        let mut committed = self.committed.clone();
        let mut health = self.health.clone();
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + heartbeat_interval,
            heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut checkpoint = tokio::time::interval(CHECKPOINT_TICK);
        checkpoint.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);

        let reason = loop {
            let mut served = false;
            // Too much output held for the store: take no new work that would add to it
            // (requests wait in the transport's queue, model output in its own).
            let full = self.outbox().over_budget() || self.store_behind();
            let transport = self.transport;
            // Subscribers behind: model output waits until libzmq has written some of theirs.
            let stats = &*transport.stats;
            let paced = stats
                .pace
                .must_wait(|| stats.pub_bytes_held.load(Ordering::SeqCst));
            // Events held for the store leave together when it commits: model output waits
            // for them too (the commit wakes the loop), and takes no more in one go than the
            // room left under the pace's event mark.
            let (behind_store, burst) = self.event_room();
            tokio::select! {
                reason = &mut shutdown => break reason,
                Some(inb) = inbound.recv(), if !full && self.requests.len() < MAX_TAKEN_REQUESTS => {
                    self.requests.push(inb.route.identity.clone(), inb);
                    self.serve_requests(&mut inbound);
                    served = true;
                }
                () = std::future::ready(()), if !full && !self.requests.is_empty() => {
                    self.serve_requests(&mut inbound);
                    served = true;
                }
                () = stats.pace.resumed(), if paced => {}
                Some((turn, ev)) = model_rx.recv(), if !full && !paced && !behind_store => {
                    // One reading of the clock for the burst: its events are stamped with the
                    // moment the core took them (`seq` orders them).
                    let now = now();
                    self.core.model_event(turn, ev, now);
                    // Take what else is ready before applying effects: a burst of tokens then
                    // costs one look at the sockets' pending input (`settle`) instead of one
                    // per token; each event still takes the PUB's lock on its own. Not past
                    // the pace's event mark: at a low `--pub-hwm` a whole burst past it could
                    // fill a subscriber's queue.
                    for _ in 1..burst {
                        let Ok((turn, ev)) = model_rx.try_recv() else { break };
                        self.core.model_event(turn, ev, now);
                    }
                }
                // The store's thread releases what a commit lets go; a commit matters here only
                // to work waiting for the store to catch up.
                Ok(()) = committed.changed(), if full || behind_store => self.release(),
                Some(done) = reads_rx.recv() => {
                    {
                        let mut outbox = self.outbox();
                        outbox.fill(done.ticket, done.body);
                        while let Ok(done) = reads_rx.try_recv() {
                            outbox.fill(done.ticket, done.body);
                        }
                    }
                    self.release();
                }
                Ok(()) = health.changed() => self.on_health(),
                _ = heartbeat.tick() => self.core.heartbeat(now()),
                _ = checkpoint.tick() => {
                    let now = now();
                    self.core.tick(now);
                }
            }
            self.apply_effects();
            // Events went to the PUB from here: a subscription they hid must still be read.
            transport.outbound.settle();
            // Just answered requests: a client asking in a loop sends its next one within a
            // round trip, and finding this thread awake saves it a wake-up (on a VM, most of a
            // ping's extra time over bare libzmq). Not while output waits for the store, whose
            // thread then needs a core more than this one does.
            if served && !core_spin.is_zero() && self.outbox().required() <= *committed.borrow() {
                let started = std::time::Instant::now();
                let mut spins = 0u32;
                while inbound.is_empty()
                    && model_rx.is_empty()
                    && reads_rx.is_empty()
                    && !health.has_changed().unwrap_or(true)
                    && started.elapsed() < core_spin
                {
                    spins += 1;
                    // Mostly spin; now and then let another thread of this core run.
                    if spins.is_multiple_of(64) {
                        std::thread::yield_now();
                    } else {
                        std::hint::spin_loop();
                    }
                }
            }
        };
        self.shut_down(&reason, &mut inbound, reads_rx).await
    }

    async fn shut_down(
        mut self,
        reason: &str,
        inbound: &mut mpsc::Receiver<Inbound>,
        mut reads_rx: mpsc::UnboundedReceiver<ReadDone>,
    ) -> Stopped {
        tracing::info!(%reason, "shutting down");
        self.transport.drain();
        self.core.shutdown(reason, now());
        self.apply_effects();
        // Requests that reached the queue before the drain still get their answer.
        while let Some(inb) = self.requests.pop() {
            self.on_inbound(inb);
            self.apply_effects();
        }
        while let Ok(inb) = inbound.try_recv() {
            self.on_inbound(inb);
            self.apply_effects();
        }
        let Actor {
            writer,
            outbox,
            transport,
            reads_tx,
            ..
        } = self;
        drop(reads_tx);
        let closed = tokio::task::spawn_blocking(move || writer.close())
            .await
            .unwrap_or(Closed {
                committed: 0,
                unsaved: 0,
            });
        // The store's thread is done releasing: what is still held is this task's alone.
        let mut outbox =
            std::mem::take(&mut *outbox.lock().unwrap_or_else(PoisonError::into_inner));
        // The store's thread ran (or dropped, which answers too) every read before it stopped.
        while let Ok(done) = reads_rx.try_recv() {
            outbox.fill(done.ticket, done.body);
        }
        let mut withheld = 0;
        // The sockets are still open (the transport closes them after this returns).
        for (needs, msg) in outbox.into_held() {
            if needs > closed.committed {
                withheld += 1;
                continue;
            }
            transport.outbound.send(msg);
        }
        transport.outbound.settle();
        if withheld > 0 {
            tracing::error!(
                withheld,
                "replies and events withheld: their changes were not saved"
            );
        }
        Stopped {
            unsaved_changes: closed.unsaved,
            withheld,
        }
    }

    /// Serves up to [`REQUEST_ROUND`] requests, one peer at a time in turn. Before each, what
    /// has reached the transport's queue joins its peer's line, so a newcomer waits for at most
    /// one request of each busy peer, not for everything they queued earlier.
    pub(super) fn serve_requests(&mut self, inbound: &mut mpsc::Receiver<Inbound>) {
        for _ in 0..REQUEST_ROUND {
            while self.requests.len() < MAX_TAKEN_REQUESTS {
                let Ok(inb) = inbound.try_recv() else { break };
                self.requests.push(inb.route.identity.clone(), inb);
            }
            let Some(inb) = self.requests.pop() else {
                break;
            };
            self.on_inbound(inb);
        }
    }

    pub(super) fn on_inbound(&mut self, inb: Inbound) {
        let Inbound {
            route,
            calls,
            mut slot,
        } = inb;
        let ctx = CallContext {
            now: now(),
            peer: route.identity.clone(),
            drops: self.transport.stats.snapshot(),
            transport: self.transport.stats.gauges(),
        };
        // The calls' ids: to refuse them should the store fail before their change is saved,
        // and to answer them should a read they wait for be lost.
        let ids = calls.refusal();
        let required = self.outbox().required();
        let Some(answer) = self.core.answer(calls, &ctx) else {
            return;
        };
        // The reply follows the events and changes its call decided, so it never overtakes
        // its events and never shows state that is not yet committed. It carries the
        // request's slot, so a reply still waiting counts against its peer. What the call
        // asks of running turns is carried out after the reply has gone.
        let for_turns = self.apply_output_effects();
        // Only a call that changed something is refused should the store fail before its
        // change is saved; a read or a ping waiting behind it is answered as it is.
        let changed = self.outbox().required() != required;
        match answer.ready() {
            Ok(body) => {
                if let Some(slot) = &mut slot {
                    // From here the reply, not the request, is what the peer holds in flight.
                    slot.resize(body.len());
                }
                self.send_out(
                    Outbound::Reply { route, body, slot },
                    ids.filter(|_| changed),
                );
            }
            Err(answer) => self.read_reply(answer, route, slot, ids, changed),
        }
        self.steer_turns(for_turns);
    }

    /// Holds the reply's place in the outbox and has the store read its body. `ids` names the
    /// calls; they are refused with the store's failure only if `changed` (see `on_inbound`).
    fn read_reply(
        &mut self,
        answer: Answer,
        route: Route,
        slot: Option<Slot>,
        ids: Option<crate::protocol::jsonrpc::Refusal>,
        changed: bool,
    ) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        let placeholder = Outbound::Reply {
            route,
            body: Vec::new(),
            slot,
        };
        let refusal = ids.clone().filter(|_| changed);
        self.outbox().push_reading(ticket, placeholder, refusal);
        let job = ReplyRead::new(answer, ids, ticket, self.reads_tx.clone());
        self.writer.read(Box::new(move |rows| job.run(rows)));
    }

    /// The store is healthy but more than [`MAX_UNSAVED_BYTES`] of changes wait to be saved:
    /// take no new work until it catches up (its commits wake the loop). A failing store is not
    /// waited for: it refuses new changes, and reads and pings must go on.
    fn store_behind(&self) -> bool {
        self.writer.unsaved_bytes() > MAX_UNSAVED_BYTES && self.health.borrow().is_none()
    }

    /// The events held for the store and by libzmq against the pace's event mark (a quarter of
    /// `--pub-hwm`): whether model output must wait for the store — so many events wait for it
    /// that the commit releasing them at once could take a subscriber past its high-water mark,
    /// where libzmq drops the rest without a word — and how many model events one burst may
    /// take: [`MODEL_BURST`], or the room left under the mark, at least one.
    fn event_room(&self) -> (bool, usize) {
        let waiting = self.outbox().held_events() as u64;
        let pace = &self.transport.stats.pace;
        let held = waiting.saturating_add(pace.events_held());
        let mark = pace.event_mark();
        let room = mark.saturating_sub(held);
        let burst = usize::try_from(room).map_or(MODEL_BURST, |r| r.clamp(1, MODEL_BURST));
        (waiting > 0 && held > mark, burst)
    }

    /// The outbox, shared with the store's thread.
    fn outbox(&self) -> MutexGuard<'_, Outbox> {
        // Nothing is left half-done by a panic while it is held: each call is one step.
        self.outbox.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends `msg` or holds it until the changes decided before it are committed. The number
    /// committed is read under the outbox's lock: the store's thread publishes it before it
    /// takes the lock to release, so a message held here is never missed by that release.
    fn send_out(&self, msg: Outbound, refusal: Option<crate::protocol::jsonrpc::Refusal>) {
        let mut outbox = self.outbox();
        let committed = *self.committed.borrow();
        outbox.push(msg, refusal, committed, &*self.transport.outbound);
    }

    /// Sends the held output that commits have released and reads have filled.
    fn release(&mut self) {
        let done = *self.committed.borrow_and_update();
        self.outbox().release(done, &*self.transport.outbound);
    }

    /// The store failed or recovered. While it fails, the core refuses changes and says so in
    /// `instance.status` and every heartbeat; output stops waiting for commits (see [`Outbox`]).
    fn on_health(&mut self) {
        let failure = self.health.borrow_and_update().clone();
        let committed = *self.committed.borrow();
        match &failure {
            Some(f) => {
                let error = RpcError::store_unavailable(&f.reason, Some(false));
                let refused = self
                    .outbox()
                    .degrade(&error, committed, &*self.transport.outbound);
                tracing::error!(reason = %f.reason, permanent = f.permanent, refused,
                    "store unavailable: refusing changes until it recovers");
            }
            None => {
                tracing::info!("store available again");
                self.outbox().recover();
            }
        }
        self.core.store_health(failure.map(|f| describe(&f)), now());
    }

    pub(super) fn apply_effects(&mut self) {
        let for_turns = self.apply_output_effects();
        self.steer_turns(for_turns);
    }

    /// Carries out the effects that decide output, in order: changes to the store's writer,
    /// events to the outbox. Returns those addressed to the running turns' tasks, in order, for
    /// [`Actor::steer_turns`]: a caller with a reply to send sends it first, since waking a
    /// model's task (a verdict, a new turn) costs a thread wake-up that the reply need not wait
    /// for. Nothing a task does reaches the core before this loop takes it from the model queue,
    /// so the order of events is the same either way.
    fn apply_output_effects(&mut self) -> Vec<ForTurns> {
        let mut for_turns = Vec::new();
        for effect in self.core.take_effects() {
            match effect {
                Effect::Persist { change, gating } => {
                    let n = self.writer.submit(change);
                    if gating {
                        self.outbox().gate(n);
                    }
                }
                Effect::Publish(p) => {
                    if let Event::LlmEnd(end) = &p.event {
                        // The turn is over: its handle goes, in order with the turn's start.
                        for_turns.push(ForTurns::Ended(end.turn_id));
                    }
                    tracing::trace!(seq = p.seq, topic = p.event.topic(), "publish");
                    let msg = Outbound::Event {
                        seq: p.seq,
                        key: p.key,
                        body: p.body,
                        charge: None,
                    };
                    self.send_out(msg, None);
                }
                Effect::Turn(effect) => for_turns.push(ForTurns::Turn(effect)),
            }
        }
        for_turns
    }

    /// Starts, steers and forgets the running turns' tasks as the core decided.
    fn steer_turns(&mut self, for_turns: Vec<ForTurns>) {
        for item in for_turns {
            match item {
                ForTurns::Turn(TurnEffect::Start {
                    turn_id,
                    session_id,
                    context,
                    client_tools,
                    model,
                    system_prompt,
                }) => {
                    tracing::debug!(%turn_id, %session_id, %model, "turn start");
                    // The history comes from the store's thread, after the turn's own message,
                    // once there is room for it.
                    let context = Context {
                        read: context,
                        reader: self.writer.reader(),
                        budget: self.contexts.clone(),
                    };
                    let model = self.models.get(&model).clone();
                    let handle = spawn_turn(
                        model,
                        turn_id,
                        session_id,
                        system_prompt,
                        context,
                        client_tools,
                        self.model_tx.clone(),
                    );
                    self.turns.insert(turn_id, handle);
                }
                ForTurns::Turn(TurnEffect::Verdict {
                    turn_id,
                    call_id,
                    verdict,
                }) => {
                    if let Some(h) = self.turns.get(&turn_id) {
                        h.verdict(call_id.0, verdict);
                    }
                }
                ForTurns::Turn(TurnEffect::Cancel(turn_id)) => {
                    tracing::debug!(%turn_id, "turn cancelled");
                    if let Some(h) = self.turns.remove(&turn_id) {
                        h.cancel();
                    }
                }
                ForTurns::Ended(turn_id) => {
                    // Dropping its handle is a no-op if the task finished.
                    self.turns.remove(&turn_id);
                }
            }
        }
    }
}

/// What [`Actor::apply_output_effects`] leaves for [`Actor::steer_turns`], in order.
enum ForTurns {
    Turn(TurnEffect),
    /// The turn's `llm.end` was published: its handle goes.
    Ended(TurnId),
}

/// The reason clients are given.
fn describe(f: &StoreFailure) -> String {
    if f.permanent {
        f.reason.clone()
    } else {
        format!("{} (retrying)", f.reason)
    }
}

pub(super) fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
