"""``GymAgentLoop``: verl's agent loop ``empg_gym`` — one empg-gym episode per sample, one verl output per env step.

verl (0.9.1) calls ``await loop.run(sampling_params, **row)`` once per sample, with the dataset row's fields as
keyword arguments. This loop reads the episode from ``row["extra_info"]`` (see
:mod:`~empg_gym.integrations.verl.episodes`), takes an env from the worker's pool, resets it, and plays:

1. the step prompt is the env's observation, built by the same env our trainer builds
   (:func:`empg_gym.agents.trainer.make_envs`: :class:`~empg_gym.wrappers.PromptWrapper` with the history window,
   the ``<think>``/``<action>`` answer format, :class:`~empg_gym.wrappers.ActionParsingWrapper` and its
   invalid-format penalty), wrapped as a user turn and tokenized by verl's own chat-template builder;
2. verl's server manager generates the response (``server_manager.generate(request_id, prompt_ids=...,
   sampling_params=...)``, one request id per trajectory so a sticky router keeps it on one server);
3. the decoded response goes to ``env.step`` in a worker thread (``loop.run_in_executor``), so an env that blocks
   never stalls the other samples of the worker's event loop;

until the env ends the episode or the step limit. It returns a list of ``AgentLoopOutput``, one per env step
(verl-agent's layout, where each step is a training row; verl's v1 trainer stores each under
``{uid}_{session}_{step}``). Every row carries the outcome reward ``reward_scale × won`` (as our trainer) and these
``extra_fields``:

=================  ======================================================================================
``traj_id``        ``"{uid}_{session_id}"``: the trajectory (unique in a batch)
``step_index``     0-based position of the step in its trajectory
``is_last``        whether this is the trajectory's last step
``anchor_obs``     the env's raw observation the step acted on (GiGPO groups steps by it)
``won``            whether the trajectory solved its task
``score``          the env's final ``info["score"]`` (WebShop's graded reward, Deep Search's EM)
``task_type``      the task's category; ``task_id``, ``env_id`` name the task
``format_penalty`` the invalid-format penalty charged to this step (0 when well formed)
``env_reward``     the env's own reward for this step, before the penalty
``format_valid``   whether the response followed the answer format; ``action_valid``: whether the env took it
``reward_scale``   the ``R = reward_scale × won`` scale, for GiGPO's step returns
``reward_extra_info``  ``{won, score, num_steps}`` as floats: verl's validation metrics and DAPO filter read it
``min_global_steps``, ``max_global_steps``  the weight versions the trajectory was generated with (from the server
                   client's own extra fields, which every row also keeps, as verl's single-turn loop does)
=================  ======================================================================================
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput, register

from empg_gym.errors import ConfigError
from empg_gym.integrations.verl.env_pool import EnvPool
from empg_gym.integrations.verl.episodes import AGENT_NAME, EpisodeSpec, LoopSettings
from empg_gym.integrations.verl.steps import STEP_ESTIMATORS, TRAINER_MODE

logger = logging.getLogger(__name__)


@register(AGENT_NAME)
class GymAgentLoop(AgentLoopBase):
    """Play one empg-gym episode with verl's LLM server; return one ``AgentLoopOutput`` per env step.

    The keyword arguments after verl's own are :class:`~empg_gym.integrations.verl.episodes.LoopSettings`; set
    them in the agent-loop YAML. See the module docstring for what each output row carries.
    """

    #: The worker process's env pool (one per process: verl makes a new loop object for every sample); the first
    #: loop of the process creates it with its ``max_idle_envs``.
    pool: ClassVar[EnvPool | None] = None

    def __init__(
        self,
        *args: Any,
        reward_scale: float = LoopSettings.reward_scale,
        history_length: int = LoopSettings.history_length,
        invalid_format_penalty: float = LoopSettings.invalid_format_penalty,
        require_think: bool = LoopSettings.require_think,
        max_steps: int | None = LoopSettings.max_steps,
        system_prompt: str | None = LoopSettings.system_prompt,
        max_idle_envs: int = LoopSettings.max_idle_envs,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.settings = LoopSettings(
            reward_scale=reward_scale, history_length=history_length, invalid_format_penalty=invalid_format_penalty,
            require_think=require_think, max_steps=max_steps, system_prompt=system_prompt,
            max_idle_envs=max_idle_envs,
        )
        _check_trainer_mode(self.config)
        self.response_length = int(self.rollout_config.response_length)
        self.prompt_length = int(getattr(self.rollout_config, "prompt_length", 0) or 0) or 10**9
        if GymAgentLoop.pool is None:
            GymAgentLoop.pool = EnvPool(max_idle=max_idle_envs)

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> list[AgentLoopOutput]:
        """Play the episode of the row ``kwargs`` (verl passes the dataset row); return its step rows in order."""
        spec = EpisodeSpec.from_row(kwargs)
        traj_id = _trajectory_id(kwargs)
        priority = int(kwargs.get("priority", 0) or 0)
        pool = GymAgentLoop.pool
        assert pool is not None
        key = (spec.pool_key, self.settings)
        config = self.settings.train_config(spec.env_id, spec.env_kwargs)

        def make() -> Any:
            from empg_gym.agents.trainer import make_envs

            return make_envs(config, 1)[0]

        env = await self._in_thread(pool.acquire, key, make)
        healthy = False
        try:
            steps, final = await self._play(env, spec, traj_id, sampling_params, priority)
            healthy = True
        finally:
            pool.release(key, env, healthy=healthy)
        return self._outputs(steps, final, traj_id, spec)

    # ------------------------------------------------------------------------------------------ episode
    async def _play(
        self, env: Any, spec: EpisodeSpec, traj_id: str, sampling_params: dict[str, Any], priority: int
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        prompt, info = await self._in_thread(env.reset, seed=spec.seed, options={"task_id": spec.task_id})
        if info.get("task_id") != spec.task_id:
            raise ConfigError(f"{spec.env_id} reset to task {info.get('task_id')!r} instead of {spec.task_id!r}.")
        spec.check_source(info)
        limit = self.settings.max_steps or getattr(env.spec, "max_episode_steps", None)
        if limit is None:
            raise ConfigError(
                f"{spec.env_id} has no registered step limit and max_steps is None: an episode could run forever. "
                "Set max_steps in the agent-loop config."
            )
        request_id = f"{traj_id}-{uuid4().hex[:8]}"
        steps: list[dict[str, Any]] = []
        done = False
        while not done and len(steps) < limit:
            step = await self._generate(prompt, request_id, sampling_params, priority)
            if step["prompt_tokens"] > self.prompt_length:
                _warn_prompt_cut(spec.env_id, step["prompt_tokens"], self.prompt_length)
            step["anchor_obs"] = str(info.get("raw_observation", ""))
            t0 = time.perf_counter()
            prompt, reward, terminated, truncated, info = await self._in_thread(env.step, step.pop("text"))
            step["env_s"] = time.perf_counter() - t0
            penalty = float(info.get("format_penalty", 0.0))
            step.update(format_penalty=penalty, env_reward=float(reward) + penalty,
                        format_valid=bool(info.get("format_valid", False)),
                        action_valid=bool(info.get("action_valid", False)))
            steps.append(step)
            done = bool(terminated or truncated)
        return steps, info

    async def _generate(
        self, prompt: str, request_id: str, sampling_params: dict[str, Any], priority: int
    ) -> dict[str, Any]:
        """One model turn: tokenize the step prompt with verl's chat-template builder, generate, align the tokens."""
        messages = self.settings.messages(prompt)
        prompt_ids = await self.ct_build_initial_tokens(messages)  # verl keeps the last rollout.prompt_length tokens
        prompt_tokens = len(prompt_ids)
        if prompt_tokens >= self.prompt_length:  # at the limit: count what verl's builder made before its cut
            builder = getattr(self, "continuous_token_builder", None)
            if builder is not None:
                prompt_tokens = len(await self._in_thread(builder.build_initial_tokens, messages))
        t0 = time.perf_counter()
        out = await self.server_manager.generate(
            request_id=request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, priority=priority
        )
        gen_s = time.perf_counter() - t0
        generated = list(out.token_ids)[: self.response_length]
        logprobs = list(out.log_probs)[: self.response_length] if out.log_probs else None
        merged, mask, aligned_logprobs = await self.ct_merge_assistant_token(
            prompt_ids, generated, [], [] if logprobs is not None else None, assistant_logprobs=logprobs
        )
        tokens = merged.token_ids
        n = len(mask)
        return {
            "prompt_ids": list(tokens[: len(tokens) - n]),
            "response_ids": list(tokens[len(tokens) - n :]),
            "response_mask": list(mask),
            "response_logprobs": list(aligned_logprobs) if aligned_logprobs is not None else None,
            "text": self.tokenizer.decode(generated, skip_special_tokens=True),
            "prompt_tokens": prompt_tokens,
            "gen_s": gen_s,
            "num_preempted": out.num_preempted if out.num_preempted is not None else -1,
            "server_extra": dict(out.extra_fields or {}),
        }

    def _outputs(
        self, steps: list[dict[str, Any]], final: dict[str, Any], traj_id: str, spec: EpisodeSpec
    ) -> list[AgentLoopOutput]:
        won = bool(final.get("won", False))
        score = float(final.get("score", 0.0))
        R = self.settings.reward_scale * float(won)
        outcome = {"won": float(won), "score": score, "num_steps": float(len(steps))}
        outputs = []
        for t, step in enumerate(steps):
            extra = {
                **step["server_extra"], **_weight_versions(steps),
                "traj_id": traj_id, "step_index": t, "is_last": t == len(steps) - 1,
                "anchor_obs": step["anchor_obs"], "won": won, "score": score,
                "task_type": str(final.get("task_type", "")), "task_id": spec.task_id, "env_id": spec.env_id,
                "format_penalty": step["format_penalty"], "env_reward": step["env_reward"],
                "format_valid": step["format_valid"], "action_valid": step["action_valid"],
                "prompt_tokens": step["prompt_tokens"], "prompt_truncated": step["prompt_tokens"] > self.prompt_length,
                "reward_scale": float(self.settings.reward_scale), "reward_extra_info": dict(outcome),
                "turn_scores": [], "tool_rewards": [],
            }
            outputs.append(AgentLoopOutput(
                prompt_ids=step["prompt_ids"], response_ids=step["response_ids"],
                response_mask=step["response_mask"], response_logprobs=step["response_logprobs"],
                reward_score=R, num_turns=2, extra_fields=extra,
                metrics=AgentLoopMetrics(generate_sequences=step["gen_s"], tool_calls=step["env_s"],
                                         num_preempted=step["num_preempted"]),
            ))
        return outputs

    @staticmethod
    async def _in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a blocking env call in the loop's executor, keeping the event loop free for other samples."""
        return await asyncio.get_running_loop().run_in_executor(None, lambda: fn(*args, **kwargs))


#: How many step prompts of each env this process has seen cut by rollout.prompt_length.
_CUT: dict[str, int] = {}


def _warn_prompt_cut(env_id: str, tokens: int, limit: int) -> None:
    """Warn on the 1st, 10th, 100th... cut prompt of ``env_id`` in this process (verl cuts from the left)."""
    n = _CUT[env_id] = _CUT.get(env_id, 0) + 1
    if n & (n - 1) == 0 or n % 100 == 0:  # 1, 2, 4, 8... then every 100th
        logger.warning(
            "%s: a step prompt of %d tokens exceeds rollout.prompt_length=%d (%d cut in this process so far); verl "
            "keeps its last %d tokens, dropping the task description at the top. Raise data.max_prompt_length "
            "(examples/verl/common.sh sets it per family from benchmarks/verl_prompt_lengths.py) or lower "
            "history_length in the agent-loop YAML.", env_id, tokens, limit, n, limit)


def _weight_versions(steps: list[dict[str, Any]]) -> dict[str, int]:
    """Return the trajectory's span of model-weight versions (verl's server client reports each generation's).

    verl's v1 trainer turns ``min_global_steps``/``max_global_steps`` of every row into staleness metrics (and
    filters stale rows in async modes); a trajectory spans all the versions its steps were generated with.
    """
    out = {}
    lows = [v for s in steps if (v := s["server_extra"].get("min_global_steps")) is not None]
    highs = [v for s in steps if (v := s["server_extra"].get("max_global_steps")) is not None]
    if lows:
        out["min_global_steps"] = min(lows)
    if highs:
        out["max_global_steps"] = max(highs)
    return out


def _check_trainer_mode(config: Any) -> None:
    """Refuse to play rows for one of our estimators under a trainer mode that gives them no step rows."""
    from omegaconf import OmegaConf

    estimator = OmegaConf.select(config, "algorithm.adv_estimator", default=None)
    mode = OmegaConf.select(config, "trainer.v1.trainer_mode", default=None)
    if estimator in STEP_ESTIMATORS and mode is not None and mode != TRAINER_MODE:
        raise ConfigError(
            f"algorithm.adv_estimator={estimator} needs trainer.v1.trainer_mode={TRAINER_MODE} (it hands each row's "
            f"step index, trajectory and entropy to the estimator), got trainer_mode={mode}; it would fail at the "
            f"first advantage step, after a whole rollout. Set trainer.v1.trainer_mode={TRAINER_MODE}."
        )


def _trajectory_id(row: dict[str, Any]) -> str:
    """``"{uid}_{session_id}"`` from the fields verl's v1 worker adds to every sample."""
    uid, session = row.get("uid"), row.get("session_id")
    if uid is None or session is None:
        raise ConfigError(
            f"GymAgentLoop got no uid/session_id (row keys: {sorted(row)}): it returns one output per env step, "
            "which only verl's v1 trainer (trainer.use_v1=True, its default) accepts. Use the v1 trainer."
        )
    return f"{uid}_{session}"
