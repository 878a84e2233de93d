// Discovery (PROTOCOL §1): the data directory the server derives from its workspace, the walk up
// from a subdirectory, stale files, explicit endpoints and data directories.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";

import { Client } from "../src/client.js";
import { fnv1a64Hex, resolveDataDir, resolveTarget, workspaceDataDir } from "../src/discovery.js";
import { DiscoveryError } from "../src/errors.js";
import { Server, tempDir } from "./support/server.js";

describe("discovery", () => {
  const root = tempDir("disc");
  const env = { XDG_DATA_HOME: join(root, "home"), HOME: join(root, "nohome") };
  // A name with characters the server replaces and more than 16 of them.
  const workspace = join(root, "my work space-é_and_more");
  const deep = join(workspace, "src", "deeper");
  let server: Server;
  let serverDir: string;

  before(async () => {
    mkdirSync(deep, { recursive: true });
    server = await Server.startInWorkspace(workspace, env);
    serverDir = server.dataDir;
  });

  after(async () => {
    await server?.stop();
  });

  it("hashes like the server: FNV-1a 64", () => {
    assert.equal(fnv1a64Hex(new Uint8Array()), "cbf29ce484222325");
    assert.equal(fnv1a64Hex(Buffer.from("a")), "af63dc4c8601ec8c");
  });

  it("derives the same data directory as the server for a workspace", () => {
    assert.equal(workspaceDataDir(workspace, env), serverDir);
    assert.match(serverDir, /\/my_work_space-__-[0-9a-f]{16}$/);
  });

  it("walks up from a subdirectory to the workspace whose server is alive", async () => {
    assert.equal(resolveDataDir({ cwd: deep, env }), serverDir);
    const client = await Client.connect({ cwd: deep, env });
    try {
      assert.equal((await client.ping()).instance_id, server.discovery.instance_id);
      assert.equal(client.target.dataDir, serverDir);
    } finally {
      await client.close();
    }
  });

  it("falls back to the current directory's own data directory when no ancestor has a server", () => {
    const lonely = tempDir("lonely");
    assert.equal(resolveDataDir({ cwd: lonely, env }), workspaceDataDir(lonely, env));
    assert.throws(() => resolveTarget({ cwd: lonely, env }), DiscoveryError);
  });

  it("skips an ancestor whose discovery file names a dead process, and says a file is stale", () => {
    const parent = tempDir("stale");
    const child = join(parent, "child");
    mkdirSync(child);
    const dead = spawnSync(process.execPath, ["-e", ""]).pid!;
    const staleDir = workspaceDataDir(parent, env);
    mkdirSync(staleDir, { recursive: true });
    writeFileSync(
      join(staleDir, "instance.json"),
      JSON.stringify({ ...server.discovery, pid: dead, instance_id: "gone" }),
    );
    assert.equal(resolveDataDir({ cwd: child, env }), workspaceDataDir(child, env));
    assert.throws(() => resolveTarget({ cwd: parent, env }), /stale: instance gone/);
  });

  it("takes an explicit data directory, $ZCOORD_DATA_DIR and $ZCOORD_WORKSPACE over the walk", () => {
    const elsewhere = tempDir("else");
    assert.equal(resolveDataDir({ cwd: deep, env, dataDir: elsewhere }), elsewhere);
    assert.equal(resolveDataDir({ cwd: deep, env: { ...env, ZCOORD_DATA_DIR: elsewhere } }), elsewhere);
    assert.equal(resolveDataDir({ cwd: elsewhere, env: { ...env, ZCOORD_WORKSPACE: workspace } }), serverDir);
    // An explicit workspace is not walked up from.
    assert.equal(resolveDataDir({ cwd: elsewhere, env, workspace: deep }), workspaceDataDir(deep, env));
  });

  it("takes explicit endpoints (options or $ZCOORD_RPC/$ZCOORD_PUB) without a discovery file", async () => {
    const { rpc, pub } = server.discovery.endpoints;
    const nowhere = tempDir("nowhere");
    assert.deepEqual(resolveTarget({ rpc, pub, dataDir: nowhere, env }), { rpc, pub, secret: undefined });
    const client = await Client.connect({ env: { ...env, ZCOORD_RPC: rpc, ZCOORD_PUB: pub }, dataDir: nowhere });
    try {
      assert.equal((await client.ping()).instance_id, server.discovery.instance_id);
    } finally {
      await client.close();
    }
  });
});
