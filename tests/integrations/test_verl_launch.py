"""The verl launch scripts' own logic (examples/verl/common.sh), with a recording stand-in for the Python interpreter.

What the scripts pass to verl is composed and validated against verl's real config in
``tests/integrations/verl/test_trainer_mode.py`` (verl venv); here only the shell's choices: which splits it exports,
which exports it reuses, and which files and settings each family and source get.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "verl"


def launch(tmp_path: Path, script: str, *args: str, **env_vars: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run a launch script with PYTHON pointing at a stand-in that logs its arguments; return (result, calls)."""
    log = tmp_path / "calls.log"
    log.unlink(missing_ok=True)
    python = tmp_path / "python"
    python.write_text(f'#!/usr/bin/env bash\necho "$*" >> "{log}"\n', encoding="utf-8")
    python.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("ALFWORLD_DATA", "SOURCE", "FAMILY", "ATTN", "PRINT_ARGS")}
    env.update({"PYTHON": str(python), "DATA": str(tmp_path / "data"), **env_vars})
    result = subprocess.run(["bash", str(EXAMPLES / script), *args], env=env, capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
    return result, log.read_text(encoding="utf-8").splitlines() if log.exists() else []


def exports(calls: list[str]) -> list[str]:
    return [c.split("--split ")[1].split()[0] for c in calls if "export-verl" in c]


def test_a_launch_exports_each_split_once_then_reuses_it(tmp_path):
    result, calls = launch(tmp_path, "run_grpo.sh")
    assert result.returncode == 0, result.stderr
    assert exports(calls) == ["train", "eval_in_distribution", "eval_out_of_distribution"]
    assert all('--env-kwargs {"source": "procedural"}' in c for c in calls if "export-verl" in c)
    assert calls[-1].startswith("-m verl.trainer.main_ppo")
    for split in ("train", "eval_in_distribution", "eval_out_of_distribution"):  # the stand-in wrote no file
        (tmp_path / "data" / f"alfworld_procedural_{split}.parquet").touch()
    result, calls = launch(tmp_path, "run_empg.sh")
    assert exports(calls) == [] and result.stdout.count("reusing") == 3


def test_overridden_data_files_are_not_exported(tmp_path):
    result, calls = launch(tmp_path, "run_dapo.sh", "data.train_files=/mine/train.parquet",
                           "data.val_files=[/mine/val.parquet]")
    assert result.returncode == 0, result.stderr
    assert exports(calls) == [] and "data.train_files=/mine/train.parquet" in calls[-1]
    _, calls = launch(tmp_path, "run_dapo.sh", "data.val_files=[/mine/val.parquet]")
    assert exports(calls) == ["train"]


def test_the_source_names_the_files_so_real_and_procedural_exports_never_mix(tmp_path):
    _, calls = launch(tmp_path, "run_empg.sh", ALFWORLD_DATA=str(tmp_path))
    assert all('{"source": "real"}' in c and "alfworld_real_" in c for c in calls if "export-verl" in c)
    _, calls = launch(tmp_path, "run_gigpo.sh", FAMILY="webshop")
    assert {c.split("--env ")[1].split()[0] for c in calls if "export-verl" in c} == {"EMPG-WebShop-v0"}
    assert "algorithm.adv_estimator=gigpo" in calls[-1] and "data.max_prompt_length=4096" in calls[-1]


@pytest.mark.parametrize("variable,value", [("FAMILY", "minecraft"), ("SOURCE", "auto"), ("ATTN", "eager")])
def test_a_bad_choice_stops_before_anything_runs(tmp_path, variable, value):
    result, calls = launch(tmp_path, "run_grpo.sh", **{variable: value})
    assert result.returncode == 2 and calls == [] and f"{variable}={value}: choose" in result.stderr
