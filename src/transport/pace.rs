//! Pacing model output by what libzmq holds for subscribers. Past a high mark (a quarter of
//! `--pub-held-bytes`, or a quarter of `--pub-hwm` in events) the actor takes no more model
//! output, so the models wait instead of libzmq's queues growing by a queue entry per subscriber
//! per frame, or a subscriber that reads more slowly than the model writes reaching its
//! high-water mark and missing events; the free callback that brings both gauges down to their
//! low marks (an eighth of each) wakes the actor. The events held bound the longest subscriber
//! queue: every event in one is held. A quarter, not nearly all, because libzmq's sending side
//! learns what a subscriber's side has taken only every half queue or so, so a queue can look up
//! to half a high-water mark fuller than it is, and model events decided before the pause still
//! follow. Subscribers that keep up never see a gap; one that stops reading is dealt with by the
//! transport thread (evicted after [`STALLED_AFTER`] of pause by default), so it cannot hold the
//! stream up for long.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

/// By default, a pause this long means some subscriber is not draining: the one furthest behind
/// is disconnected (it reconnects and repairs its gap with `events.replay`).
pub const STALLED_AFTER: Duration = Duration::from_secs(1);

/// What one frame costs in libzmq besides its bytes: the `zmq_msg_t` in each subscriber's
/// queue (a frame is queued once per subscriber, its bytes shared).
pub const QUEUE_ENTRY_BYTES: u64 = 64;
/// A frame libzmq copied (an event's key) is one allocation: its bytes and a header.
pub const COPIED_FRAME_OVERHEAD: u64 = 40;

/// What an event costs on its way to subscribers: its frames' bytes, the key's copy, and a
/// queue entry per frame in each subscriber's queue (an upper bound: a subscriber whose
/// subscriptions do not match gets none).
pub fn event_cost(key_len: usize, body_len: usize, subscribers: u64) -> u64 {
    (key_len + body_len) as u64 + COPIED_FRAME_OVERHEAD + 2 * QUEUE_ENTRY_BYTES * subscribers.max(1)
}

/// The marks, and whether model output waits.
#[derive(Debug)]
pub struct Pace {
    high: AtomicU64,
    low: AtomicU64,
    /// The same in events, against libzmq's high-water mark (which counts messages).
    high_events: AtomicU64,
    low_events: AtomicU64,
    /// Events handed to libzmq and not yet freed by it (a gauge, as the bytes are).
    events: AtomicU64,
    /// Pauses begun so far: tells one long pause from many short ones seen now and then.
    episodes: AtomicU64,
    paused: AtomicBool,
    resumed: Notify,
}

impl Default for Pace {
    /// Never pauses until [`Pace::configure`] sets its marks.
    fn default() -> Self {
        Pace {
            high: AtomicU64::new(u64::MAX),
            low: AtomicU64::new(u64::MAX),
            high_events: AtomicU64::new(u64::MAX),
            low_events: AtomicU64::new(u64::MAX),
            events: AtomicU64::new(0),
            episodes: AtomicU64::new(0),
            paused: AtomicBool::new(false),
            resumed: Notify::new(),
        }
    }
}

impl Pace {
    /// Marks from the bound on what libzmq may hold and from each subscriber's high-water mark
    /// in events, 0 meaning none: pause above a quarter of either, go on at an eighth of both.
    pub fn configure(&self, held_limit: u64, hwm: u64) {
        self.high.store(held_limit / 4, Ordering::SeqCst);
        self.low.store(held_limit / 8, Ordering::SeqCst);
        let (high, low) = if hwm == 0 {
            (u64::MAX, u64::MAX)
        } else {
            (hwm / 4, hwm / 8)
        };
        self.high_events.store(high, Ordering::SeqCst);
        self.low_events.store(low, Ordering::SeqCst);
    }

    /// Events handed to libzmq and not yet freed by it.
    pub fn events_held(&self) -> u64 {
        self.events.load(Ordering::SeqCst)
    }

    /// The count of events above which model output waits (a quarter of `--pub-hwm`).
    pub fn event_mark(&self) -> u64 {
        self.high_events.load(Ordering::SeqCst)
    }

    /// An event was handed to libzmq (its charge taken).
    pub fn charged(&self) {
        self.events.fetch_add(1, Ordering::SeqCst);
    }

    /// libzmq freed an event (or it was dropped unsent).
    pub fn freed(&self) {
        self.events.fetch_sub(1, Ordering::SeqCst);
    }

    fn above_high(&self, bytes: u64) -> bool {
        bytes > self.high.load(Ordering::SeqCst)
            || self.events.load(Ordering::SeqCst) > self.high_events.load(Ordering::SeqCst)
    }

    fn down_to_low(&self, bytes: u64) -> bool {
        bytes <= self.low.load(Ordering::SeqCst)
            && self.events.load(Ordering::SeqCst) <= self.low_events.load(Ordering::SeqCst)
    }

    /// Whether model output must wait, `held` being the gauge now (read again by the caller's
    /// `held_now` after the pause is recorded, so a release racing with it is not missed).
    pub fn must_wait(&self, held_now: impl Fn() -> u64) -> bool {
        if self.paused.load(Ordering::SeqCst) {
            return true;
        }
        if !self.above_high(held_now()) {
            return false;
        }
        self.episodes.fetch_add(1, Ordering::SeqCst);
        self.paused.store(true, Ordering::SeqCst);
        // A release that brought the gauge down before it could see the flag would wake nobody:
        // look once more now that the flag is set.
        if self.down_to_low(held_now()) && self.paused.swap(false, Ordering::SeqCst) {
            return false;
        }
        true
    }

    /// The number of pauses begun so far.
    pub fn episode(&self) -> u64 {
        self.episodes.load(Ordering::SeqCst)
    }

    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Called by the free callback with the gauge after a release: at the low mark, ends the
    /// pause and wakes the actor.
    pub fn released(&self, held_after: u64) {
        if self.down_to_low(held_after) && self.paused.swap(false, Ordering::SeqCst) {
            self.resumed.notify_one();
        }
    }

    /// Ends a pause whatever the gauge says (the subscriber holding it was disconnected, or the
    /// server is closing).
    pub fn resume(&self) {
        if self.paused.swap(false, Ordering::SeqCst) {
            self.resumed.notify_one();
        }
    }

    /// Resolves when a pause ends (perhaps spuriously: ask [`Pace::must_wait`] again).
    pub async fn resumed(&self) {
        self.resumed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;
    use std::sync::Arc;

    #[test]
    fn pauses_above_a_quarter_and_goes_on_at_an_eighth() {
        let pace = Pace::default();
        pace.configure(800, 0);
        let held = AtomicU64::new(200);
        let now = || held.load(Ordering::SeqCst);
        assert!(!pace.must_wait(now), "at the high mark");
        held.store(201, Ordering::SeqCst);
        assert!(pace.must_wait(now));
        held.store(150, Ordering::SeqCst);
        pace.released(150);
        assert!(pace.must_wait(now), "still above the low mark");
        held.store(100, Ordering::SeqCst);
        pace.released(100);
        assert!(!pace.must_wait(now));
    }

    #[test]
    fn events_held_pause_it_too_at_a_quarter_of_the_high_water_mark() {
        let pace = Pace::default();
        pace.configure(u64::MAX, 16);
        for _ in 0..4 {
            pace.charged();
        }
        assert!(!pace.must_wait(|| 0), "at a quarter");
        pace.charged();
        assert!(pace.must_wait(|| 0), "past a quarter");
        pace.freed();
        pace.freed();
        pace.released(0);
        assert!(pace.must_wait(|| 0), "still above an eighth");
        pace.freed();
        pace.released(0);
        assert!(!pace.must_wait(|| 0), "down to an eighth");
    }

    #[test]
    fn each_pause_is_numbered() {
        let pace = Pace::default();
        pace.configure(800, 0);
        assert!(pace.must_wait(|| 300));
        let first = pace.episode();
        pace.released(0);
        assert!(!pace.must_wait(|| 0));
        assert!(pace.must_wait(|| 300));
        assert_eq!(
            pace.episode(),
            first + 1,
            "a new pause, not the old one going on"
        );
    }

    #[test]
    fn unconfigured_it_never_pauses() {
        let pace = Pace::default();
        assert!(!pace.must_wait(|| u64::MAX - 1));
    }

    #[test]
    fn a_release_that_came_before_the_flag_is_not_missed() {
        let pace = Pace::default();
        pace.configure(800, 0);
        // The first read sees the gauge high; by the second, the frames were freed.
        let reads = AtomicU64::new(0);
        let now = || {
            if reads.fetch_add(1, Ordering::SeqCst) == 0 {
                500
            } else {
                0
            }
        };
        assert!(!pace.must_wait(now));
        assert!(!pace.is_paused());
    }

    #[tokio::test]
    async fn the_release_at_the_low_mark_wakes_the_waiter() {
        let pace = Arc::new(Pace::default());
        pace.configure(800, 0);
        assert!(pace.must_wait(|| 500));
        let waiter = tokio::spawn({
            let pace = pace.clone();
            async move { pace.resumed().await }
        });
        let freer = std::thread::spawn({
            let pace = pace.clone();
            move || pace.released(50)
        });
        freer.join().unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .unwrap();
        assert!(!pace.is_paused());
    }
}
