#!/usr/bin/env bash
# Parallel-lanes scaling of the fused attention kernel (docs/parallel.md, benchmarks.md §4.1).
# `fuseflow reproduce fig15` runs the same sweep (sweep B) as recorded, verified configurations
# with the table, plot and the paper's claim beside them (docs/reproduce.md).
#
#   scripts/par-scaling.sh [S] [NH] [DH]      defaults: 256 12 64 (paper scale: 1024 12 64)
#
# The kernel is examples/bigbird_attention.ff fused (--fusion full, order h,i,j,e,e2) with a
# dense mask (the BigBird generator replaced by random(density=1)). Table 1: lanes at the outer
# level (h), at the second level (i) and 4 x 4 on both, with the memory model off (--hw ideal).
# Table 2: 1, 2, 4, ..., 64 lanes at the second level on the rda machine (memory model on,
# bandwidth partitioned between access streams, so more lanes share the same channels).
# Configurations run in parallel, JOBS at a time (default: every core); every run is verified
# against the reference evaluator. Prints both tables as Markdown.
#
# Environment: JOBS; FUSEFLOW (the binary, default target/release/fuseflow, built if absent);
# RDA_SET (extra flags for table 2's machine, e.g. "--set memory.channels=1" for a machine
# with a sixteenth of rda's bandwidth); SWEEP_ONLY=1 runs table 2 alone.
set -euo pipefail

S=${1:-256}
NH=${2:-12}
DH=${3:-64}
JOBS=${JOBS:-$(nproc)}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${FUSEFLOW:-$root/target/release/fuseflow}
if [ ! -x "$bin" ]; then
    cargo build --release -p fuseflow --manifest-path "$root/Cargo.toml" >&2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
sed 's/= bigbird(.*$/= random(density=1)/' "$root/examples/bigbird_attention.ff" >"$work/attention_dense.ff"

# name | hardware | par flags
RDA_SET=${RDA_SET:-}
SWEEP_ONLY=${SWEEP_ONLY:-0}
configs=()
if [ "$SWEEP_ONLY" != 1 ]; then
    configs+=(
        "ideal_1|ideal|"
        "ideal_h2|ideal|--par h=2"
        "ideal_h4|ideal|--par h=4"
        "ideal_i2|ideal|--par i=2"
        "ideal_i4|ideal|--par i=4"
        "ideal_h4i4|ideal|--par h=4 --par i=4"
    )
fi
for f in 1 2 4 8 16 32 64; do
    configs+=("rda_i$f|rda|--par i=$f $RDA_SET")
done

run_one() {
    IFS='|' read -r name hw par <<<"$1"
    # shellcheck disable=SC2086
    if ! "$bin" run "$work/attention_dense.ff" --fusion full --param "S=$S" --param "NH=$NH" --param "DH=$DH" \
        --hw "$hw" $par >"$work/$name.out" 2>&1; then
        echo "FAILED" >>"$work/$name.out"
    fi
}
export -f run_one
export bin work S NH DH
start=$(date +%s)
printf '%s\n' "${configs[@]}" | xargs -P "$JOBS" -I{} bash -c 'run_one "$@"' _ {}
elapsed=$(($(date +%s) - start))

cycles() { awk '/^cycles/ {print $2}' "$work/$1.out"; }
status() {
    if grep -q "^result *verified" "$work/$1.out"; then echo verified; else echo "NOT VERIFIED: $(tail -1 "$work/$1.out")"; fi
}
speedup() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

if [ "$SWEEP_ONLY" != 1 ]; then
    base=$(cycles ideal_1)
    echo "Fused attention kernel, dense mask, S=$S NH=$NH DH=$DH, memory model off (--hw ideal)"
    echo
    echo "| lanes | cycles | speedup | |"
    echo "|---|---:|---:|---|"
    for c in "ideal_1|1" "ideal_h2|h=2" "ideal_h4|h=4" "ideal_i2|i=2" "ideal_i4|i=4" "ideal_h4i4|h=4 × i=4"; do
        IFS='|' read -r name label <<<"$c"
        n=$(cycles "$name")
        echo "| $label | $n | $(speedup "$base" "$n")× | $(status "$name") |"
    done
    echo
fi
base=$(cycles rda_i1)
echo "Second level (i), S=$S NH=$NH DH=$DH, rda machine (memory model on) $RDA_SET"
echo
echo "| lanes | cycles | speedup | |"
echo "|---|---:|---:|---|"
for f in 1 2 4 8 16 32 64; do
    n=$(cycles "rda_i$f")
    echo "| $f | $n | $(speedup "$base" "$n")× | $(status "rda_i$f") |"
done
echo
echo "($((${#configs[@]})) runs, $JOBS at a time, ${elapsed} s of wall time)"
