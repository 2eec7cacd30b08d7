"""Direct messages and requests: ``DirectMessage``, ``Inbox`` and ``Server``."""

import inspect
from types import TracebackType
from typing import Any, Awaitable, Callable, Iterator, Optional, Set, Type, Union

from . import _loops
from ._ffi import c_str, check, ffi, lib
from ._handle import NativeHandle
from ._stream import Stream
from .errors import InvalidArgumentError
from .events import logger
from .ids import AgentId

__all__ = ["DirectMessage", "Handler", "Inbox", "Reply", "Server"]

Reply = Union[bytes, bytearray, memoryview]
"""What a request is answered with: bytes, or an object that exposes them."""


class DirectMessage(NativeHandle):
    """A message or request another agent sent to this one, as an ``Inbox`` yields it.

    The sender is proven by the direct connection's handshake. A request (``is_request``)
    waits for one answer: ``reply(payload)`` or ``reply_error(reason)``. Both are plain
    (synchronous) calls because they never block: the answer is handed to the connection's
    task, which sends it. A request that is never answered is refused when this object is
    garbage-collected (the requester gets ``RemoteError``), or when its timeout passes first,
    so answer every request.
    """

    __slots__ = ("payload", "request_id", "sender", "timestamp")
    _free = lib.x0x_direct_message_free

    payload: bytes
    """The bytes the sender sent."""
    sender: AgentId
    """The agent that sent it."""
    timestamp: int
    """When the sender sent it: milliseconds since the Unix epoch, by the sender's clock."""
    request_id: int
    """The request's id (unique per sender), or 0 for a plain message."""

    def __init__(
        self, ptr: object, payload: bytes, sender: AgentId, timestamp: int, request_id: int
    ) -> None:
        """Wraps an ``X0xDirectMessage *``; ``Inbox`` makes these."""
        super().__init__(ptr)
        self.payload = payload
        self.sender = sender
        self.timestamp = timestamp
        self.request_id = request_id
        if not request_id:
            self._release()  # nothing to answer: the native message is not needed any more

    @property
    def is_request(self) -> bool:
        """Whether the sender waits for a reply."""
        return self.request_id != 0

    def _answerable(self) -> Any:
        if not self.is_request:
            raise InvalidArgumentError(
                "this message is not a request: there is nothing to reply to"
            )
        if self._ptr is None:
            raise InvalidArgumentError("this request was answered already")
        return self._ptr

    def _answered(self, status: int) -> bool:
        if status == lib.X0X_CANCELLED:
            self._release()
            return False
        check(status)
        self._release()
        return True

    def reply(self, payload: Reply) -> bool:
        """Answer the request with ``payload`` (at most 256 KiB): the requester's
        ``Agent.request`` returns these bytes.

        Returns True once the reply is on its way, False when the requester stopped waiting
        (it cancelled, timed out or left: nobody reads the reply). Raises
        ``InvalidArgumentError`` (a ``ValueError``) for a plain message, a request answered
        already, or a payload over the limit (then the request can still be answered).
        """
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload must be bytes-like, not {type(payload).__name__}")
        ptr = self._answerable()
        data = ffi.from_buffer(payload)
        return self._answered(lib.x0x_direct_message_reply(ptr, data, len(data)))

    def reply_error(self, reason: str) -> bool:
        """Answer the request with a failure: the requester's ``Agent.request`` raises
        ``RemoteError`` with ``reason`` (cut to 1,024 bytes of UTF-8; a NUL becomes U+FFFD).

        Returns and raises as ``reply``.
        """
        ptr = self._answerable()
        text = c_str(reason, "reason").replace(b"\0", "\ufffd".encode())
        return self._answered(lib.x0x_direct_message_reply_error(ptr, text))

    def __repr__(self) -> str:
        kind = f"request {self.request_id}" if self.request_id else "message"
        return (
            f"<DirectMessage {kind} from {self.sender.to_hex()[:16]}…, {len(self.payload)} bytes>"
        )


Handler = Callable[[DirectMessage], Union[Awaitable[Optional[Reply]], Optional[Reply]]]
"""``Agent.serve``'s handler: an ``async def`` (or a plain function) taking a ``DirectMessage``
and returning the reply's bytes (ignored for plain messages, which may return ``None``)."""


class Inbox(Stream[DirectMessage]):
    """The direct messages and requests other agents send this agent, as an async iterator
    (``Agent.inbox``).

    One inbox per agent at a time; while none is open, senders get ``RemoteError``. Unread
    messages wait in a bounded queue (``capacity``); when it is full the oldest is dropped
    (a dropped request is refused) and counted in ``dropped``. ``close()``, ``async with`` or
    leaving ``async for`` closes it: senders are refused from then on, and what was not read
    yet is discarded (requests among it are refused). Cancelling a pending ``__anext__`` loses
    no message.
    """

    __slots__ = ("_data", "_id", "_len", "_u64")
    _free = lib.x0x_inbox_free
    _try_next = lib.x0x_inbox_try_next
    _next = lib.x0x_inbox_next
    _dropped = lib.x0x_inbox_dropped
    _batch_free = lib.x0x_direct_message_batch_free
    _batch_type = "X0xDirectMessageBatch"

    def __init__(self, ptr: object) -> None:
        """Wraps an ``X0xInbox *``; use ``Agent.inbox`` instead."""
        super().__init__(ptr)
        # Out-parameters of the accessors, allocated once.
        self._data = ffi.new("const uint8_t **")
        self._len = ffi.new("size_t *")
        self._id = ffi.new("X0xId *")
        self._u64 = ffi.new("uint64_t *")

    @property
    def dropped(self) -> int:
        """Messages lost because the inbox was full (oldest dropped first; a dropped request
        is refused)."""
        return self._dropped_count()

    def _message(self, ptr: object) -> DirectMessage:
        try:
            check(lib.x0x_direct_message_payload(ptr, self._data, self._len))
            length = self._len[0]
            payload = ffi.buffer(self._data[0], length)[:] if length else b""
            check(lib.x0x_direct_message_sender(ptr, self._id))
            sender = self._sender(self._id.bytes)
            check(lib.x0x_direct_message_timestamp_ms(ptr, self._u64))
            timestamp = int(self._u64[0])
            check(lib.x0x_direct_message_request_id(ptr, self._u64))
        except BaseException:
            lib.x0x_direct_message_free(ptr)
            raise
        return DirectMessage(ptr, payload, sender, timestamp, int(self._u64[0]))

    def _unpack(self, batch: Any) -> Iterator[DirectMessage]:
        for i in range(lib.x0x_direct_message_batch_len(batch)):
            ptr = lib.x0x_direct_message_batch_take(batch, i)
            if ptr != ffi.NULL:
                yield self._message(ptr)

    def close(self) -> None:
        """Close the inbox (idempotent): senders are refused from now on, what was not read
        yet is discarded (requests among it are refused), and the agent may open another
        inbox. A pending ``__anext__`` ends with ``StopAsyncIteration``."""
        while self._buffer:
            self._buffer.popleft()._release()  # refused now, not when collected
        super().close()

    def __repr__(self) -> str:
        return f"<Inbox{' closed' if self._ptr is None else ''}>"


def _describe(error: BaseException) -> str:
    """What a requester is told about a handler's exception: ``"ValueError: bad input"``."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Server:
    """Answers this agent's direct requests with a handler (``Agent.serve``), each in a task
    of its own, until closed.

    Modelled on ``asyncio.Server``: it serves from the moment ``Agent.serve`` returns;
    ``close()`` stops taking messages and ``await wait_closed()`` waits for the handlers still
    running; ``async with`` does both on the way out. It owns the agent's inbox meanwhile.

    What a requester gets: the bytes the handler returns, or ``RemoteError`` with
    ``"ExceptionType: message"`` when the handler raises (the traceback stays here, logged to
    logger ``"x0x"`` at debug level); a handler that returns something other than bytes is
    refused as a ``TypeError`` (and logged as an error). A handler may also answer by itself
    (``message.reply``); then what it returns is ignored. Plain messages (``send``) go to the
    handler too; its result is ignored and its exceptions are logged.
    """

    __slots__ = ("_handler", "_inbox", "_reader", "_tasks")

    def __init__(self, inbox: Inbox, handler: Handler) -> None:
        """Serves ``inbox`` with ``handler``; use ``Agent.serve`` instead."""
        self._inbox = inbox
        self._handler = handler
        self._tasks: Set[_loops.Task] = set()
        self._reader = _loops.spawn(self._read, what="the direct message server")

    @property
    def closed(self) -> bool:
        """Whether the server stopped taking messages (``close()``, or its agent closed)."""
        return self._inbox.closed or self._reader.done()

    @property
    def dropped(self) -> int:
        """Messages its inbox lost because it was full (``Inbox.dropped``); 0 once closed."""
        return 0 if self._inbox.closed else self._inbox.dropped

    async def _read(self) -> None:
        async for message in self._inbox:
            task = _loops.spawn(
                self._answer,
                message,
                what="a direct message handler task",
                on_done=self._tasks.discard,
            )
            if not task.done():
                self._tasks.add(task)  # keep a reference until it finishes

    async def _answer(self, message: DirectMessage) -> None:
        try:
            result = self._handler(message)
            if inspect.isawaitable(result):
                result = await result
        except _loops.cancelled_class():
            self._refuse(message, "the handler was cancelled")
            raise
        except Exception as e:
            if message.is_request:
                logger.debug("x0x: the direct message handler raised", exc_info=True)
                self._refuse(message, _describe(e))
            else:
                logger.exception("x0x: the direct message handler %r raised", self._handler)
            return
        if not message.is_request or message.closed:  # a plain message, or answered by the handler
            return
        if not isinstance(result, (bytes, bytearray, memoryview)):
            logger.error(
                "x0x: the direct message handler %r returned %s, not bytes",
                self._handler,
                type(result).__name__,
            )
            self._refuse(message, f"TypeError: the handler returned {type(result).__name__}")
            return
        try:
            message.reply(result)
        except InvalidArgumentError as e:  # e.g. a reply over 256 KiB
            logger.error("x0x: cannot send the handler's reply: %s", e)
            self._refuse(message, _describe(e))

    @staticmethod
    def _refuse(message: DirectMessage, reason: str) -> None:
        if message.is_request and not message.closed:
            message.reply_error(reason)

    def close(self) -> None:
        """Stop taking messages (idempotent): the inbox closes, so senders get
        ``RemoteError`` from now on and requests not handed to the handler yet are refused.
        Handlers already running go on, and their replies are still sent."""
        self._inbox.close()

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every handler it started has finished."""
        await self._reader.wait()
        while self._tasks:
            await next(iter(self._tasks)).wait()

    async def __aenter__(self) -> "Server":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
        await self.wait_closed()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "serving"
        return f"<Server {state}, {len(self._tasks)} handler(s) running>"
