// The Clone pattern (PROTOCOL §8), all five steps: a live subscription to everything (the hub),
// a `state.sync` snapshot with every session's history, then the events numbered above the
// snapshot applied in order, gaps repaired by the hub's `events.replay`, and a fresh snapshot
// whenever that is not enough (events lost for good, the server replaced, the replica wrong).

import type { Client } from "./client.js";
import { CallError, CallTimeoutError, ErrorKind, ZcoordError } from "./errors.js";
import type { EventIterator } from "./events.js";
import type { MessagePayload, StateSyncResult } from "./generated/types.js";
import { Replica, ReplicaDiverged } from "./replica.js";
import type { StreamBreak } from "./sequencer.js";
import type { ZEvent } from "./topics.js";

export interface MirrorChange {
  /** `snapshot`: the replica was (re)loaded; `event`: one event was applied. */
  kind: "snapshot" | "event";
  event?: ZEvent;
  /** Why a snapshot was taken: `start`, or what forced a resync. */
  reason?: string;
}

export interface MirrorOptions {
  /** Called after each change, with the replica already changed. */
  onChange?: (change: MirrorChange, replica: Replica) => void;
  /** How long `start` may keep retrying `state.sync` (default 10000 ms); later resyncs retry
   * until the mirror is closed. */
  startTimeoutMs?: number;
}

export class Mirror {
  readonly replica = new Replica();
  /** The seq the replica reflects, within `replica.instanceId`. */
  seq = 0;
  /** How many times the replica had to be reloaded after the start, and why (newest last). */
  readonly resyncs: string[] = [];
  /** Set when the mirror stopped following because a resync failed for good. */
  error: unknown;
  private closed = false;
  private readonly waiters = new Set<() => void>();
  /** Settles once the first snapshot is loaded, or could not be. */
  private readonly ready: Promise<void>;
  private readonly done: Promise<void>;

  private constructor(
    private readonly client: Client,
    private readonly events: EventIterator<ZEvent | StreamBreak>,
    private readonly opts: MirrorOptions,
  ) {
    let loaded!: (err?: unknown) => void;
    this.ready = new Promise((resolve, reject) => (loaded = (err) => (err === undefined ? resolve() : reject(err))));
    this.done = this.run(loaded);
  }

  /** Subscribes (live), takes the snapshot, and resolves once the replica is loaded; it then
   * follows the events until `close()`. */
  static async start(client: Client, opts: MirrorOptions = {}): Promise<Mirror> {
    const events = await client.events({ breaks: true });
    const mirror = new Mirror(client, events, opts);
    try {
      await mirror.ready;
    } catch (e) {
      await mirror.close();
      throw e;
    }
    return mirror;
  }

  /** Resolves when `predicate(replica)` holds, checked now and after every change; rejects with
   * a `ZcoordError` after `timeoutMs`. */
  waitFor(predicate: (r: Replica) => boolean, timeoutMs: number): Promise<void> {
    if (predicate(this.replica)) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const check = () => {
        if (!predicate(this.replica)) return;
        cleanup();
        resolve();
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new ZcoordError(`mirror: condition not met within ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    this.events.close();
    await this.done.catch(() => undefined);
  }

  private changed(change: MirrorChange): void {
    this.opts.onChange?.(change, this.replica);
    for (const w of [...this.waiters]) w();
  }

  private async run(loaded: (err?: unknown) => void): Promise<void> {
    try {
      await this.sync("start", this.opts.startTimeoutMs ?? 10_000);
    } catch (e) {
      loaded(e);
      return;
    }
    loaded();
    this.changed({ kind: "snapshot", reason: "start" });
    try {
      await this.follow();
    } catch (e) {
      this.error = e;
      this.events.close();
    }
  }

  private async follow(): Promise<void> {
    for await (const item of this.events) {
      let resync: string | undefined;
      if ("kind" in item) {
        resync = `${item.reason}${item.detail ? `: ${item.detail}` : ""}`;
      } else if (item.instance_id !== this.replica.instanceId) {
        // The snapshot came from another instance than these events (a failover between them).
        resync = `instance ${this.replica.instanceId} -> ${item.instance_id}`;
      } else if (item.seq > this.seq) {
        try {
          this.replica.apply(item);
          this.seq = item.seq;
          this.changed({ kind: "event", event: item });
        } catch (e) {
          if (!(e instanceof ReplicaDiverged)) throw e;
          resync = e.message;
        }
      }
      if (resync !== undefined && !this.closed) {
        this.resyncs.push(resync);
        await this.sync(resync, Infinity);
        this.changed({ kind: "snapshot", reason: resync });
      }
    }
  }

  /** `state.sync` and every session's history, retried with a short backoff while the server
   * is shutting down, failing over or not answering, for at most `timeoutMs`. */
  private async sync(reason: string, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let delay = 50;
    for (;;) {
      try {
        const snap: StateSyncResult = await this.client.stateSync();
        const histories = new Map<string, MessagePayload[]>();
        for (const s of snap.sessions) {
          try {
            histories.set(s.id, await this.client.messageHistory(s.id));
          } catch (e) {
            // Deleted since the snapshot: its session.deleted follows.
            if (!(e instanceof CallError && e.kind === ErrorKind.SessionNotFound)) throw e;
          }
        }
        this.replica.load(snap, histories);
        this.seq = snap.seq;
        return;
      } catch (e) {
        const retriable =
          e instanceof CallTimeoutError ||
          (e instanceof CallError && (e.kind === ErrorKind.ShuttingDown || e.kind === ErrorKind.ServerBusy));
        if (!retriable || this.closed || Date.now() + delay > deadline) {
          throw e instanceof ZcoordError ? e : new ZcoordError(`mirror: sync (${reason}) failed: ${String(e)}`);
        }
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, 1000);
      }
    }
  }
}
