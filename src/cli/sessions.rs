//! `zcoord sessions`: one line per session, most recently updated first; `*` marks the active one.

use std::path::Path;

use serde_json::json;

use super::{report, target, ClientArgs, EXIT_ERROR, EXIT_OK};
use crate::client::{ClientError, RpcClient};
use crate::protocol::methods::StateSyncResult;

#[derive(Debug, clap::Args)]
pub struct SessionsArgs {
    #[command(flatten)]
    pub client: ClientArgs,
}

pub fn run(args: SessionsArgs, data_dir: &Path) -> i32 {
    let t = match target::resolve(&args.client, data_dir) {
        Ok(t) => t,
        Err(code) => return code,
    };
    let ctx = zmq::Context::new();
    let result = RpcClient::connect_with(&ctx, &t.rpc, args.client.timeout(), t.secret.as_deref())
        .and_then(|mut c| c.call("state.sync", json!({})));
    let sync: StateSyncResult = match result
        .and_then(|v| serde_json::from_value(v).map_err(|e| ClientError::BadReply(e.to_string())))
    {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    if sync.sessions.is_empty() {
        println!("no sessions");
        return EXIT_OK;
    }
    for s in &sync.sessions {
        let mark = if Some(s.id) == sync.active_session_id {
            '*'
        } else {
            ' '
        };
        let status = match serde_json::to_value(s.status) {
            Ok(v) => v.as_str().unwrap_or("?").to_owned(),
            Err(_) => return EXIT_ERROR,
        };
        println!(
            "{mark} {}  {:<7} {:>4} msgs  {}",
            s.id, status, s.message_count, s.title
        );
    }
    EXIT_OK
}
