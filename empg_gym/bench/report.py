"""The bench report: ``report.md`` (mean ± std over seeds, computed from ``results.csv``) and PNG plots.

Plots (matplotlib, Agg backend): success rate vs update, KL to the reference, policy entropy, and EMPG diagnostics
(histograms of ``g`` and ``f``; step entropy of successful vs failed trajectories).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from empg_gym.bench.runner import DIAGNOSTICS, RESULTS_CSV, run_dir

logger = logging.getLogger(__name__)

#: Curves plotted against the update step: (file name, metrics.jsonl key, axis label).
CURVES = (
    ("success.png", "rollout/success_rate", "training success rate"),
    ("kl.png", "actor/kl_loss", "KL(policy || reference) estimate"),
    ("approx_kl.png", "actor/approx_kl", "approx. KL(old policy || policy)"),
    ("entropy.png", "actor/entropy", "policy token entropy"),
)


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
                    row[key] = float(value) if key not in ("env", "split", "algo", "source") else value
                except ValueError:
                    row[key] = value
            rows.append(row)
    return rows


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


def fmt(values: list[float]) -> str:
    """Format ``mean ± std (n)`` of ``values``.

    Example:
        >>> fmt([0.5, 1.0])
        '0.750 ± 0.354 (n=2)'
    """
    m, s = mean_std(values)
    return f"{m:.3f} ± {s:.3f} (n={len(values)})"


def summary_table(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Return ``(header, lines)``: one line per env × split × algo, each metric as mean ± std over seeds."""
    metrics = ["success_rate", "score"] + sorted({k for r in rows for k in r if k.startswith("success_rate/")})
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["env"], r["split"], r["algo"])].append(r)
    header = ["env", "split", "algo", "seeds"] + [m.replace("success_rate/", "success ") for m in metrics]
    lines = []
    for (env, split, algo), rs in groups.items():
        cells = [fmt([r[m] for r in rs if m in r]) if any(m in r for r in rs) else "–" for m in metrics]
        lines.append([env, split, algo, ",".join(str(int(r["seed"])) for r in rs)] + cells)
    return header, lines


def write_report(out: Path) -> Path:
    """Write ``report.md`` and the plots for the bench in ``out``; return the report's path."""
    out = Path(out)
    meta = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    rows = read_results(out)
    plots = write_plots(out, meta)
    cfg = meta["config"]
    header, lines = summary_table(rows)
    md = ["# empg-gym bench report", ""]
    if cfg.get("demonstration", True):
        md += ["> **A demonstration of the pipeline, not a paper result.** The runs are far too short and too few "
               "to rank the algorithms; differences below are noise. Use the `paper` preset on a GPU for that.", ""]
    sources = sorted({r.get("source", "") for r in rows} - {""})
    md += [
        "## Setup", "",
        f"- Envs: {', '.join(cfg['envs'])} (task source: {', '.join(sources) or 'unknown'})"
        + (f"; tasks restricted to type `{cfg['task_type']}`" if cfg.get("task_type") else ""),
        f"- Algorithms: {', '.join(cfg['algos'])}; seeds: {', '.join(map(str, cfg['seeds']))}",
        f"- Budget: {cfg['updates']} updates per run; eval on the first {cfg['eval_tasks']} tasks of "
        f"{', '.join(cfg['eval_splits'])} (greedy)",
        f"- Training settings: `{json.dumps(cfg['train'], sort_keys=True)}`",
        f"- Model: `{cfg['train'].get('model', 'smollm2-135m')}`",
        f"- Hardware needed: {cfg.get('hardware', '')}; ran on: {meta['hardware']['cpu_count']} CPUs "
        f"({meta['hardware']['machine']}, {meta['hardware']['system']})",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "", "## Results (mean ± std over seeds, from results.csv)", "",
        "| " + " | ".join(header) + " |", "|" + "---|" * len(header),
    ]
    md += ["| " + " | ".join(line) + " |" for line in lines]
    md += ["", "`score` is each env's own episode score: ALFWorld's is the success itself, WebShop's the purchase's "
           "attribute/option/price/type match, Deep Search's the exact match (EM) of the answer, so EM on "
           "`eval_in_distribution` and `eval_out_of_distribution` is the ID/OOD pair."]
    applied = {(r["env"], r["algo"], int(r["seed"])): (int(r["applied_updates"]), int(r["updates"]))
               for r in rows if "applied_updates" in r and "updates" in r}
    if any(a != u for a, u in applied.values()):
        md += ["", "Updates applied per run (DAPO skips an update when every group's rewards are equal, even after "
               "resampling): " + ", ".join(f"{env} {algo} seed {seed}: {a}/{u}"
                                           for (env, algo, seed), (a, u) in applied.items()) + "."]
    secs = [r["train_seconds"] for r in rows if "train_seconds" in r]
    if secs:
        md += ["", f"Training time per run: {fmt(secs)} seconds."]
    md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    md += ["", "Rerun exactly (every setting above is in `bench.json`): `empg-gym bench --config bench.json --out DIR`",
           ""]
    path = out / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path


def _runs(out: Path, cfg: dict[str, Any]) -> list[tuple[str, str, int, Path]]:
    return [(e, a, s, run_dir(out, e, a, s)) for e in cfg["envs"] for a in cfg["algos"] for s in cfg["seeds"]]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def write_plots(out: Path, meta: dict[str, Any]) -> list[Path]:
    """Write the PNG plots; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = meta["config"]
    runs = _runs(out, cfg)
    paths = []
    for name, key, label in CURVES:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        drawn = False
        for env, algo, seed, folder in runs:
            pts = [(m["update"], m[key]) for m in _read_jsonl(folder / "metrics.jsonl") if key in m]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=f"{algo} s{seed}" + (
                    f" {env}" if len(cfg["envs"]) > 1 else ""))
                drawn = True
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
    paths.append(_diagnostics_plot(out, runs, plt))
    return paths


def _diagnostics_plot(out: Path, runs: list[tuple[str, str, int, Path]], plt: Any) -> Path:
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    by_algo: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _env, algo, _seed, folder in runs:
        for rec in _read_jsonl(folder / DIAGNOSTICS):
            d = by_algo[algo]
            d["g"] += rec["g"]
            d["f"] += [x for x in rec["f"] if x > 0]
            for h, won in zip(rec["H"], rec["won"], strict=True):
                d["H_won" if won else "H_lost"].append(h)
    for algo, d in by_algo.items():
        axes[0].hist(d["g"], bins=20, alpha=0.5, label=algo)
        axes[1].hist(d["f"], bins=20, alpha=0.5, label=algo)
    pooled = {k: [x for d in by_algo.values() for x in d[k]] for k in ("H_won", "H_lost")}
    for key, label in (("H_won", "successful"), ("H_lost", "failed")):
        if pooled[key]:
            axes[2].hist(pooled[key], bins=20, alpha=0.5, label=f"{label} (n={len(pooled[key])})")
    for ax, title in zip(axes, ("EMPG g (self-calibrating scale)", "EMPG f (future clarity, f>0)",
                                "step entropy H by trajectory outcome"), strict=True):
        ax.set_title(title, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    path = out / "empg_diagnostics.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
