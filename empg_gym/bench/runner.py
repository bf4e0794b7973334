"""Run every ``env × algo × seed`` of a :class:`~empg_gym.bench.presets.BenchConfig`, resumably.

Each run lives in ``OUT/runs/<env>/<algo>/seed<seed>/``: the trainer's ``metrics.jsonl`` and ``checkpoint/``, a
``diagnostics.jsonl`` (per-step entropy ``H``, EMPG's ``g`` and ``f``, and the trajectory's outcome, for the plots),
``evals.jsonl`` (success on every eval split before training — update 0 —, every ``eval_every`` updates, after the
first update that reaches each multiple of ``eval_every_env_steps`` training env steps, and after the last; each line
with the update, the env steps played and the env-step budget it stands for), ``eval_<split>.jsonl`` episode logs of
the final policy (``eval_<split>_update0.jsonl`` of the untrained one), ``rollouts.jsonl`` (a sample of each update's
training rollouts, for the viewer), and ``result.json`` once the run is finished. File names and readers are in
:mod:`empg_gym.bench.records`. A rerun skips runs with a ``result.json`` and resumes the others from their checkpoint. ``OUT/results.csv``
(one row per env × split × algo × seed × evaluated update) is rebuilt from every ``result.json`` after each run, and
the report from ``results.csv``.

With ``processes >= 1`` the runs train in ``processes`` spawned worker processes, each with its share of the CPU
threads; a worker pays its imports once and trains run after run (every run seeds its own RNGs and builds its own
model, envs and optimizer, so a run's results do not depend on what its worker trained before), unless
``runs_per_worker`` asks for fresh processes. ``processes=0`` trains in this process.
"""

from __future__ import annotations

import csv
import dataclasses
import gc
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from empg_gym.bench.presets import BenchConfig, check_same_runs
from empg_gym.bench.records import (
    BASE_COLUMNS,
    DIAGNOSTICS,
    EVALS,
    PIPELINE,
    RESULT,
    RESULTS_CSV,
    read_jsonl,
    run_dir,
)
from empg_gym.errors import ConfigError

logger = logging.getLogger(__name__)
__all__ = ["read_jsonl", "run_bench", "run_dir", "train_and_evaluate", "write_results_csv"]


def run_bench(config: BenchConfig, out: str | Path, *, log: Callable[[str], None] = logger.info,
              stop_after: int | None = None) -> Path:
    """Train and evaluate every run of ``config`` under ``out`` (skipping finished ones); return ``report.md``.

    Then runs ``config.pipeline_check`` (if set) the same way under ``out/pipeline`` and reports it in its own
    section.

    Args:
        config: The benchmark.
        out: Output folder (created).
        log: Called with one progress line per event (the CLI prints them).
        stop_after: Stop after this many newly trained runs, without writing the report (for interruption tests).
    """
    from empg_gym.bench.report import write_report

    out = Path(out)
    check_same_runs(out, config)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(bench_metadata(config), indent=1, default=str), encoding="utf-8")
    t_start = time.perf_counter()
    if not _run_all(config, out, log, stop_after, t_start):
        return out / "report.md"
    check = config.pipeline()
    if check is not None:
        log("pipeline check: " + (check.budget_note or f"{len(check.algos)} runs"))
        check_same_runs(out / PIPELINE, check)
        (out / PIPELINE).mkdir(exist_ok=True)
        (out / PIPELINE / "bench.json").write_text(json.dumps(bench_metadata(check), indent=1, default=str),
                                                   encoding="utf-8")
        _run_all(check, out / PIPELINE, log, None, time.perf_counter())
    log(f"bench finished in {(time.perf_counter() - t_start) / 60:.1f} min")
    return write_report(out)


def _combos(config: BenchConfig) -> list[tuple[str, str, int]]:
    return [(e, a, s) for e in config.envs for a in config.labels for s in config.seeds]


def _run_all(config: BenchConfig, out: Path, log: Callable[[str], None], stop_after: int | None,
             t_start: float) -> bool:
    """Train every unfinished run of ``config`` under ``out``; return False when stopped by ``stop_after``."""
    combos = _combos(config)
    todo = []
    for i, combo in enumerate(combos, 1):
        if (run_dir(out, *combo) / RESULT).is_file():
            log(f"[{i}/{len(combos)}] {' '.join(map(str, combo[:2]))} seed={combo[2]}: finished before, skipped")
        else:
            todo.append((i, combo))
    stopped = stop_after is not None and len(todo) > stop_after
    todo = todo[:stop_after] if stop_after is not None else todo
    done = 0
    run_seconds: list[float] = []

    def finished(i: int, combo: tuple[str, str, int], result: dict[str, Any]) -> None:
        nonlocal done
        done += 1
        run_seconds.append(result["train_seconds"] + result["eval_seconds"])
        env_id, algo, seed = combo
        final = {sp: r for sp, r in result["eval"].items()}
        log(f"[{i}/{len(combos)}] {env_id} {algo} seed={seed}: done in {result['train_seconds']:.0f} s; "
            + ", ".join(f"{sp} success {r['success_rate']:.3f}" for sp, r in final.items()))
        left = len(todo) - done
        if left:  # runs go `processes` at a time; a run takes about the mean of those finished so far
            per_run = sum(run_seconds) / len(run_seconds)
            at_once = max(1, min(config.processes, left))
            log(f"  {done} runs in {(time.perf_counter() - t_start) / 60:.1f} min, {per_run:.0f} s each; about "
                f"{per_run * left / at_once / 60:.1f} min left for {left} runs at this pace")
        write_results_csv(out, combos)

    if config.processes == 0:
        for i, combo in todo:
            log(f"[{i}/{len(combos)}] {combo[0]} {combo[1]} seed={combo[2]}: training {config.updates} updates")
            finished(i, combo, train_and_evaluate(config, *combo, run_dir(out, *combo), log=log))
            release_memory()
    else:
        _run_in_workers(config, out, todo, len(combos), log, finished)
    write_results_csv(out, combos)
    if stopped:
        log(f"stopping after {len(todo)} runs (stop_after)")
    return not stopped


def release_memory() -> None:
    """Collect garbage and hand freed heap pages back to the OS (glibc's ``malloc_trim``; a no-op elsewhere).

    After a run in this process its model, optimizer and envs are unreachable, but glibc keeps the freed arenas
    mapped, so the bench's RSS would keep the last run's peak.
    """
    import ctypes
    import ctypes.util

    gc.collect()
    name = ctypes.util.find_library("c")
    if name and sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(name).malloc_trim(0)
        except (OSError, AttributeError):  # not glibc
            pass


def _run_in_workers(config: BenchConfig, out: Path, todo: list[tuple[int, tuple[str, str, int]]], total: int,
                    log: Callable[[str], None], finished: Callable[..., None]) -> None:
    """Train the runs in ``config.processes`` worker processes (results come back as they finish).

    A worker trains ``config.runs_per_worker`` runs before a fresh process replaces it (0: as many as it is given).
    """
    import concurrent.futures as cf
    import multiprocessing as mp

    threads = config.threads_per_process or max(1, (os.cpu_count() or 1) // config.processes)
    with cf.ProcessPoolExecutor(max_workers=config.processes, mp_context=mp.get_context("spawn"),
                                max_tasks_per_child=config.runs_per_worker or None) as pool:
        futures = {}
        for i, combo in todo:
            log(f"[{i}/{total}] {combo[0]} {combo[1]} seed={combo[2]}: queued ({config.updates} updates, "
                f"{config.processes} at a time, {threads} thread(s) each)")
            futures[pool.submit(_worker, config, combo, str(run_dir(out, *combo)), threads, f"[{i}/{total}]")] = (
                i, combo)
        for future in cf.as_completed(futures):
            i, combo = futures[future]
            finished(i, combo, future.result())


def _worker(config: BenchConfig, combo: tuple[str, str, int], folder: str, threads: int, tag: str) -> dict[str, Any]:
    """Entry point of a worker process: one run, its progress lines printed to this process's stdout."""
    import torch

    global _WORKER_READY
    if not _WORKER_READY:  # once per worker process: it trains one run after another
        torch.set_num_threads(threads)
        logging.basicConfig(level=logging.WARNING)
        # The imports left ~400k long-lived objects that every full garbage collection would walk again (a quarter
        # second each, dozens of times a run): move them out of the collector's sight for the process's life.
        gc.collect()
        gc.freeze()
        _WORKER_READY = True

    def log(line: str) -> None:
        sys.stdout.write(f"{tag} {combo[1]} seed={combo[2]} {line.strip()}\n")
        sys.stdout.flush()

    try:
        return train_and_evaluate(config, *combo, Path(folder), log=log)
    finally:
        release_memory()  # the next run of this worker starts from the heap the imports left
        # What survives a run is the process's own: the modules the run imported (transformers, tensorboard: ~200k
        # objects) and their caches. Freeze them too, or every full collection of the next runs walks them again
        # (about 1 s of a 15-20 s run).
        gc.freeze()


#: Set once a worker process has set its threads and frozen its imports (see :func:`_worker`).
_WORKER_READY = False


def train_and_evaluate(config: BenchConfig, env_id: str, algo: str, seed: int, folder: Path,
                       *, log: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Train one run (resuming its checkpoint), evaluating it before, during and after; write ``result.json``."""
    cfg = config.train_config(env_id, algo, seed)
    trainer = BenchTrainer(cfg, folder, resume=True, task_type=config.task_type, bench=config, log=log)
    start_update = trainer.update_step
    if start_update:
        log(f"  resuming from update {start_update}")
    t0 = time.perf_counter()
    try:
        if start_update == 0:
            trainer.record_evals(0)
        trainer.train()
        train_seconds = time.perf_counter() - t0 - trainer.eval_seconds
        if not any(r["update"] == trainer.update_step for r in read_jsonl(folder / EVALS)):
            trainer.record_evals(trainer.update_step, episode_logs=True)
        else:  # the schedule evaluated the last update already: its episodes still back the per-type tables
            trainer.log_final_episodes()
        evals = read_jsonl(folder / EVALS)
    finally:
        trainer.close()
        del trainer
        gc.collect()
    last = max(r["update"] for r in evals)
    result = {"env": env_id, "algo": algo, "seed": seed, "swept": config.swept_values(algo), "updates": config.updates,
              "applied_updates": applied_updates(folder), "resumed_from": start_update, "train_seconds": train_seconds,
              "eval_seconds": time.perf_counter() - t0 - train_seconds,
              "eval": {r["split"]: r["metrics"] for r in evals if r["update"] == last},
              "evals": evals}
    tmp = folder / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    tmp.replace(folder / RESULT)
    return result


def applied_updates(folder: Path) -> int:
    """Count the updates that changed the policy (a DAPO run stops short when its rollout budget runs out)."""
    path = folder / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()] if path.is_file() else []
    return sum(1 for r in rows if "rollout/success_rate" in r and not r.get("actor/skipped"))


def filtered_task_ids(env: Any, split: str, task_type: str | None) -> list[str]:
    """Return the task ids of ``split`` in evaluation order, keeping only ``task_type`` when given."""
    manifest = env.unwrapped.manifest
    ids = list(manifest.task_ids(split))
    if task_type is None:
        return ids
    kept = [t for t in ids if manifest.get(t).task_type == task_type]
    if not kept:
        types = sorted({manifest.get(t).task_type for t in ids})
        raise ConfigError(f"task_type={task_type!r} has no task in split {split!r}; its types are {types}.")
    return kept


def _restrict(envs: Any, task_type: str) -> None:
    """Make each env's ``task_ids`` list only ``task_type`` tasks (the trainer draws training tasks from it)."""
    if not isinstance(envs, list):
        raise ConfigError("task_type needs vectorization='sync' (the bench filters tasks in this process).")
    for env in envs:
        base = env.unwrapped
        cache: dict[str, list[str]] = {}

        def task_ids(split: str | None = None, _env: Any = env, _cache: dict[str, list[str]] = cache) -> list[str]:
            key = split or _env.unwrapped.split
            if key not in _cache:
                _cache[key] = filtered_task_ids(_env, key, task_type)
            return _cache[key]

        base.task_ids = task_ids


def evaluate_filtered(trainer: Any, split: str, n_tasks: int, task_type: str | None,
                      log_path: Path | None, samples: int | None = None) -> dict[str, Any]:
    """Play the first ``n_tasks`` tasks of ``split`` (of ``task_type`` only, when given) greedily, and sampled.

    Each task is played once greedily and ``samples`` times sampled at the training temperature (``None``: the
    trainer config's ``eval_samples``), every episode of one mode in one lockstep batch
    (:func:`~empg_gym.agents.evaluate.play_tasks`). Returns the greedy ``success_rate`` (and score, length, per task
    type, the family's per-type metrics), with ``samples > 0`` also ``success_sampled`` and ``samples_per_task``, and
    the manifest's ``source``; ``log_path`` gets one JSON line per episode, marked ``mode``
    (``"greedy"``/``"sampled"``) and ``sample``, with the task's facets (the per-type tables and the viewer read them).
    """
    from empg_gym.agents.evaluate import play_tasks, summarize, write_episodes
    from empg_gym.agents.per_type import family_of
    from empg_gym.agents.trainer import make_envs

    cfg = trainer.config
    envs = make_envs(dataclasses.replace(cfg, vectorization="sync"), 1)
    task_ids = filtered_task_ids(envs[0], split, task_type)[:n_tasks]
    manifest = envs[0].unwrapped.manifest
    source = str(manifest.source)
    for env in envs:
        env.close()
    episodes = play_tasks(trainer.policy, cfg, task_ids, split=split, samples=samples, envs=trainer.eval_envs,
                          with_steps=log_path is not None, manifest=manifest)
    write_episodes(log_path, episodes)
    return {**summarize(episodes, family_of(cfg.env_id)), "source": source}


def _trainer_class() -> type:
    from empg_gym.agents.trainer import Trainer

    class _BenchTrainer(Trainer):
        """A :class:`~empg_gym.agents.trainer.Trainer` for benches.

        It trains on one task type, evaluates on the bench's schedule (every ``eval_every`` updates and at every
        ``eval_every_env_steps`` budget) and records EMPG diagnostics; the trainer logs its pace to ``log``.
        """

        def __init__(self, config: Any, out_dir: Any, *, resume: bool = False, task_type: str | None = None,
                     bench: BenchConfig | None = None, log: Callable[[str], None] = logger.info) -> None:
            super().__init__(config, out_dir, resume=resume, log=log)
            self.task_type = task_type
            self.bench = bench
            self.eval_seconds = 0.0
            every = bench.eval_every_env_steps if bench is not None else 0
            self.evaluated_budget = self.env_steps // every * every if every else 0
            if task_type is not None:
                _restrict(self.envs, task_type)
            for name in (DIAGNOSTICS, EVALS):  # drop records of updates after the checkpoint we resumed from
                path = self.out_dir / name
                if path.is_file():
                    keep = [ln for ln in path.read_text(encoding="utf-8").splitlines()
                            if ln.strip() and json.loads(ln)["update"] <= self.update_step]
                    path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

        def record_evals(self, update: int, *, episode_logs: bool = False) -> None:
            """Evaluate on every eval split and append one ``evals.jsonl`` line per split for ``update``.

            Each line holds the update, the training env steps played so far (``env_steps``), the env-step budget
            the evaluation stands for (``budget_env_steps``, :func:`~empg_gym.agents.trainer.eval_budget`; absent
            when it reached none) and the metrics. ``episode_logs`` also writes the episodes to
            ``eval_<split>.jsonl`` (the final policy's); the untrained
            policy's (update 0) always go to ``eval_<split>_update0.jsonl`` (the per-type tables' baseline row).
            """
            if self.bench is None:
                return
            from empg_gym.agents.trainer import eval_budget

            budget = eval_budget(self.env_steps, self.bench.eval_every_env_steps, self.evaluated_budget)
            if budget is not None:
                self.evaluated_budget = budget
            t0 = time.perf_counter()
            with open(self.out_dir / EVALS, "a", encoding="utf-8") as f:
                for split in self.bench.eval_splits:
                    log_path = (self.out_dir / f"eval_{split}.jsonl" if episode_logs else
                                self.out_dir / f"eval_{split}_update0.jsonl" if update == 0 else None)
                    metrics = evaluate_filtered(self, split, self.bench.eval_tasks, self.task_type, log_path)
                    record = {"update": update, "env_steps": self.env_steps, "split": split, "metrics": metrics}
                    if budget is not None:
                        record["budget_env_steps"] = budget
                    f.write(json.dumps(record) + "\n")
            self.eval_seconds += time.perf_counter() - t0

        def log_final_episodes(self) -> None:
            """Write ``eval_<split>.jsonl`` (the final policy's episodes) where a scheduled evaluation of the last
            update already stands in ``evals.jsonl`` without them (a DAPO run that stopped early on an env-step budget).

            The evaluation is played again, with the same seeds, so the logs are those episodes; nothing is appended
            to ``evals.jsonl``.
            """  # noqa: D205
            t0 = time.perf_counter()
            for split in self.bench.eval_splits if self.bench is not None else ():
                path = self.out_dir / f"eval_{split}.jsonl"
                if not path.is_file():
                    evaluate_filtered(self, split, self.bench.eval_tasks, self.task_type, path)
            self.eval_seconds += time.perf_counter() - t0

        def after_update(self, metrics: dict[str, float]) -> None:
            """Evaluate on the bench's schedule; the last update's evaluation is left to ``train_and_evaluate``."""
            if self.bench is None:
                super().after_update(metrics)
                return
            from empg_gym.agents.trainer import eval_budget, eval_due

            budget = eval_budget(self.env_steps, self.bench.eval_every_env_steps, self.evaluated_budget)
            if self.update_step < self.config.updates and eval_due(self.update_step, self.bench.eval_every, budget):
                self.record_evals(self.update_step)  # before the loop checkpoints this update

        def train_step(self) -> dict[str, float]:
            metrics = super().train_step()
            if metrics.get("actor/skipped"):  # DAPO found no informative group: not an update, the loop retries
                self.log(f"  update {self.update_step + 1}/{self.config.updates}: no group with differing rewards "
                         f"in {self.algo.max_resample_batches} rollout batch(es); drawing new ones")
            return metrics

        def _update(self, batch: Any, advantages: Any, prompts: list[Any], responses: list[Any]) -> dict[str, float]:
            record_diagnostics(self.out_dir / DIAGNOSTICS, self.update_step + 1, batch)
            return super()._update(batch, advantages, prompts, responses)

    return _BenchTrainer


def BenchTrainer(config: Any, out_dir: Any, *, resume: bool = False, task_type: str | None = None,  # noqa: N802
                 bench: BenchConfig | None = None, log: Callable[[str], None] = logger.info) -> Any:
    """Return a trainer (built lazily so that ``import empg_gym.bench`` does not import torch)."""
    return _trainer_class()(config, out_dir, resume=resume, task_type=task_type, bench=bench, log=log)


def record_diagnostics(path: Path, update: int, batch: Any) -> None:
    """Append the batch's per-step ``H``, ``g``, ``f`` (EMPG, k = k' = 1) and outcomes as one JSON line.

    ``g`` and ``f`` are computed with the same functions EMPG uses, for every algorithm, so the distributions can
    be compared; a step's trajectory counts as successful when its outcome reward is positive.
    """
    from empg_gym.agents.algorithms.advantages import empg_terms, step_entropy

    H = step_entropy(batch.token_entropy, batch.response_mask)
    _, g, f = empg_terms(H, batch.traj_id, batch.step_index)
    traj = batch.traj_id.tolist()
    won = {t: r > 0 for t, r, last in zip(traj, batch.reward.tolist(), batch.is_last.tolist(), strict=True) if last}
    record = {"update": update, "H": H.tolist(), "g": g.tolist(), "f": f.tolist(),
              "won": [won.get(t, False) for t in traj]}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def write_results_csv(out: Path, combos: list[tuple[str, str, int]]) -> Path:
    """Rebuild ``results.csv`` from the finished runs: one row per env × split × algo × seed × evaluated update.

    Update 0 is the untrained policy; ``env_steps`` the training env steps played before the evaluation and
    ``budget_env_steps`` the env-step budget it stands for (empty when none); ``success_rate`` is greedy success and
    ``success_sampled`` sampled success (empty for runs evaluated without ``eval_samples``); ``train_seconds`` is the
    run's whole training time (on every row of the run).
    """
    rows: list[dict[str, Any]] = []
    for env_id, algo, seed in combos:
        path = run_dir(out, env_id, algo, seed) / RESULT
        if not path.is_file():
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        evals = result.get("evals") or [{"update": result["updates"], "split": sp, "metrics": m}
                                        for sp, m in result["eval"].items()]
        for record in sorted(evals, key=lambda r: (r["split"], r["update"])):
            metrics = record["metrics"]
            row = {"env": env_id, "split": record["split"], "algo": algo, "seed": seed, "update": record["update"],
                   "env_steps": record.get("env_steps", ""), "budget_env_steps": record.get("budget_env_steps", ""),
                   "updates": result["updates"], "applied_updates": result.get("applied_updates", ""),
                   "train_seconds": round(result["train_seconds"], 2)}
            row.update({k: metrics.get(k, "") for k in BASE_COLUMNS if k not in row})
            row["source"] = metrics.get("source", "")
            row.update({k: v for k, v in metrics.items() if k.startswith("success_rate/")})
            row.update(result.get("swept") or {})
            rows.append(row)
    columns = BASE_COLUMNS + sorted({k for r in rows for k in r if k not in BASE_COLUMNS})
    with open(out / RESULTS_CSV, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return out / RESULTS_CSV


def bench_metadata(config: BenchConfig) -> dict[str, Any]:
    """Versions, hardware and settings the report states so that a reader can rerun it."""
    import importlib.metadata as md

    import empg_gym

    def version(pkg: str) -> str:
        try:
            return md.version(pkg)
        except md.PackageNotFoundError:
            return "not installed"

    return {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
        "labels": list(config.labels),
        "versions": {"empg-gym": empg_gym.__version__, "python": platform.python_version(),
                     **{p: version(p) for p in ("torch", "transformers", "peft", "gymnasium", "alfworld",
                                                "textworld", "matplotlib")}},
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "cpu_count": os.cpu_count(), "system": platform.system()},
    }
