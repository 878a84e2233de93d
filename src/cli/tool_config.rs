//! Resolving the tool settings of `serve`: the workspace the tools work in, whether
//! `run_command` is offered, and the tool policy. Highest first: flags, environment variables,
//! the config file (`config_file.rs`), the default; for the policy, tool by tool. A bad value is
//! a [`ToolSettingsError`], which `serve` exits with as a usage error (2), like a bad flag.

use std::path::{Path, PathBuf};

use super::config_file::ConfigFile;
use super::policy_settings::{self, PolicyError, PolicySetting};
use crate::core::policy::ToolPolicy;
use crate::tools::{self, ToolsConfig};

/// The environment variable with policy settings, comma-separated.
pub const TOOL_POLICY_ENV: &str = "ZCOORD_TOOL_POLICY";

/// The tool flags of `serve`. The workspace is the global `--workspace`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ToolArgs {
    /// Offer the model `run_command`: `sh -c` in the workspace, with the server's user and
    /// environment (not a sandbox). `--enable-run-command=false` turns off one enabled in the
    /// config file [default: false].
    #[arg(long, env = "ZCOORD_ENABLE_RUN_COMMAND", value_name = "BOOL",
          num_args = 0..=1, require_equals = true, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    pub enable_run_command: Option<bool>,
    /// A tool's policy, `TOOL=allow|ask|deny` (repeatable): run at once, ask a person first, or
    /// never run. Also `ZCOORD_TOOL_POLICY=write_file=allow,run_command=deny` and the config
    /// file's `[tool_policy]` table; for each tool a flag beats the environment, which beats the
    /// file. Default: `allow` for read_file, list_dir, clock, word_count and sleep, `ask` for
    /// the rest. `ask_user` is always a question and cannot be set.
    #[arg(long = "tool-policy", value_name = "TOOL=POLICY",
          value_parser = |s: &str| s.parse::<PolicySetting>())]
    pub tool_policy: Vec<PolicySetting>,
}

/// A tool setting that cannot be used: the server does not start.
#[derive(Debug, thiserror::Error)]
pub enum ToolSettingsError {
    #[error("{TOOL_POLICY_ENV}: {0}")]
    Env(PolicyError),
    #[error("config file {}: [tool_policy]: {error}", path.display())]
    File { path: PathBuf, error: PolicyError },
    #[error("workspace {}: {reason}", path.display())]
    Workspace { path: PathBuf, reason: String },
}

/// What the tool settings resolve to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolSettings {
    pub tools: ToolsConfig,
    pub policy: ToolPolicy,
    /// Tools a policy was set for that are not built in (typos, or tools of a later version):
    /// `serve` warns about them.
    pub unknown_tools: Vec<String>,
}

/// Resolves the settings. `workspace` is the global `--workspace` (or `ZCOORD_WORKSPACE`); a
/// relative `workspace` in the file is relative to the file's directory; without either it is
/// `cwd`. The workspace is canonicalized and must be a directory.
pub fn resolve(
    args: &ToolArgs,
    workspace: Option<&Path>,
    file: &ConfigFile,
    env: impl Fn(&str) -> Option<String>,
    cwd: &Path,
) -> Result<ToolSettings, ToolSettingsError> {
    let file_dir = file.path.as_deref().and_then(Path::parent);
    let workspace = match (workspace, &file.keys.workspace, file_dir) {
        (Some(w), _, _) => cwd.join(w),
        (None, Some(w), Some(dir)) => dir.join(w),
        (None, Some(w), None) => cwd.join(w),
        (None, None, _) => cwd.to_owned(),
    };
    let unusable = |reason: String| ToolSettingsError::Workspace {
        path: workspace.clone(),
        reason,
    };
    let canonical = std::fs::canonicalize(&workspace).map_err(|e| unusable(e.to_string()))?;
    if !canonical.is_dir() {
        return Err(unusable("not a directory".into()));
    }

    // Lowest first, so that applying them in order leaves the highest for each tool.
    let mut settings = file
        .keys
        .tool_policy
        .iter()
        .map(|(tool, word)| PolicySetting::new(tool, word))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| ToolSettingsError::File {
            path: file.path.clone().unwrap_or_default(),
            error,
        })?;
    if let Some(text) = env(TOOL_POLICY_ENV) {
        settings.extend(policy_settings::parse_list(&text).map_err(ToolSettingsError::Env)?);
    }
    settings.extend(args.tool_policy.iter().cloned());
    let mut policy = ToolPolicy::default();
    policy_settings::apply(&mut policy, &settings);
    let mut unknown_tools: Vec<String> = settings
        .into_iter()
        .map(|s| s.tool)
        .filter(|tool| !tools::is_built_in(tool))
        .collect();
    unknown_tools.sort();
    unknown_tools.dedup();

    Ok(ToolSettings {
        tools: ToolsConfig {
            workspace: canonical,
            run_command: args
                .enable_run_command
                .or(file.keys.enable_run_command)
                .unwrap_or(false),
        },
        policy,
        unknown_tools,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::core::policy::Policy;

    /// `serve`'s tool flags as the command line gives them.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        tools: ToolArgs,
    }

    fn flags(args: &[&str]) -> Result<ToolArgs, clap::Error> {
        let argv = std::iter::once("serve").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|c| c.tools)
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// A config file with `toml` in `dir`, read back.
    fn file_in(dir: &Path, toml: &str) -> ConfigFile {
        std::fs::write(dir.join("config.toml"), toml).unwrap();
        super::super::config_file::read(None, dir).unwrap()
    }

    #[test]
    fn defaults_are_the_current_directory_without_run_command() {
        let cwd = tempfile::tempdir().unwrap();
        let s = resolve(
            &ToolArgs::default(),
            None,
            &ConfigFile::default(),
            no_env,
            cwd.path(),
        )
        .unwrap();
        assert_eq!(
            s.tools.workspace,
            std::fs::canonicalize(cwd.path()).unwrap()
        );
        assert!(!s.tools.run_command);
        assert_eq!(s.policy, ToolPolicy::default());
    }

    #[test]
    fn flags_beat_the_environment_which_beats_the_file_tool_by_tool() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(
            dir.path(),
            "[tool_policy]\nwrite_file = \"allow\"\nrun_command = \"allow\"\nread_file = \"deny\"\n",
        );
        let env = |var: &str| {
            (var == TOOL_POLICY_ENV).then(|| "run_command=deny,list_dir=ask".to_owned())
        };
        let args = flags(&["--tool-policy", "list_dir=deny", "--tool-policy=sleep=ask"]).unwrap();
        let p = resolve(&args, None, &file, env, dir.path()).unwrap().policy;
        assert_eq!(p.policy("write_file"), Policy::Allow, "file");
        assert_eq!(p.policy("read_file"), Policy::Deny, "file");
        assert_eq!(p.policy("run_command"), Policy::Deny, "env over file");
        assert_eq!(p.policy("list_dir"), Policy::Deny, "flag over env");
        assert_eq!(p.policy("sleep"), Policy::Ask, "flag over default");
        assert_eq!(p.policy("clock"), Policy::Allow, "default");
        assert_eq!(p.policy("anything_else"), Policy::Ask, "default");
    }

    #[test]
    fn run_command_flag_environment_file() {
        let dir = tempfile::tempdir().unwrap();
        let enabled = |args: &[&str], toml: &str| {
            let file = file_in(dir.path(), toml);
            let s = resolve(&flags(args).unwrap(), None, &file, no_env, dir.path());
            s.unwrap().tools.run_command
        };
        assert!(!enabled(&[], ""));
        assert!(enabled(&[], "enable_run_command = true"));
        assert!(enabled(&["--enable-run-command"], ""));
        assert!(enabled(
            &["--enable-run-command=true"],
            "enable_run_command = false"
        ));
        assert!(!enabled(
            &["--enable-run-command=false"],
            "enable_run_command = true"
        ));
        assert!(!enabled(&["--enable-run-command=no"], ""));
        assert!(flags(&["--enable-run-command=maybe"]).is_err());
    }

    #[test]
    fn the_workspace_comes_from_the_flag_then_the_file_then_the_current_directory() {
        let base = tempfile::tempdir().unwrap();
        let base_path = std::fs::canonicalize(base.path()).unwrap();
        for d in ["cwd", "etc", "from_file", "from_flag"] {
            std::fs::create_dir(base_path.join(d)).unwrap();
        }
        let cwd = base_path.join("cwd");
        let workspace = |flag: Option<&str>, toml: &str| {
            let file = file_in(&base_path.join("etc"), toml);
            resolve(
                &ToolArgs::default(),
                flag.map(Path::new),
                &file,
                no_env,
                &cwd,
            )
            .map(|s| s.tools.workspace)
        };
        assert_eq!(workspace(None, "").unwrap(), cwd);
        assert_eq!(
            workspace(None, "workspace = \"../from_file\"").unwrap(),
            base_path.join("from_file"),
            "relative to the file's directory"
        );
        assert_eq!(
            workspace(Some("../from_flag"), "workspace = \"../from_file\"").unwrap(),
            base_path.join("from_flag"),
            "the flag wins, relative to the current directory"
        );
        let err = workspace(Some("nope"), "").unwrap_err().to_string();
        assert!(
            err.starts_with("workspace ") && err.contains("nope"),
            "{err}"
        );
        std::fs::write(cwd.join("f"), "").unwrap();
        let err = workspace(Some("f"), "").unwrap_err().to_string();
        assert!(err.contains("not a directory"), "{err}");
    }

    #[test]
    fn bad_values_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let none = ConfigFile::default();
        let bad_flag = flags(&["--tool-policy", "write_file"])
            .unwrap_err()
            .to_string();
        assert!(bad_flag.contains("write_file=allow"), "{bad_flag}");
        let bad_flag = flags(&["--tool-policy", "write_file=sometimes"]).unwrap_err();
        assert!(
            bad_flag.to_string().contains("allow, ask or deny"),
            "{bad_flag}"
        );

        let env = |_: &str| Some("write_file=allow,run_command".to_owned());
        let err = resolve(&ToolArgs::default(), None, &none, env, dir.path()).unwrap_err();
        assert!(matches!(
            err,
            ToolSettingsError::Env(PolicyError::MissingEquals(_))
        ));
        assert!(err.to_string().starts_with("ZCOORD_TOOL_POLICY: "), "{err}");

        let file = file_in(dir.path(), "[tool_policy]\nwrite_file = \"always\"\n");
        let err = resolve(&ToolArgs::default(), None, &file, no_env, dir.path()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("config.toml: [tool_policy]") && text.contains("\"always\""),
            "{text}"
        );

        let file = file_in(dir.path(), "[tool_policy]\nask_user = \"allow\"\n");
        let err = resolve(&ToolArgs::default(), None, &file, no_env, dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("ask_user is always a question"),
            "{err}"
        );
    }

    #[test]
    fn policies_for_tools_that_are_not_built_in_are_pointed_out() {
        let dir = tempfile::tempdir().unwrap();
        let file = file_in(dir.path(), "[tool_policy]\nwritefile = \"allow\"\n");
        let env = |_: &str| Some("write_file=allow,writefile=deny,run_comand=deny".to_owned());
        let s = resolve(&ToolArgs::default(), None, &file, env, dir.path()).unwrap();
        assert_eq!(s.unknown_tools, ["run_comand", "writefile"]);
    }
}
