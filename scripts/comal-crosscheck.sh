#!/usr/bin/env bash
# Cross-checks our Comal exports against the Comal simulator (fuseflow-authors/comal), through a
# runner binary that you build yourself; this script never builds or downloads Comal.
#
# Usage:  scripts/comal-crosscheck.sh PATH_TO_COMAL_RUNNER [EXAMPLE.ff ...]
#
# For every example (default: examples/*.ff), every statement unfused
# (`fuseflow compile --stmt N --emit comal`; each step `--stmt N.K` of a built-in statement such
# as masked_softmax, which runs as one graph per step) and every fusion group under
# `--fusion partial` and `--fusion full` (`--fusion G --stmt N`), it exports the graph and its inputs, runs the runner
# with Comal's memory model off (COMAL_ENABLE_HBM=0), compares the runner's output tensors with
# ours (`fuseflow simulate --comal ... --compare-outputs`, f32 tolerance: relative 1e-4,
# absolute 1e-4; the largest absolute error over the outputs is shown), and prints one table
# row per graph:
#
#   | example | granularity | group | runs | outputs equal | cycles ours | cycles Comal | diff |
#
# followed by the notes `fuseflow compile` printed (what Comal cannot run) for the graphs that
# failed.
# "cycles ours" is `fuseflow simulate --comal` of the export on `--hw comal --memory ideal`,
# which equals `fuseflow run --hw comal --memory ideal` for that statement or group.
#
# The runner's command-line interface (docs/comal.md says how to write and build one):
#
#   RUNNER --proto GRAPH.bin --data DIR --out OUTDIR
#
#   - builds GRAPH.bin with Comal's own proto driver and its tensor directory DIR, with writer
#     contexts it can read back after the run (Comal itself writes no output tensors);
#   - runs it in Comal's scalar mode and prints `Elapsed Cycles: N` on stdout (the figure the
#     `comal` binary prints for the same graph);
#   - writes every output tensor T into OUTDIR in the SAM tensor-directory layout:
#     `tensor_T_mode_<m>_seg` and `tensor_T_mode_<m>_crd` per level writer (`<m>` = the writer's
#     `mode_val`), `tensor_T_mode_vals`, and `tensor_T_mode_shape` from the writers' sizes;
#   - exits non-zero when building or running the graph fails, including a panic in any
#     context thread (Comal can exit 0 after one, so the runner must check).
#
# Parallel lanes: PAR="i=2" (or "h=2 i=4", "1:i=2": each word becomes one `--par` option)
# exports every graph with those lanes. Graphs that do not iterate the index, or get no lanes,
# are skipped (no row); graphs whose lanes the export refuses (a gather Comal's Gather cannot rebuild:
# `docs/comal.md`, "Parallel lanes") get a "refused" row with the reason and do not count as
# failures; every other graph must run on Comal with equal outputs, as without PAR.
#
# Environment: FUSEFLOW (the fuseflow binary; default target/release/fuseflow if built, else
# `fuseflow` on the PATH), TIMEOUT (seconds per Comal run, default 600), KEEP=1 to keep the work
# directory. Exit code: 0 when every graph ran on Comal with equal outputs, 1 otherwise, 2 on
# bad usage.
set -uo pipefail

if [ $# -lt 1 ] || [ ! -x "$1" ]; then
  echo "usage: $0 PATH_TO_COMAL_RUNNER [EXAMPLE.ff ...]   (the runner must be an executable file)" >&2
  exit 2
fi
runner=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
shift
cd "$(dirname "$0")/.."
if [ -z "${FUSEFLOW:-}" ]; then
  if [ -x target/release/fuseflow ]; then FUSEFLOW=target/release/fuseflow; else FUSEFLOW=fuseflow; fi
fi
if ! command -v "$FUSEFLOW" >/dev/null 2>&1; then
  echo "$0: no fuseflow binary ($FUSEFLOW); build it with cargo build --release -p fuseflow" >&2
  exit 2
fi
timeout_s=${TIMEOUT:-600}
par_opts=()
for p in ${PAR:-}; do par_opts+=(--par "$p"); done
if [ $# -gt 0 ]; then programs=("$@"); else programs=(examples/*.ff); fi
work=$(mktemp -d "${TMPDIR:-/tmp}/comal-crosscheck.XXXXXX")
if [ "${KEEP:-0}" != 1 ]; then trap 'rm -rf "$work"' EXIT; else echo "work directory: $work" >&2; fi
export COMAL_ENABLE_HBM=0

# A JSON number or boolean field, the first occurrence (our JSON is one line).
field() { grep -o "\"$1\":[^,}]*" | head -n 1 | cut -d: -f2; }

failures=0
refused=0
rows=0
notes=""
echo "| example | granularity | group | runs | outputs equal | cycles ours | cycles Comal | diff |"
echo "|---|---|---:|---|---|---:|---:|---:|"
# Checks one graph: `check EXAMPLE.ff GRANULARITY GROUP SELECTION...` exports it with
# `fuseflow compile PROGRAM SELECTION --emit comal`, runs Comal and ours, and prints its row.
# Returns 3 when the selection does not exist (past the last statement or group), 4 when it
# names a built-in statement that runs as several graphs unfused (the caller checks each step).
check() {
  local prog=$1 gran=$2 group=$3
  shift 3
  local ex d ours ours_cycles rc comal_cycles runs why equal cmp first err diff n_notes
  ex=$(basename "$prog" .ff)
  d="$work/$ex.$gran.$group"
  mkdir -p "$d"
  if ! "$FUSEFLOW" compile "$prog" "$@" "${par_opts[@]}" --emit comal --out "$d/export" >"$d/compile.log" 2>&1; then
    if grep -q "does not exist\|has steps [0-9.]* to [0-9.]*, not" "$d/compile.log"; then return 3; fi
    if grep -q "graphs unfused: choose one with --stmt" "$d/compile.log"; then return 4; fi
    if [ ${#par_opts[@]} -gt 0 ]; then
      # This graph does not iterate the index: nothing to parallelize.
      if grep -q "is not iterated\|no statement iterates\|no group iterates\|does not iterate" "$d/compile.log"; then
        [ "${KEEP:-0}" = 1 ] || rm -rf "$d"
        return 0
      fi
      # A gather Comal's Gather cannot rebuild: refused on purpose, with the reason.
      if grep -q "(gather)\|(fork)\|gather\b.*Comal" "$d/compile.log"; then
        echo "| $ex | $gran | $group | refused: $(head -n 1 "$d/compile.log" | head -c 200) | | | | |"
        refused=$((refused + 1)); rows=$((rows + 1))
        [ "${KEEP:-0}" = 1 ] || rm -rf "$d"
        return 0
      fi
    fi
    echo "| $ex | $gran | $group | export failed: $(head -n 1 "$d/compile.log") | | | | |"
    failures=$((failures + 1)); rows=$((rows + 1))
    return 0
  fi
  if [ ${#par_opts[@]} -gt 0 ] && ! grep -q "fork;index=" "$d/export/graph.bin"; then
    # A graph that does not iterate the index has no lanes: the run without PAR covers it.
    [ "${KEEP:-0}" = 1 ] || rm -rf "$d"
    return 0
  fi
  ours=$("$FUSEFLOW" simulate --comal "$d/export/graph.bin" --data "$d/export" --hw comal --memory ideal --json 2>"$d/ours.err")
  ours_cycles=$(printf '%s' "$ours" | field cycles)
  timeout "$timeout_s" "$runner" --proto "$d/export/graph.bin" --data "$d/export" --out "$d/comal" >"$d/comal.log" 2>&1
  rc=$?
  comal_cycles=$(grep -o 'Elapsed Cycles: [0-9]*' "$d/comal.log" | tail -n 1 | grep -o '[0-9]*$')
  if [ $rc -eq 124 ]; then
    runs="no: timeout after ${timeout_s} s"
  elif [ $rc -ne 0 ] || grep -q "panicked" "$d/comal.log"; then
    why=$(grep -m 1 -A 1 "panicked at" "$d/comal.log" | sed "s/.*panicked at //" | tr "\n" " " | head -c 160)
    [ -z "$why" ] && why=$(grep -v '^\(Crd write count\|Num reads\|Op count\|Reduce count\|Write count\|Uncompressed\)' "$d/comal.log" | tail -n 1 | head -c 160)
    runs="no: ${why:-exit $rc}"
  else
    runs=yes
  fi
  equal=""
  if [ "$runs" = yes ]; then
    cmp=$("$FUSEFLOW" simulate --comal "$d/export/graph.bin" --data "$d/export" --hw comal --memory ideal \
      --json --compare-outputs "$d/comal" 2>&1)
    if printf '%s' "$cmp" | grep -q '"equal":false'; then
      first=$(printf '%s' "$cmp" | grep -o '"\(first_mismatch\|error\)":"[^"]*"' | head -n 1 | cut -d'"' -f4 | head -c 160)
      equal="no: $first"
    elif printf '%s' "$cmp" | grep -q '"equal":true'; then
      err=$(printf '%s' "$cmp" | grep -o '"max_abs_error":[^,}]*' | cut -d: -f2 | sort -g | tail -n 1)
      equal="yes (max abs error $(awk -v e="$err" 'BEGIN { printf "%.1e", e }'))"
    else
      equal="no: $(printf '%s' "$cmp" | head -n 1 | head -c 160)"
    fi
  fi
  diff=""
  if [ -n "$ours_cycles" ] && [ -n "$comal_cycles" ] && [ "$runs" = yes ]; then
    diff=$(awk -v a="$ours_cycles" -v b="$comal_cycles" 'BEGIN { if (b == 0) print "n/a"; else printf "%+.1f %%", 100 * (a - b) / b }')
  fi
  [ "$runs" = yes ] || comal_cycles=""
  echo "| $ex | $gran | $group | $runs | $equal | ${ours_cycles:-?} | ${comal_cycles:-} | $diff |"
  rows=$((rows + 1))
  if [ "$runs" != yes ] || [ "${equal%% *}" != yes ]; then
    failures=$((failures + 1))
    # What `fuseflow compile` noted Comal cannot run (the first two notes).
    n_notes=$(grep -c '^note: Comal' "$d/compile.log")
    if [ "$n_notes" -gt 0 ]; then
      notes+="- $ex $gran $group ($n_notes notes): $(grep '^note: Comal' "$d/compile.log" | head -n 2 | sed 's/^note: Comal: //' | paste -sd ';' -)"$'\n'
    fi
  fi
  [ "${KEEP:-0}" = 1 ] || rm -rf "$d"
  return 0
}

for prog in "${programs[@]}"; do
  for gran in unfused partial full; do
    n=0
    while :; do
      if [ "$gran" = unfused ]; then sel=(--stmt "$n"); else sel=(--fusion "$gran" --stmt "$n"); fi
      check "$prog" "$gran" "$n" "${sel[@]}"
      case $? in
        3) break ;;
        4)
          # A built-in statement (softmax, masked_softmax, layernorm): one graph per step N.K.
          k=0
          while :; do
            check "$prog" "$gran" "$n.$k" --stmt "$n.$k"
            [ $? -eq 0 ] || break
            k=$((k + 1))
          done
          ;;
      esac
      n=$((n + 1))
    done
  done
done
echo
if [ ${#par_opts[@]} -gt 0 ]; then
  echo "$rows graphs with ${par_opts[*]}: $((rows - failures - refused)) ran on Comal with equal outputs, $refused refused by the export, $failures failed"
else
  echo "$rows graphs, $((rows - failures)) ran on Comal with equal outputs, $failures did not"
fi
if [ -n "$notes" ]; then
  echo
  echo "What fuseflow compile noted for those graphs:"
  printf '%s' "$notes"
fi
[ $failures -eq 0 ]
