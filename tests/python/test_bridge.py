"""The asyncio bridge: completions, errors, cancellation, event loops."""

import asyncio
import gc
import threading
from pathlib import Path
from typing import Any

import pytest

import x0x
from x0x import _ffi, errors
from x0x._ffi import ffi, lib


async def _sleep(ms: int) -> Any:
    return await _ffi.call_async(lambda cb, ud, op: lib.x0x_sleep(ms, cb, ud, op))


async def _wait_for_no_pending() -> None:
    for _ in range(200):
        if _ffi.pending_count() == 0:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{_ffi.pending_count()} native operations never called back")


async def test_native_op_completes_on_the_calling_loop() -> None:
    assert await _sleep(0) == ffi.NULL  # settles inside the start call: the fast path
    assert await _sleep(2) == ffi.NULL  # settles later: through the loop's completion queue
    results = await asyncio.gather(*(_sleep(i % 3) for i in range(200)))
    assert all(r == ffi.NULL for r in results)
    assert _ffi.pending_count() == 0


async def test_failed_native_op_raises_its_error(tmp_path: Path) -> None:
    # The build fails on the runtime's blocking pool, so the error comes through the queue.
    (tmp_path / "file").write_bytes(b"")
    builder = x0x.Agent.builder().with_machine_key(tmp_path / "file" / "machine.key")
    with pytest.raises(x0x.X0xOSError, match="Not a directory"):
        await builder.build()
    assert _ffi.pending_count() == 0


async def test_cancelling_a_native_op_cancels_it() -> None:
    task = asyncio.ensure_future(_sleep(60_000))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # The native side called back (with CANCELLED) instead of sleeping for a minute.
    await _wait_for_no_pending()


async def test_cancelling_build_raises_and_leaks_nothing() -> None:
    builder = x0x.Agent.builder()
    for _ in range(20):
        task = asyncio.ensure_future(builder.build())
        await asyncio.sleep(0)  # the native build has started
        task.cancel()
        try:
            agent = await task
        except asyncio.CancelledError:
            pass
        else:  # the build won the race: a real agent
            await agent.close()
    await _wait_for_no_pending()


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
            tasks.append(asyncio.ensure_future(_sleep(1)))
            with pytest.raises(asyncio.CancelledError):
                await tasks[-1]
        await _wait_for_no_pending()

    _ffi._Queue._settle = settle_then_cancel  # type: ignore[method-assign]
    try:
        asyncio.run(main())
    finally:
        _ffi._Queue._settle = original  # type: ignore[method-assign]


async def test_wait_for_timeout_cancels_the_native_op() -> None:
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(_sleep(60_000), 0.05)
    await _wait_for_no_pending()


def test_two_event_loops_in_sequence() -> None:
    for _ in range(2):
        agent = asyncio.run(x0x.Agent.builder().build())
        assert isinstance(agent.agent_id, x0x.AgentId)
        asyncio.run(agent.close())


def test_completion_after_the_loop_closed_is_dropped_safely() -> None:
    loop = asyncio.new_event_loop()
    task = loop.create_task(_sleep(100))
    loop.run_until_complete(asyncio.sleep(0.01))  # the native op is in flight
    task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    asyncio.run(_wait_for_no_pending())


def test_completions_are_settled_on_the_loops_own_thread() -> None:
    seen = []
    original = _ffi._Queue._settle

    def spy(self: Any, entry: Any) -> None:
        seen.append(threading.current_thread())
        original(self, entry)

    _ffi._Queue._settle = spy  # type: ignore[method-assign]
    try:
        asyncio.run(_sleep(5))  # long enough not to settle inside the start call
        results = []
        worker = threading.Thread(target=lambda: results.append(asyncio.run(_sleep(5))))
        worker.start()
        worker.join()
    finally:
        _ffi._Queue._settle = original  # type: ignore[method-assign]
    # Each loop drains its own queue when its descriptor is readable: no other thread runs
    # Python for it (there is no callback thread in between).
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
