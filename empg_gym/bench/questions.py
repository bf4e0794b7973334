"""Fixed questions answered from finished benches: pairwise verdicts, and runs shared between bench folders.

``scripts/headline.py`` and ``scripts/empg_research.py`` each ask a few questions of the form "does X beat Y?", each
question one or more ``empg-gym bench`` commands. This module holds what they share:

- :func:`pair_table`: per pair of bench labels and eval split a :class:`PairRow`: the mean scores, ``P(X > Y)`` with
  its stratified-bootstrap 95% CI and the verdict (:func:`~empg_gym.bench.stats.verdict`), at the last update and at
  the matched env-step budget (:func:`~empg_gym.bench.records.matched_budget`) of the labels asked about. The runs may
  come from several bench folders of the same settings (a question's own bench and the baseline runs it reuses).
  :func:`table_markdown` writes the rows as a table, :func:`resolved` lists the verdicts that resolve.
- :func:`reuse_runs`: copy finished runs into a bench folder from another one whose run settings
  (:data:`~empg_gym.bench.presets.RUN_SETTINGS`) are the same, so that no run is trained twice.

Example:
    >>> span([0, 1, 2, 5])
    '0-2, 5'
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from empg_gym.bench.presets import RUN_SETTINGS, BenchConfig, run_settings
from empg_gym.bench.records import RESULT, by_algo, final_scores, matched_budget, run_dir, scores_at_budget
from empg_gym.bench.stats import Comparison, compare, verdict

#: The eval splits a question scores, with their short names.
SPLITS = {"eval_in_distribution": "ID", "eval_out_of_distribution": "OOD"}
#: The score: success averaged over every task of the split, each played ``eval_samples`` times with sampling.
METRIC = "success_sampled"


def span(seeds: Iterable[int]) -> str:
    """Write sorted seeds as ranges: ``[0, 1, 2, 5]`` -> ``"0-2, 5"``."""
    seeds = list(seeds)
    parts, start = [], None
    for i, s in enumerate(seeds):
        if start is None:
            start = s
        if i + 1 == len(seeds) or seeds[i + 1] != s + 1:
            parts.append(f"{start}-{s}" if s != start else f"{s}")
            start = None
    return ", ".join(parts)


def bench_seeds(folder: Path) -> list[int]:
    """Return the seeds of the bench in ``folder`` (its ``bench.json``)."""
    return list(json.loads((folder / "bench.json").read_text(encoding="utf-8"))["config"]["seeds"])


def every_env_steps(folder: Path) -> int:
    """Return the env-step evaluation interval of the bench in ``folder`` (0 when it has none)."""
    return int(json.loads((folder / "bench.json").read_text(encoding="utf-8"))["config"].get("eval_every_env_steps")
               or 0)


class Outcome(NamedTuple):
    """X vs Y at one point of the runs (the last update, or a matched env-step budget)."""

    mean_x: float
    mean_y: float
    comparison: Comparison

    def cells(self) -> list[str]:
        """Return the table's three cells: the means, ``P(X > Y) [95% CI]``, the verdict."""
        c = self.comparison
        return [f"{self.mean_x:.3f} vs {self.mean_y:.3f}", f"{c.p:.2f} [{c.low:.2f}, {c.high:.2f}]", verdict(c)]


@dataclass(frozen=True)
class PairRow:
    """One row of a :func:`pair_table`: bench labels X vs Y on one eval split.

    Attributes:
        x, y: The labels.
        split: The split's short name (:data:`SPLITS`).
        runs: The runs of X and of Y with a final score.
        final: The outcome at the last update (``None`` when either label has no runs).
        matched: The outcome at the matched env-step budget (``None`` without one).
    """

    x: str
    y: str
    split: str
    runs: tuple[int, int]
    final: Outcome | None
    matched: Outcome | None

    def markdown(self) -> str:
        """Return the row under :func:`table_markdown`'s header ("–" where an outcome is missing)."""
        cells = [f"`{self.x}` vs `{self.y}`", self.split, f"{self.runs[0]} / {self.runs[1]}"]
        for outcome in (self.final, self.matched):
            cells += outcome.cells() if outcome else ["–", "–", "–"]
        return "| " + " | ".join(cells) + " |"

    def verdicts(self) -> list[str]:
        """Return the outcomes that resolve, as ``"X > Y (ID, final)"`` or ``"... (ID, matched env steps)"``."""
        return [f"{verdict(o.comparison)} ({self.split}, {where})"
                for where, o in (("final", self.final), ("matched env steps", self.matched))
                if o is not None and o.comparison.resolved]


def pair_table(rows: Sequence[dict[str, Any]], env: str, pairs: Sequence[tuple[str, str]], every: int,
               metric: str = METRIC) -> tuple[list[PairRow], int | None]:
    """Return ``(table rows, matched budget)`` for ``pairs`` of bench labels on ``env``.

    One row per split (:data:`SPLITS`) and pair, split-major: the runs of X and Y, then at the last update and at the
    matched env-step budget the mean scores and ``P(X > Y)`` with its CI. The budget is the largest multiple of
    ``every`` that at least half the runs of every label in ``pairs`` reached; ``None`` without one.
    :func:`table_markdown` writes the table.
    """
    labels = {a for pair in pairs for a in pair}
    rows = [r for r in rows if r["env"] == env and r["algo"] in labels]
    budget = matched_budget(rows, every).get(env) if every else None
    table = []
    for split, short in SPLITS.items():
        final = by_algo(final_scores(rows, split, metric), env)
        matched = by_algo({k: v[0] for k, v in scores_at_budget(rows, split, metric, budget).items()}, env) \
            if budget else {}
        for x, y in pairs:
            outcomes = [Outcome(sum(s[x]) / len(s[x]), sum(s[y]) / len(s[y]), compare(x, s[x], y, s[y]))
                        if s.get(x) and s.get(y) else None for s in (final, matched)]
            table.append(PairRow(x, y, short, (len(final.get(x, [])), len(final.get(y, []))), *outcomes))
    return table, budget


def table_markdown(table: Sequence[PairRow], budget: int | None) -> list[str]:
    """Return a :func:`pair_table` as markdown lines: its header, then one line per row."""
    at = f"at {budget} env steps" if budget else "at matched env steps"
    return ["| pair | split | runs | final: mean X vs Y | final: P(X > Y) [95% CI] | final: verdict | "
            f"{at}: mean X vs Y | P(X > Y) [95% CI] | verdict |", "|---|---|---|---|---|---|---|---|---|",
            *(row.markdown() for row in table)]


def resolved(table: Sequence[PairRow]) -> list[str]:
    """Return the verdicts of a :func:`pair_table` that resolve, row by row (:meth:`PairRow.verdicts`).

    Example:
        >>> from empg_gym.bench.stats import Comparison
        >>> won = Outcome(0.9, 0.5, Comparison("a", "b", 0.80, 0.70, 0.90, 0.4, 12, (30, 30)))
        >>> tie = Outcome(0.6, 0.5, Comparison("a", "b", 0.55, 0.40, 0.70, 0.1, 90, (30, 30)))
        >>> row = PairRow("a", "b", "OOD", (30, 30), final=won, matched=tie)
        >>> resolved([row])
        ['a > b (OOD, final)']
        >>> row.markdown()
        '| `a` vs `b` | OOD | 30 / 30 | 0.900 vs 0.500 | 0.80 [0.70, 0.90] | a > b | 0.600 vs 0.500 | 0.55 [0.40, 0.70] | unresolved (needs ~90 seeds per algorithm) |'
    """  # noqa: E501
    return [v for row in table for v in row.verdicts()]


def reuse_runs(source: Path, dest: Path, config: BenchConfig, log: Callable[[str], None] = print) -> int:
    """Copy the finished runs of ``config`` (its envs × labels × seeds) from the bench folder ``source`` into ``dest``
    where ``source``'s run settings equal ``config``'s; return how many were copied.

    A run ``dest`` has finished already is kept. Nothing is copied from a bench with other settings (its runs would
    report another budget or evaluation as this one's); ``log`` says which settings differ.
    """  # noqa: D205
    meta = source / "bench.json"
    if not meta.is_file():
        raise SystemExit(f"--reuse {source}: no bench.json there (not a bench folder).")
    have, wanted = run_settings(json.loads(meta.read_text(encoding="utf-8"))["config"]), run_settings(config)
    if have != wanted:
        log(f"--reuse {source}: its settings differ ({', '.join(k for k in RUN_SETTINGS if have[k] != wanted[k])}); "
            "nothing reused.")
        return 0
    copied = 0
    for env in config.envs:
        for label in config.labels:
            for seed in config.seeds:
                src, dst = run_dir(source, env, label, seed), run_dir(dest, env, label, seed)
                if (src / RESULT).is_file() and not (dst / RESULT).is_file():
                    if dst.exists():
                        shutil.rmtree(dst)
                    shutil.copytree(src, dst)
                    copied += 1
    return copied
