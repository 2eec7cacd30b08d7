"""``Subscription`` and ``Message``: receiving what agents publish."""

from typing import Any, Iterator, NamedTuple

from ._ffi import ffi, lib
from ._stream import Stream
from .ids import AgentId

__all__ = ["Message", "Subscription"]


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


class Subscription(Stream[Message]):
    """Messages published on one topic, as an async iterator.

    Each subscription gets every message (several subscriptions to a topic each get their own
    copy). Unread messages wait in a bounded queue (``capacity``); when it is full the oldest is
    dropped and counted in ``dropped``. ``close()``, ``async with`` or breaking out of
    ``async for`` unsubscribes. Cancelling a pending ``__anext__`` loses no message and keeps
    the subscription open.
    """

    __slots__ = ("topic",)
    _free = lib.x0x_subscription_free
    _try_next = lib.x0x_subscription_try_next
    _next = lib.x0x_subscription_next
    _dropped = lib.x0x_subscription_dropped
    _batch_free = lib.x0x_message_batch_free
    _batch_type = "X0xMessageBatch"

    def __init__(self, ptr: object, topic: str) -> None:
        """Wraps an ``X0xSubscription *``; use ``Agent.subscribe`` instead."""
        super().__init__(ptr)
        self.topic = topic
        """The topic this subscription receives."""

    @property
    def dropped(self) -> int:
        """Messages lost because this subscription's queue was full (oldest dropped first)."""
        return self._dropped_count()

    def _unpack(self, batch: Any) -> Iterator[Message]:
        for i in range(lib.x0x_message_batch_len(batch)):
            view = lib.x0x_message_batch_get(batch, i)
            payload = ffi.buffer(view.payload, view.payload_len)[:] if view.payload_len else b""
            sender = self._sender(view.sender.bytes)
            yield Message(payload, sender, int(view.timestamp_ms), self.topic, int(view.hops))

    def close(self) -> None:
        """Unsubscribe. Idempotent; a pending ``__anext__`` ends with ``StopAsyncIteration``."""
        super().close()

    def __repr__(self) -> str:
        state = " closed" if self._ptr is None else ""
        return f"<Subscription {self.topic!r}{state}>"
