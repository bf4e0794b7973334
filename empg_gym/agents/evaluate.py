"""Evaluate an LLM policy on a whole split, in order: success rate overall and per task type, episode logs."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from empg_gym.agents.config import TrainConfig
from empg_gym.agents.per_type import annotate, family_of, per_type_metrics


def evaluate_policy(
    policy: Any,
    config: TrainConfig,
    *,
    split: str = "eval_in_distribution",
    n_tasks: int | None = None,
    batch_size: int = 16,
    log_path: str | Path | None = None,
) -> dict[str, float]:
    """Play each of the first ``n_tasks`` tasks of ``split`` (all when ``None``) once, greedily.

    Returns ``success_rate``, ``score``, ``episode_len``, ``num_tasks``, ``success_rate/<task_type>`` and the
    family's per-type metrics (``pick/success``, ``hops=2/f1``...); with ``log_path``, writes one JSON line per
    episode (:func:`episode_records`: task, outcome, facets, every response, action and observation).
    """
    from empg_gym.agents.policy import GenerationConfig
    from empg_gym.agents.rollout import RolloutConfig, collect_rollouts
    from empg_gym.agents.trainer import make_envs

    probe = make_envs(config, 1)[0]
    task_ids = probe.unwrapped.task_ids(split)
    manifest = probe.unwrapped.manifest
    probe.close()
    family = family_of(config.env_id)
    if n_tasks is not None:
        task_ids = task_ids[:n_tasks]
    generation = GenerationConfig(max_new_tokens=config.max_new_tokens, temperature=config.temperature,
                                  do_sample=False)
    rollout_cfg = RolloutConfig(group_size=1, split=split, reward_scale=1.0, max_steps=config.max_steps,
                                generation=generation, progress=False)
    episodes: list[dict[str, Any]] = []
    for start in range(0, len(task_ids), batch_size):
        chunk = task_ids[start : start + batch_size]
        envs = make_envs(config, len(chunk))
        try:
            rollout = collect_rollouts(policy, envs, rollout_cfg, task_ids=chunk, seed=config.seed)
        finally:
            for env in envs if isinstance(envs, list) else [envs]:
                env.close()
        episodes += episode_records(rollout, manifest, family)
    if log_path is not None:
        with open(log_path, "w", encoding="utf-8") as f:
            for ep in episodes:
                f.write(json.dumps(ep, ensure_ascii=False) + "\n")
    return summarize(episodes, family)


def episode_records(rollout: Any, manifest: Any, family: str) -> list[dict[str, Any]]:
    """Return one log record per trajectory of ``rollout``: task, outcome, facets (:mod:`.per_type`), every step."""
    steps: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in rollout.samples:
        steps[s.traj_id].append({"observation": s.observation, "response": s.response_text, "action": s.action,
                                 "format_valid": s.format_valid, "action_valid": s.action_valid,
                                 "reward": s.env_reward})
    return [annotate({"task_id": t.task_id, "task_type": t.task_type, "won": t.won, "score": t.score,
                      "length": t.length, "truncated": t.truncated, "steps": steps[t.traj_id]},
                     family, manifest.get(t.task_id), str(manifest.source), t.answer_scores)
            for t in rollout.trajectories]


def summarize(episodes: list[dict[str, Any]], family: str = "custom") -> dict[str, float]:
    """Return success rate, score and length over ``episodes``, success rate per task type and the family's
    per-type metrics (``<label>/<metric>``, :func:`~empg_gym.agents.per_type.per_type_metrics`).
    """  # noqa: D205
    if not episodes:
        return {"num_tasks": 0.0}
    by_type: dict[str, list[float]] = defaultdict(list)
    for ep in episodes:
        by_type[ep["task_type"]].append(float(ep["won"]))
    out = {
        "num_tasks": float(len(episodes)),
        "success_rate": sum(float(ep["won"]) for ep in episodes) / len(episodes),
        "score": sum(float(ep["score"]) for ep in episodes) / len(episodes),
        "episode_len": sum(float(ep["length"]) for ep in episodes) / len(episodes),
    }
    out.update({f"success_rate/{k}": sum(v) / len(v) for k, v in sorted(by_type.items())})
    out.update(per_type_metrics(episodes, family))
    return out


def evaluate_run(
    model: str, *, env_id: str, split: str = "eval_in_distribution", n_tasks: int | None = None,
    log_path: str | Path | None = None,
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
    return evaluate_policy(policy, config, split=split, n_tasks=n_tasks, log_path=log_path)
