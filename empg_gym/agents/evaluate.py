"""Evaluate an LLM policy on a whole split, in order: greedy and sampled success, per task type, episode logs.

Every task is played once greedily (the policy's most likely action at each step) and, with ``samples = k > 0``,
``k`` more times sampled at the training temperature. Greedy success is the headline a deployed agent would get;
it is brittle for a small policy (one flipped argmax turns a won layout into a loop), so the sampled success, the
mean over ``tasks × k`` episodes, measures the same policy with less noise (issue #22). All episodes of one mode
are played in lockstep batches through :func:`~empg_gym.agents.rollout.collect_rollouts`, the code that plays
training rollouts: ``k`` samples of a task are a group of ``k`` trajectories.

Example:
    >>> from empg_gym.agents.config import TrainConfig
    >>> from empg_gym.agents.trainer import build_policy
    >>> cfg = TrainConfig(env_id="EMPG-KeyDoor-v0", model="tiny-actions", max_new_tokens=1, require_think=False,
    ...                   history_length=0, eval_samples=2)
    >>> result = evaluate_policy(build_policy(cfg), cfg, n_tasks=3)
    >>> result["num_tasks"], result["samples_per_task"], 0 <= result["success_sampled"] <= 1
    (3.0, 2.0, True)
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from empg_gym.agents.config import TrainConfig
from empg_gym.agents.per_type import annotate, family_of, per_type_metrics
from empg_gym.errors import ConfigError

#: Added to a run's seed for the sampled evaluation's generator, apart from the seeds of its training rollouts.
SAMPLED_EVAL_SEED = 500_009


def evaluate_policy(
    policy: Any,
    config: TrainConfig,
    *,
    split: str = "eval_in_distribution",
    n_tasks: int | None = None,
    batch_size: int | None = 16,
    log_path: str | Path | None = None,
    samples: int | None = None,
    envs: EnvPool | None = None,
) -> dict[str, float]:
    """Play each of the first ``n_tasks`` tasks of ``split`` (all when ``None``) greedily, and ``samples`` times sampled.

    Args:
        policy: The :class:`~empg_gym.agents.policy.LLMPolicy`.
        config: The run's config (env, prompt, response budget, temperature, ``eval_samples``).
        split: The split evaluated.
        n_tasks: Evaluate the first ``n_tasks`` tasks of the split (``None``: all of them).
        batch_size: Tasks played at once (``None``: all); the sampled pass plays ``samples`` envs per task.
        log_path: Write one JSON line per episode here (task, outcome, ``mode``, ``sample``, every step).
        samples: Sampled episodes per task ``k`` (``None``: ``config.eval_samples``; 0: greedy only).
        envs: Play in these pooled envs (default: envs built for this call).

    Returns:
        :func:`summarize` of the episodes: ``success_rate`` (greedy), ``score``, ``episode_len``, ``num_tasks``,
        ``success_rate/<task_type>`` and the family's per-type metrics of the greedy episodes (``pick/success``,
        ``hops=2/f1``...); with ``k > 0`` also ``success_sampled``, ``samples_per_task`` and
        ``success_sampled/<task_type>``.
    """
    from empg_gym.agents.trainer import make_envs

    probe = make_envs(config, 1)[0]
    task_ids = list(probe.unwrapped.task_ids(split))
    manifest = probe.unwrapped.manifest
    probe.close()
    if n_tasks is not None:
        task_ids = task_ids[:n_tasks]
    episodes = play_tasks(policy, config, task_ids, split=split, samples=samples, batch_size=batch_size,
                          with_steps=True, envs=envs, manifest=manifest)
    write_episodes(log_path, episodes)
    return summarize(episodes, family_of(config.env_id))


class EnvPool:
    """Agent-facing envs kept between evaluations (each rollout resets every env it uses to a pinned task).

    Building an env costs more than playing a step of a small one, and a run evaluates the same splits again and
    again; ``vectorization="async"`` configs are not pooled (each :meth:`take` starts fresh worker processes).

    Args:
        config: The run's config (env id, prompt, format settings).
    """

    def __init__(self, config: TrainConfig) -> None:
        self.config = config
        self.envs: list[Any] = []

    def take(self, n: int) -> Any:
        """Return ``n`` envs: a list (the pool grows as needed), or a fresh vector env for ``async`` configs."""
        from empg_gym.agents.trainer import make_envs

        if self.config.vectorization != "sync":
            return make_envs(self.config, n)
        if len(self.envs) < n:
            self.envs += make_envs(self.config, n - len(self.envs))
        return self.envs[:n]

    def give_back(self, envs: Any) -> None:
        """End a :meth:`take`: close a vector env; pooled envs stay open for the next evaluation."""
        if not isinstance(envs, list):
            envs.close()

    def close(self) -> None:
        """Close every pooled env."""
        for env in self.envs:
            env.close()
        self.envs = []


def play_tasks(
    policy: Any,
    config: TrainConfig,
    task_ids: Sequence[str],
    *,
    split: str,
    samples: int | None = None,
    batch_size: int | None = None,
    with_steps: bool = False,
    envs: EnvPool | None = None,
    manifest: Any = None,
) -> list[dict[str, Any]]:
    """Play every task once greedily, then ``samples`` times sampled; return one record per episode.

    Records hold ``task_id``, ``task_type``, ``won``, ``score``, ``length``, ``truncated``, ``mode`` (``"greedy"``
    or ``"sampled"``), ``sample`` (0 greedily; ``0 .. k-1`` sampled) and, with ``with_steps``, ``steps`` (each
    step's observation, response, action, validity and reward). With the env's ``manifest`` they also get the task's
    ``goal``, ``facets`` and answer ``em``/``f1`` (:func:`~empg_gym.agents.per_type.annotate`, the per-type tables'
    input). Greedy episodes come first, in task order; sampled ones follow, task by task. ``envs`` lends the envs
    (default: built for this call and closed after it).
    """
    k = config.eval_samples if samples is None else samples
    if not isinstance(k, int) or k < 0:
        raise ConfigError(f"samples={samples!r} must be an int >= 0 (sampled episodes per task; 0: greedy only).")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a positive int or None (all tasks at once).")
    pool = envs if envs is not None else EnvPool(config)
    try:
        return _play(policy, config, list(task_ids), split, k, batch_size, with_steps, pool, manifest)
    finally:
        if envs is None:
            pool.close()


def _play(policy: Any, config: TrainConfig, task_ids: list[str], split: str, k: int, batch_size: int | None,
          with_steps: bool, pool: EnvPool, manifest: Any) -> list[dict[str, Any]]:
    """Return the episodes of :func:`play_tasks`: one greedy and one sampled rollout (``k`` per task) per chunk."""
    from empg_gym.agents.policy import GenerationConfig
    from empg_gym.agents.rollout import RolloutConfig, collect_rollouts

    family = family_of(config.env_id)
    episodes: list[dict[str, Any]] = []
    for mode, group in (("greedy", 1), ("sampled", k)):
        if group == 0 or not task_ids:
            continue
        generation = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                      do_sample=mode == "sampled")
        rollout_cfg = RolloutConfig(group_size=group, split=split, reward_scale=1.0, max_steps=config.max_steps,
                                    generation=generation, progress=False)
        seed = config.seed + (SAMPLED_EVAL_SEED if mode == "sampled" else 0)
        step = batch_size or len(task_ids)
        for start in range(0, len(task_ids), step):
            chunk = task_ids[start : start + step]
            envs = pool.take(len(chunk) * group)
            try:
                rollout = collect_rollouts(policy, envs, rollout_cfg, task_ids=chunk, seed=seed + start * group)
            finally:
                pool.give_back(envs)
            episodes += _records(rollout, mode, group, with_steps, manifest, family)
    return episodes


def _records(rollout: Any, mode: str, group: int, with_steps: bool, manifest: Any, family: str) -> list[dict[str, Any]]:
    """One record per trajectory of ``rollout`` (trajectory ``j`` of a group is sample ``j``), annotated with the
    task's facets when ``manifest`` is given.
    """  # noqa: D205
    steps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    if with_steps:
        for s in rollout.samples:
            steps[s.traj_id].append({"observation": s.observation, "response": s.response_text, "action": s.action,
                                     "format_valid": s.format_valid, "action_valid": s.action_valid,
                                     "reward": s.env_reward})
    out = []
    for t in rollout.trajectories:
        record = {"task_id": t.task_id, "task_type": t.task_type, "won": t.won, "score": t.score,
                  "length": t.length, "truncated": t.truncated, "mode": mode,
                  "sample": t.traj_id % group if mode == "sampled" else 0}
        if with_steps:
            record["steps"] = steps[t.traj_id]
        if manifest is not None:
            annotate(record, family, manifest.get(t.task_id), str(manifest.source), t.answer_scores)
        out.append(record)
    return out


def write_episodes(path: str | Path | None, episodes: list[dict[str, Any]]) -> None:
    """Write ``episodes`` as JSON lines to ``path`` (nothing when ``path`` is ``None``)."""
    if path is None:
        return
    with open(path, "w", encoding="utf-8") as f:
        for ep in episodes:
            f.write(json.dumps(ep, ensure_ascii=False) + "\n")


def summarize(episodes: list[dict[str, Any]], family: str = "custom") -> dict[str, float]:
    """Return greedy success rate, score and length, per task type too, and the sampled success when there is one.

    Episodes without a ``mode`` count as greedy (logs written before sampled evaluation existed). The family's
    per-type metrics (``<label>/<metric>``, :func:`~empg_gym.agents.per_type.per_type_metrics`) are the greedy
    episodes'.

    Example:
        >>> eps = [{"task_type": "a", "won": True, "score": 1.0, "length": 3},
        ...        {"task_type": "a", "won": False, "score": 0.0, "length": 9, "mode": "sampled", "sample": 0},
        ...        {"task_type": "a", "won": True, "score": 1.0, "length": 4, "mode": "sampled", "sample": 1}]
        >>> out = summarize(eps)
        >>> out["success_rate"], out["success_sampled"], out["samples_per_task"], out["num_tasks"]
        (1.0, 0.5, 2.0, 1.0)
    """
    greedy = [ep for ep in episodes if ep.get("mode", "greedy") == "greedy"]
    sampled = [ep for ep in episodes if ep.get("mode", "greedy") == "sampled"]
    if not greedy and not sampled:
        return {"num_tasks": 0.0}
    out: dict[str, float] = {}
    if greedy:
        out.update({
            "num_tasks": float(len(greedy)),
            "success_rate": _mean(float(ep["won"]) for ep in greedy),
            "score": _mean(float(ep["score"]) for ep in greedy),
            "episode_len": _mean(float(ep["length"]) for ep in greedy),
        })
        out.update({f"success_rate/{k}": v for k, v in _by_type(greedy).items()})
        out.update(per_type_metrics(greedy, family))
    if sampled:
        tasks = {ep["task_id"] for ep in sampled} if all("task_id" in ep for ep in sampled) else None
        per_task = len(sampled) / len(tasks) if tasks else float(max(ep.get("sample", 0) for ep in sampled) + 1)
        out.setdefault("num_tasks", float(len(sampled) / per_task))
        out.update({"success_sampled": _mean(float(ep["won"]) for ep in sampled), "samples_per_task": per_task})
        out.update({f"success_sampled/{k}": v for k, v in _by_type(sampled).items()})
    return out


def _mean(values: Any) -> float:
    values = list(values)
    return sum(values) / len(values)


def _by_type(episodes: list[dict[str, Any]]) -> dict[str, float]:
    by_type: dict[str, list[float]] = defaultdict(list)
    for ep in episodes:
        by_type[ep["task_type"]].append(float(ep["won"]))
    return {k: sum(v) / len(v) for k, v in sorted(by_type.items())}


def evaluate_run(
    model: str, *, env_id: str, split: str = "eval_in_distribution", n_tasks: int | None = None,
    log_path: str | Path | None = None, samples: int | None = None,
) -> dict[str, float]:
    """Evaluate a run folder written by ``empg-gym train`` (its config and last checkpoint) or a model spec."""
    import dataclasses

    from empg_gym.agents.trainer import CHECKPOINT, build_policy, load_weights

    run = Path(model)
    if (run / "config.json").is_file():
        config = TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
        config = dataclasses.replace(config, env_id=env_id) if env_id != config.env_id else config
        policy = build_policy(config)
        if (run / CHECKPOINT).is_dir():
            load_weights(policy, run / CHECKPOINT)
    else:
        config = TrainConfig(env_id=env_id, model=model)
        policy = build_policy(config)
    return evaluate_policy(policy, config, split=split, n_tasks=n_tasks, log_path=log_path, samples=samples)
