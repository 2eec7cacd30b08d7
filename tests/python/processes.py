"""Python processes that tests drive line by line over stdin/stdout, as a user's shells would."""

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Optional


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


async def read_line(proc: "subprocess.Popen[str]", timeout: float = 30) -> str:
    """The next line the process prints, without its newline; fails with its stderr if it
    exited."""
    assert proc.stdout is not None
    loop = asyncio.get_running_loop()  # asyncio.to_thread is 3.9+; the package supports 3.8
    line = await asyncio.wait_for(loop.run_in_executor(None, proc.stdout.readline), timeout)
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
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, proc.wait, timeout)
