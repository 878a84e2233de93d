"""Calls and typed errors, blocking and asyncio, over ipc and over tcp with PLAIN."""

import pytest

import zcoord
from zcoord.aio import AsyncClient
from conftest import Server


def test_instance_and_sessions(client: zcoord.Client, server: Server) -> None:
    ping = client.instance_ping()
    assert ping["status"] == "ok" and ping["instance_id"] == server.discovery.instance_id
    info = client.instance_info()
    assert info["model"] == "echo" and info["endpoints"]["rpc"] == server.discovery.rpc
    s = client.session_create(title="typed")
    assert client.session_get(s["id"])["title"] == "typed"
    assert s["id"] in [x["id"] for x in client.session_list()["sessions"]]
    assert client.session_activate(s["id"]) == {"ok": True}
    configured = client.session_configure(s["id"], system_prompt="be brief")
    assert configured["system_prompt"] == "be brief"
    assert "system_prompt" not in client.session_configure(s["id"], system_prompt=None)
    assert client.model_list()["default"]
    assert client.session_interrupt(s["id"])["interrupted"] is False
    assert client.session_delete(s["id"]) == {"ok": True}


def test_typed_errors(client: zcoord.Client) -> None:
    with pytest.raises(zcoord.MethodNotFound) as e:
        client.call("no.such.method")
    assert e.value.code == -32601
    with pytest.raises(zcoord.SessionNotFound) as nf:
        client.session_get("nope")
    assert nf.value.code == -32001 and nf.value.kind == "session_not_found"
    assert nf.value.data["session_id"] == "nope" and nf.value.message
    with pytest.raises(zcoord.InvalidParams) as ip:
        client.call("session.get", {"session_id": 5})
    assert ip.value.field == "session_id"
    with pytest.raises(zcoord.InvalidParams) as blank:
        client.message_send("   ")
    assert blank.value.field == "content"
    with pytest.raises(zcoord.HitlNotFound):
        client.hitl_respond("nope", decision="approve")
    with pytest.raises(zcoord.VersionMismatch) as vm:
        client.client_hello("old", "old", protocol_versions=[99])
    assert 99 in vm.value.data["offered"]


def test_a_dead_endpoint_times_out() -> None:
    target = zcoord.resolve(rpc="ipc:///tmp/zc-nobody.sock", pub="ipc:///tmp/zc-nobody2.sock")
    with zcoord.Client(target, timeout=0.3) as c:
        with pytest.raises(zcoord.Timeout):
            c.instance_ping()


def test_messages_and_history(client: zcoord.Client) -> None:
    sent = client.message_send("hello history", request_id="req-history")
    again = client.message_send("other text", request_id="req-history")
    assert again["message_id"] == sent["message_id"]  # idempotent
    msgs: list[zcoord.protocol.MessagePayload] = []
    for _ in range(100):
        msgs = client.history(sent["session_id"])
        if len(msgs) == 2:
            break
        import time

        time.sleep(0.05)
    assert [m["role"] for m in msgs] == ["user", "assistant"]
    got = client.message_get(sent["session_id"], sent["message_id"])
    assert got["content"] == "hello history"


def test_plain_over_tcp(tcp_server: Server) -> None:
    assert tcp_server.discovery.secret
    with zcoord.Client.connect(data_dir=tcp_server.data_dir, timeout=5.0) as c:
        assert c.instance_ping()["status"] == "ok"
        with c.subscribe([""]) as sub:
            assert sub.welcome.instance_id == tcp_server.discovery.instance_id
    wrong = zcoord.resolve(data_dir=tcp_server.data_dir, secret="not-the-secret-at-all")
    with zcoord.Client(wrong, timeout=0.5) as c:
        with pytest.raises(zcoord.Timeout):
            c.instance_ping()


async def test_async_calls_and_errors(aclient: AsyncClient) -> None:
    import asyncio

    pings = await asyncio.gather(*(aclient.instance_ping() for _ in range(5)))
    assert {p["status"] for p in pings} == {"ok"}
    s = await aclient.session_create(title="async")
    assert (await aclient.session_get(s["id"]))["id"] == s["id"]
    with pytest.raises(zcoord.SessionNotFound):
        await aclient.session_get("nope")
    with pytest.raises(zcoord.MethodNotFound):
        await aclient.call("no.such")
    with pytest.raises(zcoord.InvalidParams):
        await aclient.call("message.list", {"session_id": s["id"], "limit": -1})
    await aclient.session_delete(s["id"])


async def test_async_plain_over_tcp(tcp_server: Server) -> None:
    c = AsyncClient.connect(data_dir=tcp_server.data_dir, timeout=5.0)
    try:
        assert (await c.instance_ping())["status"] == "ok"
    finally:
        await c.close()
