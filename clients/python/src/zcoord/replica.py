"""The mirror's local copy of a primary: sessions (title, message count, status), the active
session, each session's messages, and the pending human-in-the-loop requests. Pure state: every
mutation that changes something reports one Change to the listener."""

import json
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .protocol import HitlRequest, SessionPayload, StateSyncResult


def _clip(text: str, n: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass(frozen=True)
class Change:
    """One change of the replica, or a mirror notice (`snapshot`, `replay`, `resync`).

    `kind`: `session+`, `session~`, `session-`, `message+`, `message~`, `message-`, `active`,
    `hitl+`, `hitl-`, `snapshot`, `replay`, `resync`. `str(change)` is a one-line description."""

    kind: str
    subject: str = ""  # a session, request or instance id
    detail: str = ""

    def __str__(self) -> str:
        return " ".join(part for part in (self.kind, self.subject, self.detail) if part)


Listener = Callable[[Change], None]


@dataclass
class SessionRow:
    title: str
    message_count: int
    status: str

    @staticmethod
    def of(s: SessionPayload) -> "SessionRow":
        return SessionRow(s["title"], s["message_count"], s["status"])


@dataclass
class MessageRow:
    id: str
    role: str
    content: str

    @staticmethod
    def of(m: Any) -> "MessageRow":
        # message.list has `id`, the message.append payload `message_id`.
        return MessageRow(m.get("id") or m["message_id"], m["role"], m["content"])


class Replica:
    def __init__(self, listener: Optional[Listener] = None) -> None:
        self.listener: Listener = listener or (lambda change: None)
        self.instance_id: Optional[str] = None
        self.active: Optional[str] = None
        self.sessions: dict[str, SessionRow] = {}
        self.messages: dict[str, list[MessageRow]] = {}
        self.hitl: dict[str, HitlRequest] = {}

    def _say(self, kind: str, subject: str = "", detail: str = "") -> None:
        self.listener(Change(kind, subject, detail))

    def upsert_session(self, payload: SessionPayload) -> None:
        sid, row = payload["id"], SessionRow.of(payload)
        old = self.sessions.get(sid)
        self.messages.setdefault(sid, [])
        if old == row:
            return
        self.sessions[sid] = row
        title = json.dumps(row.title, ensure_ascii=False)
        self._say("session+" if old is None else "session~", sid,
                  f"{title} n={row.message_count} {row.status}")

    def remove_session(self, sid: str) -> None:
        self.messages.pop(sid, None)
        if self.sessions.pop(sid, None) is not None:
            self._say("session-", sid)
        if self.active == sid:
            self.set_active(None)  # "there is no active session afterwards" (§5)

    def set_active(self, sid: Optional[str]) -> None:
        if sid != self.active:
            self.active = sid
            self._say("active", sid or "-")

    def append_message(self, sid: str, message: Any) -> None:
        row = MessageRow.of(message)
        rows = self.messages.setdefault(sid, [])
        if any(m.id == row.id for m in rows):
            return  # already in the message.list fetched after the snapshot
        rows.append(row)
        self._say("message+", sid, f"{row.role}: {_clip(row.content)}")

    def request_pending(self, r: HitlRequest) -> None:
        if r["id"] not in self.hitl:
            self.hitl[r["id"]] = r
            asked = r["payload"].get("question") or r["payload"].get("tool_name")
            self._say("hitl+", r["id"], f"{r['type']} {_clip(str(asked))}")

    def request_resolved(self, r: HitlRequest) -> None:
        if self.hitl.pop(r["id"], None) is not None:
            self._say("hitl-", r["id"], f"{r['status']} by {r.get('resolved_by')}")

    def replace(self, snap: StateSyncResult, messages: dict[str, list[Any]]) -> None:
        """Loads a snapshot, reporting what differs from the current replica."""
        self.instance_id = snap["instance_id"]
        fresh = {s["id"]: s for s in snap["sessions"]}
        for sid in [sid for sid in self.sessions if sid not in fresh]:
            self.remove_session(sid)
        for s in reversed(snap["sessions"]):  # oldest update first reads better
            self.upsert_session(s)
            sid = s["id"]
            new_rows = [MessageRow.of(m) for m in messages.get(sid, [])]
            old_rows = self.messages.get(sid, [])
            if new_rows == old_rows:
                continue
            new_ids = {m.id for m in new_rows}
            old_by_id = {m.id: m for m in old_rows}
            for m in old_rows:
                if m.id not in new_ids:
                    self._say("message-", sid, m.id)
            for m in new_rows:
                was = old_by_id.get(m.id)
                if was is None:
                    self._say("message+", sid, f"{m.role}: {_clip(m.content)}")
                elif was != m:
                    self._say("message~", sid, f"{m.role}: {_clip(m.content)}")
            self.messages[sid] = new_rows
        self.set_active(snap.get("active_session_id"))
        fresh_hitl = {r["id"]: r for r in snap.get("hitl", [])}
        for rid in [rid for rid in self.hitl if rid not in fresh_hitl]:
            gone = dict(self.hitl[rid], status="gone")
            self.request_resolved(gone)  # type: ignore[arg-type]
        for r in fresh_hitl.values():
            self.request_pending(r)

    def dump(self) -> dict[str, Any]:
        """The replica as plain JSON-able data."""
        return {
            "instance_id": self.instance_id,
            "active_session_id": self.active,
            "sessions": {
                sid: {"title": r.title, "message_count": r.message_count, "status": r.status}
                for sid, r in self.sessions.items()
            },
            "messages": {
                sid: [{"id": m.id, "role": m.role, "content": m.content}
                      for m in self.messages.get(sid, [])]
                for sid in self.sessions
            },
            "hitl": sorted(self.hitl),
        }
