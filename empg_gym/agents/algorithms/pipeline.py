"""What the trainer calls, for any algorithm: :func:`compute_advantages` and :func:`actor_loss`.

With ``filter_groups`` (DAPO's dynamic sampling) it also calls :func:`informative_groups`.

Built-in registrations: estimators ``grpo``, ``gigpo``, ``rloo``, ``reinforce_pp``, ``reinforce_pp_baseline`` and
``gae`` (the ``ppo`` preset's turn-level GAE, from :mod:`empg_gym.agents.critic`'s values), modifier ``empg`` (its uncertainty signals are registered
in :mod:`empg_gym.agents.algorithms.uncertainty`).
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from empg_gym.agents.algorithms.advantages import (
    dapo_filter_groups,
    discounted_returns,
    empg_terms,
    gigpo_advantages,
    grpo_advantages,
    overlong_penalty,
    step_entropy,
)
from empg_gym.agents.algorithms.batch import StepBatch
from empg_gym.agents.algorithms.config import AlgorithmConfig
from empg_gym.agents.algorithms.estimators import (
    last_token_rewards,
    reinforce_pp_advantages,
    reinforce_pp_baseline_advantages,
    rloo_advantages,
    turn_gae,
)
from empg_gym.agents.algorithms.losses import LossNorm, agg_loss, kl_penalty, policy_loss
from empg_gym.agents.algorithms.registry import (
    get_estimator,
    get_modifier,
    register_estimator,
    register_modifier,
)
from empg_gym.errors import ConfigError

#: Metrics of :func:`actor_loss` that are a micro-batch's *share* of the mini-batch's value when a mini-batch
#: :class:`~empg_gym.agents.algorithms.losses.LossNorm` is passed: sum them over the micro-batches of a mini-batch.
#: The others are means over the micro-batch's response tokens.
SUMMED_METRICS: tuple[str, ...] = ("actor/pg_loss", "actor/kl", "actor/kl_loss", "actor/loss", "critic/vf_loss")


def _need(batch: StepBatch, field: str, who: str, what: str) -> Tensor:
    value = getattr(batch, field)
    if value is None:
        raise ConfigError(f"{who} needs StepBatch.{field} ({what}), but it is None; fill it when building the batch.")
    return value


@register_estimator("grpo")
def grpo_estimator(batch: StepBatch, config: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """GRPO / DAPO / Dr.GRPO base advantage from the outcome reward (see :func:`grpo_advantages`)."""
    traj = batch.traj_id if config.traj_level_stats else None
    A = grpo_advantages(batch.reward, batch.group_id, config.norm_by_std, config.adv_eps, traj_ids=traj)
    return A, {}


@register_estimator("gigpo")
def gigpo_estimator(batch: StepBatch, config: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """GiGPO: episode term plus ``omega`` x step term over anchor-state groups (see :func:`gigpo_advantages`).

    The episode term counts each trajectory once when ``config.traj_level_stats`` (the default), exactly as the
    ``grpo`` estimator does, so GiGPO's and GRPO's outcome advantages agree (issue #17). Needs ``batch.step_reward``
    (env reward of each step; returns are discounted with ``config.gigpo.gamma``) and ``batch.obs_key``
    (:func:`observation_key` of the observation each step acted on).
    """
    rewards = _need(batch, "step_reward", "The gigpo estimator", "the env reward received at each step")
    obs = _need(batch, "obs_key", "The gigpo estimator", "observation_key(observation text) of each step")
    G = discounted_returns(rewards, batch.traj_id, batch.step_index, config.gigpo.gamma)
    traj = batch.traj_id if config.traj_level_stats else None  # the episode term uses GRPO's statistics
    A = gigpo_advantages(batch.reward, batch.group_id, G, obs, config.gigpo.omega, config.gigpo.norm_by_std,
                         config.adv_eps, traj_ids=traj)
    n_groups = len(torch.unique(torch.stack([batch.group_id, obs], -1), dim=0))
    return A, {"gigpo/step_group_size_mean": batch.size / max(n_groups, 1), "gigpo/return_mean": float(G.mean())}


def _row_value(A: Tensor, mask: Tensor) -> Tensor:
    """``[N]`` the value of a ``[N, T]`` advantage that is constant over each row's response tokens (0 if none)."""
    m = mask.to(A.dtype)
    return (A * m).sum(-1) / m.sum(-1).clamp(min=1.0)


@register_estimator("rloo")
def rloo_estimator(batch: StepBatch, config: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """RLOO's leave-one-out advantage of each step's reward (see :func:`rloo_advantages`).

    With ``config.traj_level_stats`` (the default) the ``n`` of a group counts its trajectories and its mean weighs
    each trajectory once, as the ``grpo`` estimator does; else every step row is a sample (verl-agent's layout).
    """
    traj = batch.traj_id if config.traj_level_stats else None
    return rloo_advantages(batch.reward, batch.group_id, traj), {}


@register_estimator("reinforce_pp")
def reinforce_pp_estimator(batch: StepBatch, config: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """REINFORCE++: each step's reward on its last response token, ``gamma = 1``, whitened over all response tokens.

    See :func:`reinforce_pp_advantages`. With ``gamma = 1`` (verl's default) every token of a step gets the step's
    reward as its return, so the advantage is one value per step; discount across steps with
    ``reward_signal="return"`` and ``return_gamma``. The whitening weighs a step by its response tokens, as verl.
    """
    mask = batch.response_mask
    A, _ = reinforce_pp_advantages(last_token_rewards(batch.reward, mask), mask, gamma=1.0)
    return _row_value(A, mask), {}


@register_estimator("reinforce_pp_baseline")
def reinforce_pp_baseline_estimator(batch: StepBatch, config: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """REINFORCE++-baseline: the group mean removed, then whitened over all response tokens.

    See :func:`reinforce_pp_baseline_advantages`; group means as the ``grpo`` estimator's (``traj_level_stats``).
    """
    traj = batch.traj_id if config.traj_level_stats else None
    A = reinforce_pp_baseline_advantages(batch.reward, batch.group_id, batch.response_mask, traj)
    return _row_value(A, batch.response_mask), {}


def gae_step_rewards(batch: StepBatch, config: AlgorithmConfig) -> Tensor:
    """``[N]`` the reward of each step that turn-level GAE discounts.

    ``reward_signal="outcome"``: the outcome (with the config's shaping) on each trajectory's last step, 0 before
    (the critic bootstraps the rest). ``"return"``: the env's reward of each step (``batch.step_reward``).
    """
    if config.reward_signal == "return":
        return _need(batch, "step_reward", "reward_signal='return'", "the env reward received at each step")
    return torch.where(batch.is_last, batch.reward, torch.zeros_like(batch.reward))


@register_estimator("gae")
def gae_estimator(batch: StepBatch, config: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """PPO's turn-level GAE over env steps from the critic's ``batch.values`` (see :func:`turn_gae`).

    Rewards as :func:`gae_step_rewards`; ``gamma`` and ``lam`` from ``config.critic``. Advantages are whitened over
    the batch's steps.
    """
    critic = config.critic
    if critic is None:
        raise ConfigError("The gae estimator needs config.critic (CriticConfig); use the ppo preset.")
    V = _need(batch, "values", "The gae estimator", "the critic's value of each step; the trainer's critic fills it")
    A, G = turn_gae(gae_step_rewards(batch, config), V, batch.traj_id, batch.step_index, critic.gamma, critic.lam)
    return A, {"critic/returns_mean": float(G.mean())}


@register_modifier("empg")
def empg_modifier(advantages: Tensor, batch: StepBatch, config: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """EMPG over the base advantage: ``g A + zeta f``, minus its batch mean when ``config.empg.recentre``.

    See :func:`empg_advantages`; every preset re-centres (the paper's last step).
    ``H_t`` is the step mean of the per-token signal ``config.empg.uncertainty`` names: ``batch.token_entropy`` for
    the default ``entropy`` (the paper's), else ``batch.token_uncertainty``. The ``empg/H_*`` metrics describe that
    signal.
    """
    cfg = config.empg
    if cfg is None:
        raise ConfigError("The empg modifier needs config.empg; set empg=EMPGConfig() (k=k'=1, zeta=0.05).")
    if cfg.uncertainty == "entropy":
        u = _need(batch, "token_entropy", "EMPG", "per-token entropy of the sampling distribution")
    else:
        u = _need(batch, "token_uncertainty", f"EMPG with uncertainty={cfg.uncertainty!r}",
                  "that signal at every response token; the trainer fills it")
    H = step_entropy(u, batch.response_mask)
    H_norm, g, f = empg_terms(H, batch.traj_id, batch.step_index, cfg.k, cfg.k_next, cfg.eps)
    A_mod = g * advantages + cfg.zeta * f
    has_bonus = f > 0
    metrics = {
        "empg/H_mean": float(H.mean()),
        "empg/H_norm_mean": float(H_norm.mean()),
        "empg/g_mean": float(g.mean()),
        "empg/g_min": float(g.min()),
        "empg/g_max": float(g.max()),
        "empg/f_mean": float(f[has_bonus].mean()) if bool(has_bonus.any()) else 0.0,
        "empg/bonus_frac": float(has_bonus.float().mean()),
        "empg/mod_mean_removed": float(A_mod.mean()) if cfg.recentre else 0.0,
    }
    return (A_mod - A_mod.mean() if cfg.recentre else A_mod), metrics


def step_returns(config: AlgorithmConfig, batch: StepBatch) -> tuple[StepBatch, dict[str, float]]:
    """With ``reward_signal="return"``, replace ``batch.reward`` by each step's return-to-go; identity otherwise.

    ``G_t = sum_{j >= t} gamma^(j - t) r_j`` over ``batch.step_reward`` (the env's reward of each step, scaled like
    the outcome) within each trajectory, ``gamma = config.return_gamma`` (see :func:`discounted_returns`). Every
    estimator then reads ``G_t`` where it read the outcome: GRPO's group statistics run over the group's steps
    (each trajectory weighing ``1/G`` with ``traj_level_stats``), GiGPO's episode term too.
    """
    if config.reward_signal == "outcome":
        return batch, {}
    r = _need(batch, "step_reward", "reward_signal='return'", "the env reward received at each step")
    G = discounted_returns(r, batch.traj_id, batch.step_index, config.return_gamma).to(batch.reward.dtype)
    return batch.with_reward(G), {"adv/return_mean": float(G.mean())}


def shape_rewards(config: AlgorithmConfig, batch: StepBatch) -> tuple[StepBatch, dict[str, float]]:
    """Return the batch with the reward the estimator sees, and metrics; identity with the defaults.

    The reward is the outcome, or each step's return-to-go (:func:`step_returns`), plus DAPO's overlong penalty when
    the config has it. With ``config.format_penalty_on == "reward"`` each step's invalid-format penalty is first
    subtracted from its outcome ``reward`` and from its env reward ``step_reward`` (which GiGPO's step returns and
    ``reward_signal="return"`` read), as verl-agent's ``apply_invalid_action_penalty`` does to both; the default
    subtracts it from the advantage instead (see :func:`compute_advantages`).
    """
    if config.format_penalty_on == "reward" and batch.format_penalty is not None:
        p = batch.format_penalty
        batch = replace(batch, reward=batch.reward - p.to(batch.reward.dtype),
                        step_reward=None if batch.step_reward is None else batch.step_reward - p.to(
                            batch.step_reward.dtype))
    batch, metrics = step_returns(config, batch)
    if config.overlong is not None:
        o = config.overlong
        pen = overlong_penalty(batch.response_length, o.max_len, o.buffer_len, o.factor).to(batch.reward.dtype)
        metrics.update({"dapo/overlong_penalty_mean": float(pen.mean()),
                        "dapo/overlong_frac": float((pen < 0).float().mean())})
        batch = batch.with_reward(batch.reward + pen)
    return batch, metrics


def informative_groups(config: AlgorithmConfig, batch: StepBatch) -> Tensor:
    """DAPO's dynamic-sampling filter on the reward the estimator sees: ``[N]`` bool, which samples to keep.

    True on the samples of groups whose shaped rewards (outcome, or return-to-go with ``reward_signal="return"``,
    plus the config's reward shaping, see :func:`shape_rewards`) are not all equal. A dropped group is one whose
    estimator advantages are all zero. The invalid-format penalty is not part of that reward by default (it is
    applied after the estimator, the same for every algorithm), so it neither keeps nor drops a group; with
    ``format_penalty_on="reward"`` it is, as in verl-agent.

    Example:
        >>> from empg_gym.agents.algorithms import get_algorithm
        >>> b = StepBatch(response_mask=torch.ones(4, 2, dtype=torch.bool), old_logp=torch.zeros(4, 2),
        ...               reward=torch.tensor([1.0, 0.0, 0.0, 0.0]), group_id=torch.tensor([0, 0, 1, 1]),
        ...               traj_id=torch.arange(4), step_index=torch.zeros(4, dtype=torch.long),
        ...               is_last=torch.ones(4, dtype=torch.bool), format_penalty=torch.tensor([0.0, 0.0, 0.1, 0.0]))
        >>> informative_groups(get_algorithm("dapo"), b).tolist()
        [True, True, False, False]
    """
    shaped, _ = shape_rewards(config, batch)
    return dapo_filter_groups(shaped.reward, batch.group_id)


def compute_advantages(config: AlgorithmConfig, batch: StepBatch) -> tuple[Tensor, dict[str, float]]:
    """Advantages for any algorithm: reward shaping, the estimator, each active modifier, then the format penalty.

    By default (``config.format_penalty_on="advantage"``) the invalid-format penalty is subtracted from the advantage
    of each malformed step (``A_t - p_t``, ``p_t`` = ``batch.format_penalty``), after the estimator's normalisation,
    the same way for every algorithm; ``"reward"`` subtracts it from the reward instead (:func:`shape_rewards`,
    verl-agent's order, the ``empg-verl-agent`` preset). Inside the
    estimator it would be divided by the group std: in a group whose trajectories all failed that std comes from the
    penalties alone, and one penalised step gets ``A = -8.3`` (8 failed 10-step trajectories), more than three times
    a real win's ``+2.5`` in a 1-of-8 group (issue #17). Outside, a penalty moves an advantage by ``p_t`` (0.1)
    whatever the group.

    Args:
        config: an :class:`AlgorithmConfig` (e.g. ``get_algorithm("empg")``).
        batch: the :class:`StepBatch` of the update (after DAPO's group filter, when the config filters).

    Returns:
        ``(advantages[N], metrics)`` with namespaced metric keys (``adv/*``, ``empg/*``, ``dapo/*``, ``gigpo/*``).

    Example:
        >>> from empg_gym.agents.algorithms import get_algorithm
        >>> mask = torch.ones(4, 3, dtype=torch.bool)
        >>> batch = StepBatch(response_mask=mask, old_logp=torch.zeros(4, 3), reward=torch.tensor([1.0, 1.0, 0.0, 0.0]),
        ...                   group_id=torch.tensor([0, 0, 0, 0]), traj_id=torch.tensor([0, 0, 1, 1]),
        ...                   step_index=torch.tensor([0, 1, 0, 1]), is_last=torch.tensor([False, True, False, True]),
        ...                   token_entropy=torch.tensor([[0.1] * 3, [0.2] * 3, [2.0] * 3, [1.5] * 3]))
        >>> A, metrics = compute_advantages(get_algorithm("empg"), batch)
        >>> [round(a, 3) for a in A.tolist()], round(metrics["empg/g_mean"], 6)
        ([0.763, 0.663, -0.645, -0.781], 1.0)
    """
    if batch.size == 0:
        raise ConfigError("compute_advantages got an empty batch (N = 0); collect at least one group first.")
    with torch.no_grad():  # advantages are constants of the loss, even if entropies came with a graph
        return _compute_advantages(config, batch)


def _compute_advantages(config: AlgorithmConfig, batch: StepBatch) -> tuple[Tensor, dict[str, float]]:
    batch, metrics = shape_rewards(config, batch)
    A, m = get_estimator(config.estimator)(batch, config)
    metrics.update(m)
    for name in config.active_modifiers:
        A, m = get_modifier(name)(A, batch, config)
        metrics.update(m)
    if batch.format_penalty is not None:
        if config.format_penalty_on == "advantage":
            A = A - batch.format_penalty.to(A.dtype)
        metrics["adv/format_penalty_frac"] = float((batch.format_penalty > 0).float().mean())
    metrics.update({"adv/mean": float(A.mean()), "adv/abs_mean": float(A.abs().mean()),
                    "adv/max": float(A.max()), "adv/min": float(A.min())})
    return A, metrics


def actor_loss(
    config: AlgorithmConfig, logp: Tensor, batch: StepBatch, advantages: Tensor, norm: LossNorm | None = None
) -> tuple[Tensor, dict[str, float]]:
    """Compute the actor's loss for any algorithm: the policy loss ``config.loss_mode`` names plus ``kl_coef`` x aggregated KL when ``use_kl``.

    Args:
        config: the algorithm's :class:`AlgorithmConfig`.
        logp: ``[N, T]`` log-probs of the batch's response tokens under the policy being trained.
        batch: the :class:`StepBatch` the log-probs belong to (``old_logp``, mask, ``ref_logp``).
        advantages: ``[N]`` from :func:`compute_advantages`.
        norm: when ``batch`` is one micro-batch of a mini-batch, the mini-batch's ``loss_norm(mask)``: the loss (and
            the :data:`SUMMED_METRICS`) are then this micro-batch's share, and the shares add up to the mini-batch's
            loss however it is split. ``None``: ``batch`` is the whole mini-batch.
    """
    loss, metrics = policy_loss(logp, batch.old_logp, advantages, batch.response_mask, config.clip_low,
                                config.clip_high, config.clip_c, config.loss_agg, config.loss_norm_len, norm,
                                kind=config.loss_mode)
    if config.use_kl and config.kl_coef > 0:
        ref = _need(batch, "ref_logp", "use_kl=True", "reference-policy log-probs; or set use_kl=False")
        kl = agg_loss(kl_penalty(logp, ref, config.kl_kind), batch.response_mask, config.loss_agg,
                      config.loss_norm_len, norm)
        loss = loss + config.kl_coef * kl
        metrics.update({"actor/kl": float(kl.detach()), "actor/kl_loss": float(kl.detach()),
                        "actor/kl_coef": config.kl_coef})
    metrics["actor/loss"] = float(loss.detach())
    return loss, metrics
