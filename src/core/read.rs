//! Reads of the history, which lives in the store, not in the core: what the core asks for
//! (`message.list` and `message.get` as a [`Read`], a turn's context as a [`ContextRead`]), the row access a store gives
//! ([`MessageRows`]), and how an answer is cut from those rows. Pure: the rows come through the
//! trait, so the same code runs over SQLite, the memory store and a test's vector.

use std::ops::Range;

use super::effects::HistoryEntry;
use super::error::CoreError;
use super::persist::{MessageRecord, StoredStatus};
use crate::protocol::ids::{MessageId, SessionId};
use crate::protocol::limits::{encoded_len, DEFAULT_PAGE_ITEMS, MAX_PAGE_BYTES, MAX_PAGE_ITEMS};
use crate::protocol::methods::{MessageListResult, PageRequest, Reply};
use crate::protocol::types::{MessagePayload, MessageStatus};

/// Bytes a message adds to a page besides its content and tool params: ids, times and names.
const MESSAGE_OVERHEAD: usize = 320;

/// Which way a scan walks a session's positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first.
    Forward,
    /// Newest first.
    Backward,
}

/// A store's rows could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RowsFailed(pub String);

/// Row access to stored messages, as much as the reads below need.
pub trait MessageRows {
    /// The position of message `id` in `session`, if the session has it.
    fn position(&mut self, session: SessionId, id: MessageId) -> Result<Option<u64>, RowsFailed>;
    /// Visits the messages of `session` whose positions lie in `positions`, in `direction`,
    /// until `visit` returns false.
    fn scan(
        &mut self,
        session: SessionId,
        positions: Range<u64>,
        direction: Direction,
        visit: &mut dyn FnMut(MessageRecord) -> bool,
    ) -> Result<(), RowsFailed>;
}

/// A read the core decided: the session exists and holds `count` messages (positions
/// `0..count`), so rows at or past `count` (a reply still streaming) are never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// `message.list`.
    Page {
        session_id: SessionId,
        count: u64,
        page: PageRequest,
    },
    /// `message.get`.
    Message {
        session_id: SessionId,
        count: u64,
        message_id: String,
    },
}

/// What a turn's model is given: the newest of the session's `count` messages up to
/// `max_bytes` of content (the newest one always), oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextRead {
    pub session_id: SessionId,
    pub count: u64,
    pub max_bytes: usize,
}

impl ContextRead {
    pub fn execute(&self, rows: &mut dyn MessageRows) -> Result<Vec<HistoryEntry>, RowsFailed> {
        let mut newest_first = Vec::new();
        let mut budget = self.max_bytes;
        rows.scan(
            self.session_id,
            0..self.count,
            Direction::Backward,
            &mut |m| {
                if !newest_first.is_empty() && m.content.len() > budget {
                    return false;
                }
                budget = budget.saturating_sub(m.content.len());
                newest_first.push(HistoryEntry {
                    role: m.role,
                    content: m.content,
                });
                true
            },
        )?;
        newest_first.reverse();
        Ok(newest_first)
    }
}

/// Why a read gave no answer: the request names something the session does not have, or the
/// store could not be read.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("reading the history failed: {0}")]
    Rows(#[from] RowsFailed),
}

impl Read {
    /// Runs this read over `rows`: the call's reply.
    pub fn execute(&self, rows: &mut dyn MessageRows) -> Result<Reply, ReadError> {
        match self {
            Read::Page {
                session_id,
                count,
                page: req,
            } => page(rows, *session_id, *count, req).map(Reply::MessageList),
            Read::Message {
                session_id,
                count,
                message_id,
            } => {
                let not_found = || CoreError::MessageNotFound {
                    field: "message_id",
                    id: message_id.clone(),
                };
                let at = find(rows, *session_id, *count, message_id)?.ok_or_else(not_found)?;
                let mut found = None;
                rows.scan(*session_id, at..at + 1, Direction::Forward, &mut |m| {
                    found = Some(payload(m));
                    false
                })?;
                Ok(Reply::Message(found.ok_or_else(not_found)?))
            }
        }
    }
}

/// The payload clients see for a stored row. Rows below the session's count are never
/// streaming (a checkpointed reply a crash cut short is marked interrupted at start-up); should
/// one be, it is shown as what it is: cut short.
pub fn payload(m: MessageRecord) -> MessagePayload {
    MessagePayload {
        id: m.id,
        session_id: m.session_id,
        turn_id: m.turn_id,
        role: m.role,
        content: m.content,
        created_at: m.created_at,
        status: match m.status {
            StoredStatus::Complete => MessageStatus::Complete,
            StoredStatus::Interrupted | StoredStatus::Streaming => MessageStatus::Interrupted,
        },
        tool: m.tool,
        author: m.author,
    }
}

/// About what `m` adds to an encoded page: its text as JSON strings plus the fixed fields.
pub fn encoded_cost(m: &MessageRecord) -> usize {
    let tool = m.tool.as_ref().map_or(0, |t| {
        encoded_len(&t.params) + encoded_len(&t.call_id) + t.tool_name.len()
    });
    encoded_len(&m.content) + tool + MESSAGE_OVERHEAD
}

/// The position of the message `raw` names, if it is one of the session's first `count`.
fn find(
    rows: &mut dyn MessageRows,
    session: SessionId,
    count: u64,
    raw: &str,
) -> Result<Option<u64>, ReadError> {
    let Some(id) = MessageId::parse(raw) else {
        return Ok(None);
    };
    Ok(rows.position(session, id)?.filter(|p| *p < count))
}

/// `message.list`: at most the requested (or default) number of items, never more than
/// [`MAX_PAGE_ITEMS`], and no more than [`MAX_PAGE_BYTES`] of encoded messages, the message
/// nearest the anchor always included. Pages are cut on the far side from the anchor: the oldest
/// ones of a backward page, the newest of a forward one, so paging on from where a page ended
/// misses nothing. Rows past the cut are never read.
fn page(
    rows: &mut dyn MessageRows,
    session: SessionId,
    count: u64,
    req: &PageRequest,
) -> Result<MessageListResult, ReadError> {
    let (range, more) = items(rows, session, count, req)?;
    let direction = if req.after.is_some() {
        Direction::Forward
    } else {
        Direction::Backward
    };
    let mut budget = MAX_PAGE_BYTES;
    let mut taken: Vec<MessageRecord> = Vec::new();
    let mut cut = false;
    rows.scan(session, range.clone(), direction, &mut |m| {
        let cost = encoded_cost(&m);
        if !taken.is_empty() && cost > budget {
            cut = true;
            return false;
        }
        budget = budget.saturating_sub(cost);
        taken.push(m);
        true
    })?;
    if direction == Direction::Backward {
        taken.reverse();
    }
    Ok(MessageListResult {
        messages: taken.into_iter().map(payload).collect(),
        has_more: more || cut,
    })
}

/// The positions a page covers by items alone, and whether more lie beyond them.
fn items(
    rows: &mut dyn MessageRows,
    session: SessionId,
    n: u64,
    req: &PageRequest,
) -> Result<(Range<u64>, bool), ReadError> {
    let mut anchor = |field: &'static str, raw: &str| -> Result<u64, ReadError> {
        find(rows, session, n, raw)?.ok_or_else(|| {
            ReadError::Core(CoreError::MessageNotFound {
                field,
                id: raw.to_owned(),
            })
        })
    };
    let limit = req.limit.unwrap_or(DEFAULT_PAGE_ITEMS).min(MAX_PAGE_ITEMS) as u64;
    if let Some(after) = &req.after {
        let start = anchor("after", after)? + 1;
        let end = start.saturating_add(limit).min(n);
        return Ok((start..end, end < n));
    }
    let end = match &req.before {
        Some(before) => anchor("before", before)?,
        None => n,
    };
    let start = end.saturating_sub(limit);
    Ok((start..end, start > 0))
}

/// Rows held in a vector, in any order: for tests, and for the memory store.
#[derive(Debug, Default, Clone)]
pub struct VecRows(pub Vec<MessageRecord>);

impl MessageRows for VecRows {
    fn position(&mut self, session: SessionId, id: MessageId) -> Result<Option<u64>, RowsFailed> {
        Ok(self
            .0
            .iter()
            .find(|m| m.id == id && m.session_id == session)
            .map(|m| m.position))
    }

    fn scan(
        &mut self,
        session: SessionId,
        positions: Range<u64>,
        direction: Direction,
        visit: &mut dyn FnMut(MessageRecord) -> bool,
    ) -> Result<(), RowsFailed> {
        let mut found: Vec<&MessageRecord> = self
            .0
            .iter()
            .filter(|m| m.session_id == session && positions.contains(&m.position))
            .collect();
        found.sort_by_key(|m| m.position);
        if direction == Direction::Backward {
            found.reverse();
        }
        for m in found {
            if !visit(m.clone()) {
                break;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::types::Role;

    fn session() -> SessionId {
        SessionId(uuid::Uuid::from_u128(0xabc))
    }

    fn record(i: u128, content: String) -> MessageRecord {
        MessageRecord {
            id: MessageId(uuid::Uuid::from_u128(i)),
            session_id: session(),
            position: (i - 1) as u64,
            turn_id: None,
            role: Role::User,
            content,
            created_at: time::OffsetDateTime::UNIX_EPOCH,
            status: StoredStatus::Complete,
            tool: None,
            author: None,
        }
    }

    fn rows(n: u128) -> VecRows {
        VecRows((1..=n).map(|i| record(i, i.to_string())).collect())
    }

    fn id(i: u128) -> Option<String> {
        Some(MessageId(uuid::Uuid::from_u128(i)).to_string())
    }

    /// The page as positions (0-based) and `has_more`.
    fn run(
        rows: &mut VecRows,
        count: u64,
        req: PageRequest,
    ) -> Result<(Vec<u64>, bool), ReadError> {
        let read = Read::Page {
            session_id: session(),
            count,
            page: req,
        };
        let Reply::MessageList(p) = read.execute(rows)? else {
            panic!("a page")
        };
        let positions = p
            .messages
            .iter()
            .map(|m| m.id.0.as_u128() as u64 - 1)
            .collect();
        Ok((positions, p.has_more))
    }

    fn req(limit: Option<usize>, before: Option<String>, after: Option<String>) -> PageRequest {
        PageRequest {
            limit,
            before,
            after,
        }
    }

    #[test]
    fn pages() {
        let mut m = rows(5);
        let cases = [
            (req(None, None, None), 0..5, false),
            (req(Some(2), None, None), 3..5, true),
            (req(Some(9), None, None), 0..5, false),
            (req(Some(2), id(4), None), 1..3, true),
            (req(Some(2), id(2), None), 0..1, false),
            (req(None, id(1), None), 0..0, false),
            (req(Some(2), None, id(1)), 1..3, true),
            (req(Some(2), None, id(3)), 3..5, false),
            (req(None, None, id(5)), 5..5, false),
        ];
        for (r, range, more) in cases {
            let got = run(&mut m, 5, r.clone()).unwrap();
            assert_eq!(got, (range.collect(), more), "{r:?}");
        }
        for (anchor, field) in [
            (req(None, id(77), None), "before"),
            (req(None, None, Some("x".into())), "after"),
        ] {
            let err = run(&mut m, 5, anchor).unwrap_err();
            assert!(
                matches!(err, ReadError::Core(CoreError::MessageNotFound { field: f, .. }) if f == field),
                "{err:?}"
            );
        }
    }

    #[test]
    fn rows_at_or_past_the_count_are_never_shown() {
        // Six rows stored, the core counts five: the sixth is a reply still streaming.
        let mut m = rows(6);
        assert_eq!(
            run(&mut m, 5, req(None, None, None)).unwrap(),
            ((0..5).collect(), false)
        );
        let err = run(&mut m, 5, req(None, id(6), None)).unwrap_err();
        assert!(matches!(
            err,
            ReadError::Core(CoreError::MessageNotFound { .. })
        ));
        let get = Read::Message {
            session_id: session(),
            count: 5,
            message_id: id(6).unwrap(),
        };
        assert!(get.execute(&mut m).is_err());
        let get = Read::Message {
            session_id: session(),
            count: 5,
            message_id: id(5).unwrap(),
        };
        let Ok(Reply::Message(got)) = get.execute(&mut m) else {
            panic!()
        };
        assert_eq!(got.content, "5");
    }

    #[test]
    fn pages_are_bounded_in_items_and_bytes() {
        let mut many = rows(1_500);
        assert_eq!(
            run(&mut many, 1_500, req(None, None, None)).unwrap(),
            ((1_400..1_500).collect(), true)
        );
        assert_eq!(
            run(&mut many, 1_500, req(Some(5_000), None, None)).unwrap(),
            ((500..1_500).collect(), true)
        );

        // Five messages of 300 KiB: three fit in 1 MiB. Backward pages keep the newest, forward
        // ones the oldest after the anchor; either way `has_more` says there is more.
        let mut big = VecRows((1..=5).map(|i| record(i, "x".repeat(300 << 10))).collect());
        assert_eq!(
            run(&mut big, 5, req(None, None, None)).unwrap(),
            ((2..5).collect(), true)
        );
        assert_eq!(
            run(&mut big, 5, req(None, None, id(1))).unwrap(),
            ((1..4).collect(), true)
        );

        // A message larger than the bound still comes, alone.
        let mut huge = VecRows(vec![record(1, "y".repeat(2 << 20))]);
        assert_eq!(
            run(&mut huge, 1, req(None, None, None)).unwrap(),
            (vec![0], false)
        );
        // Escapes count: control characters take six bytes each in JSON.
        let mut escaped = VecRows(
            (1..=4)
                .map(|i| record(i, "\u{1}".repeat(100 << 10)))
                .collect(),
        );
        assert_eq!(
            run(&mut escaped, 4, req(None, None, None)).unwrap(),
            (vec![3], true)
        );
    }

    #[test]
    fn a_context_is_the_newest_messages_within_its_bytes_oldest_first() {
        let m = VecRows(
            (1..=4)
                .map(|i| record(i, "z".repeat(10 * i as usize)))
                .collect(),
        );
        let context = |max_bytes| {
            let read = ContextRead {
                session_id: session(),
                count: 4,
                max_bytes,
            };
            let c = read.execute(&mut m.clone()).unwrap();
            c.iter().map(|h| h.content.len()).collect::<Vec<_>>()
        };
        assert_eq!(context(1 << 20), [10, 20, 30, 40]);
        assert_eq!(context(70), [30, 40]);
        assert_eq!(context(5), [40], "the newest is always given");
    }
}
