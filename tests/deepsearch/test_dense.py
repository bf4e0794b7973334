"""Deep Search's dense rewards: Φ = ½ once a retrieved passage holds a golden answer."""

from __future__ import annotations

import gymnasium as gym
import pytest

import empg_gym  # noqa: F401  (registers the ids)
from empg_gym.envs.deepsearch.env import FOUND_WEIGHT
from empg_gym.envs.deepsearch.protocol import holds_answer

ENV_ID = "EMPG-DeepSearch-v0"


def test_holds_answer_matches_whole_normalised_words():
    assert holds_answer('"Drask Industries"\nDrask Industries was founded in Velmora.', ["velmora"])
    assert holds_answer("The Amber-Lattice, an epic.", ["the amber-lattice"])
    assert not holds_answer("Founded in 1955 by Ana.", ["5", "an"])  # "an" is an article: it normalises to nothing
    assert not holds_answer("Velmoran cuisine", ["Velmora"])


@pytest.mark.parametrize("split", ["eval_in_distribution", "eval_out_of_distribution"])
def test_oracle_finds_the_answer_then_answers(split):
    """The search that first brings the answer into view earns ½, the answer the other ½; the sum is the EM, 1."""
    env = gym.make(ENV_ID, split=split, reward_mode="dense")
    u = env.unwrapped
    for task_id in u.task_ids()[:40]:
        _, info = env.reset(options={"task_id": task_id})
        assert info["potential"] == 0.0
        gold = u.current_task.data["golden_answers"]
        rewards, potentials, found = [], [], False
        for action in u.oracle_actions():
            obs, reward, terminated, truncated, info = env.step(action)
            rewards.append(reward)
            potentials.append(info["potential"])
            found = found or ("<information>" in obs and holds_answer(obs, gold))
        assert terminated and info["em"] == 1.0
        assert sum(rewards) == pytest.approx(1.0, abs=1e-12)
        # before the answer, the potential says whether a passage (as shown) held the answer
        assert found == (potentials[-2] == FOUND_WEIGHT), task_id
        if found:
            assert sorted(rewards[:-1]) == [0.0] * (len(rewards) - 2) + [FOUND_WEIGHT]
            assert rewards[-1] == pytest.approx(1.0 - FOUND_WEIGHT)
    env.close()


def test_f1_answers_sum_to_their_f1_and_wrong_answers_give_back_the_bonus():
    env = gym.make(ENV_ID, split="eval_in_distribution", reward_mode="dense", reward="f1")
    u = env.unwrapped
    env.reset(options={"task_id": u.task_ids()[0]})
    *searches, _ = u.oracle_actions()
    rewards = [env.step(a)[1] for a in searches]
    _, reward, terminated, _, info = env.step("<answer> certainly not this </answer>")
    assert terminated and info["f1"] == 0.0
    assert sum(rewards) + reward == pytest.approx(0.0, abs=1e-12)  # the found-answer bonus is returned
    assert reward == pytest.approx(-sum(rewards))


def test_invalid_turns_and_repeated_searches_earn_nothing():
    env = gym.make(ENV_ID, split="eval_in_distribution", reward_mode="dense")
    env.reset(options={"task_id": env.unwrapped.task_ids()[0]})
    first = env.unwrapped.oracle_actions()[0]
    assert env.step("no tags here")[1] == 0.0
    r1 = env.step(first)[1]
    assert env.step(first)[1] == 0.0  # the potential never falls back, and never counts twice
    assert env.step("<search> a </search><answer> b </answer>")[1] == 0.0
    assert r1 in (0.0, FOUND_WEIGHT)
