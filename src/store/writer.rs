//! The writer thread: runs a `Store` off the core's hot path. Changes are numbered as they are
//! submitted; the thread commits whatever has queued up as one transaction and publishes the
//! number of the last committed change, which the actor waits on before showing anything that
//! depends on it. A failed commit is retried with backoff (nothing is dropped while running).

use std::sync::mpsc::{self, Receiver, TryRecvError};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::Store;
use crate::core::persist::Change;

/// Most changes in one transaction.
const MAX_BATCH: usize = 4_096;
/// At close, a batch that keeps failing is given up after this many tries.
const CLOSE_ATTEMPTS: u32 = 3;

pub struct Writer {
    tx: Option<mpsc::Sender<(u64, Change)>>,
    committed: watch::Receiver<u64>,
    thread: Option<JoinHandle<()>>,
    submitted: u64,
}

impl Writer {
    pub fn spawn(store: Box<dyn Store>) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = watch::channel(0u64);
        let thread = std::thread::Builder::new()
            .name("zcoord-store".into())
            .spawn(move || run(store, rx, done_tx))?;
        Ok(Writer {
            tx: Some(tx),
            committed: done_rx,
            thread: Some(thread),
            submitted: 0,
        })
    }

    /// Queues `change`; returns its number (1, 2, …).
    pub fn submit(&mut self, change: Change) -> u64 {
        self.submitted += 1;
        if let Some(tx) = &self.tx {
            if tx.send((self.submitted, change)).is_err() {
                tracing::error!("store writer is gone: change not saved");
            }
        }
        self.submitted
    }

    /// Watches the number of the last committed change.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Commits what is queued and stops the thread; returns the last committed change number.
    /// Blocking.
    pub fn close(mut self) -> u64 {
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *self.committed.borrow()
    }
}

fn run(mut store: Box<dyn Store>, rx: Receiver<(u64, Change)>, done: watch::Sender<u64>) {
    let mut batch: Vec<Change> = Vec::new();
    let mut last = 0u64;
    let mut closed = false;
    let mut failures = 0u32;
    loop {
        if batch.is_empty() {
            match rx.recv() {
                Ok((n, c)) => {
                    batch.push(c);
                    last = n;
                }
                Err(_) => break,
            }
        }
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((n, c)) => {
                    batch.push(c);
                    last = n;
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        match store.commit(&batch) {
            Ok(()) => {
                failures = 0;
                batch.clear();
                done.send_replace(last);
            }
            Err(e) => {
                failures += 1;
                tracing::error!(error = %e, changes = batch.len(), attempt = failures, "store commit failed; retrying");
                if closed && failures >= CLOSE_ATTEMPTS {
                    tracing::error!(
                        changes = batch.len(),
                        "giving up at shutdown: these changes are not saved"
                    );
                    return;
                }
                let backoff = Duration::from_millis(100 << failures.min(6));
                std::thread::sleep(backoff);
            }
        }
        if closed && batch.is_empty() {
            // Drain anything that raced with the close.
            if let Ok((n, c)) = rx.try_recv() {
                batch.push(c);
                last = n;
                continue;
            }
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::persist::Snapshot;
    use crate::store::StoreError;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// Fails the first `fail` commits, then records batch sizes.
    struct Flaky {
        fail: Arc<AtomicU32>,
        batches: Arc<std::sync::Mutex<Vec<usize>>>,
    }

    impl Store for Flaky {
        fn load(&mut self, _: usize) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
        fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                return Err(StoreError::Invalid("disk on fire".into()));
            }
            self.batches.lock().unwrap().push(changes.len());
            Ok(())
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
    }

    #[test]
    fn retries_failed_commits_and_acks_everything_in_order() {
        let batches = Arc::new(std::sync::Mutex::new(Vec::new()));
        let store = Flaky {
            fail: Arc::new(AtomicU32::new(2)),
            batches: batches.clone(),
        };
        let mut w = Writer::spawn(Box::new(store)).unwrap();
        let mut last = 0;
        for _ in 0..100 {
            last = w.submit(Change::ActiveSession(None));
        }
        assert_eq!(last, 100);
        assert_eq!(
            w.close(),
            100,
            "every change committed despite two failures"
        );
        assert_eq!(batches.lock().unwrap().iter().sum::<usize>(), 100);
    }
}
