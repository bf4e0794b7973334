"""scripts/headline.py: its benches are valid study-preset variants, its answer reads a real bench; reuse is safe."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest

from empg_gym.bench import get_preset, run_bench
from empg_gym.bench.presets import RUN_SETTINGS
from empg_gym.bench.questions import reuse_runs
from empg_gym.bench.records import RESULT, run_dir
from empg_gym.bench.stats import verdict
from empg_gym.cli import bench_config, build_parser
from tests.bench.test_bench import _bench
from tests.scripts import load_script


@pytest.fixture(scope="module")
def headline():
    yield load_script("headline")
    del sys.modules["headline"]


def test_the_headline_benches_are_study_variants(headline):
    study = get_preset("study")
    for name, q in headline.QUESTIONS.items():
        cfg = bench_config(build_parser().parse_args(headline.command(name, Path("out"), "0,1")))
        assert cfg.envs == (q.env,) and cfg.labels == q.algos and cfg.seeds == (0, 1)
        assert (cfg.train, cfg.eval_every_env_steps) == (study.train, study.eval_every_env_steps)
        assert cfg.updates == (q.updates or study.updates)
        assert all(x in q.algos and y in q.algos for x, y in q.pairs)
    assert headline.QUESTIONS["keyrooms"].pairs[0] == ("empg", "grpo")
    assert len(headline.QUESTIONS["keyrooms"].seeds) == 60
    assert headline.QUESTIONS["hard"].pairs == (("empg-dapo", "dapo"),)
    assert headline.QUESTIONS["hard"].updates == 10  # DAPO is at the ceiling there after the study's 30


def test_answer_and_reuse_on_a_small_real_bench(headline, tmp_path):
    cfg = _bench(seeds=(0, 1), updates=2, eval_samples=1, eval_every_env_steps=40)
    run_bench(cfg, tmp_path / "src", log=lambda _: None)
    q = headline.Question("t", "EMPG-KeyDoor-v0", ("grpo", "empg"), (("empg", "grpo"),))
    table, budget = headline.answer(tmp_path / "src", q)
    assert budget and budget % 40 == 0 and len(table) == 2  # one row per eval split
    assert [(r.x, r.y, r.split, r.runs) for r in table] == [("empg", "grpo", "ID", (2, 2)), ("empg", "grpo", "OOD", (2, 2))]
    cells = [c.strip() for c in table[0].markdown().strip("|").split("|")]
    assert cells[:3] == ["`empg` vs `grpo`", "ID", "2 / 2"] and len(cells) == 9
    assert 0.0 <= float(cells[4].split()[0]) <= 1.0 and ("unresolved" in cells[5] or ">" in cells[5])
    assert table[0].matched is not None and cells[8] == verdict(table[0].matched.comparison)

    # reuse copies only from a bench whose settings are the question's
    want = dataclasses.replace(get_preset("study"), envs=("EMPG-KeyDoor-v0",), algos=("grpo",), seeds=(0, 1))
    assert reuse_runs(tmp_path / "src", tmp_path / "out", want, log=lambda _: None) == 0  # a different bench
    meta = json.loads((tmp_path / "src" / "bench.json").read_text())
    meta["config"].update({k: (list(v) if isinstance(v, tuple) else v) for k, v in want.__dict__.items()
                           if k in RUN_SETTINGS})
    (tmp_path / "src" / "bench.json").write_text(json.dumps(meta))
    shutil.rmtree(run_dir(tmp_path / "src", "EMPG-KeyDoor-v0", "grpo", 1))  # seed 1 never finished there
    assert reuse_runs(tmp_path / "src", tmp_path / "out", want) == 1
    assert (run_dir(tmp_path / "out", "EMPG-KeyDoor-v0", "grpo", 0) / RESULT).is_file()
    assert not run_dir(tmp_path / "out", "EMPG-KeyDoor-v0", "empg", 0).exists()  # only the labels asked for
    assert reuse_runs(tmp_path / "src", tmp_path / "out", want) == 0  # already there
