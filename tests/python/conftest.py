"""Shared fixtures: every test gets its own HOME so nothing touches the real ~/.x0x; agents
built as the README does (``make_agent``)."""

from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable, List, Optional

import pytest

from x0x import Agent

MakeAgent = Callable[..., Awaitable[Agent]]


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # putenv: the Rust core reads it too
    return home


@pytest.fixture
async def make_agent() -> AsyncIterator[MakeAgent]:
    """Builds agents as the README does and closes them all at the end."""
    agents: List[Agent] = []

    async def make(bootstrap: Optional[str] = None, join: bool = True) -> Agent:
        builder = Agent.builder()
        if bootstrap:
            builder.with_bootstrap(bootstrap)
        agent = await builder.build()
        agents.append(agent)
        if join:
            await agent.join_network(timeout=10)
        return agent

    yield make
    for agent in agents:
        await agent.close()
