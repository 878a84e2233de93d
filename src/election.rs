//! Who is primary for a data directory: the process holding the OS lock on `zcoord.lock`.
//! The OS releases the lock however its holder ends (exit, crash, `kill -9`), so a standby waiting
//! here takes over as soon as the primary is gone, without timeouts or heartbeats, and a primary
//! that is merely frozen (SIGSTOP) keeps it: there is never a second primary. The file is never
//! unlinked, and any error taking the lock fails closed.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::discovery;
use crate::protocol::ids::InstanceId;

pub const LOCK_FILE: &str = "zcoord.lock";

/// How often a standby looks at the lock (and at who is primary).
pub const POLL: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("a zcoord server is already running for this data directory ({dir}): {who}")]
    Taken { dir: PathBuf, who: String },
    #[error("cannot lock {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Holding this is being the primary.
#[derive(Debug)]
pub struct Leadership {
    _lock: File,
    /// The primary this one replaces, if it waited for one (`None` for a plain start).
    pub took_over_from: Option<Option<InstanceId>>,
}

fn open(data_dir: &Path) -> Result<File, ElectionError> {
    let path = data_dir.join(LOCK_FILE);
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|source| ElectionError::Io { path, source })
}

/// Who the discovery file says is primary, for messages.
fn describe_primary(data_dir: &Path) -> (String, Option<InstanceId>) {
    match discovery::read(&discovery::path_in(data_dir)) {
        Ok(d) => (
            format!(
                "instance {} (pid {}) at {}",
                d.instance_id, d.pid, d.endpoints.rpc
            ),
            Some(d.instance_id),
        ),
        Err(_) => (
            "another zcoord process (starting or stopping)".to_owned(),
            None,
        ),
    }
}

fn try_take(file: &File, data_dir: &Path) -> Result<bool, ElectionError> {
    match file.try_lock() {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(source)) => Err(ElectionError::Io {
            path: data_dir.join(LOCK_FILE),
            source,
        }),
    }
}

/// Becomes primary now, or fails naming the running one.
pub fn take(data_dir: &Path) -> Result<Leadership, ElectionError> {
    let file = open(data_dir)?;
    if try_take(&file, data_dir)? {
        return Ok(Leadership {
            _lock: file,
            took_over_from: None,
        });
    }
    Err(ElectionError::Taken {
        dir: data_dir.to_owned(),
        who: describe_primary(data_dir).0,
    })
}

/// Becomes primary now if nobody is, else waits as a standby until the primary is gone.
/// `on_primary` is told each time a (new) primary is seen while waiting.
pub fn take_or_wait(
    data_dir: &Path,
    mut on_primary: impl FnMut(&str),
) -> Result<Leadership, ElectionError> {
    let file = open(data_dir)?;
    if try_take(&file, data_dir)? {
        return Ok(Leadership {
            _lock: file,
            took_over_from: None,
        });
    }
    let mut last_seen: Option<InstanceId> = None;
    let mut announced: Option<Option<InstanceId>> = None;
    loop {
        let (who, id) = describe_primary(data_dir);
        if id.is_some() {
            last_seen = id;
        }
        if announced != Some(id) && id.is_some() {
            on_primary(&who);
            announced = Some(id);
        }
        if try_take(&file, data_dir)? {
            // A primary killed outright leaves its discovery file: it names whom we replace.
            let (_, still_there) = describe_primary(data_dir);
            return Ok(Leadership {
                _lock: file,
                took_over_from: Some(still_there.or(last_seen)),
            });
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_release_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let first = take(dir.path()).unwrap();
        assert!(matches!(take(dir.path()), Err(ElectionError::Taken { .. })));
        let waiter = {
            let path = dir.path().to_owned();
            std::thread::spawn(move || take_or_wait(&path, |_| {}).unwrap())
        };
        std::thread::sleep(POLL * 3);
        assert!(
            !waiter.is_finished(),
            "the standby waits while the primary holds the lock"
        );
        drop(first);
        let second = waiter.join().unwrap();
        assert_eq!(
            second.took_over_from,
            Some(None),
            "it waited; nobody was named"
        );
        assert!(
            dir.path().join(LOCK_FILE).exists(),
            "the lock file is never unlinked"
        );
    }
}
