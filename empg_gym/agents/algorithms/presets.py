"""Named algorithm presets with the defaults of verl-agent's ALFWorld scripts and the papers (DESIGN §7).

Every preset keeps GRPO's training defaults (verl-agent's ALFWorld script: KL k3 0.01 in the loss, lr 1e-6, 16 tasks
x 8, 150 updates) unless its paper's recipe changes the loss itself, so a bench compares estimators and losses, not
budgets. Each preset's comment cites its source and says what differs from verl 0.9.1's recipe.

``empg+<base>`` is EMPG's modulation (the one ``empg`` modifier, k = k' = 1, zeta = 0.05) over a preset: registered
for every base in :data:`EMPG_BASES`, and built by :func:`get_algorithm` for a base you registered yourself.
"""

from __future__ import annotations

from dataclasses import replace

# pipeline registers the built-in estimators the presets name (and, through registry and uncertainty, installs the
# checks of registered names), so the presets below are checked like any config.
from empg_gym.agents.algorithms import pipeline as _pipeline  # noqa: F401
from empg_gym.agents.algorithms import uncertainty as _uncertainty  # noqa: F401
from empg_gym.agents.algorithms.config import (
    AlgorithmConfig,
    CriticConfig,
    EMPGConfig,
    GiGPOConfig,
    OverlongConfig,
)
from empg_gym.errors import ConfigError, did_you_mean

#: verl-agent GRPO: clip 0.2/0.2, token-mean, KL k3 0.01, lr 1e-6, 16 tasks x 8, 150 updates.
GRPO = AlgorithmConfig(name="grpo")
#: DAPO (arXiv 2503.14476): clip-higher 0.28, dynamic sampling (<= 10 batches as verl-agent), overlong shaping.
#: The DAPO paper drops KL; verl-agent's DAPO scripts (the EMPG paper's base) keep k3 at 0.01, so we do too.
DAPO = replace(GRPO, name="dapo", clip_high=0.28, filter_groups=True, max_resample_batches=10,
               overlong=OverlongConfig(max_len=512, buffer_len=128, factor=1.0))
#: EMPG over GRPO (arXiv 2509.09265): k = k' = 1, zeta = 0.05.
EMPG = replace(GRPO, name="empg", empg=EMPGConfig())
#: EMPG over DAPO.
EMPG_DAPO = replace(DAPO, name="empg-dapo", empg=EMPGConfig())
#: EMPG as its authors' code runs it (ARLArena's ``compute_EMPG_advantage`` over its GRPO, a verl-agent fork; the
#: pipeline behind the paper's numbers): GRPO's group mean and unbiased std over every step row of a group
#: (verl-agent's ``compute_mean_std_cross_all_data=True``: a longer trajectory weighs more, and a lone trajectory's
#: steps get A = 0 unless a penalty sets them apart) and the invalid-format penalty subtracted from each step's *reward* before
#: GRPO (``apply_invalid_action_penalty``), then EMPG with the batch re-centring. Differs from ARLArena only in
#: rounding: its ``g`` divides by ``mean + 1e-8`` in float32, ours by the mean in float64. See docs/algorithms.md.
EMPG_VERL_AGENT = replace(EMPG, name="empg-verl-agent", traj_level_stats=False, format_penalty_on="reward")
#: GiGPO (arXiv 2505.10978): omega 1, gamma 0.95, mean_std_norm.
GIGPO = replace(GRPO, name="gigpo", estimator="gigpo", gigpo=GiGPOConfig(omega=1.0, gamma=0.95, norm_by_std=True))

#: EMPG's ablations (its Table 2): confidence scaling only (``g``, no bonus: zeta = 0) and the future-clarity bonus
#: only (``f``, no scaling: k = 0 makes g = exp(0) / mean(exp(0)) = 1 for every step), over GRPO and over DAPO.
EMPG_G = replace(GRPO, name="empg-g", empg=EMPGConfig(zeta=0.0))
EMPG_F = replace(GRPO, name="empg-f", empg=EMPGConfig(k=0.0))
EMPG_DAPO_G = replace(DAPO, name="empg-dapo-g", empg=EMPGConfig(zeta=0.0))
EMPG_DAPO_F = replace(DAPO, name="empg-dapo-f", empg=EMPGConfig(k=0.0))

#: Dr.GRPO (Liu et al. 2025, arXiv 2503.20783): no std division, ``seq-mean-token-sum-norm``, no KL, as verl's
#: Dr.GRPO settings (its docs/algo/grpo.md). verl divides by the batch's padded width unless ``loss_scale_factor`` is
#: set; our trainer fits ``loss_norm_len`` to its response budget ``max_new_tokens``, the constant the paper asks for.
DR_GRPO = replace(GRPO, name="dr_grpo", norm_by_std=False, loss_agg="seq-mean-token-sum-norm", use_kl=False)
#: RLOO (Ahmadian et al. 2024, arXiv 2402.14740): the leave-one-out group baseline (verl's ``adv_estimator=rloo``).
#: verl's RLOO example puts a k1 KL (0.001) in the reward and samples 5 per prompt; we keep GRPO's KL loss (k3 0.01)
#: and groups of 8.
RLOO = replace(GRPO, name="rloo", estimator="rloo")
#: REINFORCE++ (Hu 2025, arXiv 2501.03262): the return (gamma 1) whitened over the batch, no group baseline, clip 0.2
#: (verl's ``reinforce_plus_plus``). verl's example: KL in the reward (0.001), lr 3e-6; here GRPO's KL loss and lr.
REINFORCE_PP = replace(GRPO, name="reinforce_pp", estimator="reinforce_pp")
#: REINFORCE++-baseline (arXiv 2501.03262): the group mean removed, then batch whitening (verl's
#: ``reinforce_plus_plus_baseline``). KL and lr as ``reinforce_pp``.
REINFORCE_PP_BASELINE = replace(GRPO, name="reinforce_pp_baseline", estimator="reinforce_pp_baseline")
#: GSPO (Zheng et al. 2025, arXiv 2507.18071): GRPO's advantage with a sequence-level ratio (one per env step here),
#: clip 3e-4 / 4e-4, ``seq-mean-token-mean``, no KL, as verl's GSPO example (``loss_mode=gspo``).
GSPO = replace(GRPO, name="gspo", loss_mode="gspo", clip_low=3e-4, clip_high=4e-4, loss_agg="seq-mean-token-mean",
               use_kl=False)
#: CISPO (MiniMax-M1, arXiv 2506.13585): REINFORCE weighted by the clipped, stop-gradient ratio, with no lower bound
#: (``clip_low`` 10) and ``clip_high`` 0.2, token-mean, as verl's CISPO example; it keeps a k3 KL loss at 0.001, we at
#: GRPO's 0.01.
CISPO = replace(GRPO, name="cispo", loss_mode="cispo", clip_low=10.0, clip_high=0.2)

#: PPO with a turn-level critic (Turn-PPO, arXiv 2512.17008): each env step is one action; a value head on the
#: policy's features at the step's last prompt token, GAE over steps (gamma 0.99, lambda 0.9, Turn-PPO's), advantages
#: whitened over the batch, clip 0.2, critic lr 10x the policy's (see ``empg_gym.agents.critic``), value clip 5.
#: verl's PPO (``adv_estimator=gae``) runs token-level GAE (gamma = lambda = 1 by default) with a separate critic
#: model; here the critic is a head on the detached policy trunk and GAE runs over steps; KL as GRPO's. The value clip
#: is verl's ``cliprange_value`` 0.5 in units of the outcome reward: our returns are ``reward_scale`` (10) x the
#: outcome, and with 0.5 a value can move only 0.5 per update towards returns of 0 to 10 (measured on KeyRooms: 30-50%
#: of the value loss clipped, values trailing the returns by 1-3 for many updates, explained variance near 0).
PPO = replace(GRPO, name="ppo", estimator="gae", critic=CriticConfig(clip=5.0))

#: The presets EMPG is registered over, as ``empg+<name>``.
EMPG_BASES: tuple[AlgorithmConfig, ...] = (GRPO, DAPO, GIGPO, DR_GRPO, RLOO, REINFORCE_PP, REINFORCE_PP_BASELINE,
                                           GSPO, CISPO, PPO)


def with_empg(base: AlgorithmConfig, empg: EMPGConfig | None = None) -> AlgorithmConfig:
    """Return ``base`` with EMPG's modulation on top, named ``empg+<base.name>``.

    The ``empg`` modifier reshapes whatever advantage ``base``'s estimator produced (``g A + zeta f``, then the batch
    mean removed); the loss, KL and sampling stay ``base``'s.

    Example:
        >>> cfg = with_empg(RLOO)
        >>> cfg.name, cfg.estimator, cfg.active_modifiers
        ('empg+rloo', 'rloo', ('empg',))
    """
    if base.empg is not None:
        raise ConfigError(f"The preset {base.name!r} already modulates with EMPG; use it as it is.")
    return replace(base, name=f"empg+{base.name}", empg=empg if empg is not None else EMPGConfig())


ALGORITHMS: dict[str, AlgorithmConfig] = {
    c.name: c
    for c in (GRPO, DAPO, EMPG, EMPG_VERL_AGENT, EMPG_DAPO, GIGPO, EMPG_G, EMPG_F, EMPG_DAPO_G, EMPG_DAPO_F, DR_GRPO, RLOO, REINFORCE_PP,
              REINFORCE_PP_BASELINE, GSPO, CISPO, PPO, *(with_empg(b) for b in EMPG_BASES))
}


def get_algorithm(name: str) -> AlgorithmConfig:
    """Return the frozen preset ``name`` (``grpo``, ``dapo``, ``empg``, ``gigpo``, ... or one registered).

    The built-in names: ``grpo``, ``dapo``, ``empg``, ``empg-verl-agent``, ``empg-dapo``, ``gigpo``, the EMPG ablations ``empg-g``,
    ``empg-f``, ``empg-dapo-g``, ``empg-dapo-f``, the baselines ``ppo``, ``dr_grpo``, ``rloo``, ``reinforce_pp``,
    ``reinforce_pp_baseline``, ``gspo``, ``cispo``, and ``empg+<base>`` over each of :data:`EMPG_BASES`.
    ``empg+<name>`` also works for a preset you registered: EMPG's defaults over it.

    Example:
        >>> cfg = get_algorithm("empg")
        >>> cfg.clip_high, cfg.empg.zeta, replace(cfg, clip_high=0.28).clip_high
        (0.2, 0.05, 0.28)
        >>> get_algorithm("empg+gspo").loss_mode
        'gspo'
    """
    if name not in ALGORITHMS and name.startswith("empg+") and name[len("empg+"):] in ALGORITHMS:
        return with_empg(ALGORITHMS[name[len("empg+"):]])
    if name not in ALGORITHMS:
        raise ConfigError(f"Unknown algorithm {name!r}; valid names: {sorted(ALGORITHMS)}.{did_you_mean(name, ALGORITHMS)}")
    return ALGORITHMS[name]


def register_algorithm(config: AlgorithmConfig, *, override: bool = False) -> AlgorithmConfig:
    """Make ``config`` available as ``get_algorithm(config.name)``.

    Example:
        >>> cfg = register_algorithm(replace(get_algorithm("grpo"), name="doc-drgrpo", norm_by_std=False), override=True)
        >>> get_algorithm("doc-drgrpo").norm_by_std
        False
    """
    if not isinstance(config, AlgorithmConfig):
        raise ConfigError(f"register_algorithm takes an AlgorithmConfig, got {type(config).__name__}.")
    if config.name in ALGORITHMS and ALGORITHMS[config.name] != config and not override:
        raise ConfigError(f"Algorithm {config.name!r} is already registered; pick another name or pass override=True.")
    ALGORITHMS[config.name] = config
    return config


def list_algorithms() -> list[str]:
    """Names accepted by :func:`get_algorithm`, sorted."""
    return sorted(ALGORITHMS)
