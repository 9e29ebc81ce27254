#!/usr/bin/env bash
# The README's test command: the Python package's tests (scripts/python-test.sh: a cached
# virtual environment with torch, the package built into it, pytest), then the Rust test suite.
# FUSEFLOW_PYTHON_TESTS=0 skips the Python part (the Rust suite needs no Python or torch).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${FUSEFLOW_PYTHON_TESTS:-1}" != "0" ]; then
    scripts/python-test.sh
fi
cargo test --workspace
