#!/usr/bin/env bash
# The Slurm path for real: brings up a single-node Slurm cluster from Debian's packages
# (slurm-wlm, munge; installed when missing) on this machine, submits
# deploy/slurm-explore.sh as a 4-task job array sweeping every fusion partition of
# examples/gcn.ff into one shared results directory, merges the shards with `fuseflow merge`
# in a job that depends on the array (as the script's header says to), and checks that
# results.csv, report.md, report.html and the plots equal, byte for byte, those of a local
# single-process sweep; then runs deploy/slurm-reproduce.sh (fig14 at small scale) as a 3-task
# array and a render job, whose tables must equal one process's. Then it stops the daemons it
# started.
#
#   scripts/slurm-test.sh
#
# Everything lives in a temporary directory (configuration, munge key and socket, spool,
# state, logs; removed at the end unless KEEP=1): this host is controller and compute node
# (CPUs=2), the daemons listen on free loopback ports, and nothing under /etc is used, so it
# does not disturb (or need) a Slurm or munge already installed. Must run as root (the
# daemons run as root here). Every wait has a timeout (TIMEOUT seconds for the array,
# default 600); the script never hangs. Environment: FUSEFLOW_BIN (default: build
# target/debug/fuseflow), KEEP=1 to keep the temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
start=$(date +%s)
say() { echo "slurm-test [$(($(date +%s) - start)) s]: $*"; }
die() {
    echo "slurm-test: FAILED: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || die "run as root (the test starts munged, slurmctld and slurmd)"

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null ||
    ! command -v munged >/dev/null; then
    say "installing slurm-wlm and munge from Debian's packages"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends slurm-wlm munge ||
        { apt-get update && apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends slurm-wlm munge; }
    say "installed"
fi
say "$(slurmctld -V), munge $(munged --version 2>&1 | awk '{print $1}')"

if [ -z "${FUSEFLOW_BIN:-}" ]; then
    cargo build --locked -p fuseflow
    FUSEFLOW_BIN=$repo/target/debug/fuseflow
fi
FUSEFLOW_BIN=$(realpath "$FUSEFLOW_BIN")
export FUSEFLOW_BIN

tmp=$(mktemp -d /tmp/fuseflow-slurm.XXXXXX)
chmod 700 "$tmp"
pids=()
cancel=""
cleanup() {
    code=$?
    # shellcheck disable=SC2086 # job ids, one or two
    if [ -n "$cancel" ]; then scancel $cancel 2>/dev/null || true; fi
    # Stop the daemons this script started, newest first, and wait for them.
    for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
        kill "${pids[i]}" 2>/dev/null || true
    done
    for pid in "${pids[@]}"; do
        for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "$code" -ne 0 ]; then
        for log in "$tmp"/*.log "$tmp"/out/*.out; do
            [ -f "$log" ] && { echo "--- $log (last lines)" >&2; tail -n 20 "$log" >&2; }
        done
    fi
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $tmp" >&2; else rm -rf "$tmp"; fi
    exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Two free loopback ports for slurmctld and slurmd.
read -r ctld_port slurmd_port < <(python3 -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
host=$(hostname -s)
mem=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/out" "$tmp/results"

# munge: a fresh key and a private socket, so an installed munged is neither used nor needed.
head -c 1024 /dev/urandom >"$tmp/munge.key"
chmod 400 "$tmp/munge.key"
munged --foreground --force --socket="$tmp/munge.sock" --key-file="$tmp/munge.key" \
    --pid-file="$tmp/munged.pid" --log-file="$tmp/munged.log" --seed-file="$tmp/munged.seed" \
    >>"$tmp/munged.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$tmp/munge.sock" ] && break; sleep 0.1; done
[ -S "$tmp/munge.sock" ] || die "munged did not start"
munge --socket="$tmp/munge.sock" -n | unmunge --socket="$tmp/munge.sock" >/dev/null || die "munge round trip"

cat >"$tmp/slurm.conf" <<EOF
ClusterName=fuseflow-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$tmp/munge.sock
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=3600
MailProg=/bin/true
NodeName=$host NodeAddr=127.0.0.1 CPUs=2 RealMemory=$mem State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF=$tmp/slurm.conf
slurmctld -D -i >>"$tmp/slurmctld.log" 2>&1 &
pids+=($!)
slurmd -D -N "$host" >>"$tmp/slurmd.log" 2>&1 &
pids+=($!)

wait_for() { # SECONDS WHAT COMMAND...: polls COMMAND until it succeeds
    local limit=$1 what=$2 t0
    shift 2
    t0=$(date +%s)
    until "$@" >/dev/null 2>&1; do
        [ $(($(date +%s) - t0)) -lt "$limit" ] || die "timed out after $limit s waiting for $what"
        sleep 0.5
    done
}
node_idle() { [ "$(timeout 10 sinfo -h -n "$host" -o %T 2>/dev/null)" = idle ]; }
wait_for 60 "the node to be idle" node_idle
say "single-node cluster up: $(sinfo -h -o '%P %D %c %T')"

# The local single-process sweep the merged shards must equal.
program=examples/gcn.ff
"$FUSEFLOW_BIN" explore "$program" --out "$tmp/local" >"$tmp/local.log"
say "local sweep done: $(grep -E '^points' "$tmp/local.log" || tail -n 1 "$tmp/local.log")"

# Waits (at most TIMEOUT seconds) until every task of job $1 has ended; prints
# "TASK STATE EXITCODE" per task (TASK is - for a job that is not an array). The states are
# read again until none is pending or running: on a busy machine a query can fail or come
# back before a pending task's record does, which must not read as the end of the job.
wait_job() {
    local t0 states
    t0=$(date +%s)
    while :; do
        [ $(($(date +%s) - t0)) -lt "${TIMEOUT:-600}" ] || die "job $1 did not finish in ${TIMEOUT:-600} s"
        states=$(timeout 30 scontrol -o show job "$1" | while read -r line; do
            field() { grep -oE "(^| )$1=[^ ]+" <<<"$line" | head -n 1 | cut -d= -f2; }
            echo "$(field ArrayTaskId || true) $(field JobState) $(field ExitCode)" | sed 's/^ /- /'
        done | sort)
        if [ -n "$states" ] && ! grep -Eq ' (PENDING|RUNNING|CONFIGURING|COMPLETING|SUSPENDED|REQUEUED) ' <<<"$states"; then
            echo "$states"
            return
        fi
        sleep 1
    done
}

# Submits a job (sbatch options and script, or --wrap), prints its id. --mem is lowered from
# the scripts' own so that the jobs fit any CI machine (small programs need little).
submit() {
    local id
    id=$(timeout 60 sbatch --parsable --mem=512M "$@")
    echo "${id%%;*}"
}

# The job array, as the script's header says to submit it.
jobid=$(FUSEFLOW_OUT=$tmp/results submit --array=0-3 --output="$tmp/out/%A_%a.out" deploy/slurm-explore.sh "$program")
# The merge, as a job that runs once every task succeeded.
merge_job=$(submit --dependency=afterok:"$jobid" --output="$tmp/out/merge.out" \
    --wrap "$FUSEFLOW_BIN merge $tmp/results --out $tmp/merged")
cancel="$jobid $merge_job"
say "submitted job array $jobid and merge job $merge_job"
states=$(wait_job "$jobid")
say "array finished:"$'\n'"$states"
[ "$(grep -c ' COMPLETED 0:0$' <<<"$states")" -eq 4 ] || die "not every array task completed with exit code 0"
for i in 0 1 2 3; do
    grep -q "shard        $i/4" "$tmp"/out/*_"$i".out || die "array task $i did not run shard $i/4"
    [ -s "$tmp/results/points.shard-$i-of-4.jsonl" ] || die "no log of shard $i/4"
done
state=$(wait_job "$merge_job")
[ "$state" = "- COMPLETED 0:0" ] || die "the merge job ended as: $state"
cancel=""
say "merge job: $(cut -c1-60 "$tmp/out/merge.out")..."
for f in results.csv report.md report.html pareto-cycles-bytes.svg pareto-flops-bytes.svg; do
    cmp -s "$tmp/local/$f" "$tmp/merged/$f" || die "$f of the merged array differs from the local sweep's"
done
lines=$(wc -l <"$tmp/merged/points.jsonl")
rows=$(($(wc -l <"$tmp/local/results.csv") - 1))
[ "$lines" -eq "$rows" ] || die "the merged log has $lines points, the local sweep $rows"
say "explore passed: $rows points from 4 array tasks merge to the local sweep's results.csv, report.md, report.html and plots, byte for byte"

# A paper experiment the same way (deploy/slurm-reproduce.sh): fig14 at small scale (5
# configurations) as a 3-task array into one directory, then the render job; its tables and
# plot must equal those of one process.
"$FUSEFLOW_BIN" reproduce fig14 --out "$tmp/repro-local" --jobs 1 >"$tmp/repro-local.log"
jobid=$(FUSEFLOW_OUT=$tmp/repro submit --array=0-2 --cpus-per-task=1 --output="$tmp/out/%A_%a.out" \
    deploy/slurm-reproduce.sh fig14)
render_job=$(submit --dependency=afterany:"$jobid" --output="$tmp/out/render.out" \
    --wrap "$FUSEFLOW_BIN reproduce fig14 --from $tmp/repro")
cancel="$jobid $render_job"
say "submitted reproduce array $jobid and render job $render_job"
states=$(wait_job "$jobid")
[ "$(grep -c ' COMPLETED 0:0$' <<<"$states")" -eq 3 ] || die "not every reproduce task completed with exit code 0: $states"
for i in 0 1 2; do
    [ -s "$tmp/repro/fig14/records.shard-$i-of-3.jsonl" ] || die "no records of shard $i/3"
done
state=$(wait_job "$render_job")
[ "$state" = "- COMPLETED 0:0" ] || die "the render job ended as: $state"
cancel=""
for f in table.md table.csv plot.svg; do
    cmp -s "$tmp/repro-local/fig14/$f" "$tmp/repro/fig14/$f" || die "fig14/$f of the array differs from one process's"
done
say "reproduce passed: fig14 from 3 array tasks renders the same table.md, table.csv and plot.svg as one process"
say "passed"
