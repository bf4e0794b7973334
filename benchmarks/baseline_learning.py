"""Learning check of the baseline presets on the CPU testbed (issue #23): greedy success before and after training.

KeyRooms, the ``tiny-actions`` policy, the bench's ``quick`` training settings, one seed. For each preset it prints
greedy in-distribution success at update 0 and after ``--updates``, the rollout success curve, and (for ``ppo``) the
critic's explained variance per update, with the median seconds per update and of the critic's measuring pass
(``time/critic``). Nothing is asserted: the numbers go to docs/algorithms.md and docs/fairness.md.

Usage::

    python benchmarks/baseline_learning.py --algos ppo rloo --updates 50 --seed 0 [--lr 5e-4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def run(algo: str, updates: int, seed: int, out: Path, lr: float | None = None,
        overrides: dict[str, object] | None = None) -> dict[str, object]:
    """Train ``algo`` and return its before/after greedy success, curves and wall time (``lr``: override the quick
    preset's; ``overrides``: algorithm fields, added to the quick preset's ``algo_overrides``)."""  # noqa: D205
    from empg_gym.agents.config import TrainConfig
    from empg_gym.agents.evaluate import evaluate_policy
    from empg_gym.agents.trainer import Trainer
    from empg_gym.bench.presets import QUICK

    train = dict(QUICK.train)
    train["algo_overrides"] = {**dict(train.get("algo_overrides") or {}), **(overrides or {})}
    cfg = TrainConfig(**{**train, "env_id": "EMPG-KeyRooms-v0", "algo": algo, "seed": seed,
                         "updates": updates, "checkpoint_every": updates, **({"lr": lr} if lr else {})})
    trainer = Trainer(cfg, out / algo)

    def greedy() -> float:
        return evaluate_policy(trainer.policy, cfg, split="eval_in_distribution", n_tasks=QUICK.eval_tasks,
                               batch_size=QUICK.eval_tasks)["success_rate"]

    t0 = time.perf_counter()
    before = greedy()
    history = trainer.train()
    after = greedy()
    trainer.close()
    rows = [h for h in history if "rollout/success_rate" in h]
    return {
        "algo": algo, "seed": seed, "updates": updates, "lr": cfg.effective_lr, "overrides": overrides or {}, "greedy_before": before, "greedy_after": after,
        "gain": round(after - before, 3), "seconds": round(time.perf_counter() - t0, 1),
        "rollout_success": [round(h["rollout/success_rate"], 2) for h in rows],
        "vf_explained_var": [round(h["critic/vf_explained_var"], 2) for h in rows if "critic/vf_explained_var" in h],
        "update_s_median": round(statistics.median(h["time/update"] for h in rows), 3) if rows else None,
        "critic_s_median": round(statistics.median(h.get("time/critic", 0.0) for h in rows), 3) if rows else None,
    }


def main() -> None:
    """Parse the arguments, train each preset, print one JSON line per preset."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--algos", nargs="+", default=["ppo", "rloo", "reinforce_pp", "reinforce_pp_baseline",
                                                   "dr_grpo", "gspo", "cispo"])
    ap.add_argument("--updates", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--lr", type=float, default=None, help="override the quick preset's policy learning rate")
    ap.add_argument("--algo-set", nargs="*", default=[], metavar="FIELD=JSON",
                    help="algorithm overrides, e.g. clip_low=0.2 clip_high=0.28")
    args = ap.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="baseline_learning_"))
    for algo in args.algos:
        overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.algo_set)}
        print(json.dumps(run(algo, args.updates, args.seed, out, args.lr, overrides)), flush=True)  # noqa: T201


if __name__ == "__main__":
    main()
