//! A turn's usage over its rounds, as `llm.end` reports it: the rounds' input and output summed,
//! cached and reasoning tokens summed over the rounds that reported them, the context as the last
//! round left it, and which figures are estimates (a round whose server reported no usage is
//! estimated, see `estimate_usage`). Pure.

use super::wire::Usage;
use crate::protocol::usage::{TurnUsage, UsageFigure};

/// The sums so far.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TurnTotals {
    usage: TurnUsage,
}

impl TurnTotals {
    /// Starts a turn whose context budget is `window` tokens.
    pub fn new(window: u64) -> Self {
        TurnTotals {
            usage: TurnUsage {
                context_window: Some(window),
                ..TurnUsage::default()
            },
        }
    }

    /// Adds a round: what its server reported, else `estimate`.
    pub fn add_round(&mut self, reported: Option<Usage>, estimate: impl FnOnce() -> Usage) {
        let u = &mut self.usage;
        let round = match reported {
            Some(r) => {
                if let Some(cached) = r.prompt_tokens_details.cached_tokens {
                    u.cached_input_tokens = Some(add(u.cached_input_tokens, cached));
                }
                if let Some(reasoning) = r.completion_tokens_details.reasoning_tokens {
                    u.reasoning_tokens = Some(add(u.reasoning_tokens, reasoning));
                }
                // The context is the last round's: an earlier estimate no longer counts.
                u.estimated.retain(|f| *f != UsageFigure::ContextTokens);
                r
            }
            None => {
                u.mark_estimated(UsageFigure::InputTokens);
                u.mark_estimated(UsageFigure::OutputTokens);
                u.mark_estimated(UsageFigure::ContextTokens);
                estimate()
            }
        };
        u.input_tokens = u.input_tokens.saturating_add(round.prompt_tokens);
        u.output_tokens = u.output_tokens.saturating_add(round.completion_tokens);
        u.context_tokens = round.prompt_tokens.saturating_add(round.completion_tokens);
    }

    /// The usage to report now.
    pub fn report(&self) -> TurnUsage {
        self.usage.clone()
    }
}

fn add(sum: Option<u64>, more: u64) -> u64 {
    sum.unwrap_or(0).saturating_add(more)
}

#[cfg(test)]
mod tests {
    use super::super::wire::{CompletionDetails, PromptDetails};
    use super::*;

    fn reported(input: u64, output: u64, cached: Option<u64>, reasoning: Option<u64>) -> Usage {
        Usage {
            prompt_tokens: input,
            completion_tokens: output,
            prompt_tokens_details: PromptDetails {
                cached_tokens: cached,
            },
            completion_tokens_details: CompletionDetails {
                reasoning_tokens: reasoning,
            },
        }
    }

    fn never() -> Usage {
        panic!("a reported round is not estimated")
    }

    #[test]
    fn reported_rounds_sum_and_the_context_is_the_last_rounds() {
        let mut t = TurnTotals::new(8192);
        t.add_round(Some(reported(100, 10, Some(64), None)), never);
        t.add_round(Some(reported(130, 5, None, Some(2))), never);
        assert_eq!(
            t.report(),
            TurnUsage {
                input_tokens: 230,
                output_tokens: 15,
                cached_input_tokens: Some(64),
                reasoning_tokens: Some(2),
                context_tokens: 135,
                context_window: Some(8192),
                estimated: vec![],
            }
        );
    }

    #[test]
    fn an_estimated_round_marks_the_sums_and_its_context() {
        let mut t = TurnTotals::new(100);
        t.add_round(None, || reported(7, 3, None, None));
        let u = t.report();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.context_tokens),
            (7, 3, 10)
        );
        assert_eq!(
            u.estimated,
            [
                UsageFigure::InputTokens,
                UsageFigure::OutputTokens,
                UsageFigure::ContextTokens
            ]
        );
        assert_eq!(u.cached_input_tokens, None);
        // A later reported round gives the context exactly; the sums stay estimates.
        t.add_round(Some(reported(20, 1, None, None)), never);
        let u = t.report();
        assert_eq!(
            (u.input_tokens, u.output_tokens, u.context_tokens),
            (27, 4, 21)
        );
        assert_eq!(
            u.estimated,
            [UsageFigure::InputTokens, UsageFigure::OutputTokens]
        );
    }
}
