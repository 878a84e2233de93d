//! Scenario 2: token latency, from the model stamping a token to a subscriber receiving it, at a
//! paced total rate (many sessions each streaming at a fixed rate), beside a bare libzmq PUB paced
//! the same way and stamping its messages the same way.

use std::time::Duration;

use crate::bare::{token_key, BarePub};
use crate::child::ServerChild;
use crate::control::Control;
use crate::model::TurnPlan;
use crate::readers::{Expect, Readers, Target};
use crate::serve::ServeOptions;
use crate::stats::{Mib, Micros, Percentiles, Rate, Ratio};
use crate::stream::Tally;

/// The shape of the load: `sessions` turns at `rate` tokens/s each, for `duration`.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    pub sessions: u64,
    pub rate: f64,
    pub duration: Duration,
    pub pad: usize,
}

impl Load {
    fn plan(&self) -> TurnPlan {
        TurnPlan {
            tokens: self.tokens_each(),
            rate: self.rate,
            pad: self.pad,
            ask: false,
        }
    }

    fn tokens_each(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round() as u64
    }

    fn total(&self) -> u64 {
        self.tokens_each() * self.sessions
    }
}

pub fn run(load: Load) -> anyhow::Result<()> {
    let (zc, peak, key_len, body_len) = zcoord(load)?;
    let bare = bare(load, key_len, body_len)?;
    let (Some(z), Some(b)) = (zc.percentiles, bare.percentiles) else {
        anyhow::bail!("no token arrived in the latency run");
    };
    println!(
        "[2] token latency at {} total ({} sessions x {} tok/s, {:?}): zcoord {z} (max {})  bare libzmq {b} (max {})  p50 ratio {} p99 ratio {}",
        Rate(load.rate * load.sessions as f64),
        load.sessions,
        load.rate,
        load.duration,
        Micros(z.max),
        Micros(b.max),
        Ratio(z.p50.as_secs_f64(), b.p50.as_secs_f64()),
        Ratio(z.p99.as_secs_f64(), b.p99.as_secs_f64()),
    );
    println!(
        "    zcoord: received {} missing {} gaps {}; bare: received {} missing {}; server peak RSS {}",
        zc.received,
        load.total().saturating_sub(zc.received),
        zc.gaps,
        bare.received,
        load.total().saturating_sub(bare.received),
        Mib(peak)
    );
    Ok(())
}

struct Latencies {
    percentiles: Option<Percentiles>,
    received: u64,
    gaps: u64,
}

impl Latencies {
    fn of(mut tally: Tally) -> Latencies {
        Latencies {
            percentiles: Percentiles::of_ns(&mut tally.latencies_ns),
            received: tally.tokens,
            gaps: tally.gaps,
        }
    }
}

fn expect(load: Load, ends: u64) -> Expect {
    Expect {
        tokens: load.total(),
        ends,
        within: load.duration * 3 + Duration::from_secs(10),
    }
}

/// Returns the latencies, the server's peak RSS (KiB) and the token event's key and body sizes.
fn zcoord(load: Load) -> anyhow::Result<(Latencies, u64, usize, usize)> {
    let server = ServerChild::spawn(&ServeOptions::default())?;
    let mut readers = Readers::spawn(
        1,
        Target::Zcoord,
        &server.pub_,
        true,
        expect(load, load.sessions),
    );
    readers.wait_live(|| Ok(()))?;
    let mut control = Control::connect(&server.rpc)?;
    for _ in 0..load.sessions {
        control.start_turn(&load.plan())?;
    }
    let tally = single(readers.join()?)?;
    let peak = server.stop()?;
    let (key_len, body_len) = (tally.key_len, tally.body_len);
    Ok((Latencies::of(tally), peak, key_len, body_len))
}

fn bare(load: Load, key_len: usize, body_len: usize) -> anyhow::Result<Latencies> {
    let publisher = BarePub::bind(10_000)?;
    let mut readers = Readers::spawn(1, Target::Bare, &publisher.endpoint, true, expect(load, 0));
    readers.wait_live(|| publisher.probe())?;
    publisher.paced(
        load.sessions,
        load.rate,
        load.duration,
        &token_key(key_len),
        body_len,
        &"x".repeat(load.pad),
    )?;
    Ok(Latencies::of(single(readers.join()?)?))
}

fn single(tallies: Vec<Tally>) -> anyhow::Result<Tally> {
    tallies
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no subscriber result"))
}
