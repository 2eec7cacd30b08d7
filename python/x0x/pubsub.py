"""``Subscription`` and ``Message``: receiving what agents publish."""

import collections
from types import TracebackType
from typing import AsyncIterator, Deque, Dict, NamedTuple, Optional, Type

from ._ffi import call_async, check, ffi, lib
from ._handle import NativeHandle
from .errors import ClosedError
from .ids import AgentId

__all__ = ["Message", "Subscription"]

# Messages taken from the library per crossing: one call and one wake-up serve a whole burst.
_BATCH = 256


class Message(NamedTuple):
    """A message received on a topic. Its signature was verified before delivery."""

    payload: bytes
    """The bytes that were published."""
    sender: AgentId
    """The agent that published (and signed) it."""
    timestamp: int
    """When the sender published it: milliseconds since the Unix epoch, by the sender's clock."""
    topic: str
    """The topic it was published on."""
    hops: int
    """Links it crossed from the publisher to this agent: 0 for the agent's own messages, 1 from
    a direct neighbour, more when relayed through the overlay."""


class Subscription(NativeHandle):
    """Messages published on one topic, as an async iterator.

    Each subscription gets every message (several subscriptions to a topic each get their own
    copy). Unread messages wait in a bounded queue (``capacity``); when it is full the oldest is
    dropped and counted in ``dropped``. ``close()``, ``async with`` or breaking out of
    ``async for`` unsubscribes. Cancelling a pending ``__anext__`` loses no message and keeps
    the subscription open.
    """

    __slots__ = ("_buffer", "_senders", "topic")
    _free = lib.x0x_subscription_free

    def __init__(self, ptr: object, topic: str) -> None:
        """Wraps an ``X0xSubscription *``; use ``Agent.subscribe`` instead."""
        super().__init__(ptr)
        self.topic = topic
        """The topic this subscription receives."""
        self._buffer: Deque[Message] = collections.deque()
        # Few distinct senders per topic: reuse their AgentId objects.
        self._senders: Dict[bytes, AgentId] = {}

    @property
    def dropped(self) -> int:
        """Messages lost because this subscription's queue was full (oldest dropped first)."""
        out = ffi.new("uint64_t *")
        check(lib.x0x_subscription_dropped(self._handle(), out))
        return int(out[0])

    def _unpack(self, batch: object) -> None:
        try:
            for i in range(lib.x0x_message_batch_len(batch)):
                view = lib.x0x_message_batch_get(batch, i)
                payload = ffi.buffer(view.payload, view.payload_len)[:] if view.payload_len else b""
                key = ffi.buffer(view.sender.bytes)[:]
                sender = self._senders.get(key)
                if sender is None:
                    sender = self._senders[key] = AgentId(key)
                self._buffer.append(
                    Message(payload, sender, int(view.timestamp_ms), self.topic, int(view.hops))
                )
        finally:
            lib.x0x_message_batch_free(batch)

    async def __anext__(self) -> Message:
        """The next message; waits for one. ``StopAsyncIteration`` once closed."""
        if self._buffer:
            return self._buffer.popleft()
        if self._ptr is None:
            raise StopAsyncIteration
        sub = self._ptr
        out = ffi.new("X0xMessageBatch **")
        status = lib.x0x_subscription_try_next(sub, _BATCH, out)
        if status == lib.X0X_CLOSED:
            raise StopAsyncIteration
        check(status)
        batch = out[0]
        if batch == ffi.NULL:
            try:
                result = await call_async(
                    lambda cb, ud, op: lib.x0x_subscription_next(sub, _BATCH, cb, ud, op),
                    release=lib.x0x_message_batch_free,
                )
            except ClosedError:
                raise StopAsyncIteration from None
            batch = ffi.cast("X0xMessageBatch *", result)
        self._unpack(batch)
        return self._buffer.popleft()

    def __aiter__(self) -> AsyncIterator[Message]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Message]:
        # A generator, so that leaving an ``async for`` early (break, exception) unsubscribes.
        try:
            while True:
                try:
                    message = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield message
        finally:
            self.close()

    def close(self) -> None:
        """Unsubscribe. Idempotent; a pending ``__anext__`` ends with ``StopAsyncIteration``."""
        self._buffer.clear()
        self._release()

    async def aclose(self) -> None:
        """Same as ``close()``, for ``contextlib.aclosing`` and friends."""
        self.close()

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = " closed" if self._ptr is None else ""
        return f"<Subscription {self.topic!r}{state}>"
