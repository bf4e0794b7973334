"""The bench's run records on disk: file names, folders, ``results.csv`` rows, and per-run scores read from them.

The runner writes these records and the report reads them; both import this module (neither imports the other).

A run's scores come from its ``results.csv`` rows (one per split × evaluated update): ``success_rate`` is the greedy
success, ``success_sampled`` the success averaged over ``samples_per_task`` sampled episodes per task (absent in runs
evaluated before sampled evaluation existed), ``env_steps`` the training env steps the run had played when it was
evaluated.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

RESULT = "result.json"
DIAGNOSTICS = "diagnostics.jsonl"
EVALS = "evals.jsonl"
RESULTS_CSV = "results.csv"
PIPELINE = "pipeline"
BASE_COLUMNS = ["env", "split", "algo", "seed", "update", "env_steps", "budget_env_steps", "source", "updates",
                "applied_updates", "num_tasks", "success_rate", "success_sampled", "samples_per_task", "score",
                "episode_len", "train_seconds"]
#: Columns read as text; every other cell of ``results.csv`` is a number.
TEXT_COLUMNS = ("env", "split", "algo", "source")
#: The two per-run success metrics: greedy (one episode per task) and sampled (``samples_per_task`` per task).
GREEDY, SAMPLED = "success_rate", "success_sampled"

#: One run: ``(env, algo, seed)``.
RunKey = tuple[str, str, int]


def run_dir(out: Path, env_id: str, algo: str, seed: int) -> Path:
    """Return the folder of one run.

    Example:
        >>> run_dir(Path("out"), "EMPG-KeyDoor-v0", "grpo", 0).as_posix()
        'out/runs/EMPG-KeyDoor-v0/grpo/seed0'
    """
    return out / "runs" / env_id / algo / f"seed{seed}"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Return the records of a JSON-lines file (none when it does not exist).

    Example:
        >>> read_jsonl(Path("no-such-file.jsonl"))
        []
    """
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def read_results(out: Path) -> list[dict[str, Any]]:
    """Return the rows of ``results.csv`` with numbers parsed (empty cells dropped)."""
    rows = []
    with open(out / RESULTS_CSV, newline="", encoding="utf-8") as f:
        for raw in csv.DictReader(f):
            row: dict[str, Any] = {}
            for key, value in raw.items():
                if value in ("", None):
                    continue
                try:
                    row[key] = float(value) if key not in TEXT_COLUMNS else value
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


def run_key(row: dict[str, Any]) -> RunKey:
    """Return the ``(env, algo, seed)`` of a ``results.csv`` row."""
    return row["env"], row["algo"], int(row["seed"])


def has_metric(rows: list[dict[str, Any]], metric: str) -> bool:
    """Whether every row carries ``metric`` (older runs have no ``success_sampled``).

    Example:
        >>> has_metric([{"success_rate": 1.0, "success_sampled": 0.5}, {"success_rate": 0.0}], "success_sampled")
        False
    """
    return bool(rows) and all(metric in r for r in rows)


def run_curves(rows: list[dict[str, Any]], split: str, metric: str, x: str = "update"
               ) -> dict[RunKey, list[tuple[float, float]]]:
    """Per run: its evaluations on ``split`` as ``(x, metric)`` points sorted by ``x`` (``update`` or ``env_steps``).

    Against ``env_steps`` an evaluation made for an env-step budget sits at that budget (``budget_env_steps``), the
    others at the env steps played, so that every algorithm's curve has its points at the same budgets. Rows without
    ``x`` or ``metric`` are left out.

    Example:
        >>> rows = [{"env": "E", "algo": "a", "seed": 0, "split": "s", "update": u, "success_rate": y}
        ...         for u, y in ((2, 0.5), (0, 0.0))]
        >>> run_curves(rows, "s", "success_rate")
        {('E', 'a', 0): [(0, 0.0), (2, 0.5)]}
    """
    curves: dict[RunKey, list[tuple[float, float]]] = defaultdict(list)
    for r in rows:
        at = r.get("budget_env_steps", r.get("env_steps")) if x == "env_steps" else r.get(x)
        if r["split"] == split and at is not None and metric in r:
            curves[run_key(r)].append((at, r[metric]))
    return {k: sorted(v) for k, v in curves.items()}


def final_scores(rows: list[dict[str, Any]], split: str, metric: str) -> dict[RunKey, float]:
    """Per run: ``metric`` on ``split`` at the run's last evaluated update (its final score).

    Example:
        >>> rows = [{"env": "E", "algo": "a", "seed": s, "split": "x", "update": u, "success_rate": u / 10}
        ...         for s in (0, 1) for u in (0, 5)]
        >>> final_scores(rows, "x", "success_rate")
        {('E', 'a', 0): 0.5, ('E', 'a', 1): 0.5}
    """
    return {k: c[-1][1] for k, c in run_curves(rows, split, metric).items()}


def matched_budget(rows: list[dict[str, Any]], every_env_steps: int) -> dict[str, int]:
    """Per env: the largest multiple of ``every_env_steps`` that at least half the runs of every algorithm reached.

    A run reaches budget ``b`` when its last evaluation was at ``env_steps >= b``. The other runs finished all their
    updates having played fewer env steps (a policy that wins early plays short episodes); at the budget they carry
    their last evaluation forward (:func:`scores_at_budget`), as the sample-efficiency curves do, so every run counts
    and none is credited with experience it did not have. Envs where some run has no ``env_steps`` (older records) or
    the budget would be 0 are left out; so is everything when ``every_env_steps`` is 0 (no env-step schedule).

    Example:
        >>> rows = [{"env": "E", "algo": a, "seed": s, "split": "s", "update": 1, "env_steps": n}
        ...         for a, s, n in (("grpo", 0, 250), ("grpo", 1, 180), ("grpo", 2, 260), ("dapo", 0, 730))]
        >>> matched_budget(rows, 100)
        {'E': 200}
    """
    if every_env_steps <= 0:
        return {}
    last: dict[RunKey, float] = {}
    complete: dict[str, bool] = defaultdict(lambda: True)
    for r in rows:
        if "env_steps" not in r:
            complete[r["env"]] = False
            continue
        last[run_key(r)] = max(last.get(run_key(r), 0.0), r["env_steps"])
    reached: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (env, algo, _seed), steps in last.items():
        reached[env][algo].append(steps)
    budgets = {}
    for env, per_algo in reached.items():
        # the lower median of each algorithm's runs: at least half of them played that many env steps
        medians = [sorted(v)[(len(v) - 1) // 2] for v in per_algo.values()]
        budgets[env] = int(min(medians) // every_env_steps) * every_env_steps
    return {env: b for env, b in budgets.items() if b > 0 and complete[env]}


def scores_at_budget(rows: list[dict[str, Any]], split: str, metric: str, budget: float
                     ) -> dict[RunKey, tuple[float, float]]:
    """Per run: ``(metric, env_steps)`` of its first evaluation at ``>= budget`` env steps, else of its last one.

    With an env-step eval schedule (``eval_every_env_steps``) that evaluation is the one made right after the update
    that crossed the budget, so every algorithm is compared at the same number of env steps played. A run that
    finished before the budget carries its last evaluation forward (its ``env_steps`` then say how many it played).

    Example:
        >>> rows = [{"env": "E", "algo": "a", "seed": 0, "split": "s", "update": u, "env_steps": n, "success_rate": y}
        ...         for u, n, y in ((0, 0, 0.0), (1, 120, 0.25), (2, 260, 0.75))]
        >>> scores_at_budget(rows, "s", "success_rate", 100)
        {('E', 'a', 0): (0.25, 120)}
        >>> scores_at_budget(rows, "s", "success_rate", 300)  # finished at 260: its last evaluation, carried forward
        {('E', 'a', 0): (0.75, 260)}
    """
    out: dict[RunKey, tuple[float, float]] = {}
    latest: dict[RunKey, tuple[float, float]] = {}
    for r in sorted(rows, key=lambda r: r.get("update", 0.0)):
        if r["split"] != split or metric not in r:
            continue
        latest[run_key(r)] = (r[metric], r.get("env_steps", 0.0))
        at = r.get("budget_env_steps", r.get("env_steps"))
        if at is not None and at >= budget and run_key(r) not in out:
            out[run_key(r)] = (r[metric], r["env_steps"])
    return {k: out.get(k, v) for k, v in latest.items()}


def by_algo(per_run: dict[RunKey, Any], env: str) -> dict[str, list[Any]]:
    """Group per-run values of ``env`` by algorithm, in seed order.

    Example:
        >>> by_algo({("E", "b", 1): 0.5, ("E", "b", 0): 0.25, ("F", "b", 0): 1.0}, "E")
        {'b': [0.25, 0.5]}
    """
    out: dict[str, list[Any]] = defaultdict(list)
    for (e, algo, _seed), value in sorted(per_run.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        if e == env:
            out[algo].append(value)
    return dict(out)

