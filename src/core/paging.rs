//! `message.list` paging over a session's messages: which slice a page request selects, bounded
//! in items (a default and a maximum) and in encoded bytes.

use std::ops::Range;

use super::error::CoreError;
use super::session::Message;
use crate::protocol::limits::{encoded_len, DEFAULT_PAGE_ITEMS, MAX_PAGE_BYTES, MAX_PAGE_ITEMS};
use crate::protocol::methods::PageRequest;

/// Bytes a message adds to a page besides its content and tool params: ids, times and names.
const MESSAGE_OVERHEAD: usize = 320;

/// About what `m` adds to an encoded page: its text as JSON strings plus the fixed fields.
pub fn encoded_cost(m: &Message) -> usize {
    let tool = m.tool.as_ref().map_or(0, |t| {
        encoded_len(&t.params) + encoded_len(&t.call_id) + t.tool_name.len()
    });
    encoded_len(&m.content) + tool + MESSAGE_OVERHEAD
}

/// The slice of `messages` the request selects, and whether more lie beyond it: at most the
/// requested (or default) number of items, never more than [`MAX_PAGE_ITEMS`], and no more than
/// [`MAX_PAGE_BYTES`] of encoded messages, the message nearest the anchor always included. Pages
/// are cut on the far side from the anchor: the oldest ones of a backward page, the newest of a
/// forward one, so paging on from where a page ended misses nothing.
pub fn page(messages: &[Message], req: &PageRequest) -> Result<(Range<usize>, bool), CoreError> {
    let (range, more) = items(messages, req)?;
    let forward = req.after.is_some();
    let mut budget = MAX_PAGE_BYTES;
    let mut taken = 0;
    let in_order: Box<dyn Iterator<Item = &Message>> = if forward {
        Box::new(messages[range.clone()].iter())
    } else {
        Box::new(messages[range.clone()].iter().rev())
    };
    for m in in_order {
        let cost = encoded_cost(m);
        if taken > 0 && cost > budget {
            break;
        }
        budget = budget.saturating_sub(cost);
        taken += 1;
    }
    let cut = taken < range.len();
    let range = if forward {
        range.start..range.start + taken
    } else {
        range.end - taken..range.end
    };
    Ok((range, more || cut))
}

/// The slice by items alone.
fn items(messages: &[Message], req: &PageRequest) -> Result<(Range<usize>, bool), CoreError> {
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
    let limit = req.limit.unwrap_or(DEFAULT_PAGE_ITEMS).min(MAX_PAGE_ITEMS);
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

    #[test]
    fn pages_are_bounded_in_items_and_bytes() {
        let req = |limit, after| PageRequest {
            limit,
            before: None,
            after,
        };
        let many = msgs(1_500);
        assert_eq!(page(&many, &req(None, None)).unwrap(), (1_400..1_500, true));
        assert_eq!(
            page(&many, &req(Some(5_000), None)).unwrap(),
            (500..1_500, true)
        );

        // Five messages of 300 KiB: three fit in 1 MiB. Backward pages keep the newest, forward
        // ones the oldest after the anchor; either way `has_more` says there is more.
        let big: Vec<Message> = msgs(5)
            .into_iter()
            .map(|m| Message {
                content: "x".repeat(300 << 10),
                ..m
            })
            .collect();
        assert_eq!(page(&big, &req(None, None)).unwrap(), (2..5, true));
        assert_eq!(page(&big, &req(None, id(1))).unwrap(), (1..4, true));

        // A message larger than the bound still comes, alone.
        let huge = vec![Message {
            content: "y".repeat(2 << 20),
            ..msgs(1).remove(0)
        }];
        assert_eq!(page(&huge, &req(None, None)).unwrap(), (0..1, false));
        // Escapes count: control characters take six bytes each in JSON.
        let escaped = msgs(4)
            .into_iter()
            .map(|m| Message {
                content: "\u{1}".repeat(100 << 10),
                ..m
            })
            .collect::<Vec<_>>();
        assert_eq!(page(&escaped, &req(None, None)).unwrap(), (3..4, true));
    }
}
