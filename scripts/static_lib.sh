#!/bin/sh
# Makes the libx0x.a that is shipped from the one cargo builds: its objects prelinked into one
# (`ld -r`) and every global symbol but the C ABI's `x0x_*` made local. Cargo's staticlib exports
# ~14,000 globals (Rust's std, blake3_*, aws-lc, rust_eh_personality), which clash with any other
# Rust or BLAKE3 static library a C program links; after this, only the header's names remain.
#
#   scripts/static_lib.sh IN.a OUT.a
set -eu
in=$1
out=$2
work=$(mktemp -d "${TMPDIR:-/tmp}/x0x-static.XXXXXX")
trap 'rm -rf "$work"' EXIT

ld -r --whole-archive -o "$work/all.o" "$in"
# The embedded LLVM bitcode (rustc's, for LTO) is dead weight here, and binutils' nm and ar hand
# it to the system's LLVM plugin, which cannot read a newer rustc's bitcode.
objcopy --remove-section=.llvmbc --remove-section=.llvmcmd "$work/all.o" "$work/plain.o"
nm -g --defined-only "$work/plain.o" | awk '$2 ~ /^[TDRB]$/ && $3 ~ /^x0x_/ { print $3 }' |
    sort -u >"$work/keep"
[ -s "$work/keep" ] || { echo "static_lib.sh: no x0x_ symbols in $in" >&2; exit 1; }
objcopy --keep-global-symbols="$work/keep" "$work/plain.o" "$work/x0x.o"
leaked=$(nm -g --defined-only "$work/x0x.o" | awk '$2 ~ /^[A-Z]$/ && $3 !~ /^x0x_/ { print $3 }')
[ -z "$leaked" ] || { echo "static_lib.sh: still global: $leaked" >&2; exit 1; }
rm -f "$out.tmp"
ar rcs "$out.tmp" "$work/x0x.o"
mv "$out.tmp" "$out"
