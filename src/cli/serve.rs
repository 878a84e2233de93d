//! `zcoord serve`: resolves the configuration, refuses to start over a live instance, binds,
//! writes the discovery file, serves until SIGINT/SIGTERM, and removes the file on the way out.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::model_config::{self, ModelArgs};
use super::{EXIT_ERROR, EXIT_OK};
use crate::app;
use crate::config::{Config, StoreConfig};
use crate::discovery::{self, Discovery};
use crate::protocol::methods::Endpoints;
use crate::protocol::PROTOCOL_VERSION;
use crate::store::memory::MemoryStore;
use crate::transport::TransportConfig;

/// Longest `ipc://` path libzmq accepts (the `sun_path` limit, less the terminator).
const MAX_IPC_PATH: usize = 107;
/// Held locked by the serving process for its whole life.
const LOCK_FILE: &str = "zcoord.lock";
/// The SQLite database, in the data directory.
const DB_FILE: &str = "zcoord.db";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// ROUTER endpoint to bind (default: ipc://<data-dir>/run/rpc.sock). `tcp://127.0.0.1:0` picks a port.
    #[arg(long)]
    pub rpc: Option<String>,
    /// PUB endpoint to bind (default: ipc://<data-dir>/run/pub.sock).
    #[arg(long = "pub")]
    pub pub_: Option<String>,
    /// Seconds between `instance.heartbeat` events (fractions allowed).
    #[arg(long, default_value_t = 5.0)]
    pub heartbeat_interval: f64,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Config file (TOML) for the model settings (default: <data-dir>/config.toml if present).
    #[arg(long, env = "ZCOORD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest request frame answered normally; larger ones get `message_too_large`.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_message_bytes: usize,
    /// Per-subscriber PUB queue in messages; a subscriber further behind misses events.
    #[arg(long, default_value_t = 10_000)]
    pub pub_hwm: i32,
    /// Where state is kept: `sqlite` (<data-dir>/zcoord.db, survives restarts) or `memory`.
    #[arg(long, default_value = "sqlite")]
    pub store: String,
}

pub fn run(args: ServeArgs, data_dir: PathBuf) -> i32 {
    match serve(args, &data_dir) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            eprintln!("error: {e:#}");
            EXIT_ERROR
        }
    }
}

fn config(args: &ServeArgs, data_dir: &Path) -> anyhow::Result<Config> {
    let model = model_config::resolve(&args.model, args.config.as_deref(), data_dir, |var| {
        std::env::var(var).ok()
    })?;
    let store = match args.store.as_str() {
        "sqlite" => StoreConfig::Sqlite(data_dir.join(DB_FILE)),
        "memory" => StoreConfig::Memory(MemoryStore::new()),
        other => anyhow::bail!("unknown store {other:?}: use `sqlite` or `memory`"),
    };
    if !(0.01..=86_400.0).contains(&args.heartbeat_interval) {
        anyhow::bail!("--heartbeat-interval must be between 0.01 and 86400 seconds");
    }
    let run_dir = data_dir.join("run");
    let needs_run_dir = args.rpc.is_none() || args.pub_.is_none();
    if needs_run_dir {
        discovery::ensure_private_dir(&run_dir)?;
    }
    let default_ep = |name: &str| -> anyhow::Result<String> {
        let path = run_dir.join(name);
        let text = path.display().to_string();
        if text.len() > MAX_IPC_PATH {
            anyhow::bail!(
                "ipc socket path {text} is longer than {MAX_IPC_PATH} bytes; use a shorter --data-dir or pass --rpc/--pub"
            );
        }
        Ok(format!("ipc://{text}"))
    };
    Ok(Config {
        transport: TransportConfig {
            rpc_endpoint: args
                .rpc
                .clone()
                .map_or_else(|| default_ep("rpc.sock"), Ok)?,
            pub_endpoint: args
                .pub_
                .clone()
                .map_or_else(|| default_ep("pub.sock"), Ok)?,
            max_message_bytes: args.max_message_bytes,
            pub_sndhwm: args.pub_hwm,
            ..TransportConfig::default()
        },
        heartbeat_interval: Duration::from_secs_f64(args.heartbeat_interval),
        model,
        store,
        ..Config::default()
    })
}

/// Takes the data directory's lock for the life of the process. Exactly one process holds it:
/// the OS releases it when the holder exits, however it exits (kill -9 included), and the file is
/// never unlinked, so there is no unlink-after-unlock race. An error taking the lock never means
/// "go ahead": it fails closed.
fn lock_data_dir(data_dir: &Path, disc_path: &Path) -> anyhow::Result<std::fs::File> {
    let path = data_dir.join(LOCK_FILE);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("cannot open lock file {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let who = match discovery::read(disc_path) {
                Ok(d) => format!(
                    "instance {} (pid {}) at {}",
                    d.instance_id, d.pid, d.endpoints.rpc
                ),
                Err(_) => "another zcoord process (starting or stopping)".to_owned(),
            };
            anyhow::bail!(
                "a zcoord server is already running for this data directory ({}): {who}",
                data_dir.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            anyhow::bail!("cannot lock {}: {e}", path.display())
        }
    }
    if let Ok(d) = discovery::read(disc_path) {
        tracing::warn!(path = %disc_path.display(), pid = d.pid, "stale discovery file from a server that is gone; replacing it");
    }
    Ok(file)
}

fn serve(args: ServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    discovery::ensure_dir(data_dir)?;
    let disc_path = discovery::path_in(data_dir);
    let _lock = lock_data_dir(data_dir, &disc_path)?;
    let config = config(&args, data_dir)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = app::start(config)?;
        let ready = server.ready().clone();
        discovery::write(
            &disc_path,
            &Discovery {
                instance_id: ready.instance_id,
                pid: std::process::id(),
                endpoints: Endpoints {
                    rpc: ready.rpc_endpoint.clone(),
                    pub_: ready.pub_endpoint.clone(),
                },
                started_at: ready.started_at,
                protocol_version: PROTOCOL_VERSION,
                version: env!("CARGO_PKG_VERSION").to_owned(),
            },
        )?;
        println!(
            "zcoord {} serving (model {}, store {})",
            ready.instance_id, ready.model, ready.store
        );
        if ready.recovered_turns > 0 {
            println!(
                "  recovered {} turn(s) a crash left running (closed as aborted)",
                ready.recovered_turns
            );
        }
        println!("  rpc: {}", ready.rpc_endpoint);
        println!("  pub: {}", ready.pub_endpoint);
        println!("  discovery: {}", disc_path.display());
        server.run(shutdown_signal()).await;
        discovery::remove_if_ours(&disc_path, ready.instance_id);
        anyhow::Ok(())
    })
}

/// Resolves with the name of the first SIGINT or SIGTERM.
async fn shutdown_signal() -> String {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT".to_owned(),
                _ = term.recv() => "SIGTERM".to_owned(),
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT".to_owned()
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "SIGINT".to_owned()
    }
}
