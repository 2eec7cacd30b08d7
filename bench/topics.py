"""Topic isolation and scale: what agents receive for topics they take no part in, and what N
agent processes on one machine cost, idle and delivering.

    python bench/topics.py --scenario split
    python bench/topics.py --scenario scale [--agents 10,20,30,40,50] [--seed 1]

Every agent is its own OS process (this file re-run with a hidden ``--peer``), built as the
README shows: the default builder and bind; every agent but the first bootstraps to the
``local_addr`` the first one reports. All share one HOME (a fresh temporary directory, so one
machine key, as on a user's machine). The parent drives them with JSON lines over stdin/stdout
and never touches the data path.

* ``split``: 6 agents, 3 subscribe "a" and 3 "b"; one "a" agent publishes ``--messages`` (2,000)
  x ``--size`` (1 KiB) on "a" in bursts of ``--burst`` (100), each once every "a" subscriber
  has the previous ones. Reported: the fraction each "a" subscriber got, and each agent's
  ``stats()["foreign_bytes_in"]`` as a percentage of the bytes an "a" subscriber received on
  "a" (``topic_stats("a")["bytes_in"]``, mean of the subscribers that did not publish). With
  one swarm for the network it was ~100%; each topic has a swarm of its own now: 0%.
* ``scale``: for each N, N agents and ``--topics`` (10) topics of ``--subscribers`` (5) random
  agents each (seeded; an agent may have several topics or none). Idle: ``--settle`` (10) s
  after everyone subscribed, CPU time (utime+stime, /proc/PID/stat) over ``--idle`` (20) s,
  then RSS and PSS (/proc/PID/smaps_rollup) of each agent process. Latency: ``--rounds`` (100)
  rounds ``--gap-ms`` (100) ms apart, a random agent publishes a 64-byte message on a random
  topic; ``time.time()`` before publish against ``time.time()`` at each other subscriber's
  arrival (one machine, one clock) gives p50/p99 and the delivered fraction. Foreign/own: per
  agent with a topic, ``foreign_bytes_in`` over the bytes in on its topics during the latency
  phase. Baseline, measured in the same run before the agents: N processes that only import
  x0x and sleep, the same idle window.

Prints a table, then one JSON line per figure. Compare ratios (foreign/own, x0x/bare) between
commits and machines; absolute numbers move with the machine and its load.
"""

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import shutil
import signal
import statistics
import struct
import sys
import tempfile
import time
from typing import Any, Callable, Dict, List, NoReturn, Optional, Sequence, Tuple, TypeVar

import x0x

Reply = Dict[str, Any]
T = TypeVar("T")

ID = struct.Struct("<Q")  # every payload starts with the message id the parent assigned
LATENCY_SIZE = 64
SETUP_TIMEOUT = 120.0  # start a process and join: up to 50 start at once on 2 cores
REPLY_TIMEOUT = 60.0
EXIT_TIMEOUT = 20.0
STALL = 10.0  # split: a burst is given up on after this long without progress
POLL = 0.02
DRAIN = 3.0  # after the last publish: relayed copies and the 4 s repair window settle
BARE_SETTLE = 2.0
STDOUT_LIMIT = 1 << 24  # a report line holds up to every arrival of a run
MIB = 1024 * 1024


class BenchError(Exception):
    """A child process failed, died or did not answer in time."""


def say(data: Reply) -> None:
    """One JSON line to the parent."""
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- child processes


class PeerAgent:
    """The child's agent and what it received, first arrival per message id and topic."""

    def __init__(self, agent: x0x.Agent) -> None:
        self.agent = agent
        self.arrivals: Dict[str, Dict[int, float]] = {}
        self.duplicates: Dict[str, int] = {}
        self.subscriptions: List[x0x.Subscription] = []
        self.pumps: List[asyncio.Future[None]] = []

    def subscribe(self, topic: str) -> None:
        subscription = self.agent.subscribe(topic)
        self.subscriptions.append(subscription)
        arrivals = self.arrivals.setdefault(topic, {})
        self.duplicates.setdefault(topic, 0)

        async def pump() -> None:
            async for message in subscription:
                now = time.time()
                (msg_id,) = ID.unpack_from(message.payload)
                if msg_id in arrivals:
                    self.duplicates[topic] += 1
                else:
                    arrivals[msg_id] = now

        self.pumps.append(asyncio.ensure_future(pump()))

    async def publish(self, topic: str, first: int, count: int, size: int) -> List[float]:
        pad = bytes(max(0, size - ID.size))
        times: List[float] = []
        for msg_id in range(first, first + count):
            times.append(time.time())
            await self.agent.publish(topic, ID.pack(msg_id) + pad)
        return times

    def topic_stats(self, topic: str) -> Optional[x0x.TopicStats]:
        try:
            return self.agent.topic_stats(topic)
        except x0x.NotFoundError:
            return None

    def report(self, topics: Sequence[str], arrivals: bool) -> Reply:
        for pump in self.pumps:
            if pump.done():
                raise RuntimeError(f"a receive loop ended: {pump.exception()!r}")
        result: Reply = {
            "received": {topic: len(got) for topic, got in self.arrivals.items()},
            "duplicates": self.duplicates,
            "dropped": sum(s.dropped for s in self.subscriptions),
            "stats": dict(self.agent.stats()),
            "topics": {topic: self.topic_stats(topic) for topic in topics},
        }
        if arrivals:
            result["arrivals"] = {t: sorted(got.items()) for t, got in self.arrivals.items()}
        return result

    async def handle(self, command: Reply) -> Reply:
        kind = command.get("cmd")
        if kind == "subscribe":
            for topic in command["topics"]:
                self.subscribe(topic)
            return {}
        if kind == "publish":
            topic, first, count = command["topic"], command["first"], command["n"]
            return {"times": await self.publish(topic, first, count, command["size"])}
        if kind == "report":
            return self.report(command.get("topics", []), bool(command.get("arrivals")))
        raise ValueError(f"unknown command {command!r}")

    async def stop(self) -> None:
        for pump in self.pumps:
            pump.cancel()
        for pump in self.pumps:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pump
        for subscription in self.subscriptions:
            subscription.close()


async def stdin_lines() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=STDOUT_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def peer_main(bootstrap: Optional[str]) -> None:
    """An agent built as the README shows, answering the parent's commands until ``quit`` or
    the end of stdin (the parent went away)."""
    builder = x0x.Agent.builder()
    if bootstrap:
        builder.with_bootstrap(bootstrap)
    async with await builder.build() as agent:
        await agent.join_network(timeout=SETUP_TIMEOUT)
        peer = PeerAgent(agent)
        say({"agent_id": agent.agent_id.to_hex(), "local_addr": agent.local_addr})
        reader = await stdin_lines()
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                command = json.loads(line)
                if command.get("cmd") == "quit":
                    return
                try:
                    result = await peer.handle(command)
                except Exception as e:  # the parent reports it, naming this process
                    say({"ok": False, "error": f"{type(e).__name__}: {e}"})
                else:
                    say({"ok": True, **result})
        finally:
            await peer.stop()


def bare_main() -> None:
    """The baseline: this interpreter with x0x imported (above), asleep until told to quit."""
    say({"pid": os.getpid()})
    sys.stdin.readline()


# --------------------------------------------------------------------------- parent

# Every child started, for the last-resort kill in main() (signals, errors in the event loop).
STARTED: List["asyncio.subprocess.Process"] = []


def kill_group(proc: "asyncio.subprocess.Process") -> None:
    """SIGKILL the child's process group (each child leads its own), unless it was reaped."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def describe_exit(code: Optional[int]) -> str:
    if code is None:
        return "still running"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit status {code}"


class Peer:
    """One child process: its pipes, its stderr log and its JSON-line protocol."""

    def __init__(self, name: str, proc: "asyncio.subprocess.Process", log: str) -> None:
        self.name = name
        self.proc = proc
        self.log = log
        self.lock = asyncio.Lock()  # one command in flight per child
        self.hello: Reply = {}

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_tail(self, lines: int = 8) -> str:
        try:
            with open(self.log, errors="replace") as f:
                tail = f.read().splitlines()[-lines:]
        except OSError:
            return ""
        return "\n    ".join(tail)

    async def failure(self, what: str) -> BenchError:
        try:
            code: Optional[int] = await asyncio.wait_for(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            code = None
        tail = self.stderr_tail()
        return BenchError(
            f"{self.name} (pid {self.pid}) {what}: {describe_exit(code)}"
            + (f"; its stderr ends:\n    {tail}" if tail else "")
        )

    async def read(self, what: str, timeout: float) -> Reply:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise BenchError(
                f"{self.name} (pid {self.pid}): no {what} in {timeout:.0f} s"
            ) from None
        if not line:
            raise await self.failure(f"ended before {what}")
        try:
            data: Reply = json.loads(line)
        except ValueError:
            raise BenchError(f"{self.name}: not a JSON line: {line[:200]!r}") from None
        return data

    async def call(self, cmd: str, timeout: float = REPLY_TIMEOUT, **fields: Any) -> Reply:
        """Sends one command and returns its reply; a failed command raises."""
        assert self.proc.stdin is not None
        async with self.lock:
            try:
                self.proc.stdin.write((json.dumps({"cmd": cmd, **fields}) + "\n").encode())
                await self.proc.stdin.drain()
            except (ConnectionError, RuntimeError):
                raise await self.failure(f"could not take {cmd!r}") from None
            reply = await self.read(f"reply to {cmd!r}", timeout)
        if not reply.get("ok"):
            raise BenchError(f"{self.name} (pid {self.pid}): {cmd} failed: {reply.get('error')}")
        return reply

    async def stop(self, grace: float) -> None:
        """Asks it to quit (its agent leaves the network), waits ``grace`` s, then kills it."""
        stdin = self.proc.stdin
        if self.proc.returncode is None and stdin is not None and not stdin.is_closing():
            with contextlib.suppress(ConnectionError, RuntimeError):
                stdin.write(b'{"cmd": "quit"}\n')
                await stdin.drain()
                stdin.close()
        if self.proc.returncode is None and grace > 0:
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except asyncio.TimeoutError:
                print(f"warning: {self.name} did not exit in {grace:.0f} s; killing it")
        kill_group(self.proc)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.proc.wait(), EXIT_TIMEOUT)


class Fleet:
    """The children of one measurement, sharing one HOME; ``stop()`` ends every one."""

    def __init__(self, home: str) -> None:
        self.env = {**os.environ, "HOME": home}
        self.logs = os.path.join(home, "logs")
        os.makedirs(self.logs, exist_ok=True)
        self.peers: List[Peer] = []

    async def start(self, name: str, *argv: str) -> Peer:
        log = os.path.join(self.logs, f"{name}.{len(self.peers)}.stderr")
        with open(log, "wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                os.path.abspath(__file__),
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=self.env,
                start_new_session=True,  # its own process group, killed as one
                limit=STDOUT_LIMIT,
            )
        STARTED.append(proc)
        peer = Peer(name, proc, log)
        self.peers.append(peer)
        return peer

    async def stop(self, grace: float) -> None:
        await asyncio.gather(*(peer.stop(grace) for peer in self.peers), return_exceptions=True)


async def start_agents(fleet: Fleet, count: int) -> List[Peer]:
    """``count`` agent processes; the first starts the network, the others bootstrap to the
    address it reports."""
    first = await fleet.start("agent0", "--peer")
    first.hello = await first.read("address after joining", SETUP_TIMEOUT)
    address = first.hello["local_addr"]
    rest = [
        await fleet.start(f"agent{i}", "--peer", "--bootstrap", address) for i in range(1, count)
    ]
    hellos = await asyncio.gather(*(p.read("address after joining", SETUP_TIMEOUT) for p in rest))
    for peer, hello in zip(rest, hellos):
        peer.hello = hello
    return [first, *rest]


async def report_all(peers: Sequence[Peer], topics: Sequence[Sequence[str]]) -> List[Reply]:
    return list(await asyncio.gather(*(p.call("report", topics=t) for p, t in zip(peers, topics))))


# --------------------------------------------------------------------------- /proc


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()  # after comm, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_pss_mib(pid: int) -> Tuple[float, float]:
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[key] = int(rest.split()[0]) * 1024 / MIB
    return values["Rss"], values["Pss"]


async def idle_usage(peers: Sequence[Peer], seconds: float) -> Reply:
    """CPU % over ``seconds`` of each process (mean, max), then its RSS and PSS."""

    async def read(peer: Peer, reader: Callable[[int], T]) -> T:
        try:
            return reader(peer.pid)
        except OSError as e:
            raise await peer.failure(f"could not be measured ({e})") from None

    before = [await read(p, cpu_seconds) for p in peers]
    start = time.monotonic()
    await asyncio.sleep(seconds)
    after = [await read(p, cpu_seconds) for p in peers]
    elapsed = time.monotonic() - start
    memory = [await read(p, rss_pss_mib) for p in peers]
    for peer in peers:
        if peer.proc.returncode is not None:
            raise await peer.failure("died while idle")
    cpu = [100 * (b - a) / elapsed for a, b in zip(before, after)]
    rss = [m[0] for m in memory]
    pss = [m[1] for m in memory]
    return {
        "cpu_pct_mean": statistics.mean(cpu),
        "cpu_pct_max": max(cpu),
        "rss_mib_mean": statistics.mean(rss),
        "rss_mib_max": max(rss),
        "pss_mib_mean": statistics.mean(pss),
    }


# --------------------------------------------------------------------------- scenarios


async def wait_for_arrivals(peers: Sequence[Peer], topic: str, target: int) -> None:
    """Until every peer has ``target`` distinct messages on ``topic``, or no progress for
    ``STALL`` s (what is missing then shows as lost)."""
    best, progress = -1, time.monotonic()
    while True:
        reports = await asyncio.gather(*(p.call("report") for p in peers))
        counts = [r["received"].get(topic, 0) for r in reports]
        if min(counts) >= target:
            return
        if sum(counts) > best:
            best, progress = sum(counts), time.monotonic()
        elif time.monotonic() - progress > STALL:
            return
        await asyncio.sleep(POLL)


def pct(part: float, whole: float) -> float:
    return 100 * part / whole if whole else math.nan


def rounded(value: Any) -> Any:
    """``value`` with every float in it rounded to 3 digits and NaN as null, for the JSON
    lines."""
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


async def split(args: argparse.Namespace, home: str) -> None:
    rng = random.Random(args.seed)
    order = list(range(6))
    rng.shuffle(order)
    group = {i: "a" if k < 3 else "b" for k, i in enumerate(order)}
    on_a = sorted(i for i in group if group[i] == "a")
    publisher = rng.choice(on_a)
    fleet = Fleet(home)
    grace = 0.0
    try:
        peers = await start_agents(fleet, 6)
        await asyncio.gather(*(p.call("subscribe", topics=[group[i]]) for i, p in enumerate(peers)))
        await asyncio.sleep(args.settle)
        topics = [[group[i]] for i in range(6)]
        before = await report_all(peers, topics)
        a_peers = [peers[i] for i in on_a]
        started = time.perf_counter()
        sent = 0
        while sent < args.messages:
            count = min(args.burst, args.messages - sent)
            await peers[publisher].call("publish", topic="a", first=sent, n=count, size=args.size)
            sent += count
            await wait_for_arrivals(a_peers, "a", sent)
        seconds = time.perf_counter() - started
        await asyncio.sleep(DRAIN)
        after = await report_all(peers, topics)
        grace = EXIT_TIMEOUT
    finally:
        await fleet.stop(grace)

    def grew(i: int, *path: str) -> int:
        new: Any = after[i]
        old: Any = before[i]
        for key in path:
            new, old = new[key], old[key]
        return int(new - old)

    delivered = {i: after[i]["received"].get("a", 0) / args.messages for i in on_a}
    a_bytes = {i: grew(i, "topics", "a", "bytes_in") for i in on_a}
    foreign = {i: grew(i, "stats", "foreign_bytes_in") for i in range(6)}
    # The publisher's own messages never come back to it: the reference is the others.
    reference = statistics.mean(a_bytes[i] for i in on_a if i != publisher)
    foreign_pct = {i: pct(foreign[i], reference) for i in range(6)}
    dropped = sum(r["dropped"] for r in after)

    print(
        f"\nsplit: 6 agents; agent {publisher} published {args.messages:,} x {args.size:,} B"
        f' on "a" in bursts of {args.burst} ({seconds:.1f} s).\nref = {reference:,.0f} B, the mean'
        ' bytes in on "a" of the "a" subscribers that did not publish'
    )
    print(f"{'agent':>5} {'topic':>5} {'delivered':>10} {'bytes in on a':>14}", end="")
    print(f" {'foreign bytes in':>17} {'foreign % of ref':>17}")
    for i in range(6):
        got = f"{100 * delivered[i]:.1f}%" if i in delivered else "-"
        own = f"{a_bytes[i]:,}" + ("*" if i == publisher else "") if i in a_bytes else "-"
        print(f"{i:>5} {group[i]:>5} {got:>10} {own:>14}", end="")
        print(f" {foreign[i]:>17,} {foreign_pct[i]:>16.1f}%")
    print("* the publisher: copies of its own envelopes that came back (not in ref)")
    if dropped:
        print(f"warning: {dropped} messages dropped from full subscription queues")
    on_b = [i for i in range(6) if group[i] == "b"]
    print(
        json.dumps(
            rounded(
                {
                    "scenario": "split",
                    "agents": 6,
                    "messages": args.messages,
                    "size": args.size,
                    "publisher": publisher,
                    "delivered": {str(i): delivered[i] for i in on_a},
                    "a_bytes_in": {str(i): a_bytes[i] for i in on_a},
                    "reference_bytes": reference,
                    "b_foreign_bytes_in": {str(i): foreign[i] for i in on_b},
                    "b_foreign_pct": {str(i): foreign_pct[i] for i in on_b},
                    "b_foreign_pct_max": max(foreign_pct[i] for i in on_b),
                    "queue_drops": dropped,
                }
            )
        )
    )


async def bare_usage(count: int, args: argparse.Namespace, home: str) -> Reply:
    fleet = Fleet(home)
    grace = 0.0
    try:
        peers = [await fleet.start(f"bare{i}", "--bare") for i in range(count)]
        await asyncio.gather(*(p.read("start", SETUP_TIMEOUT) for p in peers))
        await asyncio.sleep(BARE_SETTLE)
        usage = await idle_usage(peers, args.idle)
        grace = EXIT_TIMEOUT
    finally:
        await fleet.stop(grace)
    return usage


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def scale_once(count: int, args: argparse.Namespace, home: str) -> Reply:
    rng = random.Random(f"{args.seed}/{count}")
    topics = [f"topic{t}" for t in range(args.topics)]
    members = {t: sorted(rng.sample(range(count), args.subscribers)) for t in topics}
    own = [[t for t in topics if i in members[t]] for i in range(count)]
    print(f"N={count}: baseline ({count} processes that import x0x and sleep)", flush=True)
    bare = await bare_usage(count, args, home)
    print(f"N={count}: {count} agents, {len(topics)} topics x {args.subscribers}", flush=True)
    fleet = Fleet(home)
    grace = 0.0
    try:
        start = time.perf_counter()
        peers = await start_agents(fleet, count)
        joined = time.perf_counter() - start
        await asyncio.gather(*(p.call("subscribe", topics=t) for p, t in zip(peers, own)))
        await asyncio.sleep(args.settle)
        usage = await idle_usage(peers, args.idle)
        before = await report_all(peers, own)
        sent: List[Tuple[int, int, str, float]] = []  # id, publisher, topic, time at publish
        for msg_id in range(args.rounds):
            publisher, topic = rng.randrange(count), rng.choice(topics)
            reply = await peers[publisher].call(
                "publish", topic=topic, first=msg_id, n=1, size=LATENCY_SIZE
            )
            sent.append((msg_id, publisher, topic, reply["times"][0]))
            await asyncio.sleep(args.gap_ms / 1000)
        await asyncio.sleep(DRAIN)
        after = list(
            await asyncio.gather(
                *(p.call("report", topics=t, arrivals=True) for p, t in zip(peers, own))
            )
        )
        grace = EXIT_TIMEOUT
    finally:
        await fleet.stop(grace)

    arrivals = [
        {topic: dict(pairs) for topic, pairs in r.get("arrivals", {}).items()} for r in after
    ]
    latencies: List[float] = []
    expected = 0
    for msg_id, publisher, topic, published in sent:
        # The publisher's own subscription gets its message locally: not a network delivery.
        for subscriber in members[topic]:
            if subscriber == publisher:
                continue
            expected += 1
            arrived = arrivals[subscriber].get(topic, {}).get(msg_id)
            if arrived is not None:
                latencies.append(1000 * (arrived - published))
    ratios = []
    for i in range(count):
        # Own: the topics it subscribes to. A topic it only published on is neither own nor
        # foreign (its later copies count under that topic): few bytes, left out.
        own_bytes = sum(
            after[i]["topics"][t]["bytes_in"] - before[i]["topics"][t]["bytes_in"] for t in own[i]
        )
        foreign = after[i]["stats"]["foreign_bytes_in"] - before[i]["stats"]["foreign_bytes_in"]
        if own_bytes > 0:
            ratios.append(foreign / own_bytes)
    return {
        "scenario": "scale",
        "agents": count,
        "topics": args.topics,
        "subscribers": args.subscribers,
        "join_s": round(joined, 2),
        **usage,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "delivered": len(latencies) / expected if expected else math.nan,
        "deliveries_expected": expected,
        "foreign_over_own_mean": statistics.mean(ratios) if ratios else math.nan,
        "foreign_over_own_median": statistics.median(ratios) if ratios else math.nan,
        "agents_with_own_traffic": len(ratios),
        "queue_drops": sum(r["dropped"] for r in after),
        "bare": bare,
    }


def fmt(value: float, digits: int) -> str:
    return "-" if math.isnan(value) else f"{value:,.{digits}f}"


def ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def print_scale(rows: Sequence[Reply]) -> None:
    print(
        "\nscale: idle CPU % and memory per process (x0x agents, then the bare baseline and the"
        "\nratio x0x/bare), latency and delivery over (message, other subscriber) pairs,"
        "\nforeign/own: mean over agents of foreign bytes in / bytes in on their own topics"
    )
    columns = [
        ("N", 4),
        ("", 8),
        ("cpu% mean", 10),
        ("cpu% max", 9),
        ("rss MiB mean", 13),
        ("rss max", 8),
        ("pss mean", 9),
        ("p50 ms", 8),
        ("p99 ms", 8),
        ("delivered", 10),
        ("foreign/own", 12),
    ]
    print(" ".join(f"{name:>{width}}" for name, width in columns))
    keys = [
        ("cpu_pct_mean", 2),
        ("cpu_pct_max", 2),
        ("rss_mib_mean", 1),
        ("rss_mib_max", 1),
        ("pss_mib_mean", 1),
    ]
    widths = [width for _, width in columns]
    for row in rows:
        bare = row["bare"]
        lines = [
            ("x0x", [fmt(row[k], d) for k, d in keys]),
            ("bare", [fmt(bare[k], d) for k, d in keys]),
            ("x0x/bare", [fmt(ratio(row[k], bare[k]), 1) for k, _ in keys]),
        ]
        for label, cells in lines:
            tail = ["-"] * 4
            if label == "x0x":
                tail = [
                    fmt(row["p50_ms"], 2),
                    fmt(row["p99_ms"], 2),
                    fmt(100 * row["delivered"], 1) + "%",
                    fmt(row["foreign_over_own_mean"], 2),
                ]
            values = [str(row["agents"]) if label == "x0x" else "", label, *cells, *tail]
            print(" ".join(f"{v:>{w}}" for v, w in zip(values, widths)))
    for row in rows:
        print(json.dumps(rounded(row)))


async def scale(args: argparse.Namespace, home: str) -> None:
    rows: List[Reply] = []
    try:
        for count in args.agents:
            rows.append(await scale_once(count, args, home))
    finally:
        if rows:
            print_scale(rows)
    for row in rows:
        if row["queue_drops"]:
            print(f"warning: N={row['agents']}: {row['queue_drops']} messages dropped from queues")


def load() -> str:
    with contextlib.suppress(OSError, AttributeError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def parent_main(args: argparse.Namespace) -> None:
    print(
        f"machine: {os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}, x0x {x0x.__version__}; load average before: {load()}"
    )
    home = tempfile.mkdtemp(prefix="x0x-bench-topics-")
    started = time.perf_counter()
    try:
        run = split if args.scenario == "split" else scale
        asyncio.run(run(args, home))
    finally:
        for proc in STARTED:
            kill_group(proc)
        shutil.rmtree(home, ignore_errors=True)
    print(f"total time {time.perf_counter() - started:.1f} s, load average after: {load()}")


def terminate(signum: int, frame: object) -> NoReturn:
    """SIGTERM unwinds like Ctrl-C, so the children are stopped."""
    raise KeyboardInterrupt


def agent_counts(text: str) -> List[int]:
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive numbers")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", choices=["split", "scale"], default="split")
    parser.add_argument(
        "--agents", type=agent_counts, default=[10, 20, 30, 40, 50], help="scale: N, or N1,N2,..."
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle", type=float, default=10.0, help="seconds after subscribing")
    parser.add_argument("--messages", type=int, default=2000, help="split (default 2000)")
    parser.add_argument("--size", type=int, default=1024, help="split: payload bytes")
    parser.add_argument("--burst", type=int, default=100, help="split: messages per burst")
    parser.add_argument("--topics", type=int, default=10, help="scale (default 10)")
    parser.add_argument("--subscribers", type=int, default=5, help="scale: per topic")
    parser.add_argument("--idle", type=float, default=20.0, help="scale: CPU window, seconds")
    parser.add_argument("--rounds", type=int, default=100, help="scale: latency messages")
    parser.add_argument("--gap-ms", type=float, default=100.0, help="scale: between rounds")
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bare", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bootstrap", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        asyncio.run(peer_main(args.bootstrap))
        return
    if args.bare:
        bare_main()
        return
    if min(args.messages, args.burst, args.rounds, args.topics) < 1 or args.size < ID.size:
        parser.error(f"counts must be positive and --size at least {ID.size}")
    if args.scenario == "scale" and not 1 <= args.subscribers <= min(args.agents):
        parser.error("--subscribers must be between 1 and the smallest --agents")
    signal.signal(signal.SIGTERM, terminate)
    try:
        parent_main(args)
    except BenchError as e:
        sys.exit(f"benchmark failed: {e}")
    except KeyboardInterrupt:
        sys.exit("interrupted; every child process was stopped")


if __name__ == "__main__":
    main()
