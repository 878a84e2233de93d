//! Which workspace's server a client uses when it is not told: the walk-up rule, as git finds its
//! repository. From the starting directory (symlinks resolved) up to the root, the first
//! directory whose data directory ([`discovery::workspace_data_dir`]) holds a discovery file
//! whose pid is running is the workspace. Also the listing of every workspace with a running
//! server, for the error that says none was found. Reads files only; connects to nothing.

use std::path::{Path, PathBuf};

use crate::discovery::{self, Discovery};

/// A workspace whose server runs, as the walk-up or the listing found it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// The workspace directory (absolute, symlinks resolved). For the listing, the discovery
    /// file's `workspace`, else `None` (a server older than that field).
    pub workspace: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub discovery: Discovery,
}

/// The nearest directory at or above `start` whose server runs, or `None`.
pub fn walk_up(start: &Path) -> std::io::Result<Option<Found>> {
    walk_up_in(&discovery::default_data_dir(), start)
}

/// As [`walk_up`], with the workspaces' data directories under `data_home`.
pub fn walk_up_in(data_home: &Path, start: &Path) -> std::io::Result<Option<Found>> {
    let start = std::fs::canonicalize(start)?;
    for dir in start.ancestors() {
        let data_dir = discovery::workspace_dir_in(data_home, dir);
        if let Some(d) = running(&data_dir) {
            return Ok(Some(Found {
                workspace: Some(dir.to_owned()),
                data_dir,
                discovery: d,
            }));
        }
    }
    Ok(None)
}

/// Every workspace under the data home whose server runs, by data directory name.
pub fn running_workspaces() -> Vec<Found> {
    running_workspaces_in(&discovery::default_data_dir())
}

/// As [`running_workspaces`], under `data_home`.
pub fn running_workspaces_in(data_home: &Path) -> Vec<Found> {
    let root = data_home.join("workspaces");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Vec::new();
    };
    let mut found: Vec<Found> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let data_dir = e.path();
            let d = running(&data_dir)?;
            Some(Found {
                workspace: d.workspace.clone(),
                data_dir,
                discovery: d,
            })
        })
        .collect();
    found.sort_by(|a, b| a.data_dir.cmp(&b.data_dir));
    found
}

/// The discovery file in `data_dir`, if there is one and its process runs.
fn running(data_dir: &Path) -> Option<Discovery> {
    discovery::read(&discovery::path_in(data_dir))
        .ok()
        .filter(|d| discovery::pid_may_be_alive(d.pid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use zcoord_protocol::ids::InstanceId;
    use zcoord_protocol::methods::Endpoints;

    fn disc(pid: u32, workspace: &Path) -> Discovery {
        Discovery {
            instance_id: InstanceId(uuid::Uuid::from_u128(u128::from(pid))),
            pid,
            endpoints: Endpoints {
                rpc: "ipc:///x/rpc".into(),
                pub_: "ipc:///x/pub".into(),
            },
            started_at: time::OffsetDateTime::UNIX_EPOCH,
            protocol_version: 1,
            version: "0".into(),
            secret: None,
            curve_public_key: None,
            workspace: Some(workspace.to_owned()),
        }
    }

    fn write_for(home: &Path, workspace: &Path, pid: u32) {
        let canonical = std::fs::canonicalize(workspace).unwrap();
        let dir = discovery::workspace_dir_in(home, &canonical);
        std::fs::create_dir_all(&dir).unwrap();
        discovery::write(&discovery::path_in(&dir), &disc(pid, &canonical)).unwrap();
    }

    #[test]
    fn the_nearest_ancestor_with_a_running_server_wins_and_dead_ones_are_skipped() {
        let home = tempfile::tempdir().unwrap();
        let home = home.path();
        let walk_up = |p: &Path| walk_up_in(home, p);
        let running_workspaces = || running_workspaces_in(home);
        let tree = tempfile::tempdir().unwrap();
        let outer = tree.path().join("outer");
        let inner = outer.join("inner");
        let deep = inner.join("a/b");
        std::fs::create_dir_all(&deep).unwrap();

        assert_eq!(walk_up(&deep).unwrap(), None, "nothing runs yet");
        assert!(running_workspaces().is_empty());

        let me = std::process::id();
        write_for(home, &outer, me);
        let found = walk_up(&deep).unwrap().unwrap();
        assert_eq!(
            found.workspace,
            Some(std::fs::canonicalize(&outer).unwrap())
        );

        // A nearer workspace wins, but only while its process runs.
        write_for(home, &inner, u32::MAX - 1);
        let found = walk_up(&deep).unwrap().unwrap();
        assert_eq!(
            found.workspace,
            Some(std::fs::canonicalize(&outer).unwrap())
        );
        write_for(home, &inner, me);
        let found = walk_up(&deep).unwrap().unwrap();
        assert_eq!(
            found.workspace,
            Some(std::fs::canonicalize(&inner).unwrap())
        );
        assert_eq!(walk_up(&inner).unwrap().unwrap().data_dir, found.data_dir);

        let listed: Vec<_> = running_workspaces()
            .into_iter()
            .map(|f| f.workspace.unwrap())
            .collect();
        assert_eq!(listed.len(), 2, "{listed:?}");
        assert!(listed.contains(&std::fs::canonicalize(&outer).unwrap()));
    }
}
