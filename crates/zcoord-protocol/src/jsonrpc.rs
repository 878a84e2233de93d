//! JSON-RPC 2.0 envelope: request ids, requests, responses, batches and the decoder that turns one
//! frame into them. Owns the answer to malformed input; knows nothing about methods or sockets.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::errors::RpcError;

/// Upper bound on the number of calls in one batch; a longer batch is refused whole.
pub const MAX_BATCH_LEN: usize = 256;

/// A request id: a string, a number or null, echoed back as the same JSON value. Strings and
/// plain numbers come back byte for byte, at any length or precision; a number written with an
/// exponent comes back in serde_json's form of it (`1E5` as `1e+5`), which any JSON reader parses
/// to the same number.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Id {
    Num(serde_json::Number),
    Str(String),
    Null,
}

impl From<i64> for Id {
    fn from(n: i64) -> Self {
        Id::Num(n.into())
    }
}

impl From<&str> for Id {
    fn from(s: &str) -> Self {
        Id::Str(s.to_owned())
    }
}

/// One call. `id: None` means a notification: it runs but is never answered.
/// `params` stays a `Value` until the method is known, so an unknown method (-32601) and bad
/// params (-32602) stay distinct.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Option<Id>,
    pub method: String,
    pub params: Option<Value>,
}

impl Request {
    pub fn is_notification(&self) -> bool {
        self.id.is_none()
    }
}

/// A response: exactly one of `result` and `error` is present, as the spec demands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Response {
    pub jsonrpc: Version,
    pub id: Id,
    #[serde(flatten)]
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub enum Outcome {
    #[serde(rename = "result")]
    Result(Value),
    #[serde(rename = "error")]
    Error(RpcError),
}

impl Response {
    pub fn ok(id: Id, result: Value) -> Self {
        Response {
            jsonrpc: Version,
            id,
            outcome: Outcome::Result(result),
        }
    }

    pub fn err(id: Id, error: RpcError) -> Self {
        Response {
            jsonrpc: Version,
            id,
            outcome: Outcome::Error(error),
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_else(|_| INTERNAL_FALLBACK.to_vec())
    }
}

/// Serialising a `Response` cannot fail (its map keys are strings), but the reply path must never
/// panic, so this stands in if it ever does.
const INTERNAL_FALLBACK: &[u8] =
    br#"{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"internal error"}}"#;

/// The literal `"2.0"`; anything else fails to deserialise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version;

impl Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("2.0")
    }
}

impl<'de> Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "2.0" {
            Ok(Version)
        } else {
            Err(serde::de::Error::custom("jsonrpc must be \"2.0\""))
        }
    }
}

/// What one frame decodes to.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    /// A single call, or the error answer when it was not a valid request.
    Single(Result<Request, Response>),
    /// A batch: each element decoded on its own, in order.
    Batch(Vec<Result<Request, Response>>),
    /// Nothing usable: answered with this one error (parse error, empty or oversized batch).
    Invalid(Response),
}

/// Decode one request frame. Never panics, whatever the bytes.
pub fn decode(body: &[u8]) -> Incoming {
    let value: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Incoming::Invalid(Response::err(
                Id::Null,
                RpcError::parse_error(&e.to_string()),
            ))
        }
    };
    match value {
        Value::Array(items) if items.is_empty() => Incoming::Invalid(Response::err(
            Id::Null,
            RpcError::invalid_request("empty batch"),
        )),
        Value::Array(items) if items.len() > MAX_BATCH_LEN => Incoming::Invalid(Response::err(
            Id::Null,
            RpcError::invalid_request(&format!(
                "batch of {} calls is over the limit of {MAX_BATCH_LEN}",
                items.len()
            ))
            .with_kind("batch_too_large"),
        )),
        Value::Array(items) => Incoming::Batch(items.into_iter().map(decode_call).collect()),
        other => Incoming::Single(decode_call(other)),
    }
}

/// Decode one call object. An invalid call is answered with -32600, carrying its id when the id
/// itself could be read.
fn decode_call(value: Value) -> Result<Request, Response> {
    let Value::Object(mut obj) = value else {
        return Err(Response::err(
            Id::Null,
            RpcError::invalid_request("a request must be a JSON object"),
        ));
    };
    let id = match take_id(&mut obj) {
        Ok(id) => id,
        Err(e) => return Err(Response::err(Id::Null, e)),
    };
    let reply_id = id.clone().unwrap_or(Id::Null);
    let invalid = |msg: &str| {
        Err(Response::err(
            reply_id.clone(),
            RpcError::invalid_request(msg),
        ))
    };
    match obj.get("jsonrpc") {
        Some(Value::String(v)) if v == "2.0" => {}
        Some(_) => return invalid("jsonrpc must be \"2.0\""),
        None => return invalid("jsonrpc member missing"),
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return invalid("method must be a string"),
        None => return invalid("method member missing"),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(_) => return invalid("params must be an object or an array"),
    };
    Ok(Request { id, method, params })
}

/// `Ok(None)`: no `id` member (a notification). An id that is not a string, number or null is an
/// invalid request whose id cannot be echoed.
fn take_id(obj: &mut Map<String, Value>) -> Result<Option<Id>, RpcError> {
    match obj.remove("id") {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(Id::Null)),
        Some(Value::String(s)) => Ok(Some(Id::Str(s))),
        Some(Value::Number(n)) => Ok(Some(Id::Num(n))),
        Some(_) => Err(RpcError::invalid_request(
            "id must be a string, a number or null",
        )),
    }
}

/// Encode the answers to a batch: a JSON array, or nothing when every call was a notification.
pub fn encode_batch(responses: &[Response]) -> Option<Vec<u8>> {
    if responses.is_empty() {
        return None;
    }
    Some(serde_json::to_vec(responses).unwrap_or_else(|_| INTERNAL_FALLBACK.to_vec()))
}

/// Encodes a successful answer straight from its typed result, without building a `Value` tree
/// first (a `state.sync` answer with a thousand sessions is most of a reply's cost). A result
/// that cannot be serialised, which these types never do, gets an internal error instead.
pub fn encode_result<T: Serialize>(id: &Id, result: &T) -> Vec<u8> {
    #[derive(Serialize)]
    struct Success<'a, T> {
        jsonrpc: Version,
        id: &'a Id,
        result: &'a T,
    }
    let success = Success {
        jsonrpc: Version,
        id,
        result,
    };
    serde_json::to_vec(&success).unwrap_or_else(|e| {
        Response::err(id.clone(), RpcError::internal(&e.to_string())).to_bytes()
    })
}

/// Joins already-encoded answers into a batch answer: a JSON array, or nothing when every call
/// was a notification.
pub fn join_batch(answers: &[Vec<u8>]) -> Option<Vec<u8>> {
    if answers.is_empty() {
        return None;
    }
    let len = answers.iter().map(|a| a.len() + 1).sum::<usize>() + 1;
    let mut out = Vec::with_capacity(len);
    out.push(b'[');
    for (i, answer) in answers.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(answer);
    }
    out.push(b']');
    Some(out)
}

/// The decoded calls of one request frame, on their way to the core.
#[derive(Debug)]
pub enum Calls {
    Single(Request),
    /// Each element decoded on its own; invalid ones already carry their error answer.
    Batch(Vec<Result<Request, Response>>),
}

/// Enough of a request to refuse every call in it later, after the request itself is gone: the
/// ids of its calls, and for a batch the answers its invalid elements already have (they stand).
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Single(Id),
    Batch(Vec<Result<Id, Response>>),
}

impl Refusal {
    /// Every call answered with `error`; `None` when nothing would be answered.
    pub fn encode(&self, error: &RpcError) -> Option<Vec<u8>> {
        match self {
            Refusal::Single(id) => Some(Response::err(id.clone(), error.clone()).to_bytes()),
            Refusal::Batch(items) => {
                let responses: Vec<Response> = items
                    .iter()
                    .map(|item| match item {
                        Ok(id) => Response::err(id.clone(), error.clone()),
                        Err(resp) => resp.clone(),
                    })
                    .collect();
                encode_batch(&responses)
            }
        }
    }
}

impl Calls {
    /// What refusing these calls takes; `None` for notifications only.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Calls::Single(req) => req.id.clone().map(Refusal::Single),
            Calls::Batch(items) => {
                let kept: Vec<Result<Id, Response>> = items
                    .iter()
                    .filter_map(|item| match item {
                        Ok(req) => req.id.clone().map(Ok),
                        Err(resp) => Some(Err(resp.clone())),
                    })
                    .collect();
                (!kept.is_empty()).then_some(Refusal::Batch(kept))
            }
        }
    }

    /// About what these calls hold in memory, decoded: their params' text and values (see
    /// [`super::limits::DECODED_VALUE_BYTES`]) plus each call's method and id.
    pub fn held_bytes(&self) -> usize {
        let one = |req: &Request| {
            let params = req.params.as_ref().map_or(0, |p| {
                let m = super::limits::measure(p);
                m.bytes + m.values * super::limits::DECODED_VALUE_BYTES
            });
            params + req.method.len() + 64
        };
        match self {
            Calls::Single(req) => one(req),
            Calls::Batch(items) => items.iter().map(|i| i.as_ref().map_or(128, one)).sum(),
        }
    }

    /// Whether the core will send a reply: anything but notifications only.
    pub fn expects_reply(&self) -> bool {
        match self {
            Calls::Single(req) => req.id.is_some(),
            Calls::Batch(items) => items
                .iter()
                .any(|i| i.as_ref().map_or(true, |req| req.id.is_some())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err_of(r: &Response) -> &RpcError {
        match &r.outcome {
            Outcome::Error(e) => e,
            Outcome::Result(_) => panic!("expected an error, got {r:?}"),
        }
    }

    #[test]
    fn ids_of_every_kind_round_trip_unchanged() {
        for raw in [
            r#""abc""#,
            "7",
            "-3",
            "1.5",
            "null",
            "18446744073709551615",
            "123456789012345678901234567890",
            "0.1000000000000000000001",
            "1.50",
            "-0",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"m"}}"#);
            let Incoming::Single(Ok(req)) = decode(body.as_bytes()) else {
                panic!("{raw} did not decode")
            };
            let resp = Response::ok(req.id.unwrap(), json!(1));
            let text = String::from_utf8(resp.to_bytes()).unwrap();
            assert_eq!(
                text,
                format!(r#"{{"jsonrpc":"2.0","id":{raw},"result":1}}"#)
            );
        }
    }

    #[test]
    fn ids_with_an_exponent_come_back_as_the_same_number() {
        for (raw, echoed) in [("1E5", "1e+5"), ("2e-7", "2e-7"), ("1.5E+3", "1.5e+3")] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{raw},"method":"m"}}"#);
            let Incoming::Single(Ok(req)) = decode(body.as_bytes()) else {
                panic!("{raw} did not decode")
            };
            let text =
                String::from_utf8(Response::ok(req.id.unwrap(), json!(1)).to_bytes()).unwrap();
            assert_eq!(
                text,
                format!(r#"{{"jsonrpc":"2.0","id":{echoed},"result":1}}"#)
            );
            let (a, b): (f64, f64) = (raw.parse().unwrap(), echoed.parse().unwrap());
            assert_eq!(a, b);
        }
    }

    #[test]
    fn missing_id_is_a_notification_and_null_id_is_not() {
        let Incoming::Single(Ok(n)) = decode(br#"{"jsonrpc":"2.0","method":"m"}"#) else {
            panic!()
        };
        assert!(n.is_notification());
        let Incoming::Single(Ok(r)) = decode(br#"{"jsonrpc":"2.0","method":"m","id":null}"#) else {
            panic!()
        };
        assert_eq!(r.id, Some(Id::Null));
    }

    #[test]
    fn malformed_input_gets_the_right_code() {
        let cases: &[(&[u8], i64, Id)] = &[
            (b"not json", -32700, Id::Null),
            (b"", -32700, Id::Null),
            (b"{\"jsonrpc\":\"2.0\",", -32700, Id::Null),
            (b"[]", -32600, Id::Null),
            (b"42", -32600, Id::Null),
            (br#"{"id":1,"method":"m"}"#, -32600, Id::from(1)),
            (
                br#"{"jsonrpc":"1.0","id":"a","method":"m"}"#,
                -32600,
                Id::from("a"),
            ),
            (
                br#"{"jsonrpc":"2.0","id":2,"method":5}"#,
                -32600,
                Id::from(2),
            ),
            (br#"{"jsonrpc":"2.0","id":3}"#, -32600, Id::from(3)),
            (
                br#"{"jsonrpc":"2.0","id":{"x":1},"method":"m"}"#,
                -32600,
                Id::Null,
            ),
            (
                br#"{"jsonrpc":"2.0","id":4,"method":"m","params":"x"}"#,
                -32600,
                Id::from(4),
            ),
        ];
        for (body, code, id) in cases {
            let resp = match decode(body) {
                Incoming::Invalid(r) | Incoming::Single(Err(r)) => r,
                other => panic!("{:?} decoded to {other:?}", String::from_utf8_lossy(body)),
            };
            assert_eq!(
                err_of(&resp).code,
                *code,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(&resp.id, id);
        }
    }

    #[test]
    fn batch_elements_decode_independently() {
        let body = br#"[{"jsonrpc":"2.0","id":1,"method":"a"}, 5, {"jsonrpc":"2.0","method":"n"}]"#;
        let Incoming::Batch(items) = decode(body) else {
            panic!()
        };
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok());
        assert_eq!(err_of(items[1].as_ref().unwrap_err()).code, -32600);
        assert!(items[2].as_ref().unwrap().is_notification());
    }

    #[test]
    fn oversized_batch_is_refused_whole() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"a"}"#;
        let body = format!("[{}]", vec![call; MAX_BATCH_LEN + 1].join(","));
        let Incoming::Invalid(resp) = decode(body.as_bytes()) else {
            panic!()
        };
        assert_eq!(err_of(&resp).code, -32600);
        assert_eq!(
            err_of(&resp).data.as_ref().unwrap()["kind"],
            "batch_too_large"
        );
    }

    #[test]
    fn error_response_golden_json() {
        let resp = Response::err(Id::from("x"), RpcError::method_not_found("nope"));
        assert_eq!(
            serde_json::to_value(&resp).unwrap(),
            json!({"jsonrpc":"2.0","id":"x","error":{"code":-32601,"message":"method not found: nope"}})
        );
    }
}
