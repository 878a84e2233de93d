//! Why a tool call failed. Each becomes an `is_error: true` result whose text is the message; none
//! ends the turn.

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("unknown tool: {0}")]
    Unknown(String),
    #[error("the tool call named no function")]
    NoName,
    #[error("run_command is not enabled on this server (serve --enable-run-command)")]
    NotEnabled,
    #[error("invalid JSON arguments: {0}")]
    Json(serde_json::Error),
    /// The harmless tools' own wording of what they want.
    #[error("{0}")]
    Wants(String),
    #[error("invalid arguments for {tool}: {message}")]
    Args { tool: &'static str, message: String },
    #[error("{0}: absolute paths are refused; give a path relative to the workspace")]
    Absolute(String),
    #[error("{0}: leads out of the workspace")]
    Escapes(String),
    #[error("{0}: the symlink {1:?} leads out of the workspace")]
    SymlinkEscapes(String, String),
    #[error("{0}: {1}")]
    BadPath(String, String),
    #[error("{0}: no such file or directory")]
    NotFound(String),
    #[error("{0}: a component on the way is not a directory")]
    NotADirectory(String),
    #[error("{0}: is a {1}, not a regular file")]
    NotRegular(String, &'static str),
    #[error("{0}: is a {1}, not a directory")]
    NotDir(String, &'static str),
    #[error("{0}: changed while it was being opened (a symlink swapped in?); nothing was done")]
    Changed(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}: {1}")]
    Io(String, io::Error),
}

impl ToolError {
    /// A bad-arguments error for `tool`.
    pub fn args(tool: &'static str, message: impl ToString) -> ToolError {
        ToolError::Args {
            tool,
            message: message.to_string(),
        }
    }
}
