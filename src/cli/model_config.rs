//! Resolving the model settings of `serve` from its three sources, highest first: command-line
//! flags, environment variables (clap reads `ZCOORD_*` into the same flags), and the config file
//! (TOML, `config_file.rs`). Anything still unset takes the provider's default. The file's
//! `[models.NAME]` tables add models by name; `--model` (or `model`) names the default, a table
//! or `echo` / `openai:<model>` configured by the flags and top-level keys as before.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config_file::{FileConfig, ModelTable};
use crate::config::ModelConfig;
use crate::model::openai::OpenAiConfig;
use crate::protocol::limits::MAX_MODEL_NAME_BYTES;

/// Every model `serve` runs: the default and the others, by name.
#[derive(Debug)]
pub struct ResolvedModels {
    /// The default's name; `None`: what runs it (`echo`, `openai:<model>`).
    pub default_name: Option<String>,
    pub default: ModelConfig,
    pub others: BTreeMap<String, ModelConfig>,
}

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

/// The default model and the `[models.NAME]` tables. The default is the one `--model` (or the
/// file's `model`) names, a table or not; with neither, the only table, or `echo` when there is
/// none. Several tables and no default named is a mistake: which one was meant?
pub fn resolve_all(
    args: &ModelArgs,
    file: &FileConfig,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ResolvedModels> {
    let mut tables = BTreeMap::new();
    for (name, table) in &file.models {
        check_name(name)?;
        let config = from_table(name, table, &env)?;
        tables.insert(name.clone(), config);
    }
    let chosen = args.model.clone().or_else(|| file.model.clone());
    let (default_name, default) = match chosen {
        Some(name) if tables.contains_key(&name) => {
            let config = tables.remove(&name).expect("checked");
            (Some(name), config)
        }
        None if tables.len() == 1 => {
            let (name, config) = tables.pop_first().expect("one table");
            (Some(name), config)
        }
        None if tables.len() > 1 => {
            let names: Vec<&String> = tables.keys().collect();
            anyhow::bail!(
                "several [models] tables ({names:?}): name the default with --model NAME or `model = \"NAME\"`"
            );
        }
        Some(name) if !tables.is_empty() && name != "echo" && !name.starts_with("openai:") => {
            let names: Vec<&String> = tables.keys().collect();
            anyhow::bail!(
                "unknown model {name:?}: use `echo`, `openai:<model-name>` or one of the [models] tables {names:?}"
            );
        }
        _ => (None, resolve(args, file, &env)?),
    };
    Ok(ResolvedModels {
        default_name,
        default,
        others: tables,
    })
}

/// A name clients can send: not empty, no control characters, within the protocol's bound.
fn check_name(name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && name.len() <= MAX_MODEL_NAME_BYTES,
        "[models.{name:?}]: a model name takes 1 to {MAX_MODEL_NAME_BYTES} bytes"
    );
    anyhow::ensure!(
        !name.chars().any(char::is_control),
        "[models.{name:?}]: a model name has no control characters"
    );
    Ok(())
}

/// One `[models.NAME]` table, on its own: no flag or top-level key fills its gaps.
fn from_table(
    name: &str,
    t: &ModelTable,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<ModelConfig> {
    match t.provider.as_str() {
        "echo" => {
            anyhow::ensure!(
                t.model.is_none() && t.base_url.is_none() && t.api_key_env.is_none(),
                "[models.{name}]: provider \"echo\" takes no model, base_url or api_key_env"
            );
            Ok(ModelConfig::Echo {
                token_delay: Duration::from_millis(t.token_delay_ms.unwrap_or(5)),
            })
        }
        "openai" => {
            let model = t
                .model
                .as_deref()
                .filter(|m| !m.is_empty())
                .ok_or_else(|| {
                    anyhow::anyhow!("[models.{name}]: `model` is required with provider \"openai\"")
                })?;
            let base_url = t.base_url.clone().ok_or_else(|| {
                anyhow::anyhow!("[models.{name}]: `base_url` is required with provider \"openai\"")
            })?;
            let knobs = Knobs {
                api_key_env: t.api_key_env.clone(),
                system_prompt: t.system_prompt.clone(),
                context_budget_tokens: t.context_budget_tokens,
                max_tool_rounds: t.max_tool_rounds,
                connect_timeout_secs: t.connect_timeout_secs,
                chunk_timeout_secs: t.chunk_timeout_secs,
                max_retries: t.max_retries,
            };
            let what = format!("[models.{name}] api_key_env");
            Ok(ModelConfig::OpenAi(openai(
                model, &base_url, knobs, &what, env,
            )?))
        }
        other => {
            anyhow::bail!("[models.{name}]: unknown provider {other:?}: use \"echo\" or \"openai\"")
        }
    }
}

/// The settings of an OpenAI-compatible model besides its name and URL.
struct Knobs {
    api_key_env: Option<String>,
    system_prompt: Option<String>,
    context_budget_tokens: Option<usize>,
    max_tool_rounds: Option<u32>,
    connect_timeout_secs: Option<f64>,
    chunk_timeout_secs: Option<f64>,
    max_retries: Option<u32>,
}

/// `key_what` names where the key variable was given, for the error when it is not set.
fn openai(
    model: &str,
    base_url: &str,
    k: Knobs,
    key_what: &str,
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<OpenAiConfig> {
    let mut c = OpenAiConfig::new(model, base_url.trim_end_matches('/'));
    c.api_key = match &k.api_key_env {
        Some(var) => Some(env(var).ok_or_else(|| {
            anyhow::anyhow!("the API key variable {var} named by {key_what} is not set")
        })?),
        None => env("OPENAI_API_KEY"),
    };
    c.system_prompt = k.system_prompt;
    if let Some(v) = k.context_budget_tokens {
        c.context_budget_tokens = v;
    }
    if let Some(v) = k.max_tool_rounds {
        anyhow::ensure!(v >= 1, "max_tool_rounds must be at least 1");
        c.max_tool_rounds = v;
    }
    if let Some(v) = k.connect_timeout_secs {
        c.connect_timeout = seconds("connect_timeout_secs", v)?;
    }
    if let Some(v) = k.chunk_timeout_secs {
        c.chunk_timeout = seconds("chunk_timeout_secs", v)?;
    }
    if let Some(v) = k.max_retries {
        c.max_retries = v;
    }
    Ok(c)
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
    let knobs = Knobs {
        api_key_env: args
            .api_key_env
            .clone()
            .or_else(|| file.api_key_env.clone()),
        system_prompt: args
            .system_prompt
            .clone()
            .or_else(|| file.system_prompt.clone()),
        context_budget_tokens: args.context_budget_tokens.or(file.context_budget_tokens),
        max_tool_rounds: args.max_tool_rounds.or(file.max_tool_rounds),
        connect_timeout_secs: args.connect_timeout_secs.or(file.connect_timeout_secs),
        chunk_timeout_secs: args.chunk_timeout_secs.or(file.chunk_timeout_secs),
        max_retries: args.max_retries.or(file.max_retries),
    };
    let c = openai(name, &base_url, knobs, "--api-key-env", env)?;
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

#[cfg(test)]
mod table_tests {
    use super::*;

    fn file(toml: &str) -> FileConfig {
        toml::from_str(toml).unwrap()
    }

    fn env(var: &str) -> Option<String> {
        (var == "FAST_KEY").then(|| "sk-fast".to_owned())
    }

    const TWO: &str = r#"
[models.fast]
provider = "openai"
model = "small-1"
base_url = "http://127.0.0.1:9/v1/"
api_key_env = "FAST_KEY"
system_prompt = "Be quick."
max_retries = 1

[models.offline]
provider = "echo"
token_delay_ms = 0
"#;

    #[test]
    fn tables_are_models_by_name_and_the_flag_names_the_default() {
        let f = file(&format!("model = \"offline\"\n{TWO}"));
        let r = resolve_all(&ModelArgs::default(), &f, env).unwrap();
        assert_eq!(r.default_name.as_deref(), Some("offline"));
        assert!(matches!(r.default, ModelConfig::Echo { token_delay } if token_delay.is_zero()));
        let ModelConfig::OpenAi(fast) = &r.others["fast"] else {
            panic!("fast is an OpenAI model")
        };
        assert_eq!(
            (fast.model.as_str(), fast.base_url.as_str()),
            ("small-1", "http://127.0.0.1:9/v1")
        );
        assert_eq!(fast.api_key.as_deref(), Some("sk-fast"));
        assert_eq!(fast.system_prompt.as_deref(), Some("Be quick."));
        assert_eq!(fast.max_retries, 1);

        // The flag beats the file's `model`.
        let args = ModelArgs {
            model: Some("fast".into()),
            ..ModelArgs::default()
        };
        let r = resolve_all(&args, &f, env).unwrap();
        assert_eq!(r.default_name.as_deref(), Some("fast"));
        assert_eq!(r.others.keys().collect::<Vec<_>>(), ["offline"]);

        // `--model echo` beside tables: the old way, named by its provider, tables beside it.
        let args = ModelArgs {
            model: Some("echo".into()),
            ..ModelArgs::default()
        };
        let r = resolve_all(&args, &f, env).unwrap();
        assert_eq!(r.default_name, None);
        assert_eq!(r.others.len(), 2);
    }

    #[test]
    fn the_only_table_is_the_default_and_no_table_is_the_old_way() {
        let one = file("[models.solo]\nprovider = \"echo\"\n");
        let r = resolve_all(&ModelArgs::default(), &one, env).unwrap();
        assert_eq!(r.default_name.as_deref(), Some("solo"));
        assert!(r.others.is_empty());
        let r = resolve_all(&ModelArgs::default(), &FileConfig::default(), env).unwrap();
        assert_eq!(r.default_name, None);
        assert!(matches!(r.default, ModelConfig::Echo { .. }));
    }

    /// The README's example resolves as it says: `fast` the default, two more beside it.
    #[test]
    fn the_readme_example_resolves() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("### Several models by name")
            .nth(1)
            .expect("the README's section");
        let toml = section
            .split("```toml\n")
            .nth(1)
            .and_then(|t| t.split("```").next())
            .expect("its example");
        let env = |v: &str| (v == "OPENAI_API_KEY").then(|| "sk-x".to_owned());
        let r = resolve_all(&ModelArgs::default(), &file(toml), env).unwrap();
        assert_eq!(r.default_name.as_deref(), Some("fast"));
        assert_eq!(r.others.keys().collect::<Vec<_>>(), ["offline", "smart"]);
        let ModelConfig::OpenAi(smart) = &r.others["smart"] else {
            panic!("smart is an OpenAI model")
        };
        assert_eq!(smart.context_budget_tokens, 32768);
    }

    #[test]
    fn table_mistakes_are_reported() {
        let bad = |toml: &str, args: ModelArgs| {
            resolve_all(&args, &file(toml), env)
                .unwrap_err()
                .to_string()
        };
        let none = ModelArgs::default;
        assert!(bad(TWO, none()).contains("name the default"));
        let named = |m: &str| ModelArgs {
            model: Some(m.into()),
            ..ModelArgs::default()
        };
        assert!(bad(TWO, named("nope")).contains("[models] tables"));
        assert!(bad("[models.x]\nprovider = \"claude\"\n", none()).contains("unknown provider"));
        assert!(bad("[models.x]\nprovider = \"openai\"\n", none()).contains("`model` is required"));
        assert!(
            bad("[models.x]\nprovider = \"openai\"\nmodel = \"m\"\n", none())
                .contains("`base_url` is required")
        );
        let missing_key =
            "[models.x]\nprovider = \"openai\"\nmodel = \"m\"\nbase_url = \"http://h/v1\"\napi_key_env = \"NOPE\"\n";
        assert!(bad(missing_key, none()).contains("[models.x] api_key_env"));
        assert!(
            bad("[models.x]\nprovider = \"echo\"\nmodel = \"m\"\n", none())
                .contains("takes no model")
        );
        let long = format!(
            "[models.{}]\nprovider = \"echo\"\n",
            "n".repeat(MAX_MODEL_NAME_BYTES + 1)
        );
        assert!(bad(&long, none()).contains("a model name takes"));
        // Typos in a table are errors, as everywhere in the file.
        let typo: Result<FileConfig, _> =
            toml::from_str("[models.x]\nprovider = \"echo\"\nmodle = 1\n");
        assert!(typo.unwrap_err().to_string().contains("unknown field"));
    }
}
