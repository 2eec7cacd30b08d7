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
from typing import Any, Awaitable, Callable, Dict, Optional, Tuple

from . import _loops
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
    """An operation attached to a queue, and what its awaiting task learns when it reports.

    ``op`` becomes None once the queue has collected the outcome and freed the operation;
    ``abandoned`` is set when the awaiting task stopped waiting (cancelled) before that.
    """

    __slots__ = ("abandoned", "message", "op", "release", "result", "status", "waiter", "wake")

    def __init__(
        self,
        op: CData,
        release: Optional[Release],
        waiter: Any,
        wake: Callable[[Any], None],
    ) -> None:
        self.op: Optional[CData] = op
        self.release = release
        self.waiter = waiter  # an asyncio future or a trio event
        self.wake = wake  # called with the waiter once the outcome is in
        self.abandoned = False
        self.status = lib.X0X_OK
        self.result: CData = ffi.NULL
        self.message = ""

    def outcome(self) -> CData:
        """The result, or raises the operation's error."""
        if self.status != lib.X0X_OK:
            raise error_for(self.status, self.message)
        return self.result

    def abandon(self) -> None:
        """The awaiting task stops waiting: cancel the operation if it has not reported, else
        free its result (nobody will receive it)."""
        self.abandoned = True
        if self.op is not None:
            lib.x0x_op_cancel(self.op)  # it reports CANCELLED (or its result) later
        elif self.status == lib.X0X_OK:
            _release(self.release, self.result)
            self.result = ffi.NULL


# How many tokens one take collects; a longer backlog takes several, in the same wake-up.
_BATCH = 256


class _Queue:
    """One event loop's completion queue and the operations attached to it. Used only on the
    loop's own thread, so it needs no lock. The loop calls ``drain`` when ``fd`` is readable."""

    def __init__(self) -> None:
        out = ffi.new("X0xCompletionQueue **")
        check(lib.x0x_completion_queue_new(out))
        self._queue = ffi.gc(out[0], lib.x0x_completion_queue_free)
        fd = ffi.new("int32_t *")
        check(lib.x0x_completion_queue_fd(self._queue, fd))
        self.fd = int(fd[0])
        self.pending: Dict[int, _Pending] = {}
        # Reused by every drain: the loop's thread is the only user.
        self._tokens = ffi.new("uint64_t[]", _BATCH)
        self._count = ffi.new("size_t *")
        self._status = ffi.new("X0xStatus *")
        self._result = ffi.new("void **")

    def attach(self, op: CData, entry: _Pending) -> None:
        token = next(_tokens)
        self.pending[token] = entry  # before attaching: the token may be queued at once
        status = lib.x0x_op_then_queue(op, self._queue, token)
        if status != lib.X0X_OK:
            del self.pending[token]
            raise last_error(status)

    def drain(self) -> None:
        while True:
            lib.x0x_completion_queue_take(self._queue, self._tokens, _BATCH, self._count)
            count = self._count[0]
            for i in range(count):
                entry = self.pending.pop(self._tokens[i], None)
                if entry is not None:
                    self._settle(entry)
            if count < _BATCH:
                return

    def close(self) -> None:
        """Gives up on every operation still attached (its loop is gone): each is cancelled
        and released; the library frees a result that comes anyway."""
        pending, self.pending = self.pending, {}
        for entry in pending.values():
            op, entry.op = entry.op, None
            entry.abandoned = True
            if op is not None:
                lib.x0x_op_cancel(op)
                lib.x0x_op_free(op)

    def __del__(self) -> None:
        self.close()

    def _settle(self, entry: _Pending) -> None:
        op = entry.op
        lib.x0x_op_wait(op, 0, self._status, self._result)  # settled: returns at once
        entry.status, entry.result = self._status[0], self._result[0]
        if entry.status != lib.X0X_OK:
            entry.message = _decode(lib.x0x_op_error_message(op))
        entry.op = None
        lib.x0x_op_free(op)
        if entry.abandoned:
            _release(entry.release, entry.result)
        else:
            entry.wake(entry.waiter)


_tokens = itertools.count(1)
# Every live queue, for pending_count().
_queues: "weakref.WeakSet[_Queue]" = weakref.WeakSet()


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
    waiting = _trio_waiting if _loops.library() == "trio" else _asyncio_waiting
    return await _await_queued(op, release, waiting)


# How the running library waits for a queued op: its queue, the waiter the queue wakes, the
# function that wakes it, and the function whose result the awaiting task awaits.
_Waiting = Tuple[_Queue, Any, Callable[[Any], None], Callable[[], Awaitable[Any]]]


async def _await_queued(
    op: CData, release: Optional[Release], waiting: Callable[[], _Waiting]
) -> CData:
    try:
        queue, waiter, wake, wait = waiting()
        entry = _Pending(op, release, waiter, wake)
        queue.attach(op, entry)  # the queue frees op from here on
    except BaseException:
        lib.x0x_op_free(op)
        raise
    try:
        await wait()
    except BaseException:  # cancelled (asyncio.CancelledError, trio.Cancelled), KeyboardInterrupt
        entry.abandon()
        raise
    return entry.outcome()


# asyncio: one queue per loop, its descriptor watched with loop.add_reader.
_asyncio_queues: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Queue]" = (
    weakref.WeakKeyDictionary()
)


def _asyncio_queue(loop: asyncio.AbstractEventLoop) -> _Queue:
    queue = _asyncio_queues.get(loop)
    if queue is None:
        _forget_closed_loops()
        queue = _asyncio_queues[loop] = _Queue()
        _queues.add(queue)
        loop.add_reader(queue.fd, queue.drain)
    return queue


def _forget_closed_loops() -> None:
    # A closed loop never drains its queue again (asyncio.run closes it right after cancelling
    # its tasks, before their operations report): release what it left behind.
    for loop, queue in list(_asyncio_queues.items()):
        if loop.is_closed():
            del _asyncio_queues[loop]
            queue.close()


def _wake_future(future: "asyncio.Future[None]") -> None:
    if not future.done():  # done: cancelled, and the task is about to learn it
        future.set_result(None)


def _asyncio_waiting() -> _Waiting:
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    return _asyncio_queue(loop), future, _wake_future, lambda: future


# trio: one queue per run, its descriptor watched by a system task.
def _trio_queue() -> _Queue:
    trio = _loops.trio()
    queue: Optional[_Queue] = _trio_run_queue().get(None)
    if queue is None:
        queue = _Queue()
        _queues.add(queue)
        _trio_run_queue().set(queue)
        trio.lowlevel.spawn_system_task(_watch_on_trio, queue, name="x0x completion queue")
    return queue


async def _watch_on_trio(queue: _Queue) -> None:
    trio = _loops.trio()
    try:
        while True:
            await trio.lowlevel.wait_readable(queue.fd)
            queue.drain()
    finally:
        # Cancelled: the run is ending and will never drain its queue again. Release what it
        # left behind now, as asyncio does for a closed loop (not when the queue is collected).
        queue.close()


_trio_run_var: Any = None


def _trio_run_queue() -> Any:
    global _trio_run_var
    if _trio_run_var is None:
        _trio_run_var = _loops.trio().lowlevel.RunVar("x0x_completion_queue")
    return _trio_run_var


def _set_event(event: Any) -> None:
    event.set()


def _trio_waiting() -> _Waiting:
    event = _loops.trio().Event()
    return _trio_queue(), event, _set_event, event.wait


def pending_count() -> int:
    """How many native operations have not reported back yet (for tests and leak checks)."""
    _forget_closed_loops()
    return sum(len(queue.pending) for queue in list(_queues))


# Log callbacks (_logs.py) into an interpreter that is finalizing can abort it; stop them first.
atexit.register(lib.x0x_shutdown, 1000)
