"""Human in the loop: the server asks before `clock` runs (`serve --tool-policy clock=ask`); the
request is seen as an event and in `hitl.list`, and answered with `hitl.respond`."""

import zcoord
from zcoord.aio import AsyncClient


def test_an_approval_answered_with_hitl_respond(client: zcoord.Client) -> None:
    s = client.session_create(title="approval")
    sid = s["id"]
    with client.subscribe([f"hitl.", f"tool.end/{sid}", f"llm.end/{sid}"]) as sub:
        client.message_send("what time?\n/tool clock", session_id=sid)
        pending = sub.wait_for(lambda e: e["topic"] == "hitl.pending", timeout=5)
        request = pending["payload"]
        assert request["type"] == "tool_approval" and request["payload"]["tool_name"] == "clock"
        assert [r["id"] for r in client.hitl_list(sid)["requests"]] == [request["id"]]
        answer = client.hitl_respond(request["id"], decision="approve", client_id="pytest")
        assert answer["request"]["status"] == "approved"
        resolved = sub.wait_for(lambda e: e["topic"] == "hitl.resolved", timeout=5)
        assert resolved["payload"]["resolved_by"] == "pytest"
        end = sub.wait_for(lambda e: e["topic"] == "tool.end", timeout=5)
        assert end["payload"]["is_error"] is False
        sub.wait_for(lambda e: e["topic"] == "llm.end", timeout=5)
    try:
        client.hitl_respond(request["id"], decision="reject")
        raise AssertionError("a second answer must be refused")
    except zcoord.HitlResolved as e:
        assert e.data["request"]["status"] == "approved"


async def test_a_rejection_answered_from_asyncio(aclient: AsyncClient) -> None:
    s = await aclient.session_create(title="async approval")
    sid = s["id"]
    sub = await aclient.subscribe([f"hitl.pending/{sid}", f"tool.end/{sid}"])
    try:
        await aclient.message_send("/tool clock", session_id=sid)
        pending = await sub.wait_for(lambda e: e["topic"] == "hitl.pending", timeout=5)
        await aclient.hitl_respond(pending["payload"]["id"], decision="reject", reason="no clocks")
        end = await sub.wait_for(lambda e: e["topic"] == "tool.end", timeout=5)
        assert end["payload"]["is_error"] is True and "no clocks" in end["payload"]["result"]
    finally:
        sub.close()
