"""The blocking client: a DEALER for JSON-RPC calls (each under a timeout, matched by id) and a
typed method for every method of PROTOCOL §5. Events: `subscribe` (subscriber.py).
One thread at a time: a libzmq socket belongs to one thread."""

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union, cast

import zmq

from . import protocol as p
from .discovery import Target, resolve
from .errors import ConnectionFailed, Timeout
from .jsonrpc import Ids, drop_none, encode_request, reply_id, result_of
from .protocol import PROTOCOL_VERSION
from .security import CurveKeys

if TYPE_CHECKING:
    from .subscriber import Subscription

DEFAULT_TIMEOUT = 3.0  # seconds, as the CLI's --timeout-ms 3000


class Client:
    """Calls over one long-lived DEALER; libzmq reconnects it by itself after a restart."""

    def __init__(
        self,
        target: Target,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        context: Optional[zmq.Context] = None,  # type: ignore[type-arg]
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._ctx = context or zmq.Context.instance()
        self._ids = Ids()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            target.credentials.apply(self._sock, target.rpc)
            self._sock.connect(target.rpc)
        except zmq.ZMQError as e:
            self._sock.close()
            raise ConnectionFailed(f"cannot connect to {target.rpc}: {e}") from e
        self.last_request_at = 0.0  # monotonic: presence is kept by any request (§5)

    @classmethod
    def connect(
        cls,
        *,
        rpc: Optional[str] = None,
        pub: Optional[str] = None,
        data_dir: Union[str, Path, None] = None,
        workspace: Union[str, Path, None] = None,
        secret: Optional[str] = None,
        curve: Union[CurveKeys, tuple[str, str], None] = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> "Client":
        """Finds the server (discovery.resolve) and connects."""
        target = resolve(
            rpc=rpc, pub=pub, data_dir=data_dir, workspace=workspace, secret=secret, curve=curve
        )
        return cls(target, timeout=timeout)

    def close(self) -> None:
        self._sock.close(0)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def context(self) -> "zmq.Context[Any]":
        return self._ctx

    def call(
        self, method: str, params: Optional[dict[str, Any]] = None, *, timeout: Optional[float] = None
    ) -> Any:
        """One call; the result, or the RpcError subclass of the error reply; Timeout."""
        request_id = self._ids.next()
        wait = self.timeout if timeout is None else timeout
        self._sock.send(encode_request(method, params, request_id))
        self.last_request_at = time.monotonic()
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not self._sock.poll(max(1, int(left * 1000)), zmq.POLLIN):
                raise Timeout(f"{method}: no reply within {wait:g} s (is the server running?)")
            rid, body = reply_id(self._sock.recv_multipart())
            if rid == request_id:
                return result_of(body)

    def subscribe(
        self,
        prefixes: Sequence[str] = ("",),
        *,
        timeout: Optional[float] = None,
        repair: bool = True,
        rcvhwm: int = 100_000,
    ) -> "Subscription":
        """A SUB on `prefixes`, live (welcomed) before this returns; see Subscription."""
        from .subscriber import Subscription

        return Subscription(self, prefixes, timeout=timeout, repair=repair, rcvhwm=rcvhwm)

    # --- instance ------------------------------------------------------------------------

    def instance_ping(self) -> p.InstancePingResult:
        return cast(p.InstancePingResult, self.call("instance.ping"))

    def instance_info(self) -> p.InstanceInfoResult:
        return cast(p.InstanceInfoResult, self.call("instance.info"))

    def state_sync(self, project_id: Optional[str] = None) -> p.StateSyncResult:
        return cast(p.StateSyncResult, self.call("state.sync", drop_none(project_id=project_id)))

    def events_replay(
        self,
        after_seq: int,
        prefixes: Optional[list[str]] = None,
        limit: Optional[int] = None,
        instance_id: Optional[str] = None,
    ) -> p.EventsReplayResult:
        params = drop_none(
            after_seq=after_seq, prefixes=prefixes, limit=limit, instance_id=instance_id
        )
        return cast(p.EventsReplayResult, self.call("events.replay", params))

    # --- sessions ------------------------------------------------------------------------

    def session_list(self) -> p.SessionListResult:
        return cast(p.SessionListResult, self.call("session.list"))

    def session_get(self, session_id: str) -> p.SessionPayload:
        return cast(p.SessionPayload, self.call("session.get", {"session_id": session_id}))

    def session_create(self, title: Optional[str] = None) -> p.SessionPayload:
        return cast(p.SessionPayload, self.call("session.create", drop_none(title=title)))

    def session_delete(self, session_id: str) -> p.OkResult:
        return cast(p.OkResult, self.call("session.delete", {"session_id": session_id}))

    def session_activate(self, session_id: str) -> p.OkResult:
        return cast(p.OkResult, self.call("session.activate", {"session_id": session_id}))

    def session_interrupt(
        self, session_id: str, clear_queue: Optional[bool] = None
    ) -> p.SessionInterruptResult:
        params = drop_none(session_id=session_id, clear_queue=clear_queue)
        return cast(p.SessionInterruptResult, self.call("session.interrupt", params))

    def session_configure(self, session_id: str, **settings: Optional[str]) -> p.SessionPayload:
        """`model=` / `system_prompt=`: a string sets, `None` resets, leaving it out keeps."""
        params: dict[str, Any] = {"session_id": session_id, **settings}
        return cast(p.SessionPayload, self.call("session.configure", params))

    def model_list(self) -> p.ModelListResult:
        return cast(p.ModelListResult, self.call("model.list"))

    # --- messages ------------------------------------------------------------------------

    def message_send(
        self,
        content: str,
        session_id: Optional[str] = None,
        request_id: Optional[str] = None,
        model: Optional[str] = None,
        when_busy: Optional[p.WhenBusy] = None,
    ) -> p.MessageSendResult:
        params = drop_none(
            content=content,
            session_id=session_id,
            request_id=request_id,
            model=model,
            when_busy=when_busy,
        )
        return cast(p.MessageSendResult, self.call("message.send", params))

    def message_list(
        self,
        session_id: str,
        limit: Optional[int] = None,
        before: Optional[str] = None,
        after: Optional[str] = None,
    ) -> p.MessageListResult:
        params = drop_none(session_id=session_id, limit=limit, before=before, after=after)
        return cast(p.MessageListResult, self.call("message.list", params))

    def message_get(self, session_id: str, message_id: str) -> p.MessagePayload:
        params = {"session_id": session_id, "message_id": message_id}
        return cast(p.MessagePayload, self.call("message.get", params))

    def history(self, session_id: str) -> list[p.MessagePayload]:
        """A session's whole history, oldest first (pages backwards while `has_more`)."""
        from .paging import history

        return history(self.message_list, session_id)

    # --- human in the loop ---------------------------------------------------------------

    def hitl_list(self, session_id: Optional[str] = None) -> p.HitlListResult:
        return cast(p.HitlListResult, self.call("hitl.list", drop_none(session_id=session_id)))

    def hitl_respond(
        self,
        id: str,
        decision: Optional[p.Decision] = None,
        answer: Optional[str] = None,
        reason: Optional[str] = None,
        client_id: Optional[str] = None,
    ) -> p.HitlRespondResult:
        params = drop_none(
            id=id, decision=decision, answer=answer, reason=reason, client_id=client_id
        )
        return cast(p.HitlRespondResult, self.call("hitl.respond", params))

    # --- clients as peers, client-run tools ----------------------------------------------

    def client_hello(
        self,
        client_id: str,
        name: str,
        version: Optional[str] = None,
        tools: Optional[list[p.ClientTool]] = None,
        capabilities: Optional[dict[str, Any]] = None,
        protocol_versions: Optional[list[int]] = None,
    ) -> p.ClientHelloResult:
        params = drop_none(
            client_id=client_id,
            name=name,
            version=version,
            protocol_versions=protocol_versions or [PROTOCOL_VERSION],
            capabilities=capabilities,
            tools=tools,
        )
        return cast(p.ClientHelloResult, self.call("client.hello", params))

    def client_list(self) -> p.ClientListResult:
        return cast(p.ClientListResult, self.call("client.list"))

    def client_goodbye(self) -> p.OkResult:
        return cast(p.OkResult, self.call("client.goodbye"))

    def tool_claim(self, call_id: str, turn_id: Optional[str] = None) -> p.ToolClaimResult:
        params = drop_none(call_id=call_id, turn_id=turn_id)
        return cast(p.ToolClaimResult, self.call("tool.claim", params))

    def tool_result(
        self,
        call_id: str,
        result: Any,
        turn_id: Optional[str] = None,
        is_error: Optional[bool] = None,
    ) -> p.OkResult:
        params = drop_none(call_id=call_id, turn_id=turn_id, result=result, is_error=is_error)
        return cast(p.OkResult, self.call("tool.result", params))

    def keep_present(self, every: float = 5.0) -> None:
        """Pings when no request went out for `every` seconds: a client that said hello stays
        present while it sends anything at least every `client_timeout_secs` (15 by default)."""
        if time.monotonic() - self.last_request_at >= every:
            self.instance_ping()

