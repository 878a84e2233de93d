// The gap rules of PROTOCOL §8 step 5, on the Sequencer alone: a replay function that serves
// from a list of events stands in for `events.replay`.

import assert from "node:assert/strict";
import { describe, it } from "node:test";

import type { EventEnvelope } from "../src/generated/types.js";
import { Sequencer, type ReplayPage, type StreamItem } from "../src/sequencer.js";

const A = "instance-a";
const B = "instance-b";

function ev(seq: number, instance = A): EventEnvelope {
  const payload = { instance_id: instance, session_count: 0, uptime: "0s", started_at: "t", status: "ok" as const, heartbeat_interval_ms: 1000 };
  return { seq, instance_id: instance, topic: "instance.heartbeat", timestamp: "t", payload };
}

/** A sequencer over `history` (what the server's ring holds, per instance), recording what it
 * emits and every replay call. `evicted` makes every replay answer `replay_unavailable`. */
function harness(start: { instanceId: string; lastSeq: number }, history: EventEnvelope[], opts: { evicted?: boolean; pageSize?: number } = {}) {
  const out: StreamItem[] = [];
  const calls: Array<[number, string]> = [];
  const replay = async (after: number, instance: string): Promise<ReplayPage> => {
    calls.push([after, instance]);
    if (opts.evicted) return { unavailable: "evicted" };
    const all = history.filter((e) => e.instance_id === instance && e.seq > after);
    const events = all.slice(0, opts.pageSize ?? 1000);
    const last = events.length ? events[events.length - 1].seq : after;
    return {
      page: {
        instance_id: instance,
        events,
        next_after_seq: last,
        has_more: all.length > events.length,
        oldest_seq: 1,
        latest_seq: history.length,
      },
    };
  };
  const seq = new Sequencer(start, replay, (i) => out.push(i));
  const seqs = () => out.filter((i): i is EventEnvelope => !("kind" in i)).map((e) => e.seq);
  return { seq, out, calls, seqs };
}

describe("Sequencer", () => {
  it("delivers consecutive events and drops what it has already delivered", async () => {
    const h = harness({ instanceId: A, lastSeq: 3 }, []);
    for (const s of [2, 3, 4, 5, 5, 4, 6]) await h.seq.push(ev(s));
    assert.deepEqual(h.seqs(), [4, 5, 6]);
    assert.equal(h.calls.length, 0);
  });

  it("repairs a gap with events.replay, page by page, in order", async () => {
    const history = Array.from({ length: 20 }, (_, i) => ev(i + 1));
    const h = harness({ instanceId: A, lastSeq: 2 }, history, { pageSize: 3 });
    await h.seq.push(ev(3));
    await h.seq.push(ev(12)); // 4..11 lost
    await h.seq.push(ev(13));
    assert.deepEqual(h.seqs(), [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    assert.deepEqual(h.calls[0], [3, A]);
    assert.equal(h.seq.repairs, 1);
    assert.equal(h.seq.breaks, 0);
  });

  it("says events were lost (a break) when the replay is unavailable, and goes on", async () => {
    const h = harness({ instanceId: A, lastSeq: 5 }, [], { evicted: true });
    await h.seq.push(ev(9));
    await h.seq.push(ev(10));
    assert.deepEqual(h.out[0], {
      kind: "break",
      reason: "replay_unavailable",
      instance_id: A,
      previous_instance_id: A,
      lost_after: 5,
      resumes_after: 8,
      detail: "evicted",
    });
    assert.deepEqual(h.seqs(), [9, 10]);
  });

  it("treats a replay that skips a number as a failure, not as a repair", async () => {
    const history = [ev(1), ev(2), ev(4), ev(5)]; // 3 is missing from the ring
    const h = harness({ instanceId: A, lastSeq: 1 }, history);
    await h.seq.push(ev(5));
    const brk = h.out.find((i) => "kind" in i);
    assert.ok(brk && "kind" in brk && brk.reason === "replay_failed");
    assert.deepEqual(h.seqs(), [2, 5]);
  });

  it("follows a new instance from its first event, with a break, and ignores the old one's", async () => {
    const history = [ev(1, B), ev(2, B), ev(3, B)];
    const h = harness({ instanceId: A, lastSeq: 40 }, history);
    await h.seq.push(ev(41));
    await h.seq.push(ev(3, B)); // 1 and 2 of the new instance were missed: replayed from 0
    await h.seq.push(ev(42)); // a late event of the retired instance
    await h.seq.push(ev(4, B));
    assert.equal(h.out[1] && "kind" in h.out[1] ? h.out[1].reason : undefined, "instance_changed");
    assert.deepEqual(
      h.out.filter((i) => !("kind" in i)).map((e) => `${(e as EventEnvelope).instance_id}:${(e as EventEnvelope).seq}`),
      ["instance-a:41", "instance-b:1", "instance-b:2", "instance-b:3", "instance-b:4"],
    );
    assert.deepEqual(h.calls, [[0, B]]);
  });

  it("repairs up to its own welcome's last_seq when the welcome is ahead", async () => {
    const history = Array.from({ length: 8 }, (_, i) => ev(i + 1));
    const h = harness({ instanceId: A, lastSeq: 4 }, history);
    await h.seq.welcome(A, 7);
    assert.deepEqual(h.seqs(), [5, 6, 7, 8]);
    await h.seq.welcome(A, 3); // behind: nothing to do
    assert.equal(h.calls.length, 1);
  });
});
