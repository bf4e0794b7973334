"""Step-prompt lengths per env family, in tokens, as the verl agent loop sends them (issue #21, 2.9).

Plays oracle episodes on each family's eval splits through the agent-facing env that ``GymAgentLoop`` builds
(``LoopSettings()``: history 2, ``<think>``/``<action>`` format), renders every step prompt as one chat user turn with
the tokenizer's template, and prints the median, 99th percentile and maximum token counts. ``examples/verl/common.sh``
sets ``data.max_prompt_length`` per family from these numbers; the agent loop warns when a prompt is still cut.

The tokenizer is the embedded SmolLM2's (a 49k BPE; no hub access here); Qwen2.5's 152k vocabulary gives similar or
shorter counts on English text, so treat the numbers as a guide with margin.

    .venv-verl/bin/python benchmarks/verl_prompt_lengths.py --episodes 20   # needs the verl venv (LoopSettings)
"""

from __future__ import annotations

import argparse
import statistics

from empg_gym.agents.models import load_model
from empg_gym.agents.trainer import make_envs
from empg_gym.integrations.verl.episodes import LoopSettings

FAMILIES = {"alfworld": "EMPG-ALFWorld-v0", "webshop": "EMPG-WebShop-v0", "deepsearch": "EMPG-DeepSearch-v0"}


def prompt_lengths(env_id: str, tokenizer, episodes: int) -> list[int]:
    settings = LoopSettings()
    env = make_envs(settings.train_config(env_id, {}), 1)[0]
    lengths = []
    try:
        for split in ("eval_in_distribution", "eval_out_of_distribution"):
            for i, task_id in enumerate(list(env.unwrapped.task_ids(split))[:episodes]):
                prompt, _ = env.reset(seed=i, options={"task_id": task_id})
                plan = env.unwrapped.oracle_actions()
                for action in [*plan, None]:
                    text = tokenizer.apply_chat_template(settings.messages(prompt), add_generation_prompt=True,
                                                         tokenize=False)
                    lengths.append(len(tokenizer(text, add_special_tokens=False)["input_ids"]))
                    if action is None:
                        break
                    prompt, _, terminated, truncated, _ = env.step(f"<think>ok</think><action>{action}</action>")
                    if terminated or truncated:
                        break
    finally:
        env.close()
    return lengths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--episodes", type=int, default=20, help="oracle episodes per eval split")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = parser.parse_args()
    _, tokenizer = load_model("smollm2-135m")
    print(f"{'family':<11} {'prompts':>7} {'median':>7} {'p99':>6} {'max':>6}   (tokens, SmolLM2 tokenizer)")
    for family in args.families:
        n = sorted(prompt_lengths(FAMILIES[family], tokenizer, args.episodes))
        p99 = n[min(len(n) - 1, int(0.99 * len(n)))]
        print(f"{family:<11} {len(n):>7} {statistics.median(n):>7.0f} {p99:>6} {n[-1]:>6}")


if __name__ == "__main__":
    main()
