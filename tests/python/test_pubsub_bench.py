"""The C publisher and subscriber of bench/pubsub.py ("x0x C", bench/pubsub_c.c) at CI size,
next to pyzmq in the same run (``make bench`` runs it at full size): two C processes that only
use the C ABI, driven over the bench's line protocol. Nothing here asserts a time or a rate."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from processes import run_bench

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "bench" / "pubsub.py"
BINARY = ROOT / "build" / "bench" / "pubsub_c"
# The HOME this session started with: conftest gives each test a fresh HOME for the agents'
# machine key, and cargo/rustup (make bench-c) find their toolchain under the real one.
REAL_HOME = os.environ.get("HOME", "")

# The bench's baseline; CPython's dev extra has it, the PyPy test venv does not.
pytest.importorskip("zmq", reason="bench/pubsub.py measures pyzmq next to x0x C")

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux build and /proc"),
    pytest.mark.skipif(
        shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None,
        reason="needs make and a C compiler to build bench/pubsub_c.c",
    ),
]


def build() -> None:
    done = subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), "bench-c"],
        env={**os.environ, "HOME": REAL_HOME},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_c_publisher_to_c_subscriber_delivers_every_message() -> None:
    build()
    out, figures = run_bench(
        BENCH, "--c-binary", str(BINARY),
        "--impls", "x0xc,zmq", "--messages", "2000", "--latency-samples", "50", "--rounds", "1",
    )  # fmt: skip
    c = figures["medians"]["x0xc"]
    assert c["lost"] == 0 and c["lat_lost"] == 0, c
    assert c["dropped"] == 0 and c["dup"] == 0, c
    # Throughput and latency were measured (values are machine-dependent; only their presence
    # is checked) and every message went through the signer.
    assert c["rate"] > 0 and c["p50"] > 0 and c["p99"] >= c["p50"], c
    assert c["per_envelope"] >= 1, c
    # The C rows sit next to pyzmq's, with the ratio, and the C processes' own thread.
    header = next(line for line in out.splitlines() if line.startswith("metric"))
    assert "x0x C" in header and "pyzmq" in header and "x0x C/pyzmq" in header, out
    assert "x0x C pub throughput" in out and "x0x C sub latency" in out, out
    assert any(key.endswith("/c-main") for key in c), c
