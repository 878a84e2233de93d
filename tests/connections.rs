//! However many peers connect, the server keeps running and keeps answering: the real binary,
//! under a descriptor limit of 256 (so each socket holds 64 connections: see `fdlimit.rs`),
//! flooded over ipc with ZeroMQ clients and over tcp with raw connections that never send a
//! greeting. libzmq 4.3.4 aborted the process on the ipc flood (`Too many open files
//! (src/ipc_listener.cpp:325)`) and spun a core on the tcp one.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, port_of, WAIT};
use serde_json::json;
use zcoord::client::RpcClient;

/// The binary under test; `ZCOORD_TEST_BIN` points it at another build (to show that an older
/// one fails these tests).
fn bin() -> String {
    std::env::var("ZCOORD_TEST_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_zcoord").to_owned())
}

/// The server's descriptor limit, soft and hard.
const NOFILE: u32 = 256;
/// What `fdlimit::per_socket` makes of it: (256 - 128) / 4.
const PER_SOCKET: usize = 32;
/// Peers in each flood: well past both the per-socket limit and the descriptor limit.
const FLOOD: usize = 400;

/// A `zcoord serve` under `ulimit -n NOFILE`, its log (stderr) in a file; killed when dropped.
struct Limited(common::Spawned);

impl std::ops::Deref for Limited {
    type Target = common::Spawned;
    fn deref(&self) -> &common::Spawned {
        &self.0
    }
}

impl Limited {
    fn start(data_dir: &Path, extra: &[&str]) -> Limited {
        Limited::start_with_limit(data_dir, NOFILE, extra)
    }

    fn start_with_limit(data_dir: &Path, nofile: u32, extra: &[&str]) -> Limited {
        // No unsafe `pre_exec` for the limit: a shell sets it and execs the server.
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(format!("ulimit -n {nofile} && exec \"$0\" \"$@\""))
            .arg(bin())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--store", "memory"])
            .args(extra)
            .env_remove("ZCOORD_SECRET")
            .env("RUST_LOG", "info");
        Limited(common::Spawned::start(cmd, data_dir))
    }

    fn secret(&self) -> Option<String> {
        self.discovery["secret"].as_str().map(str::to_owned)
    }

    fn client(&self, ctx: &zmq::Context) -> RpcClient {
        let secret = self.secret();
        RpcClient::connect_with(ctx, &self.endpoint("rpc"), WAIT, secret.as_deref()).unwrap()
    }

    /// Panics, with the log, if the server has exited (on the old code: SIGABRT).
    fn assert_alive(&mut self) {
        if let Some(status) = self.0.child.try_wait().unwrap() {
            panic!("the server exited ({status:?}); log:\n{}", self.log());
        }
    }

    fn ping(&mut self, client: &mut RpcClient, when: &str) {
        let started = Instant::now();
        if let Err(e) = client.call("instance.ping", json!({})) {
            self.assert_alive();
            panic!("no ping answer {when} ({e}) after {:?}", started.elapsed());
        }
    }
}

/// This process opens hundreds of sockets: raise its own soft limit as the server does.
fn raise_own_limit() {
    let n = zcoord::transport::fdlimit::raise();
    let enough = (4 * FLOOD + 64) as u64;
    assert!(
        n.soft.is_none_or(|s| s >= enough),
        "this test needs {enough} descriptors; the hard limit is {:?}",
        n.hard
    );
}

/// Waits until the server ends `stream` (end of stream or reset), reading and discarding what it
/// sends (its greeting); false if it is still open at `deadline`.
fn closed_by_server(stream: &mut impl ReadTimeout, deadline: Instant) -> bool {
    let mut buf = [0u8; 256];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        stream.timeout(left);
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return false
            }
            Err(_) => return true,
        }
    }
}

trait ReadTimeout: Read {
    fn timeout(&mut self, t: Duration);
}
impl ReadTimeout for TcpStream {
    fn timeout(&mut self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}
impl ReadTimeout for UnixStream {
    fn timeout(&mut self, t: Duration) {
        self.set_read_timeout(Some(t)).unwrap();
    }
}

fn count(log: &str, what: &str) -> usize {
    log.lines().filter(|l| l.contains(what)).count()
}

/// [`FLOOD`] DEALERs connected to `endpoint`, each retrying every 100 ms when refused.
fn dealers(ctx: &zmq::Context, endpoint: &str) -> Vec<zmq::Socket> {
    (0..FLOOD)
        .map(|_| {
            let d = ctx.socket(zmq::DEALER).unwrap();
            d.set_linger(0).unwrap();
            d.connect(endpoint).unwrap();
            d
        })
        .collect()
}

/// Longest wait for the server's listener to take a connection.
const WAIT_CONNECT: Duration = Duration::from_secs(10);

/// Connects to the ipc socket at `path`, failing the test if that takes longer than `limit`:
/// a `connect` waits, without a timeout of its own, while the listener's backlog is full, which
/// is what a wedged server looks like.
fn connect_within(path: &str, limit: Duration) -> UnixStream {
    let (tx, rx) = std::sync::mpsc::channel();
    let path = path.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(UnixStream::connect(path));
    });
    rx.recv_timeout(limit)
        .expect("no connection within the limit: the server takes no more")
        .expect("connect")
}

#[test]
fn an_ipc_flood_past_the_descriptor_limit_is_refused_and_the_server_keeps_answering() {
    raise_own_limit();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Limited::start(&data, &[]);
    let rpc = s.endpoint("rpc");
    let ctx = zmq::Context::new();
    let mut early = s.client(&ctx);
    s.ping(&mut early, "before the flood");

    // ZeroMQ clients, each of which retries every 100 ms when refused.
    let flood = dealers(&ctx, &rpc);
    eventually("the limit to be reached", || {
        s.assert_alive();
        (count(&s.log(), "connection limit reached") > 0).then_some(())
    });
    let log = s.log();
    assert!(log.contains(&format!("limit={PER_SOCKET}")), "{log}");

    // Over the limit, a connection is closed at once: long before the handshake interval
    // (5 s) would close one that was let in.
    let path = rpc.strip_prefix("ipc://").unwrap();
    for _ in 0..5 {
        let mut probe = connect_within(path, WAIT_CONNECT);
        let until = Instant::now() + Duration::from_millis(2_500);
        assert!(
            closed_by_server(&mut probe, until),
            "a connection over the limit was let in"
        );
        s.ping(&mut early, "during the flood");
    }
    s.assert_alive();

    drop(flood);
    eventually("the server to accept again", || {
        (count(&s.log(), "below the connection limit again") > 0).then_some(())
    });
    let mut late = s.client(&ctx);
    s.ping(&mut late, "from a client connecting after the flood");
    s.ping(&mut early, "after the flood");
    s.assert_alive();
}

/// Under a descriptor limit so low that an ipc flood is sure to make libzmq's accepts fail with
/// `EMFILE` before the transport thread's refusals land (64 descriptors: 16 connections a
/// socket, and fewer spare descriptors than the flood has peers), the server still lives: the
/// binary reports `EMFILE` to libzmq as `ENFILE` (`src/accept_guard.rs`), which libzmq's ipc
/// listener survives where it aborted on `EMFILE`.
#[test]
fn an_ipc_flood_that_runs_out_of_descriptors_does_not_abort_the_server() {
    raise_own_limit();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Limited::start_with_limit(&data, 64, &[]);
    let rpc = s.endpoint("rpc");
    let ctx = zmq::Context::new();
    let mut early = s.client(&ctx);
    s.ping(&mut early, "before the flood");
    let flood = dealers(&ctx, &rpc);
    eventually("the limit to be reached", || {
        s.assert_alive();
        (count(&s.log(), "connection limit reached") > 0).then_some(())
    });
    for _ in 0..5 {
        s.ping(&mut early, "during the flood");
    }
    s.assert_alive();
    drop(flood);
    eventually("the server to accept again", || {
        s.assert_alive();
        (count(&s.log(), "below the connection limit again") > 0).then_some(())
    });
    let mut late = s.client(&ctx);
    s.ping(&mut late, "from a client connecting after the flood");
    s.assert_alive();
}

#[test]
fn raw_tcp_peers_that_never_greet_are_dropped_and_do_not_starve_authenticated_clients() {
    raise_own_limit();
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut s = Limited::start(
        &data,
        &[
            "--rpc",
            "tcp://127.0.0.1:0",
            "--pub",
            "tcp://127.0.0.1:0",
            "--handshake-timeout-ms",
            "500",
        ],
    );
    let port = port_of(&s.endpoint("rpc"));
    let ctx = zmq::Context::new();
    let mut early = s.client(&ctx);
    s.ping(&mut early, "before the flood");

    let started = Instant::now();
    let mut raw: Vec<TcpStream> = (0..FLOOD)
        .map(|_| {
            TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), WAIT)
                .expect("connect (the listener must keep accepting)")
        })
        .collect();
    s.ping(&mut early, "during the flood");
    s.assert_alive();

    // Every one of them is closed by the server: over the limit at once, the rest when the
    // handshake interval (500 ms here) runs out.
    let deadline = started + WAIT;
    let open = raw
        .iter_mut()
        .filter_map(|r| (!closed_by_server(r, deadline)).then_some(()))
        .count();
    assert_eq!(open, 0, "connections that never greeted are still open");
    eprintln!(
        "{FLOOD} raw tcp connections all closed by the server within {:?}",
        started.elapsed()
    );
    drop(raw);
    s.ping(&mut early, "after the flood");
    let mut late = s.client(&ctx);
    s.ping(&mut late, "from a client connecting after the flood");
    let log = s.log();
    assert!(count(&log, "connection limit reached") > 0, "{log}");
    s.assert_alive();
}
