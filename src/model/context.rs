//! A turn's history on its way to the model: room reserved for it in the bytes every running
//! turn's context may hold together ([`ContextBudget`]), then read on the store's thread. A turn
//! that finds no room waits (its `llm.start` is out; its tokens come once there is room), so
//! many turns at once cannot fill the server with histories.

use std::sync::Arc;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::core::read::ContextRead;
use crate::core::HistoryEntry;
use crate::store::writer::Reader;

/// Bytes every running turn's history may hold together by default.
pub const DEFAULT_CONTEXTS_BYTES: usize = 64 << 20;
/// Room is counted in units of this many bytes (a semaphore's permits are a `u32`).
const UNIT: usize = 1 << 10;

/// The room all running turns' histories share.
#[derive(Debug, Clone)]
pub struct ContextBudget {
    room: Arc<Semaphore>,
    units: usize,
}

impl ContextBudget {
    pub fn new(bytes: usize) -> Self {
        let units = (bytes / UNIT).clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
        ContextBudget {
            room: Arc::new(Semaphore::new(units)),
            units,
        }
    }

    /// Bytes free now (for tests and logs).
    pub fn available_bytes(&self) -> usize {
        self.room.available_permits() * UNIT
    }

    /// Waits for room for `bytes` (all of it, if that is more than the whole budget).
    async fn reserve(&self, bytes: usize) -> Option<OwnedSemaphorePermit> {
        let units = bytes.div_ceil(UNIT).clamp(1, self.units) as u32;
        self.room.clone().acquire_many_owned(units).await.ok()
    }
}

/// What a turn needs to fetch its history.
pub struct Context {
    pub read: ContextRead,
    pub reader: Reader,
    pub budget: ContextBudget,
}

/// A history fetched for a turn, and the room it holds until the turn ends.
pub struct Held {
    pub history: Vec<HistoryEntry>,
    pub room: Room,
}

/// Room in the [`ContextBudget`]: given back when dropped.
pub struct Room {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Context {
    /// Reserves room for the read's bytes, then reads. The newest message is given even when it
    /// alone is larger than the read's bytes: it is bounded by the size of a request.
    pub async fn fetch(self) -> Result<Held, String> {
        let room = self.budget.reserve(self.read.max_bytes).await;
        let (tx, rx) = oneshot::channel();
        let read = self.read;
        self.reader.read(Box::new(move |rows| {
            let _ = tx.send(read.execute(rows));
        }));
        match rx.await {
            Ok(Ok(history)) => Ok(Held {
                history,
                room: Room { _permit: room },
            }),
            Ok(Err(e)) => Err(format!("could not read the session's history: {e}")),
            Err(_) => {
                Err("could not read the session's history: the store's thread is gone".into())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_shared_and_comes_back() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let budget = ContextBudget::new(10 << 10);
            let a = budget.reserve(6 << 10).await.expect("room");
            assert_eq!(budget.available_bytes(), 4 << 10);
            // More than is free waits, and gets it once the first is done.
            let waiting = budget.reserve(6 << 10);
            tokio::pin!(waiting);
            let early =
                tokio::time::timeout(std::time::Duration::from_millis(50), &mut waiting).await;
            assert!(early.is_err(), "waits while there is no room");
            drop(a);
            let b = tokio::time::timeout(std::time::Duration::from_secs(10), waiting)
                .await
                .expect("room came back")
                .expect("permit");
            // More than the whole budget takes all of it, and does not wait forever.
            drop(b);
            let all = budget.reserve(1 << 30).await.expect("room");
            assert_eq!(budget.available_bytes(), 0);
            drop(all);
            assert_eq!(budget.available_bytes(), 10 << 10);
        });
    }
}
