"""The bench report on hand-made run records: sampled headline, matched budgets, verdicts, carry-forward curves."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from empg_gym.bench.records import (
    BASE_COLUMNS,
    by_algo,
    final_scores,
    matched_budget,
    read_results,
    run_curves,
    scores_at_budget,
)
from empg_gym.bench.report import SECTIONS, aggregates, cell, headline_metric, iqm_curve, write_report
from empg_gym.bench.stats import aggregate_iqm, carry_forward

SPLIT = "eval_in_distribution"
#: Env steps per update: DAPO draws up to 3 rollout batches per update, so it plays more.
STEPS = {"grpo": 100, "empg": 100, "dapo": 250}
#: Final sampled success per seed; DAPO clearly ahead after 10 updates, GRPO and EMPG overlapping.
FINAL = {"grpo": [0.2, 0.3, 0.25, 0.4], "empg": [0.3, 0.2, 0.45, 0.35], "dapo": [0.9, 0.95, 1.0, 0.85]}


def _rows(sampled: bool = True) -> list[dict]:
    """Runs of 10 updates evaluated every 5 updates and at every 500 env steps; DAPO seed 0 stops after update 7."""
    rows = []
    for algo, finals in FINAL.items():
        for seed, final in enumerate(finals):
            last = 7 if (algo, seed) == ("dapo", 0) else 10
            evaluated = 0
            for update in range(last + 1):
                steps = update * STEPS[algo]
                budget = steps // 500 * 500
                due = update in (0, last) or update % 5 == 0 or budget > evaluated
                if not due:
                    continue
                y = final * update / 10 if algo != "dapo" else min(final, 0.3 * update / 4)  # dapo: 0.3 at 1000
                row = {"env": "E", "split": SPLIT, "algo": algo, "seed": seed, "update": update, "env_steps": steps,
                       "updates": 10, "applied_updates": last, "num_tasks": 10,
                       "success_rate": round(y - 0.05 * (y > 0.1), 4), "train_seconds": 1.0}
                if budget > evaluated:
                    row["budget_env_steps"] = budget
                if sampled:
                    row["success_sampled"] = round(y, 4)
                evaluated = max(evaluated, budget)
                rows.append(row)
    return rows


def _bench(tmp_path, rows):
    cfg = {"envs": ["E"], "algos": list(FINAL), "seeds": [0, 1, 2, 3], "updates": 10, "eval_splits": [SPLIT],
           "eval_tasks": 10, "train": {"model": "tiny-actions"}, "eval_every": 5, "eval_every_env_steps": 500,
           "eval_samples": 4, "demonstration": False, "hardware": "any CPU"}
    meta = {"config": cfg, "labels": list(FINAL), "versions": {"empg-gym": "test"},
            "hardware": {"cpu_count": 2, "machine": "x86_64", "system": "Linux"}}
    (tmp_path / "bench.json").write_text(json.dumps(meta))
    with open(tmp_path / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=BASE_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return tmp_path


def test_matched_budget_and_scores_there():
    rows = _rows()
    assert matched_budget(rows, 500) == {"E": 1000}  # GRPO and EMPG play 1000 env steps in 10 updates
    at = scores_at_budget(rows, SPLIT, "success_sampled", 1000)
    assert at[("E", "dapo", 1)] == (0.3, 1000) and at[("E", "grpo", 1)] == (0.3, 1000)
    assert len(at) == 12  # every run reached the matched budget


def test_report_headlines_sampled_success_and_shows_greedy_beside_it(tmp_path):
    out = _bench(tmp_path, _rows())
    text = write_report(out, reps=500).read_text()
    rows = read_results(out)
    assert headline_metric(rows) == "success_sampled"
    assert "## Headline: sampled success" in text and "### Greedy success (for comparison)" in text
    assert "less noise" in text
    finals = by_algo(final_scores(rows, SPLIT, "success_sampled"), "E")
    iqm, mean = aggregates(finals["dapo"], reps=500)
    assert f"| dapo | 4 | {cell(iqm)} | {cell(mean)} | " in text
    assert "at 1000 env steps: IQM [95% CI]" in text
    at = by_algo(scores_at_budget(rows, SPLIT, "success_sampled", 1000), "E")["dapo"]
    b_iqm, b_mean = aggregates([y for y, _ in at], reps=500)
    assert f"| {cell(b_iqm)} | {cell(b_mean)} | 1000 |" in text  # DAPO's budget evaluation came at 1000 env steps
    # DAPO wins at the final update; at the matched env-step budget it is level with GRPO
    lines = text.splitlines()
    final = lines.index(f"**E, {SPLIT}, final**")
    budget = lines.index(f"**E, {SPLIT}, at 1000 env steps**")
    diff = np.mean(finals["grpo"]) - np.mean(finals["dapo"])
    assert f"| grpo | dapo | 4 / 4 | 0.000 [0.000, 0.000] | {diff:+.3f} | dapo > grpo |" in lines[final:budget]
    at_budget = next(ln for ln in lines[budget:] if ln.startswith("| grpo | dapo |"))
    assert "unresolved" in at_budget
    assert "| grpo | empg | 4 / 4 |" in text and "needs ~" in text
    for name in ("sample_efficiency_update.png", "sample_efficiency_env_steps.png", "performance_profile.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG" and f"]({name})" in text


def test_older_runs_without_sampled_success_headline_greedy(tmp_path):
    out = _bench(tmp_path, _rows(sampled=False))
    text = write_report(out, reps=200).read_text()
    assert "## Headline: greedy success" in text and "### Sampled success" not in text
    assert "evaluated without sampled episodes" in text


def test_curves_carry_a_stopped_run_forward_so_every_point_averages_the_same_runs():
    rows = _rows()
    curves = by_algo(run_curves(rows, SPLIT, "success_sampled"), "E")["dapo"]
    assert curves[0][-1] == (7, 0.525)  # seed 0 stopped after update 7
    grid, iv = iqm_curve(curves, reps=200)
    assert grid[-1] == 10 and 7 in grid
    m = carry_forward(curves, grid)
    assert m.shape == (4, len(grid)) and m[0, -1] == 0.525  # its last evaluation held to update 10
    assert iv.point.tolist() == pytest.approx(aggregate_iqm(m.T[:, :, None]).tolist())
    # against env steps, an evaluation made for a budget sits at that budget
    by_steps = by_algo(run_curves(rows, SPLIT, "success_sampled", x="env_steps"), "E")["dapo"]
    assert [x for x, _ in by_steps[1]] == [0, 500, 1000, 1250, 1500, 2000, 2500]
    assert np.all(np.diff(grid) > 0)


def test_a_section_is_one_entry():
    assert [s.__name__ for s in SECTIONS][:4] == ["_title_section", "_setup_section", "_headline_section",
                                                  "_improvement_section"]


def test_the_same_records_give_the_same_report(tmp_path):
    out = _bench(tmp_path, _rows())
    first = write_report(out, reps=300).read_text()
    assert write_report(out, reps=300).read_text() == first


def test_the_package_does_not_import_rliable():
    """rliable is the tests' reference, not a dependency: the statistics are the package's own."""
    from pathlib import Path

    import empg_gym

    root = Path(empg_gym.__file__).parent
    offenders = [p.name for p in root.rglob("*.py")
                 if any(ln.lstrip().startswith(("import rliable", "from rliable"))
                        for ln in p.read_text(encoding="utf-8").splitlines())]
    assert offenders == [] and (root / "bench" / "stats.py").is_file()
