"""bench/line.py at CI size (full size with --full / X0X_RELIABILITY=full): x0x across a
5-agent line a0-a1-a2-a3-a4 (a network namespace each, nftables dropping everything between
non-neighbours, so a1..a3 relay), next to pyzmq one hop in the same run.

Checks delivery, not time: every measured message reached every agent exactly once and in
order, and agent i saw ``hops == i`` for every message (4 at a4: the line was a line). The
bench's table is printed (``-s``) and its figures join the session's summary."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest
from conftest import RESULTS
from harness import unavailable

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "bench" / "line.py"
AGENTS = 5

_WHY = unavailable()
pytestmark = pytest.mark.skipif(_WHY is not None, reason=f"x0x line bench: {_WHY}")


def test_line_bench_relays_every_message_once_in_order_over_four_links(full: bool) -> None:
    pytest.importorskip("zmq", reason="the pyzmq baseline needs pyzmq (a dev extra)")
    rounds, samples = (3, 1000) if full else (1, 50)
    argv = ["--rounds", str(rounds), "--samples", str(samples)]
    if not full:
        argv += ["--warmup", "10", "--zmq-messages", "500"]
    done = subprocess.run(
        [sys.executable, str(BENCH), *argv], capture_output=True, text=True, timeout=600
    )
    print(done.stdout, flush=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SKIPPED" not in done.stdout, done.stdout
    lines: List[str] = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout
    figures: Dict[str, Any] = json.loads(lines[-1])
    checks = figures["checks"]
    expected = rounds * samples
    for i in range(AGENTS):
        check = checks[f"a{i}"]
        assert check["expected"] == expected, (i, check)
        # Exactly once, in order: every measured message, no copy, none behind a later one.
        assert check["received"] == expected, (i, check)
        assert check["duplicates"] == 0 and check["reordered"] == 0, (i, check)
        # Every message agent i received (warm-up included) crossed exactly i links.
        assert set(check["hops"]) == {str(i)}, (i, check)
        assert check["hops"][str(i)] >= expected, (i, check)
    # The figures were measured (machine-dependent: only their presence is checked).
    medians = figures["medians"]
    for key in ("line", "near", "zmq"):
        assert medians[key]["lat_lost"] == 0, (key, medians)
        assert medians[key]["p50"] > 0 and medians[key]["p99"] >= medians[key]["p50"], medians
    ratios = figures["ratios"]
    assert all(ratios[key] is not None for key in ratios), ratios
    assert "x0x line a0→a4 p50 / pyzmq one-hop p50" in done.stdout, done.stdout
    line = (
        f"line bench: {rounds} round(s) x {samples}: x0x a0→a4 (4 links, 3 relays) p50 "
        f"{medians['line']['p50']:.0f} us, p99 {medians['line']['p99']:.0f} us; a0→a1 p50 "
        f"{medians['near']['p50']:.0f} us; pyzmq one hop p50 {medians['zmq']['p50']:.0f} us, "
        f"p99 {medians['zmq']['p99']:.0f} us; line/pyzmq p50 {ratios['line_p50/zmq_p50']:.2f}, "
        f"p99 {ratios['line_p99/zmq_p99']:.2f}; one hop/pyzmq p50 "
        f"{ratios['one_hop_p50/zmq_p50']:.2f}"
    )
    RESULTS.append({"scenario": "line", "line": line, **figures})
