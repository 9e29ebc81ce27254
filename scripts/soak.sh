#!/usr/bin/env bash
# Runs every property test of the workspace under N random seeds (default 200), to show that
# they pass for any seed, not only for the one a test run happens to draw.
#
#   scripts/soak.sh [N] [FIRST_SEED]      # seeds FIRST_SEED .. FIRST_SEED+N-1 (default: 1)
#   JOBS=4 scripts/soak.sh 200            # seeds in parallel (default: the number of cores)
#
# The test targets are found by looking for `proptest!` in the sources, built once (release-like
# test profile, as `cargo test` builds them), and run with PROPTEST_RNG_SEED set. A failure is
# shrunk by proptest and saved in the target's `*.regressions` file beside its source, so it is
# replayed first by every later `cargo test`; commit that file with the fix. The script prints
# one line per failing seed and target, then a summary, and exits 1 if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
first=${2:-1}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Test targets that hold property tests: `--lib` for unit tests in src/, `--test NAME` for
# integration tests.
targets=()
while IFS= read -r file; do
    crate_dir=${file%%/src/*}
    crate_dir=${crate_dir%%/tests/*}
    pkg=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$crate_dir/Cargo.toml" | head -n 1)
    case "$file" in
        */src/*) targets+=("$pkg --lib") ;;
        */tests/*) name=$(basename "$file" .rs); targets+=("$pkg --test $name") ;;
    esac
done < <(grep -rl --include='*.rs' 'proptest!' crates | sort)
mapfile -t targets < <(printf '%s\n' "${targets[@]}" | sort -u)
echo "soak: ${#targets[@]} targets with property tests, seeds $first..$((first + n - 1)), $jobs at a time" >&2

for t in "${targets[@]}"; do
    # shellcheck disable=SC2086
    cargo test -q -p $t --no-run >/dev/null 2>&1 || { echo "soak: building $t failed" >&2; exit 2; }
done

# One seed over every target (run in a background subshell, which sees `targets`).
run_seed() {
    local seed=$1 failed=0 log
    for t in "${targets[@]}"; do
        log="$logs/$seed-${t// /_}.log"
        # shellcheck disable=SC2086
        if ! PROPTEST_RNG_SEED=$seed cargo test -q -p $t >"$log" 2>&1; then
            echo "FAIL seed $seed: $t: $(grep -m1 -E 'Test failed|panicked' "$log" | cut -c1-240)"
            failed=1
        fi
    done
    return $failed
}

start=$(date +%s)
fails=0
running=0
for seed in $(seq "$first" $((first + n - 1))); do
    run_seed "$seed" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
        wait -n || fails=$((fails + 1))
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || fails=$((fails + 1))
    running=$((running - 1))
done
echo "soak: $n seeds x ${#targets[@]} targets in $(( $(date +%s) - start )) s: $fails seeds failed"
[ "$fails" -eq 0 ]
