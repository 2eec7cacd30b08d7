"""x0x request/response against pyzmq DEALER/ROUTER, both measured in the same run on loopback.

    python bench/rpc.py [--requests N] [--latency-samples N] [--window N] [--size B] [--rounds N]

Each implementation runs as two OS processes (this file, re-run with a hidden ``--role``), a
server and a client, both Python on asyncio, talking over 127.0.0.1; the parent only starts
them and reads the client's result line.

* x0x: the server builds an agent with the default builder and one capability, joins as the
  first node and answers every request on its inbox with the request's payload
  (``message.reply``); the client bootstraps to it, finds it by capability
  (``agent.find``) and calls ``agent.request``. Each request crosses a direct QUIC connection
  (TLS 1.3, X25519MLKEM768) on a stream of its own.
* pyzmq: a ``zmq.asyncio`` ROUTER binds tcp://127.0.0.1 and echoes ``[identity, payload]``; a
  DEALER connects.

Phases, the same for both: warm-up (``WARM_UP`` requests), latency (``--latency-samples``
requests one at a time: the round trip of each, ``perf_counter_ns`` around it), throughput
(``--requests`` requests with ``--window`` in flight: requests/s from first send to last reply).
CPU per request is the client's and the server's process CPU time over the latency phase,
divided by its requests. Each figure is the median over ``--rounds`` runs; ratios are x0x
over pyzmq from the same run.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from typing import Any, Dict, List

CAPABILITY = "bench/echo"
WARM_UP = 200
SETUP_TIMEOUT = 60.0
Result = Dict[str, Any]


def percentile(values: List[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds() -> float:
    """This process's CPU time so far (all threads)."""
    return time.process_time()


# --------------------------------------------------------------------------- servers


async def serve_x0x() -> None:
    import x0x

    agent = await x0x.Agent.builder().with_capabilities([CAPABILITY]).build()
    try:
        await agent.join_network()
        inbox = agent.inbox(capacity=1 << 16)
        print(json.dumps({"address": agent.local_addr}), flush=True)
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(None, sys.stdin.readline)

        async def answer() -> None:
            async for message in inbox:
                message.reply(message.payload)

        task = asyncio.ensure_future(answer())
        await done
        task.cancel()
        print(json.dumps({"cpu": cpu_seconds()}), flush=True)
    finally:
        await agent.close()


async def serve_zmq() -> None:
    import zmq
    import zmq.asyncio

    context = zmq.asyncio.Context.instance()
    sock = context.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt(zmq.LAST_ENDPOINT)
    assert isinstance(endpoint, bytes)
    print(json.dumps({"address": endpoint.decode()}), flush=True)
    loop = asyncio.get_running_loop()
    done = loop.run_in_executor(None, sys.stdin.readline)

    async def answer() -> None:
        while True:
            await sock.send_multipart(await sock.recv_multipart())

    task = asyncio.ensure_future(answer())
    await done
    task.cancel()
    print(json.dumps({"cpu": cpu_seconds()}), flush=True)
    sock.close(0)
    context.term()


# --------------------------------------------------------------------------- clients


async def measure(call: Any, args: argparse.Namespace) -> Result:
    """The three phases against ``call(payload) -> reply``."""
    body = bytes(args.size)
    for _ in range(WARM_UP):
        assert await call(body) == body
    rtts = []
    cpu = cpu_seconds()
    for _ in range(args.latency_samples):
        start = time.perf_counter_ns()
        await call(body)
        rtts.append((time.perf_counter_ns() - start) / 1000)
    cpu = cpu_seconds() - cpu
    left = args.requests

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await call(body)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.window)))
    elapsed = time.perf_counter() - began
    return {
        "p50_us": percentile(rtts, 0.5),
        "p99_us": percentile(rtts, 0.99),
        "client_cpu_us": cpu / args.latency_samples * 1e6,
        "rps": args.requests / elapsed,
    }


async def client_x0x(args: argparse.Namespace) -> Result:
    import x0x

    agent = await x0x.Agent.builder().with_bootstrap(args.connect).build()
    try:
        await agent.join_network(timeout=SETUP_TIMEOUT)
        found = await agent.find(CAPABILITY, timeout=10, limit=1)
        if not found:
            raise RuntimeError(f"no agent advertises {CAPABILITY!r}")
        server = found[0].agent_id
        request = agent.request

        async def call(body: bytes) -> bytes:
            return await request(server, body, timeout=30)

        return await measure(call, args)
    finally:
        await agent.close()


async def client_zmq(args: argparse.Namespace) -> Result:
    import zmq
    import zmq.asyncio

    context = zmq.asyncio.Context.instance()
    sock = context.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(args.connect)
    waiting: Dict[int, asyncio.Future[bytes]] = {}
    next_id = 0

    async def receive() -> None:
        while True:
            tag, reply = await sock.recv_multipart()
            waiting.pop(int.from_bytes(tag, "little")).set_result(reply)

    receiver = asyncio.ensure_future(receive())

    async def call(body: bytes) -> bytes:
        nonlocal next_id
        next_id += 1
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        waiting[next_id] = future
        await sock.send_multipart([next_id.to_bytes(8, "little"), body])
        return await future

    try:
        return await measure(call, args)
    finally:
        receiver.cancel()
        sock.close(0)
        context.term()


# --------------------------------------------------------------------------- parent


def run_pair(impl: str, args: argparse.Namespace) -> Result:
    """One server and one client process of ``impl``; the client's figures and CPU."""
    me = [sys.executable, os.path.abspath(__file__)]
    shape = [
        f"--{name}={getattr(args, name.replace('-', '_'))}"
        for name in ("requests", "latency-samples", "window", "size")
    ]
    server = subprocess.Popen(
        [*me, "--role", f"{impl}-server"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdin is not None
        address = json.loads(server.stdout.readline())["address"]
        server_cpu = 0.0
        client = subprocess.run(
            [*me, "--role", f"{impl}-client", "--connect", address, *shape],
            capture_output=True,
            text=True,
            timeout=SETUP_TIMEOUT + args.requests / 100,
        )
        if client.returncode != 0:
            raise RuntimeError(f"{impl} client failed:\n{client.stderr}")
        result: Result = json.loads(client.stdout.strip().splitlines()[-1])
        server.stdin.write("quit\n")
        server.stdin.flush()
        server_cpu = json.loads(server.stdout.readline())["cpu"]
        result["server_cpu_s"] = server_cpu
        return result
    finally:
        if server.poll() is None:
            server.stdin.close()  # type: ignore[union-attr]
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--latency-samples", type=int, default=2000)
    parser.add_argument("--window", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the medians as JSON")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--connect", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        runs = {
            "x0x-server": serve_x0x,
            "zmq-server": serve_zmq,
        }
        if args.role in runs:
            asyncio.run(runs[args.role]())
            return
        client = client_x0x if args.role == "x0x-client" else client_zmq
        print(json.dumps(asyncio.run(client(args))), flush=True)
        return

    rounds: Dict[str, List[Result]] = {"x0x": [], "pyzmq": []}
    for _ in range(args.rounds):
        rounds["x0x"].append(run_pair("x0x", args))
        rounds["pyzmq"].append(run_pair("zmq", args))
    medians = {
        impl: {key: statistics.median(r[key] for r in results) for key in results[0]}
        for impl, results in rounds.items()
    }
    if args.json:
        print(json.dumps(medians))
        return
    ours, theirs = medians["x0x"], medians["pyzmq"]
    print(
        f"request/response, {args.size} B payloads, loopback, medians of {args.rounds} rounds "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()})"
    )
    print(f"{'':24}{'x0x':>12}{'pyzmq':>12}{'x0x/pyzmq':>12}")
    for key, label in (
        ("p50_us", "RTT p50 (us)"),
        ("p99_us", "RTT p99 (us)"),
        ("client_cpu_us", "client CPU/request (us)"),
        ("rps", f"requests/s ({args.window} in flight)"),
    ):
        print(f"{label:24}{ours[key]:12.1f}{theirs[key]:12.1f}{ours[key] / theirs[key]:12.2f}")


if __name__ == "__main__":
    main()
