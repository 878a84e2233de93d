"""JSON-RPC 2.0 framing over a DEALER (PROTOCOL §2-3): one JSON frame out, one back, matched by
`id`. Pure functions; the sockets live in client.py and aio/client.py."""

import itertools
import json
import os
from typing import Any, Optional

from .errors import ProtocolError, RpcError


class Ids:
    """Request ids unique to this client: a random prefix and a counter. A reply whose id is not
    the one awaited (a late answer to a call that timed out) is skipped."""

    def __init__(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"


def encode_request(method: str, params: Optional[dict[str, Any]], request_id: str) -> bytes:
    request = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
    return json.dumps(request, separators=(",", ":")).encode()


def reply_id(frames: list[bytes]) -> tuple[Any, dict[str, Any]]:
    """The id and body of a reply (the last frame; a DEALER may get an empty delimiter first)."""
    if not frames:
        raise ProtocolError("empty reply")
    try:
        body = json.loads(frames[-1])
    except ValueError as e:
        raise ProtocolError(f"reply is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise ProtocolError(f"reply is not an object: {body!r:.200}")
    return body.get("id"), body


def result_of(body: dict[str, Any]) -> Any:
    """The result, or the typed exception of the error reply."""
    if "error" in body:
        raise RpcError.from_wire(body["error"])
    if "result" not in body:
        raise ProtocolError(f"reply has neither result nor error: {body!r:.200}")
    return body["result"]


def drop_none(**params: Any) -> dict[str, Any]:
    """Params without the members left out (`None`): absent, not null, on the wire."""
    return {k: v for k, v in params.items() if v is not None}
