"""Run every ``env × algo × seed`` of a :class:`~empg_gym.bench.presets.BenchConfig`, resumably.

Each run lives in ``OUT/runs/<env>/<algo>/seed<seed>/``: the trainer's ``metrics.jsonl`` and ``checkpoint/``, a
``diagnostics.jsonl`` (per-step entropy ``H``, EMPG's ``g`` and ``f``, and the trajectory's outcome, for the plots),
``eval_<split>.jsonl`` episode logs, and ``result.json`` once the run is finished. A rerun skips runs with a
``result.json`` and resumes the others from their checkpoint. ``OUT/results.csv`` is rebuilt from every
``result.json`` after each run, and the report from ``results.csv``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from empg_gym.bench.presets import BenchConfig
from empg_gym.errors import ConfigError

logger = logging.getLogger(__name__)

RESULT = "result.json"
DIAGNOSTICS = "diagnostics.jsonl"
RESULTS_CSV = "results.csv"
BASE_COLUMNS = ["env", "split", "algo", "seed", "source", "updates", "applied_updates", "num_tasks", "success_rate",
                "score", "episode_len", "train_seconds"]


def run_dir(out: Path, env_id: str, algo: str, seed: int) -> Path:
    """Return the folder of one run.

    Example:
        >>> run_dir(Path("out"), "EMPG-KeyDoor-v0", "grpo", 0).as_posix()
        'out/runs/EMPG-KeyDoor-v0/grpo/seed0'
    """
    return out / "runs" / env_id / algo / f"seed{seed}"


def run_bench(config: BenchConfig, out: str | Path, *, log: Callable[[str], None] = logger.info,
              stop_after: int | None = None) -> Path:
    """Train and evaluate every run of ``config`` under ``out`` (skipping finished ones); return ``report.md``.

    Args:
        config: The benchmark.
        out: Output folder (created).
        log: Called with one progress line per event (the CLI prints them).
        stop_after: Stop after this many newly trained runs, without writing the report (for interruption tests).
    """
    from empg_gym.bench.report import write_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(bench_metadata(config), indent=1, default=str), encoding="utf-8")
    combos = [(e, a, s) for e in config.envs for a in config.algos for s in config.seeds]
    trained = 0
    t_start = time.perf_counter()
    for i, (env_id, algo, seed) in enumerate(combos, 1):
        folder = run_dir(out, env_id, algo, seed)
        if (folder / RESULT).is_file():
            log(f"[{i}/{len(combos)}] {env_id} {algo} seed={seed}: finished before, skipped")
            continue
        if stop_after is not None and trained >= stop_after:
            log(f"stopping after {trained} runs (stop_after)")
            return out / "report.md"
        log(f"[{i}/{len(combos)}] {env_id} {algo} seed={seed}: training {config.updates} updates")
        result = train_and_evaluate(config, env_id, algo, seed, folder, log=log)
        trained += 1
        log(f"[{i}/{len(combos)}] {env_id} {algo} seed={seed}: done in {result['train_seconds']:.0f} s; " +
            ", ".join(f"{sp} success {r['success_rate']:.3f}" for sp, r in result["eval"].items()))
        per_run = (time.perf_counter() - t_start) / trained
        left = sum(not (run_dir(out, *c) / RESULT).is_file() for c in combos)
        pace = f"  measured {result['train_seconds'] / max(1, result['updates'] - result['resumed_from']):.0f} s per update"
        log(pace + (f"; about {per_run * left / 60:.0f} min left for {left} runs at this pace" if left else ""))
        write_results_csv(out, combos)
    write_results_csv(out, combos)
    return write_report(out)


def train_and_evaluate(config: BenchConfig, env_id: str, algo: str, seed: int, folder: Path,
                       *, log: Callable[[str], None] = logger.info) -> dict[str, Any]:
    """Train one run (resuming its checkpoint), evaluate it on ``config.eval_splits``, write ``result.json``."""
    cfg = config.train_config(env_id, algo, seed)
    trainer = BenchTrainer(cfg, folder, resume=True, task_type=config.task_type)
    start_update = trainer.update_step
    if start_update:
        log(f"  resuming from update {start_update}")
    t0 = time.perf_counter()
    try:
        trainer.train()
        train_seconds = time.perf_counter() - t0
        evals = {split: evaluate_filtered(trainer, split, config.eval_tasks, config.task_type, folder)
                 for split in config.eval_splits}
    finally:
        trainer.close()
    result = {"env": env_id, "algo": algo, "seed": seed, "updates": trainer.update_step,
              "applied_updates": applied_updates(folder), "resumed_from": start_update, "train_seconds": train_seconds,
              "eval_seconds": time.perf_counter() - t0 - train_seconds, "eval": evals}
    tmp = folder / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    tmp.replace(folder / RESULT)
    return result


def applied_updates(folder: Path) -> int:
    """Count the updates that changed the policy (DAPO's filter skips one when all groups' rewards are equal)."""
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


def evaluate_filtered(trainer: Any, split: str, n_tasks: int, task_type: str | None, folder: Path) -> dict[str, float]:
    """Play the first ``n_tasks`` tasks of ``split`` (of ``task_type`` only, when given) once each, greedily."""
    from empg_gym.agents.evaluate import summarize
    from empg_gym.agents.policy import GenerationConfig
    from empg_gym.agents.rollout import RolloutConfig, collect_rollouts
    from empg_gym.agents.trainer import make_envs

    cfg = trainer.config
    envs = make_envs(dataclasses.replace(cfg, vectorization="sync"), 1)
    task_ids = filtered_task_ids(envs[0], split, task_type)[:n_tasks]
    source = str(envs[0].unwrapped.manifest.source)
    for env in envs:
        env.close()
    rollout_cfg = RolloutConfig(group_size=1, split=split, reward_scale=1.0, max_steps=cfg.max_steps,
                                generation=GenerationConfig(max_new_tokens=cfg.max_new_tokens,
                                                            temperature=cfg.temperature, do_sample=False),
                                progress=False)
    envs = make_envs(cfg, len(task_ids))
    try:
        rollout = collect_rollouts(trainer.policy, envs, rollout_cfg, task_ids=task_ids, seed=cfg.seed)
    finally:
        for env in envs if isinstance(envs, list) else [envs]:
            env.close()
    episodes = [{"task_id": t.task_id, "task_type": t.task_type, "won": t.won, "score": t.score,
                 "length": t.length, "truncated": t.truncated} for t in rollout.trajectories]
    with open(folder / f"eval_{split}.jsonl", "w", encoding="utf-8") as f:
        for ep in episodes:
            f.write(json.dumps(ep) + "\n")
    return {**summarize(episodes), "source": source}


def _trainer_class() -> type:
    from empg_gym.agents.trainer import Trainer

    class _BenchTrainer(Trainer):
        """A :class:`~empg_gym.agents.trainer.Trainer` that trains on one task type and records EMPG diagnostics."""

        def __init__(self, config: Any, out_dir: Any, *, resume: bool = False, task_type: str | None = None) -> None:
            super().__init__(config, out_dir, resume=resume)
            self.task_type = task_type
            if task_type is not None:
                _restrict(self.envs, task_type)
            diag = self.out_dir / DIAGNOSTICS
            if diag.is_file():  # drop records of updates after the checkpoint we resumed from
                keep = [ln for ln in diag.read_text(encoding="utf-8").splitlines()
                        if ln.strip() and json.loads(ln)["update"] <= self.update_step]
                diag.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

        def _update(self, batch: Any, advantages: Any, prompts: list[Any], responses: list[Any]) -> dict[str, float]:
            record_diagnostics(self.out_dir / DIAGNOSTICS, self.update_step + 1, batch)
            return super()._update(batch, advantages, prompts, responses)

    return _BenchTrainer


def BenchTrainer(config: Any, out_dir: Any, *, resume: bool = False, task_type: str | None = None) -> Any:  # noqa: N802
    """Return a trainer (built lazily so that ``import empg_gym.bench`` does not import torch)."""
    return _trainer_class()(config, out_dir, resume=resume, task_type=task_type)


def record_diagnostics(path: Path, update: int, batch: Any) -> None:
    """Append the batch's per-step ``H``, ``g``, ``f`` (EMPG, k = k' = 1) and outcomes as one JSON line.

    ``g`` and ``f`` are computed with the same functions EMPG uses, for every algorithm, so the distributions can
    be compared; a step's trajectory counts as successful when its outcome reward is positive.
    """
    from empg_gym.agents.algorithms.advantages import empg_terms, step_entropy

    H = step_entropy(batch.token_entropy, batch.response_mask)
    _, g, f = empg_terms(H, batch.traj_id, batch.step_index)
    won = {int(t): float(r) > 0 for t, r, last in zip(batch.traj_id, batch.reward, batch.is_last, strict=True)
           if bool(last)}
    record = {"update": update, "H": H.tolist(), "g": g.tolist(), "f": f.tolist(),
              "won": [won.get(int(t), False) for t in batch.traj_id]}
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")


def write_results_csv(out: Path, combos: list[tuple[str, str, int]]) -> Path:
    """Rebuild ``results.csv`` from the finished runs' ``result.json``: one row per env × split × algo × seed."""
    rows: list[dict[str, Any]] = []
    for env_id, algo, seed in combos:
        path = run_dir(out, env_id, algo, seed) / RESULT
        if not path.is_file():
            continue
        result = json.loads(path.read_text(encoding="utf-8"))
        for split, metrics in result["eval"].items():
            row = {"env": env_id, "split": split, "algo": algo, "seed": seed, "updates": result["updates"],
                   "applied_updates": result.get("applied_updates", ""),
                   "train_seconds": round(result["train_seconds"], 2)}
            row.update({k: metrics.get(k, "") for k in BASE_COLUMNS if k not in row})
            row["source"] = metrics.get("source", "")
            row.update({k: v for k, v in metrics.items() if k.startswith("success_rate/")})
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

    import os

    return {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in config.__dict__.items()},
        "versions": {"empg-gym": empg_gym.__version__, "python": platform.python_version(),
                     **{p: version(p) for p in ("torch", "transformers", "peft", "gymnasium", "alfworld",
                                                "textworld", "matplotlib")}},
        "hardware": {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
                     "cpu_count": os.cpu_count(), "system": platform.system()},
    }
