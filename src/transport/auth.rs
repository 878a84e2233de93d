//! Who may connect over tcp: a ZAP handler (ZeroMQ RFC 27) that checks the PLAIN credentials of
//! every peer of the ROUTER and the PUB against the instance's secret, on its own thread, before
//! the peer can send or receive a single message. The handshakes libzmq refuses without asking it
//! (peers with no PLAIN at all) are read by the transport thread from the sockets' monitors (see
//! [`super::connections`]). Refusals are logged at most once a second ([`RefusalLog`]), with a
//! count of those not logged: with the peer address when the ZAP request carries it, with the
//! server's endpoint only when the monitor reported it. Knows nothing of JSON-RPC.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The ZAP endpoint libzmq asks, in the sockets' own context.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";
/// The ZAP domain our sockets set; requests for any other domain are refused.
pub const ZAP_DOMAIN: &str = "zcoord";
/// The PLAIN user name clients present; the password is the secret.
pub const PLAIN_USERNAME: &str = "zcoord";
/// How often the handler looks at its stop flag.
const STOP_POLL_MS: i64 = 100;

/// The shared secret of one instance. Never printed: `Debug` shows its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
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

/// Makes `sock` a PLAIN server whose peers the ZAP handler checks.
pub fn require_plain(sock: &zmq::Socket) -> Result<(), zmq::Error> {
    sock.set_zap_domain(ZAP_DOMAIN)?;
    sock.set_plain_server(true)
}

/// Makes `sock` present the PLAIN credentials for `secret` (clients).
pub fn present_plain(sock: &zmq::Socket, secret: &str) -> Result<(), zmq::Error> {
    sock.set_plain_username(Some(PLAIN_USERNAME))?;
    sock.set_plain_password(Some(secret))
}

/// The running ZAP handler; stop it before the context terminates.
pub struct ZapHandler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ZapHandler {
    /// Binds the ZAP endpoint in `ctx` (before any socket that needs it binds) and starts
    /// answering.
    pub fn start(ctx: &zmq::Context, secret: Secret) -> Result<ZapHandler, zmq::Error> {
        let sock = ctx.socket(zmq::REP)?;
        sock.set_linger(0)?;
        sock.bind(ZAP_ENDPOINT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("zcoord-zap".into())
            .spawn(move || serve(sock, secret, flag))
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

fn serve(sock: zmq::Socket, secret: Secret, stop: Arc<AtomicBool>) {
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
        let verdict = judge(&request, &secret);
        if let Verdict::Refused { address, why } = &verdict {
            if let Some(suppressed) = log.admit(Instant::now()) {
                tracing::warn!(peer = %address, reason = why, suppressed, "connection refused at the handshake");
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
    Allowed,
    Refused { address: String, why: &'static str },
}

/// RFC 27 request: version, request id, domain, address, identity, mechanism, credentials….
fn judge(request: &[Vec<u8>], secret: &Secret) -> Verdict {
    let text = |i: usize| {
        request
            .get(i)
            .map(|f| String::from_utf8_lossy(f).into_owned())
    };
    let address = text(3).unwrap_or_default();
    let refuse = |why| Verdict::Refused {
        address: address.clone(),
        why,
    };
    if request.len() < 6 || request[0] != b"1.0" {
        return refuse("malformed ZAP request");
    }
    if request[2] != ZAP_DOMAIN.as_bytes() {
        return refuse("unknown ZAP domain");
    }
    if request[5] != b"PLAIN" {
        return refuse("not PLAIN (unauthenticated peer)");
    }
    match (request.get(6), request.get(7)) {
        (Some(user), Some(pass)) if user == PLAIN_USERNAME.as_bytes() && secret.matches(pass) => {
            Verdict::Allowed
        }
        _ => refuse("wrong user name or secret"),
    }
}

fn reply_to(request: &[Vec<u8>], verdict: &Verdict) -> Vec<Vec<u8>> {
    let request_id = request.get(1).cloned().unwrap_or_default();
    let (code, text, user): (&[u8], &[u8], &[u8]) = match verdict {
        Verdict::Allowed => (b"200", b"OK", PLAIN_USERNAME.as_bytes()),
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
        let s = Secret::new("s3cret");
        assert_eq!(
            judge(&request("PLAIN", &["zcoord", "s3cret"]), &s),
            Verdict::Allowed
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
    fn replies_follow_rfc_27_and_echo_the_request_id() {
        let r = request("PLAIN", &["zcoord", "x"]);
        let ok = reply_to(&r, &Verdict::Allowed);
        assert_eq!(ok[0], b"1.0");
        assert_eq!(ok[1], b"7");
        assert_eq!(ok[2], b"200");
        assert_eq!(ok.len(), 6);
        let no = reply_to(
            &r,
            &Verdict::Refused {
                address: String::new(),
                why: "x",
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
    fn a_secret_never_shows_in_debug_output() {
        let s = Secret::generate();
        assert_eq!(s.expose().len(), 32);
        assert!(!format!("{s:?}").contains(s.expose()));
        assert_ne!(Secret::generate(), s);
    }
}
