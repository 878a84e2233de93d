// The event hub: one live SUB subscribed to everything (a gap in `seq` is only visible to a
// subscriber to everything, PROTOCOL §8), read by one loop that orders events through the
// Sequencer (repairing gaps with `events.replay`), and fanned out to any number of iterators,
// each filtering by key prefix. Owns the SUB; borrows the RPC connection for replays.

import type { Subscriber } from "zeromq";

import { CallError, CallTimeoutError, ErrorKind, EventsLostError } from "./errors.js";
import type { EventEnvelope, EventsReplayResult, WelcomeEnvelope } from "./generated/types.js";
import type { RpcConnection } from "./rpc.js";
import { Sequencer, type ReplayPage, type StreamBreak, type StreamItem } from "./sequencer.js";
import { matches, type ZEvent } from "./topics.js";
import { isOwnWelcome, isWelcome, openLiveSubscriber, parseEnvelope, welcomeLastSeq } from "./welcome.js";

export interface StreamOptions {
  /** Only events whose key starts with one of these (PROTOCOL §6); default: all. */
  prefixes?: readonly string[];
  /** Most bytes of events (as JSON) this iterator holds for a reader that does not keep up;
   * past it the iterator ends with `EventsLostError` (reason `reader_behind`) rather than grow.
   * Default 64 MiB. */
  maxBufferedBytes?: number;
}

/** The default bound of one iterator's buffer. */
export const DEFAULT_MAX_BUFFERED_BYTES = 64 * 1024 * 1024;

/** An async iterator over the hub's events from the moment it was made, in `seq` order, gap-free
 * within an instance. It buffers what its reader has not taken yet: end it (`return()`, a
 * `break` out of `for await`, or `close()`) when done. */
export class EventIterator<T> implements AsyncIterableIterator<T> {
  private readonly queue: { value: T; bytes: number }[] = [];
  private queuedBytes = 0;
  private waiter: ((r: IteratorResult<T>) => void) | undefined;
  private done = false;
  private lost: EventsLostError | undefined;

  constructor(
    private readonly accept: (item: StreamItem) => T | undefined,
    private readonly detach: (it: EventIterator<T>) => void,
    private readonly maxBufferedBytes: number = DEFAULT_MAX_BUFFERED_BYTES,
  ) {}

  /** @internal the hub hands each item, and its size as JSON, to every iterator. */
  offer(item: StreamItem, bytes: number): void {
    if (this.done) return;
    const value = this.accept(item);
    if (value === undefined) return;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value, done: false });
      return;
    }
    if (this.queuedBytes + bytes > this.maxBufferedBytes) {
      // Counted before it is admitted: a reader that stopped reading costs its bound, no more.
      this.lost = new EventsLostError(
        `this reader fell more than ${this.maxBufferedBytes} bytes behind; its buffer was dropped`,
        "reader_behind",
      );
      this.queue.length = 0;
      this.queuedBytes = 0;
      this.end();
      this.detach(this);
      return;
    }
    this.queue.push({ value, bytes });
    this.queuedBytes += bytes;
  }

  private take(): T | undefined {
    const head = this.queue.shift();
    if (!head) return undefined;
    this.queuedBytes -= head.bytes;
    return head.value;
  }

  /** @internal the hub ends every iterator when it closes. */
  end(): void {
    this.done = true;
    if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      w({ value: undefined, done: true });
    }
  }

  /** Items waiting to be read. */
  get buffered(): number {
    return this.queue.length;
  }

  /** Bytes (as JSON) of the items waiting to be read. */
  get bufferedBytes(): number {
    return this.queuedBytes;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.queue.length > 0) return Promise.resolve({ value: this.take() as T, done: false });
    if (this.lost) return Promise.reject(this.lost);
    if (this.done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** The next item, or undefined when none comes within `timeoutMs` (or the stream ended). */
  async nextWithin(timeoutMs: number): Promise<T | undefined> {
    if (this.queue.length > 0) return this.take();
    if (this.lost) throw this.lost;
    if (this.done) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => {
        this.waiter = undefined;
        resolve(undefined);
      }, timeoutMs);
    });
    const r = await Promise.race([this.next(), timedOut]);
    clearTimeout(timer);
    return r && !r.done ? r.value : undefined;
  }

  return(): Promise<IteratorResult<T>> {
    this.close();
    return Promise.resolve({ value: undefined, done: true });
  }

  close(): void {
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.end();
    this.detach(this);
  }

  [Symbol.asyncIterator](): this {
    return this;
  }
}

export interface HubOptions {
  secret?: string;
  /** How long to wait for the SUB's welcome, retries included. */
  liveTimeoutMs: number;
  /** The timeout of each `events.replay` call. */
  callTimeoutMs: number;
}

export class EventHub {
  private readonly iterators = new Set<EventIterator<unknown>>();
  private readonly sequencer: Sequencer;
  private closed = false;
  /** Resolves once the read loop has stopped. */
  readonly finished: Promise<void>;

  private constructor(
    private readonly socket: Subscriber,
    private readonly token: string,
    welcome: WelcomeEnvelope,
    private readonly rpc: RpcConnection,
    private readonly callTimeoutMs: number,
  ) {
    this.sequencer = new Sequencer(
      { instanceId: welcome.instance_id, lastSeq: welcomeLastSeq(welcome) },
      (after, instance) => this.replayPage(after, instance),
      (item) => this.dispatch(item),
    );
    this.liveWelcome = welcome;
    this.finished = this.readLoop();
  }

  /** The welcome the hub's subscription went live with. */
  readonly liveWelcome: WelcomeEnvelope;

  /** Subscribes to everything and waits until the subscription is live. */
  static async open(rpc: RpcConnection, pubEndpoint: string, opts: HubOptions): Promise<EventHub> {
    const live = await openLiveSubscriber(pubEndpoint, [""], { secret: opts.secret, timeoutMs: opts.liveTimeoutMs });
    return new EventHub(live.socket, live.token, live.welcome, rpc, opts.callTimeoutMs);
  }

  /** The instance the hub follows now, and the seq of the last event it delivered. */
  get position(): { instanceId: string; lastSeq: number } {
    return { instanceId: this.sequencer.instance, lastSeq: this.sequencer.lastSeq };
  }

  /** How many gaps were repaired by `events.replay`, and how many could not be. */
  get stats(): { repairs: number; breaks: number } {
    return { repairs: this.sequencer.repairs, breaks: this.sequencer.breaks };
  }

  /** Events from now on (typed by topic). */
  stream(opts?: StreamOptions): EventIterator<ZEvent>;
  /** Events from now on, and a `StreamBreak` where events were lost for good. */
  stream(opts: StreamOptions & { breaks: true }): EventIterator<ZEvent | StreamBreak>;
  stream(opts: StreamOptions & { breaks?: boolean } = {}): EventIterator<ZEvent> | EventIterator<ZEvent | StreamBreak> {
    const it = new EventIterator<ZEvent | StreamBreak>(
      (item) => {
        if ("kind" in item) return opts.breaks ? item : undefined;
        return matches(item, opts.prefixes) ? (item as ZEvent) : undefined;
      },
      (x) => this.iterators.delete(x as EventIterator<unknown>),
      opts.maxBufferedBytes ?? DEFAULT_MAX_BUFFERED_BYTES,
    );
    if (this.closed) it.end();
    else this.iterators.add(it as EventIterator<unknown>);
    return it;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.socket.close();
    for (const it of this.iterators) it.end();
    this.iterators.clear();
  }

  private dispatch(item: StreamItem): void {
    if (this.iterators.size === 0) return;
    const bytes = JSON.stringify(item).length;
    for (const it of this.iterators) it.offer(item, bytes);
  }

  private async replayPage(after: number, instanceId: string): Promise<ReplayPage> {
    try {
      const page = (await this.rpc.call(
        "events.replay",
        { after_seq: after, instance_id: instanceId },
        this.callTimeoutMs,
      )) as EventsReplayResult;
      return { page };
    } catch (e) {
      if (e instanceof CallError && e.kind === ErrorKind.ReplayUnavailable) {
        return { unavailable: String(e.data?.reason ?? "replay_unavailable") };
      }
      if (e instanceof CallError || e instanceof CallTimeoutError) return { unavailable: e.message, failed: true };
      return { unavailable: String(e), failed: true };
    }
  }

  private async readLoop(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        const env = parseEnvelope(frames);
        if (!env) continue;
        if (isWelcome(env)) {
          // Others' welcomes reach a subscriber to everything too; ours again after a reconnect.
          if (isOwnWelcome(env, this.token)) await this.sequencer.welcome(env.instance_id, welcomeLastSeq(env));
          continue;
        }
        if (typeof env.seq !== "number" || typeof env.instance_id !== "string") continue;
        await this.sequencer.push(env as EventEnvelope);
      }
    } catch {
      // Closed under the loop.
    } finally {
      this.close();
    }
  }
}
