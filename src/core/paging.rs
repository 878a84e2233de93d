//! `message.list` paging over a session's messages: which slice a page request selects.

use std::ops::Range;

use super::error::CoreError;
use super::session::Message;
use crate::protocol::methods::PageRequest;

/// The slice of `messages` the request selects, and whether more lie beyond it.
pub fn page(messages: &[Message], req: &PageRequest) -> Result<(Range<usize>, bool), CoreError> {
    let find = |field: &'static str, raw: &str| {
        messages
            .iter()
            .position(|m| m.id.to_string() == raw)
            .ok_or_else(|| CoreError::MessageNotFound {
                field,
                id: raw.to_owned(),
            })
    };
    let n = messages.len();
    let limit = req.limit.unwrap_or(usize::MAX);
    if let Some(after) = &req.after {
        let start = find("after", after)? + 1;
        let end = start.saturating_add(limit).min(n);
        return Ok((start..end, end < n));
    }
    let end = match &req.before {
        Some(before) => find("before", before)?,
        None => n,
    };
    let start = end.saturating_sub(limit);
    Ok((start..end, start > 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ids::MessageId;
    use crate::protocol::types::{MessageStatus, Role};

    fn msgs(n: u128) -> Vec<Message> {
        (1..=n)
            .map(|i| Message {
                id: MessageId(uuid::Uuid::from_u128(i)),
                turn_id: None,
                role: Role::User,
                content: i.to_string(),
                created_at: time::OffsetDateTime::UNIX_EPOCH,
                status: MessageStatus::Complete,
                tool: None,
            })
            .collect()
    }

    fn id(i: u128) -> Option<String> {
        Some(MessageId(uuid::Uuid::from_u128(i)).to_string())
    }

    #[test]
    fn pages() {
        let m = msgs(5);
        let req = |limit, before, after| PageRequest {
            limit,
            before,
            after,
        };
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
            assert_eq!(page(&m, &r).unwrap(), (range.clone(), more), "{r:?}");
        }
        let unknown = page(&m, &req(None, id(77), None)).unwrap_err();
        assert!(matches!(
            unknown,
            CoreError::MessageNotFound {
                field: "before",
                ..
            }
        ));
    }
}
