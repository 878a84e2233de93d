//! Scenario 6: a person's answer to the turn, end to end: the time from sending `hitl.respond`
//! until a subscriber has the `hitl.resolved`, beside the `instance.ping` round trip measured in
//! the same run on the same DEALER (aim: within 1.5x with the memory store; the SQLite store's
//! figure, which waits for `fsync`, follows it). Each sample is one bench turn that asks an
//! `ask_user` question; the next starts once its `llm.end` is in.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

use crate::child::ServerChild;
use crate::dealer::Client;
use crate::model::TurnPlan;
use crate::serve::ServeOptions;
use crate::stats::{Percentiles, Ratio};

const WAIT: Duration = Duration::from_secs(5);

pub fn run(samples: usize) -> anyhow::Result<()> {
    // The aim is for the memory store, whose commit costs less than a thread's wake-up; the
    // default SQLite store waits for `fsync` before it answers, and that is measured too, so
    // nobody takes the first figure for what `zcoord serve` gives on a disk.
    measure(
        &ServeOptions::default(),
        samples,
        "memory store",
        "aim <= 1.5",
    )?;
    let dir = tempfile::tempdir()?;
    let sqlite = ServeOptions {
        sqlite: Some(dir.path().join("bench.db")),
        ..ServeOptions::default()
    };
    measure(
        &sqlite,
        samples,
        "SQLite store, synchronous=FULL",
        "no aim: each answer waits for fsync",
    )
}

fn measure(opts: &ServeOptions, samples: usize, store: &str, aim: &str) -> anyhow::Result<()> {
    let server = ServerChild::spawn(opts)?;
    let ctx = zmq::Context::new();
    let sub = ctx.socket(zmq::SUB)?;
    sub.set_linger(0)?;
    for prefix in ["hitl.", "llm.end"] {
        sub.set_subscribe(prefix.as_bytes())?;
    }
    sub.connect(&server.pub_)?;
    crate::live::wait_live(&sub, &["hitl.", "llm.end"], WAIT)?;
    let mut rpc = zcoord::client::RpcClient::connect(&ctx, &server.rpc, WAIT)?;
    let mut pinger = Client::connect(&ctx, &server.rpc)?;
    let plan = TurnPlan {
        tokens: 1,
        rate: 0.0,
        pad: 0,
        ask: true,
    };
    let session = rpc.call("session.create", json!({}))?["id"]
        .as_str()
        .context("session id")?
        .to_owned();
    let (mut respond, mut ping) = (Vec::new(), Vec::new());
    for _ in 0..samples {
        rpc.call(
            "message.send",
            json!({"session_id": session, "content": plan.prompt()}),
        )?;
        let pending = next(&sub, "hitl.pending")?;
        let id = pending["id"].as_str().context("request id")?.to_owned();
        let sent = Instant::now();
        rpc.call("hitl.respond", json!({"id": id, "answer": "yes"}))?;
        let resolved = next(&sub, "hitl.resolved")?;
        respond.push(sent.elapsed());
        if resolved["id"] != pending["id"] {
            bail!("resolved {} while waiting for {id}", resolved["id"]);
        }
        next(&sub, "llm.end")?;
        let p = pinger.call("instance.ping")?;
        if !p.ok {
            bail!("ping answered with an error");
        }
        ping.push(p.took);
    }
    let r = Percentiles::of(&respond).ok_or_else(|| anyhow!("no samples"))?;
    let p = Percentiles::of(&ping).ok_or_else(|| anyhow!("no samples"))?;
    println!(
        "[6] hitl.respond -> hitl.resolved at a SUB ({samples} turns, {store}): {r}; instance.ping {p}; ratio p50 {} ({aim}) p99 {}",
        Ratio(r.p50.as_secs_f64(), p.p50.as_secs_f64()),
        Ratio(r.p99.as_secs_f64(), p.p99.as_secs_f64()),
    );
    server.stop()?;
    Ok(())
}

/// The payload of the next event of `topic`.
fn next(sub: &zmq::Socket, topic: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("no {topic} within {WAIT:?}");
        }
        let mut items = [sub.as_poll_item(zmq::POLLIN)];
        if zmq::poll(&mut items, left.as_millis() as i64)? == 0 {
            continue;
        }
        let frames = sub.recv_multipart(0)?;
        let Some(body) = frames.last() else { continue };
        let env: Value = serde_json::from_slice(body)?;
        if env["topic"] == topic {
            return Ok(env["payload"].clone());
        }
    }
}
