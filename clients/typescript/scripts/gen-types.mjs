#!/usr/bin/env node
// Generates src/generated/types.ts from the protocol's JSON Schema
// (proto-docs/schema/zcoord.schema.json, JSON Schema 2020-12, one `$defs` entry per type) with
// json-schema-to-typescript: every `$defs` name becomes an exported type of that name. Owns the
// transformations of the schema that make json-schema-to-typescript render what TypeScript can
// say (listed under "Transformations" below); it never touches the output text.
//
//   node scripts/gen-types.mjs            write src/generated/types.ts
//   node scripts/gen-types.mjs --check    exit 1 if the checked-in file differs from a fresh one
//
// Exit code 2 (either mode): the schema does not exist (yet).
//
// Transformations, applied in this order to a copy of `$defs` (each is general: it looks for a
// shape, not for a name, and throws on a variant of the shape it does not know, so a new
// construct in the schema fails the generation instead of being rendered wrongly):
//
// 1. Discriminated `if`/`then` (EventEnvelope): an object whose `allOf` is only
//    `{if: {properties: {K: {const: v}}}, then: …}` on one key K whose own schema is an `enum`
//    becomes a `oneOf` with one branch per enum value: the base object with K fixed to that value
//    and the `then` applied (its properties replace the base's, its `required` adds to the
//    base's, `{not: {required: [p]}}` makes p `false`, i.e. absent). That is the same set of
//    values, written as a union TypeScript narrows by K.
// 2. `oneOf` of required-ness (HitlRespondParams, Response): an object whose `oneOf` branches
//    only add `properties`/`required` becomes a `oneOf` of whole objects, the base merged into
//    each branch. In a branch, `{not: {type: "null"}}` on a member means the base's schema
//    without `null`, and `{type: "null"}` means "absent or null".
// 3. Nullable optional members of what the server writes: the schema lets an optional member be
//    `null` because the Rust decoders accept it, but the server never writes `null` in a result,
//    an event or the discovery file (proto-docs/schema/README.md). So in every def that is not
//    reachable from a method's params or `Request` (those follow what the server accepts, where
//    `null` means something, e.g. `session.configure`), `null` is dropped from members that are
//    not `required`: `T | null` becomes `T`, read as "absent or T".
// 4. `{not: {type: "null"}}` (any JSON value but null, e.g. `tool.result`'s `result`) becomes
//    the type `NonNullJson`, added to the output; json-schema-to-typescript would render it as
//    an empty object type.
// 5. References by name: `{"$ref": "#/$defs/X", …}` becomes the type X (`tsType`), keeping its
//    description. json-schema-to-typescript otherwise copies a referenced type under a new name
//    (`Health1`, `TransportInfo1`) when the reference has sibling keywords, and a def that is a
//    bare reference (`SessionCreateResult`) into a second interface instead of an alias.
//
// Options: `ignoreMinAndMaxItems`, so that `minItems`/`maxItems` (1 to 16 protocol versions)
// give an array, not a union of sixteen tuple types; the server checks the bounds.

import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

import { compile } from "json-schema-to-typescript";

const PACKAGE_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const REPO_ROOT = join(PACKAGE_ROOT, "../..");
export const SCHEMA = process.env.ZCOORD_SCHEMA ?? join(REPO_ROOT, "proto-docs/schema/zcoord.schema.json");
export const OUTPUT = join(PACKAGE_ROOT, "src/generated/types.ts");

/** The wrapper type that makes every `$defs` entry reachable; it is dropped from the output. */
const ROOT = "ZcoordSchemaRoot";
const DEF_REF = "#/$defs/";

/** The type transformation 4 adds: what `{"not": {"type": "null"}}` allows. */
const NON_NULL_JSON = "NonNullJson";
const NON_NULL_JSON_DEF = {
  description: "Any JSON value but null (the schema's `{\"not\": {\"type\": \"null\"}}`).",
  tsType: "string | number | boolean | object",
};

const isObject = (x) => typeof x === "object" && x !== null && !Array.isArray(x);
const clone = (x) => structuredClone(x);

/** Calls `f` on every subschema of `schema` (itself included), children first, replacing each
 * by what `f` returns. Walks every keyword's value but those that hold data, not schemas
 * (`default`, `const`, `enum`, `required`), which are copied as they are. */
function mapSchemas(schema, f) {
  if (!isObject(schema)) return f(schema);
  const out = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === "default" || k === "const" || k === "enum" || k === "required") out[k] = v;
    else if (k === "properties" || k === "$defs") {
      out[k] = Object.fromEntries(Object.entries(v).map(([p, s]) => [p, mapSchemas(s, f)]));
    } else if (Array.isArray(v)) out[k] = v.map((s) => (isObject(s) || typeof s === "boolean" ? mapSchemas(s, f) : s));
    else if (isObject(v)) out[k] = mapSchemas(v, f);
    else out[k] = v;
  }
  return f(out);
}

const isNullOnly = (s) => isObject(s) && s.type === "null" && Object.keys(s).every((k) => k === "type" || k === "description");
const isNotNull = (s) => isObject(s) && Object.keys(s).every((k) => k === "not" || k === "description") && isNullOnly(s.not);

/** `schema` without `null` among its values: `type: [T, "null"]` -> `type: T`; an `anyOf` with a
 * `{type: "null"}` branch loses it (the one branch left is merged into its annotations). */
function withoutNull(schema) {
  if (!isObject(schema)) return schema;
  if (Array.isArray(schema.type) && schema.type.includes("null")) {
    const types = schema.type.filter((t) => t !== "null");
    return { ...schema, type: types.length === 1 ? types[0] : types };
  }
  if (Array.isArray(schema.anyOf) && schema.anyOf.some(isNullOnly)) {
    const rest = schema.anyOf.filter((s) => !isNullOnly(s));
    const { anyOf: _anyOf, ...annotations } = schema;
    return rest.length === 1 ? { ...rest[0], ...annotations } : { ...annotations, anyOf: rest };
  }
  return schema;
}

/** 1. `allOf` of `if {K: const v} then …` over K's enum -> `oneOf`, one branch per value. */
function ifThenToUnion(name, def) {
  if (!isObject(def) || !Array.isArray(def.allOf) || !def.allOf.every((s) => isObject(s) && "if" in s)) return def;
  const { allOf, description, ...base } = def;
  const rules = allOf.map((rule) => {
    const props = Object.entries(rule.if?.properties ?? {});
    const extra = Object.keys(rule).filter((k) => k !== "if" && k !== "then");
    if (props.length !== 1 || !("const" in props[0][1]) || extra.length > 0 || Object.keys(rule.if).length !== 1) {
      throw new Error(`${name}: an if/then rule other than "if {K: {const: v}} then …"`);
    }
    return { key: props[0][0], value: props[0][1].const, then: rule.then ?? {} };
  });
  const key = rules[0].key;
  const values = base.properties?.[key]?.enum;
  if (!rules.every((r) => r.key === key) || !Array.isArray(values) || base.type !== "object") {
    throw new Error(`${name}: if/then rules that do not discriminate one enum member of an object`);
  }
  const branches = values.map((value) => {
    const branch = clone(base);
    const { enum: _enum, ...keySchema } = branch.properties[key];
    branch.properties[key] = { ...keySchema, const: value };
    const required = new Set(branch.required ?? []);
    for (const rule of rules.filter((r) => r.value === value)) {
      const { properties = {}, required: thenRequired = [], allOf: conditions = [], ...other } = rule.then;
      if (Object.keys(other).length > 0) throw new Error(`${name}: a then with ${Object.keys(other)}`);
      Object.assign(branch.properties, clone(properties));
      for (const p of thenRequired) required.add(p);
      for (const c of conditions) {
        if (isObject(c) && Object.keys(c).length === 1 && Array.isArray(c.required)) {
          for (const p of c.required) required.add(p);
        } else if (isObject(c) && Object.keys(c).length === 1 && isObject(c.not) && Object.keys(c.not).length === 1 && Array.isArray(c.not.required)) {
          for (const p of c.not.required) {
            branch.properties[p] = false;
            required.delete(p);
          }
        } else throw new Error(`${name}: a then condition other than required / not required`);
      }
    }
    branch.required = [...required];
    return branch;
  });
  if (rules.some((r) => !values.includes(r.value))) throw new Error(`${name}: an if/then on a value outside ${key}'s enum`);
  return { ...(description ? { description } : {}), oneOf: branches };
}

/** 2. An object with a `oneOf` of `properties`/`required` constraints -> a `oneOf` of objects. */
function requiredOneOfToUnion(name, def) {
  if (!isObject(def) || !Array.isArray(def.oneOf) || def.type !== "object") return def;
  const { oneOf, description, ...base } = def;
  const known = new Set(["type", "properties", "required"]);
  if (Object.keys(base).some((k) => !known.has(k))) throw new Error(`${name}: a oneOf object with ${Object.keys(base)}`);
  const branches = oneOf.map((c) => {
    if (!isObject(c) || Object.keys(c).some((k) => !known.has(k)) || (c.type && c.type !== "object")) {
      throw new Error(`${name}: a oneOf branch that is not a properties/required constraint`);
    }
    const properties = clone(base.properties ?? {});
    for (const [p, s] of Object.entries(c.properties ?? {})) {
      const own = properties[p];
      if (isNotNull(s)) properties[p] = own === undefined ? s : withoutNull(own);
      else if (isNullOnly(s)) properties[p] = { type: "null", ...(own?.description ? { description: own.description } : {}) };
      else if (own === undefined) properties[p] = s;
      else throw new Error(`${name}: a oneOf branch that constrains ${p} beyond null or not null`);
    }
    const required = [...new Set([...(base.required ?? []), ...(c.required ?? [])])];
    return { type: "object", properties, required };
  });
  return { ...(description ? { description } : {}), oneOf: branches };
}

/** The `$defs` names a schema refers to, transitively. */
function reachable(defs, roots) {
  const seen = new Set();
  const visit = (name) => {
    if (seen.has(name) || !(name in defs)) return;
    seen.add(name);
    mapSchemas(defs[name], (s) => {
      if (isObject(s) && typeof s.$ref === "string" && s.$ref.startsWith(DEF_REF)) visit(s.$ref.slice(DEF_REF.length));
      return s;
    });
  };
  roots.forEach(visit);
  return seen;
}

/** 3. Optional members lose `null` (for defs only the server writes). */
function optionalWithoutNull(def) {
  return mapSchemas(def, (s) => {
    if (!isObject(s) || !isObject(s.properties)) return s;
    const required = new Set(s.required ?? []);
    const properties = Object.fromEntries(
      Object.entries(s.properties).map(([p, m]) => [p, required.has(p) ? m : withoutNull(m)]),
    );
    return { ...s, properties };
  });
}

/** 4. and 5. `not null` -> NonNullJson; `$ref` -> the referenced type by name. */
function byName(def) {
  return mapSchemas(def, (s) => {
    if (isNotNull(s)) {
      const { not: _not, ...annotations } = s;
      return { ...annotations, tsType: NON_NULL_JSON };
    }
    if (isObject(s) && typeof s.$ref === "string") {
      if (!s.$ref.startsWith(DEF_REF)) throw new Error(`a $ref outside $defs: ${s.$ref}`);
      const { $ref, default: _default, ...annotations } = s;
      return { ...annotations, tsType: $ref.slice(DEF_REF.length) };
    }
    return s;
  });
}

/** The schema's `$defs`, transformed as the header says, with the extra `NonNullJson`. */
export function transform(schema) {
  const defs = schema.$defs ?? schema.definitions;
  if (!isObject(defs)) throw new Error("the schema has no $defs");
  if (NON_NULL_JSON in defs) throw new Error(`the schema defines ${NON_NULL_JSON} itself`);
  const methods = schema["x-zcoord"]?.methods;
  if (!isObject(methods)) throw new Error("the schema has no x-zcoord.methods index");
  const paramRefs = Object.values(methods).map((m) => String(m.params).replace(DEF_REF, ""));
  const accepted = reachable(defs, [...paramRefs, "Request"]);

  const out = {};
  for (const name of Object.keys(defs).sort()) {
    let def = requiredOneOfToUnion(name, ifThenToUnion(name, clone(defs[name])));
    if (!accepted.has(name)) def = optionalWithoutNull(def);
    out[name] = byName(def);
  }
  out[NON_NULL_JSON] = NON_NULL_JSON_DEF;
  return out;
}

export async function generate(schemaPath = SCHEMA) {
  const schema = JSON.parse(readFileSync(schemaPath, "utf8"));
  const defs = transform(schema);
  const names = Object.keys(defs).sort();
  // Each def gets its key as its title, so the type is named after it whatever the schema says.
  const root = {
    title: ROOT,
    type: "object",
    additionalProperties: false,
    properties: Object.fromEntries(names.map((n) => [n, { ...defs[n], title: n }])),
  };
  const body = await compile(root, ROOT, {
    bannerComment: "",
    additionalProperties: true, // clients must ignore fields they do not know (PROTOCOL §13)
    declareExternallyReferenced: true,
    enableConstEnums: false,
    format: true,
    ignoreMinAndMaxItems: true,
    strictIndexSignatures: false,
    unknownAny: true,
    style: { printWidth: 120, singleQuote: false },
  });
  const withoutRoot = body.replace(new RegExp(`export interface ${ROOT} \\{[\\s\\S]*?\\n\\}\\n`), "");
  const source = relative(REPO_ROOT, schemaPath).split("\\").join("/");
  return (
    `/* The protocol's wire types: one per \`$defs\` name of ${source},\n` +
    ` * and \`${NON_NULL_JSON}\` (any JSON value but null).\n` +
    ` *\n` +
    ` * GENERATED by scripts/gen-types.mjs (npm run gen) with json-schema-to-typescript: do not edit;\n` +
    ` * change the schema and regenerate. test/generated.test.ts fails when this file is stale.\n` +
    ` * Optional members of results and events are never null (absent instead); params may be\n` +
    ` * null where the server accepts it. scripts/gen-types.mjs says how the schema is read. */\n\n` +
    withoutRoot.trimStart()
  );
}

async function main() {
  if (!existsSync(SCHEMA)) {
    console.error(`no schema at ${SCHEMA}: nothing to generate from`);
    process.exit(2);
  }
  const fresh = await generate();
  if (process.argv.includes("--check")) {
    const current = existsSync(OUTPUT) ? readFileSync(OUTPUT, "utf8") : "";
    if (current !== fresh) {
      console.error(`${relative(PACKAGE_ROOT, OUTPUT)} differs from a fresh generation: run \`npm run gen\``);
      process.exit(1);
    }
    console.log(`${relative(PACKAGE_ROOT, OUTPUT)} is up to date`);
    return;
  }
  writeFileSync(OUTPUT, fresh);
  console.log(`wrote ${relative(PACKAGE_ROOT, OUTPUT)} from ${SCHEMA}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) await main();
