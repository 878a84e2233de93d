// Client-run tools (PROTOCOL §5 "Clients as peers", §7.7): say `client.hello` with the tools,
// stay present, claim each call of them (after its approval when a person must approve first),
// run it, send `tool.result`, and say `client.goodbye` at the end. Says hello again to every new
// instance (presence is not stored across restarts).

import type { Client } from "./client.js";
import { CallError, ErrorKind } from "./errors.js";
import type { EventIterator } from "./events.js";
import type { ClientHelloResult, ToolClaimResult, ToolDeclaration } from "./generated/types.js";
import type { StreamBreak } from "./sequencer.js";
import type { ZEvent } from "./topics.js";

/** What a tool's implementation returns: its text (any other JSON value is sent as its JSON
 * text), or an explicit error result the model is told of. */
export type ToolOutput = string | { result: unknown; is_error?: boolean };

export interface ClientTool extends ToolDeclaration {
  /** Runs one call. `args` is the call's arguments parsed from JSON (`{}` when empty); a throw
   * becomes an error result. */
  run: (args: unknown, call: ToolClaimResult) => Promise<ToolOutput> | ToolOutput;
}

export interface ToolRunnerOptions {
  /** The client's own stable id (one per installation or window, kept across reconnects). */
  clientId: string;
  /** Shown to people. */
  name: string;
  version?: string;
  tools: ClientTool[];
  /** How often to ping to stay present; default a third of the server's client timeout. */
  keepAliveMs?: number;
  /** Called after each call this runner dealt with. */
  onCall?: (c: ToolCallOutcome) => void;
}

export interface ToolCallOutcome {
  call_id: string;
  turn_id: string;
  tool_name: string;
  /** `ran`: our result was sent; `lost`: another client claimed it first; `gone`: it ended
   * before we could claim (rejected, timed out, turn ended); `failed`: see `error`. */
  outcome: "ran" | "lost" | "gone" | "failed";
  result?: ToolOutput;
  error?: unknown;
}

export class ToolRunner {
  private hello!: ClientHelloResult;
  private keepAlive: NodeJS.Timeout | undefined;
  private readonly names: Set<string>;
  /** Calls that wait for a person's approval before they may be claimed: call_id -> turn_id. */
  private readonly awaiting = new Map<string, string>();
  private stopped = false;
  /** Calls being run: they run concurrently, and `stop()` waits for them. */
  private readonly running = new Set<Promise<void>>();
  readonly done: Promise<void>;

  private constructor(
    private readonly client: Client,
    private readonly events: EventIterator<ZEvent | StreamBreak>,
    private readonly opts: ToolRunnerOptions,
    hello: ClientHelloResult,
  ) {
    this.names = new Set(opts.tools.map((t) => t.name));
    this.setHello(hello);
    this.done = this.run();
  }

  /** Offers the tools: the event stream is live before the hello, so no call of them is missed.
   * Rejects with the `client.hello` error (e.g. `invalid_tool`, `version_mismatch`). */
  static async start(client: Client, opts: ToolRunnerOptions): Promise<ToolRunner> {
    const events = await client.events({ prefixes: ["tool.start/", "hitl.resolved/"], breaks: true });
    try {
      const hello = await client.clientHello(ToolRunner.helloParams(opts));
      return new ToolRunner(client, events, opts, hello);
    } catch (e) {
      events.close();
      throw e;
    }
  }

  /** What the server offered in answer to the hello (`capabilities`, `instance_id`). */
  get welcome(): ClientHelloResult {
    return this.hello;
  }

  /** Says `client.goodbye` (calls this client had claimed end as errors) and stops. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.keepAlive);
    this.events.close();
    await this.done;
    await Promise.allSettled([...this.running]);
    try {
      await this.client.clientGoodbye();
    } catch {
      // The server is gone: it forgets clients by itself.
    }
  }

  private static helloParams(opts: ToolRunnerOptions) {
    return {
      client_id: opts.clientId,
      name: opts.name,
      ...(opts.version ? { version: opts.version } : {}),
      tools: opts.tools.map(({ name, description, parameters }) => ({ name, parameters, ...(description ? { description } : {}) })),
    };
  }

  private setHello(hello: ClientHelloResult): void {
    this.hello = hello;
    clearInterval(this.keepAlive);
    const every = this.opts.keepAliveMs ?? Math.max(500, (hello.capabilities.client_timeout_secs * 1000) / 3);
    // Any request keeps a client present; a ping is the cheapest.
    this.keepAlive = setInterval(() => void this.client.ping().catch(() => undefined), every);
  }

  private async run(): Promise<void> {
    for await (const item of this.events) {
      if ("kind" in item) {
        // A new instance knows no clients: say hello again. Calls whose events were lost are
        // not claimed; the server ends them when nobody claims in time.
        if (item.reason === "instance_changed") await this.rehello();
        continue;
      }
      if (item.topic === "tool.start") {
        const p = item.payload;
        if (p.executor !== "client" || !this.names.has(p.tool_name)) continue;
        if (p.awaiting_approval) this.awaiting.set(p.call_id, p.turn_id);
        else this.spawn(p.call_id, p.turn_id, p.tool_name);
      } else if (item.topic === "hitl.resolved") {
        const callId = item.payload.payload.call_id;
        const turnId = this.awaiting.get(callId);
        if (turnId === undefined || turnId !== item.payload.turn_id) continue;
        this.awaiting.delete(callId);
        const toolName = item.payload.payload.tool_name ?? "";
        if (item.payload.status === "approved") this.spawn(callId, turnId, toolName);
        else this.opts.onCall?.({ call_id: callId, turn_id: turnId, tool_name: toolName, outcome: "gone" });
      }
    }
  }

  private async rehello(): Promise<void> {
    try {
      this.setHello(await this.client.clientHello(ToolRunner.helloParams(this.opts)));
    } catch {
      // The new instance is not answering yet: the keep-alive's pings fail meanwhile, and the
      // next break (or the caller) tries again.
    }
  }

  private spawn(callId: string, turnId: string, toolName: string): void {
    const p = this.runCall(callId, turnId, toolName).finally(() => this.running.delete(p));
    this.running.add(p);
  }

  private async runCall(callId: string, turnId: string, toolName: string): Promise<void> {
    const base = { call_id: callId, turn_id: turnId, tool_name: toolName };
    let claim: ToolClaimResult;
    try {
      claim = await this.client.toolClaim({ call_id: callId, turn_id: turnId });
    } catch (e) {
      if (e instanceof CallError && e.kind === ErrorKind.ToolClaimed) this.opts.onCall?.({ ...base, outcome: "lost" });
      else if (e instanceof CallError && e.kind === ErrorKind.ToolCallNotFound) this.opts.onCall?.({ ...base, outcome: "gone" });
      else this.opts.onCall?.({ ...base, outcome: "failed", error: e });
      return;
    }
    const tool = this.opts.tools.find((t) => t.name === claim.tool_name);
    let output: ToolOutput;
    try {
      if (!tool) throw new Error(`no tool named ${claim.tool_name}`);
      output = await tool.run(claim.params ? JSON.parse(claim.params) : {}, claim);
    } catch (e) {
      output = { result: `${claim.tool_name} failed: ${e instanceof Error ? e.message : String(e)}`, is_error: true };
    }
    const sent = typeof output === "string" ? { result: output, is_error: false } : { result: output.result, is_error: output.is_error ?? false };
    try {
      await this.client.toolResult({ call_id: callId, turn_id: turnId, ...sent });
      this.opts.onCall?.({ ...base, tool_name: claim.tool_name, outcome: "ran", result: output });
    } catch (e) {
      const gone = e instanceof CallError && (e.kind === ErrorKind.ToolCallNotFound || e.kind === ErrorKind.NotClaimant);
      this.opts.onCall?.({ ...base, outcome: gone ? "gone" : "failed", result: output, error: e });
    }
  }
}
