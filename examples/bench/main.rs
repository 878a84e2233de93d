//! The benchmark: `cargo run --release --example bench`. Measures zcoord beside bare libzmq on the
//! same machine and message sizes, in one run, and prints every figure and ratio:
//!
//! 1. token events/s end to end (model -> core -> PUB -> SUB), 1 and 8 subscribers;
//! 2. token latency p50/p99 at 10k tokens/s total (20 sessions x 500 tokens/s);
//! 3. `instance.ping` and `state.sync` (1,000 sessions) rate and p50/p99, 1 and 16 DEALERs;
//! 4. the server's peak RSS in each scenario, and beside a subscriber that never reads
//!    (`BENCH_STALL_SECS`, default 30);
//! 5. 200 sessions x 50 tokens/s: `instance.ping` latency and heartbeat spacing under that load;
//! 6. `hitl.respond` -> `hitl.resolved` at a subscriber, beside `instance.ping` in the same run,
//!    with the memory store and then the SQLite store.
//!
//! Each zcoord scenario runs a fresh server in a child process (this binary with `--serve`, see
//! `serve.rs`) so its peak RSS is its own; the bare counterparts run in this process. Everything
//! talks over tcp on 127.0.0.1 and every wait has a timeout. `BENCH_ONLY=1,4` runs only the
//! scenarios named (numbered as above; 4 is the stalled subscriber), e.g. under a profiler.

/// The allocator the `zcoord` binary ships with (src/main.rs): the bench's server is this binary
/// (`child.rs` runs it again as `serve`), so its RSS and speed must be measured with the same
/// allocator, not glibc's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod bare;
mod child;
mod control;
mod dealer;
mod hitl;
mod latency;
mod live;
mod load;
mod model;
mod readers;
mod rpc;
mod serve;
mod stall;
mod stats;
mod stream;
mod throughput;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context;

/// Filler after each token's 19-digit timestamp: 35-byte tokens, a few words' worth.
const PAD: usize = 16;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let result = if args.get(1).map(String::as_str) == Some(serve::SERVE_ARG) {
        serve::serve(&args[2..])
    } else {
        bench()
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench() -> anyhow::Result<()> {
    let started = Instant::now();
    let stall_secs: u64 = match std::env::var("BENCH_STALL_SECS") {
        Ok(v) => v
            .parse()
            .context("BENCH_STALL_SECS must be whole seconds")?,
        Err(_) => 30,
    };
    let only: Option<Vec<u32>> = match std::env::var("BENCH_ONLY") {
        Ok(v) => Some(
            v.split(',')
                .map(|n| n.trim().parse())
                .collect::<Result<_, _>>()
                .context("BENCH_ONLY must be scenario numbers, e.g. 1,3")?,
        ),
        Err(_) => None,
    };
    let wanted = |n: u32| only.as_ref().is_none_or(|o| o.contains(&n));
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "zcoord bench: {} build, {cpus} CPUs, load average {}, tcp on 127.0.0.1, a fresh server process per zcoord scenario",
        if cfg!(debug_assertions) { "DEBUG (use --release)" } else { "release" },
        load_average()
    );

    if wanted(1) {
        throughput::run(200_000, PAD)?;
    }
    if wanted(2) {
        latency::run(latency::Load {
            sessions: 20,
            rate: 500.0,
            duration: Duration::from_secs(5),
            pad: PAD,
        })?;
    }
    if wanted(3) {
        rpc::run(rpc::Timing {
            rounds: 8,
            warmup: Duration::from_millis(50),
            measure: Duration::from_millis(250),
        })?;
    }
    if wanted(4) {
        stall::run(stall::Stall {
            baseline: Duration::from_secs(10),
            stalled: Duration::from_secs(stall_secs),
            tokens_per_turn: 20_000,
            pad: PAD,
        })?;
    }
    if wanted(5) {
        load::run(load::Many {
            sessions: 200,
            rate: 50.0,
            duration: Duration::from_secs(15),
            pad: PAD,
            idle: Duration::from_secs(3),
            ping_every: Duration::from_millis(10),
            heartbeat: Duration::from_secs(1),
        })?;
    }

    if wanted(6) {
        hitl::run(200)?;
    }

    let (welcome, first_event) = live::counts();
    println!(
        "subscriptions found live: {welcome} by instance.welcome, {first_event} by their first event; bench took {:.0?}; load average {}",
        started.elapsed(),
        load_average()
    );
    Ok(())
}

/// The 1, 5 and 15 minute load averages: other work on the machine skews every figure.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "unknown".into())
}
