#!/usr/bin/env bash
# Set-up on a fresh machine: a virtual environment in .venv with the plugin (editable) and its dependencies, and the
# plugin copied into each job's app/custom/ (BYOC; generated, never committed). Safe to re-run: pip skips what is
# installed. Committed job files are not touched: after editing app_configs/, run `.venv/bin/feddcg-jobgen --all`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/feddcg-jobgen --all --custom-only
echo "set-up done: activate with 'source .venv/bin/activate'"
