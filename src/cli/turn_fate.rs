//! What `send` can honestly say about its turn once the primary running it is gone: it cannot
//! know how the old primary ended the turn, only what a new primary kept. It waits a little for
//! one to take over (a standby, `serve --standby`), then asks it for the turn's reply: a complete
//! reply is printed and counts as success; anything else (the reply cut off, no reply, no
//! message) is said as it is and exits 1; no new primary at all exits 3.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::target::Target;
use super::{EXIT_ERROR, EXIT_OK, EXIT_UNREACHABLE};
use crate::client::RpcClient;
use crate::discovery;
use crate::liveness::Gone;
use crate::protocol::ids::InstanceId;
use crate::protocol::methods::SendResult;

/// How long to wait for another primary to take over. A standby takes the lock as soon as the
/// old primary's process ends and serves within about a second.
pub const TAKEOVER_WAIT: Duration = Duration::from_secs(5);
/// One attempt to reach the new primary.
const PING_TIMEOUT: Duration = Duration::from_millis(500);

/// Says the primary is gone and why, then what a new one kept of the turn; returns the exit code.
pub fn report(
    ctx: &zmq::Context,
    t: &Target,
    sent: &SendResult,
    old: Option<InstanceId>,
    why: &Gone,
) -> i32 {
    let old_name = old.map(|i| i.to_string()).unwrap_or_else(|| "?".into());
    eprintln!("\nthe primary (instance {old_name}) is gone: {why}");
    let Some((mut rpc, new)) = new_primary(ctx, t, old) else {
        eprintln!(
            "no other primary took over within {TAKEOVER_WAIT:?}: how turn {} ended is unknown",
            sent.turn_id
        );
        return EXIT_UNREACHABLE;
    };
    eprintln!(
        "instance {new} has taken over; it cannot say how the old primary ended turn {}, only what it kept",
        sent.turn_id
    );
    let turn = sent.turn_id.to_string();
    let list = rpc.call(
        "message.list",
        json!({"session_id": sent.session_id, "after": sent.message_id, "limit": 1000}),
    );
    let reply = list.ok().and_then(|l| {
        l["messages"].as_array().and_then(|ms| {
            ms.iter()
                .rev()
                .find(|m| m["turn_id"] == turn.as_str() && m["role"] == "assistant")
                .cloned()
        })
    });
    match reply {
        Some(m) if m["status"] == "complete" => {
            println!("\n--- the reply, as the new primary has it:");
            println!("{}", m["content"].as_str().unwrap_or(""));
            EXIT_OK
        }
        Some(m) => {
            eprintln!(
                "the new primary has the reply cut off (status {}): the turn did not complete",
                m["status"]
            );
            EXIT_ERROR
        }
        None => {
            let kept = rpc
                .call(
                    "message.get",
                    json!({"session_id": sent.session_id, "message_id": sent.message_id}),
                )
                .is_ok();
            if kept {
                eprintln!(
                    "the new primary has the message ({}) but no reply: the turn was cut off",
                    sent.message_id
                );
            } else {
                eprintln!(
                    "the new primary does not have the message ({}): it was lost with the old primary",
                    sent.message_id
                );
            }
            EXIT_ERROR
        }
    }
}

/// The first primary other than `old` that answers `instance.ping` within [`TAKEOVER_WAIT`]: at
/// the endpoints the discovery file names now (a new primary rewrites it), else the same ones.
fn new_primary(
    ctx: &zmq::Context,
    t: &Target,
    old: Option<InstanceId>,
) -> Option<(RpcClient, InstanceId)> {
    let deadline = Instant::now() + TAKEOVER_WAIT;
    while Instant::now() < deadline {
        let (rpc, secret) = match t.discovery_file.as_deref().map(discovery::read) {
            Some(Ok(d)) => (d.endpoints.rpc, d.secret.or(t.secret.clone())),
            _ => (t.rpc.clone(), t.secret.clone()),
        };
        if let Ok(mut c) = RpcClient::connect_with(ctx, &rpc, PING_TIMEOUT, secret.as_deref()) {
            let id = c
                .call("instance.ping", json!({}))
                .ok()
                .and_then(|p: Value| serde_json::from_value(p["instance_id"].clone()).ok());
            if let Some(id) = id.filter(|id| Some(*id) != old) {
                return Some((c, id));
            }
        }
        // The ping's own timeout paces the loop while nothing answers; this paces a quick
        // refusal (the old primary's file, a socket not bound yet).
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}
