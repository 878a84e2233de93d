//! The SQLite store: sessions, messages, turns, tool calls, the active session, `request_id`
//! keys and queued messages in one WAL-mode database file, migrated forward on open.
//!
//! It owns the schema and how `Change`s map onto rows; it makes no decisions of the core's (what
//! a crashed turn becomes is the core's business) and loads exactly what [`super::memory`] loads
//! for the same changes. Opening refuses, before writing a byte, a file that is not a zcoord
//! database, is newer than this binary, or is locked by another process.
//!
//! This file owns [`SqliteStore`] and its public face. The parts: `schema` (the DDL, migrations,
//! the open-and-refuse procedure, error mapping), `apply` (a commit: `Change`s onto rows),
//! `load` (rows back into a `Snapshot`, and pages of messages) and `columns` (single values to and from columns).

mod apply;
mod columns;
mod load;
#[cfg(test)]
mod queue_tests;
mod schema;
#[cfg(test)]
mod settings_tests;
#[cfg(test)]
mod tests;

use std::ops::Range;
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{Store, StoreError};
use crate::core::persist::{Change, MessageRecord, Snapshot};
use crate::core::read::Direction;
use crate::protocol::ids::{MessageId, SessionId};

/// The schema version this binary writes; it refuses anything newer.
pub const SCHEMA_VERSION: u32 = schema::MIGRATIONS.len() as u32;

/// Request keys kept; older ones are pruned. Far more than a load asks for, so a client retrying
/// after a long reconnect is still answered from the store.
const MAX_REQUEST_KEYS: u64 = 100_000;

/// A [`Store`] in one SQLite file. Every commit is one `BEGIN IMMEDIATE` transaction, durable
/// (`synchronous=FULL`) when it returns.
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// Rows in `request_keys`, counted on the first commit that adds a key and kept up to date
    /// after, so pruning costs nothing until it is due. `None`: not known.
    key_count: Option<u64>,
    /// Prune down to this many keys once the table holds a hundredth more.
    key_limit: u64,
    /// The file `path` named when it was opened (device, inode): a commit first checks that
    /// `path` still names it, since SQLite goes on writing to a deleted or replaced file and
    /// what it writes there is lost at the next start.
    file: Option<(u64, u64)>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the database at `path`, creating it if there is no file, and migrates it to
    /// [`SCHEMA_VERSION`]. A file that is refused is left exactly as it was.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let created = schema::create_if_missing(path)?;
        let result = schema::open_existing(path).map(|conn| SqliteStore {
            conn,
            path: path.to_path_buf(),
            key_count: None,
            key_limit: MAX_REQUEST_KEYS,
            file: file_identity(path),
        });
        if result.is_err() && created {
            // Ours, empty, and about to be useless: leave the directory as we found it.
            let _ = std::fs::remove_file(path);
        }
        result
    }
}

/// The (device, inode) `path` names now, if it names anything.
fn file_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

impl Store for SqliteStore {
    fn load(&mut self, request_key_capacity: usize) -> Result<Snapshot, StoreError> {
        load::snapshot(&mut self.conn, &self.path, request_key_capacity)
    }

    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
        if self.file.is_some() && file_identity(&self.path) != self.file {
            return Err(StoreError::Replaced {
                path: self.path.clone(),
            });
        }
        apply::commit(
            &mut self.conn,
            &self.path,
            changes,
            &mut self.key_count,
            self.key_limit,
        )
    }

    fn message_position(
        &mut self,
        session: SessionId,
        id: MessageId,
    ) -> Result<Option<u64>, StoreError> {
        load::message_position(&self.conn, &self.path, session, id)
    }

    fn scan_messages(
        &mut self,
        session: SessionId,
        positions: Range<u64>,
        direction: Direction,
        visit: &mut dyn FnMut(MessageRecord) -> bool,
    ) -> Result<(), StoreError> {
        load::scan_messages(&self.conn, &self.path, session, positions, direction, visit)
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}
