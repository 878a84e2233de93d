//! `zcoord where [--json]`: which server a client command run here would use, and whether it
//! runs: the workspace, data directory, discovery file, endpoints, pid and instance id, and how
//! they were found. Reads files only (the discovery file and `/proc`); calls nothing. The JSON
//! form (PROTOCOL §1) lets clients in other languages ask instead of re-implementing the hash.

use serde_json::{json, Value};

use super::locate::Location;
use super::{EXIT_OK, EXIT_UNREACHABLE};
use crate::discovery;

#[derive(Debug, clap::Args)]
pub struct WhereArgs {
    /// Print one JSON object (its fields are in PROTOCOL §1) instead of lines of text.
    #[arg(long)]
    pub json: bool,
}

/// Prints the answer; exits 0 when the server runs, 3 when it does not.
pub fn run(args: WhereArgs, at: &Location) -> i32 {
    let v = describe(at);
    if args.json {
        println!("{v}");
    } else {
        print_text(&v);
    }
    if v["running"] == json!(true) {
        EXIT_OK
    } else {
        EXIT_UNREACHABLE
    }
}

/// The JSON answer: always `workspace` (or null), `data_dir`, `discovery_file`, `found_by` and
/// `running`; with a discovery file also `pid`, `instance_id`, `endpoints`, `started_at` and
/// `protocol_version`.
fn describe(at: &Location) -> Value {
    let file = discovery::path_in(&at.data_dir);
    let d = discovery::read(&file).ok();
    let workspace = at
        .workspace
        .clone()
        .or_else(|| d.as_ref().and_then(|d| d.workspace.clone()));
    let mut v = json!({
        "workspace": workspace,
        "data_dir": at.data_dir,
        "discovery_file": file,
        "found_by": at.how.as_str(),
        "running": d.as_ref().is_some_and(|d| discovery::pid_may_be_alive(d.pid)),
    });
    // The file's own fields, never its secret.
    if let Some(d) = d.as_ref().and_then(|d| serde_json::to_value(d).ok()) {
        for k in [
            "pid",
            "instance_id",
            "endpoints",
            "started_at",
            "protocol_version",
        ] {
            v[k] = d[k].clone();
        }
    }
    v
}

fn print_text(v: &Value) {
    let s = |k: &str| v[k].as_str().unwrap_or("-").to_owned();
    println!(
        "workspace:  {} (found by {})",
        s("workspace"),
        s("found_by")
    );
    println!("data dir:   {}", s("data_dir"));
    println!("discovery:  {}", s("discovery_file"));
    match (&v["pid"], v["running"] == json!(true)) {
        (Value::Null, _) => println!("running:    no (no discovery file)"),
        (pid, true) => println!("running:    yes (pid {pid}, instance {})", s("instance_id")),
        (pid, false) => println!(
            "running:    no (the file names pid {pid}, instance {}, which is gone)",
            s("instance_id")
        ),
    }
    if v["endpoints"].is_object() {
        println!(
            "rpc:        {}",
            v["endpoints"]["rpc"].as_str().unwrap_or("-")
        );
        println!(
            "pub:        {}",
            v["endpoints"]["pub"].as_str().unwrap_or("-")
        );
    }
}
