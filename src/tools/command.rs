//! `run_command {command, timeout_ms?}`: `sh -c command` in the workspace directory, bounded in
//! time and output. Not a sandbox: the command runs with the server's user and environment
//! (less `ZCOORD_SECRET`) and can reach anything that user can, which is why it is offered only
//! when enabled and asks a person by default.
//!
//! The command gets its own process group, stdin from `/dev/null`, and one pipe for stdout and
//! stderr (so their order is kept). The group is killed (SIGKILL) when the time is up, when the
//! shell exits (so background jobs do not outlive the call), and when the call is dropped (an
//! interrupted turn). A process that leaves the group (`setsid`) escapes that; the output is then
//! read for at most [`DRAIN`] more.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use super::error::ToolError;
use super::files::parse;
use super::{ToolDef, RUN_COMMAND};

/// Taken out of the command's environment: the instance's PLAIN secret (see `cli/target.rs`).
const HIDDEN_ENV: &[&str] = &["ZCOORD_SECRET"];

/// The time limit when the call gives none.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// The longest time limit a call may ask for.
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// Most bytes of output kept; the rest is read and counted, not kept.
pub const MAX_OUTPUT_BYTES: usize = 64 << 10;
/// Longest command text.
pub const MAX_COMMAND_BYTES: usize = 64 << 10;
/// How long output is still read once the shell has exited and its group is killed.
pub const DRAIN: Duration = Duration::from_millis(500);

/// `run_command` as offered to a model.
pub fn definition() -> ToolDef {
    ToolDef {
        name: RUN_COMMAND,
        description: "Runs `sh -c command` in the workspace directory with no input. Returns a \
            status line (`exit code: N`, `killed by signal: N` or `timed out ...`), then stdout \
            and stderr together, at most 64 KiB. The command and everything it starts are \
            killed after `timeout_ms` (default 30000, at most 600000) and when it exits.",
        parameters: json!({
            "type": "object",
            "properties": {
                "command": {"type": "string"},
                "timeout_ms": {"type": "integer", "minimum": 1, "maximum": MAX_TIMEOUT_MS}
            },
            "required": ["command"]
        }),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    command: String,
    timeout_ms: Option<u64>,
}

/// How a command ended, with what it printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    /// `None`: the time limit ended it.
    pub status: Option<ExitStatus>,
    pub timeout_ms: u64,
    /// At most [`MAX_OUTPUT_BYTES`] of stdout and stderr, interleaved as written.
    pub output: Vec<u8>,
    /// All the bytes it wrote.
    pub output_total: u64,
}

impl Finished {
    /// An error result unless it exited with status 0.
    pub fn is_error(&self) -> bool {
        !self.status.is_some_and(|s| s.success())
    }

    /// The result text: a status line, the output, and a line saying when the output was cut.
    pub fn text(&self) -> String {
        use std::os::unix::process::ExitStatusExt;
        let mut out = match self.status {
            None => format!(
                "timed out after {} ms; its process group was killed",
                self.timeout_ms
            ),
            Some(s) => match (s.code(), s.signal()) {
                (Some(code), _) => format!("exit code: {code}"),
                (None, Some(sig)) => format!("killed by signal: {sig}"),
                (None, None) => format!("ended: {s}"),
            },
        };
        out.push('\n');
        out.push_str(&String::from_utf8_lossy(&self.output));
        if self.output_total > self.output.len() as u64 {
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(&format!(
                "[output cut: the first {} of {} bytes shown]",
                self.output.len(),
                self.output_total
            ));
        }
        out
    }
}

/// Parses the arguments and runs the command in `dir`.
pub async fn run(dir: &Path, args: Value) -> Result<Finished, ToolError> {
    let a: Args = parse("run_command", args)?;
    if a.command.len() > MAX_COMMAND_BYTES {
        return Err(ToolError::TooLarge(format!(
            "the command is {} bytes; run_command takes at most {MAX_COMMAND_BYTES}",
            a.command.len()
        )));
    }
    let timeout_ms = a.timeout_ms.unwrap_or(DEFAULT_TIMEOUT_MS);
    if !(1..=MAX_TIMEOUT_MS).contains(&timeout_ms) {
        return Err(ToolError::args(
            "run_command",
            format!("timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"),
        ));
    }
    let io = |e| ToolError::Io("run_command".into(), e);
    let (reader, writer) = std::io::pipe().map_err(io)?;
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&a.command)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(writer.try_clone().map_err(io)?)
        .stderr(writer)
        .process_group(0)
        .kill_on_drop(true);
    for var in HIDDEN_ENV {
        cmd.env_remove(var);
    }
    let mut child = cmd.spawn().map_err(io)?;
    // `cmd` holds the pipe's write end until dropped: the read end would never see its end.
    drop(cmd);
    let group = Group(child.id().and_then(|id| Pid::from_raw(id as i32)));
    let mut reader = tokio::net::unix::pipe::Receiver::from_owned_fd(reader.into()).map_err(io)?;

    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let mut output = Capped::default();
    let mut buf = vec![0u8; 16 << 10];
    let mut open = true;
    let status = loop {
        tokio::select! {
            status = child.wait() => break Some(status.map_err(io)?),
            read = reader.read(&mut buf), if open => match read {
                Ok(0) | Err(_) => open = false,
                Ok(n) => output.push(&buf[..n]),
            },
            _ = tokio::time::sleep_until(deadline) => break None,
        }
    };
    group.kill();
    if status.is_none() {
        // Killed: reaped at once.
        let _ = child.wait().await;
    }
    let drain_until = Instant::now() + DRAIN;
    while open {
        match tokio::time::timeout_at(drain_until, reader.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => output.push(&buf[..n]),
            _ => open = false,
        }
    }
    Ok(Finished {
        status,
        timeout_ms,
        output: output.kept,
        output_total: output.total,
    })
}

/// The command's process group, killed when this is dropped or `kill`ed.
struct Group(Option<Pid>);

impl Group {
    fn kill(&self) {
        if let Some(pid) = self.0 {
            // ESRCH (nothing left in the group) is the usual answer.
            let _ = rustix::process::kill_process_group(pid, Signal::KILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Output kept up to [`MAX_OUTPUT_BYTES`], and the count of all of it.
#[derive(Debug, Default)]
struct Capped {
    kept: Vec<u8>,
    total: u64,
    /// Set at the first cut: nothing after it is kept, even if the cut left a byte or two free.
    full: bool,
}

impl Capped {
    fn push(&mut self, bytes: &[u8]) {
        self.total += bytes.len() as u64;
        if self.full {
            return;
        }
        let room = MAX_OUTPUT_BYTES.saturating_sub(self.kept.len());
        let mut take = bytes.len().min(room);
        // Cut on a character boundary when the cut falls inside the text.
        if take < bytes.len() {
            self.full = true;
            while take > 0 && (bytes[take] & 0xC0) == 0x80 {
                take -= 1;
            }
        }
        self.kept.extend_from_slice(&bytes[..take]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run_in(dir: &Path, args: Value) -> Finished {
        run(dir, args).await.unwrap()
    }

    /// Whether `pid` is gone within a second of being killed (a zombie nobody reaped yet counts
    /// as gone: it runs nothing).
    fn gone(pid: &str) -> bool {
        let dead = || match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .is_some_and(|s| s.trim_start().starts_with('Z')),
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while !dead() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[tokio::test]
    async fn output_status_and_order() {
        let dir = tempfile::tempdir().unwrap();
        let done = run_in(
            dir.path(),
            json!({"command": "echo out; echo err >&2; echo out2; pwd; cat; exit 3"}),
        )
        .await;
        assert!(done.is_error());
        let cwd = std::fs::canonicalize(dir.path()).unwrap();
        assert_eq!(
            done.text(),
            format!("exit code: 3\nout\nerr\nout2\n{}\n", cwd.display())
        );
        let ok = run_in(dir.path(), json!({"command": "printf hi"})).await;
        assert!(!ok.is_error());
        assert_eq!(ok.text(), "exit code: 0\nhi");
    }

    #[tokio::test]
    async fn output_is_capped_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let done = run_in(
            dir.path(),
            json!({"command": "head -c 1000000 /dev/zero | tr '\\0' a"}),
        )
        .await;
        assert_eq!(done.output.len(), MAX_OUTPUT_BYTES);
        assert_eq!(done.output_total, 1_000_000);
        assert!(done
            .text()
            .ends_with("[output cut: the first 65536 of 1000000 bytes shown]"));
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let started = std::time::Instant::now();
        let done = run_in(
            dir.path(),
            json!({"command": "sleep 30 & echo $!; sleep 30", "timeout_ms": 300}),
        )
        .await;
        let took = started.elapsed();
        assert!(done.is_error());
        assert_eq!(done.status, None);
        let text = done.text();
        assert!(text.starts_with("timed out after 300 ms"), "{text}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        let pid = text.lines().nth(1).unwrap().trim();
        assert!(gone(pid), "the background sleep {pid} outlived the call");
    }

    #[tokio::test]
    async fn background_jobs_do_not_outlive_the_call() {
        let dir = tempfile::tempdir().unwrap();
        let done = run_in(dir.path(), json!({"command": "sleep 30 & echo $!"})).await;
        assert!(!done.is_error(), "{}", done.text());
        let pid = done.text().lines().nth(1).unwrap().trim().to_owned();
        assert!(gone(&pid), "the background sleep {pid} outlived the call");
    }

    #[tokio::test]
    async fn a_dropped_call_kills_the_group() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("pid");
        let command = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
        let mut call = Box::pin(run(dir.path(), json!({ "command": command })));
        // Until the background job is known: then the call is dropped, as an interrupt does.
        let pid = loop {
            tokio::select! {
                _ = &mut call => panic!("the call ended by itself"),
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
            match std::fs::read_to_string(&pid_file) {
                Ok(p) if p.ends_with('\n') => break p,
                _ => {}
            }
        };
        drop(call);
        assert!(
            gone(pid.trim()),
            "the background sleep {pid} outlived its dropped call"
        );
    }

    #[tokio::test]
    async fn bad_arguments_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for (args, want) in [
            (
                json!({"command": "true", "timeout_ms": 0}),
                "timeout_ms must be between 1 and 600000",
            ),
            (
                json!({"command": "true", "timeout_ms": 600_001}),
                "timeout_ms must be between",
            ),
            (json!({}), "missing field `command`"),
            (
                json!({"command": "x".repeat(MAX_COMMAND_BYTES + 1)}),
                "run_command takes at most",
            ),
        ] {
            let err = run(dir.path(), args).await.unwrap_err().to_string();
            assert!(err.contains(want), "{err}");
        }
    }

    #[test]
    fn a_cut_falls_on_a_character_boundary() {
        let mut c = Capped::default();
        c.push(&vec![b'a'; MAX_OUTPUT_BYTES - 1]);
        c.push("é and more".as_bytes());
        assert_eq!(c.kept.len(), MAX_OUTPUT_BYTES - 1);
        c.push(b"x");
        assert_eq!(c.kept.len(), MAX_OUTPUT_BYTES - 1, "nothing after the cut");
        assert_eq!(c.total, MAX_OUTPUT_BYTES as u64 - 1 + 11 + 1);
    }
}
