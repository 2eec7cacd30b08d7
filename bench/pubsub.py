"""Signed x0x pub/sub against pyzmq PUB/SUB, both measured in the same run on loopback.

    python bench/pubsub.py [--messages N] [--latency-samples N] [--rounds N] [--profile DIR]

Each implementation runs as two OS processes, a publisher and a subscriber, talking over
127.0.0.1: this file re-run with a hidden ``--role`` (Python on asyncio), or for "x0x C" the
program ``bench/pubsub_c.c`` (built with ``make bench-c``; this script runs that first). The
parent process only coordinates them, line by line over their stdin/stdout, and never touches
the data path.

* x0x: the subscriber builds an agent with the default builder (as the README shows: the
  machine's key, any port), joins as the first node and subscribes with a queue large enough
  never to drop; the publisher bootstraps to it. Every message is signed (ML-DSA-65, batched by
  the signer) and verified on arrival.
* x0x C: the same, in C through the C ABI (``include/x0x.h``): no Python in either process.
* pyzmq: a ``zmq.asyncio`` SUB binds tcp://127.0.0.1, the PUB connects; both high-water marks are
  0 (unlimited), so zmq queues rather than silently dropping.

Phases, the same for both: warm-up (the publisher repeats a warm-up message until the subscriber
has one: the slow-joiner problem), throughput (``--messages`` messages of ``--size`` bytes,
published as fast as the publish call allows; the rate is the subscriber's, first to last
receive), latency (``--latency-samples`` messages ``--gap-ms`` apart, so queueing does not
dominate; one hop, ``time.time_ns()`` at publish against ``time.time_ns()`` at receive, both
processes on this machine). Lost = expected minus received.

``--profile DIR`` runs the x0x throughput phase under cProfile in both processes and prints where
the Python time goes (it slows the run: do not compare its numbers with unprofiled ones).
"""

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import math
import os
import platform
import pstats
import shutil
import statistics
import struct
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

TOPIC = "bench/pubsub"
# kind (b"W" warm-up, b"T" throughput, b"L" latency), sequence number, time.time_ns() at publish.
HEADER = struct.Struct("<cQq")
WARM, THROUGHPUT, LATENCY = b"W", b"T", b"L"
WARM_INTERVAL = 0.01  # seconds between warm-up messages
SETUP_TIMEOUT = 60.0  # start a process, build/bind, join, first warm-up message
DRAIN_IDLE = 2.0  # a phase is over once nothing has arrived for this long after the last send
EXIT_TIMEOUT = 15.0
X0X_CAPACITY = 1 << 20
RUNQ_WAIT = "(runq wait)"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The C roles ("x0x C"): bench/pubsub_c.c, built by the top-level Makefile's bench-c target.
C_BINARY = os.path.join(ROOT, "build", "bench", "pubsub_c")
C_MAIN_THREAD = "c-main"  # what bench/pubsub_c.c calls its main thread

Result = Dict[str, Any]


class BenchError(Exception):
    """A benchmark process failed or did not answer in time."""


def payload(kind: bytes, seq: int, size: int) -> bytes:
    return HEADER.pack(kind, seq, time.time_ns()) + bytes(size - HEADER.size)


def thread_cpu_ns() -> Dict[str, int]:
    """CPU time so far of this process's threads, summed by thread name (Linux; else empty),
    and under ``RUNQ_WAIT`` the time they were runnable but waited for a CPU.

    x0x names its threads ``x0x-rt`` (tokio workers and blocking pool), ``x0x-signer`` and
    ``x0x-callbacks``; libzmq ``ZMQbg/IO/0`` and ``ZMQbg/Reaper``; the interpreter's is ``python``.
    (bench/pubsub_c.c reports the same for its process, its main thread as ``c-main``.)
    """
    totals: Dict[str, int] = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return totals
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/self/task/{tid}/schedstat") as f:
                on_cpu, waiting = (int(field) for field in f.read().split()[:2])
        except (OSError, ValueError):
            continue  # the thread just exited
        totals[name] = totals.get(name, 0) + on_cpu
        totals[RUNQ_WAIT] = totals.get(RUNQ_WAIT, 0) + waiting
    return totals


def cpu_since(before: Dict[str, int]) -> Dict[str, int]:
    after = thread_cpu_ns()
    return {name: ns - before.get(name, 0) for name, ns in sorted(after.items())}


# --------------------------------------------------------------------------- child processes


class Control:
    """The child's end of the line protocol: reads the parent's words on stdin."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    @staticmethod
    async def open() -> "Control":
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        return Control(reader)

    async def expect(self, word: str, timeout: float) -> None:
        try:
            line = await asyncio.wait_for(self.reader.readline(), timeout)
        except asyncio.TimeoutError:
            raise BenchError(f"no {word!r} from the parent within {timeout:.0f} s") from None
        if not line:
            raise BenchError("the parent went away")
        got = line.decode().strip()
        if got != word:
            raise BenchError(f"expected {word!r} from the parent, got {got!r}")


def say(word: str, data: Optional[Result] = None) -> None:
    """One protocol line to the parent."""
    sys.stdout.write(f"{word} {json.dumps(data or {})}\n")
    sys.stdout.flush()


class Profiler:
    """cProfile around one phase when ``--profile`` is given; a no-op otherwise."""

    def __init__(self, path: Optional[str]) -> None:
        self.path = path
        self.profile: Optional[cProfile.Profile] = cProfile.Profile() if path else None

    def start(self) -> None:
        if self.profile is not None:
            self.profile.enable()

    def stop(self) -> None:
        if self.profile is not None and self.path is not None:
            self.profile.disable()
            self.profile.dump_stats(self.path)
            self.profile = None


class Receiver:
    """Counts what a subscriber receives, per phase. ``on_message`` is the per-message cost."""

    def __init__(self, messages: int, samples: int) -> None:
        self.messages = messages
        self.samples = samples
        self.warm = asyncio.Event()
        self.count = 0
        self.duplicates = 0
        self.reordered = 0
        self.seen = bytearray(messages)
        self.next_seq = 0
        self.first = 0.0  # perf_counter() at the first and last throughput message
        self.last = 0.0
        self.active = 0.0  # perf_counter() at the last message of any kind
        self.latencies: List[int] = []
        self.latency_seen = bytearray(samples)

    def on_message(self, data: bytes, offset: int) -> None:
        kind, seq, sent_ns = HEADER.unpack_from(data, offset)
        if kind == THROUGHPUT:
            now = self.active = time.perf_counter()
            if self.count == 0:
                self.first = now
            self.last = now
            if self.seen[seq]:
                self.duplicates += 1
                return
            self.seen[seq] = 1
            self.count += 1
            if seq < self.next_seq:
                self.reordered += 1
            self.next_seq = seq + 1
        elif kind == LATENCY:
            received_ns = time.time_ns()
            self.active = time.perf_counter()
            if not self.latency_seen[seq]:
                self.latency_seen[seq] = 1
                self.latencies.append(received_ns - sent_ns)
        elif kind == WARM:
            self.warm.set()

    async def settle(self, done: Callable[[], bool], max_wait: float) -> None:
        """Returns once ``done()`` or nothing arrived for ``DRAIN_IDLE`` s (bounded by
        ``max_wait``)."""
        start = time.perf_counter()
        while not done():
            now = time.perf_counter()
            if now - max(self.active, start) > DRAIN_IDLE or now - start > max_wait:
                return
            await asyncio.sleep(0.02)

    def throughput(self) -> Result:
        span = self.last - self.first if self.count > 1 else 0.0
        return {
            "received": self.count,
            "lost": self.messages - self.count,
            "duplicates": self.duplicates,
            "reordered": self.reordered,
            "seconds": span,
            "rate": (self.count - 1) / span if span > 0 else 0.0,
        }

    def latency(self) -> Result:
        return {"received": len(self.latencies), "ns": self.latencies}


def check_pump(task: "asyncio.Future[None]") -> None:
    """Raises if the receive loop has ended (it only ends by failing)."""
    if task.done():
        error = task.exception()
        raise BenchError(f"the receive loop ended: {error!r}") from error


def phase_timeout(args: argparse.Namespace) -> float:
    # Generous: the throughput phase at 2,000 msg/s; the latency phase at 5x its nominal length.
    return float(SETUP_TIMEOUT + args.messages / 2000 + args.latency_samples * args.gap_ms / 200)


async def run_subscriber(args: argparse.Namespace, ctl: Control) -> None:
    rx = Receiver(args.messages, args.latency_samples)
    timeout = phase_timeout(args)
    profiler = Profiler(args.profile)
    impl = args.role[: -len("-sub")]
    agent: Any = None
    sub: Any = None
    sock: Any = None
    if impl == "x0x":
        import x0x

        agent = await x0x.Agent.builder().build()
        sub = agent.subscribe(TOPIC, capacity=X0X_CAPACITY)
        await agent.join_network()
        address = agent.local_addr

        async def pump() -> None:
            on_message = rx.on_message
            async for message in sub:
                on_message(message.payload, 0)

    else:
        import zmq
        import zmq.asyncio

        sock = zmq.asyncio.Context.instance().socket(zmq.SUB)
        sock.setsockopt(zmq.RCVHWM, 0)  # unlimited: queue, never drop
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, TOPIC.encode())
        sock.bind("tcp://127.0.0.1:*")
        address = sock.getsockopt(zmq.LAST_ENDPOINT).decode()
        offset = len(TOPIC.encode())
        drain = impl == "zmqdrain"
        sync_sock: zmq.Socket[bytes] = zmq.Socket.shadow(sock.underlying)

        async def pump() -> None:
            on_message = rx.on_message
            recv = sock.recv
            recv_now = sync_sock.recv
            while True:
                on_message(await recv(), offset)
                # zmqdrain: take what is already queued without a future per message, as the
                # x0x subscription does (it takes up to 256 per crossing).
                while drain:
                    try:
                        frame = recv_now(zmq.NOBLOCK)
                    except zmq.Again:
                        break
                    on_message(frame, offset)

    task = asyncio.ensure_future(pump())
    try:
        say("ready", {"address": address})
        try:
            await asyncio.wait_for(rx.warm.wait(), SETUP_TIMEOUT)
        except asyncio.TimeoutError:
            raise BenchError("no warm-up message arrived") from None
        before: Any = agent.stats() if agent is not None else None
        cpu = thread_cpu_ns()
        profiler.start()
        say("warm")
        await ctl.expect("sent", timeout)
        await rx.settle(lambda: rx.count >= rx.messages or task.done(), timeout)
        profiler.stop()
        check_pump(task)
        result = rx.throughput()
        result["cpu"] = cpu_since(cpu)
        if agent is not None:
            after = agent.stats()
            result["dropped"] = sub.dropped
            result["stats"] = {key: after[key] - before[key] for key in after}
        say("throughput", result)
        cpu = thread_cpu_ns()
        await ctl.expect("sent", timeout)
        await rx.settle(lambda: len(rx.latencies) >= rx.samples or task.done(), timeout)
        check_pump(task)
        say("latency", {**rx.latency(), "cpu": cpu_since(cpu)})
        await ctl.expect("quit", timeout)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        if agent is not None:
            await asyncio.wait_for(agent.close(), EXIT_TIMEOUT)
        if sock is not None:
            context = sock.context
            sock.close(0)
            context.term()


async def run_publisher(args: argparse.Namespace, ctl: Control) -> None:
    timeout = phase_timeout(args)
    profiler = Profiler(args.profile)
    size = args.size
    agent: Any = None
    sock: Any = None
    if args.role == "x0x-pub":
        import x0x

        agent = await x0x.Agent.builder().with_bootstrap(args.connect).build()
        await agent.join_network(timeout=SETUP_TIMEOUT)
        publish_x0x = agent.publish

        async def publish(data: bytes) -> None:
            await publish_x0x(TOPIC, data)

    else:
        import zmq
        import zmq.asyncio

        sock = zmq.asyncio.Context.instance().socket(zmq.PUB)
        sock.setsockopt(zmq.SNDHWM, 0)  # unlimited: queue, never drop
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(args.connect)
        prefix = TOPIC.encode()
        send = sock.send

        async def publish(data: bytes) -> None:
            await send(prefix + data)

    async def warm_up() -> None:
        seq = 0
        while True:
            await publish(payload(WARM, seq, size))
            seq += 1
            await asyncio.sleep(WARM_INTERVAL)

    warm = asyncio.ensure_future(warm_up())
    try:
        say("joined")
        try:
            await ctl.expect("throughput", SETUP_TIMEOUT)
        finally:
            warm.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await warm
        before: Any = agent.stats() if agent is not None else None
        pack, pad, now_ns = HEADER.pack, bytes(size - HEADER.size), time.time_ns
        cpu = thread_cpu_ns()
        profiler.start()
        start = time.perf_counter()
        for seq in range(args.messages):
            await publish(pack(THROUGHPUT, seq, now_ns()) + pad)
        elapsed = time.perf_counter() - start
        profiler.stop()
        result: Result = {"seconds": elapsed, "rate": args.messages / elapsed}
        if agent is not None:
            # publish() returns once a message is queued for the signer: also time the signing.
            deadline = time.perf_counter() + timeout
            while agent.stats()["published"] - before["published"] < args.messages:
                if time.perf_counter() > deadline:
                    raise BenchError("the signer did not catch up")
                await asyncio.sleep(0.001)
            result["signed_seconds"] = time.perf_counter() - start
            after = agent.stats()
            result["stats"] = {key: after[key] - before[key] for key in after}
        say("sent", result)
        await ctl.expect("latency", timeout)
        tp_cpu = cpu_since(cpu)  # the subscriber has everything by now: nothing left to send
        cpu = thread_cpu_ns()
        gap = args.gap_ms / 1000
        for seq in range(args.latency_samples):
            await publish(pack(LATENCY, seq, now_ns()) + pad)
            await asyncio.sleep(gap)
        await asyncio.sleep(0.05)  # the last message leaves
        say("sent", {"cpu": cpu_since(cpu), "throughput_cpu": tp_cpu})
        await ctl.expect("quit", timeout)
    finally:
        if agent is not None:
            await asyncio.wait_for(agent.close(), EXIT_TIMEOUT)
        if sock is not None:
            context = sock.context
            sock.close(0)
            context.term()


async def child_main(args: argparse.Namespace) -> None:
    ctl = await Control.open()
    if args.role.endswith("-sub"):
        await run_subscriber(args, ctl)
    else:
        await run_publisher(args, ctl)


# --------------------------------------------------------------------------- parent


class Child:
    """A benchmark process and its protocol pipes."""

    def __init__(self, name: str, proc: "asyncio.subprocess.Process") -> None:
        self.name = name
        self.proc = proc

    @staticmethod
    async def spawn(name: str, role: str, args: argparse.Namespace, *extra: str) -> "Child":
        if role.startswith("x0xc-"):
            program = [args.c_binary]  # bench/pubsub_c.c
        else:
            program = [sys.executable, os.path.abspath(__file__)]
        argv = [
            *program,
            "--role",
            role,
            "--messages",
            str(args.messages),
            "--latency-samples",
            str(args.latency_samples),
            "--gap-ms",
            str(args.gap_ms),
            "--size",
            str(args.size),
            *extra,
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        return Child(name, proc)

    async def expect(self, word: str, timeout: float) -> Result:
        assert self.proc.stdout is not None
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
        except asyncio.TimeoutError:
            raise BenchError(f"{self.name}: no {word!r} within {timeout:.0f} s") from None
        if not line:
            code = await asyncio.wait_for(self.proc.wait(), EXIT_TIMEOUT)
            raise BenchError(f"{self.name} exited ({code}) before {word!r}")
        got, _, data = line.decode().partition(" ")
        if got != word:
            raise BenchError(f"{self.name}: expected {word!r}, got {line.decode().strip()!r}")
        result: Result = json.loads(data or "{}")
        return result

    def tell(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{word}\n".encode())

    async def finish(self, grace: float) -> None:
        """Closes its stdin (a child that still waits for a word then gives up), waits up to
        ``grace`` seconds for it to exit, then kills it."""
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), grace)
            except asyncio.TimeoutError:
                print(f"warning: {self.name} did not exit; killing it", file=sys.stderr)
        if self.proc.returncode is None:
            self.proc.kill()
            await asyncio.wait_for(self.proc.wait(), EXIT_TIMEOUT)


async def run_pair(impl: str, args: argparse.Namespace, profile_dir: Optional[str]) -> Result:
    """One subscriber and one publisher process of ``impl``, through every phase."""
    timeout = phase_timeout(args)
    children: List[Child] = []
    grace = 3.0  # for children that failed; raised once the run went through

    def profile_args(role: str) -> List[str]:
        if profile_dir is None:
            return []
        return ["--profile", os.path.join(profile_dir, f"{role}.pstats")]

    try:
        sub = await Child.spawn(f"{impl} subscriber", f"{impl}-sub", args, *profile_args("sub"))
        children.append(sub)
        address = (await sub.expect("ready", SETUP_TIMEOUT))["address"]
        pub = await Child.spawn(
            f"{impl} publisher", f"{impl}-pub", args, "--connect", address, *profile_args("pub")
        )
        children.append(pub)
        await pub.expect("joined", SETUP_TIMEOUT)
        await sub.expect("warm", SETUP_TIMEOUT)
        pub.tell("throughput")
        sent = await pub.expect("sent", timeout)
        sub.tell("sent")
        received = await sub.expect("throughput", timeout)
        pub.tell("latency")
        sent_latency = await pub.expect("sent", timeout)
        sub.tell("sent")
        latency = await sub.expect("latency", timeout)
        for child in children:
            child.tell("quit")
        grace = EXIT_TIMEOUT
    finally:
        for child in children:
            await child.finish(grace)
    return {"sent": sent, "received": received, "sent_latency": sent_latency, "latency": latency}


def percentile(values: Sequence[int], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(q * len(ordered)))])


def thread_group(name: str) -> str:
    if name.startswith(("x0x-", "(")) or name == C_MAIN_THREAD:
        return name
    if name.startswith("ZMQbg/IO"):
        return "zmq-io"
    if name.startswith("ZMQbg"):
        return "zmq-other"
    return "python"  # the interpreter's threads are named after the executable


def summarize(run: Result, args: argparse.Namespace) -> Dict[str, float]:
    """One round of one implementation, as flat numbers (``cpu/...`` keys: us per message)."""
    lat = run["latency"]["ns"]
    rec = run["received"]
    row = {
        "rate": float(rec["rate"]),
        "send_rate": float(run["sent"]["rate"]),
        "lost": float(rec["lost"]),
        "dropped": float(rec.get("dropped", math.nan)),
        "dup": float(rec["duplicates"] + rec["reordered"]),
        "p50": percentile(lat, 0.50) / 1000,
        "p90": percentile(lat, 0.90) / 1000,
        "p99": percentile(lat, 0.99) / 1000,
        "lat_lost": float(args.latency_samples - len(lat)),
    }
    sent = run["sent"]
    if "stats" in sent:
        row["per_envelope"] = sent["stats"]["published"] / max(1, sent["stats"]["envelopes_signed"])
        row["sign_rate"] = args.messages / sent["signed_seconds"]
    if "blocked_seconds" in sent:  # x0x C: publish calls that waited for the signer to catch up
        row["blocked"] = 100 * sent["blocked_seconds"] / sent["seconds"]
    if rec.get("batches"):  # x0x C: receive batches (one wake-up, or one try_next, each)
        row["per_batch"] = rec["received"] / rec["batches"]
    phases = [
        ("pub", "throughput", run["sent_latency"]["throughput_cpu"], args.messages),
        ("sub", "throughput", rec["cpu"], max(1, rec["received"])),
        ("pub", "latency", run["sent_latency"]["cpu"], args.latency_samples),
        ("sub", "latency", run["latency"]["cpu"], max(1, len(lat))),
    ]
    for role, phase, cpu, count in phases:
        for name, ns in cpu.items():
            key = f"cpu/{role}/{phase}/{thread_group(name)}"
            row[key] = row.get(key, 0.0) + ns / count / 1000
    return row


def load() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every number."""
    with contextlib.suppress(OSError, AttributeError):
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    return "unknown"


def cpu_model() -> str:
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def print_profile(path: str, title: str) -> None:
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.sort_stats("tottime").print_stats(14)
    print(f"\n--- cProfile, {title} (x0x throughput phase), top by own time ---")
    text = out.getvalue()
    start = text.find("   ncalls")
    print(text[start:].rstrip() if start >= 0 else text.rstrip())


def fmt(value: float, digits: int) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


LABELS = {"x0x": "x0x", "x0xc": "x0x C", "zmq": "pyzmq", "zmqdrain": "pyzmq drain"}
ROWS = [
    ("throughput, received msg/s", "rate", 0),
    ("publish calls/s (publisher side)", "send_rate", 0),
    ("signed msg/s (publisher, x0x)", "sign_rate", 0),
    ("lost (sent - received)", "lost", 0),
    ("subscription queue drops", "dropped", 0),
    ("duplicated or reordered", "dup", 0),
    ("latency p50 us", "p50", 1),
    ("latency p90 us", "p90", 1),
    ("latency p99 us", "p99", 1),
    ("latency samples lost", "lat_lost", 0),
    ("messages per signed envelope", "per_envelope", 1),
    ("% of publish time waiting (signer)", "blocked", 1),
    ("messages per receive batch", "per_batch", 1),
]


def median_of(rows: List[Dict[str, float]], key: str) -> float:
    values = [r[key] for r in rows if key in r and not math.isnan(r[key])]
    return statistics.median(values) if values else math.nan


def medians(results: Dict[str, List[Dict[str, float]]]) -> Dict[str, Dict[str, float]]:
    """Every figure's median over the rounds, per implementation."""
    return {
        impl: {key: median_of(rows, key) for key in sorted({k for r in rows for k in r})}
        for impl, rows in results.items()
    }


def print_table(results: Dict[str, List[Dict[str, float]]]) -> None:
    impls = list(results)
    # Ratios: each x0x implementation against each pyzmq one, in the same run.
    pairs = [(a, b) for a in impls if a.startswith("x0x") for b in impls if b.startswith("zmq")]
    header = f"{'metric':<34}" + "".join(f" {LABELS[i]:>12}" for i in impls)
    header += "".join(f" {LABELS[a] + '/' + LABELS[b]:>17}" for a, b in pairs)
    print(header)
    for label, key, digits in ROWS:
        values = {i: median_of(results[i], key) for i in impls}
        line = f"{label:<34}" + "".join(f" {fmt(values[i], digits):>12}" for i in impls)
        for a, b in pairs:
            x, y = values[a], values[b]
            ratio = x / y if y and not math.isnan(x) and not math.isnan(y) else math.nan
            line += f" {fmt(ratio, 2):>17}"
        print(line)


def print_cpu(results: Dict[str, List[Dict[str, float]]]) -> None:
    """CPU time per message, by thread, from /proc/self/task/*/schedstat in each process."""
    keys = sorted({k for rows in results.values() for r in rows for k in r if k[:4] == "cpu/"})
    if not keys:
        return
    threads = sorted(
        {k.split("/")[3] for k in keys},
        key=lambda t: (t[0] == "(", t not in ("python", C_MAIN_THREAD), t),
    )
    print("\nCPU time per message by thread, us, from /proc/self/task/*/schedstat (the latency")
    print("phase includes the wake-ups between messages). runq wait: runnable, but no CPU was free")
    print("(not in the total); large values mean the processes or other load competed for CPUs.")
    print(f"{'':<28}" + "".join(f" {t:>13}" for t in threads) + f" {'total':>8}")
    for impl, rows in results.items():
        for phase in ("throughput", "latency"):
            for role in ("pub", "sub"):
                values = [median_of(rows, f"cpu/{role}/{phase}/{t}") for t in threads]
                total = sum(v for t, v in zip(threads, values) if t[0] != "(" and not math.isnan(v))
                line = f"{LABELS[impl] + ' ' + role + ' ' + phase:<28}"
                print(line + "".join(f" {fmt(v, 1):>13}" for v in values) + f" {total:>8.1f}")


def build_c(args: argparse.Namespace) -> Optional[str]:
    """Builds the C roles (``make bench-c``) unless ``--c-binary`` names them; returns why
    "x0x C" cannot run, or None."""
    if args.c_binary is not None:
        return None if os.access(args.c_binary, os.X_OK) else f"{args.c_binary} is not executable"
    args.c_binary = C_BINARY
    compiler = os.environ.get("CC", "cc")
    missing = [tool for tool in ("make", compiler) if shutil.which(tool) is None]
    if missing:
        return f"no {' or '.join(missing)} to build {os.path.relpath(C_BINARY, ROOT)}"
    print("building the C roles: make bench-c", flush=True)
    build = subprocess.run(
        ["make", "--no-print-directory", "-C", ROOT, "bench-c"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    if build.returncode != 0:
        tail = "\n".join(build.stdout.splitlines()[-15:])
        return f"make bench-c failed ({build.returncode}):\n{tail}"
    return None


def parent_main(args: argparse.Namespace) -> None:
    import zmq

    if "x0xc" in args.impls:
        problem = build_c(args)
        if problem is not None:
            print(f"skipping {LABELS['x0xc']}: {problem}", file=sys.stderr)
            args.impls = [impl for impl in args.impls if impl != "x0xc"]
            if not args.impls:
                raise BenchError("nothing left to run")
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"pyzmq {zmq.pyzmq_version()} / libzmq {zmq.zmq_version()}"
    )
    print(
        f"{args.messages:,} messages of {args.size} B, {args.latency_samples:,} latency samples "
        f"{args.gap_ms} ms apart, {args.rounds} round(s), loopback 127.0.0.1"
    )
    print(f"load average before: {load()}")
    started = time.perf_counter()
    results: Dict[str, List[Dict[str, float]]] = {impl: [] for impl in args.impls}
    for round_no in range(args.rounds):
        # Alternate the order, so neither always runs on a machine still busy with the other.
        order = args.impls if round_no % 2 == 0 else list(reversed(args.impls))
        for impl in order:
            row = summarize(asyncio.run(run_pair(impl, args, None)), args)
            results[impl].append(row)
            print(
                f"  round {round_no + 1} {LABELS[impl]:>11}: {row['rate']:>9,.0f} msg/s received,"
                f" publish {row['send_rate']:>9,.0f}/s, lost {row['lost']:.0f},"
                f" p50 {row['p50']:.0f} us, p99 {row['p99']:.0f} us",
                flush=True,
            )
    print(f"\nmedians of {args.rounds} round(s)")
    print_table(results)
    print_cpu(results)
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        row = summarize(asyncio.run(run_pair("x0x", args, args.profile)), args)
        print(
            f"\nprofiled x0x run (cProfile slows it): {row['rate']:,.0f} msg/s received, "
            f"publish {row['send_rate']:,.0f}/s"
        )
        for role in ("pub", "sub"):
            print_profile(os.path.join(args.profile, f"{role}.pstats"), f"{role} process")
    figures = {
        impl: {key: None if math.isnan(v) else v for key, v in row.items()}
        for impl, row in medians(results).items()
    }
    print(json.dumps({"rounds": args.rounds, "medians": figures}))
    print(f"\ntotal time {time.perf_counter() - started:.1f} s, load average after: {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--latency-samples", type=int, default=2000)
    parser.add_argument("--gap-ms", type=float, default=1.0)
    parser.add_argument("--size", type=int, default=256, help="payload bytes (default 256)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--impls",
        default="x0x,x0xc,zmq",
        help="comma-separated from x0x, x0xc (the C publisher and subscriber, "
        "bench/pubsub_c.c), zmq, zmqdrain (a SUB that also drains with NOBLOCK recv after "
        "each await); default x0x,x0xc,zmq",
    )
    parser.add_argument(
        "--c-binary",
        metavar="PATH",
        help="the built bench/pubsub_c.c to run as x0xc (default: make bench-c builds "
        "build/bench/pubsub_c)",
    )
    parser.add_argument("--profile", metavar="DIR", help="also profile one x0x run (cProfile)")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--connect", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.size < HEADER.size:
        parser.error(f"--size must be at least {HEADER.size}")
    if min(args.messages, args.latency_samples, args.rounds) < 1 or args.gap_ms < 0:
        parser.error("--messages, --latency-samples and --rounds must be positive")
    if args.role is not None:
        try:
            asyncio.run(child_main(args))
        except BenchError as e:
            print(f"{args.role}: {e}", file=sys.stderr)
            sys.exit(1)
        return
    args.impls = [impl.strip() for impl in args.impls.split(",") if impl.strip()]
    if not args.impls or any(impl not in LABELS for impl in args.impls):
        parser.error(f"--impls takes names from {', '.join(LABELS)}")
    try:
        parent_main(args)
    except BenchError as e:
        sys.exit(f"benchmark failed: {e}")


if __name__ == "__main__":
    main()
