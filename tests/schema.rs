//! The schema in proto-docs/schema/ is what the types generate, and every JSON example in
//! PROTOCOL.md is valid against the def its annotation names.
//!
//! Each ```json block of PROTOCOL.md follows a line `<!-- schema: ... -->`:
//! - `<!-- schema: Name -->`: every JSON value in the block is a `$defs/Name`;
//! - `<!-- schema: A B C -->`: one def per value, in order;
//! - `<!-- schema: Request/Response -->`: frames of calls; a request is a `Request` whose params
//!   are its method's `<Method>Params`, an answer a `Response` whose `result` is the
//!   `<Method>Result` of the request with its `id` above it (an `error`, an `RpcError`);
//! - `<!-- schema: none (why) -->`: not protocol JSON.

use std::path::Path;

use serde_json::{Deserializer, Value};

use zcoord::cli::schema::bundle;
use zcoord::protocol::schema::{catalog::pascal, reference, to_text};

const REGENERATE: &str = "cargo run -- schema --out proto-docs/schema";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn checked_in_documents_are_what_the_types_generate() {
    let dir = root().join("proto-docs/schema");
    for (name, generated) in bundle().files() {
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `{REGENERATE}`", path.display()));
        assert!(
            text == to_text(&generated),
            "{} differs from what the types generate; run `{REGENERATE}` and commit the result",
            path.display()
        );
    }
}

/// Checks `value` against `$defs/<def>` of the generated document, formats included.
fn check(document: &Value, def: &str, value: &Value) -> Result<(), String> {
    if document["$defs"].get(def).is_none() {
        return Err(format!("no $defs/{def}"));
    }
    let mut schema = document.clone();
    schema["$ref"] = Value::from(reference(def));
    let validator = jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .map_err(|e| format!("$defs/{def}: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    match errors.is_empty() {
        true => Ok(()),
        false => Err(format!("not a valid {def}: {}", errors.join("; "))),
    }
}

/// A ```json block: the line its fence is on, its annotation, its JSON values.
struct Block {
    line: usize,
    annotation: Option<String>,
    values: Result<Vec<Value>, String>,
}

fn json_blocks(markdown: &str) -> Vec<Block> {
    let lines: Vec<&str> = markdown.lines().collect();
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim_end() != "```json" {
            i += 1;
            continue;
        }
        let annotation = i
            .checked_sub(1)
            .and_then(|p| lines[p].trim().strip_prefix("<!-- schema:"))
            .and_then(|rest| rest.strip_suffix("-->"))
            .map(|a| a.trim().to_owned());
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim_end() == "```")
            .unwrap_or(lines.len());
        let body = lines[i + 1..end].join("\n");
        let values = Deserializer::from_str(&body)
            .into_iter::<Value>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string());
        blocks.push(Block {
            line: i + 1,
            annotation,
            values,
        });
        i = end + 1;
    }
    blocks
}

/// What is wrong with one block, if anything.
fn block_errors(document: &Value, block: &Block) -> Vec<String> {
    let Some(annotation) = &block.annotation else {
        return vec!["no <!-- schema: ... --> on the line before it".into()];
    };
    if annotation.starts_with("none") {
        return Vec::new();
    }
    let values = match &block.values {
        Ok(v) if !v.is_empty() => v,
        Ok(_) => return vec!["no JSON in it".into()],
        Err(e) => return vec![format!("not JSON: {e}")],
    };
    if annotation == "Request/Response" {
        return exchange_errors(document, values);
    }
    let defs: Vec<&str> = annotation.split_whitespace().collect();
    if defs.len() != 1 && defs.len() != values.len() {
        return vec![format!(
            "names {} defs for {} values",
            defs.len(),
            values.len()
        )];
    }
    values
        .iter()
        .enumerate()
        .filter_map(|(n, v)| {
            let def = defs.get(n).or(defs.first()).copied().unwrap_or_default();
            check(document, def, v)
                .err()
                .map(|e| format!("value {}: {e}", n + 1))
        })
        .collect()
}

fn exchange_errors(document: &Value, values: &[Value]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut calls: Vec<(Value, String)> = Vec::new();
    for (n, v) in values.iter().enumerate() {
        let mut fail = |e: String| errors.push(format!("value {}: {e}", n + 1));
        if let Some(method) = v.get("method").and_then(Value::as_str) {
            let p = pascal(method);
            if let Err(e) = check(document, "Request", v) {
                fail(e);
            }
            let params = v.get("params").cloned().unwrap_or(Value::Null);
            let params = if params.is_null() {
                serde_json::json!({})
            } else {
                params
            };
            if let Err(e) = check(document, &format!("{p}Params"), &params) {
                fail(e);
            }
            calls.push((v["id"].clone(), p));
            continue;
        }
        if let Err(e) = check(document, "Response", v) {
            fail(e);
        }
        if let Some(result) = v.get("result") {
            match calls.iter().rev().find(|(id, _)| *id == v["id"]) {
                Some((_, p)) => {
                    if let Err(e) = check(document, &format!("{p}Result"), result) {
                        fail(e);
                    }
                }
                None => fail("a result with no request above it".into()),
            }
        }
    }
    errors
}

#[test]
fn every_protocol_example_is_valid_against_its_annotated_def() {
    let markdown = std::fs::read_to_string(root().join("proto-docs/PROTOCOL.md")).unwrap();
    let document = bundle().json_schema();
    let blocks = json_blocks(&markdown);
    assert!(blocks.len() > 20, "PROTOCOL.md's json blocks were found");
    let failures: Vec<String> = blocks
        .iter()
        .flat_map(|b| {
            block_errors(&document, b)
                .into_iter()
                .map(move |e| format!("PROTOCOL.md:{}: {e}", b.line))
        })
        .collect();
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_example_check_fails_on_what_it_must() {
    let document = bundle().json_schema();
    let doc = "text\n\n```json\n{\"ok\":true}\n```\n<!-- schema: NoSuchDef -->\n```json\n{}\n```\n<!-- schema: OkResult -->\n```json\n{\"ok\":1}\n```\n";
    let blocks = json_blocks(doc);
    assert_eq!(blocks.len(), 3);
    let errors: Vec<Vec<String>> = blocks.iter().map(|b| block_errors(&document, b)).collect();
    assert!(errors[0][0].contains("no <!-- schema"), "{errors:?}");
    assert!(errors[1][0].contains("no $defs/NoSuchDef"), "{errors:?}");
    assert!(errors[2][0].contains("not a valid OkResult"), "{errors:?}");
    let exchange = r#"{"jsonrpc":"2.0","id":1,"method":"session.get","params":{}}
{"jsonrpc":"2.0","id":1,"result":{"ok":true}}"#;
    let values: Vec<Value> = Deserializer::from_str(exchange)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap();
    let errors = exchange_errors(&document, &values);
    assert_eq!(
        errors.len(),
        2,
        "missing session_id, a result not a session: {errors:?}"
    );
}
