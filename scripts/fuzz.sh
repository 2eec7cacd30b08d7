#!/usr/bin/env bash
# Builds and runs every fuzz target of fuzz/ for SECONDS each (default 20): a short run for CI.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# For each target, in this order:
#   1. every file in fuzz/regressions/<target>/ is replayed: each is an input that once crashed
#      x0x, kept so that the bug stays fixed. One that still crashes fails the run;
#   2. the target is fuzzed for SECONDS (-max_total_time) from fuzz/corpus/<target>/ (seeds
#      written by fuzz/src/bin/make_corpus.rs, plus whatever earlier runs found) and the
#      regressions;
#   3. a crash (or timeout, leak, out-of-memory) is copied into fuzz/regressions/<target>/ and
#      reported with the command that reproduces it. Commit that file with the fix.
# Exits 0 if nothing crashed, 1 if something did, 2 if the tools are missing.
#
# Needs cargo-fuzz:  cargo install cargo-fuzz --version 0.13.2 --locked
#
# Why RUSTC_BOOTSTRAP=1: cargo-fuzz builds with AddressSanitizer, whose rustc flag
# (-Zsanitizer=address) is unstable, so cargo-fuzz expects a nightly toolchain. This project's
# toolchain is stable (1.95) and no nightly can be installed here; RUSTC_BOOTSTRAP=1 lets that
# stable compiler accept the -Z flag. It is set for the fuzz build only, never for the main build.
#
# Environment:
#   X0X_FUZZ_TARGET_DIR      cargo target dir (default fuzz/target). A fresh clone builds
#                            everything cold (~5-7 min on 2 cores); CI can point this at a
#                            directory that outlives the clone to build warm (~1-2 min).
#   X0X_FUZZ_JOBS            targets fuzzed at once (default: the number of cores, at most 2).
#   X0X_FUZZ_CODEGEN_UNITS   default 16: a much faster build than cargo-fuzz's 1, for a
#                            somewhat slower fuzzer; right for short runs. Use 1 for long ones.
set -euo pipefail

cd "$(dirname "$0")/.."
root=$PWD

seconds=${1:-20}
if ! [[ $seconds =~ ^[0-9]+$ ]] || ((seconds < 1)); then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 2
fi
shift || true
all_targets=(frame envelope hello tasklist_state keypair c_abi replay)
if (($#)); then targets=("$@"); else targets=("${all_targets[@]}"); fi

# Per-target input size limits: frame streams and envelopes carry ML-DSA keys (1952 bytes) and
# signatures (3309 bytes).
max_len() {
    case $1 in
        frame) echo 32768 ;;
        envelope | hello) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: cargo-fuzz is missing: cargo install cargo-fuzz --version 0.13.2 --locked" >&2
    exit 2
fi

target_dir=${X0X_FUZZ_TARGET_DIR:-$root/fuzz/target}
cgu=${X0X_FUZZ_CODEGEN_UNITS:-16}
jobs=${X0X_FUZZ_JOBS:-$(($(nproc) < 2 ? $(nproc) : 2))}
triple=$(rustc -vV | sed -n 's/^host: //p')
bin=$target_dir/$triple/release
start=$(date +%s)

echo "fuzz.sh: building the fuzz targets (cargo fuzz build, codegen units $cgu, $target_dir)"
RUSTC_BOOTSTRAP=1 cargo fuzz build --codegen-units "$cgu" --target-dir "$target_dir"
built=$(date +%s)
echo "fuzz.sh: built in $((built - start)) s"

"$bin/make_corpus" "$root/fuzz/corpus" | sed 's/^/fuzz.sh: seeds: /'

# The same ASAN_OPTIONS cargo-fuzz would set.
export ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_odr_violation=0

# The panic message (or sanitizer error) and the top of the stack, from a target's log.
crash_report() {
    grep -m1 -A2 -E 'panicked at|==[0-9]+==ERROR' "$1" | sed 's/^/     | /' || true
    grep -E '^ +#[0-9]+ ' "$1" | grep -v -E '/rustc/|libfuzzer|libc_start|_start |abort|raise|pthread_kill|libc\.so' |
        head -n 14 | sed 's/^/     | /' || true
}

# Runs one target (steps 1-3 above); its output goes to fuzz/artifacts/<target>/fuzz.log.
run_target() {
    local t=$1 dir=$root/fuzz/artifacts/$1 regressions=$root/fuzz/regressions/$1
    local log=$dir/fuzz.log status=0
    mkdir -p "$dir" "$regressions" "$root/fuzz/corpus/$t"
    rm -f "$dir"/crash-* "$dir"/oom-* "$dir"/timeout-* "$dir"/leak-* "$dir"/slow-unit-*
    : >"$log"
    local inputs=()
    for f in "$regressions"/*; do
        [[ -f $f ]] && inputs+=("$f")
    done
    if ((${#inputs[@]})); then
        if ! "$bin/$t" -runs=1 "${inputs[@]}" >>"$log" 2>&1; then
            echo "FAIL $t: a regression input crashes again; the log: $log"
            echo "     replay each with: $bin/$t <file in fuzz/regressions/$t>"
            crash_report "$log"
            return 1
        fi
    fi
    local dict=()
    [[ -f $root/fuzz/dict/$t.dict ]] && dict=(-dict="$root/fuzz/dict/$t.dict")
    "$bin/$t" -max_total_time="$seconds" -max_len="$(max_len "$t")" -timeout=10 \
        -print_final_stats=1 -artifact_prefix="$dir/" "${dict[@]}" \
        "$root/fuzz/corpus/$t" "$regressions" >>"$log" 2>&1 || status=$?
    local runs rate cov
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
    local found=()
    for f in "$dir"/crash-* "$dir"/oom-* "$dir"/timeout-* "$dir"/leak-*; do
        [[ -f $f ]] && found+=("$f")
    done
    if ((status != 0 || ${#found[@]})); then
        echo "FAIL $t: the fuzzer found a crash (exit $status); the log: $log"
        for f in "${found[@]}"; do
            cp "$f" "$regressions/"
            echo "     kept as a regression input: fuzz/regressions/$t/$(basename "$f")"
            echo "     reproduce: $bin/$t fuzz/regressions/$t/$(basename "$f")"
        done
        crash_report "$log"
        return 1
    fi
    echo "ok   $t: ${runs:-?} runs in $seconds s (${rate:-?} exec/s), coverage ${cov:-?}, ${#inputs[@]} regression inputs replayed"
}

echo "fuzz.sh: fuzzing ${targets[*]} for $seconds s each, $jobs at a time"
failed=0
pids=()
names=()
wait_one() {
    # Waits for the oldest running target (output stays in order of start).
    if ! wait "${pids[0]}"; then failed=1; fi
    cat "$root/fuzz/artifacts/${names[0]}/summary"
    pids=("${pids[@]:1}")
    names=("${names[@]:1}")
}
for t in "${targets[@]}"; do
    if [[ ! -x $bin/$t ]]; then
        echo "fuzz.sh: no fuzz target $t (targets: ${all_targets[*]})" >&2
        exit 2
    fi
    ((${#pids[@]} < jobs)) || wait_one
    mkdir -p "$root/fuzz/artifacts/$t"
    run_target "$t" >"$root/fuzz/artifacts/$t/summary" 2>&1 &
    pids+=($!)
    names+=("$t")
done
while ((${#pids[@]})); do wait_one; done

end=$(date +%s)
echo "fuzz.sh: total $((end - start)) s (build $((built - start)) s, fuzzing $((end - built)) s)"
if ((failed)); then
    echo "fuzz.sh: FAILED: see above; new crash inputs are in fuzz/regressions/ (commit them with the fix)"
    exit 1
fi
echo "fuzz.sh: no crash"
