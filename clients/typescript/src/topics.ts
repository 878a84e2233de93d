// Event topics (PROTOCOL §6): the typed event union and which payload each topic carries (both
// read off the generated `EventEnvelope`), and the key a subscription prefix is matched
// against. Wire types only; no sockets here.

import type * as T from "./generated/types.js";

/** A numbered event, typed by its topic: narrow with `if (e.topic === "llm.token")`. It is the
 * schema's `EventEnvelope`, a union with one member per topic (generated from the schema's
 * per-topic rules), named here for what it is in this client. Events of topics this client does
 * not know are delivered too (clients must ignore what they do not know): their `topic` is none
 * of these, so give a `switch` over it a `default`. */
export type ZEvent = T.EventEnvelope;

export type Topic = ZEvent["topic"];

/** Which payload each topic carries. */
export type TopicPayloads = { [K in Topic]: Extract<ZEvent, { topic: K }>["payload"] };

export const WELCOME_TOPIC = "instance.welcome";

/** The key an event was published under: its topic, or `topic/<session_id>` (PROTOCOL §6). */
export function keyOf(e: { topic: string; session_id?: string }): string {
  return e.session_id ? `${e.topic}/${e.session_id}` : e.topic;
}

/** Whether a subscription to `prefixes` would receive `e` (byte prefixes of the key; none or
 * an empty list: everything). */
export function matches(e: { topic: string; session_id?: string }, prefixes?: readonly string[]): boolean {
  if (!prefixes || prefixes.length === 0) return true;
  const key = keyOf(e);
  return prefixes.some((p) => key.startsWith(p));
}
