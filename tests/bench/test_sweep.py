"""Sweeps: key resolution, settings, and a real two-setting sweep through the CLI (results.csv, report, plot)."""

from __future__ import annotations

import io
import json

import pytest

from empg_gym.bench import BenchConfig
from empg_gym.bench.report import read_results
from empg_gym.bench.sweep import Target, parse_sweep, resolve_key, settings, variants
from empg_gym.cli import main
from empg_gym.errors import ConfigError
from tests.bench.test_bench import TINY
from tests.scripts import load_script


def test_keys_resolve_to_the_config_that_has_them():
    assert resolve_key("lr", "empg") == Target("train", "lr")  # TrainConfig wins over the algorithm's lr
    assert resolve_key("clip_high", "grpo") == Target("algo", "clip_high")
    assert resolve_key("zeta", "empg-dapo") == Target("algo", "empg.zeta")
    assert resolve_key("empg.k_next", "empg") == Target("algo", "empg.k_next")
    assert resolve_key("gamma", "gigpo") == Target("algo", "gigpo.gamma")
    assert resolve_key("zeta", "grpo") is None  # GRPO has no EMPG part: the key does not apply
    assert resolve_key("env.reward_mode", "grpo") == Target("env", "reward_mode")
    with pytest.raises(ConfigError, match="Did you mean 'zeta'"):
        resolve_key("zetta", "empg")
    with pytest.raises(ConfigError, match="--algos"):
        resolve_key("seed", "empg")
    with pytest.raises(ConfigError, match="no algorithm setting"):
        resolve_key("empg.nope", "empg")


def test_parse_and_expand_grid_and_zip():
    assert parse_sweep(["k=0.5,1,2", "env.reward_mode=sparse,dense", "use_kl=true,false"]) == {
        "k": (0.5, 1, 2), "env.reward_mode": ("sparse", "dense"), "use_kl": (True, False)}
    for bad in (["k"], ["k="], ["k=1,,2"], ["k=1,1"], ["k=1", "k=2"]):
        with pytest.raises(ConfigError):
            parse_sweep(bad)
    grid = settings({"k": (1, 2), "zeta": (0, 0.1, 0.2)})
    assert len(grid) == 6 and grid[0] == (("k", 1), ("zeta", 0))
    assert settings({"k": (1, 2), "zeta": (0, 0.1)}, "zip") == [(("k", 1), ("zeta", 0)), (("k", 2), ("zeta", 0.1))]
    with pytest.raises(ConfigError, match="lengths differ"):
        settings({"k": (1, 2), "zeta": (0,)}, "zip")
    # A key that does not apply to an algorithm collapses its settings: GRPO runs the lr values only.
    labels = [v.label for v in variants(("grpo", "empg"), {"lr": (1e-3, 2e-3), "zeta": (0, 0.1)})]
    assert labels == ["grpo[lr=0.001]", "grpo[lr=0.002]", "empg[lr=0.001,zeta=0]", "empg[lr=0.001,zeta=0.1]",
                      "empg[lr=0.002,zeta=0]", "empg[lr=0.002,zeta=0.1]"]


def test_bench_config_builds_each_settings_train_config():
    cfg = BenchConfig(envs=("EMPG-KeyDoor-v0",), algos=("grpo", "empg"), train={**TINY, "algo_overrides":
                      {"use_kl": False}}, sweep={"zeta": [0, 0.1], "lr": [0.01]})
    assert cfg.labels == ("grpo[lr=0.01]", "empg[zeta=0,lr=0.01]", "empg[zeta=0.1,lr=0.01]")
    tc = cfg.train_config("EMPG-KeyDoor-v0", "empg[zeta=0.1,lr=0.01]", 3)
    assert (tc.algo, tc.seed, tc.lr) == ("empg", 3, 0.01)
    assert tc.algorithm().empg.zeta == 0.1 and tc.algorithm().use_kl is False  # merged with the bench's overrides
    assert cfg.swept_values("empg[zeta=0.1,lr=0.01]") == {"zeta": 0.1, "lr": 0.01}
    with pytest.raises(ConfigError, match="not a run of this bench"):
        cfg.train_config("EMPG-KeyDoor-v0", "empg", 0)
    with pytest.raises(ConfigError, match="must be > 0"):  # a bad value fails before anything runs
        BenchConfig(algos=("empg",), train=TINY, sweep={"empg.eps": [0.0]})


def test_sweep_of_two_settings_writes_two_rows_per_seed_and_split(tmp_path):
    out = io.StringIO()
    code = main(["bench", "--envs", "EMPG-KeyDoor-v0", "--algos", "grpo,empg", "--seeds", "0,1", "--steps", "1",
                 "--eval-tasks", "2", "--eval-splits", "eval_in_distribution,eval_out_of_distribution",
                 "--sweep", "zeta=0,0.1", "--out", str(tmp_path)]
                + [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()], out=out)
    assert code == 0
    assert out.getvalue().startswith("empg-gym bench (custom): 6 runs;")  # (grpo + 2 EMPG settings) x 2 seeds
    rows = read_results(tmp_path)
    after = [r for r in rows if r["update"] == 1 and r["algo"].startswith("empg")]
    for seed in (0, 1):
        for split in ("eval_in_distribution", "eval_out_of_distribution"):
            mine = [r for r in after if r["seed"] == seed and r["split"] == split]
            assert sorted(r["zeta"] for r in mine) == [0.0, 0.1]
            assert sorted(r["algo"] for r in mine) == ["empg[zeta=0.1]", "empg[zeta=0]"]
    assert all("zeta" not in r for r in rows if r["algo"] == "grpo")  # the baseline runs once, unswept
    report = (tmp_path / "report.md").read_text()
    assert "## Sweep" in report and "| EMPG-KeyDoor-v0 | empg[zeta=0.1] |" in report
    assert (tmp_path / "sweep_tradeoff.png").stat().st_size > 1000
    # bench.json reruns the sweep exactly
    assert BenchConfig.from_file(tmp_path / "bench.json").labels == ("grpo", "empg[zeta=0]", "empg[zeta=0.1]")


def test_the_research_benches_are_study_variants_that_train_each_setting_once():
    """scripts/empg_research.py's benches parse into study-preset variants; every label a question compares is
    trained by exactly one of its benches or the baseline (ablation) bench, so no setting is trained twice."""
    from pathlib import Path

    from empg_gym.bench import get_preset
    from empg_gym.bench.presets import run_settings
    from empg_gym.cli import bench_config, build_parser

    research = load_script("empg_research")
    benches = {b: bench_config(build_parser().parse_args(research.command(b, Path("out"), "0,1")))
               for e in research.EXPERIMENTS.values() for b in e.benches}
    study = run_settings(get_preset("study"))
    assert all(run_settings(cfg) == study and cfg.envs == ("EMPG-KeyRooms-v0",) for cfg in benches.values())
    labels = [label for cfg in benches.values() for label in cfg.labels]
    assert len(labels) == len(set(labels))  # each setting trained once
    assert benches["uncertainty"].labels == ("empg[uncertainty=renyi2]",)
    dense = "[env.reward_mode=dense,reward_signal=return]"
    assert benches["dense"].labels == (f"grpo{dense}", f"empg{dense}")
    run = benches["dense"].train_config("EMPG-KeyRooms-v0", f"empg{dense}", 0)
    assert run.env_kwargs == {"reward_mode": "dense"} and run.algorithm().reward_signal == "return"
    for name, exp in research.EXPERIMENTS.items():
        trained = {label for b in (*exp.benches, research.BASELINE) for label in benches[b].labels}
        assert {a for pair in exp.pairs for a in pair} <= trained, name
    # the grid: 3 k x 3 zeta cells, the default's (empg) and zeta = 0's at k = 1 (empg-g) from the ablation
    cells = {(k, z): research.grid_label(k, z) for k in research.K_VALUES for z in research.ZETA_VALUES}
    assert len(set(cells.values())) == 9 and cells[(1, 0.05)] == "empg" and cells[(1, 0)] == "empg-g"
    for (k, z), label in cells.items():
        algo = next(cfg for cfg in benches.values() if label in cfg.labels).train_config(
            "EMPG-KeyRooms-v0", label, 0).algorithm()
        assert (algo.empg.k, algo.empg.zeta) == (k, z), label


def test_a_research_confirmation_bench_trains_exactly_the_setting_it_names():
    """A pair resolved on a question's seeds is rerun on held-out seeds: each setting alone, in its own folder."""
    from pathlib import Path

    from empg_gym.cli import bench_config, build_parser

    research = load_script("empg_research")
    labels = [label for e in research.EXPERIMENTS.values() for pair in e.pairs for label in pair]
    folders = set()
    for label in labels:
        cfg = bench_config(build_parser().parse_args(research.confirm_command(label, Path("o"), "30,31")))
        assert cfg.labels == (label,) and cfg.seeds == (30, 31)
        folders.add(research.confirm_folder(label))
    assert len(folders) == len(set(labels))  # no two settings share a folder
    assert not set(research.CONFIRM_SEEDS) & {s for n, e in research.EXPERIMENTS.items() if n != "ablation"
                                               for s in e.seeds}


def test_a_held_out_verdict_confirms_only_the_same_verdict():
    """A verdict holds when the held-out seeds repeat it (same pair, direction, split, budget); a different one that
    resolves there only is reported apart, never as a confirmation."""
    research = load_script("empg_research")
    won = ["b > a (ID, final)", "c > a (OOD, final)"]
    kept, other = research.held_verdicts(won, ["a > b (OOD, matched env steps)", "c > a (OOD, final)"])
    assert kept == ["c > a (OOD, final)"] and other == ["a > b (OOD, matched env steps)"]
    line = research.held_summary(*research.held_verdicts(won, ["a > b (ID, final)"]))
    assert "none of them holds" in line and "resolve another instead: a > b (ID, final)" in line
    assert research.held_summary([], []).endswith("none of them holds")
