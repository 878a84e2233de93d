//! The writer's way for a store whose commits return at once (`Store::commits_at_once`, the
//! memory store): each change is committed on the thread that submits it and each read runs on
//! the thread that asks, under one lock, instead of waking a thread of its own to do what takes
//! less time than the wake-up.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use tokio::sync::watch;

use super::writer::{ReadJob, StoreFailure};
use super::{Rows, Store};
use crate::core::persist::Change;

/// The store and what is said about it, behind the lock that orders its changes and reads.
pub(super) struct Inline {
    store: Box<dyn Store>,
    done: watch::Sender<u64>,
    health: watch::Sender<Option<StoreFailure>>,
    /// Changes the store refused: a store that says it commits at once has no retry worth
    /// waiting for, so they are given up (and counted at close) as the writer's thread gives up
    /// what a permanent failure leaves.
    given_up: usize,
}

/// Shared by the writer and, weakly, its readers: closing the writer stops new reads.
pub(super) type Shared = Arc<Mutex<Inline>>;

impl Inline {
    pub(super) fn new(
        store: Box<dyn Store>,
        done: watch::Sender<u64>,
        health: watch::Sender<Option<StoreFailure>>,
    ) -> Shared {
        Arc::new(Mutex::new(Inline {
            store,
            done,
            health,
            given_up: 0,
        }))
    }

    /// Commits change `n`, publishing its number (or the failure) before it returns.
    pub(super) fn commit(shared: &Shared, n: u64, change: &Change) {
        let mut this = lock(shared);
        let store = &mut this.store;
        let reason = match catch_unwind(AssertUnwindSafe(|| {
            store.commit(std::slice::from_ref(change))
        })) {
            Ok(Ok(())) => {
                this.done.send_replace(n);
                return;
            }
            Ok(Err(e)) => e.to_string(),
            Err(panic) => format!(
                "the store panicked: {}; restart the server",
                super::panic_text(&*panic)
            ),
        };
        this.given_up += 1;
        tracing::error!(%reason, change = n, "store commit failed; the change is not saved");
        this.fail(reason);
    }

    /// Says the store cannot commit, for good.
    fn fail(&mut self, reason: String) {
        let failure = StoreFailure {
            reason,
            permanent: true,
        };
        self.health.send_if_modified(|h| {
            let changed = h.as_ref() != Some(&failure);
            *h = Some(failure);
            changed
        });
    }

    /// Runs `read` over the committed rows, which are every change submitted before it.
    pub(super) fn read(shared: &Weak<Mutex<Inline>>, read: ReadJob) {
        // Closed: `read` is dropped unrun, and whoever waits on it sees that.
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let mut this = lock(&shared);
        let store = &mut this.store;
        // A read that panics (a bug) fails the store, as it would on the writer's thread,
        // rather than the thread that asked: that may be the actor's.
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| read(&mut Rows(&mut **store)))) {
            let reason = format!(
                "a read panicked: {}; restart the server",
                super::panic_text(&*panic)
            );
            tracing::error!(%reason, "store read failed");
            this.fail(reason);
        }
    }

    /// How many changes were given up.
    pub(super) fn given_up(shared: &Shared) -> usize {
        lock(shared).given_up
    }
}

fn lock(shared: &Mutex<Inline>) -> std::sync::MutexGuard<'_, Inline> {
    // A panic is caught under the lock and fails the store for good (`fail`).
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}
