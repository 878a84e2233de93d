//! Drives one turn of a model as a tokio task: reports `Finished`/`Failed` when the model returns
//! (or panics), and stops it at once when its handle is cancelled or dropped.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::{Model, ModelError, TurnSink};
use crate::core::{ModelEvent, TurnStart};
use crate::protocol::ids::TurnId;

/// Owning this keeps the turn's model running; dropping it (or `cancel`) stops it.
#[derive(Debug)]
pub struct TurnHandle {
    _cancel: oneshot::Sender<()>,
}

impl TurnHandle {
    pub fn cancel(self) {}
}

/// Starts `model` on `turn`; its events go to `tx` tagged with the turn id.
pub fn spawn_turn(
    model: Arc<dyn Model>,
    turn: TurnStart,
    tx: mpsc::Sender<(TurnId, ModelEvent)>,
) -> TurnHandle {
    let (cancel_tx, cancel_rx) = oneshot::channel::<()>();
    let sink = TurnSink::new(turn.turn_id, tx);
    tokio::spawn(async move {
        let mut task = tokio::spawn(model.run(turn, sink.clone()));
        let outcome = tokio::select! {
            joined = &mut task => joined,
            // Sent or dropped: either way the turn is over for the core.
            _ = cancel_rx => {
                task.abort();
                return;
            }
        };
        let last = match outcome {
            Ok(Ok(())) => ModelEvent::Finished,
            Ok(Err(ModelError::Closed)) => return,
            Ok(Err(e)) => ModelEvent::Failed(e.to_string()),
            Err(join) if join.is_panic() => ModelEvent::Failed("model panicked".into()),
            Err(_) => return,
        };
        let _ = sink.emit(last).await;
    });
    TurnHandle { _cancel: cancel_tx }
}
