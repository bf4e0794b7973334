"""verl v1 trainer mode ``empg_gym`` (``trainer.v1.trainer_mode=empg_gym``): verl's sync trainer, step-aware advantages.

:class:`GymStepTrainer` is verl's ``PPOTrainerSync`` with one addition: when ``algorithm.adv_estimator`` is one of
ours (``empg``, ``gigpo``, ``empg_gym_grpo``), its advantage step first reads each row's ``extra_fields`` (written by
the ``empg_gym`` agent loop) and the per-token ``entropy`` that verl's old-log-prob pass stored, then runs verl's own
advantage step (KL-in-reward, rollout correction, ``compute_advantage``, the write-back) inside
:func:`~empg_gym.integrations.verl.estimators.provide_step_rows`, so verl's call of our estimator sees them. Other
estimators run verl's step unchanged. Our metrics (``empg/*``, ``gigpo/*``, ``adv/*``) join verl's.

verl's sync code (replay buffer, refill, checkpointing) compares ``trainer.v1.trainer_mode`` with the string
``"sync"`` in a dozen places, so ``empg_gym`` only selects this class: the config it runs with (a copy) says
``"sync"``, and the sync settings live under ``trainer.v1.sync`` as usual. The original config, which verl's task
runner passes to the agent-loop workers, keeps ``empg_gym``: :class:`~empg_gym.integrations.verl.GymAgentLoop`
refuses to start under any other mode when the estimator is one of ours, which would otherwise fail only at the
first advantage step, after a whole rollout.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
import transfer_queue as tq
from omegaconf import open_dict
from verl.trainer.ppo.v1 import PPOTrainerSync, register_trainer

from empg_gym.errors import ConfigError
from empg_gym.integrations.verl.episodes import check_export_sources
from empg_gym.integrations.verl.estimators import provide_step_rows
from empg_gym.integrations.verl.steps import STEP_ESTIMATORS, TRAINER_MODE, StepRows, algorithm_for

logger = logging.getLogger(__name__)



@register_trainer(TRAINER_MODE)
class GymStepTrainer(PPOTrainerSync):
    """verl's synchronous v1 trainer whose advantage step hands step rows to the empg-gym estimators."""

    def __init__(self, config: Any) -> None:
        # A copy: the caller's config (verl's task runner hands it on to the agent-loop workers) keeps saying
        # trainer_mode=empg_gym, which is how GymAgentLoop tells this mode from one whose estimator calls get no rows.
        config = copy.deepcopy(config)
        with open_dict(config):
            config.trainer.v1.trainer_mode = "sync"  # the class is chosen; verl's sync code keys on the name
        estimator = str(config.algorithm.adv_estimator)
        corr = config.algorithm.get("rollout_correction", None)
        if estimator in STEP_ESTIMATORS and algorithm_for(estimator, config.algorithm).empg is not None and corr \
                and corr.get("bypass_mode", False):
            raise ConfigError(
                f"algorithm.adv_estimator={estimator} needs the entropy of verl's old-log-prob pass, which "
                "rollout-correction bypass mode skips; set algorithm.rollout_correction.bypass_mode=False."
            )
        if estimator in STEP_ESTIMATORS or _plays_our_rows(config):
            files = [config.data.get("train_files"), config.data.get("val_files")]
            for line in check_export_sources([f for group in files for f in _file_list(group)]):
                logger.info("export check: %s", line)
        super().__init__(config)
        # verl printed the config before building us, and it says trainer_mode=sync: say which trainer this is
        logger.warning(
            "trainer.v1.trainer_mode=empg_gym: %s.%s (verl's sync trainer; the config reads 'sync' because verl's "
            "sync code keys on that name) with algorithm.adv_estimator=%s%s", type(self).__module__,
            type(self).__name__, estimator, " (step rows from the empg_gym agent loop)" if estimator in STEP_ESTIMATORS
            else " (verl's own advantage step, unchanged)")

    def _compute_advantage(self, batch: Any, metrics: dict) -> Any:
        estimator = str(self.config.algorithm.adv_estimator)
        if estimator not in STEP_ESTIMATORS:
            return super()._compute_advantage(batch, metrics)
        needs_entropy = algorithm_for(estimator, self.config.algorithm).empg is not None
        rows = read_step_rows(batch, with_entropy=needs_entropy)
        with provide_step_rows(rows) as context:
            batch = super()._compute_advantage(batch, metrics)
        metrics.update(context.metrics)
        return batch


def _file_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _plays_our_rows(config: Any) -> bool:
    agent = config.actor_rollout_ref.rollout.get("agent", {}) or {}
    return str(agent.get("default_agent_loop", "")) == "empg_gym"


def read_step_rows(batch: Any, *, with_entropy: bool) -> StepRows:
    """Read the step facts of a v1 batch (a TransferQueue ``KVBatchMeta``) in its row order.

    ``extra_fields`` come from the agent loop, ``entropy`` (``[bs, T]``, needed by EMPG) from verl's old-log-prob
    pass with the ``response_mask`` it belongs to; rows tagged ``is_padding`` are verl's synthetic padding.
    """
    fields = ["extra_fields", "response_mask"] + (["entropy"] if with_entropy else [])
    data = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=fields)
    extra = [_unwrap(x) for x in _as_list(data["extra_fields"])]
    entropy = mask = None
    if with_entropy:
        entropy = _padded(data["entropy"]).float()
        mask = _padded(data["response_mask"])
        if entropy.shape != mask.shape:
            raise ConfigError(f"verl's entropy {list(entropy.shape)} does not match response_mask {list(mask.shape)}.")
    padding = torch.tensor([bool(tag.get("is_padding", False)) for tag in batch.tags], dtype=torch.bool)
    return StepRows(tuple(extra), entropy, mask, padding)


def _as_list(value: Any) -> list[Any]:
    # TransferQueue returns non-tensor fields as a NonTensorStack, a list or a numpy array, by backend.
    return value.tolist() if hasattr(value, "tolist") else list(value)


def _unwrap(value: Any) -> dict[str, Any]:
    value = getattr(value, "data", value)
    return dict(value) if value is not None else {}


def _padded(value: Any) -> torch.Tensor:
    if getattr(value, "is_nested", False):
        return value.to_padded_tensor(0)
    return value
