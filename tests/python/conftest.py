"""Shared fixtures: every test gets its own HOME so nothing touches the real ~/.x0x; agents
built as the README does (``make_agent``); every ``async def`` test runs under anyio's pytest
plugin, once on asyncio and once on trio (``anyio_backend``)."""

import inspect
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, List, Optional, Union

import pytest

from x0x import Agent

MakeAgent = Callable[..., Awaitable[Agent]]


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """The event loop library an async test (and its async fixtures) run on. A test that only
    makes sense on one of them overrides it: ``@pytest.mark.parametrize("anyio_backend",
    ["asyncio"])``, with a comment saying why."""
    return str(request.param)


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(
    collector: Union[pytest.Module, pytest.Class], name: str, obj: Any
) -> None:
    """Marks each coroutine test function for anyio (``pytest.mark.anyio``) as it is collected,
    so that no test module has to: the plugin then runs it once per ``anyio_backend``. At
    collection, not in ``pytest_collection_modifyitems``: anyio releases before 4.13 (all that
    Python 3.8 and 3.9 get) only look for the mark here."""
    if collector.istestfunction(obj, name) and inspect.iscoroutinefunction(obj):
        pytest.mark.anyio(obj)
        pytest.mark.usefixtures("anyio_backend")(obj)


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
