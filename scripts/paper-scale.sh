#!/usr/bin/env bash
# Paper-scale measurements that take too long on a laptop, run side by side on a machine with
# at least 16 cores; every run is verified against the reference evaluator. Writes one
# directory of results (JSON reports, Markdown tables, timings) and a tarball of it.
#
#   scripts/paper-scale.sh OUT_DIR [LIMIT_SECONDS]
#
# - GPT-3 Small decoder block (examples/gpt3_decoder.ff --preset paper) unfused, partial and
#   full, each pinned to 2 cores (taskset) with --jobs 2: what a 2-core machine takes.
# - Blocked vs scalar fused BigBird attention at S=1024, 12 heads x 64, B = 16, 32, 64 on the
#   rda machine (as scripts/block-speedup.sh runs them; one run per core).
# - Parallel-lanes scaling of the fused attention kernel with a dense mask
#   (scripts/par-scaling.sh) at S=512, 12 heads x 64, on the remaining cores.
# Each run is stopped at LIMIT_SECONDS (default 540) so that partial results come back.
# Uses target/release/fuseflow, or FUSEFLOW.
set -uo pipefail
out=${1:?usage: scripts/paper-scale.sh OUT_DIR [LIMIT_SECONDS]}
limit=${2:-540}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${FUSEFLOW:-$root/target/release/fuseflow}
mkdir -p "$out"
cores=$(nproc)
echo "cores $cores, limit $limit s, $(date -u)" >"$out/info.txt"
run() { # name cpus command...
    local name=$1 cpus=$2 start rc
    shift 2
    start=$(date +%s.%N)
    timeout "$limit" taskset -c "$cpus" "$@" >"$out/$name.out" 2>"$out/$name.err"
    rc=$?
    awk -v a="$start" -v b="$(date +%s.%N)" -v rc="$rc" 'BEGIN { printf "%.1f s wall, exit %d\n", b - a, rc }' >"$out/$name.time"
}
for f in unfused partial full; do
    case $f in unfused) c=0,1 ;; partial) c=2,3 ;; full) c=4,5 ;; esac
    run "gpt3_$f" "$c" "$bin" run "$root/examples/gpt3_decoder.ff" --preset paper --fusion "$f" --jobs 2 --json &
done
c=6
for b in 16 32 64; do
    for mode in blocked scalar; do
        extra=()
        [ "$mode" = blocked ] && extra=(--block "$b")
        run "attention_${mode}_$b" "$c" "$bin" run "$root/examples/bigbird_attention.ff" --fusion full --hw rda \
            --preset paper --param "B=$b" --json "${extra[@]}" &
        c=$((c + 1))
    done
done
if [ "$cores" -ge 16 ]; then
    run par_512 12-15 env FUSEFLOW="$bin" JOBS=4 "$root/scripts/par-scaling.sh" 512 12 64 &
fi
wait
tar czf "$out.tgz" -C "$(dirname "$out")" "$(basename "$out")"
