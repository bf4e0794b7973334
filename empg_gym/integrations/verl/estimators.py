"""verl advantage estimators ``empg``, ``gigpo``, ``empg_gym_grpo``, ``empg-verl-agent`` and ``empg+<base>``.

They are chosen with ``algorithm.adv_estimator=...``; the names are :data:`~empg_gym.integrations.verl.steps.STEP_ESTIMATORS`.

Each is registered with verl's ``register_adv_est`` and has verl's estimator signature
``fn(token_level_rewards, response_mask, index, config, **kwargs) -> (advantages, returns)``, both ``[bs, T]``.
verl's call passes no step index, trajectory id, anchor observation or entropy, so the estimator also takes them as
``step_rows=`` (:class:`~empg_gym.integrations.verl.steps.StepRows`) or, when verl calls it, from the
:func:`provide_step_rows` context that the ``empg_gym`` v1 trainer mode opens around verl's own advantage step
(:mod:`~empg_gym.integrations.verl.trainer`). Without either it fails and says how to run it.

The numbers are ours: :func:`~empg_gym.integrations.verl.steps.step_advantages` builds a ``StepBatch`` as our trainer
does and calls ``compute_advantages`` with the preset (``empg`` = GRPO + EMPG, ``gigpo``, ``grpo``). ``returns`` equal
the advantages, as for verl's GRPO.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor
from verl.trainer.ppo.core_algos import register_adv_est

from empg_gym.errors import ConfigError
from empg_gym.integrations.verl.steps import STEP_ESTIMATORS, StepRows, algorithm_for, step_advantages


@dataclass
class StepContext:
    """What :func:`provide_step_rows` hands to the estimators: the batch's step rows, and the metrics they return."""

    rows: StepRows
    metrics: dict[str, float] = field(default_factory=dict)


_CONTEXT: contextvars.ContextVar[StepContext | None] = contextvars.ContextVar("empg_gym_step_rows", default=None)


@contextlib.contextmanager
def provide_step_rows(rows: StepRows) -> Iterator[StepContext]:
    """Make ``rows`` the step facts of the batch verl computes advantages for inside this block."""
    context = StepContext(rows)
    token = _CONTEXT.set(context)
    try:
        yield context
    finally:
        _CONTEXT.reset(token)


def _make(name: str) -> Any:
    def estimator(
        token_level_rewards: Tensor,
        response_mask: Tensor,
        index: Any = None,
        config: Any = None,
        step_rows: StepRows | None = None,
        **kwargs: Any,
    ) -> tuple[Tensor, Tensor]:
        context = _CONTEXT.get()
        rows = step_rows if step_rows is not None else (context.rows if context is not None else None)
        if rows is None:
            raise ConfigError(
                f"algorithm.adv_estimator={name!r} needs each row's step index, trajectory id, anchor observation and "
                "entropy, which verl's estimator call does not pass. Run verl's v1 trainer with "
                "trainer.v1.trainer_mode=empg_gym (it supplies them), or call the estimator with step_rows=."
            )
        if index is None:
            raise ConfigError(f"algorithm.adv_estimator={name!r} needs verl's uid index (the prompt groups); got None.")
        advantages, metrics = step_advantages(algorithm_for(name, config), token_level_rewards, response_mask,
                                              list(index), rows)
        if context is not None and step_rows is None:
            context.metrics.update(metrics)
        return advantages, advantages

    ident = name.replace("+", "_plus_").replace("-", "_")
    estimator.__name__ = estimator.__qualname__ = f"compute_{ident}_step_advantage"
    estimator.__doc__ = f"verl estimator {name!r}: our {STEP_ESTIMATORS[name]!r} preset on step rows (see module)."
    return register_adv_est(name)(estimator)


#: Every estimator of :data:`STEP_ESTIMATORS` as registered with verl, by verl name.
STEP_ESTIMATOR_FNS: dict[str, Any] = {}
for _name in STEP_ESTIMATORS:
    STEP_ESTIMATOR_FNS[_name] = _make(_name)
compute_empg_step_advantage = STEP_ESTIMATOR_FNS["empg"]
compute_gigpo_step_advantage = STEP_ESTIMATOR_FNS["gigpo"]
compute_empg_gym_grpo_step_advantage = STEP_ESTIMATOR_FNS["empg_gym_grpo"]
