"""empg-gym on verl 0.9.1: an agent loop, advantage estimators and a v1 trainer mode (see docs/verl.md).

The agent loop ``empg_gym`` (:class:`GymAgentLoop`), the estimators ``empg``, ``gigpo`` and ``empg_gym_grpo``, and
the trainer mode ``empg_gym`` (:class:`GymStepTrainer`). Importing this package registers all of them with verl. verl imports it by itself in every process once empg-gym is
installed (the ``verl.plugins`` entry point); ``VERL_USE_EXTERNAL_MODULES=empg_gym.integrations.verl`` does the same
and raises instead of logging at debug level if the import fails. This is the only empg-gym code that imports verl;
it needs ``pip install "empg-gym[verl]"``.
"""

from __future__ import annotations

try:
    import verl
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(
        f"empg_gym.integrations.verl needs verl 0.9.1 ({e}); install it with pip install 'empg-gym[verl]' "
        "(in this repo: make setup-verl, then use .venv-verl/bin/python)."
    ) from e

#: The verl release this integration was written and tested against.
VERL_VERSION = "0.9.1"

if verl.__version__ != VERL_VERSION:  # pragma: no cover - depends on the install
    import warnings

    warnings.warn(
        f"empg_gym.integrations.verl was written for verl {VERL_VERSION}, found {verl.__version__}; the agent-loop, "
        "estimator and v1-trainer APIs it uses may differ. Install verl==0.9.1.",
        stacklevel=2,
    )

from empg_gym.integrations.verl.agent_loop import GymAgentLoop  # noqa: E402
from empg_gym.integrations.verl.episodes import (  # noqa: E402
    AGENT_NAME,
    EpisodeSpec,
    LoopSettings,
    episode_rows,
    write_parquet,
)
from empg_gym.integrations.verl.estimators import (  # noqa: E402
    compute_empg_gym_grpo_step_advantage,
    compute_empg_step_advantage,
    compute_gigpo_step_advantage,
    provide_step_rows,
)
from empg_gym.integrations.verl.steps import STEP_ESTIMATORS, StepRows, algorithm_for, step_advantages  # noqa: E402
from empg_gym.integrations.verl.trainer import TRAINER_MODE, GymStepTrainer, read_step_rows  # noqa: E402

__all__ = [
    "AGENT_NAME", "STEP_ESTIMATORS", "TRAINER_MODE", "VERL_VERSION", "EpisodeSpec", "GymAgentLoop", "GymStepTrainer",
    "LoopSettings", "StepRows", "algorithm_for", "compute_empg_gym_grpo_step_advantage", "compute_empg_step_advantage",
    "compute_gigpo_step_advantage", "episode_rows", "provide_step_rows", "read_step_rows", "step_advantages",
    "write_parquet",
]
