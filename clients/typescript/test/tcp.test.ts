// Over loopback tcp the server lets in only PLAIN peers with its secret (PROTOCOL §1): the
// client reads it from the discovery file or $ZCOORD_SECRET, on both sockets; a wrong one gets
// nothing at all.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Client } from "../src/client.js";
import { CallTimeoutError, ZcoordError } from "../src/errors.js";
import { Server, tempDir } from "./support/server.js";

describe("tcp with PLAIN", () => {
  let server: Server;

  before(async () => {
    server = await Server.start({ tcp: true });
  });

  after(async () => {
    await server?.stop();
  });

  it("connects with the discovery file's secret: calls, the welcome and a turn", async () => {
    assert.match(server.discovery.endpoints.rpc, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    assert.ok(server.discovery.secret);
    const client = await Client.connect({ dataDir: server.dataDir });
    try {
      assert.equal(client.target.secret, server.discovery.secret);
      assert.equal((await client.ping()).instance_id, server.discovery.instance_id);
      const turn = await client.send("over tcp");
      assert.equal((await turn.result()).text, "echo: over tcp");
    } finally {
      await client.close();
    }
  });

  it("takes the secret from $ZCOORD_SECRET with explicit endpoints", async () => {
    const { rpc, pub } = server.discovery.endpoints;
    const client = await Client.connect({ rpc, pub, dataDir: tempDir("none"), env: { ZCOORD_SECRET: server.discovery.secret } });
    try {
      const live = await client.subscribe(["instance."]);
      live.socket.close();
      assert.equal((await client.info()).instance_id, server.discovery.instance_id);
    } finally {
      await client.close();
    }
  });

  it("gets no answer with a wrong secret, and refuses tcp without one", async () => {
    await assert.rejects(
      Client.connect({ dataDir: server.dataDir, secret: "not-the-secret-at-all", timeoutMs: 500 }),
      CallTimeoutError,
    );
    const { rpc, pub } = server.discovery.endpoints;
    await assert.rejects(Client.connect({ rpc, pub, dataDir: tempDir("none"), env: {} }), ZcoordError);
  });
});
