"""The welcome, streaming a turn's tokens, and gap repair: on the real stream (a subscription
made to miss events) and on the Sequencer alone (replays that fail)."""

import pytest

import zcoord
from zcoord.aio import AsyncClient
from zcoord.effects import run
from zcoord.sequencer import Sequencer


def test_welcome_makes_the_subscription_live(client: zcoord.Client) -> None:
    with client.subscribe([""]) as everything, client.subscribe(["llm.token/x"]) as other:
        assert everything.welcome.instance_id == client.instance_ping()["instance_id"]
        assert everything.last_seq == everything.welcome.last_seq
        assert other.token != everything.token
        # The "" subscriber saw the other socket's welcome: it is not handed on as an event.
        s = client.session_create(title="after welcome")
        env = everything.wait_for(lambda e: e["topic"] == "session.update", timeout=5)
        assert env["payload"]["id"] == s["id"] and env["seq"] > everything.welcome.last_seq


def test_streaming_a_turns_tokens(client: zcoord.Client) -> None:
    s = client.session_create(title="tokens")
    sid = s["id"]
    with client.subscribe([f"llm.token/{sid}", f"llm.end/{sid}"]) as sub:
        client.message_send("one two three", session_id=sid)
        tokens = []
        while True:
            env = sub.recv(5.0)
            assert env is not None, "the turn did not end"
            if env["topic"] == "llm.end":
                break
            tokens.append(env["payload"]["token"])
    assert "".join(tokens) == "echo: one two three"


def test_a_lost_run_of_events_is_replayed(client: zcoord.Client) -> None:
    with client.subscribe([""]) as sub:
        client.session_create(title="gap")
        first = sub.wait_for(lambda e: e["topic"] == "session.update", timeout=5)
        # Pretend the events since `first` were never received: the next one shows a gap.
        sub.sequencer.last_seq = first["seq"] - 1
        client.session_create(title="gap 2")
        seen = []
        while not seen or seen[-1]["topic"] != "session.list" or seen[-1]["seq"] < first["seq"] + 2:
            env = sub.recv(5.0)
            assert env is not None
            seen.append(env)
        seqs = [e["seq"] for e in seen]
        assert seqs == list(range(first["seq"], first["seq"] + len(seqs))), "gap-free, in order"
        assert sub.sequencer.repairs >= 1


def test_lost_tokens_are_replayed_by_index(client: zcoord.Client) -> None:
    s = client.session_create(title="token gap")
    sid = s["id"]
    with client.subscribe([f"llm.token/{sid}", f"llm.end/{sid}"]) as sub:
        client.message_send("a b c d e f", session_id=sid)
        first = sub.wait_for(lambda e: e["topic"] == "llm.token", timeout=5)
        end = sub.wait_for(lambda e: e["topic"] == "llm.end", timeout=5)
    # Feed the turn again to a fresh sequencer with two tokens dropped on the way.
    replay = client.events_replay(first["seq"] - 1, prefixes=[f"llm.token/{sid}"])
    events = [e for e in replay["events"] if e["seq"] <= end["seq"]]
    seq = Sequencer([f"llm.token/{sid}"])
    seq.reset(first["instance_id"], first["seq"] - 1)
    out = []
    for i, env in enumerate(events):
        if i in (1, 2):
            continue
        out += run(seq.process(env), client.call)
    assert [e["payload"]["index"] for e in out] == list(range(len(events)))
    assert seq.repairs == 1


def _fake_replay(error: Exception):  # type: ignore[no-untyped-def]
    def call(method: str, params: dict) -> dict:  # type: ignore[type-arg]
        raise error

    return call


def _env(seq: int, instance: str = "i1", topic: str = "session.update") -> dict:  # type: ignore[type-arg]
    return {"seq": seq, "instance_id": instance, "topic": topic, "timestamp": "", "payload": {}}


def test_unrepairable_gaps_and_new_instances_ask_for_a_resync() -> None:
    seq = Sequencer([""])
    seq.reset("i1", 10)
    assert run(seq.process(_env(9)), _fake_replay(AssertionError())) == []  # old news
    assert run(seq.process(_env(11)), _fake_replay(AssertionError())) == [_env(11)]
    unavailable = zcoord.ReplayUnavailable(-32008, "gone", {"kind": "replay_unavailable", "reason": "evicted"})
    with pytest.raises(zcoord.GapUnrepairable, match="evicted"):
        run(seq.process(_env(14)), _fake_replay(unavailable))
    with pytest.raises(zcoord.InstanceChanged):
        run(seq.process(_env(1, "i2")), _fake_replay(AssertionError()))
    seq.reset("i2", 0)
    # Events still buffered from the old instance are dropped after the resync.
    assert run(seq.process(_env(12, "i1")), _fake_replay(AssertionError())) == []
    # Our own welcome above the stream is a gap too.
    seq.last_seq = 3
    with pytest.raises(zcoord.GapUnrepairable):
        run(seq.welcomed("i2", 5), _fake_replay(zcoord.Timeout("no reply")))


async def test_async_welcome_and_tokens(aclient: AsyncClient) -> None:
    s = await aclient.session_create(title="async tokens")
    sid = s["id"]
    sub = await aclient.subscribe([f"llm.token/{sid}", f"llm.end/{sid}"])
    try:
        assert sub.welcome is not None
        await aclient.message_send("async words", session_id=sid)
        text = ""
        async for env in sub.events(idle=5.0):
            if env["topic"] == "llm.end":
                break
            text += env["payload"]["token"]
        assert text == "echo: async words"
    finally:
        sub.close()
