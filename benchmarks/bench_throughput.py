"""Runs per CPU-core-hour: the quick bench's runs, today's code against the working tree, side by side (issue #22).

What is timed is what a ``quick`` bench worker does for one run: a fresh Python process imports the package, then
``empg_gym.bench.runner._worker`` trains one ``env × algo × seed`` run of the quick preset's shape (tiny action-token
policy on EMPG-KeyRooms-v0, 8 tasks × 8 trajectories per update, 2 PPO epochs over mini-batches of 64, one thread)
for ``--updates`` updates and evaluates it as the preset does (before training, every ``--eval-every`` updates and
after the last, on ``--eval-tasks`` tasks of both eval splits, greedily). Its CPU time, user + system from
``getrusage(RUSAGE_CHILDREN)``, imports included, is the cost of a run; the ratio of the medians is the speed-up.

The reference is a git commit (default: 5690680, the code issue #22 measured), exported with ``git archive`` into a
temporary folder; the candidate is this working tree. Both run the same fixed settings, those of the quick preset
at that commit (spelled out in :data:`QUICK_SHAPE`, so a later change of the preset does not move the yardstick),
and the script alternates them run by run (ABBA order), so a machine that gets busier or quieter during the
benchmark weighs on both alike. The default is the whole 50-update run with its three evaluations; ``--updates 10
--eval-every 5`` is a shorter proxy with the same per-update shape (a policy that has not learned yet plays longer
episodes, so a short proxy overstates the per-update cost of both sides alike).

``--new-eval K`` adds, for the working tree only, runs with the evaluation issue #22 asks for (every task of both
splits, greedily and ``K`` sampled episodes per task, every ``--new-eval-every`` updates) and prints their cost.

Measured on 2 shared CPU cores (4-8 other processes running), default settings, seed 0: CPU-s per run, ref / new:
GRPO 82.6 / 40.6, DAPO 93.3 / 22.9 (the new run learned the task by update 24 and stopped short: dynamic sampling
found no informative group), EMPG 92.2 / 32.0; medians 92.2 / 32.0 = 2.9x. A run with issue #22's evaluation (all
100 + 100 tasks greedily and 4 sampled episodes each, every 10 updates: 6 points) cost 38.0 CPU-s (median), about
1.5 CPU-s per evaluation point; a 1-update run (process start, imports, model, one update) 5.2 CPU-s.

Usage (from the repository root)::

    python benchmarks/bench_throughput.py                      # 3 algorithms x seed 0, 50 updates, ABBA
    python benchmarks/bench_throughput.py --algos grpo --repeats 3 --updates 10 --eval-every 5   # a quick proxy
    python benchmarks/bench_throughput.py --new-eval 4 --new-eval-every 10 --skip-reference
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REF = "5690680"

#: The quick preset as it stood at 5690680 (``empg_gym/bench/presets.py``), minus what only a whole bench uses.
QUICK_SHAPE = {
    "envs": ["EMPG-KeyRooms-v0"],
    "algos": ["grpo", "dapo", "empg"],
    "seeds": [0],
    "updates": 50,
    "eval_splits": ["eval_in_distribution", "eval_out_of_distribution"],
    "eval_tasks": 50,
    "eval_every": 25,
    "processes": 1,
    "threads_per_process": 1,
    "train": {"model": "tiny-actions", "tasks_per_update": 8, "group_size": 8, "max_new_tokens": 1,
              "history_length": 0, "prompt_template": "{observation}", "require_think": False, "lr": 2e-3,
              "ppo_epochs": 2, "mini_batch_size": 64, "micro_batch_size": 64, "progress": False,
              "checkpoint_every": 10, "algo_overrides": {"use_kl": False, "max_resample_batches": 3}},
    "demonstration": False,
}

#: What the child process runs: one bench-worker run, then a JSON summary line.
CHILD = r"""
import json, sys
spec = json.loads(sys.argv[1])
import empg_gym
from empg_gym.bench.presets import BenchConfig
from empg_gym.bench.runner import _worker
fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["bench"].items()}
cfg = BenchConfig(**fields)
result = _worker(cfg, tuple(spec["combo"]), spec["folder"], 1, "[bench]")
evals = {f"{r['split']}@{r['update']}": {k: v for k, v in r["metrics"].items() if k.startswith("success")}
         for r in result["evals"]}
print("RESULT " + json.dumps({"package": empg_gym.__file__, "train_seconds": result["train_seconds"],
                              "eval_seconds": result["eval_seconds"], "evals": evals}))
"""


def export_ref(ref: str, dest: Path) -> Path:
    """Extract the tracked files of commit ``ref`` into ``dest`` (``git archive``); return ``dest``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run_once(tree: Path, bench: dict, combo: tuple[str, str, int], folder: Path) -> dict:
    """Run one bench-worker run with ``tree`` first on the import path; return its CPU seconds and summary."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    spec = json.dumps({"bench": bench, "combo": list(combo), "folder": str(folder)})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, spec], cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"run {combo} in {tree} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT "))
    summary = json.loads(line[len("RESULT "):])
    if not Path(summary["package"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the child imported {summary['package']}, not the tree {tree}; check PYTHONPATH.")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"cpu": cpu, "wall": wall, **summary}


def describe(summary: dict) -> str:
    """One line: the run's greedy (and sampled) success at each evaluation."""
    parts = []
    for key, m in summary["evals"].items():
        split, update = key.split("@")
        tag = {"eval_in_distribution": "ID", "eval_out_of_distribution": "OOD"}.get(split, split)
        value = f"{m['success_rate']:.2f}" + (f"/{m['success_sampled']:.2f}" if "success_sampled" in m else "")
        parts.append(f"{tag}@{update} {value}")
    return " ".join(parts)


def main(argv: list[str] | None = None) -> None:
    """Parse the arguments, run both sides alternately and print the CPU seconds per run and their ratio."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ref", default=DEFAULT_REF, help="git commit of today's code (default: %(default)s)")
    p.add_argument("--algos", default="grpo,dapo,empg", help="comma-separated algorithms (default: %(default)s)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=1, help="runs of each algo x seed per side (default: 1)")
    p.add_argument("--updates", type=int, default=QUICK_SHAPE["updates"], help="updates per run (default: 50)")
    p.add_argument("--eval-every", type=int, default=QUICK_SHAPE["eval_every"], help="(default: 25)")
    p.add_argument("--eval-tasks", type=int, default=QUICK_SHAPE["eval_tasks"], help="(default: 50)")
    p.add_argument("--new-eval", type=int, default=0, metavar="K",
                   help="also time the working tree with issue #22's evaluation: all tasks, greedy + K samples")
    p.add_argument("--new-eval-every", type=int, default=10, help="its evaluation interval (default: 10)")
    p.add_argument("--skip-reference", action="store_true", help="time the working tree only")
    p.add_argument("--tree", type=Path, default=ROOT, help="the candidate source tree (default: this checkout)")
    args = p.parse_args(argv)

    bench = {**QUICK_SHAPE, "updates": args.updates, "eval_every": args.eval_every, "eval_tasks": args.eval_tasks}
    combos = [(QUICK_SHAPE["envs"][0], a, int(s)) for a in args.algos.split(",") for s in args.seeds.split(",")]
    sides: dict[str, tuple[Path, dict]] = {"new": (args.tree, bench)}
    with tempfile.TemporaryDirectory(prefix="bench-throughput-") as tmp:
        tmp_path = Path(tmp)
        if not args.skip_reference:
            sides["ref"] = (export_ref(args.ref, tmp_path / "ref"), bench)
        if args.new_eval:
            sides["new+eval"] = (args.tree, {**bench, "eval_tasks": 100, "eval_samples": args.new_eval,
                                        "eval_every": args.new_eval_every})
        print(f"runs: {len(combos)} x {args.repeats} per side; {args.updates} updates, eval every "
              f"{args.eval_every} on {args.eval_tasks} tasks/split; sides: {', '.join(sides)}; ref = {args.ref}",
              flush=True)
        cpu: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides)
        n = 0
        for r in range(args.repeats):
            for combo in combos:
                for name in (order if n % 2 == 0 else order[::-1]):  # ABBA: neither side always goes first
                    tree, cfg = sides[name]
                    out = run_once(tree, cfg, combo, tmp_path / f"{name}-{r}-{combo[1]}-{combo[2]}")
                    cpu[name].append(out["cpu"])
                    print(f"  {name:9s} {combo[1]:5s} seed {combo[2]}: {out['cpu']:6.1f} CPU-s "
                          f"(wall {out['wall']:5.1f} s; train {out['train_seconds']:5.1f} s, eval "
                          f"{out['eval_seconds']:4.1f} s)  {describe(out)}", flush=True)
                n += 1
        print()
        for name, values in cpu.items():
            med = statistics.median(values)
            print(f"{name:9s} median {med:6.1f} CPU-s per run (mean {statistics.mean(values):.1f}, n={len(values)}) "
                  f"= {3600 / med:5.1f} runs per CPU-core-hour")
        if "ref" in cpu:
            ratio = statistics.median(cpu["ref"]) / statistics.median(cpu["new"])
            print(f"\nspeed-up (ref / new, medians of CPU-s per run): {ratio:.2f}x")


if __name__ == "__main__":
    main()
