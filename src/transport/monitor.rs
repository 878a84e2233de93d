//! A bound socket's monitor (`zmq_socket_monitor`, event format v1: a 6-byte frame holding the
//! event (u16) and its value (u32) in native byte order, then a frame with the endpoint), decoded:
//! connections accepted and ended, which [`super::connections`] counts against its limit, and
//! handshakes libzmq fails on its own, before any ZAP request: a peer that offers another
//! mechanism (NULL: a client without credentials), fails CURVE's cryptography (a wrong server
//! key), speaks no ZMTP, hangs up mid-handshake or
//! outlasts the handshake interval. libzmq 4.3 names the server's own side of the connection
//! there (the bound address), never the peer's: the peer address is only in the v2 format, which
//! is DRAFT API and not built. So these refusals are logged without a peer address.
//!
//! libzmq 4.3.4 allows one monitor per socket, so this one monitor serves both needs. What it
//! guarantees, from its source: `ZMQ_EVENT_ACCEPTED` (value: the new connection's descriptor) is
//! sent once per accepted connection (`stream_listener_base.cpp`), and `ZMQ_EVENT_DISCONNECTED`
//! (value: the same descriptor) whenever that connection's engine fails (`stream_engine_base.cpp`,
//! `error()`: end of stream, a protocol error, the handshake timer, heartbeat timeout), before
//! the descriptor is closed. A failed handshake is always followed by its `DISCONNECTED`. Engines
//! ended from the socket's side (closing or unbinding it) send no `DISCONNECTED`. Decoding only:
//! the transport thread reads the monitors.

use std::io;

/// `ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL`: the connection failed mid-handshake; value = errno.
const FAILED_NO_DETAIL: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as u16;
/// `ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL`: a ZMTP or ZAP protocol error; value = its code.
const FAILED_PROTOCOL: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as u16;
/// `ZMQ_EVENT_HANDSHAKE_FAILED_AUTH`: the ZAP handler said no; value = its status code. The ZAP
/// handler logs those itself, with the peer address, so they are not watched.
const FAILED_AUTH: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as u16;

/// `ZMQ_EVENT_ACCEPTED`: a connection was accepted; value = its descriptor.
const ACCEPTED: u16 = zmq::SocketEvent::ACCEPTED as u16;
/// `ZMQ_EVENT_DISCONNECTED`: a connection's engine ended; value = its descriptor.
const DISCONNECTED: u16 = zmq::SocketEvent::DISCONNECTED as u16;

/// The events watched: connections coming and going, and the failures the ZAP handler never
/// hears of.
const WATCHED: u16 = ACCEPTED | DISCONNECTED | FAILED_NO_DETAIL | FAILED_PROTOCOL;

/// `ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH` (zmq.h; the zmq crate does not export the codes):
/// the peer offered another mechanism than the server's (PLAIN or CURVE).
const MECHANISM_MISMATCH: u32 = 0x1100_0002;
/// `ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC`.
const CRYPTOGRAPHIC: u32 = 0x1100_0001;

/// Starts monitoring `sock`'s connections and failed handshakes, and returns the socket they are
/// read from (in `ctx`, connected before `sock` binds: libzmq's monitor blocks its I/O thread
/// while its queue is full, so the reader must keep reading for as long as `sock` lives).
pub fn watch(ctx: &zmq::Context, sock: &zmq::Socket) -> Result<zmq::Socket, zmq::Error> {
    let endpoint = format!("inproc://zcoord-handshakes-{}", uuid::Uuid::now_v7());
    sock.monitor(&endpoint, i32::from(WATCHED))?;
    let reader = ctx.socket(zmq::PAIR)?;
    reader.set_linger(0)?;
    reader.connect(&endpoint)?;
    Ok(reader)
}

/// What one monitor message says.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// A connection was accepted on `endpoint` (the server's address, as libzmq formats it).
    Accepted {
        fd: i32,
        endpoint: String,
    },
    /// The connection on descriptor `fd` ended; the descriptor is closed right after.
    Disconnected {
        fd: i32,
    },
    Failed(HandshakeFailure),
}

/// One failed handshake, as the monitor reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// The server's endpoint the connection came in on (not the peer's address: see above).
    pub endpoint: String,
    pub why: String,
}

/// Decodes one monitor message; `None` for anything not watched (and for what is not a monitor
/// message at all).
pub fn decode(frames: &[Vec<u8>]) -> Option<Event> {
    let [head, endpoint] = frames else {
        return None;
    };
    let head: &[u8; 6] = head.as_slice().try_into().ok()?;
    let event = u16::from_ne_bytes([head[0], head[1]]);
    let value = u32::from_ne_bytes([head[2], head[3], head[4], head[5]]);
    let endpoint = String::from_utf8_lossy(endpoint).into_owned();
    // Descriptors are small non-negative ints; libzmq sends them as u32.
    let fd = i32::try_from(value).ok();
    Some(match event {
        ACCEPTED => Event::Accepted { fd: fd?, endpoint },
        DISCONNECTED => Event::Disconnected { fd: fd? },
        _ => Event::Failed(HandshakeFailure {
            endpoint,
            why: describe(event, value)?,
        }),
    })
}

fn describe(event: u16, value: u32) -> Option<String> {
    Some(match (event, value) {
        (FAILED_PROTOCOL, MECHANISM_MISMATCH) => {
            "no credentials for this server's mechanism (the peer offered another: NULL, or PLAIN to CURVE or the reverse)".into()
        }
        (FAILED_PROTOCOL, CRYPTOGRAPHIC) => "cryptographic error".into(),
        (FAILED_PROTOCOL, v) if v >> 28 == 0x2 => format!("ZAP protocol error 0x{v:08x}"),
        (FAILED_PROTOCOL, v) => format!("ZMTP protocol error 0x{v:08x} (not a valid ZeroMQ peer)"),
        (FAILED_NO_DETAIL, errno) => match i32::try_from(errno) {
            Ok(e) if e != 0 => format!(
                "handshake not completed: {}",
                io::Error::from_raw_os_error(e)
            ),
            _ => "handshake not completed".into(),
        },
        (FAILED_AUTH, status) => format!("ZAP status {status}"),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(event: u16, value: u32, endpoint: &str) -> Vec<Vec<u8>> {
        let mut head = event.to_ne_bytes().to_vec();
        head.extend_from_slice(&value.to_ne_bytes());
        vec![head, endpoint.as_bytes().to_vec()]
    }

    #[test]
    fn a_peer_without_plain_is_named_as_such() {
        let Some(Event::Failed(f)) = decode(&message(
            FAILED_PROTOCOL,
            MECHANISM_MISMATCH,
            "tcp://127.0.0.1:5555",
        )) else {
            panic!("not a failure")
        };
        assert_eq!(f.endpoint, "tcp://127.0.0.1:5555");
        assert!(
            f.why.contains("no credentials for this server's mechanism"),
            "{}",
            f.why
        );
    }

    #[test]
    fn other_failures_say_what_libzmq_said() {
        let why = |e, v| match decode(&message(e, v, "x")) {
            Some(Event::Failed(f)) => f.why,
            other => panic!("{other:?}"),
        };
        assert!(why(FAILED_PROTOCOL, 0x1000_0011).contains("ZMTP protocol error 0x10000011"));
        assert!(why(FAILED_PROTOCOL, 0x2000_0001).contains("ZAP protocol error"));
        assert!(why(FAILED_NO_DETAIL, 104).starts_with("handshake not completed: "));
        assert_eq!(why(FAILED_NO_DETAIL, 0), "handshake not completed");
        assert_eq!(why(FAILED_AUTH, 400), "ZAP status 400");
    }

    #[test]
    fn connections_carry_their_descriptor() {
        assert_eq!(
            decode(&message(ACCEPTED, 17, "ipc:///run/rpc.sock")),
            Some(Event::Accepted {
                fd: 17,
                endpoint: "ipc:///run/rpc.sock".into()
            })
        );
        assert_eq!(
            decode(&message(DISCONNECTED, 17, "x")),
            Some(Event::Disconnected { fd: 17 })
        );
        assert_eq!(decode(&message(ACCEPTED, u32::MAX, "x")), None, "no fd");
    }

    #[test]
    fn anything_else_is_not_watched() {
        // ZMQ_EVENT_LISTENING, ZMQ_EVENT_MONITOR_STOPPED, ZMQ_EVENT_HANDSHAKE_SUCCEEDED.
        for event in [0x0008, 0x0400, 0x1000] {
            assert_eq!(decode(&message(event, 7, "x")), None);
        }
        assert_eq!(decode(&[vec![0; 5], b"x".to_vec()]), None, "short head");
        assert_eq!(decode(&[vec![0; 6]]), None, "no endpoint frame");
        assert_eq!(
            decode(&[vec![0; 6], vec![], vec![]]),
            None,
            "a frame too many"
        );
    }
}
