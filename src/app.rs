//! Wiring: opens the store, binds the transport, builds the core, and runs the one actor task that
//! owns the core. The actor turns requests, model output and ticks into core inputs and carries out
//! the core's effects in order: changes go to the store's writer thread, and every reply and event
//! waits until the changes decided before it are committed, so nothing a crash could take back is
//! ever shown. Owns cancellation and the shutdown sequence.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::{mpsc, watch};
use tokio::time::MissedTickBehavior;

use crate::config::{Config, ModelConfig, Promotion, StoreConfig};
use crate::core::{ids::UuidV7, CallContext, Core, CoreConfig, Effect, InstanceMeta, ModelEvent};
use crate::model::echo::Echo;
use crate::model::openai::OpenAi;
use crate::model::runner::{spawn_turn, TurnHandle};
use crate::model::{Model, ModelError};
use crate::protocol::errors::RpcError;
use crate::protocol::events::Event;
use crate::protocol::ids::{InstanceId, TurnId};
use crate::protocol::jsonrpc::{encode_batch, Request, Response};
use crate::protocol::methods::{Call, Endpoints};
use crate::store::sqlite::SqliteStore;
use crate::store::writer::Writer;
use crate::store::{Store, StoreError};
use crate::transport::{Calls, Inbound, Inputs, Outbound, Route, Transport, TransportError};

/// Model output waiting for the core; a full queue slows the models, not the core.
const MODEL_QUEUE: usize = 4_096;
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
    let (transport, inputs) = Transport::start(&config.transport)?;
    let instance_id = InstanceId(uuid::Uuid::now_v7());
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
            inputs:
                Inputs {
                    requests: mut inbound,
                    mut subscriptions,
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
            tokio::select! {
                reason = &mut shutdown => break reason,
                Some(inb) = inbound.recv() => actor.on_inbound(inb),
                Some(sub) = subscriptions.recv() => actor.core.welcome(sub, now()),
                Some((turn, ev)) = model_rx.recv() => actor.core.model_event(turn, ev, now()),
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
        while let Ok(inb) = inbound.try_recv() {
            actor.on_inbound(inb);
            actor.apply_effects();
        }
        let Actor { writer, held, .. } = actor;
        let last = tokio::task::spawn_blocking(move || writer.close())
            .await
            .unwrap_or(0);
        let mut unsaved = 0;
        for (needs, msg) in held {
            if needs <= last {
                transport.outbound.send(msg);
            } else {
                unsaved += 1;
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

/// The one owner of the core.
struct Actor<'t> {
    core: Core,
    model: Arc<dyn Model>,
    model_tx: mpsc::Sender<(TurnId, ModelEvent)>,
    transport: &'t Transport,
    /// Running model tasks; dropping a handle stops its task.
    turns: HashMap<TurnId, TurnHandle>,
    writer: Writer,
    /// The number of the last change the store has committed.
    committed: watch::Receiver<u64>,
    /// The number of the last gating change submitted: what anything sent now depends on.
    required: u64,
    /// Replies and events waiting for the store, in order, with the change each needs.
    held: VecDeque<(u64, Outbound)>,
}

impl Actor<'_> {
    fn on_inbound(&mut self, inb: Inbound) {
        let Inbound { route, calls } = inb;
        match calls {
            Calls::Single(req) => {
                if let Some(resp) = self.handle(req) {
                    self.reply(route, resp.to_bytes());
                }
            }
            Calls::Batch(items) => {
                let responses: Vec<Response> = items
                    .into_iter()
                    .filter_map(|item| match item {
                        Ok(req) => self.handle(req),
                        Err(resp) => Some(resp),
                    })
                    .collect();
                if let Some(body) = encode_batch(&responses) {
                    self.reply(route, body);
                }
            }
        }
    }

    /// Runs one call through the core; `None` for a notification.
    fn handle(&mut self, req: Request) -> Option<Response> {
        let Request { id, method, params } = req;
        let outcome = Call::parse(&method, params).and_then(|call| {
            let ctx = CallContext {
                now: now(),
                drops: self.transport.stats.snapshot(),
            };
            self.core
                .call(call, &ctx)
                .map_err(RpcError::from)
                .and_then(|reply| {
                    serde_json::to_value(reply).map_err(|e| RpcError::internal(&e.to_string()))
                })
        });
        match &outcome {
            Ok(_) => tracing::debug!(%method, "call ok"),
            Err(e) => tracing::debug!(%method, code = e.code, message = %e.message, "call refused"),
        }
        let id = id?;
        Some(match outcome {
            Ok(result) => Response::ok(id, result),
            Err(e) => Response::err(id, e),
        })
    }

    /// Queues a reply after the events and changes its call decided, so a reply never overtakes
    /// its events and never shows state that is not yet committed.
    fn reply(&mut self, route: Route, body: Vec<u8>) {
        self.apply_effects();
        self.send(Outbound::Reply { route, body });
    }

    /// Sends now if everything it depends on is committed and nothing is waiting ahead of it;
    /// otherwise holds it, in order.
    fn send(&mut self, msg: Outbound) {
        if self.held.is_empty() && *self.committed.borrow() >= self.required {
            self.transport.outbound.send(msg);
        } else {
            self.held.push_back((self.required, msg));
        }
    }

    /// Sends the held messages whose changes are now committed.
    fn release(&mut self) {
        let done = *self.committed.borrow_and_update();
        while self.held.front().is_some_and(|(needs, _)| *needs <= done) {
            if let Some((_, msg)) = self.held.pop_front() {
                self.transport.outbound.send(msg);
            }
        }
    }

    fn apply_effects(&mut self) {
        for effect in self.core.take_effects() {
            match effect {
                Effect::Persist { change, gating } => {
                    let n = self.writer.submit(change);
                    if gating {
                        self.required = n;
                    }
                }
                Effect::Publish(p) => {
                    if let Event::LlmEnd(end) = &p.event {
                        // The turn is over; dropping its handle is a no-op if the task finished.
                        self.turns.remove(&end.turn_id);
                    }
                    tracing::trace!(seq = p.seq, topic = p.event.topic(), "publish");
                    self.send(Outbound::Event {
                        key: p.key,
                        body: p.body,
                    });
                }
                Effect::StartTurn(start) => {
                    tracing::debug!(turn_id = %start.turn_id, session_id = %start.session_id, "turn start");
                    let id = start.turn_id;
                    let handle = spawn_turn(self.model.clone(), start, self.model_tx.clone());
                    self.turns.insert(id, handle);
                }
                Effect::CancelTurn(turn_id) => {
                    tracing::debug!(%turn_id, "turn cancelled");
                    if let Some(h) = self.turns.remove(&turn_id) {
                        h.cancel();
                    }
                }
            }
        }
    }
}
