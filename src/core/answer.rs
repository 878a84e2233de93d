//! One decoded request frame through the core to the bytes of its answer: method parsing, the
//! call, and the JSON-RPC encoding. The server's actor and the fuzz harness both call this, so the
//! fuzzer covers exactly the code the server runs. Reads no clock: the caller passes the context.

use super::state::{CallContext, Core};
use crate::protocol::errors::RpcError;
use crate::protocol::jsonrpc::{encode_result, join_batch, Calls, Request, Response};
use crate::protocol::methods::Call;

impl Core {
    /// Answers every call of one frame; `None` when nothing goes back (notifications only).
    /// The events and changes the calls decide are queued as effects, before the answer is
    /// returned, so the caller can send the answer after them.
    pub fn answer(&mut self, calls: Calls, ctx: &CallContext) -> Option<Vec<u8>> {
        match calls {
            Calls::Single(req) => self.answer_one(req, ctx),
            Calls::Batch(items) => {
                let answers: Vec<Vec<u8>> = items
                    .into_iter()
                    .filter_map(|item| match item {
                        Ok(req) => self.answer_one(req, ctx),
                        Err(resp) => Some(resp.to_bytes()),
                    })
                    .collect();
                join_batch(&answers)
            }
        }
    }

    /// One call; `None` for a notification (which still runs).
    fn answer_one(&mut self, req: Request, ctx: &CallContext) -> Option<Vec<u8>> {
        let Request { id, method, params } = req;
        let outcome = Call::parse(&method, params)
            .and_then(|call| self.call(call, ctx).map_err(RpcError::from));
        let id = id?;
        Some(match outcome {
            Ok(reply) => encode_result(&id, &reply),
            Err(e) => Response::err(id, e).to_bytes(),
        })
    }
}
