#!/usr/bin/env bash
# Refresh the dependency locks (`make lock`): rebuild both venvs from a fresh resolve, write locks/main.txt and
# locks/verl.txt from them, then run the test suite on exactly those venvs. Commit the new locks only if it passes.
# Usage: bash scripts/lock.sh [VENV_DIR] [VERL_VENV_DIR]
set -euo pipefail
VENV="${1:-.venv}"
VERL_VENV="${2:-.venv-verl}"
rm -rf "$VENV" "$VERL_VENV"
EMPG_GYM_UNLOCKED=1 bash scripts/setup.sh "$VENV"
EMPG_GYM_UNLOCKED=1 bash scripts/setup_verl.sh "$VENV" "$VERL_VENV"
"$VENV/bin/python" scripts/lock.py freeze locks/main.txt \
  --what "The main venv (scripts/setup.sh): pip install -c locks/main.txt -e '.[all,dev]'; Linux x86_64, CPython 3.11."
"$VERL_VENV/bin/python" scripts/lock.py freeze locks/verl.txt \
  --what "What the verl venv (scripts/setup_verl.sh) installs beside the main venv's packages; Linux x86_64, CPython 3.11."
git --no-pager diff --stat -- locks/ || true
make test VENV="$VENV" VERL_VENV="$VERL_VENV"
echo "lock: the tests passed on the new locks; review \`git diff locks/\` and commit it."
