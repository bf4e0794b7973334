"""verl's loss aggregation over micro-batches and data-parallel ranks equals our trainer's (``LossNorm``).

Inside verl the actor's loss is verl's own ``agg_loss``. Its engines count the mini-batch's response tokens over all
micro-batches and ranks (``batch_num_tokens``, what ``token-mean`` divides by) and scale each rank's share by
``dp_size``, because DDP averages the ranks' gradients; the ``seq-mean-*`` modes divide by ``global_batch_size``,
which verl's v1 trainer sets to the mini-batch's row count (``ppo_mini_batch_size × rollout.n``, padding rows
included), where our :class:`~empg_gym.agents.algorithms.LossNorm` counts the rows with a response token. Given the
same counts, verl's split loss equals our trainer's, for every mode.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("EMPG_GYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401  (the verl venv must import verl: fail, never skip)
else:
    pytest.importorskip("verl", reason="verl is not installed (the verl tests run in .venv-verl: make test-verl)")

from verl.trainer.ppo import core_algos  # noqa: E402

from empg_gym.agents.algorithms import LOSS_AGGS, agg_loss, loss_norm  # noqa: E402


@pytest.mark.parametrize("mode", LOSS_AGGS)
@pytest.mark.parametrize("dp_size", [1, 2])
def test_verl_agg_loss_over_a_split_mini_batch_equals_ours(mode, dp_size):
    g = torch.Generator().manual_seed(3)
    N, T = 12, 9
    loss_mat = torch.randn(N, T, generator=g)
    mask = torch.zeros(N, T, dtype=torch.int64)
    for i, n in enumerate(torch.randint(0, T + 1, (N,), generator=g).tolist()):
        mask[i, :n] = 1
    mask[0, :] = 0  # a row without response tokens (verl's padding rows look like this)
    norm = loss_norm(mask)
    ranks = torch.tensor_split(torch.randperm(N, generator=g), dp_size)
    per_rank = []
    for rank in ranks:
        micro = torch.tensor_split(rank, 3)
        per_rank.append(sum(core_algos.agg_loss(
            loss_mat[m], mask[m], mode, dp_size=dp_size, batch_num_tokens=norm.num_tokens,
            global_batch_size=norm.num_seqs, loss_scale_factor=T) for m in micro))
    verl_loss = torch.stack(per_rank).mean()  # DDP averages the ranks' gradients
    ours_split = sum(agg_loss(loss_mat[m], mask[m], mode, T, norm) for rank in ranks
                     for m in torch.tensor_split(rank, 3))
    ours_whole = agg_loss(loss_mat, mask, mode, T)
    torch.testing.assert_close(verl_loss, ours_whole, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(ours_split, ours_whole, atol=1e-6, rtol=1e-6)
