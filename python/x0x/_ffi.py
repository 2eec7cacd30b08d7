"""The bridge between the C ABI and asyncio. Everything else in the package goes through here.

Async native calls report to one ``extern "Python"`` trampoline on the library's callback thread.
``user_data`` is an integer token into ``_pending`` (no ``ffi.new_handle`` objects to leak); the
trampoline hands the outcome to the caller's event loop with ``call_soon_threadsafe``. Cancelling
the awaiting task cancels the native operation; a result that arrives anyway is freed.
"""

import asyncio
import atexit
import itertools
import threading
from typing import Any, Callable, Dict, NamedTuple, Optional

from ._x0x_cffi import ffi, lib
from .errors import X0xError, error_for

__all__ = ["c_str", "call_async", "check", "ffi", "lib", "take_bytes"]

CData = Any  # cffi pointers have no static type
Release = Callable[[CData], None]


class _Pending(NamedTuple):
    loop: asyncio.AbstractEventLoop
    future: "asyncio.Future[CData]"
    release: Optional[Release]


_pending: Dict[int, _Pending] = {}
_pending_lock = threading.Lock()
_tokens = itertools.count(1)


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


def _release(entry: _Pending, result: CData) -> None:
    if entry.release is not None and result != ffi.NULL:
        entry.release(result)


def _settle(entry: _Pending, status: int, result: CData, message: str) -> None:
    future = entry.future
    if future.done():  # the awaiting task was cancelled meanwhile
        _release(entry, result)
    elif status == lib.X0X_OK:
        future.set_result(result)
    else:
        future.set_exception(error_for(status, message))


def _on_complete(user_data: CData, status: int, result: CData, message: CData) -> None:
    # Runs on the library's callback thread; cffi holds the GIL for us.
    with _pending_lock:
        entry = _pending.pop(int(ffi.cast("uintptr_t", user_data)), None)
    if entry is None:
        return
    text = _decode(message)  # only valid during this call
    try:
        entry.loop.call_soon_threadsafe(_settle, entry, status, result, text)
    except RuntimeError:  # the loop was closed; nobody will take the result
        _release(entry, result)


# Registered by call rather than as a decorator: ffi is untyped, and mypy --strict rejects
# untyped decorators.
ffi.def_extern(name="_x0x_on_complete")(_on_complete)


async def call_async(
    start: Callable[[CData, CData, CData], int], release: Optional[Release] = None
) -> CData:
    """Runs a native async operation and returns its result pointer.

    ``start(callback, user_data, op_out)`` calls the ``x0x_*`` function. ``release`` frees a
    result nobody will receive (the caller was cancelled); it is not called on results returned.
    """
    op_out = ffi.new("X0xOp **")
    # No callback yet: an operation that finishes during the start call is collected right
    # away, without a round trip through the callback thread and the event loop.
    status = start(ffi.NULL, ffi.NULL, op_out)
    if status != lib.X0X_OK:
        raise last_error(status)
    op = op_out[0]
    try:
        op_status = ffi.new("X0xStatus *")
        result = ffi.new("void **")
        if lib.x0x_op_wait(op, 0, op_status, result) == lib.X0X_OK:
            if op_status[0] != lib.X0X_OK:
                raise error_for(op_status[0], _decode(lib.x0x_op_error_message(op)))
            return result[0]
        return await _await_completion(op, release)
    finally:
        lib.x0x_op_free(op)  # drops our handle only; a callback still fires exactly once


async def _await_completion(op: CData, release: Optional[Release]) -> CData:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[CData] = loop.create_future()
    token = next(_tokens)
    entry = _Pending(loop, future, release)
    with _pending_lock:
        _pending[token] = entry  # before attaching: the callback may fire at once
    status = lib.x0x_op_then(op, lib._x0x_on_complete, ffi.cast("void *", token))
    if status != lib.X0X_OK:
        with _pending_lock:
            _pending.pop(token, None)
        raise last_error(status)
    try:
        return await future
    except asyncio.CancelledError:
        lib.x0x_op_cancel(op)
        # Cancelled after the result was set but before we resumed: nobody else frees it.
        if future.done() and not future.cancelled() and future.exception() is None:
            _release(entry, future.result())
        raise


def pending_count() -> int:
    """How many native operations have not called back yet (for tests and leak checks)."""
    with _pending_lock:
        return len(_pending)


# Callbacks into an interpreter that is finalizing can abort it; stop them first.
atexit.register(lib.x0x_shutdown, 1000)
