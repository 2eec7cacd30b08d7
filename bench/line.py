"""x0x across a 5-agent line (three agents relay) against pyzmq one hop, measured in one run.

    sudo .venv/bin/python bench/line.py [--rounds N] [--samples N] [--size B] [--gap-ms MS]
                                        [--agents N]

Issue 18's figure: "3-hop latency p50 (5-agent line, middle hops relay), x0x / pyzmq one hop
<= 4x". Needs root, ``ip`` and ``nft`` (network namespaces); otherwise it says why and exits 0.

* x0x: 5 agents a0..a4, each a ``tests/netns/driver.py`` process in its own network namespace on
  one bridge (``tests/netns/harness.py``, the reliability tests' harness: default builder, bound
  to 10.77.0.<i+1>:7000). Before any agent starts, nftables in every namespace drops all traffic
  between agents that are not neighbours in the line a0-a1-a2-a3-a4 (``Net.line()``), and agent
  i bootstraps to agent i-1. All 5 subscribe to one topic, so a1, a2 and a3 are subscribers
  that relay (the topic's gossip tree can only be the line). a0 publishes one message at a
  time: the next one ``--gap-ms`` after a4 has received the last. Latency is the driver's
  ``time.time_ns()`` before ``publish`` in a0 against ``time.time_ns()`` at the receive in a4
  (4 links, 3 relaying agents) and in a1 (one link), from the same messages; all namespaces
  share one clock. ``hops`` (``Message.hops``) must be i at agent i for every message, warm-up
  included: anything else means the line was not a line, and the run fails.
* pyzmq: bench/pubsub.py's pyzmq pair, run as it runs there (``run_pair``): a ``zmq.asyncio``
  SUB process and a PUB process over 127.0.0.1 in this namespace, a short throughput phase
  (``--zmq-messages``, a warm-up here), then ``--samples`` latency samples ``--gap-ms`` apart.

Both use ``--size``-byte payloads (default 256). Each round (``--rounds``, default 3) builds a
fresh line and a fresh pyzmq pair, in alternating order; the table shows medians over the
rounds, and the ratios are of those medians. The last lines are one JSON object: the medians,
the ratios and the delivery checks (summed over the rounds). Exits 1 if a message was lost,
duplicated or reordered at a1 or a4 (after printing everything).

``--agents 2`` runs the same with a0 and a1 only: x0x one hop through the same harness, without
the three other agent processes competing for the CPUs (to compare with a0→a1 in the line).
"""

import argparse
import asyncio
import json
import math
import os
import platform
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Optional

from pubsub import (
    RUNQ_WAIT,
    BenchError,
    cpu_model,
    fmt,
    load,
    median_of,
    percentile,
    run_pair,
    summarize,
    thread_group,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "netns"))
from harness import Agent, Net, cleanup_stale, unavailable

AGENTS = 5  # issue 18's line: a0→a4 is 4 links, relayed by a1, a2, a3 (--agents)
NEAR = 1  # a1: one link from a0
TOPIC = "bench/line"
SETUP_TIMEOUT = 60.0  # an agent ready; the first message across the line
PUBLISH_TIMEOUT = 10.0
SAMPLE_TIMEOUT = 5.0  # a sample that takes longer is counted lost
STRAGGLERS = 0.5  # seconds to wait after the last sample for late copies (duplicates)

Result = Dict[str, Any]
NEAR_LABEL = "x0x a0→a1"
ZMQ_LABEL = "pyzmq"


def mark(agent: Agent) -> int:
    """The index of the next event ``agent`` will report."""
    with agent.cond:
        return len(agent.events)


def publish_one(src: Agent) -> int:
    """Has ``src`` publish one message; its sequence number once ``publish`` returned."""
    since = mark(src)
    src.send({"cmd": "publish", "rate": 0, "count": 1})
    done = src.wait(lambda e: e.get("event") in ("publish_done", "error"), PUBLISH_TIMEOUT, since)
    if done is None or done["event"] != "publish_done" or done["sent"] != 1:
        raise BenchError(f"a0 could not publish: {done}; {src.stderr_tail()}")
    return int(done["last_seq"])


def arrival(agent: Agent, seq: int, since: int, timeout: float) -> Optional[Result]:
    """``agent``'s receive event of message ``seq`` (looking from event ``since`` on)."""
    event: Optional[Result] = agent.wait(
        lambda e: e.get("event") in ("recv", "exit") and e.get("seq", seq) == seq, timeout, since
    )
    if event is not None and event["event"] == "exit":
        raise BenchError(f"a{agent.index} exited: {agent.stderr_tail()}")
    return event


def start_line(net: Net, size: int) -> List[Agent]:
    net.line()  # before any agent starts: no connection between non-neighbours ever forms
    extra = ["--topic", TOPIC, "--payload", str(size), "--stats-interval", "3600"]
    agents: List[Agent] = []
    for i in range(net.n):
        agent = net.start(i, bootstrap=[i - 1] if i else [], extra=extra)
        agent.wait_ready(SETUP_TIMEOUT)
        agents.append(agent)
    return agents


def warm_up(agents: List[Agent], count: int) -> int:
    """Publishes until the last agent has a message (its topic swarm has formed along the
    line), then
    ``count`` more one at a time; returns how many were published."""
    src, far = agents[0], agents[-1]
    deadline = time.monotonic() + SETUP_TIMEOUT
    published = 0
    while True:
        since = mark(far)
        seq = publish_one(src)
        published += 1
        if arrival(far, seq, since, 0.5) is not None:
            break
        if time.monotonic() > deadline:
            raise BenchError(f"nothing reached a{far.index} within {SETUP_TIMEOUT:.0f} s")
    for _ in range(count):
        since = mark(far)
        seq = publish_one(src)
        published += 1
        if arrival(far, seq, since, SAMPLE_TIMEOUT) is None:
            raise BenchError(f"a warm-up message did not reach a{far.index}")
    return published


def audit(agents: List[Agent], first: int, last: int) -> Dict[str, Result]:
    """Per agent: the measured messages (``first``..``last``) it received once, twice, out of
    order; and the ``hops`` of every message it received (warm-up included)."""
    checks: Dict[str, Result] = {}
    for i, agent in enumerate(agents):
        recvs = agent.select("recv")
        seqs = [int(e["seq"]) for e in recvs if first <= e["seq"] <= last]
        reordered = top = 0
        for seq in seqs:
            if seq < top:
                reordered += 1
            top = max(top, seq)
        hops = Counter(int(e["hops"]) for e in recvs)
        checks[f"a{i}"] = {
            "expected": last - first + 1,
            "received": len(set(seqs)),
            "duplicates": len(seqs) - len(set(seqs)),
            "reordered": reordered,
            "hops": {str(h): n for h, n in sorted(hops.items())},
        }
    return checks


def arrivals_p50(agents: List[Agent], first: int, last: int) -> List[float]:
    """p50 latency (us) from a0's publish to the receive at a1, a2, ..., measured messages."""
    p50s = []
    for agent in agents[1:]:
        values = [
            int(e["t_recv"]) - int(e["t_send"])
            for e in agent.select("recv")
            if first <= e["seq"] <= last
        ]
        p50s.append(percentile(values, 0.50) / 1000)
    return p50s


def process_cpu_ns(pid: int) -> Dict[str, int]:
    """A process's CPU time so far, ns, by thread group (``pubsub.thread_group``: python,
    x0x-rt, x0x-signer, ...), and under ``RUNQ_WAIT`` its threads' time runnable but waiting for a
    CPU (``/proc/PID/task/*/schedstat``, Linux; threads that exited are not counted)."""
    totals: Dict[str, int] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return totals
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                group = thread_group(f.read().strip())
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run, wait = (int(field) for field in f.read().split()[:2])
        except (OSError, ValueError):
            continue
        totals[group] = totals.get(group, 0) + run
        totals[RUNQ_WAIT] = totals.get(RUNQ_WAIT, 0) + wait
    return totals


def neighbours(agents: List[Agent]) -> Dict[str, List[int]]:
    """Every agent any agent had as a neighbour during the run (its ``peers`` events)."""
    index = {agent.peer_id: i for i, agent in enumerate(agents)}
    seen: Dict[str, List[int]] = {}
    for i, agent in enumerate(agents):
        peers = {p for e in agent.select("peers") for p in e["peers"]}
        seen[f"a{i}"] = sorted(index.get(p, -1) for p in peers)
    return seen


def run_line(args: argparse.Namespace) -> Result:
    """One round of the line: a fresh network, agents, warm-up and ``--samples`` messages."""
    with Net(args.agents) as net:
        started = time.monotonic()
        agents = start_line(net, args.size)
        warm = warm_up(agents, args.warmup)
        setup_s = time.monotonic() - started
        src, near, far = agents[0], agents[NEAR], agents[-1]
        far_ns: List[int] = []
        near_ns: List[int] = []
        first = last = 0
        gap = args.gap_ms / 1000
        pids = [agent.proc.pid for agent in agents] + [os.getpid()]
        cpu_before = [process_cpu_ns(pid) for pid in pids]
        wall_before = time.monotonic_ns()
        for k in range(args.samples):
            since_far, since_near = mark(far), mark(near)
            last = publish_one(src)
            if k == 0:
                first = last
            got = arrival(far, last, since_far, SAMPLE_TIMEOUT)
            if got is not None:
                far_ns.append(got["t_recv"] - got["t_send"])
            got = arrival(near, last, since_near, 0 if got is None else SAMPLE_TIMEOUT)
            if got is not None:
                near_ns.append(got["t_recv"] - got["t_send"])
            time.sleep(gap)
        wall = (time.monotonic_ns() - wall_before) / args.samples / 1000
        cpu = [
            {key: (ns - then.get(key, 0)) / args.samples / 1000 for key, ns in now.items()}
            for now, then in zip((process_cpu_ns(pid) for pid in pids), cpu_before)
        ]
        time.sleep(STRAGGLERS)
        checks = audit(agents, first, last)
        p50s = arrivals_p50(agents, first, last)
        links = neighbours(agents)
        dropped = sum(net.dropped_by_links(i) for i in range(args.agents))
    for i in range(args.agents):
        hops = checks[f"a{i}"]["hops"]
        if set(hops) != {str(i)}:
            raise BenchError(
                f"the line was not a line: a{i} received messages with hops {hops} (message "
                f"count by hops), every one should have crossed {i} link(s); neighbours {links}"
            )
    for name, peers in links.items():
        i = int(name[1:])
        if not set(peers) <= {i - 1, i + 1}:
            raise BenchError(f"the line was not a line: neighbours {links}")
    return {
        "far_ns": far_ns,
        "near_ns": near_ns,
        "checks": checks,
        "neighbours": links,
        "filter_dropped": dropped,
        "warm_up": warm,
        "setup_s": setup_s,
        "arrival_p50": p50s,
        "cpu": cpu,
        "wall": wall,
    }


def line_rows(run: Result, samples: int) -> Dict[str, Dict[str, float]]:
    rows = {}
    far = len(run["checks"]) - 1
    for key, agent, values in (("line", far, run["far_ns"]), ("near", NEAR, run["near_ns"])):
        check = run["checks"][f"a{agent}"]
        rows[key] = {
            "p50": percentile(values, 0.50) / 1000,
            "p90": percentile(values, 0.90) / 1000,
            "p99": percentile(values, 0.99) / 1000,
            "lat_lost": float(samples - len(values)),
            "dup": float(check["duplicates"] + check["reordered"]),
        }
    # Where the time goes (printed under the table): the p50 at each agent along the line, and
    # per message each process's time on a CPU and waiting for one, and the wall time.
    line = rows["line"]
    for i, p50 in enumerate(run["arrival_p50"], 1):
        line[f"at/a{i}"] = p50
    for i, cpu in enumerate(run["cpu"]):
        name = f"a{i}" if i <= far else "bench"
        line[f"wait/{name}"] = cpu.pop(RUNQ_WAIT, math.nan)
        line[f"cpu/{name}"] = sum(cpu.values())
        for group, us in cpu.items():
            line[f"cpu/{name}/{group}"] = us
    line["wall"] = run["wall"]
    return rows


def run_zmq(args: argparse.Namespace) -> Dict[str, float]:
    """bench/pubsub.py's pyzmq pair (loopback), throughput phase as warm-up, then latency."""
    zargs = argparse.Namespace(
        messages=args.zmq_messages,
        latency_samples=args.samples,
        gap_ms=args.gap_ms,
        size=args.size,
        c_binary=None,
    )
    row = summarize(asyncio.run(run_pair("zmq", zargs, None)), zargs)
    out = {key: row[key] for key in ("p50", "p90", "p99", "lat_lost")}
    for role in ("pub", "sub"):  # us per message in the latency phase, summed over threads
        prefix = f"cpu/{role}/latency/"
        threads = [k for k in row if k.startswith(prefix) and not k[len(prefix) :].startswith("(")]
        out[f"cpu/{role}"] = sum(row[k] for k in threads)
        out[f"wait/{role}"] = row.get(prefix + "(runq wait)", math.nan)
    return out


def ratio(x: float, y: float) -> float:
    return x / y if y and not math.isnan(x) and not math.isnan(y) else math.nan


ROWS = [
    ("latency p50 us", "p50", 1),
    ("latency p90 us", "p90", 1),
    ("latency p99 us", "p99", 1),
    ("samples lost", "lat_lost", 0),
    ("duplicated or reordered", "dup", 0),
]


def print_table(results: Dict[str, List[Dict[str, float]]], far: int) -> Dict[str, float]:
    """The medians side by side, then the ratios; returns the ratios."""
    labels = {"line": f"x0x a0→a{far}", "near": NEAR_LABEL, "zmq": ZMQ_LABEL}
    print(f"{'metric':<26}" + "".join(f" {labels[k]:>12}" for k in results))
    for label, key, digits in ROWS:
        values = [median_of(results[k], key) for k in results]
        print(f"{label:<26}" + "".join(f" {fmt(v, digits):>12}" for v in values))
    line, near, zmq = ({key: median_of(results[k], key) for key in ("p50", "p99")} for k in labels)
    ratios = {
        "line_p50/zmq_p50": ratio(line["p50"], zmq["p50"]),
        "line_p99/zmq_p99": ratio(line["p99"], zmq["p99"]),
        "one_hop_p50/zmq_p50": ratio(near["p50"], zmq["p50"]),
    }
    print()
    print(f"{'ratio (of the medians)':<60} {'':>8}")
    issue = " (issue 18: ≤ 4)" if far == AGENTS - 1 else ""
    print(f"{f'x0x line a0→a{far} p50 / pyzmq one-hop p50{issue}':<60} "
          f"{fmt(ratios['line_p50/zmq_p50'], 2):>8}")  # fmt: skip
    print(f"{f'x0x line a0→a{far} p99 / pyzmq one-hop p99':<60} "
          f"{fmt(ratios['line_p99/zmq_p99'], 2):>8}")  # fmt: skip
    print(f"{'x0x one hop a0→a1 p50 / pyzmq one-hop p50':<60} "
          f"{fmt(ratios['one_hop_p50/zmq_p50'], 2):>8}")  # fmt: skip
    return ratios


def print_where(results: Dict[str, List[Dict[str, float]]], n: int, cpus: int) -> None:
    """The x0x line's p50 at each agent, and CPU per message per process, against pyzmq's."""
    line, zmq = results["line"], results["zmq"]
    at = [median_of(line, f"at/a{i}") for i in range(1, n)]
    steps = [b - a for a, b in zip([0.0, *at], at)]
    print("\nwhere the time goes (medians of the rounds, us)")
    print(
        "  x0x p50 from a0's publish to the receive at "
        + ", ".join(f"a{i} {fmt(v, 0)}" for i, v in enumerate(at, 1))
        + " (each link: "
        + ", ".join(fmt(v, 0) for v in steps)
        + ")"
    )
    names = [f"a{i}" for i in range(n)] + ["bench"]
    groups = sorted(
        {k.split("/")[2] for row in line for k in row if k.count("/") == 2},
        key=lambda g: (g != "python", g),
    )
    print("  x0x CPU time per message, by process: on a CPU (by thread), runnable but waiting")
    for name in names:
        parts = [(g, median_of(line, f"cpu/{name}/{g}")) for g in groups]
        print(
            f"    {name:<5} {fmt(median_of(line, f'cpu/{name}'), 0):>6} ("
            + ", ".join(f"{g} {fmt(v, 0)}" for g, v in parts if v >= 0.5)  # NaN: no thread
            + f"), waiting {fmt(median_of(line, f'wait/{name}'), 0)}"
        )
    on_cpu = sum(median_of(line, f"cpu/{name}") for name in names)
    waiting = sum(median_of(line, f"wait/{name}") for name in names)
    print(f"    total {on_cpu:>6,.0f}, waiting {waiting:,.0f}")
    wall = median_of(line, "wall")
    print(
        f"  x0x wall time per sample {fmt(wall, 0)} (the bench's round trip and the gap "
        f"included): these processes kept {fmt(100 * on_cpu / wall / cpus, 0)}% of {cpus} CPUs "
        "busy"
    )
    print(
        f"  pyzmq per message, on a CPU: pub {fmt(median_of(zmq, 'cpu/pub'), 0)}, sub "
        f"{fmt(median_of(zmq, 'cpu/sub'), 0)}; waiting for a CPU: pub "
        f"{fmt(median_of(zmq, 'wait/pub'), 0)}, sub {fmt(median_of(zmq, 'wait/sub'), 0)}"
    )


def add_checks(total: Dict[str, Result], checks: Dict[str, Result]) -> None:
    for agent, check in checks.items():
        into = total.setdefault(agent, {"hops": {}})
        for key, value in check.items():
            if key == "hops":
                for h, n in value.items():
                    into["hops"][h] = into["hops"].get(h, 0) + n
            else:
                into[key] = into.get(key, 0) + value


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--agents",
        type=int,
        default=AGENTS,
        help=f"agents in the line (default {AGENTS}: issue 18's figure; 2: one hop through the "
        "same harness, to compare)",
    )
    parser.add_argument("--samples", type=int, default=1000, help="messages measured per round")
    parser.add_argument("--warmup", type=int, default=50, help="messages first, not measured")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", type=int, default=256, help="payload bytes (default 256)")
    parser.add_argument("--gap-ms", type=float, default=1.0, help="between messages (default 1)")
    parser.add_argument(
        "--zmq-messages", type=int, default=2000, help="pyzmq's throughput phase (a warm-up here)"
    )
    args = parser.parse_args()
    if args.size < 32:
        parser.error("--size must be at least 32 (the driver's and pubsub.py's headers)")
    if min(args.samples, args.rounds, args.zmq_messages) < 1 or args.warmup < 0:
        parser.error("--samples, --rounds and --zmq-messages must be positive")
    if not 2 <= args.agents <= 20:
        parser.error("--agents takes 2..20")
    if args.gap_ms < 0:
        parser.error("--gap-ms must not be negative")
    why = unavailable()
    if why is not None:
        print(f"SKIPPED bench/line.py: {why}")
        return
    import zmq

    cleanup_stale()
    print(
        f"machine: {os.cpu_count()} CPUs ({cpu_model()}), "
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"pyzmq {zmq.pyzmq_version()} / libzmq {zmq.zmq_version()}"
    )
    far = args.agents - 1
    relays = ", ".join(f"a{i}" for i in range(1, far)) or "none"
    print(
        f"x0x: {args.agents} agents in a line "
        + "-".join(f"a{i}" for i in range(args.agents))
        + ", a network namespace each on one bridge;\n  nftables drops all traffic between "
        "non-neighbours. All subscribe to one topic and a0\n  publishes: "
        f"a0→a{far} crosses {far} link(s), relayed by {far - 1} agent(s) ({relays}); a0→a1 is "
        "one link,\n  from the same messages"
    )
    print(
        "pyzmq: bench/pubsub.py's PUB/SUB pair, asyncio subscriber, one hop between two "
        "processes over\n  127.0.0.1"
    )
    print(
        f"{args.size} B payloads, {args.samples:,} samples per round one at a time (x0x: the next "
        f"{args.gap_ms} ms after a{far}\n  has the last; pyzmq: {args.gap_ms} ms apart), after "
        f"{args.warmup} x0x warm-up messages; {args.rounds} round(s)"
    )
    print(f"load average before: {load()}")
    started = time.perf_counter()
    results: Dict[str, List[Dict[str, float]]] = {"line": [], "near": [], "zmq": []}
    checks: Dict[str, Result] = {}
    for round_no in range(args.rounds):
        order = ["line", "zmq"] if round_no % 2 == 0 else ["zmq", "line"]
        for what in order:
            if what == "line":
                run = run_line(args)
                rows = line_rows(run, args.samples)
                results["line"].append(rows["line"])
                results["near"].append(rows["near"])
                add_checks(checks, run["checks"])
                last = run["checks"][f"a{far}"]
                print(
                    f"  round {round_no + 1} x0x line: a0→a{far} p50 {rows['line']['p50']:.0f} us, "
                    f"p99 {rows['line']['p99']:.0f} us; a0→a1 p50 {rows['near']['p50']:.0f} us, "
                    f"p99 {rows['near']['p99']:.0f} us; a{far} got {last['received']}/"
                    f"{last['expected']}, hops {last['hops']}; neighbours "
                    + " ".join(f"{a}:{','.join(map(str, p))}" for a, p in run["neighbours"].items())
                    + f"; {run['filter_dropped']} packets to non-neighbours dropped; "
                    f"set-up {run['setup_s']:.1f} s",
                    flush=True,
                )
            else:
                row = run_zmq(args)
                results["zmq"].append(row)
                print(
                    f"  round {round_no + 1} pyzmq: p50 {row['p50']:.0f} us, p99 "
                    f"{row['p99']:.0f} us, lost {row['lat_lost']:.0f}",
                    flush=True,
                )
    print(f"\nmedians of {args.rounds} round(s), latency in us")
    ratios = print_table(results, far)
    print_where(results, args.agents, os.cpu_count() or 1)
    figures = {key: {k: median_of(rows, k) for k in rows[0]} for key, rows in results.items()}
    print(
        json.dumps(
            {
                "bench": "line",
                "agents": args.agents,
                "rounds": args.rounds,
                "samples": args.samples,
                "size": args.size,
                "medians": {
                    key: {k: None if math.isnan(v) else v for k, v in row.items()}
                    for key, row in figures.items()
                },
                "ratios": {k: None if math.isnan(v) else v for k, v in ratios.items()},
                "checks": checks,
            }
        )
    )
    print(f"\ntotal time {time.perf_counter() - started:.1f} s, load average after: {load()}")
    bad = [
        f"a{i}: {checks[f'a{i}']}"
        for i in sorted({NEAR, far})
        if checks[f"a{i}"]["received"] != checks[f"a{i}"]["expected"]
        or checks[f"a{i}"]["duplicates"]
        or checks[f"a{i}"]["reordered"]
    ]
    if bad:
        sys.exit("benchmark failed: messages lost, duplicated or reordered: " + "; ".join(bad))


if __name__ == "__main__":
    try:
        main()
    except BenchError as e:
        sys.exit(f"benchmark failed: {e}")
