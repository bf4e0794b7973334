"""The trainer's configuration: one frozen dataclass, loadable from a TOML file and overridable field by field.

Presets (:data:`TRAIN_PRESETS`) are named sets of sizes to start from; explicit fields override them.

Example:
    >>> cfg = TrainConfig(env_id="EMPG-KeyDoor-v0", algo="grpo", model="tiny-actions", updates=3)
    >>> cfg.algorithm().name, cfg.algorithm().clip_high
    ('grpo', 0.2)
    >>> TrainConfig(algo="dapo").algorithm().clip_high
    0.28
    >>> TrainConfig(algo="empg", algo_overrides={"empg.zeta": 0.1}).algorithm().empg.zeta
    0.1
    >>> TrainConfig(algo="empg", algo_overrides={"empg": {"uncertainty": "renyi2"}}).algorithm().empg.uncertainty
    'renyi2'
    >>> cfg = TrainConfig.from_dict({**train_preset("cpu"), "max_new_tokens": 24})
    >>> cfg.tasks_per_update, cfg.group_size, cfg.max_new_tokens
    (1, 4, 24)
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from empg_gym.errors import ConfigError, did_you_mean
from empg_gym.tasks import check_split


@dataclass(frozen=True)
class TrainConfig:
    """Everything one training run needs; the algorithm's own knobs come from its preset (``algo``).

    Attributes:
        env_id: The env to train on (any registered empg-gym id).
        env_kwargs: Keyword arguments for ``gym.make`` (e.g. ``{"data_path": ...}``).
        split: Split the training tasks are drawn from.
        algo: Algorithm preset: ``grpo``, ``dapo``, ``empg``, ``empg-dapo``, ``gigpo`` or a registered one.
        algo_overrides: Dotted overrides of the preset, e.g. ``{"clip_high": 0.3, "empg.zeta": 0.1}``; a nested
            block may also be a mapping (``{"empg": {"uncertainty": "renyi2"}}``, a TOML ``[algo_overrides.empg]``).
        model: ``smollm2-135m`` (embedded), ``tiny-actions`` (a tiny random Llama whose tokens are the env's
            actions; CPU learning checks), ``tiny`` (tiny random Llama, byte tokenizer), a local folder or a hub id.
        dtype: Weight dtype (``float32`` on CPU). With ``bfloat16``/``float16`` the trainable weights are kept in float32
            (master weights) and forward passes autocast to the 16-bit dtype.
        device: Where the policy lives: ``auto`` (the first CUDA GPU when there is one, else the CPU), ``cpu``,
            ``cuda`` or ``cuda:N``.
        lora_rank: Train a LoRA adapter of this rank instead of all weights (``None``: full fine-tuning).
        gradient_checkpointing: Recompute activations in the backward pass (less memory, more time).
        updates: Number of policy updates (verl-agent: 150).
        tasks_per_update: Tasks ``B`` per update (``None``: the preset's, 16).
        group_size: Trajectories ``G`` per task (``None``: the preset's, 8).
        lr: AdamW learning rate (``None``: the preset's, 1e-6).
        weight_decay: AdamW weight decay.
        ppo_epochs: Passes over each batch.
        mini_batch_size: Step samples per optimizer step.
        micro_batch_size: Step samples per forward/backward (gradient accumulation up to the mini-batch).
        max_grad_norm: Gradient clipping norm.
        max_new_tokens: Response budget per step.
        temperature: Sampling temperature (log-probs and entropies are taken at it).
        history_length: Past observation/action pairs in the prompt (verl-agent: 2).
        prompt_template: The step prompt for envs with admissible actions (``None``: verl-agent's; fields
            ``{task}``, ``{observation}``, ``{admissible_actions}``, ``{history_block}``, ``{env_description}``).
            ``"{observation}"`` alone suits tiny action-token models, whose prompt length sets the update's cost.
        require_think: Whether a well-formed response needs ``<think>...</think>``.
        system_prompt: A system turn put before every step prompt (chat-template models only; ``None``: none).
        response_prefix: Text that opens every response, e.g. ``"<think>"`` or ``"<action>"``: the model continues
            it, and the env sees the prefix plus the continuation. Steers a small model into the format.
        invalid_format_penalty: Subtracted from a malformed step's *advantage*, after the estimator, for every
            algorithm (verl-agent subtracts 0.1 from the reward before normalising; docs/algorithms.md says why not).
        reward_scale: Outcome reward ``R = reward_scale × won`` (verl-agent: 10).
        max_steps: Cut trajectories after this many steps (``None``: the env's own limit).
        vectorization: ``sync`` steps the envs in this process; ``async`` runs one process per env.
        seed: Seeds tasks, env resets, sampling and initial weights of tiny models.
        eval_every: Evaluate on ``eval_split`` every this many updates (0: only at the end when ``eval_tasks``).
        eval_every_env_steps: Also evaluate after the first update at which the training env steps played so far
            reach each multiple of this (0: no env-step schedule); algorithms that play more env steps per update
            (DAPO's dynamic sampling) are so evaluated at the same budgets of env steps as the others.
        eval_split: Split evaluated.
        eval_tasks: Tasks evaluated (the first ``eval_tasks`` ids of the split, in order; 0: no evaluation).
        eval_samples: Besides one greedy episode per task, evaluation plays ``eval_samples`` episodes per task sampled
            at ``temperature`` and reports their mean success as ``success_sampled`` (0: greedy only). Sampled
            success has less noise than greedy success (issue #22).
        checkpoint_every: Write a checkpoint every this many updates (and at the end).
        progress: Show progress bars.
    """

    env_id: str = "EMPG-ALFWorld-v0"
    env_kwargs: Mapping[str, Any] = field(default_factory=dict)
    split: str = "train"
    algo: str = "empg"
    algo_overrides: Mapping[str, Any] = field(default_factory=dict)
    model: str = "smollm2-135m"
    dtype: str = "float32"
    device: str = "auto"
    lora_rank: int | None = None
    gradient_checkpointing: bool = False
    updates: int = 150
    tasks_per_update: int | None = None
    group_size: int | None = None
    lr: float | None = None
    weight_decay: float = 0.0
    ppo_epochs: int = 1
    mini_batch_size: int = 256
    micro_batch_size: int = 8
    max_grad_norm: float = 1.0
    max_new_tokens: int = 256
    temperature: float = 1.0
    history_length: int = 2
    prompt_template: str | None = None
    require_think: bool = True
    system_prompt: str | None = None
    response_prefix: str = ""
    invalid_format_penalty: float = 0.1
    reward_scale: float = 10.0
    max_steps: int | None = None
    vectorization: Literal["sync", "async"] = "sync"
    seed: int = 0
    eval_every: int = 0
    eval_every_env_steps: int = 0
    eval_split: str = "eval_in_distribution"
    eval_tasks: int = 0
    eval_samples: int = 0
    checkpoint_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.device, str) or not (self.device in ("auto", "cpu", "cuda")
                                                    or (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"device={self.device!r}: choose 'auto', 'cpu', 'cuda' or 'cuda:N'.")
        check_split(self.split)
        check_split(self.eval_split)
        positive = ("updates", "ppo_epochs", "mini_batch_size", "micro_batch_size", "max_new_tokens",
                    "checkpoint_every")
        for name in positive:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be a positive int.")
        for name in ("tasks_per_update", "group_size", "lora_rank", "max_steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name}={value!r} must be a positive int or None (the default).")
        if self.micro_batch_size > self.mini_batch_size:
            raise ConfigError(
                f"micro_batch_size={self.micro_batch_size} exceeds mini_batch_size={self.mini_batch_size}; "
                "micro-batches accumulate into a mini-batch, so make it smaller or equal."
            )
        if self.lr is not None and not self.lr > 0:
            raise ConfigError(f"lr={self.lr} must be > 0.")
        if not self.temperature > 0:
            raise ConfigError(f"temperature={self.temperature} must be > 0.")
        if self.vectorization not in ("sync", "async"):
            raise ConfigError(f"vectorization={self.vectorization!r} must be 'sync' or 'async'.")
        for name in ("eval_every", "eval_every_env_steps", "eval_tasks", "eval_samples", "history_length"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ConfigError(f"{name}={getattr(self, name)!r} must be an int >= 0.")
        if self.prompt_template is not None:
            from empg_gym.wrappers.prompting import PromptConfig

            PromptConfig(action_template=self.prompt_template)  # unknown {fields} fail here
        self.algorithm()  # unknown presets and bad overrides fail here, before any model is loaded

    def algorithm(self) -> Any:
        """Return the algorithm preset with ``algo_overrides`` applied (validated by the algorithm config)."""
        from empg_gym.agents.algorithms import get_algorithm

        cfg = get_algorithm(self.algo)
        for dotted, value in self.algo_overrides.items():
            cfg = _replace_dotted(cfg, dotted.split("."), value, dotted)
        return cfg

    @property
    def effective_tasks_per_update(self) -> int:
        """``tasks_per_update``, or the preset's."""
        return self.tasks_per_update or self.algorithm().tasks_per_batch

    @property
    def effective_group_size(self) -> int:
        """``group_size``, or the preset's."""
        return self.group_size or self.algorithm().group_size

    @property
    def effective_lr(self) -> float:
        """``lr``, or the preset's."""
        return self.lr if self.lr is not None else self.algorithm().lr

    def to_dict(self) -> dict[str, Any]:
        """Return the config as plain JSON-ready data."""
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Build a config from a mapping, refusing unknown keys (with a suggestion)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"Unknown config key(s) {unknown}.{did_you_mean(unknown[0], known)}")
        return cls(**dict(data))

    @classmethod
    def from_file(cls, path: str | Path, *, preset: str | None = None, **overrides: Any) -> TrainConfig:
        """Read a TOML file (top-level keys are the fields above; ``[algo_overrides]``/``[env_kwargs]`` tables).

        ``preset`` (a :data:`TRAIN_PRESETS` name) gives the starting values, the file overrides them, and
        ``overrides`` (``None`` values skipped) override both.
        """
        with open(path, "rb") as f:
            data = {**(train_preset(preset) if preset else {}), **tomllib.load(f)}
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data)


#: ``cpu``: sizes that finish one update of the embedded SmolLM2 (LoRA) on ``EMPG-ALFWorld-v0`` in a few minutes on
#: 2 CPU cores: 1 task x 4 trajectories of at most 3 steps, 12 response tokens opened by ``<action>`` (no
#: ``<think>``), no history in the prompt, one optimizer step over the 12 step samples. LoRA needs a larger learning
#: rate than full fine-tuning, hence 1e-4. Measured with ``empg-gym train --preset cpu --algo empg`` on 2 cores shared
#: with other work (load average 4-5): 40-100 s per update with ``--threads 1`` (the longer for 560-token prompts),
#: 3.8-4.9 min with torch's default 2 threads, which stall each other on a busy machine; peak RSS 4-8.7 GB. It runs
#: the whole pipeline; it is far too small to learn ALFWorld (3 steps rarely reach a goal): CPU learning needs a tiny
#: policy (``model="tiny-actions"``).
CPU_PRESET: Mapping[str, Any] = MappingProxyType({
    "tasks_per_update": 1, "group_size": 4, "max_steps": 3, "max_new_tokens": 12, "history_length": 0,
    "require_think": False, "response_prefix": "<action>", "lora_rank": 8, "lr": 1e-4, "mini_batch_size": 16,
    "micro_batch_size": 4,
})

#: Named starting values for :class:`TrainConfig` (``empg-gym train --preset NAME``).
TRAIN_PRESETS: Mapping[str, Mapping[str, Any]] = MappingProxyType({"cpu": CPU_PRESET})


def train_preset(name: str) -> dict[str, Any]:
    """Return a copy of the preset ``name``'s fields.

    Example:
        >>> train_preset("cpu")["group_size"]
        4
    """
    if name not in TRAIN_PRESETS:
        raise ConfigError(f"Unknown training preset {name!r}.{did_you_mean(name, TRAIN_PRESETS)} "
                          f"Choose from {sorted(TRAIN_PRESETS)}.")
    return dict(TRAIN_PRESETS[name])


def _replace_dotted(obj: Any, path: list[str], value: Any, dotted: str) -> Any:
    name = path[0]
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in fields(obj)}:
        names = [f.name for f in fields(obj)] if dataclasses.is_dataclass(obj) else []
        raise ConfigError(f"algo_overrides key {dotted!r}: {type(obj).__name__} has no field {name!r}."
                          + did_you_mean(name, names))
    if len(path) == 1:
        current = getattr(obj, name)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(current):  # {"empg": {"zeta": 0.1}}, a TOML table
            for key, inner_value in value.items():
                current = _replace_dotted(current, str(key).split("."), inner_value, f"{dotted}.{key}")
            return dataclasses.replace(obj, **{name: current})
        if isinstance(value, Mapping) and current is None:
            raise ConfigError(f"algo_overrides key {dotted!r}: {name} is not enabled in this preset.")
        return dataclasses.replace(obj, **{name: value})
    inner = getattr(obj, name)
    if inner is None:
        raise ConfigError(f"algo_overrides key {dotted!r}: {name} is not enabled in this preset.")
    return dataclasses.replace(obj, **{name: _replace_dotted(inner, path[1:], value, dotted)})
