#!/usr/bin/env bash
# Runs every fuzz target for FUZZ_SECONDS (default 60) each, one after the other, after building them
# all once; prints each target's executions per second and total runs. Exits non-zero if any target
# found a crash, a timeout or a leak (the input is left in fuzz/artifacts/<target>/).
#
# CI has only the stable toolchain: RUSTC_BOOTSTRAP=1 lets it take the nightly flags cargo-fuzz passes.
set -uo pipefail
cd "$(dirname "$0")/.."

export RUSTC_BOOTSTRAP=1
seconds=${FUZZ_SECONDS:-60}
targets=(policy_parse policy_roundtrip credentials decision_diff key_token record_decode)
if [ -n "${FUZZ_TARGETS:-}" ]; then
    read -r -a targets <<< "$FUZZ_TARGETS"
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

bash fuzz/init_corpus.sh || exit 1
echo "building all fuzz targets"
cargo fuzz build || exit 1

mkdir -p fuzz/logs
summary=()
failed=0
for t in "${targets[@]}"; do
    log="fuzz/logs/$t.log"
    echo "fuzzing $t for ${seconds}s"
    # -timeout: a single input running longer than 10 s is a hang (reported as a failure).
    cargo fuzz run "$t" -- -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1
    status=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    units=$(grep -o 'stat::new_units_added: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
    if [ "$status" -eq 0 ]; then
        result=ok
    else
        result="FAILED (exit $status)"
        failed=1
        echo "---- $t: last lines of $log"
        tail -n 60 "$log"
        ls -l "fuzz/artifacts/$t" 2>/dev/null
    fi
    summary+=("$(printf '%-18s %10s exec/s %12s runs %6s new units %6s corpus  %s' \
        "$t" "${rate:-?}" "${runs:-?}" "${units:-?}" "$corpus" "$result")")
done

echo
echo "fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
exit "$failed"
