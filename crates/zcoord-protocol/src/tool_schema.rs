//! The checks a client-declared tool passes before the model is offered it: its name, its
//! description and its `parameters`, a JSON Schema whose keywords must have the types the JSON
//! Schema meta-schema gives them (draft 2020-12 and the older drafts model providers accept).
//!
//! This is the meta-schema's structure, not a validator of instances: a keyword the model
//! provider would choke on (`"type": "strng"`, `"required": "x"`, `"properties": []`) is refused
//! when the tool is declared, naming the tool and the path, instead of failing a turn later.
//! Unknown keywords are allowed (the meta-schema allows them); `pattern`s are not compiled.

use serde_json::{Map, Value};

use super::clients::ClientToolSpec;
use super::errors::RpcError;

/// Tools one client may declare.
pub const MAX_CLIENT_TOOLS: usize = 32;
/// A tool's name: what OpenAI-style function calling accepts.
pub const MAX_TOOL_NAME_BYTES: usize = 64;
pub const MAX_TOOL_DESCRIPTION_BYTES: usize = 4 << 10;
/// A tool's `parameters`, as compact JSON.
pub const MAX_TOOL_SCHEMA_BYTES: usize = 16 << 10;
/// All the tools of one client together: names, descriptions and parameters as JSON. With
/// `limits::MAX_CLIENTS` this bounds what presence holds at 4 MiB.
pub const MAX_CLIENT_TOOLS_BYTES: usize = 64 << 10;
/// How deeply schemas may nest inside `parameters`.
const MAX_SCHEMA_DEPTH: usize = 16;

const TYPES: &[&str] = &[
    "object", "array", "string", "number", "integer", "boolean", "null",
];
/// Keywords whose value is one schema.
const SCHEMA_KEYWORDS: &[&str] = &[
    "items",
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "contains",
    "propertyNames",
    "additionalItems",
    "unevaluatedItems",
    "unevaluatedProperties",
];
/// Keywords whose value is a non-empty array of schemas.
const SCHEMA_LIST_KEYWORDS: &[&str] = &["anyOf", "oneOf", "allOf", "prefixItems"];
/// Keywords whose value is an object of schemas.
const SCHEMA_MAP_KEYWORDS: &[&str] = &[
    "properties",
    "patternProperties",
    "$defs",
    "definitions",
    "dependentSchemas",
];
const NUMBER_KEYWORDS: &[&str] = &[
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
];
const COUNT_KEYWORDS: &[&str] = &[
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minContains",
    "maxContains",
];
const STRING_KEYWORDS: &[&str] = &[
    "title",
    "description",
    "format",
    "pattern",
    "$ref",
    "$id",
    "$schema",
    "$comment",
    "$anchor",
    "contentMediaType",
    "contentEncoding",
];

/// Checks every tool of one `client.hello`: count, names (unique, `[A-Za-z0-9_-]{1,64}`),
/// description and schema sizes, and each schema's structure. -32602 naming the tool.
pub fn check_tools(tools: &[ClientToolSpec]) -> Result<(), RpcError> {
    if tools.len() > MAX_CLIENT_TOOLS {
        return Err(too_many_tools(tools.len()));
    }
    let mut total = 0;
    for (i, tool) in tools.iter().enumerate() {
        check_name(&tool.name)?;
        if tools[..i].iter().any(|t| t.name == tool.name) {
            return Err(bad_tool(&tool.name, "declared twice in one hello"));
        }
        if tool.description.len() > MAX_TOOL_DESCRIPTION_BYTES {
            return Err(bad_tool(
                &tool.name,
                &format!(
                    "description is {} bytes; at most {MAX_TOOL_DESCRIPTION_BYTES}",
                    tool.description.len()
                ),
            )
            .with_kind("tool_description_too_long"));
        }
        let size = serde_json::to_vec(&tool.parameters).map_or(usize::MAX, |v| v.len());
        if size > MAX_TOOL_SCHEMA_BYTES {
            return Err(bad_tool(
                &tool.name,
                &format!("parameters are {size} bytes of JSON; at most {MAX_TOOL_SCHEMA_BYTES}"),
            )
            .with_kind("tool_schema_too_large"));
        }
        check_parameters(&tool.parameters)
            .map_err(|why| bad_tool(&tool.name, &format!("parameters: {why}")))?;
        total += tool.name.len() + tool.description.len() + size;
    }
    if total > MAX_CLIENT_TOOLS_BYTES {
        return Err(RpcError::too_long("tools", total, MAX_CLIENT_TOOLS_BYTES));
    }
    Ok(())
}

/// -32602: one hello declared more than [`MAX_CLIENT_TOOLS`].
pub fn too_many_tools(count: usize) -> RpcError {
    RpcError::invalid_params(
        "tools",
        &format!("{count} tools declared; at most {MAX_CLIENT_TOOLS}"),
    )
    .with_kind("too_many_tools")
    .with_data("limit", MAX_CLIENT_TOOLS.into())
    .with_data("actual", count.into())
}

/// -32602 about one declared tool: `data.field` is `tools`, `data.tool` its name.
pub fn bad_tool(name: &str, why: &str) -> RpcError {
    let shown = super::limits::clip_text(name, MAX_TOOL_NAME_BYTES).unwrap_or(name);
    RpcError::invalid_params("tools", &format!("tool {shown:?}: {why}"))
        .with_kind("invalid_tool")
        .with_data("tool", shown.into())
}

fn check_name(name: &str) -> Result<(), RpcError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TOOL_NAME_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(bad_tool(
            name,
            "a name is 1 to 64 of A-Z, a-z, 0-9, _ and -",
        ))
    }
}

/// The top level is an object schema: function arguments are a JSON object.
pub fn check_parameters(schema: &Value) -> Result<(), String> {
    let Value::Object(map) = schema else {
        return Err("must be a JSON Schema object".into());
    };
    if map.get("type") != Some(&Value::String("object".into())) {
        return Err("the top level must have \"type\": \"object\"".into());
    }
    check_schema(schema, "#", 0)
}

fn check_schema(schema: &Value, path: &str, depth: usize) -> Result<(), String> {
    if depth > MAX_SCHEMA_DEPTH {
        return Err(format!(
            "{path}: nested deeper than {MAX_SCHEMA_DEPTH} schemas"
        ));
    }
    let map = match schema {
        // `true` and `false` are schemas too.
        Value::Bool(_) => return Ok(()),
        Value::Object(map) => map,
        other => {
            return Err(format!(
                "{path}: a schema is an object or a boolean, not {}",
                kind(other)
            ))
        }
    };
    for (key, value) in map {
        let at = format!("{path}/{key}");
        check_keyword(key, value, &at, depth)?;
    }
    Ok(())
}

fn check_keyword(key: &str, value: &Value, at: &str, depth: usize) -> Result<(), String> {
    let k = key;
    if k == "type" {
        return check_type(value, at);
    }
    if SCHEMA_KEYWORDS.contains(&k) {
        // `items` was also a list of schemas before draft 2020-12.
        if k == "items" {
            if let Value::Array(list) = value {
                return check_list(list, at, depth);
            }
        }
        return check_schema(value, at, depth + 1);
    }
    if SCHEMA_LIST_KEYWORDS.contains(&k) {
        return match value {
            Value::Array(list) if !list.is_empty() => check_list(list, at, depth),
            _ => Err(format!("{at}: must be a non-empty array of schemas")),
        };
    }
    if SCHEMA_MAP_KEYWORDS.contains(&k) {
        let Value::Object(members) = value else {
            return Err(format!("{at}: must be an object of schemas"));
        };
        return check_members(members, at, depth);
    }
    if k == "required" {
        return check_unique_strings(value, at);
    }
    if k == "enum" {
        return match value {
            Value::Array(_) => Ok(()),
            _ => Err(format!("{at}: must be an array")),
        };
    }
    if NUMBER_KEYWORDS.contains(&k) {
        return match value {
            Value::Number(_) => Ok(()),
            // Draft 4 wrote exclusiveMinimum/Maximum as booleans.
            Value::Bool(_) if k.starts_with("exclusive") => Ok(()),
            _ => Err(format!("{at}: must be a number")),
        };
    }
    if COUNT_KEYWORDS.contains(&k) {
        return match value.as_u64() {
            Some(_) => Ok(()),
            None => Err(format!("{at}: must be a non-negative integer")),
        };
    }
    if STRING_KEYWORDS.contains(&k) {
        return match value {
            Value::String(_) => Ok(()),
            _ => Err(format!("{at}: must be a string")),
        };
    }
    if k == "uniqueItems" || k == "readOnly" || k == "writeOnly" || k == "deprecated" {
        return match value {
            Value::Bool(_) => Ok(()),
            _ => Err(format!("{at}: must be a boolean")),
        };
    }
    if k == "dependentRequired" {
        let Value::Object(members) = value else {
            return Err(format!("{at}: must be an object of string arrays"));
        };
        for (name, list) in members {
            check_unique_strings(list, &format!("{at}/{name}"))?;
        }
    }
    // `const`, `default`, `examples` and unknown keywords hold any value.
    Ok(())
}

fn check_type(value: &Value, at: &str) -> Result<(), String> {
    let known = |t: &str| TYPES.contains(&t);
    match value {
        Value::String(t) if known(t) => Ok(()),
        Value::Array(list) if !list.is_empty() => {
            for (i, t) in list.iter().enumerate() {
                match t.as_str() {
                    Some(t) if known(t) && !list[..i].iter().any(|u| u.as_str() == Some(t)) => {}
                    _ => return Err(format!("{at}: {t} is not a type, or is listed twice")),
                }
            }
            Ok(())
        }
        _ => Err(format!("{at}: must be one of {TYPES:?} or a list of them")),
    }
}

fn check_list(list: &[Value], at: &str, depth: usize) -> Result<(), String> {
    for (i, s) in list.iter().enumerate() {
        check_schema(s, &format!("{at}/{i}"), depth + 1)?;
    }
    Ok(())
}

fn check_members(members: &Map<String, Value>, at: &str, depth: usize) -> Result<(), String> {
    for (name, s) in members {
        check_schema(s, &format!("{at}/{name}"), depth + 1)?;
    }
    Ok(())
}

fn check_unique_strings(value: &Value, at: &str) -> Result<(), String> {
    let Value::Array(list) = value else {
        return Err(format!("{at}: must be an array of strings"));
    };
    for (i, v) in list.iter().enumerate() {
        if !v.is_string() || list[..i].contains(v) {
            return Err(format!("{at}: must be an array of distinct strings"));
        }
    }
    Ok(())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str, parameters: Value) -> ClientToolSpec {
        ClientToolSpec {
            name: name.into(),
            description: "d".into(),
            parameters,
        }
    }

    #[test]
    fn good_schemas_pass() {
        for schema in [
            json!({"type": "object"}),
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "p", "minLength": 1},
                "lines": {"type": ["integer", "null"], "minimum": 0},
                "mode": {"enum": ["a", "b"]},
                "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": true},
                "any": true,
                "x": {"anyOf": [{"type": "string"}, {"$ref": "#/$defs/n"}]}
            }, "required": ["path"], "additionalProperties": false,
               "$defs": {"n": {"type": "number"}}, "x-vendor": [1, 2]}),
        ] {
            check_tools(&[tool("open_file", schema.clone())])
                .unwrap_or_else(|e| panic!("{schema}: {e:?}"));
        }
    }

    #[test]
    fn bad_schemas_name_the_tool_and_the_path() {
        for (schema, needle) in [
            (json!([]), "JSON Schema object"),
            (json!({"type": "array"}), "top level"),
            (json!({"properties": {}}), "top level"),
            (json!({"type": "object", "properties": []}), "#/properties"),
            (
                json!({"type": "object", "properties": {"a": {"type": "strng"}}}),
                "#/properties/a/type",
            ),
            (json!({"type": "object", "required": "a"}), "#/required"),
            (
                json!({"type": "object", "required": ["a", "a"]}),
                "#/required",
            ),
            (
                json!({"type": "object", "properties": {"a": 5}}),
                "#/properties/a",
            ),
            (json!({"type": "object", "anyOf": []}), "#/anyOf"),
            (
                json!({"type": "object", "minProperties": -1}),
                "#/minProperties",
            ),
            (json!({"type": "object", "description": 3}), "#/description"),
            (json!({"type": ["object", "object"]}), "top level"),
        ] {
            let err = check_tools(&[tool("t1", schema.clone())]).unwrap_err();
            let v = serde_json::to_value(&err).unwrap();
            assert_eq!(v["code"], -32602, "{schema}");
            assert_eq!(v["data"]["tool"], "t1", "{schema}");
            let msg = v["message"].as_str().unwrap();
            assert!(msg.contains(needle), "{schema}: {msg}");
        }
    }

    #[test]
    fn names_counts_and_sizes_are_bounded() {
        let ok = json!({"type": "object"});
        for name in ["", "has space", "ünï", &"x".repeat(65)] {
            assert!(check_tools(&[tool(name, ok.clone())]).is_err(), "{name:?}");
        }
        let twice = [tool("a", ok.clone()), tool("a", ok.clone())];
        assert!(check_tools(&twice).is_err());
        let many: Vec<_> = (0..=MAX_CLIENT_TOOLS)
            .map(|i| tool(&format!("t{i}"), ok.clone()))
            .collect();
        let err = serde_json::to_value(check_tools(&many).unwrap_err()).unwrap();
        assert_eq!(err["data"]["kind"], "too_many_tools");
        let mut long = tool("d", ok.clone());
        long.description = "x".repeat(MAX_TOOL_DESCRIPTION_BYTES + 1);
        let err = serde_json::to_value(check_tools(&[long]).unwrap_err()).unwrap();
        assert_eq!(err["data"]["kind"], "tool_description_too_long");
        let half = json!({"type": "object", "description": "x".repeat(MAX_TOOL_SCHEMA_BYTES / 2)});
        let five: Vec<_> = (0..8)
            .map(|i| tool(&format!("h{i}"), half.clone()))
            .collect();
        let err = serde_json::to_value(check_tools(&five).unwrap_err()).unwrap();
        assert_eq!(err["data"]["kind"], "tools_too_long");
        let big = json!({"type": "object", "description": "x".repeat(MAX_TOOL_SCHEMA_BYTES)});
        let err = serde_json::to_value(check_tools(&[tool("b", big)]).unwrap_err()).unwrap();
        assert_eq!(err["data"]["kind"], "tool_schema_too_large");
        let mut deep = json!({"type": "string"});
        for _ in 0..40 {
            deep = json!({"type": "array", "items": deep});
        }
        let nested = json!({"type": "object", "properties": {"d": deep}});
        assert!(check_tools(&[tool("n", nested)]).is_err());
    }
}
