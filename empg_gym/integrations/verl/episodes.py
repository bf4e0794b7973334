"""What one verl dataset row means to empg-gym: an episode spec, the loop's settings, and the export of rows.

A row of verl's RL dataset (``verl.utils.dataset.rl_dataset.RLHFDataset``) that :class:`GymAgentLoop` plays looks
like this (``empg-gym export-verl`` writes them; this module uses no verl API)::

    {"data_source": "empg_gym/EMPG-ALFWorld-v0/train",
     "prompt": [{"role": "user", "content": "<the episode's first step prompt>"}],
     "agent_name": "empg_gym",
     "reward_model": {"style": "empg_gym", "ground_truth": "<task_id>"},
     "extra_info": {"index": 0, "env_id": "EMPG-ALFWorld-v0", "task_id": "...", "seed": 0,
                    "split": "train", "task_type": "...", "env_kwargs": "{}", "source": "procedural"}}

Only ``agent_name`` and ``extra_info`` (``env_id``, ``task_id``, ``seed``, optional ``env_kwargs``) drive the
episode; ``source`` is the env's ``info["source"]`` when the row was exported (ALFWorld: ``real`` or
``procedural``), and the agent loop refuses to play a row whose env resolves another source in its worker;
``prompt`` is the first step prompt, which verl logs (its prompt-length filter, off by default, would read it); verl groups
validation metrics by ``data_source``, so it names the split. ``env_kwargs`` is JSON text (a parquet struct cannot
be empty and would force one schema on every env), or a mapping.

Example:
    >>> spec = EpisodeSpec.from_row({"extra_info": {"env_id": "EMPG-KeyDoor-v0", "task_id": "keydoor-3r-s1-k3",
    ...                                             "seed": 7, "env_kwargs": "{}"}})
    >>> spec.env_id, spec.task_id, spec.seed, dict(spec.env_kwargs), spec.source
    ('EMPG-KeyDoor-v0', 'keydoor-3r-s1-k3', 7, {}, None)
    >>> rows = episode_rows("EMPG-KeyDoor-v0", "eval_in_distribution")
    >>> len(rows), rows[0]["agent_name"], rows[0]["extra_info"]["task_id"]
    (4, 'empg_gym', 'keydoor-2r-s2-k1')
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from empg_gym.agents.config import TrainConfig
from empg_gym.errors import ConfigError
from empg_gym.tasks import check_split

#: The name the agent loop is registered under in verl, and every exported row's ``agent_name``.
AGENT_NAME = "empg_gym"

_TRAIN_DEFAULTS = {f.name: f.default for f in fields(TrainConfig)}


@dataclass(frozen=True)
class LoopSettings:
    """How :class:`~empg_gym.integrations.verl.GymAgentLoop` plays an episode; defaults are ``TrainConfig``'s.

    Set them in the agent-loop YAML (``actor_rollout_ref.rollout.agent.agent_loop_config_path``), e.g.
    ``- {name: empg_gym, _target_: empg_gym.integrations.verl.GymAgentLoop, reward_scale: 10.0}``.

    Attributes:
        reward_scale: Outcome reward ``R = reward_scale × won`` on every step row (verl-agent: 10).
        history_length: Past observation/action pairs in each step prompt (verl-agent: 2).
        invalid_format_penalty: Charged to a step whose response breaks the answer format (verl-agent: 0.1); the
            empg-gym estimators subtract it from that step's advantage, as our trainer does.
        require_think: Whether a well-formed response needs ``<think>...</think>``.
        max_steps: Stop an episode after this many steps (``None``: the env's registered step limit).
        system_prompt: A system turn before every step prompt (``None``: none, as ``TrainConfig``).
        max_idle_envs: Envs kept per pool key in a worker once their episodes end (more are closed).
    """

    reward_scale: float = _TRAIN_DEFAULTS["reward_scale"]
    history_length: int = _TRAIN_DEFAULTS["history_length"]
    invalid_format_penalty: float = _TRAIN_DEFAULTS["invalid_format_penalty"]
    require_think: bool = _TRAIN_DEFAULTS["require_think"]
    max_steps: int | None = _TRAIN_DEFAULTS["max_steps"]
    system_prompt: str | None = _TRAIN_DEFAULTS["system_prompt"]
    max_idle_envs: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.max_idle_envs, int) or self.max_idle_envs < 0:
            raise ConfigError(f"max_idle_envs={self.max_idle_envs!r} must be an int >= 0 (0 closes every env).")
        self.train_config("EMPG-KeyDoor-v0", {})  # TrainConfig checks the shared knobs and names the bad one

    def train_config(self, env_id: str, env_kwargs: Mapping[str, Any]) -> TrainConfig:
        """Return the ``TrainConfig`` our trainer would use for these settings (its env factory reads it)."""
        return TrainConfig(
            env_id=env_id, env_kwargs=dict(env_kwargs), reward_scale=float(self.reward_scale),
            history_length=self.history_length, invalid_format_penalty=float(self.invalid_format_penalty),
            require_think=bool(self.require_think), max_steps=self.max_steps, system_prompt=self.system_prompt,
        )

    def messages(self, prompt: str) -> list[dict[str, str]]:
        """Return the chat messages of one step prompt (a system turn first when ``system_prompt`` is set)."""
        system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        return [*system, {"role": "user", "content": prompt}]


@dataclass(frozen=True)
class EpisodeSpec:
    """The episode one dataset row asks for: which env (and its ``gym.make`` kwargs), which task, which seed."""

    env_id: str
    task_id: str
    seed: int
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    #: The env's ``info["source"]`` at export (``None``: a row written without one; not checked).
    source: str | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EpisodeSpec:
        """Read the spec from a row's ``extra_info`` (the keyword arguments verl passes to ``AgentLoopBase.run``)."""
        info = row.get("extra_info")
        if not isinstance(info, Mapping):
            raise ConfigError(
                f"A row for agent {AGENT_NAME!r} needs extra_info = {{env_id, task_id, seed[, env_kwargs]}}, got "
                f"{type(info).__name__}: {info!r:.200}. Write rows with `empg-gym export-verl`."
            )
        missing = [k for k in ("env_id", "task_id", "seed") if info.get(k) is None]
        if missing:
            raise ConfigError(
                f"extra_info of a row for agent {AGENT_NAME!r} lacks {missing} (it has {sorted(info)}); every row "
                "names env_id, task_id and seed. Write rows with `empg-gym export-verl`."
            )
        try:
            seed = int(info["seed"])
        except (TypeError, ValueError):
            raise ConfigError(f"extra_info.seed must be an integer, got {info['seed']!r}.") from None
        source = info.get("source")
        return cls(str(info["env_id"]), str(info["task_id"]), seed, parse_env_kwargs(info.get("env_kwargs")),
                   str(source) if source not in (None, "") else None)

    def check_source(self, info: Mapping[str, Any]) -> None:
        """Raise :class:`~empg_gym.errors.ConfigError` when the env resolved another source than the export did.

        Example:
            >>> EpisodeSpec("EMPG-ALFWorld-v0", "t", 0, {}, "real").check_source({"source": "procedural"})
            Traceback (most recent call last):
            ...
            empg_gym.errors.ConfigError: Task 't' was exported from EMPG-ALFWorld-v0's 'real' data, but here the env resolved 'procedural' (env_kwargs {}). Every process must see the data the export saw: pass the source explicitly (env_kwargs {"source": ...}, as examples/verl/common.sh does) and give every worker the same data ($ALFWORLD_DATA / data_path=), or export again.
        """
        actual = info.get("source")
        if self.source is not None and actual is not None and str(actual) != self.source:
            raise ConfigError(
                f"Task {self.task_id!r} was exported from {self.env_id}'s {self.source!r} data, but here the env "
                f"resolved {str(actual)!r} (env_kwargs {json.dumps(dict(self.env_kwargs), default=str)}). Every "
                "process must see the data the export saw: pass the source explicitly (env_kwargs {\"source\": ...}, as "
                "examples/verl/common.sh does) and give every worker the same data ($ALFWORLD_DATA / data_path=), "
                "or export again."
            )

    @property
    def pool_key(self) -> tuple[str, str]:
        """``(env_id, canonical JSON of env_kwargs)``: envs built alike share a pool slot."""
        return self.env_id, json.dumps(dict(self.env_kwargs), sort_keys=True, default=str)


def parse_env_kwargs(value: Any) -> dict[str, Any]:
    """``env_kwargs`` of a row: ``None``/``""`` → ``{}``, JSON object text → dict, a mapping → dict.

    Example:
        >>> parse_env_kwargs('{"split": "train"}'), parse_env_kwargs(None)
        ({'split': 'train'}, {})
    """
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise ConfigError(f"extra_info.env_kwargs is not JSON ({e.msg}): {value!r:.200}.") from None
    if not isinstance(value, Mapping):
        raise ConfigError(f"extra_info.env_kwargs must be a JSON object or a mapping, got {value!r:.200}.")
    return {str(k): v for k, v in value.items()}


def episode_rows(
    env_id: str,
    split: str,
    *,
    repeat: int = 1,
    seed: int = 0,
    env_kwargs: Mapping[str, Any] | None = None,
    settings: LoopSettings | None = None,
    n_tasks: int | None = None,
) -> list[dict[str, Any]]:
    """Return one verl dataset row per task of ``split`` (in the split's order), the whole list ``repeat`` times.

    The task at position ``i`` of the split gets seed ``seed + i`` (its copies share it, so a repeated row replays
    the same episode start); ``extra_info.index`` numbers the rows. The first prompt is the one the agent loop
    builds at step 0 with the same ``settings``: making it resets the env once per task (ALFWorld translates each
    game's PDDL on its first reset, ~1-2 s a task on a cold cache). ``n_tasks`` keeps the first ``n_tasks`` only.
    """
    from empg_gym.agents.trainer import make_envs

    check_split(split)
    if not isinstance(repeat, int) or repeat < 1:
        raise ConfigError(f"repeat={repeat!r} must be a positive int (each task is written that many times).")
    if n_tasks is not None and (not isinstance(n_tasks, int) or n_tasks < 1):
        raise ConfigError(f"n_tasks={n_tasks!r} must be a positive int or None (the whole split).")
    settings = settings or LoopSettings()
    env_kwargs = dict(env_kwargs or {})
    env = make_envs(settings.train_config(env_id, env_kwargs), 1)[0]
    try:
        tasks = list(env.unwrapped.task_ids(split))[:n_tasks]
        if not tasks:
            raise ConfigError(f"Split {split!r} of {env_id} has no tasks; choose another split.")
        firsts = []
        for pos, task_id in enumerate(tasks):
            prompt, info = env.reset(seed=seed + pos, options={"task_id": task_id})
            firsts.append((task_id, seed + pos, str(info.get("task_type", "")), str(info.get("source", "")), prompt))
    finally:
        env.close()
    kwargs_text = json.dumps(env_kwargs, sort_keys=True, default=str)
    rows = []
    for _ in range(repeat):
        for task_id, task_seed, task_type, source, prompt in firsts:
            rows.append({
                "data_source": f"empg_gym/{env_id}/{split}",
                "prompt": settings.messages(prompt),
                "agent_name": AGENT_NAME,
                "reward_model": {"style": "empg_gym", "ground_truth": task_id},
                "extra_info": {"index": len(rows), "env_id": env_id, "task_id": task_id, "seed": task_seed,
                               "split": split, "task_type": task_type, "env_kwargs": kwargs_text,
                               "source": source},
            })
    return rows


def write_parquet(rows: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write rows to a parquet file verl's ``RLHFDataset`` reads (needs pyarrow, which comes with verl)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(
            "Writing verl rows needs pyarrow, which verl installs: pip install 'empg-gym[verl]' "
            "(in this repo: make setup-verl, then use .venv-verl/bin/empg-gym)."
        ) from None
    out = Path(path)
    if out.suffix != ".parquet":
        raise ConfigError(f"--out must name a .parquet file (verl reads parquet), got {str(out)!r}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), out)
    return out


def check_export_sources(files: Any, *, limit: int = 1) -> list[str]:
    """Play the reset of the first ``limit`` empg-gym rows of each parquet file here and check their ``source``.

    The ``empg_gym`` trainer mode calls this at start-up on ``data.train_files`` and ``data.val_files``, so an export
    whose data this machine resolves differently (ALFWorld's ``source="auto"`` with and without ``$ALFWORLD_DATA``)
    fails before training with both sources named, not in every worker's episodes. Returns one line per row checked;
    files that are not local files, and rows without a ``source``, are skipped.
    """
    import pyarrow.parquet as pq

    from empg_gym.agents.trainer import make_envs

    paths = [files] if isinstance(files, (str, os.PathLike)) else list(files or [])
    checked = []
    for path in paths:
        if not Path(path).is_file():  # not a local file (verl reports a missing one itself)
            continue
        rows = [r for r in pq.read_table(str(path)).slice(0, 64).to_pylist() if r.get("agent_name") == AGENT_NAME]
        for row in rows[:limit]:
            spec = EpisodeSpec.from_row(row)
            if spec.source is None:  # exported before rows carried their source: nothing to compare
                continue
            env = make_envs(LoopSettings().train_config(spec.env_id, spec.env_kwargs), 1)[0]
            try:
                _, info = env.reset(seed=spec.seed, options={"task_id": spec.task_id})
            finally:
                env.close()
            spec.check_source(info)
            checked.append(f"{path}: {spec.env_id} source={info.get('source')!r} (exported: {spec.source!r})")
    return checked
