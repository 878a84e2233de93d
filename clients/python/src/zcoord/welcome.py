"""The protocol 2 welcome (PROTOCOL §8): after its own subscriptions a SUB subscribes to
`instance.welcome/<token>`; the one message the server answers with says every earlier
subscription is live and names `last_seq`. Pure helpers shared by the blocking and asyncio
subscribers."""

import json
import uuid
from dataclasses import dataclass
from typing import Any, Optional

from .protocol.events import INSTANCE_WELCOME

RETRY_AFTER = 1.0  # seconds without a welcome before a fresh SUB is tried (libzmq races)
MAX_TOKEN_BYTES = 128


def new_token() -> str:
    """32 hex characters, unique enough that no other client picks it."""
    return uuid.uuid4().hex


def welcome_key(token: str) -> str:
    return f"{INSTANCE_WELCOME}/{token}"


@dataclass(frozen=True)
class Welcome:
    instance_id: str
    last_seq: int
    envelope: dict[str, Any]


def parse_welcome(frames: list[bytes], token: str) -> Optional[Welcome]:
    """This socket's welcome, or None (an event, or another client's welcome)."""
    if len(frames) != 2 or frames[0] != welcome_key(token).encode():
        return None
    try:
        env = json.loads(frames[1])
        if env.get("topic") != INSTANCE_WELCOME:
            return None
        payload = env["payload"]
        if payload.get("token") == token:
            return Welcome(str(env["instance_id"]), int(payload["last_seq"]), env)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return None


def is_welcome(envelope: dict[str, Any]) -> bool:
    """Any welcome, ours or another client's: never a numbered event."""
    return envelope.get("topic") == INSTANCE_WELCOME
