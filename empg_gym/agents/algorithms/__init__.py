"""The algorithm layer: GRPO, DAPO, EMPG, GiGPO and the verl baselines as registered, verified tensor functions.

The trainer needs two calls and never branches on an algorithm's name::

    cfg = get_algorithm("empg")                       # frozen AlgorithmConfig; dataclasses.replace to override
    advantages, metrics = compute_advantages(cfg, batch)   # batch: StepBatch, one row per env step
    loss, loss_metrics = actor_loss(cfg, logp, batch, advantages)   # or a micro-batch's share: norm=loss_norm(mask)

EMPG's step uncertainty (Shannon entropy by default) is a registered signal too: see :mod:`.uncertainty`.

Importing this package imports torch (``import empg_gym`` and ``import empg_gym.agents`` do not).
"""

from empg_gym.agents.algorithms.advantages import (
    dapo_filter_groups,
    discounted_returns,
    empg_advantages,
    empg_terms,
    gigpo_advantages,
    grpo_advantages,
    overlong_penalty,
    step_entropy,
    token_entropy,
)
from empg_gym.agents.algorithms.batch import StepBatch, observation_key, observation_keys
from empg_gym.agents.algorithms.config import (
    AlgorithmConfig,
    CriticConfig,
    EMPGConfig,
    GiGPOConfig,
    OverlongConfig,
)
from empg_gym.agents.algorithms.estimators import (
    gae_advantages,
    last_token_rewards,
    masked_whiten,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
    turn_gae,
)
from empg_gym.agents.algorithms.losses import (
    KL_KINDS,
    LOSS_AGGS,
    POLICY_LOSS_KINDS,
    LossNorm,
    agg_loss,
    explained_variance,
    kl_penalty,
    loss_norm,
    masked_mean,
    policy_loss,
    value_loss,
)
from empg_gym.agents.algorithms.pipeline import (
    SUMMED_METRICS,
    actor_loss,
    compute_advantages,
    gae_step_rewards,
    informative_groups,
    shape_rewards,
)
from empg_gym.agents.algorithms.presets import (
    ALGORITHMS,
    EMPG_BASES,
    get_algorithm,
    list_algorithms,
    register_algorithm,
    with_empg,
)
from empg_gym.agents.algorithms.registry import (
    ESTIMATORS,
    MODIFIERS,
    get_estimator,
    get_modifier,
    register_estimator,
    register_modifier,
)
from empg_gym.agents.algorithms.uncertainty import (
    UNCERTAINTIES,
    UNCERTAINTY_KINDS,
    LogitEnsemble,
    LoraEnsemble,
    MCDropout,
    UncertaintyHooks,
    build_uncertainty,
    generation_signal,
    get_uncertainty,
    logp_variance,
    register_uncertainty,
    token_signal,
)

__all__ = [
    "ALGORITHMS", "ESTIMATORS", "KL_KINDS", "LOSS_AGGS", "MODIFIERS", "SUMMED_METRICS", "AlgorithmConfig", "EMPGConfig",
    "GiGPOConfig", "LossNorm", "OverlongConfig", "StepBatch", "actor_loss", "agg_loss", "compute_advantages",
    "dapo_filter_groups", "discounted_returns", "empg_advantages", "empg_terms", "get_algorithm", "get_estimator",
    "get_modifier", "gigpo_advantages", "grpo_advantages", "informative_groups", "kl_penalty", "list_algorithms",
    "loss_norm", "masked_mean", "observation_key", "observation_keys", "overlong_penalty", "policy_loss",
    "register_algorithm", "register_estimator", "register_modifier", "shape_rewards", "step_entropy",
    "token_entropy", "UNCERTAINTIES", "UNCERTAINTY_KINDS", "LogitEnsemble", "LoraEnsemble", "MCDropout",
    "UncertaintyHooks", "build_uncertainty", "generation_signal", "get_uncertainty", "logp_variance",
    "register_uncertainty", "token_signal", "EMPG_BASES", "POLICY_LOSS_KINDS", "explained_variance", "gae_advantages",
    "last_token_rewards", "masked_whiten", "reinforce_pp_advantages", "reinforce_pp_baseline_advantages",
    "rloo_advantages", "value_loss", "with_empg", "CriticConfig", "gae_step_rewards", "turn_gae",
]
