/* The protocol's wire types (proto-docs/PROTOCOL.md §4–§6), one per `$defs` name of
 * proto-docs/schema/zcoord.schema.json.
 *
 * WRITTEN BY HAND until that schema exists; `npm run gen` then regenerates this file from it
 * (scripts/gen-types.mjs) and test/generated.test.ts keeps the two equal. Names follow the
 * schema's: `<Method>Params` / `<Method>Result`, `<Topic>Payload`, `EventEnvelope`,
 * `WelcomeEnvelope`, `RpcError`. Fields marked `?` are omitted (never null) when they have no value.
 */

/* ---------- shapes (§4) ---------- */

export interface SessionUsage {
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens: number;
  reasoning_tokens: number;
  turns: number;
}

export interface SessionPayload {
  id: string;
  title: string;
  created_at: string;
  updated_at: string;
  message_count: number;
  status: "idle" | "running";
  usage?: SessionUsage;
  grants?: string[];
  model?: string;
  system_prompt?: string;
  queue_length?: number;
  [k: string]: unknown;
}

export interface Author {
  client_id: string;
  name: string;
}

export interface MessageTool {
  call_id: string;
  tool_name: string;
  params: string;
  is_error: boolean;
}

export interface MessagePayload {
  id: string;
  session_id: string;
  turn_id?: string;
  role: "user" | "assistant" | "tool";
  content: string;
  created_at: string;
  status: "complete" | "interrupted";
  tool?: MessageTool;
  author?: Author;
  [k: string]: unknown;
}

export interface HitlRequest {
  id: string;
  session_id: string;
  turn_id: string;
  type: "tool_approval" | "question";
  status: "pending" | "approved" | "rejected" | "answered" | "expired" | "cancelled";
  payload: {
    call_id: string;
    tool_name?: string;
    params?: string;
    params_truncated?: boolean;
    question?: string;
    options?: string[];
    question_truncated?: boolean;
    [k: string]: unknown;
  };
  response?: {
    decision?: "approve" | "approve_session" | "reject";
    reason?: string;
    answer?: string;
    answer_truncated?: boolean;
    [k: string]: unknown;
  };
  resolved_by?: string;
  created_at: string;
  resolved_at?: string;
  expires_at?: string;
  [k: string]: unknown;
}

export interface ClientInfo {
  client_id: string;
  name: string;
  version?: string;
  protocol_version: number;
  connected_at: string;
  last_seen_at: string;
  tools: string[];
  [k: string]: unknown;
}

export interface ModelInfo {
  name: string;
  provider: string;
  default: boolean;
  context_bytes: number;
  [k: string]: unknown;
}

export interface Endpoints {
  rpc: string;
  pub: string;
}

export interface ToolDeclaration {
  name: string;
  description?: string;
  /** A JSON Schema whose top level is `{"type": "object", …}`. */
  parameters: { type: "object"; [k: string]: unknown };
}

/* ---------- methods (§5) ---------- */

export interface InstancePingParams {}
export interface InstancePingResult {
  status: string;
  instance_id: string;
  uptime: string;
  [k: string]: unknown;
}

export interface InstanceInfoParams {}
export interface InstanceInfoResult {
  instance_id: string;
  version: string;
  protocol_version: number;
  pid: number;
  started_at: string;
  uptime: string;
  endpoints: Endpoints;
  session_count: number;
  max_sessions: number;
  active_session_id?: string;
  model: string;
  models: ModelInfo[];
  seq: number;
  running_turns: number;
  drops: {
    replies_dropped: number;
    outbound_dropped: number;
    requests_refused_busy: number;
    requests_dropped: number;
    [k: string]: unknown;
  };
  store: string;
  recovered_turns: number;
  replay: {
    events: number;
    bytes: number;
    oldest_seq: number;
    max_events: number;
    max_bytes: number;
    [k: string]: unknown;
  };
  transport?: {
    connections_rpc: number;
    connections_pub: number;
    connections_refused: number;
    pub_bytes_held: number;
    subscribers_evicted: number;
    [k: string]: unknown;
  };
  status: "ok" | "degraded";
  degraded?: { reason: string; since: string };
  promoted_from?: string;
  [k: string]: unknown;
}

export interface StateSyncParams {
  project_id?: string;
}
export interface StateSyncResult {
  sessions: SessionPayload[];
  active_session_id?: string;
  instance_id: string;
  seq: number;
  hitl: HitlRequest[];
  clients: ClientInfo[];
  [k: string]: unknown;
}

export interface SessionListParams {}
export interface SessionListResult {
  sessions: SessionPayload[];
  [k: string]: unknown;
}

export interface SessionGetParams {
  session_id: string;
}
export type SessionGetResult = SessionPayload;

export interface SessionCreateParams {
  title?: string;
}
export type SessionCreateResult = SessionPayload;

export interface SessionDeleteParams {
  session_id: string;
}
export interface SessionDeleteResult {
  ok: true;
  [k: string]: unknown;
}

export interface SessionActivateParams {
  session_id: string;
}
export interface SessionActivateResult {
  ok: true;
  [k: string]: unknown;
}

export interface ModelListParams {}
export interface ModelListResult {
  default: string;
  models: ModelInfo[];
  [k: string]: unknown;
}

export interface SessionConfigureParams {
  session_id: string;
  /** A name from `model.list`; `null` returns the session to the default model. */
  model?: string | null;
  /** `""` sends no system prompt; `null` returns to the model's configured one. */
  system_prompt?: string | null;
}
export type SessionConfigureResult = SessionPayload;

export interface MessageSendParams {
  session_id?: string;
  content: string;
  request_id?: string;
  model?: string;
  when_busy?: "reject" | "queue";
}
export interface MessageSendResult {
  ok: true;
  session_id: string;
  message_id: string;
  turn_id: string;
  queued?: boolean;
  position?: number;
  [k: string]: unknown;
}

export interface MessageListParams {
  session_id: string;
  limit?: number;
  before?: string;
  after?: string;
}
export interface MessageListResult {
  messages: MessagePayload[];
  has_more: boolean;
  [k: string]: unknown;
}

export interface MessageGetParams {
  session_id: string;
  message_id: string;
}
export type MessageGetResult = MessagePayload;

export interface SessionInterruptParams {
  session_id: string;
  clear_queue?: boolean;
}
export interface SessionInterruptResult {
  ok: true;
  interrupted: boolean;
  cleared?: number;
  [k: string]: unknown;
}

export interface HitlListParams {
  session_id?: string;
}
export interface HitlListResult {
  requests: HitlRequest[];
  [k: string]: unknown;
}

export interface HitlRespondParams {
  id: string;
  decision?: "approve" | "approve_session" | "reject";
  answer?: string;
  reason?: string;
  client_id?: string;
}
export interface HitlRespondResult {
  ok: true;
  request: HitlRequest;
  [k: string]: unknown;
}

export interface ClientHelloParams {
  client_id: string;
  name: string;
  version?: string;
  protocol_versions: number[];
  capabilities?: { [k: string]: unknown };
  tools?: ToolDeclaration[];
}
export interface ClientHelloResult {
  protocol_version: number;
  server_version: string;
  instance_id: string;
  capabilities: {
    client_tools: boolean;
    hitl: boolean;
    replay: boolean;
    client_timeout_secs: number;
    tool_claim_timeout_secs: number;
    [k: string]: unknown;
  };
  [k: string]: unknown;
}

export interface ClientListParams {}
export interface ClientListResult {
  clients: ClientInfo[];
  [k: string]: unknown;
}

export interface ClientGoodbyeParams {}
export interface ClientGoodbyeResult {
  ok: true;
  [k: string]: unknown;
}

export interface ToolClaimParams {
  call_id: string;
  turn_id?: string;
}
export interface ToolClaimResult {
  ok: true;
  session_id: string;
  turn_id: string;
  call_id: string;
  tool_name: string;
  /** The call's JSON arguments as text, uncut. */
  params: string;
  [k: string]: unknown;
}

export interface ToolResultParams {
  call_id: string;
  turn_id?: string;
  /** Text; any other JSON value is sent as its JSON text. */
  result: unknown;
  is_error?: boolean;
}
export interface ToolResultResult {
  ok: true;
  [k: string]: unknown;
}

export interface EventsReplayParams {
  after_seq: number;
  prefixes?: string[];
  limit?: number;
  instance_id?: string;
}
export interface EventsReplayResult {
  instance_id: string;
  events: EventEnvelope[];
  next_after_seq: number;
  has_more: boolean;
  oldest_seq: number;
  latest_seq: number;
  [k: string]: unknown;
}

/* ---------- errors (§3) ---------- */

export interface RpcError {
  code: number;
  message: string;
  data?: { kind?: string; [k: string]: unknown };
}

/* ---------- events (§6) ---------- */

export interface EventEnvelope {
  seq: number;
  instance_id: string;
  topic: string;
  session_id?: string;
  timestamp: string;
  payload: { [k: string]: unknown };
}

export interface WelcomeEnvelope {
  instance_id: string;
  topic: "instance.welcome";
  timestamp: string;
  payload: WelcomePayload;
}

export interface WelcomePayload {
  token: string;
  last_seq: number;
}

export interface SessionListPayload {
  sessions: SessionPayload[];
  session_count: number;
  truncated: boolean;
  [k: string]: unknown;
}

export interface MessageAppendPayload {
  session_id: string;
  message_id: string;
  role: "user" | "assistant" | "tool";
  content: string;
  turn_id?: string;
  status: "complete" | "interrupted";
  created_at: string;
  tool?: MessageTool;
  content_truncated?: boolean;
  content_bytes?: number;
  author?: Author;
  [k: string]: unknown;
}

export interface MessageQueuedPayload {
  session_id: string;
  message_id: string;
  turn_id: string;
  content: string;
  position: number;
  queued_at: string;
  content_truncated?: boolean;
  content_bytes?: number;
  [k: string]: unknown;
}

export interface MessageDequeuedPayload {
  session_id: string;
  message_id: string;
  turn_id: string;
  reason: "started" | "cleared" | "deleted";
  queue_length: number;
  [k: string]: unknown;
}

export interface LlmStartPayload {
  session_id: string;
  turn_id: string;
  model?: string;
  [k: string]: unknown;
}

export interface LlmTokenPayload {
  session_id: string;
  turn_id: string;
  index: number;
  token: string;
  [k: string]: unknown;
}

export interface LlmUsage {
  input_tokens: number;
  output_tokens: number;
  cached_input_tokens?: number;
  reasoning_tokens?: number;
  context_tokens: number;
  context_window?: number;
  estimated: string[];
  [k: string]: unknown;
}

export interface LlmEndPayload {
  session_id: string;
  turn_id: string;
  tokens_in: number;
  tokens_out: number;
  reason: "completed" | "interrupted" | "error" | "shutdown";
  error?: string;
  usage?: LlmUsage;
  [k: string]: unknown;
}

export interface ToolArgsPayload {
  session_id: string;
  turn_id: string;
  call_id: string;
  tool_name: string;
  index: number;
  delta: string;
  [k: string]: unknown;
}

export interface ToolStartPayload {
  session_id: string;
  turn_id: string;
  tool_name: string;
  call_id: string;
  params: string;
  params_truncated?: boolean;
  executor: "server" | "client";
  awaiting_approval?: boolean;
  [k: string]: unknown;
}

export interface ToolClaimedPayload {
  session_id: string;
  turn_id: string;
  call_id: string;
  tool_name: string;
  client_id: string;
  [k: string]: unknown;
}

export interface ToolEndPayload {
  session_id: string;
  turn_id: string;
  tool_name: string;
  call_id: string;
  is_error: boolean;
  result: string;
  result_truncated?: boolean;
  [k: string]: unknown;
}

export interface ClientJoinedPayload extends ClientInfo {
  rejoined: boolean;
}

export interface ClientLeftPayload {
  client_id: string;
  name: string;
  reason: "goodbye" | "timeout" | "replaced";
  [k: string]: unknown;
}

export interface InstanceHeartbeatPayload {
  instance_id: string;
  active_session_id?: string;
  session_count: number;
  uptime: string;
  started_at: string;
  promoted_from?: string;
  status: "ok" | "degraded";
  reason?: string;
  [k: string]: unknown;
}

export interface InstanceStatusPayload {
  instance_id: string;
  status: "ok" | "degraded";
  reason?: string;
  since?: string;
  [k: string]: unknown;
}

export interface InstanceShutdownPayload {
  instance_id: string;
  reason: string;
  [k: string]: unknown;
}

export interface InstancePromotedPayload {
  instance_id: string;
  previous_instance_id?: string;
  [k: string]: unknown;
}
