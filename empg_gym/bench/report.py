"""The bench report: ``report.md`` and its PNG plots, from ``results.csv`` and the runs' records.

The comparison follows rliable (Agarwal et al., NeurIPS 2021; :mod:`empg_gym.bench.stats`): one score per run and
eval split; IQM and mean over runs with stratified-bootstrap 95% CIs, at the final update and at the largest env-step
budget at least half of every algorithm's runs reached (``eval_every_env_steps``; the others carry their last
evaluation forward); the probability of improvement ``P(X > Y)`` with its CI for
every pair of algorithms and a verdict ("X > Y" only when that CI excludes 1/2, else unresolved with the seeds the
observed difference would need at 80% power); performance profiles; sample-efficiency curves (IQM vs update and vs
env steps) in which every point averages the same runs, a run that stopped early carrying its last evaluation forward.
Every number comes from a tested function over the run records (:mod:`empg_gym.bench.records`); intervals are
seeded, so the same records give the same report.

The report is the concatenation of :data:`SECTIONS`, each a function of a :class:`Bench` returning Markdown lines:
adding a section is adding one entry.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from empg_gym.agents.per_type import per_type_lines
from empg_gym.bench.records import (
    DIAGNOSTICS,
    GREEDY,
    PIPELINE,
    RESULTS_CSV,
    SAMPLED,
    by_algo,
    final_scores,
    has_metric,
    matched_budget,
    read_jsonl,
    read_results,
    run_curves,
    run_dir,
    scores_at_budget,
)
from empg_gym.bench.stats import (
    REPS,
    Comparison,
    Interval,
    aggregate_iqm,
    aggregate_mean,
    area_under_curve,
    carry_forward,
    compare,
    interval_estimate,
    score_distribution,
    verdict,
)

logger = logging.getLogger(__name__)
__all__ = ["read_results", "write_report"]

#: Curves plotted against the update step: (file name, metrics.jsonl key, axis label).
CURVES = (
    ("success.png", "rollout/success_rate", "training success rate (sampled)"),
    ("kl.png", "actor/kl_loss", "KL(policy || reference) estimate"),
    ("approx_kl.png", "actor/approx_kl", "approx. KL(old policy || policy)"),
    ("entropy.png", "actor/entropy", "policy token entropy"),
)
#: Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30 (beyond: the normal 1.96).
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
         2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
METRIC_NAMES = {GREEDY: "greedy success", SAMPLED: "sampled success"}
SHORT_SPLITS = {"eval_in_distribution": "ID", "eval_out_of_distribution": "OOD", "train": "train"}
#: Thresholds of the performance profiles (success rates lie in [0, 1]).
TAUS = np.linspace(0.0, 1.0, 51)
CARRY_NOTE = "a run that stopped early carries its last evaluation forward, so every point averages the same runs"


# ------------------------------------------------------------------------------------------------ the bench
@dataclass(frozen=True)
class Bench:
    """What every section reads: the bench folder, its ``bench.json`` and its ``results.csv`` rows."""

    out: Path
    meta: dict[str, Any]
    rows: list[dict[str, Any]] = field(repr=False)
    reps: int = REPS

    @classmethod
    def load(cls, out: Path, reps: int = REPS) -> Bench:
        """Read the bench in ``out`` (its ``bench.json`` and ``results.csv``)."""
        meta = json.loads((out / "bench.json").read_text(encoding="utf-8"))
        rows = read_results(out) if (out / RESULTS_CSV).is_file() else []
        return cls(out, meta, rows, reps)

    @property
    def cfg(self) -> dict[str, Any]:
        return dict(self.meta["config"])

    @property
    def labels(self) -> list[str]:
        """The bench's runs per seed: its algorithms, or with a sweep every algorithm × setting."""
        return list(self.meta.get("labels") or self.cfg["algos"])

    @property
    def splits(self) -> list[str]:
        return list(self.cfg["eval_splits"])

    @cached_property
    def metric(self) -> str:
        """The headline metric (:func:`headline_metric`)."""
        return headline_metric(self.rows)

    @cached_property
    def budgets(self) -> dict[str, int]:
        """Per env: the matched env-step budget (``records.matched_budget``; none without an env-step schedule)."""
        return matched_budget(self.rows, int(self.cfg.get("eval_every_env_steps") or 0))

    def runs(self) -> list[tuple[str, str, int, Path]]:
        """Every ``(env, algo, seed, folder)`` of the bench."""
        cfg = self.cfg
        return [(e, a, s, run_dir(self.out, e, a, s)) for e in cfg["envs"] for a in self.labels for s in cfg["seeds"]]

    @cached_property
    def diagnostics(self) -> dict[str, dict[str, np.ndarray]]:
        """Every training step's EMPG diagnostics per algorithm (:func:`_diagnostics`), read once for text and plot."""
        return _diagnostics(self.runs())


def headline_metric(rows: list[dict[str, Any]]) -> str:
    """Return the metric the report headlines: sampled success when every evaluation has it, else greedy success.

    Example:
        >>> headline_metric([{"success_rate": 0.5, "success_sampled": 0.4}]), headline_metric([{"success_rate": 1.0}])
        ('success_sampled', 'success_rate')
    """
    return SAMPLED if has_metric(rows, SAMPLED) else GREEDY


# --------------------------------------------------------------------------------------- numbers (tested)
def cell(iv: Interval) -> str:
    """Format a point estimate and its interval as ``0.512 [0.401, 0.620]``.

    Example:
        >>> cell(Interval(0.5, 0.25, 0.75))
        '0.500 [0.250, 0.750]'
    """
    return f"{float(iv.point):.3f} [{float(iv.low):.3f}, {float(iv.high):.3f}]"


def aggregates(scores: list[float], reps: int = REPS) -> tuple[Interval, Interval]:
    """IQM and mean of one score per run, each with its stratified-bootstrap 95% interval.

    Example:
        >>> iqm, mean = aggregates([0.0, 0.5, 0.5, 1.0], reps=200)
        >>> float(iqm.point), float(mean.point)
        (0.5, 0.5)
    """
    m = [[s] for s in scores]
    return interval_estimate(aggregate_iqm, m, reps=reps), interval_estimate(aggregate_mean, m, reps=reps)


def headline_table(rows: list[dict[str, Any]], env: str, split: str, metric: str, labels: list[str], *,
                   updates: float, budget: int | None = None, reps: int = REPS) -> tuple[list[str], list[list[str]]]:
    """Return ``(header, lines)``: per algorithm, ``metric`` on ``split`` aggregated over its runs.

    Columns: runs; IQM and mean [95% CI] of the final score (the last evaluated update); IQM of the area under the
    eval curve (:func:`~empg_gym.bench.stats.area_under_curve` over updates ``0..updates``, a run that stopped early
    holding its last evaluation); with ``budget``, IQM and mean of the score at that many env steps
    (:func:`~empg_gym.bench.records.scores_at_budget`) and the env steps the runs had actually played then (mean).
    """
    finals = by_algo(final_scores(rows, split, metric), env)
    areas = by_algo({k: area_under_curve(c, x_end=updates) for k, c in run_curves(rows, split, metric).items()}, env)
    at = by_algo(scores_at_budget(rows, split, metric, budget), env) if budget else {}
    header = ["algo", "runs", "final: IQM [95% CI]", "final: mean [95% CI]", "area under curve: IQM [95% CI]"]
    if budget:
        header += [f"at {budget} env steps: IQM [95% CI]", f"at {budget} env steps: mean [95% CI]",
                   "env steps played then (mean)"]
    lines = []
    for algo in [a for a in labels if a in finals]:
        iqm, mean = aggregates(finals[algo], reps)
        line = [algo, str(len(finals[algo])), cell(iqm), cell(mean), cell(aggregates(areas[algo], reps)[0])]
        if budget:
            pairs = at.get(algo, [])
            if pairs:
                b_iqm, b_mean = aggregates([y for y, _ in pairs], reps)
                line += [cell(b_iqm), cell(b_mean), f"{sum(n for _, n in pairs) / len(pairs):.0f}"]
            else:
                line += ["–", "–", "–"]
        lines.append(line)
    return header, lines


def pairwise(per_algo: dict[str, list[float]], labels: list[str], reps: int = REPS) -> list[Comparison]:
    """Compare every pair of algorithms (in ``labels`` order) by their per-run scores.

    Example:
        >>> [(c.x, c.y, c.p) for c in pairwise({"a": [1.0, 1.0], "b": [0.0, 1.0], "c": [0.0, 0.0]},
        ...                                    ["a", "b", "c"], reps=100)]
        [('a', 'b', 0.75), ('a', 'c', 1.0), ('b', 'c', 0.75)]
    """
    present = [a for a in labels if per_algo.get(a)]
    return [compare(x, per_algo[x], y, per_algo[y], reps=reps) for x, y in combinations(present, 2)]


def improvement_table(comparisons: list[Comparison]) -> tuple[list[str], list[list[str]]]:
    """Return ``(header, lines)``: per pair, ``P(X > Y)`` [95% CI], the difference of means and the verdict.

    Example:
        >>> improvement_table([Comparison("a", "b", 0.6, 0.4, 0.8, 0.1, 30, (5, 5))])[1]
        [['a', 'b', '5 / 5', '0.600 [0.400, 0.800]', '+0.100', 'unresolved (needs ~30 seeds per algorithm)']]
    """
    header = ["X", "Y", "runs", "P(X > Y) [95% CI]", "mean X − Y", "verdict"]
    return header, [[c.x, c.y, f"{c.runs[0]} / {c.runs[1]}", cell(Interval(c.p, c.low, c.high)), f"{c.diff:+.3f}",
                     verdict(c)] for c in comparisons]


def _iqm_per_column(m: np.ndarray) -> np.ndarray:
    """IQM over runs of each column: ``(..., runs, X) -> (..., X)``."""
    return aggregate_iqm(np.swapaxes(m, -1, -2)[..., None])


def iqm_curve(curves: list[list[tuple[float, float]]], reps: int = REPS) -> tuple[list[float], Interval]:
    """IQM over runs at every x any run was evaluated at, with 95% bootstrap bands; each run carried forward.

    Returns the grid and an :class:`~empg_gym.bench.stats.Interval` of arrays over it; every point averages the same
    runs (:func:`~empg_gym.bench.stats.carry_forward`).

    Example:
        >>> grid, iv = iqm_curve([[(0, 0.0), (10, 1.0)], [(0, 0.0), (5, 0.5)]], reps=100)
        >>> grid, iv.point.tolist()
        ([0, 5, 10], [0.0, 0.25, 0.75])
    """
    grid = sorted({x for c in curves for x, _ in c})
    return grid, interval_estimate(_iqm_per_column, carry_forward(curves, grid), reps=reps)


def profile(scores: list[float], reps: int = REPS) -> Interval:
    """Return the performance profile of one score per run at :data:`TAUS`, with 95% bootstrap bands.

    Example:
        >>> profile([0.0, 0.5, 1.0], reps=100).point[[0, 25, 50]].tolist()  # tau = 0, 0.5, 1
        [0.6666666666666666, 0.3333333333333333, 0.0]
    """
    return interval_estimate(lambda m: score_distribution(m, TAUS), [[s] for s in scores], reps=reps)


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value).

    Example:
        >>> mean_std([0.5, 1.0])
        (0.75, 0.3535533905932738)
        >>> mean_std([0.25])
        (0.25, 0.0)
    """
    m = sum(values) / len(values)
    if len(values) < 2:
        return m, 0.0
    return m, math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% confidence interval (Student t over the values; 0 for one value).

    Example:
        >>> m, h = mean_ci([0.5, 0.7, 0.6, 0.8, 0.4])
        >>> round(m, 3), round(h, 3)
        (0.6, 0.196)
    """
    m, s = mean_std(values)
    n = len(values)
    if n < 2:
        return m, 0.0
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return m, t * s / math.sqrt(n)


def fmt(values: list[float]) -> str:
    """Format ``mean ± 95% CI half-width`` of ``values``.

    Example:
        >>> fmt([0.5, 1.0])
        '0.750 ± 3.176'
        >>> fmt([0.25])
        '0.250'
    """
    m, h = mean_ci(values)
    return f"{m:.3f} ± {h:.3f}" if len(values) > 1 else f"{m:.3f}"


def _last_update(rows: list[dict[str, Any]]) -> dict[tuple[str, str, float], float]:
    last: dict[tuple[str, str, float], float] = {}
    for r in rows:
        key = (r["env"], r["algo"], r["seed"])
        last[key] = max(last.get(key, 0.0), r.get("update", 0.0))
    return last


def summary_table(rows: list[dict[str, Any]], splits: list[str]) -> tuple[list[str], list[list[str]]]:
    """Return ``(header, lines)``: per env × algo, greedy success before (update 0) and after training on each split.

    Each cell is ``mean ± 95% CI`` over seeds; ``Δ`` is the mean over seeds of after − before.
    """
    last = _last_update(rows)
    cells: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        key = (r["env"], r["algo"])
        end = last[(r["env"], r["algo"], r["seed"])]
        if r.get("update", 0.0) == 0:
            cells[key][(r["split"], "before")].append((r["seed"], r["success_rate"]))
        if r.get("update", 0.0) == end:
            cells[key][(r["split"], "after")].append((r["seed"], r["success_rate"]))
            cells[key]["seeds"].append(r["seed"])
            cells[key]["applied"].append((r["seed"], r.get("applied_updates"), r.get("updates")))
    header = ["env", "algo", "seeds"]
    for sp in splits:
        name = SHORT_SPLITS.get(sp, sp)
        header += [f"{name} before", f"{name} after", f"{name} Δ"]
    header.append("updates applied")
    lines = []
    for (env, algo), c in cells.items():
        line = [env, algo, str(len(set(c["seeds"])))]
        for sp in splits:
            before, after = dict(c[(sp, "before")]), dict(c[(sp, "after")])
            both = sorted(set(before) & set(after))
            line += [fmt(list(before.values())) if before else "–", fmt(list(after.values())) if after else "–",
                     fmt([after[s] - before[s] for s in both]) if both else "–"]
        applied = {s: (a, u) for s, a, u in c["applied"] if a is not None}
        line.append(", ".join(sorted({f"{int(a)}/{int(u)}" for a, u in applied.values()})) or "–")
        lines.append(line)
    return header, lines


def _table(header: list[str], lines: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(ln) + " |"
                                                                           for ln in lines]


# ---------------------------------------------------------------------------------------------- sections
Section = Callable[[Bench], list[str]]


def write_report(out: Path, reps: int = REPS) -> Path:
    """Write ``report.md`` and the plots for the bench in ``out``; return the report's path."""
    out = Path(out)
    bench = Bench.load(out, reps)
    md = [line for section in SECTIONS for line in section(bench)]
    path = out / "report.md"
    path.write_text("\n".join(md) + "\n", encoding="utf-8")
    return path


def _title_section(b: Bench) -> list[str]:
    md = ["# empg-gym bench report", ""]
    if b.cfg.get("demonstration", True):
        md += ["> **A demonstration of the pipeline, not a paper result.** The runs are far too short and too few "
               "to rank the algorithms; differences below are noise. Use the `paper` preset on a GPU for that.", ""]
    return md


def _setup_section(b: Bench) -> list[str]:
    cfg, meta = b.cfg, b.meta
    sources = sorted({r.get("source", "") for r in b.rows} - {""})
    evals = "before training, " + (f"every {cfg['eval_every']} updates, " if cfg.get("eval_every") else "") + (
        f"after the first update that reaches each multiple of {cfg['eval_every_env_steps']} training env steps, "
        if cfg.get("eval_every_env_steps") else "") + "and after the last"
    samples = int(cfg.get("eval_samples") or 0)
    how = "greedily" + (f" and with {samples} sampled episodes per task" if samples else "")
    return [
        "## Setup", "",
        f"- Envs: {', '.join(cfg['envs'])} (task source: {', '.join(sources) or 'unknown'})"
        + (f"; tasks restricted to type `{cfg['task_type']}`" if cfg.get("task_type") else ""),
        f"- Algorithms: {', '.join(b.labels)}; seeds: {', '.join(map(str, cfg['seeds']))}",
        f"- Budget: {cfg['updates']} updates per run; eval on the first {cfg['eval_tasks']} tasks of "
        f"{', '.join(cfg['eval_splits'])}, {how}, {evals}",
        f"- Training settings: `{json.dumps(cfg['train'], sort_keys=True)}`",
        f"- Model: `{cfg['train'].get('model', 'smollm2-135m')}`",
        f"- Hardware needed: {cfg.get('hardware', '')}; ran on: {meta['hardware']['cpu_count']} CPUs "
        f"({meta['hardware']['machine']}, {meta['hardware']['system']})",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
    ]


def _metric_reason(b: Bench) -> str:
    if b.metric == SAMPLED:
        return ("The headline is **sampled success** (each task played `samples_per_task` times with sampling, "
                "success averaged): it scores a run on more episodes per task than greedy evaluation, so it measures "
                "each run with less noise, and a run whose greedy choice flips on a few tasks does not swing between "
                "0 and 1. Greedy success (one greedy episode per task, the metric of the before/after table) follows "
                "for comparison.")
    return ("The headline is **greedy success** (one greedy episode per task): these runs were evaluated without "
            "sampled episodes (`eval_samples` = 0, or records from before it existed).")


def _no_budget_reason(cfg: dict[str, Any]) -> str:
    if cfg.get("eval_every_env_steps"):
        return (f"No matched env-step column: some run played fewer than `eval_every_env_steps` = "
                f"{cfg['eval_every_env_steps']} env steps (or its records predate env-step logging).")
    return ("No matched env-step column: set `eval_every_env_steps` to compare the algorithms at the same number of "
            "env steps played (DAPO plays more per update).")


def _headline_section(b: Bench) -> list[str]:
    cfg = b.cfg
    md = ["", f"## Headline: {METRIC_NAMES[b.metric]} (IQM and mean over runs, 95% CIs)", "",
          "One score per run and eval split; IQM (the mean of the middle 50% of runs) and mean with stratified-"
          f"bootstrap 95% CIs ({b.reps} resamples, rliable's protocol). *Final*: the run's last evaluated update "
          "(a DAPO run that spent its rollout budget stops early). *Area under curve*: the mean height of the run's "
          f"eval curve over updates 0–{cfg['updates']}. "
          + (f"*At N env steps*: the first evaluation after the run had played N training env steps, N being the "
             f"largest multiple of `eval_every_env_steps` = {cfg['eval_every_env_steps']} that at least half the runs "
             "of every algorithm reached; this compares the algorithms at matched experience. A run that finished "
             "all its updates before N (a policy that wins early plays short episodes) carries its last evaluation "
             "forward, at the fewer env steps it played, as in the sample-efficiency curves."
             if b.budgets else _no_budget_reason(cfg)), "", _metric_reason(b)]
    metrics = [b.metric] + [m for m in (GREEDY, SAMPLED) if m != b.metric and any(m in r for r in b.rows)]
    for metric in metrics:
        if metric != b.metric:
            md += ["", f"### {METRIC_NAMES[metric].capitalize()} (for comparison)"]
        for env in cfg["envs"]:
            for split in b.splits:
                header, lines = headline_table(b.rows, env, split, metric, b.labels, updates=cfg["updates"],
                                               budget=b.budgets.get(env), reps=b.reps)
                if lines:
                    md += ["", f"**{env}, {split}, {METRIC_NAMES[metric]}**", "", *_table(header, lines)]
    return md


def _improvement_section(b: Bench) -> list[str]:
    if len(b.labels) < 2:
        return []
    md = ["", f"## Probability of improvement and verdicts ({METRIC_NAMES[b.metric]})", "",
          "`P(X > Y)`: the chance that a random run of X scores above a random run of Y (ties count 1/2), with its "
          "stratified-bootstrap 95% CI. The verdict says \"X > Y\" only when that CI lies above 1/2 (\"Y > X\" below); "
          "otherwise it is unresolved, with the seeds per algorithm that a two-sample test at 5% would need to "
          "detect the observed difference of means with 80% power given the observed spread: "
          "n = 2 (z₀.₉₇₅ + z₀.₈)² sd² / d², sd the pooled per-run standard deviation, d the difference of means."]
    for env in b.cfg["envs"]:
        for split in b.splits:
            points = [("final", final_scores(b.rows, split, b.metric))]
            if env in b.budgets:
                at = scores_at_budget(b.rows, split, b.metric, b.budgets[env])
                points.append((f"at {b.budgets[env]} env steps", {k: y for k, (y, _) in at.items()}))
            for name, per_run in points:
                comps = pairwise(by_algo(per_run, env), b.labels, b.reps)
                if comps:
                    md += ["", f"**{env}, {split}, {name}**", "", *_table(*improvement_table(comps))]
    return md


def _before_after_section(b: Bench) -> list[str]:
    cfg, rows = b.cfg, b.rows
    header, lines = summary_table(rows, b.splits)
    md = ["", f"## Greedy success before and after training (mean ± 95% CI over {len(cfg['seeds'])} seed(s))", "",
          "Before = the untrained policy (update 0), after = the last update; each run evaluates the first "
          f"{cfg['eval_tasks']} tasks of each split greedily. The CI is Student's t over seeds; Δ is the per-seed "
          "change (the evidence that each algorithm learns).", "", *_table(header, lines)]
    md += ["", "`success` is the fraction of tasks won. For ALFWorld, KeyDoor and KeyRooms the env's score is the "
           "success itself; WebShop's score is the purchase's attribute/option/price/type match, Deep Search's the "
           "exact match (EM) of the answer (both in `results.csv`)."]
    if any(r.get("applied_updates", 0) < r.get("updates", 0) for r in rows):
        md += ["", "Fewer updates applied than budgeted: a run that filters groups (DAPO's dynamic sampling) trains "
               "only on groups whose rewards differ, so a round in which every group was all won (or all lost) is not "
               "an update, and the run stops once its rollout budget (updates × max_resample_batches) is spent. A "
               "DAPO run that wins every group early applies fewer updates; its 'after' is its last update."]
    secs = sorted({(r["env"], r["algo"], r["seed"]): r["train_seconds"] for r in rows
                   if "train_seconds" in r}.values())
    if secs:
        md += ["", f"Training time per run: median {secs[len(secs) // 2]:.0f} s (min {secs[0]:.0f}, max "
               f"{secs[-1]:.0f}), evaluations excluded."]
    return md


def _sweep_section(b: Bench) -> list[str]:
    return _sweep_lines(b.cfg, b.rows) if b.cfg.get("sweep") else []


def _plots_section(b: Bench) -> list[str]:
    plots = write_plots(b)
    notes = {"sample_efficiency_update.png": f"IQM of {METRIC_NAMES[b.metric]} vs update, 95% CI band; {CARRY_NOTE}.",
             "sample_efficiency_env_steps.png": f"the same vs training env steps played (an evaluation made for an "
             f"env-step budget sits at that budget); {CARRY_NOTE}.",
             "performance_profile.png": f"fraction of runs whose final {METRIC_NAMES[b.metric]} exceeds τ, 95% CI "
             "band (a curve above another everywhere dominates it).",
             "success.png": "training curves: mean over the runs with a 95% CI band, up to the last update every run "
             "of the algorithm reached (so every point averages the same runs)."}
    md = ["", "## Plots", ""]
    for p in plots:
        md += [f"![{p.stem}]({p.name})"] + ([f"*{p.name}*: {notes[p.name]}", ""] if p.name in notes else [""])
    return md


def _diagnostics_section(b: Bench) -> list[str]:
    return _diagnostics_lines(b.diagnostics)


def _pipeline_section(b: Bench) -> list[str]:
    folder = b.out / PIPELINE
    if not ((folder / "bench.json").is_file() and (folder / RESULTS_CSV).is_file()):
        return []
    meta = json.loads((folder / "bench.json").read_text(encoding="utf-8"))
    cfg = meta["config"]
    rows = read_results(folder)
    md = ["", "## Pipeline check (not a comparison)", "",
          f"`{cfg['train'].get('model')}` through the real stack (prompts, generation, parsing, advantages, LoRA "
          f"update) on {', '.join(cfg['envs'])}"
          + (f" (`{cfg['task_type']}` tasks)" if cfg.get("task_type") else "")
          + f", {cfg['updates']} update(s) per algorithm, one seed. It shows that the same code path runs for an "
          "LLM; at this size its numbers say nothing about the algorithms.", "",
          "| env | algo | split | update | success | applied updates | train s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        md.append(f"| {r['env']} | {r['algo']} | {r['split']} | {int(r.get('update', 0))} | "
                  f"{r['success_rate']:.3f} | {int(r.get('applied_updates', 0))}/{int(r.get('updates', 0))} | "
                  f"{r.get('train_seconds', 0):.0f} |")
    return md


def _rerun_section(b: Bench) -> list[str]:
    return ["", "Rerun exactly (every setting above is in `bench.json`): `empg-gym bench --config bench.json --out DIR`"]


#: The report, section by section.
SECTIONS: tuple[Section, ...] = (
    _title_section,
    _setup_section,
    _headline_section,
    _improvement_section,
    _before_after_section,
    lambda bench: per_type_lines(bench.out),  # per task type, untrained policy first (agents/per_type.py)
    _sweep_section,
    _plots_section,
    _diagnostics_section,
    _pipeline_section,
    _rerun_section,
)


# ------------------------------------------------------------------------------------------------- plots
def _band(ax: Any, curves: dict[int, dict[float, float]], label: str, clip: tuple[float, float] | None = None) -> bool:
    """Plot the mean over runs of ``{seed: {x: y}}`` with a 95% CI band where every run has a value.

    Only the x's every run logged are drawn (a run that stopped early ends every curve), so every point averages
    the same runs. The band is cut to ``clip`` (a rate's ``(0, 1)``). Return whether anything was drawn.
    """
    if not curves:
        return False
    xs = sorted(set.intersection(*(set(c) for c in curves.values())))
    pts = [(x, mean_ci([c[x] for c in curves.values()])) for x in xs]
    if not pts:
        return False
    x = [p[0] for p in pts]
    m = [p[1][0] for p in pts]
    h = [p[1][1] for p in pts]
    line, = ax.plot(x, m, marker="o" if len(x) < 15 else None, markersize=3, label=f"{label} (n={len(curves)})")
    lo, hi = clip or (-math.inf, math.inf)
    ax.fill_between(x, [max(lo, a - b) for a, b in zip(m, h, strict=True)],
                    [min(hi, a + b) for a, b in zip(m, h, strict=True)], color=line.get_color(), alpha=0.2)
    return True


def _curve_plot(b: Bench, x: str, path: Path, plt: Any) -> Path:
    """IQM of the headline metric against ``x`` (``update`` or ``env_steps``), one panel per eval split."""
    fig, axes = plt.subplots(1, len(b.splits), figsize=(5.5 * len(b.splits), 3.8), squeeze=False)
    multi_env = len(b.cfg["envs"]) > 1
    for ax, split in zip(axes[0], b.splits, strict=True):
        per_run = run_curves(b.rows, split, b.metric, x)
        for env in b.cfg["envs"]:
            for algo, curves in by_algo(per_run, env).items():
                grid, iv = iqm_curve(curves, b.reps)
                line, = ax.plot(grid, iv.point, marker="o" if len(grid) < 15 else None, markersize=3,
                                label=f"{algo}{f' {env}' if multi_env else ''} (n={len(curves)})")
                ax.fill_between(grid, iv.low, iv.high, color=line.get_color(), alpha=0.2)
            if x == "env_steps" and env in b.budgets:
                ax.axvline(b.budgets[env], color="gray", linestyle=":", linewidth=1,
                           label=f"matched budget{f' {env}' if multi_env else ''}: {b.budgets[env]}")
        ax.set_title(f"IQM {METRIC_NAMES[b.metric]}, {split}", fontsize=9)
        ax.set_xlabel("update" if x == "update" else "training env steps")
        ax.set_ylim(-0.05, 1.05)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, title="same runs at every point;\nearly stops carry their last eval forward",
                      title_fontsize=6)
        else:
            ax.text(0.5, 0.5, f"no evaluation recorded {x}", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _profile_plot(b: Bench, path: Path, plt: Any) -> Path:
    """Plot performance profiles of the final headline score, one panel per eval split."""
    fig, axes = plt.subplots(1, len(b.splits), figsize=(5.5 * len(b.splits), 3.8), squeeze=False)
    for ax, split in zip(axes[0], b.splits, strict=True):
        finals = final_scores(b.rows, split, b.metric)
        for env in b.cfg["envs"]:
            for algo, scores in by_algo(finals, env).items():
                iv = profile(scores, b.reps)
                line, = ax.step(TAUS, iv.point, where="post", label=f"{algo} (n={len(scores)})")
                ax.fill_between(TAUS, iv.low, iv.high, step="post", color=line.get_color(), alpha=0.2)
        ax.set_title(f"performance profile, final {METRIC_NAMES[b.metric]}, {split}", fontsize=9)
        ax.set_xlabel("τ")
        ax.set_ylabel("fraction of runs with score > τ")
        ax.set_ylim(-0.05, 1.05)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(b: Bench) -> list[Path]:
    """Write the PNG plots of the bench; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out, cfg = b.out, b.cfg
    paths = [_curve_plot(b, "update", out / "sample_efficiency_update.png", plt)]
    if any("env_steps" in r for r in b.rows):
        paths.append(_curve_plot(b, "env_steps", out / "sample_efficiency_env_steps.png", plt))
    paths.append(_profile_plot(b, out / "performance_profile.png", plt))
    multi_env = len(cfg["envs"]) > 1
    runs = b.runs()
    for name, key, label in CURVES:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        drawn = False
        for env in cfg["envs"]:
            for algo in b.labels:
                curves = {seed: {m["update"]: m[key] for m in read_jsonl(folder / "metrics.jsonl") if key in m}
                          for e, a, seed, folder in runs if (e, a) == (env, algo)}
                curves = {k: v for k, v in curves.items() if v}
                drawn |= _band(ax, curves, algo + (f" {env}" if multi_env else ""),
                               clip=(0.0, 1.0) if "success" in key else None)
        ax.set_xlabel("update")
        ax.set_ylabel(label)
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, f"no run logged {key}", ha="center", transform=ax.transAxes)
        fig.tight_layout()
        fig.savefig(out / name, dpi=100)
        plt.close(fig)
        paths.append(out / name)
    paths.append(_diagnostics_plot(out, b.diagnostics, plt))
    if cfg.get("sweep") and len(b.splits) >= 2:
        paths.append(_tradeoff_plot(out, b.meta, b.rows, b.splits[:2], plt))
    return paths


def final_success(rows: list[dict[str, Any]], split: str) -> dict[tuple[str, str], list[float]]:
    """Per ``(env, algo)``: the greedy success of each seed's last evaluated update on ``split``.

    Example:
        >>> rows = [{"env": "E", "algo": "a", "seed": s, "update": u, "split": "x", "success_rate": u / 10}
        ...         for s in (0, 1) for u in (0, 5)]
        >>> final_success(rows, "x")
        {('E', 'a'): [0.5, 0.5]}
    """
    last = _last_update(rows)
    out: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in rows:
        if r["split"] == split and r.get("update", 0.0) == last[(r["env"], r["algo"], r["seed"])]:
            out[(r["env"], r["algo"])].append(r["success_rate"])
    return dict(out)


def _sweep_lines(cfg: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    sweep = cfg["sweep"]
    mode = cfg.get("sweep_mode", "grid")
    splits = list(cfg["eval_splits"])
    after = {sp: final_success(rows, sp) for sp in splits}
    md = ["", "## Sweep", "",
          f"Settings: {'every combination of' if mode == 'grid' else 'element by element of'} "
          + "; ".join(f"`{k}` ∈ {{{', '.join(map(str, v))}}}" for k, v in sweep.items())
          + ". An algorithm none of the keys applies to runs once, unchanged (the baseline). Greedy success after "
          "training, mean ± 95% CI over seeds:", "",
          "| env | setting | " + " | ".join(splits) + " |", "|---|---|" + "---|" * len(splits)]
    for key in sorted({k for sp in splits for k in after[sp]}):
        md.append(f"| {key[0]} | {key[1]} | "
                  + " | ".join(fmt(after[sp][key]) if key in after[sp] else "–" for sp in splits) + " |")
    if len(splits) >= 2:
        md += ["", f"`sweep_tradeoff.png` plots {splits[0]} against {splits[1]} per setting (bars: 95% CIs)."]
    return md


def _tradeoff_plot(out: Path, meta: dict[str, Any], rows: list[dict[str, Any]], splits: list[str], plt: Any) -> Path:
    """One point per setting: success on ``splits[0]`` (x) against ``splits[1]`` (y), 95% CI bars on both."""
    xs, ys = final_success(rows, splits[0]), final_success(rows, splits[1])
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for key in sorted(set(xs) & set(ys)):
        (mx, hx), (my, hy) = mean_ci(xs[key]), mean_ci(ys[key])
        swept = "[" in key[1]
        ax.errorbar(mx, my, xerr=hx, yerr=hy, fmt="o" if swept else "s", capsize=3, alpha=0.8,
                    label=key[1] + (f" {key[0]}" if len(meta["config"]["envs"]) > 1 else ""))
    ax.set_xlabel(f"greedy success, {splits[0]}")
    ax.set_ylabel(f"greedy success, {splits[1]}")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("sweep: in- vs out-of-distribution success after training", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    path = out / "sweep_tradeoff.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


#: Step-entropy bins (in nats) for "success rate by entropy bin".
ENTROPY_BINS = 8


def _diagnostics(runs: list[tuple[str, str, int, Path]]) -> dict[str, dict[str, np.ndarray]]:
    """Per algorithm: ``g``, ``f`` (f > 0) and step entropies ``H`` paired with their trajectory's outcome ``won``.

    Arrays, not lists: a 240-run bench logs about 6 million training steps, and Python floats in lists took
    gigabytes where float64 arrays take a tenth of that.
    """
    parts: dict[str, dict[str, list[np.ndarray]]] = defaultdict(lambda: defaultdict(list))
    for _env, algo, _seed, folder in runs:
        for rec in read_jsonl(folder / DIAGNOSTICS):
            d = parts[algo]
            f = np.asarray(rec["f"], dtype=float)
            d["f"].append(f[f > 0])
            for key in ("g", "H", "won"):
                d[key].append(np.asarray(rec[key], dtype=float))
    return {algo: {k: np.concatenate(d[k]) if d[k] else np.empty(0) for k in ("g", "f", "H", "won")}
            for algo, d in parts.items()}


def entropy_bins(H: Sequence[float] | np.ndarray, won: Sequence[float] | np.ndarray,
                 bins: int = ENTROPY_BINS) -> list[tuple[float, float, int, float]]:
    """Success rate of steps binned by step entropy: ``(low, high, steps, success rate)`` per non-empty bin.

    Equal-width bins over ``[min H, max H]``; a step counts as a success when its trajectory was won.

    Example:
        >>> entropy_bins([0.0, 0.1, 1.9, 2.0], [1, 1, 0, 1], bins=2)
        [(0.0, 1.0, 2, 1.0), (1.0, 2.0, 2, 0.5)]
    """
    H, won = np.asarray(H, dtype=float), np.asarray(won, dtype=float)
    if H.shape != won.shape:
        raise ValueError(f"entropy_bins: {H.size} entropies but {won.size} outcomes; pass one outcome per step.")
    if not H.size:
        return []
    lo, hi = float(H.min()), float(H.max())
    width = (hi - lo) / bins or 1.0
    k = np.minimum(((H - lo) / width).astype(int), bins - 1)
    steps, wins = np.bincount(k, minlength=bins), np.bincount(k, weights=won, minlength=bins)
    return [(lo + i * width, lo + (i + 1) * width, int(n), float(wins[i] / n)) for i, n in enumerate(steps) if n]


def _diagnostics_lines(d: dict[str, dict[str, np.ndarray]]) -> list[str]:
    """Return the report's EMPG-diagnostics section: entropy by outcome, g/f of EMPG runs, success by entropy bin."""
    if not d:
        return []
    md = ["", "## EMPG diagnostics (training steps of every update, pooled over seeds)", "",
          "EMPG's premise: confident (low-entropy) steps are more often right, so their updates should be "
          "amplified and uncertain ones damped. Step entropy `H` is the mean token entropy of a step's response "
          "under the sampling policy; `g` and `f` are computed with EMPG's own functions (k = k′ = 1) for every "
          "algorithm, so the columns compare like with like.", "",
          "| algo | steps | H of steps in won trajectories | H of steps in failed ones | g (EMPG runs: mean, min–max) "
          "| f (EMPG runs, f > 0: mean) |", "|---|---|---|---|---|---|"]
    for algo, v in d.items():
        is_empg = algo.startswith("empg")
        g = f"{v['g'].mean():.3f}, {v['g'].min():.2f}–{v['g'].max():.2f}" if is_empg and v["g"].size else "–"
        f = f"{v['f'].mean():.3f}" if is_empg and v["f"].size else "–"
        won = v["won"] != 0
        md.append(f"| {algo} | {v['H'].size} | {_mean_txt(v['H'][won])} | {_mean_txt(v['H'][~won])} | {g} | {f} |")
    H = np.concatenate([v["H"] for v in d.values()])
    won = np.concatenate([v["won"] for v in d.values()])
    md += ["", "Success rate of steps by step-entropy bin (all algorithms pooled; is a low-entropy step more often "
           "part of a won trajectory?):", "", "| H bin (nats) | steps | success rate |", "|---|---|---|"]
    md += [f"| {lo:.2f}–{hi:.2f} | {n} | {rate:.3f} |" for lo, hi, n, rate in entropy_bins(H, won)]
    return md


def _mean_txt(values: np.ndarray) -> str:
    return f"{values.mean():.3f} (n={values.size})" if values.size else "–"


def _diagnostics_plot(out: Path, by_algo: dict[str, dict[str, np.ndarray]], plt: Any) -> Path:
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    for algo, d in by_algo.items():
        if algo.startswith("empg"):
            axes[0].hist(d["g"], bins=20, alpha=0.5, label=algo)
            axes[1].hist(d["f"], bins=20, alpha=0.5, label=algo)
        bins = entropy_bins(d["H"], d["won"])
        if bins:
            axes[3].plot([(lo + hi) / 2 for lo, hi, _, _ in bins], [r for *_, r in bins], marker="o", label=algo)
    pooled = {k: np.concatenate([d["H"][(d["won"] != 0) == k] for d in by_algo.values()] or [np.empty(0)])
              for k in (True, False)}
    for key, label in ((True, "won"), (False, "failed")):
        if pooled[key].size:
            axes[2].hist(pooled[key], bins=20, alpha=0.5, density=True, label=f"{label} (n={len(pooled[key])})")
    titles = ("EMPG g (self-calibrating scale)", "EMPG f (future clarity, f>0)",
              "step entropy H by trajectory outcome (density)", "success rate by step-entropy bin")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[3].set_xlabel("step entropy H (nats)")
    fig.tight_layout()
    path = out / "empg_diagnostics.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
