"""The bench: a tiny real bench (tiny model, KeyDoor, two algorithms, one seed) and its report, resume, CLI."""

from __future__ import annotations

import csv
import io
import json
import re

import gymnasium as gym
import numpy as np
import pytest

from empg_gym.agents.per_type import per_type_lines
from empg_gym.bench import BenchConfig, get_preset, run_bench
from empg_gym.bench.presets import check_same_runs
from empg_gym.bench.records import final_scores, matched_budget, read_jsonl, scores_at_budget
from empg_gym.bench.report import (
    aggregates,
    cell,
    entropy_bins,
    fmt,
    improvement_table,
    mean_ci,
    pairwise,
    read_results,
)
from empg_gym.bench.runner import filtered_task_ids, run_dir
from empg_gym.cli import main
from empg_gym.errors import ConfigError

TINY = dict(model="tiny-actions", max_new_tokens=1, require_think=False, invalid_format_penalty=0.0,
            history_length=0, progress=False, tasks_per_update=2, group_size=4, lr=3e-3, mini_batch_size=32,
            micro_batch_size=16, checkpoint_every=1)


def _bench(**kw):
    base = dict(envs=("EMPG-KeyDoor-v0",), algos=("grpo", "empg"), seeds=(0,), updates=2, eval_tasks=3, train=TINY,
                eval_splits=("eval_in_distribution", "eval_out_of_distribution"))
    base.update(kw)
    return BenchConfig(**base)


@pytest.fixture(scope="module")
def bench_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    lines: list[str] = []
    report = run_bench(_bench(seeds=(0, 1, 2), eval_every=1, eval_every_env_steps=50), out, log=lines.append)
    return out, report, lines


def test_results_csv_has_one_row_per_run_split_and_evaluated_update(bench_out):
    out, _, _ = bench_out
    rows = list(csv.DictReader(open(out / "results.csv", encoding="utf-8")))
    keys = {(r["algo"], r["seed"], r["split"], r["update"]) for r in rows}
    assert len(keys) == len(rows) == 2 * 3 * 2 * 3  # algos x seeds x splits x updates {0, 1, 2}
    assert {r["update"] for r in rows} == {"0", "1", "2"}
    for r in read_results(out):  # every row agrees with the run's evals.jsonl
        evals = [json.loads(x) for x in open(run_dir(out, "EMPG-KeyDoor-v0", r["algo"], int(r["seed"])) / "evals.jsonl")]
        match = [e for e in evals if e["update"] == r["update"] and e["split"] == r["split"]]
        assert len(match) == 1 and match[0]["metrics"]["success_rate"] == pytest.approx(r["success_rate"])
    # the final policy's episode logs back the last row, the untrained policy's the first (no other update is logged)
    for r in read_results(out):
        folder = run_dir(out, "EMPG-KeyDoor-v0", r["algo"], int(r["seed"]))
        name = {0: f"eval_{r['split']}_update0.jsonl", 2: f"eval_{r['split']}.jsonl"}.get(int(r["update"]))
        if name is None:
            continue
        episodes = [json.loads(x) for x in open(folder / name)]
        assert len(episodes) == 3 == r["num_tasks"]
        assert r["success_rate"] == pytest.approx(sum(e["won"] for e in episodes) / 3)
        assert episodes[0]["steps"] and episodes[0]["facets"] == {"type": "key_door"}
        assert sorted(p.name for p in folder.glob("eval_*_update*.jsonl")) == [
            "eval_eval_in_distribution_update0.jsonl", "eval_eval_out_of_distribution_update0.jsonl"]


def test_report_gives_before_and_after_with_confidence_intervals(bench_out):
    out, report, _ = bench_out
    text = report.read_text(encoding="utf-8")
    rows = read_results(out)
    for algo in ("grpo", "empg"):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| EMPG-KeyDoor-v0 | {algo} | 3 |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        for k, split in enumerate(("eval_in_distribution", "eval_out_of_distribution")):
            before = [r["success_rate"] for r in rows if (r["algo"], r["split"], r["update"]) == (algo, split, 0)]
            after = [r["success_rate"] for r in rows if (r["algo"], r["split"], r["update"]) == (algo, split, 2)]
            assert cells[3 + 3 * k] == fmt(before) and cells[4 + 3 * k] == fmt(after)
            assert cells[5 + 3 * k] == fmt([a - b for a, b in zip(after, before, strict=True)])
        assert cells[-1] == "2/2"
    assert "95% CI over 3 seed(s)" in text and "torch" in text and "tiny-actions" in text
    assert "## EMPG diagnostics" in text and "Success rate of steps by step-entropy bin" in text
    per_type = per_type_lines(out)  # the per-type tables, the untrained policy first (tested in test_per_type.py)
    assert "\n".join(per_type) in text
    assert sum(ln.startswith("| untrained (update 0) | 3 |") for ln in per_type) == 2  # one table per eval split (3 seeds)


def test_evals_record_env_steps_and_budgets(bench_out):
    """Each evaluation records the env steps played (as metrics.jsonl logs them) and the budget it stands for."""
    out, _, _ = bench_out
    for algo in ("grpo", "empg"):
        for seed in (0, 1, 2):
            folder = run_dir(out, "EMPG-KeyDoor-v0", algo, seed)
            played = {0: 0, **{m["update"]: m["budget/env_steps"] for m in read_jsonl(folder / "metrics.jsonl")}}
            evals = read_jsonl(folder / "evals.jsonl")
            assert [e["update"] for e in evals] == [0, 0, 1, 1, 2, 2]  # two splits per evaluation
            evaluated = 0
            for e in evals[::2]:
                assert e["env_steps"] == played[e["update"]]
                crossed = e["env_steps"] // 50 * 50
                assert e.get("budget_env_steps") == (crossed if crossed > evaluated else None)
                evaluated = max(evaluated, crossed)
    rows = read_results(out)
    assert all(r["env_steps"] == 0 and "budget_env_steps" not in r for r in rows if r["update"] == 0)
    assert all("success_sampled" not in r for r in rows)  # evaluated greedily only: the column stays empty


def test_report_states_iqm_probability_of_improvement_and_verdicts(bench_out):
    """Every statistic in the report is the tested function's output over results.csv."""
    out, report, _ = bench_out
    text = report.read_text(encoding="utf-8")
    rows = read_results(out)
    budget = matched_budget(rows, 50)["EMPG-KeyDoor-v0"]
    assert budget >= 100  # two updates of 2 tasks x 4 trajectories play far more than 50 env steps
    for heading in ("## Headline: greedy success (IQM and mean over runs, 95% CIs)",
                    "## Probability of improvement and verdicts (greedy success)",
                    "## Greedy success before and after training", "## Plots", "## EMPG diagnostics"):
        assert heading in text, heading
    assert f"at {budget} env steps: IQM [95% CI]" in text and "evaluated without sampled episodes" in text
    for split in ("eval_in_distribution", "eval_out_of_distribution"):
        finals = final_scores(rows, split, "success_rate")
        at = scores_at_budget(rows, split, "success_rate", budget)
        for algo in ("grpo", "empg"):
            scores = [finals[("EMPG-KeyDoor-v0", algo, s)] for s in (0, 1, 2)]
            iqm, mean = aggregates(scores)
            b_iqm, _ = aggregates([at[("EMPG-KeyDoor-v0", algo, s)][0] for s in (0, 1, 2)])
            assert f"| {algo} | 3 | {cell(iqm)} | {cell(mean)} | " in text
            assert f" | {cell(b_iqm)} | " in text
        per_algo = {a: [finals[("EMPG-KeyDoor-v0", a, s)] for s in (0, 1, 2)] for a in ("grpo", "empg")}
        (line,) = improvement_table(pairwise(per_algo, ["grpo", "empg"]))[1]
        assert "| " + " | ".join(line) + " |" in text
        assert line[-1] in ("grpo > empg", "empg > grpo") or line[-1].startswith("unresolved (")
    assert text.count("| grpo | empg | 3 / 3 |") == 4  # 2 splits x (final, matched budget)
    assert "carries its last evaluation forward" in text


def test_confidence_interval_is_students_t():
    m, h = mean_ci([0.0, 1.0])
    assert (m, round(h, 3)) == (0.5, round(12.706 * (0.5 ** 0.5) / (2 ** 0.5), 3))
    assert mean_ci([0.3]) == (0.3, 0.0)
    m, h = mean_ci([0.2] * 40)
    assert (m, h) == pytest.approx((0.2, 0.0))


def test_entropy_bins_count_steps_and_outcomes():
    bins = entropy_bins([0.0, 0.5, 1.0, 1.5, 2.0], [1, 1, 0, 0, 1], bins=2)
    assert [(n, rate) for _, _, n, rate in bins] == [(2, 1.0), (3, 1 / 3)]
    assert entropy_bins([], []) == []
    assert entropy_bins(np.array([0.0, 2.0]), np.array([0.0, 1.0]), bins=2) == [(0.0, 1.0, 1, 0.0), (1.0, 2.0, 1, 1.0)]
    with pytest.raises(ValueError, match="2 entropies but 1 outcomes"):
        entropy_bins([0.0, 1.0], [1])


def test_applied_updates_count_only_updates_that_changed_the_policy(tmp_path, bench_out):
    from empg_gym.bench.runner import applied_updates

    (tmp_path / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"update": 1, "rollout/success_rate": 0.0, "actor/skipped": 1.0},
        {"update": 2, "rollout/success_rate": 0.5, "actor/pg_loss": 0.1},
        {"update": 2, "eval/eval_in_distribution/success_rate": 0.5},
    ]))
    assert applied_updates(tmp_path) == 1
    assert applied_updates(tmp_path / "missing") == 0
    out, report, _ = bench_out
    assert {r["applied_updates"] for r in read_results(out)} == {2.0}


def test_plots_are_written_from_the_runs(bench_out):
    out, report, _ = bench_out
    text = report.read_text(encoding="utf-8")
    for name in ("sample_efficiency_update.png", "sample_efficiency_env_steps.png", "performance_profile.png",
                 "success.png", "entropy.png", "approx_kl.png", "kl.png", "empg_diagnostics.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
        assert f"]({name})" in text
    diag = [json.loads(x) for x in open(run_dir(out, "EMPG-KeyDoor-v0", "empg", 0) / "diagnostics.jsonl")]
    assert [d["update"] for d in diag] == [1, 2]
    for d in diag:
        assert len(d["g"]) == len(d["f"]) == len(d["H"]) == len(d["won"])
        assert sum(d["g"]) / len(d["g"]) == pytest.approx(1.0, abs=1e-5)  # g is self-calibrating
    metrics = [json.loads(x) for x in open(run_dir(out, "EMPG-KeyDoor-v0", "empg", 0) / "metrics.jsonl")]
    assert [m["update"] for m in metrics] == [1, 2]


def test_log_tells_the_pace_and_time_left(bench_out):
    _, _, lines = bench_out
    assert any(re.search(r"update 1/2: training success \d\.\d\d; [\d.]+ (ms|s|min) per update \(median\), about "
                         r"[\d.]+ (ms|s|min) left in this run", ln) for ln in lines)
    assert any(re.search(r"runs in [\d.]+ min, \d+ s each; about [\d.]+ min left for \d+ runs", ln) for ln in lines)


def test_rerun_skips_finished_runs(bench_out):
    out, _, _ = bench_out
    before = (out / "results.csv").read_text()
    lines: list[str] = []
    run_bench(_bench(seeds=(0, 1, 2), eval_every=1, eval_every_env_steps=50), out, log=lines.append)
    assert sum("skipped" in ln for ln in lines) == 6 and not any("training" in ln for ln in lines)
    assert (out / "results.csv").read_text() == before


def test_rerun_with_other_run_settings_is_refused_and_keeps_the_folder(bench_out):
    out, _, _ = bench_out
    before = {f: (out / f).read_text() for f in ("bench.json", "results.csv")}
    for changed in ({"updates": 3}, {"eval_samples": 2}, {"train": {**TINY, "lr": 1e-3}}):
        cfg = _bench(seeds=(0, 1, 2), eval_every=1, eval_every_env_steps=50, **changed)
        with pytest.raises(ConfigError, match=f"other settings \\({next(iter(changed))}: .* -> "):
            run_bench(cfg, out, log=lambda _: None)
    assert {f: (out / f).read_text() for f in before} == before
    # more seeds and algorithms in the same folder are a continuation, not a change
    check_same_runs(out, _bench(seeds=(0, 1, 2, 3), algos=("grpo", "empg", "dapo"), eval_every=1,
                                eval_every_env_steps=50))


def test_interrupted_bench_resumes(tmp_path):
    lines: list[str] = []
    run_bench(_bench(), tmp_path, log=lines.append, stop_after=1)
    assert (run_dir(tmp_path, "EMPG-KeyDoor-v0", "grpo", 0) / "result.json").is_file()
    assert not (run_dir(tmp_path, "EMPG-KeyDoor-v0", "empg", 0) / "result.json").exists()
    assert not (tmp_path / "report.md").exists()
    # simulate a crash in the middle of the second run: one update and its checkpoint exist, no result
    from empg_gym.agents.trainer import Trainer

    Trainer(_bench().train_config("EMPG-KeyDoor-v0", "empg", 0).__class__(
        **{**TINY, "env_id": "EMPG-KeyDoor-v0", "algo": "empg", "seed": 0, "updates": 1}),
        run_dir(tmp_path, "EMPG-KeyDoor-v0", "empg", 0)).train()
    lines.clear()
    report = run_bench(_bench(), tmp_path, log=lines.append)
    assert any("grpo seed=0: finished before, skipped" in ln for ln in lines)
    assert any("resuming from update 1" in ln for ln in lines)
    updates = [json.loads(x)["update"] for x in open(run_dir(tmp_path, "EMPG-KeyDoor-v0", "empg", 0) / "metrics.jsonl")]
    assert updates == [1, 2]
    # grpo: 2 splits x updates {0, 2}; empg was started outside the bench (no update-0 eval): 2 splits x {2}
    assert len(list(csv.DictReader(open(tmp_path / "results.csv")))) == 4 + 2 and report.is_file()


def test_task_type_restricts_training_and_eval_tasks(tmp_path):
    env = gym.make("EMPG-KeyDoor-v0")
    manifest = env.unwrapped.manifest
    types = sorted({manifest.get(t).task_type for t in manifest.task_ids("train")})
    kept = filtered_task_ids(env, "eval_in_distribution", types[0])
    assert kept and all(manifest.get(t).task_type == types[0] for t in kept)
    with pytest.raises(ConfigError, match="no task"):
        filtered_task_ids(env, "train", "no_such_type")
    env.close()
    run_bench(_bench(algos=("grpo",), updates=1, task_type=types[0]), tmp_path, log=lambda _: None)
    row = read_results(tmp_path)[0]
    assert row[f"success_rate/{types[0]}"] == row["success_rate"]
    assert not any(k.startswith("success_rate/") and k != f"success_rate/{types[0]}" for k in row)


def test_presets_and_errors():
    quick, paper = get_preset("quick"), get_preset("paper")
    assert quick.envs == ("EMPG-KeyRooms-v0",) and quick.train["model"] == "tiny-actions" and len(quick.seeds) >= 5
    assert quick.eval_splits == ("eval_in_distribution", "eval_out_of_distribution")
    assert quick.pipeline() is None and len(quick.seeds) >= 10 and quick.eval_tasks == 100 and quick.eval_samples >= 4
    study, check = get_preset("study"), get_preset("pipeline")
    assert len(study.seeds) >= 30 and {"grpo", "dapo", "empg", "gigpo"} <= set(study.algos)
    assert {k: getattr(study, k) for k in ("envs", "updates", "train", "eval_every", "eval_every_env_steps")} == {
        k: getattr(quick, k) for k in ("envs", "updates", "train", "eval_every", "eval_every_env_steps")}
    assert check.envs == ("EMPG-ALFWorld-v0",) and check.train["model"] == "smollm2-135m" and check.updates == 1
    as_check = {k: v for k, v in check.__dict__.items() if k != "pipeline_check"}
    assert check.demonstration and BenchConfig(**{**quick.__dict__, "pipeline_check": as_check}).pipeline() == check
    assert (paper.train["group_size"], paper.train["tasks_per_update"], paper.updates, paper.train["lr"]) == (
        8, 16, 150, 1e-6)
    assert paper.train_config("EMPG-ALFWorld-v0", "empg", 0).algorithm().empg.zeta == 0.05
    with pytest.raises(ConfigError, match="Did you mean 'quick'"):
        get_preset("quik")
    with pytest.raises(ConfigError, match="algos"):
        BenchConfig(algos=())
    with pytest.raises(ConfigError, match="Unknown algorithm|Did you mean"):
        _bench(algos=("grpoo",))


def test_cli_bench_prints_budget_and_report(tmp_path):
    out = io.StringIO()
    code = main(["bench", "--envs", "EMPG-KeyDoor-v0", "--algos", "grpo", "--seeds", "0", "--steps", "1",
                 "--eval-tasks", "2", "--out", str(tmp_path)]
                + [f"--set={k}={json.dumps(v)}" for k, v in TINY.items()], out=out)
    text = out.getvalue()
    assert code == 0
    assert re.match(r"empg-gym bench \(custom\): 1 runs; budget: ", text.splitlines()[0])
    assert text.rstrip().splitlines()[-3:] == [f"Report: {tmp_path / 'report.md'}",
                                               f"Results: {tmp_path / 'results.csv'}",
                                               f"Episodes: {tmp_path / 'viewer.html'}"]
    assert (tmp_path / "viewer.html").is_file()
    assert json.loads((tmp_path / "bench.json").read_text())["config"]["train"]["model"] == "tiny-actions"
    with pytest.raises(ConfigError, match="FIELD=VALUE"):
        main(["bench", "--set", "oops", "--out", str(tmp_path)], out=io.StringIO())
    # The report's rerun line: the same bench from its bench.json, with the same results.
    assert "`empg-gym bench --config bench.json --out DIR`" in (tmp_path / "report.md").read_text()
    assert main(["bench", "--config", str(tmp_path / "bench.json"), "--out", str(tmp_path / "again")],
                out=io.StringIO()) == 0
    first, again = (json.loads((d / "bench.json").read_text())["config"] for d in (tmp_path, tmp_path / "again"))
    assert first == again

    def rows(d):
        return [{k: v for k, v in r.items() if k != "train_seconds"} for r in read_results(d)]

    assert rows(tmp_path) == rows(tmp_path / "again")
    with pytest.raises(ConfigError, match="not both"):
        main(["bench", "--preset", "quick", "--config", str(tmp_path / "bench.json"), "--out", str(tmp_path)],
             out=io.StringIO())
    (tmp_path / "bad.toml").write_text('algos = ["grpo"]\nupdatez = 3\n')
    with pytest.raises(ConfigError, match=r"unknown bench field\(s\) \['updatez'\]"):
        BenchConfig.from_file(tmp_path / "bad.toml")


def test_a_run_that_stops_early_still_logs_its_final_episodes(tmp_path):
    # a DAPO run that spends its rollout budget stops early; when the schedule had already evaluated its last update,
    # the final policy's episode logs (the per-type tables' and the viewer's input) were missing
    train = {**TINY, "algo_overrides": {**dict(TINY.get("algo_overrides", {})), "max_resample_batches": 1}}
    run_bench(_bench(algos=("dapo",), seeds=(0, 1, 2), updates=6, eval_every=1, train=train), tmp_path,
              log=lambda _: None)
    stopped_early = 0
    for seed in (0, 1, 2):
        folder = run_dir(tmp_path, "EMPG-KeyDoor-v0", "dapo", seed)
        last = max(read_jsonl(folder / "evals.jsonl"), key=lambda r: r["update"])
        stopped_early += last["update"] < 6
        for split in ("eval_in_distribution", "eval_out_of_distribution"):
            episodes = [e for e in read_jsonl(folder / f"eval_{split}.jsonl") if e.get("mode", "greedy") == "greedy"]
            final = next(r for r in read_jsonl(folder / "evals.jsonl") if (r["update"], r["split"]) == (last["update"], split))
            assert len(episodes) == 3 and sum(e["won"] for e in episodes) / 3 == final["metrics"]["success_rate"]
    assert stopped_early >= 1  # the case this test is about happened


def test_a_worker_that_trained_a_run_before_gives_the_same_results_as_a_fresh_one(tmp_path):
    """Workers train run after run (runs_per_worker=0); what a worker trained before must not leak into a run."""
    def losses(out):
        path = run_dir(out, "EMPG-KeyDoor-v0", "empg", 0) / "metrics.jsonl"
        return [(r["update"], r["actor/pg_loss"], r["rollout/success_rate"]) for r in map(json.loads, open(path))]

    cfg = _bench(updates=2, processes=1, threads_per_process=1)  # grpo seed 0 first, then empg seed 0
    reused, fresh = tmp_path / "reused", tmp_path / "fresh"
    run_bench(cfg, reused, log=lambda _: None)
    run_bench(cfg.replace(runs_per_worker=1), fresh, log=lambda _: None)
    assert losses(reused) == losses(fresh) and len(losses(fresh)) == 2
    evals = [read_jsonl(run_dir(o, "EMPG-KeyDoor-v0", "empg", 0) / "evals.jsonl") for o in (reused, fresh)]
    assert [r["metrics"] for r in evals[0]] == [r["metrics"] for r in evals[1]]
    with pytest.raises(ConfigError, match="runs_per_worker"):
        _bench(runs_per_worker=-1)
