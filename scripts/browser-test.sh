#!/usr/bin/env bash
# The HTML report in a real browser: runs a small real sweep (every fusion partition of
# examples/gcn.ff, 1,024 points, verified), loads its report.html in headless Chromium from
# Debian's packages (installed when missing) and checks, over the DevTools protocol
# (scripts/browser_check.py, Python's standard library only), that it loads with no console
# error or warning and no network request, and that both Pareto plots render: an SVG element
# laid out on the page with one drawn circle per point of results.csv plus the red front.
# First it proves the checker can fail: a page with a console error and a blocked external
# image must be refused.
#
#   scripts/browser-test.sh [SCREENSHOT.png]      # default: target/browser-test/report.png
#
# Environment: FUSEFLOW_BIN (default: build target/debug/fuseflow), CHROMIUM (default
# /usr/bin/chromium). Exit status non-zero on any failure. Look at the screenshot.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
work=target/browser-test
shot=${1:-$work/report.png}
mkdir -p "$work"

chromium=${CHROMIUM:-/usr/bin/chromium}
if [ ! -x "$chromium" ]; then
    echo "installing chromium from Debian's packages"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium ||
        { $sudo apt-get update && $sudo apt-get -o DPkg::Lock::Timeout=600 install -y --no-install-recommends chromium; }
fi
"$chromium" --version 2>/dev/null

if [ -z "${FUSEFLOW_BIN:-}" ]; then
    cargo build --locked -p fuseflow
    FUSEFLOW_BIN=target/debug/fuseflow
fi

# The checker must be able to fail: a console error and an external load are refused.
cat >"$work/broken.html" <<'EOF'
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; script-src 'unsafe-inline'">
<title>broken</title></head>
<body><img src="https://fuseflow.invalid/x.png" alt=""><script>console.error("deliberate");</script></body></html>
EOF
set +e
broken=$(timeout 120 python3 scripts/browser_check.py --page "$work/broken.html" --chromium "$chromium" 2>&1)
code=$?
set -e
if [ "$code" -ne 1 ] || ! grep -q "console error" <<<"$broken" || ! grep -q "fuseflow.invalid" <<<"$broken"; then
    echo "browser-test: the checker did not catch a deliberately broken page (exit $code):" >&2
    echo "$broken" >&2
    exit 1
fi
echo "checker self-test: the broken page was refused ($(grep -c FAIL <<<"$broken") findings)"

out=$work/gcn
rm -rf "$out"
"$FUSEFLOW_BIN" explore examples/gcn.ff --out "$out" >"$work/explore.log"
tail -n 3 "$work/explore.log"
timeout 180 python3 scripts/browser_check.py "$out" "$shot" --chromium "$chromium"
echo "browser-test: passed in $(($(date +%s) - start)) s"
