"""Coroutines run in the background of a task group and awaited later, as ``asyncio.ensure_future``
would run them, on any anyio backend (asyncio or trio)."""

from typing import Any, Awaitable, Callable, Generic, Optional, Tuple, TypeVar

import anyio
import anyio.abc

T = TypeVar("T")


class Background(Generic[T]):
    """``function(*args)`` running in a task of ``group``: ``await result()`` returns what it
    returned or raises what it raised; ``cancel()`` cancels it (``cancelled`` says it was)."""

    def __init__(
        self, group: anyio.abc.TaskGroup, function: Callable[..., Awaitable[T]], *args: Any
    ) -> None:
        self._scope = anyio.CancelScope()
        self._done = anyio.Event()
        self._value: Optional[T] = None
        self._error: Optional[Exception] = None
        group.start_soon(self._run, function, args)

    async def _run(self, function: Callable[..., Awaitable[T]], args: Tuple[Any, ...]) -> None:
        try:
            with self._scope:
                self._value = await function(*args)
        except Exception as error:  # for whoever awaits result()
            self._error = error
        finally:
            self._done.set()

    def done(self) -> bool:
        """Whether it has ended (returned, raised or been cancelled)."""
        return self._done.is_set()

    @property
    def cancelled(self) -> bool:
        """Whether ``cancel()`` stopped it before it ended by itself."""
        return self._scope.cancelled_caught

    def cancel(self) -> None:
        """Cancels it: the cancellation reaches what it awaits (e.g. a pending native call)."""
        self._scope.cancel()

    async def wait(self, timeout: float = 10) -> None:
        """Waits until it has ended, at most ``timeout`` seconds (``TimeoutError``)."""
        with anyio.fail_after(timeout):
            await self._done.wait()

    async def result(self, timeout: float = 10) -> T:
        """What it returned; raises what it raised."""
        await self.wait(timeout)
        if self._error is not None:
            raise self._error
        assert not self.cancelled, "it was cancelled"
        return self._value  # type: ignore[return-value]  # set: it ended without error
