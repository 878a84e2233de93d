"""The TypedDicts against the protocol's JSON Schema (proto-docs/schema/zcoord.schema.json):
for every TypedDict, its `$defs` entry must exist and name the same properties, and the same
required ones. Skipped while the schema is not generated yet, unless ZCOORD_REQUIRE_SCHEMA=1."""

import json
import os
from typing import Any

import pytest

from zcoord import protocol
from conftest import REPO

SCHEMA = REPO / "proto-docs" / "schema" / "zcoord.schema.json"


def load_defs() -> dict[str, Any]:
    if not SCHEMA.exists():
        if os.environ.get("ZCOORD_REQUIRE_SCHEMA") == "1":
            pytest.fail(f"{SCHEMA} is missing and ZCOORD_REQUIRE_SCHEMA=1")
        pytest.skip(f"{SCHEMA} is not generated yet (set ZCOORD_REQUIRE_SCHEMA=1 to fail instead)")
    defs = json.loads(SCHEMA.read_text()).get("$defs")
    assert isinstance(defs, dict), "the schema has no $defs"
    return defs


def keys_of(schema: dict[str, Any], defs: dict[str, Any], depth: int = 0) -> tuple[set[str], set[str]]:
    """(properties, required) of an object schema, through $ref, allOf, and oneOf/anyOf (whose
    variants' properties are all allowed, and whose common required ones are required)."""
    assert depth < 32, "schema nesting too deep"
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        props, req = keys_of(defs[name], defs, depth + 1)
    else:
        props, req = set(schema.get("properties", {})), set(schema.get("required", []))
    for part in schema.get("allOf", []):
        p, r = keys_of(part, defs, depth + 1)
        props |= p
        req |= r
    for union in ("oneOf", "anyOf"):
        variants = [keys_of(v, defs, depth + 1) for v in schema.get(union, []) if v.get("type") != "null"]
        if variants:
            props |= set().union(*(p for p, _ in variants))
            req |= set.intersection(*(r for _, r in variants))
    return props, req


def test_every_typeddict_matches_its_schema_definition() -> None:
    defs = load_defs()
    problems = []
    for ours, candidates in sorted(protocol.SCHEMA_NAMES.items()):
        name = next((c for c in candidates if c in defs), None)
        if name is None:
            problems.append(f"{ours}: no $defs entry named {' or '.join(candidates)}")
            continue
        cls = protocol.typeddict(ours)
        props, req = keys_of(defs[name], defs)
        mine = set(cls.__required_keys__) | set(cls.__optional_keys__)
        if mine != props:
            problems.append(
                f"{ours} vs $defs/{name}: only ours {sorted(mine - props)}, "
                f"only the schema's {sorted(props - mine)}"
            )
        if set(cls.__required_keys__) != req:
            problems.append(
                f"{ours} vs $defs/{name}: required ours {sorted(cls.__required_keys__)}, "
                f"the schema's {sorted(req)}"
            )
    assert not problems, "\n".join(problems)


def test_the_key_reader_follows_refs_and_unions() -> None:
    defs = {"A": {"properties": {"a": {}, "b": {}}, "required": ["a"]}}
    schema = {"oneOf": [{"$ref": "#/$defs/A"}, {"properties": {"a": {}, "c": {}}, "required": ["a", "c"]}]}
    assert keys_of(schema, defs) == ({"a", "b", "c"}, {"a"})
