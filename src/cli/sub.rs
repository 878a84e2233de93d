//! `zcoord sub [<prefix>...] [--session ID]`: prints each event's envelope as one JSON line.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use super::{report, target, ClientArgs, EXIT_OK};
use crate::client::Subscriber;
use crate::protocol::events::topic;

/// Topics whose key carries a session id.
const SESSION_TOPICS: &[&str] = &[
    topic::SESSION_UPDATE,
    topic::SESSION_ACTIVATED,
    topic::SESSION_DELETED,
    topic::MESSAGE_APPEND,
    topic::LLM_START,
    topic::LLM_TOKEN,
    topic::LLM_END,
    topic::TOOL_START,
    topic::TOOL_END,
];

#[derive(Debug, clap::Args)]
pub struct SubArgs {
    /// Key prefixes to subscribe to, e.g. `llm.token` or `session.` (default: everything).
    pub prefixes: Vec<String>,
    /// Only this session's events (`<topic>/<id>` keys).
    #[arg(long)]
    pub session: Option<String>,
    /// Exit after this many events.
    #[arg(long)]
    pub count: Option<u64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The subscription prefixes for the given arguments.
pub fn prefixes(args: &SubArgs) -> Vec<String> {
    match &args.session {
        Some(id) if args.prefixes.is_empty() => {
            SESSION_TOPICS.iter().map(|t| format!("{t}/{id}")).collect()
        }
        Some(id) => args.prefixes.iter().map(|p| format!("{p}/{id}")).collect(),
        None if args.prefixes.is_empty() => vec![String::new()],
        None => args.prefixes.clone(),
    }
}

pub fn run(args: SubArgs, data_dir: &Path) -> i32 {
    let t = match target::resolve(&args.client, data_dir) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let prefixes = prefixes(&args);
    let refs: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let ctx = zmq::Context::new();
    // Wait for the welcome so that nothing published after this point is missed, and say so.
    // (`recv` skips other clients' welcomes, which a subscription to everything also gets.)
    let sub = match Subscriber::connect_live_with(
        &ctx,
        &t.pub_,
        &refs,
        args.client.timeout(),
        t.secret.as_deref(),
    ) {
        Ok((s, seq)) => {
            eprintln!("live: every event after seq {seq} follows");
            s
        }
        Err(e) => return report(&e),
    };
    let mut seen = 0u64;
    let stdout = std::io::stdout();
    loop {
        if args.count.is_some_and(|n| seen >= n) {
            return EXIT_OK;
        }
        match sub.recv(Duration::from_secs(3600)) {
            Ok(Some(ev)) => {
                seen += 1;
                let mut out = stdout.lock();
                let _ = out.write_all(&ev.raw);
                let _ = out.write_all(b"\n");
                let _ = out.flush();
            }
            Ok(None) => {}
            Err(e) => return report(&e),
        }
    }
}
