//! `zcoord ping`: one `instance.ping`, with the round-trip time.

use std::path::Path;
use std::time::Instant;

use serde_json::json;

use super::{report, target, ClientArgs, EXIT_OK};
use crate::client::RpcClient;

#[derive(Debug, clap::Args)]
pub struct PingArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: PingArgs, data_dir: &Path) -> i32 {
    let t = match target::resolve(&args.client, data_dir) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let ctx = zmq::Context::new();
    let result = RpcClient::connect_with(&ctx, &t.rpc, args.client.timeout(), t.secret.as_deref())
        .and_then(|mut c| {
            let start = Instant::now();
            c.call("instance.ping", json!({}))
                .map(|r| (r, start.elapsed()))
        });
    match result {
        Ok((r, rtt)) => {
            // Whoever answers on the endpoint is the truth; a file naming someone else is stale.
            if let Some(expected) = &t.expected_instance {
                if r["instance_id"].as_str() != Some(expected.as_str()) {
                    eprintln!(
                        "warning: the discovery file names instance {expected}, but instance {} answered (the file is stale)",
                        r["instance_id"].as_str().unwrap_or("?")
                    );
                }
            }
            println!(
                "{} instance={} uptime={} rtt={:.2}ms",
                r["status"].as_str().unwrap_or("?"),
                r["instance_id"].as_str().unwrap_or("?"),
                r["uptime"].as_str().unwrap_or("?"),
                rtt.as_secs_f64() * 1e3
            );
            EXIT_OK
        }
        Err(e) => report(&e),
    }
}
