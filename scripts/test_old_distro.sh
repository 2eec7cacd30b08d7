#!/usr/bin/env bash
# Proves the CPython manylinux2014 wheel's tag on an older system than this one: a Debian 11
# root file system (glibc 2.31, CPython 3.9) made with debootstrap from Debian's mirror, then,
# inside it (chroot), a fresh venv, `pip install` of the wheel `make wheels` left in dist/ (cffi
# from PyPI), and the two-process smoke test. Needs root and debootstrap; says SKIPPED otherwise,
# unless X0X_REQUIRE_OLD_DISTRO is set (CI), which makes either a failure.
# Env: SUITE (default bullseye), MIRROR (default http://deb.debian.org/debian).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SUITE=${SUITE:-bullseye}
MIRROR=${MIRROR:-http://deb.debian.org/debian}

skip() {
    if [[ -n ${X0X_REQUIRE_OLD_DISTRO:-} ]]; then
        echo "test_old_distro.sh: $1 (X0X_REQUIRE_OLD_DISTRO is set)" >&2
        exit 1
    fi
    echo "SKIPPED test-old-distro: $1"
    exit 0
}
((EUID == 0)) || skip "needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || skip "debootstrap not installed (apt-get install debootstrap)"
# The CPython wheel: dist/ also holds the PyPy one, which Debian 11's python3 cannot install.
wheel=$(ls "$ROOT"/dist/agent_x0x-*-cp38-abi3-manylinux2014_x86_64*.whl 2>/dev/null | tail -n 1 || true)
[[ -n $wheel ]] || { echo "test_old_distro.sh: no cp38-abi3 manylinux2014 wheel in dist/: run make wheels" >&2; exit 1; }
start=$SECONDS

rootfs=$(mktemp -d "${TMPDIR:-/tmp}/x0x-$SUITE.XXXXXX")
cleanup() {
    umount "$rootfs/proc" 2>/dev/null || true
    rm -rf "$rootfs"
}
trap cleanup EXIT

echo "== debootstrap $SUITE"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { cat "$rootfs.log" >&2; exit 1; }
rm -f "$rootfs.log"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
# This host's CA bundle: the route to PyPI may re-sign TLS with a CA only the host trusts.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/host-ca.crt"
cp "$wheel" "$rootfs/tmp/"
cp "$ROOT/scripts/wheel_smoke.py" "$rootfs/tmp/smoke.py"
mount -t proc proc "$rootfs/proc"

echo "== inside: $(chroot "$rootfs" ldd --version | head -n 1), $(chroot "$rootfs" python3 --version)"
chroot "$rootfs" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/tmp/home \
    PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1 \
    /bin/sh -c "python3 -m venv /opt/venv && /opt/venv/bin/pip install -q /tmp/$(basename "$wheel") \
        && cd /tmp && /opt/venv/bin/python smoke.py"
echo "== $(basename "$wheel") works on Debian $SUITE ($((SECONDS - start)) s)"
