"""The pre-flight estimate: its formula by hand, the step limit, and a real measurement that leaves the RNGs alone."""

from __future__ import annotations

import dataclasses

import pytest

from empg_gym.agents.config import TrainConfig, train_preset
from empg_gym.agents.estimate import (
    ASSUMED_STEPS,
    Sizes,
    Speed,
    estimate_update,
    first_step_seconds,
    format_duration,
    measure_speed,
    revised_estimate,
    step_limit,
)

SPEED = Speed(prompt_tokens=300, s_per_token=0.01, s_per_decode_step=0.5, decode_batch=8, seconds=4.0)


def test_the_formula_by_hand():
    sizes = Sizes(tasks=2, group=8, steps=5, new_tokens=10, history=2, epochs=2, reference=True, checkpointing=True)
    est = estimate_update(SPEED, sizes)
    P_h = 300 + 2 * (10 + 64)  # 448
    d = 0.5 * 16 / 8  # 16 rows, measured at 8
    first = 2 * 300 * 0.01 + 10 * d
    later = 16 * P_h * 0.01 + 10 * d
    assert est.rollout == pytest.approx(first + 4 * later)
    assert est.update == pytest.approx(((3 + 1) * 2 + 1) * 16 * 5 * (P_h + 10) * 0.01)
    assert est.total == pytest.approx(est.rollout + est.update)
    fewer_rows = dataclasses.replace(sizes, tasks=1, group=2)  # below the measured batch: d(k), not less
    assert SPEED.decode_step(2) == SPEED.decode_step(8) == 0.5
    assert estimate_update(SPEED, fewer_rows).total < est.total


def test_a_timed_first_step_rescales_the_whole_estimate():
    sizes = Sizes(tasks=1, group=4, steps=3, new_tokens=12, history=0, epochs=1, reference=False)
    s_1 = first_step_seconds(SPEED, sizes)
    assert s_1 == pytest.approx(300 * 0.01 + 12 * 0.5)
    est = estimate_update(SPEED, sizes)
    revised = revised_estimate(3 * s_1, SPEED, sizes)  # the machine turned out three times slower
    assert (revised.rollout, revised.update) == (pytest.approx(3 * est.rollout), pytest.approx(3 * est.update))
    assert revised_estimate(s_1, SPEED, sizes) == est


def test_step_limit_is_max_steps_or_the_registered_limit():
    assert step_limit(TrainConfig(env_id="EMPG-ALFWorld-v0")) == 50
    assert step_limit(TrainConfig(env_id="EMPG-ALFWorld-v0", max_steps=3)) == 3
    assert step_limit(TrainConfig(env_id="EMPG-KeyDoor-v0", max_steps=99)) == 10
    assert ASSUMED_STEPS == 50


def test_sizes_of_a_config():
    cfg = TrainConfig.from_dict({**train_preset("cpu"), "env_id": "EMPG-ALFWorld-v0", "algo": "grpo"})
    sizes = Sizes.of(cfg, cfg.algorithm())
    assert sizes.describe() == "1 task x 4 trajectories x 3 steps x 12 tokens"
    assert sizes.reference == (cfg.algorithm().use_kl and cfg.algorithm().kl_coef > 0)
    assert Sizes.of(TrainConfig(), TrainConfig().algorithm()).describe() == "16 tasks x 8 trajectories x 50 steps x 256 tokens"


def test_measure_speed_times_the_policy_without_touching_the_rngs():
    torch = pytest.importorskip("torch")
    from empg_gym.agents.models import tiny_random_model
    from empg_gym.agents.policy import LLMPolicy

    policy = LLMPolicy(*tiny_random_model(seed=0))
    state = torch.random.get_rng_state()
    speed = measure_speed(policy, "You are in room 1. You see a key.", batch=4)
    assert torch.equal(state, torch.random.get_rng_state())
    assert speed.prompt_tokens == len(policy.encode_prompts(["You are in room 1. You see a key."])[0])
    assert speed.decode_batch == 4 and speed.s_per_token > 0 and speed.s_per_decode_step >= speed.s_per_token


def test_format_duration_picks_a_readable_unit():
    assert [format_duration(s) for s in (3, 75, 600, 3 * 3600, 5 * 86400)] == ["3.0 s", "75 s", "10.0 min",
                                                                             "3.0 h", "5.0 days"]


def test_model_based_uncertainty_adds_its_forward_passes():
    """mc_dropout scores the batch K more times, lora_ensemble once more; the other signals cost no pass."""
    base = {"env_id": "EMPG-KeyRooms-v0", "algo": "empg", "max_steps": 5, "tasks_per_update": 1, "group_size": 2,
            "max_new_tokens": 1, "history_length": 0}
    sizes = {u: Sizes.of(cfg := TrainConfig.from_dict({**base, "algo_overrides": {"empg.uncertainty": u}}),
                         cfg.algorithm())
             for u in ("entropy", "renyi2", "mc_dropout", "lora_ensemble")}
    assert {u: s.uncertainty_passes for u, s in sizes.items()} == {"entropy": 0, "renyi2": 0, "mc_dropout": 4,
                                                                   "lora_ensemble": 1}
    one_pass = 1 * 2 * 5 * (300 + 1) * 0.01  # N·(P + T)·c
    plain = estimate_update(SPEED, sizes["entropy"]).update
    assert estimate_update(SPEED, sizes["mc_dropout"]).update == pytest.approx(plain + 4 * one_pass)
    assert estimate_update(SPEED, sizes["lora_ensemble"]).update == pytest.approx(plain + one_pass)
    grpo = TrainConfig.from_dict({**base, "algo": "grpo"})
    assert Sizes.of(grpo, grpo.algorithm()).uncertainty_passes == 0
