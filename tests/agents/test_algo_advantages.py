"""Advantage estimators: hand-worked cases, properties over random batches, naive loops vs vectorised code."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from empg_gym.agents.algorithms import (
    dapo_filter_groups,
    discounted_returns,
    empg_advantages,
    empg_terms,
    gigpo_advantages,
    grpo_advantages,
    observation_key,
    overlong_penalty,
    step_entropy,
    token_entropy,
)
from empg_gym.errors import ConfigError

SEEDS = range(60)


def random_steps(seed: int, min_group: int = 1, binary: bool | None = None) -> dict[str, torch.Tensor]:
    """A shuffled batch of step samples: groups of trajectories of 1..6 steps, outcome reward on every step."""
    rng = np.random.default_rng(seed)
    binary = bool(rng.integers(2)) if binary is None else binary
    rows = []
    traj = 0
    for g in rng.choice(1000, size=int(rng.integers(1, 6)), replace=False):
        for _ in range(int(rng.integers(min_group, 5))):
            R = float(rng.integers(2)) if binary else float(rng.normal())
            n = int(rng.integers(1, 7))
            obs_pool = int(rng.integers(1, 4))
            for t in range(n):
                r_t = R if t == n - 1 else float(rng.normal()) * 0.1
                rows.append((R, int(g), 100 + 7 * traj, t, t == n - 1, float(rng.gamma(2.0)), r_t,
                             int(rng.integers(obs_pool))))
            traj += 1
    rng.shuffle(rows)
    cols = list(zip(*rows, strict=True))
    dt = torch.float64
    return {
        "reward": torch.tensor(cols[0], dtype=dt), "group_id": torch.tensor(cols[1]), "traj_id": torch.tensor(cols[2]),
        "step_index": torch.tensor(cols[3]), "is_last": torch.tensor(cols[4]), "H": torch.tensor(cols[5], dtype=dt),
        "step_reward": torch.tensor(cols[6], dtype=dt), "obs_key": torch.tensor(cols[7]),
    }


# ---------------------------------------------------------------- naive reference implementations (loops)


def naive_grpo(rewards, groups, norm_by_std=True, eps=1e-6, trajs=None):
    out = []
    for i in range(len(rewards)):
        if trajs is None:
            members = [float(rewards[j]) for j in range(len(rewards)) if groups[j] == groups[i]]
            if len(members) == 1:
                mean, std = 0.0, 1.0
            else:
                mean = sum(members) / len(members)
                std = math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1))
        else:  # every trajectory weighs 1/G, split evenly over its steps
            by_traj = {}
            for j in range(len(rewards)):
                if groups[j] == groups[i]:
                    by_traj.setdefault(int(trajs[j]), []).append(float(rewards[j]))
            G = len(by_traj)
            if G == 1:
                mean, std = 0.0, 1.0
            else:
                mean = sum(sum(r) / len(r) for r in by_traj.values()) / G
                var = sum(sum((x - mean) ** 2 for x in r) / len(r) for r in by_traj.values()) / (G - 1)
                std = math.sqrt(var)
        a = float(rewards[i]) - mean
        out.append(a / (std + eps) if norm_by_std else a)
    return torch.tensor(out, dtype=torch.float64)


def naive_empg(A, H, trajs, steps, k, k_next, zeta, eps=1e-8):
    n = len(A)
    lo, hi = min(map(float, H)), max(map(float, H))
    Hn = [(float(h) - lo) / (hi - lo + eps) for h in H]
    w = [math.exp(-k * h) for h in Hn]
    g = [x / (sum(w) / n) for x in w]
    out = []
    for i in range(n):
        f = 0.0
        for j in range(n):
            if trajs[j] == trajs[i] and steps[j] == steps[i] + 1:
                f = math.exp(-k_next * Hn[j])
        out.append(g[i] * float(A[i]) + zeta * f)
    mean = sum(out) / n
    return torch.tensor([x - mean for x in out], dtype=torch.float64)


def naive_returns(r, trajs, steps, gamma):
    out = []
    for i in range(len(r)):
        out.append(sum(float(r[j]) * gamma ** (int(steps[j]) - int(steps[i])) for j in range(len(r))
                       if trajs[j] == trajs[i] and steps[j] >= steps[i]))
    return torch.tensor(out, dtype=torch.float64)


def naive_gigpo(R, groups, G, obs, omega, norm_by_std, eps=1e-6):
    A_E = naive_grpo(R, groups, norm_by_std, eps)
    out = []
    for i in range(len(R)):
        members = [float(G[j]) for j in range(len(R)) if groups[j] == groups[i] and obs[j] == obs[i]]
        mean = sum(members) / len(members)
        std = 1.0 if len(members) == 1 else math.sqrt(sum((x - mean) ** 2 for x in members) / (len(members) - 1))
        a = float(G[i]) - mean
        out.append(float(A_E[i]) + omega * (a / (std + eps) if norm_by_std else a))
    return torch.tensor(out, dtype=torch.float64)


# ---------------------------------------------------------------- closed-form cases worked by hand


def test_grpo_hand_worked():
    R = torch.tensor([1.0, 0.0, 2.0, 2.0, 5.0, 7.0], dtype=torch.float64)
    gid = torch.tensor([3, 3, 9, 9, 9, 4])
    A = grpo_advantages(R, gid, eps=0.0)
    s3 = math.sqrt(3.0)  # group 9: mean 3, deviations -1, -1, 2, unbiased var 6 / 2 = 3
    expected = [1 / math.sqrt(2), -1 / math.sqrt(2), -1 / s3, -1 / s3, 2 / s3, 7.0]  # singleton: mean 0, std 1
    torch.testing.assert_close(A, torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(grpo_advantages(R, gid, norm_by_std=False), torch.tensor(
        [0.5, -0.5, -1.0, -1.0, 2.0, 7.0], dtype=torch.float64))
    assert grpo_advantages(R, gid)[5].item() == pytest.approx(7.0 / (1 + 1e-6), abs=1e-12)


def test_integer_rewards_and_bad_shapes():
    assert grpo_advantages(torch.tensor([1, 0]), torch.tensor([0, 0])).tolist() == pytest.approx([0.7071, -0.7071], abs=1e-4)
    assert dapo_filter_groups(torch.tensor([True, True]), torch.tensor([0, 0])).tolist() == [False, False]
    assert grpo_advantages(torch.zeros(0), torch.zeros(0, dtype=torch.long)).shape == (0,)
    with pytest.raises(ConfigError, match=r"group_ids must have shape \[3\] \(one value per step sample\), got \[2\]"):
        grpo_advantages(torch.zeros(3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError, match="rewards must be a torch.Tensor of shape \\[N\\], got list"):
        grpo_advantages([1.0, 0.0], torch.zeros(2, dtype=torch.long))


def test_grpo_trajectory_level_statistics():
    # traj 0 (3 steps, R=1) and traj 1 (1 step, R=0) in one group.
    R = torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    gid, tid = torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 0, 1])
    # over steps: mean 0.75, unbiased std sqrt((3 * 0.0625 + 0.5625) / 3) = 0.5
    torch.testing.assert_close(grpo_advantages(R, gid, eps=0.0), torch.tensor([0.5, 0.5, 0.5, -1.5], dtype=torch.float64))
    # over trajectories: mean 0.5, std sqrt(0.5)
    h = 0.5 / math.sqrt(0.5)
    torch.testing.assert_close(grpo_advantages(R, gid, eps=0.0, traj_ids=tid),
                               torch.tensor([h, h, h, -h], dtype=torch.float64))


def test_grpo_trajectory_statistics_with_per_step_penalties_stay_bounded():
    """All trajectories fail; one step lost the 0.1 format penalty. Its advantage is the most negative, not -1e5."""
    R = torch.tensor([0.0, -0.1, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    gid, tid = torch.zeros(6, dtype=torch.long), torch.tensor([0, 0, 1, 1, 2, 2])
    A = grpo_advantages(R, gid, traj_ids=tid)
    assert float(A.abs().max()) < 3.0 and int(A.argmin()) == 1
    # hand-worked: mean = (-0.05 + 0 + 0) / 3; var = 3/2 * sum_i w_i (r_i - mean)^2 with w_i = 1/6
    mean = -0.05 / 3
    std = math.sqrt(1.5 * sum((r - mean) ** 2 for r in R.tolist()) / 6)
    torch.testing.assert_close(A, (R - mean) / (std + 1e-6))
    # without penalties, the statistics are those of one reward per trajectory
    R2 = torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    torch.testing.assert_close(grpo_advantages(R2, gid, traj_ids=tid, eps=0.0),
                               grpo_advantages(torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64),
                                               torch.zeros(3, dtype=torch.long), eps=0.0).repeat_interleave(2))


def test_token_and_step_entropy_hand_worked():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1.0, 1e-30, 1e-30]], dtype=torch.float64))
    H = token_entropy(logits)
    assert H[0].item() == pytest.approx(1.5 * math.log(2), abs=1e-12)
    assert H[1].item() == pytest.approx(0.0, abs=1e-12)
    # temperature 2 on logits log p gives p^(1/2) renormalised
    p = torch.tensor([0.5, 0.25, 0.25]).sqrt()
    p = p / p.sum()
    assert token_entropy(logits[0], temperature=2.0).item() == pytest.approx(float(-(p * p.log()).sum()), abs=1e-6)
    ent = torch.tensor([[1.0, 2.0, 6.0], [4.0, 0.0, 0.0], [5.0, 5.0, 5.0]])
    mask = torch.tensor([[1, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert step_entropy(ent, mask).tolist() == [3.0, 4.0, 0.0]
    with pytest.raises(ConfigError, match=r"token_entropy and mask must both be \[N, T\]"):
        step_entropy(ent, mask[:, :2])


def test_empg_hand_worked():
    A = torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64)
    H = torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64)
    traj, step = torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0])
    H_norm, g, f = empg_terms(H, traj, step, k=1.0, k_next=1.0, eps=0.0)
    w = [1.0, math.exp(-1.0), math.exp(-0.5)]
    g_hand = [x / (sum(w) / 3) for x in w]
    torch.testing.assert_close(H_norm, torch.tensor([0.0, 1.0, 0.5], dtype=torch.float64))
    torch.testing.assert_close(g, torch.tensor(g_hand, dtype=torch.float64))
    torch.testing.assert_close(f, torch.tensor([math.exp(-1.0), 0.0, 0.0], dtype=torch.float64))
    mod = [g_hand[0] + 0.05 * math.exp(-1.0), g_hand[1], -g_hand[2]]
    expected = torch.tensor([m - sum(mod) / 3 for m in mod], dtype=torch.float64)
    torch.testing.assert_close(empg_advantages(A, H, traj, step, eps=0.0), expected)
    # numbers: confident correct step amplified (g 1.519), uncertain step damped (g 0.559)
    assert g.tolist() == pytest.approx([1.51944, 0.55897, 0.92159], abs=1e-5)


def test_empg_g_above_one_is_not_simply_below_average_entropy():
    # H_norm = [0, 0.4, 1]: 0.4 is below the mean 0.467, yet g(0.4) < 1. g > 1 exactly when
    # H_norm < -log(mean(exp(-k H_norm))) / k, a threshold at or below the mean by Jensen's inequality.
    H = torch.tensor([0.0, 0.4, 1.0], dtype=torch.float64)
    _, g, _ = empg_terms(H, torch.tensor([0, 1, 2]), torch.tensor([0, 0, 0]), eps=0.0)
    assert g[1].item() == pytest.approx(math.exp(-0.4) / ((1 + math.exp(-0.4) + math.exp(-1)) / 3), abs=1e-12)
    assert g[1].item() < 1 and H[1] < H.mean()


def test_empg_bonus_reads_step_t_plus_one_only():
    # steps 0, 1, 3 of one trajectory (step 2 missing): step 1 has no step 2 in the batch -> no bonus.
    H = torch.tensor([0.3, 0.6, 0.9, 0.0], dtype=torch.float64)
    _, _, f = empg_terms(H, torch.tensor([5, 5, 5, 6]), torch.tensor([0, 1, 3, 0]), eps=0.0)
    assert f[0].item() == pytest.approx(math.exp(-(0.6 / 0.9)))
    assert f[1:].tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ConfigError, match="Two samples share traj_id=5 and step_index=1"):
        empg_terms(H, torch.tensor([5, 5, 5, 6]), torch.tensor([0, 1, 1, 0]))


def test_discounted_returns_and_gigpo_hand_worked():
    # Two trajectories of one task; both start in state "s0"; traj 0 reaches "s1" and wins at step 2.
    r = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    traj, step = torch.tensor([0, 0, 0, 1, 1]), torch.tensor([0, 1, 2, 0, 1])
    G = discounted_returns(r, traj, step, gamma=0.5)
    torch.testing.assert_close(G, torch.tensor([0.25, 0.5, 1.0, 0.0, 0.0], dtype=torch.float64))
    R = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0], dtype=torch.float64)
    obs = torch.tensor([observation_key(o) for o in ("s0", "s1", "s2", "s0", "s1")])
    A = gigpo_advantages(R, torch.zeros(5, dtype=torch.long), G, obs, omega=1.0, norm_by_std=False)
    # episode term: mean over the 5 steps = 0.6 -> [0.4, 0.4, 0.4, -0.6, -0.6]
    # step groups: s0 {0.25, 0} mean 0.125; s1 {0.5, 0} mean 0.25; s2 alone -> 0
    torch.testing.assert_close(A, torch.tensor([0.525, 0.65, 0.4, -0.725, -0.85], dtype=torch.float64))
    with pytest.raises(ConfigError, match="jumps from step_index 0 to 2"):
        discounted_returns(r[:2], traj[:2], torch.tensor([0, 2]), 0.9)


def test_gigpo_episode_term_uses_grpo_statistics():
    """Issue #17: a 2-step win among seven 10-step failures. Counting every trajectory once, as GRPO does, the win
    gets A = 2.47 in both; the episode term used to count steps (A = 5.87)."""  # noqa: D205
    R = torch.tensor([1.0] * 2 + [0.0] * 70, dtype=torch.float64)
    gid = torch.zeros(72, dtype=torch.long)
    tid = torch.tensor([0, 0] + [1 + i // 10 for i in range(70)])
    no_anchor = torch.arange(72)  # every observation unique: the step term is 0
    A_grpo = grpo_advantages(R, gid, traj_ids=tid)
    A_win = 0.875 / math.sqrt(8 / 7 * 0.125 * 0.875)  # (1 - 1/8) / unbiased std of [1, 0 x 7]
    assert float(A_grpo[0]) == pytest.approx(A_win, rel=1e-5) == pytest.approx(2.4749, abs=1e-4)
    A_gigpo = gigpo_advantages(R, gid, torch.zeros(72, dtype=torch.float64), no_anchor, traj_ids=tid)
    torch.testing.assert_close(A_gigpo, A_grpo)
    step_level = gigpo_advantages(R, gid, torch.zeros(72, dtype=torch.float64), no_anchor)  # verl-agent's option
    assert float(step_level[0]) == pytest.approx(5.8748, abs=1e-4)


def test_dapo_filter_and_overlong_hand_worked():
    R = torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.5])
    gid = torch.tensor([0, 0, 1, 1, 2, 2, 3])
    assert dapo_filter_groups(R, gid).tolist() == [False, False, True, True, False, False, False]
    pen = overlong_penalty(torch.tensor([0, 384, 400, 448, 512, 600]), max_len=512, buffer_len=128, factor=2.0)
    assert pen.tolist() == pytest.approx([0.0, 0.0, -0.25, -1.0, -2.0, -2.0])
    with pytest.raises(ConfigError, match=r"buffer_len must be in \(0, max_len=512\], got 0"):
        overlong_penalty(torch.tensor([1]), 512, 0)


def test_observation_key_is_stable_across_processes():
    text = "h\u00e9llo\n world"
    assert observation_key(text) == observation_key(text)
    assert observation_key("") != observation_key(" ")
    code = f"from empg_gym.agents.algorithms.batch import observation_key as k; print(k({text!r}))"
    outs = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
        for seed in ("1", "2")
    }
    assert outs == {str(observation_key(text))}


# ---------------------------------------------------------------- properties over many random batches


@pytest.mark.parametrize("seed", SEEDS)
def test_empg_properties(seed):
    b = random_steps(seed)
    A = grpo_advantages(b["reward"], b["group_id"])
    H_norm, g, f = empg_terms(b["H"], b["traj_id"], b["step_index"])
    # k = k' = 0, zeta = 0 -> base advantage minus its mean
    plain = empg_advantages(A, b["H"], b["traj_id"], b["step_index"], k=0.0, k_next=0.0, zeta=0.0)
    torch.testing.assert_close(plain, A - A.mean())
    assert g.mean().item() == pytest.approx(1.0, abs=1e-12)
    # g > 1 exactly below the soft threshold -log(mean exp(-H_norm)), which is at most the mean of H_norm
    threshold = -torch.log(torch.exp(-H_norm).mean())
    far = (H_norm - threshold).abs() > 1e-9
    assert torch.equal((g > 1)[far], (H_norm < threshold)[far])
    assert bool((H_norm[g > 1 + 1e-12] < H_norm.mean()).all())
    assert threshold <= H_norm.mean() + 1e-12
    # no bonus on the last step of a trajectory, a positive one on every other step (all steps present here)
    assert bool((f[b["is_last"]] == 0).all()) and bool((f[~b["is_last"]] > 0).all())
    for k, zeta in ((1.0, 0.05), (2.5, 0.3)):
        out = empg_advantages(A, b["H"], b["traj_id"], b["step_index"], k=k, k_next=k, zeta=zeta)
        assert abs(out.mean().item()) < 1e-12


@pytest.mark.parametrize("seed", SEEDS)
def test_grpo_invariant_to_positive_affine_rewards_within_groups(seed):
    b = random_steps(seed, min_group=2, binary=False)
    rng = np.random.default_rng(seed + 1000)
    groups = torch.unique(b["group_id"])
    scale = dict(zip(groups.tolist(), rng.uniform(0.5, 5.0, len(groups)), strict=True))
    shift = dict(zip(groups.tolist(), rng.normal(0, 10, len(groups)), strict=True))
    R2 = torch.tensor([scale[int(g)] * float(r) + shift[int(g)] for r, g in zip(b["reward"], b["group_id"], strict=True)],
                      dtype=torch.float64)
    for traj in (None, b["traj_id"]):
        torch.testing.assert_close(grpo_advantages(R2, b["group_id"], traj_ids=traj),
                                   grpo_advantages(b["reward"], b["group_id"], traj_ids=traj), atol=1e-4, rtol=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_dapo_filter_drops_exactly_uniform_groups(seed):
    b = random_steps(seed, binary=True)
    keep = dapo_filter_groups(b["reward"], b["group_id"])
    for g in torch.unique(b["group_id"]):
        in_g = b["group_id"] == g
        uniform = len(torch.unique(b["reward"][in_g])) == 1
        assert bool((keep[in_g] == (not uniform)).all())
    # what is dropped has zero GRPO advantage, except groups of one sample (verl's mean 0, std 1 rule)
    _, inv, counts = torch.unique(b["group_id"], return_inverse=True, return_counts=True)
    dropped = ~keep & (counts[inv] > 1)
    assert bool((grpo_advantages(b["reward"], b["group_id"])[dropped] == 0).all())


# ---------------------------------------------------------------- naive loop == vectorised, over seeds and shapes


@pytest.mark.parametrize("seed", SEEDS)
def test_vectorised_matches_naive(seed):
    b = random_steps(seed)
    R, gid, tid, step = b["reward"], b["group_id"], b["traj_id"], b["step_index"]
    for norm in (True, False):
        torch.testing.assert_close(grpo_advantages(R, gid, norm), naive_grpo(R, gid, norm), atol=1e-6, rtol=0)
        torch.testing.assert_close(grpo_advantages(R, gid, norm, traj_ids=tid), naive_grpo(R, gid, norm, trajs=tid),
                                   atol=1e-6, rtol=0)
    A = grpo_advantages(R, gid)
    k, zeta = (1.0, 0.05) if seed % 2 else (0.5 + seed / 20, 0.2)
    torch.testing.assert_close(empg_advantages(A, b["H"], tid, step, k=k, k_next=2 * k, zeta=zeta),
                               naive_empg(A, b["H"], tid, step, k, 2 * k, zeta), atol=1e-6, rtol=0)
    gamma = 0.95 if seed % 2 else 0.5
    G = discounted_returns(b["step_reward"], tid, step, gamma)
    torch.testing.assert_close(G, naive_returns(b["step_reward"], tid, step, gamma), atol=1e-6, rtol=0)
    for norm in (True, False):
        torch.testing.assert_close(gigpo_advantages(R, gid, G, b["obs_key"], 0.7, norm),
                                   naive_gigpo(R, gid, G, b["obs_key"], 0.7, norm), atol=1e-6, rtol=0)


@pytest.mark.parametrize("shape", [(1, 1, 2), (3, 7, 11), (8, 33, 50)])
def test_entropy_vectorised_matches_naive(shape):
    gen = torch.Generator().manual_seed(sum(shape))
    logits = torch.randn(*shape, generator=gen, dtype=torch.float64) * 3
    mask = torch.rand(shape[:2], generator=gen) > 0.3
    H = token_entropy(logits)
    for i in range(shape[0]):
        for t in range(shape[1]):
            p = torch.softmax(logits[i, t], -1)
            assert H[i, t].item() == pytest.approx(-sum(float(q) * math.log(float(q)) for q in p), abs=1e-9)
    S = step_entropy(H, mask)
    for i in range(shape[0]):
        vals = [float(H[i, t]) for t in range(shape[1]) if mask[i, t]]
        assert S[i].item() == pytest.approx(sum(vals) / len(vals) if vals else 0.0, abs=1e-9)


# ---------------------------------------------------------------- EMPG paper, Proposition 1


@pytest.mark.parametrize("V,scale", [(2, 1.0), (5, 0.1), (5, 3.0), (50, 1.0), (1000, 5.0)])
def test_proposition_1_gradient_norm_equals_one_minus_exp_minus_renyi2(V, scale):
    gen = torch.Generator().manual_seed(V)
    for _ in range(5):
        z = (torch.randn(V, generator=gen, dtype=torch.float64) * scale).requires_grad_(True)
        logp = torch.log_softmax(z, -1)
        pi = logp.exp().detach()
        sq_norms = torch.stack([torch.autograd.grad(logp[a], z, retain_graph=True)[0].pow(2).sum() for a in range(V)])
        expected_sq_norm = float((pi * sq_norms).sum())
        H2 = -math.log(float((pi**2).sum()))  # Rényi entropy of order 2
        assert expected_sq_norm == pytest.approx(1 - math.exp(-H2), abs=1e-10)


def test_empg_ignores_an_entropy_spread_that_is_float32_rounding():
    # issue #23 (7): equal step entropies up to float32 rounding were min-max stretched to [0, 1], so g spread
    # 0.67-1.69 instead of staying 1; a real spread, even a small one, is still normalised
    from empg_gym.agents.algorithms.advantages import empg_terms

    traj, step = torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 1, 2, 0, 1, 2])
    H = (torch.full((6,), 1.7) + torch.tensor([0.0, 1.2e-7, -1.2e-7, 2.4e-7, 0.0, -2.4e-7])).float()
    assert H.max() > H.min()  # the values do differ, by rounding
    H_norm, g, f = empg_terms(H, traj, step)
    assert torch.equal(g, torch.ones(6)) and torch.equal(H_norm, torch.zeros(6))
    assert f.tolist() == [1.0, 1.0, 0.0, 1.0, 1.0, 0.0]
    small = torch.tensor([0.0010, 0.0011, 0.00105, 0.0010, 0.0011, 0.0010])
    H_norm, g, _ = empg_terms(small, traj, step)
    assert H_norm.max().item() == pytest.approx(1.0, abs=1e-3) and g.max() > 1.0 > g.min()
    assert H_norm.dtype == g.dtype == torch.float32
