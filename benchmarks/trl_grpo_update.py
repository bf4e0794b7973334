"""GRPO update throughput: empg-gym's Trainer vs TRL's ``GRPOTrainer``, same model, batch and sequence lengths.

Single-turn setting: each update draws ``--prompts`` step prompts of EMPG-ALFWorld-v0 (the agent env's prompt, in
the model's chat template), samples ``--group`` completions of exactly ``--new-tokens`` tokens for each (stop strings
and EOS off on both sides), and takes one optimizer step over them, accumulating gradients over micro-batches of
``--micro-batch`` sequences. Both sides: full fine-tuning in float32, no KL term (TRL ``beta=0``), one PPO epoch,
AdamW at lr 1e-6, the same gradient-checkpointing setting.

Each side runs in its own process (so peak RSS is its own); the sides alternate for ``--rounds`` rounds so a load
change on a shared machine hits both. Per update, the script separates generation (TRL's
``_generate_and_score_completions``, empg-gym's rollout) from the update (forward, backward, optimizer step) and
counts the tokens the update trains on (prompt + completion, per sequence). It prints medians over the updates after
the first (warm-up) and the ratio empg-gym / TRL (goal: update tokens/s >= 1.0x).

    pip install trl==1.16.0          # or: pip install -e .[compare]
    python benchmarks/trl_grpo_update.py --model smollm2-135m --prompts 1 --group 4 --new-tokens 32 --steps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

ENV_ID = "EMPG-ALFWorld-v0"


# ---------------------------------------------------------------------------------------------------- sides
def run_ours(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.steps`` single-turn GRPO updates of empg-gym's Trainer."""
    from empg_gym.agents.config import TrainConfig
    from empg_gym.agents.policy import GenerationConfig
    from empg_gym.agents.trainer import Trainer

    class FixedLengthTrainer(Trainer):
        """Every response is exactly ``max_new_tokens`` long, as on the TRL side."""

        def _generation(self, *, greedy: bool = False) -> GenerationConfig:
            return GenerationConfig(max_new_tokens=self.config.max_new_tokens, stop=(), stop_at_eos=False)

    n = args.prompts * args.group
    config = TrainConfig(
        env_id=ENV_ID, algo="grpo", algo_overrides={"use_kl": False}, model=args.model, lr=1e-6,
        updates=args.steps, tasks_per_update=args.prompts, group_size=args.group, max_steps=1,
        max_new_tokens=args.new_tokens, mini_batch_size=n, micro_batch_size=args.micro_batch,
        gradient_checkpointing=args.gradient_checkpointing, require_think=False, checkpoint_every=10**9,
        progress=False,
    )
    with tempfile.TemporaryDirectory() as out:
        trainer = FixedLengthTrainer(config, out)
        rows = []
        try:
            for _ in range(args.steps):
                m = trainer.train_step()
                trainer.update_step += 1
                tokens = m["time/tokens_per_s"] * m["time/update"]
                rows.append({"gen_s": m["time/rollout"], "update_s": m["time/update"], "tokens": round(tokens)})
        finally:
            trainer.close()
    return {"rows": rows}


def alfworld_prompts(tokenizer: Any, n: int) -> list[str]:
    """The first ``n`` train tasks' first step prompts, rendered in the chat template (as empg-gym encodes them)."""
    import empg_gym  # noqa: F401
    from empg_gym.wrappers import make_agent_env

    env = make_agent_env(ENV_ID, require_think=False)
    ids = env.unwrapped.task_ids("train")[:n]
    texts = []
    for task_id in ids:
        obs, _ = env.reset(options={"task_id": task_id})
        texts.append(tokenizer.apply_chat_template([{"role": "user", "content": obs}], tokenize=False,
                                                   add_generation_prompt=True))
    env.close()
    return texts


def run_trl(args: argparse.Namespace) -> dict[str, Any]:
    """Time ``args.steps`` updates of TRL's GRPOTrainer on the same model, batch and lengths."""
    try:
        from datasets import Dataset
        from transformers import TrainerCallback
        from trl import GRPOConfig, GRPOTrainer
    except ImportError as exc:
        raise SystemExit(f"TRL is not installed ({exc}); run `pip install trl==1.16.0` first.") from None

    from empg_gym.agents.models import load_model

    model, tokenizer = load_model(args.model)
    n = args.prompts * args.group
    prompts = alfworld_prompts(tokenizer, args.prompts * args.steps)
    dataset = Dataset.from_dict({"prompt": prompts})

    def reward(completions: list[str], **_: Any) -> list[float]:
        return [float("<action>" in c) for c in completions]

    rows: list[dict[str, float]] = []
    gen_seconds: list[float] = []

    class StepTimer(TrainerCallback):
        def on_train_begin(self, *a: Any, **k: Any) -> None:
            self.t = time.perf_counter()

        def on_step_end(self, *a: Any, **k: Any) -> None:
            now = time.perf_counter()
            gen = sum(gen_seconds)
            gen_seconds.clear()
            rows.append({"gen_s": gen, "update_s": now - self.t - gen})
            self.t = now

    with tempfile.TemporaryDirectory() as out:
        config = GRPOConfig(
            output_dir=out, use_cpu=True, bf16=False, learning_rate=1e-6, beta=0.0, num_iterations=1,
            num_generations=args.group, per_device_train_batch_size=args.micro_batch,
            gradient_accumulation_steps=n // args.micro_batch, generation_batch_size=n,
            max_completion_length=args.new_tokens, generation_kwargs={"min_new_tokens": args.new_tokens},
            temperature=1.0, max_steps=args.steps, logging_steps=1, report_to="none", save_strategy="no",
            gradient_checkpointing=args.gradient_checkpointing, shuffle_dataset=False, seed=0,
            disable_tqdm=True,
        )
        trainer = GRPOTrainer(model=model, reward_funcs=reward, args=config, train_dataset=dataset,
                              processing_class=tokenizer, callbacks=[StepTimer()])
        generate = trainer._generate_and_score_completions
        tokens: list[int] = []

        def timed_generate(*a: Any, **k: Any) -> Any:
            t0 = time.perf_counter()
            out_batch = generate(*a, **k)
            gen_seconds.append(time.perf_counter() - t0)
            sequences = out_batch["prompt_mask"].sum(1) + out_batch["completion_mask"].sum(1)
            tokens.append(int(sequences.sum()))
            return out_batch

        trainer._generate_and_score_completions = timed_generate
        trainer.train()
    for row, t in zip(rows, tokens, strict=False):
        row["tokens"] = t
    return {"rows": rows}


# --------------------------------------------------------------------------------------------------- driver
def side_main(args: argparse.Namespace) -> None:
    import resource

    import torch

    torch.manual_seed(0)
    result = run_ours(args) if args.side == "ours" else run_trl(args)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(result), flush=True)


def run_side(side: str, argv: list[str]) -> dict[str, Any]:
    proc = subprocess.run([sys.executable, __file__, "--side", side, *argv], capture_output=True, text=True,
                          env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode or not lines:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-6000:])
        raise SystemExit(f"the {side} side failed (exit {proc.returncode})")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--prompts", type=int, default=1, help="prompts (tasks) per update")
    ap.add_argument("--group", type=int, default=4, help="completions per prompt")
    ap.add_argument("--new-tokens", type=int, default=32, help="completion length (exact)")
    ap.add_argument("--micro-batch", type=int, default=4, help="sequences per forward/backward")
    ap.add_argument("--steps", type=int, default=3, help="updates per process (the first is warm-up)")
    ap.add_argument("--rounds", type=int, default=2, help="alternating processes per side")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--side", choices=("ours", "trl"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if (args.prompts * args.group) % args.micro_batch:
        ap.error("--micro-batch must divide prompts x group")
    if args.steps < 2:
        ap.error("--steps must be at least 2 (the first update is warm-up)")
    if args.side:
        side_main(args)
        return

    argv = sys.argv[1:]
    import trl  # noqa: F401  (fail before the first side runs)

    print(f"model={args.model} prompts={args.prompts} group={args.group} new_tokens={args.new_tokens} "
          f"micro_batch={args.micro_batch} steps={args.steps} rounds={args.rounds} "
          f"gradient_checkpointing={args.gradient_checkpointing} trl={trl.__version__}")
    stats: dict[str, dict[str, list[float]]] = {s: {"update": [], "e2e": [], "rss": []} for s in ("ours", "trl")}
    for r in range(args.rounds):
        for side in ("ours", "trl"):
            res = run_side(side, argv)
            rows = res["rows"][1:]
            upd = [row["tokens"] / row["update_s"] for row in rows]
            e2e = [row["tokens"] / (row["update_s"] + row["gen_s"]) for row in rows]
            stats[side]["update"] += upd
            stats[side]["e2e"] += e2e
            stats[side]["rss"].append(res["peak_rss_mb"])
            print(f"round {r} {side:4s}: threads={res['threads']} tokens/update="
                  f"{statistics.median(row['tokens'] for row in rows):.0f} update "
                  f"{statistics.median(upd):.0f} tok/s, end-to-end {statistics.median(e2e):.0f} tok/s, "
                  f"peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
    med = {s: {k: statistics.median(v) for k, v in d.items()} for s, d in stats.items()}
    for side in ("ours", "trl"):
        print(f"median {side:4s}: update {med[side]['update']:.0f} tok/s, end-to-end {med[side]['e2e']:.0f} tok/s, "
              f"peak RSS {med[side]['rss']:.0f} MB")
    print(f"ratio empg-gym/TRL: update tokens/s {med['ours']['update'] / med['trl']['update']:.2f}x (goal >= 1.0x), "
          f"end-to-end {med['ours']['e2e'] / med['trl']['e2e']:.2f}x, "
          f"peak RSS {med['ours']['rss'] / med['trl']['rss']:.2f}x")


if __name__ == "__main__":
    main()
