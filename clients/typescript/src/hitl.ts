// Human-in-the-loop (PROTOCOL §5 `hitl.*`, §7 "Tools and approvals"): a desk that hands every
// pending request (those waiting at start, from `hitl.list`, and each new `hitl.pending`) to a
// handler once, and sends its answer with `hitl.respond`. The first answer wins: a request
// someone else answered first is reported, not thrown.

import type { Client } from "./client.js";
import { CallError, ErrorKind } from "./errors.js";
import type { EventIterator } from "./events.js";
import type { HitlRequest, HitlRespondParams } from "./generated/types.js";
import type { ZEvent } from "./topics.js";

/** What a handler answers: a decision for a `tool_approval`, an answer for a `question`; or
 * undefined to leave the request to someone else. */
export type HitlAnswer =
  | { decision: "approve" | "approve_session" | "reject"; reason?: string }
  | { answer: string };

export type HitlHandler = (request: HitlRequest) => Promise<HitlAnswer | undefined> | HitlAnswer | undefined;

export interface HitlOutcome {
  request: HitlRequest;
  /** `answered`: our answer won; `taken`: someone answered (or it expired) first; `skipped`:
   * the handler left it; `failed`: the handler threw or the answer could not be sent (`error`). */
  outcome: "answered" | "taken" | "skipped" | "failed";
  /** The request as resolved, when known. */
  resolved?: HitlRequest;
  error?: unknown;
}

export interface ApprovalDeskOptions {
  /** Only this session's requests. */
  sessionId?: string;
  /** Recorded as `resolved_by` (a client that said `client.hello` is recorded by its id). */
  clientId?: string;
  /** Called after each request is dealt with. */
  onOutcome?: (o: HitlOutcome) => void;
}

export class ApprovalDesk {
  private readonly seen = new Set<string>();
  readonly done: Promise<void>;

  private constructor(
    private readonly client: Client,
    private readonly events: EventIterator<ZEvent>,
    private readonly handler: HitlHandler,
    private readonly opts: ApprovalDeskOptions,
    waiting: HitlRequest[],
  ) {
    this.done = this.run(waiting);
  }

  /** Starts answering: the event stream is live before `hitl.list` is read, so no request falls
   * between the two. */
  static async start(client: Client, handler: HitlHandler, opts: ApprovalDeskOptions = {}): Promise<ApprovalDesk> {
    const prefix = opts.sessionId ? `hitl.pending/${opts.sessionId}` : "hitl.pending";
    const events = await client.events({ prefixes: [prefix] });
    try {
      const { requests } = await client.hitlList(opts.sessionId ? { session_id: opts.sessionId } : {});
      return new ApprovalDesk(client, events, handler, opts, requests);
    } catch (e) {
      events.close();
      throw e;
    }
  }

  /** Stops taking requests (one being answered is finished). */
  async close(): Promise<void> {
    this.events.close();
    await this.done;
  }

  private async run(waiting: HitlRequest[]): Promise<void> {
    for (const r of waiting) await this.handle(r);
    for await (const e of this.events) {
      if (e.topic === "hitl.pending") await this.handle(e.payload);
    }
  }

  private async handle(request: HitlRequest): Promise<void> {
    if (this.seen.has(request.id)) return;
    this.seen.add(request.id);
    let outcome: HitlOutcome;
    try {
      const answer = await this.handler(request);
      if (!answer) {
        outcome = { request, outcome: "skipped" };
      } else {
        const params: HitlRespondParams = { id: request.id, ...answer };
        if (this.opts.clientId) params.client_id = this.opts.clientId;
        const r = await this.client.hitlRespond(params);
        outcome = { request, outcome: "answered", resolved: r.request };
      }
    } catch (e) {
      if (e instanceof CallError && e.kind === ErrorKind.HitlResolved) {
        outcome = { request, outcome: "taken", resolved: e.data?.request as HitlRequest | undefined };
      } else if (e instanceof CallError && e.kind === ErrorKind.HitlNotFound) {
        outcome = { request, outcome: "taken" };
      } else {
        outcome = { request, outcome: "failed", error: e };
      }
    }
    this.opts.onOutcome?.(outcome);
  }
}
