//! `zcoord clients`: one line per client present (`client.list`), in the order they joined.

use std::path::Path;

use serde_json::json;
use time::OffsetDateTime;

use super::{report, target, ClientArgs, EXIT_OK};
use crate::client::{ClientError, RpcClient};
use crate::protocol::clients::ClientListResult;
use crate::protocol::duration::go_duration;

#[derive(Debug, clap::Args)]
pub struct ClientsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: ClientsArgs, data_dir: &Path) -> i32 {
    let t = match target::resolve(&args.client, data_dir) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let ctx = zmq::Context::new();
    let result = RpcClient::connect_with(&ctx, &t.rpc, args.client.timeout(), t.secret.as_deref())
        .and_then(|mut c| c.call("client.list", json!({})));
    let list: ClientListResult = match result
        .and_then(|v| serde_json::from_value(v).map_err(|e| ClientError::BadReply(e.to_string())))
    {
        Ok(l) => l,
        Err(e) => return report(&e),
    };
    if list.clients.is_empty() {
        println!("no clients (a client is listed once it says client.hello)");
        return EXIT_OK;
    }
    let now = OffsetDateTime::now_utc();
    let ago = |t: OffsetDateTime| go_duration((now - t).max(time::Duration::ZERO).unsigned_abs());
    for c in &list.clients {
        let version = c.version.as_deref().unwrap_or("-");
        let tools = if c.tools.is_empty() {
            "-".to_owned()
        } else {
            c.tools.join(",")
        };
        println!(
            "{}  {} {}  connected {} ago, seen {} ago  tools: {}",
            c.client_id,
            c.name,
            version,
            ago(c.connected_at),
            ago(c.last_seen_at),
            tools
        );
    }
    EXIT_OK
}
