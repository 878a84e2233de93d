// Gap-free ordering of one instance's numbered events (PROTOCOL §8 steps 4–5): drops what was
// already seen, repairs a `seq` gap with `events.replay`, and says so when it cannot (the ring
// no longer holds the events, or the server was replaced). Pure logic: the replay call and the
// output are injected, so it is tested without sockets.

import type { EventEnvelope, EventsReplayResult } from "./generated/types.js";

/** Why a stream could not stay gap-free; what was built from it needs a fresh snapshot. */
export interface StreamBreak {
  kind: "break";
  reason: "instance_changed" | "replay_unavailable" | "replay_failed";
  /** The instance the stream follows from now on. */
  instance_id: string;
  /** The instance it followed before (differs from `instance_id` for `instance_changed`). */
  previous_instance_id: string;
  /** Events after this seq (of the previous instance) up to `resumes_after` were lost. */
  lost_after: number;
  /** The stream goes on with the events numbered above this. */
  resumes_after: number;
  detail?: string;
}

export type StreamItem = EventEnvelope | StreamBreak;

/** One page of `events.replay`, or why there is none: `unavailable` carries the error's
 * `data.reason` (`evicted`, `ahead`, `instance_changed`) or a transport failure's text. */
export type ReplayPage = { page: EventsReplayResult } | { unavailable: string; failed?: boolean };
export type ReplayFn = (afterSeq: number, instanceId: string) => Promise<ReplayPage>;

export class Sequencer {
  private instanceId: string;
  private last: number;
  /** Instances the stream moved away from: their late events are stale, not a new switch. */
  private readonly retired = new Set<string>();
  repairs = 0;
  breaks = 0;

  constructor(
    start: { instanceId: string; lastSeq: number },
    private readonly replay: ReplayFn,
    private readonly emit: (item: StreamItem) => void,
  ) {
    this.instanceId = start.instanceId;
    this.last = start.lastSeq;
  }

  get lastSeq(): number {
    return this.last;
  }

  get instance(): string {
    return this.instanceId;
  }

  /** Takes the next event as received. Calls must not overlap: await each. */
  async push(e: EventEnvelope): Promise<void> {
    if (!this.follow(e.instance_id)) return;
    if (e.seq <= this.last) return; // already delivered (by a replay, or before a welcome)
    if (e.seq > this.last + 1) await this.repair(e.seq - 1);
    if (e.seq <= this.last) return; // the replay delivered it
    this.emit(e);
    this.last = e.seq;
  }

  /** Takes this stream's own welcome arriving again (libzmq re-sends the subscriptions after a
   * reconnect): every event up to its `last_seq` should have arrived already. */
  async welcome(instanceId: string, lastSeq: number): Promise<void> {
    if (!this.follow(instanceId)) return;
    if (lastSeq > this.last) await this.repair(lastSeq);
  }

  /** False for a retired instance's event; switches (with a break) to an instance not seen. */
  private follow(instanceId: string): boolean {
    if (instanceId === this.instanceId) return true;
    if (this.retired.has(instanceId)) return false;
    this.retired.add(this.instanceId);
    const previous = this.instanceId;
    const lostAfter = this.last;
    this.instanceId = instanceId;
    this.last = 0; // a new instance numbers from 1: a first event above 1 is repaired from 0
    this.breaks++;
    this.emit({
      kind: "break",
      reason: "instance_changed",
      instance_id: instanceId,
      previous_instance_id: previous,
      lost_after: lostAfter,
      resumes_after: 0,
    });
    return true;
  }

  /** Replays the events after `last` until `upTo` is covered, delivering them in order. When
   * that is not possible, emits a break and skips to `upTo`. */
  private async repair(upTo: number): Promise<void> {
    const from = this.last;
    let failure: { reason: StreamBreak["reason"]; detail: string } | undefined;
    let after = this.last;
    for (;;) {
      const r = await this.replay(after, this.instanceId);
      if ("unavailable" in r) {
        failure = { reason: r.failed ? "replay_failed" : "replay_unavailable", detail: r.unavailable };
        break;
      }
      for (const e of r.page.events) {
        if (e.instance_id !== this.instanceId || e.seq <= this.last) continue;
        if (e.seq !== this.last + 1) {
          failure = { reason: "replay_failed", detail: `the replay skips from ${this.last} to ${e.seq}` };
          break;
        }
        this.emit(e);
        this.last = e.seq;
      }
      if (failure || !r.page.has_more || this.last >= upTo) break;
      after = r.page.next_after_seq;
    }
    if (!failure && this.last < upTo) {
      failure = { reason: "replay_unavailable", detail: `the replay ended at ${this.last}, before ${upTo}` };
    }
    if (failure) {
      this.breaks++;
      this.emit({
        kind: "break",
        reason: failure.reason,
        instance_id: this.instanceId,
        previous_instance_id: this.instanceId,
        lost_after: this.last,
        resumes_after: upTo,
        detail: failure.detail,
      });
      this.last = upTo;
    } else if (this.last > from) {
      this.repairs++;
    }
  }
}
