//! The writer thread: runs a `Store` off the core's hot path. Changes are numbered as they are
//! submitted; the thread commits whatever has queued up as one transaction and publishes the
//! number of the last committed change, which the actor waits on before showing anything that
//! depends on it; and it calls the [`OnCommit`] it was given with that number, so what waited for
//! the commit can leave from this thread at once, without a hand-off to the actor.
//!
//! A failed commit is kept and retried (nothing is dropped while running), with a backoff of at
//! most `MAX_BACKOFF` so the store is back within a second of its cause going away; a failure
//! that outlasts one retry (100 ms), and every recovery, is published on [`Writer::health`] at
//! once, so the core can refuse changes and tell clients within a second. A failure the store calls permanent (its file was
//! deleted or replaced) is not retried: the changes wait for shutdown, where they are given up
//! and counted. While a batch waits, a newer version of a message replaces the older one in it
//! (a streaming reply's checkpoints rewrite one row), so a long outage does not pile up copies.
//!
//! What waits to be saved is counted in bytes ([`Writer::unsaved_bytes`]): the actor takes no
//! new work past [`MAX_UNSAVED_BYTES`] while the store is healthy but behind, so a slow disk
//! slows the server instead of filling its memory.
//!
//! Reads of the history run here too, in order with the changes: a read sees every change
//! submitted before it, committed or still waiting in the batch (through `Overlaid`), so it
//! answers the same whether the store is healthy, slow or failing.
//!
//! A store whose commits return at once (`Store::commits_at_once`: the memory store) gets no
//! thread: waking one would cost more than the commit. Its changes are committed as they are
//! submitted and its reads run where they are asked for, under one lock (`super::inline`), so
//! `committed` has reached a change when `submit` returns it.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use super::inline::{self, Inline};
use super::{Rows, Store};
use crate::core::persist::{Change, MessageRecord};
use crate::core::read::{Direction, MessageRows, RowsFailed};
use crate::protocol::ids::{MessageId, SessionId};

/// Most changes in one transaction.
const MAX_BATCH: usize = 4_096;
/// At close, a batch that keeps failing is given up after this many tries.
const CLOSE_ATTEMPTS: u32 = 3;
/// Failed tries in a row before the failure is reported (the first retry comes 100 ms later).
const REPORT_AFTER: u32 = 2;
/// Bytes of changes submitted and not yet saved past which the actor takes no new work (while
/// the store is healthy; a failing store refuses new changes anyway).
pub const MAX_UNSAVED_BYTES: usize = 64 << 20;
/// Longest wait between two tries of a failing commit.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Called on the writer's thread after each commit, with the number of the last change
/// committed (already in [`Writer::committed`]).
pub type OnCommit = Box<dyn Fn(u64) + Send>;

/// Why the store cannot commit, as the writer last found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreFailure {
    pub reason: String,
    /// Retrying cannot help (the database file is gone or replaced): writes stay refused until
    /// the server is restarted.
    pub permanent: bool,
}

/// What closing the writer left behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed {
    /// The number of the last committed change.
    pub committed: u64,
    /// Changes given up because the store kept failing: not saved.
    pub unsaved: usize,
}

/// A read to run on the store's thread, over the rows as the changes submitted before it left
/// them.
pub type ReadJob = Box<dyn FnOnce(&mut dyn MessageRows) + Send>;

/// Submits reads to the store (on its thread, or at once for a store that commits at once);
/// once the writer is closed, a read is dropped unrun (whoever waits on it sees that).
#[derive(Clone)]
pub struct Reader(Way<Weak<mpsc::Sender<Job>>, Weak<Mutex<Inline>>>);

impl Reader {
    /// Runs `read` after every change submitted before this call.
    pub fn read(&self, read: ReadJob) {
        match &self.0 {
            Way::Thread(tx) => {
                let Some(tx) = tx.upgrade() else {
                    return;
                };
                if tx.send(Job::Read(read)).is_err() {
                    tracing::error!("store writer is gone: read not run");
                }
            }
            Way::Inline(shared) => Inline::read(shared, read),
        }
    }
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let way = match self.0 {
            Way::Thread(_) => "thread",
            Way::Inline(_) => "inline",
        };
        f.debug_tuple("Reader").field(&way).finish()
    }
}

/// Where changes and reads go: the store's own thread, or the caller's (see [`inline`]).
///
/// [`inline`]: super::inline
#[derive(Clone)]
enum Way<T, I> {
    Thread(T),
    Inline(I),
}

/// What the writer's thread is given, in order.
enum Job {
    Change(u64, Box<Change>),
    Read(ReadJob),
}

pub struct Writer {
    /// The store's own thread, or the store committed on the submitter's thread (`None` once
    /// closed).
    way: Way<OwnThread, Option<inline::Shared>>,
    committed: watch::Receiver<u64>,
    health: watch::Receiver<Option<StoreFailure>>,
    submitted: u64,
    /// Bytes of the changes submitted and not yet saved (or replaced by a newer version).
    unsaved: Arc<AtomicUsize>,
}

/// The store's own thread and the way to it.
struct OwnThread {
    /// Shared weakly with [`Reader`]s, so closing the writer still closes the channel.
    tx: Option<Arc<mpsc::Sender<Job>>>,
    /// Returns the changes it gave up; `None` if it crashed.
    thread: Option<JoinHandle<Option<usize>>>,
}

impl Writer {
    pub fn spawn(store: Box<dyn Store>) -> std::io::Result<Writer> {
        Writer::spawn_with(store, Box::new(|_| {}))
    }

    /// As [`Writer::spawn`], calling `on_commit` on the writer's thread after each commit. A
    /// store that commits at once (`Store::commits_at_once`) gets no thread: its changes are
    /// committed as they are submitted and its reads run as they are asked for, on the caller's
    /// thread, and `on_commit` is not called — a change is committed when `submit` returns,
    /// before anything can wait for it.
    pub fn spawn_with(store: Box<dyn Store>, on_commit: OnCommit) -> std::io::Result<Writer> {
        let (done_tx, done_rx) = watch::channel(0u64);
        let (health_tx, health_rx) = watch::channel(None);
        if store.commits_at_once() {
            return Ok(Writer {
                way: Way::Inline(Some(Inline::new(store, done_tx, health_tx))),
                committed: done_rx,
                health: health_rx,
                submitted: 0,
                unsaved: Arc::default(),
            });
        }
        let (tx, rx) = mpsc::channel();
        let health_tx = Arc::new(health_tx);
        let unsaved = Arc::new(AtomicUsize::new(0));
        let counted = unsaved.clone();
        let thread = std::thread::Builder::new()
            .name("zcoord-store".into())
            .spawn(move || {
                let thread = WriterThread {
                    store,
                    rx,
                    done: done_tx,
                    on_commit,
                    health: health_tx.clone(),
                    batch: Batch {
                        unsaved: counted,
                        ..Batch::default()
                    },
                    closed: false,
                };
                // A panic below (in the store or its driver) must not leave the server
                // acknowledging nothing in silence: it is a permanent failure, said as such.
                match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| thread.run())) {
                    Ok(unsaved) => Some(unsaved),
                    Err(panic) => {
                        let what = super::panic_text(&*panic);
                        tracing::error!(%what, "store writer crashed");
                        health_tx.send_replace(Some(StoreFailure {
                            reason: format!("the store writer crashed: {what}; restart the server"),
                            permanent: true,
                        }));
                        // What it held is gone with it: `close` counts it.
                        None
                    }
                }
            })?;
        Ok(Writer {
            way: Way::Thread(OwnThread {
                tx: Some(Arc::new(tx)),
                thread: Some(thread),
            }),
            committed: done_rx,
            health: health_rx,
            submitted: 0,
            unsaved,
        })
    }

    /// Queues `change` (or commits it, for a store that commits at once); returns its number
    /// (1, 2, …).
    pub fn submit(&mut self, change: Change) -> u64 {
        self.submitted += 1;
        match &mut self.way {
            Way::Thread(own) => {
                self.unsaved
                    .fetch_add(change.approx_bytes(), Ordering::Relaxed);
                if let Some(tx) = &own.tx {
                    if tx
                        .send(Job::Change(self.submitted, Box::new(change)))
                        .is_err()
                    {
                        tracing::error!("store writer is gone: change not saved");
                    }
                }
            }
            Way::Inline(shared) => {
                if let Some(shared) = shared {
                    Inline::commit(shared, self.submitted, &change);
                }
            }
        }
        self.submitted
    }

    /// Runs `read` on the store's thread once every change submitted so far is committed or
    /// waiting in its batch. If the thread is gone, `read` is dropped unrun (its sender sees its
    /// channel close).
    pub fn read(&self, read: ReadJob) {
        self.reader().read(read);
    }

    /// A handle that submits reads from elsewhere (a turn's task) while the writer is open.
    pub fn reader(&self) -> Reader {
        Reader(match &self.way {
            Way::Thread(own) => Way::Thread(own.tx.as_ref().map_or_else(Weak::new, Arc::downgrade)),
            Way::Inline(shared) => {
                Way::Inline(shared.as_ref().map_or_else(Weak::new, Arc::downgrade))
            }
        })
    }

    /// Bytes of the changes submitted and not yet saved.
    pub fn unsaved_bytes(&self) -> usize {
        self.unsaved.load(Ordering::Relaxed)
    }

    /// Watches the number of the last committed change.
    pub fn committed(&self) -> watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Watches the store's health: `Some` while commits fail.
    pub fn health(&self) -> watch::Receiver<Option<StoreFailure>> {
        self.health.clone()
    }

    /// Commits what is queued and stops the thread; says what was committed and what had to be
    /// given up. Blocking.
    pub fn close(mut self) -> Closed {
        let given_up = match &mut self.way {
            Way::Thread(own) => {
                own.tx.take();
                own.thread.take().and_then(|t| t.join().ok().flatten())
            }
            Way::Inline(shared) => shared.take().map(|s| Inline::given_up(&s)),
        };
        let committed = *self.committed.borrow();
        Closed {
            committed,
            // A crashed thread lost everything not committed.
            unsaved: given_up.unwrap_or((self.submitted - committed) as usize),
        }
    }
}

/// The changes of the next transaction, in order, and the number of the last one.
#[derive(Default)]
struct Batch {
    changes: Vec<Change>,
    last: u64,
    /// Where each message's latest upsert sits in `changes`.
    messages: HashMap<MessageId, usize>,
    /// Bytes of the changes in it, and the writer's count of everything unsaved, which a change
    /// leaves when it is committed or replaced.
    bytes: usize,
    unsaved: Arc<AtomicUsize>,
}

impl Batch {
    fn push(&mut self, n: u64, change: Change) {
        self.last = n;
        self.bytes += change.approx_bytes();
        if let Change::MessageUpsert(m) = &change {
            // A later version of a row replaces the earlier one in place: the batch is one
            // transaction, so only its end state matters.
            if let Some(&i) = self.messages.get(&m.id) {
                let old = std::mem::replace(&mut self.changes[i], change);
                self.forget(old.approx_bytes());
                return;
            }
            self.messages.insert(m.id, self.changes.len());
        }
        self.changes.push(change);
    }

    /// Committed: the changes leave memory.
    fn clear(&mut self) {
        self.changes.clear();
        self.messages.clear();
        self.forget(self.bytes);
    }

    fn forget(&mut self, bytes: usize) {
        self.bytes -= bytes;
        self.unsaved.fetch_sub(bytes, Ordering::Relaxed);
    }

    fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    fn len(&self) -> usize {
        self.changes.len()
    }
}

struct WriterThread {
    store: Box<dyn Store>,
    rx: Receiver<Job>,
    done: watch::Sender<u64>,
    on_commit: OnCommit,
    health: Arc<watch::Sender<Option<StoreFailure>>>,
    batch: Batch,
    /// The sender is gone: commit what is left, then stop.
    closed: bool,
}

impl WriterThread {
    /// Returns how many changes were given up.
    fn run(mut self) -> usize {
        let mut failures = 0u32;
        loop {
            while self.batch.is_empty() {
                match self.rx.recv() {
                    Ok(job) => self.accept(job),
                    Err(_) => return 0,
                }
            }
            self.take_queued();
            match self.store.commit(&self.batch.changes) {
                Ok(()) => {
                    if failures > 0 {
                        tracing::info!(attempts = failures + 1, "store commits again");
                        self.health.send_replace(None);
                    }
                    failures = 0;
                    self.batch.clear();
                    self.done.send_replace(self.batch.last);
                    (self.on_commit)(self.batch.last);
                }
                Err(e) => {
                    failures += 1;
                    let failure = StoreFailure {
                        reason: e.to_string(),
                        permanent: e.is_permanent(),
                    };
                    tracing::error!(error = %e, changes = self.batch.len(), attempt = failures,
                        permanent = failure.permanent, "store commit failed; keeping the changes");
                    // One failed try may be a blip the next one (100 ms on) gets past; a
                    // second, or a failure that retrying cannot help, is reported.
                    if failures >= REPORT_AFTER || failure.permanent {
                        self.health.send_if_modified(|h| {
                            let changed = h.as_ref() != Some(&failure);
                            *h = Some(failure.clone());
                            changed
                        });
                    }
                    if failure.permanent {
                        return self.hold_until_close();
                    }
                    if self.closed && failures >= CLOSE_ATTEMPTS {
                        return self.give_up();
                    }
                    self.wait(backoff(failures));
                }
            }
            while self.closed && self.batch.is_empty() {
                // Anything that raced with the close.
                match self.rx.try_recv() {
                    Ok(job) => self.accept(job),
                    Err(_) => return 0,
                }
            }
        }
    }

    /// Takes a change into the batch, or runs a read over the store and the batch.
    fn accept(&mut self, job: Job) {
        match job {
            Job::Change(n, c) => self.batch.push(n, *c),
            Job::Read(read) => read(&mut Overlaid {
                store: &mut *self.store,
                batch: &self.batch,
            }),
        }
    }

    /// Adds what is already queued to the batch (running the reads among it), up to
    /// [`MAX_BATCH`] jobs.
    fn take_queued(&mut self) {
        for _ in 0..MAX_BATCH {
            if self.batch.len() >= MAX_BATCH {
                break;
            }
            match self.rx.try_recv() {
                Ok(job) => self.accept(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    self.closed = true;
                    break;
                }
            }
        }
    }

    /// Waits `d` before the next try, taking new changes into the batch meanwhile (coalesced,
    /// so checkpoints of one reply do not pile up) and noticing a close at once.
    fn wait(&mut self, d: Duration) {
        let until = std::time::Instant::now() + d;
        while !self.closed {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() || self.batch.len() >= MAX_BATCH {
                return;
            }
            match self.rx.recv_timeout(left) {
                Ok(job) => self.accept(job),
                Err(RecvTimeoutError::Timeout) => return,
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
            }
        }
    }

    /// The store cannot take changes again: keep taking them (nothing is lost while the server
    /// runs, and readers of the core still see them) until the close, then give them all up.
    fn hold_until_close(mut self) -> usize {
        while let Ok(job) = self.rx.recv() {
            self.accept(job);
        }
        self.give_up()
    }

    fn give_up(mut self) -> usize {
        while let Ok(job) = self.rx.try_recv() {
            self.accept(job);
        }
        let unsaved = self.batch.len();
        tracing::error!(
            unsaved,
            "giving up at shutdown: these changes are not saved"
        );
        unsaved
    }
}

/// The rows a read sees: the store's, with the batch's newer versions over them (and its rows
/// the store does not have yet).
struct Overlaid<'a> {
    store: &'a mut dyn Store,
    batch: &'a Batch,
}

impl Overlaid<'_> {
    /// The batch's versions of the session's messages in `positions`, by position.
    fn pending(&self, session: SessionId, positions: &Range<u64>) -> BTreeMap<u64, MessageRecord> {
        self.batch
            .messages
            .values()
            .filter_map(|&i| match &self.batch.changes[i] {
                Change::MessageUpsert(m)
                    if m.session_id == session && positions.contains(&m.position) =>
                {
                    Some((m.position, m.clone()))
                }
                _ => None,
            })
            .collect()
    }
}

impl MessageRows for Overlaid<'_> {
    fn position(&mut self, session: SessionId, id: MessageId) -> Result<Option<u64>, RowsFailed> {
        if let Some(&i) = self.batch.messages.get(&id) {
            if let Change::MessageUpsert(m) = &self.batch.changes[i] {
                return Ok((m.session_id == session).then_some(m.position));
            }
        }
        Rows(&mut *self.store).position(session, id)
    }

    fn scan(
        &mut self,
        session: SessionId,
        positions: Range<u64>,
        direction: Direction,
        visit: &mut dyn FnMut(MessageRecord) -> bool,
    ) -> Result<(), RowsFailed> {
        let mut pending = self.pending(session, &positions);
        if pending.is_empty() {
            return Rows(&mut *self.store).scan(session, positions, direction, visit);
        }
        // Merge in scan order: the batch's rows that come before each stored row go first, and
        // the batch's version of a row replaces the stored one.
        let ahead = |p: u64, q: u64| match direction {
            Direction::Forward => p < q,
            Direction::Backward => p > q,
        };
        let next_pending = |pending: &mut BTreeMap<u64, MessageRecord>| match direction {
            Direction::Forward => pending.pop_first(),
            Direction::Backward => pending.pop_last(),
        };
        let peek = |pending: &BTreeMap<u64, MessageRecord>| match direction {
            Direction::Forward => pending.keys().next().copied(),
            Direction::Backward => pending.keys().next_back().copied(),
        };
        let mut stopped = false;
        Rows(&mut *self.store).scan(session, positions, direction, &mut |row| {
            while let Some(p) = peek(&pending).filter(|&p| ahead(p, row.position)) {
                let Some((_, m)) = next_pending(&mut pending) else {
                    break;
                };
                debug_assert_eq!(p, m.position);
                if !visit(m) {
                    stopped = true;
                    return false;
                }
            }
            let row = pending.remove(&row.position).unwrap_or(row);
            if !visit(row) {
                stopped = true;
                return false;
            }
            true
        })?;
        while !stopped {
            let Some((_, m)) = next_pending(&mut pending) else {
                break;
            };
            stopped = !visit(m);
        }
        Ok(())
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(50 << failures.min(5)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::persist::{MessageRecord, Snapshot, StoredStatus};
    use crate::core::read::Direction;
    use crate::protocol::ids::SessionId;
    use crate::protocol::types::Role;
    use crate::store::StoreError;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    /// Fails the first `fail` commits (forever while `broken`, permanently when `gone`), then
    /// records each batch and keeps it in a memory store, where reads find it.
    #[derive(Default, Clone)]
    struct Flaky {
        fail: Arc<AtomicU32>,
        broken: Arc<AtomicBool>,
        gone: bool,
        /// Says it commits at once: the writer runs it on the caller's thread.
        at_once: bool,
        batches: Arc<Mutex<Vec<Vec<Change>>>>,
        kept: crate::store::memory::MemoryStore,
    }

    impl Store for Flaky {
        fn load(&mut self, _: usize) -> Result<Snapshot, StoreError> {
            Ok(Snapshot::default())
        }
        fn commit(&mut self, changes: &[Change]) -> Result<(), StoreError> {
            if self.gone {
                return Err(StoreError::Replaced {
                    path: "/x/zcoord.db".into(),
                });
            }
            if self.broken.load(Ordering::SeqCst) {
                return Err(StoreError::Invalid("disk full".into()));
            }
            if self.fail.load(Ordering::SeqCst) > 0 {
                self.fail.fetch_sub(1, Ordering::SeqCst);
                return Err(StoreError::Invalid("disk on fire".into()));
            }
            self.batches.lock().unwrap().push(changes.to_vec());
            self.kept.commit(changes)
        }
        fn message_position(
            &mut self,
            session: SessionId,
            id: MessageId,
        ) -> Result<Option<u64>, StoreError> {
            self.kept.message_position(session, id)
        }
        fn scan_messages(
            &mut self,
            session: SessionId,
            positions: Range<u64>,
            direction: Direction,
            visit: &mut dyn FnMut(MessageRecord) -> bool,
        ) -> Result<(), StoreError> {
            self.kept
                .scan_messages(session, positions, direction, visit)
        }
        fn describe(&self) -> String {
            "flaky".into()
        }
        fn commits_at_once(&self) -> bool {
            self.at_once
        }
    }

    fn message(id: u128, content: &str) -> Change {
        Change::MessageUpsert(MessageRecord {
            id: MessageId(uuid::Uuid::from_u128(id)),
            session_id: SessionId(uuid::Uuid::from_u128(1)),
            position: 0,
            turn_id: None,
            role: Role::Assistant,
            content: content.into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            status: StoredStatus::Streaming,
            tool: None,
            author: None,
        })
    }

    #[test]
    fn retries_failed_commits_and_acks_everything_in_order() {
        let store = Flaky {
            fail: Arc::new(AtomicU32::new(2)),
            ..Flaky::default()
        };
        let batches = store.batches.clone();
        let mut w = Writer::spawn(Box::new(store)).unwrap();
        let mut last = 0;
        for _ in 0..100 {
            last = w.submit(Change::ActiveSession(None));
        }
        assert_eq!(last, 100);
        assert_eq!(
            w.close(),
            Closed {
                committed: 100,
                unsaved: 0
            },
            "every change committed despite two failures"
        );
        let total: usize = batches.lock().unwrap().iter().map(Vec::len).sum();
        assert_eq!(total, 100);
    }

    #[test]
    fn each_commit_is_announced_on_the_writers_thread_after_it_is_published() {
        let store = Flaky {
            fail: Arc::new(AtomicU32::new(1)),
            ..Flaky::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let seen = Arc::new(std::sync::Mutex::new(None::<watch::Receiver<u64>>));
        let watching = seen.clone();
        let mut w = Writer::spawn_with(
            Box::new(store),
            Box::new(move |n| {
                // What `committed` says by now.
                let published = watching.lock().unwrap().as_ref().map(|c| *c.borrow());
                let on = std::thread::current().name().map(str::to_owned);
                tx.send((n, published, on)).unwrap();
            }),
        )
        .unwrap();
        *seen.lock().unwrap() = Some(w.committed());
        for _ in 0..3 {
            w.submit(Change::ActiveSession(None));
        }
        let mut last = 0;
        while last < 3 {
            let (n, published, on) = rx.recv_timeout(Duration::from_secs(10)).expect("a commit");
            assert!(n > last, "numbers grow: {n} after {last}");
            assert_eq!(published, Some(n), "published before it is announced");
            assert_eq!(on.as_deref(), Some("zcoord-store"));
            last = n;
        }
        // The failed try announced nothing: every announcement was a commit.
        assert_eq!(w.close().committed, 3);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn a_failing_store_is_reported_at_once_and_its_recovery_too() {
        let store = Flaky::default();
        store.broken.store(true, Ordering::SeqCst);
        let broken = store.broken.clone();
        let mut w = Writer::spawn(Box::new(store)).unwrap();
        let mut health = w.health();
        let failure = submit_until_reported(&mut w, &mut health);
        assert!(failure.reason.contains("disk full"), "{failure:?}");
        assert!(!failure.permanent);
        assert_eq!(*w.committed().borrow(), 0, "nothing acknowledged");
        broken.store(false, Ordering::SeqCst);
        wait_for(&mut health, |h| h.is_none()).expect("recovery reported");
        assert_eq!(w.close().committed, 1);
    }

    #[test]
    fn a_permanent_failure_keeps_the_changes_and_gives_them_up_only_at_close() {
        let store = Flaky {
            gone: true,
            ..Flaky::default()
        };
        let mut w = Writer::spawn(Box::new(store)).unwrap();
        let mut health = w.health();
        let failure = submit_until_reported(&mut w, &mut health);
        assert!(failure.permanent, "{failure:?}");
        w.submit(Change::ActiveSession(None));
        assert_eq!(
            w.close(),
            Closed {
                committed: 0,
                unsaved: 2
            }
        );
    }

    fn row(id: u128, position: u64, content: &str, status: StoredStatus) -> Change {
        Change::MessageUpsert(MessageRecord {
            id: MessageId(uuid::Uuid::from_u128(id)),
            session_id: SessionId(uuid::Uuid::from_u128(1)),
            position,
            turn_id: None,
            role: Role::User,
            content: content.into(),
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            status,
            tool: None,
            author: None,
        })
    }

    /// Reads the session's positions `0..count` in `direction` on the writer's thread, and where
    /// message `probe` is.
    fn read_all(
        w: &Writer,
        count: u64,
        direction: Direction,
        probe: u128,
    ) -> (Vec<String>, Option<u64>) {
        let (tx, rx) = std::sync::mpsc::channel();
        w.read(Box::new(move |rows| {
            let session = SessionId(uuid::Uuid::from_u128(1));
            let mut seen = Vec::new();
            let scanned = rows.scan(session, 0..count, direction, &mut |m| {
                seen.push(m.content);
                true
            });
            let at = rows.position(session, MessageId(uuid::Uuid::from_u128(probe)));
            let _ = tx.send((scanned, seen, at));
        }));
        let (scanned, seen, at) = rx.recv_timeout(Duration::from_secs(10)).expect("read ran");
        scanned.expect("scan");
        (seen, at.expect("position"))
    }

    #[test]
    fn reads_see_the_changes_before_them_committed_or_waiting() {
        let store = Flaky::default();
        let broken = store.broken.clone();
        let mut w = Writer::spawn(Box::new(store)).unwrap();
        let mut health = w.health();
        w.submit(row(10, 0, "a", StoredStatus::Complete));
        w.submit(row(11, 1, "b", StoredStatus::Streaming));
        w.submit(row(12, 2, "c", StoredStatus::Complete));
        let (seen, at) = read_all(&w, 3, Direction::Forward, 11);
        assert_eq!(
            (seen, at),
            (vec!["a".into(), "b".into(), "c".into()], Some(1))
        );

        // The store fails: what waits in the batch is read over what is committed, in order,
        // newer versions winning, whichever way the scan walks and wherever it stops.
        broken.store(true, Ordering::SeqCst);
        w.submit(row(11, 1, "B", StoredStatus::Complete));
        w.submit(row(13, 3, "d", StoredStatus::Complete));
        wait_for(&mut health, |h| h.is_some()).expect("failure reported");
        w.submit(row(14, 4, "e", StoredStatus::Complete));
        let (seen, at) = read_all(&w, 5, Direction::Forward, 14);
        assert_eq!(seen, ["a", "B", "c", "d", "e"]);
        assert_eq!(at, Some(4), "a row only the batch has is found");
        let (seen, _) = read_all(&w, 5, Direction::Backward, 99);
        assert_eq!(seen, ["e", "d", "c", "B", "a"]);
        let (seen, at) = read_all(&w, 2, Direction::Backward, 99);
        assert_eq!((seen, at), (vec!["B".into(), "a".into()], None));

        broken.store(false, Ordering::SeqCst);
        wait_for(&mut health, |h| h.is_none()).expect("recovery reported");
        let (seen, _) = read_all(&w, 5, Direction::Forward, 10);
        assert_eq!(seen, ["a", "B", "c", "d", "e"]);
        assert_eq!(w.close().unsaved, 0);
    }

    #[test]
    fn a_read_left_unrun_by_a_dead_thread_is_dropped_not_lost_silently() {
        let mut w = Writer::spawn(Box::new(Flaky::default())).unwrap();
        w.submit(Change::ActiveSession(None));
        let Way::Thread(own) = &mut w.way else {
            panic!("a store that does not commit at once gets a thread");
        };
        own.tx.take();
        own.thread.take().map(|t| t.join());
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // No thread takes it: the job (and the sender it owns) is dropped, which its owner sees.
        w.read(Box::new(move |_| {
            let _ = tx.send(());
        }));
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_err());
    }

    #[test]
    fn a_store_that_commits_at_once_has_each_change_committed_when_submit_returns() {
        let store = Flaky {
            at_once: true,
            ..Flaky::default()
        };
        let batches = store.batches.clone();
        let announced = Arc::new(AtomicU32::new(0));
        let counted = announced.clone();
        let mut w = Writer::spawn_with(
            Box::new(store),
            Box::new(move |_| {
                counted.fetch_add(1, Ordering::SeqCst);
            }),
        )
        .unwrap();
        let committed = w.committed();
        for (i, c) in ["a", "b", "c"].into_iter().enumerate() {
            let n = w.submit(row(10 + i as u128, i as u64, c, StoredStatus::Complete));
            assert_eq!(*committed.borrow(), n, "committed before submit returned");
        }
        assert_eq!(batches.lock().unwrap().len(), 3, "one commit per change");
        let (seen, at) = read_all(&w, 3, Direction::Backward, 11);
        assert_eq!(
            (seen, at),
            (vec!["c".into(), "b".into(), "a".into()], Some(1))
        );
        // A reader elsewhere (a turn's task) reads on its own thread.
        let reader = w.reader();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            reader.read(Box::new(move |rows| {
                let session = SessionId(uuid::Uuid::from_u128(1));
                let _ = tx.send(rows.position(session, MessageId(uuid::Uuid::from_u128(12))));
            }));
        });
        let at = rx.recv_timeout(Duration::from_secs(10)).expect("read ran");
        assert_eq!(at.expect("position"), Some(2));
        assert!(w.health().borrow().is_none());
        assert_eq!(
            announced.load(Ordering::SeqCst),
            0,
            "nothing waits for a commit that is done when submit returns"
        );
        assert_eq!(
            w.close(),
            Closed {
                committed: 3,
                unsaved: 0
            }
        );
    }

    #[test]
    fn a_store_that_commits_at_once_and_fails_says_so_at_once_and_counts_what_it_lost() {
        let store = Flaky {
            at_once: true,
            ..Flaky::default()
        };
        let broken = store.broken.clone();
        let mut w = Writer::spawn(Box::new(store)).unwrap();
        w.submit(Change::ActiveSession(None));
        broken.store(true, Ordering::SeqCst);
        w.submit(Change::ActiveSession(None));
        let failure = w
            .health()
            .borrow()
            .clone()
            .expect("said before submit returned");
        assert!(
            failure.permanent && failure.reason.contains("disk full"),
            "{failure:?}"
        );
        assert_eq!(*w.committed().borrow(), 1);
        assert_eq!(
            w.close(),
            Closed {
                committed: 1,
                unsaved: 1
            }
        );
    }

    #[test]
    fn a_read_that_panics_fails_a_store_that_commits_at_once_not_the_thread_that_asked() {
        let store = Flaky {
            at_once: true,
            ..Flaky::default()
        };
        let mut w = Writer::spawn(Box::new(store)).unwrap();
        w.read(Box::new(|_| panic!("a bug in a read")));
        let failure = w.health().borrow().clone().expect("failure said");
        assert!(
            failure.permanent && failure.reason.contains("a bug in a read"),
            "{failure:?}"
        );
        // Reads and commits still run: the lock was not left poisoned shut.
        w.submit(row(10, 0, "a", StoredStatus::Complete));
        assert_eq!(read_all(&w, 1, Direction::Forward, 10).0, ["a"]);
        // Closed: a reader's read is dropped unrun, which its owner sees.
        let reader = w.reader();
        w.close();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        reader.read(Box::new(move |_| {
            let _ = tx.send(());
        }));
        assert!(rx.recv_timeout(Duration::from_secs(10)).is_err());
    }

    #[test]
    fn a_waiting_batch_keeps_only_the_latest_version_of_each_message() {
        let mut b = Batch::default();
        b.push(1, message(7, "a"));
        b.push(2, Change::ActiveSession(None));
        b.push(3, message(7, "ab"));
        b.push(4, message(8, "x"));
        b.push(5, message(7, "abc"));
        assert_eq!(b.last, 5);
        assert_eq!(
            b.changes,
            vec![
                message(7, "abc"),
                Change::ActiveSession(None),
                message(8, "x")
            ]
        );
    }

    /// Submits one change to a store that will not take it and waits for the failure reported.
    fn submit_until_reported(
        w: &mut Writer,
        health: &mut watch::Receiver<Option<StoreFailure>>,
    ) -> StoreFailure {
        w.submit(Change::ActiveSession(None));
        wait_for(health, |h| h.is_some())
            .flatten()
            .expect("failure reported")
    }

    /// Waits (at most 10 s) until the watched health satisfies `done`; returns it, or `None`
    /// on timeout.
    fn wait_for(
        rx: &mut watch::Receiver<Option<StoreFailure>>,
        done: impl Fn(&Option<StoreFailure>) -> bool,
    ) -> Option<Option<StoreFailure>> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let seen = tokio::time::timeout(Duration::from_secs(10), rx.wait_for(|h| done(h)));
            match seen.await {
                Ok(Ok(h)) => Some(h.clone()),
                _ => None,
            }
        })
    }
}
