// Human-in-the-loop (echo model with `--tool-policy word_count=ask`): the approval desk answers
// approvals and questions, a rejection reaches the model, and the first answer wins.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { Client } from "../src/client.js";
import { ApprovalDesk, type HitlOutcome } from "../src/hitl.js";
import { serverAndClient } from "./support/server.js";

describe("human in the loop", () => {
  let client: Client;

  serverAndClient({ args: ["--tool-policy", "word_count=ask"] }, (_server, c) => {
    client = c;
  });

  it("approves a tool call, and the call runs", async () => {
    const outcomes: HitlOutcome[] = [];
    const desk = await ApprovalDesk.start(client, (r) => (r.type === "tool_approval" ? { decision: "approve" } : undefined), {
      clientId: "desk",
      onOutcome: (o) => outcomes.push(o),
    });
    try {
      const turn = await client.send('/tool word_count {"text": "a b c"}');
      const { text } = await turn.result();
      assert.equal(text, "echo:\n[word_count] 3");
      assert.equal(outcomes.length, 1);
      assert.equal(outcomes[0].outcome, "answered");
      assert.equal(outcomes[0].request.payload.tool_name, "word_count");
      assert.equal(outcomes[0].resolved?.status, "approved");
      assert.equal(outcomes[0].resolved?.resolved_by, "desk");
    } finally {
      await desk.close();
    }
  });

  it("answers a question, and rejects with a reason the model is told", async () => {
    const desk = await ApprovalDesk.start(client, (r) =>
      r.type === "question" ? { answer: `blue (asked: ${r.payload.question})` } : { decision: "reject", reason: "not now" },
    );
    try {
      const q = await client.send('/tool ask_user {"question": "colour?", "options": ["red", "blue"]}');
      assert.equal((await q.result()).text, "echo:\n[ask_user] blue (asked: colour?)");
      const r = await client.send('/tool word_count {"text": "a"}');
      const { text } = await r.result();
      assert.match(text, /^echo:\n\[word_count\] rejected by anonymous: not now$/);
    } finally {
      await desk.close();
    }
  });

  it("hands a desk the requests already waiting when it starts", async () => {
    const events = await client.events({ prefixes: ["hitl.pending/"] });
    const turn = await client.send('/tool word_count {"text": "x y"}');
    assert.equal((await events.nextWithin(5000))?.topic, "hitl.pending");
    events.close();
    const seen: string[] = [];
    const desk = await ApprovalDesk.start(client, (r) => {
      seen.push(r.session_id);
      return { decision: "approve_session" };
    });
    try {
      assert.equal((await turn.result()).text, "echo:\n[word_count] 2");
      assert.deepEqual(seen, [turn.session_id]);
      assert.deepEqual((await client.sessionGet({ session_id: turn.session_id })).grants, ["word_count"]);
    } finally {
      await desk.close();
    }
  });

  it("lets the first answer win; the other desk is told who took it", async () => {
    const outcomes: HitlOutcome[] = [];
    let release!: () => void;
    const slow = new Promise<void>((r) => (release = r));
    // The slow desk decides only after the quick one has answered.
    const slowDesk = await ApprovalDesk.start(
      client,
      async () => {
        await slow;
        return { decision: "reject" };
      },
      { onOutcome: (o) => outcomes.push(o) },
    );
    const quickDesk = await ApprovalDesk.start(client, () => ({ decision: "approve" }), {
      clientId: "quick",
      onOutcome: (o) => {
        outcomes.push(o);
        release();
      },
    });
    try {
      const turn = await client.send('/tool word_count {"text": "p q r s"}');
      assert.equal((await turn.result()).text, "echo:\n[word_count] 4");
      await slowDesk.close();
      assert.deepEqual(outcomes.map((o) => o.outcome), ["answered", "taken"]);
      assert.equal(outcomes[1].resolved?.resolved_by, "quick");
    } finally {
      await quickDesk.close();
      await slowDesk.close();
    }
  });
});
