//! The mirror client a secondary app instance embeds: keeps a [`Replica`] of the primary's
//! sessions, active session and messages, consistent by the Clone pattern: subscribe first, wait
//! until the subscription is live, `state.sync` plus each session's `message.list`, drop events at
//! or below the snapshot's `seq`, apply the rest in order; resynchronise on a `seq` gap or a new
//! `instance_id` (restart, failover). libzmq reconnects both sockets by itself; a failed resync is
//! retried with backoff. Runs on its own thread; changes come out of a channel.

pub mod replica;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

pub use replica::{Change, Replica, Resync};

use crate::client::{ClientError, RpcClient, Subscriber};
use crate::liveness::{local_process_runs, Gone, Liveness};
use zcoord_protocol::ids::{InstanceId, SessionId};
use zcoord_protocol::methods::{MessageListResult, StateSyncResult};
use zcoord_protocol::types::MessagePayload;

/// How long one wait for an event lasts before the stop flag is looked at again.
const TICK: Duration = Duration::from_millis(100);
/// How long one attempt waits for the subscription's welcome before starting over.
const WELCOME_WAIT: Duration = Duration::from_secs(1);

/// A running mirror. Dropping it stops the thread.
pub struct Mirror {
    replica: Arc<Mutex<Replica>>,
    changes: Receiver<Change>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Mirror {
    /// Starts mirroring the primary at these endpoints; `timeout` bounds each RPC call.
    pub fn start(rpc: &str, pub_: &str, timeout: Duration) -> Mirror {
        Self::start_with(rpc, pub_, timeout, None)
    }

    /// As `start`, presenting the instance's secret (PLAIN) when given: needed over tcp.
    pub fn start_with(rpc: &str, pub_: &str, timeout: Duration, secret: Option<String>) -> Mirror {
        Self::start_watching(rpc, pub_, timeout, secret, None)
    }

    /// As `start_with`; `discovery_file` is the primary's discovery file when it is on this
    /// machine, so a primary whose process ended is noticed without waiting for its silence.
    /// Either way a primary that is gone is announced ([`Change::PrimaryGone`]) once.
    pub fn start_watching(
        rpc: &str,
        pub_: &str,
        timeout: Duration,
        secret: Option<String>,
        discovery_file: Option<PathBuf>,
    ) -> Mirror {
        let replica = Arc::new(Mutex::new(Replica::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, changes) = mpsc::channel();
        let worker = Worker {
            rpc: rpc.to_owned(),
            pub_: pub_.to_owned(),
            secret,
            timeout,
            discovery_file,
            replica: replica.clone(),
            stop: stop.clone(),
            tx,
        };
        let thread = std::thread::Builder::new()
            .name("zcoord-mirror".into())
            .spawn(move || worker.run())
            .ok();
        Mirror {
            replica,
            changes,
            stop,
            thread,
        }
    }

    /// A copy of the replica as it is now.
    pub fn replica(&self) -> Replica {
        self.replica.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// The changes, in order, as they are applied.
    pub fn changes(&self) -> &Receiver<Change> {
        &self.changes
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    rpc: String,
    pub_: String,
    secret: Option<String>,
    timeout: Duration,
    discovery_file: Option<PathBuf>,
    replica: Arc<Mutex<Replica>>,
    stop: Arc<AtomicBool>,
    tx: Sender<Change>,
}

impl Worker {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    fn run(self) {
        let ctx = zmq::Context::new();
        // Live once our welcome arrives: from then on nothing is missed.
        let sub = loop {
            if self.stopped() {
                return;
            }
            let secret = self.secret.as_deref();
            match Subscriber::connect_live_with(&ctx, &self.pub_, &[""], WELCOME_WAIT, secret) {
                Ok((sub, _)) => break sub,
                Err(e) => tracing::debug!(error = %e, "mirror subscription not live yet"),
            }
        };
        let secret = self.secret.as_deref();
        let Ok(mut rpc) = RpcClient::connect_with(&ctx, &self.rpc, self.timeout, secret) else {
            return;
        };
        let mut retired: HashSet<InstanceId> = HashSet::new();
        let mut backoff = Duration::from_millis(100);
        while !self.stopped() {
            let mut replica = match self.snapshot(&mut rpc) {
                Ok((replica, change)) => {
                    backoff = Duration::from_millis(100);
                    // The replica first, then the news: a reader of `replica()` on `Synced`
                    // must see the snapshot it announces.
                    self.publish(&replica);
                    let _ = self.tx.send(change);
                    replica
                }
                Err(e) => {
                    tracing::debug!(error = %e, "mirror resync failed; retrying");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            // Whether the primary synced from is still there; said once per primary.
            let mut live = match replica.instance_id {
                Some(i) => Liveness::of(i, 0, Instant::now()),
                None => Liveness::new(Instant::now()),
            };
            let mut announced = false;
            loop {
                if self.stopped() {
                    return;
                }
                let ev = match sub.recv(TICK) {
                    Ok(Some(ev)) => ev,
                    Ok(None) => {
                        if !announced {
                            let file = self.discovery_file.as_deref();
                            let local = file.and_then(|f| local_process_runs(f, live.instance()));
                            if let Some(why) = live.check(Instant::now(), local) {
                                announced = true;
                                self.gone(live.instance(), why);
                            }
                        }
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "mirror dropped a malformed event");
                        break;
                    }
                };
                if retired.contains(&ev.envelope.instance_id) {
                    continue; // still buffered from a primary that is gone
                }
                let was = live.instance();
                if let Some(why) = live.heard(&ev.envelope, Instant::now()) {
                    if !std::mem::replace(&mut announced, true) {
                        self.gone(was, why);
                    }
                }
                match replica.apply(&ev.envelope) {
                    Ok(changes) => {
                        for (session_id, message_id) in std::mem::take(&mut replica.incomplete) {
                            let whole = rpc.call(
                                "message.get",
                                json!({"session_id": session_id, "message_id": message_id}),
                            );
                            // A message deleted since, or a timeout: keep the part we have.
                            if let Ok(Ok(m)) = whole.map(serde_json::from_value::<MessagePayload>) {
                                replica.complete(m);
                            }
                        }
                        self.publish(&replica);
                        for c in changes {
                            let _ = self.tx.send(c);
                        }
                    }
                    Err(why) => {
                        tracing::info!(?why, "mirror resynchronising");
                        if let (Resync::NewInstance(_), Some(old)) = (&why, replica.instance_id) {
                            retired.insert(old);
                        }
                        break;
                    }
                }
            }
        }
    }

    fn gone(&self, instance_id: Option<InstanceId>, why: Gone) {
        tracing::info!(?instance_id, %why, "the primary is gone");
        let _ = self.tx.send(Change::PrimaryGone { instance_id, why });
    }

    fn publish(&self, replica: &Replica) {
        if let Ok(mut shared) = self.replica.lock() {
            *shared = replica.clone();
        }
    }

    fn snapshot(&self, rpc: &mut RpcClient) -> Result<(Replica, Change), ClientError> {
        let bad = |e: serde_json::Error| ClientError::BadReply(e.to_string());
        let sync: StateSyncResult =
            serde_json::from_value(rpc.call("state.sync", json!({}))?).map_err(bad)?;
        let mut messages: HashMap<SessionId, Vec<MessagePayload>> = HashMap::new();
        for s in &sync.sessions {
            // Pages are bounded: the newest first, then backwards while older ones remain.
            let mut all: Vec<MessagePayload> = Vec::new();
            let mut params = json!({"session_id": s.id, "limit": 1000});
            loop {
                let page: MessageListResult =
                    serde_json::from_value(rpc.call("message.list", params.clone())?)
                        .map_err(bad)?;
                let more = page.has_more && !page.messages.is_empty();
                if let Some(first) = page.messages.first() {
                    params["before"] = json!(first.id);
                }
                all.splice(0..0, page.messages);
                if !more {
                    break;
                }
            }
            messages.insert(s.id, all);
        }
        Ok(Replica::from_snapshot(sync, messages))
    }
}
