//! Core tests of named models and per-session settings: `session.configure`, `model.list`, and
//! which model (and how many bytes of history) each turn gets. No sockets, no clock.

use super::models::{ModelCatalog, ModelEntry};
use super::persist::Change;
use super::testing::Stored;
use super::tests::{at, ctx, send};
use super::*;
use crate::protocol::events::Event;
use crate::protocol::ids::SessionId;
use crate::protocol::methods::{Call, MessageSend, Reply, WhenBusy};
use crate::protocol::models::{Configure, Setting};
use crate::protocol::types::SessionPayload;

/// `small` (the default, 1 KiB of history) and `big` (4 KiB).
fn core() -> Core {
    let entry = |provider: &str, context_bytes| ModelEntry {
        provider: provider.into(),
        context_bytes,
    };
    let mut models = ModelCatalog::single("small", entry("echo", 1 << 10));
    models.add("big", entry("openai:big", 4 << 10));
    let mut c = super::tests::core();
    c.config.models = models;
    c
}

fn configure(
    c: &mut Core,
    id: SessionId,
    model: Setting<String>,
    system_prompt: Setting<String>,
) -> Result<SessionPayload, CoreError> {
    let call = Call::SessionConfigure(Configure {
        session_id: id.to_string(),
        model,
        system_prompt,
    });
    match c.reply(call, &ctx(5))? {
        Reply::Session(s) => Ok(s),
        other => panic!("{other:?}"),
    }
}

fn set(v: &str) -> Setting<String> {
    Setting::Set(v.into())
}

fn create(c: &mut Core) -> SessionId {
    match c
        .reply(Call::SessionCreate { title: None }, &ctx(1))
        .unwrap()
    {
        Reply::Session(s) => s.id,
        other => panic!("{other:?}"),
    }
}

/// The (model, system prompt, history bytes) of the turn `effects` start.
fn started(effects: &[Effect]) -> (String, Option<String>, usize) {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Turn(TurnEffect::Start {
                model,
                system_prompt,
                context,
                ..
            }) => Some((model.clone(), system_prompt.clone(), context.max_bytes)),
            _ => None,
        })
        .expect("a turn starts")
}

fn model_of_llm_start(effects: &[Effect]) -> String {
    effects
        .iter()
        .find_map(|e| match e {
            Effect::Publish(p) => match &p.event {
                Event::LlmStart(s) => Some(s.model.clone()),
                _ => None,
            },
            _ => None,
        })
        .expect("llm.start")
}

fn send_with(c: &mut Core, id: Option<SessionId>, model: Option<&str>) -> Result<Reply, CoreError> {
    c.reply(
        Call::MessageSend(MessageSend {
            session_id: id.map(|s| s.to_string()),
            content: "hi".into(),
            request_id: None,
            model: model.map(str::to_owned),
            when_busy: WhenBusy::Reject,
        }),
        &ctx(9),
    )
}

#[test]
fn configure_sets_resets_and_keeps_and_publishes_only_changes() {
    let mut c = core();
    let id = create(&mut c);
    c.take_effects();

    let s = configure(&mut c, id, set("big"), set("Be brief.")).unwrap();
    assert_eq!(
        (s.model.as_deref(), s.system_prompt.as_deref()),
        (Some("big"), Some("Be brief."))
    );
    assert_eq!(s.updated_at, at(5));
    let fx = c.take_effects();
    let saved: Vec<&Change> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Persist { change, gating } => {
                assert!(gating, "the reply waits for the change");
                Some(change)
            }
            _ => None,
        })
        .collect();
    assert!(matches!(saved[..], [Change::SessionUpsert(r)]
        if r.model.as_deref() == Some("big") && r.system_prompt.as_deref() == Some("Be brief.")));
    let published: Vec<&Event> = fx
        .iter()
        .filter_map(|e| match e {
            Effect::Publish(p) => Some(&p.event),
            _ => None,
        })
        .collect();
    assert!(matches!(published[..], [Event::SessionUpdate(p)] if *p == s));

    // The same again changes nothing and says nothing.
    assert_eq!(configure(&mut c, id, set("big"), Setting::Keep).unwrap(), s);
    assert!(c.take_effects().is_empty());

    // null resets the model; the prompt absent stays.
    let s = configure(&mut c, id, Setting::Reset, Setting::Keep).unwrap();
    assert_eq!(
        (s.model, s.system_prompt.as_deref()),
        (None, Some("Be brief."))
    );
    assert_eq!(c.take_effects().len(), 2, "saved and published");
}

#[test]
fn an_unknown_model_is_refused_with_the_names_there_are_and_changes_nothing() {
    let mut c = core();
    let id = create(&mut c);
    c.take_effects();
    let unknown = CoreError::ModelNotFound {
        model: "huge".into(),
        available: vec!["big".into(), "small".into()],
    };
    assert_eq!(
        configure(&mut c, id, set("huge"), set("p")),
        Err(unknown.clone())
    );
    assert_eq!(
        send_with(&mut c, Some(id), Some("huge")),
        Err(unknown.clone())
    );
    // A send that would create its session creates none.
    assert_eq!(send_with(&mut c, None, Some("huge")), Err(unknown));
    assert!(c.take_effects().is_empty());
    assert_eq!(c.sessions.len(), 1);
    let rpc = crate::protocol::errors::RpcError::from(
        configure(&mut c, id, set("x"), Setting::Keep).unwrap_err(),
    );
    assert_eq!(rpc.code, -32018);
    assert_eq!(rpc.data.unwrap()["kind"], "model_not_found");
}

#[test]
fn each_turn_runs_the_message_s_model_else_the_session_s_else_the_default() {
    let mut c = core();
    let r = send(&mut c, None, "one", 1);
    let fx = c.take_effects();
    assert_eq!(started(&fx), ("small".into(), None, 1 << 10));
    assert_eq!(model_of_llm_start(&fx), "small");
    c.model_event(r.turn_id, ModelEvent::Finished, at(2));
    c.take_effects();

    configure(&mut c, r.session_id, set("big"), set("Speak French.")).unwrap();
    c.take_effects();
    let r2 = send(&mut c, Some(r.session_id), "two", 3);
    let fx = c.take_effects();
    // The turn reserves the bytes of the model that runs it.
    assert_eq!(
        started(&fx),
        ("big".into(), Some("Speak French.".into()), 4 << 10)
    );
    assert_eq!(model_of_llm_start(&fx), "big");
    c.model_event(r2.turn_id, ModelEvent::Finished, at(4));
    c.take_effects();

    // For one message only: the session keeps its own.
    send_with(&mut c, Some(r.session_id), Some("small")).unwrap();
    let fx = c.take_effects();
    assert_eq!(
        started(&fx),
        ("small".into(), Some("Speak French.".into()), 1 << 10)
    );
    let s = configure(&mut c, r.session_id, Setting::Keep, Setting::Keep).unwrap();
    assert_eq!(s.model.as_deref(), Some("big"));
}

#[test]
fn configure_is_refused_while_shutting_down_or_degraded() {
    let mut c = core();
    let id = create(&mut c);
    c.store_health(Some("disk full".into()), at(2));
    assert!(matches!(
        configure(&mut c, id, set("big"), Setting::Keep),
        Err(CoreError::StoreUnavailable(_))
    ));
    c.store_health(None, at(3));
    c.shutdown("test", at(4));
    assert_eq!(
        configure(&mut c, id, set("big"), Setting::Keep),
        Err(CoreError::ShuttingDown)
    );
    assert!(matches!(
        c.reply(Call::ModelList, &ctx(5)).unwrap(),
        Reply::ModelList(l) if l.default == "small" && l.models.len() == 2
    ));
}

#[test]
fn settings_survive_a_restart_and_a_model_no_longer_configured_is_refused_until_reset() {
    let mut c = core();
    let mut stored = Stored::default();
    let id = create(&mut c);
    configure(&mut c, id, set("big"), set("")).unwrap();
    stored.sync(&mut c);
    let snapshot = crate::store::Store::load(&mut stored.store, 10).unwrap();
    assert_eq!(snapshot.sessions[0].record.model.as_deref(), Some("big"));

    let mut again = core();
    again.restore(snapshot.clone(), at(10));
    let s = configure(&mut again, id, Setting::Keep, Setting::Keep).unwrap();
    assert_eq!(
        (s.model.as_deref(), s.system_prompt.as_deref()),
        (Some("big"), Some(""))
    );

    // Restarted with only the default model: the session's choice is gone.
    let mut fewer = core();
    fewer.config.models = ModelCatalog::single(
        "small",
        ModelEntry {
            provider: "echo".into(),
            context_bytes: 1 << 10,
        },
    );
    fewer.restore(snapshot, at(10));
    assert!(matches!(
        send_with(&mut fewer, Some(id), None),
        Err(CoreError::ModelNotFound { model, available }) if model == "big" && available == ["small"]
    ));
    configure(&mut fewer, id, Setting::Reset, Setting::Keep).unwrap();
    fewer.take_effects();
    send_with(&mut fewer, Some(id), None).unwrap();
    assert_eq!(started(&fewer.take_effects()).0, "small");
}
