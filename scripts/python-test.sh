#!/usr/bin/env bash
# The Python package's tests: creates (first time) or reuses the cached virtual environment of
# python/requirements-test.txt (scripts/python-env.sh), lints the bindings crate (clippy), builds
# the package into the environment with maturin (release, sharing the workspace's target/
# directory) and runs pytest on python/tests.
# Extra arguments go to pytest (e.g. `-k gcn`, `-x`).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(scripts/python-env.sh)
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
(
    cd python
    # The bindings crate is outside the workspace, so the workspace's clippy does not see it.
    cargo clippy --all-targets --locked --quiet -- -D warnings
    VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/python" -m maturin develop --release --locked --quiet
)
cd python
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
