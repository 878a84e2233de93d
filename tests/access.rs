//! Who may connect, as the `zcoord` binary enforces it at start-up and at the handshake: ipc
//! socket directories closed to other users, stale sockets from dead instances cleared, a live
//! server's socket never taken, peers without PLAIN logged although libzmq refuses them
//! before the ZAP handler hears of them, secrets too short refused, and CURVE letting in only
//! authorised client keys that know the server's key.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{eventually, recv_within, WAIT};
use serde_json::Value;
use zcoord::transport::auth::present_curve;
use zcoord::transport::curve::PublicKey;

const BIN: &str = env!("CARGO_BIN_EXE_zcoord");

fn serve_cmd(data_dir: &Path, extra: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir")
        .arg(data_dir)
        .args(["serve", "--store", "memory"])
        .args(extra)
        .env_remove("ZCOORD_SECRET")
        .env_remove("RUST_LOG");
    cmd
}

/// Runs a `serve` that is expected to refuse to start; kills it if it serves instead.
fn refused(data_dir: &Path, extra: &[&str]) -> Output {
    refused_cmd(serve_cmd(data_dir, extra))
}

fn refused_cmd(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "serve should have refused to start; stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A `zcoord serve` whose stderr (its log) goes to a file; killed when dropped.
struct Served(common::Spawned);

impl std::ops::Deref for Served {
    type Target = common::Spawned;
    fn deref(&self) -> &common::Spawned {
        &self.0
    }
}

impl Served {
    fn start(data_dir: &Path, extra: &[&str]) -> Served {
        Served(common::Spawned::start(serve_cmd(data_dir, extra), data_dir))
    }

    fn ping(&self, data_dir: &Path) -> bool {
        Command::new(BIN)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["ping", "--timeout-ms", "3000"])
            .env_remove("ZCOORD_SECRET")
            .output()
            .unwrap()
            .status
            .success()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

fn mode_of(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

/// A directory for sockets that only this user can enter.
fn private_dir(parent: &Path, name: &str) -> PathBuf {
    let d = parent.join(name);
    fs::create_dir(&d).unwrap();
    chmod(&d, 0o700);
    d
}

#[test]
fn a_socket_directory_open_to_other_users_is_refused_and_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    for mode in [0o755, 0o777] {
        let shared = tmp.path().join(format!("shared-{mode:o}"));
        fs::create_dir(&shared).unwrap();
        chmod(&shared, mode);
        let rpc = format!("ipc://{}/rpc.sock", shared.display());
        let pub_ = format!("ipc://{}/pub.sock", shared.display());
        let out = refused(&tmp.path().join("data"), &["--rpc", &rpc, "--pub", &pub_]);
        let err = stderr(&out);
        assert!(err.contains(&shared.display().to_string()), "{err}");
        assert!(err.contains(&format!("mode {mode:03o}")), "{err}");
        assert!(err.contains("open to other users"), "{err}");
        assert!(err.contains("chmod 700"), "{err}");
        assert_eq!(
            mode_of(&shared),
            mode,
            "a directory zcoord did not make keeps its mode"
        );
        assert!(!shared.join("rpc.sock").exists());
    }
}

#[test]
fn a_missing_socket_directory_is_created_0700_and_the_default_one_is_tightened() {
    let tmp = tempfile::tempdir().unwrap();
    // An explicit directory that does not exist yet.
    let socks = tmp.path().join("socks/zcoord");
    let data = tmp.path().join("a");
    let rpc = format!("ipc://{}/rpc.sock", socks.display());
    let pub_ = format!("ipc://{}/pub.sock", socks.display());
    let s = Served::start(&data, &["--rpc", &rpc, "--pub", &pub_]);
    assert_eq!(mode_of(&socks), 0o700);
    assert!(s.ping(&data));
    drop(s);

    // zcoord's own <data-dir>/run, found open to others, is made 0700 again.
    let data = tmp.path().join("b");
    fs::create_dir_all(data.join("run")).unwrap();
    chmod(&data.join("run"), 0o755);
    let s = Served::start(&data, &[]);
    assert_eq!(mode_of(&data.join("run")), 0o700);
    assert!(s.ping(&data));
    assert!(s.log().contains("made it 0700"), "{}", s.log());
}

#[test]
fn a_stale_socket_from_a_dead_instance_is_removed_and_serve_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    let run = private_dir(&data, "run");
    // A listener that is gone leaves its file behind, as a server killed with -9 does.
    drop(UnixListener::bind(run.join("rpc.sock")).unwrap());
    assert!(run.join("rpc.sock").exists());
    let s = Served::start(&data, &[]);
    assert!(s.ping(&data));
    let log = s.log();
    assert!(log.contains("removed a stale ipc socket"), "{log}");
    assert!(log.contains("rpc.sock"), "{log}");
}

#[test]
fn a_live_socket_is_never_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    let run = private_dir(&data, "run");
    let path = run.join("rpc.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let out = refused(&data, &[]);
    let err = stderr(&out);
    assert!(err.contains("another process is listening on"), "{err}");
    assert!(err.contains(&path.display().to_string()), "{err}");
    // Still the listener's: a new connection reaches it.
    let _client = UnixStream::connect(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    eventually("the probe's and the client's connections", || {
        listener.accept().ok()
    });
}

#[test]
fn two_servers_given_the_same_ipc_endpoint_from_different_data_dirs_do_not_steal_it() {
    // The data directory's lock cannot see this case: only the socket check does.
    let tmp = tempfile::tempdir().unwrap();
    let socks = private_dir(tmp.path(), "socks");
    let rpc = format!("ipc://{}/rpc.sock", socks.display());
    let pub_ = format!("ipc://{}/pub.sock", socks.display());
    let first_dir = tmp.path().join("first");
    let first = Served::start(&first_dir, &["--rpc", &rpc, "--pub", &pub_]);
    let out = refused(&tmp.path().join("second"), &["--rpc", &rpc, "--pub", &pub_]);
    assert!(
        stderr(&out).contains("another process is listening on"),
        "{}",
        stderr(&out)
    );
    assert!(
        first.ping(&first_dir),
        "the first server still has its socket"
    );
}

#[test]
fn peers_without_plain_are_logged_although_the_zap_handler_never_sees_them() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = Served::start(
        &data,
        &["--rpc", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"],
    );
    let rpc = s.endpoint("rpc");
    let ctx = zmq::Context::new();
    // No credentials at all: libzmq's NULL mechanism, refused in the ZMTP greeting.
    let null_peer = |endpoint: &str, kind| {
        let sock = ctx.socket(kind).unwrap();
        sock.set_linger(0).unwrap();
        sock.connect(endpoint).unwrap();
        sock
    };
    let refusals = || -> Vec<String> {
        s.log()
            .lines()
            .filter(|l| l.contains("connection refused at the handshake"))
            .map(str::to_owned)
            .collect()
    };
    let _first = null_peer(&rpc, zmq::DEALER);
    let line = eventually("a refusal in the log", || refusals().first().cloned());
    // Which side notices first is a race: the server reads the NULL in the client's greeting,
    // or the client, having read the server's PLAIN, hangs up before it gets there.
    assert!(
        line.contains("no credentials for this server's mechanism")
            || line.contains("handshake not completed"),
        "{line}"
    );
    assert!(line.contains("peer=\"unknown\""), "{line}");
    assert!(
        line.contains("does not report this peer's address"),
        "{line}"
    );
    // The monitor names the server's endpoint the peer came in on.
    assert!(line.contains(&format!("endpoint={rpc}")), "{line}");

    // A burst of them: one line a second at most, the next one saying how many were not logged.
    let started = Instant::now();
    let mut peers = Vec::new();
    let lines = eventually("a line counting the refusals not logged", || {
        peers.push(null_peer(&rpc, zmq::DEALER));
        std::thread::sleep(Duration::from_millis(20));
        let lines = refusals();
        lines
            .iter()
            .skip(1)
            .any(|l| !l.contains("suppressed=0"))
            .then_some(lines)
    });
    assert!(
        lines.len() as u64 <= started.elapsed().as_secs() + 2,
        "not rate-limited: {} lines in {:?} for {} peers\n{}",
        lines.len(),
        started.elapsed(),
        peers.len(),
        lines.join("\n")
    );
    drop(peers);

    // A subscriber without credentials is logged the same way, at the PUB's endpoint (after
    // the limiter's second).
    let pub_ = s.endpoint("pub");
    let mut subs = Vec::new();
    eventually("a refusal at the PUB", || {
        subs.push(null_peer(&pub_, zmq::SUB));
        std::thread::sleep(Duration::from_millis(50));
        refusals()
            .iter()
            .any(|l| l.contains(&format!("endpoint={pub_}")))
            .then_some(())
    });
}

#[test]
fn a_short_secret_is_refused_from_the_environment_as_from_a_file() {
    let tmp = tempfile::tempdir().unwrap();
    let tcp = ["--rpc", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"];
    let mut cmd = serve_cmd(&tmp.path().join("env"), &tcp);
    cmd.env("ZCOORD_SECRET", "a");
    let err = stderr(&refused_cmd(cmd));
    assert!(
        err.contains("ZCOORD_SECRET is shorter than 16 characters"),
        "{err}"
    );

    let file = tmp.path().join("secret");
    fs::write(&file, "fifteen-chars-x\n").unwrap();
    chmod(&file, 0o600);
    let file_arg = file.display().to_string();
    let mut args = tcp.to_vec();
    args.extend(["--secret-file", &file_arg]);
    let err = stderr(&refused(&tmp.path().join("file"), &args));
    assert!(
        err.contains(&format!("{file_arg} is shorter than 16 characters")),
        "{err}"
    );
}

/// How long a refused client waits before the test concludes it got nothing.
const SILENCE: Duration = Duration::from_millis(700);

const TCP: [&str; 4] = ["--rpc", "tcp://127.0.0.1:0", "--pub", "tcp://127.0.0.1:0"];

/// A CURVE client's two sockets: a DEALER and a SUB subscribed to everything.
struct CurvePeer {
    dealer: zmq::Socket,
    sub: zmq::Socket,
}

impl CurvePeer {
    fn connect(
        ctx: &zmq::Context,
        s: &Served,
        server_key: &PublicKey,
        me: &zmq::CurveKeyPair,
    ) -> CurvePeer {
        let sock = |kind, endpoint: &str| {
            let sock = ctx.socket(kind).unwrap();
            sock.set_linger(0).unwrap();
            present_curve(&sock, server_key, me).unwrap();
            sock.connect(endpoint).unwrap();
            sock
        };
        let sub = sock(zmq::SUB, &s.endpoint("pub"));
        sub.set_subscribe(b"").unwrap();
        // A welcome right away, rather than waiting for the next heartbeat.
        sub.set_subscribe(b"instance.welcome/access").unwrap();
        CurvePeer {
            dealer: sock(zmq::DEALER, &s.endpoint("rpc")),
            sub,
        }
    }

    /// The status `instance.ping` answers, or `None` without an answer within `wait`.
    fn ping(&self, wait: Duration) -> Option<String> {
        self.dealer
            .send(r#"{"jsonrpc":"2.0","id":1,"method":"instance.ping"}"#, 0)
            .unwrap();
        let reply = recv_within(&self.dealer, wait)?;
        let v: Value = serde_json::from_slice(reply.last()?).ok()?;
        v["result"]["status"].as_str().map(str::to_owned)
    }

    /// Whether anything (its welcome, a heartbeat) arrives within `wait`.
    fn hears_events(&self, wait: Duration) -> bool {
        recv_within(&self.sub, wait).is_some()
    }
}

fn z85(key: &[u8; 32]) -> String {
    zmq::z85_encode(key).unwrap()
}

fn server_key(s: &Served) -> PublicKey {
    let text = s.discovery["curve_public_key"]
        .as_str()
        .expect("the discovery file holds the server's CURVE key");
    PublicKey::from_z85(text).unwrap()
}

#[test]
fn over_curve_only_authorised_keys_that_know_the_server_get_replies_and_events() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    fs::create_dir(&data).unwrap();
    let alice = zmq::CurveKeyPair::new().unwrap();
    let mallory = zmq::CurveKeyPair::new().unwrap();
    let keys_file = data.join("authorized_keys");
    fs::write(
        &keys_file,
        format!("# alice\n{} alice@laptop\n", z85(&alice.public_key)),
    )
    .unwrap();
    chmod(&keys_file, 0o600);
    let mut args = TCP.to_vec();
    args.extend(["--curve", "--heartbeat-interval", "0.05"]);
    let s = Served::start(&data, &args);
    assert!(
        s.discovery.get("secret").is_none(),
        "no PLAIN secret with CURVE"
    );
    let key = server_key(&s);
    assert_eq!(mode_of(&data.join("curve_server.key")), 0o600);
    let ctx = zmq::Context::new();

    // The CLI speaks PLAIN only, and says so instead of timing out.
    let ping = Command::new(BIN)
        .arg("--data-dir")
        .arg(&data)
        .args(["ping", "--timeout-ms", "3000"])
        .output()
        .unwrap();
    assert_eq!(ping.status.code(), Some(3));
    assert!(stderr(&ping).contains("speaks CURVE"), "{}", stderr(&ping));

    let authorised = CurvePeer::connect(&ctx, &s, &key, &alice);
    assert_eq!(authorised.ping(WAIT).as_deref(), Some("ok"));
    assert!(authorised.hears_events(WAIT));

    // An unknown key gets nothing at all; the refusal names the key, so that its owner can
    // authorise it. (Checked before any other refused peer: refusals share one log line a
    // second.)
    let stranger = CurvePeer::connect(&ctx, &s, &key, &mallory);
    assert_eq!(
        stranger.ping(SILENCE),
        None,
        "an unauthorised key got a reply"
    );
    assert!(
        !stranger.hears_events(SILENCE),
        "an unauthorised key got an event"
    );
    let refusal = format!(
        "client key \"{}\" is not in the authorised keys",
        z85(&mallory.public_key)
    );
    eventually("the refusal of the unauthorised key", || {
        s.log().contains(&refusal).then_some(())
    });
    drop(stranger);

    // The right key talking to a server it does not know: nothing either.
    let wrong_server = zmq::CurveKeyPair::new().unwrap();
    let fooled = CurvePeer::connect(
        &ctx,
        &s,
        &PublicKey::from_bytes(&wrong_server.public_key).unwrap(),
        &alice,
    );
    assert_eq!(fooled.ping(SILENCE), None, "a wrong server key got a reply");
    assert!(
        !fooled.hears_events(SILENCE),
        "a wrong server key got an event"
    );
    drop(fooled);

    // PLAIN (with anything for a secret) is no way in either.
    let plain = ctx.socket(zmq::DEALER).unwrap();
    plain.set_linger(0).unwrap();
    zcoord::transport::auth::present_plain(&plain, "0123456789abcdef0123").unwrap();
    plain.connect(&s.endpoint("rpc")).unwrap();
    plain
        .send(r#"{"jsonrpc":"2.0","id":1,"method":"instance.ping"}"#, 0)
        .unwrap();
    assert!(
        recv_within(&plain, SILENCE).is_none(),
        "a PLAIN peer got a reply"
    );

    // The file is read at every handshake: a key added now lets its owner in without a restart.
    fs::write(
        &keys_file,
        format!("{}\n{}\n", z85(&alice.public_key), z85(&mallory.public_key)),
    )
    .unwrap();
    let admitted = CurvePeer::connect(&ctx, &s, &key, &mallory);
    assert_eq!(admitted.ping(WAIT).as_deref(), Some("ok"));
    drop(s);

    // The key pair is the server's identity: the same after a restart.
    let again = Served::start(&data, &args);
    assert_eq!(server_key(&again), key);
    let back = CurvePeer::connect(&ctx, &again, &key, &alice);
    assert_eq!(back.ping(WAIT).as_deref(), Some("ok"));
}

#[test]
fn allow_remote_means_curve_and_warns_when_no_key_is_authorised() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    // Loopback only: --allow-remote's CURVE is the same on any address, and tests bind nothing
    // else.
    let mut args = TCP.to_vec();
    args.push("--allow-remote");
    let s = Served::start(&data, &args);
    server_key(&s);
    assert!(s.discovery.get("secret").is_none());
    let log = eventually("the warning", || {
        let log = s.log();
        log.contains("no client key is authorised").then_some(log)
    });
    assert!(
        log.contains(&data.join("authorized_keys").display().to_string()),
        "{log}"
    );
    drop(s);

    // A key file that others can write would let them authorise themselves: refused.
    let keys = tmp.path().join("keys");
    fs::write(&keys, "# none yet\n").unwrap();
    chmod(&keys, 0o666);
    let keys_arg = keys.display().to_string();
    let mut args = TCP.to_vec();
    args.extend(["--curve", "--authorized-keys", &keys_arg]);
    let err = stderr(&refused(&data, &args));
    assert!(err.contains("chmod go-w"), "{err}");
    // Keys without CURVE would guard nothing: refused rather than ignored.
    let err = stderr(&refused(
        &data,
        &[&TCP[..], &["--authorized-keys", &keys_arg]].concat(),
    ));
    assert!(err.contains("--authorized-keys is for CURVE"), "{err}");
    // So is a line that is not a key, with its number.
    chmod(&keys, 0o600);
    fs::write(&keys, "# one\nssh-ed25519 AAAAC3Nza me@host\n").unwrap();
    let err = stderr(&refused(&data, &args));
    assert!(err.contains("line 2"), "{err}");
}
