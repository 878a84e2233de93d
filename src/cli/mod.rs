//! The command line: one file per subcommand. Exit codes: 0 ok, 1 error reply (or a failed turn),
//! 2 usage, 3 server unreachable, 130 interrupted by Ctrl-C (`send`).

mod call;
mod clients;
mod config_file;
mod hitl;
mod input;
mod interrupt;
mod locate;
mod model_config;
mod ping;
mod policy_settings;
pub mod schema;
mod send;
mod serve;
mod sessions;
mod sub;
mod target;
mod tool_config;
mod turn_fate;
mod watch;
mod where_is;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::client::ClientError;

pub const EXIT_OK: i32 = 0;
pub const EXIT_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_UNREACHABLE: i32 = 3;
/// Ended by Ctrl-C (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "zcoord",
    version,
    about = "ZeroMQ primary-instance coordinator for AI-agent applications"
)]
pub struct Cli {
    /// Data directory: holds the discovery file and, by default, the ipc sockets.
    #[arg(long, global = true, env = "ZCOORD_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The workspace (directory) this primary serves, default the current directory: the tools
    /// work in it (also with --data-dir), and unless --data-dir is given it selects its own data
    /// directory under the user's data home, so each workspace has one primary and stable
    /// endpoints.
    #[arg(long, global = true, env = "ZCOORD_WORKSPACE")]
    pub workspace: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// How client subcommands find and wait for the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ClientArgs {
    /// ROUTER endpoint to connect to (default: from the discovery file).
    #[arg(long, env = "ZCOORD_RPC")]
    pub rpc: Option<String>,
    /// PUB endpoint to connect to (default: from the discovery file).
    #[arg(long = "pub", env = "ZCOORD_PUB")]
    pub pub_: Option<String>,
    /// How long to wait for a reply, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub timeout_ms: u64,
}

impl ClientArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the primary: bind the ROUTER and PUB sockets and serve until SIGINT/SIGTERM.
    Serve(Box<serve::ServeArgs>),
    /// Check that the server answers (instance.ping).
    Ping(ping::PingArgs),
    /// Call one method and print its JSON result.
    Call(call::CallArgs),
    /// Print events as JSON lines, one per event.
    Sub(sub::SubArgs),
    /// Send a message and print the reply's tokens as they stream; exits at llm.end.
    Send(send::SendArgs),
    /// List sessions (`*` marks the active one).
    Sessions(sessions::SessionsArgs),
    /// List the clients present: those that said client.hello, with the tools they run.
    Clients(clients::ClientsArgs),
    /// Mirror the primary and print each change; follows restarts and failovers.
    Watch(watch::WatchArgs),
    /// List the tool approvals and questions waiting for a person.
    Hitl(hitl::ListArgs),
    /// Approve a waiting tool call (--session: the tool too, for the rest of the session).
    Approve(hitl::ApproveArgs),
    /// Reject a waiting tool call; the model is told (with --reason).
    Reject(hitl::RejectArgs),
    /// Answer a waiting question.
    Answer(hitl::AnswerArgs),
    /// Which server the client commands here would use (workspace, data directory, discovery
    /// file, endpoints, pid) and whether it runs; exits 3 when it does not.
    Where(where_is::WhereArgs),
    /// Print the protocol's JSON Schema, OpenRPC or AsyncAPI document (--out DIR: write all three).
    Schema(schema::SchemaArgs),
}

impl Command {
    /// The connection flags of a client command; `None` for `serve`, `where` and `schema`.
    fn client_args(&self) -> Option<&ClientArgs> {
        Some(match self {
            Command::Serve(_) | Command::Where(_) | Command::Schema(_) => return None,
            Command::Ping(a) => &a.client,
            Command::Call(a) => &a.client,
            Command::Sub(a) => &a.client,
            Command::Send(a) => &a.client,
            Command::Sessions(a) => &a.client,
            Command::Clients(a) => &a.client,
            Command::Watch(a) => &a.client,
            Command::Hitl(a) => &a.client,
            Command::Approve(a) => &a.client,
            Command::Reject(a) => &a.client,
            Command::Answer(a) => &a.client,
        })
    }
}

/// Parses the command line, runs the subcommand, returns the exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    EXIT_OK
                }
                _ => EXIT_USAGE,
            };
        }
    };
    let default_log = if matches!(cli.command, Command::Serve(_)) {
        "info"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log));
    // Colours only for a terminal: a log file or journal gets plain `key=value` fields. A log
    // that cannot be written (its disk is full) loses lines; it must never take a thread down,
    // and tracing-subscriber's report of a failed write is an `eprint!`, which panics then.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .log_internal_errors(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    // `serve` serves the directory it starts in; the others look for the nearest running server.
    let walk = !matches!(cli.command, Command::Serve(_) | Command::Schema(_));
    let at = match locate::locate(cli.data_dir.as_deref(), cli.workspace.as_deref(), walk) {
        Ok(at) => at,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    if let Some(c) = cli.command.client_args() {
        let endpoints_given = c.rpc.is_some() && c.pub_.is_some();
        if walk && at.how == locate::How::CurrentDir && !endpoints_given {
            let here = at.workspace.clone().unwrap_or_default();
            eprintln!("{}", locate::nothing_found(&here));
            return EXIT_UNREACHABLE;
        }
    }
    let data_dir = at.data_dir.clone();
    match cli.command {
        Command::Serve(args) => serve::run(*args, data_dir, cli.workspace.as_deref()),
        Command::Ping(args) => ping::run(args, &data_dir),
        Command::Call(args) => call::run(args, &data_dir),
        Command::Sub(args) => sub::run(args, &data_dir),
        Command::Send(args) => send::run(args, &data_dir),
        Command::Sessions(args) => sessions::run(args, &data_dir),
        Command::Clients(args) => clients::run(args, &data_dir),
        Command::Watch(args) => watch::run(args, &data_dir),
        Command::Hitl(args) => hitl::list(args, &data_dir),
        Command::Approve(args) => hitl::approve(args, &data_dir),
        Command::Reject(args) => hitl::reject(args, &data_dir),
        Command::Answer(args) => hitl::answer(args, &data_dir),
        Command::Where(args) => where_is::run(args, &at),
        Command::Schema(args) => schema::run(args),
    }
}

/// Prints a client error and maps it to an exit code.
pub fn report(e: &ClientError) -> i32 {
    match e {
        ClientError::Rpc(err) => {
            let body = serde_json::to_string(err).unwrap_or_else(|_| err.message.clone());
            eprintln!("error: {body}");
            EXIT_ERROR
        }
        ClientError::Timeout(_) | ClientError::NoWelcome(_) => {
            eprintln!("error: {e}");
            EXIT_UNREACHABLE
        }
        other => {
            eprintln!("error: {other}");
            EXIT_ERROR
        }
    }
}
