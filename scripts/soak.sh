#!/usr/bin/env bash
# Runs every property test of the workspace under N random seeds (default 200), to show that
# they pass for any seed, not only for the one a test run happens to draw.
#
#   scripts/soak.sh [N] [FIRST_SEED]      # seeds FIRST_SEED .. FIRST_SEED+N-1 (default: 1)
#   JOBS=4 scripts/soak.sh 200            # seeds in parallel (default: the number of cores)
#
# The test targets are those whose sources contain `proptest!` or a `TestRunner`; they are
# built once, as `cargo test` builds them, and their executables run with PROPTEST_RNG_SEED
# set, from their package's directory as cargo runs them. A failure is shrunk by proptest and
# saved in the target's regressions file beside its source (`*.regressions`, or
# `proptest-regressions/`), so every later `cargo test` replays it first; commit that file with
# the fix. The script prints one line per failing seed and target, then a summary, and exits 1
# if anything failed.
set -uo pipefail
cd "$(dirname "$0")/.."
n=${1:-200}
first=${2:-1}
jobs=${JOBS:-$(nproc 2>/dev/null || echo 2)}
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT

# Cargo arguments of each target: `--lib` for unit tests in src/, `--test NAME` otherwise.
args=()
while IFS= read -r file; do
    crate_dir=${file%%/src/*}
    crate_dir=${crate_dir%%/tests/*}
    pkg=$(sed -n 's/^name *= *"\(.*\)"/\1/p' "$crate_dir/Cargo.toml" | head -n 1)
    case "$file" in
        */src/*) args+=("-p $pkg --lib") ;;
        */tests/*) args+=("-p $pkg --test $(basename "$file" .rs)") ;;
    esac
done < <(grep -rlE --include='*.rs' 'proptest!|TestRunner::new' crates | sort)
mapfile -t args < <(printf '%s\n' "${args[@]}" | sort -u)

# Build them and note "package-directory executable" per target.
targets=()
for a in "${args[@]}"; do
    # shellcheck disable=SC2086
    line=$(cargo test $a --no-run --message-format=json 2>/dev/null | python3 -c '
import json, os, sys
for l in sys.stdin:
    try:
        m = json.loads(l)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(os.path.dirname(m["manifest_path"]), m["executable"])
')
    [ -n "$line" ] || { echo "soak: building $a failed (run: cargo test $a --no-run)" >&2; exit 2; }
    targets+=("$line")
done
echo "soak: ${#targets[@]} targets with property tests, seeds $first..$((first + n - 1)), $jobs at a time" >&2

# One seed over every target.
run_seed() {
    local seed=$1 failed=0 dir exe log
    for t in "${targets[@]}"; do
        read -r dir exe <<<"$t"
        log="$logs/$seed-$(basename "$exe").log"
        if ! (cd "$dir" && PROPTEST_RNG_SEED=$seed "$exe" -q >"$log" 2>&1); then
            echo "FAIL seed $seed: $(basename "$exe"): $(grep -m1 -E 'Test failed|panicked' "$log" | cut -c1-240)"
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
