"""Our algorithm presets as verl command-line overrides: verl's own estimator and loss names where verl has them.

:func:`verl_overrides` turns a preset (``get_algorithm(name)``) into the overrides of ``python -m
verl.trainer.main_ppo``: the advantage estimator (verl's own ``grpo``, ``rloo``, ``reinforce_plus_plus``,
``reinforce_plus_plus_baseline``, ``gae``, or one registered by this integration: ``empg``, ``empg+<base>``,
``empg-verl-agent``, ``gigpo``), the policy loss (``vanilla``, ``gspo``, ``cispo``: verl's ``policy_loss.loss_mode``),
clip range, aggregation, KL, learning rate and sizes; EMPG's and GiGPO's knobs as ``+algorithm.empg.*`` /
``+algorithm.gigpo.*``. What verl cannot express is refused with the reason (see docs/verl.md, "Our presets on
verl"). Nothing here imports verl.
"""

from __future__ import annotations

from empg_gym.agents.algorithms import EMPG_BASES, AlgorithmConfig, get_algorithm
from empg_gym.errors import ConfigError
from empg_gym.integrations.verl.steps import STEP_ESTIMATORS

#: Our estimator -> verl 0.9.1's own ``algorithm.adv_estimator`` (``core_algos.AdvantageEstimator``).
NATIVE_ESTIMATORS: dict[str, str] = {"grpo": "grpo", "rloo": "rloo", "reinforce_pp": "reinforce_plus_plus",
                                     "reinforce_pp_baseline": "reinforce_plus_plus_baseline", "gae": "gae"}
#: Our KL estimator -> verl's ``actor.kl_loss_type``.
KL_TYPES: dict[str, str] = {"k1": "kl", "k2": "mse", "k3": "low_var_kl"}
#: Our estimator -> the base preset whose ``empg+<base>`` verl estimator runs EMPG over it.
_EMPG_OVER = {b.estimator: b.name for b in EMPG_BASES if f"empg+{b.name}" in STEP_ESTIMATORS and b.estimator != "grpo"}

_ACTOR = "actor_rollout_ref.actor"


def verl_estimator(config: AlgorithmConfig) -> str:
    """Return the ``algorithm.adv_estimator`` that computes ``config``'s advantages on verl.

    Example:
        >>> [verl_estimator(get_algorithm(n)) for n in ("rloo", "gspo", "empg+gspo", "empg-g", "reinforce_pp")]
        ['rloo', 'grpo', 'empg+gspo', 'empg', 'reinforce_plus_plus']
    """
    if config.name in STEP_ESTIMATORS and STEP_ESTIMATORS[config.name] == config.name:
        return config.name  # registered with verl under the preset's own name (empg, empg+rloo, empg-verl-agent...)
    if config.reward_signal != "outcome":
        raise ConfigError(f"{config.name!r} uses reward_signal={config.reward_signal!r}; the verl agent loop puts the "
                          "outcome on every row, so only reward_signal='outcome' runs on verl.")
    verl_agent = (config.traj_level_stats, config.format_penalty_on) == (False, "reward")
    if verl_agent:
        if config.empg is None or config.estimator != "grpo":
            raise ConfigError(f"{config.name!r}: verl-agent's statistics and penalty order run on verl only as "
                              "EMPG over GRPO (algorithm.adv_estimator=empg-verl-agent).")
        return "empg-verl-agent"
    if not config.traj_level_stats or config.format_penalty_on != "advantage":
        raise ConfigError(f"{config.name!r} sets traj_level_stats={config.traj_level_stats}, format_penalty_on="
                          f"{config.format_penalty_on!r}; on verl only both defaults, or both flipped (EMPG over "
                          "GRPO, empg-verl-agent), have an estimator.")
    if config.empg is not None:
        if config.estimator == "grpo":
            return "empg"
        if config.estimator not in _EMPG_OVER:
            raise ConfigError(f"No verl estimator runs EMPG over {config.estimator!r} ({config.name!r}): the verl "
                              f"rows carry no critic values for our turn-level GAE. Registered: {sorted(STEP_ESTIMATORS)}.")
        return f"empg+{_EMPG_OVER[config.estimator]}"
    if config.estimator == "gigpo":
        return "gigpo"
    if config.estimator not in NATIVE_ESTIMATORS:
        raise ConfigError(f"verl has no estimator for {config.estimator!r} ({config.name!r}); known: "
                          f"{sorted(NATIVE_ESTIMATORS)} and ours {sorted(STEP_ESTIMATORS)}.")
    return NATIVE_ESTIMATORS[config.estimator]


def verl_overrides(name: str) -> list[str]:
    """Return the overrides (``key=value``) that run the preset ``name`` as verl's own recipe, as far as verl can.

    A key verl's config lacks starts with ``+`` (EMPG's and GiGPO's blocks). The critic of ``ppo`` becomes verl's
    token-level GAE critic (gamma = lambda = 1, verl's defaults: its critic sees each row alone), with our critic's
    learning-rate scale and value clip. DAPO's overlong shaping has no override (verl applies it in a reward manager
    the empg_gym loop does not use), nor does ``clip_c=None`` (verl's vanilla loss always applies its dual clip 3.0).

    Example:
        >>> verl_overrides("dr_grpo")[:4]
        ['algorithm.adv_estimator=grpo', 'algorithm.norm_adv_by_std_in_grpo=False', 'actor_rollout_ref.actor.policy_loss.loss_mode=vanilla', 'actor_rollout_ref.actor.clip_ratio_low=0.2']
        >>> [o for o in verl_overrides("empg+rloo") if "empg" in o]
        ['algorithm.adv_estimator=empg+rloo', '+algorithm.empg.k=1.0', '+algorithm.empg.k_next=1.0', '+algorithm.empg.zeta=0.05', '+algorithm.empg.recentre=True']
    """
    c = get_algorithm(name)
    out = [f"algorithm.adv_estimator={verl_estimator(c)}", f"algorithm.norm_adv_by_std_in_grpo={c.norm_by_std}",
           f"{_ACTOR}.policy_loss.loss_mode={c.loss_mode}", f"{_ACTOR}.clip_ratio_low={c.clip_low}",
           f"{_ACTOR}.clip_ratio_high={c.clip_high}", f"{_ACTOR}.loss_agg_mode={c.loss_agg}"]
    if c.loss_norm_len is not None:
        out.append(f"{_ACTOR}.loss_scale_factor={c.loss_norm_len}")
    out += [f"{_ACTOR}.use_kl_loss={c.use_kl and c.kl_coef > 0}", f"{_ACTOR}.kl_loss_coef={c.kl_coef}",
            f"{_ACTOR}.kl_loss_type={KL_TYPES[c.kl_kind]}", f"{_ACTOR}.optim.lr={c.lr}",
            f"data.train_batch_size={c.tasks_per_batch}", f"actor_rollout_ref.rollout.n={c.group_size}",
            f"trainer.total_training_steps={c.updates}"]
    if c.filter_groups:
        out += ["algorithm.filter_groups.enable=True", "algorithm.filter_groups.metric=won",
                f"algorithm.filter_groups.max_num_gen_batches={c.max_resample_batches}"]
    if c.empg is not None:
        out += [f"+algorithm.empg.{k}={getattr(c.empg, k)}" for k in ("k", "k_next", "zeta", "recentre")]
    if c.estimator == "gigpo":
        out += [f"+algorithm.gigpo.{k}={getattr(c.gigpo, k)}" for k in ("omega", "gamma")]
    if c.critic is not None:
        lr = c.critic.lr if c.critic.lr is not None else c.critic.lr_scale * c.lr
        out += ["algorithm.gamma=1.0", "algorithm.lam=1.0", f"critic.optim.lr={lr:.6g}",
                "critic.model.path=${actor_rollout_ref.model.path}",  # verl's critic starts from the policy
                "critic.ppo_micro_batch_size_per_gpu=${actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu}"]
        if c.critic.clip is not None:
            out.append(f"critic.cliprange_value={c.critic.clip}")
    return out
