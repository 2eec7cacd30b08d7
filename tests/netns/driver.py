"""One x0x agent in its own process, driven by JSON-line commands on stdin.

    python driver.py --bind 10.77.0.2:7000 --bootstrap 10.77.0.1:7000 --topic t

Every line it prints on stdout is one JSON object with an ``event`` name and ``t`` (the
``time.time_ns()`` when it was written; all processes share one clock, so these compare):

* ``{"event":"ready","peer_id":hex,"agent_id":hex,"lists":[hex,...],"join_s":float}`` once
  ``join_network()`` returned (``lists``: task lists held; ``restored``/``restored_n``: digest and
  size of each list loaded from ``--data-dir``, taken before joining);
* ``{"event":"recv","from":sender_hex16,"seq":n,"t_send":ns,"t_recv":ns,"hops":h}`` per message
  received on ``--topic`` (payload: ``b"X0XR"``, seq and ``t_send`` big-endian u64, padding);
  ``hops``: links the message crossed (``Message.hops``; 0 for the agent's own);
* ``{"event":"sent","seq":n,"t_send":ns}`` per message published, ``publish_done`` at the end;
* ``{"event":"stats",...}``: ``agent.stats()`` plus ``sub_dropped`` and ``peers`` (the neighbour
  set from peer_joined/peer_left), every ``--stats-interval`` seconds and on ``report``;
* ``{"event":"peers","peers":[hex,...],"n":k}`` whenever the neighbour set changes;
* ``{"event":"tasks","list":hex,"digest":hex,"n":k}`` whenever a task list's content changes
  (checked every 50 ms), ``tasks_full`` (every task) on request.

Commands (one JSON object per line; ``req`` is echoed in the reply):

* ``{"cmd":"publish","rate":R,"count":N}`` publish N messages at R msg/s (R=0: back to back);
  ``{"cmd":"stop"}`` stops publishing;
* ``{"cmd":"create","name":s}`` / ``{"cmd":"join","list":hex}`` a task list;
  ``{"cmd":"add","list":hex,"title":s}``, ``{"cmd":"claim","list":hex,"task":hex}``;
  ``{"cmd":"tasks","list":hex}`` (replies ``tasks_full``);
* ``{"cmd":"report"}`` (a stats line), ``{"cmd":"quit"}``. End of stdin also quits, so the agent
  never outlives the process that started it.
"""

import argparse
import asyncio
import contextlib
import ctypes
import hashlib
import json
import signal
import struct
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Set

import x0x

MAGIC = b"X0XR"
HEADER = struct.Struct(">4sQQ")


def emit(event: str, **fields: Any) -> None:
    fields["event"] = event
    fields["t"] = time.time_ns()
    sys.stdout.write(json.dumps(fields, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def task_rows(tasks: x0x.TaskList) -> List[Dict[str, Any]]:
    return [
        {
            "id": t.id.to_hex(),
            "title": t.title,
            "status": t.status.name,
            "assignee": t.assignee.to_hex() if t.assignee else None,
            "updated_at": t.updated_at,
            "created_at": t.created_at,
        }
        for t in tasks.get_tasks()
    ]


def digest(rows: List[Dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:16]


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.agent: Optional[x0x.Agent] = None
        self.sub: Optional[x0x.Subscription] = None
        self.peers: Set[str] = set()
        self.lists: Dict[str, x0x.TaskList] = {}
        self.digests: Dict[str, str] = {}
        self.publisher: Optional[asyncio.Task[None]] = None
        self.seq = 0
        self.stopping = asyncio.Event()

    # -- events ------------------------------------------------------------------------------
    def on_join(self, event: Any) -> None:
        self.peers.add(event["peer_id"])
        emit("peers", peers=sorted(self.peers), n=len(self.peers), change="+" + event["peer_id"])

    def on_left(self, event: Any) -> None:
        self.peers.discard(event["peer_id"])
        emit("peers", peers=sorted(self.peers), n=len(self.peers), change="-" + event["peer_id"])

    def stats_line(self, req: Any = None) -> None:
        assert self.agent is not None
        stats = dict(self.agent.stats())
        stats["sub_dropped"] = self.sub.dropped if self.sub is not None else 0
        emit("stats", req=req, peers=sorted(self.peers), **stats)

    # -- loops -------------------------------------------------------------------------------
    async def receive(self) -> None:
        assert self.sub is not None
        async for message in self.sub:
            t_recv = time.time_ns()
            payload = message.payload
            if len(payload) < HEADER.size or payload[:4] != MAGIC:
                continue
            _, seq, t_send = HEADER.unpack_from(payload)
            emit(
                "recv",
                **{
                    "from": message.sender.to_hex()[:16],
                    "seq": seq,
                    "t_send": t_send,
                    "t_recv": t_recv,
                    "hops": message.hops,
                    "len": len(payload),
                },
            )

    async def publish(self, rate: float, count: int) -> None:
        assert self.agent is not None
        start = time.monotonic()
        pad = b"\0" * max(0, self.args.payload - HEADER.size)
        sent = errors = 0
        for k in range(count):
            if rate > 0:
                delay = start + k / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            self.seq += 1
            t_send = time.time_ns()
            try:
                await self.agent.publish(
                    self.args.topic, HEADER.pack(MAGIC, self.seq, t_send) + pad
                )
            except x0x.X0xError as e:
                errors += 1
                emit("publish_error", seq=self.seq, error=str(e))
                continue
            sent += 1
            emit("sent", seq=self.seq, t_send=t_send)
        emit("publish_done", sent=sent, errors=errors, last_seq=self.seq)

    async def watch_tasks(self) -> None:
        while not self.stopping.is_set():
            for list_id, tasks in list(self.lists.items()):
                rows = task_rows(tasks)
                d = digest(rows)
                if self.digests.get(list_id) != d:
                    self.digests[list_id] = d
                    emit("tasks", list=list_id, digest=d, n=len(rows))
            await asyncio.sleep(0.05)

    async def periodic_stats(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(self.args.stats_interval)
            self.stats_line()

    async def commands(self) -> None:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Optional[str]] = asyncio.Queue()

        def reader() -> None:
            for line in sys.stdin:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            loop.call_soon_threadsafe(queue.put_nowait, None)

        threading.Thread(target=reader, daemon=True).start()
        while True:
            line = await queue.get()
            if line is None:
                return
            line = line.strip()
            if not line:
                continue
            cmd: Dict[str, Any] = {}
            try:
                cmd = json.loads(line)
                if await self.command(cmd):
                    return
            except Exception as e:  # reported, never fatal: the harness decides
                emit("error", req=cmd.get("req"), cmd=line, error=f"{type(e).__name__}: {e}")

    async def command(self, cmd: Dict[str, Any]) -> bool:
        assert self.agent is not None
        name = cmd["cmd"]
        req = cmd.get("req")
        if name == "publish":
            if self.publisher is not None and not self.publisher.done():
                raise RuntimeError("already publishing")
            self.publisher = asyncio.ensure_future(
                self.publish(float(cmd.get("rate", 0)), int(cmd["count"]))
            )
        elif name == "stop":
            if self.publisher is not None:
                self.publisher.cancel()
        elif name == "create":
            tasks = await self.agent.create_task_list(cmd["name"])
            self.lists[tasks.id.to_hex()] = tasks
            emit("list", req=req, list=tasks.id.to_hex())
        elif name == "join":
            tasks = await self.agent.join_task_list(cmd["list"])
            self.lists[tasks.id.to_hex()] = tasks
            emit("list", req=req, list=tasks.id.to_hex())
        elif name == "add":
            task_id = await self.lists[cmd["list"]].add_task(cmd["title"])
            emit("added", req=req, task=task_id.to_hex(), title=cmd["title"])
        elif name == "claim":
            tasks = self.lists[cmd["list"]]
            await tasks.claim_task(cmd["task"])
            row = next(r for r in task_rows(tasks) if r["id"] == cmd["task"])
            emit("claimed", req=req, task=cmd["task"], row=row)
        elif name == "tasks":
            rows = task_rows(self.lists[cmd["list"]])
            emit("tasks_full", req=req, list=cmd["list"], digest=digest(rows), tasks=rows)
        elif name == "report":
            self.stats_line(req)
        elif name == "quit":
            return True
        else:
            raise ValueError(f"unknown command {name!r}")
        return False

    async def run(self) -> None:
        args = self.args
        builder = x0x.Agent.builder().with_bind(args.bind).with_bootstrap(args.bootstrap)
        if args.data_dir:
            builder.with_data_dir(args.data_dir)
        t0 = time.monotonic()
        self.agent = agent = await builder.build()
        try:
            agent.on("peer_joined", self.on_join)
            agent.on("peer_left", self.on_left)
            self.sub = agent.subscribe(args.topic, capacity=args.capacity)
            for tasks in agent.task_lists():
                self.lists[tasks.id.to_hex()] = tasks
            # What the data dir gave back, before any replica could have answered.
            restored = {k: digest(task_rows(v)) for k, v in self.lists.items()}
            restored_n = {k: len(v.get_tasks()) for k, v in self.lists.items()}
            await agent.join_network(timeout=args.timeout)
            for list_id in args.tasklist:
                tasks = await agent.join_task_list(list_id)
                self.lists[tasks.id.to_hex()] = tasks
            emit(
                "ready",
                peer_id=agent.peer_id(),
                agent_id=agent.agent_id.to_hex(),
                addr=agent.local_addr,
                lists=sorted(self.lists),
                restored=restored,
                restored_n=restored_n,
                join_s=time.monotonic() - t0,
            )
            background = [
                asyncio.ensure_future(self.receive()),
                asyncio.ensure_future(self.watch_tasks()),
                asyncio.ensure_future(self.periodic_stats()),
            ]
            await self.commands()
            self.stopping.set()
            self.stats_line()
            for task in background + ([self.publisher] if self.publisher else []):
                task.cancel()
        finally:
            await agent.close()
        emit("bye")


def main() -> None:
    # Die with the harness, whatever happens to it (PR_SET_PDEATHSIG = 1).
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)
    parser = argparse.ArgumentParser()
    parser.add_argument("--bind", required=True)
    parser.add_argument("--bootstrap", action="append", default=[])
    parser.add_argument("--topic", default="t")
    parser.add_argument("--payload", type=int, default=1024)
    parser.add_argument("--capacity", type=int, default=1024, help="subscription queue")
    parser.add_argument("--publish-rate", type=float, default=0.0, help="start publishing now")
    parser.add_argument("--publish-count", type=int, default=0)
    parser.add_argument("--data-dir", help="keeps the agent key and task lists across restarts")
    parser.add_argument("--tasklist", action="append", default=[], help="list id to join")
    parser.add_argument("--stats-interval", type=float, default=1.0)
    parser.add_argument("--timeout", type=float, default=15.0, help="join timeout")
    args = parser.parse_args()
    driver = Driver(args)

    async def go() -> None:
        if args.publish_rate > 0 and args.publish_count > 0:
            orig = driver.commands

            async def with_publish() -> None:
                await driver.command(
                    {"cmd": "publish", "rate": args.publish_rate, "count": args.publish_count}
                )
                await orig()

            driver.commands = with_publish  # type: ignore[method-assign]
        await driver.run()

    try:
        asyncio.run(go())
    except x0x.X0xError as e:
        emit("fatal", error=f"{type(e).__name__}: {e}")
        sys.exit(1)


if __name__ == "__main__":
    main()
