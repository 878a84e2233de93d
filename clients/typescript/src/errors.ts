// The client's typed errors, and the protocol's error codes and kinds (PROTOCOL §3) as named
// constants. Match on `code` or `kind`, never on `message`.

import type { RpcError as WireRpcError } from "./generated/types.js";

/** JSON-RPC and application error codes (PROTOCOL §3, "Error codes"). Codes are never reused. */
export const ErrorCode = {
  ParseError: -32700,
  InvalidRequest: -32600,
  MethodNotFound: -32601,
  InvalidParams: -32602,
  InternalError: -32603,
  SessionNotFound: -32001,
  SessionBusy: -32002,
  MessageTooLarge: -32003,
  ServerBusy: -32004,
  ShuttingDown: -32005,
  InvalidFrames: -32006,
  MessageNotFound: -32007,
  ReplayUnavailable: -32008,
  TooManyPending: -32009,
  TooManySessions: -32010,
  StoreUnavailable: -32011,
  HitlNotFound: -32012,
  HitlResolved: -32013,
  VersionMismatch: -32014,
  ToolClaimed: -32015,
  ToolCallNotFound: -32016,
  NotClaimant: -32017,
  ModelNotFound: -32018,
  QueueFull: -32019,
  TooManyClients: -32020,
} as const;
export type ErrorCodeValue = (typeof ErrorCode)[keyof typeof ErrorCode];

/** `error.data.kind`: the stable machine-readable name of an application error (PROTOCOL §3). */
export const ErrorKind = {
  SessionNotFound: "session_not_found",
  SessionBusy: "session_busy",
  MessageTooLarge: "message_too_large",
  ServerBusy: "server_busy",
  ShuttingDown: "shutting_down",
  InvalidFrames: "invalid_frames",
  MessageNotFound: "message_not_found",
  ReplayUnavailable: "replay_unavailable",
  TooManyPending: "too_many_pending",
  TooManySessions: "too_many_sessions",
  StoreUnavailable: "store_unavailable",
  HitlNotFound: "hitl_not_found",
  HitlResolved: "hitl_resolved",
  VersionMismatch: "version_mismatch",
  ToolClaimed: "tool_claimed",
  ToolCallNotFound: "tool_call_not_found",
  NotClaimant: "not_claimant",
  ModelNotFound: "model_not_found",
  QueueFull: "queue_full",
  TooManyClients: "too_many_clients",
  BatchTooLarge: "batch_too_large",
  InvalidTool: "invalid_tool",
} as const;
export type ErrorKindValue = (typeof ErrorKind)[keyof typeof ErrorKind];

/** The base of every error this package throws. */
export class ZcoordError extends Error {
  override name = "ZcoordError";
}

/** The server answered a call with an error reply. */
export class CallError extends ZcoordError {
  override name = "CallError";
  readonly code: number;
  readonly data: { kind?: string; [k: string]: unknown } | undefined;
  readonly method: string;

  constructor(method: string, error: WireRpcError) {
    super(`${method}: ${error.message} (${error.code}${error.data?.kind ? ` ${error.data.kind}` : ""})`);
    this.method = method;
    this.code = error.code;
    this.data = error.data;
    // The server's own text, without our prefix, for callers that show it as it is.
    this.serverMessage = error.message;
  }

  readonly serverMessage: string;

  /** `data.kind`, when the error has one. */
  get kind(): string | undefined {
    return typeof this.data?.kind === "string" ? this.data.kind : undefined;
  }

  /** Whether this is the error named by `codeOrKind` (an `ErrorCode` or an `ErrorKind`). */
  is(codeOrKind: number | string): boolean {
    return typeof codeOrKind === "number" ? this.code === codeOrKind : this.kind === codeOrKind;
  }
}

/** No reply came within the call's timeout (the request may still have been executed). */
export class CallTimeoutError extends ZcoordError {
  override name = "CallTimeoutError";
  constructor(
    readonly method: string,
    readonly timeoutMs: number,
  ) {
    super(`${method}: no reply within ${timeoutMs} ms (is the server running?)`);
  }
}

/** The connection was closed while the call waited, or before it was made. */
export class ClosedError extends ZcoordError {
  override name = "ClosedError";
}

/** No server could be found: no discovery file, a stale one, or one this client cannot use. */
export class DiscoveryError extends ZcoordError {
  override name = "DiscoveryError";
  constructor(
    message: string,
    readonly path?: string,
  ) {
    super(message);
  }
}

/** A subscription was not welcomed (PROTOCOL §8) within the caller's timeout. */
export class NoWelcomeError extends ZcoordError {
  override name = "NoWelcomeError";
  constructor(
    readonly endpoint: string,
    readonly timeoutMs: number,
  ) {
    super(`no instance.welcome from ${endpoint} within ${timeoutMs} ms (is the server running?)`);
  }
}

/** Events a stream needed were lost for good (the replay ring no longer held them, or the
 * server was replaced): what was built from them must be rebuilt from a snapshot. */
export class EventsLostError extends ZcoordError {
  override name = "EventsLostError";
  constructor(
    message: string,
    readonly reason: string,
  ) {
    super(message);
  }
}
