"""Memory of `empg-gym bench` from one run to the next (issue #15, item 6).

Runs a small bench (one algorithm, five seeds, so five runs back to back) and prints the bench process's resident
memory (RSS) after runs 1, 2 and 5, in two modes: every run in a fresh worker process (``processes=1``, what the
presets use) and every run inside the bench process (``processes=0``). The goal: growth after the first run stays
under 200 MB.

    python benchmarks/bench_memory.py                          # the tiny action-token policy on KeyRooms (~2 min)
    python benchmarks/bench_memory.py --model smollm2-135m     # SmolLM2 + LoRA on ALFWorld (~15 min on 2 cores)
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile

import psutil

from empg_gym.bench import BenchConfig, run_bench
from empg_gym.bench.presets import QUICK, QUICK_PIPELINE

MB = 1 << 20


def small_bench(model: str, processes: int) -> BenchConfig:
    """Five one-update runs of one algorithm: the tiny policy on KeyRooms, or SmolLM2 on ALFWorld."""
    if model == "tiny-actions":
        train = {**dict(QUICK.train), "tasks_per_update": 2, "group_size": 4}
        base = dataclasses.replace(QUICK, eval_tasks=4, eval_every=0, train=train, pipeline_check=None)
    else:
        base = BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in QUICK_PIPELINE.items()})
        base = dataclasses.replace(base, train={**base.train, "model": model})
    return dataclasses.replace(base, algos=("empg",), seeds=(0, 1, 2, 3, 4), updates=1, processes=processes,
                               threads_per_process=None)


def measure(model: str, processes: int) -> dict[int, float]:
    """Return the bench process's RSS in MB after each finished run."""
    me = psutil.Process()
    rss: dict[int, float] = {}

    def log(line: str) -> None:
        if ": done in " in line:
            rss[len(rss) + 1] = me.memory_info().rss / MB

    with tempfile.TemporaryDirectory() as out:
        run_bench(small_bench(model, processes), out, log=log)
    return rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny-actions", help="tiny-actions (default) or smollm2-135m")
    args = parser.parse_args()
    print(f"bench process RSS after each run ({args.model}, 5 one-update runs):")
    for processes, name in ((1, "each run in a fresh worker process"), (0, "every run in the bench process")):
        rss = measure(args.model, processes)
        growth = rss[5] - rss[1]
        print(f"  {name:<36} run 1 {rss[1]:7.0f} MB, run 2 {rss[2]:7.0f} MB, run 5 {rss[5]:7.0f} MB; "
              f"growth after run 1: {growth:+.0f} MB ({'ok' if growth < 200 else 'over'} the 200 MB goal)")


if __name__ == "__main__":
    main()
