//! RPC methods: their names, typed params (decoded from the raw `params` value with the offending
//! field named on error) and result shapes.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use super::clients::{
    CallRef, ClientInfo, ClientListResult, ClientToolSpec, Hello, HelloResult, ToolClaimResult,
    ToolResultParams,
};
use super::errors::RpcError;
use super::events::Health;
use super::hitl::{Decision, HitlListResult, HitlRequest, Respond, RespondResult};
use super::ids::{CallId, InstanceId, MessageId, SessionId, TurnId};
use super::limits;
use super::models::{Configure, ModelInfo, ModelListResult, Setting};
use super::types::{MessagePayload, SessionPayload};

/// `client.hello`: at most this many protocol versions listed.
pub const MAX_PROTOCOL_VERSIONS: usize = 16;
/// `client.hello`: the client's name and version strings, in bytes.
pub const MAX_CLIENT_NAME_BYTES: usize = 256;
/// `client.hello`: `capabilities` as compact JSON.
pub const MAX_CAPABILITIES_BYTES: usize = 4 << 10;

/// `events.replay`: at most this many prefixes, each at most this long.
pub const MAX_REPLAY_PREFIXES: usize = 32;
pub const MAX_REPLAY_PREFIX_BYTES: usize = 256;
/// `events.replay`: events returned by one call when `limit` is absent, and at most.
pub const DEFAULT_REPLAY_LIMIT: usize = 1_000;
pub const MAX_REPLAY_LIMIT: usize = 10_000;

// The one table of methods: each row is a method's constant, its name on the wire, the `Call`
// it decodes to, and how its params decode (`p` is the [`Params`] object). The macro below
// turns it into the constants, [`ALL`], [`Call::parse`]'s decoders and [`Call::method`], so a
// method is written once.
macro_rules! methods {
    ($p:ident; $($konst:ident = $name:literal, $variant:pat => $decode:expr;)*) => {
        $(pub const $konst: &str = $name;)*

        /// Every method, for `instance.info` and the docs.
        pub const ALL: &[&str] = &[$($konst),*];

        /// Each method's params decoder, by name.
        const DECODERS: &[(&str, fn(&Params) -> Result<Call, RpcError>)] = &[
            $(($konst, |$p: &Params| -> Result<Call, RpcError> {
                let _ = $p; // methods without params do not read it
                Ok($decode)
            })),*
        ];

        impl Call {
            /// The method name, for logs.
            pub fn method(&self) -> &'static str {
                match self {
                    $($variant => $konst,)*
                }
            }
        }
    };
}

methods! {
    p;
    STATE_SYNC = "state.sync", Call::StateSync { .. } =>
        Call::StateSync {
            project_id: p.opt_str("project_id")?,
        };
    SESSION_LIST = "session.list", Call::SessionList =>
        Call::SessionList;
    SESSION_GET = "session.get", Call::SessionGet { .. } =>
        Call::SessionGet {
            session_id: p.req_str("session_id")?,
        };
    SESSION_CREATE = "session.create", Call::SessionCreate { .. } => {
        let title = p.opt_str("title")?;
        if let Some(title) = &title {
            limits::check_title(title)?;
        }
        Call::SessionCreate { title }
    };
    SESSION_DELETE = "session.delete", Call::SessionDelete { .. } =>
        Call::SessionDelete {
            session_id: p.req_str("session_id")?,
        };
    SESSION_ACTIVATE = "session.activate", Call::SessionActivate { .. } =>
        Call::SessionActivate {
            session_id: p.req_str("session_id")?,
        };
    SESSION_INTERRUPT = "session.interrupt", Call::SessionInterrupt { .. } =>
        Call::SessionInterrupt {
            session_id: p.req_str("session_id")?,
            clear_queue: p.opt_bool("clear_queue")?.unwrap_or(false),
        };
    MESSAGE_SEND = "message.send", Call::MessageSend(_) => {
        let content = p.req_str("content")?;
        limits::check_content(&content)?;
        if content.trim().is_empty() {
            return Err(RpcError::invalid_params("content", "must not be empty"));
        }
        let request_id = p.opt_str("request_id")?;
        if let Some(r) = &request_id {
            limits::check_request_id(r)?;
        }
        let model = p.opt_str("model")?;
        if let Some(m) = &model {
            limits::check_len("model", m, limits::MAX_MODEL_NAME_BYTES)?;
        }
        let when_busy = match p.opt_str("when_busy")? {
            None => WhenBusy::default(),
            Some(w) => WhenBusy::parse(&w).ok_or_else(|| {
                RpcError::invalid_params("when_busy", "must be \"reject\" or \"queue\"")
            })?,
        };
        Call::MessageSend(MessageSend {
            session_id: p.opt_str("session_id")?,
            content,
            request_id,
            model,
            when_busy,
        })
    };
    MESSAGE_LIST = "message.list", Call::MessageList { .. } => {
        let page = PageRequest {
            limit: p.opt_limit("limit")?,
            before: p.opt_str("before")?,
            after: p.opt_str("after")?,
        };
        if page.before.is_some() && page.after.is_some() {
            return Err(RpcError::invalid_params(
                "after",
                "give before or after, not both",
            ));
        }
        Call::MessageList {
            session_id: p.req_str("session_id")?,
            page,
        }
    };
    MESSAGE_GET = "message.get", Call::MessageGet { .. } =>
        Call::MessageGet {
            session_id: p.req_str("session_id")?,
            message_id: p.req_str("message_id")?,
        };
    INSTANCE_PING = "instance.ping", Call::InstancePing =>
        Call::InstancePing;
    INSTANCE_INFO = "instance.info", Call::InstanceInfo =>
        Call::InstanceInfo;
    EVENTS_REPLAY = "events.replay", Call::EventsReplay(_) =>
        Call::EventsReplay(ReplayRequest {
            after_seq: p.req_u64("after_seq")?,
            prefixes: p.prefixes("prefixes")?,
            limit: p
                .opt_limit("limit")?
                .unwrap_or(DEFAULT_REPLAY_LIMIT)
                .min(MAX_REPLAY_LIMIT),
            instance_id: p.opt_str("instance_id")?,
        });
    HITL_LIST = "hitl.list", Call::HitlList { .. } =>
        Call::HitlList {
            session_id: p.opt_str("session_id")?,
        };
    HITL_RESPOND = "hitl.respond", Call::HitlRespond(_) => {
        let decision = match p.opt_str("decision")? {
            None => None,
            Some(d) => Some(Decision::parse(&d).ok_or_else(|| {
                RpcError::invalid_params(
                    "decision",
                    "must be \"approve\", \"approve_session\" or \"reject\"",
                )
            })?),
        };
        let answer = p.opt_str("answer")?;
        if let Some(a) = &answer {
            limits::check_content(a).map_err(|_| {
                RpcError::too_long("answer", a.len(), limits::MAX_CONTENT_BYTES)
            })?;
        }
        let reason = p.opt_str("reason")?;
        if let Some(r) = &reason {
            limits::check_len("reason", r, limits::MAX_REASON_BYTES)?;
        }
        let client_id = p.opt_str("client_id")?;
        if let Some(c) = &client_id {
            limits::check_len("client_id", c, limits::MAX_CLIENT_ID_BYTES)?;
        }
        if decision.is_some() && answer.is_some() {
            return Err(RpcError::invalid_params(
                "answer",
                "give a decision (for a tool approval) or an answer (for a question), not both",
            ));
        }
        if decision.is_none() && answer.is_none() {
            return Err(RpcError::invalid_params(
                "decision",
                "give a decision (for a tool approval) or an answer (for a question)",
            ));
        }
        Call::HitlRespond(Respond {
            id: p.req_str("id")?,
            decision,
            answer,
            reason,
            client_id,
        })
    };
    CLIENT_HELLO = "client.hello", Call::ClientHello(_) =>
        Call::ClientHello(Box::new(p.hello()?));
    CLIENT_LIST = "client.list", Call::ClientList =>
        Call::ClientList;
    CLIENT_GOODBYE = "client.goodbye", Call::ClientGoodbye =>
        Call::ClientGoodbye;
    TOOL_CLAIM = "tool.claim", Call::ToolClaim(_) =>
        Call::ToolClaim(p.call_ref()?);
    TOOL_RESULT = "tool.result", Call::ToolResult(_) => {
        let result = match p.0.get("result") {
            None | Some(Value::Null) => {
                return Err(RpcError::invalid_params("result", "required"))
            }
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        limits::check_content(&result).map_err(|_| {
            RpcError::too_long("result", result.len(), limits::MAX_CONTENT_BYTES)
        })?;
        Call::ToolResult(ToolResultParams {
            call: p.call_ref()?,
            result,
            is_error: p.opt_bool("is_error")?.unwrap_or(false),
        })
    };
    SESSION_CONFIGURE = "session.configure", Call::SessionConfigure(_) => {
        let model = p.setting_str("model")?;
        if let Setting::Set(m) = &model {
            limits::check_len("model", m, limits::MAX_MODEL_NAME_BYTES)?;
        }
        let system_prompt = p.setting_str("system_prompt")?;
        if let Setting::Set(s) = &system_prompt {
            limits::check_len("system_prompt", s, limits::MAX_SYSTEM_PROMPT_BYTES)?;
        }
        Call::SessionConfigure(Configure {
            session_id: p.req_str("session_id")?,
            model,
            system_prompt,
        })
    };
    MODEL_LIST = "model.list", Call::ModelList =>
        Call::ModelList;
}

/// `-32601`, with `data.suggestion` when a known method is close to the one asked for.
fn not_found(method: &str) -> RpcError {
    let e = RpcError::method_not_found(method);
    match super::suggest::nearest(method, ALL) {
        Some(s) => e.with_data("suggestion", serde_json::json!(s)),
        None => e,
    }
}

/// A decoded call: the method is known and its params are well typed. Session ids stay strings
/// here: a string that names no session is `session_not_found`, not a type error.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    StateSync {
        project_id: Option<String>,
    },
    SessionList,
    SessionGet {
        session_id: String,
    },
    SessionCreate {
        title: Option<String>,
    },
    SessionDelete {
        session_id: String,
    },
    SessionActivate {
        session_id: String,
    },
    SessionInterrupt {
        session_id: String,
        /// Also discard the messages queued behind the turn (they never run).
        clear_queue: bool,
    },
    MessageSend(MessageSend),
    MessageList {
        session_id: String,
        page: PageRequest,
    },
    MessageGet {
        session_id: String,
        message_id: String,
    },
    InstancePing,
    InstanceInfo,
    EventsReplay(ReplayRequest),
    /// The pending requests, of one session or all.
    HitlList {
        session_id: Option<String>,
    },
    HitlRespond(Respond),
    ClientHello(Box<Hello>),
    ClientList,
    ClientGoodbye,
    ToolClaim(CallRef),
    ToolResult(ToolResultParams),
    /// A session's model and system prompt.
    SessionConfigure(Configure),
    ModelList,
}

/// `events.replay`: the events numbered above `after_seq` whose key starts with one of
/// `prefixes` (all of them when empty), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayRequest {
    pub after_seq: u64,
    pub prefixes: Vec<String>,
    pub limit: usize,
    /// The instance the client's `after_seq` came from; another instance's numbers mean nothing
    /// here, so a mismatch is `replay_unavailable`.
    pub instance_id: Option<String>,
}

/// `message.list` paging: at most `limit` messages strictly `before` or `after` a message id.
/// With neither, the newest `limit`. No `limit` means [`limits::DEFAULT_PAGE_ITEMS`]; a page is
/// also bounded in items and bytes (`limits::MAX_PAGE_ITEMS`, `limits::MAX_PAGE_BYTES`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: Option<usize>,
    pub before: Option<String>,
    pub after: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MessageSend {
    pub session_id: Option<String>,
    pub content: String,
    pub request_id: Option<String>,
    /// The model for this turn alone, over the session's and the default.
    pub model: Option<String>,
    /// What to do when the session's turn is still running.
    pub when_busy: WhenBusy,
}

/// `message.send` `when_busy`: refuse a send to a busy session (`session_busy`, the default), or
/// queue it to run as the session's next turn.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WhenBusy {
    #[default]
    Reject,
    Queue,
}

impl WhenBusy {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "reject" => Some(WhenBusy::Reject),
            "queue" => Some(WhenBusy::Queue),
            _ => None,
        }
    }
}

impl Call {
    /// Decodes `method` + `params`. Unknown method: -32601. Bad params: -32602 naming the field,
    /// with a `data.kind` when they break one of the bounds in [`limits`].
    /// Unknown members in `params` are ignored, so newer clients can talk to older servers.
    pub fn parse(method: &str, params: Option<Value>) -> Result<Call, RpcError> {
        let Some((_, decode)) = DECODERS.iter().find(|(name, _)| *name == method) else {
            return Err(not_found(method));
        };
        if let Some(params) = &params {
            limits::check_params(params)?;
        }
        decode(&Params::new(params)?)
    }
}

/// The params object of one call, read field by field so an error can name its field.
struct Params(Map<String, Value>);

impl Params {
    fn new(params: Option<Value>) -> Result<Self, RpcError> {
        match params {
            None => Ok(Params(Map::new())),
            Some(Value::Object(m)) => Ok(Params(m)),
            Some(_) => Err(RpcError::invalid_params(
                "params",
                "must be an object with named members",
            )),
        }
    }

    fn opt_str(&self, field: &str) -> Result<Option<String>, RpcError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(RpcError::invalid_params(
                field,
                &format!("expected a string, got {}", kind_of(other)),
            )),
        }
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, RpcError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(RpcError::invalid_params(
                field,
                &format!("expected a boolean, got {}", kind_of(other)),
            )),
        }
    }

    /// A positive integer, if present.
    fn opt_limit(&self, field: &str) -> Result<Option<usize>, RpcError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_u64() {
                Some(v) if v >= 1 => Ok(Some(usize::try_from(v).unwrap_or(usize::MAX))),
                _ => Err(RpcError::invalid_params(
                    field,
                    "expected a positive integer",
                )),
            },
            Some(other) => Err(RpcError::invalid_params(
                field,
                &format!("expected a positive integer, got {}", kind_of(other)),
            )),
        }
    }

    fn req_u64(&self, field: &str) -> Result<u64, RpcError> {
        match self.0.get(field) {
            None | Some(Value::Null) => Err(RpcError::invalid_params(field, "required")),
            Some(Value::Number(n)) => n
                .as_u64()
                .ok_or_else(|| RpcError::invalid_params(field, "expected a non-negative integer")),
            Some(other) => Err(RpcError::invalid_params(
                field,
                &format!("expected a non-negative integer, got {}", kind_of(other)),
            )),
        }
    }

    /// An optional array of short strings (key prefixes).
    fn prefixes(&self, field: &str) -> Result<Vec<String>, RpcError> {
        let items = match self.0.get(field) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(RpcError::invalid_params(
                    field,
                    &format!("expected an array of strings, got {}", kind_of(other)),
                ))
            }
        };
        if items.len() > MAX_REPLAY_PREFIXES {
            return Err(RpcError::invalid_params(
                field,
                &format!("at most {MAX_REPLAY_PREFIXES} prefixes"),
            ));
        }
        items
            .iter()
            .map(|item| match item {
                Value::String(s) if s.len() <= MAX_REPLAY_PREFIX_BYTES => Ok(s.clone()),
                Value::String(_) => Err(RpcError::invalid_params(
                    field,
                    &format!("a prefix is at most {MAX_REPLAY_PREFIX_BYTES} bytes"),
                )),
                other => Err(RpcError::invalid_params(
                    field,
                    &format!("expected strings, got {}", kind_of(other)),
                )),
            })
            .collect()
    }

    /// `{call_id, turn_id?}` of `tool.claim` and `tool.result`.
    fn call_ref(&self) -> Result<CallRef, RpcError> {
        let call_id = self.req_str("call_id")?;
        limits::check_len("call_id", &call_id, limits::MAX_CLIENT_ID_BYTES)?;
        let turn_id = self.opt_str("turn_id")?;
        if let Some(t) = &turn_id {
            limits::check_len("turn_id", t, limits::MAX_CLIENT_ID_BYTES)?;
        }
        Ok(CallRef {
            call_id: CallId(call_id),
            turn_id,
        })
    }

    /// `client.hello`'s params, each bounded; the tools' schemas are checked here too.
    fn hello(&self) -> Result<Hello, RpcError> {
        let client_id = self.req_str("client_id")?;
        limits::check_len("client_id", &client_id, limits::MAX_CLIENT_ID_BYTES)?;
        if client_id.trim().is_empty() {
            return Err(RpcError::invalid_params("client_id", "must not be empty"));
        }
        let name = self.req_str("name")?;
        limits::check_len("name", &name, MAX_CLIENT_NAME_BYTES)?;
        let version = self.opt_str("version")?;
        if let Some(v) = &version {
            limits::check_len("version", v, MAX_CLIENT_NAME_BYTES)?;
        }
        let versions = match self.0.get("protocol_versions") {
            Some(Value::Array(items)) if !items.is_empty() => items,
            None | Some(Value::Null) => {
                return Err(RpcError::invalid_params("protocol_versions", "required"))
            }
            Some(_) => {
                return Err(RpcError::invalid_params(
                    "protocol_versions",
                    "expected a non-empty array of positive integers",
                ))
            }
        };
        if versions.len() > MAX_PROTOCOL_VERSIONS {
            return Err(RpcError::invalid_params(
                "protocol_versions",
                &format!("at most {MAX_PROTOCOL_VERSIONS} versions"),
            ));
        }
        let protocol_versions = versions
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|v| u32::try_from(v).ok())
                    .filter(|v| *v >= 1)
                    .ok_or_else(|| {
                        RpcError::invalid_params(
                            "protocol_versions",
                            "expected a non-empty array of positive integers",
                        )
                    })
            })
            .collect::<Result<Vec<u32>, _>>()?;
        let capabilities = match self.0.get("capabilities") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(m)) => {
                let size = limits::encoded_len(m);
                if size > MAX_CAPABILITIES_BYTES {
                    return Err(RpcError::too_long(
                        "capabilities",
                        size,
                        MAX_CAPABILITIES_BYTES,
                    ));
                }
                m.clone()
            }
            Some(other) => {
                return Err(RpcError::invalid_params(
                    "capabilities",
                    &format!("expected an object, got {}", kind_of(other)),
                ))
            }
        };
        let tools: Vec<ClientToolSpec> = match self.0.get("tools") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => {
                if items.len() > super::tool_schema::MAX_CLIENT_TOOLS {
                    // Counted before any is decoded.
                    return Err(super::tool_schema::too_many_tools(items.len()));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        serde_json::from_value(item.clone()).map_err(|e| {
                            RpcError::invalid_params(
                                "tools",
                                &format!(
                                    "tool {i}: expected {{name, description?, parameters}}: {e}"
                                ),
                            )
                            .with_kind("invalid_tool")
                        })
                    })
                    .collect::<Result<_, _>>()?
            }
            Some(other) => {
                return Err(RpcError::invalid_params(
                    "tools",
                    &format!("expected an array, got {}", kind_of(other)),
                ))
            }
        };
        super::tool_schema::check_tools(&tools)?;
        Ok(Hello {
            client_id,
            name,
            version,
            protocol_versions,
            capabilities,
            tools,
        })
    }

    /// A string member that may also be `null` (reset) or absent (keep).
    fn setting_str(&self, field: &str) -> Result<Setting<String>, RpcError> {
        match self.0.get(field) {
            None => Ok(Setting::Keep),
            Some(Value::Null) => Ok(Setting::Reset),
            Some(_) => Ok(self.opt_str(field)?.map_or(Setting::Reset, Setting::Set)),
        }
    }

    fn req_str(&self, field: &str) -> Result<String, RpcError> {
        self.opt_str(field)?
            .ok_or_else(|| RpcError::invalid_params(field, "required"))
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PingResult {
    pub status: String,
    pub instance_id: InstanceId,
    #[schemars(with = "crate::schema::GoDuration")]
    pub uptime: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Endpoints {
    pub rpc: String,
    #[serde(rename = "pub")]
    pub pub_: String,
}

/// Counters of what the server dropped or refused on its own queues since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DropCounters {
    /// Replies not delivered: the peer was gone or its queue was full.
    pub replies_dropped: u64,
    /// Events the PUB refused, and output still not handed to the transport thread 2 s into
    /// shutdown (a full queue otherwise holds output back; it never drops it).
    pub outbound_dropped: u64,
    /// Requests refused with `server_busy` because the core's input queue was full.
    pub requests_refused_busy: u64,
    /// Messages dropped unanswered (odd framing that cannot be routed back).
    pub requests_dropped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InfoResult {
    pub instance_id: InstanceId,
    pub version: String,
    pub protocol_version: u32,
    pub pid: u32,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[schemars(with = "crate::schema::GoDuration")]
    pub uptime: String,
    pub endpoints: Endpoints,
    pub session_count: u64,
    /// The most sessions this instance holds at once (`serve --max-sessions`).
    #[serde(default)]
    pub max_sessions: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_session_id: Option<SessionId>,
    /// The default model's provider (`echo`, `openai:<model>`).
    pub model: String,
    /// Every model by name (as `model.list` gives them).
    #[serde(default)]
    pub models: Vec<ModelInfo>,
    pub seq: u64,
    pub running_turns: u64,
    pub drops: DropCounters,
    /// Where state is kept: `sqlite:<path>` or `memory`.
    pub store: String,
    /// Turns a crash left running, closed as aborted at start-up.
    pub recovered_turns: u64,
    /// On a standby that took over: the primary it replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted_from: Option<InstanceId>,
    /// What `events.replay` can still serve.
    pub replay: ReplayInfo,
    /// The transport's connections and what libzmq holds for subscribers now.
    #[serde(default)]
    pub transport: TransportInfo,
    /// `degraded` while the store cannot commit; `degraded` then says why and since when.
    #[serde(default)]
    pub status: Health,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<DegradedInfo>,
    /// Milliseconds between `instance.heartbeat`s (`serve --heartbeat-interval`). 0 (absent)
    /// from servers older than this field.
    #[serde(default)]
    pub heartbeat_interval_ms: u64,
}

/// Gauges of the transport, read when `instance.info` is answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TransportInfo {
    /// Live connections on the ROUTER and on the PUB.
    pub connections_rpc: u64,
    pub connections_pub: u64,
    /// Connections closed at accept since start because their socket was at its limit.
    pub connections_refused: u64,
    /// Bytes of events on their way to subscribers (queued for the PUB, or held by libzmq for
    /// subscribers not yet sent them, with a queue entry per frame per subscriber): what
    /// subscribers that fall behind pin. Model output waits above a quarter of
    /// `--pub-held-bytes`.
    pub pub_bytes_held: u64,
    /// Subscribers disconnected since start because that figure passed its bound.
    #[serde(default)]
    pub subscribers_evicted: u64,
}

/// Why the instance is degraded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DegradedInfo {
    pub reason: String,
    #[schemars(with = "crate::schema::Timestamp")]
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
}

/// The replay ring's contents and bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayInfo {
    pub events: u64,
    pub bytes: u64,
    /// The oldest `seq` still held (`seq + 1` when none is).
    pub oldest_seq: u64,
    pub max_events: u64,
    pub max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StateSyncResult {
    pub sessions: Vec<SessionPayload>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_session_id: Option<SessionId>,
    pub instance_id: InstanceId,
    /// The `seq` of the last event published before this snapshot was taken.
    pub seq: u64,
    /// Requests waiting for a person, oldest first.
    #[serde(default)]
    pub hitl: Vec<HitlRequest>,
    /// Clients present (that said `client.hello`), in the order they joined.
    #[serde(default)]
    pub clients: Vec<ClientInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionListResult {
    pub sessions: Vec<SessionPayload>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct OkResult {
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SendResult {
    pub ok: bool,
    pub session_id: SessionId,
    pub message_id: MessageId,
    pub turn_id: TurnId,
    /// The message waits behind the running turn (`when_busy: "queue"`); absent when it started
    /// a turn at once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
    /// Where it waits: 1 is the next to run. Set exactly when `queued`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MessageListResult {
    pub messages: Vec<MessagePayload>,
    /// More messages lie beyond this page in the direction paged (older for `before` or the
    /// default newest page, newer for `after`).
    pub has_more: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InterruptResult {
    pub ok: bool,
    pub interrupted: bool,
    /// With `clear_queue: true`: how many queued messages were discarded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleared: Option<u64>,
}

/// The result of any call; serialises to exactly the result object.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Reply {
    Ping(PingResult),
    Info(Box<InfoResult>),
    StateSync(StateSyncResult),
    SessionList(SessionListResult),
    Session(SessionPayload),
    Ok(OkResult),
    Send(SendResult),
    MessageList(MessageListResult),
    Message(MessagePayload),
    Interrupt(InterruptResult),
    Replay(ReplayResult),
    HitlList(HitlListResult),
    Respond(RespondResult),
    Hello(HelloResult),
    ClientList(ClientListResult),
    Claim(ToolClaimResult),
    ModelList(ModelListResult),
}

/// `events.replay`'s answer. Continue from `next_after_seq` while `has_more`; when it is false
/// the client is covered up to `latest_seq`, the newest event at the time of the call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReplayResult {
    pub instance_id: InstanceId,
    /// Envelopes exactly as they were published, oldest first.
    #[schemars(with = "Vec<crate::schema::EventEnvelope>")]
    pub events: Vec<Value>,
    pub next_after_seq: u64,
    pub has_more: bool,
    /// The oldest event the ring still holds (`latest_seq + 1` when it is empty).
    pub oldest_seq: u64,
    pub latest_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_method_is_32601_even_with_bad_params() {
        let e = Call::parse("no.such", Some(json!("x"))).unwrap_err();
        assert_eq!(e.code, -32601);
    }

    #[test]
    fn wrong_param_types_name_the_field() {
        let cases = [
            (SESSION_GET, json!({"session_id": 5}), "session_id"),
            (SESSION_GET, json!({}), "session_id"),
            (MESSAGE_SEND, json!({"content": ["a"]}), "content"),
            (MESSAGE_SEND, json!({"content": "  "}), "content"),
            (
                MESSAGE_SEND,
                json!({"content": "hi", "request_id": 1}),
                "request_id",
            ),
            (SESSION_CREATE, json!({"title": true}), "title"),
            (SESSION_CONFIGURE, json!({"model": "m"}), "session_id"),
            (
                SESSION_CONFIGURE,
                json!({"session_id": "s", "model": 5}),
                "model",
            ),
            (
                SESSION_CONFIGURE,
                json!({"session_id": "s", "system_prompt": ["x"]}),
                "system_prompt",
            ),
            (MESSAGE_SEND, json!({"content": "hi", "model": {}}), "model"),
            (
                MESSAGE_SEND,
                json!({"content": "hi", "when_busy": "later"}),
                "when_busy",
            ),
            (
                MESSAGE_SEND,
                json!({"content": "hi", "when_busy": true}),
                "when_busy",
            ),
            (
                SESSION_INTERRUPT,
                json!({"session_id": "s", "clear_queue": "yes"}),
                "clear_queue",
            ),
            (INSTANCE_PING, json!([1, 2]), "params"),
        ];
        for (method, params, field) in cases {
            let e = Call::parse(method, Some(params.clone())).unwrap_err();
            assert_eq!(e.code, -32602, "{method} {params}");
            assert_eq!(e.data.unwrap()["field"], field, "{method} {params}");
        }
    }

    #[test]
    fn absent_params_and_unknown_members_are_accepted() {
        assert_eq!(
            Call::parse(INSTANCE_PING, None).unwrap(),
            Call::InstancePing
        );
        assert_eq!(
            Call::parse(SESSION_LIST, Some(json!({"future": 1}))).unwrap(),
            Call::SessionList
        );
        assert_eq!(
            Call::parse(
                MESSAGE_SEND,
                Some(json!({"content": "hi", "session_id": null}))
            )
            .unwrap(),
            Call::MessageSend(MessageSend {
                session_id: None,
                content: "hi".into(),
                request_id: None,
                model: None,
                when_busy: WhenBusy::Reject,
            })
        );
    }

    #[test]
    fn when_busy_and_clear_queue_parse() {
        let send = Call::parse(
            MESSAGE_SEND,
            Some(json!({"content": "hi", "when_busy": "queue"})),
        )
        .unwrap();
        assert!(matches!(send, Call::MessageSend(m) if m.when_busy == WhenBusy::Queue));
        let send = Call::parse(
            MESSAGE_SEND,
            Some(json!({"content": "hi", "when_busy": "reject"})),
        )
        .unwrap();
        assert!(matches!(send, Call::MessageSend(m) if m.when_busy == WhenBusy::Reject));
        let interrupt = Call::parse(
            SESSION_INTERRUPT,
            Some(json!({"session_id": "s", "clear_queue": true})),
        )
        .unwrap();
        assert_eq!(
            interrupt,
            Call::SessionInterrupt {
                session_id: "s".into(),
                clear_queue: true
            }
        );
        let interrupt = Call::parse(SESSION_INTERRUPT, Some(json!({"session_id": "s"}))).unwrap();
        assert!(matches!(
            interrupt,
            Call::SessionInterrupt {
                clear_queue: false,
                ..
            }
        ));
    }

    #[test]
    fn every_method_refuses_params_past_the_limits_by_kind() {
        let kind = |method: &str, params: Value| {
            let e = Call::parse(method, Some(params)).unwrap_err();
            assert_eq!(e.code, -32602, "{method}");
            e.data.unwrap()["kind"].clone()
        };
        let deep = (0..limits::MAX_PARAMS_DEPTH).fold(json!(0), |v, _| json!([v]));
        let large = "x".repeat(limits::MAX_PARAMS_BYTES);
        for m in ALL {
            assert_eq!(kind(m, json!({"future": deep})), "params_too_deep", "{m}");
            assert_eq!(kind(m, json!({"future": large})), "params_too_large", "{m}");
        }
        // The method is looked at first: an unknown one stays -32601 whatever its params.
        let e = Call::parse("no.such", Some(json!({"future": deep}))).unwrap_err();
        assert_eq!(e.code, -32601);

        let long_title = "t".repeat(limits::MAX_TITLE_CHARS + 1);
        assert_eq!(
            kind(SESSION_CREATE, json!({"title": long_title})),
            "title_too_long"
        );
        let long_content = "c".repeat(limits::MAX_CONTENT_BYTES + 1);
        assert_eq!(
            kind(MESSAGE_SEND, json!({"content": long_content})),
            "content_too_long"
        );
        let long_model = "m".repeat(limits::MAX_MODEL_NAME_BYTES + 1);
        assert_eq!(
            kind(MESSAGE_SEND, json!({"content": "hi", "model": long_model})),
            "model_too_long"
        );
        assert_eq!(
            kind(
                SESSION_CONFIGURE,
                json!({"session_id": "s", "model": long_model})
            ),
            "model_too_long"
        );
        let long_prompt = "p".repeat(limits::MAX_SYSTEM_PROMPT_BYTES + 1);
        assert_eq!(
            kind(
                SESSION_CONFIGURE,
                json!({"session_id": "s", "system_prompt": long_prompt})
            ),
            "system_prompt_too_long"
        );
        let prompt = "p".repeat(limits::MAX_SYSTEM_PROMPT_BYTES);
        let model = "m".repeat(limits::MAX_MODEL_NAME_BYTES);
        assert!(Call::parse(
            SESSION_CONFIGURE,
            Some(json!({"session_id": "s", "system_prompt": prompt, "model": model}))
        )
        .is_ok());
        // At the limits, both are accepted.
        let title = "t".repeat(limits::MAX_TITLE_CHARS);
        assert!(Call::parse(SESSION_CREATE, Some(json!({"title": title}))).is_ok());
        let content = "c".repeat(limits::MAX_CONTENT_BYTES);
        assert!(Call::parse(MESSAGE_SEND, Some(json!({"content": content}))).is_ok());
    }

    #[test]
    fn replay_params_are_checked_and_the_limit_clamped() {
        let call = Call::parse(
            EVENTS_REPLAY,
            Some(json!({"after_seq": 7, "prefixes": ["llm.token/"], "limit": 1_000_000})),
        )
        .unwrap();
        assert_eq!(
            call,
            Call::EventsReplay(ReplayRequest {
                after_seq: 7,
                prefixes: vec!["llm.token/".into()],
                limit: MAX_REPLAY_LIMIT,
                instance_id: None,
            })
        );
        let field = |params: Value| {
            Call::parse(EVENTS_REPLAY, Some(params))
                .unwrap_err()
                .data
                .unwrap()["field"]
                .clone()
        };
        assert_eq!(field(json!({})), "after_seq");
        assert_eq!(field(json!({"after_seq": -1})), "after_seq");
        assert_eq!(field(json!({"after_seq": "1"})), "after_seq");
        assert_eq!(field(json!({"after_seq": 1, "prefixes": "x"})), "prefixes");
        assert_eq!(field(json!({"after_seq": 1, "prefixes": [1]})), "prefixes");
        let long = "x".repeat(MAX_REPLAY_PREFIX_BYTES + 1);
        assert_eq!(
            field(json!({"after_seq": 1, "prefixes": [long]})),
            "prefixes"
        );
        let many = vec!["a"; MAX_REPLAY_PREFIXES + 1];
        assert_eq!(field(json!({"after_seq": 1, "prefixes": many})), "prefixes");
        assert_eq!(field(json!({"after_seq": 1, "limit": 0})), "limit");
    }

    #[test]
    fn every_listed_method_parses_and_names_itself() {
        let params = json!({"session_id": "s", "content": "c", "after_seq": 0, "message_id": "m",
                            "id": "h", "decision": "approve", "client_id": "c", "name": "n",
                            "protocol_versions": [2], "call_id": "x", "result": "r"});
        for m in ALL {
            let call = Call::parse(m, Some(params.clone())).unwrap();
            assert_eq!(call.method(), *m);
        }
    }
}
