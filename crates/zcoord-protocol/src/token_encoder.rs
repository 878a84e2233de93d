//! The fast path for `llm.token`, by far the most frequent event: writes its envelope by hand in
//! exactly the bytes serde writes for [`Envelope`](crate::events::Envelope), formatting the ids
//! and the timestamp's whole second only when they change. Decides nothing about the wire format:
//! serde's output is the reference and the tests hold this to it byte for byte; only the token
//! needs escaping, and serde_json does that itself.

use std::io;
use std::sync::Arc;

use serde_json::ser::{CompactFormatter, Formatter};
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use uuid::fmt::Hyphenated;
use uuid::Uuid;

use super::events::{topic, LlmTokenPayload};
use super::ids::{InstanceId, SessionId};

/// Why a token event's envelope could not be written; serde fails on the same inputs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenBodyError {
    /// RFC 3339 has no form for the timestamp: a year outside 0..=9999 or an offset with seconds.
    #[error("timestamp: {0}")]
    Timestamp(#[from] time::error::Format),
    #[error("token: {0}")]
    Token(#[from] serde_json::Error),
    #[error("write: {0}")]
    Write(#[from] io::Error),
}

/// Formatted ids and time kept from one token event to the next: a token stream repeats its
/// instance, session, turn, key and (hundreds of times a second) its whole second.
#[derive(Debug, Default)]
pub(crate) struct TokenEncoder {
    instance: IdText,
    session: IdText,
    turn: IdText,
    /// The key of the last token event's session, shared by every token of the stream.
    key: Option<(SessionId, Arc<str>)>,
    key_scratch: String,
    second: SecondText,
}

impl TokenEncoder {
    /// Appends the envelope of a token event to `out`: the bytes serde writes for it. On an error
    /// `out` holds a partial envelope, to be discarded.
    pub(crate) fn write_body(
        &mut self,
        out: &mut Vec<u8>,
        seq: u64,
        timestamp: OffsetDateTime,
        instance_id: InstanceId,
        p: &LlmTokenPayload,
    ) -> Result<(), TokenBodyError> {
        out.extend_from_slice(b"{\"seq\":");
        CompactFormatter.write_u64(out, seq)?;
        out.extend_from_slice(b",\"instance_id\":\"");
        out.extend_from_slice(self.instance.get(instance_id.0).as_bytes());
        out.extend_from_slice(b"\",\"topic\":\"");
        out.extend_from_slice(topic::LLM_TOKEN.as_bytes());
        out.extend_from_slice(b"\",\"session_id\":\"");
        let session = self.session.get(p.session_id.0).as_bytes();
        out.extend_from_slice(session);
        out.extend_from_slice(b"\",\"timestamp\":\"");
        self.write_timestamp(out, timestamp)?;
        out.extend_from_slice(b"\",\"payload\":{\"session_id\":\"");
        out.extend_from_slice(self.session.text.as_bytes());
        out.extend_from_slice(b"\",\"turn_id\":\"");
        out.extend_from_slice(self.turn.get(p.turn_id.0).as_bytes());
        out.extend_from_slice(b"\",\"index\":");
        CompactFormatter.write_u64(out, p.index)?;
        out.extend_from_slice(b",\"token\":");
        serde_json::to_writer(&mut *out, p.token.as_str())?;
        out.extend_from_slice(b"}}");
        Ok(())
    }

    /// Frame 1 of a token event of `session_id`: `llm.token/<session_id>`, the same `Arc` for
    /// every token while the session does not change.
    pub(crate) fn key(&mut self, session_id: SessionId) -> Arc<str> {
        if let Some((id, key)) = &self.key {
            if *id == session_id {
                return key.clone();
            }
        }
        self.key_scratch.clear();
        self.key_scratch.push_str(topic::LLM_TOKEN);
        self.key_scratch.push('/');
        self.key_scratch.push_str(self.session.get(session_id.0));
        let key: Arc<str> = Arc::from(self.key_scratch.as_str());
        self.key = Some((session_id, key.clone()));
        key
    }

    /// What `time::serde::rfc3339` writes: `YYYY-MM-DDTHH:MM:SS`, then `.` and the nanoseconds
    /// without their trailing zeros unless there are none, then `Z` for UTC. Anything but UTC in
    /// years 0..=9999 (never the case for `now_utc()`) goes to `time`'s formatter.
    fn write_timestamp(
        &mut self,
        out: &mut Vec<u8>,
        timestamp: OffsetDateTime,
    ) -> Result<(), time::error::Format> {
        if !timestamp.offset().is_utc() || !(0..=9999).contains(&timestamp.year()) {
            timestamp.format_into(out, &Rfc3339)?;
            return Ok(());
        }
        let (date, hms) = (timestamp.date(), timestamp.to_hms());
        if self.second.date != date || self.second.hms != hms {
            self.second = SecondText::new(date, hms);
        }
        out.extend_from_slice(&self.second.text);
        let nanos = timestamp.nanosecond();
        if nanos != 0 {
            let mut digits = [0; 9];
            put_digits(&mut digits, nanos);
            let trailing_zeros = digits.iter().rev().take_while(|&&d| d == b'0').count();
            out.push(b'.');
            out.extend_from_slice(&digits[..digits.len() - trailing_zeros]);
        }
        out.push(b'Z');
        Ok(())
    }
}

/// A UUID and its text as serde and `Display` write it (hyphenated, lowercase), formatted again
/// only when a different id comes.
#[derive(Debug)]
struct IdText {
    id: Uuid,
    text: String,
}

impl Default for IdText {
    fn default() -> Self {
        let id = Uuid::nil();
        IdText {
            id,
            text: id.hyphenated().to_string(),
        }
    }
}

impl IdText {
    fn get(&mut self, id: Uuid) -> &str {
        if self.id != id {
            self.id = id;
            self.text.clear();
            self.text
                .push_str(id.hyphenated().encode_lower(&mut [0; Hyphenated::LENGTH]));
        }
        &self.text
    }
}

/// A UTC timestamp's whole second as RFC 3339 writes it: `YYYY-MM-DDTHH:MM:SS`.
#[derive(Debug)]
struct SecondText {
    date: Date,
    hms: (u8, u8, u8),
    text: [u8; 19],
}

impl Default for SecondText {
    fn default() -> Self {
        SecondText::new(OffsetDateTime::UNIX_EPOCH.date(), (0, 0, 0))
    }
}

impl SecondText {
    /// `date`'s year must be in 0..=9999.
    fn new(date: Date, hms: (u8, u8, u8)) -> Self {
        let mut text = *b"0000-00-00T00:00:00";
        put_digits(&mut text[0..4], date.year().unsigned_abs());
        put_digits(&mut text[5..7], u8::from(date.month()).into());
        put_digits(&mut text[8..10], date.day().into());
        put_digits(&mut text[11..13], hms.0.into());
        put_digits(&mut text[14..16], hms.1.into());
        put_digits(&mut text[17..19], hms.2.into());
        SecondText { date, hms, text }
    }
}

/// Writes `value`'s last `out.len()` decimal digits into `out`, zero-padded.
fn put_digits(out: &mut [u8], mut value: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

#[cfg(test)]
mod tests;
