"""Fixed questions answered from finished benches: pairwise verdicts, and runs shared between bench folders.

``scripts/headline.py`` and ``scripts/empg_research.py`` each ask a few questions of the form "does X beat Y?", each
question one or more ``empg-gym bench`` commands. This module holds what they share:

- :func:`pair_table`: per pair of bench labels and eval split, the mean scores, ``P(X > Y)`` with its
  stratified-bootstrap 95% CI and the verdict (:func:`~empg_gym.bench.stats.verdict`), at the last update and at the
  matched env-step budget (:func:`~empg_gym.bench.records.matched_budget`) of the labels asked about. The rows may
  come from several bench folders of the same settings (a question's own bench and the baseline runs it reuses).
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
from pathlib import Path
from typing import Any

from empg_gym.bench.presets import RUN_SETTINGS, BenchConfig, run_settings
from empg_gym.bench.records import RESULT, by_algo, final_scores, matched_budget, run_dir, scores_at_budget
from empg_gym.bench.stats import compare, verdict

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


def pair_table(rows: Sequence[dict[str, Any]], env: str, pairs: Sequence[tuple[str, str]], every: int,
               metric: str = METRIC) -> tuple[list[str], int | None]:
    """Return ``(markdown rows, matched budget)`` for ``pairs`` of bench labels on ``env``.

    One row per pair and split (:data:`SPLITS`): the runs of X and Y, then at the last update and at the matched
    env-step budget the mean scores, ``P(X > Y) [95% CI]`` and the verdict. The budget is the largest multiple of
    ``every`` that at least half the runs of every label in ``pairs`` reached; ``None`` (cells "–") without one.
    :func:`table_header` heads these rows.
    """
    labels = {a for pair in pairs for a in pair}
    rows = [r for r in rows if r["env"] == env and r["algo"] in labels]
    budget = matched_budget(rows, every).get(env) if every else None
    lines = []
    for split, short in SPLITS.items():
        final = by_algo(final_scores(rows, split, metric), env)
        matched = by_algo({k: v[0] for k, v in scores_at_budget(rows, split, metric, budget).items()}, env) \
            if budget else {}
        for x, y in pairs:
            cells = [f"`{x}` vs `{y}`", short, f"{len(final.get(x, []))} / {len(final.get(y, []))}"]
            for scores in (final, matched):
                if not scores.get(x) or not scores.get(y):
                    cells += ["–", "–", "–"]
                    continue
                c = compare(x, scores[x], y, scores[y])
                cells += [f"{sum(scores[x]) / len(scores[x]):.3f} vs {sum(scores[y]) / len(scores[y]):.3f}",
                          f"{c.p:.2f} [{c.low:.2f}, {c.high:.2f}]", verdict(c)]
            lines.append("| " + " | ".join(cells) + " |")
    return lines, budget


def table_header(budget: int | None) -> list[str]:
    """Return the two header lines of a :func:`pair_table`."""
    at = f"at {budget} env steps" if budget else "at matched env steps"
    return ["| pair | split | runs | final: mean X vs Y | final: P(X > Y) [95% CI] | final: verdict | "
            f"{at}: mean X vs Y | P(X > Y) [95% CI] | verdict |", "|---|---|---|---|---|---|---|---|---|"]


def resolved(lines: Sequence[str]) -> list[str]:
    """Return the verdicts of :func:`pair_table` rows that resolve, as ``"X > Y (ID, final)"``.

    Example:
        >>> row = ("| `a` vs `b` | OOD | 30 / 30 | 0.9 vs 0.5 | 0.80 [0.70, 0.90] | a > b | 0.6 vs 0.5 | "
        ...        "0.55 [0.40, 0.70] | unresolved (needs ~90 seeds per algorithm) |")
        >>> resolved([row])
        ['a > b (OOD, final)']
    """
    out = []
    for line in lines:
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        for where, v in (("final", cells[5]), ("matched env steps", cells[8])):
            if v not in ("–",) and not v.startswith("unresolved"):
                out.append(f"{v} ({cells[1]}, {where})")
    return out


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
