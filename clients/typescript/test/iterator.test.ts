// An event iterator's buffer is bounded in bytes: a reader that stops reading costs its bound,
// then learns it lost events, instead of the buffer growing without end.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { EventsLostError } from "../src/errors.js";
import { EventIterator } from "../src/events.js";
import type { StreamItem } from "../src/sequencer.js";

const item = (seq: number): StreamItem =>
  ({ seq, instance_id: "i", topic: "llm.token", timestamp: "t", payload: {} }) as unknown as StreamItem;

describe("event iterator", () => {
  it("holds what its reader has not taken, up to its byte bound", async () => {
    let detached = false;
    const it = new EventIterator<StreamItem>((x) => x, () => (detached = true), 250);
    it.offer(item(1), 100);
    it.offer(item(2), 100);
    assert.equal(it.bufferedBytes, 200);
    assert.equal(((await it.next()).value as { seq: number }).seq, 1);
    assert.equal(it.bufferedBytes, 100);
    it.offer(item(3), 100);
    assert.equal(it.bufferedBytes, 200);
    it.offer(item(4), 100); // 300 > 250: dropped, and the reader is told
    assert.ok(detached, "the hub no longer feeds it");
    assert.equal(it.bufferedBytes, 0);
    await assert.rejects(it.next(), (e: unknown) => e instanceof EventsLostError && e.reason === "reader_behind");
  });

  it("hands an item straight to a waiting reader, whatever its size", async () => {
    const it = new EventIterator<StreamItem>((x) => x, () => {}, 10);
    const next = it.next();
    it.offer(item(1), 1_000);
    assert.equal(((await next).value as { seq: number }).seq, 1);
    assert.equal(it.bufferedBytes, 0);
  });
});
