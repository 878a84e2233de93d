//! `zcoord call <method> [<json-params>]`: prints the JSON result; exit 1 on an error reply.

use std::path::Path;

use serde_json::Value;

use super::{report, target, ClientArgs, EXIT_OK, EXIT_USAGE};
use crate::client::RpcClient;

#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// Method name, e.g. `session.list`.
    pub method: String,
    /// Params as a JSON object (default `{}`).
    pub params: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: CallArgs, data_dir: &Path) -> i32 {
    let params: Value = match args.params.as_deref().map(serde_json::from_str).transpose() {
        Ok(p) => p.unwrap_or_else(|| Value::Object(Default::default())),
        Err(e) => {
            eprintln!("error: params are not valid JSON: {e}");
            return EXIT_USAGE;
        }
    };
    let t = match target::resolve(&args.client, data_dir) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let ctx = zmq::Context::new();
    match RpcClient::connect_with(&ctx, &t.rpc, args.client.timeout(), t.secret.as_deref())
        .and_then(|mut c| c.call(&args.method, params))
    {
        Ok(result) => {
            println!(
                "{}",
                serde_json::to_string_pretty(&result).unwrap_or_default()
            );
            EXIT_OK
        }
        Err(e) => report(&e),
    }
}
