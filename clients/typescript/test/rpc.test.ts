// Calls over ipc: every method of PROTOCOL §5 through its typed wrapper, typed error replies
// (code, kind, data), timeouts and a closed connection.

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, it } from "node:test";

import { Client } from "../src/client.js";
import { CallError, CallTimeoutError, ClosedError, ErrorCode, ErrorKind } from "../src/errors.js";
import { RpcConnection } from "../src/rpc.js";
import { Server, serverAndClient, tempDir } from "./support/server.js";

/** Runs `f` and returns the CallError it must reject with. */
async function callError(f: () => Promise<unknown>): Promise<CallError> {
  try {
    await f();
  } catch (e) {
    assert.ok(e instanceof CallError, `expected a CallError, got ${String(e)}`);
    return e;
  }
  assert.fail("expected an error reply");
}

describe("calls", () => {
  let server: Server;
  let client: Client;

  serverAndClient({}, (s, c) => {
    server = s;
    client = c;
  });

  it("instance.ping and instance.info name the discovery file's instance", async () => {
    const ping = await client.ping();
    assert.equal(ping.status, "ok");
    assert.equal(ping.instance_id, server.discovery.instance_id);
    const info = await client.info();
    assert.equal(info.instance_id, server.discovery.instance_id);
    assert.equal(info.protocol_version, server.discovery.protocol_version);
    assert.equal(info.endpoints.rpc, server.discovery.endpoints.rpc);
    assert.equal(typeof info.seq, "number");
  });

  it("runs every session, message, model, client, tool and replay method", async () => {
    const models = await client.modelList();
    assert.ok(models.models.some((m) => m.name === models.default));

    const s = await client.sessionCreate({ title: "typed" });
    assert.equal(s.title, "typed");
    assert.equal(s.status, "idle");
    assert.equal((await client.sessionGet({ session_id: s.id })).id, s.id);
    assert.ok((await client.sessionList()).sessions.some((x) => x.id === s.id));
    assert.deepEqual(await client.sessionActivate({ session_id: s.id }), { ok: true });
    const configured = await client.sessionConfigure({ session_id: s.id, system_prompt: "Be brief." });
    assert.equal(configured.system_prompt, "Be brief.");

    const turn = await client.send({ session_id: s.id, content: "one two" });
    assert.equal((await turn.result()).text, "echo: one two");
    const { messages, has_more } = await client.messageList({ session_id: s.id });
    assert.equal(has_more, false);
    assert.deepEqual(messages.map((m) => [m.role, m.content]), [["user", "one two"], ["assistant", "echo: one two"]]);
    assert.equal((await client.messageGet({ session_id: s.id, message_id: turn.message_id })).content, "one two");
    assert.equal((await client.messageHistory(s.id)).length, 2);
    assert.deepEqual(await client.sessionInterrupt({ session_id: s.id }), { ok: true, interrupted: false });
    assert.deepEqual((await client.hitlList()).requests, []);

    const snap = await client.stateSync();
    assert.equal(snap.instance_id, server.discovery.instance_id);
    assert.equal(snap.active_session_id, s.id);
    const replay = await client.eventsReplay({ after_seq: 0, instance_id: snap.instance_id, prefixes: ["llm.token/"] });
    assert.deepEqual(replay.events.map((e) => e.payload.token), ["echo:", " one", " two"]);

    const hello = await client.clientHello({ client_id: "rpc-test", name: "rpc test" });
    assert.equal(hello.instance_id, snap.instance_id);
    assert.equal(hello.capabilities.client_tools, true);
    assert.deepEqual((await client.clientList()).clients.map((c) => c.client_id), ["rpc-test"]);
    const notFound = await callError(() => client.toolClaim({ call_id: "call_9" }));
    assert.equal(notFound.code, ErrorCode.ToolCallNotFound);
    const notOpen = await callError(() => client.toolResult({ call_id: "call_9", result: "x" }));
    assert.ok(notOpen.is(ErrorKind.ToolCallNotFound) || notOpen.is(ErrorKind.NotClaimant));
    assert.deepEqual(await client.clientGoodbye(), { ok: true });
    assert.deepEqual((await client.clientList()).clients, []);

    assert.deepEqual(await client.sessionDelete({ session_id: s.id }), { ok: true });
  });

  it("turns error replies into CallError with code, kind and data", async () => {
    const e = await callError(() => client.sessionGet({ session_id: "nope" }));
    assert.equal(e.code, ErrorCode.SessionNotFound);
    assert.equal(e.kind, ErrorKind.SessionNotFound);
    assert.equal(e.data?.session_id, "nope");
    assert.equal(e.method, "session.get");
    assert.ok(e.is(ErrorCode.SessionNotFound) && e.is("session_not_found"));

    const bad = await callError(() => client.call("session.get", { session_id: 7 } as never));
    assert.equal(bad.code, ErrorCode.InvalidParams);
    assert.equal(bad.data?.field, "session_id");

    const unknown = await callError(() => client.rpc.call("no.such.method"));
    assert.equal(unknown.code, ErrorCode.MethodNotFound);

    const mismatch = await callError(() => client.clientHello({ client_id: "old", name: "old", protocol_versions: [7] }));
    assert.equal(mismatch.code, ErrorCode.VersionMismatch);
    assert.deepEqual(mismatch.data?.offered, [7]);
    assert.ok(Array.isArray(mismatch.data?.supported));

    const ahead = await callError(() => client.eventsReplay({ after_seq: 1e9, instance_id: server.discovery.instance_id }));
    assert.equal(ahead.code, ErrorCode.ReplayUnavailable);
    assert.equal(ahead.kind, ErrorKind.ReplayUnavailable);
    assert.equal(ahead.data?.reason, "ahead");

    const tooLong = await callError(() => client.sessionCreate({ title: "x".repeat(300) }));
    assert.equal(tooLong.code, ErrorCode.InvalidParams);
    assert.equal(tooLong.kind, "title_too_long");
    assert.equal(tooLong.data?.limit, 256);
  });

  it("speaks the protocol version the client offers by default", async () => {
    const hello = await client.clientHello({ client_id: "v", name: "v" });
    assert.equal(hello.protocol_version, 2);
    await client.clientGoodbye();
  });

  it("pipelines concurrent calls and matches replies by id", async () => {
    const titles = Array.from({ length: 20 }, (_, i) => `s${i}`);
    const made = await Promise.all(titles.map((title) => client.sessionCreate({ title })));
    assert.deepEqual(made.map((s) => s.title), titles);
  });

  it("times out when nobody answers, and rejects calls on a closed connection", async () => {
    const nobody = new RpcConnection(`ipc://${join(tempDir("nobody"), "rpc.sock")}`, undefined, 200);
    const started = Date.now();
    await assert.rejects(nobody.call("instance.ping"), (e: unknown) => {
      assert.ok(e instanceof CallTimeoutError);
      assert.equal(e.method, "instance.ping");
      assert.equal(e.timeoutMs, 200);
      return true;
    });
    assert.ok(Date.now() - started < 2000);
    const pending = nobody.call("instance.ping", {}, 5000);
    nobody.close();
    await assert.rejects(pending, ClosedError);
    await assert.rejects(nobody.call("instance.ping"), ClosedError);

    const dead = `ipc://${join(tempDir("dead"), "x.sock")}`;
    await assert.rejects(Client.connect({ rpc: dead, pub: dead, timeoutMs: 200 }), CallTimeoutError);
  });
});
