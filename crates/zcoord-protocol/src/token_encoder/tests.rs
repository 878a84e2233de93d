//! The fast path against the serde path, byte for byte: generated token streams, the timestamps
//! RFC 3339 writes differently, ids that change between events; and a measurement run by hand.

use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::select;
use time::macros::datetime;
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset};
use uuid::Uuid;

use crate::events::{Event, EventEncoder, LlmStartPayload, LlmTokenPayload, Published};
use crate::ids::{InstanceId, SessionId, TurnId};

fn token(session: Uuid, turn: Uuid, index: u64, token: &str) -> Event {
    Event::LlmToken(LlmTokenPayload {
        session_id: SessionId(session),
        turn_id: TurnId(turn),
        index,
        token: token.to_owned(),
    })
}

/// Encodes `event` with `fast` (whatever path `encode` takes) and with `reference` through serde
/// only, and asserts the frames are the same bytes.
fn same_frames(
    fast: &mut EventEncoder,
    reference: &mut EventEncoder,
    seq: u64,
    timestamp: OffsetDateTime,
    event: Event,
    instance: Uuid,
) -> Published {
    let instance = InstanceId(instance);
    let want = reference.encode_generic(seq, timestamp, event.clone(), instance);
    let got = fast.encode(seq, timestamp, event, instance);
    assert_eq!(
        String::from_utf8_lossy(&got.body),
        String::from_utf8_lossy(&want.body),
        "body at {timestamp}"
    );
    assert_eq!(got.body, want.body, "body bytes at {timestamp}");
    assert_eq!(got.key, want.key);
    assert_eq!(got, want);
    got
}

const T: OffsetDateTime = datetime!(2026-03-04 05:06:07.5 UTC);

/// The timestamps RFC 3339 writes in a different shape, each through a warm and a cold cache.
#[test]
fn timestamps_match_serde() {
    let whole = datetime!(2026-03-04 05:06:07 UTC);
    let mut cases = Vec::new();
    for nanos in [
        0,
        1,
        10,
        999_999_999,
        100_000_000,
        120_000_000,
        123_456_789,
        500_000,
    ] {
        cases.push(whole.replace_nanosecond(nanos).unwrap());
    }
    cases.extend([
        // Second, minute, day, month, year and leap-day boundaries.
        datetime!(2026-03-04 05:06:59.999_999_999 UTC),
        datetime!(2026-03-04 05:07:00 UTC),
        datetime!(2026-03-04 23:59:59.9 UTC),
        datetime!(2026-03-05 00:00:00.000_000_001 UTC),
        datetime!(2025-12-31 23:59:59.999_999_999 UTC),
        datetime!(2026-01-01 00:00:00 UTC),
        datetime!(2024-02-29 12:00:00.25 UTC),
        datetime!(1970-01-01 00:00:00 UTC),
        datetime!(0000-01-01 00:00:00.1 UTC),
        datetime!(9999-12-31 23:59:59.999_999_999 UTC),
        // Before year 0 (time stops at 9999): serde fails, and so does the fast path (an empty body).
        datetime!(-0001-12-31 23:59:59.5 UTC),
        datetime!(-9999-01-01 00:00:00 UTC),
        // Not UTC: time's formatter writes the offset, or fails on offset seconds.
        datetime!(2026-03-04 05:06:07.12 +05:30),
        datetime!(2026-03-04 05:06:07 -00:30),
        datetime!(2026-03-04 05:06:07 +00:00:30),
        // The same instant as `whole`, seen from another offset, then back in UTC.
        whole.to_offset(UtcOffset::from_hms(-3, 0, 0).unwrap()),
        whole,
    ]);
    let (session, turn, instance) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    let mut fast = EventEncoder::default();
    let mut reference = EventEncoder::default();
    for (i, &ts) in cases.iter().enumerate() {
        let event = token(session, turn, i as u64, "hi");
        same_frames(
            &mut fast,
            &mut reference,
            i as u64,
            ts,
            event.clone(),
            instance,
        );
        let mut cold = EventEncoder::default();
        same_frames(&mut cold, &mut reference, i as u64, ts, event, instance);
    }
}

/// What `time::serde::rfc3339` writes, spelled out: no fraction for a whole second, otherwise
/// the nanoseconds without trailing zeros (1 to 9 digits).
#[test]
fn timestamp_shapes() {
    let shape = |ts: OffsetDateTime| {
        let p = EventEncoder::default().encode(
            0,
            ts,
            token(Uuid::nil(), Uuid::nil(), 0, ""),
            InstanceId(Uuid::nil()),
        );
        let body = String::from_utf8(p.body.to_vec()).unwrap();
        let start = body.find("\"timestamp\":\"").unwrap() + 13;
        let end = start + body[start..].find('"').unwrap();
        body[start..end].to_owned()
    };
    let whole = datetime!(2026-03-04 05:06:07 UTC);
    let at = |nanos| shape(whole.replace_nanosecond(nanos).unwrap());
    assert_eq!(at(0), "2026-03-04T05:06:07Z");
    assert_eq!(at(1), "2026-03-04T05:06:07.000000001Z");
    assert_eq!(at(100_000_000), "2026-03-04T05:06:07.1Z");
    assert_eq!(at(120_000_000), "2026-03-04T05:06:07.12Z");
    assert_eq!(at(999_999_999), "2026-03-04T05:06:07.999999999Z");
    assert_eq!(
        shape(datetime!(2026-03-04 05:06:07.5 +05:30)),
        "2026-03-04T05:06:07.5+05:30"
    );
}

/// Consecutive tokens that change instance, session or turn get the new ids and key: two
/// sessions interleaved, a turn that changes, an instance that changes (a failover), and other
/// events (the serde path) in between.
#[test]
fn cached_ids_follow_changes() {
    let (a, b) = (Uuid::from_u128(0xa), Uuid::from_u128(0xb));
    let (turn_a, turn_b, turn_c) = (
        Uuid::from_u128(0x1a),
        Uuid::from_u128(0x1b),
        Uuid::from_u128(0x1c),
    );
    let (one, two) = (Uuid::from_u128(0x100), Uuid::from_u128(0x200));
    let start = |session, turn| {
        Event::LlmStart(LlmStartPayload {
            session_id: SessionId(session),
            turn_id: TurnId(turn),
            model: "echo".into(),
        })
    };
    let steps = [
        (one, start(a, turn_a)),
        (one, token(a, turn_a, 0, "x")),
        (one, token(a, turn_a, 1, "y")),
        (one, start(b, turn_b)),
        (one, token(b, turn_b, 0, "p")),
        (one, token(a, turn_a, 2, "z")),
        (one, token(b, turn_b, 1, "q")),
        (one, token(b, turn_c, 0, "new turn, same session")),
        (two, token(b, turn_c, 1, "new instance")),
        (two, token(a, turn_c, 0, "same turn, other session")),
        (one, token(a, turn_c, 1, "the first instance again")),
    ];
    let mut fast = EventEncoder::default();
    let mut reference = EventEncoder::default();
    for (seq, (instance, event)) in steps.into_iter().enumerate() {
        let turn = match &event {
            Event::LlmToken(p) => p.turn_id.0,
            Event::LlmStart(p) => p.turn_id.0,
            _ => unreachable!(),
        };
        let session = event.session_id().unwrap().0;
        let p = same_frames(&mut fast, &mut reference, seq as u64, T, event, instance);
        let body = String::from_utf8(p.body.to_vec()).unwrap();
        let want = format!(
            r#""instance_id":"{instance}","topic":"{}","session_id":"{session}","#,
            p.event.topic()
        );
        assert!(body.contains(&want), "{body} lacks {want}");
        let want = format!(r#""payload":{{"session_id":"{session}","turn_id":"{turn}","#);
        assert!(body.contains(&want), "{body} lacks {want}");
        assert_eq!(&*p.key, format!("{}/{session}", p.event.topic()));
    }
}

/// A token stream shares one key; a token of another session gets its own.
#[test]
fn token_key_is_shared_within_a_stream() {
    let (a, b, turn) = (Uuid::from_u128(1), Uuid::from_u128(2), Uuid::from_u128(3));
    let iid = InstanceId(Uuid::from_u128(4));
    let mut enc = EventEncoder::default();
    let first = enc.encode(1, T, token(a, turn, 0, "x"), iid);
    let second = enc.encode(2, T, token(a, turn, 1, "y"), iid);
    let other = enc.encode(3, T, token(b, turn, 0, "z"), iid);
    assert!(Arc::ptr_eq(&first.key, &second.key));
    assert_eq!(&*first.key, format!("llm.token/{a}"));
    assert_eq!(&*other.key, format!("llm.token/{b}"));
}

fn uuid() -> impl Strategy<Value = Uuid> {
    prop_oneof![
        1 => Just(Uuid::nil()),
        1 => Just(Uuid::from_u128(u128::MAX)),
        8 => any::<u128>().prop_map(Uuid::from_u128),
    ]
}

fn number() -> impl Strategy<Value = u64> {
    prop_oneof![1 => Just(0), 1 => Just(u64::MAX), 8 => any::<u64>()]
}

/// Text that JSON writes as it is and text it escapes: any ASCII (every control character and
/// DEL among it), quotes and backslashes, multi-byte UTF-8, emoji, the empty string.
fn token_text() -> impl Strategy<Value = String> {
    const SPECIAL: &str =
        "\"\\/\0\x01\x07\x08\t\n\x0b\x0c\r\x1b\x1f\x7f a\u{e9}\u{20ac}\u{80}\u{9f}\
        \u{2028}\u{2029}\u{fffd}\u{feff}\u{1f600}\u{1f469}\u{200d}\u{1f4bb}\u{10ffff}";
    prop_oneof![
        Just(String::new()),
        "[ -~]{0,40}",
        any::<String>(),
        proptest::collection::vec(0u8..0x80, 0..40)
            .prop_map(|bytes| bytes.into_iter().map(char::from).collect()),
        proptest::collection::vec(select(SPECIAL.chars().collect::<Vec<_>>()), 0..24)
            .prop_map(String::from_iter),
    ]
}

/// A whole second anywhere `time` can represent, weighted towards the years RFC 3339 can write,
/// today, and the boundaries of seconds, days and years.
fn second() -> impl Strategy<Value = OffsetDateTime> {
    let utc = |date: Date| OffsetDateTime::new_utc(date, Time::MIDNIGHT).unix_timestamp();
    let min = utc(Date::MIN);
    // 9999-12-31T23:59:59: `time` stops at year 9999.
    let max = utc(Date::MAX) + 86_399;
    let year_0 = utc(Date::from_calendar_date(0, time::Month::January, 1).unwrap());
    let today = T.unix_timestamp();
    let boundaries = vec![
        year_0,
        max - 2,
        0,
        utc(Date::from_calendar_date(2000, time::Month::January, 1).unwrap()),
        utc(Date::from_calendar_date(2024, time::Month::March, 1).unwrap()),
        utc(Date::from_calendar_date(2027, time::Month::January, 1).unwrap()),
        today - today % 86_400,
    ];
    prop_oneof![
        1 => min..=max,
        2 => year_0..=max,
        4 => (today - 86_400 * 400)..(today + 86_400 * 400),
        3 => (select(boundaries), -2i64..=2).prop_map(|(b, d)| b + d),
    ]
    .prop_map(|s| OffsetDateTime::from_unix_timestamp(s).unwrap())
}

fn nanos() -> impl Strategy<Value = u32> {
    prop_oneof![
        1 => Just(0),
        1 => Just(1),
        1 => Just(999_999_999),
        1 => Just(100_000_000),
        1 => Just(120_000_000),
        6 => 0..1_000_000_000u32,
    ]
}

/// UTC mostly, as `now_utc()` gives; sometimes any offset, seconds included.
fn offset() -> impl Strategy<Value = UtcOffset> {
    prop_oneof![
        6 => Just(UtcOffset::UTC),
        1 => (-23i8..=23, -59i8..=59, -59i8..=59)
            .prop_map(|(h, m, s)| UtcOffset::from_hms(h, m, s).unwrap_or(UtcOffset::UTC)),
        1 => (-23i8..=23, 0i8..=59)
            .prop_map(|(h, m)| UtcOffset::from_hms(h, m, 0).unwrap_or(UtcOffset::UTC)),
    ]
}

/// Ids and seconds a stream draws from, so that consecutive events both repeat and change them.
#[derive(Debug, Clone)]
struct Pools {
    instances: (Uuid, Uuid),
    sessions: (Uuid, Uuid, Uuid),
    turns: (Uuid, Uuid, Uuid),
    seconds: (OffsetDateTime, OffsetDateTime, OffsetDateTime),
}

fn pools() -> impl Strategy<Value = Pools> {
    (
        (uuid(), uuid()),
        (uuid(), uuid(), uuid()),
        (uuid(), uuid(), uuid()),
        (second(), second(), second()),
    )
        .prop_map(|(instances, sessions, turns, seconds)| Pools {
            instances,
            sessions,
            turns,
            seconds,
        })
}

/// One event of a stream: indexes into the pools, and whether it is an `llm.start` instead.
#[derive(Debug, Clone)]
struct Step {
    seq: u64,
    instance: bool,
    session: u8,
    turn: u8,
    second: u8,
    nanos: u32,
    offset: UtcOffset,
    index: u64,
    token: String,
    start: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (
        number(),
        prop::bool::weighted(0.1),
        (0u8..3, 0u8..3, 0u8..3),
        (nanos(), offset()),
        number(),
        token_text(),
        prop::bool::weighted(0.1),
    )
        .prop_map(
            |(seq, instance, (session, turn, second), (nanos, offset), index, token, start)| Step {
                seq,
                instance,
                session,
                turn,
                second,
                nanos,
                offset,
                index,
                token,
                start,
            },
        )
}

fn pick<T: Copy>(three: (T, T, T), i: u8) -> T {
    match i {
        0 => three.0,
        1 => three.1,
        _ => three.2,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Over generated streams, `encode` writes the same frames as the serde path.
    #[test]
    fn fast_path_writes_what_serde_writes(
        pools in pools(),
        steps in proptest::collection::vec(step(), 1..32),
    ) {
        let mut fast = EventEncoder::default();
        let mut reference = EventEncoder::default();
        for s in steps {
            let instance = if s.instance { pools.instances.1 } else { pools.instances.0 };
            let (session, turn) = (pick(pools.sessions, s.session), pick(pools.turns, s.turn));
            let second = pick(pools.seconds, s.second);
            let ts = second.replace_nanosecond(s.nanos).unwrap();
            let ts = ts.checked_to_offset(s.offset).unwrap_or(ts);
            let event = if s.start {
                Event::LlmStart(LlmStartPayload {
                    session_id: SessionId(session),
                    turn_id: TurnId(turn),
                    model: s.token,
                })
            } else {
                token(session, turn, s.index, &s.token)
            };
            same_frames(&mut fast, &mut reference, s.seq, ts, event, instance);
        }
    }
}

/// Run by hand:
/// `cargo test --release -p zcoord-protocol -- --ignored --nocapture measure_token_encoding`.
/// A million tokens of one turn, 35 bytes of ASCII each, about 3 µs apart: ns per event through
/// serde and through the fast path, and what building and dropping the event costs either way.
#[test]
#[ignore = "a measurement, run by hand in release mode"]
fn measure_token_encoding() {
    use std::hint::black_box;
    use std::time::Instant;

    const N: u64 = 1_000_000;
    let text = "The quick brown fox jumps over it. ";
    assert_eq!(text.len(), 35);
    let template = token(Uuid::now_v7(), Uuid::now_v7(), 0, text);
    let instance = InstanceId(Uuid::now_v7());
    let base = OffsetDateTime::now_utc();
    let event = |i: u64| {
        let mut e = template.clone();
        if let Event::LlmToken(p) = &mut e {
            p.index = i;
        }
        (base + Duration::nanoseconds(i as i64 * 3_000), e)
    };
    type Encode = fn(&mut EventEncoder, u64, OffsetDateTime, Event, InstanceId) -> Published;
    let run = |encode: Encode| {
        let mut enc = EventEncoder::default();
        for i in 0..10_000 {
            let (ts, e) = event(i);
            black_box(encode(&mut enc, i, ts, e, instance));
        }
        let start = Instant::now();
        for i in 0..N {
            let (ts, e) = event(i);
            black_box(encode(&mut enc, i, ts, e, instance));
        }
        start.elapsed().as_nanos() as f64 / N as f64
    };
    let start = Instant::now();
    for i in 0..N {
        black_box(event(i));
    }
    let overhead = start.elapsed().as_nanos() as f64 / N as f64;
    let generic = run(EventEncoder::encode_generic);
    let fast = run(EventEncoder::encode);
    println!(
        "llm.token, {N} events: serde path {generic:.1} ns/event, fast path {fast:.1} ns/event \
         (both include {overhead:.1} ns/event to build and drop the event)"
    );
}
