"""The verl venv holds exactly what ``locks/verl.txt`` names beside the main venv, and ``pip check`` is clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

if os.environ.get("EMPG_GYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401  (the verl venv must import verl: fail, never skip)
else:
    pytest.importorskip("verl", reason="verl is not installed (the verl tests run in .venv-verl: make test-verl)")

ROOT = Path(__file__).resolve().parents[3]


def test_verl_venv_matches_its_lock_and_pip_check_is_clean():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "lock.py"), "check", str(ROOT / "locks" / "verl.txt")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    pip = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr
