//! `zcoord send [--session ID] [--queue] <text | - | --file PATH>`: sends a message, prints the
//! reply's tokens as they stream (tool calls and requests for a person on stderr; at a terminal it
//! asks the person itself), exits at `llm.end`: 0 when the turn completed, 1 otherwise. With
//! `--queue`, a message to a busy session waits for its turn (the wait does not count as idle);
//! discarded from the queue, it exits 1. Ctrl-C interrupts the turn it started
//! (`session.interrupt`), waits for its `llm.end` and exits 130; a second Ctrl-C exits at once.
//! A primary that dies meanwhile (no heartbeat for three intervals, its process gone, or another
//! instance publishing) is said so at once; what a new primary kept is in [`super::turn_fate`].
//!
//! PUB/SUB can lose the first events of a fresh subscription (the slow joiner). Tokens are printed
//! as they come; if any were missed, the complete reply from the assistant `message.append` is
//! printed after them, marked as such, so the output is never silently incomplete.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::interrupt::CtrlC;
use super::{
    hitl, input, report, target, turn_fate, ClientArgs, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK,
    EXIT_UNREACHABLE, EXIT_USAGE,
};
use crate::client::{ClientError, RpcClient, Subscriber};
use crate::liveness::{self, Liveness};
use crate::protocol::events::topic;
use crate::protocol::ids::InstanceId;
use crate::protocol::methods::SendResult;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The message text; `-` reads it from stdin (at most 256 KiB, the server's limit).
    #[arg(required_unless_present = "file")]
    pub text: Option<String>,
    /// Read the message text from this file (at most 256 KiB, the server's limit).
    #[arg(long, conflicts_with = "text")]
    pub file: Option<PathBuf>,
    /// Session to send to (default: a new session).
    #[arg(long)]
    pub session: Option<String>,
    /// Idempotency key: sending again with the same key starts nothing new.
    #[arg(long)]
    pub request_id: Option<String>,
    /// The model for this turn alone, by name (`zcoord call model.list` lists them).
    #[arg(long)]
    pub model: Option<String>,
    /// If the session's turn is running, queue the message to run after it (and after what is
    /// queued already) instead of failing with session_busy.
    #[arg(long)]
    pub queue: bool,
    /// Give up if no event for the turn arrives for this long, in seconds (default: wait as
    /// long as the primary lives; a dead one is noticed from its heartbeats).
    #[arg(long)]
    pub idle_timeout: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// How long, after Ctrl-C, to wait for the interrupted turn's `llm.end`.
const INTERRUPT_WAIT: Duration = Duration::from_secs(5);

pub fn run(args: SendArgs, data_dir: &Path) -> i32 {
    let text = match input::message_text(args.text.as_deref(), args.file.as_deref()) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let t = match target::resolve(&args.client, data_dir) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let ctrl_c = CtrlC::install();
    let ctx = zmq::Context::new();
    match stream(&ctx, &t, &args, text, &ctrl_c) {
        Ok(code) => code,
        Err(e) => report(&e),
    }
}

/// Where a Ctrl-C has got to.
enum Interrupt {
    NotAsked,
    /// `session.interrupt` was sent; the turn's `llm.end` is awaited until then.
    Sent {
        until: Instant,
    },
}

fn stream(
    ctx: &zmq::Context,
    t: &target::Target,
    args: &SendArgs,
    text: String,
    ctrl_c: &CtrlC,
) -> Result<i32, ClientError> {
    let prefixes = [
        topic::LLM_TOKEN,
        topic::LLM_END,
        topic::TOOL_START,
        topic::TOOL_END,
        topic::MESSAGE_APPEND,
        topic::HITL_PENDING,
        topic::MESSAGE_DEQUEUED,
        // How a dead primary is noticed (not `instance.`: that would take every welcome too).
        topic::INSTANCE_HEARTBEAT,
        topic::INSTANCE_SHUTDOWN,
    ];
    let sub = Subscriber::connect_with(ctx, &t.pub_, &prefixes, t.secret.as_deref())?;
    let mut rpc = RpcClient::connect_with(ctx, &t.rpc, args.client.timeout(), t.secret.as_deref())?;
    // A round trip gives the subscription time to reach the server (a miss is repaired below),
    // and says which instance to follow and how often it beats.
    let info = rpc.call("instance.info", json!({}))?;
    let instance: Option<InstanceId> = serde_json::from_value(info["instance_id"].clone()).ok();
    let mut params = json!({"content": text});
    if let Some(s) = &args.session {
        params["session_id"] = json!(s);
    }
    if let Some(r) = &args.request_id {
        params["request_id"] = json!(r);
    }
    if let Some(m) = &args.model {
        params["model"] = json!(m);
    }
    if args.queue {
        params["when_busy"] = json!("queue");
    }
    if ctrl_c.pressed() {
        eprintln!("interrupted: nothing was sent");
        return Ok(EXIT_INTERRUPTED);
    }
    let sent: SendResult = serde_json::from_value(rpc.call("message.send", params)?)
        .map_err(|e| ClientError::BadReply(e.to_string()))?;
    eprintln!("session {} turn {}", sent.session_id, sent.turn_id);
    if let Some(position) = sent.position.filter(|_| sent.queued) {
        eprintln!("queued at position {position}: waiting for the turns before it");
    }
    let turn = sent.turn_id.to_string();
    // Waiting in the queue is not being idle: the turns before it may take any time.
    let mut queued = sent.queued;

    let idle = args.idle_timeout.map(Duration::from_secs);
    let mut live = match instance {
        Some(i) => Liveness::of(
            i,
            info["heartbeat_interval_ms"].as_u64().unwrap_or(0),
            Instant::now(),
        ),
        None => Liveness::new(Instant::now()),
    };
    let mut last_event = Instant::now();
    let mut next_index = 0u64;
    let mut gaps = false;
    let mut end: Option<Value> = None;
    let mut interrupt = Interrupt::NotAsked;
    let out = std::io::stdout();
    loop {
        if ctrl_c.pressed() && matches!(interrupt, Interrupt::NotAsked) && end.is_none() {
            if queued {
                // Interrupting the session now would end somebody else's turn.
                eprintln!(
                    "\ninterrupted: the message is still queued and will run later (session.interrupt with clear_queue discards the whole queue)"
                );
                return Ok(EXIT_INTERRUPTED);
            }
            eprintln!("\ninterrupting the turn (Ctrl-C again to exit at once)");
            let asked = rpc.call("session.interrupt", json!({"session_id": sent.session_id}));
            if let Err(e) = asked {
                eprintln!("\ninterrupted, but the turn was not: {e}");
                return Ok(EXIT_INTERRUPTED);
            }
            interrupt = Interrupt::Sent {
                until: Instant::now() + INTERRUPT_WAIT,
            };
        }
        if let Interrupt::Sent { until } = interrupt {
            if Instant::now() >= until && end.is_none() {
                eprintln!(
                    "\ninterrupted: session.interrupt was sent, but the turn's end was not seen within {INTERRUPT_WAIT:?}"
                );
                return Ok(EXIT_INTERRUPTED);
            }
        }
        let received = sub.recv(Duration::from_millis(200))?;
        let gone = match &received {
            Some(ev) => live.heard(&ev.envelope, Instant::now()),
            None => {
                let local = t
                    .discovery_file
                    .as_deref()
                    .and_then(|f| liveness::local_process_runs(f, live.instance()));
                live.check(Instant::now(), local)
            }
        };
        if let Some(why) = gone.filter(|_| end.is_none()) {
            return Ok(turn_fate::report(ctx, t, &sent, instance, &why));
        }
        let Some(ev) = received else {
            if let Some(idle) = idle.filter(|i| !queued && last_event.elapsed() > *i) {
                eprintln!("\nerror: no event for {idle:?}");
                return Ok(EXIT_UNREACHABLE);
            }
            // After llm.end the assistant message follows at once; if it never comes (nothing
            // streamed), stop waiting.
            if end.is_some() && last_event.elapsed() > Duration::from_secs(1) {
                break;
            }
            continue;
        };
        let p = &ev.envelope.payload;
        if p["turn_id"].as_str() != Some(turn.as_str()) {
            continue;
        }
        last_event = Instant::now();
        queued = false;
        match ev.envelope.topic.as_str() {
            topic::MESSAGE_DEQUEUED if p["reason"] != "started" => {
                eprintln!(
                    "the queued message was discarded ({}): it never ran",
                    p["reason"]
                );
                return Ok(EXIT_ERROR);
            }
            topic::LLM_TOKEN => {
                let index = p["index"].as_u64().unwrap_or(0);
                gaps |= index != next_index;
                next_index = index + 1;
                let mut o = out.lock();
                let _ = o.write_all(p["token"].as_str().unwrap_or("").as_bytes());
                let _ = o.flush();
            }
            topic::TOOL_START => eprintln!("\n[tool {} {}]", p["tool_name"], p["params"]),
            // The turn waits for a person: show it, and ask at a terminal (not once the person
            // has asked for the turn to stop).
            topic::HITL_PENDING if !ctrl_c.pressed() => {
                hitl::prompt(&mut rpc, p);
                last_event = Instant::now();
            }
            topic::TOOL_END => eprintln!(
                "[tool {} {}: {}]",
                p["tool_name"],
                if p["is_error"] == json!(true) {
                    "failed"
                } else {
                    "ok"
                },
                p["result"]
            ),
            topic::LLM_END => {
                end = Some(p.clone());
                if !gaps {
                    break;
                }
            }
            topic::MESSAGE_APPEND if p["role"] == "assistant" => {
                if gaps {
                    println!("\n--- some tokens were missed; the complete reply:");
                    print!("{}", p["content"].as_str().unwrap_or(""));
                }
                break;
            }
            _ => {}
        }
    }
    println!();
    let end = end.unwrap_or_default();
    let reason = end["reason"].as_str();
    if matches!(interrupt, Interrupt::Sent { .. }) {
        match reason {
            Some("interrupted") => eprintln!("interrupted: the turn was stopped (Ctrl-C)"),
            other => eprintln!(
                "interrupted (Ctrl-C), but the turn had already ended: {}",
                other.unwrap_or("?")
            ),
        }
        return Ok(EXIT_INTERRUPTED);
    }
    match reason {
        Some("completed") => Ok(EXIT_OK),
        reason => {
            eprintln!(
                "turn ended: {}{}",
                reason.unwrap_or("?"),
                end["error"]
                    .as_str()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            );
            Ok(EXIT_ERROR)
        }
    }
}
