"""Dense-reward mode (``reward_mode="dense"``) over every registered id, and the toy tasks' potential by hand."""

from __future__ import annotations

import random

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import empg_gym  # noqa: F401  (registers the ids)
from empg_gym.core import StepResult, TextEnv
from empg_gym.errors import ConfigError
from empg_gym.registration import REGISTERED
from empg_gym.tasks import Task, TaskManifest

INFO_KEYS = {"task_id", "task", "task_type", "split", "source", "admissible_actions", "action_valid", "won", "score"}
#: Every family's id except the browser one (tests/webshop/test_dense.py drives it).
ENV_IDS = [i for i in REGISTERED if i.startswith("EMPG-") and i != "EMPG-WebShop-Browser-v0"]


def _lockstep(sparse, dense, actions, phi):
    """Step both envs with ``actions`` from potential ``phi``; check they agree but for the reward and ``potential``.

    Returns the ``(sparse, dense)`` step results.
    """
    steps, start = [], phi
    for action in actions:
        s, d = sparse.step(action), dense.step(action)
        assert s[0] == d[0] and s[2:4] == d[2:4]
        assert "potential" not in s[4] and {k: v for k, v in d[4].items() if k != "potential"} == s[4]
        assert d[1] == pytest.approx(s[1] + d[4]["potential"] - phi, abs=1e-12)
        phi = d[4]["potential"]
        steps.append((s, d))
    if steps and steps[-1][1][2]:
        assert phi == start  # the terminal state's potential is the start's
    return steps


def _cumulative(rewards):
    out, total = [], 0.0
    for r in rewards:
        total += r
        out.append(total)
    return out


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_dense_oracle_episode_rises_and_sums_to_the_sparse_reward(env_id):
    sparse, dense = gym.make(env_id), gym.make(env_id, reward_mode="dense")
    try:
        for seed in (3, 4):
            obs_s, info_s = sparse.reset(seed=seed)
            obs_d, info_d = dense.reset(seed=seed)
            assert obs_s == obs_d and "potential" not in info_s
            assert {k: v for k, v in info_d.items() if k != "potential"} == info_s
            assert 0.0 <= info_d["potential"] < 1.0
            plan = dense.unwrapped.oracle_actions()
            steps = _lockstep(sparse, dense, plan, info_d["potential"])
            sparse_r, dense_r = [s[1] for s, _ in steps], [d[1] for _, d in steps]
            cumulative = _cumulative(dense_r)
            assert all(r >= 0.0 for r in dense_r), dense_r
            assert cumulative == sorted(cumulative)
            assert sum(sparse_r) == 1.0
            assert cumulative[-1] == pytest.approx(1.0, abs=1e-12)
    finally:
        sparse.close()
        dense.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_random_play_telescopes(env_id):
    """Seeded random actions (invalid ones included) until the episode ends: step by step, dense = sparse + ΔΦ, and
    the episode's dense rewards sum to its sparse ones plus Φ(s_T) - Φ(s_0) (exactly the sparse sum if it ended)."""
    sparse, dense = gym.make(env_id), gym.make(env_id, reward_mode="dense")
    rng = random.Random(env_id)
    free_form = ["<search> capital </search>", "<answer> nowhere </answer>", "no tags"]
    try:
        for seed in (5, 6):
            _, info = sparse.reset(seed=seed)
            _, info_d = dense.reset(seed=seed)
            phi0 = phi = info_d["potential"]
            steps, done = [], False
            while not done:
                acts = info["admissible_actions"]
                action = rng.choice(acts + ["nonsense"]) if acts else rng.choice(free_form)
                ((s, d),) = _lockstep(sparse, dense, [action], phi)
                steps.append((s, d))
                info, phi, done = s[4], d[4]["potential"], s[2] or s[3]
            sparse_sum, dense_sum = sum(s[1] for s, _ in steps), sum(d[1] for _, d in steps)
            end = phi0 if steps[-1][0][2] else phi
            assert dense_sum == pytest.approx(sparse_sum + end - phi0, abs=1e-9)
    finally:
        sparse.close()
        dense.close()


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_dense_env_passes_check_env_and_rejects_unknown_modes(env_id):
    env = gym.make(env_id, reward_mode="dense")
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
    with pytest.raises(ConfigError, match=r"Unknown reward_mode 'Dense'; choose 'sparse' .* Did you mean 'dense'\?"):
        gym.make(env_id, reward_mode="Dense")


def test_reward_mode_is_not_a_reset_option():
    env = gym.make("EMPG-KeyRooms-v0")
    with pytest.raises(ConfigError, match=r"Unknown reset option\(s\) \['reward_mode'\]"):
        env.reset(options={"reward_mode": "dense"})


def test_non_string_reward_modes_are_refused():
    for bad in (None, 1, True):
        with pytest.raises(ConfigError, match=r"Unknown reward_mode"):
            gym.make("EMPG-KeyDoor-v0", reward_mode=bad)


class _NoPotential(TextEnv):
    """A family without a potential: sparse only."""

    def _load_manifest(self):
        task = Task("t", "any", "say hi", {})
        return TaskManifest("toy", "nopotential", "1", "embedded", {"train": (task,)})

    def _start_task(self, task):
        return "Say hi."

    def _step(self, action):
        return StepResult("Bye.", reward=1.0, terminated=True)

    def admissible_actions(self):
        return ["hi"]

    def _won(self):
        return False


def test_a_family_without_a_potential_cannot_be_dense():
    _NoPotential().reset(seed=0)  # sparse works
    with pytest.raises(ConfigError, match=r"_NoPotential defines no potential.*implement _potential\(\)"):
        _NoPotential(reward_mode="dense")


def test_sparse_default_keeps_the_benchmark_reward_and_info():
    """The default is the sparse outcome: 0 on every step but the winning one (1), and exactly the standard info."""
    env = gym.make("EMPG-KeyRooms-v0")
    assert env.unwrapped.reward_mode == "sparse"
    _, info = env.reset(options={"task_id": "keyrooms-train-000"})
    assert set(info) == INFO_KEYS
    rewards = []
    for action in ["go west", "look", "jump", *env.unwrapped.oracle_actions()]:
        _, reward, terminated, _, info = env.step(action)
        rewards.append(reward)
        assert set(info) == INFO_KEYS
    assert terminated and rewards == [0.0] * (len(rewards) - 1) + [1.0]


# ---------------------------------------------------------------------------------------------------- toy tasks
def test_keyrooms_hand_worked_episode():
    """keyrooms-train-003: two rooms, the red exit door in room 2 (the start), the red key in room 1. The oracle's
    plan from the start is [go west, take key, go east, open door]: d(s_0) = 4, so Φ = 1 - d / 4."""
    env = gym.make("EMPG-KeyRooms-v0", reward_mode="dense")
    _, info = env.reset(options={"task_id": "keyrooms-train-003"})
    assert env.unwrapped.oracle_actions() == ["go west", "take key", "go east", "open door"]
    assert info["potential"] == 0.0
    episode = [
        ("open door", 0.0, 0.0),   # locked without the key: nothing changes, d = 4
        ("look", 0.0, 0.0),
        ("jump", 0.0, 0.0),        # invalid: state and potential unchanged
        ("go west", 0.25, 0.25),   # at the key: d = 3
        ("go east", -0.25, 0.0),   # walked away from the key: d = 4 again
        ("go west", 0.25, 0.25),
        ("take key", 0.25, 0.5),   # d = 2
        ("go east", 0.25, 0.75),   # at the door with its key: d = 1
        ("open door", 0.25, 0.0),  # win: 1 + Φ(terminal) - Φ = 1 + 0 - 0.75; the terminal potential is Φ(s_0)
    ]
    total = 0.0
    for action, reward, potential in episode:
        _, r, terminated, truncated, info = env.step(action)
        assert (r, info["potential"]) == (reward, potential), action
        total += r
    assert terminated and info["won"] and total == 1.0


def test_keyrooms_oracle_earns_one_over_the_plan_length_per_step():
    """Each oracle step shortens the plan by one: a dense reward of exactly 1 / optimal_steps each, summing to 1."""
    env = gym.make("EMPG-KeyRooms-v0", reward_mode="dense").unwrapped
    for task_id in env.task_ids("train")[:60]:
        env.reset(options={"task_id": task_id})
        n = env.current_task.data["optimal_steps"]
        rewards = [env.step(a)[1] for a in env.oracle_actions()]
        assert len(rewards) == n
        assert rewards == pytest.approx([1.0 / n] * n, abs=1e-12)
        assert sum(rewards) == pytest.approx(1.0, abs=1e-12)


def test_keydoor_potential_is_the_share_of_the_plan_done():
    env = gym.make("EMPG-KeyDoor-v0", reward_mode="dense").unwrapped
    for task_id in env.task_ids("train"):
        _, info = env.reset(options={"task_id": task_id})
        n = len(env.oracle_actions())
        assert info["potential"] == 0.0
        rewards = [env.step(a)[1] for a in env.oracle_actions()]
        assert rewards == pytest.approx([1.0 / n] * n, abs=1e-12)


def test_truncated_dense_episode_keeps_the_progress_it_made():
    """Without termination the shaping sums to Φ(s_T) - Φ(s_0): what the agent got done, as a share of the plan."""
    env = gym.make("EMPG-KeyRooms-v0", reward_mode="dense", max_episode_steps=2)
    env.reset(options={"task_id": "keyrooms-train-001"})
    plan = env.unwrapped.oracle_actions()
    n = len(plan)
    assert n > 2
    total, truncated = 0.0, False
    for action in plan[:2]:
        _, reward, terminated, truncated, info = env.step(action)
        total += reward
    assert truncated and not terminated
    assert total == pytest.approx(2 / n) and info["potential"] == pytest.approx(2 / n)
