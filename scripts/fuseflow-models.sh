#!/usr/bin/env bash
# Runs every MLIR file of the FuseFlow compiler's tests/models/ through `fuseflow run` (fully
# fused, as the FuseFlow compiler compiles a file, and unfused) and prints a table: file,
# statements, groups (unfused), cycles unfused and fused, and `verified` or the one-line error.
#
#   scripts/fuseflow-models.sh CHECKOUT_OR_GITDIR [FUSEFLOW_BINARY]
#
# CHECKOUT_OR_GITDIR: a checkout of evanmwilliams/fuseflow-compiler, or its bare git directory
# (the files are then read from HEAD into a temporary directory). Nothing of it is committed
# here. Sizes are shrunk with --param D<size>=N (only for sizes a file has) so that every file
# simulates in seconds; sparse arguments are generated at the default density (0.1).
set -euo pipefail
src=${1:?usage: scripts/fuseflow-models.sh CHECKOUT_OR_GITDIR [FUSEFLOW_BINARY]}
bin=${2:-target/release/fuseflow}
[ -x "$bin" ] || { echo "build first: cargo build --release -p fuseflow (or pass the binary)" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
if [ -d "$src/tests/models" ]; then
    root=$src
else
    root=$tmp/checkout
    for f in $(git --git-dir="$src" ls-tree -r --name-only HEAD tests/models); do
        mkdir -p "$root/$(dirname "$f")"
        git --git-dir="$src" show "HEAD:$f" >"$root/$f"
    done
fi
# Paper-scale sizes → small ones (heads 12 → 2 and head width 64 → 16 keep 12·64 = 768 → 32).
shrink="12=2 50=16 64=16 121=8 128=16 256=16 512=16 768=32 784=16 1024=32 1767=48 2048=32 2304=32 3072=64 4096=32 50176=64 50257=64 262144=64 1048576=64"
printf '%-72s %5s %6s %10s %10s  %s\n' file stmts groups unfused full result
ok=0; total=0
while IFS= read -r f; do
    total=$((total + 1))
    rel=${f#"$root/"}
    params=()
    for kv in $shrink; do
        size=${kv%%=*}
        # Sizes in commented-out lines do not count (the function must have them).
        if grep -vE '^[[:space:]]*//' "$f" | grep -qE "tensor<([0-9]+x)*${size}x"; then params+=(--param "D$kv"); fi
    done
    line=$("$bin" run "$f" --fusion unfused --json "${params[@]}" 2>&1) || true
    res=$(printf '%s' "$line" | python3 -c '
import json, sys
text = sys.stdin.read()
try:
    r = json.loads(text)
except ValueError:
    print("ERR " + " ".join(text.strip().splitlines()[-1:])[:200]); sys.exit()
users = {s for g in r["groups"] for s in g["statements"]}
print("OK %d %d %d %s" % (len(users), len(r["groups"]), r["cycles"], "verified" if r["verified"] else "NOT VERIFIED: %s" % r["reason"]))
')
    if [[ $res == OK* ]]; then
        read -r _ stmts groups cyc verdict <<<"$res"
        full=$("$bin" run "$f" --fusion full --json "${params[@]}" 2>&1 | python3 -c '
import json, sys
try:
    r = json.loads(sys.stdin.read()); print(r["cycles"] if r["verified"] else "unverified")
except ValueError:
    print("error")
')
        [ "$verdict" = verified ] && [[ $full =~ ^[0-9]+$ ]] && ok=$((ok + 1))
        printf '%-72s %5s %6s %10s %10s  %s\n' "$rel" "$stmts" "$groups" "$cyc" "$full" "$verdict"
    else
        printf '%-72s %5s %6s %10s %10s  %s\n' "$rel" - - - - "${res#ERR }"
    fi
done < <(find "$root/tests/models" -name '*.mlir' | sort)
echo "$ok of $total files run and verify (unfused and fully fused)"
