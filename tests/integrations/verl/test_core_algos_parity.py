"""Our baseline estimators and losses equal verl 0.9.1's ``core_algos`` on single-turn token-level input (issue #23).

One row per response, the outcome on its last response token (multi-turn rows with observation tokens inside the
mask for REINFORCE++ and GAE, which verl's loops skip). Runs in the verl venv (``make test-verl``); elsewhere the
same functions are checked against hand-worked numbers and transcriptions of verl's loops
(``tests/agents/test_algo_baselines.py``).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

if os.environ.get("EMPG_GYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401  (the verl venv must import verl: fail, never skip)
else:
    pytest.importorskip("verl", reason="verl is not installed (the verl tests run in .venv-verl: make test-verl)")

from verl.trainer.ppo import core_algos  # noqa: E402
from verl.workers.config import ActorConfig  # noqa: E402

from empg_gym.agents.algorithms import (  # noqa: E402
    LOSS_AGGS,
    gae_advantages,
    last_token_rewards,
    policy_loss,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
    value_loss,
)


def case(seed: int, N: int = 10, T: int = 7, gaps: bool = False) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, T + 1, (N,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).float()
    if gaps:  # observation tokens inside a multi-turn response
        mask = mask * (torch.rand(N, T, generator=g) > 0.3).float()
        mask[:, 0] = 1.0
    reward = torch.randint(0, 3, (N,), generator=g).float()
    return {"mask": mask, "reward": reward, "index": np.array([f"p{i}" for i in torch.randint(0, 3, (N,), generator=g)]),
            "group": torch.randint(0, 3, (N,), generator=g), "values": torch.randn(N, T, generator=g),
            "logp": -torch.rand(N, T, generator=g) * 2, "old": -torch.rand(N, T, generator=g) * 2,
            "token_rewards": torch.randn(N, T, generator=g) * mask}


def _ids(index: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.unique(index, return_inverse=True)[1])


@pytest.mark.parametrize("seed", range(5))
def test_outcome_estimators_equal_verls(seed):
    c = case(seed)
    token_r = last_token_rewards(c["reward"], c["mask"])
    verl_A, _ = core_algos.compute_rloo_outcome_advantage(token_r.clone(), c["mask"], c["index"])
    torch.testing.assert_close(rloo_advantages(c["reward"], _ids(c["index"]))[:, None] * c["mask"], verl_A)
    verl_A, _ = core_algos.compute_reinforce_plus_plus_baseline_outcome_advantage(token_r.clone(), c["mask"],
                                                                                  c["index"])
    torch.testing.assert_close(reinforce_pp_baseline_advantages(c["reward"], _ids(c["index"]), c["mask"]), verl_A)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("gaps", [False, True])
def test_discounted_estimators_equal_verls(seed, gaps):
    c = case(seed, gaps=gaps)
    for gamma in (1.0, 0.9):
        verl_A, verl_G = core_algos.compute_reinforce_plus_plus_outcome_advantage(
            c["token_rewards"], c["mask"], config=SimpleNamespace(gamma=gamma))
        A, G = reinforce_pp_advantages(c["token_rewards"], c["mask"], gamma)
        torch.testing.assert_close((A, G), (verl_A, verl_G))
    for gamma, lam in ((1.0, 1.0), (0.99, 0.95)):
        verl_A, verl_G = core_algos.compute_gae_advantage_return(c["token_rewards"], c["values"], c["mask"], gamma, lam)
        torch.testing.assert_close(gae_advantages(c["token_rewards"], c["values"], c["mask"], gamma, lam),
                                   (verl_A, verl_G))


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", ["vanilla", "gspo", "cispo"])
@pytest.mark.parametrize("agg", LOSS_AGGS)
def test_policy_losses_equal_verls(seed, kind, agg):
    c = case(seed)
    lo, hi = (3e-4, 4e-4) if kind == "gspo" else (0.2, 0.28)
    A = torch.randn(len(c["reward"]), generator=torch.Generator().manual_seed(seed))
    config = ActorConfig(strategy="fsdp", clip_ratio_low=lo, clip_ratio_high=hi, clip_ratio_c=3.0,
                         loss_agg_mode=agg, ppo_mini_batch_size=4, ppo_micro_batch_size_per_gpu=2, rollout_n=1)
    fn = core_algos.get_policy_loss_fn(kind)
    verl_logp = c["logp"].clone().requires_grad_(True)
    verl_loss, _ = fn(c["old"], verl_logp, A[:, None].expand_as(c["logp"]), c["mask"], agg, config)
    verl_loss.backward()
    logp = c["logp"].clone().requires_grad_(True)
    loss, _ = policy_loss(logp, c["old"], A, c["mask"], lo, hi, 3.0 if kind == "vanilla" else None, agg,
                          norm_len=c["mask"].shape[-1], kind=kind)
    loss.backward()
    torch.testing.assert_close(loss, verl_loss)
    torch.testing.assert_close(logp.grad, verl_logp.grad)


@pytest.mark.parametrize("agg", LOSS_AGGS)
def test_value_loss_equals_verls(agg):
    c = case(7)
    returns = c["values"] + torch.randn_like(c["values"])
    vpred = c["values"] + 0.8 * torch.randn_like(c["values"])
    verl_loss, verl_clipfrac = core_algos.compute_value_loss(vpred, returns, c["values"], c["mask"], 0.5, agg)
    loss, m = value_loss(vpred, c["values"], returns, c["mask"], 0.5, agg)
    torch.testing.assert_close(loss, verl_loss)
    assert m["critic/vf_clipfrac"] == pytest.approx(float(verl_clipfrac), abs=1e-6)
