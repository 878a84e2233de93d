//! One tool call of a model's turn, the same for every provider: `tool.start`, the run, then
//! `tool.end`. Every model runs its tools through [`call_tool`], so what stands between a call
//! and its run (the tool policy, a person's approval) has one place to go: between the two
//! events.

use super::{ModelError, TurnSink};
use crate::core::ModelEvent;
use crate::tools::{ToolOutcome, Tools};

/// Reports the call, runs it, reports its end, and returns the outcome for the model.
pub async fn call_tool(
    tools: &Tools,
    sink: &TurnSink,
    call_id: String,
    name: &str,
    args: &str,
) -> Result<ToolOutcome, ModelError> {
    sink.emit(ModelEvent::ToolStart {
        call_id: call_id.clone(),
        tool_name: name.to_owned(),
        params: args.to_owned(),
    })
    .await?;
    let outcome = tools.run(name, args).await;
    sink.emit(ModelEvent::ToolEnd {
        call_id,
        is_error: outcome.is_error,
        result: outcome.result.clone(),
    })
    .await?;
    Ok(outcome)
}
