//! A first benchmark, run in release mode: `cargo run --release --example bench`.
//!
//! In one run, on the same machine and message sizes, it measures
//! 1. token events per second end to end (echo model with no delay -> core -> PUB -> one SUB), beside
//!    a bare libzmq PUB->SUB pair sending two-frame messages of the same sizes;
//! 2. `instance.ping` round trips from one DEALER (rate, p50, p99), beside a bare libzmq ROUTER that
//!    echoes each request.
//!
//! and prints the ratios. Everything runs on 127.0.0.1.

use std::time::{Duration, Instant};

use serde_json::json;
use zcoord::client::{RpcClient, Subscriber};
use zcoord::config::{Config, ModelConfig};

const TOKENS_PER_TURN: usize = 20_000;
const TURNS: usize = 5;
const PINGS: usize = 20_000;

fn main() {
    let (zc_rate, key_len, body_len) = zcoord_tokens();
    let bare_rate = bare_pubsub(key_len, body_len, TURNS * TOKENS_PER_TURN);
    println!(
        "token events/s   zcoord {:>10.0}   bare libzmq {:>10.0}   ratio {:.2}",
        zc_rate,
        bare_rate,
        zc_rate / bare_rate
    );
    let (zc_ping, zc_p50, zc_p99) = zcoord_pings();
    let (bare_ping, bare_p50, bare_p99) = bare_router_echo();
    println!(
        "ping req/s       zcoord {:>10.0}   bare libzmq {:>10.0}   ratio {:.2}",
        zc_ping,
        bare_ping,
        zc_ping / bare_ping
    );
    println!(
        "ping latency     zcoord p50 {:>6.1} us p99 {:>6.1} us   bare p50 {:>6.1} us p99 {:>6.1} us   p50 ratio {:.2}",
        zc_p50,
        zc_p99,
        bare_p50,
        bare_p99,
        zc_p50 / bare_p50
    );
}

fn start_server() -> (String, String, std::sync::mpsc::Sender<()>) {
    let mut config = Config::default();
    config.transport.rpc_endpoint = "tcp://127.0.0.1:0".into();
    config.transport.pub_endpoint = "tcp://127.0.0.1:0".into();
    config.transport.pub_sndhwm = 1_000_000;
    config.model = ModelConfig::Echo {
        token_delay: Duration::ZERO,
    };
    let server = zcoord::app::start(config).expect("bind");
    let ready = server.ready().clone();
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(server.run(async move {
            let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
            "bench done".to_owned()
        }));
    });
    (ready.rpc_endpoint, ready.pub_endpoint, stop_tx)
}

/// Returns (token events per second, typical key length, typical body length).
fn zcoord_tokens() -> (f64, usize, usize) {
    let (rpc, pub_, stop) = start_server();
    let ctx = zmq::Context::new();
    let sub =
        Subscriber::connect(&ctx, &pub_, &["llm.token", "llm.end", "instance.heartbeat"]).unwrap();
    // Wait for the subscription to be live (the first heartbeat comes right after bind).
    while sub.recv(Duration::from_secs(10)).unwrap().is_none() {}
    let mut client = RpcClient::connect(&ctx, &rpc, Duration::from_secs(10)).unwrap();
    let content = "w ".repeat(TOKENS_PER_TURN - 1);
    let mut tokens = 0usize;
    let (mut key_len, mut body_len) = (0, 0);
    let start = Instant::now();
    for _ in 0..TURNS {
        client
            .call("message.send", json!({"content": content}))
            .unwrap();
        loop {
            let ev = sub.recv(Duration::from_secs(30)).unwrap().expect("event");
            match ev.envelope.topic.as_str() {
                "llm.token" => {
                    tokens += 1;
                    key_len = ev.key.len();
                    body_len = ev.raw.len();
                }
                "llm.end" => break,
                _ => {}
            }
        }
    }
    let rate = tokens as f64 / start.elapsed().as_secs_f64();
    assert_eq!(tokens, TURNS * TOKENS_PER_TURN, "tokens lost");
    let _ = stop.send(());
    (rate, key_len, body_len)
}

fn bare_pubsub(key_len: usize, body_len: usize, n: usize) -> f64 {
    let ctx = zmq::Context::new();
    let publisher = ctx.socket(zmq::PUB).unwrap();
    publisher.set_sndhwm(1_000_000).unwrap();
    publisher.bind("tcp://127.0.0.1:0").unwrap();
    let ep = publisher.get_last_endpoint().unwrap().unwrap();
    let sub = ctx.socket(zmq::SUB).unwrap();
    sub.set_rcvhwm(1_000_000).unwrap();
    sub.set_subscribe(b"").unwrap();
    sub.connect(&ep).unwrap();
    let key = vec![b'k'; key_len];
    let body = vec![b'b'; body_len];
    // Slow joiner: publish probes until one arrives.
    sub.set_rcvtimeo(10).unwrap();
    loop {
        publisher.send(&b"probe"[..], 0).unwrap();
        if sub.recv_bytes(0).is_ok() {
            break;
        }
    }
    sub.set_rcvtimeo(-1).unwrap();
    while sub.recv_bytes(zmq::DONTWAIT).is_ok() {}
    let reader = std::thread::spawn(move || {
        let start = Instant::now();
        let mut got = 0;
        while got < n {
            let parts = sub.recv_multipart(0).unwrap();
            if parts.len() == 2 {
                got += 1;
            }
        }
        start.elapsed()
    });
    for _ in 0..n {
        publisher.send(&key[..], zmq::SNDMORE).unwrap();
        publisher.send(&body[..], 0).unwrap();
    }
    let elapsed = reader.join().unwrap();
    n as f64 / elapsed.as_secs_f64()
}

fn percentiles(mut lat: Vec<f64>, total: Duration) -> (f64, f64, f64) {
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| lat[((lat.len() as f64 * q) as usize).min(lat.len() - 1)];
    (lat.len() as f64 / total.as_secs_f64(), p(0.50), p(0.99))
}

fn zcoord_pings() -> (f64, f64, f64) {
    let (rpc, _pub, stop) = start_server();
    let ctx = zmq::Context::new();
    let mut client = RpcClient::connect(&ctx, &rpc, Duration::from_secs(10)).unwrap();
    for _ in 0..1000 {
        client.call("instance.ping", json!({})).unwrap();
    }
    let mut lat = Vec::with_capacity(PINGS);
    let start = Instant::now();
    for _ in 0..PINGS {
        let t = Instant::now();
        client.call("instance.ping", json!({})).unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let r = percentiles(lat, start.elapsed());
    let _ = stop.send(());
    r
}

fn bare_router_echo() -> (f64, f64, f64) {
    let ctx = zmq::Context::new();
    let router = ctx.socket(zmq::ROUTER).unwrap();
    router.bind("tcp://127.0.0.1:0").unwrap();
    let ep = router.get_last_endpoint().unwrap().unwrap();
    let total = PINGS + 1000;
    let server = std::thread::spawn(move || {
        for _ in 0..total {
            let parts = router.recv_multipart(0).unwrap();
            router.send_multipart(parts, 0).unwrap();
        }
    });
    // The same request body and client code path as the zcoord run.
    let mut client = RpcClient::connect(&ctx, &ep, Duration::from_secs(10)).unwrap();
    for _ in 0..1000 {
        let _ = client.call("instance.ping", json!({}));
    }
    let mut lat = Vec::with_capacity(PINGS);
    let start = Instant::now();
    for _ in 0..PINGS {
        let t = Instant::now();
        // The echoed request has no `result`: BadReply is the expected answer here.
        let _ = client.call("instance.ping", json!({}));
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let r = percentiles(lat, start.elapsed());
    server.join().unwrap();
    r
}
