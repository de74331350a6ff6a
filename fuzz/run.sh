#!/usr/bin/env bash
# Fuzz every troupe parser for SECONDS each (default 60); exit 1 if any target crashed, hung,
# ran out of memory, or a saved regression still fails. See fuzz/README.md.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      e.g. fuzz/run.sh 300 spec template
#
# FUZZ_IGNORE_RESOURCES="template" runs the listed targets in fork mode, where hangs and OOMs
# are logged and skipped and only a crash (a panic) fails: for templates, which can exhaust
# CPU and memory by design (see known/ in the README).
#
# Needs a nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). Builds once (into
# $CARGO_TARGET_DIR, else fuzz/target), then runs the built binaries, so that edits to crates/
# during a long run do not change what is being fuzzed halfway.
set -uo pipefail

secs=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(spec scenario template control history)

fuzz_dir=$(cd "$(dirname "$0")" && pwd)
target_dir=${CARGO_TARGET_DIR:-$fuzz_dir/target}
bin_dir=$target_dir/x86_64-unknown-linux-gnu/release
# libFuzzer's own settings: a run of one input longer than 10 s is a hang, more than 2 GiB an OOM.
flags=(-timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_odr_violation=0}

cd "$fuzz_dir/.." || exit 2
# -a: debug assertions and overflow checks on, so an integer overflow is a crash, not a wrap.
mkdir -p "$fuzz_dir/logs"
echo "building the fuzz targets (log: fuzz/logs/build.log)"
if ! cargo +nightly fuzz build -a --target-dir "$target_dir" >"$fuzz_dir/logs/build.log" 2>&1; then
    tail -30 "$fuzz_dir/logs/build.log" >&2
    exit 2
fi

failed=()
for t in "${targets[@]}"; do
    bin=$bin_dir/$t
    [ -x "$bin" ] || { echo "no fuzz target $t (looked for $bin)" >&2; exit 2; }
    mkdir -p "$fuzz_dir/corpus/$t" "$fuzz_dir/artifacts/$t"
    log=$fuzz_dir/logs/$t.log

    # Saved reproducers first: each must now pass.
    if compgen -G "$fuzz_dir/regressions/$t/*" >/dev/null; then
        if ! "$bin" "${flags[@]}" -runs=1 "$fuzz_dir/regressions/$t"/* >"$fuzz_dir/logs/$t.regressions.log" 2>&1; then
            echo "$t: a saved regression still fails (fuzz/logs/$t.regressions.log)"
            failed+=("$t (regression)")
        fi
    fi

    mode=()
    case " ${FUZZ_IGNORE_RESOURCES:-} " in
        *" $t "*) mode=(-fork=1 -ignore_timeouts=1 -ignore_ooms=1) ;;
    esac
    dict=()
    [ -f "$fuzz_dir/dicts/$t.dict" ] && dict=(-dict="$fuzz_dir/dicts/$t.dict")
    echo "$t: fuzzing for ${secs}s (log: fuzz/logs/$t.log)"
    "$bin" "${flags[@]}" "${mode[@]}" "${dict[@]}" -max_total_time="$secs" \
        -artifact_prefix="$fuzz_dir/artifacts/$t/" \
        "$fuzz_dir/corpus/$t" "$fuzz_dir/seeds/$t" >"$log" 2>&1
    rc=$?
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$log" | sed "s/^/$t: /"
    if [ $rc -ne 0 ]; then
        echo "$t: FAILED (exit $rc); reproducer: $(grep -o 'Test unit written to .*' "$log" | tail -1)"
        grep -m1 -E '^(==[0-9]+== ?ERROR|thread .* panicked|.*panicked at)' "$log" | sed "s/^/$t:   /"
        failed+=("$t")
    fi
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "failed: ${failed[*]}"
    exit 1
fi
echo "all targets ran ${secs}s each without a crash"
