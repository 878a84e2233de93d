//! Takes requests from each peer in turn. The core's input queue is first come, first served, so
//! a peer that pipelines many requests would otherwise put all of them ahead of every other
//! peer's next one; taken round-robin by peer, a well-behaved client waits for at most one
//! request per busy peer, whatever each of them has queued.

use std::collections::{HashMap, VecDeque};

/// Items queued per key, handed out one key at a time in turn.
#[derive(Debug)]
pub struct RoundRobin<T> {
    queues: HashMap<Vec<u8>, VecDeque<T>>,
    /// Keys with something queued, in the order they are next served.
    turn: VecDeque<Vec<u8>>,
    len: usize,
}

impl<T> Default for RoundRobin<T> {
    fn default() -> Self {
        RoundRobin {
            queues: HashMap::new(),
            turn: VecDeque::new(),
            len: 0,
        }
    }
}

impl<T> RoundRobin<T> {
    pub fn push(&mut self, key: Vec<u8>, item: T) {
        match self.queues.get_mut(&key) {
            Some(q) => q.push_back(item),
            None => {
                self.turn.push_back(key.clone());
                self.queues.insert(key, VecDeque::from([item]));
            }
        }
        self.len += 1;
    }

    /// The next key's oldest item; that key then goes to the back of the line.
    pub fn pop(&mut self) -> Option<T> {
        let key = self.turn.pop_front()?;
        let queue = self.queues.get_mut(&key)?;
        let item = queue.pop_front();
        if queue.is_empty() {
            self.queues.remove(&key);
        } else {
            self.turn.push_back(key);
        }
        self.len -= usize::from(item.is_some());
        item
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn len(&self) -> usize {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flooding_key_gets_one_turn_per_round() {
        let mut rr = RoundRobin::default();
        for i in 0..100 {
            rr.push(b"flood".to_vec(), ("flood", i));
        }
        rr.push(b"a".to_vec(), ("a", 0));
        rr.push(b"b".to_vec(), ("b", 0));
        rr.push(b"a".to_vec(), ("a", 1));
        let first: Vec<_> = (0..5).map(|_| rr.pop().unwrap()).collect();
        assert_eq!(
            first,
            [("flood", 0), ("a", 0), ("b", 0), ("flood", 1), ("a", 1)]
        );
        assert_eq!(rr.len(), 98);
        // Each key's own order is kept.
        let rest: Vec<_> = std::iter::from_fn(|| rr.pop()).collect();
        assert_eq!(rest, (2..100).map(|i| ("flood", i)).collect::<Vec<_>>());
        assert!(rr.is_empty());
        assert!(rr.queues.is_empty() && rr.turn.is_empty());
    }

    #[test]
    fn a_key_that_empties_rejoins_at_the_back() {
        let mut rr = RoundRobin::default();
        rr.push(b"a".to_vec(), 1);
        rr.push(b"b".to_vec(), 2);
        assert_eq!(rr.pop(), Some(1));
        rr.push(b"a".to_vec(), 3);
        assert_eq!((rr.pop(), rr.pop(), rr.pop()), (Some(2), Some(3), None));
    }
}
