"""Options and the results summary of the network-namespace reliability tests."""

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# One entry per scenario run: {"scenario", "line", ...figures}; printed at the end of the session.
RESULTS: List[Dict[str, Any]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--full",
        action="store_true",
        default=False,
        help="x0x reliability: full sizes (also X0X_RELIABILITY=full); default: CI sizes",
    )


@pytest.fixture(scope="session")
def full(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--full")) or os.environ.get("X0X_RELIABILITY") == "full"


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.section("x0x reliability figures")
    for result in RESULTS:
        terminalreporter.write_line(result["line"])
    path = os.environ.get("X0X_RELIABILITY_REPORT")
    if path:
        with open(path, "a") as f:
            for result in RESULTS:
                f.write(json.dumps(result) + "\n")
