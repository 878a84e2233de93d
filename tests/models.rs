//! Named models and per-session settings through the real sockets: two fake OpenAI-compatible
//! servers behind two model names, a session switched from one to the other with
//! `session.configure`, a message that picks its own model for one turn, the system prompt each
//! request carries, unknown names and over-long params refused by kind, and settings kept in a
//! database migrated from an older schema across a restart.

mod common;
mod fake_openai;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{spawn_daemon_with, Daemon, Events};
use fake_openai::{finish, runtime, text, usage, FakeServer, Reply};
use serde_json::{json, Value};
use zcoord::client::ClientError;
use zcoord::config::{Config, ModelConfig, StoreConfig};
use zcoord::model::openai::OpenAiConfig;
use zcoord::protocol::limits::{MAX_MODEL_NAME_BYTES, MAX_SYSTEM_PROMPT_BYTES};

fn openai(model: &str, base_url: &str) -> ModelConfig {
    let mut c = OpenAiConfig::new(model, base_url);
    c.connect_timeout = Duration::from_secs(2);
    c.chunk_timeout = Duration::from_secs(5);
    c.max_retries = 0;
    c.system_prompt = Some(format!("You are {model}."));
    ModelConfig::OpenAi(c)
}

/// `n` one-word answers, `word` each.
fn answers(word: &str, n: usize) -> Vec<Reply> {
    (0..n)
        .map(|_| Reply::sse(&[text(word), finish("stop"), usage(3, 1)]))
        .collect()
}

/// `alpha` (the default) and `beta` on their own servers, and `offline`, the echo model.
fn two_models(alpha: &FakeServer, beta: &FakeServer) -> impl FnOnce(&mut Config) {
    let (a, b) = (alpha.base_url.clone(), beta.base_url.clone());
    move |c| {
        c.model = openai("model-a", &a);
        c.model_name = Some("alpha".into());
        c.models = BTreeMap::from([
            ("beta".to_owned(), openai("model-b", &b)),
            (
                "offline".to_owned(),
                ModelConfig::Echo {
                    token_delay: Duration::from_millis(1),
                },
            ),
        ]);
    }
}

/// Sends `content` and waits for its turn's end; returns the model `llm.start` named and the
/// text the turn streamed.
fn turn(d: &Daemon, events: &Events, params: Value) -> (String, String) {
    let r = d.call("message.send", params);
    let got = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    let model = got
        .iter()
        .find(|e| e.envelope.topic == "llm.start")
        .map(|e| e.envelope.payload["model"].as_str().unwrap().to_owned())
        .expect("llm.start");
    let end = &got.last().unwrap().envelope.payload;
    assert_eq!(end["reason"], "completed", "{end}");
    let tokens: String = got
        .iter()
        .filter(|e| e.envelope.topic == "llm.token")
        .map(|e| e.envelope.payload["token"].as_str().unwrap().to_owned())
        .collect();
    (model, tokens)
}

/// The model and the system message of each request a fake server got.
fn asked(server: &FakeServer) -> Vec<(String, Option<String>)> {
    server
        .requests()
        .iter()
        .map(|r| {
            let first = &r.body["messages"][0];
            let system =
                (first["role"] == "system").then(|| first["content"].as_str().unwrap().to_owned());
            (r.body["model"].as_str().unwrap().to_owned(), system)
        })
        .collect()
}

fn rpc_error(d: &Daemon, method: &str, params: Value) -> Value {
    match d.client().call(method, params) {
        Err(ClientError::Rpc(e)) => serde_json::to_value(e).unwrap(),
        other => panic!("{method}: expected an error reply, got {other:?}"),
    }
}

#[test]
fn a_session_and_a_message_switch_models_between_two_servers() {
    let rt = runtime();
    let alpha = rt.block_on(FakeServer::start(answers("A", 3)));
    let beta = rt.block_on(FakeServer::start(answers("B", 1)));
    let d = spawn_daemon_with(two_models(&alpha, &beta));

    let list = d.call("model.list", json!({}));
    assert_eq!(list["default"], "alpha");
    let names: Vec<(&str, &str, bool)> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["provider"].as_str().unwrap(),
                m["default"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("alpha", "openai:model-a", true),
            ("beta", "openai:model-b", false),
            ("offline", "echo", false)
        ]
    );
    let info = d.call("instance.info", json!({}));
    assert_eq!(info["model"], "openai:model-a");
    assert_eq!(info["models"], list["models"]);

    let events = d.subscriber(&["llm.", "session.update"]);
    // A new session runs the default.
    let (model, said) = turn(&d, &events, json!({"content": "hello"}));
    assert_eq!((model.as_str(), said.as_str()), ("alpha", "A"));
    let sid = d.call("session.list", json!({}))["sessions"][0]["id"].clone();

    // Switched to beta, with a prompt of its own: the next turn goes to beta's server.
    let s = d.call(
        "session.configure",
        json!({"session_id": sid, "model": "beta", "system_prompt": "Answer in French."}),
    );
    assert_eq!(
        (s["model"].as_str(), s["system_prompt"].as_str()),
        (Some("beta"), Some("Answer in French."))
    );
    // Published as it changed (earlier updates of the first turn come before it).
    let update = events
        .until(|e| e.envelope.topic == "session.update" && e.envelope.payload["model"] == "beta");
    assert_eq!(update.last().unwrap().envelope.payload, s);
    let (model, said) = turn(
        &d,
        &events,
        json!({"session_id": sid, "content": "bonjour"}),
    );
    assert_eq!((model.as_str(), said.as_str()), ("beta", "B"));

    // One message picks alpha for its turn alone; the session's prompt goes with it.
    let (model, _) = turn(
        &d,
        &events,
        json!({"session_id": sid, "content": "and again", "model": "alpha"}),
    );
    assert_eq!(model, "alpha");
    assert_eq!(
        d.call("session.get", json!({"session_id": sid}))["model"],
        "beta"
    );

    // The echo model by name, then back to the default with null.
    let (model, said) = turn(
        &d,
        &events,
        json!({"session_id": sid, "content": "offline please", "model": "offline"}),
    );
    assert_eq!(
        (model.as_str(), said.as_str()),
        ("offline", "echo: offline please")
    );
    let s = d.call(
        "session.configure",
        json!({"session_id": sid, "model": null, "system_prompt": null}),
    );
    assert!(
        s.get("model").is_none() && s.get("system_prompt").is_none(),
        "{s}"
    );
    let (model, _) = turn(&d, &events, json!({"session_id": sid, "content": "last"}));
    assert_eq!(model, "alpha");

    // Each server saw only its own turns, with the right model and system prompt.
    let french = Some("Answer in French.".to_owned());
    assert_eq!(
        asked(&alpha),
        [
            ("model-a".to_owned(), Some("You are model-a.".to_owned())),
            ("model-a".to_owned(), french.clone()),
            ("model-a".to_owned(), Some("You are model-a.".to_owned())),
        ]
    );
    assert_eq!(asked(&beta), [("model-b".to_owned(), french)]);
}

#[test]
fn an_empty_system_prompt_sends_none_at_all() {
    let rt = runtime();
    let alpha = rt.block_on(FakeServer::start(answers("A", 1)));
    let beta = rt.block_on(FakeServer::start(vec![]));
    let d = spawn_daemon_with(two_models(&alpha, &beta));
    let sid = d.call("session.create", json!({}))["id"].clone();
    let s = d.call(
        "session.configure",
        json!({"session_id": sid, "system_prompt": ""}),
    );
    assert_eq!(s["system_prompt"], "");
    let events = d.subscriber(&["llm."]);
    turn(&d, &events, json!({"session_id": sid, "content": "hi"}));
    assert_eq!(asked(&alpha), [("model-a".to_owned(), None)]);
}

#[test]
fn unknown_names_and_long_params_are_refused_by_kind_and_change_nothing() {
    let rt = runtime();
    let alpha = rt.block_on(FakeServer::start(vec![]));
    let beta = rt.block_on(FakeServer::start(vec![]));
    let d = spawn_daemon_with(two_models(&alpha, &beta));
    let sid = d.call("session.create", json!({}))["id"].clone();
    let sessions = || {
        d.call("session.list", json!({}))["sessions"]
            .as_array()
            .unwrap()
            .len()
    };

    let e = rpc_error(
        &d,
        "session.configure",
        json!({"session_id": sid, "model": "gamma"}),
    );
    assert_eq!(e["code"], -32018);
    assert_eq!(
        e["data"],
        json!({"kind": "model_not_found", "model": "gamma", "available": ["alpha", "beta", "offline"]})
    );
    // A send that would have created its session creates none, and no model is asked.
    let e = rpc_error(
        &d,
        "message.send",
        json!({"content": "hi", "model": "gamma"}),
    );
    assert_eq!(e["data"]["kind"], "model_not_found");
    let e = rpc_error(
        &d,
        "message.send",
        json!({"session_id": sid, "content": "hi", "model": ""}),
    );
    assert_eq!(e["data"]["kind"], "model_not_found");
    assert_eq!(sessions(), 1);

    let long = "m".repeat(MAX_MODEL_NAME_BYTES + 1);
    let e = rpc_error(&d, "message.send", json!({"content": "hi", "model": long}));
    assert_eq!(
        (e["code"].as_i64(), e["data"]["kind"].as_str()),
        (Some(-32602), Some("model_too_long"))
    );
    let e = rpc_error(
        &d,
        "session.configure",
        json!({"session_id": sid, "model": long}),
    );
    assert_eq!(e["data"]["kind"], "model_too_long");
    let prompt = "p".repeat(MAX_SYSTEM_PROMPT_BYTES + 1);
    let e = rpc_error(
        &d,
        "session.configure",
        json!({"session_id": sid, "system_prompt": prompt}),
    );
    assert_eq!(
        (e["data"]["kind"].as_str(), e["data"]["limit"].as_u64()),
        (
            Some("system_prompt_too_long"),
            Some(MAX_SYSTEM_PROMPT_BYTES as u64)
        )
    );
    let e = rpc_error(
        &d,
        "session.configure",
        json!({"session_id": sid, "model": 7}),
    );
    assert_eq!(e["data"]["field"], "model");
    let e = rpc_error(
        &d,
        "session.configure",
        json!({"session_id": "nope", "model": "beta"}),
    );
    assert_eq!(e["data"]["kind"], "session_not_found");

    // At the bound the prompt is taken; nothing refused above changed the session.
    let prompt = "p".repeat(MAX_SYSTEM_PROMPT_BYTES);
    let s = d.call(
        "session.configure",
        json!({"session_id": sid, "system_prompt": prompt}),
    );
    assert_eq!(
        s["system_prompt"].as_str().map(str::len),
        Some(MAX_SYSTEM_PROMPT_BYTES)
    );
    assert!(s.get("model").is_none());
    assert!(alpha.requests().is_empty() && beta.requests().is_empty());
}

fn sqlite_at(path: &Path) -> impl FnOnce(&mut Config) + '_ {
    move |c| c.store = StoreConfig::Sqlite(path.to_owned())
}

#[test]
fn settings_survive_a_restart_of_a_database_migrated_from_version_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("zcoord.db");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/v2.db"),
        &db,
    )
    .unwrap();
    let with_offline = |c: &mut Config| {
        sqlite_at(&db)(c);
        c.models = BTreeMap::from([(
            "offline".to_owned(),
            ModelConfig::Echo {
                token_delay: Duration::from_millis(1),
            },
        )]);
    };

    let d = spawn_daemon_with(with_offline);
    let old = d.call("session.list", json!({}))["sessions"][0].clone();
    assert_eq!(old["title"], "fixture v2");
    // Migrated with no settings: the default model, the model's own prompt.
    assert!(
        old.get("model").is_none() && old.get("system_prompt").is_none(),
        "{old}"
    );
    let sid = old["id"].clone();
    d.call(
        "session.configure",
        json!({"session_id": sid, "model": "offline", "system_prompt": "Be terse."}),
    );
    d.stop();

    let d = spawn_daemon_with(with_offline);
    let s = d.call("session.get", json!({"session_id": sid}));
    assert_eq!(
        (s["model"].as_str(), s["system_prompt"].as_str()),
        (Some("offline"), Some("Be terse."))
    );
    let events = d.subscriber(&["llm."]);
    let (model, _) = turn(
        &d,
        &events,
        json!({"session_id": sid, "content": "still here"}),
    );
    assert_eq!(model, "offline");
    d.stop();

    // Restarted without that model: the session says what it wants, and a send is refused
    // until it is configured again.
    let d = spawn_daemon_with(sqlite_at(&db));
    let e = rpc_error(
        &d,
        "message.send",
        json!({"session_id": sid, "content": "hi"}),
    );
    assert_eq!(
        e["data"],
        json!({"kind": "model_not_found", "model": "offline", "available": ["echo"]})
    );
    d.call(
        "session.configure",
        json!({"session_id": sid, "model": null}),
    );
    let events = d.subscriber(&["llm."]);
    let (model, _) = turn(&d, &events, json!({"session_id": sid, "content": "back"}));
    assert_eq!(model, "echo");
}

/// The real binary reads `[models.NAME]` tables from its config file, and `--model` picks the
/// default among them; a turn on the table's OpenAI model reaches its server with its key.
#[test]
fn serve_reads_model_tables_from_its_config_file() {
    let rt = runtime();
    let fast = rt.block_on(FakeServer::start(answers("F", 1)));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    std::fs::create_dir(&data).unwrap();
    let config = format!(
        "[models.fast]\nprovider = \"openai\"\nmodel = \"small-1\"\nbase_url = \"{}\"\n\
         api_key_env = \"FAST_TEST_KEY\"\nmax_retries = 0\n\n\
         [models.offline]\nprovider = \"echo\"\ntoken_delay_ms = 0\n",
        fast.base_url
    );
    std::fs::write(data.join("config.toml"), config).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_zcoord"));
    cmd.arg("--data-dir")
        .arg(&data)
        .args(["serve", "--store", "memory", "--model", "offline"])
        .env_remove("ZCOORD_MODEL")
        .env_remove("ZCOORD_CONFIG")
        .env("FAST_TEST_KEY", "sk-fast-test");
    let served = common::Spawned::start(cmd, &data);
    let ctx = zmq::Context::new();
    let mut rpc =
        zcoord::client::RpcClient::connect(&ctx, &served.endpoint("rpc"), common::WAIT).unwrap();
    let list = rpc.call("model.list", json!({})).unwrap();
    assert_eq!(list["default"], "offline", "{}", served.log());
    let providers: Vec<&str> = list["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["provider"].as_str().unwrap())
        .collect();
    assert_eq!(providers, ["openai:small-1", "echo"]);

    let events = common::live_subscriber(&ctx, &served.endpoint("pub"), &["llm."]);
    let r = rpc
        .call("message.send", json!({"content": "hi", "model": "fast"}))
        .unwrap();
    let got = events.until_turn("llm.end", r["turn_id"].as_str().unwrap());
    assert_eq!(got[0].envelope.payload["model"], "fast");
    assert_eq!(got.last().unwrap().envelope.payload["reason"], "completed");
    let requests = fast.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].body["model"], "small-1");
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer sk-fast-test")
    );

    // `zcoord send --model` picks the model for its turn; an unknown name is the error reply.
    let send = |model: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_zcoord"))
            .arg("--data-dir")
            .arg(&data)
            .args(["send", "--model", model, "hello"])
            .env_remove("ZCOORD_RPC")
            .env_remove("ZCOORD_PUB")
            .output()
            .unwrap()
    };
    let out = send("offline");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("echo: hello"));
    let out = send("nope");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("model_not_found"));
}
