//! The replay ring: the most recent published events, exactly as they went out, bounded by count
//! and by bytes, for `events.replay`. A subscriber that missed events (late join, high-water mark,
//! reconnect) asks for them by `seq` instead of resynchronising everything. Holds shared bytes
//! only; it decides nothing and never reads a clock.

use std::collections::VecDeque;
use std::sync::Arc;

/// How much the ring may hold. Whichever bound is reached first evicts the oldest events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    pub max_events: usize,
    pub max_bytes: usize,
}

impl Default for ReplayLimits {
    fn default() -> Self {
        ReplayLimits {
            max_events: 50_000,
            max_bytes: 32 << 20,
        }
    }
}

/// Bookkeeping charged per event on top of its frames (the entry and the two `Arc` headers).
const ENTRY_OVERHEAD: usize = 64;
/// One replay answer carries at most this many bytes of envelopes; the client continues.
const MAX_PAGE_BYTES: usize = 1 << 20;

#[derive(Debug)]
struct Entry {
    seq: u64,
    key: Arc<str>,
    body: Arc<[u8]>,
}

impl Entry {
    fn cost(&self) -> usize {
        self.key.len() + self.body.len() + ENTRY_OVERHEAD
    }
}

/// Why a replay cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Events after `after_seq` have been evicted.
    Evicted,
    /// `after_seq` is newer than anything published: it came from another instance.
    Ahead,
}

impl Unavailable {
    pub fn as_str(self) -> &'static str {
        match self {
            Unavailable::Evicted => "evicted",
            Unavailable::Ahead => "ahead",
        }
    }
}

/// One page of a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayPage {
    pub bodies: Vec<Arc<[u8]>>,
    /// Where the next call continues: everything up to here has been looked at.
    pub next_after_seq: u64,
    pub has_more: bool,
}

#[derive(Debug)]
pub struct EventRing {
    limits: ReplayLimits,
    entries: VecDeque<Entry>,
    bytes: usize,
    /// The newest `seq` ever pushed (0 before the first).
    latest: u64,
}

impl EventRing {
    pub fn new(limits: ReplayLimits) -> Self {
        EventRing {
            limits,
            entries: VecDeque::new(),
            bytes: 0,
            latest: 0,
        }
    }

    /// Adds the event numbered `seq` (the next number after the last one pushed) and evicts
    /// the oldest ones beyond the limits. An event larger than the byte bound is not kept.
    pub fn push(&mut self, seq: u64, key: Arc<str>, body: Arc<[u8]>) {
        debug_assert!(seq > self.latest, "events are pushed in order");
        self.latest = seq;
        let entry = Entry { seq, key, body };
        self.bytes += entry.cost();
        self.entries.push_back(entry);
        while self.entries.len() > self.limits.max_events || self.bytes > self.limits.max_bytes {
            match self.entries.pop_front() {
                Some(old) => self.bytes -= old.cost(),
                None => break,
            }
        }
    }

    /// The oldest `seq` still held; `latest + 1` when nothing is.
    pub fn oldest(&self) -> u64 {
        self.entries.front().map_or(self.latest + 1, |e| e.seq)
    }

    pub fn latest(&self) -> u64 {
        self.latest
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The events after `after_seq` whose key starts with one of `prefixes` (any key when there
    /// are none), at most `limit` of them and about `MAX_PAGE_BYTES`.
    pub fn replay(
        &self,
        after_seq: u64,
        prefixes: &[String],
        limit: usize,
    ) -> Result<ReplayPage, Unavailable> {
        if after_seq > self.latest {
            return Err(Unavailable::Ahead);
        }
        // Every event numbered above `after_seq` must still be here.
        if after_seq + 1 < self.oldest() {
            return Err(Unavailable::Evicted);
        }
        // Numbers are contiguous, so the first wanted event's position is arithmetic.
        let start = usize::try_from(after_seq + 1 - self.oldest()).unwrap_or(usize::MAX);
        let mut page = ReplayPage {
            bodies: Vec::new(),
            next_after_seq: self.latest,
            has_more: false,
        };
        let mut bytes = 0;
        for entry in self.entries.iter().skip(start) {
            let wanted = prefixes.is_empty() || prefixes.iter().any(|p| entry.key.starts_with(p));
            if !wanted {
                continue;
            }
            if page.bodies.len() >= limit.max(1) || bytes >= MAX_PAGE_BYTES {
                page.next_after_seq = entry.seq - 1;
                page.has_more = true;
                break;
            }
            bytes += entry.body.len();
            page.bodies.push(entry.body.clone());
        }
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(max_events: usize, max_bytes: usize) -> EventRing {
        EventRing::new(ReplayLimits {
            max_events,
            max_bytes,
        })
    }

    fn push(r: &mut EventRing, seq: u64, key: &str) {
        r.push(
            seq,
            key.into(),
            format!("{{\"seq\":{seq}}}").into_bytes().into(),
        );
    }

    fn seqs(page: &ReplayPage) -> Vec<String> {
        page.bodies
            .iter()
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn empty_ring_replays_nothing_from_zero_and_refuses_the_future() {
        let r = ring(10, 1 << 20);
        let page = r.replay(0, &[], 10).unwrap();
        assert!(page.bodies.is_empty());
        assert_eq!((page.next_after_seq, page.has_more), (0, false));
        assert_eq!(r.replay(1, &[], 10), Err(Unavailable::Ahead));
        assert_eq!(r.oldest(), 1);
    }

    #[test]
    fn replays_after_seq_with_prefixes_and_limit() {
        let mut r = ring(100, 1 << 20);
        for (seq, key) in [(1, "session.list"), (2, "llm.token/a"), (3, "llm.token/b")] {
            push(&mut r, seq, key);
        }
        push(&mut r, 4, "llm.token/a");
        let all = r.replay(1, &[], 10).unwrap();
        assert_eq!(seqs(&all).len(), 3);
        assert_eq!(all.next_after_seq, 4);
        let a = r.replay(0, &["llm.token/a".into()], 10).unwrap();
        assert_eq!(seqs(&a), vec!["{\"seq\":2}", "{\"seq\":4}"]);
        let first = r.replay(0, &["llm.token/".into()], 1).unwrap();
        assert_eq!(seqs(&first), vec!["{\"seq\":2}"]);
        assert!(first.has_more);
        assert_eq!(
            first.next_after_seq, 2,
            "continue after the last one returned"
        );
        let rest = r
            .replay(first.next_after_seq, &["llm.token/".into()], 1)
            .unwrap();
        assert_eq!(seqs(&rest), vec!["{\"seq\":3}"]);
        let end = r.replay(3, &["llm.token/".into()], 1).unwrap();
        assert_eq!(
            (seqs(&end).len(), end.has_more, end.next_after_seq),
            (1, false, 4)
        );
        let none = r.replay(4, &[], 10).unwrap();
        assert!(none.bodies.is_empty() && !none.has_more);
    }

    #[test]
    fn evicts_by_count_and_refuses_what_is_gone() {
        let mut r = ring(3, 1 << 20);
        for seq in 1..=5 {
            push(&mut r, seq, "k");
        }
        assert_eq!((r.len(), r.oldest(), r.latest()), (3, 3, 5));
        assert_eq!(r.replay(1, &[], 10), Err(Unavailable::Evicted));
        assert_eq!(seqs(&r.replay(2, &[], 10).unwrap()).len(), 3);
    }

    #[test]
    fn evicts_by_bytes_and_drops_an_event_bigger_than_the_ring() {
        let one = "k".len() + "{\"seq\":1}".len() + ENTRY_OVERHEAD;
        let mut r = ring(100, 2 * one);
        for seq in 1..=3 {
            push(&mut r, seq, "k");
        }
        assert_eq!((r.len(), r.oldest()), (2, 2));
        assert!(r.bytes() <= 2 * one);
        r.push(4, "k".into(), vec![b'x'; 4 * one].into());
        assert!(r.is_empty());
        assert_eq!(r.oldest(), 5);
        assert_eq!(r.replay(3, &[], 10), Err(Unavailable::Evicted));
        assert!(r.replay(4, &[], 10).unwrap().bodies.is_empty());
    }
}
