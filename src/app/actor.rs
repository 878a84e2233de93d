//! The actor: the one owner of the core while the server runs. Turns requests (served one peer
//! at a time in turn), model output and ticks into core inputs, and carries out the core's effects
//! in order: changes go to the store's writer, and every reply and event waits until the changes
//! decided before it are committed and the transport's queue has room.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::fair::RoundRobin;
use super::{now, MAX_TAKEN_REQUESTS, REQUEST_ROUND};
use crate::core::{CallContext, Core, Effect, ModelEvent};
use crate::model::runner::{spawn_turn, TurnHandle};
use crate::model::Model;
use crate::protocol::events::Event;
use crate::protocol::ids::TurnId;
use crate::store::writer::Writer;
use crate::transport::{Inbound, Outbound, Route, Transport};

/// The one owner of the core.
pub(super) struct Actor<'t> {
    pub(super) core: Core,
    pub(super) model: Arc<dyn Model>,
    pub(super) model_tx: mpsc::Sender<(TurnId, ModelEvent)>,
    pub(super) transport: &'t Transport,
    /// Running model tasks; dropping a handle stops its task.
    pub(super) turns: HashMap<TurnId, TurnHandle>,
    pub(super) writer: Writer,
    /// The number of the last change the store has committed.
    pub(super) committed: watch::Receiver<u64>,
    /// The number of the last gating change submitted: what anything sent now depends on.
    pub(super) required: u64,
    /// Replies and events waiting for the store, in order, with the change each needs.
    pub(super) held: VecDeque<(u64, Outbound)>,
    /// Requests taken from the transport's queue, served in turn by peer.
    pub(super) requests: RoundRobin<Inbound>,
}

impl Actor<'_> {
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
        // `_slot` gives the request's place back to its peer once it has been answered.
        let Inbound {
            route,
            calls,
            slot: _slot,
        } = inb;
        let ctx = CallContext {
            now: now(),
            drops: self.transport.stats.snapshot(),
        };
        if let Some(body) = self.core.answer(calls, &ctx) {
            self.reply(route, body);
        }
    }

    /// Queues a reply after the events and changes its call decided, so a reply never overtakes
    /// its events and never shows state that is not yet committed.
    pub(super) fn reply(&mut self, route: Route, body: Vec<u8>) {
        self.apply_effects();
        self.send(Outbound::Reply { route, body });
    }

    /// Sends now if everything it depends on is committed and nothing is waiting ahead of it;
    /// otherwise holds it, in order.
    pub(super) fn send(&mut self, msg: Outbound) {
        if self.held.is_empty() && *self.committed.borrow() >= self.required {
            // A full queue keeps the message here, in order, until the transport has room:
            // the loop stops taking model output meanwhile, so this stays bounded.
            if let Err(msg) = self.transport.outbound.try_send(msg) {
                self.held.push_back((0, msg));
            }
        } else {
            self.held.push_back((self.required, msg));
        }
    }

    /// Whether output is waiting for room in the transport's queue (it is over half full, or
    /// a message the store has released could not be queued). Model output then waits too.
    pub(super) fn waiting_for_room(&self) -> bool {
        self.transport.outbound.congested()
            || self
                .held
                .front()
                .is_some_and(|(needs, _)| *needs <= *self.committed.borrow())
    }

    /// Sends the held messages whose changes are now committed, as far as the transport's queue
    /// has room: the rest go when it has drained (the `room` arm of the loop calls this again).
    pub(super) fn release(&mut self) {
        let done = *self.committed.borrow_and_update();
        while let Some((needs, msg)) = self.held.pop_front() {
            if needs > done {
                self.held.push_front((needs, msg));
                break;
            }
            if let Err(msg) = self.transport.outbound.try_send(msg) {
                self.held.push_front((needs, msg));
                break;
            }
        }
    }

    pub(super) fn apply_effects(&mut self) {
        for effect in self.core.take_effects() {
            match effect {
                Effect::Persist { change, gating } => {
                    let n = self.writer.submit(change);
                    if gating {
                        self.required = n;
                    }
                }
                Effect::Publish(p) => {
                    if let Event::LlmEnd(end) = &p.event {
                        // The turn is over; dropping its handle is a no-op if the task finished.
                        self.turns.remove(&end.turn_id);
                    }
                    tracing::trace!(seq = p.seq, topic = p.event.topic(), "publish");
                    self.send(Outbound::Event {
                        seq: p.seq,
                        key: p.key,
                        body: p.body,
                    });
                }
                Effect::StartTurn(start) => {
                    tracing::debug!(turn_id = %start.turn_id, session_id = %start.session_id, "turn start");
                    let id = start.turn_id;
                    let handle = spawn_turn(self.model.clone(), start, self.model_tx.clone());
                    self.turns.insert(id, handle);
                }
                Effect::CancelTurn(turn_id) => {
                    tracing::debug!(%turn_id, "turn cancelled");
                    if let Some(h) = self.turns.remove(&turn_id) {
                        h.cancel();
                    }
                }
            }
        }
    }
}
