//! Model providers behind one trait, and the runner that drives one turn of a model as a task
//! that can be cancelled. The core never sees a provider: it sees `ModelEvent`s for a turn.

pub mod context;
pub mod echo;
pub mod openai;
pub mod runner;
pub mod tool_call;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use crate::core::{ModelEvent, TurnStart};
use crate::protocol::ids::TurnId;

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Why a model could not finish a turn; becomes `llm.end {reason: "error", error}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{0}")]
    Failed(String),
    /// The core stopped listening (shutdown); the turn is over anyway.
    #[error("turn output channel closed")]
    Closed,
}

/// A model provider. `run` streams the turn's output through `sink` and returns when the turn is
/// complete; it may be dropped at any await point (interrupt), so it must hold no state that
/// needs cleaning up.
pub trait Model: Send + Sync + 'static {
    /// Name shown in `instance.info`, e.g. `echo`.
    fn name(&self) -> String;
    /// Most bytes of the session's newest messages a turn is given (see
    /// `CoreConfig::context_bytes`): what the model can use of a history, read from the store.
    fn context_bytes(&self) -> usize {
        crate::protocol::limits::DEFAULT_CONTEXT_BYTES
    }
    fn run(&self, turn: TurnStart, sink: TurnSink) -> BoxFuture<Result<(), ModelError>>;
}

/// Where a running model reports its turn's output. Sending waits when the core is behind,
/// which slows the model rather than growing a queue.
#[derive(Debug, Clone)]
pub struct TurnSink {
    turn_id: TurnId,
    tx: mpsc::Sender<(TurnId, ModelEvent)>,
}

impl TurnSink {
    pub fn new(turn_id: TurnId, tx: mpsc::Sender<(TurnId, ModelEvent)>) -> Self {
        TurnSink { turn_id, tx }
    }

    pub fn turn_id(&self) -> TurnId {
        self.turn_id
    }

    pub async fn emit(&self, event: ModelEvent) -> Result<(), ModelError> {
        self.tx
            .send((self.turn_id, event))
            .await
            .map_err(|_| ModelError::Closed)
    }
}
