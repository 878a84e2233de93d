"""The mirror, blocking and asyncio: its replica equals `state.sync` + `message.list` after
events, and an event of another instance makes it resynchronise."""

import zcoord
from zcoord.aio import AsyncClient, AsyncMirror


def server_view(client: zcoord.Client) -> dict:  # type: ignore[type-arg]
    sync = client.state_sync()
    return {
        "instance_id": sync["instance_id"],
        "active_session_id": sync.get("active_session_id"),
        "sessions": {
            s["id"]: {"title": s["title"], "message_count": s["message_count"], "status": s["status"]}
            for s in sync["sessions"]
        },
        "messages": {
            s["id"]: [{"id": m["id"], "role": m["role"], "content": m["content"]}
                      for m in client.history(s["id"])]
            for s in sync["sessions"]
        },
        "hitl": sorted(r["id"] for r in sync["hitl"]),
    }


def test_the_mirror_follows_the_server(client: zcoord.Client) -> None:
    changes: list[zcoord.Change] = []
    with zcoord.Mirror(client, changes.append, live_timeout=5) as mirror:
        assert changes[0].kind == "snapshot"
        sent = client.message_send("mirrored message")
        client.message_send("second one", session_id=sent["session_id"], when_busy="queue")
        replica = mirror.run_until_idle(idle=0.8, timeout=20)
        assert replica.dump() == server_view(client)
        assert any(c.kind == "message+" and "echo: second one" in str(c) for c in changes)
        # An event of another instance (a restart, a failover): resync, no exception.
        env = {"seq": 1, "instance_id": "another", "topic": "instance.heartbeat",
               "timestamp": "", "payload": {}}
        assert mirror.sub is not None
        try:
            mirror.sub.feed(env)
        except zcoord.InstanceChanged as e:
            mirror.resync(e.reason)
        assert [c.kind for c in changes].count("snapshot") == 2
        assert any(c.kind == "resync" for c in changes)
        assert mirror.run_until_idle(idle=0.3, timeout=10).dump() == server_view(client)


async def test_the_async_mirror_follows_the_server(aclient: AsyncClient, client: zcoord.Client) -> None:
    mirror = AsyncMirror(aclient, live_timeout=5)
    await mirror.start()
    try:
        s = await aclient.session_create(title="async mirror")
        await aclient.message_send("async mirrored", session_id=s["id"])
        await aclient.session_activate(s["id"])
        replica = await mirror.run_until_idle(idle=0.8, timeout=20)
        assert replica.active == s["id"]
        assert replica.dump() == server_view(client)
    finally:
        mirror.close()
