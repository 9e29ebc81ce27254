#!/usr/bin/env bash
# A `fuseflow explore` sweep as a Slurm job array: each array task runs one shard (the shard
# comes from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, offset by SLURM_ARRAY_TASK_MIN),
# all shards write into one shared results directory (each its own log; the group cache is
# shared safely), and a dependent job merges them.
#
#   sbatch --array=0-3 deploy/slurm-explore.sh examples/gcn.ff --dataset cora-synth
#   # afterwards (or as a dependency: see the bottom of this file):
#   fuseflow merge results/gcn --out results/gcn-merged
#
# Exit codes (docs/explore.md): 0 done, 2 invalid configuration (do not retry), 75 retryable
# (rerun the same task: it resumes). `--requeue` plus the retry loop below handles 75.
#SBATCH --job-name=fuseflow-explore
#SBATCH --cpus-per-task=1
#SBATCH --mem=8G
#SBATCH --time=04:00:00
#SBATCH --output=fuseflow-explore-%A_%a.out
set -euo pipefail
program=${1:?usage: sbatch --array=0-N deploy/slurm-explore.sh PROGRAM [explore options...]}
shift
out=${FUSEFLOW_OUT:-results/$(basename "$program" .ff)}
fuseflow=${FUSEFLOW_BIN:-fuseflow}
for attempt in 1 2 3; do
    set +e
    "$fuseflow" explore "$program" --out "$out" "$@"
    code=$?
    set -e
    if [ "$code" -ne 75 ]; then
        exit "$code"
    fi
    echo "retryable failure (attempt $attempt), resuming" >&2
done
exit 75
