//! `zcoord hitl | approve ID [--session] | reject ID [--reason R] | answer ID TEXT`: the requests
//! waiting for a person, and answering one. Also how `zcoord send` shows its own turn's requests
//! and, at a terminal, asks the person itself.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use serde_json::{json, Value};

use super::{report, target, ClientArgs, EXIT_OK};
use crate::client::{ClientError, RpcClient};

/// Who a response from the CLI says answered, unless `--client-id` says otherwise.
pub const CLI_CLIENT_ID: &str = "cli";

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Only this session's requests.
    #[arg(long)]
    pub session: Option<String>,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    /// The request's id (from `zcoord hitl`).
    pub id: String,
    /// Approve every later call of this tool in the session too.
    #[arg(long)]
    pub session: bool,
    /// Recorded as `resolved_by`.
    #[arg(long, default_value = CLI_CLIENT_ID)]
    pub client_id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct RejectArgs {
    pub id: String,
    /// Told to the model with the rejection.
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long, default_value = CLI_CLIENT_ID)]
    pub client_id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

#[derive(Debug, clap::Args)]
pub struct AnswerArgs {
    pub id: String,
    /// The answer to the question.
    pub text: String,
    #[arg(long, default_value = CLI_CLIENT_ID)]
    pub client_id: String,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// One line per pending request, oldest first.
pub fn list(args: ListArgs, data_dir: &Path) -> i32 {
    let mut params = json!({});
    if let Some(s) = &args.session {
        params["session_id"] = json!(s);
    }
    match call(&args.client, data_dir, "hitl.list", params) {
        Ok(v) => {
            let requests = v["requests"].as_array().cloned().unwrap_or_default();
            if requests.is_empty() {
                println!("no pending requests");
            }
            for r in &requests {
                println!("{}", describe(r));
            }
            EXIT_OK
        }
        Err(e) => report(&e),
    }
}

pub fn approve(args: ApproveArgs, data_dir: &Path) -> i32 {
    let decision = if args.session {
        "approve_session"
    } else {
        "approve"
    };
    let params = json!({"id": args.id, "decision": decision, "client_id": args.client_id});
    respond(&args.client, data_dir, params)
}

pub fn reject(args: RejectArgs, data_dir: &Path) -> i32 {
    let mut params = json!({"id": args.id, "decision": "reject", "client_id": args.client_id});
    if let Some(r) = args.reason {
        params["reason"] = json!(r);
    }
    respond(&args.client, data_dir, params)
}

pub fn answer(args: AnswerArgs, data_dir: &Path) -> i32 {
    let params = json!({"id": args.id, "answer": args.text, "client_id": args.client_id});
    respond(&args.client, data_dir, params)
}

fn respond(client: &ClientArgs, data_dir: &Path, params: Value) -> i32 {
    match call(client, data_dir, "hitl.respond", params) {
        Ok(v) => {
            println!("{}", describe(&v["request"]));
            EXIT_OK
        }
        Err(ClientError::Rpc(e)) if resolved_already(&e) => {
            let r = e
                .data
                .as_ref()
                .map(|d| d["request"].clone())
                .unwrap_or_default();
            eprintln!("already resolved: {}", describe(&r));
            super::EXIT_ERROR
        }
        Err(e) => report(&e),
    }
}

fn call(
    client: &ClientArgs,
    data_dir: &Path,
    method: &str,
    params: Value,
) -> Result<Value, ClientError> {
    let t = target::resolve(client, data_dir).map_err(|_| {
        ClientError::BadReply("no server to talk to (see the messages above)".into())
    })?;
    let ctx = zmq::Context::new();
    let mut rpc = RpcClient::connect_with(&ctx, &t.rpc, client.timeout(), t.secret.as_deref())?;
    rpc.call(method, params)
}

fn resolved_already(e: &crate::protocol::errors::RpcError) -> bool {
    e.data
        .as_ref()
        .is_some_and(|d| d["kind"] == "hitl_resolved")
}

/// One line about a request: id, status, what is asked, and how it ended.
pub fn describe(r: &Value) -> String {
    let p = &r["payload"];
    let asked = if r["type"] == "question" {
        let options = p["options"]
            .as_array()
            .map(|o| {
                let o: Vec<&str> = o.iter().filter_map(Value::as_str).collect();
                format!(" [{}]", o.join(" / "))
            })
            .unwrap_or_default();
        format!(
            "question: {}{options}",
            p["question"].as_str().unwrap_or("")
        )
    } else {
        format!(
            "approve {} {}",
            p["tool_name"].as_str().unwrap_or("?"),
            p["params"].as_str().unwrap_or("")
        )
    };
    let mut line = format!(
        "{}  {:<9} session {}  {asked}",
        r["id"].as_str().unwrap_or("?"),
        r["status"].as_str().unwrap_or("?"),
        r["session_id"].as_str().unwrap_or("?")
    );
    if let Some(by) = r["resolved_by"].as_str() {
        line.push_str(&format!("  (by {by})"));
    }
    line
}

/// For `zcoord send`: shows a request of its turn on stderr and, when stdin is a terminal, asks
/// the person (y / n / s for a tool, the answer text for a question) and responds. Another
/// client may answer first; that is said, not an error.
pub fn prompt(rpc: &mut RpcClient, request: &Value) {
    eprintln!("\n[waiting for a person] {}", describe(request));
    let id = request["id"].as_str().unwrap_or_default().to_owned();
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        eprintln!(
            "answer with: zcoord approve {id} | zcoord reject {id} | zcoord answer {id} TEXT"
        );
        return;
    }
    let question = request["type"] == "question";
    let params = loop {
        if question {
            eprint!("your answer: ");
        } else {
            eprint!("run it? [y]es / [n]o / [s]ession (yes for the whole session): ");
        }
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim();
        if question {
            if line.is_empty() {
                continue;
            }
            break json!({"id": id, "answer": line, "client_id": CLI_CLIENT_ID});
        }
        let decision = match line {
            "y" | "yes" => "approve",
            "s" | "session" => "approve_session",
            "n" | "no" => "reject",
            _ => continue,
        };
        break json!({"id": id, "decision": decision, "client_id": CLI_CLIENT_ID});
    };
    match rpc.call("hitl.respond", params) {
        Ok(_) => {}
        Err(ClientError::Rpc(e)) if resolved_already(&e) => {
            let r = e
                .data
                .as_ref()
                .map(|d| d["request"].clone())
                .unwrap_or_default();
            eprintln!("already resolved: {}", describe(&r));
        }
        Err(e) => {
            report(&e);
        }
    }
}
