"""The verl tests' harness: a stand-in for verl's LLM server manager and helpers to run ``GymAgentLoop``.

These tests run in the verl venv (``make test-verl`` sets ``EMPG_GYM_REQUIRE_VERL=1``, so a verl that cannot import
fails them); in the main venv, without verl, every module here skips. This file imports verl only when it can.
"""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

#: Response budget of the stand-in's loop (tokens; the byte-level tokenizer spends one per byte).
RESPONSE_LENGTH = 400


@pytest.fixture(scope="session")
def harness() -> SimpleNamespace:
    """``Server``, ``make_loop``, ``row``, ``play``, ``oracle_script``, ``tokenizer``: see their docstrings."""
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.workers.rollout.replica import TokenOutput

    from empg_gym.agents.models import byte_level_tokenizer
    from empg_gym.agents.trainer import make_envs
    from empg_gym.integrations.verl import GymAgentLoop, LoopSettings

    tokenizer = byte_level_tokenizer()

    class Server:
        """Stand-in for verl's ``LLMServerClient`` (same ``generate`` signature, verl's ``TokenOutput``).

        ``script`` is a list of response texts handed out in call order, or ``fn(prompt_text, request_id)``.
        Log-probs are ``-0.01 × (position + 1)``. Like verl's client, the output's extra fields report the weight
        version (``global_steps``, and ``min_``/``max_global_steps``): ``version(call_index)``, default 1.
        """

        def __init__(self, script: Any, delay: float = 0.0, version: Any = lambda k: 1) -> None:
            self.script = script
            self.delay = delay
            self.version = version
            self.calls: list[dict[str, Any]] = []

        async def generate(self, request_id, *, prompt_ids, sampling_params, image_data=None, video_data=None,
                           audio_data=None, mm_processor_kwargs=None, **kwargs) -> TokenOutput:
            k = len(self.calls)
            prompt = tokenizer.decode(prompt_ids)
            self.calls.append({"request_id": request_id, "prompt": prompt, "sampling_params": sampling_params,
                               **kwargs})
            if self.delay:
                await asyncio.sleep(self.delay)
            text = self.script(prompt, request_id) if callable(self.script) else self.script[k]
            ids = tokenizer.encode(text, add_special_tokens=False) + [tokenizer.eos_token_id]
            v = self.version(k)
            return TokenOutput(token_ids=ids, log_probs=[-0.01 * (i + 1) for i in range(len(ids))], num_preempted=0,
                               extra_fields={"global_steps": v, "min_global_steps": v, "max_global_steps": v,
                                             "num_cached_tokens": 0})

    def make_loop(server: Any, prompt_length: int = 8192, extra_config: dict | None = None, **settings: Any) -> GymAgentLoop:
        """Build the loop as verl's worker does (hydra passes these keyword arguments); call inside an event loop."""
        config = OmegaConf.create({**(extra_config or {}), "actor_rollout_ref": {"rollout": {"prompt_length": prompt_length,
                                                                     "response_length": RESPONSE_LENGTH}}})
        return GymAgentLoop(trainer_config=DictConfigWrap(config), server_manager=server, tokenizer=tokenizer,
                            processor=None, dataset_cls=RLHFDataset, data_config=DictConfigWrap(OmegaConf.create({})),
                            **settings)

    def row(env_id: str, task_id: str, seed: int = 0, session: int = 0, uid: str = "u0", **env_kwargs: Any) -> dict:
        """The keyword arguments verl's v1 worker passes to ``run`` for one sample of an exported row."""
        return {"extra_info": {"index": 0, "env_id": env_id, "task_id": task_id, "seed": seed,
                               "env_kwargs": json.dumps(env_kwargs)},
                "uid": uid, "session_id": session, "agent_name": "empg_gym", "raw_prompt": [], "index": 0}

    def play(server: Any, rows: list[dict], **settings: Any) -> list[list[Any]]:
        """Run one ``GymAgentLoop`` per row concurrently on one event loop; return each run's outputs."""
        async def main() -> list[list[Any]]:
            return list(await asyncio.gather(*[make_loop(server, **settings).run({"temperature": 1.0}, **r)
                                               for r in rows]))

        return asyncio.run(main())

    def oracle_script(env_id: str, task_id: str, seed: int) -> tuple[list[str], str]:
        """Well-formed responses that play the env's oracle plan, and the env's first step prompt."""
        env = make_envs(LoopSettings().train_config(env_id, {}), 1)[0]
        try:
            prompt, _ = env.reset(seed=seed, options={"task_id": task_id})
            plan = env.unwrapped.oracle_actions()
        finally:
            env.close()
        wrap = (lambda a: a) if env_id == "EMPG-DeepSearch-v0" else (lambda a: f"<action>{a}</action>")
        return [f"<think>Step {k} of the plan.</think>{wrap(a)}" for k, a in enumerate(plan)], prompt

    return SimpleNamespace(Server=Server, make_loop=make_loop, row=row, play=play, oracle_script=oracle_script,
                           tokenizer=tokenizer, response_length=RESPONSE_LENGTH)
