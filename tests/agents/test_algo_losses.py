"""Policy loss, aggregation and KL: hand-worked cases, zero gradient on clipped tokens, naive loops."""

from __future__ import annotations

import math

import pytest
import torch

from empg_gym.agents.algorithms import LOSS_AGGS, agg_loss, kl_penalty, loss_norm, policy_loss
from empg_gym.errors import ConfigError


def test_policy_loss_hand_worked_clip_higher_and_dual_clip():
    r = torch.tensor([0.5, 0.9, 1.0, 1.1, 1.5, 4.0], dtype=torch.float64)
    old = torch.zeros(2, 6, dtype=torch.float64)
    logp = torch.log(r).repeat(2, 1)
    A = torch.tensor([1.0, -1.0], dtype=torch.float64)
    mask = torch.ones(2, 6)
    # A = +1: max(-r, -clip(r, 0.8, 1.28)) -> -0.5, -0.9, -1, -1.1, -1.28 (clipped), -1.28 (clipped)
    # A = -1: max(r, clip(r, 0.8, 1.28))   ->  0.8 (clipped), 0.9, 1, 1.1, 1.5, 4 -> dual clip min(4, 3) = 3
    pos = [-0.5, -0.9, -1.0, -1.1, -1.28, -1.28]
    neg = [0.8, 0.9, 1.0, 1.1, 1.5, 3.0]
    loss, m = policy_loss(logp, old, A, mask, clip_low=0.2, clip_high=0.28, clip_c=3.0)
    assert loss.item() == pytest.approx((sum(pos) + sum(neg)) / 12)
    assert m["actor/clipfrac"] == pytest.approx(3 / 12)  # -1.28 twice, 0.8 once
    assert m["actor/clipfrac_lower"] == pytest.approx(1 / 12)
    assert m["actor/approx_kl"] == pytest.approx(-float(torch.log(r).mean()))
    assert m["actor/pg_loss"] == pytest.approx(loss.item())
    # without dual clip the A<0, r=4 token costs 4
    loss_nodual, _ = policy_loss(logp, old, A, mask, clip_low=0.2, clip_high=0.28)
    assert loss_nodual.item() == pytest.approx((sum(pos) + sum(neg) - 3.0 + 4.0) / 12)
    # [N, T] advantages equal the broadcast [N] ones
    loss_2d, _ = policy_loss(logp, old, A[:, None].expand(2, 6), mask, 0.2, 0.28, 3.0)
    assert loss_2d.item() == pytest.approx(loss.item())


def test_ratio_is_clamped_at_exp_20():
    logp = torch.tensor([[100.0]])
    loss, _ = policy_loss(logp, torch.zeros(1, 1), torch.tensor([-1.0]), torch.ones(1, 1), clip_c=None)
    assert loss.item() == pytest.approx(math.exp(20.0))


@pytest.mark.parametrize("seed", range(20))
def test_zero_gradient_exactly_on_clipped_tokens(seed):
    gen = torch.Generator().manual_seed(seed)
    N, T = 6, 9
    old = torch.randn(N, T, generator=gen, dtype=torch.float64)
    logp = (old + torch.randn(N, T, generator=gen, dtype=torch.float64) * 0.6).requires_grad_(True)
    A = torch.randn(N, generator=gen, dtype=torch.float64)
    mask = torch.rand(N, T, generator=gen) > 0.2
    el, eh, c = 0.2, 0.28, 1.5
    loss, _ = policy_loss(logp, old, A, mask, el, eh, c, agg="seq-mean-token-sum")
    (grad,) = torch.autograd.grad(loss, logp)
    r = torch.exp(logp.detach() - old)
    Ab = A[:, None].expand(N, T)
    clipped = ((Ab > 0) & (r > 1 + eh)) | ((Ab < 0) & (r < 1 - el)) | ((Ab < 0) & (r > c))
    assert bool((grad[clipped] == 0).all())
    assert bool((grad[~mask] == 0).all())
    live = ~clipped & mask
    assert live.any()
    # d/dlogp of -A r over the token sum, divided by the number of non-empty sequences
    n_seq = int((mask.sum(-1) > 0).sum())
    torch.testing.assert_close(grad[live], (-Ab * r)[live] / n_seq)


def naive_policy_loss(logp, old, A, mask, el, eh, c):
    per_tok = torch.zeros_like(logp)
    for i in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            r = math.exp(max(-20.0, min(20.0, float(logp[i, t] - old[i, t]))))
            a = float(A[i])
            L = max(-a * r, -a * min(max(r, 1 - el), 1 + eh))
            if c is not None and a < 0:
                L = min(L, -a * c)
            per_tok[i, t] = L
    return per_tok


def naive_agg(L, mask, agg, norm_len=None):
    rows = [[float(L[i, t]) for t in range(L.shape[1]) if mask[i, t]] for i in range(L.shape[0])]
    if agg == "token-mean":
        flat = [x for row in rows for x in row]
        return sum(flat) / max(len(flat), 1)
    seqs = [(sum(row) / len(row) if agg == "seq-mean-token-mean" else sum(row)) for row in rows if row]
    seq_mean = sum(seqs) / max(len(seqs), 1)
    if agg == "seq-mean-token-sum-norm":  # verl 0.9.1: the seq-mean of token sums, then / loss_scale_factor
        return seq_mean / (norm_len or L.shape[1])
    return seq_mean


@pytest.mark.parametrize("seed,N,T", [(s, n, t) for s, (n, t) in enumerate([(1, 1), (2, 5), (7, 3), (16, 40)] * 3)])
def test_policy_loss_and_agg_match_naive_loops(seed, N, T):
    gen = torch.Generator().manual_seed(seed)
    old = torch.randn(N, T, generator=gen, dtype=torch.float64)
    logp = old + torch.randn(N, T, generator=gen, dtype=torch.float64) * 0.5
    A = torch.randn(N, generator=gen, dtype=torch.float64)
    mask = torch.rand(N, T, generator=gen) > 0.3
    mask[0, 0] = True
    clip_c = None if seed % 2 else 3.0
    per_tok = naive_policy_loss(logp, old, A, mask, 0.2, 0.28, clip_c)
    for agg in LOSS_AGGS:
        loss, _ = policy_loss(logp, old, A, mask, 0.2, 0.28, clip_c, agg=agg, norm_len=64 if seed % 3 else None)
        expected = naive_agg(per_tok, mask, agg, 64 if seed % 3 else None)
        assert loss.item() == pytest.approx(expected, abs=1e-6)
    for kind in ("k1", "k2", "k3"):
        kl = kl_penalty(logp, old, kind)
        for i in range(N):
            for t in range(T):
                d = float(logp[i, t] - old[i, t])
                x = max(-20.0, min(20.0, -d))
                want = {"k1": d, "k2": 0.5 * d * d, "k3": max(-10.0, min(10.0, math.exp(x) - x - 1))}[kind]
                assert kl[i, t].item() == pytest.approx(want, abs=1e-9)


def test_agg_loss_hand_worked_and_empty_rows():
    L = torch.tensor([[1.0, 3.0, 100.0], [5.0, 0.0, 100.0], [100.0, 100.0, 100.0]])
    M = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]])
    assert agg_loss(L, M, "token-mean").item() == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    assert agg_loss(L, M, "seq-mean-token-mean").item() == pytest.approx(3.5)  # (2 + 5) / 2, empty row left out
    assert agg_loss(L, M, "seq-mean-token-sum").item() == pytest.approx(4.5)  # (4 + 5) / 2
    # verl 0.9.1 / Dr.GRPO: token sums 4 and 5 averaged over the K = 2 non-empty rows, then / loss_scale_factor
    assert agg_loss(L, M, "seq-mean-token-sum-norm").item() == pytest.approx(4.5 / 3)  # default factor: T = 3
    assert agg_loss(L, M, "seq-mean-token-sum-norm", norm_len=9).item() == pytest.approx(0.5)
    with pytest.raises(ConfigError, match=r"loss aggregation 'token_mean' is not one of .* Did you mean 'token-mean'"):
        agg_loss(L, M, "token_mean")


def test_kl_estimators_hand_worked_and_clamped():
    logp = torch.tensor([0.0, -2.0, 0.0, 30.0])
    ref = torch.tensor([-1.0, 0.0, 30.0, 0.0])
    assert kl_penalty(logp, ref, "k1").tolist() == pytest.approx([1.0, -2.0, -30.0, 30.0])
    assert kl_penalty(logp, ref, "k2").tolist() == pytest.approx([0.5, 2.0, 450.0, 450.0])
    k3 = kl_penalty(logp, ref, "k3").tolist()
    assert k3[0] == pytest.approx(math.exp(-1) + 1 - 1)  # x = -1: e^-1 - (-1) - 1
    assert k3[1] == pytest.approx(math.exp(2) - 2 - 1)
    assert k3[2] == 10.0  # exp(20) - 20 - 1 clamped to 10
    assert k3[3] == 10.0  # x clamped to -20: e^-20 + 20 - 1 = 19, clamped to 10
    assert kl_penalty(logp, ref, "low_var_kl").tolist() == k3
    with pytest.raises(ConfigError, match=r"KL kind 'k4' is not one of \('k1', 'k2', 'k3'\)"):
        kl_penalty(logp, ref, "k4")


def test_policy_loss_rejects_bad_input():
    x = torch.zeros(2, 3)
    with pytest.raises(ConfigError, match=r"must all be \[N, T\]; got \[2, 3\], \[2, 2\]"):
        policy_loss(x, x[:, :2], torch.zeros(2), torch.ones(2, 3))
    with pytest.raises(ConfigError, match="clip_c must be > 1 .* got 0.5"):
        policy_loss(x, x, torch.zeros(2), torch.ones(2, 3), clip_c=0.5)
    with pytest.raises(ConfigError, match=r"advantages must be \[N\] or \[N, T\] with N=2, got \[3\]"):
        policy_loss(x, x, torch.zeros(3), torch.ones(2, 3))


def test_seq_mean_token_sum_norm_is_verl_0_9_1s():
    """Issue #15 item 4: verl 0.9.1's agg_loss averages the token sums over the non-empty sequences, *then* divides
    by loss_scale_factor. We divided the plain sum by the factor: N times verl's on N sequences."""  # noqa: D205
    L = torch.tensor([[2.0, 4.0, 6.0, 9.0], [1.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0], [3.0, 3.0, 3.0, 3.0]])
    M = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    # token sums 12, 1, (empty), 12; K = 3 non-empty sequences; (12 + 1 + 12) / 3 = 25 / 3
    assert agg_loss(L, M, "seq-mean-token-sum-norm", norm_len=5).item() == pytest.approx(25 / 3 / 5)
    assert agg_loss(L, M, "seq-mean-token-sum-norm").item() == pytest.approx(25 / 3 / 4)  # default: T = 4
    assert agg_loss(L, M, "seq-mean-token-sum-norm", norm_len=1).item() == pytest.approx(
        agg_loss(L, M, "seq-mean-token-sum").item())
    big = torch.rand(60, 40, generator=torch.Generator().manual_seed(1))  # the 60-sequence batch
    full = torch.ones(60, 40)
    verl = (big.sum(-1).sum() / 60 / 40).item()
    assert agg_loss(big, full, "seq-mean-token-sum-norm").item() == pytest.approx(verl)  # was 60 x verl


@pytest.mark.parametrize("seed", range(6))
def test_micro_batch_shares_add_up_to_the_mini_batch_loss_and_gradient(seed):
    """Issue #17: with the mini-batch's LossNorm, any split into micro-batches sums to the whole, in every mode."""
    gen = torch.Generator().manual_seed(seed)
    N, T = 9, 7
    old = torch.randn(N, T, generator=gen, dtype=torch.float64)
    logp = (old + 0.3 * torch.randn(N, T, generator=gen, dtype=torch.float64)).requires_grad_(True)
    A = torch.randn(N, generator=gen, dtype=torch.float64)
    lengths = torch.randint(0, T + 1, (N,), generator=gen)
    lengths[0] = T
    mask = torch.arange(T)[None, :] < lengths[:, None]  # unequal lengths, maybe an empty row
    norm = loss_norm(mask)
    cuts = sorted(torch.randperm(N - 1, generator=gen)[:3].add(1).tolist())
    for agg in LOSS_AGGS:
        whole, _ = policy_loss(logp, old, A, mask, 0.2, 0.28, 3.0, agg, 5)
        (g_whole,) = torch.autograd.grad(whole, logp)
        parts = [policy_loss(logp[a:b], old[a:b], A[a:b], mask[a:b], 0.2, 0.28, 3.0, agg, 5, norm)[0]
                 for a, b in zip([0, *cuts], [*cuts, N], strict=True)]
        (g_parts,) = torch.autograd.grad(sum(parts), logp)
        assert sum(parts).item() == pytest.approx(whole.item(), abs=1e-12), agg
        torch.testing.assert_close(g_parts, g_whole, rtol=0, atol=1e-12)
        kl_whole = agg_loss(kl_penalty(logp, old, "k3"), mask, agg, 5)
        kl_parts = sum(agg_loss(kl_penalty(logp[a:b], old[a:b], "k3"), mask[a:b], agg, 5, norm)
                       for a, b in zip([0, *cuts], [*cuts, N], strict=True))
        assert kl_parts.item() == pytest.approx(kl_whole.item(), abs=1e-12), agg
