//! A session as the core holds it: its row, how many messages it has (they live in the store)
//! and whether a turn is running.

use std::collections::{BTreeSet, VecDeque};

use time::OffsetDateTime;

use super::queue::QueuedMessage;
use crate::protocol::ids::{MessageId, SessionId, TurnId};
use crate::protocol::types::{MessageStatus, Role, SessionPayload, SessionStatus, ToolCallInfo};
use crate::protocol::usage::SessionUsage;

/// Longest derived title, in characters.
pub const TITLE_MAX_CHARS: usize = 60;
/// Title of a session created without one.
pub const DEFAULT_TITLE: &str = "New session";

/// A message as the core decides it, on its way to the store and to `message.append`.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: MessageId,
    pub turn_id: Option<TurnId>,
    pub role: Role,
    pub content: String,
    pub created_at: OffsetDateTime,
    pub status: MessageStatus,
    /// Set on `tool` messages: the call this message is the result of.
    pub tool: Option<ToolCallInfo>,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub id: SessionId,
    pub title: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// Messages stored: positions `0..message_count`.
    pub message_count: u64,
    /// The turn running now, if any: a session runs one turn at a time.
    pub running: Option<TurnId>,
    /// Tools approved for the whole session (`approve_session`), kept until it is deleted.
    pub grants: BTreeSet<String>,
    /// The model its turns run unless a message names another (`None`: the default).
    pub model: Option<String>,
    /// Sent to the model in place of its configured system prompt (`None`: the model's own).
    pub system_prompt: Option<String>,
    /// Messages waiting to run as the next turns, oldest first. Non-empty only while a turn
    /// runs (or while the server shuts down, which keeps them for the restart).
    pub queue: VecDeque<QueuedMessage>,
    /// Running token totals over the turns that ended (stored with the session).
    pub usage: SessionUsage,
}

impl Session {
    pub fn new(id: SessionId, title: String, now: OffsetDateTime) -> Self {
        Session {
            id,
            title,
            created_at: now,
            updated_at: now,
            message_count: 0,
            running: None,
            grants: BTreeSet::new(),
            model: None,
            system_prompt: None,
            queue: VecDeque::new(),
            usage: SessionUsage::default(),
        }
    }

    /// Bytes of content queued.
    pub fn queued_bytes(&self) -> usize {
        self.queue.iter().map(|q| q.content.len()).sum()
    }

    pub fn payload(&self) -> SessionPayload {
        SessionPayload {
            id: self.id,
            title: self.title.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            message_count: self.message_count,
            status: if self.running.is_some() {
                SessionStatus::Running
            } else {
                SessionStatus::Idle
            },
            grants: self.grants.iter().cloned().collect(),
            model: self.model.clone(),
            system_prompt: self.system_prompt.clone(),
            queue_length: self.queue.len() as u64,
            usage: self.usage,
        }
    }
}

/// A title from message content: its first non-blank line, trimmed, at most
/// [`TITLE_MAX_CHARS`] characters (cut on a character boundary, marked with `…`).
pub fn title_from(content: &str) -> String {
    let line = content
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(DEFAULT_TITLE);
    clip_title(line)
}

/// A caller-supplied title, trimmed and clipped the same way; blank means the default.
pub fn clip_title(title: &str) -> String {
    let title = title.trim();
    if title.is_empty() {
        return DEFAULT_TITLE.to_owned();
    }
    if title.chars().count() <= TITLE_MAX_CHARS {
        return title.to_owned();
    }
    let mut out: String = title.chars().take(TITLE_MAX_CHARS - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles() {
        assert_eq!(title_from("hello"), "hello");
        assert_eq!(title_from("\n  \n  first line  \nsecond"), "first line");
        assert_eq!(title_from("   "), DEFAULT_TITLE);
        let long = "é".repeat(100);
        let t = title_from(&long);
        assert_eq!(t.chars().count(), TITLE_MAX_CHARS);
        assert!(t.ends_with('…'));
        assert_eq!(clip_title(""), DEFAULT_TITLE);
    }
}
