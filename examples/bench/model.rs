//! The benchmark's model: streams fixed-size tokens that start with their emission time, so a
//! subscriber can tell how long each token took to reach it. Its instructions come in the user
//! message (`bench n=20000 rate=0 pad=16`), written by [`TurnPlan::prompt`] on the driving side.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::MissedTickBehavior;
use zcoord::core::{ModelEvent, TurnStart};
use zcoord::model::{BoxFuture, Model, ModelError, TurnSink};
use zcoord::protocol::types::Role;
use zcoord::protocol::usage::TurnUsage;

/// Digits of the timestamp every token starts with: nanoseconds since the epoch fit in 19.
pub const STAMP_DIGITS: usize = 19;

/// What one turn of the bench model does.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TurnPlan {
    /// Tokens to stream.
    pub tokens: u64,
    /// Tokens per second; 0 streams as fast as the core takes them.
    pub rate: f64,
    /// Filler characters after the timestamp, fixing the token's size.
    pub pad: usize,
    /// Ask a person a question (`ask_user`) before streaming: the answer is awaited.
    pub ask: bool,
}

impl TurnPlan {
    /// The user message that asks the model for this plan.
    pub fn prompt(&self) -> String {
        format!(
            "bench n={} rate={} pad={} ask={}",
            self.tokens, self.rate, self.pad, self.ask as u8
        )
    }

    /// Reads a prompt written by [`TurnPlan::prompt`].
    pub fn parse(prompt: &str) -> Option<TurnPlan> {
        let mut words = prompt.split_whitespace();
        if words.next()? != "bench" {
            return None;
        }
        let mut plan = TurnPlan {
            tokens: 0,
            rate: 0.0,
            pad: 0,
            ask: false,
        };
        for word in words {
            match word.split_once('=')? {
                ("n", v) => plan.tokens = v.parse().ok()?,
                ("rate", v) => plan.rate = v.parse().ok()?,
                ("pad", v) => plan.pad = v.parse().ok()?,
                ("ask", v) => plan.ask = v == "1",
                _ => return None,
            }
        }
        Some(plan)
    }

    /// Bytes in each token's text.
    pub fn token_len(&self) -> usize {
        STAMP_DIGITS + self.pad
    }
}

/// Nanoseconds since the Unix epoch: both processes run on one machine, so one process's stamp
/// can be compared with the other's clock.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A token's text: the current time, then `pad` filler characters.
pub fn stamped_token(pad: &str) -> String {
    let mut text = format!("{:0width$}", now_ns(), width = STAMP_DIGITS);
    text.push_str(pad);
    text
}

pub struct BenchModel;

impl Model for BenchModel {
    fn name(&self) -> String {
        "bench".into()
    }

    fn run(&self, turn: TurnStart, sink: TurnSink) -> BoxFuture<Result<(), ModelError>> {
        Box::pin(async move {
            let plan = turn
                .history
                .iter()
                .rev()
                .find(|h| h.role == Role::User)
                .and_then(|h| TurnPlan::parse(&h.content))
                .ok_or_else(|| ModelError::Failed("not a bench prompt".into()))?;
            if plan.ask {
                let question = r#"{"question": "go on?"}"#;
                // Never run: a person answers it.
                sink.call_tool("call_1", "ask_user", question, || async {
                    zcoord::tools::ToolOutcome {
                        is_error: true,
                        result: "ask_user is not run by the server".into(),
                    }
                })
                .await?;
            }
            let pad = "x".repeat(plan.pad);
            // Missed ticks are caught up in a burst, so the average rate holds even when a
            // tick comes late.
            let mut pace = (plan.rate > 0.0).then(|| {
                let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / plan.rate));
                ticks.set_missed_tick_behavior(MissedTickBehavior::Burst);
                ticks
            });
            for _ in 0..plan.tokens {
                if let Some(ticks) = pace.as_mut() {
                    ticks.tick().await;
                }
                sink.emit(ModelEvent::Token(stamped_token(&pad))).await?;
            }
            sink.emit(ModelEvent::Usage(TurnUsage {
                output_tokens: plan.tokens,
                context_tokens: plan.tokens,
                ..TurnUsage::default()
            }))
            .await?;
            // Returning Ok makes the runner report `ModelEvent::Finished`.
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_round_trips() {
        let plan = TurnPlan {
            tokens: 20_000,
            rate: 500.0,
            pad: 16,
            ask: false,
        };
        assert_eq!(plan.prompt(), "bench n=20000 rate=500 pad=16");
        assert_eq!(TurnPlan::parse(&plan.prompt()), Some(plan));
        assert_eq!(TurnPlan::parse("hello"), None);
        assert_eq!(TurnPlan::parse("bench n=x"), None);
        assert_eq!(stamped_token("xx").len(), STAMP_DIGITS + 2);
    }
}
