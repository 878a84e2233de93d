//! `zcoord serve`: resolves the configuration, refuses to start over a live instance, binds,
//! writes the discovery file, serves until SIGINT/SIGTERM, and removes the file on the way out.

use crate::protocol::limits::{
    DEFAULT_CLIENT_TIMEOUT_SECS, DEFAULT_HITL_TIMEOUT_SECS, DEFAULT_TOOL_CLAIM_TIMEOUT_SECS,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::config_file;
use super::model_config::{self, ModelArgs};
use super::target::SECRET_ENV;
use super::tool_config::{self, ToolArgs, ToolSettingsError};
use super::{EXIT_ERROR, EXIT_OK, EXIT_USAGE};
use crate::app;
use crate::config::{Config, Promotion, StoreConfig};
use crate::core::replay::ReplayLimits;
use crate::discovery::{self, Discovery};
use crate::election;
use crate::protocol::limits::DEFAULT_MAX_SESSIONS;
use crate::protocol::methods::Endpoints;
use crate::protocol::PROTOCOL_VERSION;
use crate::store::memory::MemoryStore;
use crate::transport::auth::{Secret, TcpAuth};
use crate::transport::curve::{self, AuthorizedKeys, CurveError, ServerKeyPair};
use crate::transport::fdlimit;
use crate::transport::ipc;
use crate::transport::TransportConfig;

/// Longest `ipc://` path libzmq accepts (the `sun_path` limit, less the terminator).
const MAX_IPC_PATH: usize = 107;
/// The SQLite database, in the data directory.
const DB_FILE: &str = "zcoord.db";

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// ROUTER endpoint to bind (default: ipc://<data-dir>/run/rpc.sock). `tcp://127.0.0.1:0` picks a port.
    /// An ipc socket's directory must be the user's own and closed to others (a missing one is
    /// created 0700); a socket another process listens on is never taken over.
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
    #[command(flatten)]
    pub tools: ToolArgs,
    /// Config file (TOML) for the model and tool settings (default: <data-dir>/config.toml if
    /// present).
    #[arg(long, env = "ZCOORD_CONFIG")]
    pub config: Option<PathBuf>,
    /// Largest request frame answered normally; larger ones get `message_too_large`.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_message_bytes: usize,
    /// Per-subscriber PUB queue in messages; a subscriber further behind misses events.
    #[arg(long, default_value_t = 10_000)]
    pub pub_hwm: i32,
    /// Bytes of events on their way to subscribers that have not been sent them; past it the
    /// subscriber furthest behind is disconnected (it reconnects and repairs its gap). Model
    /// output waits above a quarter of it.
    #[arg(long, default_value_t = 64 << 20)]
    pub pub_held_bytes: usize,
    /// Events kept for `events.replay` (the oldest go first).
    #[arg(long, default_value_t = ReplayLimits::default().max_events)]
    pub replay_events: usize,
    /// Bytes of events kept for `events.replay` (the oldest go first).
    #[arg(long, default_value_t = ReplayLimits::default().max_bytes)]
    pub replay_bytes: usize,
    /// Sessions held at once (deleted ones do not count); creating more is refused with
    /// `too_many_sessions` until one is deleted.
    #[arg(long, default_value_t = DEFAULT_MAX_SESSIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_sessions: usize,
    /// Seconds a tool approval or a question waits for a person before it is `expired` (the
    /// call then does not run); 0: never.
    #[arg(long, default_value_t = DEFAULT_HITL_TIMEOUT_SECS as u64)]
    pub hitl_timeout_secs: u64,
    /// Microseconds the core stays awake after answering requests, for the next one: a client
    /// asking in a loop is answered sooner, for up to that much CPU a request; 0: sleep at once.
    #[arg(long, default_value_t = crate::config::DEFAULT_CORE_SPIN.as_micros() as u64)]
    pub core_spin_us: u64,
    /// Seconds a client that said `client.hello` may stay silent before it leaves
    /// (`client.left`); any request, `instance.ping` included, keeps it present.
    #[arg(long, default_value_t = DEFAULT_CLIENT_TIMEOUT_SECS as u64,
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub client_timeout_secs: u64,
    /// Seconds a call of a client-run tool waits for a client's `tool.claim` before it ends as
    /// an error the model is told of.
    #[arg(long, default_value_t = DEFAULT_TOOL_CLAIM_TIMEOUT_SECS as u64,
          value_parser = clap::builder::RangedU64ValueParser::<u64>::new().range(1..))]
    pub tool_claim_timeout_secs: u64,
    /// Where state is kept: `sqlite` (<data-dir>/zcoord.db, survives restarts) or `memory`.
    #[arg(long, default_value = "sqlite")]
    pub store: String,
    /// Allow binding tcp to an address other than loopback. Implies --curve: the traffic is
    /// encrypted and only clients whose key is authorised get in.
    #[arg(long)]
    pub allow_remote: bool,
    /// Over tcp, use ZeroMQ CURVE instead of PLAIN, on loopback too: encrypted, the server
    /// proves itself with its key pair (<data-dir>/curve_server.key, made on first start) and
    /// clients with a public key listed in --authorized-keys. Needs a libzmq with CURVE.
    #[arg(long)]
    pub curve: bool,
    /// With CURVE: the client public keys allowed in, one Z85 key a line (`#` comments), read
    /// at every handshake; group and others must not be able to write it
    /// [default: <data-dir>/authorized_keys].
    #[arg(long)]
    pub authorized_keys: Option<PathBuf>,
    /// For tcp endpoints: read the secret from this file (it must not be readable by group or
    /// others) instead of `ZCOORD_SECRET` or a fresh random one. Either must have at least 16
    /// characters.
    #[arg(long)]
    pub secret_file: Option<PathBuf>,
    /// If a primary already runs for this data directory, wait as its standby and take over
    /// when it is gone (instead of exiting with an error).
    #[arg(long, env = "ZCOORD_STANDBY")]
    pub standby: bool,
    /// Connections each socket (rpc, pub) holds at once; more are closed as they arrive, and
    /// ZeroMQ clients retry. Lowered, with a warning, when the descriptor limit (raised to the
    /// hard limit at start) cannot hold both sockets' plus 128.
    #[arg(long, default_value_t = TransportConfig::default().max_connections,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Milliseconds a peer may take to complete its ZeroMQ handshake (and, over tcp, PLAIN)
    /// before it is dropped.
    #[arg(long, default_value_t = TransportConfig::default().handshake_ivl_ms,
          value_parser = clap::builder::RangedI64ValueParser::<i32>::new().range(1..=600_000))]
    pub handshake_timeout_ms: i32,
}

/// `workspace` is the global `--workspace`, if given.
pub fn run(args: ServeArgs, data_dir: PathBuf, workspace: Option<&Path>) -> i32 {
    match serve(args, &data_dir, workspace) {
        Ok(()) => EXIT_OK,
        Err(e) => {
            // Not `eprintln!`: a log on a full disk must not turn this exit into a panic.
            let _ = writeln!(std::io::stderr(), "error: {e:#}");
            if e.downcast_ref::<ToolSettingsError>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_ERROR
            }
        }
    }
}

fn config(args: &ServeArgs, data_dir: &Path, workspace: Option<&Path>) -> anyhow::Result<Config> {
    let env = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
    let file = config_file::read(args.config.as_deref(), data_dir)?;
    let models = model_config::resolve_all(&args.model, &file.keys, |var| std::env::var(var).ok())?;
    let cwd = std::env::current_dir()?;
    let tools = tool_config::resolve(&args.tools, workspace, &file, env, &cwd)?;
    for tool in &tools.unknown_tools {
        eprintln!("warning: a tool policy is set for {tool:?}, which is not a built-in tool");
    }
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
        ipc::own_dir(&run_dir)?;
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
    let rpc_endpoint = args
        .rpc
        .clone()
        .map_or_else(|| default_ep("rpc.sock"), Ok)?;
    let pub_endpoint = args
        .pub_
        .clone()
        .map_or_else(|| default_ep("pub.sock"), Ok)?;
    let auth = tcp_auth(args, data_dir, &[&rpc_endpoint, &pub_endpoint])?;
    Ok(Config {
        transport: TransportConfig {
            rpc_endpoint,
            pub_endpoint,
            auth,
            max_message_bytes: args.max_message_bytes,
            pub_sndhwm: args.pub_hwm,
            pub_held_bytes: args.pub_held_bytes,
            max_connections: args.max_connections,
            handshake_ivl_ms: args.handshake_timeout_ms,
            ..TransportConfig::default()
        },
        heartbeat_interval: Duration::from_secs_f64(args.heartbeat_interval),
        model: models.default,
        model_name: models.default_name,
        models: models.others,
        store,
        replay: ReplayLimits {
            max_events: args.replay_events,
            max_bytes: args.replay_bytes,
        },
        max_sessions: args.max_sessions,
        hitl_timeout: (args.hitl_timeout_secs > 0)
            .then(|| Duration::from_secs(args.hitl_timeout_secs)),
        core_spin: Duration::from_micros(args.core_spin_us),
        client_timeout: Duration::from_secs(args.client_timeout_secs),
        tool_claim_timeout: Duration::from_secs(args.tool_claim_timeout_secs),
        tools: tools.tools,
        tool_policy: tools.policy,
        ..Config::default()
    })
}

/// For tcp endpoints, how peers must authenticate: CURVE with `--curve` or `--allow-remote`,
/// else PLAIN with the secret. Refuses a non-loopback bind without `--allow-remote`. `None`
/// when every endpoint is ipc.
fn tcp_auth(
    args: &ServeArgs,
    data_dir: &Path,
    endpoints: &[&str],
) -> anyhow::Result<Option<TcpAuth>> {
    let tcp: Vec<&str> = endpoints
        .iter()
        .copied()
        .filter(|e| e.starts_with("tcp://"))
        .collect();
    if tcp.is_empty() {
        return Ok(None);
    }
    if let Some(ep) = tcp.iter().find(|ep| !is_loopback(ep)) {
        if !args.allow_remote {
            anyhow::bail!(
                "{ep} is not a loopback address: anyone who can reach it could try to connect; pass --allow-remote to bind it anyway (peers then need CURVE)"
            );
        }
    }
    if args.curve || args.allow_remote {
        return Ok(Some(curve_auth(args, data_dir)?));
    }
    if args.authorized_keys.is_some() {
        // Silently ignoring it would leave the user believing keys guard a PLAIN server.
        anyhow::bail!("--authorized-keys is for CURVE: add --curve (or --allow-remote)");
    }
    Ok(Some(TcpAuth::Plain(plain_secret(args)?)))
}

/// The PLAIN secret: `ZCOORD_SECRET`, else `--secret-file`, else a fresh one.
fn plain_secret(args: &ServeArgs) -> anyhow::Result<Secret> {
    if let Ok(s) = std::env::var(SECRET_ENV) {
        // Empty is unset, as for the clients (target.rs).
        if !s.is_empty() {
            return Ok(Secret::given(&s, SECRET_ENV)?);
        }
    }
    if let Some(path) = &args.secret_file {
        return read_secret_file(path);
    }
    Ok(Secret::generate())
}

/// The server's key pair (made on first start) and the authorised keys file, checked now so
/// that a mistake in it shows at start-up rather than as refused clients.
fn curve_auth(args: &ServeArgs, data_dir: &Path) -> anyhow::Result<TcpAuth> {
    if !curve::available() {
        return Err(CurveError::Unavailable.into());
    }
    if args.secret_file.is_some() {
        anyhow::bail!(
            "--secret-file is for PLAIN; with --curve or --allow-remote clients authenticate with their CURVE key (--authorized-keys)"
        );
    }
    let (keys, created) = ServerKeyPair::load_or_create(data_dir)?;
    if created {
        eprintln!(
            "created the server's CURVE key pair in {}",
            data_dir.join(curve::KEY_PAIR_FILE).display()
        );
    }
    let authorized_keys = args
        .authorized_keys
        .clone()
        .unwrap_or_else(|| data_dir.join(curve::AUTHORIZED_KEYS_FILE));
    // Starting anyway lets the user read the server's key first; the file is read again at
    // every handshake, so adding a key needs no restart.
    if AuthorizedKeys::load(&authorized_keys)?.is_empty() {
        eprintln!(
            "warning: no client key is authorised in {}: nobody can connect until one is added there (one Z85 public key a line)",
            authorized_keys.display()
        );
    }
    Ok(TcpAuth::Curve {
        keys,
        authorized_keys,
    })
}

/// The host part of `tcp://host:port` is loopback (127.0.0.0/8, ::1, localhost, lo).
fn is_loopback(endpoint: &str) -> bool {
    let rest = endpoint.trim_start_matches("tcp://");
    let host = match rest.rsplit_once(':') {
        Some((h, _)) => h,
        None => rest,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host {
        "localhost" | "lo" => true,
        h => h
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
    }
}

fn read_secret_file(path: &Path) -> anyhow::Result<Secret> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| anyhow::anyhow!("cannot read the secret file {}: {e}", path.display()))?
            .mode();
        if mode & 0o077 != 0 {
            anyhow::bail!(
                "the secret file {} is readable by others (mode {:o}); chmod 600 it",
                path.display(),
                mode & 0o777
            );
        }
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read the secret file {}: {e}", path.display()))?;
    Ok(Secret::given(text.trim(), &path.display().to_string())?)
}

fn serve(args: ServeArgs, data_dir: &Path, workspace: Option<&Path>) -> anyhow::Result<()> {
    discovery::ensure_dir(data_dir)?;
    let disc_path = discovery::path_in(data_dir);
    let mut backoff = Duration::from_secs(1);
    loop {
        let leadership = if args.standby {
            election::take_or_wait(data_dir, |who| {
                println!("standby: {who} is primary; waiting to take over");
            })?
        } else {
            election::take(data_dir)?
        };
        if leadership.took_over_from.is_none() {
            if let Ok(d) = discovery::read(&disc_path) {
                tracing::warn!(path = %disc_path.display(), pid = d.pid, "stale discovery file from a server that is gone; replacing it");
            }
        }
        let mut config = config(&args, data_dir, workspace)?;
        config.promotion = leadership
            .took_over_from
            .map(|previous_instance_id| Promotion {
                previous_instance_id,
            });
        match run_primary(config, &disc_path) {
            Ok(()) => return Ok(()),
            // A standby that cannot promote (store or endpoint trouble) says why, gives the lock
            // back for another standby, and tries again later.
            Err(e) if args.standby => {
                eprintln!("standby could not take over: {e:#}; trying again in {backoff:?}");
                drop(leadership);
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Starts the server and serves until a signal. Every error comes from starting (store,
/// endpoints, discovery file): once serving, only a signal ends it.
fn run_primary(config: Config, disc_path: &Path) -> anyhow::Result<()> {
    // Before the transport starts: its connection limits are fitted to what this allows.
    let nofile = fdlimit::raise();
    tracing::info!(was = ?nofile.was, soft = ?nofile.soft, hard = ?nofile.hard, "descriptor limit (soft raised to hard)");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let promoted = config.promotion.clone();
        let auth = config.transport.auth.clone();
        let tools = config.tools.clone();
        let probes = crate::model::probe::targets(&config);
        let server = app::start(config)?;
        let ready = server.ready().clone();
        discovery::write(
            disc_path,
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
                secret: match &auth {
                    Some(TcpAuth::Plain(s)) => Some(s.expose().to_owned()),
                    _ => None,
                },
                curve_public_key: match &auth {
                    Some(TcpAuth::Curve { keys, .. }) => Some(keys.public.z85()),
                    _ => None,
                },
                workspace: Some(tools.workspace.clone()),
            },
        )?;
        println!(
            "zcoord {} serving (model {}, store {})",
            ready.instance_id, ready.model, ready.store
        );
        if ready.models.len() > 1 {
            println!("  models: {} (the first is the default)", ready.models.join(", "));
        }
        if let Some(p) = promoted {
            match p.previous_instance_id {
                Some(prev) => println!("  promoted: took over from instance {prev}"),
                None => println!("  promoted: took over from the previous primary"),
            }
        }
        if ready.recovered_turns > 0 {
            println!(
                "  recovered {} turn(s) a crash left running (closed as aborted)",
                ready.recovered_turns
            );
        }
        println!(
            "  workspace: {} (run_command {})",
            tools.workspace.display(),
            if tools.run_command { "enabled" } else { "off" }
        );
        println!("  rpc: {}", ready.rpc_endpoint);
        println!("  pub: {}", ready.pub_endpoint);
        match &auth {
            Some(TcpAuth::Plain(_)) => {
                println!("  auth: PLAIN over tcp; the secret is in the discovery file")
            }
            Some(TcpAuth::Curve {
                keys,
                authorized_keys,
            }) => {
                println!(
                    "  auth: CURVE over tcp; server public key {}",
                    keys.public.z85()
                );
                println!("  authorized keys: {}", authorized_keys.display());
            }
            None => {}
        }
        println!("  discovery: {}", disc_path.display());
        // In the background: a model server that does not answer is worth a warning, not a wait.
        tokio::spawn(crate::model::probe::warn_unanswered(probes));
        let stopped = server.run(shutdown_signal()).await;
        discovery::remove_if_ours(disc_path, ready.instance_id);
        if stopped.unsaved_changes > 0 {
            anyhow::bail!(
                "stopped with {} change(s) the store could not save (see the log above); they are lost",
                stopped.unsaved_changes
            );
        }
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

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn only_loopback_hosts_count_as_local() {
        for ep in [
            "tcp://127.0.0.1:0",
            "tcp://127.9.9.9:5",
            "tcp://[::1]:7",
            "tcp://localhost:1",
            "tcp://lo:5",
        ] {
            assert!(is_loopback(ep), "{ep}");
        }
        for ep in [
            "tcp://0.0.0.0:0",
            "tcp://*:5",
            "tcp://10.0.0.1:5",
            "tcp://[::]:5",
            "tcp://eth0:5",
            "tcp://example.com:1",
        ] {
            assert!(!is_loopback(ep), "{ep}");
        }
    }
}
