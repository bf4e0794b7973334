"""A sample of each update's training rollouts, step by step, for the episode viewer (``rollouts.jsonl``).

Every update, the trainer hands :meth:`RolloutLog.record` its batch: the first :data:`SAMPLE_GROUPS` task group(s)
(all ``G`` trajectories of each) are written, one JSON line per trajectory, with every step's observation, full
response, parsed action, validity, env reward, step entropy ``H``, EMPG's ``g`` and ``f`` (computed with EMPG's own
functions, k = k' = 1, for every algorithm, as the bench report's diagnostics are) and the step's final advantage.
The first group of an update plays the same task for every algorithm with the same seed (the trainer seeds the task
draw by seed and update), so two algorithms' rollouts can be put side by side.

Example:
    >>> import torch
    >>> from empg_gym.agents.algorithms import StepBatch
    >>> steps = sample_steps(StepBatch(response_mask=torch.ones(2, 1, dtype=torch.bool), old_logp=torch.zeros(2, 1),
    ...     reward=torch.tensor([10.0, 10.0]), group_id=torch.tensor([0, 0]), traj_id=torch.tensor([0, 0]),
    ...     step_index=torch.tensor([0, 1]), is_last=torch.tensor([False, True]),
    ...     token_entropy=torch.tensor([[0.5], [1.5]])), torch.tensor([1.0, 2.0]))
    >>> [(s["H"], round(s["g"], 3), round(s["f"], 3), s["advantage"]) for s in steps]
    [(0.5, 1.462, 0.368, 1.0), (1.5, 0.538, 0.0, 2.0)]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: File name of the log in a run folder.
ROLLOUTS = "rollouts.jsonl"
#: Task groups of each update that are logged (all their trajectories).
SAMPLE_GROUPS = 1


def sample_steps(batch: Any, advantages: Any) -> list[dict[str, float]]:
    """Return per-step ``H``, ``g``, ``f`` (EMPG, k = k' = 1) and ``advantage`` for every row of ``batch``.

    Args:
        batch: The update's :class:`~empg_gym.agents.algorithms.StepBatch` (``N`` rows).
        advantages: ``[N]`` the final advantages.
    """
    from empg_gym.agents.algorithms.advantages import empg_terms, step_entropy

    H = step_entropy(batch.token_entropy, batch.response_mask)
    _, g, f = empg_terms(H, batch.traj_id, batch.step_index)
    return [{"H": h, "g": gg, "f": ff, "advantage": a}
            for h, gg, ff, a in zip(H.tolist(), g.tolist(), f.tolist(), advantages.tolist(), strict=True)]


class RolloutLog:
    """Append sampled training trajectories to ``out_dir/rollouts.jsonl`` (see the module docstring).

    Args:
        out_dir: The run folder.
        family: The env family (the trajectories' facets, :func:`~empg_gym.agents.per_type.task_facets`).
        envs: The trainer's envs (a list or a vector env), asked once for their task manifest.
        start: The update the run starts after; records of later updates (a killed process's) are dropped.
    """

    def __init__(self, out_dir: Path, family: str, envs: Any, start: int = 0) -> None:
        self.path = Path(out_dir) / ROLLOUTS
        self.family = family
        self._envs = envs
        self._manifest: Any = None
        if self.path.is_file():
            keep = [ln for ln in self.path.read_text(encoding="utf-8").splitlines()
                    if ln.strip() and json.loads(ln)["update"] <= start]
            self.path.write_text("".join(ln + "\n" for ln in keep), encoding="utf-8")

    def _task(self, task_id: str) -> Any:
        if self._manifest is None:
            envs = self._envs
            self._manifest = (envs[0].unwrapped.manifest if isinstance(envs, list)
                              else envs.get_attr("manifest")[0])
        return self._manifest.get(task_id)

    def record(self, update: int, samples: Sequence[Any], batch: Any, advantages: Any) -> None:
        """Write the sampled trajectories of one update (``samples`` and ``batch`` rows in the same order)."""
        from empg_gym.agents.per_type import task_facets

        groups = list(dict.fromkeys(s.group_id for s in samples))[:SAMPLE_GROUPS]
        numbers = sample_steps(batch, advantages)
        trajs: dict[int, dict[str, Any]] = {}
        for s, num in zip(samples, numbers, strict=True):
            if s.group_id not in groups:
                continue
            if s.traj_id not in trajs:
                task = self._task(s.task_id)
                trajs[s.traj_id] = {"update": update, "group": groups.index(s.group_id), "traj": s.traj_id,
                                    "task_id": s.task_id, "task_type": task.task_type, "goal": task.goal,
                                    "facets": task_facets(self.family, task, str(self._manifest.source)),
                                    "won": s.reward > 0, "steps": []}
            trajs[s.traj_id]["steps"].append({
                "observation": s.observation, "response": s.response_text, "action": s.action,
                "format_valid": s.format_valid, "action_valid": s.action_valid, "reward": s.env_reward, **num})
        with open(self.path, "a", encoding="utf-8") as fh:
            for t in trajs.values():
                t["length"] = len(t["steps"])
                fh.write(json.dumps(t, ensure_ascii=False) + "\n")
