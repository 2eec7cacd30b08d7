"""Network namespaces for x0x reliability tests: one namespace per agent, one bridge.

    with Net(8) as net:              # namespaces x0x-<pid>-a0..a7, hub x0x-<pid>-hub
        a = net.start(0)             # driver.py in x0x-<pid>-a0, bound to 10.77.0.1:7000
        b = net.start(1, bootstrap=[0])
        net.set_loss(1, 5)           # 5% of b's outgoing UDP packets dropped (nftables)
        net.partition([0], [1])      # drop everything between the two groups
        net.heal()
        net.line()                   # a0-a1-...: each agent reaches only its neighbours
        b.kill()                     # kill -9

Layout: the hub namespace holds a bridge ``br0``; each agent namespace ``a<i>`` has ``lo`` up and
``eth0`` (a veth whose other end is ``v<i>`` on the bridge) with 10.77.0.<i+1>/24. Nothing is
created in the root namespace, so deleting the namespaces removes everything. Each agent
namespace has an nftables table ``inet x0x`` with three chains: ``loss`` (output), ``part_out``
(output) and ``part_in`` (input); the helpers flush and refill them (``partition``,
``only_links`` and ``line`` use the last two).

Delay: ``tc qdisc netem`` needs sch_netem, which the CI kernel lacks, so ``Net(n, delay_ms=d)``
replaces the bridge with ``switch.py``, a userspace switch in the hub namespace that holds every
frame for ``d`` ms (round-trip time 2d). nftables' ``numgen random`` is not seedable, so loss
patterns differ between runs even with the same seed (the seed fixes every choice the tests
make).
"""

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

HERE = Path(__file__).resolve().parent
DRIVER = HERE / "driver.py"
SWITCH = HERE / "switch.py"
SUBNET = "10.77.0"
PORT = 7000
MAX_AGENTS = 200  # 10.77.0.1 .. 10.77.0.200


def run(cmd: Sequence[str], check: bool = True, input: Optional[str] = None) -> str:
    proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def unavailable() -> Optional[str]:
    """Why these tests cannot run here, or None if they can."""
    if not sys.platform.startswith("linux"):
        return f"needs Linux (network namespaces), this is {sys.platform}"
    if os.geteuid() != 0:
        return "needs root (ip netns, nftables): run with sudo"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs the '{tool}' command (apt-get install iproute2 nftables)"
    probe = f"x0x-{os.getpid()}-probe"
    try:
        run(["ip", "netns", "add", probe])
        run(["ip", "netns", "exec", probe, "nft", "add", "table", "inet", "x0x"])
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        return f"network namespaces or nftables do not work here: {e}"
    finally:
        run(["ip", "netns", "del", probe], check=False)
    return None


def cleanup_stale() -> List[str]:
    """Deletes namespaces left by an earlier harness process that no longer exists."""
    removed = []
    for line in run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^x0x-(\d+)-", name)
        if m and not Path(f"/proc/{m.group(1)}").exists():
            run(["ip", "netns", "del", name], check=False)
            removed.append(name)
    return removed


class Agent:
    """One driver.py process; its JSON lines are collected in ``events`` as they arrive."""

    def __init__(self, net: "Net", index: int, argv: List[str], log_dir: Path) -> None:
        self.net = net
        self.index = index
        self.ns = net.ns(index)
        self.addr = net.addr(index)
        self.events: List[Dict[str, Any]] = []
        self.cond = threading.Condition()
        self.ready: Optional[Dict[str, Any]] = None
        self.stderr_path = log_dir / f"a{index}-{int(time.time() * 1000)}.stderr"
        self._stderr = open(self.stderr_path, "w")  # noqa: SIM115 (closed in stop())
        self._req = 0
        self.killed_at: Optional[float] = None
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, sys.executable, "-u", str(DRIVER), *argv],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
            # Each namespace is a host of its own: its own HOME, so its own default machine key,
            # kept across restarts of agent i.
            env=dict(os.environ, HOME=str(net.home(index))),
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "garbage", "line": line, "t": time.time_ns()}
            with self.cond:
                self.events.append(event)
                if event.get("event") == "ready":
                    self.ready = event
                self.cond.notify_all()
        with self.cond:
            self.events.append({"event": "exit", "t": time.time_ns()})
            self.cond.notify_all()

    # -- identity ------------------------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        assert self.ready is not None
        return str(self.ready["peer_id"])

    @property
    def agent_id(self) -> str:
        assert self.ready is not None
        return str(self.ready["agent_id"])

    @property
    def sender(self) -> str:
        """How receivers name this agent in ``recv`` events (agent id, 16 hex digits)."""
        return self.agent_id[:16]

    def alive(self) -> bool:
        return self.proc.poll() is None

    # -- events --------------------------------------------------------------------------------
    def select(self, name: str, since: int = 0) -> List[Dict[str, Any]]:
        with self.cond:
            return [e for e in self.events[since:] if e.get("event") == name]

    def wait(
        self, pred: Callable[[Dict[str, Any]], bool], timeout: float, since: int = 0
    ) -> Optional[Dict[str, Any]]:
        """The first event (from index ``since``) matching ``pred``, waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        with self.cond:
            pos = since
            while True:
                while pos < len(self.events):
                    if pred(self.events[pos]):
                        return self.events[pos]
                    pos += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.events and self.events[-1].get("event") == "exit"):
                    return None
                self.cond.wait(min(left, 0.5))

    def wait_ready(self, timeout: float) -> Dict[str, Any]:
        event = self.wait(lambda e: e["event"] in ("ready", "fatal", "exit"), timeout)
        if event is None or event["event"] != "ready":
            raise RuntimeError(f"agent {self.index} not ready: {event}; {self.stderr_tail()}")
        return event

    def stderr_tail(self) -> str:
        self._stderr.flush()
        try:
            return self.stderr_path.read_text()[-2000:]
        except OSError:
            return ""

    # -- commands ------------------------------------------------------------------------------
    def send(self, cmd: Dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def call(self, cmd: Dict[str, Any], timeout: float = 10.0) -> Dict[str, Any]:
        """Sends a command and waits for the reply carrying its ``req``."""
        self._req += 1
        req = self._req
        with self.cond:
            since = len(self.events)
        self.send(dict(cmd, req=req))
        event = self.wait(lambda e: e.get("req") == req, timeout, since)
        if event is None or event["event"] == "error":
            raise RuntimeError(f"agent {self.index}: {cmd} -> {event}; {self.stderr_tail()}")
        return event

    def kill(self) -> None:
        """kill -9 (``ip netns exec`` execs the driver, so the pid is the driver's)."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
        self.killed_at = time.time()
        self.proc.wait(timeout=10)

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            try:
                self.send({"cmd": "quit"})
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                pass
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._thread.join(timeout=5)
        self._stderr.close()


class Net:
    """The namespaces, bridge and agents of one test; a context manager that removes them all."""

    def __init__(self, n: int, log_dir: Optional[Path] = None, delay_ms: float = 0) -> None:
        if not 1 <= n <= MAX_AGENTS:
            raise ValueError(f"1..{MAX_AGENTS} agents, got {n}")
        self.n = n
        self.delay_ms = delay_ms
        self.switch: Optional[subprocess.Popen[str]] = None
        self.switch_stats: Dict[str, Any] = {}
        self.prefix = f"x0x-{os.getpid()}-"
        self.hub = self.prefix + "hub"
        self.agents: List[Agent] = []  # every process started, including killed ones
        self.current: Dict[int, Agent] = {}  # index -> latest process
        self._tmp = tempfile.TemporaryDirectory(prefix="x0x-netns-")
        self.dir = Path(self._tmp.name)
        # Agents' stderr: in the test's temporary directory, or kept in X0X_NETNS_LOGS.
        kept = os.environ.get("X0X_NETNS_LOGS")
        self.log_dir = log_dir or (Path(kept) if kept else self.dir)
        self.created: List[str] = []

    def ns(self, i: int) -> str:
        return f"{self.prefix}a{i}"

    def addr(self, i: int) -> str:
        return f"{SUBNET}.{i + 1}"

    def endpoint(self, i: int) -> str:
        return f"{self.addr(i)}:{PORT}"

    def __enter__(self) -> "Net":
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _ip(self, *args: str) -> None:
        run(["ip", *args])

    def _nft(self, i: int, script: str) -> None:
        run(["ip", "netns", "exec", self.ns(i), "nft", "-f", "-"], input=script)

    def _setup(self) -> None:
        self._ip("netns", "add", self.hub)
        self.created.append(self.hub)
        if not self.delay_ms:
            self._ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
            self._ip("-n", self.hub, "link", "set", "br0", "up")
        self._ip("-n", self.hub, "link", "set", "lo", "up")
        for i in range(self.n):
            ns = self.ns(i)
            self._ip("netns", "add", ns)
            self.created.append(ns)
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip(
                "-n",
                ns,
                "link",
                "add",
                "eth0",
                "type",
                "veth",
                "peer",
                "name",
                f"v{i}",
                "netns",
                self.hub,
            )
            if self.delay_ms:
                self._ip("-n", self.hub, "link", "set", f"v{i}", "up")
            else:
                self._ip("-n", self.hub, "link", "set", f"v{i}", "master", "br0", "up")
            self._ip("-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")
            self._nft(
                i,
                "table inet x0x {\n"
                " chain loss { type filter hook output priority 0; }\n"
                " chain part_out { type filter hook output priority 1; }\n"
                " chain part_in { type filter hook input priority 0; }\n"
                "}\n",
            )
        if self.delay_ms:
            self._start_switch()

    def _start_switch(self) -> None:
        self.switch = subprocess.Popen(
            ["ip", "netns", "exec", self.hub, sys.executable, "-u", str(SWITCH)]
            + ["--delay-ms", str(self.delay_ms)]
            + [f"v{i}" for i in range(self.n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.switch.stdout is not None
        line = self.switch.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"switch.py did not start: {line!r}")

    def _stop_switch(self) -> None:
        if self.switch is None:
            return
        switch, self.switch = self.switch, None
        try:
            out, _ = switch.communicate(timeout=5)  # EOF on its stdin: it reports and exits
            self.switch_stats = json.loads(out.strip().splitlines()[-1])
        except (subprocess.TimeoutExpired, ValueError, IndexError):
            switch.kill()
            switch.wait(timeout=5)

    # -- faults ------------------------------------------------------------------------------
    def set_loss(self, i: int, percent: int) -> None:
        """Drop ``percent``% of agent i's outgoing UDP packets at random (0 removes the rule)."""
        script = "flush chain inet x0x loss\n"
        if percent > 0:
            script += (
                f"add rule inet x0x loss meta l4proto udp numgen random mod 100 < {percent} drop\n"
            )
        self._nft(i, script)

    def partition(self, *groups: Iterable[int]) -> None:
        """Drops all traffic between agents in different groups (both directions, both ends)."""
        sets = [list(g) for g in groups]
        for g, members in enumerate(sets):
            others = [j for h, other in enumerate(sets) if h != g for j in other]
            if not others:
                continue
            addrs = ", ".join(self.addr(j) for j in others)
            for i in members:
                self._nft(
                    i,
                    "flush chain inet x0x part_out\nflush chain inet x0x part_in\n"
                    f"add rule inet x0x part_out ip daddr {{ {addrs} }} drop\n"
                    f"add rule inet x0x part_in ip saddr {{ {addrs} }} drop\n",
                )

    def only_links(self, pairs: Iterable[Tuple[int, int]]) -> None:
        """Drops all traffic between agents that are not a pair in ``pairs`` (both directions,
        both ends): agent i then reaches only the agents it is paired with. Uses the partition
        chains, so ``heal()`` undoes it and ``partition()`` replaces it; its rules count what
        they drop (``dropped_by_links``)."""
        links: Dict[int, Set[int]] = {i: set() for i in range(self.n)}
        for a, b in pairs:
            if a == b or not (0 <= a < self.n and 0 <= b < self.n):
                raise ValueError(f"not a link between two of the {self.n} agents: {(a, b)}")
            links[a].add(b)
            links[b].add(a)
        for i in range(self.n):
            blocked = [j for j in range(self.n) if j != i and j not in links[i]]
            script = "flush chain inet x0x part_out\nflush chain inet x0x part_in\n"
            if blocked:
                addrs = ", ".join(self.addr(j) for j in blocked)
                script += (
                    f"add rule inet x0x part_out ip daddr {{ {addrs} }} counter drop\n"
                    f"add rule inet x0x part_in ip saddr {{ {addrs} }} counter drop\n"
                )
            self._nft(i, script)

    def line(self) -> None:
        """A line a0-a1-...-a(n-1): agent i reaches only agents i-1 and i+1 (``only_links``)."""
        self.only_links((i, i + 1) for i in range(self.n - 1))

    def dropped_by_links(self, i: int) -> int:
        """Packets ``only_links`` dropped in agent i's namespace (out and in) since it was set."""
        return sum(int(n) for n in re.findall(r"counter packets (\d+)", self.counters(i)))

    def heal(self) -> None:
        for i in range(self.n):
            self._nft(i, "flush chain inet x0x part_out\nflush chain inet x0x part_in\n")

    def counters(self, i: int) -> str:
        return run(["ip", "netns", "exec", self.ns(i), "nft", "list", "table", "inet", "x0x"])

    # -- agents ------------------------------------------------------------------------------
    def start(
        self,
        i: int,
        bootstrap: Iterable[int] = (),
        extra: Sequence[str] = (),
        data_dir: bool = False,
    ) -> Agent:
        """Starts driver.py for agent i (a fresh process; an earlier one must be dead).

        ``data_dir``: keep agent i's agent key and task lists in a data dir under the test's
        temporary directory, so that a restart is the same agent (the machine key is the default
        one of agent i's HOME, see ``home``).
        """
        argv = ["--bind", self.endpoint(i)]
        for j in bootstrap:
            argv += ["--bootstrap", self.endpoint(j)]
        if data_dir:
            argv += ["--data-dir", str(self.dir / f"a{i}.data")]
        agent = Agent(self, i, argv + list(extra), self.log_dir)
        self.agents.append(agent)
        self.current[i] = agent
        return agent

    def home(self, i: int) -> Path:
        """HOME of agent i's host (created on first use)."""
        path = self.dir / f"a{i}.home"
        path.mkdir(exist_ok=True)
        return path

    def live(self) -> List[Agent]:
        return [a for a in self.current.values() if a.alive()]

    def close(self) -> None:
        """Stops every process started here and deletes every namespace created here."""
        for agent in self.agents:
            try:
                if agent.alive():
                    agent.proc.send_signal(signal.SIGKILL)
            except OSError:
                pass
        for agent in self.agents:
            with contextlib.suppress(Exception):
                agent.stop(timeout=1)
        self._stop_switch()
        for ns in reversed(self.created):
            run(["ip", "netns", "del", ns], check=False)
        self.created.clear()
        self._tmp.cleanup()


def percentile(values: List[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
