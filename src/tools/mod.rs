//! The built-in tools a model may call, as one value built from the configuration: [`Tools`]
//! knows the workspace the file tools are confined to and whether `run_command` is enabled,
//! lists the tools on offer ([`Tools::definitions`]) and runs a call ([`Tools::run`]). A call to
//! an unknown tool, with arguments that are not the JSON the tool wants, or that the tool
//! refuses, is an error result, never a panic and never the end of the turn.
//!
//! Not here: whether a call may run at all. That is the core's tool policy
//! (`core/policy.rs`), decided before a model's call reaches [`Tools::run`]
//! (`TurnSink::call_tool`).
//!
//! - `harmless.rs`: `clock`, `word_count`, `sleep`;
//! - `workspace.rs`: confinement of paths to the workspace;
//! - `files.rs`: `read_file`, `list_dir`, `write_file`;
//! - `command.rs`: `run_command`;
//! - `error.rs`: why a call failed.

mod command;
#[cfg(test)]
mod confinement_tests;
mod error;
mod files;
mod harmless;
mod workspace;

use std::path::{Path, PathBuf};

use serde_json::Value;

pub use command::{DEFAULT_TIMEOUT_MS, MAX_OUTPUT_BYTES, MAX_TIMEOUT_MS};
pub use error::ToolError;
pub use files::{MAX_LIST_ENTRIES, MAX_READ_BYTES, MAX_WRITE_BYTES};
pub use harmless::MAX_SLEEP_MS;
pub use workspace::{Workspace, WorkspaceError};

pub const READ_FILE: &str = "read_file";
pub const LIST_DIR: &str = "list_dir";
pub const WRITE_FILE: &str = "write_file";
pub const RUN_COMMAND: &str = "run_command";
/// The model asks a person a question: offered like a tool, answered by a person through the
/// core (`hitl.respond`), never run here.
pub const ASK_USER: &str = "ask_user";

/// What one tool call produced: its text, and whether that text is an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutcome {
    pub is_error: bool,
    pub result: String,
}

impl ToolOutcome {
    pub fn ok(result: impl Into<String>) -> Self {
        ToolOutcome {
            is_error: false,
            result: result.into(),
        }
    }

    pub fn err(result: impl Into<String>) -> Self {
        ToolOutcome {
            is_error: true,
            result: result.into(),
        }
    }
}

impl From<Result<String, ToolError>> for ToolOutcome {
    fn from(r: Result<String, ToolError>) -> Self {
        match r {
            Ok(text) => ToolOutcome::ok(text),
            Err(e) => ToolOutcome::err(e.to_string()),
        }
    }
}

/// A tool as offered to a model: its name, what it does, and a JSON Schema of its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDef {
    pub name: &'static str,
    pub description: &'static str,
    pub parameters: Value,
}

/// What the tools are told by the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolsConfig {
    /// The directory the file tools are confined to and commands run in.
    pub workspace: PathBuf,
    /// Whether `run_command` is offered (and runs).
    pub run_command: bool,
}

impl Default for ToolsConfig {
    /// The current directory, without `run_command`.
    fn default() -> Self {
        ToolsConfig {
            workspace: PathBuf::from("."),
            run_command: false,
        }
    }
}

/// Whether `name` is one of the built-in tools, offered or not.
pub fn is_built_in(name: &str) -> bool {
    let everything = ToolsConfig {
        run_command: true,
        ..ToolsConfig::default()
    };
    everything.names().contains(&name)
}

/// The tools on offer, with what they need to run. Shared by the models (`Arc<Tools>`).
#[derive(Debug)]
pub struct Tools {
    workspace: Workspace,
    run_command: bool,
}

impl Tools {
    /// Opens the workspace; fails when it is not a directory that can be opened.
    pub fn new(config: &ToolsConfig) -> Result<Tools, WorkspaceError> {
        Ok(Tools {
            workspace: Workspace::open(&config.workspace)?,
            run_command: config.run_command,
        })
    }

    /// The workspace's canonical path.
    pub fn workspace(&self) -> &Path {
        self.workspace.root()
    }

    /// Whether `run_command` is on offer.
    pub fn run_command_enabled(&self) -> bool {
        self.run_command
    }

    /// The tools on offer, for docs and for offering them to a model as functions: the harmless
    /// ones, the file tools, and `run_command` when enabled.
    pub fn definitions(&self) -> Vec<ToolDef> {
        let mut defs = harmless::definitions();
        defs.extend(files::definitions());
        if self.run_command {
            defs.push(command::definition());
        }
        defs.push(ask_user_definition());
        defs
    }

    /// Whether a call of `name` would run (rather than be refused as unknown or not enabled).
    pub fn offers(&self, name: &str) -> bool {
        is_built_in(name) && (name != RUN_COMMAND || self.run_command)
    }

    /// Runs the tool `name` with `args` (the call's JSON arguments, as text; blank is `{}`).
    /// Every way it can go wrong is an error outcome.
    pub async fn run(&self, name: &str, args: &str) -> ToolOutcome {
        let args: Value = if args.trim().is_empty() {
            Value::Object(Default::default())
        } else {
            match serde_json::from_str(args) {
                Ok(v) => v,
                Err(e) => return ToolOutcome::err(ToolError::Json(e).to_string()),
            }
        };
        if let Some(result) = harmless::run(name, &args).await {
            return result.into();
        }
        let ws = self.workspace.clone();
        match name {
            READ_FILE => blocking(move || files::read_file(&ws, args)).await,
            LIST_DIR => blocking(move || files::list_dir(&ws, args)).await,
            WRITE_FILE => blocking(move || files::write_file(&ws, args)).await,
            RUN_COMMAND if self.run_command => match command::run(ws.root(), args).await {
                Ok(done) => ToolOutcome {
                    is_error: done.is_error(),
                    result: done.text(),
                },
                Err(e) => ToolOutcome::err(e.to_string()),
            },
            RUN_COMMAND => ToolOutcome::err(ToolError::NotEnabled.to_string()),
            "" => ToolOutcome::err(ToolError::NoName.to_string()),
            ASK_USER => ToolOutcome::err("ask_user is answered by a person, not run"),
            other => ToolOutcome::err(ToolError::Unknown(other.to_owned()).to_string()),
        }
    }
}

fn ask_user_definition() -> ToolDef {
    ToolDef {
        name: ASK_USER,
        description: "Ask the person a question and wait for the answer (the tool's result). \
                      Offer options when there are a few likely answers.",
        parameters: serde_json::json!({
            "type": "object",
            "properties": {
                "question": {"type": "string", "description": "the question"},
                "options": {"type": "array", "items": {"type": "string"},
                            "description": "answers to offer (the person may answer otherwise)"}
            },
            "required": ["question"]
        }),
    }
}

/// The tools a server offers by default (no `run_command`), without `ask_user`.
pub fn default_names() -> Vec<&'static str> {
    ToolsConfig::default().names()
}

impl ToolsConfig {
    /// The tools a server with this configuration runs (not `ask_user`, which a person
    /// answers): what the core's tool policy applies to.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = harmless::NAMES.to_vec();
        names.extend([READ_FILE, LIST_DIR, WRITE_FILE]);
        if self.run_command {
            names.push(RUN_COMMAND);
        }
        names
    }
}

/// Runs a file tool on the blocking pool: file systems can be slow, and the runtime has few
/// threads. Dropping the call does not stop it; each is bounded in what it reads and writes.
async fn blocking(f: impl FnOnce() -> Result<String, ToolError> + Send + 'static) -> ToolOutcome {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.into(),
        Err(e) => ToolOutcome::err(format!("the tool failed: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools(run_command: bool) -> (tempfile::TempDir, Tools) {
        let dir = tempfile::tempdir().unwrap();
        let tools = Tools::new(&ToolsConfig {
            workspace: dir.path().to_owned(),
            run_command,
        })
        .unwrap();
        (dir, tools)
    }

    #[tokio::test]
    async fn every_defined_tool_runs() {
        let (dir, t) = tools(true);
        std::fs::write(dir.path().join("f"), "x").unwrap();
        let args = r#"{"text": "a", "ms": 0}"#;
        for def in t.definitions().into_iter().filter(|d| d.name != ASK_USER) {
            let args = match def.name {
                READ_FILE => r#"{"path": "f"}"#,
                LIST_DIR => "{}",
                WRITE_FILE => r#"{"path": "g", "content": "y"}"#,
                RUN_COMMAND => r#"{"command": "true"}"#,
                _ => args,
            };
            let outcome = t.run(def.name, args).await;
            assert!(!outcome.is_error, "{}: {}", def.name, outcome.result);
            assert!(t.offers(def.name));
        }
    }

    #[tokio::test]
    async fn tools_answer_and_refuse_cleanly() {
        let (_dir, t) = tools(false);
        assert_eq!(
            t.run("word_count", r#"{"text":"a b  c"}"#).await,
            ToolOutcome::ok("3")
        );
        assert!(!t.run("clock", "").await.is_error);
        assert!(t.run("word_count", "{}").await.is_error);
        assert!(t.run("word_count", "{not json").await.is_error);
        assert_eq!(
            t.run("nope", "{}").await,
            ToolOutcome::err("unknown tool: nope")
        );
        assert_eq!(
            t.run("", "{}").await,
            ToolOutcome::err("the tool call named no function")
        );
        assert!(t.run("sleep", r#"{"ms": 999999}"#).await.is_error);
        assert_eq!(
            t.run("sleep", r#"{"ms": 1}"#).await,
            ToolOutcome::ok("slept 1 ms")
        );
        let unknown_field = t.run(READ_FILE, r#"{"path": "f", "offsett": 2}"#).await;
        assert!(
            unknown_field.result.contains("unknown field `offsett`"),
            "{unknown_field:?}"
        );
    }

    #[tokio::test]
    async fn run_command_is_offered_and_runs_only_when_enabled() {
        let (dir, off) = tools(false);
        let names: Vec<&str> = off.definitions().iter().map(|d| d.name).collect();
        assert_eq!(
            names,
            [
                "clock",
                "word_count",
                "sleep",
                "read_file",
                "list_dir",
                "write_file",
                "ask_user"
            ]
        );
        assert_eq!(off.definitions().len(), default_names().len() + 1);
        assert!(!off.offers(RUN_COMMAND));
        let refused = off.run(RUN_COMMAND, r#"{"command": "touch ran"}"#).await;
        assert!(refused.is_error && refused.result.contains("--enable-run-command"));
        assert!(!dir.path().join("ran").exists());

        let (dir, on) = tools(true);
        assert!(on.definitions().iter().any(|d| d.name == RUN_COMMAND));
        assert!(ToolsConfig {
            workspace: dir.path().to_owned(),
            run_command: true
        }
        .names()
        .contains(&RUN_COMMAND));
        let ran = on
            .run(RUN_COMMAND, r#"{"command": "touch ran; echo hi"}"#)
            .await;
        assert_eq!(ran, ToolOutcome::ok("exit code: 0\nhi\n"));
        assert!(dir.path().join("ran").exists(), "it runs in the workspace");
    }

    #[test]
    fn descriptions_state_the_real_bounds() {
        assert_eq!(MAX_READ_BYTES, 256 << 10);
        assert_eq!(MAX_WRITE_BYTES, 1 << 20);
        assert_eq!(MAX_LIST_ENTRIES, 1000);
        assert_eq!((DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS), (30_000, 600_000));
        assert_eq!(MAX_OUTPUT_BYTES, 64 << 10);
        let (_dir, t) = tools(true);
        let text: String = t.definitions().iter().map(|d| d.description).collect();
        for bound in [
            "256 KiB",
            "1 MiB",
            "1000 entries",
            "30000",
            "600000",
            "64 KiB",
        ] {
            assert!(text.contains(bound), "{bound}");
        }
    }
}
