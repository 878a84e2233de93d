// JSON-RPC 2.0 over one DEALER (PROTOCOL §2–§3): request ids, replies matched by id, a timeout
// on every call, typed errors. Knows nothing of what the methods mean.

import type { Dealer } from "zeromq";

import { CallError, CallTimeoutError, ClosedError } from "./errors.js";
import type { RpcError as WireRpcError } from "./generated/types.js";
import { dealerFor } from "./sockets.js";

export const DEFAULT_TIMEOUT_MS = 3000;

interface Pending {
  method: string;
  resolve: (result: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** One long-lived DEALER. Calls may run concurrently: replies come back in any order and are
 * matched by id; a reply to a call that already timed out is dropped. libzmq reconnects the
 * socket by itself after a server restart. */
export class RpcConnection {
  private readonly sock: Dealer;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  /** zeromq.js allows one send in progress at a time: sends queue up behind this. */
  private sending: Promise<unknown> = Promise.resolve();
  private closed = false;

  constructor(
    readonly endpoint: string,
    secret: string | undefined,
    readonly defaultTimeoutMs = DEFAULT_TIMEOUT_MS,
  ) {
    this.sock = dealerFor(endpoint, secret);
    void this.readReplies();
  }

  /** Calls `method` and resolves with its result; rejects with `CallError` (an error reply),
   * `CallTimeoutError` (no reply within the timeout) or `ClosedError`. */
  call(method: string, params: object = {}, timeoutMs = this.defaultTimeoutMs): Promise<unknown> {
    if (this.closed) return Promise.reject(new ClosedError(`${method}: the connection is closed`));
    const id = this.nextId++;
    const frame = JSON.stringify({ jsonrpc: "2.0", id, method, params });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new CallTimeoutError(method, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { method, resolve, reject, timer });
      this.sending = this.sending
        .then(() => this.sock.send(frame))
        .catch((e: unknown) => this.settle(id, undefined, e instanceof Error ? e : new Error(String(e))));
    });
  }

  /** Closes the socket; calls still waiting reject with `ClosedError`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.sock.close();
    for (const [id, p] of this.pending) {
      this.settle(id, undefined, new ClosedError(`${p.method}: the connection was closed`));
    }
  }

  private settle(id: number, result: unknown, error?: Error): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(result);
  }

  private async readReplies(): Promise<void> {
    try {
      for await (const frames of this.sock) {
        const body = frames[frames.length - 1];
        let reply: { id?: unknown; result?: unknown; error?: WireRpcError };
        try {
          reply = JSON.parse(body.toString("utf8"));
        } catch {
          continue; // not JSON: nothing to match it to
        }
        if (typeof reply !== "object" || reply === null || typeof reply.id !== "number") continue;
        const p = this.pending.get(reply.id);
        if (!p) continue; // a late reply to a call that timed out
        if (reply.error) this.settle(reply.id, undefined, new CallError(p.method, reply.error));
        else this.settle(reply.id, reply.result);
      }
    } catch {
      // The socket was closed under the loop: close() has rejected what was waiting.
    }
  }
}
