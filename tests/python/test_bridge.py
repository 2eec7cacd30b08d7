"""The bridge between native operations and the event loop: completions, errors,
cancellation, event loops. The async tests run on asyncio and on trio (conftest); the ones
about one library's own machinery (asyncio's loops and tasks, trio runs) drive it directly."""

import asyncio
import gc
import select
import threading
from pathlib import Path
from typing import Any, List

import anyio
import pytest
import trio

import x0x
from x0x import _ffi, _loops, errors
from x0x._ffi import ffi, lib

# Tests of asyncio's own machinery (its tasks, loops, wait_for) run on asyncio only.
asyncio_only = pytest.mark.parametrize("anyio_backend", ["asyncio"])


async def _sleep(ms: int) -> Any:
    return await _ffi.call_async(lambda cb, ud, op: lib.x0x_sleep(ms, cb, ud, op))


async def _wait_for_no_pending() -> None:
    for _ in range(200):
        if _ffi.pending_count() == 0:
            return
        await anyio.sleep(0.01)
    raise AssertionError(f"{_ffi.pending_count()} native operations never called back")


def _current_queue() -> Any:
    """The completion queue of the running asyncio loop or trio run."""
    if _loops.library() == "trio":
        return _ffi._trio_queue()
    return _ffi._asyncio_queue(asyncio.get_running_loop())


async def test_native_op_completes_on_the_calling_loop() -> None:
    assert await _sleep(0) == ffi.NULL  # settles inside the start call: the fast path
    assert await _sleep(2) == ffi.NULL  # settles later: through the loop's completion queue
    results: List[Any] = []

    async def one(ms: int) -> None:
        results.append(await _sleep(ms))

    async with anyio.create_task_group() as group:
        for i in range(200):
            group.start_soon(one, i % 3)
    assert len(results) == 200 and all(r == ffi.NULL for r in results)
    assert _ffi.pending_count() == 0


async def test_failed_native_op_raises_its_error(tmp_path: Path) -> None:
    # The build fails on the runtime's blocking pool, so the error comes through the queue.
    (tmp_path / "file").write_bytes(b"")
    builder = x0x.Agent.builder().with_machine_key(tmp_path / "file" / "machine.key")
    with pytest.raises(x0x.X0xOSError, match="Not a directory"):
        await builder.build()
    assert _ffi.pending_count() == 0


async def test_cancelling_a_native_op_cancels_it() -> None:
    with anyio.move_on_after(0.05) as scope:  # a cancel scope: trio's way, and anyio's
        await _sleep(60_000)
    assert scope.cancelled_caught
    # The native side called back (with CANCELLED) instead of sleeping for a minute.
    await _wait_for_no_pending()


@asyncio_only  # asyncio's own cancellation: Task.cancel() and the CancelledError it raises
async def test_cancelling_the_asyncio_task_cancels_the_native_op() -> None:
    task = asyncio.ensure_future(_sleep(60_000))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await _wait_for_no_pending()


async def test_cancelling_build_raises_and_leaks_nothing() -> None:
    builder = x0x.Agent.builder()
    built: List[x0x.Agent] = []

    async def build() -> None:
        built.append(await builder.build())

    for _ in range(20):
        async with anyio.create_task_group() as group:
            group.start_soon(build)
            await anyio.sleep(0)  # the native build has started (or starts as it is cancelled)
            group.cancel_scope.cancel()
    for agent in built:  # builds that won the race: real agents
        await agent.close()
    await _wait_for_no_pending()


async def test_a_result_that_comes_after_the_cancel_is_released() -> None:
    # The build's result reaches the queue, then its awaiting task is cancelled before the
    # loop collects it: the queue must free the agent the build made (nobody receives it),
    # once, whichever of the two the loop runs first.
    builder = x0x.Agent.builder()
    handle = builder._handle()
    released: List[Any] = []

    def release(result: Any) -> None:
        released.append(result)
        lib.x0x_agent_free(result)

    async def build(scope: anyio.CancelScope, *, task_status: Any) -> None:
        with scope:
            task_status.started()  # the parent goes on once this task waits on the build
            result = await _ffi.call_async(
                lambda cb, ud, op: lib.x0x_agent_builder_build(handle, cb, ud, op), release
            )
            lib.x0x_agent_free(result)  # settled inside the start call: not this test's case
            raise AssertionError("the build finished before it had to be awaited")

    queue = _current_queue()
    scope = anyio.CancelScope()
    async with anyio.create_task_group() as group:
        await group.start(build, scope)
        # Block the loop until the result is in the queue (the loop cannot collect it now).
        assert select.select([queue.fd], [], [], 30)[0], "the build never finished"
        scope.cancel()
    assert scope.cancelled_caught
    await _wait_for_no_pending()
    assert len(released) == 1 and released[0] != ffi.NULL


def test_cancelling_after_the_result_arrived_leaves_the_freed_op_alone() -> None:
    # The queue frees an operation when it reports; a task cancelled between that and its
    # resumption must not cancel the freed operation (it once did: a segfault on Ctrl-C).
    original = _ffi._Queue._settle
    tasks: list[asyncio.Future[Any]] = []

    def settle_then_cancel(self: Any, entry: Any) -> None:
        original(self, entry)
        tasks[-1].cancel()

    async def main() -> None:
        for _ in range(20):
            # 20 ms: long enough not to settle inside the start call (the fast path skips the
            # queue, and this test with it), even on PyPy.
            tasks.append(asyncio.ensure_future(_sleep(20)))
            with pytest.raises(asyncio.CancelledError):
                await tasks[-1]
        await _wait_for_no_pending()

    _ffi._Queue._settle = settle_then_cancel  # type: ignore[method-assign]
    try:
        asyncio.run(main())
    finally:
        _ffi._Queue._settle = original  # type: ignore[method-assign]


def test_a_trio_cancel_after_the_result_arrived_returns_the_result() -> None:
    # trio's counterpart: its cancel scope is cancelled right after the queue set the waiter's
    # event. trio resumes the waiter with the result (the wake-up came first) and the
    # cancellation lands at its next checkpoint; the freed operation is never touched.
    original = _ffi._Queue._settle
    scopes: List[trio.CancelScope] = []

    def settle_then_cancel(self: Any, entry: Any) -> None:
        original(self, entry)
        scopes[-1].cancel()

    async def main() -> None:
        for _ in range(20):
            scopes.append(trio.CancelScope())
            returned = []
            with scopes[-1]:
                returned.append(await _sleep(20))  # 20 ms: not settled inside the start call
                await trio.sleep(1)  # the next checkpoint: cancelled here
            assert scopes[-1].cancelled_caught and returned == [ffi.NULL]
        await _wait_for_no_pending()

    _ffi._Queue._settle = settle_then_cancel  # type: ignore[method-assign]
    try:
        trio.run(main)
    finally:
        _ffi._Queue._settle = original  # type: ignore[method-assign]


@asyncio_only  # asyncio.wait_for itself; test_a_deadline_cancels_the_native_op is anyio's
async def test_wait_for_timeout_cancels_the_native_op() -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(_sleep(60_000), 0.05)
    await _wait_for_no_pending()


async def test_a_deadline_cancels_the_native_op() -> None:
    with pytest.raises(TimeoutError):
        with anyio.fail_after(0.05):
            await _sleep(60_000)
    await _wait_for_no_pending()


def test_two_event_loops_in_sequence() -> None:
    for _ in range(2):
        agent = asyncio.run(x0x.Agent.builder().build())
        assert isinstance(agent.agent_id, x0x.AgentId)
        asyncio.run(agent.close())


def test_two_trio_runs_in_sequence() -> None:
    # Each run has its own completion queue, watched by a system task of that run.
    async def build_and_use() -> x0x.AgentId:
        async with await x0x.Agent.builder().build() as agent:
            await agent.join_network()
            inbox = agent.subscribe("t")
            await agent.publish("t", b"in this run")
            with trio.fail_after(10):
                assert (await inbox.__anext__()).payload == b"in this run"
            return agent.agent_id

    first, second = trio.run(build_and_use), trio.run(build_and_use)
    assert first != second
    trio.run(_wait_for_no_pending)


def test_an_agent_outlives_its_trio_run() -> None:
    # An agent built in one run is closed in the next (and its event pump, a system task of
    # the first run, ended with that run).
    async def build() -> x0x.Agent:
        agent = await x0x.Agent.builder().build()
        agent.on("connected", print)
        return agent

    agent = trio.run(build)
    assert _ffi.pending_count() == 0  # the pump's read, cancelled with the run, was released
    trio.run(agent.close)
    assert agent.closed
    trio.run(_wait_for_no_pending)


def test_completion_after_the_loop_closed_is_dropped_safely() -> None:
    loop = asyncio.new_event_loop()
    task = loop.create_task(_sleep(100))
    loop.run_until_complete(asyncio.sleep(0.01))  # the native op is in flight
    task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    asyncio.run(_wait_for_no_pending())


def test_a_trio_run_that_ends_with_an_op_in_flight_leaves_nothing_pending() -> None:
    # trio's counterpart: a system task still awaits a native op when the run ends. trio
    # cancels it (the op is cancelled), and the queue of the finished run goes away with the
    # run; nothing stays pending.
    async def main() -> None:
        trio.lowlevel.spawn_system_task(_sleep, 60_000)
        await trio.sleep(0.01)  # the native op is in flight

    trio.run(main)
    assert _ffi.pending_count() == 0  # released as the run ended, not once collected


@pytest.mark.parametrize(
    "run",
    [lambda: asyncio.run(_sleep(20)), lambda: trio.run(_sleep, 20)],  # 20 ms: via the queue
    ids=["asyncio", "trio"],
)
def test_completions_are_settled_on_the_loops_own_thread(run: Any) -> None:
    seen = []
    original = _ffi._Queue._settle

    def spy(self: Any, entry: Any) -> None:
        seen.append(threading.current_thread())
        original(self, entry)

    _ffi._Queue._settle = spy  # type: ignore[method-assign]
    try:
        run()
        results = []
        worker = threading.Thread(target=lambda: results.append(run()))
        worker.start()
        worker.join()
    finally:
        _ffi._Queue._settle = original  # type: ignore[method-assign]
    # Each loop (asyncio) or run (trio: the system task watching its queue) drains its own
    # queue when its descriptor is readable: no other thread runs Python for it.
    assert seen == [threading.main_thread(), worker]
    assert results == [ffi.NULL]


def test_every_status_has_its_exception_class() -> None:
    named = {}
    for code in range(1, 128):
        name = ffi.string(lib.x0x_status_str(code)).decode()
        if name != "UNKNOWN":
            named[code] = name
    assert len(named) >= 11
    for code, name in named.items():
        error = errors.error_for(code, "why")
        assert type(error) is not x0x.X0xError, f"status {name} has no class"
        assert error.status == code
        assert str(error) == "why"
        assert type(error).__name__ in x0x.__all__
    unknown = errors.error_for(999, "why")
    assert type(unknown) is x0x.X0xError and "unknown status 999" in str(unknown)


def test_exceptions_derive_from_the_builtins_users_catch() -> None:
    assert issubclass(x0x.InvalidArgumentError, ValueError)
    assert issubclass(x0x.CorruptDataError, ValueError)
    assert issubclass(x0x.X0xOSError, OSError)
    assert issubclass(x0x.NotConnectedError, ConnectionError)
    assert issubclass(x0x.X0xTimeoutError, TimeoutError)
    assert issubclass(x0x.X0xTimeoutError, asyncio.TimeoutError)
    assert issubclass(x0x.OperationCancelledError, asyncio.CancelledError)
    assert issubclass(x0x.NotFoundError, KeyError)
    assert str(x0x.NotFoundError("no such task")) == "no such task"


def test_handles_are_freed_when_collected() -> None:
    import weakref

    builder = x0x.Agent.builder()
    ref = weakref.ref(builder)
    del builder
    gc.collect()
    assert ref() is None
