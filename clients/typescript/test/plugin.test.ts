// The example editor plugin (examples/plugin.ts), run as a program end to end against a server
// that asks before `word_count` runs: it streams the reply, runs its own tool, and answers the
// approval.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { Client } from "../src/client.js";
import { PACKAGE_ROOT, Server, within } from "./support/server.js";

const PLUGIN = join(PACKAGE_ROOT, "dist/examples/plugin.js");

function run(args: string[], cwd = PACKAGE_ROOT): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return within(
    20_000,
    new Promise((resolve) => {
      const p = spawn(process.execPath, [PLUGIN, ...args], { cwd, stdio: ["ignore", "pipe", "pipe"] });
      let stdout = "";
      let stderr = "";
      p.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
      p.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
      p.on("exit", (code) => resolve({ code, stdout, stderr }));
    }),
    "the plugin",
  );
}

describe("examples/plugin.ts", () => {
  let server: Server;

  before(async () => {
    server = await Server.start({ args: ["--tool-policy", "word_count=ask"] });
  });

  after(async () => {
    await server?.stop();
  });

  const message = 'Explain\n/tool editor_selection {"max_chars": 11}\n/tool word_count {"text": "one two"}';

  it("streams the turn, runs its tool and approves the call its user is asked about", async () => {
    const r = await run(["--data-dir", server.dataDir, "--approve", message]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.split("\n");
    assert.deepEqual(lines.slice(0, 3), ["echo: Explain", "[editor_selection] fn main() {", "[word_count] 2"]);
    assert.ok(lines.some((l) => /^tool editor_selection call_1: ran$/.test(l)), r.stdout);
    assert.ok(lines.includes("approval word_count: answered (approved)"), r.stdout);
    assert.ok(lines.includes("turn completed"));
    // It said goodbye: nobody is left present.
    const c = await Client.connect({ dataDir: server.dataDir });
    try {
      assert.deepEqual((await c.clientList()).clients, []);
    } finally {
      await c.close();
    }
  });

  it("rejects when its user says no, and the model is told", async () => {
    const r = await run(["--data-dir", server.dataDir, "--reject", message]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /\[word_count\] rejected by plugin-example-\d+: the user said no/);
  });

  it("exits 3 when there is no server", async () => {
    const r = await run(["--data-dir", join(server.dataDir, "nothing-here")]);
    assert.equal(r.code, 3);
    assert.match(r.stderr, /no server/);
  });
});
