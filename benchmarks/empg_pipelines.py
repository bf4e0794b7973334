"""How far apart our ``empg`` and ``empg-verl-agent`` (verl-agent / ARLArena's pipeline) are on real rollout batches.

Both run EMPG (k = k' = 1, zeta = 0.05) over GRPO. ``empg`` counts each trajectory once in GRPO's group statistics
and subtracts the invalid-format penalty from the advantage after EMPG; ``empg-verl-agent`` runs the statistics over
every step row and subtracts the penalty from the reward before GRPO (docs/algorithms.md, "EMPG as its authors' code
runs it"). This script plays rollout batches on EMPG-KeyRooms-v0 with the quick bench's tiny action-token policy
and settings (``empg_gym.bench.presets.QUICK``: 8 tasks x 8 trajectories), optionally after training the policy with
``empg`` for a few updates (so that groups mix wins and losses), computes both advantages on each batch and prints,
per batch: the Pearson correlation, the largest absolute difference, the fraction of steps whose sign differs
(among steps where either is nonzero, and among steps where both exceed 0.1 in size), the batch's steps, malformed
steps and groups with mixed outcomes (the only groups where GRPO gives nonzero advantages).

Usage (from the repository root, with empg-gym installed)::

    python benchmarks/empg_pipelines.py                       # update 0 and after 10 updates, ~1 min on 2 cores
    python benchmarks/empg_pipelines.py --train-updates 0 20 --batches 2
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any


def compare(A: Any, B: Any) -> dict[str, float]:
    """Correlation, max |A - B|, mean |A - B| and the fraction of sign flips of two ``[N]`` advantage vectors.

    ``sign_flip_frac`` counts the steps where either is nonzero; ``big_flip_frac`` the steps where both exceed 0.1
    in size (a flip of a near-zero advantage moves little).

    Example:
        >>> import torch
        >>> m = compare(torch.tensor([1.0, -1.0, 0.05]), torch.tensor([1.0, 1.0, -0.05]))
        >>> round(m["max_abs_diff"], 3), round(m["sign_flip_frac"], 3), m["big_flip_frac"]
        (2.0, 0.667, 0.5)
    """
    import torch

    A, B = A.double(), B.double()
    a, b = A - A.mean(), B - B.mean()
    denom = float(a.norm() * b.norm())
    either = (A != 0) | (B != 0)
    flips = (torch.sign(A) != torch.sign(B)) & either
    big = (A.abs() > 0.1) & (B.abs() > 0.1)
    return {"corr": float((a * b).sum()) / denom if denom > 0 else float("nan"),
            "max_abs_diff": float((A - B).abs().max()), "mean_abs_diff": float((A - B).abs().mean()),
            "sign_flip_frac": float(flips.sum()) / max(int(either.sum()), 1),
            "big_flip_frac": float((flips & big).sum()) / max(int(big.sum()), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--train-updates", type=int, nargs="+", default=[0, 10],
                        help="measure after this many empg updates (ascending)")
    parser.add_argument("--batches", type=int, default=1, help="rollout batches measured at each point")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    from empg_gym.agents.algorithms import compute_advantages, get_algorithm
    from empg_gym.agents.config import TrainConfig
    from empg_gym.agents.policy import GenerationConfig
    from empg_gym.agents.rollout import RolloutConfig, collect_rollouts
    from empg_gym.agents.trainer import Trainer, to_step_batch
    from empg_gym.bench.presets import QUICK

    torch.set_num_threads(1)
    cfg = TrainConfig(**{**QUICK.train, "env_id": "EMPG-KeyRooms-v0", "algo": "empg", "seed": args.seed,
                         "updates": max(args.train_updates) + 1, "checkpoint_every": 10**6, "eval_tasks": 0,
                         "eval_every": 0})
    ours, theirs = get_algorithm("empg"), get_algorithm("empg-verl-agent")
    print(f"{'updates':>7} {'batch':>5} {'steps':>5} {'malformed':>9} {'mixed groups':>12} {'corr':>6} "
          f"{'max|diff|':>9} {'mean|diff|':>10} {'sign flips':>10} {'flips |A|>0.1':>13}")
    with tempfile.TemporaryDirectory() as out:
        trainer = Trainer(cfg, out, log=lambda line: None)
        rollout_cfg = RolloutConfig(group_size=cfg.group_size, split=cfg.split, reward_scale=cfg.reward_scale,
                                    max_steps=cfg.max_steps, progress=False,
                                    generation=GenerationConfig(max_new_tokens=cfg.max_new_tokens,
                                                                temperature=cfg.temperature))
        done = 0
        for target in sorted(args.train_updates):
            while done < target:
                trainer.train_step()
                trainer.update_step += 1
                done += 1
            for k in range(args.batches):
                rollout = collect_rollouts(trainer.policy, trainer.envs, rollout_cfg, seed=10**6 + 7919 * target + k)
                batch, _, _ = to_step_batch(rollout.samples, cfg.reward_scale)
                A_ours, _ = compute_advantages(ours, batch)
                A_theirs, _ = compute_advantages(theirs, batch)
                m = compare(A_ours, A_theirs)
                won = batch.reward > 0
                mixed = sum(int(won[batch.group_id == g].any() and (~won[batch.group_id == g]).any())
                            for g in batch.group_id.unique())
                print(f"{target:>7} {k:>5} {batch.size:>5} {int((batch.format_penalty > 0).sum()):>9} "
                      f"{mixed:>5} of {len(batch.group_id.unique()):<4} {m['corr']:>6.3f} {m['max_abs_diff']:>9.3f} "
                      f"{m['mean_abs_diff']:>10.3f} {m['sign_flip_frac']:>10.3f} {m['big_flip_frac']:>13.3f}")
        trainer.close()


if __name__ == "__main__":
    main()
