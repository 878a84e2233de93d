"""A client-run tool: declared in `client.hello`, claimed and answered, blocking and asyncio."""

import zcoord
from zcoord.aio import AsyncClient, AsyncToolHost

REVERSE: zcoord.protocol.ClientTool = {
    "name": "reverse_text",
    "description": "Reverses a text.",
    "parameters": {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]},
}


def test_a_client_tool_claimed_and_answered(client: zcoord.Client, server) -> None:  # type: ignore[no-untyped-def]
    with zcoord.Client.connect(data_dir=server.data_dir, timeout=5.0) as own:
        host = zcoord.ToolHost(own, client_id="pytest-tool", name="pytest")
        host.tool(REVERSE)(lambda args: args["text"][::-1])
        with host:
            assert host.hello is not None and host.hello["capabilities"]["client_tools"]
            assert "pytest-tool" in [c["client_id"] for c in client.client_list()["clients"]]
            sent = client.message_send('reverse\n/tool reverse_text {"text": "stressed"}')
            outcome = host.serve(timeout=5)
            assert outcome is not None and outcome.result == "desserts" and not outcome.is_error
            assert outcome.refused is None
        assert "pytest-tool" not in [c["client_id"] for c in client.client_list()["clients"]]
    with client.subscribe([f"llm.end/{sent['session_id']}"]) as sub:
        if client.session_get(sent["session_id"])["status"] == "running":
            sub.wait_for(lambda e: True, timeout=5)
    tool_rows = [m for m in client.history(sent["session_id"]) if m["role"] == "tool"]
    assert [m["content"] for m in tool_rows] == ["desserts"]
    with zcoord.Client.connect(data_dir=server.data_dir) as stranger:
        try:
            stranger.tool_claim("call_1", sent["turn_id"])
            raise AssertionError("a claim of an ended call must be refused")
        except (zcoord.ToolCallNotFound, zcoord.NotClaimant):
            pass


async def test_an_async_client_tool(aclient: AsyncClient, server) -> None:  # type: ignore[no-untyped-def]
    own = AsyncClient.connect(data_dir=server.data_dir, timeout=5.0)
    host = AsyncToolHost(own, client_id="pytest-async-tool")
    host.tool(REVERSE)(lambda args: args["text"].upper()[::-1])
    try:
        await host.start()
        await aclient.message_send('/tool reverse_text {"text": "abc"}')
        outcome = await host.serve(timeout=5)
        assert outcome is not None and outcome.result == "CBA"
    finally:
        await host.close()
        await own.close()
