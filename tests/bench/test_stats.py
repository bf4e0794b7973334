"""The bench's statistics: hand-worked cases for every function, and agreement with rliable (the reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from empg_gym.bench.records import matched_budget, scores_at_budget
from empg_gym.bench.stats import (
    Comparison,
    aggregate_iqm,
    aggregate_mean,
    area_under_curve,
    carry_forward,
    compare,
    interval_estimate,
    pooled_sd,
    probability_of_improvement,
    score_distribution,
    seeds_needed,
    stratified_resample,
    verdict,
)

RNG = np.random.default_rng(7)
#: Per-run success of three "algorithms" on two tasks (as a bench with two eval splits would give), 10 runs each.
X = RNG.beta(4, 2, size=(10, 2)).round(2)
Y = RNG.beta(2, 3, size=(10, 2)).round(2)
Z = RNG.beta(2, 2, size=(7, 2)).round(2)


# ---------------------------------------------------------------------------------------------------- by hand
def test_mean_and_iqm_by_hand():
    # 8 scores: int(8/4) = 2 dropped at each end -> mean of 0.3, 0.4, 0.5, 0.6
    s = np.array([[0.0, 0.6], [0.1, 0.5], [0.4, 0.9], [0.3, 1.0]])
    assert aggregate_iqm(s) == pytest.approx(0.45)
    assert aggregate_mean(s) == pytest.approx((0.2 + 0.75) / 2)
    # 5 runs: int(1.25) = 1 dropped each end
    assert aggregate_iqm([[0.0], [0.2], [0.4], [0.6], [5.0]]) == pytest.approx(0.4)
    # 3 runs: nothing dropped (int(0.75) = 0), so the IQM is the mean
    assert aggregate_iqm([[0.0], [0.3], [0.9]]) == pytest.approx(0.4)
    # batch axes reduce independently
    assert aggregate_iqm(np.stack([s, s + 1])).tolist() == pytest.approx([0.45, 1.45])


def test_probability_of_improvement_counts_ties_as_half():
    # X = {0.5, 1.0}, Y = {0.5, 0.0, 0.0}: pairs (0.5, 0.5) tie, (0.5, 0) win x2, 1.0 wins all 3 -> (0.5 + 2 + 3) / 6
    assert probability_of_improvement([[0.5], [1.0]], [[0.5], [0.0], [0.0]]) == pytest.approx(5.5 / 6)
    assert probability_of_improvement([[0.5], [0.0], [0.0]], [[0.5], [1.0]]) == pytest.approx(0.5 / 6)
    assert probability_of_improvement([[0.3], [0.3]], [[0.3], [0.3]]) == 0.5
    # two tasks: per-task probabilities 1 and 0 average to 0.5
    assert probability_of_improvement([[1.0, 0.0]], [[0.0, 1.0]]) == 0.5
    with pytest.raises(ValueError, match="same tasks: 2 vs 1"):
        probability_of_improvement([[1.0, 0.0]], [[0.0]])


def test_score_distribution_is_the_fraction_strictly_above_tau():
    s = [[0.0, 0.5], [0.5, 1.0]]
    assert score_distribution(s, [0.0, 0.5, 1.0]).tolist() == [0.75, 0.25, 0.0]


def test_stratified_resample_draws_runs_within_each_task():
    s = np.array([[0.0, 10.0], [1.0, 11.0], [2.0, 12.0]])
    copies = stratified_resample(s, 200, np.random.default_rng(0))
    assert copies.shape == (200, 3, 2)
    assert set(np.unique(copies[..., 0])) == {0.0, 1.0, 2.0} and set(np.unique(copies[..., 1])) == {10.0, 11.0, 12.0}
    # tasks are drawn independently: the run drawn for task 0 does not fix the one for task 1
    assert not np.array_equal(copies[..., 0], copies[..., 1] - 10)


def test_interval_of_a_constant_is_the_constant_and_intervals_are_reproducible():
    iv = interval_estimate(aggregate_mean, [[0.4]] * 5, reps=100)
    assert (iv.point, iv.low, iv.high) == (0.4, 0.4, 0.4)
    a = interval_estimate(aggregate_iqm, X, reps=300, seed=3)
    b = interval_estimate(aggregate_iqm, X, reps=300, seed=3)
    assert (a.low, a.high) == (b.low, b.high)
    with pytest.raises(ValueError, match="reps=0 must be >= 1"):
        interval_estimate(aggregate_mean, X, reps=0)
    with pytest.raises(ValueError, match=r"\(\.\.\., runs, tasks\) matrix"):
        aggregate_mean([0.1, 0.2])


def test_interval_of_two_runs_by_hand():
    # mean of 2 resampled runs {0, 1}: 0 (p 1/4), 0.5 (p 1/2), 1 (p 1/4); the 2.5% and 97.5% percentiles are 0 and 1
    iv = interval_estimate(aggregate_mean, [[0.0], [1.0]], reps=4000)
    assert (iv.point, iv.low, iv.high) == (0.5, 0.0, 1.0)
    # with 50% confidence the 25th/75th percentiles of {0, .5, .5, 1} fall at 0.5 (within bootstrap noise)
    iv = interval_estimate(aggregate_mean, [[0.0], [1.0]], reps=4000, confidence=0.4)
    assert (iv.low, iv.high) == (0.5, 0.5)


def test_area_under_curve_by_hand():
    assert area_under_curve([(0, 0.0), (10, 1.0), (20, 1.0)]) == pytest.approx(0.75)
    assert area_under_curve([(0, 0.2), (5, 0.2)], x_end=10) == pytest.approx(0.2)
    assert area_under_curve([(3, 0.4)]) == 0.4
    assert area_under_curve([(10, 1.0), (0, 0.0)]) == 0.5  # order does not matter
    with pytest.raises(ValueError, match="at least one"):
        area_under_curve([])


def test_carry_forward_keeps_the_same_runs_at_every_x():
    runs = [[(0, 0.0), (10, 0.4), (20, 0.8)], [(0, 0.2), (10, 0.6)], [(0, 0.0), (15, 1.0)]]
    m = carry_forward(runs, [0, 10, 20])
    assert m.tolist() == [[0.0, 0.4, 0.8], [0.2, 0.6, 0.6], [0.0, 0.0, 1.0]]
    assert aggregate_mean(m.T[:, :, None]).tolist() == pytest.approx([0.2 / 3, 1.0 / 3, 2.4 / 3])
    with pytest.raises(ValueError, match="no evaluation at or before x=0"):
        carry_forward([[(5, 0.0)]], [0, 5])


def test_seeds_needed_hand_worked():
    # n = 2 (z_.975 + z_.8)^2 sd^2 / d^2 = 2 (1.95996 + 0.84162)^2 * 0.3^2 / 0.2^2 = 15.698 * 2.25 = 35.32
    assert seeds_needed(0.2, 0.3) == 36
    assert seeds_needed(-0.2, 0.3) == 36  # the sign does not matter
    # the numbers: SD 0.21 -> 18, SD 0.41 -> 66 seeds for a difference of 0.2
    assert (seeds_needed(0.2, 0.21), seeds_needed(0.2, 0.41)) == (18, 66)
    assert seeds_needed(0.5, 0.0) == 2
    assert seeds_needed(0.0, 0.3) is None
    assert pooled_sd([0.0, 1.0], [0.5, 0.5]) == pytest.approx(0.5)
    assert pooled_sd([0.3], [0.3]) == 0.0


def test_verdict_needs_the_interval_to_exclude_one_half():
    def c(low, high, needed=30):
        return Comparison("empg", "grpo", (low + high) / 2, low, high, 0.1, needed, (5, 5))

    assert verdict(c(0.51, 0.9)) == "empg > grpo"
    assert verdict(c(0.1, 0.49)) == "grpo > empg"
    assert verdict(c(0.5, 0.9)) == "unresolved (needs ~30 seeds per algorithm)"  # touching 1/2 is not excluding it
    assert verdict(c(0.2, 0.5)) == "unresolved (needs ~30 seeds per algorithm)"
    assert verdict(c(0.3, 0.7, None)) == "unresolved (no difference observed)"
    assert verdict(c(0.45, 0.95, 3)) == "unresolved (needs more than the 5 seeds per algorithm run)"


def test_compare_resolves_a_clear_gap_and_not_noise():
    clear = compare("x", [0.9, 1.0, 0.95, 0.9, 1.0], "y", [0.1, 0.0, 0.2, 0.1, 0.05], reps=2000)
    assert (clear.p, verdict(clear)) == (1.0, "x > y") and clear.needed == 2
    noise = compare("x", [0.2, 0.8, 0.5, 0.3, 0.6], "y", [0.4, 0.7, 0.1, 0.5, 0.6], reps=2000)
    assert noise.low < 0.5 < noise.high and verdict(noise).startswith("unresolved (needs ~")
    assert noise.needed == seeds_needed(noise.diff, pooled_sd([0.2, 0.8, 0.5, 0.3, 0.6], [0.4, 0.7, 0.1, 0.5, 0.6]))


def test_matched_budget_is_the_largest_multiple_half_of_every_algorithms_runs_reached():
    rows = [{"env": "E", "algo": a, "seed": s, "split": "s", "update": u, "env_steps": n, "success_rate": y}
            for a, s, u, n, y in (("grpo", 0, 0, 0, 0.0), ("grpo", 0, 9, 512, 0.5),
                                  ("dapo", 0, 0, 0, 0.0), ("dapo", 0, 4, 300, 0.25), ("dapo", 0, 9, 1400, 1.0))]
    assert matched_budget(rows, 100) == {"E": 500}
    assert matched_budget(rows, 0) == {}
    assert matched_budget(rows, 1000) == {}  # grpo never reached 1000
    assert matched_budget(rows + [{"env": "E", "algo": "old", "seed": 0, "split": "s", "update": 9}], 100) == {}
    at = scores_at_budget(rows, "s", "success_rate", 250)
    assert at == {("E", "grpo", 0): (0.5, 512), ("E", "dapo", 0): (0.25, 300)}
    # Two more GRPO runs, one finished early at 180 env steps (it won fast): half of GRPO's runs still reach 500,
    # and at 500 the short run carries its last evaluation forward, at the env steps it played.
    more = [{"env": "E", "algo": "grpo", "seed": s, "split": "s", "update": u, "env_steps": n, "success_rate": y}
            for s, u, n, y in ((1, 0, 0, 0.0), (1, 9, 180, 1.0), (2, 0, 0, 0.0), (2, 9, 640, 0.75))]
    assert matched_budget(rows + more, 100) == {"E": 500}
    at = scores_at_budget(rows + more, "s", "success_rate", 500)
    assert at[("E", "grpo", 1)] == (1.0, 180) and at[("E", "grpo", 2)] == (0.75, 640) and len(at) == 4
    assert matched_budget(rows + more[:2], 100) == {"E": 100}  # 1 of 2 GRPO runs is not "at least half" above 500


# ------------------------------------------------------------------------------------------- against rliable
rliable = pytest.importorskip("rliable")


def test_point_estimates_match_rliable():
    from rliable import metrics

    for s in (X, Y, Z, X[:, :1], X[:3]):
        assert aggregate_iqm(s) == pytest.approx(metrics.aggregate_iqm(s), rel=1e-12)
        assert aggregate_mean(s) == pytest.approx(metrics.aggregate_mean(s), rel=1e-12)
    for a, b in ((X, Y), (Y, X), (X, Z), (Z, Z), (X[:, :1], Y[:, :1])):
        assert probability_of_improvement(a, b) == pytest.approx(metrics.probability_of_improvement(a, b), rel=1e-12)


def test_intervals_match_rliable():
    from rliable import library, metrics

    np.random.seed(0)  # rliable's stratified bootstrap draws from numpy's global generator
    reps = 20_000
    points, cis = library.get_interval_estimates(
        {"x": X, "z": Z}, lambda s: np.array([metrics.aggregate_iqm(s), metrics.aggregate_mean(s)]), reps=3000)
    for key, s in (("x", X), ("z", Z)):
        for k, f in enumerate((aggregate_iqm, aggregate_mean)):
            iv = interval_estimate(f, s, reps=reps)
            assert iv.point == pytest.approx(points[key][k], rel=1e-12)
            assert (iv.low, iv.high) == pytest.approx((cis[key][0][k], cis[key][1][k]), abs=0.015)
    points, cis = library.get_interval_estimates(
        {"xz": (X, Z)}, lambda a, b: np.array([metrics.probability_of_improvement(a, b)]), reps=3000)
    iv = interval_estimate(probability_of_improvement, X, Z, reps=reps)
    assert iv.point == pytest.approx(points["xz"][0], rel=1e-12)
    assert (iv.low, iv.high) == pytest.approx((cis["xz"][0][0], cis["xz"][1][0]), abs=0.02)


def test_performance_profiles_match_rliable():
    from rliable import library

    np.random.seed(0)
    taus = np.linspace(0, 1, 21)
    profiles, cis = library.create_performance_profile({"x": X, "y": Y}, taus, reps=2000)
    for key, s in (("x", X), ("y", Y)):
        iv = interval_estimate(lambda m: score_distribution(m, taus), s, reps=20_000)
        assert iv.point == pytest.approx(profiles[key], abs=1e-12)
        # 20 scores: a profile moves in steps of 1/20, so a percentile may land one step away
        assert iv.low == pytest.approx(cis[key][0], abs=0.051) and iv.high == pytest.approx(cis[key][1], abs=0.051)
    assert not math.isnan(float(iv.low.sum()))
