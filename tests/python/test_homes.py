"""Identities as a new user meets them: agents from the plain default builder (one HOME, the
default bind, addresses as the agents report them) in one process and in many, a data dir that
keeps an agent itself across restarts, one agent running twice, and joins that wait."""

import asyncio
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List

import anyio
import anyio.to_thread
import pytest
from processes import exit_code, free_port, python, read_line, send

import x0x
from x0x import Agent, TaskStatus

HERE = Path(__file__).parent


def spawn(script: str, *args: str) -> "subprocess.Popen[str]":
    return python(str(HERE / script), *args)


async def test_three_processes_with_the_default_builder_form_one_network() -> None:
    peers: List[subprocess.Popen[str]] = []
    try:
        identities: List[Dict[str, Any]] = []
        for _ in range(3):
            # Each bootstraps to the one before it, at the address that one reported.
            bootstrap = [identities[-1]["local_addr"]] if identities else []
            peers.append(spawn("chat_peer.py", *bootstrap))
            identities.append(json.loads(await read_line(peers[-1])))
        assert identities[0]["local_addr"].startswith("0.0.0.0:")
        for peer in peers:
            send(peer, "publish")
        for peer in peers:
            assert await read_line(peer) == "published"
            send(peer, "await 3")
        expected = {(i["agent_id"], f"hello from {i['agent_id']}") for i in identities}
        for peer in peers:
            got = {tuple(pair) for pair in json.loads(await read_line(peer))}
            assert got == expected
        # One machine: one machine id (the one this process loads from the same HOME too).
        async with await Agent.builder().build() as here:
            machine = here.machine_id.to_hex()
        assert {i["machine_id"] for i in identities} == {machine}
        assert len({i["agent_id"] for i in identities}) == 3
        assert len({i["peer_id"] for i in identities}) == 3
    finally:
        for peer in peers:
            peer.kill()
            peer.wait()


async def test_three_agents_in_one_process_with_the_default_builder() -> None:
    first = await Agent.builder().build()
    await first.join_network()
    second = await Agent.builder().with_bootstrap(first.local_addr).build()
    await second.join_network()
    third = await Agent.builder().with_bootstrap(second.local_addr).build()
    await third.join_network()
    agents = [first, second, third]
    try:
        rooms = [agent.subscribe("room") for agent in agents]
        for agent in agents:
            await agent.publish("room", agent.agent_id.to_hex().encode())
        for room in rooms:
            with anyio.fail_after(15):
                got = {await room.__anext__() for _ in range(3)}
            assert {(m.sender, m.payload) for m in got} == {
                (a.agent_id, a.agent_id.to_hex().encode()) for a in agents
            }
        assert len({a.machine_id for a in agents}) == 1
        assert len({a.agent_id for a in agents}) == 3
        assert len({a.peer_id() for a in agents}) == 3
        assert first.local_addrs[0] == "127.0.0.1:" + first.local_addr.split(":")[1]
    finally:
        for agent in agents:
            await agent.close()


async def test_a_restart_with_the_same_data_dir_is_the_same_agent(tmp_path: Path) -> None:
    async with await Agent.builder().build() as alice:
        await alice.join_network()
        plan = await alice.create_task_list("plan")
        task = await plan.add_task("the task")
        home = tmp_path / "bob"
        bob = spawn("tasklist_peer.py", alice.local_addr, plan.id.to_hex(), str(home))
        try:
            bob_id = (await read_line(bob)).split()[1]
            send(bob, "claim")
            assert await read_line(bob) == "claimed"
            send(bob, "quit")
            assert await exit_code(bob) == 0
        finally:
            bob.kill()
        mode = (home / "agent.key").stat().st_mode & 0o777
        assert mode == 0o600

        again = spawn("tasklist_peer.py", alice.local_addr, plan.id.to_hex(), str(home))
        try:
            assert (await read_line(again)).split()[1] == bob_id, "a new agent id after restart"
            send(again, "report")
            (restored,) = json.loads(await read_line(again))
            assert restored == {"id": task.to_hex(), "status": "Claimed", "assignee": bob_id}
            send(again, "quit")
        finally:
            await exit_code(again)
        (seen,) = plan.get_tasks()
        assert seen.status is TaskStatus.Claimed
        assert seen.assignee is not None and seen.assignee.to_hex() == bob_id


SECOND_BUILD = """
import asyncio, sys, x0x
async def main():
    try:
        await x0x.Agent.builder().with_data_dir(sys.argv[1]).build()
    except x0x.X0xError as e:
        print(type(e).__name__, isinstance(e, OSError), e)
asyncio.run(main())
"""


async def test_a_second_build_with_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    home = tmp_path / "agent"
    async with await Agent.builder().with_data_dir(home).build() as first:
        await first.join_network()
        key = (home / "agent.key").read_bytes()
        done = await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                [sys.executable, "-c", SECOND_BUILD, str(home)],
                capture_output=True,
                text=True,
                timeout=60,
            )
        )
        name, is_os_error, message = done.stdout.strip().split(" ", 2)
        assert (name, is_os_error) == ("InUseError", "True"), done.stderr
        assert str(home) in message and f"process {os.getpid()}" in message
        # In this process too, and the first agent is untouched.
        with pytest.raises(x0x.InUseError, match="in use by a running agent"):
            await Agent.builder().with_data_dir(home).build()
        assert (home / "agent.key").read_bytes() == key
        inbox = first.subscribe("t")
        await first.publish("t", b"still working")
        with anyio.fail_after(10):
            assert (await inbox.__anext__()).payload == b"still working"
    # Closed: the home is free again, for the same agent.
    async with await Agent.builder().with_data_dir(home).build() as again:
        assert again.agent_id == first.agent_id


async def test_a_joiner_started_before_its_bootstrap_node_joins() -> None:
    address = f"127.0.0.1:{free_port()}"
    command = ["subscribe", "t", "--count", "1", "--bootstrap", address, "--timeout", "8"]
    subscriber = python("-m", "x0x", *command)
    try:
        await anyio.sleep(2)
        node = await Agent.builder().with_bind(address).build()
        async with node:
            await node.join_network()
            assert (await read_line(subscriber, timeout=10)).startswith("subscribed to 't'")
            await node.publish("t", b"you made it")
            assert (await read_line(subscriber)).endswith(": you made it")
            assert await exit_code(subscriber, 10) == 0
    finally:
        subscriber.kill()


async def test_the_same_agent_key_twice_is_an_in_use_error() -> None:
    key = x0x.generate_agent_key()
    async with await Agent.builder().with_agent_key(key).build() as first:
        await first.join_network()
        twin = await Agent.builder().with_agent_key(key).with_bootstrap(first.local_addr).build()
        async with twin:
            with pytest.raises(x0x.InUseError, match="same agent key"):
                await twin.join_network(timeout=8)
        assert first.stats()["identity_conflicts"] >= 1


async def test_bootstrapping_to_itself_says_so() -> None:
    address = f"127.0.0.1:{free_port()}"
    async with await Agent.builder().with_bind(address).with_bootstrap(address).build() as agent:
        with pytest.raises(x0x.InvalidArgumentError, match="this agent's own"):
            await agent.join_network(timeout=8)


async def test_api_edges() -> None:
    plan = await x0x.TaskList.create("edges")
    task = await plan.add_task("no description", None)
    assert plan.get_tasks()[0].id == task and plan.get_tasks()[0].description == ""
    async with await Agent.builder().build() as agent:
        with pytest.raises(x0x.InvalidArgumentError):
            await agent.create_task_list("lone \udcff surrogate")
        with pytest.raises(TypeError, match="topic must be a str"):
            agent.subscribe(b"bytes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="title must be a str"):
            await plan.add_task(None)  # type: ignore[arg-type]


def test_on_without_a_running_loop_is_a_clear_error() -> None:
    agent = asyncio.run(Agent.builder().build())
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail here
        with pytest.raises(RuntimeError, match="needs a running event loop"):
            agent.on("connected", print)
    asyncio.run(agent.close())
