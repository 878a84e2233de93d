//! Scenario 1: token events per second delivered end to end (bench model -> core -> PUB -> SUB),
//! with 1 and with 8 subscribers, beside a bare libzmq PUB sending two-frame messages of the same
//! key and body sizes to the same number of identical subscribers.

use std::time::Duration;

use crate::bare::{token_key, BarePub};
use crate::child::ServerChild;
use crate::control::Control;
use crate::model::TurnPlan;
use crate::readers::{Expect, Readers, Target};
use crate::serve::ServeOptions;
use crate::stats::{Mib, Rate, Ratio};
use crate::stream::Tally;

/// The PUB queue per subscriber, for zcoord and bare alike: large, so this measures speed, not
/// drops.
const PUB_HWM: i32 = 1_000_000;
/// Runs of each kind; the median counts.
const ROUNDS: usize = 3;
/// The longest one run may take.
const WITHIN: Duration = Duration::from_secs(60);

/// One run's figures.
struct Delivered {
    /// Token events per second over all subscribers.
    rate: f64,
    /// The slowest subscriber's rate.
    slowest: f64,
    /// Token events expected but not received, over all subscribers.
    missing: u64,
    gaps: u64,
    key_len: usize,
    body_len: usize,
    /// Events the server failed to hand to libzmq (`outbound_dropped`; zcoord only).
    server_dropped: u64,
}

impl Delivered {
    fn of(tallies: &[Tally], expected_each: u64) -> Delivered {
        let received: u64 = tallies.iter().map(|t| t.tokens).sum();
        Delivered {
            rate: Tally::combined_rate(tallies),
            slowest: tallies
                .iter()
                .map(Tally::rate)
                .fold(f64::INFINITY, f64::min),
            missing: (expected_each * tallies.len() as u64).saturating_sub(received),
            gaps: tallies.iter().map(|t| t.gaps).sum(),
            key_len: tallies.first().map_or(0, |t| t.key_len),
            body_len: tallies.first().map_or(0, |t| t.body_len),
            server_dropped: 0,
        }
    }
}

pub fn run(tokens: u64, pad: usize) -> anyhow::Result<()> {
    let plan = TurnPlan {
        tokens,
        rate: 0.0,
        pad,
        ask: false,
    };
    for subscribers in [1, 8] {
        // Alternating rounds, so a noisy moment on a small machine does not decide the ratio.
        let mut zc = Vec::new();
        let mut plain = Vec::new();
        let mut peak = 0;
        for _ in 0..ROUNDS {
            let (z, p) = zcoord(subscribers, &plan)?;
            peak = peak.max(p);
            plain.push(bare(subscribers, &plan, z.key_len, z.body_len)?);
            zc.push(z);
        }
        if subscribers == 1 {
            println!(
                "    event sizes: key {} B, body {} B (token text {} B); {} tokens per run, one turn; median of {ROUNDS} alternating runs",
                zc[0].key_len,
                zc[0].body_len,
                plan.token_len(),
                tokens
            );
        }
        let (z, b) = (median(&zc), median(&plain));
        println!(
            "[1] token events/s, {subscribers} SUB: zcoord {} (slowest SUB {})  bare libzmq {} (slowest {})  ratio zcoord/bare {} (aim >= 0.5)",
            Rate(z.rate),
            Rate(z.slowest),
            Rate(b.rate),
            Rate(b.slowest),
            Ratio(z.rate, b.rate),
        );
        println!(
            "    runs: zcoord {}; bare {}; zcoord missing {} gaps {} (server outbound_dropped {}), bare missing {}; server peak RSS {}",
            rates(&zc),
            rates(&plain),
            zc.iter().map(|d| d.missing).sum::<u64>(),
            zc.iter().map(|d| d.gaps).sum::<u64>(),
            zc.iter().map(|d| d.server_dropped).sum::<u64>(),
            plain.iter().map(|d| d.missing).sum::<u64>(),
            Mib(peak)
        );
    }
    Ok(())
}

/// The run with the median rate.
fn median(runs: &[Delivered]) -> &Delivered {
    let mut sorted: Vec<&Delivered> = runs.iter().collect();
    sorted.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    sorted[sorted.len() / 2]
}

fn rates(runs: &[Delivered]) -> String {
    let each: Vec<String> = runs.iter().map(|d| Rate(d.rate).to_string()).collect();
    each.join(" ")
}

/// Returns the figures and the server's peak RSS in KiB.
fn zcoord(subscribers: usize, plan: &TurnPlan) -> anyhow::Result<(Delivered, u64)> {
    let server = ServerChild::spawn(&ServeOptions {
        pub_hwm: PUB_HWM,
        ..ServeOptions::default()
    })?;
    let expect = Expect {
        tokens: plan.tokens,
        ends: 1,
        within: WITHIN,
    };
    let mut readers = Readers::spawn(subscribers, Target::Zcoord, &server.pub_, false, expect);
    readers.wait_live(|| Ok(()))?;
    let mut control = Control::connect(&server.rpc)?;
    control.start_turn(plan)?;
    let tallies = readers.join()?;
    let delivered = Delivered {
        server_dropped: control.outbound_dropped()?,
        ..Delivered::of(&tallies, plan.tokens)
    };
    Ok((delivered, server.stop()?))
}

fn bare(
    subscribers: usize,
    plan: &TurnPlan,
    key_len: usize,
    body_len: usize,
) -> anyhow::Result<Delivered> {
    let publisher = BarePub::bind(PUB_HWM)?;
    let expect = Expect {
        tokens: plan.tokens,
        ends: 0,
        within: WITHIN,
    };
    let mut readers = Readers::spawn(
        subscribers,
        Target::Bare,
        &publisher.endpoint,
        false,
        expect,
    );
    readers.wait_live(|| publisher.probe())?;
    let pad = "x".repeat(plan.pad);
    publisher.flood(plan.tokens, &token_key(key_len), body_len, &pad)?;
    let tallies = readers.join()?;
    Ok(Delivered::of(&tallies, plan.tokens))
}
