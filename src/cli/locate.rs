//! Which data directory a command uses: `--data-dir` (or `ZCOORD_DATA_DIR`), else the data
//! directory of `--workspace` (or `ZCOORD_WORKSPACE`), else, for the client commands, the nearest
//! workspace at or above the current directory whose server runs (the walk-up rule,
//! `zcoord_client::workspace`), else the current directory's. `serve` never walks up: it serves
//! the directory it is started in. Also the error a client command gives when the walk-up found
//! nothing.

use std::path::{Path, PathBuf};

use crate::discovery;
use crate::workspace::{self, Found};

/// How the data directory was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// `--data-dir` or `ZCOORD_DATA_DIR`.
    DataDir,
    /// `--workspace` or `ZCOORD_WORKSPACE`.
    Workspace,
    /// The walk-up found a running server in this directory or above.
    WalkedUp,
    /// The current directory's own data directory: `serve`, or a walk-up that found nothing.
    CurrentDir,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::DataDir => "data_dir",
            How::Workspace => "workspace",
            How::WalkedUp => "walk_up",
            How::CurrentDir => "current_dir",
        }
    }
}

/// The data directory a command uses, and the workspace it belongs to when that is known.
#[derive(Debug, Clone)]
pub struct Location {
    pub data_dir: PathBuf,
    /// Absolute, symlinks resolved. Unknown with `--data-dir` alone (then the discovery file's
    /// `workspace` may say).
    pub workspace: Option<PathBuf>,
    pub how: How,
}

/// Chooses the data directory; `walk` for the client commands. An unusable `--workspace` is an
/// error (a usage error: it names a directory that is not there).
pub fn locate(
    data_dir: Option<&Path>,
    workspace: Option<&Path>,
    walk: bool,
) -> Result<Location, String> {
    if let Some(d) = data_dir {
        return Ok(Location {
            data_dir: d.to_owned(),
            workspace: workspace.and_then(|w| std::fs::canonicalize(w).ok()),
            how: How::DataDir,
        });
    }
    if let Some(w) = workspace {
        let data_dir = discovery::workspace_data_dir(w)
            .map_err(|e| format!("workspace {}: {e}", w.display()))?;
        return Ok(Location {
            data_dir,
            workspace: std::fs::canonicalize(w).ok(),
            how: How::Workspace,
        });
    }
    let Ok(cwd) = std::env::current_dir().and_then(std::fs::canonicalize) else {
        // No current directory (deleted under us): the data home itself, as before workspaces.
        return Ok(Location {
            data_dir: discovery::default_data_dir(),
            workspace: None,
            how: How::CurrentDir,
        });
    };
    if walk {
        if let Ok(Some(Found {
            workspace,
            data_dir,
            ..
        })) = workspace::walk_up(&cwd)
        {
            return Ok(Location {
                data_dir,
                workspace,
                how: How::WalkedUp,
            });
        }
    }
    Ok(Location {
        data_dir: discovery::workspace_dir_in(&discovery::default_data_dir(), &cwd),
        workspace: Some(cwd),
        how: How::CurrentDir,
    })
}

/// What a client command says when the walk-up from `cwd` found no running server.
pub fn nothing_found(cwd: &Path) -> String {
    let mut msg = format!(
        "error: no zcoord server runs for {} or any directory above it\n\
         pass --workspace DIR (or --data-dir DIR, or --rpc/--pub) to choose one",
        cwd.display()
    );
    let running = workspace::running_workspaces();
    if running.is_empty() {
        msg.push_str(&format!(
            "; no workspace has a running server (under {}); start one with `zcoord serve` in the workspace",
            discovery::default_data_dir().join("workspaces").display()
        ));
    } else {
        msg.push_str("; workspaces with a running server:");
        for f in running {
            let name = f
                .workspace
                .unwrap_or_else(|| f.data_dir.clone())
                .display()
                .to_string();
            msg.push_str(&format!(
                "\n  --workspace {name}  (pid {}, instance {})",
                f.discovery.pid, f.discovery.instance_id
            ));
        }
    }
    msg
}
