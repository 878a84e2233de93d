//! Drives one turn of a model as a tokio task: waits for the turn's history (read from the store
//! on the store's thread), runs the model on it, reports `Finished`/`Failed` when the model
//! returns (or panics, or the history cannot be read), and stops it at once when its handle is
//! cancelled or dropped.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::context::{Context, Held};
use super::queue::ModelSender;
use super::{Model, ModelError, TurnSink};
use crate::core::{ModelEvent, TurnStart, Verdict};
use crate::protocol::clients::ClientToolSpec;
use crate::protocol::ids::{SessionId, TurnId};

/// Owning this keeps the turn's model running; dropping it (or `cancel`) stops it.
#[derive(Debug)]
pub struct TurnHandle {
    _cancel: oneshot::Sender<()>,
    verdicts: mpsc::UnboundedSender<(String, Verdict)>,
}

impl TurnHandle {
    pub fn cancel(self) {}

    /// Tells the turn's model what becomes of its tool call `call_id`.
    pub fn verdict(&self, call_id: String, verdict: Verdict) {
        // A turn whose task is gone has nobody to tell.
        let _ = self.verdicts.send((call_id, verdict));
    }
}

/// Starts `model` on turn `turn_id` once its history is fetched (see [`Context::fetch`]); its
/// events go to `tx` tagged with the turn id.
pub fn spawn_turn(
    model: Arc<dyn Model>,
    turn_id: TurnId,
    session_id: SessionId,
    system_prompt: Option<String>,
    context: Context,
    client_tools: Arc<[ClientToolSpec]>,
    tx: ModelSender,
) -> TurnHandle {
    let (cancel_tx, mut cancel_rx) = oneshot::channel::<()>();
    // One verdict per tool call the core is told of: bounded by the calls the model makes.
    let (verdicts_tx, verdicts) = mpsc::unbounded_channel();
    let sink = TurnSink::new(turn_id, tx, verdicts);
    tokio::spawn(async move {
        let fetched = tokio::select! {
            fetched = context.fetch() => fetched,
            _ = &mut cancel_rx => return,
        };
        // The room stays taken while the model runs: it holds the history.
        let Held {
            history,
            room: _room,
        } = match fetched {
            Ok(held) => held,
            Err(e) => {
                let _ = sink.emit(ModelEvent::Failed(e)).await;
                return;
            }
        };
        let turn = TurnStart {
            turn_id,
            session_id,
            history,
            client_tools,
            system_prompt,
        };
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
    TurnHandle {
        _cancel: cancel_tx,
        verdicts: verdicts_tx,
    }
}
