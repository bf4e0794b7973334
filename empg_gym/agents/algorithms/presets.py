"""Named algorithm presets with the defaults of verl-agent's ALFWorld scripts and the papers (DESIGN §7)."""

from __future__ import annotations

from dataclasses import replace

from empg_gym.agents.algorithms.config import AlgorithmConfig, EMPGConfig, GiGPOConfig, OverlongConfig
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
#: GiGPO (arXiv 2505.10978): omega 1, gamma 0.95, mean_std_norm.
GIGPO = replace(GRPO, name="gigpo", estimator="gigpo", gigpo=GiGPOConfig(omega=1.0, gamma=0.95, norm_by_std=True))

#: EMPG's ablations (its Table 2): confidence scaling only (``g``, no bonus: zeta = 0) and the future-clarity bonus
#: only (``f``, no scaling: k = 0 makes g = exp(0) / mean(exp(0)) = 1 for every step), over GRPO and over DAPO.
EMPG_G = replace(GRPO, name="empg-g", empg=EMPGConfig(zeta=0.0))
EMPG_F = replace(GRPO, name="empg-f", empg=EMPGConfig(k=0.0))
EMPG_DAPO_G = replace(DAPO, name="empg-dapo-g", empg=EMPGConfig(zeta=0.0))
EMPG_DAPO_F = replace(DAPO, name="empg-dapo-f", empg=EMPGConfig(k=0.0))

ALGORITHMS: dict[str, AlgorithmConfig] = {
    c.name: c for c in (GRPO, DAPO, EMPG, EMPG_DAPO, GIGPO, EMPG_G, EMPG_F, EMPG_DAPO_G, EMPG_DAPO_F)
}


def get_algorithm(name: str) -> AlgorithmConfig:
    """Return the frozen preset ``name`` (``grpo``, ``dapo``, ``empg``, ``gigpo``, ... or one registered).

    The built-in names: ``grpo``, ``dapo``, ``empg``, ``empg-dapo``, ``gigpo`` and the EMPG ablations ``empg-g``,
    ``empg-f``, ``empg-dapo-g``, ``empg-dapo-f``.

    Example:
        >>> cfg = get_algorithm("empg")
        >>> cfg.clip_high, cfg.empg.zeta, replace(cfg, clip_high=0.28).clip_high
        (0.2, 0.05, 0.28)
    """
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
