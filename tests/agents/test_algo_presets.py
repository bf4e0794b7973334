"""The baseline presets (dr_grpo, rloo, reinforce_pp, reinforce_pp_baseline, gspo, cispo) and EMPG over each base."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from empg_gym.agents.algorithms import (
    ALGORITHMS,
    EMPG_BASES,
    EMPGConfig,
    StepBatch,
    compute_advantages,
    get_algorithm,
    grpo_advantages,
    register_algorithm,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
    with_empg,
)
from empg_gym.errors import ConfigError

NEW = ["dr_grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gspo", "cispo"]


def step_batch(seed: int, T: int = 8, max_steps: int = 5, penalty: bool = False) -> StepBatch:
    """3 task groups x 4 trajectories of 1..max_steps steps, outcome on every step, random response lengths."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(3):
        for j in range(4):
            R, n = float(rng.integers(2)), int(rng.integers(1, max_steps + 1))
            rows += [(R, g, 10 * g + j, t, t == n - 1, R if t == n - 1 else 0.0, int(rng.integers(3))) for t in range(n)]
    N = len(rows)
    cols = list(zip(*rows, strict=True))
    mask = torch.arange(T)[None, :] < torch.tensor(rng.integers(1, T + 1, N))[:, None]
    gen = torch.Generator().manual_seed(seed)
    old = -torch.rand(N, T, generator=gen, dtype=torch.float64) * 3
    return StepBatch(
        response_mask=mask, old_logp=old, reward=torch.tensor(cols[0], dtype=torch.float64),
        group_id=torch.tensor(cols[1]), traj_id=torch.tensor(cols[2]), step_index=torch.tensor(cols[3]),
        is_last=torch.tensor(cols[4]), ref_logp=old - 0.1,
        token_entropy=torch.rand(N, T, generator=gen, dtype=torch.float64) * 4,
        step_reward=torch.tensor(cols[5], dtype=torch.float64), obs_key=torch.tensor(cols[6]),
        format_penalty=torch.tensor(rng.choice([0.0, 0.1], N)) if penalty else None,
        values=torch.rand(N, generator=gen, dtype=torch.float64),  # the ppo critic's
    )


def test_the_new_presets_carry_their_sources_defaults():
    for name in NEW:
        assert name in ALGORITHMS and f"empg+{name}" in ALGORITHMS
    dr = get_algorithm("dr_grpo")
    assert (dr.norm_by_std, dr.loss_agg, dr.use_kl, dr.estimator) == (False, "seq-mean-token-sum-norm", False, "grpo")
    assert [get_algorithm(n).estimator for n in ("rloo", "reinforce_pp", "reinforce_pp_baseline")] == [
        "rloo", "reinforce_pp", "reinforce_pp_baseline"]
    gspo = get_algorithm("gspo")
    assert (gspo.loss_mode, gspo.clip_low, gspo.clip_high, gspo.loss_agg, gspo.use_kl) == (
        "gspo", 3e-4, 4e-4, "seq-mean-token-mean", False)
    cispo = get_algorithm("cispo")
    assert (cispo.loss_mode, cispo.clip_low, cispo.clip_high, cispo.loss_agg) == ("cispo", 10.0, 0.2, "token-mean")
    for name in NEW:  # the training budget stays GRPO's (verl-agent's ALFWorld script)
        cfg = get_algorithm(name)
        assert (cfg.lr, cfg.group_size, cfg.tasks_per_batch, cfg.updates) == (1e-6, 8, 16, 150)


def test_clip_low_above_one_only_for_cispo():
    with pytest.raises(ConfigError, match=r"clip_low must be in \[0, 1\) .* got 10.0; only loss_mode='cispo'"):
        dataclasses.replace(get_algorithm("grpo"), clip_low=10.0)
    with pytest.raises(ConfigError, match=r"clip_c \(dual clip\) applies to loss_mode='vanilla' only"):
        dataclasses.replace(get_algorithm("gspo"), clip_c=3.0)


def test_dr_grpo_divides_by_the_response_budget():
    from empg_gym.agents.config import TrainConfig
    from empg_gym.agents.trainer import resolve_algorithm

    cfg = TrainConfig(env_id="EMPG-KeyDoor-v0", algo="dr_grpo", model="tiny-actions", max_new_tokens=6,
                      require_think=False)
    assert resolve_algorithm(cfg).loss_norm_len == 6
    assert resolve_algorithm(dataclasses.replace(cfg, algo="grpo")).loss_norm_len is None


# ------------------------------------------------------------------ single-turn parity of the pipeline


def single_turn(seed: int) -> StepBatch:
    return step_batch(seed, max_steps=1)


@pytest.mark.parametrize("seed", range(4))
def test_single_turn_estimators_equal_the_verl_functions(seed):
    b = single_turn(seed)
    mask = b.response_mask
    A, _ = compute_advantages(get_algorithm("rloo"), b)
    torch.testing.assert_close(A, rloo_advantages(b.reward, b.group_id))
    A, _ = compute_advantages(get_algorithm("reinforce_pp_baseline"), b)
    full = reinforce_pp_baseline_advantages(b.reward, b.group_id, mask)
    torch.testing.assert_close(A[:, None] * mask, full)
    A, _ = compute_advantages(get_algorithm("reinforce_pp"), b)
    token_r = torch.zeros(mask.shape, dtype=b.reward.dtype)
    token_r[torch.arange(b.size), mask.sum(-1) - 1] = b.reward  # the outcome on the last response token
    full, _ = reinforce_pp_advantages(token_r, mask, gamma=1.0)
    torch.testing.assert_close(A[:, None] * mask, full)
    A, _ = compute_advantages(get_algorithm("dr_grpo"), b)
    torch.testing.assert_close(A, grpo_advantages(b.reward, b.group_id, norm_by_std=False))


def test_multi_turn_rloo_counts_trajectories():
    b = step_batch(3)
    A, _ = compute_advantages(get_algorithm("rloo"), b)
    torch.testing.assert_close(A, rloo_advantages(b.reward, b.group_id, traj_ids=b.traj_id))
    per_row, _ = compute_advantages(dataclasses.replace(get_algorithm("rloo"), traj_level_stats=False), b)
    torch.testing.assert_close(per_row, rloo_advantages(b.reward, b.group_id))
    # every trajectory's steps share one advantage, and a group's trajectories sum to zero
    first = b.step_index == 0
    for t in b.traj_id.unique():
        assert A[b.traj_id == t].unique().numel() == 1
    for g in b.group_id.unique():
        assert A[first & (b.group_id == g)].sum().item() == pytest.approx(0.0, abs=1e-12)


# --------------------------------------------------------------------------------- EMPG over any base


@pytest.mark.parametrize("base", [b.name for b in EMPG_BASES])
@pytest.mark.parametrize("penalty", [False, True])
def test_empg_at_k0_zeta0_is_its_base_centred(base, penalty):
    """With k = 0 and zeta = 0, g = 1 and the bonus vanishes: EMPG returns the base's advantage minus its batch mean
    (EMPG's last step, paper and DESIGN §7), to the last bit of float64; the format penalty comes after, the same."""  # noqa: D205
    b = step_batch(5, penalty=penalty)
    cfg = get_algorithm(base)
    A_base, _ = compute_advantages(cfg, b)
    off = dataclasses.replace(get_algorithm(f"empg+{base}"), empg=EMPGConfig(k=0.0, k_next=0.0, zeta=0.0))
    A_off, m = compute_advantages(off, b)
    pen = b.format_penalty if penalty else torch.zeros_like(A_base)
    raw = A_base + pen
    torch.testing.assert_close(A_off, raw - raw.mean() - pen, rtol=0, atol=1e-12)
    assert m["empg/g_min"] == m["empg/g_max"] == 1.0
    A_on, _ = compute_advantages(get_algorithm(f"empg+{base}"), b)
    assert not torch.allclose(A_on, A_off)  # the defaults do modulate


@pytest.mark.parametrize("base", [b.name for b in EMPG_BASES])
@pytest.mark.parametrize("penalty", [False, True])
def test_empg_at_k0_zeta0_without_recentring_is_its_base_exactly(base, penalty):
    """``recentre=False`` leaves ``g A + zeta f`` as it is: at k = 0, zeta = 0 (g = 1, no bonus) that is the base's
    advantage bit for bit, for every base, format penalty included (issue #23)."""  # noqa: D205
    b = step_batch(5, penalty=penalty)
    A_base, _ = compute_advantages(get_algorithm(base), b)
    off = dataclasses.replace(get_algorithm(f"empg+{base}"),
                              empg=EMPGConfig(k=0.0, k_next=0.0, zeta=0.0, recentre=False))
    A_off, m = compute_advantages(off, b)
    assert torch.equal(A_off, A_base)
    assert A_off.dtype == A_base.dtype
    assert m["empg/mod_mean_removed"] == 0.0
    # the bonus alone (k = 0, zeta > 0) shifts exactly the steps that have a next step, by zeta * f
    bonus = dataclasses.replace(off, empg=dataclasses.replace(off.empg, zeta=0.05, k_next=0.0))
    A_bonus, _ = compute_advantages(bonus, b)
    has_next = ~b.is_last
    torch.testing.assert_close(A_bonus - A_base, 0.05 * has_next.to(A_base.dtype))


def test_empg_plus_any_registered_preset_and_errors():
    mine = register_algorithm(dataclasses.replace(get_algorithm("rloo"), name="test-rloo-seqmean",
                                                  loss_agg="seq-mean-token-mean"), override=True)
    try:
        cfg = get_algorithm("empg+test-rloo-seqmean")
    finally:
        ALGORITHMS.pop("test-rloo-seqmean")  # other tests list the registry
    assert (cfg.name, cfg.estimator, cfg.loss_agg, cfg.empg) == ("empg+test-rloo-seqmean", "rloo",
                                                                  "seq-mean-token-mean", EMPGConfig())
    assert with_empg(mine) == cfg
    with pytest.raises(ConfigError, match="The preset 'empg' already modulates with EMPG"):
        get_algorithm("empg+empg")
    with pytest.raises(ConfigError, match=r"Unknown algorithm 'empg\+rlo'.* Did you mean 'empg\+rloo'"):
        get_algorithm("empg+rlo")
    assert get_algorithm("empg+grpo").empg == get_algorithm("empg").empg


def test_every_new_preset_and_its_empg_is_a_valid_bench_run():
    """``empg-gym bench --algos ...`` accepts each name: the bench validates every run's TrainConfig up front."""
    from empg_gym.bench.presets import QUICK

    algos = (*NEW, "ppo", *(f"empg+{n}" for n in (*NEW, "ppo")))
    bench = dataclasses.replace(QUICK, algos=algos, seeds=(0,), pipeline_check=None)
    assert bench.labels == algos
    cfg = bench.train_config("EMPG-KeyRooms-v0", "empg+ppo", 0)
    assert (cfg.algo, cfg.algorithm().critic is not None, cfg.algorithm().empg is not None) == ("empg+ppo", True, True)
