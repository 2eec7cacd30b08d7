"""Rust log records (x0x's own, quinn's, rustls', iroh-gossip's) into Python's ``logging``.

Records go to logger ``x0x`` and its children by Rust module (``x0x.gossip``,
``x0x.quinn_proto.connection``). The library formats only records at or above the level it is
given, so disabled levels cost nothing: that level is the effective level of logger ``x0x``,
read when the package is imported and again each time an agent is built. Rust's trace level
arrives as level 5 (below ``DEBUG``).
"""

import logging
from typing import Any

from ._ffi import _decode, check, ffi, lib

TRACE = 5
"""The Python level of the library's trace records (Python has none of its own)."""

_ROOT = logging.getLogger("x0x")
_LEVELS = {
    lib.X0X_LOG_ERROR: logging.ERROR,
    lib.X0X_LOG_WARN: logging.WARNING,
    lib.X0X_LOG_INFO: logging.INFO,
    lib.X0X_LOG_DEBUG: logging.DEBUG,
    lib.X0X_LOG_TRACE: TRACE,
}


def logger_name(target: str) -> str:
    """The logger for a Rust module path: ``x0x::gossip`` → ``x0x.gossip``, ``quinn::endpoint``
    → ``x0x.quinn.endpoint``."""
    parts = [part for part in target.split("::") if part]
    if parts and parts[0] == "x0x":
        parts = parts[1:]
    return ".".join(["x0x", *parts])


def _on_log(_user_data: Any, level: int, target: Any, message: Any) -> None:
    # Runs on the library's log thread; cffi holds the GIL for us. The strings live only now.
    name = logger_name(_decode(target))
    logging.getLogger(name).log(_LEVELS.get(level, logging.DEBUG), "%s", _decode(message))


# Registered by call rather than as a decorator: ffi is untyped (see _ffi.py).
ffi.def_extern(name="_x0x_on_log")(_on_log)


def sync_level() -> None:
    """Tells the library the effective level of logger ``x0x``: records below it are not made."""
    level = _ROOT.getEffectiveLevel()
    native = next(
        (native for native, python in sorted(_LEVELS.items()) if level >= python),
        lib.X0X_LOG_TRACE,
    )
    check(lib.x0x_set_log_callback(native, lib._x0x_on_log, ffi.NULL))
