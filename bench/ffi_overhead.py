"""Cost of crossing into x0x from Python, against pure-Python baselines measured in the same run.

    python bench/ffi_overhead.py [--rounds N]

* sync call: ``lib.x0x_status_str(0)``, a trivial native call, minus the bare loop's cost.
* awaiting a native op: ``await`` of ``x0x_sleep(0)``, which completes at once on the Rust runtime;
  its completion crosses tokio -> the callback thread -> ``call_soon_threadsafe`` -> the loop.
* baseline: a Python worker thread that answers each request with ``call_soon_threadsafe``
  (the usual way to bridge a thread to asyncio).
"""

import argparse
import asyncio
import platform
import queue
import statistics
import threading
import time
from typing import Any, Callable, List, Optional

from x0x import _ffi
from x0x._ffi import lib


def per_call_ns(fn: Callable[[], Any], n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn()
    return (time.perf_counter_ns() - start) / n


def sync_call_ns(n: int) -> float:
    status_str = lib.x0x_status_str
    start = time.perf_counter_ns()
    for _ in range(n):
        status_str(0)
    native = time.perf_counter_ns() - start
    start = time.perf_counter_ns()
    for _ in range(n):
        pass
    empty = time.perf_counter_ns() - start
    return (native - empty) / n


async def native_await_us(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        await _ffi.call_async(lambda cb, ud, op: lib.x0x_sleep(0, cb, ud, op))
    return (time.perf_counter() - start) / n * 1e6


async def thread_handoff_us(n: int) -> float:
    loop = asyncio.get_running_loop()
    requests: queue.SimpleQueue[Optional[asyncio.Future[None]]] = queue.SimpleQueue()

    def worker() -> None:
        while (future := requests.get()) is not None:
            loop.call_soon_threadsafe(future.set_result, None)

    thread = threading.Thread(target=worker, daemon=True)
    thread.start()
    start = time.perf_counter()
    for _ in range(n):
        future: asyncio.Future[None] = loop.create_future()
        requests.put(future)
        await future
    elapsed = time.perf_counter() - start
    requests.put(None)
    thread.join()
    return elapsed / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--awaits", type=int, default=10_000)
    args = parser.parse_args()

    sync: List[float] = []
    native: List[float] = []
    baseline: List[float] = []
    for _ in range(args.rounds):
        sync.append(sync_call_ns(args.calls))
        native.append(asyncio.run(native_await_us(args.awaits)))
        baseline.append(asyncio.run(thread_handoff_us(args.awaits)))

    med = statistics.median
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"medians of {args.rounds} rounds"
    )
    print(f"{'measurement':<44} {'median':>10}")
    print(f"{'sync native call (x0x_status_str)':<44} {med(sync):>8.1f} ns")
    print(f"{'await native op (x0x_sleep(0))':<44} {med(native):>8.1f} us")
    print(f"{'baseline: thread + call_soon_threadsafe':<44} {med(baseline):>8.1f} us")
    print(f"{'ratio baseline / native await':<44} {med(baseline) / med(native):>9.2f}x")


if __name__ == "__main__":
    main()
