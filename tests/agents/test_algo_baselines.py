"""RLOO, REINFORCE++(-baseline), GAE, GSPO/CISPO losses and the value loss: hand-worked cases and naive loops.

The naive references transcribe verl 0.9.1's ``verl/trainer/ppo/core_algos.py`` loops (one sample at a time, Python
dicts for the groups) so the vectorised functions are checked against verl's formulas row by row:
``compute_rloo_outcome_advantage``, ``compute_reinforce_plus_plus_baseline_outcome_advantage``,
``compute_reinforce_plus_plus_outcome_advantage``, ``compute_gae_advantage_return``, ``compute_policy_loss_gspo``,
``compute_policy_loss_cispo``, ``compute_value_loss`` and ``verl.utils.torch_functional.masked_whiten``.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pytest
import torch

from empg_gym.agents.algorithms import (
    LOSS_AGGS,
    explained_variance,
    gae_advantages,
    last_token_rewards,
    loss_norm,
    masked_whiten,
    policy_loss,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
    value_loss,
)
from empg_gym.errors import ConfigError

SEEDS = range(8)
D = torch.float64


def random_case(seed: int, N: int = 9, T: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    mask = torch.arange(T)[None, :] < lengths[:, None]
    if seed % 2:  # multi-turn style: observation tokens (mask 0) inside the response
        mask = mask & (torch.rand(N, T, generator=g) > 0.25)
        mask[:, 0] = True
    return {
        "reward": torch.randint(0, 3, (N,), generator=g).to(D),
        "group": torch.randint(0, 3, (N,), generator=g),
        "mask": mask,
        "token_rewards": torch.randn(N, T, generator=g, dtype=D) * mask,
        "values": torch.randn(N, T, generator=g, dtype=D),
        "logp": -torch.rand(N, T, generator=g, dtype=D) * 2,
        "old": -torch.rand(N, T, generator=g, dtype=D) * 2,
        "A": torch.randn(N, generator=g, dtype=D),
    }


# ------------------------------------------------------------------ naive transcriptions of verl's loops


def naive_whiten(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    vals = [float(v) for v, m in zip(x.flatten(), mask.flatten(), strict=True) if m]
    n = len(vals)
    mean = sum(vals) / (n + 1e-8)
    var = sum((v - mean) ** 2 for v in vals) / (n + 1e-8) * n / (n - 1)
    return (x - mean) / math.sqrt(var + 1e-8)


def naive_rloo(rewards: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    id2score: dict[int, list[float]] = defaultdict(list)
    for i in range(len(rewards)):
        id2score[int(index[i])].append(float(rewards[i]))
    out = rewards.clone()
    for i in range(len(rewards)):
        scores = id2score[int(index[i])]
        n = len(scores)
        if n > 1:
            mean = sum(scores) / n
            out[i] = float(rewards[i]) * n / (n - 1) - mean * n / (n - 1)
    return out


def naive_rpp_baseline(rewards: torch.Tensor, index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    id2score: dict[int, list[float]] = defaultdict(list)
    for i in range(len(rewards)):
        id2score[int(index[i])].append(float(rewards[i]))
    s = rewards.clone()
    for i in range(len(rewards)):
        scores = id2score[int(index[i])]
        s[i] = float(rewards[i]) - (sum(scores) / len(scores) if len(scores) > 1 else 0.0)
    scores = s[:, None] * mask
    return naive_whiten(scores, mask) * mask


def naive_rpp(token_rewards: torch.Tensor, mask: torch.Tensor, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row: the return over the masked positions only; an unmasked position has return 0."""
    returns = torch.zeros_like(token_rewards)
    for i in range(token_rewards.shape[0]):
        running = 0.0
        for t in reversed(range(token_rewards.shape[1])):
            if mask[i, t]:
                running = float(token_rewards[i, t]) + gamma * running
                returns[i, t] = running
            else:  # an observation token: its reward is not counted and the return passes through undiscounted
                pass
    return naive_whiten(returns, mask) * mask, returns


def naive_gae(r: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, gamma: float, lam: float):
    """Per row: GAE over the compressed sequence of masked positions; an unmasked position holds the advantage of
    the next masked position (0 after the last)."""  # noqa: D205
    adv = torch.zeros_like(v)
    for i in range(v.shape[0]):
        pos = [t for t in range(v.shape[1]) if mask[i, t]]
        a = {}
        nxt_v, nxt_a = 0.0, 0.0
        for t in reversed(pos):
            delta = float(r[i, t]) + gamma * nxt_v - float(v[i, t])
            nxt_a = delta + gamma * lam * nxt_a
            nxt_v = float(v[i, t])
            a[t] = nxt_a
        carry = 0.0
        for t in reversed(range(v.shape[1])):
            carry = a.get(t, carry)
            adv[i, t] = carry
    return naive_whiten(adv, mask), adv + v


# ---------------------------------------------------------------------------------- hand-worked cases


def test_rloo_hand_worked():
    # group 0: n = 3 -> R_i - mean of the other two; group 1 has one sample: verl's rloo leaves it as it is
    A = rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 1.0]), torch.tensor([0, 0, 0, 1]))
    assert A.tolist() == [1.0, -0.5, -0.5, 1.0]
    # step rows, one trajectory of 2 steps (R = 1) and one of 1 step (R = 0): n = 2 trajectories, not 3 rows
    A = rloo_advantages(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0, 0, 0]), traj_ids=torch.tensor([7, 7, 8]))
    assert A.tolist() == [1.0, 1.0, -1.0]
    # the same rows counted as samples (verl-agent's layout): n = 3, 1 - 0.5, 1 - 0.5, 0 - 1
    assert rloo_advantages(torch.tensor([1.0, 1.0, 0.0]), torch.tensor([0, 0, 0])).tolist() == [0.5, 0.5, -1.0]


def test_reinforce_pp_baseline_hand_worked():
    # s = R - group mean = [0.5, -0.5, 0, 0]; tokens 2, 1, 1, 2 -> six values 0.5, 0.5, -0.5, 0, 0, 0
    # mean 1/12, unbiased var 102/720, std 0.376386: (5/12, -7/12, -1/12) / std
    A = reinforce_pp_baseline_advantages(torch.tensor([1.0, 0.0, 1.0, 1.0], dtype=D), torch.tensor([0, 0, 1, 1]),
                                         torch.tensor([[1, 1], [1, 0], [1, 0], [1, 1]]))
    expected = [[1.107019, 1.107019], [-1.549826, 0.0], [-0.221404, 0.0], [-0.221404, -0.221404]]
    torch.testing.assert_close(A, torch.tensor(expected, dtype=D), atol=1e-6, rtol=0)


def test_reinforce_pp_skips_observation_tokens_hand_worked():
    # mask [1, 0, 1], reward 1 on the last token, gamma 0.5: the observation token neither discounts nor gets a return
    A, G = reinforce_pp_advantages(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 0.0]], dtype=D),
                                   torch.tensor([[1, 0, 1], [1, 1, 0]]), gamma=0.5)
    assert G.tolist() == [[0.5, 0.0, 1.0], [0.0, 0.0, 0.0]]
    # whitened over the four masked returns 0.5, 1, 0, 0: mean 0.375, unbiased std 0.478714
    torch.testing.assert_close(A[0], torch.tensor([0.261116, 0.0, 1.305582], dtype=D), atol=1e-6, rtol=0)


def test_gae_hand_worked_with_an_observation_gap():
    # t=2: delta = 1 - 0.8 = 0.2; t=1 is an observation: skipped (A and V_next carried); t=0: delta = 0.8 - 0.5 = 0.3,
    # A = 0.3 + 1 * 1 * 0.2 = 0.5; returns = A + V = [1.0, 9.2, 1.0]
    r = torch.tensor([[0.0, 0.0, 1.0]], dtype=D)
    v = torch.tensor([[0.5, 9.0, 0.8]], dtype=D)
    mask = torch.tensor([[1, 0, 1]])
    A, G = gae_advantages(r, v, mask, gamma=1.0, lam=1.0)
    torch.testing.assert_close(G, torch.tensor([[1.0, 9.2, 1.0]], dtype=D))
    # whitened over {0.5, 0.2}: mean 0.35, unbiased std 0.212132; the gap holds 0.2 too (verl does not zero it)
    torch.testing.assert_close(A, torch.tensor([[0.707107, -0.707107, -0.707107]], dtype=D), atol=1e-6, rtol=0)
    # gamma 0.5, lam 0.5 on two tokens: t=1 delta = 1 - 0.8 = 0.2; t=0 delta = 0.4 - 0.5 = -0.1, A = -0.1 + 0.05
    _, G = gae_advantages(torch.tensor([[0.0, 1.0]], dtype=D), torch.tensor([[0.5, 0.8]], dtype=D), torch.ones(1, 2),
                          gamma=0.5, lam=0.5)
    torch.testing.assert_close(G, torch.tensor([[0.45, 1.0]], dtype=D))


def test_whiten_matches_verl_and_rejects_a_single_token():
    x = torch.tensor([[1.0, 3.0, 9.0]], dtype=D)
    torch.testing.assert_close(masked_whiten(x, torch.tensor([[1, 1, 0]])),
                               torch.tensor([[-1, 1, 7]], dtype=D) / math.sqrt(2 + 1e-8), atol=1e-7, rtol=0)
    with pytest.raises(ConfigError, match="masked_whiten needs at least 2 masked entries .* got 1"):
        masked_whiten(x, torch.tensor([[1, 0, 0]]))


def test_last_token_rewards_put_the_outcome_where_verl_does():
    out = last_token_rewards(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([[1, 1, 0], [1, 0, 1], [0, 0, 0]]))
    assert out.tolist() == [[0.0, 1.0, 0.0], [0.0, 0.0, 2.0], [0.0, 0.0, 0.0]]


def test_gspo_hand_worked_sequence_ratio_and_gradient():
    # row 0: token ratios 1.5, 1.0 -> s = sqrt(1.5) = 1.2247, clipped at 1.2 for A = +1 (both tokens, no gradient)
    # row 1: token ratios 0.5, 2.0 -> s = 1.0, A = -1: unclipped, loss 1.0 at both tokens
    logp = torch.log(torch.tensor([[1.5, 1.0], [0.5, 2.0]], dtype=D)).requires_grad_(True)
    old, mask, A = torch.zeros(2, 2, dtype=D), torch.ones(2, 2), torch.tensor([1.0, -1.0], dtype=D)
    loss, m = policy_loss(logp, old, A, mask, 0.2, 0.2, kind="gspo", agg="seq-mean-token-mean")
    assert loss.item() == pytest.approx((-1.2 + 1.0) / 2)
    assert m["actor/clipfrac"] == pytest.approx(0.5) and m["actor/ratio_mean"] == pytest.approx((2 * 1.5**0.5 + 2) / 4)
    loss.backward()
    # d loss / d logp_t = -A s / (|y| K): 0 on the clipped row, +1 * 1 / (2 * 2) on row 1's tokens
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 0.0], [0.25, 0.25]], dtype=D))


def test_cispo_hand_worked_keeps_every_gradient():
    # ratios 1.5 and 0.5, clip [0.8, 1.2]: weights 1.2 and 0.8, both "clipped", yet both tokens keep a gradient
    logp = torch.log(torch.tensor([[1.5, 0.5]], dtype=D)).requires_grad_(True)
    loss, m = policy_loss(logp, torch.zeros(1, 2, dtype=D), torch.tensor([2.0], dtype=D), torch.ones(1, 2),
                          0.2, 0.2, kind="cispo")
    assert loss.item() == pytest.approx(-(1.2 * 2 * math.log(1.5) + 0.8 * 2 * math.log(0.5)) / 2)
    assert m["actor/clipfrac"] == 1.0
    loss.backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[-1.2, -0.8]], dtype=D))  # -w A / 2 tokens
    # vanilla PPO: both tokens on the clip branch... only the A > 0, r > 1 + eps one loses its gradient
    logp2 = logp.detach().clone().requires_grad_(True)
    policy_loss(logp2, torch.zeros(1, 2, dtype=D), torch.tensor([2.0], dtype=D), torch.ones(1, 2), 0.2, 0.2)[0].backward()
    assert logp2.grad[0, 0] == 0.0 and logp2.grad[0, 1] != 0.0


def test_value_loss_hand_worked_and_clip_none():
    v = torch.tensor([[1.0, 0.0], [0.2, 0.0]], dtype=D)
    old = torch.zeros(2, 2, dtype=D)
    G = torch.tensor([[2.0, 1.0], [0.0, 0.0]], dtype=D)
    mask = torch.tensor([[1, 1], [1, 0]])
    # clipped V = [0.5, 0, 0.2]; per-token max((V-G)^2, (Vc-G)^2) = 2.25, 1, 0.04 -> token-mean 1.0967, x 1/2
    loss, m = value_loss(v, old, G, mask, clip=0.5)
    assert loss.item() == pytest.approx(0.5 * (2.25 + 1 + 0.04) / 3)
    assert m["critic/vf_clipfrac"] == pytest.approx(1 / 3) and m["critic/vf_loss"] == pytest.approx(loss.item())
    loss, _ = value_loss(v, old, G, mask, clip=None, agg="seq-mean-token-sum")
    assert loss.item() == pytest.approx(0.5 * ((1 + 1) + 0.04) / 2)
    with pytest.raises(ConfigError, match="value clip must be > 0"):
        value_loss(v, old, G, mask, clip=0.0)


def test_explained_variance_hand_worked():
    G = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    m = torch.ones(1, 4)
    assert explained_variance(G, G, m).item() == pytest.approx(1.0, abs=1e-4)
    assert explained_variance(torch.full((1, 4), 0.5), G, m).item() == pytest.approx(0.0, abs=1e-4)
    # V = 0.5 G: residual variance 0.0625, return variance 0.25 -> 0.75
    assert explained_variance(0.5 * G, G, m).item() == pytest.approx(0.75, abs=1e-3)


# --------------------------------------------------------------------------- naive vs vectorised


@pytest.mark.parametrize("seed", SEEDS)
def test_estimators_equal_verls_loops(seed):
    c = random_case(seed)
    torch.testing.assert_close(rloo_advantages(c["reward"], c["group"]), naive_rloo(c["reward"], c["group"]))
    torch.testing.assert_close(reinforce_pp_baseline_advantages(c["reward"], c["group"], c["mask"]),
                               naive_rpp_baseline(c["reward"], c["group"], c["mask"]))
    for gamma in (1.0, 0.9):
        A, G = reinforce_pp_advantages(c["token_rewards"], c["mask"], gamma)
        nA, nG = naive_rpp(c["token_rewards"], c["mask"], gamma)
        torch.testing.assert_close(G, nG)
        torch.testing.assert_close(A, nA)
    for gamma, lam in ((1.0, 1.0), (0.99, 0.95), (0.5, 0.0)):
        A, G = gae_advantages(c["token_rewards"], c["values"], c["mask"], gamma, lam)
        nA, nG = naive_gae(c["token_rewards"], c["values"], c["mask"], gamma, lam)
        torch.testing.assert_close(G, nG)
        torch.testing.assert_close(A, nA)


def naive_gspo_cispo(kind, logp, old, A, mask, lo, hi):
    """Per-token losses as verl's loops write them (values only)."""
    out = torch.zeros_like(logp)
    for i in range(logp.shape[0]):
        pos = [t for t in range(logp.shape[1]) if mask[i, t]]
        s = math.exp(sum(float(logp[i, t] - old[i, t]) for t in pos) / max(len(pos), 1))
        for t in range(logp.shape[1]):
            a = float(A[i])
            if kind == "gspo":
                r = min(s, math.exp(10.0))
                out[i, t] = max(-a * r, -a * min(max(r, 1 - lo), 1 + hi))
            else:
                r = math.exp(max(min(float(logp[i, t] - old[i, t]), 20.0), -20.0))
                out[i, t] = -min(max(r, 1 - lo), 1 + hi) * a * float(logp[i, t])
    return out


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("kind", ["gspo", "cispo"])
def test_gspo_cispo_equal_naive_in_every_aggregation(seed, kind):
    from empg_gym.agents.algorithms import agg_loss

    c = random_case(seed)
    lo, hi = (3e-4, 4e-4) if kind == "gspo" and seed % 2 else (0.2, 0.28)
    tok = naive_gspo_cispo(kind, c["logp"], c["old"], c["A"], c["mask"], lo, hi)
    for agg in LOSS_AGGS:
        loss, _ = policy_loss(c["logp"], c["old"], c["A"], c["mask"], lo, hi, agg=agg, norm_len=7, kind=kind)
        assert loss.item() == pytest.approx(agg_loss(tok, c["mask"], agg, 7).item(), rel=1e-10, abs=1e-12)
        # micro-batches with the mini-batch's LossNorm add up to the whole (GSPO's ratio is per row)
        norm = loss_norm(c["mask"])
        parts = sum(policy_loss(c["logp"][s], c["old"][s], c["A"][s], c["mask"][s], lo, hi, agg=agg, norm_len=7,
                                norm=norm, kind=kind)[0].item() for s in (slice(0, 4), slice(4, None)))
        assert parts == pytest.approx(loss.item(), rel=1e-10, abs=1e-12)


def test_policy_loss_kind_errors():
    z, m = torch.zeros(1, 2), torch.ones(1, 2)
    with pytest.raises(ConfigError, match=r"policy loss kind 'gpso' is not one of .* Did you mean 'gspo'"):
        policy_loss(z, z, torch.ones(1), m, kind="gpso")
    with pytest.raises(ConfigError, match=r"the dual clip \(clip_c=3.0\) applies to kind='vanilla' only"):
        policy_loss(z, z, torch.ones(1), m, clip_c=3.0, kind="cispo")
