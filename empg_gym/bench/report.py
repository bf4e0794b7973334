"""The bench report: ``report.md`` (greedy success before/after, mean ± 95% CI over seeds) and PNG plots.

Every number in ``report.md`` is computed from ``results.csv`` and the runs' ``diagnostics.jsonl``.

Plots (matplotlib, Agg backend): greedy success vs update on each eval split and training success vs update (mean
over seeds with a shaded 95% CI band per algorithm), KL to the reference, policy entropy, and EMPG diagnostics
(step entropy of successful vs failed trajectories, the ``g`` and ``f`` distributions of the EMPG runs, and the
success rate of steps binned by their entropy).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from empg_gym.agents.per_type import per_type_lines
from empg_gym.bench.runner import DIAGNOSTICS, PIPELINE, RESULTS_CSV, read_jsonl, run_dir

logger = logging.getLogger(__name__)

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
    short = {"eval_in_distribution": "ID", "eval_out_of_distribution": "OOD", "train": "train"}
    header = ["env", "algo", "seeds"]
    for sp in splits:
        name = short.get(sp, sp)
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


def write_report(out: Path) -> Path:
    """Write ``report.md`` and the plots for the bench in ``out``; return the report's path."""
    out = Path(out)
    meta = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    rows = read_results(out)
    cfg = meta["config"]
    plots = write_plots(out, meta)
    md = ["# empg-gym bench report", ""]
    if cfg.get("demonstration", True):
        md += ["> **A demonstration of the pipeline, not a paper result.** The runs are far too short and too few "
               "to rank the algorithms; differences below are noise. Use the `paper` preset on a GPU for that.", ""]
    md += _setup_lines(cfg, meta, rows)
    header, lines = summary_table(rows, list(cfg["eval_splits"]))
    n_seeds = len(cfg["seeds"])
    md += ["", f"## Greedy success before and after training (mean ± 95% CI over {n_seeds} seed(s))", "",
           "Before = the untrained policy (update 0), after = the last update; each run evaluates the first "
           f"{cfg['eval_tasks']} tasks of each split once, greedily. The CI is Student's t over seeds (a run's "
           "success is one number per seed); Δ is the per-seed change.", "",
           "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(line) + " |" for line in lines]
    md += ["", "`success` is the fraction of tasks won. For ALFWorld, KeyDoor and KeyRooms the env's score is the success itself; "
           "WebShop's score is the purchase's attribute/option/price/type match, Deep Search's the exact match (EM) "
           "of the answer (both in `results.csv`)."]
    if any(r.get("applied_updates", 0) < r.get("updates", 0) for r in rows):
        md += ["", "Fewer updates applied than budgeted: a run that filters groups (DAPO's dynamic sampling) trains only "
               "on groups whose rewards differ, so a round in which every group was all won (or all lost) is not an "
               "update, and the run stops once its rollout budget (updates × max_resample_batches) is spent. A DAPO "
               "run that wins every group early applies fewer updates; its 'after' is its last update."]
    secs = sorted({(r["env"], r["algo"], r["seed"]): r["train_seconds"] for r in rows
                   if "train_seconds" in r}.values())
    if secs:
        md += ["", f"Training time per run: median {secs[len(secs) // 2]:.0f} s (min {secs[0]:.0f}, max "
               f"{secs[-1]:.0f}), evaluations excluded."]
    md += per_type_lines(out)
    if cfg.get("sweep"):
        md += _sweep_lines(cfg, rows)
    diag = _diagnostics_lines(out, meta)
    md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    md += diag
    if (out / PIPELINE / "bench.json").is_file() and (out / PIPELINE / RESULTS_CSV).is_file():
        md += _pipeline_section(out / PIPELINE)
    md += ["", "Rerun exactly (every setting above is in `bench.json`): `empg-gym bench --config bench.json --out DIR`",
           ""]
    path = out / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path


def _setup_lines(cfg: dict[str, Any], meta: dict[str, Any], rows: list[dict[str, Any]]) -> list[str]:
    sources = sorted({r.get("source", "") for r in rows} - {""})
    evals = "before training, " + (f"every {cfg['eval_every']} updates, " if cfg.get("eval_every") else "") + \
        "and after the last"
    return [
        "## Setup", "",
        f"- Envs: {', '.join(cfg['envs'])} (task source: {', '.join(sources) or 'unknown'})"
        + (f"; tasks restricted to type `{cfg['task_type']}`" if cfg.get("task_type") else ""),
        f"- Algorithms: {', '.join(_labels(meta))}; seeds: {', '.join(map(str, cfg['seeds']))}",
        f"- Budget: {cfg['updates']} updates per run; greedy eval on the first {cfg['eval_tasks']} tasks of "
        f"{', '.join(cfg['eval_splits'])}, {evals}",
        f"- Training settings: `{json.dumps(cfg['train'], sort_keys=True)}`",
        f"- Model: `{cfg['train'].get('model', 'smollm2-135m')}`",
        f"- Hardware needed: {cfg.get('hardware', '')}; ran on: {meta['hardware']['cpu_count']} CPUs "
        f"({meta['hardware']['machine']}, {meta['hardware']['system']})",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
    ]


def _pipeline_section(folder: Path) -> list[str]:
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


def _labels(meta: dict[str, Any]) -> list[str]:
    """Return the bench's runs per seed: its algorithms, or with a sweep every algorithm × setting (``bench.json``)."""
    return list(meta.get("labels") or meta["config"]["algos"])


def _runs(out: Path, meta: dict[str, Any]) -> list[tuple[str, str, int, Path]]:
    cfg = meta["config"]
    return [(e, a, s, run_dir(out, e, a, s)) for e in cfg["envs"] for a in _labels(meta) for s in cfg["seeds"]]


def _band(ax: Any, curves: dict[int, dict[float, float]], label: str, clip: tuple[float, float] | None = None) -> bool:
    """Plot the mean over seeds of ``{seed: {x: y}}`` with a shaded 95% CI band; return whether anything was drawn.

    The band is cut to ``clip`` (a rate's ``(0, 1)``).
    """
    xs = sorted({x for c in curves.values() for x in c})
    pts = [(x, mean_ci([c[x] for c in curves.values() if x in c])) for x in xs]
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


def write_plots(out: Path, meta: dict[str, Any]) -> list[Path]:
    """Write the PNG plots; return their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = meta["config"]
    runs = _runs(out, meta)
    multi_env = len(cfg["envs"]) > 1
    paths = []
    rows = read_results(out) if (out / RESULTS_CSV).is_file() else []
    splits = list(cfg["eval_splits"])
    fig, axes = plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 3.6), squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        for env in cfg["envs"]:
            for algo in _labels(meta):
                curves: dict[int, dict[float, float]] = defaultdict(dict)
                for r in rows:
                    if (r["env"], r["algo"], r["split"]) == (env, algo, split):
                        curves[int(r["seed"])][r.get("update", 0.0)] = r["success_rate"]
                _band(ax, curves, algo + (f" {env}" if multi_env else ""), clip=(0.0, 1.0))
        ax.set_title(f"greedy success, {split}", fontsize=9)
        ax.set_xlabel("update")
        ax.set_ylim(-0.05, 1.05)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "eval_success.png", dpi=100)
    plt.close(fig)
    paths.append(out / "eval_success.png")
    for name, key, label in CURVES:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        drawn = False
        for env in cfg["envs"]:
            for algo in _labels(meta):
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
    paths.append(_diagnostics_plot(out, runs, plt))
    if cfg.get("sweep") and len(splits) >= 2:
        paths.append(_tradeoff_plot(out, meta, rows, splits[:2], plt))
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


def _diagnostics(runs: list[tuple[str, str, int, Path]]) -> dict[str, dict[str, list[float]]]:
    """Per algorithm: ``g``, ``f`` (f > 0) and step entropies ``H`` paired with their trajectory's outcome."""
    by_algo: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for _env, algo, _seed, folder in runs:
        for rec in read_jsonl(folder / DIAGNOSTICS):
            d = by_algo[algo]
            d["g"] += rec["g"]
            d["f"] += [x for x in rec["f"] if x > 0]
            d["H"] += rec["H"]
            d["won"] += [float(w) for w in rec["won"]]
    return by_algo


def entropy_bins(H: list[float], won: list[float], bins: int = ENTROPY_BINS) -> list[tuple[float, float, int, float]]:
    """Success rate of steps binned by step entropy: ``(low, high, steps, success rate)`` per non-empty bin.

    Equal-width bins over ``[min H, max H]``; a step counts as a success when its trajectory was won.

    Example:
        >>> entropy_bins([0.0, 0.1, 1.9, 2.0], [1, 1, 0, 1], bins=2)
        [(0.0, 1.0, 2, 1.0), (1.0, 2.0, 2, 0.5)]
    """
    if not H:
        return []
    lo, hi = min(H), max(H)
    width = (hi - lo) / bins or 1.0
    counts = [[0, 0.0] for _ in range(bins)]
    for h, w in zip(H, won, strict=True):
        k = min(int((h - lo) / width), bins - 1)
        counts[k][0] += 1
        counts[k][1] += w
    return [(lo + k * width, lo + (k + 1) * width, n, s / n) for k, (n, s) in enumerate(counts) if n]


def _diagnostics_lines(out: Path, meta: dict[str, Any]) -> list[str]:
    """Return the report's EMPG-diagnostics section: entropy by outcome, g/f of EMPG runs, success by entropy bin."""
    d = _diagnostics(_runs(out, meta))
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
        won = [h for h, w in zip(v["H"], v["won"], strict=True) if w]
        lost = [h for h, w in zip(v["H"], v["won"], strict=True) if not w]
        is_empg = algo.startswith("empg")
        g = f"{sum(v['g']) / len(v['g']):.3f}, {min(v['g']):.2f}–{max(v['g']):.2f}" if is_empg and v["g"] else "–"
        f = f"{sum(v['f']) / len(v['f']):.3f}" if is_empg and v["f"] else "–"
        md.append(f"| {algo} | {len(v['H'])} | {_mean_txt(won)} | {_mean_txt(lost)} | {g} | {f} |")
    H = [h for v in d.values() for h in v["H"]]
    won = [w for v in d.values() for w in v["won"]]
    md += ["", "Success rate of steps by step-entropy bin (all algorithms pooled; is a low-entropy step more often "
           "part of a won trajectory?):", "", "| H bin (nats) | steps | success rate |", "|---|---|---|"]
    md += [f"| {lo:.2f}–{hi:.2f} | {n} | {rate:.3f} |" for lo, hi, n, rate in entropy_bins(H, won)]
    return md


def _mean_txt(values: list[float]) -> str:
    return f"{sum(values) / len(values):.3f} (n={len(values)})" if values else "–"


def _diagnostics_plot(out: Path, runs: list[tuple[str, str, int, Path]], plt: Any) -> Path:
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
    by_algo = _diagnostics(runs)
    for algo, d in by_algo.items():
        if algo.startswith("empg"):
            axes[0].hist(d["g"], bins=20, alpha=0.5, label=algo)
            axes[1].hist(d["f"], bins=20, alpha=0.5, label=algo)
        bins = entropy_bins(d["H"], d["won"])
        if bins:
            axes[3].plot([(lo + hi) / 2 for lo, hi, _, _ in bins], [r for *_, r in bins], marker="o", label=algo)
    pooled = {k: [h for d in by_algo.values() for h, w in zip(d["H"], d["won"], strict=True) if bool(w) == k]
              for k in (True, False)}
    for key, label in ((True, "won"), (False, "failed")):
        if pooled[key]:
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
