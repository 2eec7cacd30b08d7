"""``Stream``: the batch-pulling async iterator behind ``Subscription`` and ``Inbox``."""

import collections
from types import TracebackType
from typing import (
    Any,
    AsyncIterator,
    Callable,
    ClassVar,
    Deque,
    Dict,
    Generic,
    Iterator,
    Optional,
    Type,
    TypeVar,
)

from ._ffi import call_async, check, ffi, lib
from ._handle import NativeHandle
from .errors import ClosedError
from .ids import AgentId

# Items taken from the library per crossing: one call and one wake-up serve a whole burst.
_BATCH = 256

T = TypeVar("T")
S = TypeVar("S", bound="Stream[Any]")


class Stream(NativeHandle, Generic[T]):
    """Owns a pulled queue handle and yields its items, taking them from the library a batch
    at a time. Subclasses name the C functions and turn a batch into items (``_unpack``)."""

    __slots__ = ("_buffer", "_senders")
    # `type(self)._x`, as for `_free`: the C functions, and the C name of the batch type.
    _try_next: ClassVar[Callable[[Any, int, Any], int]]
    _next: ClassVar[Callable[[Any, int, Any, Any, Any], int]]
    _dropped: ClassVar[Callable[[Any, Any], int]]
    _batch_free: ClassVar[Callable[[Any], None]]
    _batch_type: ClassVar[str]

    def __init__(self, ptr: object) -> None:
        super().__init__(ptr)
        self._buffer: Deque[T] = collections.deque()
        # Few distinct senders: reuse their AgentId objects.
        self._senders: Dict[bytes, AgentId] = {}

    def _sender(self, id_bytes: Any) -> AgentId:
        key = ffi.buffer(id_bytes)[:]
        sender = self._senders.get(key)
        if sender is None:
            sender = self._senders[key] = AgentId(key)
        return sender

    def _dropped_count(self) -> int:
        out = ffi.new("uint64_t *")
        check(type(self)._dropped(self._handle(), out))
        return int(out[0])

    def _unpack(self, batch: Any) -> Iterator[T]:
        """The batch's items, in order; the caller frees the batch."""
        raise NotImplementedError

    def _fill(self, batch: Any) -> None:
        try:
            for item in self._unpack(batch):
                self._buffer.append(item)
        finally:
            type(self)._batch_free(batch)

    async def __anext__(self) -> T:
        """The next message; waits for one. ``StopAsyncIteration`` once closed."""
        if self._buffer:
            return self._buffer.popleft()
        if self._ptr is None:
            raise StopAsyncIteration
        handle = self._ptr
        cls = type(self)
        out = ffi.new(f"{cls._batch_type} **")
        status = cls._try_next(handle, _BATCH, out)
        if status == lib.X0X_CLOSED:
            raise StopAsyncIteration
        check(status)
        batch = out[0]
        if batch == ffi.NULL:
            try:
                result = await call_async(
                    lambda cb, ud, op: cls._next(handle, _BATCH, cb, ud, op),
                    release=cls._batch_free,
                )
            except ClosedError:
                raise StopAsyncIteration from None
            batch = ffi.cast(f"{cls._batch_type} *", result)
        self._fill(batch)
        if self._ptr is None:  # closed while the batch came: it is not read any more
            self.close()
            raise StopAsyncIteration
        return self._buffer.popleft()

    def __aiter__(self) -> AsyncIterator[T]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[T]:
        # A generator, so that leaving an ``async for`` early (break, exception) closes.
        try:
            while True:
                try:
                    item = await self.__anext__()
                except StopAsyncIteration:
                    return
                yield item
        finally:
            self.close()

    def close(self) -> None:
        """Discards what was not read and releases the handle."""
        self._buffer.clear()
        self._release()

    async def aclose(self) -> None:
        """Same as ``close()``, for ``contextlib.aclosing`` and friends."""
        self.close()

    async def __aenter__(self: S) -> S:
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()
