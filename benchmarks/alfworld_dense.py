"""EMPG-ALFWorld-v0 step time with ``reward_mode="dense"`` against the sparse default.

Plays the oracle's episode on ``--games`` procedural games (spread over the six task types) in a sparse and a dense
env, alternating the two step by step so that both see the same machine load, and prints the median step time of
each and their ratio (the dense env reads the engine's facts and scores the goal's stages after every valid step).
Usage::

    python benchmarks/alfworld_dense.py --games 6 --repeats 2
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym

import empg_gym  # noqa: F401
from empg_gym.envs.alfworld.oracle import World
from empg_gym.envs.alfworld.potential import goal_progress


def spread_over_types(env, split: str, n: int) -> list[str]:
    """Return ``n`` task ids of ``split``, taking the task types in turn."""
    by_type: dict[str, list[str]] = {}
    for task_id in env.unwrapped.task_ids(split):
        by_type.setdefault(env.unwrapped.manifest.get(task_id).task_type, []).append(task_id)
    columns = sorted(by_type.values())
    return [ids[i] for i in range(n) for ids in columns if i < len(ids)][:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="eval_in_distribution")
    parser.add_argument("--games", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2, help="episodes per game and mode")
    args = parser.parse_args()

    envs = {mode: gym.make("EMPG-ALFWorld-v0", source="procedural", split=args.split, reward_mode=mode)
            for mode in ("sparse", "dense")}
    times: dict[str, list[float]] = {mode: [] for mode in envs}
    potential_times: list[float] = []
    for task_id in spread_over_types(envs["sparse"], args.split, args.games):
        for _ in range(args.repeats):
            for env in envs.values():
                env.reset(options={"task_id": task_id})
            plan = envs["sparse"].unwrapped.oracle_actions()
            for action in plan:
                for mode, env in envs.items():
                    t0 = time.perf_counter()
                    env.step(action)
                    times[mode].append(time.perf_counter() - t0)
                u = envs["dense"].unwrapped
                if u._goal is not None and not u._won_flag:
                    t0 = time.perf_counter()
                    goal_progress(World.from_facts(u._engine.facts(), {}), u._goal)
                    potential_times.append(time.perf_counter() - t0)
    sparse, dense = (statistics.median(times[m]) * 1e3 for m in ("sparse", "dense"))
    print(f"{len(times['sparse'])} steps per mode over {args.games} games x {args.repeats} episodes")
    print(f"median step: sparse {sparse:.2f} ms, dense {dense:.2f} ms, ratio {dense / sparse:.3f}")
    print(f"median potential alone (facts + stages): {statistics.median(potential_times) * 1e3:.3f} ms")
    for env in envs.values():
        env.close()


if __name__ == "__main__":
    main()
