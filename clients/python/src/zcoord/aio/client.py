"""The asyncio client (pyzmq's `zmq.asyncio`): the same calls as client.Client, awaited. Calls
may run concurrently: one reader task hands each reply to the call awaiting its id."""

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence, Union, cast

import zmq
import zmq.asyncio

from .. import protocol as p
from ..client import DEFAULT_TIMEOUT
from ..discovery import Target, resolve
from ..errors import ConnectionFailed, ProtocolError, Timeout
from ..jsonrpc import Ids, drop_none, encode_request, reply_id, result_of
from ..protocol import PROTOCOL_VERSION
from ..security import CurveKeys

if TYPE_CHECKING:
    from .subscriber import AsyncSubscription


class AsyncClient:
    def __init__(
        self,
        target: Target,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        context: Optional[zmq.asyncio.Context] = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._ctx = context or zmq.asyncio.Context.instance()
        self._ids = Ids()
        self._sock = self._ctx.socket(zmq.DEALER)
        self._sock.setsockopt(zmq.LINGER, 0)
        try:
            target.credentials.apply(self._sock, target.rpc)
            self._sock.connect(target.rpc)
        except zmq.ZMQError as e:
            self._sock.close()
            raise ConnectionFailed(f"cannot connect to {target.rpc}: {e}") from e
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: Optional[asyncio.Task[None]] = None
        self.last_request_at = 0.0

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
    ) -> "AsyncClient":
        target = resolve(
            rpc=rpc, pub=pub, data_dir=data_dir, workspace=workspace, secret=secret, curve=curve
        )
        return cls(target, timeout=timeout)

    @property
    def context(self) -> zmq.asyncio.Context:
        return self._ctx

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
        self._sock.close(0)

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        while True:
            frames = await self._sock.recv_multipart()
            try:
                rid, body = reply_id(frames)
            except ProtocolError:
                continue
            future = self._waiting.pop(rid, None) if isinstance(rid, str) else None
            if future is not None and not future.done():
                future.set_result(body)

    async def call(
        self, method: str, params: Optional[dict[str, Any]] = None, *, timeout: Optional[float] = None
    ) -> Any:
        """One call; the result, or the RpcError subclass of the error reply; Timeout."""
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read())
        request_id = self._ids.next()
        wait = self.timeout if timeout is None else timeout
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        try:
            await self._sock.send(encode_request(method, params, request_id))
            self.last_request_at = time.monotonic()
            body = await asyncio.wait_for(future, wait)
        except asyncio.TimeoutError:
            raise Timeout(f"{method}: no reply within {wait:g} s (is the server running?)") from None
        finally:
            self._waiting.pop(request_id, None)
        return result_of(body)

    async def subscribe(
        self,
        prefixes: Sequence[str] = ("",),
        *,
        timeout: Optional[float] = None,
        repair: bool = True,
        rcvhwm: int = 100_000,
    ) -> "AsyncSubscription":
        """A SUB on `prefixes`, live (welcomed) before this returns."""
        from .subscriber import AsyncSubscription

        return await AsyncSubscription.open(
            self, prefixes, timeout=timeout, repair=repair, rcvhwm=rcvhwm
        )

    async def keep_present(self, every: float = 5.0) -> None:
        if time.monotonic() - self.last_request_at >= every:
            await self.instance_ping()

    # --- the methods of PROTOCOL §5, as in client.Client ---------------------------------

    async def instance_ping(self) -> p.InstancePingResult:
        return cast(p.InstancePingResult, await self.call("instance.ping"))

    async def instance_info(self) -> p.InstanceInfoResult:
        return cast(p.InstanceInfoResult, await self.call("instance.info"))

    async def state_sync(self, project_id: Optional[str] = None) -> p.StateSyncResult:
        params = drop_none(project_id=project_id)
        return cast(p.StateSyncResult, await self.call("state.sync", params))

    async def events_replay(
        self,
        after_seq: int,
        prefixes: Optional[list[str]] = None,
        limit: Optional[int] = None,
        instance_id: Optional[str] = None,
    ) -> p.EventsReplayResult:
        params = drop_none(
            after_seq=after_seq, prefixes=prefixes, limit=limit, instance_id=instance_id
        )
        return cast(p.EventsReplayResult, await self.call("events.replay", params))

    async def session_list(self) -> p.SessionListResult:
        return cast(p.SessionListResult, await self.call("session.list"))

    async def session_get(self, session_id: str) -> p.SessionPayload:
        return cast(p.SessionPayload, await self.call("session.get", {"session_id": session_id}))

    async def session_create(self, title: Optional[str] = None) -> p.SessionPayload:
        return cast(p.SessionPayload, await self.call("session.create", drop_none(title=title)))

    async def session_delete(self, session_id: str) -> p.OkResult:
        return cast(p.OkResult, await self.call("session.delete", {"session_id": session_id}))

    async def session_activate(self, session_id: str) -> p.OkResult:
        return cast(p.OkResult, await self.call("session.activate", {"session_id": session_id}))

    async def session_interrupt(
        self, session_id: str, clear_queue: Optional[bool] = None
    ) -> p.SessionInterruptResult:
        params = drop_none(session_id=session_id, clear_queue=clear_queue)
        return cast(p.SessionInterruptResult, await self.call("session.interrupt", params))

    async def session_configure(
        self, session_id: str, **settings: Optional[str]
    ) -> p.SessionPayload:
        params: dict[str, Any] = {"session_id": session_id, **settings}
        return cast(p.SessionPayload, await self.call("session.configure", params))

    async def model_list(self) -> p.ModelListResult:
        return cast(p.ModelListResult, await self.call("model.list"))

    async def message_send(
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
        return cast(p.MessageSendResult, await self.call("message.send", params))

    async def message_list(
        self,
        session_id: str,
        limit: Optional[int] = None,
        before: Optional[str] = None,
        after: Optional[str] = None,
    ) -> p.MessageListResult:
        params = drop_none(session_id=session_id, limit=limit, before=before, after=after)
        return cast(p.MessageListResult, await self.call("message.list", params))

    async def message_get(self, session_id: str, message_id: str) -> p.MessagePayload:
        params = {"session_id": session_id, "message_id": message_id}
        return cast(p.MessagePayload, await self.call("message.get", params))

    async def history(self, session_id: str) -> list[p.MessagePayload]:
        from ..effects import run_async
        from ..paging import history_program

        return await run_async(history_program(session_id), self.call)

    async def hitl_list(self, session_id: Optional[str] = None) -> p.HitlListResult:
        params = drop_none(session_id=session_id)
        return cast(p.HitlListResult, await self.call("hitl.list", params))

    async def hitl_respond(
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
        return cast(p.HitlRespondResult, await self.call("hitl.respond", params))

    async def client_hello(
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
        return cast(p.ClientHelloResult, await self.call("client.hello", params))

    async def client_list(self) -> p.ClientListResult:
        return cast(p.ClientListResult, await self.call("client.list"))

    async def client_goodbye(self) -> p.OkResult:
        return cast(p.OkResult, await self.call("client.goodbye"))

    async def tool_claim(self, call_id: str, turn_id: Optional[str] = None) -> p.ToolClaimResult:
        params = drop_none(call_id=call_id, turn_id=turn_id)
        return cast(p.ToolClaimResult, await self.call("tool.claim", params))

    async def tool_result(
        self,
        call_id: str,
        result: Any,
        turn_id: Optional[str] = None,
        is_error: Optional[bool] = None,
    ) -> p.OkResult:
        params = drop_none(call_id=call_id, turn_id=turn_id, result=result, is_error=is_error)
        return cast(p.OkResult, await self.call("tool.result", params))
