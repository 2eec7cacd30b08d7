"""Presence and capability discovery across processes: agents built as the README shows, one
HOME, joined at the addresses they report."""

import json
import subprocess
import time
from pathlib import Path
from typing import AsyncIterator, Dict, List, Tuple

import anyio
import pytest
from processes import exit_code, python, read_line, send

import x0x
from x0x import Agent, AgentInfo

PEER = str(Path(__file__).with_name("capability_peer.py"))


@pytest.fixture
async def agents() -> AsyncIterator[List[Agent]]:
    """Agents made in a test, closed at its end."""
    made: List[Agent] = []
    yield made
    for agent in made:
        await agent.close()


async def peer(capabilities: str, bootstrap: str) -> "Tuple[subprocess.Popen[str], Dict[str, str]]":
    proc = python(PEER, capabilities, bootstrap)
    identity = json.loads(await read_line(proc))
    return proc, identity


async def test_an_agent_in_another_process_is_found_by_capability(agents: List[Agent]) -> None:
    hub = await Agent.builder().build()
    agents.append(hub)
    await hub.join_network()
    proc, identity = await peer("summarize,translate:fr", hub.local_addr)
    try:
        finder = await Agent.builder().with_bootstrap(hub.local_addr).build()
        agents.append(finder)
        joined: List[str] = []
        finder.on("agent_joined", lambda event: joined.append(event["agent_id"]))
        await finder.join_network()
        found = await finder.find("translate:fr", timeout=5)
        assert [info.agent_id.to_hex() for info in found] == [identity["agent_id"]]
        info = found[0]
        assert isinstance(info, AgentInfo)
        assert info.machine_id.to_hex() == identity["machine_id"] == hub.machine_id.to_hex()
        assert info.capabilities == ["summarize", "translate:fr"]
        assert info.info == {"role": "capability_peer"}
        port = identity["local_addr"].rsplit(":", 1)[1]
        assert any(addr.endswith(f":{port}") for addr in info.addresses)
        assert 0 <= info.age < 60 and abs(info.last_seen - time.time()) < 60
        assert identity["agent_id"] in [p.agent_id.to_hex() for p in finder.peers()]
        for _ in range(100):  # the event reaches the loop a moment after the card
            if identity["agent_id"] in joined:
                break
            await anyio.sleep(0.05)
        assert identity["agent_id"] in joined
        assert await finder.find("nobody-does-this", timeout=0.5) == []

        # A new capability at run time; the old one is gone from the card.
        send(proc, "advertise review")
        assert await read_line(proc) == "advertised"
        deadline = time.monotonic() + 10
        while True:
            found = await finder.find("review", timeout=2, limit=1)
            if found and found[0].capabilities == ["review"]:
                break
            assert time.monotonic() < deadline, found
            await anyio.sleep(0.1)
        assert found[0].info == {"role": "capability_peer"}, "info kept"

        # Leaving: the agents that hold its card drop it.
        left: List[str] = []
        gone = anyio.Event()

        def on_left(event: Dict[str, str]) -> None:
            left.append(event["agent_id"])
            gone.set()

        finder.on("agent_left", on_left)
        send(proc, "leave")
        assert await read_line(proc) == "left"
        with anyio.fail_after(10):
            await gone.wait()
        assert left[0] == identity["agent_id"]
        assert identity["agent_id"] not in [p.agent_id.to_hex() for p in finder.peers()]
    finally:
        send(proc, "quit")
        assert await exit_code(proc) == 0


async def test_bad_capabilities_and_info_are_refused_with_the_cause(agents: List[Agent]) -> None:
    builder = Agent.builder()
    with pytest.raises(TypeError, match="list of strings"):
        builder.with_capabilities("summarize")
    with pytest.raises(ValueError, match="no spaces"):
        builder.with_capabilities(["two words"])
    with pytest.raises(x0x.InvalidArgumentError, match="at most 64"):
        builder.with_capabilities([f"c{i}" for i in range(65)])
    with pytest.raises(ValueError, match="info map"):
        builder.with_info({"k": "v" * 5000})
    with pytest.raises(TypeError, match="mapping"):
        builder.with_info([("k", "v")])  # type: ignore[arg-type]
    agent = await builder.with_capabilities(["ok"]).build()
    agents.append(agent)
    with pytest.raises(x0x.NotConnectedError):
        await agent.find("ok")
    await agent.join_network()
    with pytest.raises(ValueError, match="timeout"):
        await agent.find("ok", timeout=0)
    with pytest.raises(ValueError, match="capability"):
        await agent.find("")
    assert await agent.find("ok", timeout=0.3) == [], "never this agent itself"
    with pytest.raises(ValueError, match="no spaces"):
        await agent.advertise(["a b"])
