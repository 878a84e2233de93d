//! Malformed and hostile input over real sockets. Every bad request gets the exact JSON-RPC answer
//! the protocol promises (or, for a notification, none), odd framing is answered in a shape the
//! sender can receive, and peers that break ZMTP itself are cut off without disturbing anyone
//! else. Every test ends by checking that `instance.ping` still answers.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{
    garbage, port_of, recv_within, spawn_daemon, spawn_daemon_with, zmtp3_greeting, zmtp3_ready,
    Daemon, WAIT,
};

/// How long a socket must stay silent to count as "got no reply". Only used where the server has
/// already shown (by a monitor event) that it dropped the peer, so nothing could be in flight.
const SILENCE: Duration = Duration::from_millis(300);

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Sends `frames` as one message and returns the frames of the next message received.
#[track_caller]
fn exchange(sock: &zmq::Socket, frames: &[&[u8]]) -> Vec<Vec<u8>> {
    sock.send_multipart(frames.iter().copied(), 0)
        .expect("send");
    recv_within(sock, WAIT).unwrap_or_else(|| {
        panic!(
            "no reply within {WAIT:?} to {} frame(s) starting {:?}",
            frames.len(),
            preview(frames.first().copied().unwrap_or_default())
        )
    })
}

/// Sends one frame, expects a one-frame reply (a DEALER without delimiter) and parses it.
#[track_caller]
fn rpc(sock: &zmq::Socket, body: &[u8]) -> Value {
    let reply = exchange(sock, &[body]);
    assert_eq!(
        reply.len(),
        1,
        "reply to {:?} framed as {reply:?}",
        preview(body)
    );
    parse(&reply[0])
}

#[track_caller]
fn parse(frame: &[u8]) -> Value {
    serde_json::from_slice(frame)
        .unwrap_or_else(|e| panic!("reply is not JSON ({e}): {:?}", preview(frame)))
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(120)]).into_owned();
    format!("{text} ({} bytes)", bytes.len())
}

fn ping_body(id: Value) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "method": "instance.ping"})
        .to_string()
        .into_bytes()
}

/// Checks `reply` is exactly an error answer: `jsonrpc` "2.0", an `id` member equal to `id`, no
/// `result`, the expected `code`, and every member of `data` in `error.data`. `kind` must be absent
/// unless `data` names it, so a wrong or stray kind is caught too.
#[track_caller]
fn assert_error(what: &str, reply: &Value, code: i64, id: &Value, data: &Value) {
    let obj = reply
        .as_object()
        .unwrap_or_else(|| panic!("{what}: reply is not an object: {reply}"));
    assert_eq!(obj.get("jsonrpc"), Some(&json!("2.0")), "{what}: {reply}");
    assert_eq!(obj.get("id"), Some(id), "{what}: id of {reply}");
    assert!(
        !obj.contains_key("result"),
        "{what}: error reply with a result: {reply}"
    );
    let error = &reply["error"];
    assert_eq!(error["code"], json!(code), "{what}: code of {reply}");
    assert!(error["message"].is_string(), "{what}: message of {reply}");
    let got = &error["data"];
    for (member, want) in data.as_object().expect("data is an object") {
        assert_eq!(&got[member], want, "{what}: error.data.{member} of {reply}");
    }
    if data.get("kind").is_none() {
        assert!(
            got.get("kind").is_none(),
            "{what}: unexpected kind in {reply}"
        );
    }
}

/// Sends a ping on `sock` and checks that the very next message it receives is that ping's answer.
/// Calls the core answers are answered in order per peer, so this proves that nothing sent earlier
/// on `sock` (a notification, say) was answered.
#[track_caller]
fn assert_next_reply_is_ping(what: &str, sock: &zmq::Socket) {
    let reply = rpc(sock, &ping_body(json!("probe")));
    assert_eq!(
        reply["id"], "probe",
        "{what}: got an answer it should not have: {reply}"
    );
    assert_eq!(reply["result"]["status"], "ok", "{what}: {reply}");
}

/// `instance.ping` answers on a fresh connection.
#[track_caller]
fn assert_alive(d: &Daemon) {
    let result = d.call("instance.ping", json!({}));
    assert_eq!(result["status"], "ok", "{result}");
    assert_eq!(result["instance_id"], d.instance_id.as_str());
}

/// One table row: a single frame sent by a DEALER and the error it must get back.
struct Case {
    what: String,
    body: Vec<u8>,
    code: i64,
    id: Value,
    /// Members `error.data` must have.
    data: Value,
}

/// Bytes that are not JSON: -32700 with a null id.
fn unparsable(what: &str, body: impl AsRef<[u8]>) -> Case {
    Case {
        what: what.into(),
        body: body.as_ref().to_vec(),
        code: -32700,
        id: Value::Null,
        data: json!({}),
    }
}

/// JSON that is not a valid request: -32600, with `id` echoed when it could be read.
fn invalid(what: &str, body: &str, id: Value) -> Case {
    Case {
        code: -32600,
        id,
        ..unparsable(what, body)
    }
}

/// A well-formed call of `method` whose id is `what` itself, failing with `code` and `data`.
fn call(what: &str, method: &str, params: Value, code: i64, data: Value) -> Case {
    let body = json!({"jsonrpc": "2.0", "id": what, "method": method, "params": params});
    Case {
        what: what.into(),
        body: body.to_string().into_bytes(),
        code,
        id: json!(what),
        data,
    }
}

fn field(name: &str) -> Value {
    json!({ "field": name })
}

/// Runs every case on one DEALER, in order, then checks the same DEALER and a fresh one still work.
fn run_cases(d: &Daemon, cases: &[Case]) {
    let sock = d.raw(zmq::DEALER);
    for c in cases {
        let reply = rpc(&sock, &c.body);
        assert_error(&c.what, &reply, c.code, &c.id, &c.data);
    }
    assert_next_reply_is_ping("after the table", &sock);
    assert_alive(d);
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC envelope and params
// ---------------------------------------------------------------------------------------------

#[test]
fn malformed_requests_get_the_exact_error() {
    let d = spawn_daemon();
    let null = Value::Null;
    let ping = String::from_utf8(ping_body(json!(1))).unwrap();
    let batch_of_257 = format!("[{}]", vec![ping.as_str(); 257].join(","));
    let mut too_long = invalid("batch over 256 calls", &batch_of_257, null.clone());
    too_long.data = json!({"kind": "batch_too_large"});
    let p = r#""method":"instance.ping""#;
    let cases = [
        unparsable("one empty frame", ""),
        unparsable("plain text", "not json"),
        unparsable("truncated object", r#"{"jsonrpc":"2.0","id":1,"#),
        unparsable("invalid UTF-8", b"\xff\xfe{}"),
        unparsable("bytes after the object", format!("{ping} x")),
        unparsable(
            "nesting past the depth limit",
            "[".repeat(5_000) + &"]".repeat(5_000),
        ),
        invalid("a number", "42", null.clone()),
        invalid("a string", r#""x""#, null.clone()),
        invalid("null", "null", null.clone()),
        invalid("empty batch", "[]", null.clone()),
        too_long,
        invalid("jsonrpc missing", &format!(r#"{{"id":1,{p}}}"#), json!(1)),
        invalid(
            "jsonrpc 1.0",
            &format!(r#"{{"jsonrpc":"1.0","id":"a",{p}}}"#),
            json!("a"),
        ),
        invalid(
            "jsonrpc a number",
            &format!(r#"{{"jsonrpc":2.0,"id":2,{p}}}"#),
            json!(2),
        ),
        invalid("method missing", r#"{"jsonrpc":"2.0","id":3}"#, json!(3)),
        invalid(
            "method a number",
            r#"{"jsonrpc":"2.0","id":4,"method":5}"#,
            json!(4),
        ),
        invalid(
            "method null",
            r#"{"jsonrpc":"2.0","id":"m","method":null}"#,
            json!("m"),
        ),
        invalid(
            "id an object",
            &format!(r#"{{"jsonrpc":"2.0","id":{{}},{p}}}"#),
            null.clone(),
        ),
        invalid(
            "id an array",
            &format!(r#"{{"jsonrpc":"2.0","id":[1],{p}}}"#),
            null.clone(),
        ),
        invalid(
            "id a boolean",
            &format!(r#"{{"jsonrpc":"2.0","id":true,{p}}}"#),
            null.clone(),
        ),
        // Invalid, so answered although it has no id: it cannot be told from a broken request.
        invalid(
            "invalid and without id",
            r#"{"jsonrpc":"2.0","method":7}"#,
            null.clone(),
        ),
        invalid(
            "params a string",
            &format!(r#"{{"jsonrpc":"2.0","id":5,{p},"params":"x"}}"#),
            json!(5),
        ),
        invalid(
            "params a number",
            &format!(r#"{{"jsonrpc":"2.0","id":6,{p},"params":6}}"#),
            json!(6),
        ),
        call("unknown method", "no.such", json!({}), -32601, json!({})),
        call(
            "method in the wrong case",
            "INSTANCE.PING",
            json!({}),
            -32601,
            json!({}),
        ),
        call(
            "unknown method, bad params",
            "no.such",
            json!([1]),
            -32601,
            json!({}),
        ),
        call(
            "params an array",
            "instance.ping",
            json!([1, 2]),
            -32602,
            field("params"),
        ),
        call(
            "params an empty array",
            "session.list",
            json!([]),
            -32602,
            field("params"),
        ),
        call(
            "session_id a number",
            "session.get",
            json!({"session_id": 5}),
            -32602,
            field("session_id"),
        ),
        call(
            "session_id missing",
            "session.get",
            json!({}),
            -32602,
            field("session_id"),
        ),
        call(
            "params null",
            "message.list",
            Value::Null,
            -32602,
            field("session_id"),
        ),
        call(
            "content blank",
            "message.send",
            json!({"content": " "}),
            -32602,
            field("content"),
        ),
        call(
            "content an array",
            "message.send",
            json!({"content": ["a"]}),
            -32602,
            field("content"),
        ),
        call(
            "title a boolean",
            "session.create",
            json!({"title": true}),
            -32602,
            field("title"),
        ),
    ];
    run_cases(&d, &cases);
}

#[test]
fn unknown_session_ids_are_session_not_found() {
    let d = spawn_daemon();
    // A session that exists, so "not found" cannot mean "there are no sessions at all".
    let real = d.call("session.create", json!({"title": "real"}));
    assert!(real["id"].is_string(), "{real}");

    let unknown_uuid = uuid::Uuid::now_v7().to_string();
    let methods = [
        "session.get",
        "session.delete",
        "session.activate",
        "session.interrupt",
        "message.list",
        "message.send",
    ];
    let mut cases = Vec::new();
    for method in methods {
        for sid in [unknown_uuid.as_str(), "not-a-session", ""] {
            let params = json!({"session_id": sid, "content": "hi"});
            let data = json!({"kind": "session_not_found", "session_id": sid});
            let what = format!("{method} of session {sid:?}");
            cases.push(call(&what, method, params, -32001, data));
        }
    }
    run_cases(&d, &cases);
    // Nothing was created or deleted by all that.
    let list = d.call("session.list", json!({}));
    assert_eq!(list["sessions"].as_array().map(Vec::len), Some(1), "{list}");
}

#[test]
fn mixed_batch_answers_every_call_in_order() {
    let d = spawn_daemon();
    let sock = d.raw(zmq::DEALER);
    let body = json!([
        {"jsonrpc": "2.0", "id": 1, "method": "instance.ping"},
        42,
        {"jsonrpc": "2.0", "method": "instance.ping"},
        {"jsonrpc": "2.0", "id": "x", "method": "no.such"},
        {"jsonrpc": "2.0", "method": "no.such"},
        {"jsonrpc": "1.0", "id": 3, "method": "instance.ping"},
        {"jsonrpc": "2.0", "id": 4, "method": "session.get", "params": {"session_id": 5}},
        {"jsonrpc": "2.0", "id": null, "method": "session.list"}
    ]);
    let reply = rpc(&sock, body.to_string().as_bytes());
    let items = reply
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {reply}"));
    assert_eq!(
        items.len(),
        6,
        "one entry per call that is not a notification: {reply}"
    );

    assert_eq!(items[0]["id"], 1);
    assert_eq!(items[0]["result"]["status"], "ok", "{reply}");
    assert_error("item 42", &items[1], -32600, &Value::Null, &json!({}));
    assert_error("unknown method", &items[2], -32601, &json!("x"), &json!({}));
    assert_error("jsonrpc 1.0", &items[3], -32600, &json!(3), &json!({}));
    assert_error(
        "bad params",
        &items[4],
        -32602,
        &json!(4),
        &json!({"field": "session_id"}),
    );
    assert!(items[5].as_object().unwrap().contains_key("id"));
    assert_eq!(items[5]["id"], Value::Null);
    assert!(items[5]["result"]["sessions"].is_array(), "{reply}");

    assert_next_reply_is_ping("after the batch", &sock);
    assert_alive(&d);
}

#[test]
fn notifications_are_never_answered() {
    let d = spawn_daemon();
    let sock = d.raw(zmq::DEALER);
    let unknown_session = uuid::Uuid::now_v7().to_string();
    let notifications = [
        (
            "unknown method",
            json!({"jsonrpc": "2.0", "method": "no.such"}),
        ),
        (
            "bad params",
            json!({"jsonrpc": "2.0", "method": "session.get", "params": {"session_id": 5}}),
        ),
        (
            "unknown session",
            json!({"jsonrpc": "2.0", "method": "session.get",
                   "params": {"session_id": unknown_session}}),
        ),
        (
            "a ping",
            json!({"jsonrpc": "2.0", "method": "instance.ping"}),
        ),
        (
            "a batch of only notifications",
            json!([
                {"jsonrpc": "2.0", "method": "instance.ping"},
                {"jsonrpc": "2.0", "method": "no.such"},
                {"jsonrpc": "2.0", "method": "session.list", "params": [1]}
            ]),
        ),
    ];
    for (what, body) in notifications {
        sock.send(body.to_string().as_bytes(), 0).expect("send");
        assert_next_reply_is_ping(what, &sock);
    }
    assert_alive(&d);
}

// ---------------------------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------------------------

#[test]
fn odd_frame_counts_are_invalid_frames_framed_back_to_the_sender() {
    let d = spawn_daemon();
    let ping = ping_body(json!(1));
    let dealer = d.raw(zmq::DEALER);
    let ten: Vec<&[u8]> = vec![&b"f"[..]; 10];
    // (frames sent by a DEALER, frames after the routing id, whether the reply keeps a delimiter)
    let shapes: [(&[&[u8]], usize, bool); 6] = [
        (&[b"a", b"b"], 2, false),
        (&[b"a", b"b", b"c"], 3, false),
        (&[b"", &ping, b"extra"], 3, true),
        (&[b"", b"", b""], 3, true),
        (&[b"x", b"", &ping], 3, false),
        (&ten, 10, false),
    ];
    for (frames, count, delimited) in shapes {
        let what = format!("{} frames, delimiter {delimited}", frames.len());
        let reply = exchange(&dealer, frames);
        let body = if delimited {
            assert_eq!(reply.len(), 2, "{what}: {reply:?}");
            assert!(
                reply[0].is_empty(),
                "{what}: delimiter expected, got {reply:?}"
            );
            &reply[1]
        } else {
            assert_eq!(reply.len(), 1, "{what}: {reply:?}");
            &reply[0]
        };
        let reply = parse(body);
        assert_error(
            &what,
            &reply,
            -32006,
            &Value::Null,
            &json!({"kind": "invalid_frames"}),
        );
        let message = reply["error"]["message"].as_str().unwrap_or_default();
        assert!(
            message.contains(&format!("got {count} frames")),
            "{what}: {reply}"
        );
    }

    // A REQ adds its delimiter in front of both parts: ["", "a", "b"].
    let req = d.raw(zmq::REQ);
    let reply = exchange(&req, &[b"a", b"b"]);
    assert_eq!(reply.len(), 1, "REQ strips the delimiter: {reply:?}");
    assert_error(
        "REQ two parts",
        &parse(&reply[0]),
        -32006,
        &Value::Null,
        &json!({"kind": "invalid_frames"}),
    );

    // A delimiter followed by an empty body is a well-framed request that does not parse.
    let reply = exchange(&dealer, &[b"", b""]);
    assert_eq!(reply.len(), 2, "{reply:?}");
    assert_error(
        "delimiter and empty body",
        &parse(&reply[1]),
        -32700,
        &Value::Null,
        &json!({}),
    );

    assert_next_reply_is_ping("after odd frames", &dealer);
    assert_alive(&d);
}

#[test]
fn req_and_dealer_with_and_without_delimiter_all_get_answers() {
    let d = spawn_daemon();

    let req = d.raw(zmq::REQ);
    for id in 1..=3 {
        let reply = exchange(&req, &[&ping_body(json!(id))]);
        assert_eq!(reply.len(), 1, "REQ receives the body alone: {reply:?}");
        let reply = parse(&reply[0]);
        assert_eq!(reply["id"], id);
        assert_eq!(reply["result"]["status"], "ok", "{reply}");
    }
    let reply = exchange(&req, &[b"nope"]);
    assert_error(
        "REQ garbage",
        &parse(&reply[0]),
        -32700,
        &Value::Null,
        &json!({}),
    );

    let dealer = d.raw(zmq::DEALER);
    let reply = exchange(&dealer, &[b"", &ping_body(json!("delimited"))]);
    assert_eq!(reply.len(), 2, "the delimiter comes back: {reply:?}");
    assert!(reply[0].is_empty(), "{reply:?}");
    assert_eq!(parse(&reply[1])["id"], "delimited");

    let reply = exchange(&dealer, &[&ping_body(json!("bare"))]);
    assert_eq!(reply.len(), 1, "no delimiter in, none out: {reply:?}");
    assert_eq!(parse(&reply[0])["id"], "bare");
    assert_eq!(parse(&reply[0])["result"]["status"], "ok");

    assert_alive(&d);
}

// ---------------------------------------------------------------------------------------------
// Size limits
// ---------------------------------------------------------------------------------------------

const LIMIT: usize = 64 * 1024;

fn small_limit_daemon() -> Daemon {
    spawn_daemon_with(|c| c.transport.max_message_bytes = LIMIT)
}

/// A valid ping padded with trailing whitespace to exactly `len` bytes.
fn padded_ping(id: i64, len: usize) -> Vec<u8> {
    let mut body = ping_body(json!(id));
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

#[test]
fn frames_up_to_twice_the_limit_get_message_too_large() {
    let d = small_limit_daemon();
    let sock = d.raw(zmq::DEALER);

    let reply = rpc(&sock, &padded_ping(1, LIMIT));
    assert_eq!(
        reply["id"], 1,
        "a frame of exactly the limit is served: {reply}"
    );
    assert_eq!(reply["result"]["status"], "ok", "{reply}");

    let too_large = json!({"kind": "message_too_large", "limit": LIMIT});
    for len in [LIMIT + 1, LIMIT * 3 / 2, LIMIT * 2] {
        let reply = rpc(&sock, &padded_ping(2, len));
        assert_error(
            &format!("{len} bytes"),
            &reply,
            -32003,
            &Value::Null,
            &too_large,
        );
    }
    // The same with a delimiter: the answer keeps it.
    let reply = exchange(&sock, &[b"", &padded_ping(3, LIMIT + 1)]);
    assert_eq!(reply.len(), 2, "{reply:?}");
    assert_error(
        "delimited",
        &parse(&reply[1]),
        -32003,
        &Value::Null,
        &too_large,
    );

    assert_next_reply_is_ping("after oversized frames", &sock);
    assert_alive(&d);
}

/// A DEALER with a monitor reporting its disconnections.
fn monitored_dealer(d: &Daemon) -> (zmq::Socket, zmq::Socket) {
    let sock = d.ctx.socket(zmq::DEALER).unwrap();
    sock.set_linger(0).unwrap();
    let addr = format!("inproc://monitor-{}", uuid::Uuid::now_v7());
    sock.monitor(&addr, zmq::SocketEvent::DISCONNECTED as i32)
        .unwrap();
    let monitor = d.ctx.socket(zmq::PAIR).unwrap();
    monitor.set_linger(0).unwrap();
    monitor.connect(&addr).unwrap();
    sock.connect(&d.rpc).unwrap();
    (sock, monitor)
}

#[track_caller]
fn wait_disconnected(monitor: &zmq::Socket) {
    let event = recv_within(monitor, WAIT).expect("the server never dropped the connection");
    let raw = u16::from_le_bytes([event[0][0], event[0][1]]);
    assert_eq!(
        zmq::SocketEvent::from_raw(raw),
        zmq::SocketEvent::DISCONNECTED
    );
}

#[test]
fn frames_over_twice_the_limit_disconnect_only_that_peer() {
    let d = small_limit_daemon();
    let bystander = d.raw(zmq::DEALER);
    assert_next_reply_is_ping("bystander before", &bystander);

    for len in [LIMIT * 2 + 1, LIMIT * 4] {
        let (sock, monitor) = monitored_dealer(&d);
        assert_next_reply_is_ping("before the big frame", &sock);
        sock.send(padded_ping(9, len), 0).expect("send");
        wait_disconnected(&monitor);
        assert!(
            recv_within(&sock, SILENCE).is_none(),
            "a {len}-byte frame was answered instead of dropping the peer"
        );
        assert_next_reply_is_ping("bystander during", &bystander);
        // The DEALER reconnects by itself and is served again.
        assert_next_reply_is_ping("the same DEALER after reconnecting", &sock);
    }
    assert_alive(&d);
}

// ---------------------------------------------------------------------------------------------
// Peers that do not speak ZMTP
// ---------------------------------------------------------------------------------------------

fn tcp(d: &Daemon) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port_of(&d.rpc))).expect("tcp connect");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.set_write_timeout(Some(WAIT)).unwrap();
    s
}

/// Reads until the server closes the connection; panics if it is still open after `WAIT`.
#[track_caller]
fn assert_closed_by_server(stream: &mut TcpStream) {
    let deadline = Instant::now() + WAIT;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("unexpected read error: {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "the server kept the connection open"
        );
    }
}

#[test]
fn hostile_tcp_peers_do_not_disturb_other_clients() {
    let d = spawn_daemon();
    let dealer = d.raw(zmq::DEALER);
    assert_next_reply_is_ping("before", &dealer);

    // Random bytes; and random bytes after a ZMTP signature (an unknown version and mechanism).
    // The server may close these or wait for more: either way it must go on serving others.
    let mut noise = tcp(&d);
    let _ = noise.write_all(&garbage(64 * 1024, 0x9e37_79b9_7f4a_7c15));
    let mut signed_noise = tcp(&d);
    let mut bytes = vec![0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 9, 9];
    bytes.extend(garbage(4 * 1024, 42));
    let _ = signed_noise.write_all(&bytes);

    // A correct handshake, then a frame header claiming 1 TiB (long-frame flag, 8-byte length).
    let mut huge = tcp(&d);
    huge.write_all(&zmtp3_greeting()).unwrap();
    huge.write_all(&zmtp3_ready("DEALER")).unwrap();
    let mut server_greeting = [0u8; 64];
    huge.read_exact(&mut server_greeting)
        .expect("server greeting");
    assert_eq!(server_greeting[0], 0xff, "{server_greeting:?}");
    assert_eq!(server_greeting[9] & 1, 1, "{server_greeting:?}");
    let mut header = vec![0x02];
    header.extend((1u64 << 40).to_be_bytes());
    huge.write_all(&header).unwrap();

    // Greetings cut short that never finish, holding their connections open.
    let stalled: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = tcp(&d);
            s.write_all(&zmtp3_greeting()[..5]).unwrap();
            s
        })
        .collect();

    // A libzmq socket of a type the ROUTER refuses to talk to.
    let wrong_type = d.raw(zmq::PUB);

    assert_closed_by_server(&mut huge);
    for i in 0..20 {
        let reply = rpc(&dealer, &ping_body(json!(i)));
        assert_eq!(reply["id"], i, "{reply}");
        assert_eq!(reply["result"]["status"], "ok", "{reply}");
    }
    assert_alive(&d);

    drop((noise, signed_noise, huge, stalled, wrong_type));
    assert_next_reply_is_ping("after the hostile peers left", &dealer);
    assert_alive(&d);
}

// ---------------------------------------------------------------------------------------------
// Ids
// ---------------------------------------------------------------------------------------------

#[test]
fn ids_of_every_kind_are_echoed_exactly() {
    let d = spawn_daemon();
    let sock = d.raw(zmq::DEALER);
    let ids = [
        r#""abc""#,
        r#""""#,
        r#""ünïcode \"quoted\" \\ id""#,
        "7",
        "0",
        "-3",
        "1.5",
        "-0.25",
        "null",
        "18446744073709551615",
        "-9223372036854775808",
        // Valid JSON numbers past what u64, i64 or f64 hold: still the same id.
        "18446744073709551617",
        "-9223372036854775809",
        "123456789012345678901234567890",
        "0.1000000000000000000001",
        "-0",
    ];
    for raw in ids {
        let want: Value = serde_json::from_str(raw).unwrap();
        // The same id on a success, on an error the core decides and on an envelope error.
        let bodies = [
            format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"instance.ping"}}"#),
            format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"no.such"}}"#),
            format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":1}}"#),
        ];
        for body in bodies {
            let reply = exchange(&sock, &[body.as_bytes()]);
            let text = String::from_utf8(reply[0].clone()).expect("UTF-8 reply");
            let parsed = parse(&reply[0]);
            assert_eq!(parsed.get("id"), Some(&want), "id {raw} in {text}");
            // A number comes back in the very form it came in (an `f64` would round the long ones
            // and write `-0` as `-0.0`).
            if !raw.starts_with('"') {
                assert!(
                    text.contains(&format!(r#""id":{raw}"#)),
                    "id {raw} in {text}"
                );
            }
        }
    }
    assert_alive(&d);
}
