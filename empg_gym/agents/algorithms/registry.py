"""Name -> function registries for advantage estimators and advantage modifiers (verl's ``register_adv_est`` style).

An *estimator* turns a batch into base advantages: ``fn(batch, config) -> (advantages[N], metrics)``.
A *modifier* reshapes advantages already computed: ``fn(advantages[N], batch, config) -> (advantages[N], metrics)``.
Registering one makes it usable by name in an :class:`~empg_gym.agents.algorithms.AlgorithmConfig` without touching
the trainer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from empg_gym.agents.algorithms.config import AlgorithmConfig, add_name_check
from empg_gym.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from torch import Tensor

    from empg_gym.agents.algorithms.batch import StepBatch

    Estimator = Callable[[StepBatch, AlgorithmConfig], tuple[Tensor, dict[str, float]]]
    Modifier = Callable[[Tensor, StepBatch, AlgorithmConfig], tuple[Tensor, dict[str, float]]]

F = TypeVar("F", bound=Callable[..., Any])

#: Registered base advantage estimators, by name.
ESTIMATORS: dict[str, Callable[..., Any]] = {}
#: Registered advantage modifiers, by name.
MODIFIERS: dict[str, Callable[..., Any]] = {}


def _register(table: dict[str, Callable[..., Any]], kind: str, name: str, override: bool) -> Callable[[F], F]:
    if not isinstance(name, str) or not name:
        raise ConfigError(f"A {kind} name must be a non-empty string, got {name!r}.")

    def decorator(fn: F) -> F:
        old = table.get(name)
        if old is not None and old is not fn and not override:
            raise ConfigError(
                f"{kind} {name!r} is already registered ({old.__module__}.{old.__qualname__}); pick another name "
                "or pass override=True."
            )
        table[name] = fn
        return fn

    return decorator


def register_estimator(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register ``fn(batch, config) -> (advantages[N], metrics)`` as base advantage estimator ``name``.

    Example:
        >>> import torch
        >>> @register_estimator("doc-reinforce", override=True)
        ... def reinforce(batch, config):
        ...     return batch.reward - batch.reward.mean(), {}
        >>> "doc-reinforce" in ESTIMATORS
        True
    """
    return _register(ESTIMATORS, "advantage estimator", name, override)


def register_modifier(name: str, *, override: bool = False) -> Callable[[F], F]:
    """Register ``fn(advantages, batch, config) -> (advantages[N], metrics)`` as advantage modifier ``name``.

    Example:
        >>> @register_modifier("doc-halve", override=True)
        ... def halve(advantages, batch, config):
        ...     return advantages / 2, {"halve/applied": 1.0}
        >>> "doc-halve" in MODIFIERS
        True
    """
    return _register(MODIFIERS, "advantage modifier", name, override)


def get_estimator(name: str) -> Callable[..., Any]:
    """Return the estimator registered as ``name``; unknown names list the registered ones."""
    if name not in ESTIMATORS:
        raise ConfigError(f"Unknown advantage estimator {name!r}; registered: {sorted(ESTIMATORS)}.{did_you_mean(name, ESTIMATORS)}")
    return ESTIMATORS[name]


def get_modifier(name: str) -> Callable[..., Any]:
    """Return the modifier registered as ``name``; unknown names list the registered ones."""
    if name not in MODIFIERS:
        raise ConfigError(f"Unknown advantage modifier {name!r}; registered: {sorted(MODIFIERS)}.{did_you_mean(name, MODIFIERS)}")
    return MODIFIERS[name]


def check_registered_names(config: AlgorithmConfig) -> None:
    """Raise a :class:`ConfigError` unless ``config.estimator`` and each of ``config.modifiers`` are registered.

    Installed with :func:`~empg_gym.agents.algorithms.config.add_name_check`: every ``AlgorithmConfig`` runs it.
    """
    if config.estimator not in ESTIMATORS:
        raise ConfigError(f"Unknown advantage estimator {config.estimator!r}; registered: {sorted(ESTIMATORS)}."
                          f"{did_you_mean(config.estimator, ESTIMATORS)} Register yours with @register_estimator(name).")
    for m in config.modifiers:
        if m not in MODIFIERS:
            raise ConfigError(f"Unknown advantage modifier {m!r}; registered: {sorted(MODIFIERS)}."
                              f"{did_you_mean(m, MODIFIERS)} Register yours with @register_modifier(name).")


add_name_check(AlgorithmConfig, check_registered_names)
