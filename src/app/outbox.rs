//! When a reply or an event may leave. Output goes out in the order the core decided it, and none
//! of it shows a change before the store has committed that change: each message waits for the
//! last gating change decided before it, and for everything ahead of it. What waits is held here,
//! counted in bytes; over [`MAX_HELD_BYTES`] the actor stops taking requests and model output
//! until it drains, so a slow store slows the server instead of filling its memory.
//!
//! While the store cannot commit at all (degraded), waiting would stall every client, pings and
//! heartbeats included: [`Outbox::degrade`] refuses the held replies (`store_unavailable`, their
//! change not saved, not acknowledged) and lets the held events go, and from then until
//! [`Outbox::recover`] output no longer waits for commits. Pure bookkeeping over a [`Sink`]: no
//! clock, no sockets, tested on its own.
//!
//! A reply that reads the history is held from the moment it is decided, as a placeholder
//! ([`Outbox::push_reading`]) that [`Outbox::fill`] completes when the store's thread has read
//! it: it keeps its place, so it still never overtakes the events decided before it.

use std::collections::VecDeque;

use crate::protocol::errors::RpcError;
use crate::protocol::jsonrpc::Refusal;
use crate::transport::{Outbound, OutboundSender};

/// Bytes of replies and events held for the store before the actor stops taking work. Requests
/// then wait in the transport's queue (and are refused `server_busy` when it is full), model
/// output in its own bounded queue.
pub const MAX_HELD_BYTES: usize = 64 << 20;

/// Where output goes once it may leave: straight to libzmq, which never makes it wait (what a
/// peer's queue cannot take is dropped and counted there).
pub trait Sink {
    fn send(&self, msg: Outbound);
}

impl Sink for OutboundSender {
    fn send(&self, msg: Outbound) {
        OutboundSender::send(self, msg)
    }
}

struct Held {
    /// The change that must be committed before this may leave (0: none).
    needs: u64,
    msg: Outbound,
    /// For a reply: how to refuse it instead, should the store fail before it leaves.
    refusal: Option<Refusal>,
    /// For a reply being read from the store: its ticket until [`Outbox::fill`] completes it.
    /// Nothing behind it leaves before it.
    reading: Option<u64>,
}

#[derive(Default)]
pub struct Outbox {
    held: VecDeque<Held>,
    held_bytes: usize,
    /// How many of the held messages are events: released together by one commit, they reach
    /// libzmq at once, so model output waits for them as for events libzmq holds (`actor.rs`).
    held_events: usize,
    /// The number of the last gating change decided: what output decided now depends on.
    required: u64,
    degraded: bool,
}

impl Outbox {
    /// A gating change numbered `n` was decided: output decided after it waits for it.
    pub fn gate(&mut self, n: u64) {
        self.required = n;
    }

    /// The number of the last gating change decided.
    pub fn required(&self) -> u64 {
        self.required
    }

    /// Sends `msg` if everything it depends on is committed and nothing waits ahead of it,
    /// else holds it, in order. `refusal` (for replies) is how to refuse it if the store fails.
    pub fn push(
        &mut self,
        msg: Outbound,
        refusal: Option<Refusal>,
        committed: u64,
        sink: &impl Sink,
    ) {
        let needs = if self.degraded { 0 } else { self.required };
        if self.held.is_empty() && committed >= needs {
            return sink.send(msg);
        }
        self.hold(needs, msg, refusal);
    }

    fn hold(&mut self, needs: u64, msg: Outbound, refusal: Option<Refusal>) {
        self.held_bytes += msg.size();
        self.held_events += usize::from(matches!(msg, Outbound::Event { .. }));
        self.held.push_back(Held {
            needs,
            msg,
            refusal,
            reading: None,
        });
    }

    /// Holds `msg`, a reply whose body the store's thread is reading (ticket `ticket`), in its
    /// place: it and everything behind it wait until [`Outbox::fill`] gives its body. A read
    /// changes nothing; `refusal` is for a batch whose other calls did (refused whole, its
    /// reads too, should the store fail first).
    pub fn push_reading(&mut self, ticket: u64, msg: Outbound, refusal: Option<Refusal>) {
        let needs = if self.degraded { 0 } else { self.required };
        self.hold(needs, msg, refusal);
        if let Some(h) = self.held.back_mut() {
            h.reading = Some(ticket);
        }
    }

    /// Gives the reply read under `ticket` its body; then [`Outbox::release`] may send it.
    /// Returns false if no reply waits for that ticket.
    pub fn fill(&mut self, ticket: u64, body: Vec<u8>) -> bool {
        let Some(h) = self.held.iter_mut().find(|h| h.reading == Some(ticket)) else {
            return false;
        };
        h.reading = None;
        if let Outbound::Reply {
            body: held, slot, ..
        } = &mut h.msg
        {
            self.held_bytes = self.held_bytes - held.len() + body.len();
            if let Some(slot) = slot {
                // From here the reply, not the request, is what the peer holds in flight.
                slot.resize(body.len());
            }
            *held = body;
        }
        true
    }

    /// Sends what `committed` has released, in order, up to the first message still waiting.
    pub fn release(&mut self, committed: u64, sink: &impl Sink) {
        while let Some(h) = self.held.pop_front() {
            if h.needs > committed || h.reading.is_some() {
                self.held.push_front(h);
                return;
            }
            self.held_bytes -= h.msg.size();
            self.held_events -= usize::from(matches!(h.msg, Outbound::Event { .. }));
            sink.send(h.msg);
        }
    }

    /// The store cannot commit: replies still waiting for a change are refused with `error`
    /// (their change is not saved), everything held may leave, and new output stops waiting for
    /// commits. Returns how many replies were refused.
    pub fn degrade(&mut self, error: &RpcError, committed: u64, sink: &impl Sink) -> usize {
        self.degraded = true;
        let mut refused = 0;
        for h in &mut self.held {
            if h.needs > committed {
                if let (Outbound::Reply { body, .. }, Some(refusal)) = (&mut h.msg, &h.refusal) {
                    if let Some(refusal) = refusal.encode(error) {
                        self.held_bytes = self.held_bytes - body.len() + refusal.len();
                        *body = refusal;
                        // A read still running for it is answered already: its body is dropped.
                        h.reading = None;
                        refused += 1;
                    }
                }
            }
            h.needs = 0;
            h.refusal = None;
        }
        self.release(committed, sink);
        refused
    }

    /// The store commits again: output decided from now on waits for its changes again.
    pub fn recover(&mut self) {
        self.degraded = false;
    }

    /// How many events are held.
    pub fn held_events(&self) -> usize {
        self.held_events
    }

    /// More is held than [`MAX_HELD_BYTES`]: take no new work until it drains.
    pub fn over_budget(&self) -> bool {
        self.held_bytes > MAX_HELD_BYTES
    }

    #[cfg(test)]
    pub fn held_bytes(&self) -> usize {
        self.held_bytes
    }

    /// What is still held, in order, with the change each waits for (for shutdown).
    pub fn into_held(self) -> impl Iterator<Item = (u64, Outbound)> {
        self.held.into_iter().map(|h| (h.needs, h.msg))
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::sync::Arc;

    use super::*;
    use crate::protocol::jsonrpc::Id;
    use crate::transport::Route;

    /// A sink that records what it got as text.
    #[derive(Default)]
    struct Fake {
        got: RefCell<Vec<String>>,
    }

    impl Fake {
        fn take(&self) -> Vec<String> {
            std::mem::take(&mut self.got.borrow_mut())
        }
    }

    impl Sink for Fake {
        fn send(&self, msg: Outbound) {
            let text = match &msg {
                Outbound::Reply { body, .. } => String::from_utf8_lossy(body).into_owned(),
                Outbound::Event { seq, .. } => format!("event {seq}"),
            };
            self.got.borrow_mut().push(text);
        }
    }

    fn reply(text: &str) -> Outbound {
        Outbound::Reply {
            route: Route {
                identity: b"peer".to_vec(),
                delimiter: false,
            },
            body: text.as_bytes().to_vec(),
            slot: None,
        }
    }

    fn event(seq: u64) -> Outbound {
        Outbound::Event {
            seq,
            key: Arc::from("instance.heartbeat"),
            body: Arc::from(vec![b'x'; 10]),
            charge: None,
        }
    }

    fn refusal(id: i64) -> Option<Refusal> {
        Some(Refusal::Single(Id::from(id)))
    }

    #[test]
    fn output_waits_for_its_change_and_for_everything_ahead_of_it() {
        let sink = Fake::default();
        let mut o = Outbox::default();
        o.push(event(1), None, 0, &sink);
        o.gate(5);
        o.push(reply("r1"), refusal(1), 4, &sink);
        // Depends on nothing new, but must not overtake what waits.
        o.push(event(2), None, 4, &sink);
        assert_eq!(sink.take(), ["event 1"]);
        assert!(o.held_bytes() > 0);
        assert_eq!(o.held_events(), 1, "the reply is not an event");
        o.release(4, &sink);
        assert!(sink.take().is_empty());
        o.release(5, &sink);
        assert_eq!(sink.take(), ["r1", "event 2"]);
        assert_eq!(o.held_bytes(), 0);
        assert_eq!(o.held_events(), 0);
    }

    #[test]
    fn a_failing_store_refuses_the_waiting_replies_and_lets_the_rest_go() {
        let sink = Fake::default();
        let mut o = Outbox::default();
        o.gate(3);
        o.push(reply("{\"result\":\"created\"}"), refusal(7), 2, &sink);
        o.push(event(9), None, 2, &sink);
        // A read waiting behind them has no refusal: it is answered as it is.
        o.push(reply("{\"result\":\"pong\"}"), None, 2, &sink);
        assert!(sink.take().is_empty(), "everything waits for change 3");
        let error = RpcError::store_unavailable("disk full", Some(false));
        assert_eq!(o.degrade(&error, 2, &sink), 1);
        let got = sink.take();
        assert_eq!(got.len(), 3);
        let v: serde_json::Value = serde_json::from_str(&got[0]).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["error"]["data"]["kind"], "store_unavailable");
        assert_eq!(v["error"]["data"]["saved"], false);
        assert_eq!(got[2], "{\"result\":\"pong\"}");
        assert_eq!(got[1], "event 9");
        // While degraded, new output does not wait for commits.
        o.gate(4);
        o.push(event(10), None, 2, &sink);
        assert_eq!(sink.take(), ["event 10"]);
        // Once recovered, it does again.
        o.recover();
        o.gate(5);
        o.push(event(11), None, 4, &sink);
        assert!(sink.take().is_empty());
        o.release(5, &sink);
        assert_eq!(sink.take(), ["event 11"]);
    }

    #[test]
    fn a_reply_being_read_keeps_its_place_until_it_is_filled() {
        let sink = Fake::default();
        let mut o = Outbox::default();
        o.push(event(1), None, 0, &sink);
        o.push_reading(7, reply(""), None);
        o.push(event(2), None, 0, &sink);
        assert_eq!(sink.take(), ["event 1"]);
        assert!(!o.fill(8, b"other".to_vec()), "unknown ticket");
        o.release(0, &sink);
        assert!(sink.take().is_empty());
        assert!(o.fill(7, b"page".to_vec()));
        assert_eq!(o.held_bytes(), 4 + 4 + 10 + "instance.heartbeat".len());
        o.release(0, &sink);
        assert_eq!(sink.take(), ["page", "event 2"]);
        assert_eq!(o.held_bytes(), 0);
        // A failing store does not refuse it: it changes nothing.
        o.gate(3);
        o.push_reading(9, reply(""), None);
        let error = RpcError::store_unavailable("disk full", Some(false));
        assert_eq!(o.degrade(&error, 2, &sink), 0);
        assert!(sink.take().is_empty(), "still waiting for its read");
        o.fill(9, b"late page".to_vec());
        o.release(2, &sink);
        assert_eq!(sink.take(), ["late page"]);
    }

    #[test]
    fn held_bytes_are_counted_and_the_budget_is_felt() {
        let sink = Fake::default();
        let mut o = Outbox::default();
        let big = "x".repeat(1 << 20);
        o.gate(1);
        for _ in 0..63 {
            o.push(reply(&big), None, 0, &sink);
        }
        assert!(!o.over_budget());
        o.push(reply(&big), None, 0, &sink);
        o.push(reply(&big), None, 0, &sink);
        assert!(o.over_budget());
        assert!(sink.take().is_empty(), "all of it waits for change 1");
        o.release(1, &sink);
        assert_eq!(sink.take().len(), 65);
        assert_eq!(o.held_bytes(), 0);
        assert!(!o.over_budget());
    }
}
