//! The queue of subscriptions waiting for their `instance.welcome`, from the transport thread to
//! the core. One welcome answers every subscriber of its prefix whose subscription was live before
//! it was published, so a prefix already waiting is not queued again: a flood of one subscription
//! (reconnecting clients, a churning subscriber) takes one place in the queue, not one each.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

/// The transport thread's end.
#[derive(Debug)]
pub struct WelcomeSender {
    tx: mpsc::Sender<String>,
    waiting: Arc<Mutex<HashSet<String>>>,
}

/// The core's end.
#[derive(Debug)]
pub struct WelcomeReceiver {
    rx: mpsc::Receiver<String>,
    waiting: Arc<Mutex<HashSet<String>>>,
}

/// A queue of at most `capacity` distinct prefixes.
pub fn channel(capacity: usize) -> (WelcomeSender, WelcomeReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let waiting = Arc::new(Mutex::new(HashSet::new()));
    (
        WelcomeSender {
            tx,
            waiting: waiting.clone(),
        },
        WelcomeReceiver { rx, waiting },
    )
}

/// What became of a subscription offered for a welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    Queued,
    /// The same prefix is already waiting: its welcome will cover this subscriber too.
    Joined,
    /// The queue is full (or the core is gone): no welcome.
    Dropped,
}

impl WelcomeSender {
    pub fn offer(&self, prefix: &str) -> Offered {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        if waiting.contains(prefix) {
            return Offered::Joined;
        }
        match self.tx.try_send(prefix.to_owned()) {
            Ok(()) => {
                waiting.insert(prefix.to_owned());
                Offered::Queued
            }
            Err(_) => Offered::Dropped,
        }
    }
}

impl WelcomeReceiver {
    /// The next prefix to welcome. From here on a new subscription to it is queued afresh, since
    /// the welcome about to be published may precede that subscription.
    pub async fn recv(&mut self) -> Option<String> {
        let prefix = self.rx.recv().await?;
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&prefix);
        Some(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_prefix_is_not_queued_twice_and_is_queued_again_once_taken() {
        let (tx, mut rx) = channel(2);
        assert_eq!(tx.offer("llm."), Offered::Queued);
        assert_eq!(tx.offer("llm."), Offered::Joined);
        assert_eq!(tx.offer("session."), Offered::Queued);
        assert_eq!(tx.offer("other"), Offered::Dropped, "two distinct prefixes fill it");
        assert_eq!(rx.recv().await.as_deref(), Some("llm."));
        // Taken: a later subscription to it needs a welcome of its own.
        assert_eq!(tx.offer("llm."), Offered::Queued);
        assert_eq!(rx.recv().await.as_deref(), Some("session."));
        assert_eq!(rx.recv().await.as_deref(), Some("llm."));
    }
}
