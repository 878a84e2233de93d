//! Scenario 4 (stalled subscriber): tokens stream at full speed to a reading subscriber, first
//! alone, then while another subscriber (subscribed to everything, small RCVHWM) never reads.
//! Shows what the stalled one costs: the server's peak RSS before and after, the reading
//! subscriber's rate and losses in both phases, and the server's own drop counters.
//!
//! Turns run back to back, each in a new session deleted when it ends, over SQLite in a
//! temporary directory: so neither the core nor the store keeps the streamed text, and peak RSS
//! shows the server's buffers, not the replies it has kept. The driver learns that a turn ended
//! from a third subscriber that takes only `llm.end`, so the stream never waits for the reader.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use zcoord::client::Subscriber;

use crate::child::ServerChild;
use crate::control::Control;
use crate::live::{wait_live, EventSource};
use crate::model::TurnPlan;
use crate::readers::{LIVE_TIMEOUT, ZCOORD_PREFIXES};
use crate::serve::ServeOptions;
use crate::stats::{Mib, Rate};
use crate::stream::{TokenReader, END_KEY};

/// The stalled subscriber's receive queue, in messages.
const STALLED_RCVHWM: i32 = 100;
/// The longest one turn may take.
const TURN_TIMEOUT: Duration = Duration::from_secs(30);
/// The reader has caught up once it has received nothing for this long.
const SETTLED: Duration = Duration::from_millis(100);

pub struct Stall {
    pub baseline: Duration,
    pub stalled: Duration,
    pub tokens_per_turn: u64,
    pub pad: usize,
}

pub fn run(stall: Stall) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let opts = ServeOptions {
        sqlite: Some(dir.path().join("bench.db")),
        ..ServeOptions::default()
    };
    let server = ServerChild::spawn(&opts)?;
    let reader = Reader::spawn(&server.pub_)?;
    let ends = EndWatcher::connect(&server.pub_)?;
    let mut control = Control::connect(&server.rpc)?;
    let plan = TurnPlan {
        tokens: stall.tokens_per_turn,
        rate: 0.0,
        pad: stall.pad,
        ask: false,
    };

    let alone = stream_for(&mut control, &ends, &reader, &plan, stall.baseline)?;
    let rss_alone = server.peak_rss_kib()?;

    let ctx = zmq::Context::new();
    let stalled = ctx.socket(zmq::SUB)?;
    stalled.set_linger(0)?;
    stalled.set_rcvhwm(STALLED_RCVHWM)?;
    stalled.set_subscribe(b"")?;
    stalled.connect(&server.pub_)?;
    wait_live(&stalled, &[""], LIVE_TIMEOUT)?;
    // From here on `stalled` is never read.
    let beside = stream_for(&mut control, &ends, &reader, &plan, stall.stalled)?;
    let drops = control.drops()?;
    reader.stop()?;
    let peak = server.stop()?;
    drop(stalled);

    println!(
        "[4] stalled SUB (never reads, RCVHWM {STALLED_RCVHWM}; server PUB HWM {}) for {:?} while tokens stream at full speed to a reading SUB:",
        opts.pub_hwm, stall.stalled
    );
    println!(
        "    server peak RSS: {} after {:?} with the reading SUB alone, {} after the stall",
        Mib(rss_alone),
        stall.baseline,
        Mib(peak)
    );
    for (name, phase) in [("alone", &alone), ("beside the stalled SUB", &beside)] {
        println!(
            "    reading SUB {name}: {} received, {} of {} tokens lost ({} turns of {})",
            Rate(phase.rate()),
            phase.gaps,
            phase.turns * plan.tokens,
            phase.turns,
            plan.tokens,
        );
    }
    println!("    instance.info drops: {drops}");
    Ok(())
}

/// What the reading subscriber got in one phase.
struct Phase {
    turns: u64,
    tokens: u64,
    gaps: u64,
    elapsed: Duration,
}

impl Phase {
    fn rate(&self) -> f64 {
        self.tokens as f64 / self.elapsed.as_secs_f64()
    }
}

/// Runs turns back to back for `duration`, each in a new session deleted when it ends, then
/// lets the reader catch up.
fn stream_for(
    control: &mut Control,
    ends: &EndWatcher,
    reader: &Reader,
    plan: &TurnPlan,
    duration: Duration,
) -> anyhow::Result<Phase> {
    let start = Instant::now();
    let (tokens_before, gaps_before) = reader.counts();
    let mut turns = 0;
    while start.elapsed() < duration {
        let session = control.start_turn(plan)?;
        ends.wait_for(&session)?;
        control.delete_session(&session)?;
        turns += 1;
    }
    let (tokens, gaps) = reader.settle()?;
    Ok(Phase {
        turns,
        tokens: tokens - tokens_before,
        gaps: gaps - gaps_before,
        elapsed: start.elapsed().saturating_sub(SETTLED),
    })
}

/// A subscriber to `llm.end` only: its queue never fills, so it sees every turn end.
struct EndWatcher {
    sub: Subscriber,
    _ctx: zmq::Context,
}

impl EndWatcher {
    fn connect(endpoint: &str) -> anyhow::Result<EndWatcher> {
        const PREFIXES: &[&str] = &["llm.end/", "instance.heartbeat"];
        let ctx = zmq::Context::new();
        let sub = Subscriber::connect(&ctx, endpoint, PREFIXES)?;
        wait_live(&sub, PREFIXES, LIVE_TIMEOUT)?;
        Ok(EndWatcher { sub, _ctx: ctx })
    }

    fn wait_for(&self, session: &str) -> anyhow::Result<()> {
        let mut key = END_KEY.to_vec();
        key.extend_from_slice(session.as_bytes());
        let deadline = Instant::now() + TURN_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("no llm.end for session {session} within {TURN_TIMEOUT:?}");
            }
            if let Some(frames) = self.sub.next_frames(left)? {
                if frames.first() == Some(&key) {
                    return Ok(());
                }
            }
        }
    }
}

/// The subscriber that reads every token, on a thread of its own.
struct Reader {
    /// Token events received and token indexes skipped so far.
    counts: Arc<[AtomicU64; 2]>,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<()>>,
}

impl Reader {
    /// Returns once the subscription is live.
    fn spawn(endpoint: &str) -> anyhow::Result<Reader> {
        let ctx = zmq::Context::new();
        let sub = Subscriber::connect(&ctx, endpoint, ZCOORD_PREFIXES)?;
        wait_live(&sub, ZCOORD_PREFIXES, LIVE_TIMEOUT)?;
        let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
        let stop = Arc::new(AtomicBool::new(false));
        let (counting, stopping) = (counts.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let _ctx = ctx;
            let mut reader = TokenReader::new(false);
            while !stopping.load(Ordering::Relaxed) {
                if let Some(frames) = sub.next_frames(Duration::from_millis(50))? {
                    reader.take(&frames);
                    let t = reader.tally();
                    counting[0].store(t.tokens, Ordering::Relaxed);
                    counting[1].store(t.gaps, Ordering::Relaxed);
                }
            }
            Ok(())
        });
        Ok(Reader {
            counts,
            stop,
            thread,
        })
    }

    /// `(tokens, gaps)` so far.
    fn counts(&self) -> (u64, u64) {
        (
            self.counts[0].load(Ordering::Relaxed),
            self.counts[1].load(Ordering::Relaxed),
        )
    }

    /// Waits until the reader has received nothing for [`SETTLED`]; returns its counts then.
    fn settle(&self) -> anyhow::Result<(u64, u64)> {
        let deadline = Instant::now() + TURN_TIMEOUT;
        let mut last = self.counts();
        while Instant::now() < deadline {
            std::thread::sleep(SETTLED);
            let now = self.counts();
            if now == last {
                return Ok(now);
            }
            last = now;
        }
        bail!("the reading subscriber was still receiving after {TURN_TIMEOUT:?}")
    }

    fn stop(self) -> anyhow::Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the reading subscriber panicked"))?
    }
}
