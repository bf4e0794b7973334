"""Runs per CPU-core-hour: the quick bench's runs, today's code against the working tree, side by side (issue #22).

What is timed is what a ``quick`` bench worker does: ``empg_gym.bench.runner._worker`` trains one ``env × algo ×
seed`` run of the quick preset's shape (tiny action-token policy on EMPG-KeyRooms-v0, 8 tasks × 8 trajectories per
update, 2 PPO epochs over mini-batches of 64, one thread) for ``--updates`` updates and evaluates it as the preset
does (before training, every ``--eval-every`` updates and after the last, on ``--eval-tasks`` tasks of both eval
splits, greedily). Each side runs the way its own bench ran runs: the reference trained every run in a fresh
process (imports paid per run); the working tree's bench keeps its worker processes (``runs_per_worker=0``), so its
side trains all of a block's runs in one process, imports paid once. A run's CPU time is user + system, from
``getrusage`` in the parent (a fresh process per run) or measured around each run in the child; the working tree's
import cost (the process's CPU time outside its runs) is spread over its runs. The ratio of the medians of CPU
seconds per run is the speed-up; the ratio of the totals is printed beside it.

The reference is a git commit (default: 5690680, the code issue #22 measured), exported with ``git archive`` into a
temporary folder; the candidate is this working tree. Both run the same fixed settings, those of the quick preset
at that commit (spelled out in :data:`QUICK_SHAPE`, so a later change of the preset does not move the yardstick),
and the script alternates the two sides block by block (ABBA order over ``--repeats``), so a machine that gets
busier or quieter during the benchmark weighs on both alike. The default is the whole 50-update run with its three
evaluations; ``--updates 10 --eval-every 5`` is a shorter proxy with the same per-update shape (a policy that has
not learned yet plays longer episodes, so a short proxy overstates the per-update cost of both sides alike).

``--new-eval K`` adds, for the working tree only, runs with the evaluation issue #22 asks for (every task of both
splits, greedily and ``K`` sampled episodes per task, every ``--new-eval-every`` updates) and prints their cost.

A run's cost follows its learning (a policy that wins early plays short episodes), and a change of float rounding
alone changes which runs learn early, so the median of 6 runs moves with a few of them (the runs behind the
README's figure ranged 10.7-20.9 CPU-s); that figure uses 5 seeds per algorithm. Measured results are in the README's
performance table.

Usage (from the repository root)::

    python benchmarks/bench_throughput.py                      # 3 algorithms x seeds 0, 1; 50 updates; ABBA
    python benchmarks/bench_throughput.py --seeds 0,1,2,3,4    # the README's figure (~30 min, ~95 s a reference run)
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

#: What the child process runs: bench-worker runs one after another, each followed by a JSON summary line.
CHILD = r"""
import json, resource, sys
spec = json.loads(sys.argv[1])
import empg_gym
from empg_gym.bench.presets import BenchConfig
from empg_gym.bench.runner import _worker
fields = {k: tuple(v) if isinstance(v, list) else v for k, v in spec["bench"].items()}
cfg = BenchConfig(**fields)
def cpu():
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime
for combo, folder in zip(spec["combos"], spec["folders"]):
    before = cpu()
    result = _worker(cfg, tuple(combo), folder, 1, "[bench]")
    evals = {f"{r['split']}@{r['update']}": {k: v for k, v in r["metrics"].items() if k.startswith("success")}
             for r in result["evals"]}
    print("RESULT " + json.dumps({"package": empg_gym.__file__, "combo": combo, "cpu": cpu() - before,
                                  "train_seconds": result["train_seconds"], "eval_seconds": result["eval_seconds"],
                                  "evals": evals}), flush=True)
"""


def export_ref(ref: str, dest: Path) -> Path:
    """Extract the tracked files of commit ``ref`` into ``dest`` (``git archive``); return ``dest``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest


def run_block(tree: Path, bench: dict, combos: list[tuple[str, str, int]], folder: Path,
              one_process: bool) -> list[dict]:
    """Run ``combos`` with ``tree`` first on the import path; return one summary per run with its CPU seconds.

    ``one_process``: all runs in one process (the import cost spread over them), else a fresh process per run.
    """
    if not one_process:
        return [run for combo in combos for run in run_block(tree, bench, [combo], folder, True)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    folders = [str(folder / f"{a}-{s}") for _, a, s in combos]
    spec = json.dumps({"bench": bench, "combos": [list(c) for c in combos], "folders": folders})
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", CHILD, spec], cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"runs {combos} in {tree} failed:\n{proc.stderr[-3000:]}")
    runs = [json.loads(ln[len("RESULT "):]) for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    for run in runs:
        if not Path(run["package"]).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"the child imported {run['package']}, not the tree {tree}; check PYTHONPATH.")
    total = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    overhead = max(0.0, total - sum(r["cpu"] for r in runs)) / len(runs)  # imports, model files, process start
    return [{**r, "cpu": r["cpu"] + overhead, "wall": wall / len(runs)} for r in runs]


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
    p.add_argument("--seeds", default="0,1", help="comma-separated seeds (default: %(default)s)")
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
        for r in range(args.repeats):  # ABBA over blocks: neither side always goes first
            for name in (order if r % 2 == 0 else order[::-1]):
                tree, cfg = sides[name]
                for out in run_block(tree, cfg, combos, tmp_path / f"{name}-{r}", one_process=name != "ref"):
                    cpu[name].append(out["cpu"])
                    algo, seed = out["combo"][1], out["combo"][2]
                    print(f"  {name:9s} {algo:5s} seed {seed}: {out['cpu']:6.1f} CPU-s (wall {out['wall']:5.1f} s; "
                          f"train {out['train_seconds']:5.1f} s, eval {out['eval_seconds']:4.1f} s)  {describe(out)}",
                          flush=True)
        print()
        for name, values in cpu.items():
            med = statistics.median(values)
            print(f"{name:9s} median {med:6.1f} CPU-s per run (mean {statistics.mean(values):.1f}, n={len(values)}) "
                  f"= {3600 / med:5.1f} runs per CPU-core-hour")
        if "ref" in cpu:
            ratio = statistics.median(cpu["ref"]) / statistics.median(cpu["new"])
            total = sum(cpu["ref"]) / sum(cpu["new"])
            print(f"\nspeed-up (ref / new): {ratio:.2f}x (medians of CPU-s per run), {total:.2f}x (totals)")

if __name__ == "__main__":
    main()
