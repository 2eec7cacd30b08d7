"""The README's quick start, copied out of README.md as it is and run in two shells (processes)
that share one HOME, as a new user would."""

import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

from processes import exit_code, python, read_line, send

README = Path(__file__).parents[2] / "README.md"


def quick_start() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under its quick start"
    return match.group(1)


async def test_the_quick_start_works_in_two_shells(tmp_path: Path) -> None:
    script = tmp_path / "chat.py"
    script.write_text(quick_start(), encoding="utf-8")
    first = python(str(script), cwd=tmp_path)
    second: Optional[subprocess.Popen[str]] = None
    try:
        banner = await read_line(first)
        command = banner.split("others join with: ", 1)[1]
        assert command.startswith("python chat.py 0.0.0.0:"), banner
        second = python(str(script), command.split()[-1], cwd=tmp_path)
        await read_line(second)
        send(second, "hi from the second shell")
        heard = await read_line(first)
        assert heard.endswith(": hi from the second shell"), heard
        send(first, "hello back")
        # The second shell shows its own line, then the first shell's.
        assert (await read_line(second)).endswith(": hi from the second shell")
        assert (await read_line(second)).endswith(": hello back")
        for shell_proc in (first, second):
            assert shell_proc.stdin is not None
            shell_proc.stdin.close()  # Ctrl-D
            assert await exit_code(shell_proc) == 0
    finally:
        for proc in (first, second):
            if proc is not None:
                proc.kill()
                proc.wait()


def test_the_trio_example_runs_as_written(tmp_path: Path) -> None:
    section = README.read_text(encoding="utf-8").split("### trio and anyio", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README.md has no python block under trio and anyio"
    script = tmp_path / "trio_chat.py"
    script.write_text(match.group(1), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    # Its own message came back through its subscription: "<agent id> b'hello'".
    sender, _, payload = done.stdout.strip().partition(" ")
    assert len(sender) == 64 and payload == "b'hello'", done.stdout
