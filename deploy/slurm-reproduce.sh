#!/usr/bin/env bash
# A paper experiment (`fuseflow reproduce`) as a Slurm job array: each array task runs one
# shard of the experiment's configurations (the shard comes from SLURM_ARRAY_TASK_ID /
# SLURM_ARRAY_TASK_COUNT, offset by SLURM_ARRAY_TASK_MIN and divided by
# SLURM_ARRAY_TASK_STEP) and appends its records to its own file in one shared output
# directory; a dependent job renders the tables and plots from every shard's records:
#
#   jid=$(sbatch --parsable --array=0-35 deploy/slurm-reproduce.sh fig12 --scale paper)
#   sbatch --dependency=afterany:${jid%%;*} --wrap "fuseflow reproduce fig12 --from reproduce-paper"
#
# `fuseflow reproduce fig12 --scale paper --list` prints the configurations (96 for fig12);
# with as many tasks as configurations each task runs one. Configurations differ in cost by
# orders of magnitude (docs/reproduce.md has the measured times): give the array the longest
# one's time, or split by --only (e.g. `--only gpt3/` on bigger nodes). A task that is killed
# or fails loses nothing recorded: resubmitting the array (or one task) resumes it. The render
# job depends on `afterany` so that it also shows which rows failed.
#
# Submit from anywhere (the programs are built into the binary). FUSEFLOW_OUT sets the
# output directory (default reproduce-paper), FUSEFLOW_BIN the binary (default: `fuseflow` on
# PATH); sbatch passes both on. Exit codes (docs/reproduce.md): 0 done, 1 a configuration
# failed or did not verify (recorded; a rerun tries it again), 2 invalid input.
# scripts/slurm-test.sh runs this on a single-node Slurm cluster and checks the rendered
# tables equal a single process's byte for byte.
#SBATCH --job-name=fuseflow-reproduce
#SBATCH --cpus-per-task=2
#SBATCH --mem=32G
#SBATCH --time=24:00:00
#SBATCH --output=fuseflow-reproduce-%A_%a.out
set -euo pipefail
experiment=${1:?usage: sbatch --array=0-N deploy/slurm-reproduce.sh EXPERIMENT [reproduce options...]}
shift
out=${FUSEFLOW_OUT:-reproduce-paper}
fuseflow=${FUSEFLOW_BIN:-fuseflow}
exec "$fuseflow" reproduce "$experiment" --out "$out" --jobs "${SLURM_CPUS_PER_TASK:-1}" "$@"
