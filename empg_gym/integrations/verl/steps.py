"""From verl's step rows to our advantages: the adapter behind the ``empg``, ``gigpo`` and ``empg_gym_grpo`` estimators.

verl hands an advantage estimator ``token_level_rewards`` and ``response_mask`` (``[bs, T]``), the group index
(``uid``, one per prompt: the ``rollout.n`` trajectories of one task) and the algorithm config — not the step index,
trajectory id, anchor observation or entropy that EMPG and GiGPO need. :class:`StepRows` carries those, row-aligned
with the batch: the ``extra_fields`` dict :class:`~empg_gym.integrations.verl.GymAgentLoop` put on each row, the
per-token entropy of the actor's old-log-prob forward pass, and which rows are verl's padding. :func:`step_advantages`
turns a batch into our own :class:`~empg_gym.agents.rollout.StepSample` rows, builds the
:class:`~empg_gym.agents.algorithms.StepBatch` with our trainer's :func:`~empg_gym.agents.trainer.to_step_batch`
(so the outcome reward, the invalid-format penalty and GiGPO's step rewards enter exactly as in our trainer) and
calls :func:`~empg_gym.agents.algorithms.compute_advantages` with the preset the estimator names. The
invalid-format penalty is therefore not part of any reward: ``to_step_batch`` puts each row's ``format_penalty`` in
``StepBatch.format_penalty``, and ``compute_advantages`` subtracts it from that row's advantage after the estimator
and EMPG, as in our trainer (from the reward before GRPO for ``empg-verl-agent``, whose preset says so). Nothing
here imports verl.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from empg_gym.agents.algorithms import (
    EMPG_BASES,
    AlgorithmConfig,
    EMPGConfig,
    GiGPOConfig,
    compute_advantages,
    get_algorithm,
)
from empg_gym.errors import ConfigError

#: The v1 trainer mode that hands step rows to the estimators below (``trainer.v1.trainer_mode=empg_gym``).
TRAINER_MODE = "empg_gym"

#: verl estimator name -> our algorithm preset. ``empg`` is EMPG over GRPO (DAPO's clip-higher and dynamic
#: sampling are verl's own settings around it); ``empg_gym_grpo`` is our GRPO without EMPG, for baselines;
#: ``empg-verl-agent`` is EMPG in verl-agent's pipeline; ``empg+<base>`` is EMPG over each base whose estimator runs
#: on step rows (every base but ``ppo``, whose turn-level critic values the rows do not carry). Only the advantage
#: is ours: the loss, clip and KL are verl's settings (``recipes.verl_overrides``), so ``empg+gspo`` computes what
#: ``empg`` computes and is run with verl's ``policy_loss.loss_mode=gspo``.
STEP_ESTIMATORS: dict[str, str] = {
    "empg": "empg", "gigpo": "gigpo", "empg_gym_grpo": "grpo", "empg-verl-agent": "empg-verl-agent",
    **{f"empg+{b.name}": f"empg+{b.name}" for b in EMPG_BASES if b.critic is None},
}

#: The extra fields every step row must carry (GymAgentLoop writes them).
REQUIRED_FIELDS = ("traj_id", "step_index", "is_last", "anchor_obs", "format_penalty", "env_reward", "reward_scale")


@dataclass(frozen=True)
class StepRows:
    """Per-row step facts of a verl batch, in the batch's row order.

    Attributes:
        extra_fields: ``bs`` dicts, each row's ``extra_fields`` (see :data:`REQUIRED_FIELDS`).
        entropy: ``[bs, T']`` per-token entropy from the actor's old-log-prob pass (``None`` if not computed).
        entropy_mask: ``[bs, T']`` the response mask the entropy belongs to (before any rollout-correction
            rejection zeroes tokens out of the loss mask).
        padding: ``[bs]`` bool, True on the synthetic rows verl appends to make the batch divisible.
    """

    extra_fields: tuple[Mapping[str, Any], ...]
    entropy: Tensor | None = None
    entropy_mask: Tensor | None = None
    padding: Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.extra_fields)
        if (self.entropy is None) != (self.entropy_mask is None):
            raise ConfigError("StepRows needs entropy and entropy_mask together (the mask says which tokens count).")
        if self.entropy is not None and (self.entropy.dim() != 2 or self.entropy.shape != self.entropy_mask.shape
                                         or self.entropy.shape[0] != n):
            raise ConfigError(f"StepRows.entropy and entropy_mask must both be [{n}, T], got "
                              f"{list(self.entropy.shape)} and {list(self.entropy_mask.shape)}.")
        if self.padding is not None and tuple(self.padding.shape) != (n,):
            raise ConfigError(f"StepRows.padding must be [{n}], got {list(self.padding.shape)}.")

    def __len__(self) -> int:
        return len(self.extra_fields)


def algorithm_for(estimator: str, verl_algorithm: Any = None) -> AlgorithmConfig:
    """Our :class:`AlgorithmConfig` for verl's ``algorithm.adv_estimator=estimator`` and its ``algorithm`` config.

    Read from verl's config: ``norm_adv_by_std_in_grpo`` (GRPO's std division, verl's own knob; a preset without
    it, ``empg+dr_grpo``, needs it ``False``), and the optional
    blocks ``algorithm.empg`` (``k``, ``k_next``, ``zeta``, ``eps``) and ``algorithm.gigpo`` (``omega``, ``gamma``,
    ``norm_by_std``), added on verl's command line with ``+algorithm.empg.zeta=0.05``. Defaults are our presets'.

    Example:
        >>> algorithm_for("empg", {"norm_adv_by_std_in_grpo": False, "empg": {"zeta": 0.1}}).empg.zeta
        0.1
    """
    if estimator not in STEP_ESTIMATORS:
        raise ConfigError(f"No empg-gym preset behind verl estimator {estimator!r}; known: {sorted(STEP_ESTIMATORS)}.")
    base = get_algorithm(STEP_ESTIMATORS[estimator])
    norm = bool(_get(verl_algorithm, "norm_adv_by_std_in_grpo", base.norm_by_std))
    if norm and not base.norm_by_std:
        raise ConfigError(f"algorithm.adv_estimator={estimator} runs {base.name!r}, whose advantage is not divided by "
                          "the group std, but algorithm.norm_adv_by_std_in_grpo=True; set it to False.")
    empg = _block(verl_algorithm, "empg", EMPGConfig)
    gigpo = _block(verl_algorithm, "gigpo", GiGPOConfig)
    return dataclasses.replace(
        base, norm_by_std=norm, overlong=None,
        empg=dataclasses.replace(base.empg, **empg) if base.empg is not None else None,
        gigpo=dataclasses.replace(base.gigpo, **{"norm_by_std": norm, **gigpo}),
    )


def step_advantages(
    algorithm: AlgorithmConfig,
    token_level_rewards: Tensor,
    response_mask: Tensor,
    index: Sequence[Any],
    rows: StepRows,
) -> tuple[Tensor, dict[str, float]]:
    """Advantages ``[bs, T]`` (one value per row, broadcast over its response tokens) and our metrics.

    Args:
        algorithm: What to compute (see :func:`algorithm_for`).
        token_level_rewards: ``[bs, T]``; a row's outcome reward is its sum (as in verl's GRPO).
        response_mask: ``[bs, T]`` the tokens the loss sees; the advantages are multiplied by it.
        index: ``bs`` group ids (verl's ``uid``): the trajectories of one prompt form one group.
        rows: The step facts of the same rows.
    """
    from empg_gym.agents.trainer import to_step_batch

    bs = token_level_rewards.shape[0]
    if len(rows) != bs or len(index) != bs or response_mask.shape != token_level_rewards.shape:
        raise ConfigError(
            f"verl batch and step rows disagree: token_level_rewards {list(token_level_rewards.shape)}, "
            f"response_mask {list(response_mask.shape)}, {len(index)} uids, {len(rows)} step rows."
        )
    needs_entropy = algorithm.empg is not None
    if needs_entropy and rows.entropy is None:
        raise ConfigError(
            "EMPG needs the per-token entropy of verl's old-log-prob pass, but the batch has none; it is skipped "
            "in rollout-correction bypass mode: set algorithm.rollout_correction.bypass_mode=False."
        )
    keep = torch.ones(bs, dtype=torch.bool) if rows.padding is None else ~rows.padding.bool().cpu()
    kept = torch.nonzero(keep)[:, 0].tolist()
    if not kept:
        raise ConfigError(f"All {bs} rows of the batch are padding; there is nothing to compute advantages for.")
    outcome = token_level_rewards.detach().float().sum(-1).cpu()
    samples = _samples(kept, outcome, index, rows, needs_entropy)
    scales = {float(rows.extra_fields[i]["reward_scale"]) for i in kept}
    if len(scales) != 1:
        raise ConfigError(f"Rows of one batch carry different reward_scale values {sorted(scales)}; use one scale.")
    batch, _, _ = to_step_batch(samples, scales.pop())
    A, metrics = compute_advantages(algorithm, batch)
    per_row = torch.zeros(bs, dtype=torch.float32)
    per_row[keep] = A.float()
    advantages = per_row.to(response_mask.device).unsqueeze(-1) * response_mask.to(torch.float32)
    return advantages, metrics


def _samples(kept: list[int], outcome: Tensor, index: Sequence[Any], rows: StepRows, with_entropy: bool) -> list[Any]:
    from empg_gym.agents.rollout import StepSample

    groups: dict[str, int] = {}
    trajs: dict[str, int] = {}
    samples = []
    for i in kept:
        extra = rows.extra_fields[i]
        missing = [k for k in REQUIRED_FIELDS if k not in extra]
        if missing:
            raise ConfigError(
                f"Row {i} lacks extra field(s) {missing} (it has {sorted(extra)}): the empg-gym estimators need rows "
                "played by the 'empg_gym' agent loop (agent_name=empg_gym; export rows with `empg-gym export-verl`)."
            )
        if with_entropy:
            assert rows.entropy is not None and rows.entropy_mask is not None
            ent = rows.entropy[i][rows.entropy_mask[i].bool()].detach().float().cpu()
        else:
            ent = torch.zeros(0)
        samples.append(StepSample(
            prompt_ids=torch.zeros(0, dtype=torch.long), response_ids=torch.zeros(len(ent), dtype=torch.long),
            old_log_probs=torch.zeros(len(ent)), entropies=ent, reward=float(outcome[i]),
            format_penalty=float(extra["format_penalty"]),
            group_id=groups.setdefault(str(index[i]), len(groups)),
            traj_id=trajs.setdefault(str(extra["traj_id"]), len(trajs)),
            step_index=int(extra["step_index"]), is_last=bool(extra["is_last"]),
            observation=str(extra["anchor_obs"]), action="", response_text="",
            task_id=str(extra.get("task_id", "")), format_valid=bool(extra.get("format_valid", True)),
            action_valid=bool(extra.get("action_valid", True)), env_reward=float(extra["env_reward"]),
        ))
    return samples


def _get(config: Any, key: str, default: Any) -> Any:
    if config is None:
        return default
    if isinstance(config, Mapping) or hasattr(config, "get"):
        value = config.get(key, default)
    else:
        value = getattr(config, key, default)
    return default if value is None else value


def _block(config: Any, key: str, cls: type) -> dict[str, Any]:
    block = _get(config, key, {})
    if not hasattr(block, "items"):
        raise ConfigError(f"algorithm.{key} must be a mapping of {cls.__name__} fields, got {block!r}.")
    allowed = {f.name for f in dataclasses.fields(cls)}
    values = {str(k): v for k, v in block.items()}
    unknown = sorted(set(values) - allowed)
    if unknown:
        raise ConfigError(f"algorithm.{key} has unknown key(s) {unknown}; {cls.__name__} fields are {sorted(allowed)}.")
    return values
