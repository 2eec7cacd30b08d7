"""The bridge between the C ABI and the event loop: everything else in the package uses it.

Each event loop gets one native completion queue (``X0xCompletionQueue``) and watches its file
descriptor with ``loop.add_reader``. A pending native operation is attached to the queue with an
integer token; when it settles, the runtime worker that settled it makes the descriptor readable,
and the loop takes the tokens and collects the outcomes with ``x0x_op_wait(op, 0)``: one kernel
wake-up, of the loop itself, and no Python code on any other thread. Cancelling the awaiting task
cancels the native operation; a result that arrives anyway is freed when its token comes.
"""

import asyncio
import atexit
import itertools
import weakref
from typing import Any, Callable, Dict, Optional, Tuple

from ._x0x_cffi import ffi, lib
from .errors import X0xError, error_for

__all__ = ["c_str", "call_async", "check", "ffi", "lib", "take_bytes"]

CData = Any  # cffi pointers have no static type
Release = Callable[[CData], None]


def _decode(text: CData) -> str:
    return "" if text == ffi.NULL else ffi.string(text).decode("utf-8", "replace")


def last_error(status: int) -> X0xError:
    """The exception for a failed synchronous call, with the thread's last error message."""
    return error_for(status, _decode(lib.x0x_last_error_message()))


def check(status: int) -> None:
    """Raises the matching exception unless ``status`` is ``X0X_OK``."""
    if status != lib.X0X_OK:
        raise last_error(status)


def c_str(text: str, what: str) -> bytes:
    """``text`` as the library takes it: UTF-8, with lone surrogates kept, so that the library
    refuses them as invalid UTF-8 (``InvalidArgumentError``) rather than Python failing with
    ``UnicodeEncodeError``. ``what`` names the argument in the ``TypeError`` for a non-str."""
    if not isinstance(text, str):
        raise TypeError(f"{what} must be a str, not {type(text).__name__}")
    return text.encode("utf-8", "surrogatepass")


def take_bytes(fill: Callable[[CData], int]) -> bytes:
    """Calls ``fill(X0xBytes *)`` and returns a copy of the library-owned buffer, then frees it."""
    out = ffi.new("X0xBytes *")
    check(fill(out))
    try:
        return bytes(ffi.buffer(out.data, out.len))
    finally:
        lib.x0x_bytes_free(out)


class _Pending:
    """An operation attached to a queue. ``op`` becomes None once the queue has freed it."""

    __slots__ = ("future", "op", "release")

    def __init__(
        self, op: CData, future: "asyncio.Future[CData]", release: Optional[Release]
    ) -> None:
        self.op: Optional[CData] = op
        self.future = future
        self.release = release


# How many tokens one take collects; a longer backlog takes several, in the same wake-up.
_BATCH = 256


class _LoopQueue:
    """One event loop's completion queue and the operations attached to it. Used only on the
    loop's own thread, so it needs no lock."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        out = ffi.new("X0xCompletionQueue **")
        check(lib.x0x_completion_queue_new(out))
        self._queue = ffi.gc(out[0], lib.x0x_completion_queue_free)
        fd = ffi.new("int32_t *")
        check(lib.x0x_completion_queue_fd(self._queue, fd))
        self.pending: Dict[int, _Pending] = {}
        # Reused by every drain: the loop's thread is the only user.
        self._tokens = ffi.new("uint64_t[]", _BATCH)
        self._count = ffi.new("size_t *")
        self._status = ffi.new("X0xStatus *")
        self._result = ffi.new("void **")
        loop.add_reader(fd[0], self._drain)

    def attach(self, op: CData, entry: _Pending) -> None:
        token = next(_tokens)
        self.pending[token] = entry  # before attaching: the token may be queued at once
        status = lib.x0x_op_then_queue(op, self._queue, token)
        if status != lib.X0X_OK:
            del self.pending[token]
            raise last_error(status)

    def _drain(self) -> None:
        while True:
            lib.x0x_completion_queue_take(self._queue, self._tokens, _BATCH, self._count)
            count = self._count[0]
            for i in range(count):
                entry = self.pending.pop(self._tokens[i], None)
                if entry is not None:
                    self._settle(entry)
            if count < _BATCH:
                return

    def _settle(self, entry: _Pending) -> None:
        op, entry.op = entry.op, None
        lib.x0x_op_wait(op, 0, self._status, self._result)  # settled: returns at once
        status, result = self._status[0], self._result[0]
        message = "" if status == lib.X0X_OK else _decode(lib.x0x_op_error_message(op))
        lib.x0x_op_free(op)
        future = entry.future
        if future.done():  # the awaiting task was cancelled meanwhile
            _release(entry.release, result)
        elif status == lib.X0X_OK:
            future.set_result(result)
        else:
            future.set_exception(error_for(status, message))


_loop_queues: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopQueue]" = (
    weakref.WeakKeyDictionary()
)
_tokens = itertools.count(1)


def _release(release: Optional[Release], result: CData) -> None:
    if release is not None and result != ffi.NULL:
        release(result)


def _collect(op: CData) -> Tuple[bool, CData]:
    """``(True, result)`` if the operation has settled (raising its error if it failed), else
    ``(False, NULL)``."""
    op_status = ffi.new("X0xStatus *")
    result = ffi.new("void **")
    if lib.x0x_op_wait(op, 0, op_status, result) != lib.X0X_OK:
        return False, ffi.NULL
    if op_status[0] != lib.X0X_OK:
        raise error_for(op_status[0], _decode(lib.x0x_op_error_message(op)))
    return True, result[0]


async def call_async(
    start: Callable[[CData, CData, CData], int], release: Optional[Release] = None
) -> CData:
    """Runs a native async operation and returns its result pointer.

    ``start(callback, user_data, op_out)`` calls the ``x0x_*`` function. ``release`` frees a
    result nobody will receive (the caller was cancelled); it is not called on results returned.
    """
    op_out = ffi.new("X0xOp **")
    status = start(ffi.NULL, ffi.NULL, op_out)
    if status != lib.X0X_OK:
        raise last_error(status)
    op = op_out[0]
    try:
        # An operation that finished during the start call is collected right away, without
        # a round trip through the event loop.
        settled, result = _collect(op)
    except BaseException:
        lib.x0x_op_free(op)
        raise
    if settled:
        lib.x0x_op_free(op)
        return result
    return await _await_completion(op, release)


async def _await_completion(op: CData, release: Optional[Release]) -> CData:
    loop = asyncio.get_running_loop()
    queue = _loop_queues.get(loop)
    try:
        if queue is None:
            queue = _loop_queues[loop] = _LoopQueue(loop)
        future: asyncio.Future[CData] = loop.create_future()
        entry = _Pending(op, future, release)
        queue.attach(op, entry)  # the queue frees op from here on
    except BaseException:
        lib.x0x_op_free(op)
        raise
    try:
        return await future
    except asyncio.CancelledError:
        if entry.op is not None:  # not reported yet: it will report CANCELLED (or its result)
            lib.x0x_op_cancel(entry.op)
        # Cancelled after the result was set but before we resumed: nobody else frees it.
        elif future.done() and not future.cancelled() and future.exception() is None:
            _release(release, future.result())
        raise


def pending_count() -> int:
    """How many native operations have not reported back yet (for tests and leak checks)."""
    return sum(len(queue.pending) for queue in list(_loop_queues.values()))


# Log callbacks (_logs.py) into an interpreter that is finalizing can abort it; stop them first.
atexit.register(lib.x0x_shutdown, 1000)
