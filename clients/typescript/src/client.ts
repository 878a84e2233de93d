// The client: discovery, one RPC connection, the typed methods of PROTOCOL §5, and (opened on
// first use) one event hub shared by every event stream, turn, mirror and tool runner.

import { resolveTarget, type Target, type TargetOptions } from "./discovery.js";
import { EventHub, type EventIterator, type StreamOptions } from "./events.js";
import type * as T from "./generated/types.js";
import { PROTOCOL_VERSIONS, type MethodName, type ParamsOf, type ResultOf } from "./methods.js";
import { DEFAULT_TIMEOUT_MS, RpcConnection } from "./rpc.js";
import type { StreamBreak } from "./sequencer.js";
import type { ZEvent } from "./topics.js";
import { Turn } from "./turn.js";
import { openLiveSubscriber, type LiveSubscriber } from "./welcome.js";

export interface ConnectOptions extends TargetOptions {
  /** The default timeout of each call, in ms (default 3000). */
  timeoutMs?: number;
  /** How long to wait for a subscription's welcome, retries included (default 10000). */
  liveTimeoutMs?: number;
  /** Check with `instance.ping` that the server answers before resolving (default true). */
  ping?: boolean;
}

export interface CallOptions {
  timeoutMs?: number;
}

export interface SendOptions extends CallOptions {
  /** How long a turn may go without an event of its own before reading it fails (default
   * 60000; a turn waiting for a person's approval sends nothing meanwhile). */
  idleTimeoutMs?: number;
}

export class Client {
  readonly rpc: RpcConnection;
  private hubPromise: Promise<EventHub> | undefined;
  private readonly timeoutMs: number;
  private readonly liveTimeoutMs: number;

  private constructor(
    readonly target: Target,
    opts: ConnectOptions,
  ) {
    this.timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this.liveTimeoutMs = opts.liveTimeoutMs ?? 10_000;
    this.rpc = new RpcConnection(target.rpc, target.secret, this.timeoutMs);
  }

  /** Finds the server (explicit endpoints, `$ZCOORD_RPC/$ZCOORD_PUB`, else the discovery file
   * of the data directory: see `resolveDataDir`), connects, and checks that it answers.
   * Throws `DiscoveryError` when there is no server to find, `CallTimeoutError` when it does
   * not answer. */
  static async connect(opts: ConnectOptions = {}): Promise<Client> {
    const client = new Client(resolveTarget(opts), opts);
    if (opts.ping !== false) {
      try {
        await client.ping();
      } catch (e) {
        await client.close();
        throw e;
      }
    }
    return client;
  }

  /** Calls any method of the table, typed. */
  call<M extends MethodName>(method: M, params: ParamsOf<M>, opts: CallOptions = {}): Promise<ResultOf<M>> {
    return this.rpc.call(method, params, opts.timeoutMs ?? this.timeoutMs) as Promise<ResultOf<M>>;
  }

  // ---- every method of PROTOCOL §5 ----

  ping(opts?: CallOptions): Promise<T.InstancePingResult> {
    return this.call("instance.ping", {}, opts);
  }
  info(opts?: CallOptions): Promise<T.InstanceInfoResult> {
    return this.call("instance.info", {}, opts);
  }
  stateSync(params: T.StateSyncParams = {}, opts?: CallOptions): Promise<T.StateSyncResult> {
    return this.call("state.sync", params, opts);
  }
  sessionList(opts?: CallOptions): Promise<T.SessionListResult> {
    return this.call("session.list", {}, opts);
  }
  sessionGet(params: T.SessionGetParams, opts?: CallOptions): Promise<T.SessionGetResult> {
    return this.call("session.get", params, opts);
  }
  sessionCreate(params: T.SessionCreateParams = {}, opts?: CallOptions): Promise<T.SessionCreateResult> {
    return this.call("session.create", params, opts);
  }
  sessionDelete(params: T.SessionDeleteParams, opts?: CallOptions): Promise<T.SessionDeleteResult> {
    return this.call("session.delete", params, opts);
  }
  sessionActivate(params: T.SessionActivateParams, opts?: CallOptions): Promise<T.SessionActivateResult> {
    return this.call("session.activate", params, opts);
  }
  sessionConfigure(params: T.SessionConfigureParams, opts?: CallOptions): Promise<T.SessionConfigureResult> {
    return this.call("session.configure", params, opts);
  }
  sessionInterrupt(params: T.SessionInterruptParams, opts?: CallOptions): Promise<T.SessionInterruptResult> {
    return this.call("session.interrupt", params, opts);
  }
  modelList(opts?: CallOptions): Promise<T.ModelListResult> {
    return this.call("model.list", {}, opts);
  }
  messageSend(params: T.MessageSendParams, opts?: CallOptions): Promise<T.MessageSendResult> {
    return this.call("message.send", params, opts);
  }
  messageList(params: T.MessageListParams, opts?: CallOptions): Promise<T.MessageListResult> {
    return this.call("message.list", params, opts);
  }
  messageGet(params: T.MessageGetParams, opts?: CallOptions): Promise<T.MessageGetResult> {
    return this.call("message.get", params, opts);
  }
  hitlList(params: T.HitlListParams = {}, opts?: CallOptions): Promise<T.HitlListResult> {
    return this.call("hitl.list", params, opts);
  }
  hitlRespond(params: T.HitlRespondParams, opts?: CallOptions): Promise<T.HitlRespondResult> {
    return this.call("hitl.respond", params, opts);
  }
  /** `client.hello`; `protocol_versions` defaults to the versions this client speaks. */
  clientHello(
    params: Omit<T.ClientHelloParams, "protocol_versions"> & { protocol_versions?: number[] },
    opts?: CallOptions,
  ): Promise<T.ClientHelloResult> {
    return this.call("client.hello", { ...params, protocol_versions: params.protocol_versions ?? [...PROTOCOL_VERSIONS] }, opts);
  }
  clientList(opts?: CallOptions): Promise<T.ClientListResult> {
    return this.call("client.list", {}, opts);
  }
  clientGoodbye(opts?: CallOptions): Promise<T.ClientGoodbyeResult> {
    return this.call("client.goodbye", {}, opts);
  }
  toolClaim(params: T.ToolClaimParams, opts?: CallOptions): Promise<T.ToolClaimResult> {
    return this.call("tool.claim", params, opts);
  }
  toolResult(params: T.ToolResultParams, opts?: CallOptions): Promise<T.ToolResultResult> {
    return this.call("tool.result", params, opts);
  }
  eventsReplay(params: T.EventsReplayParams, opts?: CallOptions): Promise<T.EventsReplayResult> {
    return this.call("events.replay", params, opts);
  }

  /** A session's whole history, oldest first: the newest page, then pages backwards while
   * `has_more` (PROTOCOL §5, `message.list`). */
  async messageHistory(sessionId: string, opts?: CallOptions): Promise<T.MessagePayload[]> {
    const all: T.MessagePayload[] = [];
    let before: string | undefined;
    for (;;) {
      const page = await this.messageList({ session_id: sessionId, limit: 1000, ...(before ? { before } : {}) }, opts);
      all.unshift(...page.messages);
      if (!page.has_more || page.messages.length === 0) return all;
      before = page.messages[0].id;
    }
  }

  // ---- events ----

  /** The shared event hub, opened (and its subscription made live) on first use. */
  hub(): Promise<EventHub> {
    if (!this.hubPromise) {
      this.hubPromise = EventHub.open(this.rpc, this.target.pub, {
        secret: this.target.secret,
        liveTimeoutMs: this.liveTimeoutMs,
        callTimeoutMs: this.timeoutMs,
      });
      // A failed start is not cached: the next use tries again.
      this.hubPromise.catch(() => (this.hubPromise = undefined));
    }
    return this.hubPromise;
  }

  /** Every event from now on, in `seq` order with gaps repaired, filtered by key prefixes. */
  async events(opts?: StreamOptions): Promise<EventIterator<ZEvent>>;
  /** As above, with a `StreamBreak` item where events were lost for good. */
  async events(opts: StreamOptions & { breaks: true }): Promise<EventIterator<ZEvent | StreamBreak>>;
  async events(
    opts: StreamOptions & { breaks?: boolean } = {},
  ): Promise<EventIterator<ZEvent> | EventIterator<ZEvent | StreamBreak>> {
    const hub = await this.hub();
    return opts.breaks ? hub.stream({ ...opts, breaks: true }) : hub.stream(opts);
  }

  /** A SUB of its own on exactly these prefixes, live (welcomed) when this resolves. No gap
   * repair: read `socket` yourself, and close it when done. */
  subscribe(prefixes: readonly string[], opts: { timeoutMs?: number } = {}): Promise<LiveSubscriber> {
    return openLiveSubscriber(this.target.pub, prefixes, {
      secret: this.target.secret,
      timeoutMs: opts.timeoutMs ?? this.liveTimeoutMs,
    });
  }

  /** Sends a message and follows its turn: the stream is live before the send, so the turn is
   * seen from its first event. `content` alone sends to a new session. */
  async send(params: T.MessageSendParams | string, opts: SendOptions = {}): Promise<Turn> {
    const p = typeof params === "string" ? { content: params } : params;
    const events = await this.events({ breaks: true });
    try {
      const sent = await this.messageSend(p, opts);
      return new Turn(sent, events, opts.idleTimeoutMs ?? 60_000);
    } catch (e) {
      events.close();
      throw e;
    }
  }

  /** Closes the event hub and the RPC connection; waiting calls reject with `ClosedError`. */
  async close(): Promise<void> {
    const hub = this.hubPromise;
    this.hubPromise = undefined;
    if (hub) {
      try {
        (await hub).close();
      } catch {
        // It never opened.
      }
    }
    this.rpc.close();
  }
}
