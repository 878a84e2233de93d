//! Driving the zcoord server under test over JSON-RPC, through `zcoord::client::RpcClient`: start
//! bench turns, create and delete sessions, read the drop counters.

use std::time::Duration;

use anyhow::{anyhow, Context};
use serde_json::{json, Value};
use zcoord::client::RpcClient;

use crate::model::TurnPlan;

const CALL_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Control {
    rpc: RpcClient,
    _ctx: zmq::Context,
}

impl Control {
    pub fn connect(endpoint: &str) -> anyhow::Result<Control> {
        let ctx = zmq::Context::new();
        let rpc = RpcClient::connect(&ctx, endpoint, CALL_TIMEOUT)?;
        Ok(Control { rpc, _ctx: ctx })
    }

    pub fn call(&mut self, method: &str, params: Value) -> anyhow::Result<Value> {
        self.rpc
            .call(method, params)
            .with_context(|| format!("{method} failed"))
    }

    /// Starts a turn of `plan` in a new session; returns the session id.
    pub fn start_turn(&mut self, plan: &TurnPlan) -> anyhow::Result<String> {
        let sent = self.call("message.send", json!({"content": plan.prompt()}))?;
        string_field(&sent, "session_id")
    }

    pub fn create_sessions(&mut self, count: usize) -> anyhow::Result<()> {
        for i in 0..count {
            self.call(
                "session.create",
                json!({"title": format!("bench session {i}")}),
            )?;
        }
        Ok(())
    }

    pub fn delete_session(&mut self, session_id: &str) -> anyhow::Result<()> {
        self.call("session.delete", json!({"session_id": session_id}))?;
        Ok(())
    }

    /// `instance.info`'s drop counters, as the server reports them.
    pub fn drops(&mut self) -> anyhow::Result<Value> {
        let info = self.call("instance.info", json!({}))?;
        info.get("drops")
            .cloned()
            .ok_or_else(|| anyhow!("instance.info has no drops"))
    }

    /// Events and replies the server dropped on its own queue to the transport.
    pub fn outbound_dropped(&mut self) -> anyhow::Result<u64> {
        self.drops()?
            .get("outbound_dropped")
            .and_then(Value::as_u64)
            .ok_or_else(|| anyhow!("drops has no outbound_dropped"))
    }
}

fn string_field(v: &Value, name: &str) -> anyhow::Result<String> {
    v.get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("reply has no {name}: {v}"))
}
