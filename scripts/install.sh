#!/bin/sh
# Installs the x0x C library: header, static and shared library, and a pkg-config file.
#
#   scripts/install.sh                      # PREFIX=/usr/local
#   PREFIX=$HOME/.local scripts/install.sh
#   DESTDIR=/tmp/stage PREFIX=/usr scripts/install.sh   # staged install, e.g. for packaging
#   make install PREFIX=...                 # the same, from the top-level Makefile
#
# Environment:
#   PREFIX    absolute install prefix (default /usr/local). Written into x0x.pc.
#   DESTDIR   staging root prepended to every installed path, not written into x0x.pc.
#   NO_BUILD  if 1, skip `cargo build` and install what target/release already holds (for
#             `cargo build --release --lib && sudo make install NO_BUILD=1`).
#   CARGO     the cargo command (default cargo).
#
# Installs (re-running overwrites them with the same content):
#   $PREFIX/include/x0x.h
#   $PREFIX/lib/libx0x.a
#   $PREFIX/lib/libx0x.so.VERSION (+ libx0x.so.MAJOR and libx0x.so links)
#   $PREFIX/lib/pkgconfig/x0x.pc   (from x0x.pc.in)
set -eu

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
NO_BUILD=${NO_BUILD:-}
CARGO=${CARGO:-cargo}

die() {
    echo "install.sh: error: $*" >&2
    exit 1
}

case $PREFIX in
/*) ;;
*) die "PREFIX must be an absolute path (got '$PREFIX')" ;;
esac
# x0x.pc has no quoting, and the prefix goes through sed below.
case $PREFIX in
*[[:space:]\|\&\\]*) die "PREFIX must not contain whitespace, '|', '&' or '\\' (got '$PREFIX')" ;;
esac
# Strip trailing slashes, but keep "/" itself usable.
while :; do
    case $PREFIX in
    ?*/) PREFIX=${PREFIX%/} ;;
    *) break ;;
    esac
done

# The version in Cargo.toml's [package] section.
VERSION=$(awk '
    /^\[/ { in_package = ($0 ~ /^\[package\][[:space:]]*$/) }
    in_package && /^version[[:space:]]*=/ {
        sub(/^version[[:space:]]*=[[:space:]]*"/, ""); sub(/".*$/, ""); print; exit
    }' "$ROOT/Cargo.toml")
[ -n "$VERSION" ] || die "could not read the package version from $ROOT/Cargo.toml"

if [ "$NO_BUILD" = 1 ]; then
    echo "==> skipping the build (NO_BUILD=1)"
else
    command -v "$CARGO" >/dev/null 2>&1 ||
        die "'$CARGO' not found; install the Rust toolchain, or build first and pass NO_BUILD=1"
    echo "==> $CARGO build --release --lib"
    "$CARGO" build --release --lib --manifest-path "$ROOT/Cargo.toml"
fi

HEADER=$ROOT/include/x0x.h
CARGO_STATIC=$ROOT/target/release/libx0x.a
SHARED=$ROOT/target/release/libx0x.so
TEMPLATE=$ROOT/x0x.pc.in
for f in "$HEADER" "$CARGO_STATIC" "$SHARED" "$TEMPLATE"; do
    [ -f "$f" ] || die "missing $f (run without NO_BUILD=1 to build it)"
done
# The static library as shipped: only the C ABI's x0x_* symbols global (see static_lib.sh).
STATIC=$ROOT/target/release/dist/libx0x.a
mkdir -p "$(dirname "$STATIC")"
"$ROOT/scripts/static_lib.sh" "$CARGO_STATIC" "$STATIC"

# Generate x0x.pc next to the build output, then check that every placeholder was filled.
PC=$ROOT/target/release/x0x.pc
sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@VERSION@|$VERSION|g" "$TEMPLATE" >"$PC.tmp"
if grep -n '@[A-Z_]*@' "$PC.tmp" >&2; then
    rm -f "$PC.tmp"
    die "unfilled placeholder in $TEMPLATE (above)"
fi
mv "$PC.tmp" "$PC"

DEST=$DESTDIR$PREFIX
echo "==> installing x0x $VERSION into ${DESTDIR:+$DESTDIR (DESTDIR) + }$PREFIX"
install -d "$DEST/include" "$DEST/lib" "$DEST/lib/pkgconfig"
put() { # mode source destination
    install -m "$1" "$2" "$3"
    echo "    $3"
}
put 644 "$HEADER" "$DEST/include/x0x.h"
put 644 "$STATIC" "$DEST/lib/libx0x.a"
# The real file carries the full version; libx0x.so.MAJOR (the SONAME build.rs sets) is what
# programs load, libx0x.so what the linker finds.
MAJOR=${VERSION%%.*}
put 755 "$SHARED" "$DEST/lib/libx0x.so.$VERSION"
ln -sf "libx0x.so.$VERSION" "$DEST/lib/libx0x.so.$MAJOR"
ln -sf "libx0x.so.$MAJOR" "$DEST/lib/libx0x.so"
echo "    $DEST/lib/libx0x.so.$MAJOR -> libx0x.so.$VERSION, libx0x.so -> libx0x.so.$MAJOR"
put 644 "$PC" "$DEST/lib/pkgconfig/x0x.pc"

echo "==> done"
if [ -z "$DESTDIR" ]; then
    # Tell the user how pkg-config finds x0x if the directory is not on its default path.
    pc_dir=$PREFIX/lib/pkgconfig
    default_path=$(pkg-config --variable=pc_path pkg-config 2>/dev/null || true)
    case ":$default_path:" in
    *":$pc_dir:"*) ;;
    *) echo "    to build against it: export PKG_CONFIG_PATH=$pc_dir" ;;
    esac
    case $PREFIX in
    /usr) ;;
    /usr/local) echo "    programs linked to libx0x.so (not libx0x.a) need the loader cache updated: ldconfig" ;;
    *) echo "    programs linked to libx0x.so (not libx0x.a) need -Wl,-rpath,$PREFIX/lib or LD_LIBRARY_PATH" ;;
    esac
fi
