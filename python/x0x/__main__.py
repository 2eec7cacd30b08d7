"""Command line: ``python -m x0x node|publish|subscribe``, so that two shells can talk.

python -m x0x node --bind 127.0.0.1:5483
python -m x0x subscribe chat --bootstrap 127.0.0.1:5483
python -m x0x publish chat "hello" --bootstrap 127.0.0.1:5483
"""

import argparse
import asyncio
import contextlib
import datetime
import signal
import sys
from typing import List, Optional, Sequence

from . import Agent, AgentBuilder, Message, PeerEvent, X0xError


def _builder(args: argparse.Namespace) -> AgentBuilder:
    builder = Agent.builder().with_bootstrap(args.bootstrap)
    if args.bind:
        builder.with_bind(args.bind)
    if args.machine_key:
        builder.with_machine_key(args.machine_key)
    if args.data_dir:
        builder.with_data_dir(args.data_dir)
    return builder


def _show(message: Message) -> str:
    try:
        text = message.payload.decode("utf-8")
    except UnicodeDecodeError:
        text = "0x" + message.payload.hex()
    when = datetime.datetime.fromtimestamp(message.timestamp / 1000).strftime("%H:%M:%S.%f")[:-3]
    return f"[{when}] {message.topic} {message.sender.to_hex()[:16]}: {text}"


async def _until_interrupted() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def node(args: argparse.Namespace) -> None:
    """Runs a bootstrap/relay node until interrupted, printing peers as they come and go."""
    async with await _builder(args).build() as agent:
        await agent.join_network(timeout=args.timeout)
        print(f"x0x node {agent.peer_id()} listening on {agent.local_addr}", flush=True)

        def joined(event: PeerEvent) -> None:
            print(f"peer joined {event['peer_id'][:16]}", flush=True)

        def left(event: PeerEvent) -> None:
            print(f"peer left   {event['peer_id'][:16]}", flush=True)

        agent.on("peer_joined", joined)
        agent.on("peer_left", left)
        await _until_interrupted()


async def subscribe(args: argparse.Namespace) -> None:
    """Prints messages on a topic (``--count N``: exit after N)."""
    async with await _builder(args).build() as agent:
        subscription = agent.subscribe(args.topic)
        await agent.join_network(timeout=args.timeout)
        print(f"subscribed to {args.topic!r} as {agent.agent_id.to_hex()[:16]}", flush=True)
        received = 0
        async for message in subscription:
            print(_show(message), flush=True)
            received += 1
            if args.count and received >= args.count:
                break


async def publish(args: argparse.Namespace) -> None:
    """Publishes each message given, then leaves."""
    async with await _builder(args).build() as agent:
        await agent.join_network(timeout=args.timeout)
        for text in args.messages:
            await agent.publish(args.topic, text.encode("utf-8"))
        # Give the overlay a moment to carry the last message before saying goodbye.
        await asyncio.sleep(args.linger)
        print(f"published {len(args.messages)} message(s) on {args.topic!r}", flush=True)


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Parses the command line (``sys.argv[1:]`` when ``argv`` is None)."""
    parser = argparse.ArgumentParser(prog="python -m x0x", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--bind", help="UDP ip:port (default 0.0.0.0:0: any interface, any port)")
    common.add_argument(
        "--bootstrap", action="append", default=[], metavar="HOST:PORT", help="peer to join via"
    )
    common.add_argument(
        "--data-dir", help="the agent's home: its key and task lists (default: a new agent id)"
    )
    common.add_argument("--machine-key", help="machine key file (default ~/.x0x/machine.key)")
    common.add_argument("--timeout", type=float, default=10.0, help="join timeout, seconds")
    commands.add_parser("node", parents=[common], help="run a bootstrap/relay node")
    sub = commands.add_parser("subscribe", parents=[common], help="print messages on a topic")
    sub.add_argument("topic")
    sub.add_argument("--count", type=int, default=0, help="exit after this many messages")
    pub = commands.add_parser("publish", parents=[common], help="publish messages on a topic")
    pub.add_argument("topic")
    pub.add_argument("messages", nargs="+")
    pub.add_argument("--linger", type=float, default=0.5, help="seconds to stay after publishing")
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Runs the command; returns the exit status (1 after an x0x, OS or argument error)."""
    args = parse(argv)
    command = {"node": node, "subscribe": subscribe, "publish": publish}[args.command]
    try:
        asyncio.run(command(args))
    except KeyboardInterrupt:
        pass
    except (X0xError, OSError, ValueError) as e:
        print(f"x0x: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
