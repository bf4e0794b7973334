"""What each EMPG uncertainty signal costs: median wall time per update, and its ratio to Shannon entropy.

One trainer per signal (``empg.uncertainty`` = entropy, renyi2, one_minus_p, mc_dropout, lora_ensemble; K = 4) on
the quick bench's setting: the tiny action-token policy on EMPG-KeyRooms-v0, 8 tasks x 8 trajectories, 2 PPO epochs,
seed 0 (``empg_gym.bench.presets.QUICK``). The trainers take their updates in turn (update 1 of every signal, then
update 2, ...), so a load change on a shared machine hits all of them alike; every signal starts from the same
policy and the same first rollout. Update 1 is a warm-up and is left out of the medians. A time per update is a whole
``train_step``: rollout, the signal's extra passes (``time/uncertainty``), advantages and the PPO update. After update
1 the policies differ, and so do their episode lengths: the time per step sample (an update's time over its
``rollout/num_samples``) compares them at equal work; ratios are to ``entropy``'s medians.

``--smollm2`` adds rows for the embedded SmolLM2-135M with a rank-8 LoRA adapter at tiny sizes (1 task x 2
trajectories of at most 2 steps, 6 new tokens per step, response opened by ``<action>``), same env.

Usage (from the repository root, with empg-gym installed)::

    python benchmarks/empg_uncertainty_cost.py                 # ~2 min on 2 CPU cores
    python benchmarks/empg_uncertainty_cost.py --updates 8 --smollm2
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

SIGNALS = ("entropy", "renyi2", "one_minus_p", "mc_dropout", "lora_ensemble")

SMOLLM2 = {"model": "smollm2-135m", "lora_rank": 8, "lr": 1e-4, "tasks_per_update": 1, "group_size": 2,
           "max_steps": 2, "max_new_tokens": 6, "history_length": 0, "prompt_template": "{observation}",
           "require_think": False, "response_prefix": "<action>", "mini_batch_size": 16, "micro_batch_size": 4,
           "ppo_epochs": 1, "progress": False}


def _configs(train: dict[str, Any], env_id: str, updates: int, samples: int) -> dict[str, Any]:
    from empg_gym.agents.config import TrainConfig

    overrides = dict(train.get("algo_overrides", {}))
    return {s: TrainConfig(**{**train, "env_id": env_id, "algo": "empg", "seed": 0, "updates": updates,
                              "checkpoint_every": updates + 1, "eval_tasks": 0, "eval_every": 0,
                              "algo_overrides": {**overrides, "empg.uncertainty": s,
                                                 "empg.uncertainty_samples": samples}})
            for s in SIGNALS}


def measure(train: dict[str, Any], env_id: str, updates: int, samples: int) -> dict[str, dict[str, list[float]]]:
    """Return, per signal, the wall seconds of each update and of its uncertainty passes."""
    from empg_gym.agents.trainer import Trainer

    times: dict[str, dict[str, list[float]]] = {s: {"update": [], "uncertainty": [], "per_sample": []}
                                                for s in SIGNALS}
    with tempfile.TemporaryDirectory() as out:
        trainers = {s: Trainer(cfg, f"{out}/{s}", log=lambda line: None)
                    for s, cfg in _configs(train, env_id, updates, samples).items()}
        for _ in range(updates):
            for s, trainer in trainers.items():
                t0 = time.perf_counter()
                metrics = trainer.train_step()
                times[s]["update"].append(time.perf_counter() - t0)
                times[s]["per_sample"].append(times[s]["update"][-1] / max(metrics["rollout/num_samples"], 1.0))
                times[s]["uncertainty"].append(metrics.get("time/uncertainty", 0.0))
                trainer.update_step += 1
        for trainer in trainers.values():
            trainer.close()
    return times


def table(title: str, times: dict[str, dict[str, list[float]]]) -> str:
    """Medians over updates 2.. and the ratio of each signal's median to entropy's."""
    def med(xs: list[float]) -> float:
        return statistics.median(xs[1:] if len(xs) > 1 else xs)

    base, base_sample = med(times["entropy"]["update"]), med(times["entropy"]["per_sample"])
    lines = [title, f"{'signal':<14} {'median s/update':>16} {'ratio':>6} {'median ms/step sample':>21} {'ratio':>6}"
                    f" {'median s extra passes':>22} {'updates timed':>14}"]
    for s in SIGNALS:
        m, ms = med(times[s]["update"]), med(times[s]["per_sample"])
        lines.append(f"{s:<14} {m:>16.3f} {m / base:>6.2f} {1000 * ms:>21.2f} {ms / base_sample:>6.2f}"
                     f" {med(times[s]['uncertainty']):>22.3f} {max(len(times[s]['update']) - 1, 1):>14d}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=6, help="updates per signal (the first is a warm-up)")
    parser.add_argument("--samples", type=int, default=4, help="K: dropout passes / ensemble members")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the quick bench uses 1 per run)")
    parser.add_argument("--smollm2", action="store_true", help="also time SmolLM2-135M + LoRA at tiny sizes")
    parser.add_argument("--smollm2-updates", type=int, default=3)
    args = parser.parse_args()

    import torch

    from empg_gym.bench.presets import QUICK

    torch.set_num_threads(args.threads)
    quick = QUICK
    train = dict(quick.train)
    print(f"quick setting: {quick.envs[0]}, model {train['model']}, {train['tasks_per_update']} tasks x "
          f"{train['group_size']} trajectories, {train['ppo_epochs']} PPO epochs, K = {args.samples}, "
          f"{args.threads} torch thread(s)", flush=True)
    print(table(f"tiny-actions on {quick.envs[0]}, {args.updates} updates per signal",
                measure(train, quick.envs[0], args.updates, args.samples)), flush=True)
    if args.smollm2:
        print(table(f"smollm2-135m + LoRA r=8 on {quick.envs[0]}, {args.smollm2_updates} updates per signal",
                    measure(SMOLLM2, quick.envs[0], args.smollm2_updates, args.samples)), flush=True)


if __name__ == "__main__":
    main()
