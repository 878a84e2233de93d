//! Reading a token stream: counts token events, `index` gaps per turn and `llm.end`s, and (when
//! asked) each token's latency from the timestamp it starts with. Decodes only what it needs, by
//! looking for `"index":` and `"token":"` near the end of the envelope, so zcoord's events and the
//! bare libzmq stand-ins (built to the same shape by `bare::token_body`) cost a reader the same.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::live::EventSource;
use crate::model::{now_ns, STAMP_DIGITS};

/// Key prefixes of the events a reader looks at.
pub const TOKEN_KEY: &[u8] = b"llm.token/";
pub const END_KEY: &[u8] = b"llm.end/";

/// What one message was, to the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    Token,
    End,
    Other,
}

/// What one subscriber received.
#[derive(Debug, Default)]
pub struct Tally {
    pub tokens: u64,
    /// Token indexes skipped within a turn: each missing token counts once.
    pub gaps: u64,
    /// `llm.end` events.
    pub ends: u64,
    pub first: Option<Instant>,
    pub last: Option<Instant>,
    /// Emission-to-receipt times in nanoseconds, when measuring latency.
    pub latencies_ns: Vec<u64>,
    /// Sizes of the last token event's frames.
    pub key_len: usize,
    pub body_len: usize,
}

impl Tally {
    /// Tokens per second between the first and the last token received.
    pub fn rate(&self) -> f64 {
        match (self.first, self.last) {
            (Some(a), Some(b)) if b > a => (self.tokens - 1) as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }

    /// Tokens per second delivered to all of `tallies`, from the first token any of them got to
    /// the last.
    pub fn combined_rate(tallies: &[Tally]) -> f64 {
        let first = tallies.iter().filter_map(|t| t.first).min();
        let last = tallies.iter().filter_map(|t| t.last).max();
        let tokens: u64 = tallies.iter().map(|t| t.tokens).sum();
        match (first, last) {
            (Some(a), Some(b)) if b > a => tokens as f64 / (b - a).as_secs_f64(),
            _ => 0.0,
        }
    }
}

pub struct TokenReader {
    tally: Tally,
    /// The next index expected, per token key (one turn per session in every scenario).
    next_index: HashMap<Vec<u8>, u64>,
    latency: bool,
}

impl TokenReader {
    pub fn new(latency: bool) -> TokenReader {
        TokenReader {
            tally: Tally::default(),
            next_index: HashMap::new(),
            latency,
        }
    }

    pub fn tally(&self) -> &Tally {
        &self.tally
    }

    pub fn finish(self) -> Tally {
        self.tally
    }

    /// Accounts for one received message.
    pub fn take(&mut self, frames: &[Vec<u8>]) -> Seen {
        let [key, body] = frames else {
            return Seen::Other;
        };
        if key.starts_with(END_KEY) {
            self.tally.ends += 1;
            return Seen::End;
        }
        if !key.starts_with(TOKEN_KEY) {
            return Seen::Other;
        }
        let now = Instant::now();
        if self.latency {
            if let Some(stamp) = stamp_of(body) {
                self.tally.latencies_ns.push(now_ns().saturating_sub(stamp));
            }
        }
        if let Some(index) = index_of(body) {
            let next = match self.next_index.get_mut(key.as_slice()) {
                Some(next) => next,
                None => self.next_index.entry(key.clone()).or_insert(0),
            };
            self.tally.gaps += index.saturating_sub(*next);
            *next = index + 1;
        }
        let t = &mut self.tally;
        t.tokens += 1;
        t.first.get_or_insert(now);
        t.last = Some(now);
        t.key_len = key.len();
        t.body_len = body.len();
        Seen::Token
    }
}

/// When a reader stops.
#[derive(Debug, Clone, Copy)]
pub struct Until {
    /// Stop once this many tokens and this many `llm.end`s have arrived...
    pub tokens: u64,
    pub ends: u64,
    /// ...or nothing has arrived for this long (the stream is over, some of it lost)...
    pub quiet: Duration,
    /// ...or at this time, whatever has arrived.
    pub deadline: Instant,
}

/// Reads into `reader` until `until` says stop. Lost events show in the counts, not as an error.
pub fn read_until(
    source: &impl EventSource,
    reader: &mut TokenReader,
    until: Until,
) -> anyhow::Result<()> {
    loop {
        let t = reader.tally();
        if t.tokens >= until.tokens && t.ends >= until.ends {
            return Ok(());
        }
        let left = until.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(());
        }
        match source.next_frames(until.quiet.min(left))? {
            Some(frames) => {
                reader.take(&frames);
            }
            None => return Ok(()),
        }
    }
}

/// The `index` of a token event.
fn index_of(body: &[u8]) -> Option<u64> {
    let at = rfind(body, b"\"index\":")? + b"\"index\":".len();
    parse_digits(&body[at..], 20)
}

/// The emission time a token's text starts with.
fn stamp_of(body: &[u8]) -> Option<u64> {
    let at = rfind(body, b"\"token\":\"")? + b"\"token\":\"".len();
    parse_digits(&body[at..], STAMP_DIGITS)
}

/// The number the leading digits of `bytes` spell (at most `max` of them).
fn parse_digits(bytes: &[u8], max: usize) -> Option<u64> {
    let digits = bytes
        .iter()
        .take(max)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 {
        return None;
    }
    bytes[..digits].iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// The last occurrence of `needle`: the fields read here sit at the end of the envelope.
fn rfind(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).rposition(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_index_and_stamp_of_an_envelope() {
        let body = br#"{"seq":47,"topic":"llm.token","payload":{"index":12,"token":"1700000000123456789xx"}}"#;
        assert_eq!(index_of(body), Some(12));
        assert_eq!(stamp_of(body), Some(1_700_000_000_123_456_789));
        assert_eq!(index_of(b"{}"), None);
    }

    #[test]
    fn counts_gaps_per_key() {
        let mut r = TokenReader::new(false);
        for (key, i) in [("llm.token/a", 0), ("llm.token/b", 0), ("llm.token/a", 3)] {
            let body = format!(r#"{{"index":{i},"token":"1"}}"#).into_bytes();
            assert_eq!(r.take(&[key.as_bytes().to_vec(), body]), Seen::Token);
        }
        assert_eq!(r.take(&[b"llm.end/a".to_vec(), b"{}".to_vec()]), Seen::End);
        let t = r.finish();
        assert_eq!((t.tokens, t.gaps, t.ends), (3, 2, 1));
    }
}
