#!/usr/bin/env bash
# Proves that built wheels work on their own, outside the checkout. For each wheel: a fresh venv
# of the interpreter its tag names (cp38-abi3: python3; ppXY: pypy3), the tag and the extension
# module checked against that interpreter, the wheel installed (with its runtime deps: cffi from
# PyPI on CPython, built in on PyPy), then, from a temp dir, the smoke test: two agents in two
# processes join, one publishes, the other receives the message, both close
# (scripts/wheel_smoke.py); and the x0x command's --version.
#
#   scripts/test_wheels.sh WHEEL...   # scripts/build_wheels.sh runs it on each wheel it builds
#   make test-wheels                  # the wheels in dist/ again, without rebuilding them
#
# Env: PYTHON (default python3), PYPY (default pypy3), STEP_TIMEOUT seconds per step (default 900).
# PyPy on Debian: apt-get install -y pypy3 pypy3-dev pypy3-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${PYTHON:-python3}
PYPY=${PYPY:-pypy3}
STEP_TIMEOUT=${STEP_TIMEOUT:-900}
(($#)) || { echo "usage: $0 WHEEL..." >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/x0x-wheels.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/home"
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
    local wheel=$1 file name interp expected_tag tag
    file=$(basename "$wheel")
    # The tag is name-version-python-abi-platform.whl.
    tag=$(echo "${file%.whl}" | cut -d- -f3-)
    case $tag in
        cp38-abi3-*) name=cpython interp=$PYTHON ;;
        pp*) name=pypy interp=$PYPY ;;
        *) echo "$file: no interpreter for tag $tag" >&2; return 1 ;;
    esac
    local venv="$work/venv-$name" start=$SECONDS
    command -v "$interp" >/dev/null || { echo "$interp not found (for $file)" >&2; return 1; }
    echo "== $file ($(du -k "$wheel" | cut -f1) KiB)"
    echo "  $name: $("$interp" -c 'import sys; print(sys.version.replace(chr(10), " "))')"
    rm -rf "$venv"
    run_logged "$work/$name-venv.log" "$interp" -m venv "$venv"
    echo "  venv: $((SECONDS - start)) s"

    # The abi tag must match the interpreter: abi3, or this PyPy's own (e.g. pp39-pypy39_pp73).
    if [[ $name == cpython ]]; then
        expected_tag="cp38-abi3"
    else
        expected_tag=$("$interp" -c 'import sys, sysconfig
soabi = sysconfig.get_config_var("SOABI")  # e.g. pypy39-pp73
print("pp%d%d-%s" % (sys.version_info[0], sys.version_info[1], soabi.replace("-", "_")))')
    fi
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
}

for wheel in "$@"; do
    [[ -f $wheel ]] || { echo "no such wheel: $wheel" >&2; exit 1; }
    test_wheel "$wheel"
done
echo "== wheels OK: $*"
