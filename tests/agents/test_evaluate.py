"""Evaluation: every task greedily and k times sampled, both averaged and logged; pooled envs change nothing."""

from __future__ import annotations

import json

import pytest

from empg_gym.agents.config import TrainConfig
from empg_gym.agents.evaluate import EnvPool, evaluate_policy, play_tasks, summarize
from empg_gym.agents.trainer import build_policy
from empg_gym.errors import ConfigError

CFG = TrainConfig(env_id="EMPG-KeyRooms-v0", model="tiny-actions", max_new_tokens=1, require_think=False,
                  history_length=0, prompt_template="{observation}", seed=3)


@pytest.fixture(scope="module")
def policy():
    return build_policy(CFG)


def test_greedy_and_sampled_episodes_are_logged_and_averaged(policy, tmp_path):
    log = tmp_path / "eval.jsonl"
    result = evaluate_policy(policy, CFG, split="eval_out_of_distribution", n_tasks=5, samples=3, log_path=log)
    episodes = [json.loads(line) for line in log.read_text().splitlines()]
    greedy = [e for e in episodes if e["mode"] == "greedy"]
    sampled = [e for e in episodes if e["mode"] == "sampled"]
    assert len(greedy) == 5 and len(sampled) == 15 and len(episodes) == 20
    tasks = [e["task_id"] for e in greedy]
    assert len(set(tasks)) == 5 and all(e["sample"] == 0 for e in greedy)
    for task in tasks:  # each task has samples 0, 1, 2
        assert sorted(e["sample"] for e in sampled if e["task_id"] == task) == [0, 1, 2]
    assert result["num_tasks"] == 5 and result["samples_per_task"] == 3
    assert result["success_rate"] == pytest.approx(sum(e["won"] for e in greedy) / 5)
    assert result["success_sampled"] == pytest.approx(sum(e["won"] for e in sampled) / 15)
    assert all(e["steps"] and len(e["steps"]) == e["length"] for e in episodes)
    # the untrained policy samples distinct actions: the k episodes of a task are not copies of each other
    assert len({tuple(s["action"] for s in e["steps"]) for e in sampled}) > 5


def test_sampling_leaves_the_greedy_result_alone(policy):
    alone = evaluate_policy(policy, CFG, n_tasks=6, samples=0)
    both = evaluate_policy(policy, CFG, n_tasks=6, samples=2)
    assert "success_sampled" not in alone and "samples_per_task" not in alone
    assert {k: v for k, v in both.items() if "sampled" not in k and k != "samples_per_task"} == alone
    assert evaluate_policy(policy, CFG, n_tasks=6) == alone  # config.eval_samples = 0 by default


def test_pooled_envs_give_the_same_episodes_as_fresh_ones(policy):
    pool = EnvPool(CFG)
    tasks = [f"keyrooms-eval_in_distribution-{i:03d}" for i in range(4)]
    fresh = play_tasks(policy, CFG, tasks, split="eval_in_distribution", samples=2)
    pooled = [play_tasks(policy, CFG, tasks, split="eval_in_distribution", samples=2, envs=pool) for _ in range(2)]
    assert pooled[0] == pooled[1] == fresh
    assert len(pool.envs) == 8  # the sampled pass's 4 tasks x 2 envs; the greedy pass reused 4 of them
    chunked = play_tasks(policy, CFG, tasks, split="eval_in_distribution", samples=2, batch_size=3)
    assert [(e["task_id"], e["mode"], e["sample"]) for e in chunked] == [
        (e["task_id"], e["mode"], e["sample"]) for e in fresh]
    pool.close()
    assert pool.envs == []


def test_summaries_of_old_logs_and_bad_arguments(policy):
    old = [{"task_id": "a", "task_type": "t", "won": True, "score": 1.0, "length": 3},
           {"task_id": "b", "task_type": "t", "won": False, "score": 0.0, "length": 5}]
    assert summarize(old) == {"num_tasks": 2.0, "success_rate": 0.5, "score": 0.5, "episode_len": 4.0,
                              "success_rate/t": 0.5, "all/success": 0.5, "t/success": 0.5}  # + per-type metrics
    assert summarize([]) == {"num_tasks": 0.0}
    with pytest.raises(ConfigError, match="samples=-1 must be an int >= 0"):
        play_tasks(policy, CFG, ["keyrooms-eval_in_distribution-000"], split="eval_in_distribution", samples=-1)
    with pytest.raises(ConfigError, match="eval_samples=-2 must be an int >= 0"):
        TrainConfig(eval_samples=-2)


def test_bench_config_passes_eval_samples_to_its_runs():
    from empg_gym.bench import BenchConfig

    bench = BenchConfig(eval_samples=4, train={"model": "tiny-actions"})
    assert bench.train_config(bench.envs[0], bench.algos[0], 0).eval_samples == 4
    with pytest.raises(ConfigError, match="eval_samples=-1"):
        BenchConfig(eval_samples=-1)
    with pytest.raises(ConfigError, match="eval_samples"):
        BenchConfig(train={"eval_samples": 2})
