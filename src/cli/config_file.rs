//! The config file of `serve` (TOML): `--config FILE` (or `ZCOORD_CONFIG`), else
//! `<data-dir>/config.toml` if there is one. One struct holds every key, so an unknown key is an
//! error naming it, whichever settings it was meant for; `model_config.rs` and `tool_config.rs`
//! resolve their keys against flags and environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The keys: the same settings as the flags, snake_case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub system_prompt: Option<String>,
    pub context_budget_tokens: Option<usize>,
    pub max_tool_rounds: Option<u32>,
    pub connect_timeout_secs: Option<f64>,
    pub chunk_timeout_secs: Option<f64>,
    pub max_retries: Option<u32>,
    pub token_delay_ms: Option<u64>,
    /// Relative to the file's directory.
    pub workspace: Option<PathBuf>,
    pub enable_run_command: Option<bool>,
    /// `[tool_policy]`: tool name = policy word, checked by `tool_config.rs`.
    #[serde(default)]
    pub tool_policy: BTreeMap<String, String>,
    /// `[models.NAME]`: more models by name, resolved by `model_config.rs`.
    #[serde(default)]
    pub models: BTreeMap<String, ModelTable>,
}

/// One `[models.NAME]` table: a model of its own, none of its settings taken from the flags
/// or the top-level keys (those describe the model `--model echo|openai:<model>` names). The
/// keys repeat the top-level ones on purpose: serde cannot flatten a shared struct into both
/// and still refuse unknown keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelTable {
    /// `echo` or `openai`.
    pub provider: String,
    /// The provider's model name (`openai` only).
    pub model: Option<String>,
    pub base_url: Option<String>,
    pub api_key_env: Option<String>,
    pub system_prompt: Option<String>,
    pub context_budget_tokens: Option<usize>,
    pub max_tool_rounds: Option<u32>,
    pub connect_timeout_secs: Option<f64>,
    pub chunk_timeout_secs: Option<f64>,
    pub max_retries: Option<u32>,
    /// `echo` only.
    pub token_delay_ms: Option<u64>,
}

/// The file as read, and where from.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// `None` when there is no file (the default one is optional).
    pub path: Option<PathBuf>,
    pub keys: FileConfig,
}

/// Reads `explicit` if given (it must exist), else `<data-dir>/config.toml` if there is one.
pub fn read(explicit: Option<&Path>, data_dir: &Path) -> anyhow::Result<ConfigFile> {
    let (path, required): (PathBuf, bool) = match explicit {
        Some(p) => (p.to_owned(), true),
        None => (data_dir.join("config.toml"), false),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(ConfigFile::default())
        }
        Err(e) => anyhow::bail!("cannot read config file {}: {e}", path.display()),
    };
    let keys = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("config file {}: {e}", path.display()))?;
    Ok(ConfigFile {
        path: Some(path),
        keys,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_is_optional_and_an_explicit_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let none = read(None, dir.path()).unwrap();
        assert!(none.path.is_none());
        let missing = read(Some(Path::new("/nonexistent.toml")), dir.path());
        assert!(missing
            .unwrap_err()
            .to_string()
            .contains("cannot read config file"));
    }

    #[test]
    fn every_part_reads_its_keys_and_typos_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(
            &path,
            "model = \"echo\"\nenable_run_command = true\n[tool_policy]\nwrite_file = \"allow\"\n",
        )
        .unwrap();
        let file = read(None, dir.path()).unwrap();
        assert_eq!(file.path.as_deref(), Some(path.as_path()));
        assert_eq!(file.keys.model.as_deref(), Some("echo"));
        assert_eq!(file.keys.enable_run_command, Some(true));
        assert_eq!(file.keys.tool_policy["write_file"], "allow");
        std::fs::write(&path, "modle = \"echo\"\n").unwrap();
        let err = read(None, dir.path()).unwrap_err().to_string();
        assert!(err.contains("unknown field"), "{err}");
    }
}
