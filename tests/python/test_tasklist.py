"""Task lists between real agents: convergence, late joins, partitions, restarts, events."""

import json
import logging
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, Dict, List, Optional

import anyio
import pytest
from processes import exit_code, python, read_line, send

import x0x
from x0x import Agent, TaskList, TaskStatus

MakeAgent = Callable[..., Awaitable[Agent]]
PEER = Path(__file__).with_name("tasklist_peer.py")


@pytest.fixture
async def make_agent() -> AsyncIterator[MakeAgent]:
    agents: List[Agent] = []

    async def make(bootstrap: Optional[str] = None, data_dir: Optional[Path] = None) -> Agent:
        builder = Agent.builder()
        if bootstrap:
            builder.with_bootstrap(bootstrap)
        if data_dir:
            builder.with_data_dir(data_dir)
        agent = await builder.build()
        agents.append(agent)
        await agent.join_network()
        return agent

    yield make
    for agent in agents:
        await agent.close()


async def until(condition: Callable[[], bool], timeout: float = 15) -> None:
    with anyio.fail_after(timeout):
        while not condition():
            await anyio.sleep(0.02)


def same(*lists: TaskList) -> bool:
    first = lists[0].get_tasks()
    return all(other.get_tasks() == first for other in lists[1:])


async def test_local_list_rules() -> None:
    tasks = await TaskList.create("groceries")
    assert tasks.name == "groceries"
    milk = await tasks.add_task("milk", "2 litres")
    bread = await tasks.add_task("bread")
    items = tasks.get_tasks()
    assert [t.title for t in items] == ["milk", "bread"]  # creation order
    assert items[0].description == "2 litres" and items[0].status is TaskStatus.Empty
    assert items[0].assignee is None and items[0].updated_at >= items[0].created_at
    await tasks.complete_task(bread)  # completing an unclaimed task is allowed
    assert tasks.get_tasks()[1].status is TaskStatus.Done
    someone = x0x.AgentId(b"\x01" * 32)
    await tasks.claim_task(milk.to_hex(), agent_id=someone)
    assert tasks.get_tasks()[0].assignee == someone
    await tasks.remove_task(milk)
    assert [t.id for t in tasks.get_tasks()] == [bread]
    with pytest.raises(KeyError, match="no task") as info:
        await tasks.claim_task(milk)
    assert isinstance(info.value, x0x.NotFoundError)
    with pytest.raises(ValueError):
        await tasks.complete_task("not hex")


async def test_concurrent_claims_in_two_processes_pick_one_winner(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    plan = await alice.create_task_list("race")
    task = await plan.add_task("the contested task")
    peer = python(str(PEER), alice.local_addr, plan.id.to_hex())

    async def ask(command: str) -> str:
        send(peer, command)
        return await read_line(peer, timeout=20)

    try:
        ready = await read_line(peer)
        assert ready.startswith("ready ")
        bob = x0x.AgentId.from_hex(ready.split()[1])
        # Both claim before either can have heard of the other's claim.
        send(peer, "claim")
        await plan.claim_task(task)
        assert await read_line(peer, timeout=20) == "claimed"

        async def peer_agrees() -> Dict[str, object]:
            while True:
                theirs: Dict[str, object] = json.loads(await ask("report"))[0]
                mine = plan.get_tasks()[0]
                if mine.assignee and theirs["assignee"] == mine.assignee.to_hex():
                    return theirs
                await anyio.sleep(0.1)

        with anyio.fail_after(20):
            theirs = await peer_agrees()
        assert theirs["status"] == "Claimed"
        assert plan.get_tasks()[0].assignee in (alice.agent_id, bob)
        send(peer, "quit")
        assert await exit_code(peer) == 0
    finally:
        peer.kill()


async def test_late_joiner_gets_the_full_list(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    plan = await alice.create_task_list("backlog")
    for i in range(30):
        await plan.add_task(f"task {i}")
    late = await make_agent(bootstrap=alice.local_addr)
    replica = await late.join_task_list(plan.id.to_hex())
    await until(lambda: same(plan, replica) and len(replica.get_tasks()) == 30)
    assert replica.name == "backlog"
    assert [x.id for x in late.task_lists()] == [plan.id]


async def test_partition_then_heal_converges(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    bob = await make_agent(bootstrap=alice.local_addr)
    mine = await alice.create_task_list("p")
    theirs = await bob.join_task_list(mine.id)
    shared = await mine.add_task("shared")
    await until(lambda: same(mine, theirs) and len(theirs.get_tasks()) == 1)

    await bob.leave_network()  # partition
    await mine.add_task("alice only")
    await theirs.add_task("bob only")
    await theirs.claim_task(shared)
    await mine.complete_task(shared)
    await anyio.sleep(0.2)
    assert not same(mine, theirs)

    await bob.join_network()  # heal
    await until(lambda: same(mine, theirs) and len(mine.get_tasks()) == 3)
    statuses = {t.title: t.status for t in mine.get_tasks()}
    assert statuses == {
        "shared": TaskStatus.Done,  # Done beats Claimed
        "alice only": TaskStatus.Empty,
        "bob only": TaskStatus.Empty,
    }


async def test_restart_restores_lists_and_corrupt_files_are_kept_aside(
    make_agent: MakeAgent, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = await make_agent(data_dir=tmp_path)
    plan = await first.create_task_list("durable")
    task = await plan.add_task("survive", "a restart")
    await plan.claim_task(task)
    before = plan.get_tasks()
    await first.close()

    again = await make_agent(data_dir=tmp_path)
    assert again.agent_id == first.agent_id  # the data dir keeps the agent key too
    (restored,) = again.task_lists()
    assert restored.id == plan.id and restored.name == "durable"
    assert restored.get_tasks() == before
    await again.close()

    file = tmp_path / "tasklists" / f"{plan.id.to_hex()}.x0xl"
    damaged = bytearray(file.read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    file.write_bytes(bytes(damaged))
    with caplog.at_level(logging.WARNING, logger="x0x"):
        third = await make_agent(data_dir=tmp_path)
    assert third.task_lists() == []
    assert any("corrupt" in r.getMessage() and str(file) in r.getMessage() for r in caplog.records)
    assert file.with_suffix(".x0xl.corrupt").read_bytes() == bytes(damaged)


async def test_task_updated_events(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    bob = await make_agent(bootstrap=alice.local_addr)
    seen: List[x0x.TaskUpdatedEvent] = []
    bob.on("task_updated", seen.append)
    plan = await alice.create_task_list("e")
    replica = await bob.join_task_list(plan.id)
    task = await plan.add_task("watched")
    await plan.claim_task(task)
    await until(lambda: any(e["status"] == "Claimed" for e in seen))
    claimed = next(e for e in seen if e["status"] == "Claimed")
    assert claimed == {
        "list_id": plan.id.to_hex(),
        "task_id": task.to_hex(),
        "status": "Claimed",
        "assignee": alice.agent_id.to_hex(),
        "origin": "remote",
        "removed": False,
    }
    await replica.remove_task(task)
    await until(lambda: seen[-1]["removed"])
    assert seen[-1]["origin"] == "local" and seen[-1]["task_id"] == task.to_hex()
