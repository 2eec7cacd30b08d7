"""Direct messages and requests over real QUIC sockets: to an agent in another process
(``direct_peer.py``) and between agents in this one, all built with the default builder and
joined at the addresses they report."""

import gc
import json
import math
import os
import signal
import time
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List

import anyio
import anyio.to_thread
import pytest
from background import Background
from conftest import MakeAgent
from processes import python, read_line, send

import x0x
from x0x import Agent, AgentId, DirectMessage
from x0x._ffi import pending_count

HERE = os.path.dirname(os.path.abspath(__file__))


class Peer:
    """``direct_peer.py`` in its own process, joined through ``bootstrap``."""

    def __init__(self, bootstrap: str) -> None:
        self.proc = python(os.path.join(HERE, "direct_peer.py"), bootstrap)
        self.agent_id = AgentId(bytes(32))

    async def start(self) -> "Peer":
        self.agent_id = AgentId.from_hex(json.loads(await read_line(self.proc))["agent_id"])
        return self

    async def command(self, line: str) -> str:
        send(self.proc, line)
        return await read_line(self.proc)

    async def stats(self) -> Dict[str, Any]:
        stats = json.loads(await self.command("stats"))
        assert isinstance(stats, dict)
        return stats

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)


@pytest.fixture
async def peer(make_agent: MakeAgent) -> AsyncIterator[Callable[..., Awaitable[Peer]]]:
    """Starts direct peers that bootstrap to the given agent; kills them at the end."""
    peers: List[Peer] = []

    async def start(agent: Agent, serve: bool = True) -> Peer:
        peer = Peer(agent.local_addr)
        peers.append(peer)
        await peer.start()
        if serve:
            assert await peer.command("serve") == "serving"
        return peer

    yield start
    for peer in peers:
        peer.stop()


async def test_requests_and_messages_cross_to_another_process(
    make_agent: MakeAgent, peer: Callable[..., Awaitable[Peer]]
) -> None:
    alice = await make_agent()
    other = await peer(alice)
    assert await alice.request(other.agent_id, b"ping") == b"echo:ping"
    assert await alice.request(other.agent_id.to_hex(), bytearray(b"hex id")) == b"echo:hex id"
    assert await alice.request(other.agent_id, b"") == b"echo:"
    big = bytes(range(256)) * 1023  # just under 256 KiB with the prefix
    assert await alice.request(other.agent_id, big) == b"echo:" + big
    await alice.send(other.agent_id, "plain ✓".encode())
    seen = json.loads(await read_line(other.proc))
    assert seen == {"message": "plain ✓", "sender": alice.agent_id.to_hex()}
    stats = alice.stats()
    assert stats["direct_out"] == 5 and stats["direct_refused"] == 0
    peer_stats = await other.stats()
    assert peer_stats["direct_in"] == 5 and peer_stats["direct_refused"] == 0


async def test_a_handler_that_raises_is_a_remote_error(
    make_agent: MakeAgent, peer: Callable[..., Awaitable[Peer]]
) -> None:
    alice = await make_agent()
    other = await peer(alice)
    with pytest.raises(x0x.RemoteError) as info:
        await alice.request(other.agent_id, b"fail:summarizer crashed: empty text")
    assert str(info.value) == "ValueError: summarizer crashed: empty text"
    assert info.value.status == x0x.RemoteError.status
    assert await alice.request(other.agent_id, b"still up") == b"echo:still up"
    assert (await other.stats())["direct_refused"] == 1


async def test_an_agent_without_an_inbox_refuses(
    make_agent: MakeAgent, peer: Callable[..., Awaitable[Peer]]
) -> None:
    alice = await make_agent()
    other = await peer(alice, serve=False)
    with pytest.raises(x0x.RemoteError, match="has no inbox open"):
        await alice.send(other.agent_id, b"anyone?")
    with pytest.raises(x0x.RemoteError, match="has no inbox open"):
        await alice.request(other.agent_id, b"anyone?")
    assert await other.command("serve") == "serving"
    assert await alice.request(other.agent_id, b"now") == b"echo:now"
    assert await other.command("stop") == "stopped"
    with pytest.raises(x0x.RemoteError, match="no inbox open"):
        await alice.request(other.agent_id, b"after stop")


async def test_a_killed_recipient_fails_within_the_timeout(
    make_agent: MakeAgent, peer: Callable[..., Awaitable[Peer]]
) -> None:
    alice = await make_agent()
    other = await peer(alice)
    assert await alice.request(other.agent_id, b"1") == b"echo:1"
    os.kill(other.proc.pid, signal.SIGKILL)  # no goodbye: the connection just goes quiet
    other.proc.wait(timeout=10)
    for call in (alice.request, alice.send):
        started = time.monotonic()
        with pytest.raises((x0x.NotFoundError, x0x.X0xTimeoutError)):
            await call(other.agent_id, b"2", timeout=2.0)
        assert time.monotonic() - started < 3.5, "no hang past the timeout"
    assert pending_count() == 0


async def test_direct_messages_need_the_network(
    make_agent: MakeAgent, peer: Callable[..., Awaitable[Peer]]
) -> None:
    alice = await make_agent()
    other = await peer(alice)
    loner = await make_agent(join=False)
    with pytest.raises(x0x.NotConnectedError, match="join_network"):
        await loner.request(other.agent_id, b"x")
    await alice.leave_network()
    with pytest.raises(x0x.NotConnectedError):
        await alice.request(other.agent_id, b"x")
    with pytest.raises(ConnectionError):
        await alice.send(other.agent_id, b"x")


async def test_a_thousand_concurrent_requests_are_all_answered(
    make_agent: MakeAgent, peer: Callable[..., Awaitable[Peer]]
) -> None:
    alice = await make_agent()
    other = await peer(alice)
    replies: Dict[int, bytes] = {}

    async def ask(i: int) -> None:
        replies[i] = await alice.request(other.agent_id, str(i).encode(), timeout=60)

    async with anyio.create_task_group() as group:
        for i in range(1000):
            group.start_soon(ask, i)
    assert [replies[i] for i in range(1000)] == [f"echo:{i}".encode() for i in range(1000)]
    stats = await other.stats()
    assert stats["direct_in"] == 1000 and stats["direct_refused"] == 0
    assert pending_count() == 0


async def test_cancelling_a_request_cancels_it_at_the_recipient(
    make_agent: MakeAgent, peer: Callable[..., Awaitable[Peer]]
) -> None:
    alice = await make_agent()
    other = await peer(alice)
    assert await alice.request(other.agent_id, b"warm up") == b"echo:warm up"
    refused = (await other.stats())["direct_refused"]
    async with anyio.create_task_group() as group:
        task = Background(group, alice.request, other.agent_id, b"slow", 60)
        await anyio.sleep(0.3)  # the recipient's handler is sleeping on it now
        task.cancel()
        started = time.monotonic()
        await task.wait()
        assert task.cancelled
        assert time.monotonic() - started < 1
    # The stop crosses the network: the recipient stops waiting for its handler's reply.
    for _ in range(100):
        if (await other.stats())["direct_refused"] > refused:
            break
        await anyio.sleep(0.05)
    assert (await other.stats())["direct_refused"] == refused + 1
    assert pending_count() == 0
    assert await alice.request(other.agent_id, b"after") == b"echo:after"


async def test_the_inbox_yields_messages_and_requests(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    bob = await make_agent(bootstrap=alice.local_addr)
    inbox = bob.inbox()
    await alice.send(bob.agent_id, b"hello")
    with anyio.fail_after(10):
        message = await inbox.__anext__()
    assert (message.payload, message.sender, message.request_id) == (b"hello", alice.agent_id, 0)
    assert not message.is_request and abs(message.timestamp / 1000 - time.time()) < 60
    with pytest.raises(x0x.InvalidArgumentError, match="not a request"):
        message.reply(b"x")
    assert "message from" in repr(message)

    async with anyio.create_task_group() as group:
        pending = Background(group, alice.request, bob.agent_id, b"question")
        with anyio.fail_after(10):
            request = await inbox.__anext__()
        assert request.is_request and request.request_id != 0 and request.payload == b"question"
        assert "request" in repr(request)
        with pytest.raises(TypeError):
            request.reply("not bytes")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="at most 262144 bytes"):
            request.reply(bytes(262_145))
        assert request.reply(memoryview(b"answer")) is True
        with pytest.raises(x0x.InvalidArgumentError, match="answered already"):
            request.reply(b"twice")
        assert await pending.result() == b"answer"

        pending = Background(group, alice.request, bob.agent_id, b"q2")
        with anyio.fail_after(10):
            request = await inbox.__anext__()
        assert request.reply_error("no\0pe: ✗") is True
        with pytest.raises(x0x.RemoteError) as info:
            await pending.result()
        assert str(info.value) == "no\ufffdpe: ✗"

    # A requester that gave up: the reply finds nobody waiting.
    with pytest.raises(x0x.X0xTimeoutError, match="may still have been processed"):
        await alice.request(bob.agent_id, b"q3", timeout=0.3)
    with anyio.fail_after(10):
        request = await inbox.__anext__()
    for _ in range(100):
        if bob.stats()["direct_refused"] >= 2:  # the stop reached bob
            break
        await anyio.sleep(0.05)
    assert request.reply(b"too late") is False
    assert request.closed
    inbox.close()
    assert inbox.closed


async def test_the_inbox_is_bounded_and_one_at_a_time(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    bob = await make_agent(bootstrap=alice.local_addr)
    with pytest.raises(ValueError, match="capacity"):
        bob.inbox(capacity=0)
    async with bob.inbox(capacity=2) as inbox:
        with pytest.raises(x0x.InUseError, match="an inbox is open already"):
            bob.inbox()
        with pytest.raises(x0x.InUseError):
            bob.serve(lambda message: b"")
        for i in range(5):
            await alice.send(bob.agent_id, str(i).encode())
        assert inbox.dropped == 3
        payloads = [(await inbox.__anext__()).payload for _ in range(2)]
        assert payloads == [b"3", b"4"]
        # Cancelling a pending __anext__ loses nothing.
        with anyio.move_on_after(0.05) as scope:
            await inbox.__anext__()
        assert scope.cancelled_caught
        await alice.send(bob.agent_id, b"kept")
        with anyio.fail_after(10):
            assert (await inbox.__anext__()).payload == b"kept"
    assert inbox.closed
    with pytest.raises(x0x.ClosedError):
        inbox.dropped  # noqa: B018
    with pytest.raises(x0x.RemoteError, match="no inbox open"):
        await alice.send(bob.agent_id, b"closed")

    # A request still queued when the inbox closes is refused.
    inbox = bob.inbox()
    arrived = bob.stats()["direct_in"]
    async with anyio.create_task_group() as group:
        pending = Background(group, alice.request, bob.agent_id, b"unread")
        for _ in range(200):
            if bob.stats()["direct_in"] > arrived:
                break
            await anyio.sleep(0.01)
        await anyio.sleep(0.1)  # counted on arrival, queued just after
        inbox.close()
        with pytest.raises(x0x.RemoteError, match="without replying"):
            await pending.result()

    # Leaving async for closes the inbox; a closed inbox ends iteration.
    inbox = bob.inbox()
    await alice.send(bob.agent_id, b"once")
    async for message in inbox:
        assert message.payload == b"once"
        break
    for _ in range(50):  # the loop finalizes the abandoned iterator shortly
        if inbox.closed:
            break
        gc.collect()
        await anyio.sleep(0.02)
    assert inbox.closed
    with pytest.raises(StopAsyncIteration):
        await inbox.__anext__()
    async with anyio.create_task_group() as group:
        waiting = Background(group, bob.inbox().__anext__)
        await anyio.sleep(0.05)
        await bob.close()  # the agent's close ends its inbox too
        with pytest.raises(StopAsyncIteration):
            await waiting.result()


async def test_serve_answers_until_closed(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    bob = await make_agent(bootstrap=alice.local_addr)
    plain_in, plain = anyio.create_memory_object_stream[bytes](math.inf)
    waiting, release = anyio.Event(), anyio.Event()

    async def handler(message: DirectMessage) -> Any:
        if not message.is_request:
            plain_in.send_nowait(message.payload)
            raise RuntimeError("logged, not sent anywhere")
        if message.payload == b"none":
            return None
        if message.payload == b"self":
            message.reply(b"answered by the handler")
            return None
        if message.payload == b"wait":
            waiting.set()
            await release.wait()
        return message.payload.upper()

    async with bob.serve(handler) as server, anyio.create_task_group() as group:
        assert not server.closed and server.dropped == 0 and "serving" in repr(server)
        assert await alice.request(bob.agent_id, b"abc") == b"ABC"
        with pytest.raises(x0x.RemoteError, match=r"^TypeError: the handler returned NoneType$"):
            await alice.request(bob.agent_id, b"none")
        assert await alice.request(bob.agent_id, b"self") == b"answered by the handler"
        await alice.send(bob.agent_id, b"note")
        with anyio.fail_after(10):
            assert await plain.receive() == b"note"
        slow = Background(group, alice.request, bob.agent_id, b"wait")
        with anyio.fail_after(10):
            await waiting.wait()  # its handler runs (the earlier ones may still be finishing)
        server.close()
        assert server.closed
        with pytest.raises(x0x.RemoteError, match="no inbox open"):
            await alice.request(bob.agent_id, b"late")
        closing = Background(group, server.wait_closed)
        await anyio.sleep(0.1)
        assert not closing.done(), "wait_closed waits for running handlers"
        release.set()
        await closing.result()
        assert await slow.result() == b"WAIT", "a handler running at close still answers"
    # A sync handler works too, and a new server may open once the last one closed.
    async with bob.serve(lambda message: bytes(reversed(message.payload))):
        assert await alice.request(bob.agent_id, b"abc") == b"cba"


async def test_serve_needs_a_running_loop() -> None:
    async with await Agent.builder().build() as agent:
        # A thread of its own runs no event loop.
        with pytest.raises(RuntimeError, match="needs a running event loop"):
            await anyio.to_thread.run_sync(agent.serve, lambda message: b"")


async def test_bad_arguments_are_refused(make_agent: MakeAgent) -> None:
    alice = await make_agent()
    nobody = AgentId(bytes([7]) * 32)
    with pytest.raises(TypeError, match="agent_id must be an AgentId"):
        await alice.send(b"\x07" * 32, b"x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await alice.send("not hex", b"x")
    with pytest.raises(TypeError, match="payload must be bytes-like"):
        await alice.request(nobody, "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout must be positive"):
        await alice.request(nobody, b"x", timeout=0)
    with pytest.raises(ValueError, match="at most 262144 bytes, not 262145"):
        await alice.send(nobody, bytes(262_145))
    with pytest.raises(x0x.InvalidArgumentError, match="this agent's own id"):
        await alice.request(alice.agent_id, b"x")
    with pytest.raises(x0x.NotFoundError, match=r"no agent .* is known in the network"):
        await alice.send(nobody, b"x", timeout=5)
    with pytest.raises(x0x.NotFoundError):  # no limit: capped at the C ABI's 49 days
        await alice.request(nobody, b"x", timeout=float("inf"))
    assert pending_count() == 0
