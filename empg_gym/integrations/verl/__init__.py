"""empg-gym on verl 0.9.1: an agent loop, advantage estimators and a v1 trainer mode (see docs/verl.md).

The agent loop ``empg_gym`` (:class:`GymAgentLoop`), the estimators ``empg``, ``gigpo``, ``empg_gym_grpo``,
``empg-verl-agent`` and ``empg+<base>`` (``STEP_ESTIMATORS``; our presets as verl overrides: ``verl_overrides``), and
the trainer mode ``empg_gym`` (:class:`GymStepTrainer`). verl imports this package by itself in every process once
empg-gym is installed (the ``verl.plugins`` entry point); ``VERL_USE_EXTERNAL_MODULES=empg_gym.integrations.verl``
does the same and raises instead of logging at debug level if the import fails. This is the only empg-gym code that
imports verl; it needs ``pip install "empg-gym[verl]"``.

Importing this package is cheap: each part registers itself with verl right after the verl module it extends is
imported in that process (an import hook, :class:`_AfterImport`), so a vLLM server or an FSDP actor, which never
imports verl's v1 trainer, never loads ours either (issue #21: the eager import loaded ~450 more modules, the v1
trainer stack, in every verl process):

====================================================  =====================================================
when this verl module is imported                     this part registers
====================================================  =====================================================
``verl.trainer.ppo.core_algos``                        the estimators (``register_adv_est``)
``verl.experimental.agent_loop.agent_loop``            the agent loop (``@register("empg_gym")``)
``verl.trainer.ppo.v1``                                the trainer mode (``register_trainer("empg_gym")``)
====================================================  =====================================================

The names below (``GymAgentLoop``, ``GymStepTrainer``...) import their module on first access.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

try:
    import verl
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        f"empg_gym.integrations.verl needs verl 0.9.1 ({e}); install it with pip install 'empg-gym[verl]' "
        "(in this repo: make setup-verl, then use .venv-verl/bin/python)."
    ) from e

#: The verl release this integration was written and tested against.
VERL_VERSION = "0.9.1"

if getattr(verl, "__version__", VERL_VERSION) != VERL_VERSION:  # pragma: no cover - depends on the install
    import warnings

    warnings.warn(
        f"empg_gym.integrations.verl was written for verl {VERL_VERSION}, found {verl.__version__}; the agent-loop, "
        "estimator and v1-trainer APIs it uses may differ. Install verl==0.9.1.",
        stacklevel=2,
    )

#: verl module -> our module that registers with it, imported right after it.
REGISTRATIONS = {
    "verl.trainer.ppo.core_algos": f"{__name__}.estimators",
    "verl.experimental.agent_loop.agent_loop": f"{__name__}.agent_loop",
    "verl.trainer.ppo.v1": f"{__name__}.trainer",
}

_EXPORTS = {
    "GymAgentLoop": "agent_loop",
    "AGENT_NAME": "episodes", "EpisodeSpec": "episodes", "LoopSettings": "episodes", "episode_rows": "episodes",
    "write_parquet": "episodes",
    "compute_empg_gym_grpo_step_advantage": "estimators", "compute_empg_step_advantage": "estimators",
    "compute_gigpo_step_advantage": "estimators", "provide_step_rows": "estimators",
    "STEP_ESTIMATOR_FNS": "estimators", "NATIVE_ESTIMATORS": "recipes", "verl_estimator": "recipes",
    "verl_overrides": "recipes", "STEP_ESTIMATORS": "steps", "StepRows": "steps", "algorithm_for": "steps", "step_advantages": "steps",
    "TRAINER_MODE": "steps", "GymStepTrainer": "trainer", "read_step_rows": "trainer",
}
__all__ = sorted([*_EXPORTS, "VERL_VERSION", "REGISTRATIONS"])


class _AfterImport(importlib.abc.MetaPathFinder):
    """Import our module ``REGISTRATIONS[name]`` right after verl's module ``name`` has executed (once each)."""

    def __init__(self, pending: dict[str, str]) -> None:
        self.pending = pending

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None) -> Any:
        if name not in self.pending:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return None
        ours = self.pending.pop(name)
        run = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run(module)
            importlib.import_module(ours)

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]  # this spec's own loader instance
        return spec


def _install() -> None:
    pending = {}
    for theirs, ours in REGISTRATIONS.items():
        if theirs in sys.modules:  # already imported in this process: register now
            importlib.import_module(ours)
        else:
            pending[theirs] = ours
    if pending and not any(isinstance(f, _AfterImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImport(pending))


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_install()
