#!/usr/bin/env bash
# Proves the sdist is complete: `python -m build --sdist`, then in a fresh venv with nothing but
# a Rust toolchain and the index, `pip install` of that sdist (it builds the Rust library and
# the cffi module from the sdist's files alone), then the two-process smoke test from outside
# the checkout. Shares the cargo target dir (CARGO_TARGET_DIR, default ./target) so the Rust
# build is warm after `make`. Env: PYTHON (default python3), STEP_TIMEOUT (default 900 s).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
start=$SECONDS

work=$(mktemp -d "${TMPDIR:-/tmp}/x0x-sdist.XXXXXX")
trap 'rm -rf "$work"' EXIT
"$PYTHON" -m venv "$work/venv"
PY=$work/venv/bin/python
"$PY" -m pip install -q build

echo "== sdist"
timeout "$STEP_TIMEOUT" "$PY" -m build --sdist --outdir "$work/dist" . >"$work/build.log" 2>&1 \
    || { cat "$work/build.log" >&2; exit 1; }
sdist=$(ls "$work"/dist/*.tar.gz)
echo "  $(basename "$sdist"): $(($(stat -c %s "$sdist") / 1024)) KiB"
# What a user's pip would need from it: the licences, the header, the cffi build, the crate.
listing=$(tar -tzf "$sdist")
for want in LICENSE-MIT LICENSE-APACHE include/x0x.h build_ffi.py Cargo.toml Cargo.lock src/lib.rs; do
    grep -q "^[^/]*/$want\$" <<<"$listing" || { echo "the sdist lacks $want" >&2; exit 1; }
done

echo "== pip install of the sdist in a fresh venv"
timeout "$STEP_TIMEOUT" "$PY" -m pip install -q "$sdist" >"$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; exit 1; }

echo "== smoke test"
mkdir -p "$work/home"
cp "$ROOT/scripts/wheel_smoke.py" "$work/smoke.py"
(cd "$work" && env -u PYTHONPATH HOME="$work/home" timeout "$STEP_TIMEOUT" "$PY" smoke.py)
echo "== sdist OK in $((SECONDS - start)) s"
