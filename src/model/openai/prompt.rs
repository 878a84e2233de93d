//! The conversation a turn starts from: the system prompt, then the session's messages trimmed
//! from the oldest end to the context budget, and the token estimate used for that budget and
//! for usage when a server reports none. Pure: no I/O.

use super::wire::{Message, MessageRole};
use crate::core::HistoryEntry;
use crate::protocol::types::Role;

/// Estimated tokens for `chars` characters: one token per four characters, rounded up. Crude,
/// but the same for every model and never zero for a non-empty text.
pub fn estimate_tokens(chars: usize) -> u64 {
    chars.div_ceil(4) as u64
}

/// Estimated tokens of a list of messages (per message, so each counts at least one).
pub fn estimate_messages(messages: &[Message]) -> u64 {
    messages
        .iter()
        .map(|m| estimate_tokens(m.char_count()))
        .sum()
}

/// The opening messages of a turn. Oldest history entries are dropped while the estimate
/// (system prompt included) exceeds `budget_tokens`; the last user message and everything after
/// it are always kept, even over budget. After trimming, assistant messages left at the front
/// are dropped too, since many chat templates want the conversation to open with the user.
///
/// Tool messages of earlier turns are left out: the API only takes a tool result right after
/// the assistant message that made the call, and the history does not carry the calls.
pub fn conversation(
    system_prompt: Option<&str>,
    history: &[HistoryEntry],
    budget_tokens: usize,
) -> Vec<Message> {
    let history: Vec<&HistoryEntry> = history.iter().filter(|h| h.role != Role::Tool).collect();
    let system = system_prompt
        .filter(|s| !s.is_empty())
        .map(|s| Message::text(MessageRole::System, s));
    let cost = |h: &&HistoryEntry| estimate_tokens(h.content.chars().count());
    let keep_from = history
        .iter()
        .rposition(|h| h.role == Role::User)
        .unwrap_or(0);

    let mut total: u64 = system
        .as_ref()
        .map_or(0, |s| estimate_tokens(s.char_count()))
        + history.iter().map(cost).sum::<u64>();
    let mut start = 0;
    while start < keep_from && total > budget_tokens as u64 {
        total -= cost(&history[start]);
        start += 1;
    }
    if start > 0 {
        while start < keep_from && history[start].role == Role::Assistant {
            start += 1;
        }
    }

    system
        .into_iter()
        .chain(history[start..].iter().map(|h| {
            let role = match h.role {
                Role::User => MessageRole::User,
                // Tool entries were left out above.
                Role::Assistant | Role::Tool => MessageRole::Assistant,
            };
            Message::text(role, h.content.clone())
        }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(role: Role, content: &str) -> HistoryEntry {
        HistoryEntry {
            role,
            content: content.into(),
        }
    }

    fn texts(messages: &[Message]) -> Vec<&str> {
        messages
            .iter()
            .map(|m| m.content.as_deref().unwrap_or(""))
            .collect()
    }

    /// Four characters per token: "aaaa" is 1, "aaaaaaaa" is 2.
    fn history() -> Vec<HistoryEntry> {
        vec![
            entry(Role::User, "u1u1u1u1"),
            entry(Role::Assistant, "a1a1a1a1"),
            entry(Role::User, "u2u2u2u2"),
            entry(Role::Assistant, "a2a2a2a2"),
            entry(Role::User, "u3u3u3u3"),
        ]
    }

    #[test]
    fn estimate_rounds_up() {
        assert_eq!(estimate_tokens(0), 0);
        assert_eq!(estimate_tokens(1), 1);
        assert_eq!(estimate_tokens(4), 1);
        assert_eq!(estimate_tokens(5), 2);
    }

    #[test]
    fn everything_fits_within_budget() {
        let m = conversation(Some("sys!"), &history(), 11);
        assert_eq!(
            texts(&m),
            ["sys!", "u1u1u1u1", "a1a1a1a1", "u2u2u2u2", "a2a2a2a2", "u3u3u3u3"]
        );
        assert_eq!(m[0].role, MessageRole::System);
        assert_eq!(m[2].role, MessageRole::Assistant);
    }

    #[test]
    fn oldest_messages_go_first_and_the_front_stays_a_user_message() {
        // 11 tokens in all; a budget of 9 drops u1 (2), which would leave a1 in front: dropped too.
        let m = conversation(Some("sys!"), &history(), 9);
        assert_eq!(texts(&m), ["sys!", "u2u2u2u2", "a2a2a2a2", "u3u3u3u3"]);
        let m = conversation(None, &history(), 6);
        assert_eq!(texts(&m), ["u2u2u2u2", "a2a2a2a2", "u3u3u3u3"]);
    }

    #[test]
    fn the_last_user_message_is_kept_even_over_budget() {
        let m = conversation(Some("sys!"), &history(), 0);
        assert_eq!(texts(&m), ["sys!", "u3u3u3u3"]);
        let long = vec![entry(Role::User, &"x".repeat(1000))];
        assert_eq!(conversation(None, &long, 1).len(), 1);
    }

    #[test]
    fn tool_messages_of_earlier_turns_are_left_out() {
        let mut h = history();
        h.insert(2, entry(Role::Tool, "2024-01-01T00:00:00Z"));
        let m = conversation(None, &h, 100);
        assert_eq!(m.len(), 5);
        assert!(m.iter().all(|m| m.role != MessageRole::Tool));
    }

    #[test]
    fn empty_history_and_empty_system_prompt() {
        assert!(conversation(Some(""), &[], 10).is_empty());
    }
}
