"""Group rollouts: B tasks × G trajectories, stepped in lockstep, one training sample per env step.

GRPO-style training compares trajectories of the same task, so :func:`collect_rollouts` resets G envs with the same
``task_id`` per group (ids drawn with a seeded generator from ``task_ids(split)`` unless given), asks the policy for
all live envs' responses in one batched :meth:`~empg_gym.agents.policy.LLMPolicy.generate` call per step, and steps
the envs (a list of envs, or a gymnasium ``SyncVectorEnv``/``AsyncVectorEnv``). Every env step becomes a
:class:`StepSample` carrying the prompt and response tokens, behaviour log-probs and entropies, the trajectory's
outcome reward ``R = reward_scale × won`` (verl-agent: 10 × won), ``group_id``, ``traj_id``, ``step_index`` and
``is_last`` (EMPG's future-clarity term needs the next step of the same trajectory), and the env's raw observation
(GiGPO groups steps by it).

The envs must speak prompts: build them with :func:`empg_gym.wrappers.make_agent_env` (a vector env's
``env_fns`` too). A plain list of empg-gym envs is wrapped automatically.

Example:
    >>> import gymnasium as gym, empg_gym, torch
    >>> from empg_gym.agents.models import tiny_random_model
    >>> from empg_gym.agents.policy import GenerationConfig, LLMPolicy
    >>> policy = LLMPolicy(*tiny_random_model(seed=0))
    >>> envs = [gym.make("EMPG-KeyDoor-v0") for _ in range(4)]
    >>> config = RolloutConfig(group_size=2, max_steps=2, generation=GenerationConfig(max_new_tokens=8), progress=False)
    >>> batch = collect_rollouts(policy, envs, config, seed=0)
    >>> len(batch.trajectories), len(batch.samples), sorted({s.group_id for s in batch.samples})
    (4, 8, [0, 1])
    >>> batch.metrics["rollout/success_rate"]
    0.0
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from empg_gym.agents.policy import GenerationConfig, LLMPolicy
from empg_gym.errors import ConfigError
from empg_gym.tasks import check_split

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RolloutConfig:
    """How :func:`collect_rollouts` plays a batch.

    Attributes:
        group_size: Trajectories per task ``G`` (verl-agent: 8); the number of envs must be a multiple of it.
        split: Split the tasks are drawn from when ``task_ids`` is not given.
        reward_scale: Outcome reward ``R = reward_scale × won`` given to every step of a trajectory.
        max_steps: Stop every trajectory after this many steps (``None``: when its env ends; registered envs
            truncate at their step limit). A trajectory cut here counts as truncated.
        generation: Sampling settings for every step.
        progress: Show a tqdm bar over env steps.
    """

    group_size: int = 8
    split: str = "train"
    reward_scale: float = 10.0
    max_steps: int | None = None
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    progress: bool = True

    def __post_init__(self) -> None:
        if self.group_size < 1:
            raise ConfigError(f"group_size={self.group_size} must be at least 1 (verl-agent uses 8).")
        check_split(self.split)
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(
                f"max_steps={self.max_steps} must be a positive int or None (until the env ends)."
            )


@dataclass(frozen=True)
class StepSample:
    """One env step = one training sample.

    Attributes:
        prompt_ids: ``(P,)`` int64 prompt tokens.
        response_ids: ``(T,)`` int64 response tokens.
        old_log_probs: ``(T,)`` behaviour log-probs of the response tokens.
        entropies: ``(T,)`` per-token entropies of the temperature-scaled distribution.
        reward: The trajectory's outcome reward ``R`` (equal on all its steps).
        format_penalty: The invalid-format penalty of this step (0 when well-formed; verl-agent subtracts it).
        group_id: Index of the task group in the batch (``0 .. B-1``).
        traj_id: Index of the trajectory in the batch (``0 .. B·G-1``).
        step_index: Position of the step in its trajectory (``0 ..``).
        is_last: Whether this is the trajectory's last step.
        observation: The env's raw observation this step answered.
        action: What the env received (the parsed action).
        response_text: The decoded response.
        task_id: The task of the trajectory.
        format_valid: Whether the response followed the answer format.
        action_valid: Whether the env understood the action.
        env_reward: The env's own reward for this step (before any penalty).
        uncertainty: ``(T,)`` the token-level uncertainty signal the generation was asked for
            (:attr:`~empg_gym.agents.policy.GenerationConfig.uncertainty`), or ``None``.
    """

    prompt_ids: torch.Tensor
    response_ids: torch.Tensor
    old_log_probs: torch.Tensor
    entropies: torch.Tensor
    reward: float
    format_penalty: float
    group_id: int
    traj_id: int
    step_index: int
    is_last: bool
    observation: str
    action: str
    response_text: str
    task_id: str
    format_valid: bool
    action_valid: bool
    env_reward: float
    uncertainty: torch.Tensor | None = None

    @property
    def step_entropy(self) -> float:
        """EMPG's step entropy ``H_t``: the mean Shannon token entropy over the response (whatever the signal)."""
        return float(self.entropies.mean()) if self.entropies.numel() else 0.0


@dataclass(frozen=True)
class Trajectory:
    """Outcome of one trajectory.

    Attributes:
        traj_id: Index in the batch.
        group_id: Its task group.
        task_id: Its task.
        task_type: The task's category.
        won: Whether the task was solved.
        score: The env's final ``info["score"]``.
        length: Number of steps taken.
        truncated: Ended by a step limit rather than by the task.
        reward: Outcome reward ``R = reward_scale × won``.
        answer_scores: The final ``info``'s answer scores, when the env gives them (Deep Search: ``em``, ``f1``).
    """

    traj_id: int
    group_id: int
    task_id: str
    task_type: str
    won: bool
    score: float
    length: int
    truncated: bool
    reward: float
    answer_scores: dict[str, float] = field(default_factory=dict)


#: Keys of an episode's final ``info`` kept as :attr:`Trajectory.answer_scores`.
ANSWER_SCORES = ("em", "f1")


@dataclass(frozen=True)
class RolloutBatch:
    """The samples of one rollout, ordered by ``(traj_id, step_index)``, with per-trajectory outcomes and metrics."""

    samples: tuple[StepSample, ...]
    trajectories: tuple[Trajectory, ...]
    metrics: dict[str, float]

    def index_tensors(self) -> dict[str, torch.Tensor]:
        """Return ``(N,)`` tensors over samples: ``group_id``, ``traj_id``, ``step_index``, ``is_last``,
        ``reward``, ``format_penalty``, ``step_entropy`` and ``response_length``.
        """  # noqa: D205
        import torch

        s = self.samples
        return {
            "group_id": torch.tensor([x.group_id for x in s], dtype=torch.long),
            "traj_id": torch.tensor([x.traj_id for x in s], dtype=torch.long),
            "step_index": torch.tensor([x.step_index for x in s], dtype=torch.long),
            "is_last": torch.tensor([x.is_last for x in s], dtype=torch.bool),
            "reward": torch.tensor([x.reward for x in s], dtype=torch.float32),
            "format_penalty": torch.tensor([x.format_penalty for x in s], dtype=torch.float32),
            "step_entropy": torch.tensor([x.step_entropy for x in s], dtype=torch.float32),
            "response_length": torch.tensor([x.response_ids.numel() for x in s], dtype=torch.long),
        }


# ------------------------------------------------------------------------------------------ env adapters
class _EnvList:
    """A list of envs stepped one by one (only the live ones)."""

    def __init__(self, envs: Sequence[gym.Env[Any, Any]]) -> None:
        from empg_gym.wrappers import PromptWrapper, make_agent_env

        self.envs = [e if _has_wrapper(e, PromptWrapper) else make_agent_env(e) for e in envs]

    def __len__(self) -> int:
        return len(self.envs)

    def task_ids(self, split: str) -> list[str]:
        return list(self.envs[0].unwrapped.task_ids(split))  # type: ignore[attr-defined]

    def reset(self, seeds: list[int], task_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
        return [
            e.reset(seed=s, options={"task_id": t})
            for e, s, t in zip(self.envs, seeds, task_ids, strict=True)
        ]

    def step(self, actions: dict[int, str]) -> dict[int, tuple[str, float, bool, bool, dict[str, Any]]]:
        return {k: self.envs[k].step(a) for k, a in actions.items()}  # type: ignore[misc]


class _Vector:
    """A gymnasium vector env: every sub-env steps each time; finished ones get an empty action and are ignored."""

    def __init__(self, vec: gym.vector.VectorEnv) -> None:
        mode = vec.metadata.get("autoreset_mode")
        if mode is not None and getattr(mode, "value", mode) != gym.vector.AutoresetMode.NEXT_STEP.value:
            raise ConfigError(
                f"The vector env uses autoreset_mode={mode}; group rollouts need AutoresetMode.NEXT_STEP "
                "(gymnasium's default) so finished envs can be stepped and ignored."
            )
        self.vec = vec

    def __len__(self) -> int:
        return int(self.vec.num_envs)

    def task_ids(self, split: str) -> list[str]:
        return list(self.vec.call("task_ids", split)[0])

    def reset(self, seeds: list[int], task_ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]] | None] = [None] * len(self)
        for task in dict.fromkeys(task_ids):  # one masked reset per distinct task
            mask = np.array([t == task for t in task_ids], dtype=np.bool_)
            obs, infos = self.vec.reset(seed=seeds, options={"task_id": task, "reset_mask": mask})
            for k in np.flatnonzero(mask):
                out[k] = (obs[k], _env_info(infos, int(k)))
        return out  # type: ignore[return-value]

    def step(self, actions: dict[int, str]) -> dict[int, tuple[str, float, bool, bool, dict[str, Any]]]:
        full = [actions.get(k, "") for k in range(len(self))]
        obs, rewards, terminated, truncated, infos = self.vec.step(full)
        return {
            k: (obs[k], float(rewards[k]), bool(terminated[k]), bool(truncated[k]), _env_info(infos, k))
            for k in actions
        }


def _env_info(infos: dict[str, Any], k: int) -> dict[str, Any]:
    """Return sub-env ``k``'s info from a vector env's batched info dict."""
    out = {}
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        present = infos.get("_" + key)
        if present is not None and not bool(present[k]):
            continue
        out[key] = _env_info(value, k) if isinstance(value, dict) else value[k]
    return out


def _has_wrapper(env: gym.Env[Any, Any], cls: type) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, cls):
            return True
        env = env.env
    return False


# ---------------------------------------------------------------------------------------------- collector
def collect_rollouts(
    policy: LLMPolicy,
    envs: Sequence[gym.Env[Any, Any]] | gym.vector.VectorEnv,
    config: RolloutConfig | None = None,
    *,
    task_ids: Sequence[str] | None = None,
    seed: int = 0,
    on_step: Callable[[int, float], None] | None = None,
) -> RolloutBatch:
    """Play one group rollout: ``len(envs) / G`` tasks, ``G`` trajectories each (see the module docstring).

    Args:
        policy: The LLM policy that answers every step prompt.
        envs: ``B·G`` envs: a list (wrapped with :func:`~empg_gym.wrappers.make_agent_env` when needed) or a
            gymnasium vector env whose sub-envs were built with it. Env ``k`` plays trajectory ``k`` of group
            ``k // G``.
        config: Rollout settings.
        task_ids: The ``B`` tasks to play; default: a seeded draw (without replacement where possible) from
            ``config.split``.
        seed: Seeds the task draw, the env resets (env ``k`` gets ``seed + k``) and the sampling generator.
        on_step: Called after every lockstep env step with the step's index (0 first) and its wall time in
            seconds (generation and env steps of all live envs), e.g. to report progress.
    """
    import torch

    config = config or RolloutConfig()
    adapter = _Vector(envs) if isinstance(envs, gym.vector.VectorEnv) else _EnvList(list(envs))
    n, G = len(adapter), config.group_size
    if n == 0 or n % G:
        raise ConfigError(
            f"Got {n} envs for group_size={G}; pass B·G envs (a positive multiple of the group size)."
        )
    tasks = _choose_tasks(adapter, n // G, config.split, task_ids, seed)
    start = time.perf_counter()
    first = adapter.reset([seed + k for k in range(n)], [tasks[k // G] for k in range(n)])
    if "raw_observation" not in first[0][1]:
        raise ConfigError(
            "The envs do not produce step prompts (no info['raw_observation']); build each sub-env with "
            "empg_gym.wrappers.make_agent_env(...)."
        )
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    prompt_logits: dict[tuple[int, ...], torch.Tensor] = {}  # the weights stay put during a rollout
    play = _Play(n, G, tasks, first, config)
    gen_time = env_time = 0.0
    step = 0
    bar = _progress_bar(config, envs)
    try:
        while play.live:
            t0 = time.perf_counter()
            live = play.live
            gens = policy.generate([play.prompts[k] for k in live], config.generation, generator=generator,
                                   prompt_logits=prompt_logits)
            t1 = time.perf_counter()
            results = adapter.step({k: g.text for k, g in zip(live, gens, strict=True)})
            t2 = time.perf_counter()
            env_time += t2 - t1
            gen_time += t1 - t0
            play.record(live, gens, results)
            if on_step is not None:
                on_step(step, t2 - t0)
            step += 1
            bar.update(1)
            bar.set_postfix(live=len(play.live))
    finally:
        bar.close()
    return play.batch(gen_time, env_time, time.perf_counter() - start)


def _choose_tasks(
    adapter: _EnvList | _Vector, B: int, split: str, task_ids: Sequence[str] | None, seed: int
) -> list[str]:
    if task_ids is not None:
        if isinstance(task_ids, str) or len(task_ids) != B:
            raise ConfigError(
                f"task_ids must list one task per group ({B} = envs / group_size), got {task_ids!r:.200}."
            )
        return [str(t) for t in task_ids]
    pool = adapter.task_ids(split)
    if not pool:
        raise ConfigError(f"Split {split!r} has no tasks; choose another split in RolloutConfig.")
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(pool), size=B, replace=B > len(pool))
    return [pool[int(i)] for i in picks]


def _progress_bar(config: RolloutConfig, envs: Any) -> Any:
    from tqdm.auto import tqdm

    total = config.max_steps
    if total is None:
        spec = getattr(envs[0], "spec", None) if isinstance(envs, Sequence) else None
        total = getattr(spec, "max_episode_steps", None)
    return tqdm(total=total, desc="rollout", unit="step", disable=not config.progress, leave=False)


class _Play:
    """Book-keeping of one rollout: live envs, pending steps per trajectory, finished trajectories."""

    def __init__(
        self, n: int, G: int, tasks: list[str], first: list[tuple[str, dict[str, Any]]], config: RolloutConfig
    ) -> None:
        self.G, self.config = G, config
        self.prompts = [obs for obs, _ in first]
        self.raw = [info["raw_observation"] for _, info in first]
        self.info = [info for _, info in first]
        self.steps: list[list[dict[str, Any]]] = [[] for _ in range(n)]
        self.done: list[bool] = [False] * n
        self.truncated: list[bool] = [False] * n
        for k, info in enumerate(self.info):
            if info.get("task_id", tasks[k // G]) != tasks[k // G]:
                raise ConfigError(
                    f"Env {k} reset to task {info.get('task_id')!r} instead of {tasks[k // G]!r}."
                )

    @property
    def live(self) -> list[int]:
        return [k for k, d in enumerate(self.done) if not d]

    def record(
        self, live: list[int], gens: list[Any], results: dict[int, tuple[str, float, bool, bool, dict]]
    ) -> None:
        for k, gen in zip(live, gens, strict=True):
            obs, reward, terminated, truncated, info = results[k]
            self.steps[k].append(
                {
                    "gen": gen,
                    "observation": self.raw[k],
                    "info": info,
                    "env_reward": float(reward) + float(info.get("format_penalty", 0.0)),
                }
            )
            self.prompts[k], self.raw[k], self.info[k] = obs, info.get("raw_observation", str(obs)), info
            capped = self.config.max_steps is not None and len(self.steps[k]) >= self.config.max_steps
            if terminated or truncated or capped:
                self.done[k] = True
                self.truncated[k] = bool(truncated or (capped and not terminated))

    def batch(self, gen_time: float, env_time: float, total_time: float) -> RolloutBatch:
        samples, trajectories = [], []
        for k, steps in enumerate(self.steps):
            last = self.info[k]
            won = bool(last.get("won", False))
            R = self.config.reward_scale * float(won)
            trajectories.append(
                Trajectory(
                    k,
                    k // self.G,
                    str(last.get("task_id", "")),
                    str(last.get("task_type", "")),
                    won,
                    float(last.get("score", 0.0)),
                    len(steps),
                    self.truncated[k],
                    R,
                    {key: float(last[key]) for key in ANSWER_SCORES if key in last},
                )
            )
            for t, step in enumerate(steps):
                samples.append(_sample(step, R, k, k // self.G, t, t == len(steps) - 1))
        return RolloutBatch(
            tuple(samples),
            tuple(trajectories),
            _metrics(samples, trajectories, gen_time, env_time, total_time),
        )


def _sample(step: dict[str, Any], R: float, k: int, g: int, t: int, is_last: bool) -> StepSample:
    gen, info = step["gen"], step["info"]
    return StepSample(
        prompt_ids=gen.prompt_ids,
        response_ids=gen.response_ids,
        old_log_probs=gen.log_probs,
        entropies=gen.entropies,
        reward=R,
        format_penalty=float(info.get("format_penalty", 0.0)),
        group_id=g,
        traj_id=k,
        step_index=t,
        is_last=is_last,
        observation=step["observation"],
        action=str(info.get("parsed_action", gen.text)),
        response_text=gen.text,
        task_id=str(info.get("task_id", "")),
        format_valid=bool(info.get("format_valid", False)),
        action_valid=bool(info.get("action_valid", False)),
        env_reward=step["env_reward"],
        uncertainty=getattr(gen, "uncertainty", None),
    )


def _metrics(
    samples: list[StepSample], trajectories: list[Trajectory], gen_time: float, env_time: float, total: float
) -> dict[str, float]:
    lengths = [s.response_ids.numel() for s in samples]
    tokens = sum(lengths)

    def mean(values: Any) -> float:
        return float(np.mean(values)) if len(values) else 0.0

    return {
        "rollout/success_rate": mean([float(t.won) for t in trajectories]),
        "rollout/episode_len": mean([float(t.length) for t in trajectories]),
        "rollout/score": mean([t.score for t in trajectories]),
        "rollout/truncated_rate": mean([float(t.truncated) for t in trajectories]),
        "rollout/format_valid_rate": mean([float(s.format_valid) for s in samples]),
        "rollout/action_valid_rate": mean([float(s.action_valid) for s in samples]),
        "rollout/response_len": mean(lengths),
        "rollout/prompt_len": mean([s.prompt_ids.numel() for s in samples]),
        "rollout/step_entropy": mean(_step_entropies(samples, lengths)),
        "rollout/num_samples": float(len(samples)),
        "rollout/num_trajectories": float(len(trajectories)),
        "time/rollout_s": total,
        "time/generate_s": gen_time,
        "time/env_s": env_time,
        "time/gen_tokens_per_s": tokens / gen_time if gen_time > 0 else 0.0,
    }


def _step_entropies(samples: list[StepSample], lengths: list[int]) -> Any:
    """Return every sample's :attr:`StepSample.step_entropy` as an array, in one pass over the batch."""
    if not samples or min(lengths) == 0:
        return np.asarray([s.step_entropy for s in samples], dtype=np.float64)
    import torch

    flat = torch.cat([s.entropies for s in samples]).double().numpy()
    return np.add.reduceat(flat, np.cumsum([0, *lengths[:-1]])) / np.asarray(lengths, dtype=np.float64)
