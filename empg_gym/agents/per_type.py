"""Per-task-type results as the papers print them, from evaluation episode records.

An episode record is one line of an ``eval_<split>.jsonl`` log (:func:`~empg_gym.agents.evaluate.evaluate_policy`,
the bench's evaluations): ``task_id``, ``task_type``, ``won``, ``score``, and, written since this module exists,
``facets`` (what the task is, by the family's own categories: :func:`task_facets`) and a Deep Search answer's ``em``
and ``f1``. Each family is reported the way its papers report it:

=============  ==========================================  ==============================================
family         groups (facets)                             metrics
=============  ==========================================  ==============================================
``alfworld``   ``type``: pick, look, clean, heat, cool,    success (EMPG Table 1, verl-agent's validation)
               pick2
``webshop``    ``category`` (the goal's product category)  mean score, success rate (score = 1)
``deepsearch`` ``dataset`` (nq, hotpotqa... or             exact match (EM) and token F1
               ``generated``), ``hops``
``toy``        ``doors`` (KeyRooms), else ``type``         success
=============  ==========================================  ==============================================

plus an ``all`` row over every episode. A group's label is its value for the family's ``type`` facet (``pick``) and
``facet=value`` otherwise (``hops=2``, ``doors=3``); metric keys are ``<label>/<metric>`` (the trainer logs them as
``eval/<split>/<label>/<metric>``).

Example:
    >>> eps = [{"task_type": "pick_and_place_simple", "won": True, "score": 1.0},
    ...        {"task_type": "pick_two_obj_and_place", "won": False, "score": 0.0}]
    >>> per_type_metrics(eps, "alfworld")
    {'all/success': 0.5, 'pick/success': 1.0, 'pick2/success': 0.0}
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empg_gym.tasks import Task

#: ALFWorld's six task types under the names of the EMPG paper's Table 1 (verl-agent reports the same six).
ALFWORLD_TYPES = {
    "pick_and_place_simple": "pick",
    "look_at_obj_in_light": "look",
    "pick_clean_then_place_in_recep": "clean",
    "pick_heat_then_place_in_recep": "heat",
    "pick_cool_then_place_in_recep": "cool",
    "pick_two_obj_and_place": "pick2",
}


def _alfworld(task: Task, source: str) -> dict[str, str]:
    return {"type": ALFWORLD_TYPES.get(task.task_type, task.task_type)}


def _webshop(task: Task, source: str) -> dict[str, str]:
    return {"category": str(task.data.get("category", task.task_type))}


def _deepsearch(task: Task, source: str) -> dict[str, str]:
    # real data: the task type is the FlashRAG file's dataset (nq, hotpotqa, ...); the embedded set is generated
    out = {"dataset": task.task_type if source == "real" else "generated"}
    if "hops" in task.data:
        out["hops"] = str(task.data["hops"])
    return out


def _toy(task: Task, source: str) -> dict[str, str]:
    if "doors" in task.data:  # KeyRooms: its layouts differ by how many locked doors they have
        return {"doors": str(len(task.data["doors"]))}
    return {"type": task.task_type}


#: Family -> the facets a task is reported under (:func:`task_facets`).
FACETS: dict[str, Callable[[Task, str], dict[str, str]]] = {
    "alfworld": _alfworld,
    "webshop": _webshop,
    "deepsearch": _deepsearch,
    "toy": _toy,
}

#: Family -> the metrics of its per-type table, in the papers' order.
METRICS: dict[str, tuple[str, ...]] = {
    "alfworld": ("success",),
    "webshop": ("score", "success"),
    "deepsearch": ("em", "f1"),
    "toy": ("success",),
}


def task_facets(family: str, task: Task, source: str = "embedded") -> dict[str, str]:
    """Return what ``task`` is reported under: ``{facet: value}`` (a family without an entry: its ``type``).

    Example:
        >>> task_facets("deepsearch", Task("q1", "founder.born", "Who...?", {"hops": 2}))
        {'dataset': 'generated', 'hops': '2'}
        >>> task_facets("alfworld", Task("t", "pick_heat_then_place_in_recep", "heat some egg"))
        {'type': 'heat'}
    """
    fn = FACETS.get(family)
    return fn(task, source) if fn is not None else {"type": task.task_type}


def family_of(env_id: str) -> str:
    """Return the family an env id is registered with (``custom`` for an unknown id).

    Example:
        >>> family_of("EMPG-KeyRooms-v0"), family_of("My-Env-v0")
        ('toy', 'custom')
    """
    from empg_gym.registration import REGISTERED

    return str(REGISTERED.get(env_id, {}).get("family", "custom"))


def annotate(episode: dict[str, Any], family: str, task: Task, source: str, final_info: Mapping[str, Any]) -> dict[str, Any]:
    """Add ``goal``, ``facets`` and the answer's ``em``/``f1`` (when the final ``info`` has them) to a record."""
    episode["goal"] = task.goal
    episode["facets"] = task_facets(family, task, source)
    episode.update({k: float(final_info[k]) for k in ("em", "f1") if k in final_info})
    return episode


def _facets_of(episode: Mapping[str, Any], family: str) -> dict[str, str]:
    facets = episode.get("facets")
    if facets:
        return dict(facets)
    task_type = str(episode.get("task_type", ""))  # a record written before facets existed
    return {"type": ALFWORLD_TYPES.get(task_type, task_type) if family == "alfworld" else task_type}


def _value(episode: Mapping[str, Any], metric: str) -> float | None:
    if metric == "success":
        return float(bool(episode["won"]))
    if metric == "score":
        return float(episode["score"])
    if metric == "em":
        return float(episode.get("em", episode["score"]))  # Deep Search's score is its EM
    v = episode.get(metric)
    return None if v is None else float(v)


def label(facet: str, value: str) -> str:
    """Return a group's label: the value for the ``type`` facet, ``facet=value`` otherwise.

    Example:
        >>> label("type", "pick"), label("hops", "2")
        ('pick', 'hops=2')
    """
    return value if facet == "type" else f"{facet}={value}"


def _group_key(lab: str) -> tuple[int, str, float, str]:
    if lab == "all":
        return (0, "", 0.0, "")
    facet, _, value = lab.rpartition("=")
    try:
        return (1, facet, float(value), "")
    except ValueError:
        order = list(ALFWORLD_TYPES.values())
        return (1, facet, float(order.index(value)) if value in order else len(order), value)


@dataclass(frozen=True)
class TypeRow:
    """One group of a per-type table.

    Attributes:
        label: ``all``, a type (``pick``) or ``facet=value`` (``hops=2``).
        n: Episodes in the group.
        values: Metric -> mean over the group's episodes (a metric no episode carries is left out).
    """

    label: str
    n: int
    values: dict[str, float]


def per_type_rows(episodes: Iterable[Mapping[str, Any]], family: str) -> list[TypeRow]:
    """Return the ``all`` row, then one row per facet value, sorted (types in the paper's order, numbers by value).

    Example:
        >>> eps = [{"facets": {"doors": "1"}, "won": True, "score": 1.0},
        ...        {"facets": {"doors": "3"}, "won": False, "score": 0.0},
        ...        {"facets": {"doors": "3"}, "won": True, "score": 1.0}]
        >>> [(r.label, r.n, r.values["success"]) for r in per_type_rows(eps, "toy")]
        [('all', 3, 0.6666666666666666), ('doors=1', 1, 1.0), ('doors=3', 2, 0.5)]
    """
    metrics = METRICS.get(family, ("success",))
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for ep in episodes:
        groups["all"].append(ep)
        for facet, value in _facets_of(ep, family).items():
            groups[label(facet, value)].append(ep)
    rows = []
    for lab in sorted(groups, key=_group_key):
        eps = groups[lab]
        values = {}
        for m in metrics:
            xs = [v for v in (_value(ep, m) for ep in eps) if v is not None]
            if xs:
                values[m] = sum(xs) / len(xs)
        rows.append(TypeRow(lab, len(eps), values))
    return rows


def per_type_metrics(episodes: Sequence[Mapping[str, Any]], family: str) -> dict[str, float]:
    """Return ``{"<label>/<metric>": mean}`` over the rows of :func:`per_type_rows` (see the module example)."""
    return {f"{r.label}/{m}": v for r in per_type_rows(episodes, family) for m, v in r.values.items()}


def per_type_csv_rows(episodes: Sequence[Mapping[str, Any]], family: str, **columns: Any) -> list[dict[str, Any]]:
    """Return one CSV row per group: ``columns`` (env, split...), ``type``, ``n`` and the family's metrics.

    Example:
        >>> per_type_csv_rows([{"facets": {"category": "garden"}, "won": False, "score": 0.5}], "webshop", split="x")
        [{'split': 'x', 'type': 'all', 'n': 1, 'score': 0.5, 'success': 0.0}, {'split': 'x', 'type': 'category=garden', 'n': 1, 'score': 0.5, 'success': 0.0}]
    """
    return [{**columns, "type": r.label, "n": r.n, **r.values} for r in per_type_rows(episodes, family)]


# ------------------------------------------------------------------------------------------- bench report
def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _greedy_episodes(path: Path) -> list[dict[str, Any]]:
    """Return the greedy episodes of an evaluation log (it may also hold sampled ones, ``mode: "sampled"``)."""
    return [ep for ep in _read_jsonl(path) if ep.get("mode", "greedy") == "greedy"]


def _cell(values: list[float]) -> str:
    if not values:
        return "–"
    m = sum(values) / len(values)
    return f"{m:.3f}" if len(values) < 2 else f"{m:.3f} [{min(values):.2f}–{max(values):.2f}]"


def per_type_table(runs: Mapping[str, Sequence[Sequence[Mapping[str, Any]]]], family: str,
                   metric: str) -> tuple[list[str], list[list[str]]]:
    """Return ``(header, lines)``: per algorithm, ``metric`` per group as the mean over seeds [min–max].

    Args:
        runs: Algorithm -> one episode list per seed (the run's final evaluation of one split).
        family: The env family (its groups and metrics).
        metric: One of the family's metrics.

    Example:
        >>> ep = lambda d, w: {"facets": {"doors": d}, "won": w, "score": float(w)}
        >>> header, lines = per_type_table({"grpo": [[ep("1", 1), ep("2", 0)], [ep("1", 1), ep("2", 1)]]},
        ...                                "toy", "success")
        >>> header, lines
        (['algo', 'seeds', 'all (n=2)', 'doors=1 (n=1)', 'doors=2 (n=1)'], [['grpo', '2', '0.750 [0.50–1.00]', '1.000 [1.00–1.00]', '0.500 [0.00–1.00]']])
    """
    per_algo: dict[str, dict[str, list[float]]] = {}
    sizes: dict[str, int] = {}
    for algo, seeds in runs.items():
        cells: dict[str, list[float]] = defaultdict(list)
        for episodes in seeds:
            for row in per_type_rows(episodes, family):
                sizes[row.label] = max(sizes.get(row.label, 0), row.n)
                if metric in row.values:
                    cells[row.label].append(row.values[metric])
        per_algo[algo] = cells
    labels = sorted(sizes, key=_group_key)
    header = ["algo", "seeds"] + [f"{lab} (n={sizes[lab]})" for lab in labels]
    lines = [[algo, str(len(runs[algo]))] + [_cell(cells.get(lab, [])) for lab in labels]
             for algo, cells in per_algo.items()]
    return header, lines


#: The row of the untrained policy (each run's update-0 evaluation) in the bench report's per-type tables.
BASELINE = "untrained (update 0)"


def _baseline(out: Path, env: str, split: str, labels: Sequence[str], seeds: Sequence[int]) -> list[list[dict[str, Any]]]:
    """Per seed, the untrained policy's episodes (``eval_<split>_update0.jsonl``; every algorithm's run of a seed
    starts from the same weights, so the first one logged stands for the seed).
    """  # noqa: D205
    found = []
    for seed in seeds:
        for algo in labels:
            eps = _greedy_episodes(out / "runs" / env / algo / f"seed{seed}" / f"eval_{split}_update0.jsonl")
            if eps:
                found.append(eps)
                break
    return found


#: The bench's per-type results, one row per env × split × algo × seed × update × group (:func:`write_per_type_csv`).
PER_TYPE_CSV = "results_per_type.csv"


def write_per_type_csv(out: str | Path) -> Path | None:
    """Write ``OUT/results_per_type.csv`` from the runs' episode logs (update 0 and the final policy); return it.

    Columns: ``env, split, algo, seed, update, type, n`` and the family's metrics. ``None`` when no run logged any
    episode.
    """
    import csv

    out = Path(out)
    meta = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    cfg = meta["config"]
    rows: list[dict[str, Any]] = []
    for env in cfg["envs"]:
        for split in cfg["eval_splits"]:
            for algo in meta.get("labels") or cfg["algos"]:
                for seed in cfg["seeds"]:
                    run = out / "runs" / env / algo / f"seed{seed}"
                    final = [r["update"] for r in _read_jsonl(run / "evals.jsonl")]
                    for update, name in ((0, f"eval_{split}_update0.jsonl"),
                                         (max(final, default=""), f"eval_{split}.jsonl")):
                        if eps := _greedy_episodes(run / name):
                            rows += per_type_csv_rows(eps, family_of(env), env=env, split=split, algo=algo,
                                                      seed=seed, update=update)
    if not rows:
        return None
    with open(out / PER_TYPE_CSV, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
        writer.writeheader()
        writer.writerows(rows)
    return out / PER_TYPE_CSV


def per_type_lines(out: str | Path) -> list[str]:
    """Return the bench report's per-type section: one table per env × eval split × metric, from the runs' logs.

    Reads ``bench.json`` and every run's ``eval_<split>.jsonl`` (the final policy's episodes) and
    ``eval_<split>_update0.jsonl`` (the untrained policy's: the baseline row); a split no run logged is left out, and
    a bench without any logs gives no section. Also writes every run's values to ``results_per_type.csv``
    (:func:`write_per_type_csv`).
    """
    out = Path(out)
    meta = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    cfg = meta["config"]
    labels = list(meta.get("labels") or cfg["algos"])
    md: list[str] = []
    for env in cfg["envs"]:
        family = family_of(env)
        for split in cfg["eval_splits"]:
            runs = {algo: [eps for seed in cfg["seeds"]
                           if (eps := _greedy_episodes(out / "runs" / env / algo / f"seed{seed}" /
                                                       f"eval_{split}.jsonl"))]
                    for algo in labels}
            runs = {a: r for a, r in runs.items() if r}
            if not runs:
                continue
            baseline = _baseline(out, env, split, labels, cfg["seeds"])
            if baseline:
                runs = {BASELINE: baseline, **runs}
            for metric in METRICS.get(family, ("success",)):
                header, lines = per_type_table(runs, family, metric)
                md += ["", f"**{env}, {split}: {metric}**", "", "| " + " | ".join(header) + " |",
                       "|" + "---|" * len(header)] + ["| " + " | ".join(line) + " |" for line in lines]
    if not md or write_per_type_csv(out) is None:
        return []
    return ["", "## Results per task type (final policy, greedy; mean over seeds [min–max])", "",
            "Groups as the papers report them: ALFWorld's six task types, WebShop's goal categories, Deep Search's "
            "source dataset and hop count, KeyRooms' number of doors; `all` is every evaluated task; n counts a "
            f"run's episodes in the group. `{BASELINE}` is the model before training (the prompt-only baseline: "
            "each seed's update-0 evaluation), so a row's gain over it is what training added per type. Every "
            f"run's values: `{PER_TYPE_CSV}`."] + md
