#!/usr/bin/env bash
# A second virtualenv for the verl integration (empg_gym/integrations/verl), layered on the main one.
# Usage: bash scripts/setup_verl.sh [MAIN_VENV] [VERL_VENV]   (called by `make setup-verl`; safe to re-run)
#
# verl 0.9.1 pins transformers >=5.5.3,<5.11 while the main venv keeps transformers 5.24, so verl cannot live in
# the main venv. This venv sees the main venv's packages through a .pth file; .pth entries come after the venv's
# own site-packages on sys.path, so what is installed here (verl, transformers 5.10.x, ...) wins and everything
# else (torch 2.13.0 CPU, gymnasium, alfworld, ...) comes from the main venv. pip never removes packages that
# live outside this venv ("Not uninstalling ... outside environment"), so the main venv is left as it is.
set -euo pipefail
MAIN="${1:-.venv}"
VENV="${2:-.venv-verl}"
PY="$VENV/bin/python"

if [ ! -x "$MAIN/bin/python" ]; then
  echo "setup_verl: no main venv at $MAIN; run 'make setup' first." >&2
  exit 1
fi
if [ ! -x "$PY" ]; then
  "$MAIN/bin/python" -m venv "$VENV"
fi
MAIN_SITE="$("$MAIN/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
VERL_SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$MAIN_SITE" > "$VERL_SITE/_empg_gym_main_venv.pth"
# The embedded model's GGUF, which scripts/setup.sh unpacked into the main venv, is this venv's too.
mkdir -p "$VENV/share"
ln -sfn "$(cd "$MAIN" && pwd)/share/empg-gym" "$VENV/share/empg-gym"

# Every package this venv adds at the version locks/verl.txt names; EMPG_GYM_UNLOCKED=1 resolves afresh (`make lock`).
# torch stays the main venv's CPU build: a constraint stops pip from ever pulling another (CUDA) torch.
LOCK="locks/verl.txt"
CONSTRAINTS="$VENV/constraints.txt"
echo "torch==$("$MAIN/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')" > "$CONSTRAINTS"
PIN=(-c "$CONSTRAINTS" -c "$LOCK")
[ "${EMPG_GYM_UNLOCKED:-0}" = 1 ] && PIN=(-c "$CONSTRAINTS")
"$PY" -m pip install -q "${PIN[@]}" --upgrade pip setuptools
# verl 0.9.1; TransferQueue (imported by verl's v1 trainer, only in verl's own heavy extras); tensordict 0.10.0
# (TransferQueue needs >= 0.10, verl allows <= 0.10.0); hydra-core's antlr4 runtime must be 4.9.3; kernels <0.13
# (the pyproject's verl extra says why).
"$PY" -m pip install -q "${PIN[@]}" -e ".[verl]" "antlr4-python3-runtime==4.9.3"
"$PY" scripts/lock.py fix-wheel-files
rm -f "$VENV/.installed"
"$PY" - <<'EOF'
import transformers, torch, verl, tensordict
import empg_gym.integrations.verl  # noqa: F401  (fails here, not in the tests, if the stack cannot import)
print(f"setup_verl: verl {verl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, "
      f"tensordict {tensordict.__version__}")
EOF
if [ "${EMPG_GYM_UNLOCKED:-0}" != 1 ]; then
  "$PY" scripts/lock.py check "$LOCK"
fi
"$PY" -m pip check
touch "$VENV/.installed"
