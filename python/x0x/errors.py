"""Exceptions, one class per C status code (``X0X_*`` in ``include/x0x.h``).

Each class also derives from the built-in exception a Python user would catch for that kind of
failure: invalid input is a ``ValueError``, a file or socket failure an ``OSError``, and so on.
"""

import asyncio
from typing import Dict, Tuple, Type

from ._x0x_cffi import lib

__all__ = [
    "ClosedError",
    "CorruptDataError",
    "CryptoError",
    "InUseError",
    "InternalError",
    "InvalidArgumentError",
    "NotConnectedError",
    "NotFoundError",
    "OperationCancelledError",
    "ProtocolError",
    "RemoteError",
    "X0xError",
    "X0xOSError",
    "X0xTimeoutError",
]


class X0xError(Exception):
    """Base class of every x0x error. ``status`` is the C status code, ``message`` the reason."""

    status: int = -1
    """The C status code this error stands for (``X0X_*`` in ``include/x0x.h``)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        """Why the operation failed (also ``str(error)``)."""

    def __str__(self) -> str:
        return self.message


class InvalidArgumentError(X0xError, ValueError):
    """An argument was unusable: bad hex, bad address, wrong-length or damaged key bytes."""

    status = lib.X0X_INVALID_ARGUMENT


class NotFoundError(X0xError, KeyError):
    """The named thing (task, list, subscription) does not exist."""

    status = lib.X0X_NOT_FOUND

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class X0xOSError(X0xError, OSError):
    """The operating system refused a file or socket operation (e.g. a key file path)."""

    status = lib.X0X_IO

    def __str__(self) -> str:
        return self.message


class CryptoError(X0xError):
    """A cryptographic operation (key generation, signing) failed."""

    status = lib.X0X_CRYPTO


class NotConnectedError(X0xError, ConnectionError):
    """The agent is not connected to the network."""

    status = lib.X0X_NOT_CONNECTED

    def __str__(self) -> str:
        return self.message


class ClosedError(X0xError):
    """The object was closed."""

    status = lib.X0X_CLOSED


class OperationCancelledError(X0xError, asyncio.CancelledError):
    """A native operation was cancelled (also an ``asyncio.CancelledError``)."""

    status = lib.X0X_CANCELLED


# asyncio.TimeoutError is the built-in TimeoutError only from Python 3.11 on.
_TIMEOUT_BASES: Tuple[Type[BaseException], ...] = (
    (TimeoutError,)
    if issubclass(asyncio.TimeoutError, TimeoutError)
    else (TimeoutError, asyncio.TimeoutError)
)


class X0xTimeoutError(X0xError, *_TIMEOUT_BASES):  # type: ignore[misc]
    """The operation did not finish in time (also ``TimeoutError``)."""

    status = lib.X0X_TIMEOUT

    def __str__(self) -> str:
        return self.message


class ProtocolError(X0xError):
    """A peer broke the wire protocol."""

    status = lib.X0X_PROTOCOL


class InternalError(X0xError):
    """A bug inside x0x was caught at the C boundary; please report it."""

    status = lib.X0X_PANIC


class CorruptDataError(X0xError, ValueError):
    """Stored data (a key file, a persisted list) is damaged; x0x left it untouched."""

    status = lib.X0X_CORRUPT


class InUseError(X0xError, OSError):
    """The agent's identity is in use by another running agent: its data dir or agent key file
    is locked by another process (the message names the path and the process), or a peer showed
    that another process runs with the same agent key. An ``OSError``, like a busy file."""

    status = lib.X0X_IN_USE

    def __str__(self) -> str:
        return self.message


class RemoteError(X0xError):
    """The other agent refused a direct message or request (it has no inbox open, it dropped the
    request unanswered) or its handler failed; ``message`` is the other agent's reason."""

    status = lib.X0X_REMOTE

    def __str__(self) -> str:
        return self.message


_BY_STATUS: Dict[int, Type[X0xError]] = {
    cls.status: cls
    for cls in (
        InvalidArgumentError,
        NotFoundError,
        X0xOSError,
        CryptoError,
        NotConnectedError,
        ClosedError,
        OperationCancelledError,
        X0xTimeoutError,
        ProtocolError,
        InternalError,
        CorruptDataError,
        InUseError,
        RemoteError,
    )
}


def error_for(status: int, message: str) -> X0xError:
    """The exception for a failed status, carrying ``message``."""
    cls = _BY_STATUS.get(status)
    if cls is None:
        error = X0xError(f"{message} (unknown status {status})")
        error.status = status
        return error
    return cls(message)
