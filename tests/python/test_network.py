"""Agents talking over real QUIC sockets, in this process and across processes, built with the
default builder (one HOME's machine key, the default bind) and joined at the address they report."""

import contextlib
import gc
import math
import os
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Tuple

import anyio
import pytest
from background import Background
from conftest import MakeAgent
from processes import exit_code, python, read_line

import x0x
from x0x import Agent, Message


async def next_message(subscription: x0x.Subscription, timeout: float = 10) -> Message:
    with anyio.fail_after(timeout):
        return await subscription.__anext__()


def cli(*args: str) -> "subprocess.Popen[str]":
    return python("-m", "x0x", *args)


async def test_two_agents_exchange_signed_messages(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    inbox = alice.subscribe("chat")
    bob = await make_agent(bootstrap=alice.local_addr)
    assert bob.is_connected()
    await bob.publish("chat", b"hello")
    message = await next_message(inbox)
    assert message == Message(b"hello", bob.agent_id, message.timestamp, "chat", 1)
    assert abs(message.timestamp / 1000 - time.time()) < 60
    stats = alice.stats()
    assert stats["delivered"] == 1 and stats["dropped_bad_signature"] == 0
    assert stats["envelopes_received"] == 1 and stats["duplicates"] == 0
    assert stats["neighbours"] == 1 and stats["bytes_in"] > 3309  # at least one signature


async def test_topic_stats_count_what_crossed_the_network(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    inbox = alice.subscribe("chat")
    bob = await make_agent(bootstrap=alice.local_addr)
    await bob.publish("chat", b"x" * 1000)
    await next_message(inbox)
    received, sent = alice.topic_stats("chat"), bob.topic_stats("chat")
    assert received["envelopes_in"] == 1 and received["bytes_in"] > 1000 + 3309
    assert sent["envelopes_out"] == 1 and sent["bytes_out"] == received["bytes_in"]
    assert alice.stats()["foreign_bytes_in"] == 0
    with pytest.raises(x0x.NotFoundError, match="has not subscribed to or published on"):
        alice.topic_stats("never used")
    with pytest.raises(x0x.InvalidArgumentError):
        alice.topic_stats("\udc80")  # a lone surrogate: not UTF-8


async def test_messages_from_a_separate_process(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    inbox = alice.subscribe("t")
    publisher = cli("publish", "t", "one", "two", "three", "--bootstrap", alice.local_addr)
    received = [await next_message(inbox, timeout=20) for _ in range(3)]
    assert [m.payload for m in received] == [b"one", b"two", b"three"]
    assert len({m.sender for m in received}) == 1
    assert received[0].sender != alice.agent_id
    assert publisher.wait(timeout=20) == 0


async def test_messages_to_a_separate_process(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    joined = anyio.Event()
    alice.on("peer_joined", lambda event: joined.set())
    subscriber = cli("subscribe", "t", "--count", "2", "--bootstrap", alice.local_addr)
    try:
        assert (await read_line(subscriber)).startswith("subscribed to 't'")
        with anyio.fail_after(15):
            await joined.wait()
        await alice.publish("t", b"first")
        await alice.publish("t", "second ✓".encode())
        lines = [await read_line(subscriber) for _ in range(2)]
        assert lines[0].endswith(f"t {alice.agent_id.to_hex()[:16]}: first")
        assert lines[1].endswith("second ✓")
        assert await exit_code(subscriber, 15) == 0
    finally:
        subscriber.kill()


async def test_every_subscriber_gets_every_message_in_order(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    first, second = alice.subscribe("t"), alice.subscribe("t")
    other = alice.subscribe("other topic")
    bob = await make_agent(bootstrap=alice.local_addr)
    own = bob.subscribe("t")
    for i in range(300):
        await bob.publish("t", str(i).encode())
    for subscription in (first, second, own):
        payloads = [(await next_message(subscription)).payload for _ in range(300)]
        assert payloads == [str(i).encode() for i in range(300)]
    assert other.dropped == 0
    with pytest.raises(TimeoutError):
        await next_message(other, timeout=0.3)


async def test_slow_subscriber_drops_oldest_and_counts(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    slow = alice.subscribe("t", capacity=4)
    for i in range(10):
        await alice.publish("t", str(i).encode())
    for _ in range(100):
        if alice.stats()["delivered"] >= 10:
            break
        await anyio.sleep(0.02)
    assert slow.dropped == 6
    assert [(await next_message(slow)).payload for _ in range(4)] == [b"6", b"7", b"8", b"9"]
    assert alice.stats()["queue_overflow"] == 6


async def test_cancelling_anext_loses_nothing(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    inbox = alice.subscribe("t")
    with anyio.move_on_after(0.05) as waiting:  # cancels the pending __anext__
        await inbox.__anext__()
    assert waiting.cancelled_caught
    assert not inbox.closed
    await alice.publish("t", b"after the cancel")
    assert (await next_message(inbox)).payload == b"after the cancel"


async def test_close_and_break_unsubscribe(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    inbox = alice.subscribe("t")
    async with anyio.create_task_group() as group:
        waiter = Background(group, inbox.__anext__)
        await anyio.sleep(0.05)
        inbox.close()
        with pytest.raises(StopAsyncIteration):
            await waiter.result(timeout=5)
    async with alice.subscribe("t") as scoped:
        await alice.publish("t", b"x")
        assert (await next_message(scoped)).payload == b"x"
    assert scoped.closed

    looped = alice.subscribe("t")
    await alice.publish("t", b"y")
    async for message in looped:
        assert message.payload == b"y"
        break
    for _ in range(50):  # the loop finalizes the abandoned iterator shortly
        if looped.closed:
            break
        gc.collect()
        await anyio.sleep(0.02)
    assert looped.closed


async def test_publish_needs_the_network(make_agent: MakeAgent) -> None:
    alice = await make_agent(join=False)
    with pytest.raises(x0x.NotConnectedError, match="join_network"):
        await alice.publish("t", b"x")
    await alice.join_network()
    await alice.publish("t", b"x")
    await alice.leave_network()
    with pytest.raises(ConnectionError):
        await alice.publish("t", b"x")
    with pytest.raises(ValueError, match="over the 262144-byte limit"):
        await alice.publish("t", bytes(262_145))
    with pytest.raises(ValueError, match="topic name must be 1 to 256 bytes"):
        await alice.publish("", b"x")
    with pytest.raises(TypeError):
        await alice.publish("t", "not bytes")  # type: ignore[arg-type]


async def test_unreachable_bootstrap_times_out() -> None:
    import socket

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    host, port = silent.getsockname()
    address = f"{host}:{port}"
    agent = await Agent.builder().with_bootstrap(address).build()
    try:
        with pytest.raises(x0x.X0xTimeoutError, match="could not join the network") as info:
            await agent.join_network(timeout=0.8)
        assert address in str(info.value)
        assert isinstance(info.value, TimeoutError)
        assert not agent.is_connected()
        with pytest.raises(x0x.NotConnectedError):  # the failed join is over
            await agent.publish("t", b"x")
    finally:
        await agent.close()
        silent.close()


async def test_events_fire_with_payloads(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    seen: List[Tuple[str, Dict[str, object]]] = []
    done = anyio.Event()

    def record(name: str) -> Callable[[Dict[str, object]], None]:
        def handler(payload: Dict[str, object]) -> None:
            seen.append((name, payload))
            if name == "disconnected":
                done.set()

        return handler

    handlers = {
        name: record(name) for name in ("connected", "disconnected", "peer_joined", "peer_left")
    }
    for name, handler in handlers.items():
        alice.on(name, handler)  # type: ignore[arg-type]

    async def failing(payload: Dict[str, object]) -> None:
        raise RuntimeError("a broken handler must not break the others")

    alice.on("peer_joined", failing)
    bob = await make_agent(bootstrap=alice.local_addr)
    await bob.leave_network()
    with anyio.fail_after(15):
        await done.wait()
    bob_id = bob.peer_id()
    assert ("connected", {"neighbours": 1}) in seen
    assert ("peer_joined", {"peer_id": bob_id}) in seen
    assert ("peer_left", {"peer_id": bob_id}) in seen
    assert seen[-1] == ("disconnected", {"neighbours": 0})
    alice.off("peer_joined", failing)
    alice.off("peer_joined", failing)  # not registered any more: ignored
    with pytest.raises(ValueError, match="unknown event"):
        alice.on("bogus", print)  # type: ignore[arg-type]


async def test_killed_peer_is_noticed_and_the_rest_still_delivers(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    left_in, left = anyio.create_memory_object_stream[str](math.inf)
    alice.on("peer_left", lambda event: left_in.send_nowait(event["peer_id"]))
    node = cli("node", "--bootstrap", alice.local_addr)
    try:
        line = await read_line(node)
        victim = line.split()[2]
        carol = await make_agent(bootstrap=alice.local_addr)
        inbox = alice.subscribe("t")
        os.kill(node.pid, signal.SIGKILL)  # no goodbye: only the idle timeout can tell
        node.wait(timeout=10)
        with anyio.fail_after(20):
            while await left.receive() != victim:
                pass
        await carol.publish("t", b"still here")
        assert (await next_message(inbox)).payload == b"still here"
    finally:
        node.kill()


def _sockets_and_threads() -> Tuple[int, int]:
    sockets = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(FileNotFoundError):  # the listing's own fd, closed by now
            sockets += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
    return sockets, len(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
async def test_closing_agents_releases_sockets_and_threads() -> None:
    async def cycle() -> None:
        first = await Agent.builder().build()
        await first.join_network()
        second = await Agent.builder().with_bootstrap(first.local_addr).build()
        await second.join_network()
        inbox = first.subscribe("t")
        await second.publish("t", b"x")
        await next_message(inbox)
        await second.close()
        await first.close()

    await cycle()  # starts the runtime's threads once
    await anyio.sleep(0.5)
    before = _sockets_and_threads()
    for _ in range(3):
        await cycle()
    for _ in range(100):  # threads finish shortly after their agent is freed
        # Each count on its own (tuples compare lexicographically: (2, 6) <= (3, 5)).
        if all(now <= then for now, then in zip(_sockets_and_threads(), before)):
            break
        await anyio.sleep(0.1)
    after = _sockets_and_threads()
    assert after[0] <= before[0], f"sockets leaked: {before} -> {after}"
    assert after[1] <= before[1], f"threads leaked: {before} -> {after}"
