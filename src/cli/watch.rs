//! `zcoord watch`: mirrors the primary (sessions, active session, messages) and prints each
//! change as a line; resynchronises by itself across restarts and failovers, and says when the
//! primary is gone (missing heartbeats, its process ended, its shutdown) as soon as it is.

use std::path::Path;
use std::time::Duration;

use super::{target, ClientArgs, EXIT_OK};
use crate::liveness::Gone;
use crate::mirror::{Change, Mirror};

#[derive(Debug, clap::Args)]
pub struct WatchArgs {
    /// Also print tokens and other events, not only changes to the replica.
    #[arg(long)]
    pub events: bool,
    /// Exit after this many seconds (default: run until interrupted).
    #[arg(long)]
    pub for_secs: Option<f64>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: WatchArgs, data_dir: &Path) -> i32 {
    let t = match target::resolve(&args.client, data_dir) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let mirror = Mirror::start_watching(
        &t.rpc,
        &t.pub_,
        args.client.timeout(),
        t.secret.clone(),
        t.discovery_file.clone(),
    );
    let deadline = args
        .for_secs
        .map(|s| std::time::Instant::now() + Duration::from_secs_f64(s.max(0.0)));
    loop {
        if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
            return EXIT_OK;
        }
        let Ok(change) = mirror.changes().recv_timeout(Duration::from_millis(200)) else {
            continue;
        };
        match change {
            Change::Synced { instance_id, seq } => {
                let r = mirror.replica();
                println!(
                    "synced instance={instance_id} seq={seq} sessions={} hitl={} active={}",
                    r.sessions.len(),
                    r.hitl.len(),
                    r.active
                        .map(|a| a.to_string())
                        .unwrap_or_else(|| "-".into())
                );
            }
            Change::SessionUpserted(s) => println!(
                "session {} {:?} messages={} {:?}",
                s.id, s.title, s.message_count, s.status
            ),
            Change::SessionRemoved(id) => println!("session-removed {id}"),
            Change::ActiveChanged(a) => println!(
                "active {}",
                a.map(|a| a.to_string()).unwrap_or_else(|| "-".into())
            ),
            Change::MessageAppended(m) => {
                let preview: String = m.content.chars().take(60).collect();
                println!("message {} {:?}: {preview:?}", m.session_id, m.role);
            }
            Change::HitlPending(r) | Change::HitlResolved(r) => {
                let v = serde_json::to_value(&r).unwrap_or_default();
                println!("hitl {}", super::hitl::describe(&v));
            }
            Change::PrimaryGone { instance_id, why } => println!(
                "primary-gone instance={}: {why}; {}",
                instance_id
                    .map(|i| i.to_string())
                    .unwrap_or_else(|| "-".into()),
                if matches!(why, Gone::Replaced { .. }) {
                    "resyncing from it"
                } else {
                    "waiting for a primary"
                }
            ),
            Change::Event { topic, payload } if args.events => println!("event {topic} {payload}"),
            Change::Event { .. } => {}
        }
    }
}
