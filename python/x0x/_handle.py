"""``NativeHandle``: the one base class for Python objects that own a library handle."""

from typing import Any, Callable, ClassVar

from ._ffi import ffi
from .errors import ClosedError, InternalError


class NativeHandle:
    """Owns one handle: frees it exactly once, on ``_release()`` or, as a backstop, when collected.

    Prefer closing explicitly (``close()`` / ``async with``): PyPy collects late.
    """

    __slots__ = ("__weakref__", "_ptr")
    _free: ClassVar[Callable[[Any], None]]

    def __init__(self, ptr: Any) -> None:
        if ptr == ffi.NULL:
            raise InternalError(f"the library returned no {type(self).__name__} handle")
        self._ptr: Any = ffi.gc(ptr, type(self)._free)

    def _handle(self) -> Any:
        if self._ptr is None:
            raise ClosedError(f"this {type(self).__name__} is closed")
        return self._ptr

    @property
    def closed(self) -> bool:
        """Whether the handle has been released."""
        return self._ptr is None

    def _release(self) -> None:
        ptr, self._ptr = self._ptr, None
        if ptr is not None:
            ffi.release(ptr)  # runs the destructor now instead of at collection
