//! `zcoord schema`: prints the protocol's JSON Schema (`zcoord.schema.json`, the default), its
//! OpenRPC or its AsyncAPI document, or with `--out DIR` writes all three. The documents are
//! generated from the wire types (`protocol::schema`); `proto-docs/schema/` is regenerated with
//! `cargo run -- schema --out proto-docs/schema`. Needs no server.

use std::path::{Path, PathBuf};

use crate::discovery::Discovery;
use crate::protocol::schema::{to_text, Bundle};

use super::{EXIT_ERROR, EXIT_OK};

#[derive(Debug, clap::Args)]
pub struct SchemaArgs {
    /// Which document to print.
    #[arg(value_enum, default_value = "json-schema")]
    pub document: Document,
    /// Write all three documents into DIR (created if missing) instead of printing one.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Document {
    /// zcoord.schema.json: every type, in `$defs`.
    JsonSchema,
    /// openrpc.json: the methods.
    Openrpc,
    /// asyncapi.json: the events.
    Asyncapi,
}

/// The protocol's defs and the discovery file's (which lives in the client crate).
pub fn bundle() -> Bundle {
    let mut b = Bundle::protocol();
    b.add::<Discovery>("DiscoveryFile");
    b
}

pub fn run(args: SchemaArgs) -> i32 {
    let b = bundle();
    if let Some(dir) = &args.out {
        return match write_all(&b, dir) {
            Ok(()) => EXIT_OK,
            Err(e) => {
                eprintln!("error: {}: {e}", dir.display());
                EXIT_ERROR
            }
        };
    }
    let document = match args.document {
        Document::JsonSchema => b.json_schema(),
        Document::Openrpc => b.openrpc(),
        Document::Asyncapi => b.asyncapi(),
    };
    print!("{}", to_text(&document));
    EXIT_OK
}

fn write_all(b: &Bundle, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (name, document) in b.files() {
        let path = dir.join(name);
        std::fs::write(&path, to_text(&document))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
