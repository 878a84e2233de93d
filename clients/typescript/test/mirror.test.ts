// The mirror (PROTOCOL §8, the Clone pattern): its replica equals what the server says after
// turns, deletions and approvals, and it resynchronises when the server is replaced.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";
import { isDeepStrictEqual } from "node:util";

import { Client } from "../src/client.js";
import { Mirror } from "../src/mirror.js";
import type { Replica } from "../src/replica.js";
import { Server, tempDir } from "./support/server.js";

/** What the server says now, in the replica's shape. */
async function serverView(client: Client) {
  const snap = await client.stateSync();
  const messages: Record<string, Array<[string, string]>> = {};
  for (const s of snap.sessions) messages[s.id] = (await client.messageHistory(s.id)).map((m) => [m.role, m.content]);
  return {
    sessions: snap.sessions.map((s) => [s.id, s.title, s.message_count, s.status]).sort(),
    active: snap.active_session_id,
    messages,
    hitl: snap.hitl.map((r) => r.id).sort(),
  };
}

function replicaView(r: Replica) {
  const messages: Record<string, Array<[string, string]>> = {};
  for (const [id, list] of r.messages) messages[id] = list.map((m) => [m.role, m.content]);
  return {
    sessions: [...r.sessions.values()].map((s) => [s.id, s.title, s.message_count, s.status]).sort(),
    active: r.activeSessionId,
    messages,
    hitl: [...r.hitl.keys()].sort(),
  };
}

/** Waits until the replica shows `want`; on a timeout, fails with the difference. */
async function converges(mirror: Mirror, want: ReturnType<typeof replicaView>): Promise<void> {
  try {
    await mirror.waitFor((r) => isDeepStrictEqual(replicaView(r), want), 5000);
  } catch {
    assert.deepEqual(replicaView(mirror.replica), want);
  }
}

describe("mirror", () => {
  const dataDir = tempDir("mirror");
  let server: Server;
  let client: Client;
  let mirror: Mirror;

  before(async () => {
    // sqlite: the sessions outlive the restart below.
    server = await Server.start({ dataDir, store: "sqlite", args: ["--tool-policy", "word_count=ask"] });
    client = await Client.connect({ dataDir });
    // Some state before the mirror starts: it must come from the snapshot.
    await (await client.send("before the mirror")).result();
    mirror = await Mirror.start(client);
  });

  after(async () => {
    await mirror?.close();
    await client?.close();
    await server?.stop();
  });

  it("loads the snapshot and every session's history", async () => {
    assert.deepEqual(replicaView(mirror.replica), await serverView(client));
    assert.equal(mirror.replica.instanceId, server.discovery.instance_id);
  });

  it("follows turns, a pending approval, deletions and activations by events alone", async () => {
    const first = await client.send("first mirrored message");
    await first.result();
    await (await client.send({ session_id: first.session_id, content: "second one" })).result();
    const doomed = await client.sessionCreate({ title: "doomed" });
    await client.sessionActivate({ session_id: doomed.id });
    await client.sessionDelete({ session_id: doomed.id });
    const asking = await client.send('/tool word_count {"text": "a b"}');
    await mirror.waitFor((r) => r.hitl.size === 1, 5000);
    const want = await serverView(client);
    await converges(mirror, want);
    assert.deepEqual(mirror.replica.messages.get(first.session_id)?.map((m) => m.content), [
      "first mirrored message",
      "echo: first mirrored message",
      "second one",
      "echo: second one",
    ]);
    assert.equal(mirror.replica.sessions.has(doomed.id), false);
    const [request] = mirror.replica.hitl.values();
    await client.hitlRespond({ id: request.id, decision: "approve" });
    await asking.result();
    await mirror.waitFor((r) => r.hitl.size === 0, 5000);
    const after = await serverView(client);
    await converges(mirror, after);
    assert.deepEqual(mirror.resyncs, [], "no resync: nothing was lost");
  });

  it("resynchronises when the server is replaced, and equals the new one", async () => {
    const old = server.discovery.instance_id;
    await server.stop();
    server = await Server.start({ dataDir, store: "sqlite", args: ["--tool-policy", "word_count=ask"] });
    assert.notEqual(server.discovery.instance_id, old);
    await mirror.waitFor((r) => r.instanceId === server.discovery.instance_id, 15_000);
    await (await client.send("after the restart")).result();
    const want = await serverView(client);
    await converges(mirror, want);
    assert.ok(mirror.resyncs.length >= 1);
    assert.match(mirror.resyncs[0], /instance/);
  });
});
