"""The dependency locks (``locks/*.txt``, ``scripts/lock.py``): the venv running these tests holds exactly its lock.

``make test`` runs this file in the main venv and ``tests/integrations/verl/test_lock_verl.py`` in the verl venv, so
a package version the lock does not name fails CI, wherever it came from.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.scripts import load_script

ROOT = Path(__file__).resolve().parents[1]


def load_lock_module():
    return load_script("lock", "empg_gym_lock_script")


def in_verl_venv() -> bool:
    """The verl venv sees the main venv through this ``.pth`` file (scripts/setup_verl.sh)."""
    return (Path(sysconfig.get_paths()["purelib"]) / "_empg_gym_main_venv.pth").is_file()


def run_check(lock: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "lock.py"), "check", str(ROOT / lock)],
                          capture_output=True, text=True, timeout=120)


def test_differences_name_every_kind_of_drift():
    lock = load_lock_module()
    got = lock.differences({"kernels": "0.12.3", "numpy": "2.4.6", "tqdm": "4.70.1"},
                           {"kernels": "0.19.1", "numpy": "2.4.6", "rich": "15.0.0"})
    assert got == ["kernels 0.19.1 is installed but the lock says 0.12.3",
                   "rich 15.0.0 is installed but not in the lock",
                   "tqdm==4.70.1 is locked but not installed"]


def test_read_lock_normalises_names_and_rejects_ranges(tmp_path):
    lock = load_lock_module()
    path = tmp_path / "lock.txt"
    path.write_text("# header\nTransformers==5.25.0\ntyping_extensions==4.16.0  # why\n\n", encoding="utf-8")
    assert lock.read_lock(path) == {"transformers": "5.25.0", "typing-extensions": "4.16.0"}
    path.write_text("kernels>=0.12\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"lock.txt:1: 'kernels>=0.12' is not a 'name==version' pin"):
        lock.read_lock(path)


def test_lock_files_pin_every_package_exactly():
    lock = load_lock_module()
    main, verl = lock.read_lock(ROOT / "locks" / "main.txt"), lock.read_lock(ROOT / "locks" / "verl.txt")
    assert main["torch"].startswith("2.13.0") and "empg-gym" not in main
    # the verl venv's transformers (verl pins <5.11) only imports with kernels <0.13 (issue #21)
    assert verl["transformers"].startswith("5.10.") and verl["kernels"].startswith("0.12.")


@pytest.mark.skipif(sys.prefix == sys.base_prefix or in_verl_venv(),
                    reason="checks the main venv (scripts/setup.sh); this interpreter is not it")
def test_main_venv_matches_its_lock_and_pip_check_is_clean():
    result = run_check("locks/main.txt")
    assert result.returncode == 0, result.stderr
    pip = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert pip.returncode == 0, pip.stdout + pip.stderr


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs a venv built by scripts/setup*.sh")
def test_check_fails_on_a_version_the_lock_does_not_name(tmp_path):
    pins = (ROOT / "locks" / ("verl.txt" if in_verl_venv() else "main.txt")).read_text(encoding="utf-8")
    assert "\npip==" in pins  # both venvs lock their own pip
    drifted = tmp_path / "drifted.txt"
    drifted.write_text(pins.replace("\npip==", "\npip==0.0.1+drift  # was "), encoding="utf-8")
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "lock.py"), "check", str(drifted)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "the lock says 0.0.1+drift" in result.stderr and "make lock" in result.stderr
