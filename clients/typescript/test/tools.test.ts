// Client-run tools: a runner says hello with its tool, claims the model's call, runs it, sends
// the result, and leaves with a goodbye; a call a person must approve is claimed after approval.

import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { Client } from "../src/client.js";
import { CallError, ErrorKind } from "../src/errors.js";
import { ApprovalDesk } from "../src/hitl.js";
import { ToolRunner, type ClientTool, type ToolCallOutcome } from "../src/tools.js";
import { Server } from "./support/server.js";

const reverse: ClientTool = {
  name: "reverse_text",
  description: "Reverses a text, character by character.",
  parameters: { type: "object", properties: { text: { type: "string" } }, required: ["text"] },
  run: (args) => [...(args as { text: string }).text].reverse().join(""),
};

const shout: ClientTool = {
  name: "shout",
  parameters: { type: "object", properties: { text: { type: "string" } } },
  run: (args) => ({ result: `${(args as { text: string }).text.toUpperCase()}!`, is_error: false }),
};

describe("client tools", () => {
  let server: Server;
  let client: Client;
  let other: Client;

  before(async () => {
    server = await Server.start({ args: ["--tool-policy", "shout=ask"] });
    client = await Client.connect({ dataDir: server.dataDir });
    other = await Client.connect({ dataDir: server.dataDir });
  });

  after(async () => {
    await other?.close();
    await client?.close();
    await server?.stop();
  });

  it("offers a tool, runs the model's call of it, and says goodbye", async () => {
    const calls: ToolCallOutcome[] = [];
    const runner = await ToolRunner.start(client, {
      clientId: "ts-tools",
      name: "TypeScript test",
      version: "1.0",
      tools: [reverse],
      onCall: (c) => calls.push(c),
    });
    try {
      assert.equal(runner.welcome.capabilities.client_tools, true);
      const present = await other.clientList();
      assert.deepEqual(present.clients.map((c) => [c.client_id, c.tools]), [["ts-tools", ["reverse_text"]]]);

      const turn = await other.send('reverse it\n/tool reverse_text {"text": "stressed"}');
      const starts: string[] = [];
      for await (const e of turn) if (e.topic === "tool.start") starts.push(e.payload.executor);
      assert.deepEqual(starts, ["client"]);
      assert.equal((await turn.result()).text, "echo: reverse it\n[reverse_text] desserts");
      assert.deepEqual(calls.map((c) => [c.tool_name, c.outcome, c.result]), [["reverse_text", "ran", "desserts"]]);
    } finally {
      await runner.stop();
    }
    assert.deepEqual((await other.clientList()).clients, []);
  });

  it("claims a call that needs approval only once a person approved it", async () => {
    const calls: ToolCallOutcome[] = [];
    const runner = await ToolRunner.start(client, { clientId: "ts-shout", name: "shouter", tools: [shout], onCall: (c) => calls.push(c) });
    const desk = await ApprovalDesk.start(other, () => ({ decision: "approve" }));
    try {
      const turn = await other.send('/tool shout {"text": "hi"}');
      assert.equal((await turn.result()).text, "echo:\n[shout] HI!");
      assert.deepEqual(calls.map((c) => c.outcome), ["ran"]);
    } finally {
      await desk.close();
      await runner.stop();
    }
  });

  it("refuses a tool.claim from a client that did not declare the tool", async () => {
    await assert.rejects(other.toolClaim({ call_id: "call_1" }), (e: unknown) => {
      assert.ok(e instanceof CallError);
      assert.ok(e.is(ErrorKind.NotClaimant) || e.is(ErrorKind.ToolCallNotFound));
      return true;
    });
  });

  it("refuses a bad tool declaration with invalid_tool", async () => {
    await assert.rejects(
      ToolRunner.start(client, { clientId: "bad", name: "bad", tools: [{ ...reverse, name: "read_file" }] }),
      (e: unknown) => e instanceof CallError && e.kind === ErrorKind.InvalidTool && e.data?.tool === "read_file",
    );
  });
});
