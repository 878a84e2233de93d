//! The workspace tools through the real daemon and its sockets: the echo model's `/tool` lines
//! against a workspace that sits beside a directory the tools must never read or change, and
//! `run_command` offered only when enabled. The full confinement table is in
//! `src/tools/confinement_tests.rs`; this is the same promise end to end.

mod common;

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::{send, spawn_daemon_with, Daemon};
use serde_json::Value;
use zcoord::core::policy::Policy;

const SECRET: &str = "TOP SECRET, outside the workspace\n";

/// `base/secret` and `base/outside/` beside `base/ws/`, the workspace.
struct Dirs {
    _base: tempfile::TempDir,
    base: PathBuf,
    ws: PathBuf,
}

fn dirs() -> Dirs {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let ws = base.join("ws");
    std::fs::create_dir_all(base.join("outside")).unwrap();
    std::fs::create_dir_all(ws.join("sub")).unwrap();
    std::fs::write(base.join("secret"), SECRET).unwrap();
    std::fs::write(base.join("outside/kept"), "kept\n").unwrap();
    std::fs::write(ws.join("notes.txt"), "first\nsecond\n").unwrap();
    symlink("../secret", ws.join("link_out")).unwrap();
    symlink("../outside", ws.join("dir_out")).unwrap();
    symlink(base.join("secret"), ws.join("abs_out")).unwrap();
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        ws.join("fifo"),
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    Dirs {
        _base: tmp,
        base,
        ws,
    }
}

/// A daemon whose tools work in `ws`. Every tool is allowed: what is tested here is what the
/// tools themselves refuse, not what a person is asked (tests/hitl.rs).
fn daemon_in(ws: &Path, run_command: bool) -> Daemon {
    let ws = ws.to_owned();
    spawn_daemon_with(move |c| {
        c.tools.workspace = ws;
        c.tools.run_command = run_command;
        c.tool_policy.set("write_file", Policy::Allow);
        c.tool_policy.set("run_command", Policy::Allow);
    })
}

/// Sends `content` and returns the turn's `tool.end` payloads, in order, and its `llm.end`.
fn tool_ends(d: &Daemon, content: &str) -> (Vec<Value>, Value) {
    let events = d.subscriber(&["tool.end", "llm.end"]);
    let sent = send(d, None, content);
    let turn = sent["turn_id"].as_str().unwrap();
    let got = events.until_turn("llm.end", turn);
    let (ends, last): (Vec<_>, Vec<_>) = got
        .into_iter()
        .map(|e| (e.envelope.topic, e.envelope.payload))
        .partition(|(topic, _)| topic == "tool.end");
    let ends = ends.into_iter().map(|(_, p)| p).collect();
    (ends, last.into_iter().next_back().unwrap().1)
}

/// Everything under `dir` (not following symlinks), with the contents of regular files.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_dir() {
                stack.push(p.clone());
            }
            let content = meta.is_file().then(|| std::fs::read(&p).unwrap());
            out.push((p, content));
        }
    }
    out.sort();
    out
}

#[test]
fn a_read_above_the_workspace_is_refused_and_reads_nothing() {
    let dirs = dirs();
    let outside_before = snapshot(&dirs.base.join("outside"));
    let secret_mtime = std::fs::metadata(dirs.base.join("secret"))
        .unwrap()
        .modified()
        .unwrap();
    let d = daemon_in(&dirs.ws, false);
    let (ends, llm_end) = tool_ends(&d, "look\n/tool read_file {\"path\":\"../secret\"}");
    assert_eq!(ends.len(), 1);
    assert_eq!(ends[0]["is_error"], true);
    assert_eq!(
        ends[0]["result"], "../secret: leads out of the workspace",
        "a clear message"
    );
    assert_eq!(llm_end["reason"], "completed", "the turn goes on");
    assert_eq!(
        std::fs::read_to_string(dirs.base.join("secret")).unwrap(),
        SECRET
    );
    let mtime = std::fs::metadata(dirs.base.join("secret"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, secret_mtime);
    assert_eq!(snapshot(&dirs.base.join("outside")), outside_before);
}

#[test]
fn the_confinement_table_through_the_daemon() {
    let dirs = dirs();
    let d = daemon_in(&dirs.ws, false);
    let abs = dirs.base.join("secret").display().to_string();
    let table: Vec<(String, bool, &str)> = vec![
        (
            r#"read_file {"path":"../secret"}"#.into(),
            true,
            "leads out of the workspace",
        ),
        (
            format!(r#"read_file {{"path":"{abs}"}}"#),
            true,
            "absolute paths are refused",
        ),
        (
            r#"read_file {"path":"link_out"}"#.into(),
            true,
            "the symlink \"link_out\" leads out",
        ),
        (
            r#"read_file {"path":"abs_out"}"#.into(),
            true,
            "the symlink \"abs_out\" leads out",
        ),
        (
            r#"list_dir {"path":"dir_out"}"#.into(),
            true,
            "the symlink \"dir_out\" leads out",
        ),
        (
            r#"write_file {"path":"dir_out/new","content":"x"}"#.into(),
            true,
            "leads out",
        ),
        (
            r#"write_file {"path":"link_out","content":"pwned"}"#.into(),
            true,
            "leads out",
        ),
        (
            r#"write_file {"path":"../secret","content":"pwned"}"#.into(),
            true,
            "leads out",
        ),
        (
            r#"read_file {"path":"fifo"}"#.into(),
            true,
            "is a fifo, not a regular file",
        ),
        (
            r#"write_file {"path":"fifo","content":"x"}"#.into(),
            true,
            "is a fifo",
        ),
        (
            r#"run_command {"command":"cat ../secret > stolen"}"#.into(),
            true,
            "not enabled",
        ),
        (
            r#"read_file {"path":"notes.txt","offset":2}"#.into(),
            false,
            "second\n",
        ),
        (
            r#"write_file {"path":"sub/new.txt","content":"made"}"#.into(),
            false,
            "created sub/new.txt (4 bytes)",
        ),
        (r#"list_dir {"path":"sub"}"#.into(), false, "new.txt\n"),
    ];
    let outside_before = snapshot(&dirs.base.join("outside"));
    let message: String = table
        .iter()
        .map(|(line, _, _)| format!("/tool {line}\n"))
        .collect();
    let (ends, llm_end) = tool_ends(&d, &message);
    assert_eq!(ends.len(), table.len());
    for ((line, is_error, part), end) in table.iter().zip(&ends) {
        let result = end["result"].as_str().unwrap();
        assert_eq!(end["is_error"], *is_error, "{line}: {result}");
        assert!(result.contains(part), "{line}: {result}");
        assert!(!result.contains("TOP SECRET"), "{line}: read the secret");
    }
    assert_eq!(llm_end["reason"], "completed");
    assert_eq!(
        std::fs::read_to_string(dirs.base.join("secret")).unwrap(),
        SECRET
    );
    assert_eq!(snapshot(&dirs.base.join("outside")), outside_before);
    assert!(!dirs.ws.join("stolen").exists());
    assert_eq!(
        std::fs::read_to_string(dirs.ws.join("sub/new.txt")).unwrap(),
        "made"
    );
}

#[test]
fn run_command_runs_in_the_workspace_only_when_enabled() {
    let dirs = dirs();
    let line = "/tool run_command {\"command\":\"pwd; echo hi > made\"}";
    let off = daemon_in(&dirs.ws, false);
    let (ends, _) = tool_ends(&off, line);
    assert_eq!(ends[0]["is_error"], true);
    assert_eq!(
        ends[0]["result"],
        "run_command is not enabled on this server (serve --enable-run-command)"
    );
    assert!(!dirs.ws.join("made").exists());
    off.stop();

    let on = daemon_in(&dirs.ws, true);
    let (ends, _) = tool_ends(&on, line);
    assert_eq!(ends[0]["is_error"], false, "{}", ends[0]["result"]);
    assert_eq!(
        ends[0]["result"],
        format!("exit code: 0\n{}\n", dirs.ws.display())
    );
    assert_eq!(
        std::fs::read_to_string(dirs.ws.join("made")).unwrap(),
        "hi\n"
    );
}

/// Bad tool settings stop `serve` at start-up as usage errors, whichever source they come from.
#[test]
fn bad_tool_settings_are_usage_errors() {
    let data = tempfile::tempdir().unwrap();
    let serve = |args: &[&str], env: &[(&str, &str)], config: &str| {
        std::fs::write(data.path().join("config.toml"), config).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zcoord"))
            .args(["--data-dir", data.path().to_str().unwrap(), "serve"])
            .args([
                "--store",
                "memory",
                "--rpc",
                "bogus://x",
                "--pub",
                "bogus://y",
            ])
            .args(args)
            .env_remove("ZCOORD_TOOL_POLICY")
            .env_remove("ZCOORD_ENABLE_RUN_COMMAND")
            .env_remove("ZCOORD_WORKSPACE")
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.code(), stderr)
    };
    let no_env: Vec<(&str, &str)> = Vec::new();
    let bad_env = vec![("ZCOORD_TOOL_POLICY", "run_command=never")];
    let bad_file = "[tool_policy]\nwrite_file = \"maybe\"\n";
    // (flags, environment, config file, what the error says)
    let cases = [
        (
            vec!["--tool-policy", "write_file"],
            &no_env,
            "",
            "write_file=allow",
        ),
        (
            vec!["--tool-policy", "write_file=yes"],
            &no_env,
            "",
            "allow, ask or deny",
        ),
        (
            vec!["--tool-policy", "ask_user=allow"],
            &no_env,
            "",
            "ask_user is always",
        ),
        (vec![], &bad_env, "", "ZCOORD_TOOL_POLICY: "),
        (
            vec![],
            &no_env,
            bad_file,
            "[tool_policy]: unknown tool policy",
        ),
        (
            vec!["--enable-run-command=perhaps"],
            &no_env,
            "",
            "--enable-run-command",
        ),
        (
            vec!["--workspace", "/nonexistent/ws"],
            &no_env,
            "",
            "workspace /nonexistent/ws",
        ),
    ];
    for (args, env, config, want) in &cases {
        let (code, stderr) = serve(args, env, config);
        assert_eq!(code, Some(2), "{args:?} {env:?} {config:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?} {env:?}: {stderr}");
    }
    // Good settings get as far as binding (which these endpoints refuse).
    let (code, stderr) = serve(&["--tool-policy", "write_file=allow"], &[], "");
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("bogus://x"), "{stderr}");
}

/// An interrupted turn kills the command it was running, and everything the command started.
#[test]
fn an_interrupt_kills_the_running_command_and_its_group() {
    let dirs = dirs();
    let d = daemon_in(&dirs.ws, true);
    let events = d.subscriber(&["llm.end"]);
    let line = "/tool run_command {\"command\":\"sleep 30 & echo $! > pid; wait\"}";
    let sent = send(&d, None, line);
    let pid_file = dirs.ws.join("pid");
    let pid = common::eventually("the command's background job", || {
        std::fs::read_to_string(&pid_file)
            .ok()
            .filter(|p| p.ends_with('\n'))
    });
    d.call(
        "session.interrupt",
        serde_json::json!({"session_id": sent["session_id"]}),
    );
    let end = events.until_turn("llm.end", sent["turn_id"].as_str().unwrap());
    assert_eq!(
        end.last().unwrap().envelope.payload["reason"],
        "interrupted"
    );
    common::eventually("the background sleep to die", || {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        // Gone, or a zombie waiting for a reaper: it runs nothing either way.
        let dead = stat.map_or(true, |s| {
            s.rsplit(')').next().unwrap().trim_start().starts_with('Z')
        });
        dead.then_some(())
    });
}
