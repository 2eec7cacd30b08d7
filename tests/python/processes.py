"""Python processes that tests drive line by line over stdin/stdout, as a user's shells would."""

import json
import os
import shutil
import socket
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import anyio
import anyio.to_thread


def python(*argv: str, cwd: Optional[Path] = None) -> "subprocess.Popen[str]":
    """Starts ``python ARGV...`` (this interpreter) with pipes for stdin, stdout and stderr."""
    return subprocess.Popen(
        [sys.executable, *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def x0x(*argv: str, env: Optional[Dict[str, str]] = None) -> "subprocess.Popen[str]":
    """Starts the installed ``x0x`` command (the console script of this interpreter's
    environment) with ``env`` added to the environment, stdin closed, stdout and stderr piped."""
    # Where pip put the script: make test-python runs .venv/bin/python without .venv/bin on PATH.
    command = shutil.which("x0x", path=sysconfig.get_path("scripts"))
    assert command, f"no x0x command in {sysconfig.get_path('scripts')}: is the package installed?"
    return subprocess.Popen(
        [command, *argv],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )


def free_port() -> int:
    """A UDP port on 127.0.0.1 that nothing is bound to (at the time of asking)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def read_line(proc: "subprocess.Popen[str]", timeout: float = 30) -> str:
    """The next line the process prints, without its newline; fails with its stderr if it
    exited. Read on a worker thread (on asyncio and trio alike), which a timeout abandons."""
    assert proc.stdout is not None
    with anyio.fail_after(timeout):
        line = await anyio.to_thread.run_sync(proc.stdout.readline, abandon_on_cancel=True)
    if not line:
        raise AssertionError(f"the process exited: {proc.stderr.read() if proc.stderr else ''}")
    return line.rstrip("\n")


def send(proc: "subprocess.Popen[str]", line: str) -> None:
    """Types ``line`` into the process."""
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()


async def exit_code(proc: "subprocess.Popen[str]", timeout: float = 20) -> int:
    """Waits (off the event loop) for the process to exit."""
    return await anyio.to_thread.run_sync(proc.wait, timeout, abandon_on_cancel=True)


def run_bench(script: Path, *args: str, timeout: float = 600) -> Tuple[str, Dict[str, Any]]:
    """Runs a benchmark script of bench/ to the end; returns its output and its last JSON line
    (the figures it prints last), failing with its output if it failed."""
    done = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout
    figures = json.loads(lines[-1])
    assert isinstance(figures, dict)
    return done.stdout, figures
