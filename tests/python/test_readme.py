"""The README's quick start, copied out of README.md as it is and run in two shells (processes)
that share one HOME, as a new user would."""

import asyncio
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")

README = Path(__file__).parents[2] / "README.md"


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under its quick start"
    return match.group(1)


async def in_thread(call: Callable[..., T], *args: Any) -> T:
    # asyncio.to_thread is 3.9+; the package supports 3.8.
    return await asyncio.get_running_loop().run_in_executor(None, call, *args)


def shell(script: Path, *args: str) -> "subprocess.Popen[str]":
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=script.parent,
    )


async def line_of(proc: "subprocess.Popen[str]") -> str:
    assert proc.stdout is not None
    line = await asyncio.wait_for(in_thread(proc.stdout.readline), 30)
    if not line:
        raise AssertionError(f"exited: {proc.stderr.read() if proc.stderr else ''}")
    return line.rstrip("\n")


def say(proc: "subprocess.Popen[str]", text: str) -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


async def test_the_quick_start_works_in_two_shells(tmp_path: Path) -> None:
    script = tmp_path / "chat.py"
    script.write_text(quick_start(), encoding="utf-8")
    first = shell(script)
    second: Optional[subprocess.Popen[str]] = None
    try:
        banner = await line_of(first)
        command = banner.split("others join with: ", 1)[1]
        assert command.startswith("python chat.py 0.0.0.0:"), banner
        second = shell(script, command.split()[-1])
        await line_of(second)
        say(second, "hi from the second shell")
        heard = await line_of(first)
        assert heard.endswith(": hi from the second shell"), heard
        say(first, "hello back")
        # The second shell shows its own line, then the first shell's.
        assert (await line_of(second)).endswith(": hi from the second shell")
        assert (await line_of(second)).endswith(": hello back")
        for shell_proc in (first, second):
            assert shell_proc.stdin is not None
            shell_proc.stdin.close()  # Ctrl-D
            assert await in_thread(shell_proc.wait, 20) == 0
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()
