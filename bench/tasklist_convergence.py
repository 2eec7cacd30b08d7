"""How long 10 agents take to converge after a burst of 1,000 task-list operations.

    python bench/tasklist_convergence.py [--agents 10] [--ops 1000] [--rounds 3]

Agents run in this process on 127.0.0.1 (real QUIC between them; a 2-core machine). One creates
a list, the others join it; then the burst: operations spread round-robin over the agents (60%
adds, 20% claims, 15% completes, 5% removes of known tasks), issued as fast as possible. The
time reported runs from the last operation to the moment every replica holds the same tasks.
"""

import argparse
import asyncio
import random
import statistics
import time
from typing import List

import x0x


async def converge_once(agents: int, ops: int, seed: int) -> float:
    rng = random.Random(seed)
    first = await x0x.Agent.builder().build()
    await first.join_network()
    peers = [first]
    for _ in range(agents - 1):
        peer = await x0x.Agent.builder().with_bootstrap(rng.choice(peers).local_addr).build()
        await peer.join_network()
        peers.append(peer)
    try:
        lists: List[x0x.TaskList] = [await first.create_task_list("burst")]
        for peer in peers[1:]:
            lists.append(await peer.join_task_list(lists[0].id))
        known: List[x0x.TaskId] = []
        for i in range(ops):
            replica = lists[i % len(lists)]
            roll = rng.random()
            try:
                if roll < 0.6 or not known:
                    known.append(await replica.add_task(f"task {i}", "burst"))
                elif roll < 0.8:
                    await replica.claim_task(rng.choice(known))
                elif roll < 0.95:
                    await replica.complete_task(rng.choice(known))
                else:
                    await replica.remove_task(rng.choice(known))
            except x0x.NotFoundError:
                pass  # this replica hasn't heard of the task yet, or it was removed
        burst_end = time.perf_counter()
        while True:
            reference = lists[0].get_tasks()
            if all(replica.get_tasks() == reference for replica in lists[1:]):
                return time.perf_counter() - burst_end
            if time.perf_counter() - burst_end > 60:
                raise TimeoutError("no convergence within 60 s")
            await asyncio.sleep(0.01)
    finally:
        for peer in peers:
            await peer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", type=int, default=10)
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times = [await converge_once(args.agents, args.ops, seed) for seed in range(args.rounds)]
    print(f"{args.agents} agents, {args.ops} operations, {args.rounds} rounds")
    print("convergence after the burst: " + ", ".join(f"{t * 1000:.0f} ms" for t in times))
    print(f"median {statistics.median(times) * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
