"""``reward_signal="return"``: every estimator reads each step's return-to-go instead of the trajectory's outcome."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from empg_gym.agents.algorithms import (
    StepBatch,
    compute_advantages,
    get_algorithm,
    grpo_advantages,
    informative_groups,
)
from empg_gym.agents.config import TrainConfig
from empg_gym.agents.trainer import Trainer
from empg_gym.errors import ConfigError


def _batch(step_reward, traj_id, step_index, group_id, reward=None, entropy=None):
    n = len(step_reward)
    ent = torch.tensor(entropy, dtype=torch.float32)[:, None].expand(n, 2).clone() if entropy else None
    return StepBatch(
        response_mask=torch.ones(n, 2, dtype=torch.bool),
        old_logp=torch.zeros(n, 2),
        reward=torch.tensor(reward if reward is not None else [0.0] * n),
        group_id=torch.tensor(group_id),
        traj_id=torch.tensor(traj_id),
        step_index=torch.tensor(step_index),
        is_last=torch.tensor([i + 1 == len(step_index) or step_index[i + 1] == 0 for i in range(n)]),
        token_entropy=ent,
        step_reward=torch.tensor(step_reward),
        obs_key=torch.arange(n),
    )


BUILT_IN = ["grpo", "dapo", "empg", "empg-dapo", "gigpo", "empg-g", "empg-f", "empg-dapo-g", "empg-dapo-f"]

# One group of two trajectories: A has step rewards [1, 2], B has [0, 0, 1]. Outcomes (won x 10) say nothing here.
HAND = dict(step_reward=[1.0, 2.0, 0.0, 0.0, 1.0], traj_id=[0, 0, 1, 1, 1], step_index=[0, 1, 0, 1, 2],
            group_id=[0, 0, 0, 0, 0], reward=[10.0, 10.0, 0.0, 0.0, 0.0])


def test_returns_to_go_feed_dr_grpo_by_hand():
    # gamma = 1: G = [3, 2 | 1, 1, 1]. Each trajectory weighs 1/2, split over its steps:
    # mean = (3 + 2) / 4 + (1 + 1 + 1) / 6 = 1.75, so A = G - 1.75.
    cfg = replace(get_algorithm("grpo"), reward_signal="return", norm_by_std=False)
    A, metrics = compute_advantages(cfg, _batch(**HAND))
    assert A.tolist() == pytest.approx([1.25, 0.25, -0.75, -0.75, -0.75], abs=1e-6)
    assert metrics["adv/return_mean"] == pytest.approx((3 + 2 + 1 + 1 + 1) / 5)


def test_returns_to_go_feed_grpo_with_std_by_hand():
    # Weighted squares: (1.25^2 + 0.25^2) / 4 + 3 x 0.75^2 / 6 = 0.6875; unbiased over G = 2: x 2 = 1.375.
    cfg = replace(get_algorithm("grpo"), reward_signal="return")
    A, _ = compute_advantages(cfg, _batch(**HAND))
    std = math.sqrt(1.375)
    expected = [g / (std + 1e-6) for g in (1.25, 0.25, -0.75, -0.75, -0.75)]
    assert A.tolist() == pytest.approx(expected, rel=1e-6)


def test_return_gamma_discounts_by_hand():
    # gamma = 0.5: A: [1 + 0.5 * 2, 2] = [2, 2]; B: [0.5 * 0.5 * 1, 0.5 * 1, 1] = [0.25, 0.5, 1].
    # mean = (2 + 2) / 4 + (0.25 + 0.5 + 1) / 6 = 1 + 0.291666...
    cfg = replace(get_algorithm("grpo"), reward_signal="return", return_gamma=0.5, norm_by_std=False)
    A, _ = compute_advantages(cfg, _batch(**HAND))
    mean = 1.0 + 1.75 / 6
    assert A.tolist() == pytest.approx([2 - mean, 2 - mean, 0.25 - mean, 0.5 - mean, 1 - mean])


def test_empg_modulates_the_return_based_advantage():
    """EMPG scales the base advantage by g, adds zeta f and removes the batch mean, whatever the base advantage."""
    entropy = [0.2, 1.0, 0.6, 0.1, 0.4]
    batch = _batch(**HAND, entropy=entropy)
    cfg = replace(get_algorithm("empg"), reward_signal="return", norm_by_std=False)
    A, _ = compute_advantages(cfg, batch)
    base = torch.tensor([1.25, 0.25, -0.75, -0.75, -0.75])
    H = torch.tensor(entropy)
    H_norm = (H - H.min()) / (H.max() - H.min() + 1e-8)
    g = torch.exp(-H_norm) / torch.exp(-H_norm).mean()
    f = torch.tensor([math.exp(-H_norm[1]), 0.0, math.exp(-H_norm[3]), math.exp(-H_norm[4]), 0.0])
    mod = g * base + 0.05 * f
    assert torch.allclose(A, mod - mod.mean(), atol=1e-6)


@pytest.mark.parametrize("algo", BUILT_IN)
def test_return_of_a_sparse_outcome_is_the_outcome(algo):
    """With the reward only on the last step and gamma = 1, every step's return is the outcome: same advantages."""
    outcome = [10.0, 10.0, 0.0, 0.0, 0.0, 10.0, 0.0, 0.0]
    batch = _batch(step_reward=[0.0, 10.0, 0.0, 0.0, 0.0, 10.0, 0.0, 0.0], traj_id=[0, 0, 1, 1, 1, 2, 3, 3],
                   step_index=[0, 1, 0, 1, 2, 0, 0, 1], group_id=[0, 0, 0, 0, 0, 1, 1, 1], reward=outcome,
                   entropy=[0.3, 0.9, 0.1, 0.5, 0.7, 0.2, 0.8, 0.4])
    cfg = get_algorithm(algo)
    A_outcome, _ = compute_advantages(cfg, batch)
    A_return, _ = compute_advantages(replace(cfg, reward_signal="return"), batch)
    assert torch.equal(A_outcome, A_return)


def test_outcome_signal_is_the_default_and_reads_the_outcome():
    batch = _batch(**HAND)
    cfg = get_algorithm("grpo")
    assert cfg.reward_signal == "outcome" and cfg.return_gamma == 1.0
    A, metrics = compute_advantages(cfg, batch)
    assert torch.equal(A, grpo_advantages(batch.reward, batch.group_id, traj_ids=batch.traj_id))
    assert "adv/return_mean" not in metrics


def test_dapo_filter_judges_the_return():
    # Both trajectories fail (outcome 0) but their dense step rewards differ: informative only as returns.
    batch = _batch(step_reward=[0.5, 0.0, 0.0, 0.0], traj_id=[0, 0, 1, 1], step_index=[0, 1, 0, 1],
                   group_id=[0, 0, 0, 0])
    dapo = get_algorithm("dapo")
    assert informative_groups(dapo, batch).tolist() == [False] * 4
    assert informative_groups(replace(dapo, reward_signal="return"), batch).tolist() == [True] * 4


def test_return_signal_needs_step_rewards_and_valid_settings():
    batch = replace(_batch(**HAND), step_reward=None)
    with pytest.raises(ConfigError, match=r"reward_signal='return' needs StepBatch.step_reward"):
        compute_advantages(replace(get_algorithm("grpo"), reward_signal="return"), batch)
    with pytest.raises(ConfigError, match=r"reward_signal must be 'outcome' .* got 'returns'\. Did you mean 'return'"):
        replace(get_algorithm("grpo"), reward_signal="returns")
    with pytest.raises(ConfigError, match=r"return_gamma must be in \[0, 1\].*got 1\.5"):
        replace(get_algorithm("grpo"), return_gamma=1.5)


def test_two_dense_updates_on_keyrooms_with_returns(tmp_path):
    cfg = TrainConfig(env_id="EMPG-KeyRooms-v0", env_kwargs={"reward_mode": "dense"}, algo="empg",
                      algo_overrides={"reward_signal": "return"}, model="tiny-actions", max_new_tokens=1,
                      require_think=False, invalid_format_penalty=0.0, history_length=0, progress=False,
                      updates=2, tasks_per_update=2, group_size=2, lr=3e-3, mini_batch_size=32, micro_batch_size=16,
                      max_steps=6)
    trainer = Trainer(cfg, tmp_path)
    history = trainer.train()
    assert len(history) == 2
    assert trainer.algo.reward_signal == "return"
    for row in history:
        for key in ("adv/return_mean", "adv/mean", "actor/pg_loss", "empg/g_mean"):
            assert math.isfinite(row[key]), (key, row[key])
