//! A fake OpenAI-compatible server for tests: a tokio `TcpListener` on 127.0.0.1 that reads each
//! HTTP request (head and `Content-Length` body, kept for assertions) and answers the n-th
//! connection with the n-th scripted reply, written byte for byte, with pauses where the script
//! says. Every reply closes its connection, so one request is one connection. It notices when
//! the client closes a connection early, so tests can see an interrupt reach the socket.

#![allow(dead_code)] // each test binary uses its own part of the helpers

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// A runtime for the fake servers of a test that talks to the daemon synchronously.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// One step of a scripted reply.
#[derive(Debug, Clone)]
pub enum Step {
    /// Write these bytes and flush.
    Write(Vec<u8>),
    /// Wait, watching for the client to close.
    Pause(Duration),
    /// Say nothing more until the client closes.
    Silence,
}

/// What the server answers to one request.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub steps: Vec<Step>,
}

impl Reply {
    pub fn new(steps: Vec<Step>) -> Reply {
        Reply { steps }
    }

    /// A 200 event stream of these `data:` payloads, ended by `data: [DONE]`.
    pub fn sse<S: AsRef<str>>(payloads: &[S]) -> Reply {
        let mut body = sse_body(payloads);
        body.extend_from_slice(b"data: [DONE]\n\n");
        Reply::new(vec![Step::Write(sse_head()), Step::Write(body)])
    }

    /// Like `sse` but the connection closes without `data: [DONE]`.
    pub fn sse_without_done<S: AsRef<str>>(payloads: &[S]) -> Reply {
        Reply::new(vec![
            Step::Write(sse_head()),
            Step::Write(sse_body(payloads)),
        ])
    }

    /// A complete response with this status, extra headers and body.
    pub fn status(code: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut head = format!(
            "HTTP/1.1 {code} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.push_str(body);
        Reply::new(vec![Step::Write(head.into_bytes())])
    }

    /// An OpenAI-style JSON error body with this status.
    pub fn error(code: u16, message: &str) -> Reply {
        let body = json!({"error": {"message": message, "type": "scripted"}}).to_string();
        Reply::status(code, &[("content-type", "application/json")], &body)
    }
}

/// The head of a 200 event stream whose body ends when the connection closes.
pub fn sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n"
        .to_vec()
}

/// The head of a 200 event stream sent with chunked transfer encoding (see `http_chunk`).
pub fn chunked_sse_head() -> Vec<u8> {
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
        .to_vec()
}

/// `bytes` framed as one HTTP/1.1 chunk; an empty `bytes` is the last chunk.
pub fn http_chunk(bytes: &[u8]) -> Vec<u8> {
    let mut out = format!("{:x}\r\n", bytes.len()).into_bytes();
    out.extend_from_slice(bytes);
    out.extend_from_slice(b"\r\n");
    out
}

pub fn sse_body<S: AsRef<str>>(payloads: &[S]) -> Vec<u8> {
    payloads
        .iter()
        .flat_map(|p| format!("data: {}\n\n", p.as_ref()).into_bytes())
        .collect()
}

/// A chunk carrying a content piece.
pub fn text(content: &str) -> String {
    json!({"object": "chat.completion.chunk",
           "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]})
    .to_string()
}

/// A chunk carrying one piece of a tool call.
pub fn tool_piece(index: u32, id: Option<&str>, name: Option<&str>, arguments: &str) -> String {
    let mut call = json!({"index": index, "function": {"arguments": arguments}});
    if let Some(id) = id {
        call["id"] = json!(id);
        call["type"] = json!("function");
    }
    if let Some(name) = name {
        call["function"]["name"] = json!(name);
    }
    json!({"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}).to_string()
}

pub fn finish(reason: &str) -> String {
    json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}).to_string()
}

/// The usage chunk OpenAI sends last, with empty `choices`.
pub fn usage(prompt: u64, completion: u64) -> String {
    json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                    "total_tokens": prompt + completion}})
    .to_string()
}

/// A usage chunk with OpenAI's details: cached prompt tokens and reasoning tokens.
pub fn usage_details(prompt: u64, completion: u64, cached: u64, reasoning: u64) -> String {
    json!({"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                    "total_tokens": prompt + completion,
                                    "prompt_tokens_details": {"cached_tokens": cached},
                                    "completion_tokens_details": {"reasoning_tokens": reasoning}}})
    .to_string()
}

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body as JSON (`Value::Null` if it was not JSON).
    pub body: Value,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

pub struct FakeServer {
    /// What to configure as the provider's base URL: `http://127.0.0.1:<port>/v1`.
    pub base_url: String,
    received: Arc<Mutex<Vec<Received>>>,
    connections: Arc<AtomicUsize>,
    closed: mpsc::UnboundedReceiver<Instant>,
    accept: JoinHandle<()>,
}

impl FakeServer {
    /// Serves `replies` in order, one per connection; past the last, a 500 says so.
    pub async fn start(replies: Vec<Reply>) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let received = Arc::new(Mutex::new(Vec::new()));
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let (closed_tx, closed) = mpsc::unbounded_channel();
        let log = Arc::clone(&received);
        let connections = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::clone(&connections);
        let accept = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let reply = replies.lock().unwrap().pop_front().unwrap_or_else(|| {
                    Reply::error(
                        500,
                        "the fake server has no reply scripted for this request",
                    )
                });
                let log = Arc::clone(&log);
                let closed_tx = closed_tx.clone();
                let script = Arc::clone(&replies);
                tokio::spawn(serve(socket, reply, script, log, closed_tx));
            }
        });
        FakeServer {
            base_url: format!("http://127.0.0.1:{port}/v1"),
            received,
            connections,
            closed,
            accept,
        }
    }

    /// Connections accepted so far, whether or not a request came on them.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The requests read so far, in order.
    pub fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// When the server next saw a client close a connection before its reply was complete.
    pub async fn client_closed(&mut self) -> Instant {
        self.closed.recv().await.expect("server gone")
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(
    mut socket: TcpStream,
    reply: Reply,
    script: Arc<Mutex<VecDeque<Reply>>>,
    log: Arc<Mutex<Vec<Received>>>,
    closed: mpsc::UnboundedSender<Instant>,
) {
    // Each write leaves at once, so a split in the script is a split on the wire.
    let _ = socket.set_nodelay(true);
    let Some(request) = read_request(&mut socket).await else {
        return;
    };
    // `serve`'s start-up probe (`GET <base_url>/models`) is not part of any test's script: it
    // gets a 404, is not logged, and the reply it was handed goes back for the next connection.
    if request.method == "GET" && request.path.ends_with("/models") {
        script.lock().unwrap().push_front(reply);
        let _ = socket
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
        return;
    }
    log.lock().unwrap().push(request);
    for step in reply.steps {
        let gone = match step {
            Step::Write(bytes) => {
                socket.write_all(&bytes).await.is_err() || socket.flush().await.is_err()
            }
            Step::Pause(d) => tokio::select! {
                _ = tokio::time::sleep(d) => false,
                _ = until_closed(&mut socket) => true,
            },
            Step::Silence => {
                until_closed(&mut socket).await;
                true
            }
        };
        if gone {
            let _ = closed.send(Instant::now());
            return;
        }
    }
}

/// Returns when the peer has closed (end of stream or error); ignores anything it sends.
async fn until_closed(socket: &mut TcpStream) {
    let mut buf = [0u8; 256];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

async fn read_request(socket: &mut TcpStream) -> Option<Received> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap_or(Value::Null);
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}
