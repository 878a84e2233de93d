//! Token usage on the wire: what one turn used (`llm.end` `usage`), which of its figures are
//! estimates, and a session's running totals (`SessionPayload.usage`). Only shapes and the sum.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A figure of [`TurnUsage`], named as its field is: listed in `estimated` when the daemon
/// counted it itself instead of reading it from the provider.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum UsageFigure {
    InputTokens,
    OutputTokens,
    ContextTokens,
}

/// What one turn used, as the provider reported it (`llm.end` `usage`). `input_tokens` and
/// `output_tokens` equal the event's `tokens_in` and `tokens_out`. Optional figures are absent
/// when the provider did not report them; they are never estimated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TurnUsage {
    /// Prompt tokens over every request of the turn (a turn with tool calls sends several).
    pub input_tokens: u64,
    pub output_tokens: u64,
    /// Of `input_tokens`, those the provider served from its prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_tokens: Option<u64>,
    /// Of `output_tokens`, those the model spent reasoning (not streamed as text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_tokens: Option<u64>,
    /// Tokens the conversation takes in the model's context after this turn: the last
    /// request's input plus its output.
    pub context_tokens: u64,
    /// Tokens the daemon lets the conversation take, when the provider has such a budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u64>,
    /// The figures above that are the daemon's estimates, in field order.
    #[serde(default)]
    pub estimated: Vec<UsageFigure>,
}

impl TurnUsage {
    /// Marks `figure` as estimated (once, keeping the list in field order).
    pub fn mark_estimated(&mut self, figure: UsageFigure) {
        if let Err(at) = self.estimated.binary_search(&figure) {
            self.estimated.insert(at, figure);
        }
    }
}

/// A session's running totals over its turns that ended with an `llm.end` (a turn a crash cut
/// short adds nothing: its figures died with the process). Absent figures add zero.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SessionUsage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_input_tokens: u64,
    pub reasoning_tokens: u64,
    /// Turns counted.
    pub turns: u64,
}

impl SessionUsage {
    /// No turn counted yet.
    pub fn is_zero(&self) -> bool {
        *self == SessionUsage::default()
    }

    /// Adds one ended turn.
    pub fn add(&mut self, turn: &TurnUsage) {
        self.input_tokens = self.input_tokens.saturating_add(turn.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(turn.output_tokens);
        self.cached_input_tokens = self
            .cached_input_tokens
            .saturating_add(turn.cached_input_tokens.unwrap_or(0));
        self.reasoning_tokens = self
            .reasoning_tokens
            .saturating_add(turn.reasoning_tokens.unwrap_or(0));
        self.turns = self.turns.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimated_figures_are_listed_once_in_field_order() {
        let mut u = TurnUsage::default();
        u.mark_estimated(UsageFigure::ContextTokens);
        u.mark_estimated(UsageFigure::InputTokens);
        u.mark_estimated(UsageFigure::ContextTokens);
        assert_eq!(
            u.estimated,
            [UsageFigure::InputTokens, UsageFigure::ContextTokens]
        );
    }

    #[test]
    fn totals_add_turns_and_saturate() {
        let mut total = SessionUsage::default();
        total.add(&TurnUsage {
            input_tokens: 10,
            output_tokens: 4,
            cached_input_tokens: Some(3),
            ..TurnUsage::default()
        });
        total.add(&TurnUsage {
            input_tokens: u64::MAX,
            output_tokens: 1,
            reasoning_tokens: Some(2),
            ..TurnUsage::default()
        });
        assert_eq!(
            total,
            SessionUsage {
                input_tokens: u64::MAX,
                output_tokens: 5,
                cached_input_tokens: 3,
                reasoning_tokens: 2,
                turns: 2
            }
        );
    }
}
