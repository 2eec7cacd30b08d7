"""The installed ``x0x`` command, run as a new user runs it: separate processes, the default
builder (no --bind), real loopback sockets, and the addresses the command itself reports."""

import importlib.metadata
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import anyio
import pytest
from processes import exit_code, free_port, read_line, x0x

import x0x as x0x_package
from x0x import Agent

Record = Dict[str, Any]
HEX_ID = 64


@pytest.fixture(autouse=True)
def no_x0x_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # A new user's shell has none of these: the developer's must not leak into the tests.
    for variable in ("X0X_BOOTSTRAP", "X0X_BIND", "X0X_DATA_DIR"):
        monkeypatch.delenv(variable, raising=False)


@pytest.fixture
def started() -> Iterator[List["subprocess.Popen[str]"]]:
    """Processes a test starts; any still running at the end are killed."""
    procs: List[subprocess.Popen[str]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


async def record(proc: "subprocess.Popen[str]") -> Record:
    """The next line the process prints, parsed as the JSON object it must be."""
    line = await read_line(proc)
    parsed = json.loads(line)
    assert isinstance(parsed, dict), line
    return parsed


async def record_where(proc: "subprocess.Popen[str]", wanted: Callable[[Record], bool]) -> Record:
    """The first line from now on that ``wanted`` accepts (a node also reports other peers)."""
    while True:
        found = await record(proc)
        if wanted(found):
            return found


def finished(
    proc: "subprocess.Popen[str]", timeout: float = 60
) -> "subprocess.CompletedProcess[str]":
    out, err = proc.communicate(timeout=timeout)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


async def start_node(started: List["subprocess.Popen[str]"], *args: str) -> Record:
    node = x0x("node", "--json", *args)
    started.append(node)
    listening = await record(node)
    assert listening["event"] == "listening", listening
    return listening


def loopback(whoami: Record) -> str:
    """The address to dial on this machine, as the command reports it: the first of ``addrs``
    (loopback first). ``addr`` is the bound wildcard with the default bind."""
    addrs = whoami["addrs"]
    assert isinstance(addrs, list) and addrs, whoami
    assert addrs[0].startswith("127.0.0.1:"), addrs
    return str(addrs[0])


def test_version() -> None:
    done = finished(x0x("--version"))
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout == f"x0x {x0x_package.__version__}\n"
    assert x0x_package.__version__ == importlib.metadata.version("agent-x0x")


def test_help_names_the_command() -> None:
    done = finished(x0x("subscribe", "--help"))
    assert done.returncode == 0 and done.stdout.startswith("usage: x0x subscribe"), done.stdout
    assert "X0X_BOOTSTRAP" in done.stdout and "--json" in done.stdout


async def test_a_message_crosses_three_processes_as_json(
    started: List["subprocess.Popen[str]"],
) -> None:
    node_info = await start_node(started)
    node = started[0]
    assert len(node_info["agent_id"]) == HEX_ID and len(node_info["machine_id"]) == HEX_ID
    assert node_info["addr"].startswith("0.0.0.0:")  # the default bind, as the library reports it
    address = loopback(node_info)
    assert address.endswith(":" + node_info["addr"].rsplit(":", 1)[1])

    subscriber = x0x("subscribe", "chat", "--json", "--bootstrap", address)
    started.append(subscriber)
    subscribed = await record(subscriber)
    assert subscribed["event"] == "subscribed" and subscribed["topic"] == "chat", subscribed
    me = subscribed["agent_id"]
    await record_where(node, lambda r: r == {"event": "peer_joined", "peer_id": me})

    done = finished(x0x("publish", "chat", "hello ✓", "--json", "--bootstrap", address))
    assert (done.returncode, done.stderr) == (0, ""), done
    published = json.loads(done.stdout)
    assert {k: published[k] for k in ("event", "topic", "count")} == {
        "event": "published",
        "topic": "chat",
        "count": 1,
    }
    sender = published["agent_id"]
    assert len(sender) == HEX_ID and sender not in (me, node_info["agent_id"])

    message = await record(subscriber)
    assert isinstance(message.pop("timestamp_ms"), int) and message.pop("hops") >= 1, message
    assert message == {
        "event": "message",
        "topic": "chat",
        "sender": sender,
        "payload": "hello ✓",
        "encoding": "utf-8",
    }

    # Bytes that are not UTF-8, from an agent in this process, arrive base64-encoded.
    async with await Agent.builder().with_bootstrap(address).build() as agent:
        await agent.join_network(timeout=10)
        await agent.publish("chat", b"\xff\x00binary")
        binary = await record(subscriber)
    assert (binary["sender"], binary["encoding"]) == (agent.agent_id.to_hex(), "base64")
    assert binary["payload"] == "/wBiaW5hcnk="

    # SIGTERM: the subscriber leaves the network (the node sees it go), then exits 143.
    subscriber.send_signal(signal.SIGTERM)
    assert await exit_code(subscriber) == 128 + signal.SIGTERM
    assert subscriber.stderr is not None and subscriber.stderr.read() == ""
    await record_where(node, lambda r: r == {"event": "peer_left", "peer_id": me})
    node.send_signal(signal.SIGINT)
    assert await exit_code(node) == 128 + signal.SIGINT


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
async def test_a_signal_ends_a_subscriber_with_128_plus_it(
    started: List["subprocess.Popen[str]"], signum: signal.Signals
) -> None:
    subscriber = x0x("subscribe", "t")  # the human format; alone, it starts a network
    started.append(subscriber)
    assert (await read_line(subscriber)).startswith("subscribed to 't' as ")
    subscriber.send_signal(signum)
    done = finished(subscriber)
    assert (done.returncode, done.stdout, done.stderr) == (128 + signum, "", "")
    assert {130: signal.SIGINT, 143: signal.SIGTERM}[done.returncode] == signum


def test_an_unreachable_bootstrap_is_one_error_line() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    done = finished(x0x("subscribe", "t", "--json", "--bootstrap", address, "--timeout", "3"))
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.startswith("x0x: error: could not join the network"), done.stderr
    assert address in done.stderr and done.stderr.count("\n") == 1, done.stderr


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--bootstrap", "nowhere"], {}, "x0x: error: --bootstrap: invalid bootstrap address"),
        ([], {"X0X_BOOTSTRAP": "nowhere"}, "x0x: error: X0X_BOOTSTRAP: invalid bootstrap"),
        ([], {"X0X_BIND": "127.0.0.1"}, "x0x: error: X0X_BIND: invalid bind address"),
    ],
    ids=["flag", "X0X_BOOTSTRAP", "X0X_BIND"],
)
def test_a_bad_address_is_a_usage_error(
    args: List[str], env: Dict[str, str], expected: str
) -> None:
    done = finished(x0x("publish", "t", "hi", *args, env=env))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith(expected) and done.stderr.count("\n") == 1, done.stderr


def test_an_unknown_option_is_a_usage_error() -> None:
    done = finished(x0x("node", "--no-such-option"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.splitlines()[-1] == "x0x: error: unrecognized arguments: --no-such-option"
    assert "Traceback" not in done.stderr


async def test_x0x_bootstrap_stands_in_for_the_flag(started: List["subprocess.Popen[str]"]) -> None:
    address = loopback(await start_node(started))
    node = started[0]
    dead = f"127.0.0.1:{free_port()}"
    # Comma-separated, spaces allowed; one live peer is enough to join.
    subscriber = x0x("subscribe", "t", "--json", env={"X0X_BOOTSTRAP": f"{dead}, {address}"})
    started.append(subscriber)
    me = (await record(subscriber))["agent_id"]
    await record_where(node, lambda r: r == {"event": "peer_joined", "peer_id": me})
    # The flag wins over the variable (which would be a usage error here).
    done = finished(
        x0x("publish", "t", "via env", "--bootstrap", address, env={"X0X_BOOTSTRAP": "x"})
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    assert (await record(subscriber))["payload"] == "via env"
    done = finished(x0x("publish", "t", "env only", env={"X0X_BOOTSTRAP": address}))
    assert (done.returncode, done.stderr) == (0, ""), done
    assert (await record(subscriber))["payload"] == "env only"


async def test_x0x_bind_and_data_dir_stand_in_for_the_flags(
    started: List["subprocess.Popen[str]"], tmp_path: Path
) -> None:
    home = tmp_path / "agent"
    env = {"X0X_BIND": "127.0.0.1:0", "X0X_DATA_DIR": str(home)}
    ids = []
    for _ in range(2):  # the same home twice: the same agent
        proc = x0x("node", "--json", env=env)
        started.append(proc)
        listening = await record(proc)
        assert listening["addr"].startswith("127.0.0.1:") and listening["addrs"] == [
            listening["addr"]
        ]
        ids.append(listening["agent_id"])
        proc.send_signal(signal.SIGTERM)
        assert await exit_code(proc) == 128 + signal.SIGTERM
    assert ids[0] == ids[1] and (home / "agent.key").is_file()
    # --bind wins over X0X_BIND.
    proc = x0x("node", "--json", "--bind", "127.0.0.1:0", env={"X0X_BIND": "not an address"})
    started.append(proc)
    assert (await record(proc))["addr"].startswith("127.0.0.1:")
    proc.send_signal(signal.SIGINT)
    assert await exit_code(proc) == 128 + signal.SIGINT


async def test_a_reader_that_goes_away_ends_the_subscriber_quietly(
    started: List["subprocess.Popen[str]"],
) -> None:
    subscriber = x0x("subscribe", "t", "--json")  # as in `x0x subscribe --json t | head -1`
    started.append(subscriber)
    address = loopback(await record(subscriber))
    assert subscriber.stdout is not None
    subscriber.stdout.close()
    async with await Agent.builder().with_bootstrap(address).build() as agent:
        await agent.join_network(timeout=10)
        for _ in range(100):  # each message makes it write to the closed pipe
            await agent.publish("t", b"anyone?")
            if subscriber.poll() is not None:
                break
            await anyio.sleep(0.1)
    assert await exit_code(subscriber) == 1
    assert subscriber.stderr is not None and subscriber.stderr.read() == ""


def test_python_m_x0x_is_the_same_command() -> None:
    # One main() behind both: only the usage line names what was typed.
    module = subprocess.run(
        [sys.executable, "-m", "x0x", "--version"], capture_output=True, text=True, timeout=60
    )
    assert (module.returncode, module.stdout) == (0, finished(x0x("--version")).stdout)


async def test_direct_messages_and_requests_cross_three_processes(
    started: List["subprocess.Popen[str]"],
) -> None:
    inbox = x0x("inbox", "--json")  # alone, it starts a network
    started.append(inbox)
    opened = await record(inbox)
    assert opened["event"] == "inbox" and len(opened["agent_id"]) == HEX_ID, opened
    address, recipient = loopback(opened), opened["agent_id"]

    done = finished(x0x("send", recipient, "hello ✓", "again", "--bootstrap", address))
    assert (done.returncode, done.stderr) == (0, ""), done
    assert done.stdout == f"sent 2 message(s) to {recipient[:16]}\n"
    first, second = await record(inbox), await record(inbox)
    assert isinstance(first.pop("timestamp_ms"), int) and len(first.pop("sender")) == HEX_ID
    assert first == {"event": "direct", "payload": "hello ✓", "encoding": "utf-8", "request_id": 0}
    assert second["payload"] == "again"

    done = finished(x0x("request", recipient, "ping", "--json", "--bootstrap", address))
    assert (done.returncode, done.stderr) == (0, ""), done
    reply = json.loads(done.stdout)
    assert {k: reply[k] for k in ("event", "sender", "payload", "encoding")} == {
        "event": "reply",
        "sender": recipient,
        "payload": "ping",
        "encoding": "utf-8",
    }
    request = await record(inbox)
    assert request["sender"] == reply["agent_id"] and request["request_id"] != 0, request

    # The human form prints the reply as it is.
    done = finished(x0x("request", recipient, "echo me", "--bootstrap", address))
    assert (done.returncode, done.stdout, done.stderr) == (0, "echo me\n", "")
    assert (await record(inbox))["payload"] == "echo me"

    inbox.send_signal(signal.SIGTERM)
    assert await exit_code(inbox) == 128 + signal.SIGTERM


async def test_inbox_count_and_direct_errors(started: List["subprocess.Popen[str]"]) -> None:
    node_info = await start_node(started)
    address, node_id = loopback(node_info), node_info["agent_id"]
    # A node reads no direct messages: the refusal is one error line, exit 1.
    done = finished(x0x("request", node_id, "anyone?", "--bootstrap", address))
    assert (done.returncode, done.stdout) == (1, ""), done
    assert done.stderr.startswith("x0x: error: agent ") and "no inbox open" in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr
    # A malformed id is a usage error.
    done = finished(x0x("send", "not-an-id", "x"))
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("x0x: error: AGENT_ID: invalid id"), done.stderr

    inbox = x0x("inbox", "--count", "1", "--bootstrap", address)  # the human form
    started.append(inbox)
    line = await read_line(inbox)
    assert line.startswith("inbox of ") and " open on 0.0.0.0:" in line, line
    recipient = line.split()[2]
    done = finished(x0x("request", recipient, "last", "--bootstrap", address))
    assert (done.returncode, done.stdout) == (0, "last\n"), done
    assert (await read_line(inbox)).endswith(": last")
    assert await exit_code(inbox) == 0


async def test_a_served_capability_is_found_and_answers(
    started: List["subprocess.Popen[str]"],
) -> None:
    node_info = await start_node(started)
    address = loopback(node_info)
    server = x0x("serve", "summarize", "--json", "--bootstrap", address)
    started.append(server)
    opened = await record(server)
    assert opened["event"] == "inbox", opened

    done = finished(x0x("find", "summarize", "--json", "--wait", "5", "--bootstrap", address))
    assert (done.returncode, done.stderr) == (0, ""), done
    found = json.loads(done.stdout.splitlines()[0])
    assert found["event"] == "agent" and found["agent_id"] == opened["agent_id"], found
    assert found["capabilities"] == ["summarize"]
    assert found["machine_id"] == opened["machine_id"]

    done = finished(x0x("request", found["agent_id"], "summarize this", "--bootstrap", address))
    assert (done.returncode, done.stdout) == (0, "summarize this\n"), done

    done = finished(x0x("find", "nothing-here", "--wait", "0.5", "--bootstrap", address))
    assert (done.returncode, done.stdout) == (1, ""), done
    assert done.stderr == "x0x: error: no agent advertising 'nothing-here' was found\n"

    done = finished(x0x("peers", "--json", "--bootstrap", address))
    assert done.returncode == 0, done
    listed = [json.loads(line) for line in done.stdout.splitlines()]
    assert node_info["agent_id"] in [agent["agent_id"] for agent in listed], listed
