//! Handshakes libzmq fails on its own, before any ZAP request: a peer that offers another
//! mechanism (NULL: a client without credentials), fails CURVE's cryptography (a wrong server
//! key), speaks no ZMTP, or hangs up mid-handshake. They
//! are read from a socket monitor (`zmq_socket_monitor`, event format v1: a 6-byte frame holding
//! the event (u16) and its value (u32) in native byte order, then a frame with the endpoint).
//! libzmq 4.3 names the server's own side of the connection there (the bound address), never
//! the peer's: the peer address is only in the v2 format, which is DRAFT API and not built. So
//! these refusals are logged without a peer address. Decoding only: the ZAP handler's thread
//! reads and logs them.

use std::io;

/// `ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL`: the connection failed mid-handshake; value = errno.
const FAILED_NO_DETAIL: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as u16;
/// `ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL`: a ZMTP or ZAP protocol error; value = its code.
const FAILED_PROTOCOL: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as u16;
/// `ZMQ_EVENT_HANDSHAKE_FAILED_AUTH`: the ZAP handler said no; value = its status code. The ZAP
/// handler logs those itself, with the peer address, so they are not watched.
const FAILED_AUTH: u16 = zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as u16;

/// The events watched: the failures the ZAP handler never hears of.
const WATCHED: u16 = FAILED_NO_DETAIL | FAILED_PROTOCOL;

/// `ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH` (zmq.h; the zmq crate does not export the codes):
/// the peer offered another mechanism than the server's (PLAIN or CURVE).
const MECHANISM_MISMATCH: u32 = 0x1100_0002;
/// `ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC`.
const CRYPTOGRAPHIC: u32 = 0x1100_0001;

/// Starts monitoring `sock`'s failed handshakes and returns the socket they are read from (in
/// `ctx`, connected before `sock` can fail one: libzmq's monitor blocks while nobody reads it).
pub fn watch(ctx: &zmq::Context, sock: &zmq::Socket) -> Result<zmq::Socket, zmq::Error> {
    let endpoint = format!("inproc://zcoord-handshakes-{}", uuid::Uuid::now_v7());
    sock.monitor(&endpoint, i32::from(WATCHED))?;
    let reader = ctx.socket(zmq::PAIR)?;
    reader.set_linger(0)?;
    reader.connect(&endpoint)?;
    Ok(reader)
}

/// One failed handshake, as the monitor reports it.
#[derive(Debug, PartialEq, Eq)]
pub struct HandshakeFailure {
    /// The server's endpoint the connection came in on (not the peer's address: see above).
    pub endpoint: String,
    pub why: String,
}

/// Decodes one monitor message; `None` for anything that is not a failed handshake.
pub fn decode(frames: &[Vec<u8>]) -> Option<HandshakeFailure> {
    let [head, endpoint] = frames else {
        return None;
    };
    let head: &[u8; 6] = head.as_slice().try_into().ok()?;
    let event = u16::from_ne_bytes([head[0], head[1]]);
    let value = u32::from_ne_bytes([head[2], head[3], head[4], head[5]]);
    Some(HandshakeFailure {
        endpoint: String::from_utf8_lossy(endpoint).into_owned(),
        why: describe(event, value)?,
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
        let f = decode(&message(
            FAILED_PROTOCOL,
            MECHANISM_MISMATCH,
            "tcp://127.0.0.1:5555",
        ))
        .unwrap();
        assert_eq!(f.endpoint, "tcp://127.0.0.1:5555");
        assert!(
            f.why.contains("no credentials for this server's mechanism"),
            "{}",
            f.why
        );
    }

    #[test]
    fn other_failures_say_what_libzmq_said() {
        let why = |e, v| decode(&message(e, v, "x")).unwrap().why;
        assert!(why(FAILED_PROTOCOL, 0x1000_0011).contains("ZMTP protocol error 0x10000011"));
        assert!(why(FAILED_PROTOCOL, 0x2000_0001).contains("ZAP protocol error"));
        assert!(why(FAILED_NO_DETAIL, 104).starts_with("handshake not completed: "));
        assert_eq!(why(FAILED_NO_DETAIL, 0), "handshake not completed");
        assert_eq!(why(FAILED_AUTH, 400), "ZAP status 400");
    }

    #[test]
    fn anything_else_is_not_a_failure() {
        // ZMQ_EVENT_ACCEPTED, ZMQ_EVENT_MONITOR_STOPPED, ZMQ_EVENT_HANDSHAKE_SUCCEEDED.
        for event in [0x0020, 0x0400, 0x1000] {
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
