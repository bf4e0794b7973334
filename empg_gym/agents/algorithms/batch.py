"""The typed batch the estimators and losses read: one row per env step of one trajectory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from empg_gym.errors import ConfigError

_PER_SAMPLE = ("reward", "group_id", "traj_id", "step_index", "is_last", "step_reward", "obs_key", "format_penalty",
               "values")
_PER_TOKEN = ("response_mask", "old_logp", "ref_logp", "token_entropy", "token_uncertainty")


@dataclass(frozen=True)
class StepBatch:
    """A batch of ``N`` step samples with responses padded to ``T`` tokens (verl-agent's one-sample-per-step layout).

    Attributes:
        response_mask: ``[N, T]`` bool, True on the response tokens of each step (prompt and padding excluded).
        old_logp: ``[N, T]`` log-probs of the response tokens under the behaviour policy that sampled them.
        reward: ``[N]`` float, the *trajectory's* outcome reward, repeated on every step of the trajectory (no
            invalid-format penalty in it: that is ``format_penalty``).
        group_id: ``[N]`` int64, task group (the G trajectories reset with one ``task_id``).
        traj_id: ``[N]`` int64, unique per trajectory across the batch.
        step_index: ``[N]`` int64, 0-based position of the step in its trajectory.
        is_last: ``[N]`` bool, whether this is the trajectory's final step.
        ref_logp: ``[N, T]`` log-probs under the reference policy (needed when the config uses KL), or ``None``.
        token_entropy: ``[N, T]`` Shannon entropy of the sampling distribution at each response token (needed by
            EMPG with its default ``uncertainty="entropy"``).
        step_reward: ``[N]`` float, the env reward received at this step (needed by GiGPO's discounted returns and by
            ``reward_signal="return"``, whose return-to-go replaces ``reward`` before the estimator).
        obs_key: ``[N]`` int64, :func:`observation_key` of the observation the step acted on (needed by GiGPO).
        format_penalty: ``[N]`` float ``>= 0``, the invalid-format penalty of the step (0 when well-formed), or
            ``None``. It is subtracted from the step's *advantage*, after the estimator and the modifiers, the same way
            for every algorithm (see ``compute_advantages``).
        token_uncertainty: ``[N, T]`` the per-token signal ``EMPGConfig.uncertainty`` names when it is not
            ``entropy`` (``renyi2``, ``one_minus_p``, ``mc_dropout``...; 0 on padding), or ``None``.
        values: ``[N]`` float, the critic's value of each step's prompt before the update (the ``gae`` estimator's
            ``V``; filled by ``empg_gym.agents.critic``), or ``None``.
    """

    response_mask: Tensor
    old_logp: Tensor
    reward: Tensor
    group_id: Tensor
    traj_id: Tensor
    step_index: Tensor
    is_last: Tensor
    ref_logp: Tensor | None = None
    token_entropy: Tensor | None = None
    step_reward: Tensor | None = None
    obs_key: Tensor | None = None
    format_penalty: Tensor | None = None
    token_uncertainty: Tensor | None = None
    values: Tensor | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.response_mask, Tensor) or self.response_mask.dim() != 2:
            got = list(self.response_mask.shape) if isinstance(self.response_mask, Tensor) else self.response_mask
            raise ConfigError(f"StepBatch.response_mask must be a [N, T] tensor, got {got}.")
        n, t = self.response_mask.shape
        for name in _PER_TOKEN:
            x = getattr(self, name)
            if x is not None and (not isinstance(x, Tensor) or tuple(x.shape) != (n, t)):
                got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ConfigError(f"StepBatch.{name} must be [N, T] = [{n}, {t}] like response_mask, got {got}.")
        for name in _PER_SAMPLE:
            x = getattr(self, name)
            if x is not None and (not isinstance(x, Tensor) or tuple(x.shape) != (n,)):
                got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ConfigError(f"StepBatch.{name} must be [N] = [{n}] (one value per step), got {got}.")
        for name in ("group_id", "traj_id", "step_index", "obs_key"):
            x = getattr(self, name)
            if x is not None and (x.is_floating_point() or x.is_complex()):
                raise ConfigError(f"StepBatch.{name} must be an integer tensor, got dtype {x.dtype}; use .long().")
        if n and bool((self.step_index < 0).any()):
            raise ConfigError(f"StepBatch.step_index must be >= 0, got min {int(self.step_index.min())}.")
        if n and self.format_penalty is not None and bool((self.format_penalty < 0).any()):
            raise ConfigError(
                f"StepBatch.format_penalty must be >= 0 (it is subtracted), got min {float(self.format_penalty.min())}."
            )

    @property
    def size(self) -> int:
        """Number of step samples ``N``."""
        return int(self.response_mask.shape[0])

    @property
    def response_length(self) -> Tensor:
        """``[N]`` number of response tokens of each step."""
        return self.response_mask.sum(-1)

    def select(self, keep: Tensor) -> StepBatch:
        """Return a new batch with only the rows where ``keep`` (``[N]`` bool) is True, or the given row indices."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return StepBatch(**{k: (v[keep] if v is not None else None) for k, v in values.items()})

    def with_reward(self, reward: Tensor) -> StepBatch:
        """Return a copy with ``reward`` replaced (e.g. after DAPO's overlong shaping)."""
        return replace(self, reward=reward)


def observation_key(text: str) -> int:
    """Return a process-independent signed 64-bit key of an observation text (BLAKE2b), for GiGPO's anchor groups.

    Python's ``hash`` is salted per process; this key is the same in every process and on every machine.

    Example:
        >>> observation_key("You are in room 1.") == observation_key("You are in room 1.")
        True
        >>> observation_key("a") == observation_key("b")
        False
    """
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def observation_keys(texts: list[str]) -> Tensor:
    """``[N]`` int64 tensor of :func:`observation_key` for each text."""
    return torch.tensor([observation_key(t) for t in texts], dtype=torch.long)
