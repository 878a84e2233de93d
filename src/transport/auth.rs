//! Who may connect over tcp: a ZAP handler (ZeroMQ RFC 27) that checks every peer of the ROUTER
//! and the PUB, on its own thread, before the peer can send or receive a single message: the
//! PLAIN credentials against the instance's secret, or the CURVE client key against the
//! authorised keys file. The handshakes libzmq refuses without asking it (peers with no
//! credentials for the mechanism at all) are read by the transport thread from the sockets'
//! monitors (see `super::connections`). Refusals are logged at most once a second
//! (`RefusalLog`), with a count of those not logged: with the peer address when the ZAP request
//! carries it, with the server's endpoint only when the monitor reported it. Knows nothing of
//! JSON-RPC.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::curve::{AuthorizedKeys, PublicKey, ServerKeyPair};

/// The ZAP endpoint libzmq asks, in the sockets' own context.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
/// The ZAP domain our sockets set; requests for any other domain are refused.
pub const ZAP_DOMAIN: &str = "zcoord";
/// The PLAIN user name clients present (the password is the secret), and how a client presents
/// it: one definition, in the client crate.
pub use zcoord_client::plain::{present_plain, PLAIN_USERNAME};
/// The shortest secret accepted from the user (`ZCOORD_SECRET`, `--secret-file`); a generated
/// one is 32 characters.
pub const MIN_SECRET_CHARS: usize = 16;
/// How often the handler looks at its stop flag.
const STOP_POLL_MS: i64 = 100;

/// The shared secret of one instance. Never printed: `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

/// A secret the user gave that is too short to resist guessing.
#[derive(Debug, thiserror::Error)]
#[error("the secret in {origin} is shorter than {MIN_SECRET_CHARS} characters ({len}); use a longer one")]
pub struct SecretTooShort {
    /// Where it came from: the variable's name or the file's path.
    pub origin: String,
    pub len: usize,
}

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// A secret from the user (`origin` names where from, for the error): the one rule every
    /// source of a secret meets, at least [`MIN_SECRET_CHARS`] characters.
    pub fn given(text: &str, origin: &str) -> Result<Secret, SecretTooShort> {
        let len = text.chars().count();
        if len < MIN_SECRET_CHARS {
            return Err(SecretTooShort {
                origin: origin.to_owned(),
                len,
            });
        }
        Ok(Secret(text.to_owned()))
    }

    /// A fresh random secret: a v4 UUID as 32 hex digits, 122 bits from the OS generator.
    pub fn generate() -> Secret {
        Secret(uuid::Uuid::new_v4().simple().to_string())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the first difference is.
    fn matches(&self, given: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = want.len() ^ given.len();
        for (i, w) in want.iter().enumerate() {
            diff |= usize::from(w ^ given.get(i).copied().unwrap_or(0));
        }
        diff == 0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// How tcp peers prove who they are; the ZAP handler checks it at every handshake.
#[derive(Debug, Clone)]
pub enum TcpAuth {
    /// ZeroMQ PLAIN (RFC 24): user name `zcoord` and the secret, in clear text, as is all the
    /// traffic after it. For loopback, where nobody else is on the path.
    Plain(Secret),
    /// ZeroMQ CURVE (RFC 26): encrypted, and authenticated both ways. The server proves itself
    /// with `keys` (clients pin its public key); a client with its own key pair, whose public
    /// key must be listed in `authorized_keys` (read again at every handshake).
    Curve {
        keys: ServerKeyPair,
        authorized_keys: PathBuf,
    },
}

impl TcpAuth {
    /// Makes `sock` a server of this mechanism whose peers the ZAP handler checks. Peers that
    /// offer another mechanism (NULL, PLAIN to a CURVE server) are refused by libzmq itself.
    pub fn require(&self, sock: &zmq::Socket) -> Result<(), zmq::Error> {
        sock.set_zap_domain(ZAP_DOMAIN)?;
        match self {
            TcpAuth::Plain(_) => sock.set_plain_server(true),
            TcpAuth::Curve { keys, .. } => {
                sock.set_curve_server(true)?;
                sock.set_curve_secretkey(keys.secret_bytes())
            }
        }
    }
}

/// Makes `sock` a CURVE client of the server whose public key is `server`, proving itself with
/// `client` (whose public key the server must authorise). Set before `connect`.
pub fn present_curve(
    sock: &zmq::Socket,
    server: &PublicKey,
    client: &zmq::CurveKeyPair,
) -> Result<(), zmq::Error> {
    sock.set_curve_serverkey(server.as_bytes())?;
    sock.set_curve_publickey(&client.public_key)?;
    sock.set_curve_secretkey(&client.secret_key)
}

/// The running ZAP handler; stop it before the context terminates.
pub struct ZapHandler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ZapHandler {
    /// Binds the ZAP endpoint in `ctx` (before any socket that needs it binds) and starts
    /// answering.
    pub fn start(ctx: &zmq::Context, auth: TcpAuth) -> Result<ZapHandler, zmq::Error> {
        let sock = ctx.socket(zmq::REP)?;
        sock.set_linger(0)?;
        sock.bind(ZAP_ENDPOINT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("zcoord-zap".into())
            .spawn(move || serve(sock, auth, flag))
            .map_err(|_| zmq::Error::EMFILE)?;
        Ok(ZapHandler {
            stop,
            thread: Some(thread),
        })
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ZapHandler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(sock: zmq::Socket, auth: TcpAuth, stop: Arc<AtomicBool>) {
    let mut log = RefusalLog::default();
    while !stop.load(Ordering::SeqCst) {
        let mut items = [sock.as_poll_item(zmq::POLLIN)];
        match zmq::poll(&mut items, STOP_POLL_MS) {
            Ok(0) | Err(zmq::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "ZAP handler poll failed; refusing all peers from now on");
                return;
            }
        }
        let Ok(request) = sock.recv_multipart(0) else {
            continue;
        };
        let verdict = decide(&request, &auth);
        if let Verdict::Refused { address, why } = &verdict {
            if let Some(suppressed) = log.admit(Instant::now()) {
                tracing::warn!(peer = %address, reason = %why, suppressed, "connection refused at the handshake");
            }
        }
        let reply = reply_to(&request, &verdict);
        if let Err(e) = sock.send_multipart(reply, 0) {
            tracing::warn!(error = %e, "ZAP reply failed");
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// `user` is the RFC 27 user id: `zcoord` for PLAIN, the client's Z85 key for CURVE.
    Allowed {
        user: String,
    },
    Refused {
        address: String,
        why: String,
    },
}

/// What a request is checked against.
enum Check<'a> {
    Plain(&'a Secret),
    Curve(&'a AuthorizedKeys),
}

/// Judges one request under `auth`. For CURVE the authorised keys file is read now, so an edit
/// counts from the next handshake on, as with ssh; a file that has become unreadable or
/// invalid refuses everyone until it is fixed (said in the refusal).
fn decide(request: &[Vec<u8>], auth: &TcpAuth) -> Verdict {
    match auth {
        TcpAuth::Plain(secret) => judge(request, &Check::Plain(secret)),
        TcpAuth::Curve {
            authorized_keys, ..
        } => match AuthorizedKeys::load(authorized_keys) {
            Ok(keys) => judge(request, &Check::Curve(&keys)),
            Err(e) => Verdict::Refused {
                address: request
                    .get(3)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .unwrap_or_default(),
                why: e.to_string(),
            },
        },
    }
}

/// RFC 27 request: version, request id, domain, address, identity, mechanism, credentials….
fn judge(request: &[Vec<u8>], check: &Check) -> Verdict {
    let text = |i: usize| {
        request
            .get(i)
            .map(|f| String::from_utf8_lossy(f).into_owned())
    };
    let address = text(3).unwrap_or_default();
    let refuse = |why: &str| Verdict::Refused {
        address: address.clone(),
        why: why.to_owned(),
    };
    if request.len() < 6 || request[0] != b"1.0" {
        return refuse("malformed ZAP request");
    }
    if request[2] != ZAP_DOMAIN.as_bytes() {
        return refuse("unknown ZAP domain");
    }
    match check {
        Check::Plain(secret) => {
            if request[5] != b"PLAIN" {
                return refuse("not PLAIN (unauthenticated peer)");
            }
            match (request.get(6), request.get(7)) {
                (Some(user), Some(pass))
                    if user == PLAIN_USERNAME.as_bytes() && secret.matches(pass) =>
                {
                    Verdict::Allowed {
                        user: PLAIN_USERNAME.to_owned(),
                    }
                }
                _ => refuse("wrong user name or secret"),
            }
        }
        Check::Curve(keys) => {
            if request[5] != b"CURVE" {
                return refuse("not CURVE (unauthenticated peer)");
            }
            // libzmq has already checked that the client holds this key's secret half.
            match request.get(6).and_then(|k| PublicKey::from_bytes(k)) {
                Some(key) if keys.contains(&key) => Verdict::Allowed { user: key.z85() },
                // The key is public: logging it lets the user authorise it if it is theirs.
                Some(key) => refuse(&format!(
                    "client key \"{}\" is not in the authorised keys",
                    key.z85()
                )),
                None => refuse("malformed CURVE key"),
            }
        }
    }
}

fn reply_to(request: &[Vec<u8>], verdict: &Verdict) -> Vec<Vec<u8>> {
    let request_id = request.get(1).cloned().unwrap_or_default();
    let (code, text, user): (&[u8], &[u8], &[u8]) = match verdict {
        Verdict::Allowed { user } => (b"200", b"OK", user.as_bytes()),
        Verdict::Refused { .. } => (b"400", b"refused", b""),
    };
    vec![
        b"1.0".to_vec(),
        request_id,
        code.to_vec(),
        text.to_vec(),
        user.to_vec(),
        Vec::new(),
    ]
}

/// Lets one refusal a second be logged, and counts the others. Also used by the transport
/// thread for what the sockets' monitors report (`connections.rs`).
#[derive(Default)]
pub(super) struct RefusalLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RefusalLog {
    /// `Some(n)`: log this refusal, and say `n` went unlogged since the last line.
    pub(super) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mechanism: &str, creds: &[&str]) -> Vec<Vec<u8>> {
        let mut r: Vec<Vec<u8>> = ["1.0", "7", ZAP_DOMAIN, "127.0.0.1", "", mechanism]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        r.extend(creds.iter().map(|s| s.as_bytes().to_vec()));
        r
    }

    #[test]
    fn only_the_right_plain_credentials_pass() {
        let secret = Secret::new("s3cret");
        let s = Check::Plain(&secret);
        assert_eq!(
            judge(&request("PLAIN", &["zcoord", "s3cret"]), &s),
            Verdict::Allowed {
                user: "zcoord".into()
            }
        );
        for bad in [
            request("PLAIN", &["zcoord", "s3cre"]),
            request("PLAIN", &["zcoord", "s3cret!"]),
            request("PLAIN", &["other", "s3cret"]),
            request("PLAIN", &["zcoord"]),
            request("NULL", &[]),
            request("CURVE", &["key"]),
            vec![b"1.0".to_vec()],
        ] {
            assert!(
                matches!(judge(&bad, &s), Verdict::Refused { .. }),
                "{bad:?}"
            );
        }
        let mut other_domain = request("PLAIN", &["zcoord", "s3cret"]);
        other_domain[2] = b"x".to_vec();
        assert!(matches!(judge(&other_domain, &s), Verdict::Refused { .. }));
    }

    #[test]
    fn only_an_authorised_curve_key_passes() {
        let mine = zmq::CurveKeyPair::new().unwrap();
        let keys =
            AuthorizedKeys::parse(&format!("{}\n", zmq::z85_encode(&mine.public_key).unwrap()))
                .unwrap();
        let c = Check::Curve(&keys);
        let curve = |key: &[u8]| {
            let mut r = request("CURVE", &[]);
            r.push(key.to_vec());
            r
        };
        assert_eq!(
            judge(&curve(&mine.public_key), &c),
            Verdict::Allowed {
                user: zmq::z85_encode(&mine.public_key).unwrap()
            }
        );
        let stranger = zmq::CurveKeyPair::new().unwrap();
        match judge(&curve(&stranger.public_key), &c) {
            Verdict::Refused { why, .. } => {
                assert!(
                    why.contains(&zmq::z85_encode(&stranger.public_key).unwrap()),
                    "{why}"
                )
            }
            v => panic!("{v:?}"),
        }
        for bad in [
            curve(&mine.public_key[..31]),
            request("CURVE", &[]),
            request("PLAIN", &["zcoord", "s3cret"]),
            request("NULL", &[]),
        ] {
            assert!(
                matches!(judge(&bad, &c), Verdict::Refused { .. }),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn replies_follow_rfc_27_and_echo_the_request_id() {
        let r = request("PLAIN", &["zcoord", "x"]);
        let ok = reply_to(
            &r,
            &Verdict::Allowed {
                user: "zcoord".into(),
            },
        );
        assert_eq!(ok[0], b"1.0");
        assert_eq!(ok[1], b"7");
        assert_eq!(ok[2], b"200");
        assert_eq!(ok[4], b"zcoord");
        assert_eq!(ok.len(), 6);
        let no = reply_to(
            &r,
            &Verdict::Refused {
                address: String::new(),
                why: "x".into(),
            },
        );
        assert_eq!(no[2], b"400");
    }

    #[test]
    fn one_refusal_a_second_is_logged_with_the_count_of_the_others() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(log.admit(at(0)), Some(0));
        assert_eq!(log.admit(at(10)), None);
        assert_eq!(log.admit(at(999)), None);
        assert_eq!(log.admit(at(1000)), Some(2));
        assert_eq!(log.admit(at(5000)), Some(0));
    }

    #[test]
    fn a_given_secret_needs_16_characters_wherever_it_comes_from() {
        for origin in ["ZCOORD_SECRET", "/home/me/secret"] {
            let err = Secret::given("qz", origin).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(origin), "{msg}");
            assert!(msg.contains("shorter than 16 characters"), "{msg}");
            assert!(!msg.contains("qz"), "the secret itself is not shown: {msg}");
            assert!(Secret::given(&"x".repeat(15), origin).is_err());
            assert_eq!(
                Secret::given(&"x".repeat(16), origin).unwrap().expose(),
                "x".repeat(16)
            );
        }
        // Characters, not bytes: 15 two-byte characters are still too short.
        assert!(Secret::given(&"é".repeat(15), "ZCOORD_SECRET").is_err());
    }

    #[test]
    fn a_secret_never_shows_in_debug_output() {
        let s = Secret::generate();
        assert_eq!(s.expose().len(), 32);
        assert!(!format!("{s:?}").contains(s.expose()));
        assert_ne!(Secret::generate(), s);
    }
}
