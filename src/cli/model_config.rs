//! Resolving the model settings of `serve` from its three sources, highest first: command-line
//! flags, environment variables (clap reads `ZCOORD_*` into the same flags), and the config file
//! (TOML, `config_file.rs`). Anything still unset takes the provider's default.

use std::time::Duration;

use super::config_file::FileConfig;
use crate::config::ModelConfig;
use crate::model::openai::OpenAiConfig;

/// The model flags of `serve`; every one is optional so the config file can fill the gaps.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ModelArgs {
    /// `echo` (embedded, offline; the default) or `openai:<model-name>` for an
    /// OpenAI-compatible server.
    #[arg(long, env = "ZCOORD_MODEL")]
    pub model: Option<String>,
    /// Base URL of the OpenAI-compatible API, e.g. `http://127.0.0.1:8080/v1`.
    #[arg(long, env = "ZCOORD_BASE_URL")]
    pub base_url: Option<String>,
    /// Name of the environment variable holding the API key (default `OPENAI_API_KEY`, used only
    /// if set). The key itself is never taken from the command line or a file.
    #[arg(long, env = "ZCOORD_API_KEY_ENV")]
    pub api_key_env: Option<String>,
    /// System prompt sent first in every request.
    #[arg(long, env = "ZCOORD_SYSTEM_PROMPT")]
    pub system_prompt: Option<String>,
    /// Conversation budget in estimated tokens (characters / 4); oldest messages are dropped.
    #[arg(long, env = "ZCOORD_CONTEXT_BUDGET_TOKENS")]
    pub context_budget_tokens: Option<usize>,
    /// Most model round trips (tool-call rounds) in one turn.
    #[arg(long, env = "ZCOORD_MAX_TOOL_ROUNDS")]
    pub max_tool_rounds: Option<u32>,
    /// Connect timeout, in seconds.
    #[arg(long, env = "ZCOORD_CONNECT_TIMEOUT_SECS")]
    pub connect_timeout_secs: Option<f64>,
    /// Longest silence allowed between two chunks of a stream, in seconds.
    #[arg(long, env = "ZCOORD_CHUNK_TIMEOUT_SECS")]
    pub chunk_timeout_secs: Option<f64>,
    /// Retries of a failed request (refused, 429, 5xx) before the first token.
    #[arg(long, env = "ZCOORD_MAX_RETRIES")]
    pub max_retries: Option<u32>,
    /// Delay before each token of the echo model, in milliseconds (default 5).
    #[arg(long, env = "ZCOORD_TOKEN_DELAY_MS")]
    pub token_delay_ms: Option<u64>,
}

/// Flags (with their environment variables) over the file over the defaults.
pub fn resolve(
    args: &ModelArgs,
    file: &FileConfig,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ModelConfig> {
    let model = args
        .model
        .clone()
        .or_else(|| file.model.clone())
        .unwrap_or_else(|| "echo".into());
    if model == "echo" {
        let ms = args.token_delay_ms.or(file.token_delay_ms).unwrap_or(5);
        return Ok(ModelConfig::Echo {
            token_delay: Duration::from_millis(ms),
        });
    }
    let Some(name) = model.strip_prefix("openai:").filter(|n| !n.is_empty()) else {
        anyhow::bail!("unknown model {model:?}: use `echo` or `openai:<model-name>`");
    };
    let base_url = args
        .base_url
        .clone()
        .or_else(|| file.base_url.clone())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--base-url is required with --model {model} (e.g. http://127.0.0.1:8080/v1)"
            )
        })?;
    let mut c = OpenAiConfig::new(name, base_url.trim_end_matches('/'));
    let key_var = args
        .api_key_env
        .clone()
        .or_else(|| file.api_key_env.clone());
    c.api_key = match &key_var {
        Some(var) => Some(env(var).ok_or_else(|| {
            anyhow::anyhow!("the API key variable {var} named by --api-key-env is not set")
        })?),
        None => env("OPENAI_API_KEY"),
    };
    c.system_prompt = args
        .system_prompt
        .clone()
        .or_else(|| file.system_prompt.clone());
    if let Some(v) = args.context_budget_tokens.or(file.context_budget_tokens) {
        c.context_budget_tokens = v;
    }
    if let Some(v) = args.max_tool_rounds.or(file.max_tool_rounds) {
        anyhow::ensure!(v >= 1, "max_tool_rounds must be at least 1");
        c.max_tool_rounds = v;
    }
    if let Some(v) = args.connect_timeout_secs.or(file.connect_timeout_secs) {
        c.connect_timeout = seconds("connect_timeout_secs", v)?;
    }
    if let Some(v) = args.chunk_timeout_secs.or(file.chunk_timeout_secs) {
        c.chunk_timeout = seconds("chunk_timeout_secs", v)?;
    }
    if let Some(v) = args.max_retries.or(file.max_retries) {
        c.max_retries = v;
    }
    Ok(ModelConfig::OpenAi(c))
}

fn seconds(name: &str, v: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(
        (0.001..=86_400.0).contains(&v),
        "{name} must be between 0.001 and 86400 seconds"
    );
    Ok(Duration::from_secs_f64(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// The file's keys, from TOML text.
    fn file(toml: &str) -> FileConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn echo_is_the_default() {
        let m = resolve(&ModelArgs::default(), &FileConfig::default(), no_env).unwrap();
        assert!(
            matches!(m, ModelConfig::Echo { token_delay } if token_delay == Duration::from_millis(5))
        );
    }

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let file = file(
            "model = \"openai:from-file\"\nbase_url = \"http://file/v1/\"\nmax_retries = 7\nsystem_prompt = \"be brief\"\n",
        );
        let args = ModelArgs {
            model: Some("openai:from-flag".into()),
            ..ModelArgs::default()
        };
        let ModelConfig::OpenAi(c) = resolve(&args, &file, no_env).unwrap() else {
            panic!()
        };
        assert_eq!(c.model, "from-flag");
        assert_eq!(c.base_url, "http://file/v1");
        assert_eq!(c.max_retries, 7);
        assert_eq!(c.system_prompt.as_deref(), Some("be brief"));
        assert_eq!(c.max_tool_rounds, OpenAiConfig::new("", "").max_tool_rounds);
    }

    #[test]
    fn the_key_comes_only_from_the_environment() {
        let none = FileConfig::default();
        let args = ModelArgs {
            model: Some("openai:m".into()),
            base_url: Some("http://x/v1".into()),
            api_key_env: Some("MY_KEY".into()),
            ..ModelArgs::default()
        };
        let env = |v: &str| (v == "MY_KEY").then(|| "sk-secret".to_owned());
        let ModelConfig::OpenAi(c) = resolve(&args, &none, env).unwrap() else {
            panic!()
        };
        assert_eq!(c.api_key.as_deref(), Some("sk-secret"));
        assert!(
            !format!("{c:?}").contains("sk-secret"),
            "the key never shows in Debug"
        );
        let err = resolve(&args, &none, no_env).unwrap_err().to_string();
        assert!(err.contains("MY_KEY"), "{err}");
    }

    #[test]
    fn mistakes_are_reported() {
        let bad = |args: ModelArgs| {
            resolve(&args, &FileConfig::default(), no_env)
                .unwrap_err()
                .to_string()
        };
        assert!(bad(ModelArgs {
            model: Some("gpt".into()),
            ..Default::default()
        })
        .contains("unknown model"));
        assert!(bad(ModelArgs {
            model: Some("openai:m".into()),
            ..Default::default()
        })
        .contains("--base-url"));
        // Unknown keys and a missing file: config_file.rs.
    }
}
