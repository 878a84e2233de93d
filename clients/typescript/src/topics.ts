// Event topics (PROTOCOL §6): which payload each topic carries, the typed event union, and the
// key a subscription prefix is matched against. Wire types only; no sockets here.

import type * as T from "./generated/types.js";

export interface TopicPayloads {
  "session.list": T.SessionListPayload;
  "session.update": T.SessionPayload;
  "session.activated": T.SessionPayload;
  "session.deleted": T.SessionPayload;
  "message.append": T.MessageAppendPayload;
  "message.queued": T.MessageQueuedPayload;
  "message.dequeued": T.MessageDequeuedPayload;
  "llm.start": T.LlmStartPayload;
  "llm.token": T.LlmTokenPayload;
  "llm.end": T.LlmEndPayload;
  "tool.args": T.ToolArgsPayload;
  "tool.start": T.ToolStartPayload;
  "tool.claimed": T.ToolClaimedPayload;
  "tool.end": T.ToolEndPayload;
  "client.joined": T.ClientJoinedPayload;
  "client.left": T.ClientLeftPayload;
  "hitl.pending": T.HitlRequest;
  "hitl.resolved": T.HitlRequest;
  "instance.heartbeat": T.InstanceHeartbeatPayload;
  "instance.status": T.InstanceStatusPayload;
  "instance.shutdown": T.InstanceShutdownPayload;
  "instance.promoted": T.InstancePromotedPayload;
}

export type Topic = keyof TopicPayloads;

/** A numbered event, typed by its topic: narrow with `if (e.topic === "llm.token")`. Events of
 * topics this client does not know are delivered too (clients must ignore what they do not
 * know); read those through `EventEnvelope`. */
export type ZEvent = {
  [K in Topic]: Omit<T.EventEnvelope, "topic" | "payload"> & { topic: K; payload: TopicPayloads[K] };
}[Topic];

export const WELCOME_TOPIC = "instance.welcome";

/** The key an event was published under: its topic, or `topic/<session_id>` (PROTOCOL §6). */
export function keyOf(e: Pick<T.EventEnvelope, "topic" | "session_id">): string {
  return e.session_id ? `${e.topic}/${e.session_id}` : e.topic;
}

/** Whether a subscription to `prefixes` would receive `e` (byte prefixes of the key; none or
 * an empty list: everything). */
export function matches(e: Pick<T.EventEnvelope, "topic" | "session_id">, prefixes?: readonly string[]): boolean {
  if (!prefixes || prefixes.length === 0) return true;
  const key = keyOf(e);
  return prefixes.some((p) => key.startsWith(p));
}
