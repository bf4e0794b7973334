"""The tiny policy's update pass: transformers' Llama against :class:`LeanLlamaForCausalLM`, side by side.

What is timed is what one mini-batch of a ``quick`` bench update costs in the model: ``LLMPolicy.score`` of 64 step
rows with gradients, then the backward pass, on one thread. The rows are a real first rollout of the quick preset
(tiny action model on EMPG-KeyRooms-v0, 8 tasks x 8 trajectories), cut into the update's mini-batches of 64. Both
models hold the same weights (the output head is randomised, as a trained one would be, so no logit is trivially
equal); the two alternate round by round, and the script prints the median milliseconds per mini-batch of each,
their ratio, and the largest differences of log-probs and gradients between them (float rounding; a gradient's
relative to its tensor's largest entry).

Usage (from the repository root)::

    python benchmarks/bench_lean_llama.py             # 7 rounds
    python benchmarks/bench_lean_llama.py --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import LlamaForCausalLM

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from empg_gym.agents.config import TrainConfig  # noqa: E402
from empg_gym.agents.policy import LLMPolicy  # noqa: E402
from empg_gym.agents.trainer import Trainer, mini_batches, to_step_batch  # noqa: E402
from empg_gym.bench import get_preset  # noqa: E402


def first_rollout() -> tuple[list, list, LLMPolicy]:
    """The quick preset's first rollout on EMPG-KeyRooms-v0 (seed 0): its rows and the policy that played it."""
    cfg = TrainConfig(**{**get_preset("quick").train, "env_id": "EMPG-KeyRooms-v0", "algo": "grpo", "seed": 0,
                         "progress": False})
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, Path(tmp))
        samples, _ = trainer._collect()
        trainer.close()
    _, prompts, responses = to_step_batch(samples, cfg.reward_scale)
    return prompts, responses, trainer.policy


def transformers_copy(model: torch.nn.Module) -> LlamaForCausalLM:
    """A ``LlamaForCausalLM`` with ``model``'s weights and output head."""
    plain = LlamaForCausalLM(model.config)
    head = model.get_output_embeddings()
    plain.lm_head = torch.nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    plain.load_state_dict(model.state_dict())
    return plain


def update_pass(policy: LLMPolicy, batches: list[tuple[list, list]]) -> tuple[float, list, dict]:
    """Score + backward every mini-batch; return (CPU ms per mini-batch, log-probs, summed gradients)."""
    policy.model.train()
    policy.model.zero_grad(set_to_none=True)
    log_probs = []
    start = time.process_time()
    for prompts, responses in batches:
        scores = policy.score(prompts, responses)
        (scores.log_probs.sum() + 0.01 * scores.entropies.sum()).backward()
        log_probs.append(scores.log_probs.detach())
    ms = (time.process_time() - start) / len(batches) * 1e3
    grads = {n: p.grad.clone() for n, p in policy.model.named_parameters() if p.grad is not None}
    return ms, log_probs, grads


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=7, help="timed rounds per model (default: %(default)s)")
    args = p.parse_args()
    torch.set_num_threads(1)
    prompts, responses, policy = first_rollout()
    lean = policy.model
    with torch.no_grad():
        lean.get_output_embeddings().weight.normal_(0, 0.3, generator=torch.Generator().manual_seed(0))
    sides = {"transformers": LLMPolicy(transformers_copy(lean), policy.tokenizer), "lean": policy}
    order = mini_batches(len(prompts), 64, torch.Generator().manual_seed(0))
    batches = [([prompts[i] for i in idx], [responses[i] for i in idx]) for idx in order]
    print(f"{len(prompts)} step rows in {len(batches)} mini-batches of ~64; {args.rounds} rounds, one thread")
    base = update_pass(sides["transformers"], batches)
    other = update_pass(sides["lean"], batches)
    dlogp = max(float((a - b).abs().max()) for a, b in zip(base[1], other[1], strict=True))
    dgrad = max(float((base[2][k] - other[2][k]).abs().max() / base[2][k].abs().max()) for k in base[2])
    print(f"largest difference: log-prob {dlogp:.1e}; gradient (summed over the mini-batches) {dgrad:.1e} of the "
          "tensor's largest entry")
    times: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(args.rounds):
        for name, pol in sides.items():
            times[name].append(update_pass(pol, batches)[0])
    medians = {name: statistics.median(v) for name, v in times.items()}
    for name, m in medians.items():
        print(f"{name:>12}: {m:6.2f} ms per mini-batch (score + backward; median of {args.rounds})")
    print(f"ratio (transformers / lean): {medians['transformers'] / medians['lean']:.2f}x")


if __name__ == "__main__":
    main()
