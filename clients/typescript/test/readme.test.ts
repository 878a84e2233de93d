// The README's opening example runs as written: saved as an .mjs file inside this package (so
// `import "zcoord"` resolves to it), run in a workspace whose server runs in an ancestor.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { PACKAGE_ROOT, Server, tempDir } from "./support/server.js";

describe("README", () => {
  const root = tempDir("readme");
  const env = { XDG_DATA_HOME: join(root, "home") };
  const workspace = join(root, "project");
  let server: Server;

  before(async () => {
    mkdirSync(join(workspace, "sub"), { recursive: true });
    server = await Server.startInWorkspace(workspace, env);
  });

  after(async () => {
    await server?.stop();
  });

  it("opens with a five-line example that runs as written", () => {
    const readme = readFileSync(join(PACKAGE_ROOT, "README.md"), "utf8");
    const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(block, "the README has a ts block");
    assert.equal(block.trimEnd().split("\n").length, 5);
    const file = join(PACKAGE_ROOT, "dist", "readme-hello.mjs");
    writeFileSync(file, block);
    const r = spawnSync(process.execPath, [file], {
      cwd: join(workspace, "sub"),
      env: { ...process.env, ...env },
      encoding: "utf8",
      timeout: 20_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, "echo: hello there");
  });
});
