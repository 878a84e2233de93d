// One turn as a stream (PROTOCOL §7.1–§7.2): the events of one `turn_id`, from the first token
// to its `llm.end`, read from an event iterator opened before the `message.send` so that nothing
// of the turn is missed.

import { EventsLostError, ZcoordError } from "./errors.js";
import type { EventIterator } from "./events.js";
import type { LlmEndPayload, MessageSendResult } from "./generated/types.js";
import type { StreamBreak } from "./sequencer.js";
import type { ZEvent } from "./topics.js";

export interface TurnOutcome {
  /** The turn's `llm.end`. */
  end: LlmEndPayload;
  /** The concatenated tokens: the assistant's reply. */
  text: string;
}

/** The events of one turn, in order, ending with its `llm.end` (PROTOCOL §7 guarantees exactly
 * one). Iterate it (`for await`), or use `tokens()` or `result()`; it can be read once. */
export class Turn implements AsyncIterable<ZEvent> {
  readonly session_id: string;
  readonly turn_id: string;
  readonly message_id: string;
  /** True when the send was queued behind a running turn (§7.6): its events come later. */
  readonly queued: boolean;
  private text = "";
  private end: LlmEndPayload | undefined;
  private consumed = false;

  constructor(
    readonly sent: MessageSendResult,
    private readonly events: EventIterator<ZEvent | StreamBreak>,
    private readonly timeoutMs: number,
  ) {
    this.session_id = sent.session_id;
    this.turn_id = sent.turn_id;
    this.message_id = sent.message_id;
    this.queued = sent.queued === true;
  }

  /** The turn's events up to and including its `llm.end`. Throws `EventsLostError` if events of
   * the turn were lost for good, and `ZcoordError` if no event of the turn arrives for
   * `timeoutMs` (a turn waiting for a person's approval sends none meanwhile). */
  async *[Symbol.asyncIterator](): AsyncIterator<ZEvent> {
    if (this.consumed) throw new ZcoordError("a Turn can be read once");
    this.consumed = true;
    try {
      let deadline = Date.now() + this.timeoutMs;
      for (;;) {
        const left = deadline - Date.now();
        const item = left > 0 ? await this.events.nextWithin(left) : undefined;
        if (item === undefined) {
          throw new ZcoordError(`turn ${this.turn_id}: no event for ${this.timeoutMs} ms`);
        }
        if ("kind" in item) {
          throw new EventsLostError(`turn ${this.turn_id}: events were lost (${item.reason})`, item.reason);
        }
        if ((item.payload as { turn_id?: unknown }).turn_id !== this.turn_id) continue;
        deadline = Date.now() + this.timeoutMs;
        if (item.topic === "llm.token") this.text += item.payload.token;
        yield item;
        if (item.topic === "llm.end") {
          this.end = item.payload;
          return;
        }
      }
    } finally {
      this.events.close();
    }
  }

  /** The reply's tokens as they stream. */
  async *tokens(): AsyncGenerator<string> {
    for await (const e of this) if (e.topic === "llm.token") yield e.payload.token;
  }

  /** Waits for the end of the turn (reading whatever is left of it). */
  async result(): Promise<TurnOutcome> {
    if (!this.consumed) for await (const _ of this);
    if (!this.end) throw new ZcoordError(`turn ${this.turn_id} was not read to its end`);
    return { end: this.end, text: this.text };
  }

  /** Stops following the turn (the turn itself goes on; see `session.interrupt`). */
  close(): void {
    this.events.close();
  }
}
