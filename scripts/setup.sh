#!/usr/bin/env bash
# One-time set-up on a fresh machine: a virtual environment in .venv with the plugin (editable) and its
# dependencies, then the job folders generated from app_configs/. Safe to re-run; it only does what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
# pip skips what is already satisfied, so a re-run costs seconds.
.venv/bin/python -m pip install --quiet -e ".[test]"
.venv/bin/feddcg-jobgen --all
echo "set-up done: activate with 'source .venv/bin/activate'"
