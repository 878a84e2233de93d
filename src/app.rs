//! Wiring: opens the store, binds the transport, builds the core, and runs the loop that feeds the
//! one actor owning the core (`app/actor.rs`: effects in order, nothing shown before it is
//! committed) with requests, model output and ticks. Owns back-pressure to the models,
//! cancellation and the shutdown sequence.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use time::OffsetDateTime;

mod actor;
mod fair;
mod outbox;
mod reply_read;

use actor::Actor;
pub use actor::Stopped;
use outbox::Outbox;

use crate::config::{Config, ModelConfig, Promotion, StoreConfig};
use crate::core::{ids::UuidV7, Core, CoreConfig, InstanceMeta};
use crate::model::context::{ContextBudget, DEFAULT_CONTEXTS_BYTES};
use crate::model::echo::Echo;
use crate::model::openai::OpenAi;
use crate::model::registry::Models;
use crate::model::{Model, ModelError};
use crate::protocol::ids::InstanceId;
use crate::protocol::methods::Endpoints;
use crate::store::sqlite::SqliteStore;
use crate::store::writer::Writer;
use crate::store::{Store, StoreError};
use crate::tools::{Tools, WorkspaceError};
use crate::transport::{Inputs, Transport, TransportError};

/// What a started server tells its caller.
#[derive(Debug, Clone)]
pub struct Ready {
    pub instance_id: InstanceId,
    pub started_at: OffsetDateTime,
    pub rpc_endpoint: String,
    pub pub_endpoint: String,
    pub model: String,
    /// Every model by name, the default first.
    pub models: Vec<String>,
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
    #[error("cannot set up the tools: {0}")]
    Tools(#[from] WorkspaceError),
}

/// A server whose store is open and whose sockets are bound; `run` serves until shutdown.
pub struct Server {
    ready: Ready,
    transport: Transport,
    inputs: Inputs,
    core: Core,
    models: Models,
    writer: Writer,
    outbox: Arc<Mutex<Outbox>>,
    heartbeat_interval: Duration,
    core_spin: Duration,
    promotion: Option<Promotion>,
}

/// Opens and loads the store (refusing a bad database before anything is bound), binds the
/// sockets and builds the core, recovering turns a crash left running.
pub fn start(config: Config) -> Result<Server, StartError> {
    let tools = Arc::new(Tools::new(&config.tools)?);
    let model = build(&config.model, &tools)?;
    let name = config.model_name.clone().unwrap_or_else(|| model.name());
    let mut models = Models::new(&name, model);
    for (name, c) in &config.models {
        models
            .add(name, build(c, &tools)?)
            .map_err(StartError::Model)?;
    }
    start_with_models(config, models)
}

/// The provider `c` describes.
fn build(c: &ModelConfig, tools: &Arc<Tools>) -> Result<Arc<dyn Model>, StartError> {
    Ok(match c {
        ModelConfig::Echo { token_delay } => Arc::new(Echo {
            token_delay: *token_delay,
            tools: Arc::clone(tools),
        }),
        ModelConfig::OpenAi(c) => {
            Arc::new(OpenAi::new(c.clone(), Arc::clone(tools)).map_err(StartError::Model)?)
        }
    })
}

/// As [`start`], with a model built by the caller instead of `config.model` and
/// `config.models` (which are ignored): for embedding zcoord with a provider of one's own, and
/// for the benchmark's timestamping model.
pub fn start_with_model(config: Config, model: Arc<dyn Model>) -> Result<Server, StartError> {
    let name = config.model_name.clone().unwrap_or_else(|| model.name());
    start_with_models(config, Models::new(&name, model))
}

/// As [`start`], with the models built by the caller.
pub fn start_with_models(config: Config, models: Models) -> Result<Server, StartError> {
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
        model: models.default_model().name(),
        store: store_name.clone(),
    };
    let catalog = models.catalog().list();
    let mut names: Vec<String> = catalog.models.into_iter().map(|m| m.name).collect();
    names.sort_by_key(|n| *n != catalog.default);
    let mut core = Core::new(
        meta,
        CoreConfig {
            idempotency_capacity: config.idempotency_capacity,
            replay: config.replay,
            max_sessions: config.max_sessions,
            models: models.catalog(),
            known_tools: config
                .tools
                .names()
                .into_iter()
                .map(str::to_owned)
                .collect(),
            tool_policy: config.tool_policy.clone(),
            hitl_timeout: config
                .hitl_timeout
                .and_then(|t| time::Duration::try_from(t).ok()),
            client_timeout: time::Duration::try_from(config.client_timeout)
                .unwrap_or(time::Duration::MAX),
            claim_timeout: time::Duration::try_from(config.tool_claim_timeout)
                .unwrap_or(time::Duration::MAX),
            heartbeat_interval: config.heartbeat_interval,
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
    // Output waiting for the store, released by the store's thread as it commits: a client that
    // waits to see a change waits for the commit, not also for the actor to wake up to it. (A
    // store that commits at once has no thread and never calls this: see `store::inline`.)
    let outbox = Arc::new(Mutex::new(Outbox::default()));
    let writer = {
        let outbox = outbox.clone();
        let sink = transport.outbound.clone();
        Writer::spawn_with(
            store,
            Box::new(move |committed| {
                outbox
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .release(committed, &*sink);
                sink.settle();
            }),
        )?
    };
    let ready = Ready {
        instance_id,
        started_at,
        rpc_endpoint: transport.rpc_endpoint.clone(),
        pub_endpoint: transport.pub_endpoint.clone(),
        model: models.default_model().name(),
        models: names,
        store: store_name,
        recovered_turns,
    };
    Ok(Server {
        ready,
        transport,
        inputs,
        core,
        models,
        writer,
        outbox,
        heartbeat_interval: config.heartbeat_interval,
        core_spin: config.core_spin,
        promotion: config.promotion,
    })
}

impl Server {
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// Serves until `shutdown` resolves (with the reason to publish), then shuts down in order
    /// (see `actor::Actor::run`) and closes the sockets, queued events getting up to the PUB's
    /// linger to leave. Says whether changes had to be given up.
    pub async fn run(self, shutdown: impl Future<Output = String>) -> Stopped {
        let Server {
            ready: _,
            transport,
            inputs: Inputs { requests },
            core,
            models,
            writer,
            outbox,
            heartbeat_interval,
            core_spin,
            promotion,
        } = self;
        let contexts = ContextBudget::new(DEFAULT_CONTEXTS_BYTES);
        let (mut actor, receivers) = Actor::new(core, models, &transport, writer, outbox, contexts);
        // Recovery changes decided in `start`, the first heartbeat right after binding, and for a
        // standby taking over, its announcement.
        let started = now();
        actor.core.heartbeat(started);
        if let Some(p) = promotion {
            tracing::info!(previous = ?p.previous_instance_id, "promoted to primary");
            actor.core.promoted(p.previous_instance_id, started);
        }
        actor.apply_effects();
        let inputs = actor::Inputs {
            requests,
            heartbeat_interval,
            core_spin,
            shutdown,
        };
        let stopped = actor.run(inputs, receivers).await;
        let _ = tokio::task::spawn_blocking(move || transport.close()).await;
        tracing::info!("stopped");
        stopped
    }
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}
