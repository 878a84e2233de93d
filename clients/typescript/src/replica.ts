// The local replica a mirror keeps: sessions, the active session, each session's messages, the
// requests waiting for a person and the clients present, changed only by a snapshot or by one
// event at a time. No I/O: the mirror feeds it.

import type {
  ClientInfo,
  HitlRequest,
  MessageAppendPayload,
  MessagePayload,
  SessionPayload,
  StateSyncResult,
} from "./generated/types.js";
import type { ZEvent } from "./topics.js";

/** One message as the replica keeps it (from `message.list` or a `message.append`). */
export interface ReplicaMessage {
  id: string;
  role: MessagePayload["role"];
  content: string;
  status: MessagePayload["status"];
  turn_id?: string;
}

/** What a replica held at one moment, as plain JSON. */
export interface ReplicaSnapshot {
  instance_id: string | undefined;
  active_session_id: string | undefined;
  sessions: Record<string, SessionPayload>;
  messages: Record<string, ReplicaMessage[]>;
  hitl: Record<string, HitlRequest>;
  clients: Record<string, ClientInfo>;
}

/** Why an event cannot be applied: the replica needs a fresh snapshot. */
export class ReplicaDiverged extends Error {
  override name = "ReplicaDiverged";
}

function messageRow(m: MessagePayload | MessageAppendPayload): ReplicaMessage {
  const id = "message_id" in m && typeof m.message_id === "string" ? m.message_id : (m as MessagePayload).id;
  return { id, role: m.role, content: m.content, status: m.status, ...(m.turn_id ? { turn_id: m.turn_id } : {}) };
}

export class Replica {
  instanceId: string | undefined;
  activeSessionId: string | undefined;
  readonly sessions = new Map<string, SessionPayload>();
  readonly messages = new Map<string, ReplicaMessage[]>();
  readonly hitl = new Map<string, HitlRequest>();
  readonly clients = new Map<string, ClientInfo>();

  /** Replaces everything with a snapshot and the sessions' histories fetched after it. */
  load(snap: StateSyncResult, histories: Map<string, MessagePayload[]>): void {
    this.instanceId = snap.instance_id;
    this.activeSessionId = snap.active_session_id;
    this.sessions.clear();
    this.messages.clear();
    for (const s of snap.sessions) {
      this.sessions.set(s.id, s);
      this.messages.set(s.id, (histories.get(s.id) ?? []).map(messageRow));
    }
    this.hitl.clear();
    for (const r of snap.hitl) this.hitl.set(r.id, r);
    this.clients.clear();
    for (const c of snap.clients) this.clients.set(c.client_id, c);
  }

  /** Applies one event (already in order and not reflected by the snapshot). Throws
   * `ReplicaDiverged` when the event shows the replica is wrong. */
  apply(e: ZEvent): void {
    switch (e.topic) {
      case "session.update":
        this.upsert(e.payload);
        break;
      case "session.activated":
        this.upsert(e.payload);
        this.activeSessionId = e.payload.id;
        break;
      case "session.list": {
        // A truncated list holds only the newest sessions: the others are not gone.
        const listed = new Set(e.payload.sessions.map((s) => s.id));
        if (!e.payload.truncated) for (const id of [...this.sessions.keys()]) if (!listed.has(id)) this.remove(id);
        for (const s of e.payload.sessions) this.upsert(s);
        break;
      }
      case "session.deleted":
        this.remove(e.payload.id);
        break;
      case "message.append": {
        const list = this.messages.get(e.payload.session_id);
        if (!list) throw new ReplicaDiverged(`message.append for unknown session ${e.payload.session_id}`);
        const row = messageRow(e.payload);
        // Already there when the history fetched after the snapshot holds it.
        if (!list.some((m) => m.id === row.id)) list.push(row);
        break;
      }
      case "hitl.pending":
        this.hitl.set(e.payload.id, e.payload);
        break;
      case "hitl.resolved":
        this.hitl.delete(e.payload.id);
        break;
      case "client.joined": {
        const { rejoined: _rejoined, ...info } = e.payload;
        this.clients.set(info.client_id, info);
        break;
      }
      case "client.left":
        this.clients.delete(e.payload.client_id);
        break;
      case "instance.heartbeat": {
        this.activeSessionId = e.payload.active_session_id;
        // A cheap consistency check: the heartbeat is in seq order like everything else.
        if (e.payload.session_count !== this.sessions.size) {
          throw new ReplicaDiverged(`heartbeat counts ${e.payload.session_count} sessions, the replica ${this.sessions.size}`);
        }
        break;
      }
      default:
        // llm.*, tool.*, message.queued/dequeued, instance.status/shutdown/promoted: nothing
        // kept (a session's queue length and usage come with its SessionPayload).
        break;
    }
  }

  /** The replica as plain JSON (sessions' messages in order). */
  toJSON(): ReplicaSnapshot {
    return {
      instance_id: this.instanceId,
      active_session_id: this.activeSessionId,
      sessions: Object.fromEntries(this.sessions),
      messages: Object.fromEntries([...this.messages].map(([k, v]) => [k, v.map((m) => ({ ...m }))])),
      hitl: Object.fromEntries(this.hitl),
      clients: Object.fromEntries(this.clients),
    };
  }

  private upsert(s: SessionPayload): void {
    this.sessions.set(s.id, s);
    if (!this.messages.has(s.id)) this.messages.set(s.id, []);
  }

  private remove(id: string): void {
    this.sessions.delete(id);
    this.messages.delete(id);
    // "If it was the active session, there is no active session afterwards" (PROTOCOL §5).
    if (this.activeSessionId === id) this.activeSessionId = undefined;
  }
}
