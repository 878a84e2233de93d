//! Persistence behind one small trait: load a snapshot at start-up, commit batches of changes.
//! The writer (`writer`) runs a store off the core's hot path on a thread of its own, or, for a
//! store that commits at once, on the caller's thread (`inline`).

mod inline;
pub mod memory;
pub mod sqlite;
pub mod writer;

use std::ops::Range;
use std::path::PathBuf;

use crate::core::persist::{Change, MessageRecord, Snapshot};
use crate::core::read::{Direction, MessageRows, RowsFailed};
use crate::protocol::ids::{MessageId, SessionId};

/// A place the core's state survives in.
pub trait Store: Send + 'static {
    /// Everything needed to resume: live sessions with their message counts, the active
    /// session, turns left running with their streaming rows, and the newest
    /// `request_key_capacity` idempotency keys. Never the whole history: that stays here.
    fn load(&mut self, request_key_capacity: usize) -> Result<Snapshot, StoreError>;
    /// Applies `changes` in order as one transaction; durable when this returns `Ok`.
    fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError>;
    /// The position of message `id` in session `session`, if it is stored there.
    fn message_position(
        &mut self,
        session: SessionId,
        id: MessageId,
    ) -> Result<Option<u64>, StoreError>;
    /// Visits the stored messages of `session` whose positions lie in `positions`, in
    /// `direction`, until `visit` returns false; rows past that are not read.
    fn scan_messages(
        &mut self,
        session: SessionId,
        positions: Range<u64>,
        direction: Direction,
        visit: &mut dyn FnMut(MessageRecord) -> bool,
    ) -> Result<(), StoreError>;
    /// What to call this store in logs and `instance.info`, e.g. `sqlite:/path/zcoord.db`.
    fn describe(&self) -> String;
    /// Whether `commit` and the reads return at once, waiting on nothing (no disk, no delay):
    /// then the writer runs them on the caller's thread rather than waking a thread of its own
    /// for each, which costs more than they do. A store that blocks must say `false`, or it
    /// blocks the server.
    fn commits_at_once(&self) -> bool {
        false
    }
}

/// What a caught panic said.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path} has schema version {found}, newer than this zcoord understands ({supported}); it was not touched — run a newer zcoord")]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "{path} is not a zcoord database (corrupt or another kind of file); it was not touched"
    )]
    NotADatabase { path: PathBuf },
    #[error("database {path} is locked by another process; it was not touched")]
    Locked { path: PathBuf },
    #[error("database {path} (or its directory) is read-only; zcoord needs to write there")]
    ReadOnly { path: PathBuf },
    #[error("{context}: {path}: {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("database error while {context}: {source}")]
    Sqlite {
        context: &'static str,
        source: rusqlite::Error,
    },
    #[error("stored data is invalid: {0}")]
    Invalid(String),
    #[error("the database file {path} was deleted or replaced while the server ran; changes are kept in memory but cannot be saved: restart the server")]
    Replaced { path: PathBuf },
}

impl StoreError {
    /// Retrying cannot help: the store stays unable to commit until the server restarts.
    pub fn is_permanent(&self) -> bool {
        matches!(self, StoreError::Replaced { .. })
    }
}

/// A store's committed rows as the core's reads see them (the writer's thread adds the changes
/// still waiting in its batch on top; see `writer`).
pub struct Rows<'a>(pub &'a mut dyn Store);

impl MessageRows for Rows<'_> {
    fn position(&mut self, session: SessionId, id: MessageId) -> Result<Option<u64>, RowsFailed> {
        self.0
            .message_position(session, id)
            .map_err(|e| RowsFailed(e.to_string()))
    }

    fn scan(
        &mut self,
        session: SessionId,
        positions: Range<u64>,
        direction: Direction,
        visit: &mut dyn FnMut(MessageRecord) -> bool,
    ) -> Result<(), RowsFailed> {
        self.0
            .scan_messages(session, positions, direction, visit)
            .map_err(|e| RowsFailed(e.to_string()))
    }
}
