"""The bench's statistics: small pure functions over a ``(runs, tasks)`` score matrix, after rliable.

The protocol is Agarwal et al., "Deep Reinforcement Learning at the Edge of the Statistical Precipice" (NeurIPS 2021,
https://arxiv.org/abs/2108.13264): one score per run and task; aggregates (mean, IQM) with stratified-bootstrap 95%
confidence intervals; the probability of improvement ``P(X > Y)``; performance profiles. The aggregates take any
leading batch axes, ``(..., runs, tasks) -> (...)``, so that :func:`interval_estimate` bootstraps every one of them
in one vectorised call. A bench scores each eval split on its own, so its matrices have one column.

Every function here agrees with rliable 1.2.0 (``metrics.aggregate_mean``, ``metrics.aggregate_iqm``,
``metrics.probability_of_improvement``, ``library.get_interval_estimates``, ``library.create_performance_profile``):
point estimates to rounding, intervals up to bootstrap noise (``tests/bench/test_stats.py``). The bootstrap draws from
a seeded generator, so a report is the same every time it is written.

Example:
    >>> x = np.array([[0.2], [0.4], [0.6], [0.8]])   # 4 runs of one task
    >>> float(aggregate_iqm(x)), float(aggregate_mean(x))
    (0.5, 0.5)
    >>> point, low, high = interval_estimate(aggregate_mean, x, reps=2000)
    >>> float(point), bool(0.2 <= low < 0.5 < high <= 0.8)
    (0.5, True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import NormalDist
from typing import Any, NamedTuple

import numpy as np

#: Bootstrap replications of every interval in a report (rliable's default for intervals is 50000).
REPS = 10_000
#: Confidence level of every interval.
CONFIDENCE = 0.95
#: Power the seeds-needed estimate aims for.
POWER = 0.8


def _matrix(scores: Any) -> np.ndarray:
    x = np.asarray(scores, dtype=float)
    if x.ndim < 2 or x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"scores must be a (..., runs, tasks) matrix with at least one run and task, got shape "
                         f"{x.shape}; wrap one score per run as [[s] for s in scores].")
    return x


def aggregate_mean(scores: Any) -> np.ndarray:
    """Mean over tasks of each task's mean over runs: ``(..., runs, tasks) -> (...)``.

    Example:
        >>> float(aggregate_mean([[0.0, 1.0], [0.5, 1.0]]))
        0.625
    """
    return _matrix(scores).mean(axis=-2).mean(axis=-1)


def aggregate_iqm(scores: Any) -> np.ndarray:
    """Interquartile mean: the mean of the middle half of all ``runs × tasks`` scores, ``(..., runs, tasks) -> (...)``.

    ``n`` scores sorted, ``int(n/4)`` dropped at each end (as ``scipy.stats.trim_mean(x, 0.25)``, rliable's IQM).

    Example:
        >>> float(aggregate_iqm([[0.0], [0.25], [0.5], [0.75], [0.75], [1.0]]))  # drops 0.0 and 1.0
        0.5625
    """
    x = _matrix(scores)
    flat = np.sort(x.reshape(*x.shape[:-2], -1), axis=-1)
    n = flat.shape[-1]
    cut = int(0.25 * n)
    return flat[..., cut:n - cut].mean(axis=-1)


def probability_of_improvement(scores_x: Any, scores_y: Any) -> np.ndarray:
    """Return ``P(X > Y)``, ``(..., n, tasks), (..., m, tasks) -> (...)``.

    Per task, the chance that a random run of X scores above a random run of Y (a tie counts 1/2), averaged over tasks.

    Per task this is the Mann-Whitney ``U`` statistic over ``n·m`` (rliable's ``probability_of_improvement``).

    Example:
        >>> float(probability_of_improvement([[1.0], [0.5]], [[0.5], [0.0]]))  # pairs: >, >, =, >
        0.875
    """
    x, y = _matrix(scores_x), _matrix(scores_y)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"X and Y must score the same tasks: {x.shape[-1]} vs {y.shape[-1]} task columns.")
    diff = x[..., :, None, :] - y[..., None, :, :]  # (..., n, m, tasks)
    wins = (diff > 0).mean(axis=(-3, -2)) + 0.5 * (diff == 0).mean(axis=(-3, -2))
    return wins.mean(axis=-1)


def score_distribution(scores: Any, taus: Sequence[float] | np.ndarray) -> np.ndarray:
    """Return the performance profile, ``(..., runs, tasks), (T,) -> (..., T)``.

    The fraction of ``runs × tasks`` scores strictly above each threshold ``tau`` (rliable's run-score distribution).

    Example:
        >>> score_distribution([[0.0], [0.5], [1.0]], [0.0, 0.5, 0.9]).tolist()
        [0.6666666666666666, 0.3333333333333333, 0.3333333333333333]
    """
    x = _matrix(scores)
    flat = x.reshape(*x.shape[:-2], -1)
    return (flat[..., None, :] > np.asarray(taus, dtype=float)[:, None]).mean(axis=-1)


def stratified_resample(scores: Any, reps: int, rng: np.random.Generator) -> np.ndarray:
    """Return ``reps`` stratified-bootstrap copies of a ``(runs, tasks)`` matrix, ``-> (reps, runs, tasks)``.

    The runs of each task are drawn with replacement, independently per task.

    Example:
        >>> copies = stratified_resample([[0.0, 1.0], [0.5, 2.0]], 3, np.random.default_rng(0))
        >>> copies.shape, bool(np.isin(copies[..., 1], [1.0, 2.0]).all())
        ((3, 2, 2), True)
    """
    x = _matrix(scores)
    if x.ndim != 2:
        raise ValueError(f"stratified_resample takes one (runs, tasks) matrix, got shape {x.shape}.")
    runs, tasks = x.shape
    idx = rng.integers(0, runs, size=(reps, runs, tasks))
    return np.take_along_axis(np.broadcast_to(x, (reps, runs, tasks)), idx, axis=1)


class Interval(NamedTuple):
    """A point estimate and its bootstrap confidence interval (arrays for a vector-valued statistic)."""

    point: Any
    low: Any
    high: Any


def interval_estimate(func: Callable[..., Any], *scores: Any, reps: int = REPS, confidence: float = CONFIDENCE,
                      seed: int = 0, chunk: int = 1000) -> Interval:
    """Point estimate of ``func(*scores)`` and its percentile stratified-bootstrap interval.

    Each score matrix ``(runs, tasks)`` is resampled on its own (rliable's ``StratifiedBootstrap`` for one matrix,
    ``StratifiedIndependentBootstrap`` for several, as for ``P(X > Y)``); ``func`` must accept the leading batch axis
    of the copies (every aggregate in this module does) and may return a vector (a performance profile). The bounds are
    the ``(1 − confidence)/2`` and ``(1 + confidence)/2`` percentiles of the ``reps`` bootstrap values; the
    generator is seeded with ``seed``, so the interval is reproducible.

    Example:
        >>> iv = interval_estimate(aggregate_iqm, [[0.1], [0.2], [0.3], [0.9]], reps=500)
        >>> float(iv.point), bool(iv.low <= iv.point <= iv.high)
        (0.25, True)
    """
    if reps < 1:
        raise ValueError(f"reps={reps} must be >= 1.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} must be in (0, 1), e.g. 0.95.")
    matrices = [_matrix(s) for s in scores]
    point = np.asarray(func(*matrices))
    rng = np.random.default_rng(seed)
    values = []
    for start in range(0, reps, chunk):
        n = min(chunk, reps - start)
        values.append(np.asarray(func(*(stratified_resample(m, n, rng) for m in matrices))))
    boot = np.concatenate(values, axis=0)
    alpha = (1 - confidence) / 2
    low, high = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return Interval(point, low, high)


def area_under_curve(points: Sequence[tuple[float, float]], x_end: float | None = None) -> float:
    """Area under an eval curve ``[(x, y), ...]`` (trapezoids), divided by its x range: the curve's mean height.

    With ``x_end`` beyond the last point, the last value is carried forward to ``x_end`` (a run that stopped early
    keeps its last evaluation). A single point (or a zero range) gives that point's ``y``.

    Example:
        >>> area_under_curve([(0, 0.0), (10, 1.0)])
        0.5
        >>> area_under_curve([(0, 0.0), (10, 1.0)], x_end=20)  # 1.0 held from 10 to 20
        0.75
    """
    pts = sorted(points)
    if not pts:
        raise ValueError("area_under_curve needs at least one (x, y) point.")
    if x_end is not None and x_end > pts[-1][0]:
        pts.append((x_end, pts[-1][1]))
    width = pts[-1][0] - pts[0][0]
    if width <= 0:
        return float(pts[-1][1])
    area = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in zip(pts, pts[1:], strict=False))
    return float(area / width)


def carry_forward(curves: Sequence[Sequence[tuple[float, float]]], grid: Sequence[float]) -> np.ndarray:
    """Each run's curve read at every ``grid`` x: the value of its last point at or before x, ``-> (runs, len(grid))``.

    A run that stopped before the end of the grid keeps its last evaluation, so every column averages the same runs.
    Every curve needs a point at or before ``grid[0]``.

    Example:
        >>> carry_forward([[(0, 0.0), (10, 0.5), (20, 0.75)], [(0, 0.25), (10, 1.0)]], [0, 10, 20]).tolist()
        [[0.0, 0.5, 0.75], [0.25, 1.0, 1.0]]
    """
    out = np.empty((len(curves), len(grid)))
    for i, curve in enumerate(curves):
        pts = sorted(curve)
        if not pts or pts[0][0] > grid[0]:
            raise ValueError(f"run {i} has no evaluation at or before x={grid[0]} (its first is "
                             f"{pts[0][0] if pts else 'missing'}); every curve must start at the grid's start.")
        xs = np.array([p[0] for p in pts])
        ys = np.array([p[1] for p in pts])
        out[i] = ys[np.searchsorted(xs, np.asarray(grid, dtype=float), side="right") - 1]
    return out


def seeds_needed(diff: float, sd: float, *, alpha: float = 1 - CONFIDENCE, power: float = POWER) -> int | None:
    """Return the runs per algorithm that resolve a mean difference ``diff`` at spread ``sd`` with ``power``.

    A two-sided two-sample test at level ``alpha`` detects a true difference ``diff`` with probability ``power``
    when each run's score has standard deviation ``sd`` and each algorithm has this many runs.

    The normal approximation ``n = 2 (z_{1-alpha/2} + z_{power})² sd² / diff²``, rounded up and at least 2
    (Chow, Shao & Wang, "Sample Size Calculations in Clinical Research", §3.2). At 95% and 80% power,
    ``2 (1.960 + 0.842)² = 15.7``. ``None`` when the observed difference is 0 (no number of seeds resolves it).

    Example:
        >>> seeds_needed(0.2, 0.3)   # 15.7 * 0.09 / 0.04 = 35.3
        36
        >>> seeds_needed(0.0, 0.3) is None
        True
    """
    if diff == 0 or not math.isfinite(diff):
        return None
    z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
    return max(2, math.ceil(2 * z * z * sd * sd / (diff * diff)))


def pooled_sd(x: Sequence[float], y: Sequence[float]) -> float:
    """``sqrt((s_x² + s_y²) / 2)`` with sample standard deviations (0 for a single run).

    Example:
        >>> pooled_sd([0.0, 1.0], [0.5, 0.5])   # s_x² = 0.5, s_y² = 0
        0.5
    """
    def var(v: Sequence[float]) -> float:
        return float(np.var(v, ddof=1)) if len(v) > 1 else 0.0

    return math.sqrt((var(x) + var(y)) / 2)


class Comparison(NamedTuple):
    """``P(X > Y)`` of two algorithms' per-run scores, its interval and the seeds the difference would need."""

    x: str
    y: str
    p: float
    low: float
    high: float
    diff: float
    needed: int | None
    runs: tuple[int, int]

    @property
    def resolved(self) -> bool:
        """Whether the interval of ``P(X > Y)`` excludes 1/2: one algorithm beats the other."""
        return self.low > 0.5 or self.high < 0.5


def compare(x: str, scores_x: Sequence[float], y: str, scores_y: Sequence[float], *, reps: int = REPS,
            seed: int = 0) -> Comparison:
    """Compare two algorithms by one score per run.

    Gives ``P(X > Y)`` with its bootstrap interval, the difference of means and :func:`seeds_needed` for it at the
    pooled spread.

    Example:
        >>> c = compare("a", [1.0, 1.0, 0.9], "b", [0.0, 0.1, 0.0], reps=500)
        >>> c.p, c.low > 0.5, verdict(c)
        (1.0, True, 'a > b')
    """
    mx, my = [[s] for s in scores_x], [[s] for s in scores_y]
    iv = interval_estimate(probability_of_improvement, mx, my, reps=reps, seed=seed)
    diff = float(np.mean(scores_x) - np.mean(scores_y))
    return Comparison(x, y, float(iv.point), float(iv.low), float(iv.high), diff,
                      seeds_needed(diff, pooled_sd(scores_x, scores_y)), (len(scores_x), len(scores_y)))


#: Above this many seeds per algorithm a verdict says "over FAR" instead of the count.
FAR = 10_000


def verdict(c: Comparison) -> str:
    """Return the verdict of a comparison.

    ``"X > Y"`` when the interval of ``P(X > Y)`` lies above 1/2, ``"Y > X"`` when below, else unresolved with the
    seeds per algorithm that the observed difference and spread would need at 80% power.

    Example:
        >>> verdict(Comparison("a", "b", 0.6, 0.45, 0.75, 0.1, 40, (5, 5)))
        'unresolved (needs ~40 seeds per algorithm)'
        >>> verdict(Comparison("a", "b", 0.2, 0.05, 0.4, -0.3, 9, (5, 5)))
        'b > a'
        >>> verdict(Comparison("a", "b", 0.5, 0.3, 0.7, 0.0, None, (5, 5)))
        'unresolved (no difference observed)'
        >>> verdict(Comparison("a", "b", 0.7, 0.49, 0.9, 0.4, 4, (5, 5)))
        'unresolved (needs more than the 5 seeds per algorithm run)'
        >>> verdict(Comparison("a", "b", 0.5, 0.36, 0.65, 0.0001, 1330136, (30, 30)))
        'unresolved (needs over 10,000 seeds per algorithm)'
    """
    if c.resolved:
        return f"{c.x} > {c.y}" if c.low > 0.5 else f"{c.y} > {c.x}"
    if c.needed is None:
        return "unresolved (no difference observed)"
    if c.needed <= max(c.runs):  # the normal approximation is optimistic for these runs
        return f"unresolved (needs more than the {max(c.runs)} seeds per algorithm run)"
    if c.needed > FAR:  # a difference this small is no effect to chase; the exact count says nothing more
        return f"unresolved (needs over {FAR:,} seeds per algorithm)"
    return f"unresolved (needs ~{c.needed} seeds per algorithm)"
