//! A reply that waits for reads of the history, on its way through the store (its thread, or the
//! thread that asks for a store that commits at once), and back to the actor as a [`ReadDone`]
//! for the outbox place that holds it. Whatever becomes of the read, exactly one `ReadDone` comes
//! back, so that place, and everything queued behind it, is never stuck.

use tokio::sync::mpsc;

use crate::core::answer::Answer;
use crate::core::read::MessageRows;
use crate::protocol::errors::RpcError;
use crate::protocol::jsonrpc::Refusal;

/// A reply the store has read, for the outbox place that waits for it.
pub(super) struct ReadDone {
    pub ticket: u64,
    pub body: Vec<u8>,
}

/// An answer that waits for reads.
pub(super) struct ReplyRead {
    answer: Option<Answer>,
    /// The calls' ids, to answer them with an error should the read stop half-way (a bug that
    /// panicked in it: the store is failed for good then, see `store::writer`); `None` once sent.
    ids: Option<Refusal>,
    ticket: u64,
    tx: mpsc::UnboundedSender<ReadDone>,
}

impl ReplyRead {
    /// `ids` names the calls `answer` answers (`Calls::refusal`).
    pub(super) fn new(
        answer: Answer,
        ids: Option<Refusal>,
        ticket: u64,
        tx: mpsc::UnboundedSender<ReadDone>,
    ) -> Self {
        ReplyRead {
            answer: Some(answer),
            ids,
            ticket,
            tx,
        }
    }

    pub(super) fn run(mut self, rows: &mut dyn MessageRows) {
        if let Some(answer) = self.answer.take() {
            let body = answer.finish(rows);
            self.ids = None;
            self.send(body);
        }
    }

    fn send(&self, body: Vec<u8>) {
        let _ = self.tx.send(ReadDone {
            ticket: self.ticket,
            body,
        });
    }
}

impl Drop for ReplyRead {
    /// Dropped unrun (the store's thread is gone), the reads are refused; dropped half-way
    /// through (a read panicked), every call gets an internal error. Either way it answers.
    fn drop(&mut self) {
        let body = match (self.answer.take(), self.ids.take()) {
            (Some(answer), _) => answer.fail(&RpcError::internal(
                "the store's thread is gone; restart the server",
            )),
            (None, Some(ids)) => {
                let error = RpcError::internal("a read of the history failed; restart the server");
                ids.encode(&error).unwrap_or_default()
            }
            (None, None) => return,
        };
        self.send(body);
    }
}

#[cfg(test)]
mod tests {
    use std::ops::Range;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use serde_json::Value;

    use super::*;
    use crate::core::persist::MessageRecord;
    use crate::core::read::{Direction, RowsFailed};
    use crate::core::testing;
    use crate::protocol::ids::{MessageId, SessionId};
    use crate::protocol::jsonrpc::{decode, Calls, Incoming};

    /// Rows holding nothing, or (`panics`) whose reading panics, as a bug would.
    struct Rows {
        panics: bool,
    }

    impl MessageRows for Rows {
        fn position(&mut self, _: SessionId, _: MessageId) -> Result<Option<u64>, RowsFailed> {
            assert!(!self.panics, "a bug in a read");
            Ok(None)
        }
        fn scan(
            &mut self,
            _: SessionId,
            _: Range<u64>,
            _: Direction,
            _: &mut dyn FnMut(MessageRecord) -> bool,
        ) -> Result<(), RowsFailed> {
            assert!(!self.panics, "a bug in a read");
            Ok(())
        }
    }

    fn calls(body: &str) -> Calls {
        match decode(body.as_bytes()) {
            Incoming::Single(Ok(req)) => Calls::Single(req),
            _ => panic!("one request: {body}"),
        }
    }

    /// A `message.list` (id 7) the core answers with a read, as a job for the store.
    fn job() -> (ReplyRead, mpsc::UnboundedReceiver<ReadDone>) {
        let mut core = testing::core();
        let ctx = testing::ctx(0);
        let created = core
            .answer(
                calls(r#"{"jsonrpc":"2.0","id":1,"method":"session.create","params":{}}"#),
                &ctx,
            )
            .expect("an answer")
            .ready()
            .expect("no read");
        let created: Value = serde_json::from_slice(&created).unwrap();
        let session = created["result"]["id"].as_str().expect("a session id");
        let list = calls(&format!(
            r#"{{"jsonrpc":"2.0","id":7,"method":"message.list","params":{{"session_id":"{session}"}}}}"#
        ));
        let ids = list.refusal();
        let answer = core.answer(list, &ctx).expect("an answer");
        let answer = answer.ready().expect_err("message.list reads the history");
        let (tx, rx) = mpsc::unbounded_channel();
        (ReplyRead::new(answer, ids, 3, tx), rx)
    }

    fn reply(done: ReadDone) -> Value {
        assert_eq!(done.ticket, 3);
        serde_json::from_slice(&done.body).expect("a JSON-RPC reply")
    }

    #[test]
    fn a_read_that_runs_is_answered_once() {
        let (job, mut rx) = job();
        job.run(&mut Rows { panics: false });
        let r = reply(rx.try_recv().expect("answered"));
        assert_eq!(
            (r["id"].as_u64(), r["result"].is_object()),
            (Some(7), true),
            "{r}"
        );
        assert!(rx.try_recv().is_err(), "answered twice");
    }

    #[test]
    fn a_read_never_run_is_refused() {
        let (job, mut rx) = job();
        drop(job);
        let r = reply(rx.try_recv().expect("answered"));
        assert_eq!(r["id"], 7);
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("thread is gone"),
            "{r}"
        );
        assert!(rx.try_recv().is_err(), "answered twice");
    }

    #[test]
    fn a_read_that_panics_half_way_is_still_answered() {
        let (job, mut rx) = job();
        let ran = catch_unwind(AssertUnwindSafe(|| job.run(&mut Rows { panics: true })));
        assert!(ran.is_err(), "the read panicked");
        let r = reply(rx.try_recv().expect("answered despite the panic"));
        assert_eq!(
            (r["id"].as_u64(), r["error"]["code"].as_i64()),
            (Some(7), Some(-32603)),
            "{r}"
        );
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("read of the history failed"),
            "{r}"
        );
        assert!(rx.try_recv().is_err(), "answered twice");
    }
}
