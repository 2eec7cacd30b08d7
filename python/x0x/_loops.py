"""The event loops x0x runs on: asyncio (the default) and trio, told apart at call time.

Nothing here imports trio unless the caller is already running inside trio, so asyncio users
need nothing extra. anyio programs work on either backend: anyio runs on top of one of them.
"""

import asyncio
import logging
import sys
from typing import Any, Awaitable, Callable, Optional

__all__ = ["Task", "cancelled_class", "library", "spawn", "trio"]

logger = logging.getLogger("x0x")


def trio() -> Any:
    """The trio module (only called once ``library()`` said "trio")."""
    return sys.modules["trio"]


def library() -> str:
    """``"asyncio"`` or ``"trio"``: the library running the calling task. ``RuntimeError``
    outside both."""
    try:
        asyncio.get_running_loop()
        return "asyncio"
    except RuntimeError:
        pass
    module = sys.modules.get("trio")
    if module is not None:
        try:
            module.lowlevel.current_task()
            return "trio"
        except RuntimeError:
            pass
    raise RuntimeError("x0x needs a running asyncio or trio event loop: call it from async code")


class Task:
    """A background task started by ``spawn``: an asyncio task, or a trio system task."""

    __slots__ = ("_asyncio", "_done", "_finished", "_trio_scope")

    def __init__(self) -> None:
        self._asyncio: Optional[asyncio.Future[None]] = None
        self._trio_scope: Any = None
        self._done = False
        self._finished: Any = None  # trio.Event, set once the task ended

    def done(self) -> bool:
        """Whether the task has ended."""
        if self._asyncio is not None:
            return self._asyncio.done()
        return self._done

    def cancel(self) -> None:
        """Ask the task to stop (idempotent)."""
        if self._asyncio is not None:
            self._asyncio.cancel()
        elif self._trio_scope is not None:
            self._trio_scope.cancel()

    async def wait(self) -> None:
        """Wait until the task has ended (never raises what the task raised)."""
        if self._asyncio is not None:
            await asyncio.wait({self._asyncio})
        elif not self._done:
            await self._finished.wait()


def spawn(
    function: Callable[..., Awaitable[Any]],
    *args: Any,
    what: str,
    on_done: Optional[Callable[[Task], None]] = None,
) -> Task:
    """Runs ``function(*args)`` in the background of the calling event loop, like
    ``asyncio.ensure_future``. An exception it raises is logged (``what`` names it), never
    lost; ``on_done`` is called once it has ended."""
    task = Task()
    if library() == "trio":
        module = trio()
        task._finished = module.Event()

        async def run() -> None:
            try:
                with module.CancelScope() as scope:
                    task._trio_scope = scope
                    await function(*args)
            except Exception:
                logger.exception("x0x: %s failed", what)
            finally:  # also when the run ends and cancels every system task
                task._done = True
                task._finished.set()
                if on_done is not None:
                    on_done(task)

        # A system task: it outlives the caller like an asyncio task, and trio cancels it when
        # the run ends.
        module.lowlevel.spawn_system_task(run, name=what)
        return task

    future = asyncio.ensure_future(function(*args))
    task._asyncio = future

    def finished(done: "asyncio.Future[None]") -> None:
        if not done.cancelled() and done.exception() is not None:
            logger.error("x0x: %s failed", what, exc_info=done.exception())
        if on_done is not None:
            on_done(task)

    future.add_done_callback(finished)
    return task


def cancelled_class() -> Any:
    """The exception a cancelled task of the running library sees."""
    return trio().Cancelled if library() == "trio" else asyncio.CancelledError
