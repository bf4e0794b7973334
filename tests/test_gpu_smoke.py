"""scripts/gpu_smoke.py: a dry run on a machine without CUDA, and part (a)'s real code path on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_smoke.py"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA machine runs the smoke for real")
def test_without_cuda_it_says_what_it_would_run_and_exits_0():
    out = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=120,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr
    assert "dry run (no CUDA GPU here" in out.stdout and "Nothing was run." in out.stdout
    assert '"tasks_per_update": 16, "group_size": 8, "max_new_tokens": 512' in out.stdout
    assert "empg, gigpo, empg_gym_grpo, dapo" in out.stdout


def test_part_a_runs_our_trainer_on_a_random_qwen_shaped_model(tmp_path):
    out = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--shape", "tiny", "--updates", "1",
                          "--tasks", "2", "--group", "2", "--max-new-tokens", "8", "--micro-batch", "4",
                          "--skip-verl", "--out", str(tmp_path)],
                         capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_smoke.json").read_text())
    trainer = report["trainer"]
    assert report["device"] == "cpu" and report["verl"] == "skipped (--skip-verl)"
    assert trainer["updates"] == 1 and trainer["step_rows"] == 8 and trainer["response_len"] <= 8
    assert trainer["gen_tokens_per_s"] > 0 and trainer["update_tokens_per_s"] > 0
    assert (tmp_path / "model-tiny" / "config.json").is_file()
    assert json.loads((tmp_path / "model-tiny" / "config.json").read_text())["model_type"] == "qwen2"
