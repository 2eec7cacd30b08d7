"""Every Python example runs, and says what it should."""

import subprocess
import sys
from pathlib import Path
from typing import List

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def run(name: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def machine_line(out: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith("machine id:")]
    assert len(lines) == 1, out
    return lines[0]


def test_basic_agent_keeps_its_machine_id(isolated_home: Path, tmp_path: Path) -> None:
    # As a user runs it: no argument, the key in ~/.x0x (the test's HOME).
    first, second = run("basic_agent.py"), run("basic_agent.py")
    assert machine_line(first) == machine_line(second)
    assert (isolated_home / ".x0x" / "machine.key").exists()
    assert "public key: 1952 bytes of ML-DSA-65" in first
    port = first.split("joined:     listening on 0.0.0.0:", 1)[1].split(",")[0]
    assert f"dialable:   127.0.0.1:{port}" in first  # loopback first
    # A key file given by path is another machine identity, kept in that file.
    key = tmp_path / "elsewhere" / "machine.key"
    third = run("basic_agent.py", str(key))
    assert machine_line(third) != machine_line(first) and key.exists()
    assert machine_line(run("basic_agent.py", str(key))) == machine_line(third)


def test_pubsub_messaging_crosses_between_agents() -> None:
    out = run("pubsub_messaging.py")
    assert "bob connected: True" in out
    assert "alice received from bob: hi alice, bob here" in out
    assert "bob received from alice: hello bob, this is alice" in out
    assert "alice: published 1, delivered 2, rejected 0" in out


def test_direct_messages_are_answered_and_refused() -> None:
    out = run("direct_messages.py")
    for expected in (
        "bob got a message: hi bob, two questions coming",
        "alice asked 'are you there', bob replied 'ARE YOU THERE!'",
        "alice asked 'loud and clear', bob replied 'LOUD AND CLEAR!'",
        "bob's handler failed: ValueError: nothing to shout",
        "refused: agent AgentId(",
        "alice: 5 direct messages and requests sent",
    ):
        assert expected in out, out


def test_request_response_finds_the_summarizer_by_capability() -> None:
    out = run("request_response.py")
    for expected in (
        "with summarize, summarize:en",
        "its card says model=first-five-words",
        "same machine: True",
        "summary: x0x lets software agents find ...",
    ):
        assert expected in out, out


def test_events_example_sees_a_visitor_come_and_go() -> None:
    out = run("events.py")
    for expected in (
        "hub: connected (1 neighbour)",
        "hub: peer event for",
        "visitor leaves",
        "hub: disconnected (no neighbours left)",
    ):
        assert expected in out, out


def test_task_collaboration_converges() -> None:
    out = run("task_collaboration.py")
    assert "worker joined 'release 1.0'" in out
    assert "[Done   ] write docs by worker" in out
    assert "[Claimed] tag release by worker" in out
    assert out.rstrip().endswith("converged: True")


@pytest.mark.parametrize("command", [["--help"], ["publish", "--help"]])
def test_cli_help(command: List[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "x0x", *command], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "usage: python -m x0x" in done.stdout
