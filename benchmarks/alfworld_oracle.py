"""EMPG-ALFWorld-v0 ``oracle_actions()`` off the walkthrough: time, memory, and whether the plan wins.

For each game (spread over the six task types) and each of ``--prefixes`` random prefixes: reset, play 1 to
``--max-prefix`` random admissible actions (seeded, so runs repeat), time ``oracle_actions()``, then play the plan
and check that it wins. Prints p50 / p95 / max of the oracle's time, the process's peak RSS before the first
oracle call and at the end, and how many plans won. Usage::

    python benchmarks/alfworld_oracle.py                              # procedural games (no data needed)
    python benchmarks/alfworld_oracle.py --data DIR --games 12        # real games under DIR/json_2.1.1
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import time
from collections import defaultdict

import gymnasium as gym

import empg_gym  # noqa: F401


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def spread_over_types(env, split: str, n: int) -> list[str]:
    """Return ``n`` task ids of ``split``, taking the task types in turn."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for task_id in env.unwrapped.task_ids(split):
        by_type[env.unwrapped.manifest.get(task_id).task_type].append(task_id)
    columns = [ids[:: max(1, len(ids) // n)] for _, ids in sorted(by_type.items())]
    out = [ids[i] for i in range(max(map(len, columns))) for ids in columns if i < len(ids)]
    return out[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding json_2.1.1 (default: procedural games)")
    parser.add_argument("--split", default="eval_in_distribution")
    parser.add_argument("--games", type=int, default=12)
    parser.add_argument("--prefixes", type=int, default=3, help="random prefixes per game")
    parser.add_argument("--max-prefix", type=int, default=10, help="longest random prefix")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    kwargs = {"data_path": args.data} if args.data else {"source": "procedural"}
    env = gym.make("EMPG-ALFWorld-v0", split=args.split, **kwargs)
    rng = random.Random(args.seed)
    ids = spread_over_types(env, args.split, args.games)
    times, plan_lens, prefix_lens, failures = [], [], [], []
    peak_before = None
    for task_id in ids:
        for _ in range(args.prefixes):
            obs, info = env.reset(options={"task_id": task_id})
            k = rng.randint(1, args.max_prefix)
            for _ in range(k):
                obs, reward, terminated, truncated, info = env.step(rng.choice(info["admissible_actions"]))
                if terminated:
                    break
            if terminated:
                continue  # a random prefix that wins leaves nothing to plan
            if peak_before is None:
                peak_before = peak_rss_mb()
            t = time.perf_counter()
            plan = env.unwrapped.oracle_actions()
            times.append(time.perf_counter() - t)
            plan_lens.append(len(plan))
            prefix_lens.append(k)
            for action in plan:
                obs, reward, terminated, truncated, info = env.step(action)
            if not info["won"]:
                failures.append((task_id, k, plan))
    env.close()

    q = statistics.quantiles(times, n=20, method="inclusive")
    source = "real" if args.data else "procedural"
    print(f"EMPG-ALFWorld-v0 oracle_actions() after random prefixes: {len(ids)} {source} games of {args.split}, "
          f"{len(times)} states (prefix 1-{args.max_prefix}, mean {statistics.mean(prefix_lens):.1f}; "
          f"plan mean {statistics.mean(plan_lens):.1f} commands)")
    print(f"  time   p50 {1000 * statistics.median(times):7.1f} ms   p95 {1000 * q[18]:7.1f} ms   "
          f"max {1000 * max(times):7.1f} ms")
    print(f"  memory peak RSS {peak_before:.0f} MB before the first oracle call, {peak_rss_mb():.0f} MB at the end "
          f"(RSS now {rss_mb():.0f} MB)")
    print(f"  plans that won: {len(times) - len(failures)} / {len(times)}")
    for failure in failures:
        print("  FAILED", failure)


if __name__ == "__main__":
    main()
