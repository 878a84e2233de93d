//! Scenario 5: many sessions streaming at once (say 200 at 50 tokens/s) must not delay RPC
//! replies or heartbeats. Measures `instance.ping` latency from one DEALER pinging at a steady
//! pace, first on the idle server and then under the load, and the spacing of
//! `instance.heartbeat` events as a subscriber receives them while the load runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use zcoord::client::Subscriber;

use crate::child::ServerChild;
use crate::control::Control;
use crate::dealer::Client;
use crate::live::{wait_live, EventSource};
use crate::model::TurnPlan;
use crate::readers::{Expect, Readers, Target, LIVE_TIMEOUT};
use crate::serve::ServeOptions;
use crate::stats::{Mib, Micros, Percentiles, Rate, Ratio};

pub struct Many {
    pub sessions: u64,
    /// Tokens per second in each session.
    pub rate: f64,
    pub duration: Duration,
    pub pad: usize,
    /// How long the idle server is pinged first.
    pub idle: Duration,
    pub ping_every: Duration,
    pub heartbeat: Duration,
}

pub fn run(many: Many) -> anyhow::Result<()> {
    let server = ServerChild::spawn(&ServeOptions {
        heartbeat: many.heartbeat,
        ..ServeOptions::default()
    })?;
    let heartbeats = Watcher::spawn(&server.pub_)?;
    let plan = TurnPlan {
        tokens: (many.rate * many.duration.as_secs_f64()).round() as u64,
        rate: many.rate,
        pad: many.pad,
        ask: false,
    };
    let expect = Expect {
        tokens: plan.tokens * many.sessions,
        ends: many.sessions,
        within: many.duration * 2 + Duration::from_secs(20),
    };
    let mut tokens = Readers::spawn(1, Target::Zcoord, &server.pub_, true, expect);
    tokens.wait_live(|| Ok(()))?;

    let idle = Pinger::spawn(&server.rpc, many.ping_every);
    std::thread::sleep(many.idle);
    let idle = idle.stop()?;

    let loaded = Pinger::spawn(&server.rpc, many.ping_every);
    let load_start = Instant::now();
    let mut control = Control::connect(&server.rpc)?;
    for _ in 0..many.sessions {
        control.start_turn(&plan)?;
    }
    let mut tally = tokens
        .join()?
        .pop()
        .ok_or_else(|| anyhow!("no token subscriber result"))?;
    let load_end = Instant::now();
    let loaded = loaded.stop()?;
    let beats = heartbeats.stop()?;
    let peak = server.stop()?;

    let spacing: Vec<Duration> = beats
        .iter()
        .filter(|t| **t >= load_start && **t <= load_end)
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| *w[1] - *w[0])
        .collect();
    let (Some(i), Some(l)) = (Percentiles::of(&idle), Percentiles::of(&loaded)) else {
        anyhow::bail!("no ping answered");
    };
    println!(
        "[5] {} sessions x {} tok/s ({}) for {:?}, instance.ping every {:?}: idle {i} max {} ({} pings); under load {l} max {} ({} pings); p50 ratio load/idle {}",
        many.sessions,
        many.rate,
        Rate(many.rate * many.sessions as f64),
        many.duration,
        many.ping_every,
        Micros(i.max),
        i.samples,
        Micros(l.max),
        l.samples,
        Ratio(l.p50.as_secs_f64(), i.p50.as_secs_f64()),
    );
    match (spacing.iter().min(), spacing.iter().max()) {
        (Some(min), Some(max)) => println!(
            "    instance.heartbeat every {:?}: spacing under load min {} max {} ({} intervals)",
            many.heartbeat,
            Micros(*min),
            Micros(*max),
            spacing.len()
        ),
        _ => println!("    instance.heartbeat: fewer than two arrived under load"),
    }
    let latency = Percentiles::of_ns(&mut tally.latencies_ns)
        .map_or_else(|| "-".to_owned(), |p| p.to_string());
    println!(
        "    tokens: received {} missing {} gaps {}, latency {latency}; load lasted {:?}; server peak RSS {}",
        tally.tokens,
        expect.tokens.saturating_sub(tally.tokens),
        tally.gaps,
        load_end - load_start,
        Mib(peak)
    );
    Ok(())
}

/// One DEALER calling `instance.ping` every `every` until stopped.
struct Pinger {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<Vec<Duration>>>,
}

impl Pinger {
    fn spawn(endpoint: &str, every: Duration) -> Pinger {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let endpoint = endpoint.to_owned();
        let thread = std::thread::spawn(move || {
            let ctx = zmq::Context::new();
            let mut client = Client::connect(&ctx, &endpoint)?;
            let mut took = Vec::new();
            let mut next = Instant::now();
            while !stopping.load(Ordering::Relaxed) {
                took.push(client.call("instance.ping")?.took);
                // A late answer delays the next ping rather than bunching pings up.
                next = (next + every).max(Instant::now());
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok(took)
        });
        Pinger { stop, thread }
    }

    fn stop(self) -> anyhow::Result<Vec<Duration>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the pinger panicked"))?
    }
}

/// A subscriber noting when each heartbeat arrives.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<anyhow::Result<Vec<Instant>>>,
}

impl Watcher {
    /// Returns once the subscription is live.
    fn spawn(endpoint: &str) -> anyhow::Result<Watcher> {
        const PREFIXES: &[&str] = &["instance.heartbeat"];
        let ctx = zmq::Context::new();
        let sub = Subscriber::connect(&ctx, endpoint, PREFIXES)?;
        wait_live(&sub, PREFIXES, LIVE_TIMEOUT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let _ctx = ctx;
            let mut arrivals = Vec::new();
            while !stopping.load(Ordering::Relaxed) {
                let frames = sub.next_frames(Duration::from_millis(100))?;
                if let Some([key, _]) = frames.as_deref() {
                    if key == b"instance.heartbeat" {
                        arrivals.push(Instant::now());
                    }
                }
            }
            Ok(arrivals)
        });
        Ok(Watcher { stop, thread })
    }

    fn stop(self) -> anyhow::Result<Vec<Instant>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .map_err(|_| anyhow!("the heartbeat watcher panicked"))?
    }
}
