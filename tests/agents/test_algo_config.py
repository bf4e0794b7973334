"""Presets, config validation, registries, and the trainer's two entry points over every preset."""

from __future__ import annotations

import dataclasses
import doctest
import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from empg_gym.agents.algorithms import (
    ALGORITHMS,
    AlgorithmConfig,
    EMPGConfig,
    GiGPOConfig,
    OverlongConfig,
    StepBatch,
    actor_loss,
    agg_loss,
    compute_advantages,
    dapo_filter_groups,
    discounted_returns,
    empg_advantages,
    get_algorithm,
    gigpo_advantages,
    grpo_advantages,
    informative_groups,
    kl_penalty,
    overlong_penalty,
    policy_loss,
    register_estimator,
    register_modifier,
    step_entropy,
)
from empg_gym.agents.algorithms.registry import ESTIMATORS, MODIFIERS
from empg_gym.errors import ConfigError


def make_batch(seed: int, T: int = 12) -> StepBatch:
    """A random but well-formed StepBatch: 3 task groups x 4 trajectories of 1..5 steps."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(3):
        for j in range(4):
            R, n = float(rng.integers(2)), int(rng.integers(1, 6))
            for t in range(n):
                rows.append((R, g, 10 * g + j, t, t == n - 1, R if t == n - 1 else 0.0, int(rng.integers(3))))
    N = len(rows)
    cols = list(zip(*rows, strict=True))
    lengths = torch.tensor(rng.integers(1, T + 1, N))
    mask = torch.arange(T)[None, :] < lengths[:, None]
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(N, T, generator=gen, dtype=torch.float64) * 3
    return StepBatch(
        response_mask=mask, old_logp=old, reward=torch.tensor(cols[0], dtype=torch.float64),
        group_id=torch.tensor(cols[1]), traj_id=torch.tensor(cols[2]), step_index=torch.tensor(cols[3]),
        is_last=torch.tensor(cols[4]), ref_logp=old + 0.1 * torch.randn(N, T, generator=gen, dtype=torch.float64),
        token_entropy=torch.rand(N, T, generator=gen, dtype=torch.float64) * 4,
        step_reward=torch.tensor(cols[5], dtype=torch.float64), obs_key=torch.tensor(cols[6]),
        values=torch.rand(N, generator=gen, dtype=torch.float64),  # the ppo critic's
    )


# ---------------------------------------------------------------- presets (DESIGN §7)


def test_presets_carry_the_paper_defaults():
    bases = ["cispo", "dapo", "dr_grpo", "gigpo", "grpo", "gspo", "ppo", "reinforce_pp", "reinforce_pp_baseline",
             "rloo"]
    assert sorted(ALGORITHMS) == sorted(["empg", "empg-dapo", "empg-dapo-f", "empg-dapo-g", "empg-f", "empg-g",
                                         "empg-verl-agent", *bases, *(f"empg+{b}" for b in bases)])
    grpo = get_algorithm("grpo")
    assert (grpo.estimator, grpo.clip_low, grpo.clip_high, grpo.loss_agg) == ("grpo", 0.2, 0.2, "token-mean")
    assert (grpo.use_kl, grpo.kl_kind, grpo.kl_coef, grpo.lr) == (True, "k3", 0.01, 1e-6)
    assert (grpo.tasks_per_batch, grpo.group_size, grpo.updates) == (16, 8, 150)
    assert grpo.empg is None and not grpo.filter_groups and grpo.overlong is None and grpo.norm_by_std
    dapo = get_algorithm("dapo")
    assert (dapo.clip_low, dapo.clip_high, dapo.filter_groups, dapo.max_resample_batches) == (0.2, 0.28, True, 10)
    assert dapo.overlong == OverlongConfig(max_len=512, buffer_len=128, factor=1.0)
    empg = get_algorithm("empg")
    assert empg.empg == EMPGConfig(k=1.0, k_next=1.0, zeta=0.05) and empg.clip_high == 0.2
    assert dataclasses.replace(empg, name="x", empg=None) == dataclasses.replace(grpo, name="x")
    empg_dapo = get_algorithm("empg-dapo")
    assert dataclasses.replace(empg_dapo, name="x", empg=None) == dataclasses.replace(dapo, name="x")
    gigpo = get_algorithm("gigpo")
    assert gigpo.estimator == "gigpo" and gigpo.gigpo == GiGPOConfig(omega=1.0, gamma=0.95, norm_by_std=True)
    assert [get_algorithm(n).active_modifiers for n in ("grpo", "empg", "empg-dapo")] == [(), ("empg",), ("empg",)]


def test_unknown_algorithm_lists_valid_names():
    with pytest.raises(ConfigError, match=r"Unknown algorithm 'empg_dapo'; valid names: \['cispo', 'dapo', 'dr_grpo', "
                       r"'empg', 'empg\+cispo', .* 'rloo'\]\. Did you mean 'empg-dapo'"):
        get_algorithm("empg_dapo")


def test_configs_are_frozen_and_replace_validates():
    cfg = get_algorithm("empg")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.clip_high = 0.3  # type: ignore[misc]
    assert dataclasses.replace(cfg, clip_high=0.28, empg=dataclasses.replace(cfg.empg, zeta=0.1)).empg.zeta == 0.1
    assert get_algorithm("empg").empg.zeta == 0.05  # the preset is untouched
    cases = [
        (dict(clip_c=1.0), r"clip_c \(dual clip\) must be > 1 \(verl uses 3.0\) or None, got 1.0"),
        (dict(clip_low=1.2), r"clip_low must be in \[0, 1\) \(GRPO/DAPO: 0.2\), got 1.2"),
        (dict(loss_agg="seq-mean"), r"loss_agg must be one of .* got 'seq-mean'"),
        (dict(kl_kind="k5"), r"kl_kind must be one of \('k1', 'k2', 'k3'\), got 'k5'"),
        (dict(kl_coef=-1.0), "kl_coef must be >= 0, got -1.0; set use_kl=False"),
        (dict(group_size=1), "group_size must be >= 2 for a group baseline"),
        (dict(estimator="gpro"), r"Unknown advantage estimator 'gpro'; registered: .* Did you mean 'grpo'"),
        (dict(modifiers=("empg",)), r"modifiers must not list 'empg': set empg=EMPGConfig\(...\) instead"),
        (dict(modifiers=("nope",)), r"Unknown advantage modifier 'nope'"),
        (dict(modifiers=["x"]), "modifiers must be a tuple of names, got list"),
    ]
    for override, message in cases:
        with pytest.raises(ConfigError, match=message):
            dataclasses.replace(cfg, **override)
    with pytest.raises(ConfigError, match=r"EMPGConfig.zeta must be >= 0 .* got -0.1"):
        EMPGConfig(zeta=-0.1)
    with pytest.raises(ConfigError, match=r"GiGPOConfig.gamma must be in \[0, 1\] \(paper: 0.95\), got 1.5"):
        GiGPOConfig(gamma=1.5)
    with pytest.raises(ConfigError, match=r"OverlongConfig.buffer_len must be in \(0, max_len=64\], got 128"):
        OverlongConfig(max_len=64, buffer_len=128)


# ---------------------------------------------------------------- the trainer's entry points, per preset


@pytest.mark.parametrize("seed", range(8))
def test_compute_advantages_equals_the_formulas_for_each_preset(seed):
    b = make_batch(seed)
    R, gid = b.reward, b.group_id
    A_grpo = grpo_advantages(R, gid, traj_ids=b.traj_id)  # presets count each trajectory once
    A, m = compute_advantages(get_algorithm("grpo"), b)
    torch.testing.assert_close(A, A_grpo)
    H = step_entropy(b.token_entropy, b.response_mask)
    A, m = compute_advantages(get_algorithm("empg"), b)
    torch.testing.assert_close(A, empg_advantages(A_grpo, H, b.traj_id, b.step_index))
    assert m["empg/g_mean"] == pytest.approx(1.0) and 0 < m["empg/f_mean"] <= 1
    assert abs(m["adv/mean"]) < 1e-12
    R_dapo = R + overlong_penalty(b.response_length, 512, 128, 1.0).double()
    A, m = compute_advantages(get_algorithm("dapo"), b)
    torch.testing.assert_close(A, grpo_advantages(R_dapo, gid, traj_ids=b.traj_id))
    A, m = compute_advantages(get_algorithm("empg-dapo"), b)
    torch.testing.assert_close(A, empg_advantages(grpo_advantages(R_dapo, gid, traj_ids=b.traj_id), H, b.traj_id, b.step_index))
    G = discounted_returns(b.step_reward, b.traj_id, b.step_index, 0.95)
    A, m = compute_advantages(get_algorithm("gigpo"), b)
    torch.testing.assert_close(A, gigpo_advantages(R, gid, G, b.obs_key, 1.0, True, traj_ids=b.traj_id))  # as GRPO
    assert m["gigpo/step_group_size_mean"] >= 1


def test_advantages_carry_no_gradient_even_from_entropies_with_a_graph():
    b = make_batch(6)
    ent = b.token_entropy.clone().requires_grad_(True)
    A, _ = compute_advantages(get_algorithm("empg"), dataclasses.replace(b, token_entropy=ent))
    assert not A.requires_grad


def test_overlong_shaping_reaches_the_advantages():
    b = make_batch(3, T=600)
    long_mask = torch.zeros_like(b.response_mask)
    long_mask[:, :500] = True  # every response 500 tokens: inside DAPO's 384..512 buffer
    b = dataclasses.replace(b, response_mask=long_mask)
    _, m = compute_advantages(get_algorithm("dapo"), b)
    assert m["dapo/overlong_frac"] == 1.0 and m["dapo/overlong_penalty_mean"] == pytest.approx(-(500 - 384) / 128)


def test_dapo_filter_then_select_keeps_only_informative_groups():
    b = make_batch(5)
    keep = dapo_filter_groups(b.reward, b.group_id)
    kept = b.select(keep)
    assert kept.size == int(keep.sum())
    for g in torch.unique(kept.group_id):
        assert len(torch.unique(kept.reward[kept.group_id == g])) > 1


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_actor_loss_is_policy_loss_plus_kl_and_backpropagates(name):
    cfg = dataclasses.replace(get_algorithm(name), use_kl=True)  # gspo and dr_grpo drop it
    b = make_batch(1)
    A, _ = compute_advantages(cfg, b)
    logp = (b.old_logp + 0.05).requires_grad_(True)
    loss, m = actor_loss(cfg, logp, b, A)
    pg, _ = policy_loss(logp, b.old_logp, A, b.response_mask, cfg.clip_low, cfg.clip_high, cfg.clip_c, cfg.loss_agg,
                        cfg.loss_norm_len, kind=cfg.loss_mode)
    kl = agg_loss(kl_penalty(logp, b.ref_logp, "k3"), b.response_mask, cfg.loss_agg, cfg.loss_norm_len)
    assert loss.item() == pytest.approx((pg + 0.01 * kl).item())
    assert m["actor/kl_coef"] == 0.01 and "actor/clipfrac" in m and "actor/approx_kl" in m
    loss.backward()
    assert logp.grad is not None and bool(logp.grad[b.response_mask].abs().sum() > 0)
    no_kl = dataclasses.replace(cfg, use_kl=False)
    loss2, m2 = actor_loss(no_kl, logp, dataclasses.replace(b, ref_logp=None), A)
    assert loss2.item() == pytest.approx(pg.item()) and "actor/kl_loss" not in m2


def test_missing_batch_fields_give_clear_errors():
    b = make_batch(2)
    with pytest.raises(ConfigError, match=r"EMPG needs StepBatch.token_entropy \(per-token entropy"):
        compute_advantages(get_algorithm("empg"), dataclasses.replace(b, token_entropy=None))
    with pytest.raises(ConfigError, match=r"The gigpo estimator needs StepBatch.obs_key"):
        compute_advantages(get_algorithm("gigpo"), dataclasses.replace(b, obs_key=None))
    with pytest.raises(ConfigError, match=r"use_kl=True needs StepBatch.ref_logp .* or set use_kl=False"):
        actor_loss(get_algorithm("grpo"), b.old_logp, dataclasses.replace(b, ref_logp=None), b.reward)
    with pytest.raises(ConfigError, match=r"StepBatch.reward must be \[N\] = \[\d+\] \(one value per step\), got \[2\]"):
        dataclasses.replace(b, reward=torch.zeros(2))
    with pytest.raises(ConfigError, match=r"StepBatch.group_id must be an integer tensor, got dtype torch.float32"):
        dataclasses.replace(b, group_id=b.group_id.float())
    with pytest.raises(ConfigError, match=r"StepBatch.token_entropy must be \[N, T\]"):
        dataclasses.replace(b, token_entropy=b.token_entropy[:, :3])
    with pytest.raises(ConfigError, match="empty batch"):
        compute_advantages(get_algorithm("grpo"), b.select(torch.zeros(b.size, dtype=torch.bool)))


def penalty_batch() -> StepBatch:
    """Issue #17's groups: a 2-step win among seven 10-step failures; eight failed 10-step trajectories, one of
    whose steps is malformed (penalty 0.1). Rewards as the trainer builds them (reward_scale 10)."""  # noqa: D205
    rows = [(10.0, 0, 0, t, t == 1) for t in range(2)]
    rows += [(0.0, 0, j, t, t == 9) for j in range(1, 8) for t in range(10)]
    rows += [(0.0, 1, j, t, t == 9) for j in range(8, 16) for t in range(10)]
    N = len(rows)
    cols = list(zip(*rows, strict=True))
    penalty = torch.zeros(N)
    penalty[[i for i, r in enumerate(rows) if r[2] == 8 and r[3] == 3]] = 0.1
    mask = torch.ones(N, 4, dtype=torch.bool)
    return StepBatch(response_mask=mask, old_logp=torch.zeros(N, 4), reward=torch.tensor(cols[0]),
                     group_id=torch.tensor(cols[1]), traj_id=torch.tensor(cols[2]), step_index=torch.tensor(cols[3]),
                     is_last=torch.tensor(cols[4]), token_entropy=torch.ones(N, 4), step_reward=torch.tensor(cols[0]),
                     obs_key=torch.arange(N), format_penalty=penalty, values=torch.zeros(N))


ON_ADVANTAGE = sorted(n for n, c in ALGORITHMS.items() if c.format_penalty_on == "advantage")


def test_only_the_verl_agent_preset_puts_the_penalty_on_the_reward():
    """``empg-verl-agent`` reproduces issue #17's numbers on purpose: -8.83 with step-row statistics (GRPO's part)."""
    assert sorted(set(ALGORITHMS) - set(ON_ADVANTAGE)) == ["empg-verl-agent"]
    b = penalty_batch()
    theirs = dataclasses.replace(get_algorithm("empg-verl-agent"), empg=None)  # GRPO in verl-agent's pipeline
    A, _ = compute_advantages(theirs, b)
    assert float(A[b.format_penalty > 0]) == pytest.approx(-8.8317, abs=1e-3)
    A, _ = compute_advantages(dataclasses.replace(theirs, traj_level_stats=True), b)
    assert float(A[b.format_penalty > 0]) == pytest.approx(-8.3135, abs=1e-3)


@pytest.mark.parametrize("name", ON_ADVANTAGE)
def test_a_format_penalty_never_outweighs_a_win(name):
    """Issue #17: one penalised step of eight failed trajectories got A = -8.31 under GRPO, more than three times a
    1-of-8 win's +2.47. Now the penalty is applied after the estimator: it moves that step by exactly -0.1."""  # noqa: D205
    b = penalty_batch()
    A, m = compute_advantages(get_algorithm(name), b)
    pen = b.format_penalty > 0
    win = b.traj_id == 0
    sibling = (b.traj_id == 8) & (b.step_index == 2)  # same trajectory, same entropy, also not the last step
    assert float(A[pen] - A[sibling]) == pytest.approx(-0.1, abs=1e-6)
    assert float(A[pen].abs()) < float(A[win].min()), (float(A[pen]), A[win].tolist())
    assert m["adv/format_penalty_frac"] == pytest.approx(1 / b.size)
    if name == "gigpo":  # no shared observation: the step term is 0, the episode term is GRPO's (issue #17)
        torch.testing.assert_close(A, compute_advantages(get_algorithm("grpo"), b)[0])
    if name == "grpo":
        assert float(A[pen]) == pytest.approx(-0.1, abs=1e-6)
        torch.testing.assert_close(A[win], torch.full((2,), 2.4748737), rtol=1e-5, atol=0)


def test_dapo_filters_on_the_reward_the_estimator_sees():
    """The filter keeps exactly the groups whose estimator advantages are not all zero (issue #17)."""
    b = penalty_batch()
    dapo = get_algorithm("dapo")
    keep = informative_groups(dapo, b)
    assert keep.tolist() == (b.group_id == 0).tolist()  # the penalty alone neither keeps nor drops a group
    A_est, _ = compute_advantages(dataclasses.replace(dapo, name="x"), dataclasses.replace(b, format_penalty=None))
    assert bool((A_est[~keep] == 0).all()) and bool((A_est[keep] != 0).any())
    # overlong shaping is part of that reward: an all-fail group whose response lengths differ is informative
    short = dataclasses.replace(dapo, overlong=OverlongConfig(max_len=4, buffer_len=2))
    mask = b.response_mask.clone()
    mask[b.group_id == 1, 2:] = False
    mask[(b.traj_id == 9) & (b.step_index == 0), 2] = True  # one 3-token response: penalty -0.5
    assert bool(informative_groups(short, dataclasses.replace(b, response_mask=mask)).all())


# ---------------------------------------------------------------- registries: add an algorithm without the trainer


def test_user_estimator_and_modifier_plug_in_by_name():
    @register_estimator("test-rloo", override=True)
    def rloo(batch, config):
        # leave-one-out baseline over the step samples of each group
        A = torch.zeros_like(batch.reward)
        for g in torch.unique(batch.group_id):
            idx = batch.group_id == g
            n = int(idx.sum())
            A[idx] = (batch.reward[idx] - (batch.reward[idx].sum() - batch.reward[idx]) / max(n - 1, 1))
        return A, {"rloo/groups": float(len(torch.unique(batch.group_id)))}

    @register_modifier("test-clip", override=True)
    def clip(advantages, batch, config):
        return advantages.clamp(-0.5, 0.5), {"clip/applied": 1.0}

    try:
        cfg = AlgorithmConfig(name="rloo-empg", estimator="test-rloo", empg=EMPGConfig(), modifiers=("test-clip",))
        b = make_batch(4)
        A, m = compute_advantages(cfg, b)
        base, _ = rloo(b, cfg)
        H = step_entropy(b.token_entropy, b.response_mask)
        torch.testing.assert_close(A, empg_advantages(base, H, b.traj_id, b.step_index).clamp(-0.5, 0.5))
        assert m["rloo/groups"] == 3.0 and m["clip/applied"] == 1.0 and "empg/g_mean" in m
        with pytest.raises(ConfigError, match="advantage estimator 'test-rloo' is already registered"):
            register_estimator("test-rloo")(lambda batch, config: (batch.reward, {}))
        register_estimator("test-rloo")(rloo)  # the same function again is fine
    finally:
        ESTIMATORS.pop("test-rloo", None)
        MODIFIERS.pop("test-clip", None)


# ---------------------------------------------------------------- packaging


def test_import_empg_gym_agents_does_not_import_torch():
    code = "import sys, empg_gym, empg_gym.agents; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize("module", ["advantages", "batch", "losses", "presets", "registry", "config", "pipeline"])
def test_docstring_examples_run(module):
    mod = importlib.import_module(f"empg_gym.agents.algorithms.{module}")
    saved = [dict(t) for t in (ESTIMATORS, MODIFIERS, ALGORITHMS)]
    try:  # the examples register demo entries; leave the registries as they were
        result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    finally:
        for table, old in zip((ESTIMATORS, MODIFIERS, ALGORITHMS), saved, strict=True):
            table.clear()
            table.update(old)
    assert result.attempted > 0 and result.failed == 0


def test_empg_ablations_switch_off_one_term_each():
    """empg-g keeps the confidence scale g and drops the bonus; empg-f keeps the bonus f with g = 1 (EMPG Table 2)."""
    import dataclasses

    import torch

    from empg_gym.agents.algorithms import StepBatch, compute_advantages, get_algorithm

    gen = torch.Generator().manual_seed(3)
    n, T = 12, 4
    batch = StepBatch(response_mask=torch.ones(n, T, dtype=torch.bool), old_logp=torch.zeros(n, T),
                      reward=torch.tensor([10.0, 10, 10, 0, 0, 0, 0, 0, 0, 10, 0, 0]),
                      group_id=torch.tensor([0] * 6 + [1] * 6), traj_id=torch.arange(n) // 2,
                      step_index=torch.arange(n) % 2, is_last=torch.arange(n) % 2 == 1,
                      token_entropy=torch.rand(n, T, generator=gen) * 2)
    empg, empg_g, empg_f, grpo = (get_algorithm(a) for a in ("empg", "empg-g", "empg-f", "grpo"))
    no_bonus = dataclasses.replace(empg, empg=dataclasses.replace(empg.empg, zeta=0.0))
    A_g, m_g = compute_advantages(empg_g, batch)
    assert torch.equal(A_g, compute_advantages(no_bonus, batch)[0])  # empg-g == empg with zeta = 0
    A_f, m_f = compute_advantages(empg_f, batch)
    assert m_f["empg/g_min"] == m_f["empg/g_max"] == 1.0 and m_g["empg/g_min"] < 1.0 < m_g["empg/g_max"]
    A_grpo, _ = compute_advantages(grpo, batch)
    bonus = A_f - (A_grpo - A_grpo.mean())  # what empg-f adds to GRPO's advantage: zeta f, re-centred
    assert bonus.abs().max() > 0 and bonus.abs().max() <= empg_f.empg.zeta + 1e-6
    for name in ("empg-dapo-g", "empg-dapo-f"):
        assert get_algorithm(name).filter_groups and get_algorithm(name).clip_high == 0.28
