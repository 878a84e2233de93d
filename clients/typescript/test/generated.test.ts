// src/generated/types.ts is what `npm run gen` makes from proto-docs/schema/zcoord.schema.json:
// this fails when the checked-in file is stale. Until the schema exists the test is skipped
// (and fails instead with ZCOORD_REQUIRE_SCHEMA=1).

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";

import { PACKAGE_ROOT, REPO_ROOT } from "./support/server.js";

const SCHEMA = join(REPO_ROOT, "proto-docs/schema/zcoord.schema.json");
const required = process.env.ZCOORD_REQUIRE_SCHEMA === "1";
const skip = !existsSync(SCHEMA) && !required ? `no schema at ${SCHEMA} yet: the types are written by hand` : false;

describe("generated types", () => {
  it("src/generated/types.ts equals a fresh generation from the schema", { skip }, () => {
    assert.ok(existsSync(SCHEMA), `ZCOORD_REQUIRE_SCHEMA=1 but there is no schema at ${SCHEMA}`);
    const r = spawnSync(process.execPath, ["scripts/gen-types.mjs", "--check"], {
      cwd: PACKAGE_ROOT,
      encoding: "utf8",
      env: { ...process.env, ZCOORD_SCHEMA: SCHEMA },
      timeout: 30_000,
    });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });
});
