#!/usr/bin/env bash
# Scalar vs blocked cycles of the fused BigBird attention kernel (benchmarks.md §4.2), one row
# per block size, as a Markdown table: the mask's block and the tile size are both B, the
# memory model is `rda`'s (HBM on), and both runs are verified against the reference evaluator.
# `fuseflow reproduce fig16` runs the same comparison as recorded, verified configurations with
# the table, plot and the paper's claim beside them (docs/reproduce.md).
#
#   scripts/block-speedup.sh [S NH DH [B ...]]     defaults: 256 2 64, B = 16 32 64
#   scripts/block-speedup.sh 1024 12 64            the paper's scale (GPT-3 Small attention)
#
# Extra flags for `fuseflow run` go in FUSEFLOW_FLAGS (e.g. FUSEFLOW_FLAGS="--set tile.matmul.ii=1").
# Uses target/release/fuseflow (built first if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-256}
NH=${2:-2}
DH=${3:-64}
if [ $# -gt 3 ]; then BLOCKS=("${@:4}"); else BLOCKS=(16 32 64); fi
BIN=${FUSEFLOW:-target/release/fuseflow}
[ -x "$BIN" ] || cargo build --release -p fuseflow >&2
echo "Fused BigBird attention (examples/bigbird_attention.ff --fusion full), S=$S, $NH heads x $DH, --hw rda ${FUSEFLOW_FLAGS:-}"
echo
echo "| B | scalar cycles | blocked cycles | speedup | scalar tokens | blocked tokens | scalar wall | blocked wall | verified |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---|"
for B in "${BLOCKS[@]}"; do
  # shellcheck disable=SC2206
  common=(run examples/bigbird_attention.ff --fusion full --hw rda --param "S=$S" --param "NH=$NH"
          --param "DH=$DH" --param "B=$B" --json ${FUSEFLOW_FLAGS:-})
  scalar=$("$BIN" "${common[@]}" || true)
  blocked=$("$BIN" "${common[@]}" --block "$B" || true)
  python3 - "$B" "$scalar" "$blocked" <<'PY'
import json, sys
b, s, k = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
ok = "yes" if s["verified"] and k["verified"] else f"NO ({s['reason']} / {k['reason']})"
print(f"| {b} | {s['cycles']:,} | {k['cycles']:,} | {s['cycles'] / max(k['cycles'], 1):,.1f}x | "
      f"{s['tokens']:,} | {k['tokens']:,} | {s['wall_seconds']:.2f} s | {k['wall_seconds']:.2f} s | {ok} |")
PY
done
