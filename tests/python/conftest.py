"""Shared fixtures: every test gets its own HOME so nothing touches the real ~/.x0x."""

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # putenv: the Rust core reads it too
    return home
