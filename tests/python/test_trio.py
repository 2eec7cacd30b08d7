"""x0x in a trio program, used as a trio user writes one: ``trio.run(main)``, agents built with
the default builder as the README shows, nurseries and cancel scopes; no anyio (the rest of
the suite runs on trio through anyio's pytest plugin). And asyncio programs never import trio."""

import json
import subprocess
import sys
from typing import Dict, List, Tuple

import pytest
import trio

import x0x
from x0x import Agent, DirectMessage, TaskStatus
from x0x._ffi import pending_count


async def two_agents() -> Tuple[Agent, Agent]:
    """Alice starts a network; Bob joins it at the address she reports."""
    alice = await Agent.builder().build()
    await alice.join_network(timeout=10)
    bob = await Agent.builder().with_bootstrap(alice.local_addr).build()
    await bob.join_network(timeout=10)
    return alice, bob


async def until_no_pending() -> None:
    with trio.fail_after(10):
        while pending_count():
            await trio.sleep(0.01)


def test_pubsub_between_two_agents() -> None:
    async def main() -> List[bytes]:
        alice, bob = await two_agents()
        async with alice, bob:
            got: List[bytes] = []
            async with alice.subscribe("chat") as inbox:
                # Both publish at once, from two tasks of a nursery.
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(bob.publish, "chat", b"hello from bob")
                    nursery.start_soon(alice.publish, "chat", b"hello from alice")
                with trio.fail_after(10):
                    async for message in inbox:
                        got.append(message.payload)
                        if len(got) == 2:
                            break
            assert alice.stats()["delivered"] == 2 and bob.stats()["published"] == 1
            return sorted(got)

    assert trio.run(main) == [b"hello from alice", b"hello from bob"]


def test_serve_and_request() -> None:
    async def main() -> None:
        alice, bob = await two_agents()
        started = trio.Event()

        async def shout(message: DirectMessage) -> bytes:
            if message.payload == b"fail":
                raise ValueError("nothing to shout")
            started.set()
            await trio.sleep(0)  # a handler is a trio task: trio's own functions work in it
            return message.payload.upper() + b"!"

        async with alice, bob, bob.serve(shout) as server:
            assert await alice.request(bob.agent_id, b"are you there") == b"ARE YOU THERE!"
            assert started.is_set()
            with pytest.raises(x0x.RemoteError, match="ValueError: nothing to shout"):
                await alice.request(bob.agent_id, b"fail")
            replies: Dict[int, bytes] = {}

            async def ask(i: int) -> None:
                replies[i] = await alice.request(bob.agent_id, str(i).encode())

            async with trio.open_nursery() as nursery:
                for i in range(50):
                    nursery.start_soon(ask, i)
            assert replies == {i: f"{i}!".encode() for i in range(50)}
            assert "serving" in repr(server)
        assert server.closed
        assert pending_count() == 0

    trio.run(main)


def test_an_async_peer_joined_handler() -> None:
    async def main() -> None:
        alice = await Agent.builder().build()
        joined: List[str] = []
        seen = trio.Event()

        async def on_peer(event: x0x.PeerEvent) -> None:
            await trio.sleep(0)  # runs as a trio system task
            joined.append(event["peer_id"])
            seen.set()

        async with alice:
            alice.on("peer_joined", on_peer)
            await alice.join_network(timeout=10)
            async with await Agent.builder().with_bootstrap(alice.local_addr).build() as bob:
                await bob.join_network(timeout=10)
                with trio.fail_after(15):
                    await seen.wait()
                assert joined == [bob.peer_id()]

    trio.run(main)


def test_a_shared_task_list_converges() -> None:
    async def main() -> None:
        alice, bob = await two_agents()
        async with alice, bob:
            plan = await alice.create_task_list("release 1.0")
            docs = await plan.add_task("write docs", "the API part")
            await plan.add_task("tag release")
            work = await bob.join_task_list(plan.id)
            with trio.fail_after(15):
                while len(work.get_tasks()) < 2:
                    await trio.sleep(0.02)
            await work.claim_task(docs)
            await work.complete_task(docs)
            with trio.fail_after(15):
                while plan.get_tasks() != work.get_tasks():
                    await trio.sleep(0.02)
            done = {t.title: (t.status, t.assignee) for t in plan.get_tasks()}
            assert done == {
                "write docs": (TaskStatus.Done, bob.agent_id),
                "tag release": (TaskStatus.Empty, None),
            }

    trio.run(main)


def test_move_on_after_cancels_a_pending_anext_and_loses_nothing() -> None:
    async def main() -> None:
        async with await Agent.builder().build() as alice:
            await alice.join_network(timeout=10)
            inbox = alice.subscribe("t")
            with trio.move_on_after(0.1) as scope:
                await inbox.__anext__()  # nothing published: waits on the native side
            assert scope.cancelled_caught
            await until_no_pending()  # the native read was cancelled, not left behind
            assert not inbox.closed
            await alice.publish("t", b"after the cancel")
            with trio.fail_after(10):
                assert (await inbox.__anext__()).payload == b"after the cancel"

    trio.run(main)


def test_handlers_need_a_running_trio_run() -> None:
    agent = trio.run(Agent.builder().build)  # outside the run now
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        agent.on("connected", print)
    with pytest.raises(RuntimeError, match="needs a running event loop"):
        agent.serve(lambda message: b"")
    trio.run(agent.close)


ASYNCIO_USER = """
import asyncio, json, sys
import x0x

async def main():
    alice = await x0x.Agent.builder().build()
    await alice.join_network(timeout=10)
    joined = asyncio.Event()
    alice.on("peer_joined", lambda event: joined.set())
    bob = await x0x.Agent.builder().with_bootstrap(alice.local_addr).build()
    await bob.join_network(timeout=10)
    await asyncio.wait_for(joined.wait(), 15)
    inbox = alice.subscribe("t")
    await bob.publish("t", b"hi")
    message = await asyncio.wait_for(inbox.__anext__(), 10)
    async with bob.serve(lambda m: m.payload.upper()):
        reply = await alice.request(bob.agent_id, b"ping")
    plan = await alice.create_task_list("l")
    await plan.add_task("t")
    await bob.close()
    await alice.close()
    return [message.payload.decode(), reply.decode(), len(plan.get_tasks())]

print(json.dumps({"results": asyncio.run(main()), "loaded": sorted(
    name for name in ("trio", "anyio", "sniffio") if name in sys.modules)}))
"""


def test_an_asyncio_program_never_imports_trio() -> None:
    done = subprocess.run(
        [sys.executable, "-c", ASYNCIO_USER], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["results"] == ["hi", "PING", 1]
    assert report["loaded"] == [], "an asyncio user needs (and loads) nothing else"
