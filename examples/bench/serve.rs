//! The server side of the benchmark: the bench binary re-executed with `--serve`, so the server has
//! a process (and a peak RSS) of its own. It runs zcoord with the bench model, prints its endpoints
//! as one line on stdout, and serves until its stdin closes.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use zcoord::config::{Config, StoreConfig};

use crate::model::BenchModel;

/// The hidden argument that makes the bench binary a server.
pub const SERVE_ARG: &str = "--serve";
/// The line the server prints once bound: `READY <pid> <rpc endpoint> <pub endpoint>`.
pub const READY: &str = "READY";

/// How the server of one scenario is set up.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub heartbeat: Duration,
    /// Per-subscriber PUB queue, in messages.
    pub pub_hwm: i32,
    /// An SQLite database to keep state in, instead of memory.
    pub sqlite: Option<PathBuf>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            // Short, so a subscriber waiting for its first event (until `instance.welcome`
            // lands) does not wait long.
            heartbeat: Duration::from_millis(200),
            pub_hwm: 10_000,
            sqlite: None,
        }
    }
}

impl ServeOptions {
    /// The arguments after [`SERVE_ARG`].
    pub fn to_args(&self) -> Vec<String> {
        let mut args = vec![
            format!("heartbeat_ms={}", self.heartbeat.as_millis()),
            format!("pub_hwm={}", self.pub_hwm),
        ];
        if let Some(path) = &self.sqlite {
            args.push(format!("sqlite={}", path.display()));
        }
        args
    }

    pub fn from_args(args: &[String]) -> anyhow::Result<ServeOptions> {
        let mut opts = ServeOptions::default();
        for arg in args {
            match arg.split_once('=') {
                Some(("heartbeat_ms", v)) => opts.heartbeat = Duration::from_millis(v.parse()?),
                Some(("pub_hwm", v)) => opts.pub_hwm = v.parse()?,
                Some(("sqlite", v)) => opts.sqlite = Some(PathBuf::from(v)),
                _ => bail!("unknown server option {arg:?}"),
            }
        }
        Ok(opts)
    }
}

/// Runs the server until stdin closes. Logs only with `RUST_LOG` set: per-drop warnings would
/// otherwise flood the terminal in the stalled-subscriber scenario.
pub fn serve(args: &[String]) -> anyhow::Result<()> {
    let opts = ServeOptions::from_args(args)?;
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let mut config = Config::default();
    // For measuring what the core's spin costs and buys (README, Benchmark).
    if let Ok(us) = std::env::var("BENCH_CORE_SPIN_US") {
        let us: u64 = us
            .parse()
            .context("BENCH_CORE_SPIN_US must be microseconds")?;
        config.core_spin = Duration::from_micros(us);
    }
    config.transport.rpc_endpoint = "tcp://127.0.0.1:0".into();
    config.transport.pub_endpoint = "tcp://127.0.0.1:0".into();
    config.transport.pub_sndhwm = opts.pub_hwm;
    config.heartbeat_interval = opts.heartbeat;
    if let Some(path) = opts.sqlite {
        config.store = StoreConfig::Sqlite(path);
    }
    // The same runtime as `zcoord serve`.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = zcoord::app::start_with_model(config, Arc::new(BenchModel))
            .context("starting the server")?;
        let ready = server.ready().clone();
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{READY} {} {} {}",
            std::process::id(),
            ready.rpc_endpoint,
            ready.pub_endpoint
        )?;
        out.flush()?;
        drop(out);
        server
            .run(async {
                let _ = tokio::task::spawn_blocking(|| {
                    let _ = std::io::stdin().read_to_end(&mut Vec::new());
                })
                .await;
                "bench done".to_owned()
            })
            .await;
        anyhow::Ok(())
    })
}
