"""Frozen, validated configuration of one policy-gradient algorithm (GRPO, DAPO, EMPG, GiGPO, or yours).

Every knob the trainer needs lives here, so the trainer never branches on an algorithm's name. Override with
``dataclasses.replace(get_algorithm("empg"), clip_high=0.28)``; nested knobs likewise
(``replace(cfg, empg=replace(cfg.empg, zeta=0.1))``). Invalid values raise :class:`~empg_gym.errors.ConfigError`
naming the rule, the value and the fix.

Configs import no registry (issue #23: ``config`` <-> ``registry`` <-> ``uncertainty`` was a circle). Whether a name
(``estimator``, ``modifiers``, ``empg.uncertainty``) is registered is checked by the module that owns the table: it
installs a check with :func:`add_name_check`, which every config of that class runs at the end of its validation
(``registry`` for estimators and modifiers, ``uncertainty`` for the signals; importing
``empg_gym.agents.algorithms`` installs both).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from empg_gym.agents.algorithms.losses import (
    KL_KINDS,
    LOSS_AGGS,
    POLICY_LOSS_KINDS,
    KLKind,
    LossAgg,
    PolicyLossKind,
)
from empg_gym.errors import ConfigError, did_you_mean

C = TypeVar("C")

#: Checks of registered names, by config class: ``fn(config)`` raising :class:`ConfigError` (see the module docstring).
NAME_CHECKS: dict[type, list[Callable[[Any], None]]] = {}


def add_name_check(cls: type[C], check: Callable[[C], None]) -> Callable[[C], None]:
    """Run ``check(config)`` at the end of the validation of every ``cls`` config (adding it twice runs it once).

    Example:
        >>> def no_doc(cfg):
        ...     _require(cfg.name != "doc-forbidden", "That name is taken by the docs.")
        >>> _ = add_name_check(AlgorithmConfig, no_doc)
        >>> AlgorithmConfig(name="doc-forbidden")
        Traceback (most recent call last):
        ...
        empg_gym.errors.ConfigError: That name is taken by the docs.
        >>> NAME_CHECKS[AlgorithmConfig].remove(no_doc)
    """
    checks = NAME_CHECKS.setdefault(cls, [])
    if check not in checks:
        checks.append(check)
    return check


def _run_name_checks(config: Any) -> None:
    for cls in type(config).__mro__:  # a subclass of a config runs its parent's checks too
        for check in NAME_CHECKS.get(cls, ()):
            check(config)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


@dataclass(frozen=True)
class EMPGConfig:
    """EMPG's knobs (arXiv 2509.09265, defaults from the paper).

    Attributes:
        k: sharpness of the self-calibrating scale ``g = exp(-k H_norm) / mean(exp(-k H_norm))``.
        k_next: sharpness of the future-clarity bonus ``f = exp(-k_next H_norm_{t+1})``.
        zeta: weight of the bonus in ``A_mod = g A + zeta f``.
        eps: added to ``max H - min H`` in the batch min-max normalisation.
        recentre: subtract the batch mean of ``A_mod`` (no std division), EMPG's last step in the paper, DESIGN §7
            and ARLArena's ``compute_EMPG_advantage``; every preset keeps it. ``False`` returns ``g A + zeta f``
            as it is, so that ``k = 0, zeta = 0`` (``g = 1``, no bonus) gives the base's advantage bit for bit: the
            re-centring is a step of its own, not part of the modulation (issue #23).
        uncertainty: the per-token signal whose step mean is ``H`` (a name registered with
            ``register_uncertainty``): ``entropy`` (Shannon, the paper's), ``renyi2`` (``-log sum p^2``),
            ``one_minus_p`` (``1 - p(y_t)``), ``mc_dropout`` (variance of ``log p(y_t)`` over ``K`` dropout passes) or
            ``lora_ensemble`` (its variance over ``K`` trained low-rank output heads). See docs/algorithms.md.
        uncertainty_samples: ``K``, the dropout passes or ensemble members of the model-based signals (>= 2).
        mc_dropout_p: dropout probability of ``mc_dropout``'s passes.
        ensemble_rank: rank ``r`` of each ``lora_ensemble`` member's output-layer adapter.
        ensemble_lr: AdamW learning rate of the ``lora_ensemble`` members (``None``: the policy's).
    """

    k: float = 1.0
    k_next: float = 1.0
    zeta: float = 0.05
    eps: float = 1e-8
    recentre: bool = True
    uncertainty: str = "entropy"
    uncertainty_samples: int = 4
    mc_dropout_p: float = 0.1
    ensemble_rank: int = 4
    ensemble_lr: float | None = None

    def __post_init__(self) -> None:
        _require(self.k >= 0, f"EMPGConfig.k must be >= 0 (0 turns the scaling off), got {self.k}.")
        _require(self.k_next >= 0, f"EMPGConfig.k_next must be >= 0, got {self.k_next}.")
        _require(self.zeta >= 0, f"EMPGConfig.zeta must be >= 0 (0 drops the bonus; paper 0.05), got {self.zeta}.")
        _require(self.eps > 0, f"EMPGConfig.eps must be > 0 (it guards max - min = 0), got {self.eps}.")
        _require(isinstance(self.uncertainty, str), f"EMPGConfig.uncertainty must be a signal's name, got "
                                                    f"{self.uncertainty!r}.")
        _require(isinstance(self.uncertainty_samples, int) and self.uncertainty_samples >= 1,
                 f"EMPGConfig.uncertainty_samples must be an int >= 1, got {self.uncertainty_samples!r}.")
        _require(0 <= self.mc_dropout_p < 1,
                 f"EMPGConfig.mc_dropout_p must be in [0, 1) (default 0.1), got {self.mc_dropout_p}.")
        _require(isinstance(self.ensemble_rank, int) and self.ensemble_rank >= 1,
                 f"EMPGConfig.ensemble_rank must be an int >= 1 (default 4), got {self.ensemble_rank!r}.")
        _require(self.ensemble_lr is None or self.ensemble_lr > 0,
                 f"EMPGConfig.ensemble_lr must be > 0 or None (the policy's learning rate), got {self.ensemble_lr}.")
        _run_name_checks(self)  # the signal is registered, and K fits its kind (installed by uncertainty.py)


@dataclass(frozen=True)
class GiGPOConfig:
    """GiGPO's knobs (arXiv 2505.10978; verl-agent's ALFWorld script).

    Attributes:
        omega: weight of the step-level term (``step_advantage_w``).
        gamma: discount of the step returns inside a trajectory.
        norm_by_std: ``True`` = verl-agent ``mean_std_norm``; ``False`` = ``mean_norm``.
    """

    omega: float = 1.0
    gamma: float = 0.95
    norm_by_std: bool = True

    def __post_init__(self) -> None:
        _require(self.omega >= 0, f"GiGPOConfig.omega must be >= 0 (paper: 1.0), got {self.omega}.")
        _require(0 <= self.gamma <= 1, f"GiGPOConfig.gamma must be in [0, 1] (paper: 0.95), got {self.gamma}.")


@dataclass(frozen=True)
class CriticConfig:
    """The ``ppo`` preset's turn-level critic (Turn-PPO, arXiv 2512.17008; the head: ``empg_gym.agents.critic``).

    Attributes:
        gamma: discount of GAE over env steps (Turn-PPO's ablation: 0.99).
        lam: GAE's lambda over env steps (Turn-PPO: 0.9).
        width: hidden width of the value head's MLP on the policy's features.
        lr: the head's AdamW learning rate, or ``None``: ``lr_scale`` x the policy's (Turn-PPO: the critic learns
            faster than the actor; verl-agent's PPO scripts use 10x, critic 1e-5 for actor 1e-6).
        lr_scale: see ``lr``.
        clip: verl's ``critic.cliprange_value`` (0.5), or ``None`` for an unclipped value loss.
        vf_coef: weight of the value loss in the update's objective (features are detached, so it scales the head's
            gradient only).
        grad_clip: the head's gradient-norm clip (verl's critic ``grad_clip`` 1.0).
    """

    gamma: float = 0.99
    lam: float = 0.9
    width: int = 256
    lr: float | None = None
    lr_scale: float = 10.0
    clip: float | None = 0.5
    vf_coef: float = 1.0
    grad_clip: float = 1.0

    def __post_init__(self) -> None:
        _require(0 <= self.gamma <= 1 and 0 <= self.lam <= 1,
                 f"CriticConfig.gamma and lam must be in [0, 1] (Turn-PPO: 0.99, 0.9), got {self.gamma}, {self.lam}.")
        _require(isinstance(self.width, int) and self.width >= 1,
                 f"CriticConfig.width must be an int >= 1 (default 256), got {self.width!r}.")
        _require(self.lr is None or self.lr > 0, f"CriticConfig.lr must be > 0 or None, got {self.lr}.")
        _require(self.lr_scale > 0, f"CriticConfig.lr_scale must be > 0 (default 10), got {self.lr_scale}.")
        _require(self.clip is None or self.clip > 0,
                 f"CriticConfig.clip must be > 0 (verl: 0.5) or None, got {self.clip}.")
        _require(self.vf_coef > 0, f"CriticConfig.vf_coef must be > 0, got {self.vf_coef}.")
        _require(self.grad_clip > 0, f"CriticConfig.grad_clip must be > 0 (verl: 1.0), got {self.grad_clip}.")


@dataclass(frozen=True)
class OverlongConfig:
    """DAPO's overlong reward shaping (arXiv 2503.14476, §3.4).

    Attributes:
        max_len: the response token budget (must equal the trainer's ``max_new_tokens``).
        buffer_len: length of the soft-penalty zone before ``max_len``.
        factor: penalty at ``max_len`` (``-factor``).
    """

    max_len: int = 512
    buffer_len: int = 128
    factor: float = 1.0

    def __post_init__(self) -> None:
        _require(self.max_len > 0, f"OverlongConfig.max_len must be > 0 tokens, got {self.max_len}.")
        _require(
            0 < self.buffer_len <= self.max_len,
            f"OverlongConfig.buffer_len must be in (0, max_len={self.max_len}], got {self.buffer_len}.",
        )
        _require(self.factor >= 0, f"OverlongConfig.factor must be >= 0, got {self.factor}.")


@dataclass(frozen=True)
class AlgorithmConfig:
    """One policy-gradient algorithm: estimator, modifiers, loss, KL, sampling and optimisation defaults.

    Attributes:
        name: a label for logs and reports (``grpo``, ``empg-dapo``...).
        estimator: registered base advantage estimator (``grpo``, ``gigpo``, or one you registered).
        norm_by_std: divide the group-centred reward by the group std (GRPO) or not (Dr.GRPO).
        traj_level_stats: compute group mean/std over trajectories, each counted once (the default: one outcome
            per trajectory, issue #6); ``False`` runs them over all step samples, as verl-agent does.
        format_penalty_on: where a malformed step's invalid-format penalty ``p_t`` (``StepBatch.format_penalty``)
            goes. ``"advantage"`` (default): ``A_t - p_t`` after the estimator and the modifiers, the same for every
            algorithm (issue #17). ``"reward"``: ``R_t - p_t`` before the estimator (and ``step_reward - p_t``, which
            GiGPO and ``reward_signal="return"`` read), as verl-agent and ARLArena do (their
            ``apply_invalid_action_penalty``); the estimator's normalisation then scales it, and DAPO's filter sees it.
        reward_signal: what the estimator reads as each step's reward. ``"outcome"`` (default): the trajectory's
            outcome ``R`` on every step (DESIGN §7). ``"return"``: the step's return-to-go
            ``G_t = sum_{j >= t} return_gamma^(j - t) r_j`` of the env's step rewards ``StepBatch.step_reward`` (use
            with an env's ``reward_mode="dense"``; docs/dense_rewards.md). DAPO's filter and overlong shaping then
            act on ``G_t``.
        return_gamma: discount of ``G_t`` when ``reward_signal="return"`` (1: the undiscounted return-to-go, which
            keeps potential-based shaping's telescoping sum).
        adv_eps: added to the group std.
        clip_low, clip_high: PPO clip range ``[1 - clip_low, 1 + clip_high]``; DAPO's clip-higher raises ``clip_high``.
        clip_c: dual-clip constant (> 1), or ``None`` (``loss_mode="vanilla"`` only).
        loss_mode: the per-token policy loss (verl's ``actor.policy_loss.loss_mode``): ``vanilla`` (PPO's clipped
            surrogate), ``gspo`` (sequence-level ratio) or ``cispo`` (clipped stop-gradient weight); see
            ``policy_loss``.
        loss_agg: how token losses reduce to a scalar (see ``agg_loss``).
        loss_norm_len: the constant divisor of ``seq-mean-token-sum-norm`` (``None``: the padded width ``T``).
        use_kl: add ``kl_coef * KL(pi || pi_ref)`` to the loss (needs ``StepBatch.ref_logp``).
        kl_coef, kl_kind: KL weight and estimator (``k1``, ``k2``, ``k3`` = verl's ``low_var_kl``).
        filter_groups: DAPO dynamic sampling: drop groups whose rewards are all equal and resample.
        max_resample_batches: how many generation batches the trainer may draw to fill one training batch.
        overlong: DAPO's overlong reward shaping, or ``None``.
        empg: EMPG's modulation of the base advantage, or ``None`` for plain base advantages.
        gigpo: GiGPO's knobs (read only by the ``gigpo`` estimator).
        critic: the turn-level critic of the ``gae`` estimator (``ppo``), or ``None``; the two go together.
        modifiers: further registered advantage modifiers, applied in order after EMPG.
        lr: learning rate. group_size: trajectories per task. tasks_per_batch: tasks per update.
        updates: number of policy updates (verl-agent's ``total_epochs``).

    Example:
        >>> from dataclasses import replace
        >>> cfg = AlgorithmConfig(name="grpo+empg", empg=EMPGConfig(zeta=0.1))
        >>> cfg.active_modifiers, replace(cfg, clip_high=0.28).clip_high
        (('empg',), 0.28)
        >>> replace(cfg, clip_c=0.9)
        Traceback (most recent call last):
        ...
        empg_gym.errors.ConfigError: clip_c (dual clip) must be > 1 (verl uses 3.0) or None, got 0.9.
    """

    name: str = "grpo"
    estimator: str = "grpo"
    norm_by_std: bool = True
    traj_level_stats: bool = True
    format_penalty_on: Literal["advantage", "reward"] = "advantage"
    reward_signal: Literal["outcome", "return"] = "outcome"
    return_gamma: float = 1.0
    adv_eps: float = 1e-6
    clip_low: float = 0.2
    clip_high: float = 0.2
    clip_c: float | None = None
    loss_mode: PolicyLossKind = "vanilla"
    loss_agg: LossAgg = "token-mean"
    loss_norm_len: int | None = None
    use_kl: bool = True
    kl_coef: float = 0.01
    kl_kind: KLKind = "k3"
    filter_groups: bool = False
    max_resample_batches: int = 10
    overlong: OverlongConfig | None = None
    empg: EMPGConfig | None = None
    gigpo: GiGPOConfig = field(default_factory=GiGPOConfig)
    critic: CriticConfig | None = None
    modifiers: tuple[str, ...] = ()
    lr: float = 1e-6
    group_size: int = 8
    tasks_per_batch: int = 16
    updates: int = 150

    def __post_init__(self) -> None:
        self._check_names()
        self._check_loss()
        _require(
            self.format_penalty_on in ("advantage", "reward"),
            f"format_penalty_on must be 'advantage' (subtracted after the estimator, the default) or 'reward' "
            f"(subtracted from the reward before it, verl-agent's order), got {self.format_penalty_on!r}."
            f"{did_you_mean(str(self.format_penalty_on), ('advantage', 'reward'))}",
        )
        _require(
            self.reward_signal in ("outcome", "return"),
            f"reward_signal must be 'outcome' (the trajectory's outcome on every step) or 'return' (each step's "
            f"return-to-go of the env's step rewards), got {self.reward_signal!r}."
            f"{did_you_mean(str(self.reward_signal), ('outcome', 'return'))}",
        )
        _require(
            0 <= self.return_gamma <= 1,
            f"return_gamma must be in [0, 1] (1 keeps dense rewards' telescoping sum), got {self.return_gamma}.",
        )
        _require(self.adv_eps > 0, f"adv_eps must be > 0 (GRPO uses 1e-6), got {self.adv_eps}.")
        _require(self.lr > 0, f"lr must be > 0 (verl-agent uses 1e-6), got {self.lr}.")
        _require(self.group_size >= 2, f"group_size must be >= 2 for a group baseline (paper: 8), got {self.group_size}.")
        _require(self.tasks_per_batch >= 1, f"tasks_per_batch must be >= 1 (paper: 16), got {self.tasks_per_batch}.")
        _require(self.updates >= 1, f"updates must be >= 1 (paper: 150), got {self.updates}.")
        _require(
            self.max_resample_batches >= 1,
            f"max_resample_batches must be >= 1 (DAPO in verl-agent: 10), got {self.max_resample_batches}.",
        )

    def _check_names(self) -> None:
        _require(
            isinstance(self.modifiers, tuple),
            f"modifiers must be a tuple of names, got {type(self.modifiers).__name__}; write modifiers=('name',).",
        )
        _require(
            "empg" not in self.modifiers,
            "modifiers must not list 'empg': set empg=EMPGConfig(...) instead (it runs first, before other modifiers).",
        )
        _require(
            (self.estimator == "gae") == (self.critic is not None),
            f"The gae estimator and a critic go together (estimator={self.estimator!r}, critic="
            f"{'set' if self.critic is not None else 'None'}); use the ppo preset, or set both "
            "estimator='gae' and critic=CriticConfig().",
        )
        _run_name_checks(self)  # estimator and modifiers are registered (installed by registry.py)

    def _check_loss(self) -> None:
        _require(
            self.clip_low >= 0 and (self.clip_low < 1 or self.loss_mode == "cispo"),
            f"clip_low must be in [0, 1) (GRPO/DAPO: 0.2), got {self.clip_low}; only loss_mode='cispo' takes "
            "clip_low >= 1 (no lower bound on its weight, MiniMax-M1).",
        )
        _require(self.clip_high >= 0, f"clip_high must be >= 0 (GRPO 0.2, DAPO 0.28), got {self.clip_high}.")
        _require(
            self.clip_c is None or self.clip_c > 1,
            f"clip_c (dual clip) must be > 1 (verl uses 3.0) or None, got {self.clip_c}.",
        )
        _require(
            self.loss_mode in POLICY_LOSS_KINDS,
            f"loss_mode must be one of {POLICY_LOSS_KINDS}, got {self.loss_mode!r}."
            f"{did_you_mean(str(self.loss_mode), POLICY_LOSS_KINDS)}",
        )
        _require(
            self.clip_c is None or self.loss_mode == "vanilla",
            f"clip_c (dual clip) applies to loss_mode='vanilla' only, got clip_c={self.clip_c} with "
            f"loss_mode={self.loss_mode!r}; set clip_c=None.",
        )
        _require(
            self.loss_agg in LOSS_AGGS,
            f"loss_agg must be one of {LOSS_AGGS}, got {self.loss_agg!r}.{did_you_mean(str(self.loss_agg), LOSS_AGGS)}",
        )
        _require(
            self.loss_norm_len is None or self.loss_norm_len > 0,
            f"loss_norm_len must be > 0 or None, got {self.loss_norm_len}.",
        )
        _require(
            self.kl_kind in KL_KINDS,
            f"kl_kind must be one of {KL_KINDS}, got {self.kl_kind!r}.{did_you_mean(str(self.kl_kind), KL_KINDS)}",
        )
        _require(
            self.kl_coef >= 0,
            f"kl_coef must be >= 0, got {self.kl_coef}; set use_kl=False to train without a reference policy.",
        )

    @property
    def active_modifiers(self) -> tuple[str, ...]:
        """The modifiers :func:`compute_advantages` applies, in order: EMPG (when ``empg`` is set), then ``modifiers``."""
        return (("empg",) if self.empg is not None else ()) + self.modifiers
