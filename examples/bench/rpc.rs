//! Scenario 3: request rate and latency of `instance.ping` and `state.sync` (with 1,000 sessions
//! present) from 1 and 16 concurrent closed-loop DEALER clients, beside a bare libzmq ROUTER that
//! answers at once: echoing a ping, and answering a state.sync with a body as large as zcoord's.
//! The clients are identical for both servers: each sends a request, waits for the answer,
//! checks it is JSON without an `error` member, and sends the next.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};

use crate::bare::{Answer, BareRouter};
use crate::child::ServerChild;
use crate::control::Control;
use crate::dealer::Client;
use crate::serve::ServeOptions;
use crate::stats::{Mib, Percentiles, Rate, Ratio};

/// Sessions present for `state.sync`.
pub const SESSIONS: usize = 1_000;
const CLIENT_COUNTS: [usize; 2] = [1, 16];

/// Closed-loop figures for one method and client count.
struct Run {
    rate: f64,
    latency: Percentiles,
    errors: u64,
}

/// How each case is measured: `rounds` rounds, alternating zcoord and bare (so both see the same
/// mix of machine states: on a small VM a round trip takes twice as long when the two threads
/// land on different cores), each a warm-up then `measure`.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub rounds: u32,
    pub warmup: Duration,
    pub measure: Duration,
}

impl Run {
    fn of(calls: Calls, method: &str, measured: Duration) -> anyhow::Result<Run> {
        let latency = Percentiles::of(&calls.took)
            .ok_or_else(|| anyhow!("no {method} answered within the measurement"))?;
        Ok(Run {
            rate: calls.took.len() as f64 / measured.as_secs_f64(),
            latency,
            errors: calls.errors,
        })
    }
}

pub fn run(timing: Timing) -> anyhow::Result<()> {
    let server = ServerChild::spawn(&ServeOptions::default())?;
    Control::connect(&server.rpc)?.create_sessions(SESSIONS)?;
    let sync_answer = one_answer(&server.rpc, "state.sync")?;
    println!(
        "    state.sync answer with {SESSIONS} sessions: {} B; the bare ROUTER answers with the same bytes",
        sync_answer.len()
    );
    let echo = BareRouter::start(Answer::Echo)?;
    let fixed = BareRouter::start(Answer::Fixed(sync_answer))?;
    for (method, bare) in [("instance.ping", &echo), ("state.sync", &fixed)] {
        for clients in CLIENT_COUNTS {
            let mut z = Calls::default();
            let mut b = Calls::default();
            for _ in 0..timing.rounds {
                z.extend(closed_loop(&server.rpc, method, clients, timing)?);
                b.extend(closed_loop(&bare.endpoint, method, clients, timing)?);
            }
            let measured = timing.measure * timing.rounds;
            let (z, b) = (Run::of(z, method, measured)?, Run::of(b, method, measured)?);
            println!(
                "[3] {method:<13} {clients:>2} DEALER: zcoord {} {}  bare ROUTER {} {}  ratio rate {} p50 {}{} p99 {}",
                Rate(z.rate),
                z.latency,
                Rate(b.rate),
                b.latency,
                Ratio(z.rate, b.rate),
                Ratio(z.latency.p50.as_secs_f64(), b.latency.p50.as_secs_f64()),
                if method == "instance.ping" {
                    " (aim <= 1.5)"
                } else {
                    ""
                },
                Ratio(z.latency.p99.as_secs_f64(), b.latency.p99.as_secs_f64()),
            );
            if z.errors + b.errors > 0 {
                println!("    error answers: zcoord {} bare {}", z.errors, b.errors);
            }
        }
    }
    echo.stop()?;
    fixed.stop()?;
    println!(
        "    server peak RSS (rpc scenario, {SESSIONS} sessions): {}",
        Mib(server.stop()?)
    );
    Ok(())
}

/// The body of one answer to `method`, as sent.
fn one_answer(endpoint: &str, method: &str) -> anyhow::Result<Vec<u8>> {
    let ctx = zmq::Context::new();
    let mut client = Client::connect(&ctx, endpoint)?;
    let answer = client.call(method)?;
    if !answer.ok {
        bail!(
            "{method} answered with an error: {}",
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(answer.body)
}

/// One round: `clients` threads, each with its own context and DEALER (as separate processes
/// would), calling `method` back to back; all measure over the same window.
fn closed_loop(
    endpoint: &str,
    method: &str,
    clients: usize,
    timing: Timing,
) -> anyhow::Result<Calls> {
    let from = Instant::now() + timing.warmup;
    let to = from + timing.measure;
    let threads: Vec<JoinHandle<anyhow::Result<Calls>>> = (0..clients)
        .map(|_| {
            let endpoint = endpoint.to_owned();
            let method = method.to_owned();
            std::thread::spawn(move || calls(&endpoint, &method, from, to))
        })
        .collect();
    let mut all = Calls::default();
    for t in threads {
        all.extend(
            t.join()
                .map_err(|_| anyhow!("a client thread panicked"))??,
        );
    }
    Ok(all)
}

/// What clients measured.
#[derive(Default)]
struct Calls {
    took: Vec<Duration>,
    errors: u64,
}

impl Calls {
    fn extend(&mut self, other: Calls) {
        self.took.extend(other.took);
        self.errors += other.errors;
    }
}

/// One client: calls back to back until `to`, keeping the calls sent from `from` on.
fn calls(endpoint: &str, method: &str, from: Instant, to: Instant) -> anyhow::Result<Calls> {
    let ctx = zmq::Context::new();
    let mut client = Client::connect(&ctx, endpoint)?;
    let mut measured = Calls::default();
    loop {
        let sent = Instant::now();
        if sent >= to {
            return Ok(measured);
        }
        let answer = client.call(method)?;
        if sent >= from {
            measured.took.push(answer.took);
            measured.errors += u64::from(!answer.ok);
        }
    }
}
