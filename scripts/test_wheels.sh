#!/usr/bin/env bash
# Builds the two wheels we ship and proves each one works on its own, outside the checkout:
#   * CPython: one cp38-abi3 wheel (every CPython >= 3.8), built with `python3`;
#   * PyPy: one ppXY-pypyXY_ppNN wheel, built with `pypy3`.
# For each interpreter: a fresh venv, `pip wheel --no-deps .`, the tag checked, the wheel
# installed into that venv (with its runtime deps: cffi from PyPI on CPython, built in on PyPy),
# then a smoke test run from a temp dir: two agents in two processes join, one publishes, the
# other receives the message, both close.
#
#   scripts/test_wheels.sh              # both interpreters; wheels end up in dist/wheels
#   scripts/test_wheels.sh cpython      # or just one: cpython | pypy
#
# Env: PYTHON (default python3), PYPY (default pypy3), WHEEL_DIR (default dist/wheels),
# X0X_WHEEL: test this CPython wheel instead of building one (scripts/build_wheels.sh's),
# STEP_TIMEOUT seconds per build or smoke test (default 900: a cold cargo build takes minutes).
# PyPy on Debian: apt-get install -y pypy3 pypy3-dev pypy3-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${PYTHON:-python3}
PYPY=${PYPY:-pypy3}
WHEEL_DIR=${WHEEL_DIR:-dist/wheels}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
if (($#)); then targets=("$@"); else targets=(cpython pypy); fi

work=$(mktemp -d "${TMPDIR:-/tmp}/x0x-wheels.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$WHEEL_DIR" "$work/home"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Runs from $work (never the checkout, so `import x0x` can only find the installed wheel).
cp "$ROOT/scripts/wheel_smoke.py" "$work/smoke.py"

# A step whose output goes to a log, shown only when it fails or times out.
run_logged() {
    local log=$1
    shift
    if ! timeout "$STEP_TIMEOUT" "$@" >"$log" 2>&1; then
        echo "FAILED (or timed out after ${STEP_TIMEOUT}s): $*" >&2
        tail -n 60 "$log" >&2
        return 1
    fi
}

test_wheel() {
    local name=$1 interp=$2 expected_tag
    local venv="$work/venv-$name" out="$work/wheel-$name" start=$SECONDS
    command -v "$interp" >/dev/null || { echo "$interp not found" >&2; return 1; }
    echo "== $name: $("$interp" -c 'import sys; print(sys.version.replace(chr(10), " "))')"

    # pip wheel installs nothing into the venv (the build runs in an isolated env), so the
    # same venv is still fresh for installing the wheel afterwards.
    run_logged "$work/$name-venv.log" "$interp" -m venv "$venv"
    echo "  venv: $((SECONDS - start)) s"

    start=$SECONDS
    if [[ $name == cpython && -n ${X0X_WHEEL:-} ]]; then
        mkdir -p "$out" && cp "$X0X_WHEEL" "$out/"
    else
        run_logged "$work/$name-build.log" "$venv/bin/python" -m pip wheel --no-deps -w "$out" "$ROOT"
    fi
    local wheels=("$out"/agent_x0x-*.whl)
    [[ ${#wheels[@]} -eq 1 && -f ${wheels[0]} ]] || { echo "expected one wheel in $out" >&2; return 1; }
    local wheel=${wheels[0]} file
    file=$(basename "$wheel")
    echo "  wheel: $file ($(du -k "$wheel" | cut -f1) KiB) built in $((SECONDS - start)) s"

    # The tag is name-version-python-abi-platform.whl; the abi tag must match the interpreter.
    if [[ $name == cpython ]]; then
        expected_tag="cp38-abi3"
    else
        expected_tag=$("$interp" -c 'import sys, sysconfig
soabi = sysconfig.get_config_var("SOABI")  # e.g. pypy39-pp73
print("pp%d%d-%s" % (sys.version_info[0], sys.version_info[1], soabi.replace("-", "_")))')
    fi
    local tag
    tag=$(echo "${file%.whl}" | cut -d- -f3-)
    echo "  tag: $tag"
    [[ $tag == "$expected_tag"-* ]] || { echo "wrong tag: want $expected_tag-*, got $tag" >&2; return 1; }
    # The extension module inside must carry the same ABI (an abi3 .so, or PyPy's SOABI).
    "$venv/bin/python" - "$wheel" "$name" <<'EOF'
import sys, sysconfig, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
suffix = ".abi3.so" if sys.argv[2] == "cpython" else sysconfig.get_config_var("EXT_SUFFIX")
mods = [n for n in names if n.startswith("x0x/_x0x_cffi")]
assert mods == ["x0x/_x0x_cffi" + suffix], f"extension module(s) {mods}, want *{suffix}"
assert "x0x/py.typed" in names and "x0x/__init__.py" in names, names
print(f"  contents: {len(names)} files, {mods[0]}")
EOF

    start=$SECONDS
    run_logged "$work/$name-install.log" "$venv/bin/python" -m pip install "$wheel"
    { grep -E '^Successfully installed' "$work/$name-install.log" || true; } | sed 's/^/  /'
    echo "  install: $((SECONDS - start)) s"

    start=$SECONDS
    (cd "$work" && env -u PYTHONPATH HOME="$work/home" \
        timeout "$STEP_TIMEOUT" "$venv/bin/python" "$work/smoke.py")
    echo "  smoke test: $((SECONDS - start)) s"

    # The wheel installs the x0x command, which names Cargo.toml's version (the one version).
    local want said
    want=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)
    said=$(cd "$work" && env -u PYTHONPATH HOME="$work/home" "$venv/bin/x0x" --version)
    [[ $said == "x0x $want" ]] || { echo "x0x --version said '$said', want 'x0x $want'" >&2; return 1; }
    echo "  command: $said"

    cp -f "$wheel" "$WHEEL_DIR/"
    built+=("$WHEEL_DIR/$file")
}

built=()
for target in "${targets[@]}"; do
    case $target in
        cpython) test_wheel cpython "$PYTHON" ;;
        pypy) test_wheel pypy "$PYPY" ;;
        *) echo "unknown target $target (cpython | pypy)" >&2; exit 2 ;;
    esac
done
echo "== wheels OK:"
printf '  %s\n' "${built[@]}"
