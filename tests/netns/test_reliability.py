"""x0x reliability under faults: agents in network namespaces, loss and partitions by nftables.

    sudo .venv/bin/python -m pytest tests/netns -s            # CI sizes (a few minutes)
    sudo .venv/bin/python -m pytest tests/netns -s --full     # full sizes (or X0X_RELIABILITY=full)

Each scenario prints one line with its measured figures (also collected at the end of the run).
Every random choice is seeded (X0X_RELIABILITY_SEED, default 1); nftables' random loss is not
seedable. Delay comes from harness's userspace switch (switch.py): this kernel has no sch_netem.
"""

import os
import random
import time
import zlib
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import pytest
from conftest import RESULTS
from harness import Agent, Net, cleanup_stale, percentile, unavailable

_WHY = unavailable()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"x0x netns reliability: {_WHY}")

SEED = int(os.environ.get("X0X_RELIABILITY_SEED", "1"))
# Known core limitations (see tests/netns/README.md) are reported as xfail with the measured
# figures; X0X_RELIABILITY_STRICT=1 makes them failures (for when the core is fixed).
STRICT = os.environ.get("X0X_RELIABILITY_STRICT") == "1"
PAYLOAD = 1024
NS = 1_000_000_000


Snapshot = List[Dict[str, Any]]  # one agent.stats() per agent


def rng_for(name: str) -> random.Random:
    return random.Random(SEED * 1_000_003 + zlib.crc32(name.encode()))


def report(scenario: str, line: str, **figures: Any) -> None:
    text = f"{scenario}: {line}"
    print("\n" + text, flush=True)
    RESULTS.append(dict(figures, scenario=scenario, line=text, seed=SEED))


def known_limitation(why: str) -> None:
    """Ends the test as xfail (a known core limitation, measured) unless STRICT."""
    if STRICT:
        pytest.fail(why)
    pytest.xfail(why)


@pytest.fixture(scope="module", autouse=True)
def _stale() -> None:
    cleanup_stale()


# -- helpers ------------------------------------------------------------------------------------


def neighbours(agent: Agent, exclude: Set[str] = frozenset()) -> Set[str]:  # type: ignore[assignment]
    events = agent.select("peers")
    peers = set(events[-1]["peers"]) if events else set()
    return peers - set(exclude)


def wait_until(pred: Any, timeout: float, step: float = 0.05) -> Optional[float]:
    """Seconds until ``pred()`` held (polled every ``step``), or None after ``timeout``."""
    start = time.monotonic()
    while True:
        if pred():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(step)


def connected(agents: Sequence[Agent]) -> bool:
    """Whether the neighbour graph (peer events, either end) spans every agent."""
    by_peer = {a.peer_id: a for a in agents}
    edges: Dict[str, Set[str]] = {p: set() for p in by_peer}
    for a in agents:
        for p in neighbours(a):
            if p in by_peer:
                edges[a.peer_id].add(p)
                edges[p].add(a.peer_id)
    seen = {agents[0].peer_id}
    todo = [agents[0].peer_id]
    while todo:
        for p in edges[todo.pop()]:
            if p not in seen:
                seen.add(p)
                todo.append(p)
    return len(seen) == len(agents)


def degrees(agents: Sequence[Agent]) -> List[int]:
    return [len(neighbours(a)) for a in agents]


def build(
    net: Net, n: int, rng: random.Random, min_neighbours: int = 1, **start: Any
) -> List[Agent]:
    """Starts agents 0..n-1 (0 first; each other one bootstraps to 0 and to a random earlier
    agent) and waits until the overlay is connected and every agent has ``min_neighbours``
    (bounded: 20 s; HyParView does not look for more neighbours while it has one, so an agent
    may legitimately stay at 1)."""
    agents = [net.start(0, **start)]
    agents[0].wait_ready(20)
    wave = list(range(1, min(n, 4)))
    rest = list(range(len(wave) + 1, n))
    for group in (wave, rest):
        ready = [a.index for a in agents]
        started = []
        for i in group:
            boot = sorted({0, rng.choice(ready)})
            started.append(net.start(i, bootstrap=boot, **start))
        for agent in started:
            agent.wait_ready(30)
        agents += started
    want = min(min_neighbours, n - 1)
    took = wait_until(lambda: connected(agents) and all(d >= want for d in degrees(agents)), 20)
    assert took is not None, f"overlay did not form: neighbours {degrees(agents)}"
    time.sleep(0.5)
    return agents


def sent_by(agent: Agent) -> Dict[int, int]:
    """seq -> t_send of what ``agent`` published."""
    return {e["seq"]: e["t_send"] for e in agent.select("sent")}


def received(agent: Agent) -> Dict[Tuple[str, int], List[Dict[str, Any]]]:
    """(sender16, seq) -> every ``recv`` event (more than one would be a duplicate)."""
    out: Dict[Tuple[str, int], List[Dict[str, Any]]] = {}
    for e in agent.select("recv"):
        out.setdefault((e["from"], e["seq"]), []).append(e)
    return out


def stats(agents: Sequence[Agent], timeout: float = 10.0) -> List[Dict[str, Any]]:
    return [a.call({"cmd": "report"}, timeout) for a in agents]


def wait_delivered(
    receivers: Sequence[Agent], expected: Dict[str, Set[int]], timeout: float
) -> Optional[float]:
    """Waits until every receiver has every (sender, seq) in ``expected``."""

    def done() -> bool:
        for agent in receivers:
            got = {(e["from"], e["seq"]) for e in agent.select("recv")}
            for sender, seqs in expected.items():
                if any((sender, s) not in got for s in seqs):
                    return False
        return True

    return wait_until(done, timeout, step=0.2)


def delivery(
    receivers: Sequence[Agent], publishers: Sequence[Agent], t_from: int = 0, t_to: int = 1 << 62
) -> Dict[str, Any]:
    """Delivery of messages sent in [t_from, t_to) by ``publishers`` to ``receivers``."""
    expected = missing = dups = 0
    latencies: List[float] = []
    hops: List[int] = []
    lacking: Dict[Tuple[int, int], List[int]] = {}  # (receiver, publisher) -> missing seqs
    last_hop: Dict[Tuple[str, int], int] = {}  # per message: hops to its farthest receiver
    for pub in publishers:
        sent = {s: t for s, t in sent_by(pub).items() if t_from <= t < t_to}
        for agent in receivers:
            got = received(agent)
            for seq, t_send in sent.items():
                expected += 1
                copies = got.get((pub.sender, seq))
                if not copies:
                    missing += 1
                    lacking.setdefault((agent.index, pub.index), []).append(seq)
                    continue
                dups += len(copies) - 1
                if agent is not pub:
                    latencies.append((copies[0]["t_recv"] - t_send) / NS)
                    hops.append(copies[0]["hops"])
                    key = (pub.sender, seq)
                    last_hop[key] = max(last_hop.get(key, 0), copies[0]["hops"])
    return {
        "expected": expected,
        "missing": missing,
        "dups": dups,
        "ratio": 1.0 if expected == 0 else (expected - missing) / expected,
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies) if latencies else float("nan"),
        "slow": sum(1 for x in latencies if x > 0.2) / max(1, len(latencies)),
        "max_hops": max(hops, default=0),
        # The Plumtree paper's last delivery hop: per message, the hops to its last receiver.
        "ldh": sum(last_hop.values()) / max(1, len(last_hop)),
        "mean_hops": sum(hops) / max(1, len(hops)),
        # Who lacks what: a lost stretch of one publisher at one receiver reads differently
        # from scattered losses everywhere.
        "examples": [
            f"a{r} lacks {len(seqs)} of a{p}'s (#{min(seqs)}..#{max(seqs)})"
            for (r, p), seqs in sorted(lacking.items(), key=lambda kv: -len(kv[1]))[:5]
        ],
    }


# -- R1: loss ---------------------------------------------------------------------------------


def test_r1_loss(full: bool) -> None:
    n, seconds, rate, loss = (20, 30, 10, 5) if full else (8, 10, 10, 5)
    rtt_ms = 50
    base = 3  # seconds without loss first: the same run's baseline
    rng = rng_for("R1")
    with Net(n, delay_ms=rtt_ms / 2) as net:
        agents = build(net, n, rng)
        pubs = [agents[i] for i in sorted(rng.sample(range(n), 3))]
        time.sleep(1.0)
        before = stats(agents)
        t0 = time.time_ns()
        for pub in pubs:
            pub.send({"cmd": "publish", "rate": rate, "count": rate * (base + seconds)})
        time.sleep(base)
        at_loss = stats(agents)
        for i in range(n):
            net.set_loss(i, loss)
        t_loss = time.time_ns()
        done = wait_until(
            lambda: all(p.select("publish_done") for p in pubs), seconds * 2 + 10, step=0.2
        )
        assert done is not None, "publishers did not finish"
        expected = {p.sender: set(sent_by(p)) for p in pubs}
        drain = wait_delivered(agents, expected, 15)
        after = stats(agents)
    d = delivery(agents, pubs, t_from=t_loss)
    b = delivery(agents, pubs, t_from=t0, t_to=t_loss)
    everything = delivery(agents, pubs)
    errors = sum(len(p.select("publish_error")) for p in pubs)

    def total(key: str, start: Snapshot = before, end: Snapshot = after) -> int:
        return sum(e[key] - s_[key] for e, s_ in zip(end, start))

    def redundancy(start: Snapshot, end: Snapshot) -> float:
        # Relative message redundancy (Plumtree paper): payload copies received beyond the
        # first, per first receipt, network-wide (the core's envelope counters; one message
        # per envelope at these rates).
        dups = total("duplicates", start, end)
        return dups / max(1, total("envelopes_received", start, end) - dups)

    rmr = redundancy(at_loss, after)
    rmr_baseline = redundancy(before, at_loss)
    # Frame bytes received network-wide per payload byte delivered remotely (includes the
    # signature and public key in every envelope, and Plumtree's IHave/Graft traffic).
    remote = (everything["expected"] - everything["missing"]) - sum(len(sent_by(p)) for p in pubs)
    bytes_ratio = total("bytes_in") / max(1, remote * PAYLOAD)
    overflow = sum(s["queue_overflow"] for s in after)
    report(
        "R1",
        f"{n} agents, {rtt_ms} ms RTT (switch: {net.switch_stats.get('send_failed', '?')} frames "
        f"lost), {loss}% UDP loss on each, 3 pubs x {rate} msg/s x {PAYLOAD} B x {seconds} s: "
        f"delivered {100 * d['ratio']:.2f}% ({d['expected'] - d['missing']}/{d['expected']}), "
        f"dups {d['dups']}, latency p50 {1000 * d['p50']:.0f} ms p99 {1000 * d['p99']:.0f} ms "
        f"max {1000 * d['max']:.0f} ms (same run, {base} s without loss first: p50 "
        f"{1000 * b['p50']:.0f} ms p99 {1000 * b['p99']:.0f} ms), drain "
        f"{'n/a' if drain is None else f'{drain:.2f} s'} after the last publish, relative "
        f"message redundancy {rmr:.3f} (no loss {rmr_baseline:.3f}), last delivery hop mean "
        f"{d['ldh']:.2f} (hops: max {d['max_hops']}, mean {d['mean_hops']:.2f}), "
        f"bytes_in/payload delivered {bytes_ratio:.2f}x, publish errors {errors}, "
        f"queue_overflow {overflow}",
        delivered=d["ratio"],
        p99=d["p99"],
        p99_baseline=b["p99"],
        rmr=rmr,
        max_hops=d["max_hops"],
        ldh=d["ldh"],
        bytes_ratio=bytes_ratio,
    )
    assert errors == 0
    assert everything["missing"] == 0, everything["examples"]
    assert everything["dups"] == 0
    assert overflow == 0
    # The switch really delayed: nothing crosses a link in less than half the RTT.
    assert b["p50"] >= rtt_ms / 2000, b
    if d["p99"] > 0.5 or rmr > 0.5 or d["ldh"] > 6:
        known_limitation(f"R1: p99 {d['p99']:.3f} s, redundancy {rmr:.3f}, LDH {d['ldh']:.2f}")


# -- R2: burst --------------------------------------------------------------------------------


def test_r2_burst(full: bool) -> None:
    n, count = (20, 100) if full else (10, 100)
    rng = rng_for("R2")
    with Net(n) as net:
        agents = build(net, n, rng)
        time.sleep(1.0)
        t0 = time.time_ns()
        for agent in agents:
            agent.send({"cmd": "publish", "rate": 0, "count": count})
        done = wait_until(lambda: all(a.select("publish_done") for a in agents), 30, step=0.1)
        assert done is not None, "publishers did not finish"
        expected = {a.sender: set(sent_by(a)) for a in agents}
        took = wait_delivered(agents, expected, 10)
        last = max((e["t_recv"] for a in agents for e in a.select("recv")), default=t0)
        after = stats(agents)
        d = delivery(agents, agents)
        overflow = sum(s["queue_overflow"] for s in after)
        sub_dropped = sum(s["sub_dropped"] for s in after)
        errors = sum(len(a.select("publish_error")) for a in agents)
        elapsed = (last - t0) / NS
        report(
            "R2",
            f"{n} agents x {count} msgs back-to-back ({PAYLOAD} B): delivered "
            f"{100 * d['ratio']:.2f}% ({d['expected'] - d['missing']}/{d['expected']}) in "
            f"{elapsed:.2f} s, dropped {overflow} (queue_overflow), {sub_dropped} (subscription),"
            f" dups {d['dups']}, latency p99 {1000 * d['p99']:.0f} ms, publish errors {errors}",
            delivered=d["ratio"],
            seconds=elapsed,
            dropped=overflow,
        )
        assert took is not None and elapsed <= 10.0, d["examples"]
        assert d["missing"] == 0 and d["dups"] == 0
        assert overflow == 0 and sub_dropped == 0 and errors == 0


# -- R3: churn --------------------------------------------------------------------------------


def test_r3_kill(full: bool) -> None:
    m, after_s = (30, 20) if full else (12, 10)
    rate, warm = 20, 4
    rng = rng_for("R3")
    with Net(m) as net:
        agents = build(net, m, rng)
        # R3 wants 3 neighbours each; wait a little for them, and report what the overlay gave.
        wait_until(lambda: min(degrees(agents)) >= 3, 10)
        degrees_before = degrees(agents)
        pub_idx = sorted(rng.sample(range(m), 2))
        others = [i for i in range(m) if i not in pub_idx]
        victims_idx = sorted(rng.sample(others, round(0.3 * m)))
        pubs = [agents[i] for i in pub_idx]
        victims = [agents[i] for i in victims_idx]
        survivors = [a for a in agents if a.index not in victims_idx]
        dead = {v.peer_id for v in victims}
        count = rate * (warm + after_s)
        for pub in pubs:
            pub.send({"cmd": "publish", "rate": rate, "count": count})
        time.sleep(warm)
        marks = {a.index: len(a.events) for a in survivors}
        live_before = {a.index: len(neighbours(a, dead)) for a in survivors}
        t_kill = time.time_ns()
        for v in victims:
            v.kill()
        done = wait_until(
            lambda: all(p.select("publish_done") for p in pubs), after_s + 20, step=0.2
        )
        assert done is not None, "publishers did not finish"
        expected = {p.sender: {s for s, t in sent_by(p).items() if t >= t_kill + NS} for p in pubs}
        wait_delivered(survivors, expected, 10)
        d = delivery(survivors, pubs, t_from=t_kill + NS)
        early = delivery(survivors, pubs, t_from=t_kill, t_to=t_kill + NS)

        # Neighbours after the kill, from each survivor's peer events.
        regain: Dict[int, Optional[float]] = {}
        detect: Dict[int, Optional[float]] = {}
        for a in survivors:
            live_ok: Optional[float] = 0.0 if live_before[a.index] >= 3 else None
            clean: Optional[float] = 0.0 if not (neighbours_at(a, marks[a.index]) & dead) else None
            for e in a.events[marks[a.index] :]:
                if e.get("event") != "peers":
                    continue
                dt = (e["t"] - t_kill) / NS
                peers = set(e["peers"])
                if live_ok is None and len(peers - dead) >= 3:
                    live_ok = dt
                if clean is None and not (peers & dead):
                    clean = dt
            regain[a.index] = live_ok
            detect[a.index] = clean
        final_live = {a.index: len(neighbours(a, dead)) for a in survivors}
        affected = [i for i in regain if live_before[i] < 3]
        slow = {i: t for i, t in regain.items() if t is None or t > 5.0}
        slow_text = str({i: None if t is None else round(t, 2) for i, t in slow.items()})
        regain_max = max((t for t in regain.values() if t is not None), default=0.0)
        detect_max = max((t for t in detect.values() if t is not None), default=float("nan"))
        report(
            "R3",
            f"{m} agents (neighbours before: min {min(degrees_before)} max "
            f"{max(degrees_before)}), 2 pubs x {rate} msg/s, kill -9 {len(victims)} "
            f"({victims_idx}): "
            f"survivors got {100 * d['ratio']:.2f}% ({d['expected'] - d['missing']}/"
            f"{d['expected']}) of msgs sent >= 1 s after the kill, p99 {1000 * d['p99']:.0f} ms"
            f" max {1000 * d['max']:.0f} ms; in the first second {100 * early['ratio']:.2f}%"
            f" p99 {1000 * early['p99']:.0f} ms; survivors with < 3 live neighbours at the kill:"
            f" {len(affected)}, back at >= 3 live after at most {regain_max:.2f} s (those that "
            f"got there; > 5 s or never: {slow_text}), "
            f"dead neighbours dropped after {detect_max:.2f} s, live neighbours at end "
            f"min {min(final_live.values())} max {max(final_live.values())}",
            delivered=d["ratio"],
            p99=d["p99"],
            regain_max=regain_max,
            detect_max=detect_max,
        )
        drops = {
            a.index: {k: v for k, v in s.items() if k.startswith("dropped") and v}
            for a, s in zip(survivors, stats(survivors))
        }
        assert d["missing"] == 0, (d["examples"], {i: x for i, x in drops.items() if x})
        assert d["p99"] <= 2.0
        # A dead neighbour is noticed at the QUIC idle timeout (3 s); replacements come from
        # the gossip layer's passive view and the neighbour top-up.
        assert not slow, (
            f"R3: survivors without 3 live neighbours within 5 s of the kill: "
            f"{ {i: None if t is None else round(t, 2) for i, t in slow.items()} } "
            f"(None: never; live neighbours at end {final_live})"
        )


def test_r3_publisher_cut_off(full: bool) -> None:
    """R3's bar for the worst case of a crash: every neighbour of a publisher dies at once. It
    notices at the idle timeout; what it published meanwhile must still reach everyone."""
    m, after_s = (20, 10) if full else (10, 6)
    rate, warm = 20, 3
    rng = rng_for("R3b")
    with Net(m) as net:
        agents = build(net, m, rng, min_neighbours=2)
        pub = agents[rng.randrange(m)]
        count = rate * (warm + after_s)
        pub.send({"cmd": "publish", "rate": rate, "count": count})
        time.sleep(warm)
        cut = neighbours(pub)
        victims = [a for a in agents if a.peer_id in cut]
        survivors = [a for a in agents if a.peer_id not in cut]
        t_kill = time.time_ns()
        for v in victims:
            v.kill()
        done = wait_until(lambda: bool(pub.select("publish_done")), after_s + 20, step=0.2)
        assert done is not None, "the publisher did not finish"
        expected = {pub.sender: {s for s, t in sent_by(pub).items() if t >= t_kill + NS}}
        wait_delivered(survivors, expected, 10)
        d = delivery(survivors, [pub], t_from=t_kill + NS)
        early = delivery(survivors, [pub], t_from=t_kill, t_to=t_kill + NS)
        alone = [
            (e["t"] - t_kill) / NS
            for e in pub.events
            if e.get("event") == "peers" and e["t"] > t_kill and not set(e["peers"]) - cut
        ]
        back = next(
            (
                (e["t"] - t_kill) / NS
                for e in pub.events
                if e.get("event") == "peers" and e["t"] > t_kill and set(e["peers"]) - cut
            ),
            None,
        )
        report(
            "R3b",
            f"{m} agents, 1 pub x {rate} msg/s, all {len(victims)} of its neighbours killed: "
            f"survivors got {100 * d['ratio']:.2f}% ({d['expected'] - d['missing']}/"
            f"{d['expected']}) of msgs sent >= 1 s after the kill, p99 {1000 * d['p99']:.0f} ms"
            f" max {1000 * d['max']:.0f} ms; in the first second {100 * early['ratio']:.2f}%; "
            f"the publisher had a live neighbour again after "
            f"{'never' if back is None else f'{back:.2f} s'} "
            f"(alone from {min(alone, default=0):.2f} s)",
            delivered=d["ratio"],
            p99=d["p99"],
        )
        assert d["missing"] == 0, d["examples"]
        assert d["p99"] <= 2.0
        assert back is not None and back <= 5.0, "the publisher found no live neighbour in 5 s"


def neighbours_at(agent: Agent, pos: int) -> Set[str]:
    peers: Set[str] = set()
    for e in agent.events[:pos]:
        if e.get("event") == "peers":
            peers = set(e["peers"])
    return peers


# -- R4: partition ----------------------------------------------------------------------------


def digests(agents: Sequence[Agent], list_id: str) -> List[Optional[str]]:
    out = []
    for a in agents:
        events = [e for e in a.select("tasks") if e["list"] == list_id]
        out.append(events[-1]["digest"] if events else None)
    return out


def converged(agents: Sequence[Agent], list_id: str, n_tasks: int) -> bool:
    ds = digests(agents, list_id)
    if ds[0] is None or len(set(ds)) != 1:
        return False
    last = [e for e in agents[0].select("tasks") if e["list"] == list_id][-1]
    return bool(last["n"] == n_tasks)


def shared_list(agents: Sequence[Agent], seeded: int) -> Tuple[str, List[str]]:
    """Agent 0 creates a list with ``seeded`` tasks; everyone joins; waits for convergence."""
    list_id = agents[0].call({"cmd": "create", "name": "plan"})["list"]
    tasks = [
        agents[0].call({"cmd": "add", "list": list_id, "title": f"shared-{k}"})["task"]
        for k in range(seeded)
    ]
    for a in agents[1:]:
        a.call({"cmd": "join", "list": list_id})
    took = wait_until(lambda: converged(agents, list_id, seeded), 20)
    assert took is not None, f"lists did not converge before the test: {digests(agents, list_id)}"
    return list_id, tasks


@pytest.mark.parametrize("partition_s", [10, 120], ids=["10s", "120s"])
def test_r4_partition(full: bool, partition_s: int) -> None:
    if partition_s > 10 and not full:
        pytest.skip("the 120 s partition runs in full mode only (--full)")
    half = 10 if full else 4
    n = 2 * half
    rng = rng_for(f"R4-{partition_s}")
    with Net(n) as net:
        agents = build(net, n, rng)
        list_id, shared = shared_list(agents, 4)
        order = list(range(n))
        rng.shuffle(order)
        side_a, side_b = sorted(order[:half]), sorted(order[half:])
        net.partition(side_a, side_b)
        t_part = time.monotonic()
        added: List[str] = []
        claims: Dict[str, List[Dict[str, Any]]] = {t: [] for t in shared}

        def edits(round_: int) -> None:
            for side, name in ((side_a, "A"), (side_b, "B")):
                for i in side:
                    for k in range(2):
                        title = f"{name}{i}-r{round_}-{k}"
                        added.append(
                            agents[i].call({"cmd": "add", "list": list_id, "title": title})["task"]
                        )
                # The same title added on both sides: two tasks (ids include the creator).
                i = rng.choice(side)
                added.append(
                    agents[i].call(
                        {"cmd": "add", "list": list_id, "title": f"same-title-r{round_}"}
                    )["task"]
                )
            if round_ == 0:
                # Concurrent claims of the same tasks, one claimant on each side.
                for task in shared:
                    for side in (side_a, side_b):
                        i = rng.choice(side)
                        row = agents[i].call({"cmd": "claim", "list": list_id, "task": task})
                        claims[task].append(
                            {
                                "agent": agents[i].agent_id,
                                "ts": row["row"]["updated_at"],
                                "index": i,
                            }
                        )
                        time.sleep(rng.random() * 0.05)

        time.sleep(1.0)
        edits(0)
        time.sleep(max(0.0, partition_s / 2 - (time.monotonic() - t_part)))
        edits(1)
        expected_n = len(shared) + len(added)
        a_agents = [agents[i] for i in side_a]
        b_agents = [agents[i] for i in side_b]
        # Each side converges on its own while cut off.
        sides_ok = wait_until(
            lambda: (
                len(set(digests(a_agents, list_id))) == 1
                and len(set(digests(b_agents, list_id))) == 1
            ),
            5,
        )
        time.sleep(max(0.0, partition_s - (time.monotonic() - t_part)))
        cross = sum(len(neighbours(a) & {b.peer_id for b in b_agents}) for a in a_agents)
        net.heal()
        t_heal = time.monotonic()
        healed = wait_until(lambda: converged(agents, list_id, expected_n), 15)
        final = agents[0].call({"cmd": "tasks", "list": list_id})["tasks"]
        rows = {r["id"]: r for r in final}
        lost = [t for t in added + shared if t not in rows]
        wrong: List[str] = []
        for task, cs in claims.items():
            winner = min(cs, key=lambda c: (c["ts"], c["agent"]))
            row = rows.get(task)
            if row is None or row["status"] != "Claimed" or row["assignee"] != winner["agent"]:
                wrong.append(f"{task[:8]}: {row and row['assignee']} vs winner {winner}")
        cross_after = sum(len(neighbours(a) & {b.peer_id for b in b_agents}) for a in a_agents)
        report(
            "R4" if partition_s == 10 else f"R4-{partition_s}s",
            f"partition {half}|{half} for {partition_s} s, {len(added)} adds + "
            f"{2 * len(shared)} concurrent claims: sides converged apart "
            f"{'yes' if sides_ok is not None else 'NO'}, cross-side neighbours before heal "
            f"{cross}; after heal identical lists everywhere in "
            f"{'NEVER (15 s)' if healed is None else f'{healed:.2f} s'}, "
            f"lost ops {len(lost)}, claim winners wrong {len(wrong)}, cross-side "
            f"neighbours at end {cross_after}",
            heal_s=healed,
            lost=len(lost),
            wrong=len(wrong),
        )
        if healed is None and cross_after == 0:
            # Each side must at least agree internally.
            for side in (a_agents, b_agents):
                assert len(set(digests(side, list_id))) == 1, digests(agents, list_id)
            known_limitation(
                f"R4: the overlay stayed split after the heal: 0 neighbours across the healed "
                f"partition after 15 s, task lists never converged ({len(lost)} ops missing on "
                f"a0's side). HyParView drops unreachable peers from the passive view during the "
                "partition and never looks for neighbours while it has some"
            )
        assert healed is not None and healed <= 3.0, f"digests {digests(agents, list_id)}"
        assert not lost and not wrong, (lost, wrong)
        _ = t_heal


# -- R5: restart --------------------------------------------------------------------------------


def test_r5_restart(full: bool) -> None:
    n = 10 if full else 4
    rng = rng_for("R5")
    with Net(n) as net:
        agents = build(net, n, rng, data_dir=True)
        list_id, shared = shared_list(agents, 3)
        r = rng.choice(range(1, n))
        victim = agents[r]
        victim.call({"cmd": "add", "list": list_id, "title": "mine-0"})
        victim.call({"cmd": "add", "list": list_id, "title": "mine-1"})
        victim.call({"cmd": "claim", "list": list_id, "task": shared[0]})
        assert wait_until(lambda: converged(agents, list_id, 5), 10) is not None
        before = victim.call({"cmd": "tasks", "list": list_id})["digest"]
        old_peer, old_agent = victim.peer_id, victim.agent_id
        # It restarts with its neighbours as bootstrap peers (as a real agent's fixed bootstrap
        # list would be): they still hold its old connection until their 3 s idle timeout.
        boot = sorted(a.index for a in agents if a.peer_id in neighbours(victim))
        time.sleep(0.5)  # lists are written 100 ms after a change
        victim.kill()
        others = [a for a in agents if a is not victim]
        # Changes it misses while it is down.
        helper = others[rng.randrange(len(others))]
        missed = [
            helper.call({"cmd": "add", "list": list_id, "title": f"missed-{k}"})["task"]
            for k in range(2)
        ]
        helper.call({"cmd": "claim", "list": list_id, "task": shared[1]})
        time.sleep(1.0)
        first_failure = None
        t_start = time.monotonic()
        again = net.start(r, bootstrap=boot, data_dir=True, extra=["--timeout", "6"])
        try:
            ready = again.wait_ready(20)
        except RuntimeError as e:
            # Known core issue (README): try once more, now that the old connections timed out,
            # to measure the rest of the scenario.
            first_failure = f"{time.monotonic() - t_start:.1f} s: {str(e)[:160]}"
            t_start = time.monotonic()
            again = net.start(r, bootstrap=boot, data_dir=True)
            ready = again.wait_ready(20)
        rejoin = time.monotonic() - t_start
        agents[r] = again
        expected_n = 5 + len(missed)
        conv = wait_until(lambda: converged(agents, list_id, expected_n), 15)
        conv_total = None if conv is None else time.monotonic() - t_start
        neighbours_after = len(neighbours(again))
        report(
            "R5",
            f"{n} agents, kill -9 a{r}, restart 1 s later with the same HOME and data dir, "
            f"bootstrap = its old neighbours {boot}: "
            + (f"FIRST START FAILED after {first_failure}; second start " if first_failure else "")
            + f"ready (spawn -> joined) in {rejoin:.2f} s (join_network {ready['join_s']:.2f} s),"
            f" same ids {ready['peer_id'] == old_peer and ready['agent_id'] == old_agent}, list "
            f"restored from disk {ready['restored'].get(list_id) == before} "
            f"({ready['restored_n'].get(list_id)} tasks), converged with the "
            f"{len(missed) + 1} changes it missed "
            f"{'NEVER (15 s)' if conv_total is None else f'{conv_total:.2f} s'} after the "
            f"start, neighbours then {neighbours_after}",
            rejoin_s=rejoin,
            converge_s=conv_total,
            first_failure=first_failure,
        )
        assert ready["peer_id"] == old_peer and ready["agent_id"] == old_agent
        assert ready["restored"].get(list_id) == before, "task list not restored from disk"
        assert rejoin <= 3.0
        assert conv_total is not None and conv_total <= 5.0
        if first_failure:
            known_limitation(
                f"R5: an agent restarted within the 3 s idle timeout could not join through "
                f"peers that still held its old connection ({first_failure}); the second "
                f"start after the timeout joined in {rejoin:.2f} s. gossip.rs on_connected "
                "keeps the stale link and parks the new connection as a spare"
            )
