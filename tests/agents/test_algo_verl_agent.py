"""``empg-verl-agent``: EMPG as verl-agent / ARLArena run it, on a batch worked out by hand (issue #23, item 7)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from empg_gym.agents.algorithms import (
    AlgorithmConfig,
    StepBatch,
    compute_advantages,
    get_algorithm,
    informative_groups,
)
from empg_gym.errors import ConfigError

# (group, trajectory, step, outcome R, format penalty p, entropy H of every response token)
#   group 0: trajectory 0 won in 2 steps; trajectory 1 lost in 3 steps, its step 1 malformed (p = 0.1)
#   group 1: trajectory 2 won in 1 step; trajectory 3 lost in 2 steps
ROWS = [
    (0, 0, 0, 1.0, 0.0, 0.0),
    (0, 0, 1, 1.0, 0.0, 0.0),
    (0, 1, 0, 0.0, 0.0, 1.0),
    (0, 1, 1, 0.0, 0.1, 1.0),
    (0, 1, 2, 0.0, 0.0, 0.0),
    (1, 2, 0, 1.0, 0.0, 0.0),
    (1, 3, 0, 0.0, 0.0, 1.0),
    (1, 3, 1, 0.0, 0.0, 1.0),
]


def hand_batch() -> StepBatch:
    g, t, s, R, p, H = (list(c) for c in zip(*ROWS, strict=True))
    n = len(ROWS)
    lengths = torch.tensor([1, 2, 3, 1, 2, 3, 1, 2])  # response lengths differ; H is the same on every token
    mask = torch.arange(3)[None, :] < lengths[:, None]
    last = [i == n - 1 or t[i + 1] != t[i] for i in range(n)]
    return StepBatch(
        response_mask=mask, old_logp=torch.zeros(n, 3), reward=torch.tensor(R), group_id=torch.tensor(g),
        traj_id=torch.tensor(t), step_index=torch.tensor(s), is_last=torch.tensor(last),
        token_entropy=torch.tensor(H)[:, None] * mask, format_penalty=torch.tensor(p),
    )


def test_empg_verl_agent_on_a_hand_worked_batch():
    """verl-agent's order: reward minus penalty, GRPO over step rows, EMPG, batch re-centring.

    1. Rewards after the penalty: group 0 rows (1, 1, 0, -0.1, 0), group 1 rows (1, 0, 0).
    2. GRPO over every row of a group (verl-agent's compute_mean_std_cross_all_data), unbiased std, eps 1e-6:
       group 0: mean = 1.9 / 5 = 0.38; deviations (0.62, 0.62, -0.38, -0.48, -0.38); sum of squares
       0.3844 * 2 + 0.1444 * 2 + 0.2304 = 1.288; std = sqrt(1.288 / 4) = sqrt(0.322) = 0.567450;
       A = dev / (0.567450 + 1e-6) = (1.092605, 1.092605, -0.669661, -0.845887, -0.669661).
       group 1: mean = 1/3; deviations (2/3, -1/3, -1/3); std = sqrt((4/9 + 1/9 + 1/9) / 2) = sqrt(1/3) = 0.577350;
       A = (1.154699, -0.577349, -0.577349).
    3. EMPG, k = k' = 1, zeta = 0.05: H is 0 or 1, so H_norm = H / (1 + 1e-8), i.e. 0 or 1 (to 1e-8).
       mean(exp(-H_norm)) over 4 zeros and 4 ones = (1 + e^-1) / 2 = 0.683940;
       g(0) = 1 / 0.683940 = 1.462117, g(1) = e^-1 / 0.683940 = 0.537883.
       f_t = exp(-H_norm of step t + 1): row 0 -> row 1 (H 0): 1; row 2 -> row 3 (H 1): e^-1 = 0.367879;
       row 3 -> row 4 (H 0): 1; row 6 -> row 7 (H 1): 0.367879; last steps (rows 1, 4, 5, 7): 0.
       A_mod = g A + 0.05 f = (1.647516, 1.597516, -0.341805, -0.404988, -0.979123, 1.688304, -0.292152, -0.310546);
       its mean is 0.325590, removed: the values below.
    """
    A, metrics = compute_advantages(get_algorithm("empg-verl-agent"), hand_batch())
    expected = [1.321926, 1.271926, -0.667395, -0.730578, -1.304713, 1.362714, -0.617742, -0.636136]
    torch.testing.assert_close(A, torch.tensor(expected), rtol=0, atol=2e-6)
    assert metrics["empg/g_max"] == pytest.approx(1 / (0.5 + 0.5 / math.e), rel=1e-6)
    assert metrics["adv/format_penalty_frac"] == pytest.approx(1 / 8)


def test_our_empg_differs_only_in_the_two_switches():
    """The default ``empg`` counts trajectories once and subtracts the penalty after EMPG; flipping both switches
    gives ``empg-verl-agent`` exactly, and each switch alone moves the advantages."""  # noqa: D205
    b = hand_batch()
    ours, theirs = get_algorithm("empg"), get_algorithm("empg-verl-agent")
    assert dataclasses.replace(ours, name=theirs.name, traj_level_stats=False, format_penalty_on="reward") == theirs
    A_ours, _ = compute_advantages(ours, b)
    # ours, by hand: each group has trajectories (1, 0), counted once: mean 0.5, std sqrt(0.5), so every step gets
    # A = +-0.5 / (sqrt(0.5) + 1e-6) = +-0.707106; then EMPG with the g and f of the docstring above, then - p
    A_base = torch.tensor([1.0, 1.0, -1.0, -1.0, -1.0, 1.0, -1.0, -1.0]) * (0.5 / (math.sqrt(0.5) + 1e-6))
    g = torch.tensor([1.462117, 1.462117, 0.537883, 0.537883, 1.462117, 1.462117, 0.537883, 0.537883])
    f = torch.tensor([1.0, 0.0, 1 / math.e, 1.0, 0.0, 0.0, 1 / math.e, 0.0])
    mod = g * A_base + 0.05 * f
    torch.testing.assert_close(A_ours, mod - mod.mean() - b.format_penalty, rtol=0, atol=2e-6)
    for switch in ({"traj_level_stats": False}, {"format_penalty_on": "reward"}):
        A, _ = compute_advantages(dataclasses.replace(ours, **switch), b)
        assert not torch.allclose(A, A_ours, atol=1e-3)
        assert not torch.allclose(A, compute_advantages(theirs, b)[0], atol=1e-3)


def test_penalty_on_the_reward_is_seen_by_dapo_filter_and_a_lone_trajectory_gets_zero():
    """With ``format_penalty_on="reward"`` an all-lost group whose only signal is a malformed step is informative
    (verl-agent), and over step rows a group of one trajectory without penalties gets A = 0 on every step."""  # noqa: D205
    b = StepBatch(response_mask=torch.ones(5, 1, dtype=torch.bool), old_logp=torch.zeros(5, 1),
                  reward=torch.tensor([0.0, 0.0, 0.0, 1.0, 1.0]), group_id=torch.tensor([0, 0, 0, 1, 1]),
                  traj_id=torch.tensor([0, 0, 1, 2, 2]), step_index=torch.tensor([0, 1, 0, 0, 1]),
                  is_last=torch.tensor([False, True, True, False, True]),
                  format_penalty=torch.tensor([0.1, 0.0, 0.0, 0.0, 0.0]))
    dapo = get_algorithm("dapo")
    assert informative_groups(dapo, b).tolist() == [False] * 5
    on_reward = dataclasses.replace(dapo, format_penalty_on="reward", traj_level_stats=False)
    assert informative_groups(on_reward, b).tolist() == [True, True, True, False, False]
    A, _ = compute_advantages(dataclasses.replace(get_algorithm("grpo"), format_penalty_on="reward",
                                                  traj_level_stats=False), b)
    # group 0 rewards (-0.1, 0, 0): mean -1/30, std sqrt((4/900 + 1/900 + 1/900) / 2) = sqrt(1/300)
    s = math.sqrt(1 / 300) + 1e-6
    expected = [(-0.1 + 1 / 30) / s, (1 / 30) / s, (1 / 30) / s, 0.0, 0.0]
    torch.testing.assert_close(A, torch.tensor(expected), rtol=0, atol=1e-5)


def test_penalty_on_the_reward_reaches_the_step_rewards_too():
    """verl-agent subtracts it from the episode reward and from GiGPO's step rewards; returns then carry it."""
    from empg_gym.agents.algorithms import shape_rewards

    b = dataclasses.replace(hand_batch(), step_reward=torch.tensor([0.0, 1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]))
    cfg = dataclasses.replace(get_algorithm("grpo"), format_penalty_on="reward")
    shaped, _ = shape_rewards(cfg, b)
    torch.testing.assert_close(shaped.reward, b.reward - b.format_penalty)
    torch.testing.assert_close(shaped.step_reward, b.step_reward - b.format_penalty)
    # return-to-go of trajectory 1 (steps 0..2, step 1 penalised, gamma 1): (-0.1, -0.1, 0)
    returns, _ = shape_rewards(dataclasses.replace(cfg, reward_signal="return"), b)
    torch.testing.assert_close(returns.reward[2:5], torch.tensor([-0.1, -0.1, 0.0]))
    assert shape_rewards(get_algorithm("grpo"), b)[0] is b  # the default leaves the rewards alone


def test_format_penalty_on_is_validated():
    with pytest.raises(ConfigError, match=r"format_penalty_on must be 'advantage' .* got 'rewards'\. Did you mean "
                                          r"'reward'"):
        AlgorithmConfig(format_penalty_on="rewards")  # type: ignore[arg-type]
