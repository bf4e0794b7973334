"""The ``empg-gym`` command line: list envs, play one in the terminal, run the demo.

Examples::

    empg-gym list
    empg-gym play EMPG-ALFWorld-v0 --split eval_in_distribution --seed 3
    empg-gym play EMPG-KeyDoor-v0 --oracle
    empg-gym demo
    empg-gym train --preset cpu --env EMPG-ALFWorld-v0 --algo empg --steps 3 --out runs/empg
    empg-gym bench --preset quick --out runs/quick
    empg-gym view runs/quick
    empg-gym bench --preset quick --no-pipeline-check --algos empg --sweep k=0.5,1,2 zeta=0,0.05 --out runs/sweep
    empg-gym serve-webshop --port 3000
    empg-gym serve-retriever --port 8000
    empg-gym export-verl --env EMPG-ALFWorld-v0 --split train --out data/alfworld_train.parquet
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

import gymnasium as gym

import empg_gym
from empg_gym.registration import REGISTERED
from empg_gym.tasks import SPLITS
from empg_gym.viewer import MAX_EPISODES


def _cmd_list(args: argparse.Namespace, out: TextIO) -> int:
    out.write(f"empg-gym {empg_gym.__version__}: environments\n")
    for env_id, meta in REGISTERED.items():
        spec = gym.spec(env_id)
        line = f"  {env_id:<28} {meta['family']:<10} max_steps={spec.max_episode_steps}"
        if args.sizes:
            env = gym.make(env_id)
            try:
                sizes = env.unwrapped.manifest.sizes()
                line += "  " + "  ".join(f"{s}={sizes[s]}" for s in SPLITS)
            finally:
                env.close()
        out.write(line + f"\n      {meta['description']}\n")
    return 0


def _play(env: gym.Env[str, str], read: Callable[[], str | None], out: TextIO, oracle: bool, seed: int | None,
          options: dict[str, Any]) -> float:
    obs, info = env.reset(seed=seed, options=options)
    out.write(f"[{info['task_id']}] ({info['source']}, {info['split']})\n\n{obs}\n")
    plan = list(env.unwrapped.oracle_actions()) if oracle else []
    total, step = 0.0, 0
    while True:
        if info["admissible_actions"]:
            out.write("\nAdmissible: " + " | ".join(info["admissible_actions"]) + "\n")
        if oracle:
            if not plan:
                break
            action = plan.pop(0)
            out.write(f"> {action}\n")
        else:
            out.write("> ")
            out.flush()
            action = read()
            if action is None or action.strip() in {"quit", "exit"}:
                break
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        step += 1
        flag = "" if info["action_valid"] else "  (invalid action)"
        out.write(f"{obs}{flag}\n")
        if terminated or truncated:
            verdict = "won" if info["won"] else ("truncated" if truncated else "ended")
            out.write(f"\nEpisode {verdict} after {step} steps: return {total:g}, score {info['score']:g}\n")
            break
    return total


def _cmd_play(args: argparse.Namespace, out: TextIO) -> int:
    env = gym.make(args.env, split=args.split)
    options = {"task_id": args.task_id} if args.task_id else {}

    def read() -> str | None:
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None

    try:
        _play(env, read, out, args.oracle, args.seed, options)
    finally:
        env.close()
    return 0


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    args.preset, args.envs, args.algos, args.seeds, args.steps, args.eval_tasks = "quick", None, None, None, None, None
    out.write("empg-gym demo: the quick bench (watch an expert instead with `empg-gym play ENV --oracle`).\n")
    return _cmd_bench(args, out)


def _csv(text: str | None, cast: Callable[[str], Any] = str) -> tuple[Any, ...] | None:
    return None if text is None else tuple(cast(x.strip()) for x in text.split(",") if x.strip())


def _train_overrides(items: Sequence[str]) -> dict[str, Any]:
    import json

    from empg_gym.errors import ConfigError

    overrides: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r} must look like FIELD=VALUE, e.g. --set max_new_tokens=48.")
        try:
            overrides[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            overrides[key.strip()] = value
    return overrides


def bench_config(args: argparse.Namespace) -> Any:
    """Return the :class:`~empg_gym.bench.BenchConfig` that ``empg-gym bench`` arguments describe.

    Example:
        >>> cfg = bench_config(build_parser().parse_args(["bench", "--preset", "quick", "--algos", "empg",
        ...                                                "--sweep", "zeta=0,0.1", "--out", "x"]))
        >>> cfg.labels
        ('empg[zeta=0]', 'empg[zeta=0.1]')
    """
    from empg_gym.bench import BenchConfig, get_preset
    from empg_gym.errors import ConfigError

    if args.preset and getattr(args, "config", None):
        raise ConfigError("Give --preset or --config, not both.")
    if getattr(args, "config", None):
        base = BenchConfig.from_file(args.config)
    else:
        base = get_preset(args.preset) if args.preset else BenchConfig()
    train = {**dict(base.train), **_train_overrides(getattr(args, "set", None) or [])}
    config = base.replace(envs=_csv(args.envs), algos=_csv(args.algos), seeds=_csv(args.seeds, int),
                          updates=args.steps, eval_tasks=args.eval_tasks, train=train,
                          eval_splits=_csv(getattr(args, "eval_splits", None)),
                          task_type=getattr(args, "task_type", None), processes=getattr(args, "processes", None),
                          eval_every=getattr(args, "eval_every", None),
                          eval_every_env_steps=getattr(args, "eval_every_env_steps", None))
    if getattr(args, "sweep", None):
        from empg_gym.bench.sweep import parse_sweep

        config = config.replace(sweep=parse_sweep(args.sweep), sweep_mode=args.sweep_mode)
    if getattr(args, "no_pipeline_check", False):
        config = dataclasses.replace(config, pipeline_check=None)
    if config.budget_note and config != base:  # the preset's budget was measured for the preset's own runs
        n_base = len(base.envs) * len(base.labels) * len(base.seeds)
        config = dataclasses.replace(config, budget_note=f"not estimated for this variant; the preset's own {n_base} "
                                     f"runs: {base.budget_note}")
    return config


def _cmd_bench(args: argparse.Namespace, out: TextIO) -> int:
    from empg_gym.bench import run_bench

    config = bench_config(args)
    out.write(f"empg-gym bench ({args.preset or 'custom'}): {len(config.envs) * len(config.labels) * len(config.seeds)}"
              f" runs; budget: {config.budget_note or 'not estimated'}; needs {config.hardware}.\n")

    def log(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    report = run_bench(config, args.out, log=log)
    out.write(f"Report: {report}\nResults: {report.parent / 'results.csv'}\n"
              f"Episodes: {_write_viewer(report.parent, out)}\n")
    return 0


def _train_config(args: argparse.Namespace) -> Any:
    """Precedence: the ``--preset`` values, then the ``--config`` file, then ``--set`` fields, then explicit flags."""
    from empg_gym.agents.config import TrainConfig, train_preset

    overrides = {
        "env_id": args.env, "algo": args.algo, "model": args.model, "updates": args.steps, "seed": args.seed,
        "tasks_per_update": args.tasks_per_update, "group_size": args.group_size, "lr": args.lr,
        "max_new_tokens": args.max_new_tokens, "lora_rank": args.lora_rank, "eval_tasks": args.eval_tasks,
    }
    overrides = {**_train_overrides(getattr(args, "set", None) or []),
                 **{k: v for k, v in overrides.items() if v is not None}}
    if args.config:
        return TrainConfig.from_file(args.config, preset=args.preset, **overrides)
    return TrainConfig.from_dict({**(train_preset(args.preset) if args.preset else {}), **overrides})


def _cmd_train(args: argparse.Namespace, out: TextIO) -> int:
    from empg_gym.agents.trainer import Trainer
    from empg_gym.errors import ConfigError

    config = _train_config(args)
    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads {args.threads} must be at least 1 (torch CPU threads).")
        import torch

        torch.set_num_threads(args.threads)

    def log(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    trainer = Trainer(config, args.out, resume=args.resume, log=log)
    try:
        history = trainer.train()
    finally:
        trainer.close()
    last = next((h for h in reversed(history) if "rollout/success_rate" in h), {})
    out.write(f"Trained {config.algo} on {config.env_id} for {trainer.update_step} updates; last success rate "
              f"{last.get('rollout/success_rate', float('nan')):.3f}. Metrics: {args.out}/metrics.jsonl\n")
    return 0


def _cmd_eval(args: argparse.Namespace, out: TextIO) -> int:
    import csv
    import json
    import shutil
    import tempfile
    from pathlib import Path

    from empg_gym.agents.evaluate import evaluate_run
    from empg_gym.agents.per_type import family_of, per_type_csv_rows, per_type_rows

    folder = Path(args.out) if args.out else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        log = (folder or Path(tmp)) / f"eval_{args.split}.jsonl"
        result = evaluate_run(args.model, env_id=args.env, split=args.split, n_tasks=args.tasks, log_path=log)
        episodes = [json.loads(ln) for ln in log.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if args.log:
            shutil.copyfile(log, args.log)
    family = family_of(args.env)
    out.write(f"{args.env} {args.split}: success rate {result['success_rate']:.3f} over "
              f"{int(result['num_tasks'])} tasks\n")
    rows = per_type_rows(episodes, family)
    metrics = list(dict.fromkeys(m for r in rows for m in r.values))
    out.write(f"  {'type':<24} {'n':>5} " + " ".join(f"{m:>8}" for m in metrics) + "\n")
    for r in rows:
        out.write(f"  {r.label:<24} {r.n:>5} " + " ".join(f"{r.values.get(m, float('nan')):>8.3f}" for m in metrics)
                  + "\n")
    if folder is not None:
        (folder / "eval.json").write_text(json.dumps({"env": args.env, "model": args.model, "split": args.split,
                                                      "tasks": args.tasks}), encoding="utf-8")
        table = per_type_csv_rows(episodes, family, env=args.env, split=args.split, model=args.model)
        with open(folder / "results.csv", "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in table for k in r)), restval="")
            writer.writeheader()
            writer.writerows(table)
        out.write(f"Results: {folder / 'results.csv'}\nViewer: {_write_viewer(folder, out)}\n")
    return 0


def _write_viewer(folder: Any, out: TextIO) -> Any:
    """Write ``folder``'s episode viewer; a failure is reported, never fatal (the results are already written)."""
    from empg_gym.errors import EmpgGymError
    from empg_gym.viewer import write_viewer

    try:
        return write_viewer(folder)
    except (EmpgGymError, OSError, ValueError) as e:
        out.write(f"(no viewer: {e})\n")
        return None


def _cmd_view(args: argparse.Namespace, out: TextIO) -> int:
    from empg_gym.viewer import write_viewer

    path = write_viewer(args.folder, args.out, args.max_episodes)
    out.write(f"{path.resolve()}\n")
    return 0


def _cmd_export_verl(args: argparse.Namespace, out: TextIO) -> int:
    from empg_gym.integrations.verl.episodes import (  # empg-gym[verl]
        episode_rows,
        parse_env_kwargs,
        write_parquet,
    )

    rows = episode_rows(args.env, args.split, repeat=args.repeat, seed=args.seed,
                        env_kwargs=parse_env_kwargs(args.env_kwargs), n_tasks=args.tasks)
    path = write_parquet(rows, args.out)
    out.write(f"Wrote {len(rows)} verl rows ({len(rows) // args.repeat} tasks of {args.env} {args.split} x "
              f"{args.repeat}, agent_name=empg_gym) to {path}\n")
    return 0


#: Commands that hand all their arguments to a family's own command line (imported only when run).
FORWARDED = {
    "serve-webshop": ("empg_gym.envs.webshop.server", "serve the WebShop site for a person to browse"),
    "serve-retriever": ("empg_gym.envs.deepsearch.server", "serve BM25 retrieval with Search-R1's API"),
}


def build_parser() -> argparse.ArgumentParser:
    """Return the ``empg-gym`` argument parser."""
    from empg_gym.agents.config import TRAIN_PRESETS

    parser = argparse.ArgumentParser(prog="empg-gym", description="Text environments and RL for LLM agents.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the registered environments")
    p.add_argument("--sizes", action="store_true", help="also load each task manifest and print split sizes")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("play", help="play an env in the terminal (type actions; 'quit' to stop)")
    p.add_argument("env", help="env id, e.g. EMPG-ALFWorld-v0")
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--task-id", default=None, help="play this task instead of a seeded draw")
    p.add_argument("--oracle", action="store_true", help="let the env's oracle play")
    p.set_defaults(func=_cmd_play)

    p = sub.add_parser("train", help="train an LLM agent with GRPO / DAPO / EMPG / GiGPO")
    p.add_argument("--env", default=None, help="env id (default EMPG-ALFWorld-v0)")
    p.add_argument("--algo", default=None, help="grpo, dapo, empg, empg-dapo, gigpo")
    p.add_argument("--model", default=None, help="smollm2-135m (embedded), tiny-actions, a folder or hub id")
    p.add_argument("--steps", type=int, default=None, help="number of policy updates")
    p.add_argument("--out", required=True, help="run folder (metrics, checkpoints)")
    p.add_argument("--preset", default=None, choices=sorted(TRAIN_PRESETS),
                   help="start from a preset of sizes: cpu (SmolLM2 with LoRA, a few minutes per update on 2 "
                        "cores); --config and explicit flags override it")
    p.add_argument("--config", default=None, help="TOML file with TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="set any TrainConfig field (JSON value), e.g. --set history_length=0 or "
                        "--set 'algo_overrides={\"empg.uncertainty\": \"renyi2\"}'")
    p.add_argument("--tasks-per-update", type=int, default=None)
    p.add_argument("--group-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--max-new-tokens", type=int, default=None)
    p.add_argument("--lora-rank", type=int, default=None)
    p.add_argument("--eval-tasks", type=int, default=None, help="evaluate on this many eval tasks at the end")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads (default: one per core); on a machine busy with other work, 1 can be "
                        "several times faster than 2, which stall waiting for each other")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("bench", help="train several algorithms side by side and write a report")
    p.add_argument("--preset", default=None, help="quick (2 CPU cores, ~7 min), study (2 CPU cores, ~30 min: "
                   "30 seeds), pipeline (SmolLM2 on ALFWorld, ~3 min) or paper (GPU)")
    p.add_argument("--envs", default=None, help="comma-separated env ids")
    p.add_argument("--algos", default=None, help="comma-separated algorithms, e.g. grpo,dapo,empg")
    p.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--steps", type=int, default=None, help="policy updates per run")
    p.add_argument("--eval-tasks", type=int, default=None, help="eval tasks per split")
    p.add_argument("--eval-splits", default=None, help="comma-separated splits evaluated after training")
    p.add_argument("--eval-every", type=int, default=None, help="also evaluate every this many updates")
    p.add_argument("--eval-every-env-steps", type=int, default=None,
                   help="also evaluate each run when its training env steps reach each multiple of this (matched "
                        "budgets: the report compares the algorithms at the largest one at least half of every "
                        "algorithm's runs reached)")
    p.add_argument("--task-type", default=None, help="train and evaluate on tasks of this type only")
    p.add_argument("--config", default=None, help="a bench.json (rerun a report exactly) or a JSON/TOML of fields")
    p.add_argument("--set", action="append", metavar="FIELD=VALUE",
                   help="override a TrainConfig field for every run (JSON value), e.g. --set model=tiny-actions")
    p.add_argument("--sweep", nargs="+", metavar="KEY=V1,V2",
                   help="run every setting of these config keys, e.g. --sweep k=0.5,1,2 zeta=0,0.05,0.1 (TrainConfig "
                        "fields, algorithm settings such as clip_high or EMPG's k/k_next/zeta, env.KEY for gym.make "
                        "keywords); each setting is reported as an algorithm of its own")
    p.add_argument("--sweep-mode", choices=("grid", "zip"), default="grid",
                   help="grid: every combination of the values (default); zip: the lists paired element by element")
    p.add_argument("--processes", type=int, default=None,
                   help="runs trained at a time, each in a fresh worker process (0: one after another in this one)")
    p.add_argument("--no-pipeline-check", action="store_true",
                   help="skip the preset's pipeline check (the quick preset's SmolLM2-on-ALFWorld section)")
    p.add_argument("--out", required=True, help="bench folder (finished runs are skipped on rerun)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("eval", help="success rate of a model on a split (overall and per task type)")
    p.add_argument("--env", required=True)
    p.add_argument("--split", default="eval_in_distribution", choices=SPLITS)
    p.add_argument("--model", required=True, help="a run folder written by `train`, or a model spec")
    p.add_argument("--tasks", type=int, default=None, help="only the first N tasks of the split")
    p.add_argument("--log", default=None, help="write one JSON line per episode here")
    p.add_argument("--out", default=None,
                   help="folder for the episodes (eval_SPLIT.jsonl), results.csv (one row per task type) and the "
                        "episode viewer (viewer.html)")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("view", help="write one self-contained HTML page of a bench's, train run's or eval's episodes")
    p.add_argument("folder", help="a folder written by `empg-gym bench`, `train` or `eval --out`")
    p.add_argument("--out", default=None, help="the HTML file to write (default FOLDER/viewer.html)")
    p.add_argument("--max-episodes", type=int, default=MAX_EPISODES,
                   help="at most this many episodes, shared equally by the runs (0: every episode; default "
                        "%(default)s: a big bench's last evaluations first)")
    p.set_defaults(func=_cmd_view)

    p = sub.add_parser("export-verl", help="write a split as verl RL-dataset rows (parquet) for the empg_gym agent loop")
    p.add_argument("--env", required=True, help="env id, e.g. EMPG-ALFWorld-v0")
    p.add_argument("--split", required=True, choices=SPLITS)
    p.add_argument("--out", required=True, help="the .parquet file to write")
    p.add_argument("--repeat", type=int, default=1, help="write the split this many times (default 1)")
    p.add_argument("--seed", type=int, default=0, help="the task at position i of the split gets seed SEED + i")
    p.add_argument("--tasks", type=int, default=None, help="only the first N tasks of the split")
    p.add_argument("--env-kwargs", default=None, help='gym.make keyword arguments as JSON, e.g. \'{"data_path": "..."}\'')
    p.set_defaults(func=_cmd_export_verl)

    for name, (_, what) in FORWARDED.items():
        sub.add_parser(name, help=f"{what} (--help for its options)")

    p = sub.add_parser("demo", help="the quick bench: GRPO vs DAPO vs EMPG on KeyRooms, 10 seeds, 2 CPU cores (~7 min)")
    p.add_argument("--out", default="empg-gym-demo", help="bench folder (default ./empg-gym-demo)")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the ``empg-gym`` command line; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in FORWARDED:
        import importlib

        return int(importlib.import_module(FORWARDED[argv[0]][0]).main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return int(args.func(args, out or sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
