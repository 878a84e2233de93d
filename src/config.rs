//! Everything `serve` can be told, resolved to concrete values (no clap types here).

use crate::core::policy::ToolPolicy;
use crate::protocol::limits::{
    DEFAULT_CLIENT_TIMEOUT_SECS, DEFAULT_HITL_TIMEOUT_SECS, DEFAULT_TOOL_CLAIM_TIMEOUT_SECS,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::core::replay::ReplayLimits;
use crate::model::openai::OpenAiConfig;
use crate::protocol::limits::DEFAULT_MAX_SESSIONS;
use crate::store::memory::MemoryStore;
use crate::tools::ToolsConfig;
use crate::transport::TransportConfig;

/// Where state is kept.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// In this process only (tests, `--store memory`). Cloning a `MemoryStore` shares it, so a
    /// test can "restart" a server on the same data.
    Memory(MemoryStore),
    /// An SQLite database file.
    Sqlite(PathBuf),
}

#[derive(Debug, Clone)]
pub enum ModelConfig {
    /// The embedded deterministic model.
    Echo { token_delay: Duration },
    /// An OpenAI-compatible chat-completions server (llama.cpp, vLLM, Ollama, OpenAI, …).
    OpenAi(OpenAiConfig),
}

/// How long the core stays awake for the next request by default: about a client's round trip
/// on loopback, so a client asking in a loop finds it awake (README, Benchmark: the cost).
pub const DEFAULT_CORE_SPIN: Duration = Duration::from_micros(150);

#[derive(Debug, Clone)]
pub struct Config {
    pub transport: TransportConfig,
    pub heartbeat_interval: Duration,
    /// The default model: a turn runs it unless its message or its session names another.
    pub model: ModelConfig,
    /// The default model's name; `None`: what runs it (`echo`, `openai:<model>`).
    pub model_name: Option<String>,
    /// More models, by name (`[models.NAME]` in the config file).
    pub models: BTreeMap<String, ModelConfig>,
    /// How many `message.send` `request_id`s are remembered for idempotent retries.
    pub idempotency_capacity: usize,
    /// What the replay ring keeps for `events.replay`.
    pub replay: ReplayLimits,
    /// Sessions held at once; more are refused with `too_many_sessions`.
    pub max_sessions: usize,
    /// Which tool calls run at once, wait for a person's approval, or never run.
    pub tool_policy: ToolPolicy,
    /// A human-in-the-loop request unanswered this long is `expired` (`None`: never).
    pub hitl_timeout: Option<Duration>,
    /// How long the core stays awake, after answering requests, for the next one (or any other
    /// input) before it sleeps (`app/actor.rs`); zero sleeps at once.
    pub core_spin: Duration,
    /// A client that said `client.hello` and then sent nothing this long leaves.
    pub client_timeout: Duration,
    /// A client-run tool call nobody claims this long ends as an error.
    pub tool_claim_timeout: Duration,
    pub store: StoreConfig,
    /// Set when this server is a standby taking over: announced with `instance.promoted`.
    pub promotion: Option<Promotion>,
    /// The workspace the tools work in, and whether `run_command` is on offer.
    pub tools: ToolsConfig,
}

/// A standby's takeover.
#[derive(Debug, Clone, Default)]
pub struct Promotion {
    /// The primary it replaces, when known.
    pub previous_instance_id: Option<crate::protocol::ids::InstanceId>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            transport: TransportConfig::default(),
            heartbeat_interval: Duration::from_secs(5),
            model: ModelConfig::Echo {
                token_delay: Duration::from_millis(5),
            },
            model_name: None,
            models: BTreeMap::new(),
            idempotency_capacity: 10_000,
            replay: ReplayLimits::default(),
            max_sessions: DEFAULT_MAX_SESSIONS,
            tool_policy: ToolPolicy::default(),
            hitl_timeout: Some(Duration::from_secs(DEFAULT_HITL_TIMEOUT_SECS as u64)),
            core_spin: DEFAULT_CORE_SPIN,
            client_timeout: Duration::from_secs(DEFAULT_CLIENT_TIMEOUT_SECS as u64),
            tool_claim_timeout: Duration::from_secs(DEFAULT_TOOL_CLAIM_TIMEOUT_SECS as u64),
            store: StoreConfig::Memory(MemoryStore::new()),
            promotion: None,
            tools: ToolsConfig::default(),
        }
    }
}
