//! The driving side of the server child process: starts a fresh server for each scenario (so its
//! peak RSS is that scenario's), reads its endpoints, measures its memory, and stops it; a child
//! is killed if it does not stop in time or the bench bails out early.
//!
//! `BENCH_SERVER_WRAPPER` runs each server under another program, `{n}` in it replaced by the
//! server's number in the run (from 1), e.g. `BENCH_SERVER_WRAPPER="perf record -g -o
//! /tmp/server{n}.perf --"` to profile each server alone.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use crate::serve::{ServeOptions, READY, SERVE_ARG};

/// How long a server may take to bind and print its endpoints.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to shut down once its stdin closes (a wrapper gets longer).
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
const WRAPPED_STOP_TIMEOUT: Duration = Duration::from_secs(120);
/// Servers started so far, for `{n}` in the wrapper.
static STARTED: AtomicUsize = AtomicUsize::new(0);

pub struct ServerChild {
    child: Child,
    /// The server's own process id (not the wrapper's, if there is one).
    pid: u32,
    stop_timeout: Duration,
    /// Closing it tells the server to shut down.
    stdin: Option<ChildStdin>,
    pub rpc: String,
    pub pub_: String,
}

impl ServerChild {
    pub fn spawn(opts: &ServeOptions) -> anyhow::Result<ServerChild> {
        let exe = std::env::current_exe().context("finding the bench binary")?;
        let wrapper = std::env::var("BENCH_SERVER_WRAPPER").unwrap_or_default();
        let n = (STARTED.fetch_add(1, Ordering::Relaxed) + 1).to_string();
        let wrapper: Vec<String> = wrapper
            .split_whitespace()
            .map(|w| w.replace("{n}", &n))
            .collect();
        let (mut command, stop_timeout) = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(exe);
                (c, WRAPPED_STOP_TIMEOUT)
            }
            None => (Command::new(exe), STOP_TIMEOUT),
        };
        let mut child = command
            .arg(SERVE_ARG)
            .args(opts.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting the server child")?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        // Built before reading, so an early return kills the child (Drop).
        let mut server = ServerChild {
            pid: child.id(),
            stop_timeout,
            child,
            stdin,
            rpc: String::new(),
            pub_: String::new(),
        };
        let stdout = stdout.ok_or_else(|| anyhow!("no stdout from the server child"))?;
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = line_tx.send(first);
            }
            // Keep reading so the child never blocks on a full pipe.
            lines.for_each(drop);
        });
        let line = line_rx
            .recv_timeout(START_TIMEOUT)
            .map_err(|_| anyhow!("the server child printed no endpoints in {START_TIMEOUT:?}"))?;
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            [READY, pid, rpc, pub_] => {
                server.pid = pid.parse()?;
                server.rpc = rpc.to_owned();
                server.pub_ = pub_.to_owned();
            }
            _ => bail!("unexpected first line from the server child: {line:?}"),
        }
        Ok(server)
    }

    /// The server's peak resident set size so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> anyhow::Result<u64> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no VmHWM in {path}"))
    }

    /// Measures the peak RSS, then stops the server (gracefully, else killed). Returns the peak.
    pub fn stop(mut self) -> anyhow::Result<u64> {
        let peak = self.peak_rss_kib()?;
        self.stdin.take();
        let deadline = Instant::now() + self.stop_timeout;
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(peak);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "warning: the server child did not stop within {:?}; killed",
            self.stop_timeout
        );
        Ok(peak)
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
