//! Richer streams in the core: `tool.args` before `tool.start` (order, indexes, the rest
//! published at the start, the cut, the bounds) and usage on `llm.end` and in session totals.

use super::persist::Change;
use super::tests::{at, core, events, send, session_of, trace, usage};
use super::*;
use crate::protocol::events::{Event, ToolArgsPayload};
use crate::protocol::ids::TurnId;
use crate::protocol::limits::{
    MAX_ARGS_DELTA_BYTES, MAX_ARGS_NAME_BYTES, MAX_ARGS_STREAMS, MAX_EVENT_TEXT_BYTES,
};
use crate::protocol::usage::{SessionUsage, TurnUsage, UsageFigure};

fn args(call_id: &str, delta: &str) -> ModelEvent {
    ModelEvent::ToolArgs {
        call_id: call_id.into(),
        tool_name: "word_count".into(),
        delta: delta.into(),
    }
}

fn start(call_id: &str, params: &str) -> ModelEvent {
    ModelEvent::ToolStart {
        call_id: call_id.into(),
        tool_name: "word_count".into(),
        params: params.into(),
    }
}

fn args_of(fx: &[Effect]) -> Vec<ToolArgsPayload> {
    events(fx)
        .into_iter()
        .filter_map(|e| match e {
            Event::ToolArgs(a) => Some(a.clone()),
            _ => None,
        })
        .collect()
}

/// `(call_id, index, delta)` of each `tool.args`.
fn pieces(fx: &[Effect]) -> Vec<(String, u64, String)> {
    args_of(fx)
        .into_iter()
        .map(|a| (a.call_id.0, a.index, a.delta))
        .collect()
}

fn started(c: &mut Core) -> TurnId {
    let r = send(c, None, "hi", 1);
    c.take_effects();
    r.turn_id
}

#[test]
fn arguments_stream_per_call_after_the_text_and_before_each_start() {
    let mut c = core();
    let t = started(&mut c);
    c.model_event(t, ModelEvent::Token("Let me count.".into()), at(2));
    c.model_event(t, args("a", r#"{"te"#), at(2));
    c.model_event(t, args("b", "{}"), at(2));
    c.model_event(t, args("a", ""), at(2));
    c.model_event(t, args("a", r#"xt": "x y"}"#), at(2));
    c.model_event(t, start("a", r#"{"text": "x y"}"#), at(3));
    let fx = c.take_effects();
    assert_eq!(
        trace(&fx),
        [
            "llm.token",
            // The text before the first call is a message of its own, as at a tool start.
            "message.append",
            "tool.args",
            "tool.args",
            "tool.args",
            "tool.start",
            "VERDICT"
        ]
    );
    let own = |call: &str, i: u64, d: &str| (call.to_owned(), i, d.to_owned());
    assert_eq!(
        pieces(&fx),
        [
            own("a", 0, r#"{"te"#),
            own("b", 0, "{}"),
            own("a", 1, r#"xt": "x y"}"#)
        ]
    );
    // Arguments for a call already started are dropped.
    c.model_event(t, args("a", "more"), at(3));
    assert!(c.take_effects().is_empty());
    // `b` streamed all of its arguments: its start adds none.
    c.model_event(t, start("b", "{}"), at(3));
    assert_eq!(trace(&c.take_effects()), ["tool.start", "VERDICT"]);
    assert!(c.turns[&t].args.is_empty(), "started calls are forgotten");
}

#[test]
fn what_the_model_did_not_stream_is_published_at_the_start() {
    let mut c = core();
    let t = started(&mut c);
    c.model_event(t, args("a", r#"{"text""#), at(2));
    c.take_effects();
    c.model_event(t, start("a", r#"{"text": "x"}"#), at(3));
    let fx = c.take_effects();
    assert_eq!(trace(&fx), ["tool.args", "tool.start", "VERDICT"]);
    assert_eq!(pieces(&fx), [("a".into(), 1, r#": "x"}"#.into())]);
    // A call with no arguments has no tool.args at all.
    c.model_event(t, start("b", ""), at(3));
    assert_eq!(trace(&c.take_effects()), ["tool.start", "VERDICT"]);
}

#[test]
fn long_arguments_come_in_bounded_deltas_cut_where_params_are_cut() {
    let mut c = core();
    let t = started(&mut c);
    // 9 bytes, then two-byte characters: the cut at MAX_EVENT_TEXT_BYTES falls inside one.
    let params = format!(r#"{{"text":"{}"}}"#, "é".repeat(5000));
    let (head, tail) = params.split_at(params.len() / 2);
    c.model_event(t, args("a", head), at(2));
    c.model_event(t, args("a", tail), at(2));
    c.model_event(t, args("a", "stray"), at(2));
    c.model_event(t, start("a", &params), at(3));
    let fx = c.take_effects();
    let deltas = args_of(&fx);
    assert!(deltas.iter().all(|a| a.delta.len() <= MAX_ARGS_DELTA_BYTES));
    let indexes: Vec<u64> = deltas.iter().map(|a| a.index).collect();
    assert_eq!(indexes, (0..deltas.len() as u64).collect::<Vec<_>>());
    let joined: String = deltas.iter().map(|a| a.delta.as_str()).collect();
    let Some(Event::ToolStart(s)) = events(&fx)
        .into_iter()
        .find(|e| matches!(e, Event::ToolStart(_)))
    else {
        panic!("no tool.start")
    };
    assert!(s.params_truncated);
    assert_eq!(joined, s.params);
    assert_eq!(
        joined.len(),
        MAX_EVENT_TEXT_BYTES - 1,
        "cut before the split é"
    );
}

#[test]
fn streams_are_bounded_per_turn_and_go_with_it() {
    let mut c = core();
    let t = started(&mut c);
    for n in 0..=MAX_ARGS_STREAMS {
        c.model_event(t, args(&format!("c{n}"), "{"), at(2));
    }
    let long_id = "i".repeat(MAX_ARGS_NAME_BYTES + 1);
    c.model_event(t, args(&long_id, "{"), at(2));
    assert_eq!(c.turns[&t].args.len(), MAX_ARGS_STREAMS);
    let fx = c.take_effects();
    assert_eq!(
        args_of(&fx).len(),
        MAX_ARGS_STREAMS,
        "one past the bound streams nothing"
    );
    // The call past the bound gets its arguments whole when it starts.
    let last = format!("c{MAX_ARGS_STREAMS}");
    c.model_event(t, start(&last, "{}"), at(3));
    assert_eq!(pieces(&c.take_effects()), [(last, 0, "{}".into())]);
    // Calls that never start are forgotten with their turn.
    c.model_event(t, ModelEvent::Finished, at(4));
    assert!(c.turns.is_empty());
    c.take_effects();
    c.model_event(t, args("late", "{"), at(5));
    assert!(c.take_effects().is_empty());
}

fn end_usage(fx: &[Effect]) -> TurnUsage {
    events(fx)
        .into_iter()
        .find_map(|e| match e {
            Event::LlmEnd(e) => {
                assert_eq!(
                    (e.tokens_in, e.tokens_out),
                    (e.usage.input_tokens, e.usage.output_tokens)
                );
                Some(e.usage.clone())
            }
            _ => None,
        })
        .expect("an llm.end")
}

#[test]
fn llm_end_reports_the_models_usage_and_marks_what_the_core_counted() {
    let mut c = core();
    // As the provider reported it.
    let t = started(&mut c);
    let reported = TurnUsage {
        input_tokens: 100,
        output_tokens: 2,
        cached_input_tokens: Some(64),
        reasoning_tokens: Some(1),
        context_tokens: 102,
        context_window: Some(8192),
        estimated: vec![],
    };
    c.model_event(t, ModelEvent::Usage(reported.clone()), at(2));
    c.model_event(t, ModelEvent::Token("a".into()), at(2));
    c.model_event(t, ModelEvent::Finished, at(3));
    assert_eq!(end_usage(&c.take_effects()), reported);

    // A report behind what streamed: output raised to the tokens streamed, and marked.
    let r = send(&mut c, None, "again", 4);
    c.take_effects();
    c.model_event(r.turn_id, usage(10, 0), at(5));
    for tok in ["a", " b", " c"] {
        c.model_event(r.turn_id, ModelEvent::Token(tok.into()), at(5));
    }
    c.model_event(r.turn_id, ModelEvent::Failed("x".into()), at(6));
    let u = end_usage(&c.take_effects());
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.context_tokens),
        (10, 3, 13)
    );
    assert_eq!(
        u.estimated,
        [UsageFigure::OutputTokens, UsageFigure::ContextTokens]
    );

    // No report at all: every figure is the core's count.
    let r = send(&mut c, None, "third", 7);
    c.take_effects();
    c.model_event(r.turn_id, ModelEvent::Token("a".into()), at(8));
    c.model_event(r.turn_id, ModelEvent::Finished, at(8));
    let u = end_usage(&c.take_effects());
    assert_eq!(
        (u.input_tokens, u.output_tokens, u.context_tokens),
        (0, 1, 1)
    );
    assert_eq!(
        u.estimated,
        [
            UsageFigure::InputTokens,
            UsageFigure::OutputTokens,
            UsageFigure::ContextTokens
        ]
    );
}

#[test]
fn sessions_total_their_turns_and_store_the_totals() {
    let mut c = core();
    let first = send(&mut c, None, "one", 1);
    let session = first.session_id;
    c.model_event(
        first.turn_id,
        ModelEvent::Usage(TurnUsage {
            input_tokens: 10,
            output_tokens: 4,
            cached_input_tokens: Some(6),
            context_tokens: 14,
            ..TurnUsage::default()
        }),
        at(2),
    );
    c.model_event(first.turn_id, ModelEvent::Finished, at(2));
    let second = send(&mut c, Some(session), "two", 3);
    c.model_event(
        second.turn_id,
        ModelEvent::Usage(TurnUsage {
            input_tokens: 20,
            output_tokens: 5,
            reasoning_tokens: Some(2),
            context_tokens: 25,
            ..TurnUsage::default()
        }),
        at(4),
    );
    let interrupt = crate::protocol::methods::Call::SessionInterrupt {
        session_id: session.to_string(),
        clear_queue: false,
    };
    c.reply(interrupt, &super::tests::ctx(5)).unwrap();
    let want = SessionUsage {
        input_tokens: 30,
        output_tokens: 9,
        cached_input_tokens: 6,
        reasoning_tokens: 2,
        turns: 2,
    };
    let fx = c.take_effects();
    let stored = fx.iter().rev().find_map(|e| match e {
        Effect::Persist {
            change: Change::SessionUpsert(r),
            ..
        } => Some(r.usage),
        _ => None,
    });
    assert_eq!(stored, Some(want));
    let update = events(&fx).into_iter().rev().find_map(|e| match e {
        Event::SessionUpdate(s) => Some(s.usage),
        _ => None,
    });
    assert_eq!(update, Some(want));
    assert_eq!(session_of(&mut c, session).usage, want);
}

#[test]
fn a_call_id_started_again_while_open_ends_the_turn() {
    let mut c = core();
    let t = started(&mut c);
    c.model_event(t, start("a", "{}"), at(2));
    c.take_effects();
    c.model_event(t, start("a", "{}"), at(3));
    let fx = c.take_effects();
    assert!(fx.contains(&Effect::Turn(TurnEffect::Cancel(t))), "{fx:?}");
    let ended = events(&fx).into_iter().find_map(|e| match e {
        Event::LlmEnd(end) => Some(end.clone()),
        _ => None,
    });
    let ended = ended.expect("llm.end");
    assert!(ended.error.unwrap_or_default().contains("again"));
    assert!(
        !events(&fx).iter().any(|e| matches!(e, Event::ToolStart(_))),
        "no second tool.start"
    );
    // An id may come back once its call has ended.
    let t = started(&mut c);
    c.model_event(t, start("b", "{}"), at(4));
    c.model_event(
        t,
        ModelEvent::ToolEnd {
            call_id: "b".into(),
            is_error: false,
            result: "1".into(),
        },
        at(5),
    );
    c.take_effects();
    c.model_event(t, start("b", "{}"), at(6));
    let fx = c.take_effects();
    assert!(events(&fx).iter().any(|e| matches!(e, Event::ToolStart(_))));
}
