//! Model providers behind one trait, and the runner that drives one turn of a model as a task
//! that can be cancelled. The core never sees a provider: it sees `ModelEvent`s for a turn.

pub mod context;
pub mod echo;
pub mod openai;
pub mod probe;
pub mod queue;
pub mod registry;
pub mod runner;

use std::future::Future;
use std::pin::Pin;

use tokio::sync::mpsc;

use std::sync::Arc;

use queue::ModelSender;

use crate::core::{ModelEvent, TurnStart, Verdict};
use crate::protocol::ids::TurnId;
use crate::tools::ToolOutcome;

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

/// Where a running model reports its turn's output, and learns what becomes of its tool calls.
/// Sending waits when the core is behind, which slows the model rather than growing a queue.
#[derive(Debug, Clone)]
pub struct TurnSink {
    turn_id: TurnId,
    tx: ModelSender,
    /// What the core decided for each tool call started (`TurnEffect::Verdict`).
    verdicts: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, Verdict)>>>,
}

impl TurnSink {
    pub fn new(
        turn_id: TurnId,
        tx: ModelSender,
        verdicts: mpsc::UnboundedReceiver<(String, Verdict)>,
    ) -> Self {
        TurnSink {
            turn_id,
            tx,
            verdicts: Arc::new(tokio::sync::Mutex::new(verdicts)),
        }
    }

    pub fn turn_id(&self) -> TurnId {
        self.turn_id
    }

    pub async fn emit(&self, event: ModelEvent) -> Result<(), ModelError> {
        self.tx
            .send(self.turn_id, event)
            .await
            .map_err(|_| ModelError::Closed)
    }

    /// One tool call, start to end: `tool.start`, then whatever the core decides (the policy,
    /// a person's approval or answer — this waits for it), `run` only if it may run, and
    /// `tool.end`. Returns what the model is to be told.
    pub async fn call_tool<F, Fut>(
        &self,
        call_id: &str,
        tool_name: &str,
        params: &str,
        run: F,
    ) -> Result<ToolOutcome, ModelError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ToolOutcome>,
    {
        self.emit(ModelEvent::ToolStart {
            call_id: call_id.into(),
            tool_name: tool_name.to_owned(),
            params: params.to_owned(),
        })
        .await?;
        let outcome = match self.verdict_for(call_id).await? {
            Verdict::Run => run().await,
            Verdict::Refuse(result) => ToolOutcome {
                is_error: true,
                result,
            },
            Verdict::Answer(result) => ToolOutcome {
                is_error: false,
                result,
            },
            Verdict::Result { is_error, result } => ToolOutcome { is_error, result },
        };
        self.emit(ModelEvent::ToolEnd {
            call_id: call_id.into(),
            is_error: outcome.is_error,
            result: outcome.result.clone(),
        })
        .await?;
        Ok(outcome)
    }

    /// Waits for the core's verdict on `call_id` (an older call's, should one come, is stale).
    async fn verdict_for(&self, call_id: &str) -> Result<Verdict, ModelError> {
        let mut verdicts = self.verdicts.lock().await;
        loop {
            match verdicts.recv().await {
                Some((id, verdict)) if id == call_id => return Ok(verdict),
                Some(_) => continue,
                None => return Err(ModelError::Closed),
            }
        }
    }
}
