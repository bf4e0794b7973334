"""The eval schedule in env steps as well as updates: the trainer's and the bench's."""

from __future__ import annotations

import json

import pytest

from empg_gym.agents.config import TrainConfig
from empg_gym.agents.trainer import Trainer, eval_budget, eval_due
from empg_gym.bench import BenchConfig, run_bench
from empg_gym.bench.records import read_jsonl, read_results, run_dir
from empg_gym.errors import ConfigError

TINY = dict(model="tiny-actions", max_new_tokens=1, require_think=False, history_length=0, progress=False,
            tasks_per_update=2, group_size=4, lr=3e-3, mini_batch_size=32, micro_batch_size=16)


def _crossings(played: list[float], every: int) -> list[int]:
    """The updates (1-based) after which the env steps first reach each multiple of ``every`` (by hand)."""
    out, evaluated = [], 0
    for update, steps in enumerate(played, 1):
        if steps // every * every > evaluated:
            out.append(update)
            evaluated = steps // every * every
    return out


def test_budget_and_due_by_hand():
    assert [eval_budget(n, 100, e) for n, e in ((99, 0), (100, 0), (199, 100), (350, 100), (0, 0))] == [
        None, 100, None, 300, None]
    assert eval_budget(10_000, 0, 0) is None
    assert (eval_due(4, 2, None), eval_due(3, 2, None), eval_due(3, 0, 100), eval_due(3, 0, None)) == (
        True, False, True, False)
    with pytest.raises(ConfigError, match="eval_every_env_steps=-1 must be an int >= 0"):
        TrainConfig(eval_every_env_steps=-1)
    with pytest.raises(ConfigError, match="eval_every_env_steps"):
        BenchConfig(eval_every_env_steps=-5)
    with pytest.raises(ConfigError, match=r"set them on BenchConfig"):
        BenchConfig(train={"eval_every_env_steps": 10})
    from empg_gym.cli import bench_config, build_parser

    args = build_parser().parse_args(["bench", "--preset", "quick", "--eval-every", "5", "--eval-every-env-steps",
                                      "4000", "--out", "x"])
    assert (bench_config(args).eval_every, bench_config(args).eval_every_env_steps) == (5, 4000)


def test_trainer_evaluates_when_env_steps_reach_each_budget(tmp_path):
    cfg = TrainConfig(env_id="EMPG-KeyDoor-v0", algo="grpo", updates=3, eval_tasks=1, eval_every=0,
                      eval_every_env_steps=60, **TINY)
    Trainer(cfg, tmp_path).train()
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    updates = [r for r in rows if "rollout/success_rate" in r]
    played = [r["budget/env_steps"] for r in updates]
    due = _crossings(played, 60)
    assert due, played  # 8 trajectories of up to 10 steps cross 60 env steps in the first update or two
    assert [r["update"] for r in updates if "eval/env_steps" in r] == due
    for r in updates:
        if "eval/env_steps" in r:
            assert r["eval/env_steps"] == r["budget/env_steps"]
            assert r["eval/budget_env_steps"] == r["budget/env_steps"] // 60 * 60
            assert "eval/eval_in_distribution/success_rate" in r


def test_bench_evaluates_at_env_step_budgets_and_the_end(tmp_path):
    bench = BenchConfig(envs=("EMPG-KeyDoor-v0",), algos=("grpo",), seeds=(0,), updates=3, eval_tasks=2,
                        eval_every=0, eval_every_env_steps=70, train={**TINY, "checkpoint_every": 1})
    run_bench(bench, tmp_path, log=lambda _: None)
    folder = run_dir(tmp_path, "EMPG-KeyDoor-v0", "grpo", 0)
    played = [m["budget/env_steps"] for m in read_jsonl(folder / "metrics.jsonl")]
    evals = read_jsonl(folder / "evals.jsonl")
    assert sorted({e["update"] for e in evals}) == sorted({0, *_crossings(played, 70), 3})
    for e in evals[1:]:
        assert e["env_steps"] == played[e["update"] - 1]
    budgets = [e.get("budget_env_steps") for e in evals if e["update"] in _crossings(played, 70)]
    assert budgets and all(b == played[e["update"] - 1] // 70 * 70
                           for b, e in zip(budgets, [e for e in evals if e["update"] in _crossings(played, 70)],
                                           strict=True))
    rows = read_results(tmp_path)
    assert {r["update"]: r["env_steps"] for r in rows} == {e["update"]: e["env_steps"] for e in evals}
