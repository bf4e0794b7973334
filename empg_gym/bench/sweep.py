"""Sensitivity sweeps: one bench run per setting of a few config keys (``empg-gym bench --sweep k=0.5,1,2``).

A sweep names keys and their values. A key is found, in this order, as a
:class:`~empg_gym.agents.config.TrainConfig` field (``lr``, ``temperature``), a field of the algorithm config
(``clip_high``, ``kl_coef``) or of one of its parts (``k`` and ``zeta`` are EMPG's, ``gamma`` GiGPO's), or, with an
``env.`` prefix, a ``gym.make`` keyword (``env.reward_mode``). Dotted names (``empg.k``, ``gigpo.gamma``) say
exactly which part. Values are parsed as JSON where they can be (``0.5``, ``true``, ``null``) and kept as text
otherwise (``dense``).

The settings are the grid of all values (``mode="grid"``) or the lists paired up element by element
(``mode="zip"``). Each algorithm of the bench runs every setting whose keys apply to it; an algorithm none of the
keys applies to (GRPO in a sweep of EMPG's ``k``) runs once, unchanged, as the baseline. A setting is a bench
"algorithm" of its own, labelled ``empg[k=0.5,zeta=0]``: it has its own run folders, rows in ``results.csv``
(with one column per swept key) and line in every table and plot of the report.

Example:
    >>> sweep = parse_sweep(["k=0.5,1", "zeta=0,0.05"])
    >>> sweep
    {'k': (0.5, 1), 'zeta': (0, 0.05)}
    >>> [v.label for v in variants(("grpo", "empg"), sweep)]
    ['grpo', 'empg[k=0.5,zeta=0]', 'empg[k=0.5,zeta=0.05]', 'empg[k=1,zeta=0]', 'empg[k=1,zeta=0.05]']
    >>> variants(("empg",), sweep)[1].train_overrides()
    {'algo_overrides': {'empg.k': 0.5, 'empg.zeta': 0.05}}
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from empg_gym.errors import ConfigError, did_you_mean

SWEEP_MODES = ("grid", "zip")
#: Parts of the algorithm config whose fields a bare key may name (see :func:`resolve_key`).
_ALGO_PARTS = ("empg", "gigpo", "overlong")


def parse_value(text: str) -> Any:
    """Parse one swept value: JSON where possible (numbers, booleans, ``null``), else the text itself.

    Example:
        >>> parse_value("0.05"), parse_value("true"), parse_value("dense")
        (0.05, True, 'dense')
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sweep(specs: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    """Parse ``["k=0.5,1,2", "zeta=0,0.05"]`` into ``{"k": (0.5, 1, 2), "zeta": (0, 0.05)}``.

    Raises:
        ConfigError: a spec without ``=``, with no value, with a repeated value, or a key given twice.
    """
    sweep: dict[str, tuple[Any, ...]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        items = [v.strip() for v in values.split(",")]
        if not sep or not key or not any(items) or "" in items:
            raise ConfigError(f"--sweep {spec!r}: write KEY=V1,V2,... (e.g. k=0.5,1,2), with no empty value.")
        if key in sweep:
            raise ConfigError(f"--sweep names {key!r} twice; give all its values in one KEY=V1,V2,...")
        parsed = tuple(parse_value(v) for v in items)
        if len(set(map(repr, parsed))) != len(parsed):
            raise ConfigError(f"--sweep {spec!r} repeats a value.")
        sweep[key] = parsed
    return sweep


@dataclass(frozen=True)
class Target:
    """Where a swept key goes: ``"train"`` (a TrainConfig field), ``"algo"`` (a dotted algo override) or ``"env"``."""

    kind: str
    name: str


def resolve_key(key: str, algo: str) -> Target | None:
    """Return where ``key`` goes for ``algo``, or ``None`` when it names a part ``algo`` does not have.

    Example:
        >>> resolve_key("k", "empg"), resolve_key("k", "grpo")
        (Target(kind='algo', name='empg.k'), None)
        >>> resolve_key("lr", "grpo"), resolve_key("env.reward_mode", "grpo")
        (Target(kind='train', name='lr'), Target(kind='env', name='reward_mode'))

    Raises:
        ConfigError: a key no config has (with the nearest name), or one that is ambiguous.
    """
    from empg_gym.agents.algorithms import get_algorithm
    from empg_gym.agents.config import TrainConfig

    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    if key.startswith("env."):
        if len(key) == 4:
            raise ConfigError("--sweep env.: name the gym.make keyword, e.g. env.reward_mode=sparse,dense.")
        return Target("env", key[4:])
    if key in train_fields:
        if key in ("env_id", "algo", "seed", "updates", "env_kwargs", "algo_overrides"):
            raise ConfigError(f"--sweep cannot sweep {key!r}: use the bench's own --envs/--algos/--seeds/--steps, "
                              "env.KEY for gym.make keywords or algorithm keys for algo_overrides.")
        return Target("train", key)
    algo_cfg = get_algorithm(algo)
    top = {f.name for f in dataclasses.fields(algo_cfg)}
    parts = {p: _part_fields(p) for p in _ALGO_PARTS}
    head, _, tail = key.partition(".")
    if tail:
        if head not in parts or tail not in parts[head]:
            known = sorted(f"{p}.{n}" for p, names in parts.items() for n in names)
            raise ConfigError(f"--sweep key {key!r} is no algorithm setting.{did_you_mean(key, known)}")
        return Target("algo", key) if getattr(algo_cfg, head) is not None else None
    if key in top and key not in _ALGO_PARTS:
        return Target("algo", key)
    owners = [p for p, names in parts.items() if key in names]
    if len(owners) > 1:
        raise ConfigError(f"--sweep key {key!r} is ambiguous: write one of {[f'{p}.{key}' for p in owners]}.")
    if not owners:
        known = sorted(train_fields | top | {n for names in parts.values() for n in names})
        raise ConfigError(f"--sweep key {key!r} is no TrainConfig or algorithm setting{did_you_mean(key, known)}; "
                          "gym.make keywords take an env. prefix (env.reward_mode).")
    return Target("algo", f"{owners[0]}.{key}") if getattr(algo_cfg, owners[0]) is not None else None


def _part_fields(part: str) -> set[str]:
    from empg_gym.agents.algorithms.config import EMPGConfig, GiGPOConfig, OverlongConfig

    cls = {"empg": EMPGConfig, "gigpo": GiGPOConfig, "overlong": OverlongConfig}[part]
    return {f.name for f in dataclasses.fields(cls)}


@dataclass(frozen=True)
class Variant:
    """One bench "algorithm" of a sweep: a base algorithm and the swept values that apply to it."""

    label: str
    algo: str
    settings: tuple[tuple[str, Target, Any], ...] = ()

    def train_overrides(self) -> dict[str, Any]:
        """Return the TrainConfig fields this setting changes (``algo_overrides``/``env_kwargs`` as mappings)."""
        out: dict[str, Any] = {}
        for _, target, value in self.settings:
            if target.kind == "train":
                out[target.name] = value
            else:
                key = "algo_overrides" if target.kind == "algo" else "env_kwargs"
                out.setdefault(key, {})[target.name] = value
        return out

    def columns(self) -> dict[str, Any]:
        """Return ``{swept key: value}`` for the results table."""
        return {key: value for key, _, value in self.settings}


def settings(sweep: Mapping[str, Sequence[Any]], mode: str = "grid") -> list[tuple[tuple[str, Any], ...]]:
    """Return the sweep's settings, each a tuple of ``(key, value)``, in a stable order.

    Example:
        >>> settings({"k": (1, 2), "zeta": (0, 0.1)}, "zip")
        [(('k', 1), ('zeta', 0)), (('k', 2), ('zeta', 0.1))]
    """
    if mode not in SWEEP_MODES:
        raise ConfigError(f"sweep_mode={mode!r}: choose from {list(SWEEP_MODES)}.")
    keys = list(sweep)
    if mode == "zip":
        lengths = {k: len(sweep[k]) for k in keys}
        if len(set(lengths.values())) > 1:
            raise ConfigError(f"sweep_mode='zip' pairs the lists element by element; their lengths differ: {lengths}.")
        rows = list(zip(*(sweep[k] for k in keys), strict=True))
    else:
        rows = list(itertools.product(*(sweep[k] for k in keys)))
    return [tuple(zip(keys, row, strict=True)) for row in rows]


def _fmt(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def variants(algos: Sequence[str], sweep: Mapping[str, Sequence[Any]] | None, mode: str = "grid") -> list[Variant]:
    """Return the bench's runs per seed: every algorithm × every setting that applies to it (see the module doc)."""
    if not sweep:
        return [Variant(a, a) for a in algos]
    out: list[Variant] = []
    for algo in algos:
        targets = {key: resolve_key(key, algo) for key in sweep}
        applying = [k for k, t in targets.items() if t is not None]
        if not applying:
            out.append(Variant(algo, algo))
            continue
        seen: set[str] = set()
        for row in settings(sweep, mode):
            kept = tuple((k, targets[k], v) for k, v in row if targets[k] is not None)
            label = f"{algo}[{','.join(f'{k}={_fmt(v)}' for k, _, v in kept)}]"
            if label not in seen:  # keys that do not apply to this algorithm collapse their settings
                seen.add(label)
                out.append(Variant(label, algo, kept))  # type: ignore[arg-type]
    return out
