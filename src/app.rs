//! Wiring: binds the transport, builds the core, and runs the one actor task that owns the core.
//! The actor turns requests, model output and heartbeat ticks into core inputs and carries out the
//! core's effects in order. Owns cancellation and the shutdown sequence.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;
use tokio::sync::mpsc;
use tokio::time::MissedTickBehavior;

use crate::config::{Config, ModelConfig};
use crate::core::{ids::UuidV7, CallContext, Core, CoreConfig, Effect, InstanceMeta, ModelEvent};
use crate::model::echo::Echo;
use crate::model::runner::{spawn_turn, TurnHandle};
use crate::model::Model;
use crate::protocol::errors::RpcError;
use crate::protocol::events::Event;
use crate::protocol::ids::{InstanceId, TurnId};
use crate::protocol::jsonrpc::{encode_batch, Request, Response};
use crate::protocol::methods::{Call, Endpoints};
use crate::transport::{Calls, Inbound, Outbound, Route, Transport, TransportError};

/// Model output waiting for the core; a full queue slows the models, not the core.
const MODEL_QUEUE: usize = 4_096;

/// What a started server tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub instance_id: InstanceId,
    pub started_at: OffsetDateTime,
    pub rpc_endpoint: String,
    pub pub_endpoint: String,
    pub model: String,
}

/// A server whose sockets are bound; `run` serves until shutdown.
pub struct Server {
    ready: Ready,
    transport: Transport,
    inbound: mpsc::Receiver<Inbound>,
    core: Core,
    model: Arc<dyn Model>,
    heartbeat_interval: Duration,
}

/// Binds the sockets and builds the core. Fails early (bad endpoint, address in use).
pub fn start(config: Config) -> Result<Server, TransportError> {
    let (transport, inbound) = Transport::start(&config.transport)?;
    let model: Arc<dyn Model> = match config.model {
        ModelConfig::Echo { token_delay } => Arc::new(Echo { token_delay }),
    };
    let ready = Ready {
        instance_id: InstanceId(uuid::Uuid::now_v7()),
        started_at: OffsetDateTime::now_utc(),
        rpc_endpoint: transport.rpc_endpoint.clone(),
        pub_endpoint: transport.pub_endpoint.clone(),
        model: model.name(),
    };
    let meta = InstanceMeta {
        instance_id: ready.instance_id,
        started_at: ready.started_at,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: std::process::id(),
        endpoints: Endpoints {
            rpc: ready.rpc_endpoint.clone(),
            pub_: ready.pub_endpoint.clone(),
        },
        model: ready.model.clone(),
    };
    let core = Core::new(
        meta,
        CoreConfig {
            idempotency_capacity: config.idempotency_capacity,
        },
        Box::new(UuidV7),
    );
    Ok(Server {
        ready,
        transport,
        inbound,
        core,
        model,
        heartbeat_interval: config.heartbeat_interval,
    })
}

impl Server {
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// Serves until `shutdown` resolves (with the reason to publish), then shuts down in order:
    /// stop taking requests, end running turns, publish `instance.shutdown`, answer what was
    /// already queued, drain the PUB (bounded by its linger), close the sockets.
    pub async fn run(self, shutdown: impl Future<Output = String>) {
        let Server {
            ready,
            transport,
            mut inbound,
            core,
            model,
            heartbeat_interval,
        } = self;
        let (model_tx, mut model_rx) = mpsc::channel(MODEL_QUEUE);
        let mut actor = Actor {
            core,
            model,
            model_tx,
            transport: &transport,
            turns: HashMap::new(),
            instance_id: ready.instance_id,
        };
        let mut heartbeat = tokio::time::interval(heartbeat_interval);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tokio::pin!(shutdown);

        let reason = loop {
            tokio::select! {
                reason = &mut shutdown => break reason,
                Some(inb) = inbound.recv() => actor.on_inbound(inb),
                Some((turn, ev)) = model_rx.recv() => actor.core.model_event(turn, ev, now()),
                _ = heartbeat.tick() => actor.core.heartbeat(now()),
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
        drop(actor);
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
    instance_id: InstanceId,
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

    /// Queues a reply after the events its call decided, so a reply never overtakes its events
    /// (a client that got `message.send`'s answer has already been sent `message.append`).
    fn reply(&mut self, route: Route, body: Vec<u8>) {
        self.apply_effects();
        self.transport
            .outbound
            .send(Outbound::Reply { route, body });
    }

    fn apply_effects(&mut self) {
        for effect in self.core.take_effects() {
            match effect {
                Effect::Publish(p) => {
                    if let Event::LlmEnd(end) = &p.event {
                        // The turn is over; dropping its handle is a no-op if the task finished.
                        self.turns.remove(&end.turn_id);
                    }
                    tracing::trace!(seq = p.seq, topic = p.event.topic(), "publish");
                    let (key, body) = p.encode(self.instance_id);
                    self.transport.outbound.send(Outbound::Event { key, body });
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
