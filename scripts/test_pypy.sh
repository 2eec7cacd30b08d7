#!/usr/bin/env bash
# Runs the whole Python test suite (tests/python) on PyPy.
#
#   scripts/test_pypy.sh [pytest args...]      # e.g. -k network, -x
#
# Sets up (or refreshes) a PyPy venv, .venv-pypy, with the package installed editable (its
# extension module lands next to the CPython one in python/x0x/, under PyPy's own name) and just
# what the tests import: pytest, anyio (its pytest plugin runs each async test on asyncio and on
# trio) and trio. The dev extra's mypy, ruff, pyzmq and pytest-cov are for lint, benchmarks and
# coverage, which run on CPython (`make test`).
# PyPy on Debian: apt-get install -y pypy3 pypy3-dev pypy3-venv.
# Env: PYPY (default pypy3), PYPY_VENV (default .venv-pypy), PYTEST_TIMEOUT seconds (default 900).
set -euo pipefail
cd "$(dirname "$0")/.."

PYPY=${PYPY:-pypy3}
VENV=${PYPY_VENV:-.venv-pypy}
PYTEST_TIMEOUT=${PYTEST_TIMEOUT:-900}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

command -v "$PYPY" >/dev/null || { echo "$PYPY not found (apt-get install pypy3 pypy3-dev pypy3-venv)" >&2; exit 1; }
if [[ ! -x $VENV/bin/python ]]; then
    "$PYPY" -m venv "$VENV"
fi
# Keep the lower bounds in step with the dev extra in pyproject.toml.
"$VENV/bin/python" -m pip install -q "pytest>=7" "anyio[trio]>=4.1" "trio>=0.23"
# Always reinstall: it rebuilds the extension when src/ or the bindings changed (cargo and
# setuptools keep it incremental).
"$VENV/bin/python" -m pip install -q -e .
"$VENV/bin/python" -c 'import platform, x0x; print(platform.python_implementation(), platform.python_version(), "x0x", x0x.__version__, x0x.__file__)'

timeout "$PYTEST_TIMEOUT" "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/python "$@"
