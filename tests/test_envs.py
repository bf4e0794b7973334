"""The contract ladder's first rung, over every registered empg-gym id: check_env, determinism, info keys."""

from __future__ import annotations

import json
import subprocess
import sys

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import empg_gym
from empg_gym.registration import REGISTERED

INFO_KEYS = {"task_id", "task", "task_type", "split", "source", "admissible_actions", "action_valid", "won", "score"}
ENV_IDS = [i for i in REGISTERED if i.startswith("EMPG-")]
#: Ids whose construction needs a browser; their contract tests live with the family.
SLOW_IDS = {"EMPG-WebShop-Browser-v0"}


@pytest.mark.parametrize("env_id", [i for i in ENV_IDS if i not in SLOW_IDS])
def test_check_env(env_id):
    env = gym.make(env_id)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


@pytest.mark.parametrize("env_id", [i for i in ENV_IDS if i not in SLOW_IDS])
def test_info_keys_and_oracle(env_id):
    env = gym.make(env_id)
    try:
        obs, info = env.reset(seed=3)
        assert INFO_KEYS <= set(info)
        assert obs in env.observation_space
        assert info["action_valid"] is True and info["won"] is False
        total = 0.0
        for action in env.unwrapped.oracle_actions():
            obs, reward, terminated, truncated, info = env.step(action)
            assert info["action_valid"], (action, obs)
            assert INFO_KEYS <= set(info)
            total += reward
        assert terminated and info["won"] and not truncated
    finally:
        env.close()


#: Actions that are not a ``str``: each is an invalid action (bytes too: the contract is ``Env[str, str]``).
NON_STRINGS = [b"look", bytearray(b"look"), None, 42, 3.5, ["look"], {"action": "look"}, object()]


@pytest.mark.parametrize("env_id", [i for i in ENV_IDS if i not in SLOW_IDS])
def test_non_string_actions_are_invalid_and_change_nothing(env_id):
    """Every non-str action (the first oracle action as bytes included) gets feedback, never an exception."""
    env, ref = gym.make(env_id).unwrapped, gym.make(env_id).unwrapped
    try:
        _, info0 = env.reset(seed=3)
        ref.reset(seed=3)
        plan = env.oracle_actions()
        for action in [*NON_STRINGS, plan[0].encode()]:
            obs, reward, terminated, truncated, info = env.step(action)
            assert info["action_valid"] is False and reward == 0.0 and not terminated and not truncated
            assert f"expected a string, got {type(action).__name__}" in obs
            assert info["admissible_actions"] == info0["admissible_actions"]
        assert "decode it first" in obs
        assert env.step(plan[0]) == ref.step(plan[0])  # the refused actions changed nothing
    finally:
        env.close()
        ref.close()


_EPISODE_SCRIPT = """
import json, sys, gymnasium as gym, empg_gym
env = gym.make(sys.argv[1])
out = []
for seed in (0, 1, 7):
    obs, info = env.reset(seed=seed)
    ep = [obs, info["task_id"]]
    for step in range(3):
        acts = info["admissible_actions"]
        action = acts[step % len(acts)] if acts else "look"
        obs, r, term, trunc, info = env.step(action)
        ep += [action, obs, r, term]
        if term or trunc:
            break
    out.append(ep)
print(json.dumps(out))
"""


@pytest.mark.parametrize("env_id", [i for i in ENV_IDS if i not in SLOW_IDS])
def test_same_seed_same_episode_across_processes(env_id):
    runs = [
        subprocess.run([sys.executable, "-c", _EPISODE_SCRIPT, env_id], capture_output=True, text=True, check=True)
        for _ in range(2)
    ]
    first, second = (json.loads(r.stdout.strip().splitlines()[-1]) for r in runs)
    assert first == second
    assert len({ep[1] for ep in first}) >= 1


def test_registered_ids_include_the_families():
    assert "EMPG-KeyDoor-v0" in ENV_IDS
    assert empg_gym.__version__


def test_keyrooms_hard_has_longer_layouts_of_its_own_and_the_oracle_wins_them():
    import statistics

    from empg_gym.errors import ConfigError

    std, hard = gym.make("EMPG-KeyRooms-v0").unwrapped, gym.make("EMPG-KeyRoomsHard-v0").unwrapped
    assert hard.difficulty == "hard" and std.difficulty == "standard"
    for split in ("train", "eval_in_distribution", "eval_out_of_distribution"):
        h, s = hard.manifest.tasks(split), std.manifest.tasks(split)
        assert len(h) == len(s) and all(t.task_id.startswith("keyrooms_hard-") for t in h)
        assert statistics.median(t.data["optimal_steps"] for t in h) > statistics.median(
            t.data["optimal_steps"] for t in s)
        assert max(t.data["step_budget"] for t in h) <= gym.spec("EMPG-KeyRoomsHard-v0").max_episode_steps
    assert {t.task_type for t in hard.manifest.tasks("train")} == {"doors_2", "doors_3"}
    for task in hard.manifest.tasks("eval_out_of_distribution")[:5]:
        hard.reset(options={"task_id": task.task_id})
        for action in hard.oracle_actions():
            _, reward, terminated, _, info = hard.step(action)
        assert terminated and info["won"] and reward == 1.0
    with pytest.raises(ConfigError, match="difficulty='hrd'.*hard"):
        gym.make("EMPG-KeyRooms-v0", difficulty="hrd")
