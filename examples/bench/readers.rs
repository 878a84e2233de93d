//! Subscriber threads for the token scenarios. Each has a libzmq context and a SUB of its own, as
//! separate client processes would, becomes live, then reads the token stream into a `Tally`.
//! The same reader serves zcoord and the bare PUB, so both are measured by identical clients.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use zcoord::client::Subscriber;

use crate::live::{wait_live, EventSource};
use crate::stream::{read_until, Tally, TokenReader, Until};

/// What a zcoord reader subscribes to: `llm.` for tokens and ends, and heartbeats last, so a
/// heartbeat proves the whole subscription live (see `wait_live`).
pub const ZCOORD_PREFIXES: &[&str] = &["llm.", "instance.heartbeat"];
/// How long a subscription may take to become live.
pub const LIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// A stream with nothing for this long is over.
const QUIET: Duration = Duration::from_secs(5);

/// Whose PUB the readers connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// zcoord: live once `wait_live` says so.
    Zcoord,
    /// A bare PUB: subscribed to everything, live at its first probe.
    Bare,
}

/// What a reader waits for before it stops.
#[derive(Debug, Clone, Copy)]
pub struct Expect {
    pub tokens: u64,
    pub ends: u64,
    /// The longest a reader reads once live.
    pub within: Duration,
}

pub struct Readers {
    ready: Receiver<()>,
    handles: Vec<JoinHandle<anyhow::Result<Tally>>>,
}

impl Readers {
    pub fn spawn(
        count: usize,
        target: Target,
        endpoint: &str,
        latency: bool,
        expect: Expect,
    ) -> Readers {
        let (ready_tx, ready) = mpsc::channel();
        let handles = (0..count)
            .map(|_| {
                let endpoint = endpoint.to_owned();
                let ready_tx = ready_tx.clone();
                std::thread::spawn(move || {
                    let ctx = zmq::Context::new();
                    let prefixes = match target {
                        Target::Zcoord => ZCOORD_PREFIXES,
                        Target::Bare => &[""],
                    };
                    let sub = Subscriber::connect(&ctx, &endpoint, prefixes)?;
                    match target {
                        Target::Zcoord => {
                            wait_live(&sub, prefixes, LIVE_TIMEOUT)?;
                        }
                        Target::Bare => {
                            if sub.next_frames(LIVE_TIMEOUT)?.is_none() {
                                bail!("no probe from the bare PUB within {LIVE_TIMEOUT:?}");
                            }
                        }
                    }
                    let _ = ready_tx.send(());
                    let mut reader = TokenReader::new(latency);
                    let until = Until {
                        tokens: expect.tokens,
                        ends: expect.ends,
                        quiet: QUIET,
                        deadline: Instant::now() + expect.within,
                    };
                    read_until(&sub, &mut reader, until)?;
                    Ok(reader.finish())
                })
            })
            .collect();
        Readers { ready, handles }
    }

    /// Waits until every reader is live, calling `nudge` every few milliseconds meanwhile (the
    /// bare PUB probes with it). A reader that failed ends the wait with its error.
    pub fn wait_live(
        &mut self,
        mut nudge: impl FnMut() -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + LIVE_TIMEOUT + Duration::from_secs(1);
        let mut live = 0;
        while live < self.handles.len() {
            if Instant::now() >= deadline {
                bail!("subscribers not live within {LIVE_TIMEOUT:?}");
            }
            nudge()?;
            match self.ready.recv_timeout(Duration::from_millis(5)) {
                Ok(()) => live += 1,
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(i) = self.handles.iter().position(|h| h.is_finished()) {
                        self.handles
                            .swap_remove(i)
                            .join()
                            .map_err(|_| panicked())??;
                        bail!("a subscriber stopped before it was live");
                    }
                }
                Err(RecvTimeoutError::Disconnected) => bail!("subscriber threads gone"),
            }
        }
        Ok(())
    }

    pub fn join(self) -> anyhow::Result<Vec<Tally>> {
        self.handles
            .into_iter()
            .map(|h| h.join().map_err(|_| panicked())?)
            .collect()
    }
}

fn panicked() -> anyhow::Error {
    anyhow!("a subscriber thread panicked")
}
