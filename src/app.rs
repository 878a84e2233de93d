//! Wiring: opens the store, binds the transport, builds the core, and runs the loop that feeds the
//! one actor owning the core (`app/actor.rs`: effects in order, nothing shown before it is
//! committed) with requests, model output and ticks. Owns back-pressure to the models,
//! cancellation and the shutdown sequence.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

mod actor;
mod fair;

use actor::Actor;
use fair::RoundRobin;

use crate::config::{Config, ModelConfig, Promotion, StoreConfig};
use crate::core::{ids::UuidV7, Core, CoreConfig, InstanceMeta};
use crate::model::echo::Echo;
use crate::model::openai::OpenAi;
use crate::model::{Model, ModelError};
use crate::protocol::ids::InstanceId;
use crate::protocol::methods::Endpoints;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::Writer;
use crate::store::{Store, StoreError};
use crate::transport::{Inputs, Transport, TransportError};

/// Model output waiting for the core; a full queue slows the models, not the core.
const MODEL_QUEUE: usize = 4_096;
/// Model events taken in one go before their effects are applied: bounds how long requests and
/// ticks wait behind a fast stream.
const MODEL_BURST: usize = 256;
/// Requests taken off the transport's queue into the per-peer lines at most; beyond it they
/// wait in that queue, and when it too is full new ones get `server_busy`.
const MAX_TAKEN_REQUESTS: usize = 1_024;
/// Requests served before the loop looks at its other inputs again.
const REQUEST_ROUND: usize = 32;
/// How long shutdown waits for room in the transport's queue for what is still held.
const SHUTDOWN_ROOM_WAIT: Duration = Duration::from_secs(2);
/// How often running turns are considered for a checkpoint.
const CHECKPOINT_TICK: Duration = Duration::from_millis(500);

/// What a started server tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub instance_id: InstanceId,
    pub started_at: OffsetDateTime,
    pub rpc_endpoint: String,
    pub pub_endpoint: String,
    pub model: String,
    pub store: String,
    /// Turns a crash had left running, closed as aborted at start-up.
    pub recovered_turns: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("cannot start the store writer thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("cannot set up the model: {0}")]
    Model(ModelError),
}

/// A server whose store is open and whose sockets are bound; `run` serves until shutdown.
pub struct Server {
    ready: Ready,
    transport: Transport,
    inputs: Inputs,
    core: Core,
    model: Arc<dyn Model>,
    writer: Writer,
    heartbeat_interval: Duration,
    promotion: Option<Promotion>,
}

/// Opens and loads the store (refusing a bad database before anything is bound), binds the
/// sockets and builds the core, recovering turns a crash left running.
pub fn start(config: Config) -> Result<Server, StartError> {
    let model: Arc<dyn Model> = match &config.model {
        ModelConfig::Echo { token_delay } => Arc::new(Echo {
            token_delay: *token_delay,
        }),
        ModelConfig::OpenAi(c) => Arc::new(OpenAi::new(c.clone()).map_err(StartError::Model)?),
    };
    start_with_model(config, model)
}

/// As [`start`], with a model built by the caller instead of `config.model` (which is ignored):
/// for embedding zcoord with a provider of one's own, and for the benchmark's timestamping model.
pub fn start_with_model(config: Config, model: Arc<dyn Model>) -> Result<Server, StartError> {
    let mut store: Box<dyn Store> = match config.store {
        StoreConfig::Memory(m) => Box::new(m),
        StoreConfig::Sqlite(path) => Box::new(SqliteStore::open(&path)?),
    };
    let snapshot = store.load(config.idempotency_capacity)?;
    let store_name = store.describe();
    let instance_id = InstanceId(uuid::Uuid::now_v7());
    let (transport, inputs) = Transport::start(&config.transport, instance_id)?;
    let started_at = OffsetDateTime::now_utc();
    let meta = InstanceMeta {
        instance_id,
        started_at,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        endpoints: Endpoints {
            rpc: transport.rpc_endpoint.clone(),
            pub_: transport.pub_endpoint.clone(),
        },
        model: model.name(),
        store: store_name.clone(),
    };
    let mut core = Core::new(
        meta,
        CoreConfig {
            idempotency_capacity: config.idempotency_capacity,
            replay: config.replay,
            max_sessions: config.max_sessions,
            ..CoreConfig::default()
        },
        Box::new(UuidV7),
    );
    let recovered_turns = core.restore(snapshot, started_at);
    if recovered_turns > 0 {
        tracing::warn!(
            recovered_turns,
            "closed turns a crash left running as aborted"
        );
    }
    let writer = Writer::spawn(store)?;
    let ready = Ready {
        instance_id,
        started_at,
        rpc_endpoint: transport.rpc_endpoint.clone(),
        pub_endpoint: transport.pub_endpoint.clone(),
        model: model.name(),
        store: store_name,
        recovered_turns,
    };
    Ok(Server {
        ready,
        transport,
        inputs,
        core,
        model,
        writer,
        heartbeat_interval: config.heartbeat_interval,
        promotion: config.promotion,
    })
}

impl Server {
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// Serves until `shutdown` resolves (with the reason to publish), then shuts down in order:
    /// stop taking requests, end running turns, publish `instance.shutdown`, answer what was
    /// already queued, flush the store, release what waited on it, drain the PUB (bounded by
    /// its linger), close the sockets.
    pub async fn run(self, shutdown: impl Future<Output = String>) {
        let Server {
            ready: _,
            transport,
            inputs: Inputs {
                requests: mut inbound,
            },
            core,
            model,
            writer,
            heartbeat_interval,
            promotion,
        } = self;
        let (model_tx, mut model_rx) = mpsc::channel(MODEL_QUEUE);
        let mut committed = writer.committed();
        let mut actor = Actor {
            core,
            model,
            model_tx,
            transport: &transport,
            turns: HashMap::new(),
            committed: writer.committed(),
            writer,
            required: 0,
            held: VecDeque::new(),
            requests: RoundRobin::default(),
        };
        // Recovery changes decided in `start`, the first heartbeat right after binding, and for a
        // standby taking over, its announcement.
        let started = now();
        actor.core.heartbeat(started);
        if let Some(p) = promotion {
            tracing::info!(previous = ?p.previous_instance_id, "promoted to primary");
            actor.core.promoted(p.previous_instance_id, started);
        }
        actor.apply_effects();
        let mut heartbeat = tokio::time::interval_at(
            tokio::time::Instant::now() + heartbeat_interval,
            heartbeat_interval,
        );
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut checkpoint = tokio::time::interval(CHECKPOINT_TICK);
        checkpoint.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);

        let reason = loop {
            let waiting = actor.waiting_for_room();
            tokio::select! {
                reason = &mut shutdown => break reason,
                Some(inb) = inbound.recv(), if actor.requests.len() < MAX_TAKEN_REQUESTS => {
                    actor.requests.push(inb.route.identity.clone(), inb);
                    actor.serve_requests(&mut inbound);
                }
                () = std::future::ready(()), if !actor.requests.is_empty() => {
                    actor.serve_requests(&mut inbound);
                }
                // While the transport's queue is short of room, model output waits in its own
                // queue (slowing the models) rather than piling up here or being dropped.
                () = transport.outbound.room(), if waiting => actor.release(),
                Some((turn, ev)) = model_rx.recv(), if !waiting => {
                    actor.core.model_event(turn, ev, now());
                    // Take what else is ready before applying effects: a burst of tokens then
                    // costs one hand-off to the transport thread instead of one per token.
                    for _ in 1..MODEL_BURST {
                        let Ok((turn, ev)) = model_rx.try_recv() else { break };
                        actor.core.model_event(turn, ev, now());
                    }
                }
                Ok(()) = committed.changed() => actor.release(),
                _ = heartbeat.tick() => actor.core.heartbeat(now()),
                _ = checkpoint.tick() => actor.core.checkpoint(now()),
            }
            actor.apply_effects();
        };

        tracing::info!(%reason, "shutting down");
        transport.drain();
        actor.core.shutdown(&reason, now());
        actor.apply_effects();
        // Requests that reached the queue before the drain still get their answer.
        while let Some(inb) = actor.requests.pop() {
            actor.on_inbound(inb);
            actor.apply_effects();
        }
        while let Ok(inb) = inbound.try_recv() {
            actor.on_inbound(inb);
            actor.apply_effects();
        }
        let Actor { writer, held, .. } = actor;
        let last = tokio::task::spawn_blocking(move || writer.close())
            .await
            .unwrap_or(0);
        let mut unsaved = 0;
        // The transport thread is still sending: wait for room rather than drop (bounded).
        let deadline = tokio::time::Instant::now() + SHUTDOWN_ROOM_WAIT;
        for (needs, msg) in held {
            if needs > last {
                unsaved += 1;
                continue;
            }
            let mut msg = msg;
            while let Err(back) = transport.outbound.try_send(msg) {
                if tokio::time::Instant::now() >= deadline {
                    transport.outbound.send(back);
                    break;
                }
                let _ = tokio::time::timeout(Duration::from_millis(10), transport.outbound.room())
                    .await;
                msg = back;
            }
        }
        if unsaved > 0 {
            tracing::error!(
                unsaved,
                "replies and events withheld: their changes were not saved"
            );
        }
        let _ = tokio::task::spawn_blocking(move || transport.close()).await;
        tracing::info!("stopped");
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
