//! Where the client subcommands connect: `--rpc/--pub` (or `ZCOORD_RPC/ZCOORD_PUB`), else the
//! discovery file in the data directory.

use std::path::Path;

use super::{ClientArgs, EXIT_UNREACHABLE};
use crate::discovery;

pub struct Target {
    pub rpc: String,
    pub pub_: String,
}

/// Resolves the endpoints, or prints why not and returns the exit code.
pub fn resolve(args: &ClientArgs, data_dir: &Path) -> Result<Target, i32> {
    if let (Some(rpc), Some(pub_)) = (&args.rpc, &args.pub_) {
        return Ok(Target {
            rpc: rpc.clone(),
            pub_: pub_.clone(),
        });
    }
    let path = discovery::path_in(data_dir);
    match discovery::read(&path) {
        Ok(d) => Ok(Target {
            rpc: args.rpc.clone().unwrap_or(d.endpoints.rpc),
            pub_: args.pub_.clone().unwrap_or(d.endpoints.pub_),
        }),
        Err(e) => {
            eprintln!("error: {e}\n(is `zcoord serve` running? or pass --rpc/--pub)");
            Err(EXIT_UNREACHABLE)
        }
    }
}
