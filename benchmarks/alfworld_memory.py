"""EMPG-ALFWorld-v0 memory over many distinct games: RSS after 100 and (with ``--resets 1000``) 1,000 resets.

One env resets to a game it has not played before every time (the train split, in manifest order with a stride
so task types and scenes mix), then plays ``--steps`` random admissible actions (seeded). Prints the process's
RSS at checkpoints, with the sizes of the engine's in-memory caches (compiled games, interned textworld facts).
Issue #15 measured 119 -> 264 MB over 146 resets before the interned facts were bounded. Usage::

    python benchmarks/alfworld_memory.py                         # 100 resets of procedural games
    python benchmarks/alfworld_memory.py --resets 1000           # slow: ~0.3-1 s per new game on 2 loaded cores
    python benchmarks/alfworld_memory.py --data DIR --resets 1000   # real games under DIR/json_2.1.1
"""

from __future__ import annotations

import argparse
import random
import resource
import time

import gymnasium as gym

import empg_gym  # noqa: F401
from empg_gym.envs.alfworld import engine as alfworld_engine

CHECKPOINTS = (1, 10, 50, 100, 200, 500, 1000, 2000)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def cache_sizes() -> str:
    import mementos.core

    translations = alfworld_engine.default_translation_cache()
    parts = [f"translations in memory {len(translations._items)} "
             f"({sum(map(len, translations._items.values())) / 2**20:.1f} MB)"]
    interned = getattr(alfworld_engine, "_INTERNED", None)
    if interned is not None:
        parts.append(f"interned facts {len(interned)}")
    parts.append(f"textworld's own interned facts {len(mementos.core._memento_cache)}")
    return ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="folder holding json_2.1.1 (default: procedural games)")
    parser.add_argument("--resets", type=int, default=100, help="distinct games to reset to (100 or 1000)")
    parser.add_argument("--steps", type=int, default=5, help="random admissible actions after each reset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    kwargs = {"data_path": args.data} if args.data else {"source": "procedural"}
    env = gym.make("EMPG-ALFWorld-v0", split="train", **kwargs)
    ids = env.unwrapped.task_ids("train")
    if args.resets > len(ids):
        parser.error(f"--resets {args.resets} is more than the {len(ids)} train games")
    stride = len(ids) // args.resets
    ids = [ids[(i * stride) % len(ids)] for i in range(args.resets)]
    rng = random.Random(args.seed)
    source = "real" if args.data else "procedural"
    print(f"EMPG-ALFWorld-v0: {args.resets} resets to distinct {source} train games, {args.steps} random steps each")
    print(f"  start        RSS {rss_mb():6.0f} MB")
    start = time.perf_counter()
    for n, task_id in enumerate(ids, 1):
        obs, info = env.reset(options={"task_id": task_id})
        for _ in range(args.steps):
            obs, reward, terminated, truncated, info = env.step(rng.choice(info["admissible_actions"]))
            if terminated:
                break
        if n in CHECKPOINTS or n == args.resets:
            print(f"  {n:4d} resets  RSS {rss_mb():6.0f} MB  ({time.perf_counter() - start:5.0f} s; {cache_sizes()})",
                  flush=True)
    env.close()


if __name__ == "__main__":
    main()
