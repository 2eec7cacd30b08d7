"""Two agents share a task list: one adds tasks, the other claims and completes them.

    python examples/task_collaboration.py

The list is a CRDT: each change applies locally at once and reaches the other replica as a
signed delta; both end up with the same list, whatever order the changes arrive in.
"""

import asyncio
from typing import Callable

import x0x


async def until(condition: Callable[[], bool], timeout: float = 10) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


def show(name: str, tasks: "list[x0x.TaskItem]", names: "dict[x0x.AgentId, str]") -> None:
    print(f"{name}'s replica:")
    for task in tasks:
        who = f" by {names[task.assignee]}" if task.assignee else ""
        print(f"  [{task.status.name:7}] {task.title}{who}")


async def main() -> None:
    planner = await x0x.Agent.builder().build()
    await planner.join_network()
    worker = await x0x.Agent.builder().with_bootstrap(planner.local_addr).build()
    async with planner, worker:
        await worker.join_network()
        names = {planner.agent_id: "planner", worker.agent_id: "worker"}

        plan = await planner.create_task_list("release 1.0")
        ids = [await plan.add_task(title) for title in ("write docs", "tag release", "announce")]
        print(f"planner created list {plan.id.to_hex()[:16]}… with {len(ids)} tasks")

        work = await worker.join_task_list(plan.id)  # by id: the worker fills up from the planner
        await until(lambda: len(work.get_tasks()) == 3)
        print(f"worker joined {work.name!r}")
        first, second, _ = work.get_tasks()
        await work.claim_task(first.id)
        await work.complete_task(first.id)
        await work.claim_task(second.id)

        await until(lambda: plan.get_tasks() == work.get_tasks())
        show("planner", plan.get_tasks(), names)
        show("worker", work.get_tasks(), names)
        print("converged:", plan.get_tasks() == work.get_tasks())


if __name__ == "__main__":
    asyncio.run(main())
