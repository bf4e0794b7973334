"""EMPG-DeepSearch-v0 on the embedded generated world: oracle, malformed turns, budget, rewards, arguments."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest

import empg_gym  # noqa: F401  (registers the ids)
from empg_gym.core import EpisodeOverError
from empg_gym.envs.deepsearch.env import DeepSearchConfig, DeepSearchEnv
from empg_gym.envs.deepsearch.protocol import INVALID_ACTION_FEEDBACK
from empg_gym.errors import ConfigError

ENV_ID = "EMPG-DeepSearch-v0"


@pytest.fixture
def env():
    e = gym.make(ENV_ID, split="eval_in_distribution")
    yield e
    e.close()


def _play_oracle(env, task_id):
    env.reset(options={"task_id": task_id})
    u = env.unwrapped
    gold, seen, steps = set(u.current_task.data["gold_doc_ids"]), set(), 0
    for action in u.oracle_actions():
        obs, reward, terminated, truncated, info = env.step(action)
        steps += 1
        assert info["action_valid"], (action, obs)
        seen |= set(info.get("retrieved_ids", []))
    return reward, terminated, truncated, info, gold <= seen, steps


@pytest.mark.parametrize("split", ["eval_in_distribution", "eval_out_of_distribution"])
def test_oracle_wins_every_eval_question_and_reaches_the_gold_passages(split):
    env = gym.make(ENV_ID, split=split)
    ids = env.unwrapped.task_ids()
    assert len(ids) == 200
    for tid in ids:
        reward, terminated, truncated, info, reached_gold, steps = _play_oracle(env, tid)
        assert reward == 1.0 and terminated and not truncated and info["won"] and info["score"] == 1.0, tid
        assert reached_gold, tid
        assert steps == env.unwrapped.current_task.data["hops"] + 1 <= 4
    env.close()


def test_first_observation_has_protocol_and_question(env):
    obs, info = env.reset(seed=0)
    assert obs.endswith(f"Question: {info['task']}")
    assert "<search>" in obs and "<answer>" in obs and "up to 4 times" in obs
    assert info["admissible_actions"] == [] and info["source"] == "embedded" and info["split"] == "eval_in_distribution"
    quiet = DeepSearchEnv(split="eval_in_distribution", show_instructions=False)
    assert quiet.reset(seed=0)[0] == f"Question: {info['task']}"


def test_search_observation_is_search_r1_information_block(env):
    env.reset(seed=1)
    obs, reward, terminated, truncated, info = env.step("<think>look it up</think><search> Tarnholm city </search>")
    assert obs.startswith("<information>Doc 1(Title: \"") and obs.endswith("</information>")
    assert obs.count("(Title: ") == len(info["retrieved_ids"]) <= 3
    assert reward == 0.0 and not terminated and info["query"] == "Tarnholm city" and info["searches_used"] == 1


@pytest.mark.parametrize(
    "action",
    [
        "The answer is probably Tarnholm.",
        "<search> Tarnholm",
        "<search>a</search><answer>b</answer>",
        "<answer>a</answer><answer>b</answer>",
        "<search>a</search> <search>b</search>",
        "",
    ],
)
def test_malformed_turns_give_feedback_and_leave_state_unchanged(env, action):
    env.reset(seed=5)
    u = env.unwrapped
    before_plan = u.oracle_actions()
    obs, reward, terminated, truncated, info = env.step(action)
    assert obs == INVALID_ACTION_FEEDBACK
    assert info["action_valid"] is False and info["invalid_reason"] and info["searches_used"] == 0
    assert reward == 0.0 and not terminated and not truncated and not info["won"]
    assert u.oracle_actions() == before_plan
    for a in before_plan:  # still solvable: the invalid turn changed nothing but the step count
        obs, reward, terminated, truncated, info = env.step(a)
    assert info["won"] and terminated


def test_non_string_actions_are_invalid_not_crashes(env):
    env.reset(seed=2)
    obs, _, _, _, info = env.step(12345)
    assert info["action_valid"] is False and obs == "Invalid action: expected a string, got int."
    assert info["invalid_reason"] == "expected a string, got int" and info["searches_used"] == 0
    plan = env.unwrapped.oracle_actions()
    obs, _, _, _, info = env.step(plan[0].encode())  # bytes are not decoded: the action type is str
    assert info["action_valid"] is False and info["searches_used"] == 0
    assert obs == "Invalid action: expected a string, got bytes; decode it first, e.g. action.decode('utf-8')."
    assert env.unwrapped.oracle_actions() == plan


def test_search_budget_then_truncation_at_five_steps(env):
    env.reset(seed=4)
    for i in range(4):
        _, _, terminated, truncated, info = env.step(f"<search> query number {i} </search>")
        assert info["action_valid"] and info["searches_used"] == i + 1 and not terminated and not truncated
    obs, reward, terminated, truncated, info = env.step("<search> one more </search>")
    assert info["action_valid"] is False and info["invalid_reason"] == "all 4 searches are used"
    assert "give the final answer between <answer> and </answer>" in obs
    assert truncated and not terminated and reward == 0.0


def test_budget_is_configurable_and_answer_still_allowed():
    env = DeepSearchEnv(split="eval_out_of_distribution", max_searches=1)
    env.reset(seed=0)
    plan = env.oracle_actions()
    assert len(plan) == 2  # one search fits the budget, then the answer
    env.step(plan[0])
    _, _, _, _, info = env.step("<search> again </search>")
    assert info["invalid_reason"] == "all 1 searches are used"
    _, reward, terminated, _, info = env.step(plan[-1])
    assert terminated and reward == 1.0


def test_answers_are_scored_with_search_r1_normalisation(env):
    _, info = env.reset(seed=6)
    gold = env.unwrapped.current_task.data["golden_answers"][0]
    _, reward, terminated, _, info = env.step(f"<answer> The {gold.upper()}! </answer>")
    assert reward == 1.0 and terminated and info["won"] and info["em"] == 1.0 and info["f1"] == 1.0
    env.reset(seed=6)
    _, reward, terminated, _, info = env.step(f"<answer> {gold} Zzyzx </answer>")
    assert reward == 0.0 and terminated and not info["won"] and info["score"] == 0.0
    assert 0.0 < info["f1"] < 1.0 and info["answer"] == f"{gold} Zzyzx"
    with pytest.raises(EpisodeOverError, match="call reset"):
        env.step("<answer> again </answer>")


def test_f1_reward_option():
    env = gym.make(ENV_ID, split="eval_in_distribution", reward="f1")
    env.reset(seed=6)
    gold = env.unwrapped.current_task.data["golden_answers"][0]
    _, reward, _, _, info = env.step(f"<answer> {gold} Zzyzx </answer>")
    assert reward == pytest.approx(info["f1"]) and 0.0 < reward < 1.0 and info["em"] == 0.0 and not info["won"]


def test_topk_and_observation_cap():
    env = DeepSearchEnv(topk=6, max_observation_chars=None)
    env.reset(seed=0)
    _, _, _, _, info = env.step("<search> born city painter </search>")
    assert len(info["retrieved_ids"]) == 6
    capped = DeepSearchEnv(topk=6, max_observation_chars=300)
    capped.reset(seed=0)
    obs, *_ = capped.step("<search> born city painter </search>")
    assert obs.endswith("...</information>") and len(obs) <= 300 + len("<information></information>")


def test_same_task_same_observations_in_two_envs():
    a, b = DeepSearchEnv(split="train"), DeepSearchEnv(split="train")
    assert a.reset(seed=11) == b.reset(seed=11)
    for action in a.oracle_actions():
        assert a.step(action) == b.step(action)


_EPISODES = """
import json, gymnasium as gym, empg_gym
env = gym.make("EMPG-DeepSearch-v0", split="eval_out_of_distribution")
out = []
for seed in (0, 5, 9):
    obs, info = env.reset(seed=seed)
    ep = [obs]
    for action in env.unwrapped.oracle_actions():
        obs, r, term, trunc, info = env.step(action)
        ep += [action, obs, r, info.get("retrieved_ids")]
    out.append(ep)
print(json.dumps(out))
"""


def test_search_episodes_are_identical_across_processes():
    runs = [subprocess.run([sys.executable, "-c", _EPISODES], capture_output=True, text=True, check=True) for _ in range(2)]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first == second
    assert all(any(isinstance(x, str) and x.startswith("<information>Doc 1") for x in ep) for ep in first)


def test_bad_arguments_are_refused_with_advice():
    with pytest.raises(ConfigError, match=r"Unknown DeepSearchEnv argument\(s\) \['topK'\].*Did you mean 'topk'"):
        DeepSearchEnv(topK=3)
    with pytest.raises(ConfigError, match="topk must be a positive int, got 0"):
        DeepSearchConfig(topk=0)
    with pytest.raises(ConfigError, match="reward must be 'em' or 'f1', got 'acc'"):
        DeepSearchConfig(reward="acc")
    with pytest.raises(ConfigError, match="search_api must be 'queries' or 'query'"):
        DeepSearchConfig(search_api="batch")
    with pytest.raises(ConfigError, match="qa_files needs a corpus to search"):
        DeepSearchEnv(qa_files={"train": "x.jsonl"})


def test_import_stays_light():
    code = "import sys, empg_gym, gymnasium as gym; print(sorted(m for m in ('bm25s', 'flask', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
