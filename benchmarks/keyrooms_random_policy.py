"""How often a uniformly random policy wins KeyRooms and KeyRoomsHard: the chance that a group has a winner at all.

A policy-gradient algorithm that learns from group-relative advantages (GRPO, DAPO, EMPG) gets no signal from a
group whose trajectories all lost, so the untrained policy's win rate sets how much there is to learn from at first.
The tiny action-token policy starts uniform over the env's five actions (:func:`empg_gym.agents.tiny.tiny_action_model`),
so this plays that policy: every action drawn uniformly from ``action_vocabulary`` until the episode ends, through the
real env (its step budget included).

Usage (from the repository root)::

    python benchmarks/keyrooms_random_policy.py                # 100 layouts x 20 episodes per split and env

Measured (seed 0, the first 100 layouts of each split): win rate on train, standard 0.077 (P(a group of 8 has a
winner) 0.26), hard 0.013 (0.08); in distribution 0.036 (0.17) and 0.008 (0.05); out of distribution 0 for both.
"""

from __future__ import annotations

import argparse
import random

import gymnasium as gym

import empg_gym  # noqa: F401  (registers the ids)


def win_rate(env_id: str, split: str, layouts: int, episodes: int, seed: int) -> tuple[float, float]:
    """Return ``(win rate, P(a group of 8 episodes of one layout has a winner))`` of the uniform policy."""
    env = gym.make(env_id, split=split)
    rng = random.Random(seed)
    actions = env.unwrapped.action_vocabulary
    task_ids = env.unwrapped.task_ids()[:layouts]
    wins, groups_with_winner = 0, 0.0
    for task_id in task_ids:
        won = 0
        for _ in range(episodes):
            env.reset(options={"task_id": task_id})
            done = False
            while not done:
                _, reward, terminated, truncated, _ = env.step(rng.choice(actions))
                done = terminated or truncated
            won += reward > 0
        wins += won
        groups_with_winner += 1 - (1 - won / episodes) ** 8
    env.close()
    return wins / (len(task_ids) * episodes), groups_with_winner / len(task_ids)


def main(argv: list[str] | None = None) -> None:
    """Print the uniform policy's win rate per env and split."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--layouts", type=int, default=100, help="layouts per split (default: %(default)s)")
    p.add_argument("--episodes", type=int, default=20, help="episodes per layout (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for env_id in ("EMPG-KeyRooms-v0", "EMPG-KeyRoomsHard-v0"):
        for split in ("train", "eval_in_distribution", "eval_out_of_distribution"):
            rate, group = win_rate(env_id, split, args.layouts, args.episodes, args.seed)
            print(f"{env_id:22s} {split:25s} win rate {rate:.3f}   P(a group of 8 has a winner) {group:.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
