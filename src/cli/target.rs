//! Where the client subcommands connect: `--rpc/--pub` (or `ZCOORD_RPC/ZCOORD_PUB`), else the
//! discovery file in the data directory.

use std::path::{Path, PathBuf};

use super::{ClientArgs, EXIT_UNREACHABLE};
use crate::discovery;

pub struct Target {
    pub rpc: String,
    pub pub_: String,
    /// The instance the discovery file names, when the endpoints came from it.
    pub expected_instance: Option<String>,
    /// The PLAIN secret to present: `ZCOORD_SECRET`, else the discovery file's.
    pub secret: Option<String>,
    /// The discovery file the endpoints came from: on this machine, so its pid can be checked.
    pub discovery_file: Option<PathBuf>,
}

/// The variable that gives clients (and `serve`) the secret for tcp endpoints.
pub const SECRET_ENV: &str = "ZCOORD_SECRET";

fn secret_from_env() -> Option<String> {
    std::env::var(SECRET_ENV).ok().filter(|s| !s.is_empty())
}

/// Resolves the endpoints, or prints why not and returns the exit code.
pub fn resolve(args: &ClientArgs, data_dir: &Path) -> Result<Target, i32> {
    if let (Some(rpc), Some(pub_)) = (&args.rpc, &args.pub_) {
        return Ok(Target {
            rpc: rpc.clone(),
            pub_: pub_.clone(),
            expected_instance: None,
            secret: secret_from_env().or_else(|| {
                discovery::read(&discovery::path_in(data_dir))
                    .ok()
                    .and_then(|d| d.secret)
            }),
            discovery_file: None,
        });
    }
    let path = discovery::path_in(data_dir);
    match discovery::read(&path) {
        Ok(d) if !discovery::pid_may_be_alive(d.pid) => {
            eprintln!(
                "error: the discovery file {} is stale: instance {} (pid {}) is not running",
                path.display(),
                d.instance_id,
                d.pid
            );
            Err(EXIT_UNREACHABLE)
        }
        // Said now rather than after a timeout: the handshake would fail without a word.
        Ok(d) if d.curve_public_key.is_some() => {
            eprintln!(
                "error: the server in {} speaks CURVE (serve --curve or --allow-remote); the zcoord CLI speaks PLAIN only: use a CURVE client such as examples/python/curve.py",
                path.display()
            );
            Err(EXIT_UNREACHABLE)
        }
        Ok(d) => Ok(Target {
            rpc: args.rpc.clone().unwrap_or(d.endpoints.rpc),
            pub_: args.pub_.clone().unwrap_or(d.endpoints.pub_),
            expected_instance: Some(d.instance_id.to_string()),
            secret: secret_from_env().or(d.secret),
            discovery_file: Some(path),
        }),
        Err(e) => {
            eprintln!("error: {e}\n(is `zcoord serve` running? or pass --rpc/--pub)");
            Err(EXIT_UNREACHABLE)
        }
    }
}
