//! Whether the primary a subscriber follows is still there, decided from what the subscriber
//! hears: the primary publishes `instance.heartbeat` every interval (its payload and
//! `instance.info` say how long, `heartbeat_interval_ms`), so three intervals without a single
//! event mean it is gone; `instance.shutdown` says so at once; events from another instance mean
//! a standby took over; and when the discovery file is on this machine, a pid that no longer runs
//! says so without waiting. Pure: time and the pid check come in as arguments, so this decides and
//! never waits. The subscriber must take `instance.` events (heartbeats) for the silence rule.

use std::path::Path;
use std::time::{Duration, Instant};

use zcoord_protocol::events::{topic, ReceivedEnvelope};
use zcoord_protocol::ids::InstanceId;

use crate::discovery;

/// Heartbeat intervals of silence after which the primary counts as gone (PROTOCOL §10).
pub const MISSED_HEARTBEATS: u32 = 3;
/// The interval assumed until the primary says (the server's default).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Why the primary counts as gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// It published `instance.shutdown`: it is stopping on purpose.
    ShutDown,
    /// Not one event for this long: more than [`MISSED_HEARTBEATS`] intervals.
    Silent { for_: Duration },
    /// The process the local discovery file names has ended.
    ProcessEnded { pid: u32 },
    /// Events now come from another instance: a standby (or a restart) took over.
    Replaced { by: InstanceId },
}

impl std::fmt::Display for Gone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gone::ShutDown => write!(f, "it announced its shutdown"),
            Gone::Silent { for_ } => write!(
                f,
                "no heartbeat for {:.1} s ({MISSED_HEARTBEATS} heartbeat intervals)",
                for_.as_secs_f64()
            ),
            Gone::ProcessEnded { pid } => write!(f, "its process (pid {pid}) has ended"),
            Gone::Replaced { by } => write!(f, "instance {by} has taken over"),
        }
    }
}

/// What is known of one primary's liveness.
#[derive(Debug, Clone)]
pub struct Liveness {
    instance: Option<InstanceId>,
    interval: Duration,
    last_heard: Instant,
    shut_down: bool,
}

impl Liveness {
    /// Starts following whichever instance is heard first; silence counts from `now`.
    pub fn new(now: Instant) -> Liveness {
        Liveness {
            instance: None,
            interval: DEFAULT_INTERVAL,
            last_heard: now,
            shut_down: false,
        }
    }

    /// Follows `instance`, whose interval (`instance.info` `heartbeat_interval_ms`) is known.
    pub fn of(instance: InstanceId, interval_ms: u64, now: Instant) -> Liveness {
        let mut l = Liveness::new(now);
        l.instance = Some(instance);
        l.learn(interval_ms);
        l
    }

    /// The instance followed, once known.
    pub fn instance(&self) -> Option<InstanceId> {
        self.instance
    }

    /// The silence after which the primary counts as gone.
    pub fn deadline(&self) -> Duration {
        self.interval * MISSED_HEARTBEATS
    }

    /// Takes one received event into account; `Some` when it says the primary is gone
    /// (`instance.shutdown`, or an event of another instance, which is then followed).
    pub fn heard(&mut self, env: &ReceivedEnvelope, now: Instant) -> Option<Gone> {
        let from = env.instance_id;
        if self.instance.is_some_and(|i| i != from) {
            *self = Liveness::new(now);
            self.instance = Some(from);
            self.note(env);
            return Some(Gone::Replaced { by: from });
        }
        self.instance = Some(from);
        self.last_heard = now;
        self.note(env);
        self.shut_down.then_some(Gone::ShutDown)
    }

    fn note(&mut self, env: &ReceivedEnvelope) {
        match env.topic.as_str() {
            topic::INSTANCE_HEARTBEAT => {
                if let Some(ms) = env.payload["heartbeat_interval_ms"].as_u64() {
                    self.learn(ms);
                }
            }
            topic::INSTANCE_SHUTDOWN => self.shut_down = true,
            _ => {}
        }
    }

    /// 0 (a server older than the field) keeps the interval assumed so far.
    fn learn(&mut self, interval_ms: u64) {
        if interval_ms > 0 {
            self.interval = Duration::from_millis(interval_ms);
        }
    }

    /// Whether the primary counts as gone at `now`. `process_runs` is the local pid check
    /// ([`local_process_runs`]): `None` when there is nothing to check (a remote primary).
    pub fn check(&self, now: Instant, process_runs: Option<ProcessCheck>) -> Option<Gone> {
        if self.shut_down {
            return Some(Gone::ShutDown);
        }
        if let Some(ProcessCheck::Ended { pid }) = process_runs {
            return Some(Gone::ProcessEnded { pid });
        }
        let silent = now.saturating_duration_since(self.last_heard);
        (silent > self.deadline()).then_some(Gone::Silent { for_: silent })
    }
}

/// What the discovery file on this machine says of an instance's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessCheck {
    Runs,
    Ended { pid: u32 },
}

/// Reads the discovery file at `path`: if it names `instance`, whether its pid still runs.
/// `None` when it cannot tell (no file, another instance's file, not this instance yet known).
/// Only meaningful for a file written on this machine.
pub fn local_process_runs(path: &Path, instance: Option<InstanceId>) -> Option<ProcessCheck> {
    let d = discovery::read(path).ok()?;
    if Some(d.instance_id) != instance {
        return None;
    }
    Some(if discovery::pid_may_be_alive(d.pid) {
        ProcessCheck::Runs
    } else {
        ProcessCheck::Ended { pid: d.pid }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(instance: u128, topic: &str, payload: serde_json::Value) -> ReceivedEnvelope {
        serde_json::from_value(json!({
            "seq": 1,
            "topic": topic,
            "instance_id": InstanceId(uuid::Uuid::from_u128(instance)),
            "timestamp": "2026-11-21T20:54:32Z",
            "payload": payload,
        }))
        .unwrap()
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn three_silent_intervals_mean_gone_and_any_event_resets_the_count() {
        let t0 = Instant::now();
        let mut l = Liveness::new(t0);
        assert_eq!(l.deadline(), DEFAULT_INTERVAL * 3, "the default until told");
        let hb = env(
            1,
            "instance.heartbeat",
            json!({"heartbeat_interval_ms": 100}),
        );
        assert_eq!(l.heard(&hb, t0), None);
        assert_eq!(l.deadline(), 300 * MS, "learned from the heartbeat");
        assert_eq!(
            l.check(t0 + 300 * MS, None),
            None,
            "exactly three is not more"
        );
        assert_eq!(
            l.check(t0 + 301 * MS, None),
            Some(Gone::Silent { for_: 301 * MS })
        );
        let token = env(1, "llm.token", json!({}));
        assert_eq!(l.heard(&token, t0 + 250 * MS), None);
        assert_eq!(
            l.check(t0 + 500 * MS, None),
            None,
            "a token counts as a sign of life"
        );
        let old = env(1, "instance.heartbeat", json!({}));
        l.heard(&old, t0 + 500 * MS);
        assert_eq!(
            l.deadline(),
            300 * MS,
            "a server without the field keeps the interval"
        );
    }

    #[test]
    fn shutdown_a_new_instance_and_an_ended_process_are_gone_at_once() {
        let t0 = Instant::now();
        let mut l = Liveness::of(InstanceId(uuid::Uuid::from_u128(1)), 5000, t0);
        assert_eq!(l.check(t0, Some(ProcessCheck::Runs)), None);
        assert_eq!(
            l.check(t0, Some(ProcessCheck::Ended { pid: 7 })),
            Some(Gone::ProcessEnded { pid: 7 })
        );
        let by = InstanceId(uuid::Uuid::from_u128(2));
        assert_eq!(
            l.heard(&env(2, "instance.heartbeat", json!({})), t0),
            Some(Gone::Replaced { by })
        );
        assert_eq!(l.instance(), Some(by), "the new one is followed");
        assert_eq!(l.heard(&env(2, "llm.token", json!({})), t0), None);
        assert_eq!(
            l.heard(&env(2, "instance.shutdown", json!({})), t0),
            Some(Gone::ShutDown)
        );
        assert_eq!(l.check(t0, None), Some(Gone::ShutDown));
    }

    #[test]
    fn the_local_file_is_read_only_for_the_instance_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = discovery::path_in(dir.path());
        let me = InstanceId(uuid::Uuid::from_u128(1));
        assert_eq!(local_process_runs(&path, Some(me)), None, "no file");
        let mut d = discovery::Discovery {
            instance_id: me,
            pid: std::process::id(),
            endpoints: zcoord_protocol::methods::Endpoints {
                rpc: "ipc:///x".into(),
                pub_: "ipc:///y".into(),
            },
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            protocol_version: 1,
            version: "0".into(),
            secret: None,
            curve_public_key: None,
            workspace: None,
        };
        discovery::write(&path, &d).unwrap();
        assert_eq!(
            local_process_runs(&path, Some(me)),
            Some(ProcessCheck::Runs)
        );
        let other = InstanceId(uuid::Uuid::from_u128(2));
        assert_eq!(local_process_runs(&path, Some(other)), None);
        d.pid = u32::MAX - 1;
        discovery::write(&path, &d).unwrap();
        assert_eq!(
            local_process_runs(&path, Some(me)),
            Some(ProcessCheck::Ended { pid: u32::MAX - 1 })
        );
    }
}
