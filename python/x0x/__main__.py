"""The x0x command (also python -m x0x): a node, pub/sub and direct messages, so shells can talk.

x0x node --bind 127.0.0.1:5483
x0x subscribe chat --bootstrap 127.0.0.1:5483
x0x publish chat "hello" --bootstrap 127.0.0.1:5483
x0x inbox --bootstrap 127.0.0.1:5483                 # prints its agent id; echoes requests
x0x request AGENT_ID "hello" --bootstrap 127.0.0.1:5483
x0x serve summarize --bootstrap 127.0.0.1:5483       # advertises a capability; echoes requests
x0x find summarize --bootstrap 127.0.0.1:5483        # who advertises it
x0x peers --bootstrap 127.0.0.1:5483                 # the agents whose cards it got
"""

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import signal
import sys
from typing import Any, Callable, Coroutine, Dict, List, NoReturn, Optional, Sequence, Tuple

from . import (
    Agent,
    AgentBuilder,
    AgentId,
    AgentInfo,
    DirectMessage,
    InvalidArgumentError,
    Message,
    PeerEvent,
    X0xError,
    __version__,
)

EPILOG = """\
environment (used when the flag is absent; flags win):
  X0X_BOOTSTRAP  peers to join via, comma-separated HOST:PORT (--bootstrap)
  X0X_BIND       UDP ip:port to bind (--bind)
  X0X_DATA_DIR   the agent's home (--data-dir)

--json prints one JSON object per line, each with an "event" field ("listening",
"peer_joined", "peer_left", "subscribed", "message", "published", "inbox", "direct",
"sent", "reply", "agent"). SIGINT and SIGTERM leave
the network, then exit with 130 and 143. Errors print one line "x0x: error: ..." on stderr
and exit with 2 (usage: a bad flag or address) or 1 (at run time: e.g. nobody to join).
"""

# (option dest, flag, environment variable): the defaults a shell's environment can give.
ENVIRONMENT: Tuple[Tuple[str, str, str], ...] = (
    ("bootstrap", "--bootstrap", "X0X_BOOTSTRAP"),
    ("bind", "--bind", "X0X_BIND"),
    ("data_dir", "--data-dir", "X0X_DATA_DIR"),
)

Command = Callable[[argparse.Namespace, AgentBuilder], Coroutine[Any, Any, None]]


class UsageError(Exception):
    """A value on the command line (or in its environment variable) that x0x cannot use."""


class _Parser(argparse.ArgumentParser):
    """argparse, with the error line every x0x error has (``x0x: error: ...``, exit 2)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"x0x: error: {message}\n")


def _builder(args: argparse.Namespace) -> AgentBuilder:
    """The builder the options describe; ``UsageError`` names the option whose value is bad."""
    builder = Agent.builder()
    steps: List[Tuple[str, Callable[[Any], object], object]] = [
        (args.origin["bootstrap"], builder.with_bootstrap, args.bootstrap),
        (args.origin["bind"], builder.with_bind, args.bind),
        ("--machine-key", builder.with_machine_key, args.machine_key),
        (args.origin["data_dir"], builder.with_data_dir, args.data_dir),
    ]
    for origin, configure, value in steps:
        if not value:
            continue
        try:
            configure(value)
        except InvalidArgumentError as e:
            raise UsageError(f"{origin}: {e}") from None
    return builder


def _emit(args: argparse.Namespace, human: str, record: Dict[str, object]) -> None:
    """Prints one line: ``record`` as JSON with ``--json``, else the human form."""
    print(json.dumps(record) if args.json else human, flush=True)


def _text(payload: bytes) -> str:
    """A payload for people: its text, or ``0x`` and hex when it is not UTF-8."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + payload.hex()


def _when(timestamp_ms: int) -> str:
    return datetime.datetime.fromtimestamp(timestamp_ms / 1000).strftime("%H:%M:%S.%f")[:-3]


def _encoded(payload: bytes) -> Dict[str, object]:
    """A payload for JSON: its text with ``"encoding": "utf-8"``, else base64."""
    try:
        return {"payload": payload.decode("utf-8"), "encoding": "utf-8"}
    except UnicodeDecodeError:
        return {"payload": base64.b64encode(payload).decode("ascii"), "encoding": "base64"}


def _show(message: Message) -> str:
    sender = message.sender.to_hex()[:16]
    return f"[{_when(message.timestamp)}] {message.topic} {sender}: {_text(message.payload)}"


def _record(message: Message) -> Dict[str, object]:
    return {
        "event": "message",
        "topic": message.topic,
        "sender": message.sender.to_hex(),
        **_encoded(message.payload),
        "hops": message.hops,
        "timestamp_ms": message.timestamp,
    }


def _target(text: str) -> AgentId:
    """The AGENT_ID argument; ``UsageError`` when it is not 64 hex digits."""
    try:
        return AgentId.from_hex(text)
    except InvalidArgumentError as e:
        raise UsageError(f"AGENT_ID: {e}") from None


def _whoami(agent: Agent) -> Dict[str, object]:
    return {
        "agent_id": agent.peer_id(),
        "machine_id": agent.machine_id.to_hex(),
        "addr": agent.local_addr,
        "addrs": agent.local_addrs,
    }


async def node(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Runs a bootstrap/relay node until interrupted, printing peers as they come and go."""
    async with await builder.build() as agent:
        await agent.join_network(timeout=args.timeout)

        def joined(event: PeerEvent) -> None:
            peer = event["peer_id"]
            _emit(args, f"peer joined {peer[:16]}", {"event": "peer_joined", "peer_id": peer})

        def left(event: PeerEvent) -> None:
            peer = event["peer_id"]
            _emit(args, f"peer left   {peer[:16]}", {"event": "peer_left", "peer_id": peer})

        agent.on("peer_joined", joined)
        agent.on("peer_left", left)
        _emit(
            args,
            f"x0x node {agent.peer_id()} listening on {agent.local_addr}",
            {"event": "listening", **_whoami(agent)},
        )
        await asyncio.get_running_loop().create_future()  # until a signal cancels the command


async def subscribe(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Prints messages on a topic (``--count N``: exit after N)."""
    async with await builder.build() as agent:
        subscription = agent.subscribe(args.topic)
        await agent.join_network(timeout=args.timeout)
        _emit(
            args,
            f"subscribed to {args.topic!r} as {agent.agent_id.to_hex()[:16]}",
            {"event": "subscribed", "topic": args.topic, **_whoami(agent)},
        )
        received = 0
        async for message in subscription:
            _emit(args, _show(message), _record(message))
            received += 1
            if args.count and received >= args.count:
                break


async def publish(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Publishes each message given, then leaves."""
    async with await builder.build() as agent:
        await agent.join_network(timeout=args.timeout)
        for text in args.messages:
            await agent.publish(args.topic, text.encode("utf-8"))
        # Give the overlay a moment to carry the last message before saying goodbye.
        await asyncio.sleep(args.linger)
        count = len(args.messages)
        _emit(
            args,
            f"published {count} message(s) on {args.topic!r}",
            {"event": "published", "topic": args.topic, "count": count, **_whoami(agent)},
        )


async def send(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Sends each message to one agent over a direct connection, then leaves."""
    to = _target(args.agent_id)
    async with await builder.build() as agent:
        await agent.join_network(timeout=args.timeout)
        for text in args.messages:
            await agent.send(to, text.encode("utf-8"), timeout=args.wait)
        count = len(args.messages)
        _emit(
            args,
            f"sent {count} message(s) to {to.to_hex()[:16]}",
            {"event": "sent", "to": to.to_hex(), "count": count, **_whoami(agent)},
        )


async def request(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Sends one request to an agent and prints its reply."""
    to = _target(args.agent_id)
    async with await builder.build() as agent:
        await agent.join_network(timeout=args.timeout)
        reply = await agent.request(to, args.text.encode("utf-8"), timeout=args.wait)
        _emit(
            args,
            _text(reply),
            {"event": "reply", "sender": to.to_hex(), **_encoded(reply), **_whoami(agent)},
        )


def _show_agent(args: argparse.Namespace, info: AgentInfo) -> None:
    capabilities = ",".join(info.capabilities) or "-"
    addresses = " ".join(info.addresses)
    _emit(
        args,
        f"{info.agent_id.to_hex()} {capabilities} {addresses}",
        {
            "event": "agent",
            "agent_id": info.agent_id.to_hex(),
            "machine_id": info.machine_id.to_hex(),
            "addresses": info.addresses,
            "capabilities": info.capabilities,
            "info": info.info,
            "last_seen": info.last_seen,
        },
    )


async def peers(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Joins, waits ``--settle`` seconds for its peers' cards, and prints the agents it knows."""
    async with await builder.build() as agent:
        await agent.join_network(timeout=args.timeout)
        await asyncio.sleep(args.settle)
        for info in agent.peers():
            _show_agent(args, info)


async def find(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Prints the agents that advertise a capability (exit status 1 when there are none)."""
    async with await builder.build() as agent:
        await agent.join_network(timeout=args.timeout)
        found = await agent.find(args.capability, timeout=args.wait, limit=args.limit or None)
        for info in found:
            _show_agent(args, info)
        if not found:
            raise X0xError(f"no agent advertising {args.capability!r} was found")


async def serve(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Advertises a capability and answers requests with an echo, as ``inbox`` does."""
    await inbox(args, builder.with_capabilities([args.capability]))


async def inbox(args: argparse.Namespace, builder: AgentBuilder) -> None:
    """Prints the direct messages and requests that arrive, answering each request with its
    own payload (``--count N``: exit after N)."""
    async with await builder.build() as agent:
        await agent.join_network(timeout=args.timeout)
        done = asyncio.get_running_loop().create_future()
        received = 0

        def echo(message: DirectMessage) -> bytes:
            nonlocal received
            kind = f"request {message.request_id}" if message.is_request else "message"
            sender = message.sender.to_hex()
            _emit(
                args,
                f"[{_when(message.timestamp)}] {kind} from {sender[:16]}: {_text(message.payload)}",
                {
                    "event": "direct",
                    "sender": sender,
                    **_encoded(message.payload),
                    "request_id": message.request_id,
                    "timestamp_ms": message.timestamp,
                },
            )
            received += 1
            if args.count and received >= args.count and not done.done():
                done.set_result(None)
            return message.payload

        async with agent.serve(echo):
            _emit(
                args,
                f"inbox of {agent.peer_id()} open on {agent.local_addr}",
                {"event": "inbox", **_whoami(agent)},
            )
            await done  # with --count; else until a signal cancels the command


COMMANDS: Dict[str, Command] = {
    "node": node,
    "subscribe": subscribe,
    "publish": publish,
    "send": send,
    "request": request,
    "inbox": inbox,
    "serve": serve,
    "find": find,
    "peers": peers,
}


def _prog() -> str:
    # The usage line names what the user typed: the installed command or python -m x0x.
    return "python -m x0x" if os.path.basename(sys.argv[0]) == "__main__.py" else "x0x"


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parses the command line (``sys.argv[1:]`` when ``argv`` is None), then fills the options
    it lacks from the environment (``ENVIRONMENT``); ``args.origin`` names where each came from."""
    parser = _Parser(
        prog=_prog(),
        description=__doc__.split("\n")[0],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"x0x {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    common = _Parser(add_help=False)
    common.add_argument(
        "--bind", help="UDP ip:port (default 0.0.0.0:0: any interface, any port; env X0X_BIND)"
    )
    common.add_argument(
        "--bootstrap",
        action="append",
        metavar="HOST:PORT",
        help="peer to join via, repeatable (env X0X_BOOTSTRAP, comma-separated)",
    )
    common.add_argument(
        "--data-dir",
        help="the agent's home: its key and task lists (default: a new agent id; env X0X_DATA_DIR)",
    )
    common.add_argument("--machine-key", help="machine key file (default ~/.x0x/machine.key)")
    common.add_argument("--timeout", type=float, default=10.0, help="join timeout, seconds")
    common.add_argument("--json", action="store_true", help="print one JSON object per line")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        return commands.add_parser(
            name,
            parents=[common],
            help=summary,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    command("node", "run a bootstrap/relay node")
    sub = command("subscribe", "print messages on a topic")
    sub.add_argument("topic")
    sub.add_argument("--count", type=int, default=0, help="exit after this many messages")
    pub = command("publish", "publish messages on a topic")
    pub.add_argument("topic")
    pub.add_argument("messages", nargs="+")
    pub.add_argument("--linger", type=float, default=0.5, help="seconds to stay after publishing")
    wait_help = "seconds to wait for the recipient's acknowledgement or reply (default 10)"
    direct = command("send", "send messages to one agent over a direct connection")
    direct.add_argument("agent_id", metavar="AGENT_ID", help="the recipient's agent id (hex)")
    direct.add_argument("messages", nargs="+")
    direct.add_argument("--wait", type=float, default=10.0, help=wait_help)
    req = command("request", "send a request to one agent and print its reply")
    req.add_argument("agent_id", metavar="AGENT_ID", help="the recipient's agent id (hex)")
    req.add_argument("text")
    req.add_argument("--wait", type=float, default=10.0, help=wait_help)
    box = command("inbox", "print direct messages as they arrive; answer requests with an echo")
    box.add_argument("--count", type=int, default=0, help="exit after this many messages")
    server = command("serve", "advertise a capability; print and echo what arrives, as inbox")
    server.add_argument("capability", metavar="CAPABILITY")
    server.add_argument("--count", type=int, default=0, help="exit after this many messages")
    finder = command("find", "print the agents that advertise a capability")
    finder.add_argument("capability", metavar="CAPABILITY")
    finder.add_argument("--wait", type=float, default=2.0, help="seconds to look (default 2)")
    finder.add_argument("--limit", type=int, default=0, help="stop after this many agents")
    known = command("peers", "print the agents whose cards this agent got after joining")
    known.add_argument(
        "--settle", type=float, default=1.0, help="seconds to wait for cards (default 1)"
    )
    args = parser.parse_args(argv)
    args.origin = {}
    for dest, flag, variable in ENVIRONMENT:
        args.origin[dest] = flag
        if getattr(args, dest) is None and os.environ.get(variable):
            value = os.environ[variable]
            parts = [part.strip() for part in value.split(",") if part.strip()]
            setattr(args, dest, parts if dest == "bootstrap" else value)
            args.origin[dest] = variable
    return args


async def _run(command: Command, args: argparse.Namespace, builder: AgentBuilder) -> int:
    """Runs ``command`` until it ends or SIGINT/SIGTERM cancels it (its ``async with`` then
    closes the agent, which leaves the network); returns the exit status, 128 + the signal."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(command(args, builder))
    received: List[int] = []

    def stop(signum: int) -> None:
        if not received:  # a second signal must not cancel the leaving itself
            received.append(signum)
            task.cancel()

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(signum, stop, signum)
    try:
        await task
    except asyncio.CancelledError:
        if not received:
            raise
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.remove_signal_handler(signum)
    return 128 + received[0] if received else 0


def _fail(error: BaseException, status: int) -> int:
    text = " ".join(str(error).splitlines()) or type(error).__name__
    print(f"x0x: error: {text}", file=sys.stderr, flush=True)
    return status


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command; returns the exit status: 0, 2 after a usage error, 1 after an x0x or
    OS error at run time, 130 after SIGINT and 143 after SIGTERM."""
    args = parse(argv)
    try:
        builder = _builder(args)
        if getattr(args, "agent_id", None) is not None:
            _target(args.agent_id)
    except UsageError as e:
        return _fail(e, 2)
    try:
        return asyncio.run(_run(COMMANDS[args.command], args, builder))
    except KeyboardInterrupt:  # SIGINT before _run took the signal over
        return 128 + signal.SIGINT
    except BrokenPipeError:  # whoever read stdout left, e.g. `x0x subscribe --json t | head -1`
        # Point stdout at /dev/null, so the interpreter's flush at exit fails no second time.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (X0xError, OSError, ValueError) as e:
        return _fail(e, 1)


if __name__ == "__main__":
    sys.exit(main())
