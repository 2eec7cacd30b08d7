"""Long loops in one process must not grow memory, handles or threads."""

import ctypes
import gc
import os
import sys
from typing import Tuple

import anyio
import pytest

import x0x
from x0x import _ffi

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def threads() -> int:
    return len(os.listdir("/proc/self/task"))


async def settle() -> Tuple[float, int]:
    # The gossip layer keeps sent payloads for 5 s to answer repair requests: wait them out.
    await anyio.sleep(6.5)
    gc.collect()
    # glibc keeps freed memory in per-thread arenas, which RSS counts; hand it back first so
    # that RSS measures what is still in use (without this, RSS creeps up by ~8 MiB a round
    # for a few rounds and then plateaus, while live memory stays flat).
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    return rss_mib(), threads()


async def test_publishing_and_subscribing_in_loops_does_not_grow() -> None:
    async with await x0x.Agent.builder().build() as agent:
        await agent.join_network()
        inbox = agent.subscribe("leak", capacity=64)  # a bounded reader that falls behind
        payload = bytes(256)

        async def publish(n: int) -> None:
            for _ in range(n):
                await agent.publish("leak", payload)

        async def cycle(n: int) -> None:
            for _ in range(n):
                subscription = agent.subscribe("cycle")
                with anyio.CancelScope() as scope:
                    scope.cancel()  # cancelled at its first wait: the pending __anext__
                    await subscription.__anext__()
                assert scope.cancelled_caught
                subscription.close()

        # Warm up with the same load: allocator arenas, the runtime's threads and caches reach
        # their steady size; a leak is what the second round adds on top.
        await publish(100_000)
        await cycle(1_000)
        rss_before, threads_before = await settle()

        await publish(100_000)
        await cycle(1_000)
        while inbox.dropped < 200_000 - 64:  # the signer has delivered every message
            await anyio.sleep(0.05)
        rss_after, threads_after = await settle()

        assert _ffi.pending_count() == 0, "native operations never called back"
        assert threads_after <= threads_before, (threads_before, threads_after)
        assert rss_after - rss_before <= 5, f"RSS grew {rss_after - rss_before:.1f} MiB"
        assert agent.stats()["published"] == 200_000
