//! The queue from running models to the core: bounded in bytes, each event counted before it is
//! admitted, with a low-water mark. A model that finds it full sleeps until the core has taken
//! half of it, instead of waking for every event the core takes (a bounded channel's habit, which
//! cost a thread switch every few tokens when a stream outran the core).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::core::ModelEvent;
use crate::protocol::ids::TurnId;

/// Bytes the queue holds at most by default (one event of any size always fits when it is
/// empty): about 7,000 small tokens.
pub const MAX_QUEUED_BYTES: usize = 1 << 20;

/// The core has gone: nothing more will be taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the core no longer takes model output")]
pub struct Closed;

/// Why [`ModelReceiver::try_recv`] returned nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    /// Every sender is gone and the queue is empty.
    Disconnected,
}

/// What one queued event costs: its place in the queue plus the text it owns (by capacity,
/// which is what it holds).
pub fn cost(event: &ModelEvent) -> usize {
    let owned = match event {
        ModelEvent::Usage(_) | ModelEvent::Finished => 0,
        ModelEvent::Token(text) | ModelEvent::Failed(text) => text.capacity(),
        ModelEvent::ToolArgs {
            call_id,
            tool_name,
            delta,
        } => call_id.0.capacity() + tool_name.capacity() + delta.capacity(),
        ModelEvent::ToolStart {
            call_id,
            tool_name,
            params,
        } => call_id.0.capacity() + tool_name.capacity() + params.capacity(),
        ModelEvent::ToolEnd {
            call_id, result, ..
        } => call_id.0.capacity() + result.capacity(),
    };
    std::mem::size_of::<Entry>() + owned
}

struct Entry {
    turn: TurnId,
    event: ModelEvent,
    cost: usize,
}

struct State {
    entries: VecDeque<Entry>,
    bytes: usize,
    senders: usize,
    receiver_gone: bool,
    /// Set when a sender found no room; cleared (and the senders woken) once the queue is down
    /// to its low-water mark. While set, no sender adds to a non-empty queue.
    paused: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The receiver waits here for an event.
    data: Notify,
    /// Paused senders wait here for room.
    room: Notify,
    max_bytes: usize,
    low_bytes: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; a poisoned one still holds consistent state.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A model's end of the queue; cloned for each running turn.
pub struct ModelSender {
    shared: Arc<Shared>,
}

/// The core's end of the queue.
pub struct ModelReceiver {
    shared: Arc<Shared>,
}

/// A queue holding at most `max_bytes` (but always one event), whose senders, once paused by a
/// full queue, resume when it is down to half.
pub fn channel(max_bytes: usize) -> (ModelSender, ModelReceiver) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            entries: VecDeque::new(),
            bytes: 0,
            senders: 1,
            receiver_gone: false,
            paused: false,
        }),
        data: Notify::new(),
        room: Notify::new(),
        max_bytes,
        low_bytes: max_bytes / 2,
    });
    (
        ModelSender {
            shared: shared.clone(),
        },
        ModelReceiver { shared },
    )
}

impl ModelSender {
    /// Queues `event` for the core, waiting while the queue is full. Fails only when the core
    /// has gone.
    pub async fn send(&self, turn: TurnId, event: ModelEvent) -> Result<(), Closed> {
        let cost = cost(&event);
        let mut entry = Some(Entry { turn, event, cost });
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            {
                let mut st = self.shared.lock();
                if st.receiver_gone {
                    return Err(Closed);
                }
                let was_empty = st.entries.is_empty();
                if was_empty || (!st.paused && st.bytes + cost <= self.shared.max_bytes) {
                    st.bytes += cost;
                    st.entries.extend(entry.take());
                    drop(st);
                    if was_empty {
                        self.shared.data.notify_one();
                    }
                    return Ok(());
                }
                st.paused = true;
                // Registered before the lock is let go, so the receiver's wake-up cannot pass
                // between the check and the wait.
                room.as_mut().enable();
            }
            room.await;
        }
    }
}

impl Clone for ModelSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        ModelSender {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for ModelSender {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.data.notify_one();
        }
    }
}

impl std::fmt::Debug for ModelSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSender").finish_non_exhaustive()
    }
}

impl ModelReceiver {
    /// The next event, or `None` once every sender is gone and the queue is empty. Cancel-safe:
    /// an event leaves the queue only when this returns it.
    pub async fn recv(&mut self) -> Option<(TurnId, ModelEvent)> {
        loop {
            match self.try_recv() {
                Ok(item) => return Some(item),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => self.shared.data.notified().await,
            }
        }
    }

    pub fn try_recv(&mut self) -> Result<(TurnId, ModelEvent), TryRecvError> {
        let (entry, resume) = {
            let mut st = self.shared.lock();
            let Some(entry) = st.entries.pop_front() else {
                return Err(if st.senders == 0 {
                    TryRecvError::Disconnected
                } else {
                    TryRecvError::Empty
                });
            };
            st.bytes -= entry.cost;
            let resume = st.paused && st.bytes <= self.shared.low_bytes;
            if resume {
                st.paused = false;
            }
            (entry, resume)
        };
        if resume {
            self.shared.room.notify_waiters();
        }
        Ok((entry.turn, entry.event))
    }

    /// Whether nothing is queued now.
    pub fn is_empty(&self) -> bool {
        self.shared.lock().entries.is_empty()
    }

    /// Bytes queued now.
    pub fn bytes(&self) -> usize {
        self.shared.lock().bytes
    }
}

impl Drop for ModelReceiver {
    fn drop(&mut self) {
        let dropped = {
            let mut st = self.shared.lock();
            st.receiver_gone = true;
            st.bytes = 0;
            std::mem::take(&mut st.entries)
        };
        // Dropped outside the lock: an event's drop runs no code of ours, but keep it short.
        drop(dropped);
        self.shared.room.notify_waiters();
    }
}

impl std::fmt::Debug for ModelReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelReceiver").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn token(n: usize) -> ModelEvent {
        ModelEvent::Token("x".repeat(n))
    }

    fn turn() -> TurnId {
        TurnId(uuid::Uuid::from_u128(7))
    }

    const WITHIN: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn events_arrive_in_order_and_the_end_is_seen() {
        let (tx, mut rx) = channel(1 << 20);
        let t = turn();
        for i in 0..10 {
            tx.send(t, ModelEvent::Token(i.to_string())).await.unwrap();
        }
        drop(tx);
        for i in 0..10 {
            let (id, ev) = rx.recv().await.unwrap();
            assert_eq!(id, t);
            assert_eq!(ev, ModelEvent::Token(i.to_string()));
        }
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.try_recv(), Err(TryRecvError::Disconnected));
    }

    #[tokio::test]
    async fn bytes_are_counted_before_admission_and_one_event_always_fits() {
        let (tx, mut rx) = channel(100);
        let big = token(10_000);
        let big_cost = cost(&big);
        tx.send(turn(), big).await.unwrap();
        assert_eq!(
            rx.bytes(),
            big_cost,
            "an empty queue takes one event of any size"
        );
        // The second cannot be admitted until the first has been taken.
        let send = tx.send(turn(), token(1));
        tokio::pin!(send);
        assert!(
            tokio::time::timeout(Duration::from_millis(20), send.as_mut())
                .await
                .is_err(),
            "a full queue makes the sender wait"
        );
        rx.try_recv().unwrap();
        tokio::time::timeout(WITHIN, send).await.unwrap().unwrap();
        assert_eq!(rx.bytes(), cost(&token(1)));
    }

    #[tokio::test]
    async fn a_paused_sender_waits_for_the_low_water_mark_not_for_one_free_place() {
        let each = cost(&token(8));
        let (tx, mut rx) = channel(each * 10);
        let t = turn();
        for _ in 0..10 {
            tx.send(t, token(8)).await.unwrap();
        }
        let paused = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(t, token(8)).await }
        });
        // Let the sender find the queue full.
        while !rx.shared.lock().paused {
            tokio::task::yield_now().await;
        }
        // Four taken: six remain, above half; the sender stays paused.
        for _ in 0..4 {
            rx.try_recv().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!paused.is_finished(), "resumed above the low-water mark");
        // One more: five remain, half; the sender goes on.
        rx.try_recv().unwrap();
        tokio::time::timeout(WITHIN, paused)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(rx.bytes(), each * 6);
    }

    #[tokio::test]
    async fn a_sender_learns_the_core_is_gone_even_while_waiting() {
        let (tx, rx) = channel(1);
        tx.send(turn(), token(4)).await.unwrap();
        let waiting = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send(turn(), token(4)).await }
        });
        while !rx.shared.lock().paused {
            tokio::task::yield_now().await;
        }
        drop(rx);
        let r = tokio::time::timeout(WITHIN, waiting)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(r, Err(Closed));
        assert_eq!(tx.send(turn(), token(1)).await, Err(Closed));
    }

    #[tokio::test]
    async fn a_receiver_waiting_on_an_empty_queue_is_woken_by_a_send_from_another_task() {
        let (tx, mut rx) = channel(1 << 10);
        let t = turn();
        let sender = tokio::spawn(async move {
            for i in 0..1_000u32 {
                tx.send(t, ModelEvent::Token(i.to_string())).await.unwrap();
            }
        });
        let mut got = 0u32;
        while let Some((_, ev)) = tokio::time::timeout(WITHIN, rx.recv()).await.unwrap() {
            assert_eq!(ev, ModelEvent::Token(got.to_string()));
            got += 1;
        }
        assert_eq!(got, 1_000);
        sender.await.unwrap();
    }
}
