"""Reading a whole history page by page (PROTOCOL §5 `message.list`): the newest page, then
backwards with `before` while `has_more`. Shared by the blocking client and the mirror program."""

from typing import Callable, Optional

from .effects import Program
from .protocol import MessageListResult, MessagePayload

PAGE = 1000


def history(
    message_list: Callable[..., MessageListResult], session_id: str
) -> list[MessagePayload]:
    messages: list[MessagePayload] = []
    before: Optional[str] = None
    while True:
        page = message_list(session_id, limit=PAGE, before=before)
        messages[0:0] = page["messages"]
        if not page.get("has_more") or not page["messages"]:
            return messages
        before = page["messages"][0]["id"]


def history_program(session_id: str) -> "Program[list[MessagePayload]]":
    """As `history`, as a sans-I/O program (effects.py)."""
    messages: list[MessagePayload] = []
    params: dict[str, object] = {"session_id": session_id, "limit": PAGE}
    while True:
        page: MessageListResult = yield ("message.list", dict(params))
        messages[0:0] = page["messages"]
        if not page.get("has_more") or not page["messages"]:
            return messages
        params["before"] = page["messages"][0]["id"]
