#!/usr/bin/env bash
# Prints the path of the cached virtual environment for the Python package's tests, creating it
# first when it does not exist. The environment holds exactly python/requirements-test.txt; its
# directory name carries a hash of that file and of the interpreter's version, so changing a
# pin or the interpreter makes a new one and never mutates an old one. Created under a temporary
# name and renamed into place, so an interrupted install never leaves a half-built environment
# that later runs would trust.
#   FUSEFLOW_VENV_CACHE  where environments live (default ~/.cache/fuseflow)
#   PYTHON               the interpreter to build it with (default python3; must be >= 3.10)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
"$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' || {
    echo "error: $py is $("$py" --version 2>&1); the Python package needs Python >= 3.10 (set PYTHON=...)" >&2
    exit 2
}
cache=${FUSEFLOW_VENV_CACHE:-$HOME/.cache/fuseflow}
key=$( (cat python/requirements-test.txt; "$py" --version) | sha256sum | cut -c1-16)
venv="$cache/venv-$key"
if [ ! -x "$venv/bin/python" ]; then
    mkdir -p "$cache"
    tmp="$venv.tmp.$$"
    rm -rf "$tmp"
    echo "creating $venv (torch is a ~5.5 GB CUDA build: a few minutes the first time)" >&2
    "$py" -m venv "$tmp" >&2
    "$tmp/bin/python" -m pip install --quiet --disable-pip-version-check -r python/requirements-test.txt >&2
    # A venv records its own path in its scripts; rebuilding it in place after the rename keeps
    # those paths right (the packages stay where they are).
    mv "$tmp" "$venv"
    "$py" -m venv --upgrade "$venv" >&2
fi
echo "$venv"
