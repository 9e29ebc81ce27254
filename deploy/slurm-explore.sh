#!/usr/bin/env bash
# A `fuseflow explore` sweep as a Slurm job array: each array task runs one shard (the shard
# comes from SLURM_ARRAY_TASK_ID / SLURM_ARRAY_TASK_COUNT, offset by SLURM_ARRAY_TASK_MIN and
# divided by SLURM_ARRAY_TASK_STEP), all shards write into one shared results directory
# (each its own log; the group cache is shared safely), and a dependent job merges them:
#
#   jid=$(sbatch --parsable --array=0-3 deploy/slurm-explore.sh examples/gcn.ff --dataset cora-synth)
#   sbatch --dependency=afterok:${jid%%;*} --wrap "fuseflow merge results/gcn --out results/gcn-merged"
#
# Submit from the repository (or wherever PROGRAM's path is relative to): the tasks run in the
# submission directory. FUSEFLOW_OUT sets the results directory (default results/PROGRAM),
# FUSEFLOW_BIN the binary (default: `fuseflow` on PATH); sbatch passes both on. The reports a
# task writes into the shared directory cover only the points logged so far: the merged
# directory's are the sweep's. scripts/slurm-test.sh runs exactly this on a single-node
# Slurm cluster and checks the merged files equal a local sweep's byte for byte.
#
# Exit codes (docs/explore.md): 0 done, 2 invalid configuration (do not retry), 75 retryable:
# the loop below reruns the task, which resumes where it stopped, up to three times.
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
