"""One policy-gradient trainer for LLM agents; GRPO, DAPO, EMPG and GiGPO differ only in their registry entries.

Each update: play ``B`` tasks × ``G`` trajectories (:func:`~empg_gym.agents.rollout.collect_rollouts`), turn every
env step into a row of a :class:`~empg_gym.agents.algorithms.StepBatch`, compute advantages with the algorithm's
registered estimator and modifiers (:func:`~empg_gym.agents.algorithms.compute_advantages`), then run PPO epochs
over mini-batches with gradient accumulation (:func:`~empg_gym.agents.algorithms.actor_loss`), AdamW and gradient
clipping. The loop never looks at the algorithm's name: DAPO's dynamic sampling is the preset's
``filter_groups`` flag, EMPG is its ``empg`` block.

Budget: ``updates`` counts policy updates. A DAPO round whose every group is uninformative, even after
``max_resample_batches`` rollout batches, changes nothing and is not counted; it is retried with new rollouts until
the run has drawn ``updates × max_resample_batches`` rollout batches in all (verl's ``max_num_gen_batches`` per
update, pooled over the run), and only then does the run stop short. Each metrics row carries the cumulative
``budget/rollout_batches`` and ``budget/env_steps`` (docs/fairness.md).

Time: when built, the trainer measures the model on a real first prompt and logs the estimated time per update and
per run (:mod:`~empg_gym.agents.estimate`), with a warning when a CPU would need more than an hour per
update; it logs the measured first rollout step with the estimate revised by it, and after every update its time, the median
so far and the time left. Lines go to ``log`` (default: this module's logger at INFO).

Example:
    >>> from empg_gym.agents.config import TrainConfig
    >>> cfg = TrainConfig(env_id="EMPG-KeyDoor-v0", algo="empg", model="tiny-actions", updates=1,
    ...                   tasks_per_update=2, group_size=2, max_new_tokens=1, require_think=False,
    ...                   mini_batch_size=16, micro_batch_size=8, progress=False)
    >>> import tempfile; out = tempfile.mkdtemp()
    >>> history = Trainer(cfg, out).train()
    >>> {"empg/g_mean", "actor/pg_loss", "budget/env_steps"} <= set(history[-1])
    True
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import shutil
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from empg_gym.agents.config import TrainConfig, train_preset
from empg_gym.agents.estimate import (
    MEASURE_BATCH,
    Sizes,
    Speed,
    UpdateEstimate,
    estimate_update,
    format_duration,
    measure_speed,
    revised_estimate,
)
from empg_gym.agents.per_type import family_of
from empg_gym.agents.rollout_log import RolloutLog
from empg_gym.errors import ConfigError

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint"
#: Seconds per update above which a run on a CPU gets a warning before it starts.
SLOW_UPDATE_S = 3600.0


# ------------------------------------------------------------------------------------------- eval schedule
def eval_budget(env_steps: int, every_env_steps: int, evaluated: int) -> int | None:
    """Return the env-step budget an evaluation now stands for, or ``None`` when no new one was reached.

    That is the largest multiple of ``every_env_steps`` that ``env_steps`` has reached and that is above the last
    budget ``evaluated`` (one update may cross several: the evaluation stands for the largest). 0 turns it off.

    Example:
        >>> eval_budget(130, 100, 0), eval_budget(180, 100, 100), eval_budget(420, 100, 100), eval_budget(50, 0, 0)
        (100, None, 400, None)
    """
    if every_env_steps <= 0:
        return None
    budget = env_steps // every_env_steps * every_env_steps
    return budget if budget > evaluated else None


def eval_due(update: int, every: int, budget: int | None) -> bool:
    """Whether to evaluate after ``update``: every ``every`` updates (0: never) or when a budget was reached.

    Example:
        >>> eval_due(10, 5, None), eval_due(7, 5, None), eval_due(7, 0, 300)
        (True, False, True)
    """
    return bool(every and update % every == 0) or budget is not None


# ------------------------------------------------------------------------------------------- construction
def adamw(params: Any, **kwargs: Any) -> Any:
    """Return AdamW over ``params``, its fused kernel where every parameter allows it (float, on CPU or CUDA).

    A tiny model's update is many small tensors: the fused step costs a quarter of the per-tensor loop's on CPU.

    Example:
        >>> import torch
        >>> opt = adamw([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
        >>> opt.defaults["fused"]
        True
    """
    import torch

    params = list(params)
    fused = bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, fused=fused or None, **kwargs)


def build_policy(config: TrainConfig) -> Any:
    """Return the :class:`~empg_gym.agents.policy.LLMPolicy` that ``config.model`` names."""
    from empg_gym.agents.policy import LLMPolicy, LoraSettings

    lora = LoraSettings(r=config.lora_rank, alpha=2 * config.lora_rank) if config.lora_rank else None
    if config.model == "tiny-actions":
        from empg_gym.agents.tiny import env_vocabulary, tiny_action_model

        model, tokenizer = tiny_action_model(*env_vocabulary(config.env_id), seed=config.seed)
        return LLMPolicy(_as_dtype(model, config.dtype).to(resolve_device(config.device)), tokenizer, lora=lora,
                         use_chat_template=False,
                         response_prefix=config.response_prefix)
    if config.model == "tiny":
        from empg_gym.agents.models import tiny_random_model

        model, tokenizer = tiny_random_model(seed=config.seed)
        model = _as_dtype(model, config.dtype)
    else:
        from empg_gym.agents.models import load_model

        model, tokenizer = load_model(config.model, dtype=config.dtype)
    model = model.to(resolve_device(config.device))
    return LLMPolicy(model, tokenizer, lora=lora, gradient_checkpointing=config.gradient_checkpointing,
                     system_prompt=config.system_prompt, response_prefix=config.response_prefix)


def resolve_device(device: str) -> Any:
    """Return the torch device ``device`` names (``auto``: the first CUDA GPU when there is one, else the CPU)."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device={device!r} but torch sees no CUDA GPU here; use device='cpu' or 'auto'.")
    return torch.device(device)


def _as_dtype(model: Any, dtype: str) -> Any:
    """Cast a tiny model's weights to ``dtype`` as :func:`~empg_gym.agents.models.load_model` loads real ones."""
    import torch

    try:
        return model.to(getattr(torch, dtype))
    except (AttributeError, TypeError):
        raise ConfigError(f"Unknown dtype {dtype!r}; pass a torch dtype name such as 'float32' or 'bfloat16'.") from None


def make_envs(config: TrainConfig, n: int) -> Any:
    """Return ``n`` agent-facing envs (prompts in, responses out): a list, or an ``AsyncVectorEnv``."""
    from empg_gym.wrappers import PromptConfig, make_agent_env

    def make() -> gym.Env[Any, Any]:
        return make_agent_env(
            config.env_id,
            prompt=PromptConfig(history_length=config.history_length,
                                **({"action_template": config.prompt_template} if config.prompt_template else {})),
            invalid_format_penalty=config.invalid_format_penalty,
            require_think=config.require_think,
            **dict(config.env_kwargs),
        )

    if config.vectorization == "async":
        return gym.vector.AsyncVectorEnv([make] * n)
    return [make() for _ in range(n)]


def resolve_algorithm(config: TrainConfig) -> Any:
    """Return the algorithm config, with DAPO's overlong window and Dr.GRPO's ``loss_norm_len`` fitted to the response
    budget unless overridden.
    """  # noqa: D205
    algo = config.algorithm()
    if algo.loss_agg == "seq-mean-token-sum-norm" and algo.loss_norm_len is None:
        algo = dataclasses.replace(algo, loss_norm_len=config.max_new_tokens)  # a constant, as Dr.GRPO asks
    overridden = any(k == "overlong" or k.startswith("overlong.") for k in config.algo_overrides)
    if algo.overlong is not None and not overridden:
        budget = config.max_new_tokens
        buffer = min(algo.overlong.buffer_len, max(1, budget // 4))
        algo = dataclasses.replace(algo, overlong=dataclasses.replace(algo.overlong, max_len=budget, buffer_len=buffer))
    return algo


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ------------------------------------------------------------------------------------------------ batching
def to_step_batch(samples: Sequence[Any], reward_scale: float) -> tuple[Any, list[Any], list[Any]]:
    """Return ``(StepBatch, prompt_ids, response_ids)`` for rollout samples (responses right-padded to ``T``).

    The per-sample reward is the trajectory's outcome; GiGPO's ``step_reward`` is the env's reward at that step,
    scaled like the outcome. The step's invalid-format penalty goes to ``format_penalty``: ``compute_advantages``
    subtracts it from the step's advantage, after the estimator, for every algorithm.
    """
    import torch

    from empg_gym.agents.algorithms import StepBatch, observation_keys
    from empg_gym.agents.policy import pad_rows

    def padded(name: str) -> Any:  # the samples' (T_i,) tensors right-padded with 0 into an (n, T) float tensor
        return pad_rows([getattr(s, name) for s in samples], 0.0, dtype=torch.float32)[0]

    mask = pad_rows([s.response_ids for s in samples])[1].bool()
    has_signal = all(getattr(s, "uncertainty", None) is not None for s in samples)  # a token signal EMPG asked for
    old_logp, entropy = padded("old_log_probs"), padded("entropies")
    uncertainty = padded("uncertainty") if has_signal else None

    def col(name: str, dtype: Any) -> Any:
        return torch.tensor([getattr(s, name) for s in samples], dtype=dtype)

    batch = StepBatch(
        response_mask=mask,
        old_logp=old_logp,
        reward=col("reward", torch.float32),
        group_id=col("group_id", torch.long),
        traj_id=col("traj_id", torch.long),
        step_index=col("step_index", torch.long),
        is_last=col("is_last", torch.bool),
        token_entropy=entropy,
        step_reward=reward_scale * col("env_reward", torch.float32),
        obs_key=observation_keys([s.observation for s in samples]),
        format_penalty=col("format_penalty", torch.float32),
        token_uncertainty=uncertainty,
    )
    return batch, [s.prompt_ids for s in samples], [s.response_ids for s in samples]


def _renumber(samples: Sequence[Any], group_offset: int, traj_offset: int) -> list[Any]:
    """Return the samples with their group and trajectory ids shifted (as they are when both shifts are 0)."""
    if not group_offset and not traj_offset:
        return list(samples)
    return [dataclasses.replace(s, group_id=s.group_id + group_offset, traj_id=s.traj_id + traj_offset)
            for s in samples]


def mini_batches(n: int, size: int, generator: Any = None) -> list[Any]:
    """Split a random permutation of ``range(n)`` into ``max(1, round(n / size))`` mini-batches of near-equal size.

    Sizes differ by at most one and lie within ``[size / 2, 3 size / 2]`` (a whole batch smaller than ``size / 2`` is
    one mini-batch). A remainder is spread over the mini-batches instead of getting its own optimizer
    step: AdamW divides each step by the gradient's running scale, so a step on a 6-sample leftover would move the
    weights about as far as one on a full mini-batch.

    Example:
        >>> import torch
        >>> [len(m) for m in mini_batches(70, 32, torch.Generator().manual_seed(0))]
        [35, 35]
        >>> [len(m) for m in mini_batches(100, 32)], [len(m) for m in mini_batches(10, 32)]
        ([34, 33, 33], [10])
    """
    import torch

    order = torch.randperm(n, generator=generator)
    return list(torch.tensor_split(order, max(1, int(n / size + 0.5))))


# ------------------------------------------------------------------------------------------------- metrics
class MetricsLogger:
    """Append one JSON line per update to ``metrics.jsonl`` and mirror the scalars to TensorBoard.

    A run that starts at update ``start`` (0: a fresh run; else the update of the checkpoint it resumed from) first
    drops what an earlier, killed process logged after ``start``: those updates are about to be redone. TensorBoard
    gets a fresh event folder, refilled from the kept rows of ``metrics.jsonl``, so every update keeps exactly one
    value there too. (TensorBoard's own ``purge_step`` is not enough: it drops the old events only when the new event
    file sorts after the old one, and two files written in the same second sort by process id.)

    Args:
        out_dir: The run folder (``metrics.jsonl`` and ``tensorboard/`` go there).
        start: The update the run starts after.
    """

    def __init__(self, out_dir: Path, start: int = 0) -> None:
        self.path = out_dir / "metrics.jsonl"
        kept = self.truncate(start)
        self._tb: Any = None
        tb_dir = out_dir / "tensorboard"
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            logger.info("tensorboard is not installed; metrics go to %s only", self.path)
            return
        shutil.rmtree(tb_dir, ignore_errors=True)
        self._tb = SummaryWriter(log_dir=str(tb_dir))
        for row in kept:
            self._scalars(row.pop("update"), row)
        self._tb.flush()

    def log(self, step: int, metrics: dict[str, float]) -> None:
        """Record ``metrics`` for update ``step``."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps({"update": step, **metrics}) + "\n")
        if self._tb is not None:
            self._scalars(step, metrics)
            self._tb.flush()

    def _scalars(self, step: int, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and np.isfinite(value):
                self._tb.add_scalar(key, value, step)

    def truncate(self, step: int) -> list[dict[str, Any]]:
        """Drop records of updates after ``step`` (all of them for ``step = 0``); return the kept records."""
        if not self.path.is_file():
            return []
        lines = [ln for ln in self.path.read_text(encoding="utf-8").splitlines() if ln.strip()]
        kept = [ln for ln in lines if json.loads(ln)["update"] <= step]
        self.path.write_text("".join(ln + "\n" for ln in kept), encoding="utf-8")
        return [json.loads(ln) for ln in kept]

    def close(self) -> None:
        """Flush and close TensorBoard."""
        if self._tb is not None:
            self._tb.close()


def _mean_metrics(parts: list[dict[str, float]]) -> dict[str, float]:
    keys = {k for p in parts for k in p}
    return {k: float(np.mean([p[k] for p in parts if k in p])) for k in sorted(keys)}


def _merge_micro(parts: list[dict[str, float]], tokens: list[float]) -> dict[str, float]:
    """One mini-batch's metrics from its micro-batches': loss shares summed, means weighted by response tokens."""
    from empg_gym.agents.algorithms import SUMMED_METRICS

    w = np.asarray(tokens, dtype=float) if sum(tokens) > 0 else np.ones(len(tokens))
    keys = {k for p in parts for k in p}
    return {k: float(sum(p[k] for p in parts)) if k in SUMMED_METRICS
            else float(np.average([p[k] for p in parts], weights=w)) for k in sorted(keys)}


# ------------------------------------------------------------------------------------------------- trainer
class Trainer:
    """Train an LLM policy on an empg-gym env with the algorithm ``config.algo`` (see the module docstring).

    Args:
        config: The run's settings.
        out_dir: Where ``metrics.jsonl``, ``tensorboard/``, ``checkpoint/`` and ``eval_*.jsonl`` go.
        resume: Continue from ``out_dir/checkpoint`` when it exists (weights, optimizer, RNG states, update). Either
            way the run starts after the update it loaded (0 without a checkpoint), and metrics an earlier process
            logged after that update are dropped, so ``metrics.jsonl`` ends with exactly one row per update.
        log: Called with each progress line: the estimate before training, the first rollout step, every update
            (default: this module's logger, at INFO; the too-slow warning at WARNING).
    """

    def __init__(self, config: TrainConfig, out_dir: str | os.PathLike[str], *, resume: bool = False,
                 log: Callable[[str], None] | None = None) -> None:
        self.log = log or logger.info
        self._warn = log or logger.warning
        self.speed: Speed | None = None  # the pre-flight measurement
        self._first_step_seen = False
        self._update_seconds: list[float] = []  # wall time of each update of this process
        self.config = config
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.algo = resolve_algorithm(config)
        seed_everything(config.seed)
        self.B, self.G = config.effective_tasks_per_update, config.effective_group_size
        self.policy = build_policy(config)
        if self.algo.use_kl and self.algo.kl_coef > 0:
            self.policy.snapshot_reference()  # the reference is the policy before any update
        self.optimizer = adamw(self.policy.trainable_parameters(), lr=config.effective_lr,
                               weight_decay=config.weight_decay)
        from empg_gym.agents.algorithms import build_uncertainty

        # EMPG's model-based uncertainty signal (mc_dropout, lora_ensemble); a no-op for token signals and without EMPG
        self.uncertainty = build_uncertainty(self.algo, self.policy, lr=config.effective_lr, seed=config.seed)
        from empg_gym.agents.critic import build_critic

        self.critic = build_critic(self.algo, self.policy, lr=config.effective_lr, seed=config.seed)  # ppo's, or no-op
        self.update_step = 0
        self.rollout_batches = 0  # rollout batches drawn so far (DAPO may draw several per update)
        self.env_steps = 0  # env steps played so far (training rollouts only)
        self.evaluated_budget = 0  # the largest env-step budget evaluated so far (eval_every_env_steps)
        self._attempt = 0  # rollout batches drawn for the update in progress
        self._skipped = 0  # DAPO rounds without an informative group since the last update
        self._skipped_success: float | None = None  # the training success of the last such round
        (self.out_dir / "config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))
        if resume and (self.out_dir / CHECKPOINT / "state.json").is_file():
            self.load_checkpoint(self.out_dir / CHECKPOINT)
        self.metrics = MetricsLogger(self.out_dir, start=self.update_step)
        if self.update_step < config.updates:  # before building B·G envs, which can take minutes
            self.preflight()
        self.envs = make_envs(config, self.B * self.G)
        self.rollout_log = RolloutLog(self.out_dir, family_of(config.env_id), self.envs, start=self.update_step)

    # ---------------------------------------------------------------------------------------------- loop
    def train(self) -> list[dict[str, float]]:
        """Run the remaining updates; return each update's metrics."""
        from tqdm.auto import tqdm

        history = []
        cfg = self.config
        try:
            with tqdm(total=cfg.updates, initial=self.update_step, desc=f"{cfg.algo} on {cfg.env_id}",
                      unit="update", disable=not cfg.progress) as bar:
                t_last = time.perf_counter()
                while self.update_step < cfg.updates:
                    if self.rollout_batches >= self.max_rollout_batches:
                        self._stop_short()
                        break
                    metrics = self.train_step()
                    if metrics.get("actor/skipped"):  # nothing changed: not an update
                        self._skipped += 1
                        self._skipped_success = metrics.get("rollout/success_rate")
                        continue
                    self.update_step += 1
                    if self.algo.filter_groups:
                        metrics["dapo/skipped_rounds"] = float(self._skipped)
                    self._skipped = 0
                    self.after_update(metrics)
                    self.metrics.log(self.update_step, metrics)
                    history.append(metrics)
                    if self.update_step % cfg.checkpoint_every == 0 or self.update_step == cfg.updates:
                        self.save_checkpoint()
                    now = time.perf_counter()
                    self._log_pace(metrics, now - t_last)
                    t_last = now
                    bar.update(1)
                    bar.set_postfix(success=f"{metrics['rollout/success_rate']:.2f}")
            if cfg.eval_tasks and not cfg.eval_every:
                final = self.evaluate(cfg.eval_tasks)
                self.metrics.log(self.update_step, final)
                history.append(final)
        finally:
            self.metrics.close()
        return history

    def after_update(self, metrics: dict[str, float]) -> None:
        """Evaluate the policy just updated when the schedule says so, adding the results to ``metrics``.

        The schedule: every ``eval_every`` updates, and after the first update at which the env steps played reach
        each multiple of ``eval_every_env_steps`` (:func:`eval_budget`); ``eval/env_steps`` records the env steps
        actually played and ``eval/budget_env_steps`` the budget an evaluation stands for. A bench overrides this.
        """
        cfg = self.config
        budget = eval_budget(self.env_steps, cfg.eval_every_env_steps, self.evaluated_budget)
        if budget is not None:
            self.evaluated_budget = budget
        if cfg.eval_tasks and eval_due(self.update_step, cfg.eval_every, budget):
            metrics.update(self.evaluate(cfg.eval_tasks))
            metrics["eval/env_steps"] = float(self.env_steps)
            if budget is not None:
                metrics["eval/budget_env_steps"] = float(budget)

    # ---------------------------------------------------------------------------------------------- time
    def preflight(self) -> UpdateEstimate:
        """Measure the model on a real first prompt; log the estimated time per update and for the run.

        On a CPU, above :data:`SLOW_UPDATE_S` per update, also warn, naming the ``cpu`` preset's estimate when it is
        smaller. The run goes ahead either way.
        """
        cfg = self.config
        sizes = Sizes.of(cfg, self.algo)
        batch = min(self.B * self.G, MEASURE_BATCH)
        self.speed = speed = measure_speed(self.policy, self._first_prompt(), batch=batch)
        est = estimate_update(speed, sizes)
        left = cfg.updates - self.update_step
        where = "this CPU" if self.policy.device.type == "cpu" else str(self.policy.device)
        self.log(f"estimate: up to about {format_duration(est.total)} per update on {where} ({sizes.describe()}: "
                 f"rollout {format_duration(est.rollout)}, update {format_duration(est.update)}, if every trajectory "
                 f"runs all {sizes.steps} steps), up to about {format_duration(left * est.total)} for {left} "
                 f"update{'s' * (left != 1)}; from a "
                 f"{format_duration(speed.seconds)} measurement of this model on a {speed.prompt_tokens}-token prompt, "
                 "so a rough guide, not a promise")
        if self.policy.device.type == "cpu" and est.total > SLOW_UPDATE_S:
            self._warn(self._too_slow(speed, est.total, sizes.describe()))
        return est

    def _too_slow(self, speed: Speed, seconds: float, sizes: str) -> str:
        small_cfg = TrainConfig.from_dict({**self.config.to_dict(), **train_preset("cpu")})
        small_sizes = Sizes.of(small_cfg, resolve_algorithm(small_cfg))
        small = estimate_update(speed, small_sizes).total
        advice = (f"try the cpu preset (`empg-gym train --preset cpu`, {small_sizes.describe()}: about "
                  f"{format_duration(small)} per update) or a GPU" if small < seconds
                  else "try a GPU or a smaller model")
        return (f"This run needs about {format_duration(seconds)} per update on this CPU ({sizes}); {advice}. "
                "The run starts anyway; the estimate is rough (it assumes every trajectory runs to the step limit).")

    def _first_prompt(self) -> str:
        """Return the step prompt of the first task of the training split, from an env built for it."""
        cfg = self.config
        env = make_envs(dataclasses.replace(cfg, vectorization="sync"), 1)[0]
        try:
            tasks = env.unwrapped.task_ids(cfg.split)
            prompt, _ = env.reset(seed=cfg.seed, options={"task_id": tasks[0]} if tasks else None)
        finally:
            env.close()
        return str(prompt)

    def _on_step(self, step: int, seconds: float) -> None:
        """After the run's first env step: log its time and the update's estimate revised with it."""
        if self._first_step_seen:
            return
        self._first_step_seen = True
        sizes = Sizes.of(self.config, self.algo)
        line = f"first rollout step: {format_duration(seconds)} for {self.B * self.G} trajectories"
        if self.speed is not None:
            est = revised_estimate(seconds, self.speed, sizes)
            left = self.config.updates - self.update_step
            line += (f"; revised estimate for update {self.update_step + 1}: up to about {format_duration(est.rollout)} "
                     f"of rollout ({sizes.steps} steps at most) + {format_duration(est.update)} of update = "
                     f"{format_duration(est.total)}; up to about {format_duration(left * est.total)} for {left} "
                     f"update{'s' * (left != 1)}")
        self.log(line)

    def _log_pace(self, metrics: dict[str, float], seconds: float) -> None:
        """After an update: its wall time, the median so far and the time left at that pace."""
        self._update_seconds.append(seconds)
        pace = statistics.median(self._update_seconds)
        left = (self.config.updates - self.update_step) * pace
        when = f"about {format_duration(left)} left in this run" if left > 0 else "the run's last update"
        self.log(f"update {self.update_step}/{self.config.updates}: training success "
                 f"{metrics.get('rollout/success_rate', float('nan')):.2f}; {format_duration(pace)} per update "
                 f"(median), {when}; this update took {format_duration(seconds)}")

    @property
    def max_rollout_batches(self) -> int:
        """Rollout batches the run may draw: ``updates``, times ``max_resample_batches`` when the algorithm filters."""
        per_update = self.algo.max_resample_batches if self.algo.filter_groups else 1
        return self.config.updates * per_update

    def _stop_short(self) -> None:
        """Stop a filtering run whose rollout budget is spent (news when its policy wins every group, else a warning)."""
        head = (f"{self.config.algo} drew its {self.max_rollout_batches} rollout batches (updates x "
                f"max_resample_batches) after {self.update_step} of {self.config.updates} updates")
        if self._skipped and (self._skipped_success or 0.0) >= 1.0:
            logger.info("%s: in the last %d rounds every trajectory won, so no group's rewards differed and dynamic "
                        "sampling had nothing left to learn from. The run stops here, solved.", head, self._skipped)
        else:
            logger.warning("%s: the last %d rounds had no group whose rewards differ, so dynamic sampling had nothing "
                           "to train on. The run stops here; raise max_resample_batches or make the tasks easier for "
                           "this policy.", head, self._skipped)
        self.save_checkpoint()

    def train_step(self) -> dict[str, float]:
        """Collect one batch of group rollouts and update the policy on it; return the update's metrics.

        The metrics hold ``actor/skipped = 1`` when DAPO's filter dropped every group: then nothing was updated.
        """
        import torch

        from empg_gym.agents.algorithms import compute_advantages

        t0 = time.perf_counter()
        samples, rollout_metrics = self._collect()
        t1 = time.perf_counter()
        metrics: dict[str, float] = dict(rollout_metrics)
        metrics.update({"budget/rollout_batches": float(self.rollout_batches),
                        "budget/env_steps": float(self.env_steps)})
        if not samples:  # DAPO's filter dropped every group, even after resampling
            metrics.update({"time/rollout": t1 - t0, "actor/skipped": 1.0})
            return metrics
        batch, prompts, responses = to_step_batch(samples, self.config.reward_scale)
        if self.algo.use_kl and self.algo.kl_coef > 0:
            ref = self.policy.reference_scores(prompts, responses, temperature=self.config.temperature,
                                               chunk_size=self.config.micro_batch_size)
            batch = dataclasses.replace(batch, ref_logp=_pad_to(ref.log_probs, batch.response_mask.shape[1]))
        t_unc = time.perf_counter()
        batch = self._measure_uncertainty(batch, prompts, responses)
        metrics["time/uncertainty"] = time.perf_counter() - t_unc
        t_critic = time.perf_counter()
        batch, critic_metrics = self.critic.measure(batch, prompts, responses, temperature=self.config.temperature,
                                                    chunk_size=self.config.micro_batch_size)
        metrics.update({**critic_metrics, "time/critic": time.perf_counter() - t_critic})
        advantages, adv_metrics = compute_advantages(self.algo, batch)
        self.rollout_log.record(self.update_step + 1, samples, batch, advantages)  # for `empg-gym view`
        actor_metrics = self._update(batch, advantages, prompts, responses)
        self._attempt = 0  # the next update's first rollout batch gets that update's first seed
        t2 = time.perf_counter()
        tokens = int(batch.response_mask.sum()) + sum(int(p.numel()) for p in prompts)
        metrics.update(adv_metrics)
        metrics.update(actor_metrics)
        metrics.update({
            "time/rollout": t1 - t0,
            "time/update": t2 - t1,
            "time/sps": batch.size / max(t2 - t0, 1e-9),
            "time/tokens_per_s": tokens / max(t2 - t1, 1e-9),
            "actor/lr": float(self.optimizer.param_groups[0]["lr"]),
        })
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        return metrics

    def _measure_uncertainty(self, batch: Any, prompts: list[Any], responses: list[Any]) -> Any:
        """Fill ``token_uncertainty`` with EMPG's model-based signal (extra passes); token ones came with the rollout."""
        u = self.uncertainty.measure(prompts, responses, temperature=self.config.temperature,
                                     chunk_size=self.config.micro_batch_size,
                                     seed=self.config.seed * 1_000_003 + self.update_step)
        if u is None:
            return batch
        u = _pad_to(u.detach().float().cpu(), batch.response_mask.shape[1])
        return dataclasses.replace(batch, token_uncertainty=u)

    def _collect(self) -> tuple[list[Any], dict[str, float]]:
        """Play ``B × G`` trajectories; with ``filter_groups``, keep only groups whose rewards differ, resampling.

        "Differ" is judged on the reward the estimator sees (:func:`~empg_gym.agents.algorithms.informative_groups`).
        The first rollout batch of update ``u`` has the same seed for every algorithm; resampled batches continue the
        update's count, across rounds that kept nothing.
        """
        from empg_gym.agents.rollout import RolloutConfig, collect_rollouts

        cfg = self.config
        rollout_cfg = RolloutConfig(
            group_size=self.G, split=cfg.split, reward_scale=cfg.reward_scale, max_steps=cfg.max_steps,
            generation=self._generation(), progress=cfg.progress,
        )
        tries = self.algo.max_resample_batches if self.algo.filter_groups else 1  # verl: max_num_gen_batches
        tries = max(1, min(tries, self.max_rollout_batches - self.rollout_batches))
        kept: list[Any] = []
        first_metrics: dict[str, float] = {}
        groups = trajs = 0
        for attempt in range(tries):
            seed = cfg.seed * 1_000_003 + self.update_step * 101 + self._attempt
            rollout = collect_rollouts(self.policy, self.envs, rollout_cfg, seed=seed,
                                       on_step=None if self._first_step_seen else self._on_step)
            self._attempt += 1
            self.rollout_batches += 1
            self.env_steps += len(rollout.samples)
            if attempt == 0:
                first_metrics = dict(rollout.metrics)
            if not self.algo.filter_groups:
                return list(rollout.samples), first_metrics
            # ids shifted past the earlier batches' (only the kept samples: renumbering copies each one)
            kept += _renumber(self._informative(rollout.samples), groups, trajs)
            groups += self.B
            trajs += self.B * self.G
            if len({s.group_id for s in kept}) >= self.B:
                break
        keep_ids = set(sorted({s.group_id for s in kept})[: self.B])
        kept = [s for s in kept if s.group_id in keep_ids]
        first_metrics.update({"dapo/rollout_batches": float(attempt + 1), "dapo/kept_groups": float(len(keep_ids))})
        return kept, first_metrics

    def _informative(self, samples: Sequence[Any]) -> list[Any]:
        """Keep the samples of groups whose estimator rewards are not all equal (DAPO's dynamic sampling)."""
        from empg_gym.agents.algorithms import informative_groups

        batch, _, _ = to_step_batch(samples, self.config.reward_scale)
        keep = informative_groups(self.algo, batch)
        kept_groups = {s.group_id for s, k in zip(samples, keep.tolist(), strict=True) if k}
        return [s for s in samples if s.group_id in kept_groups]

    def _generation(self, *, greedy: bool = False) -> Any:
        from empg_gym.agents.algorithms import generation_signal
        from empg_gym.agents.policy import GenerationConfig

        return GenerationConfig(max_new_tokens=self.config.max_new_tokens, temperature=self.config.temperature,
                                do_sample=not greedy, uncertainty=None if greedy else generation_signal(self.algo))

    def _update(self, batch: Any, advantages: Any, prompts: list[Any], responses: list[Any]) -> dict[str, float]:
        """PPO epochs over shuffled mini-batches (:func:`mini_batches`), accumulating gradients over micro-batches.

        Every micro-batch's loss is its share of the mini-batch's loss (the mini-batch's token and sequence counts
        divide it, :func:`~empg_gym.agents.algorithms.loss_norm`), so the gradient does not depend on
        ``micro_batch_size``.
        """
        import torch

        from empg_gym.agents.algorithms import actor_loss, loss_norm, masked_mean

        cfg = self.config
        model = self.policy.model
        model.train()
        generator = torch.Generator().manual_seed(cfg.seed * 7919 + self.update_step)
        n, T = batch.size, batch.response_mask.shape[1]
        trainable = self.policy.trainable_parameters()
        parts: list[dict[str, float]] = []
        for _ in range(cfg.ppo_epochs):
            for mini in mini_batches(n, cfg.mini_batch_size, generator):
                self.optimizer.zero_grad(set_to_none=True)
                norm = loss_norm(batch.response_mask[mini])
                micro: list[dict[str, float]] = []
                tokens: list[float] = []
                for m0 in range(0, len(mini), cfg.micro_batch_size):
                    idx = mini[m0 : m0 + cfg.micro_batch_size]
                    sub = batch.select(idx)
                    with self.uncertainty.capture(), self.critic.capture():  # they read the policy's features
                        scores = self.policy.score([prompts[i] for i in idx], [responses[i] for i in idx],
                                                   temperature=cfg.temperature, with_entropy=True)
                    logp = _pad_to(scores.log_probs, T)
                    loss, m = actor_loss(self.algo, logp, sub, advantages[idx], norm)
                    loss.backward()
                    m.update(self.uncertainty.train_on(idx, sub, advantages[idx], norm))
                    m.update(self.critic.train_on(idx, sub, norm))
                    with torch.no_grad():
                        m["actor/entropy"] = float(masked_mean(_pad_to(scores.entropies, T), sub.response_mask))
                    micro.append(m)
                    tokens.append(float(sub.response_mask.sum()))
                grad_norm = torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
                self.optimizer.step()
                self.uncertainty.step()
                self.critic.step()
                parts.append({**_merge_micro(micro, tokens), "actor/grad_norm": float(grad_norm)})
        model.eval()
        return _mean_metrics(parts)

    # ------------------------------------------------------------------------------------------ evaluation
    @property
    def eval_envs(self) -> Any:
        """The :class:`~empg_gym.agents.evaluate.EnvPool` every evaluation of this run plays in (built on first use)."""
        if getattr(self, "_eval_envs", None) is None:
            from empg_gym.agents.evaluate import EnvPool

            self._eval_envs = EnvPool(self.config)
        return self._eval_envs

    def evaluate(self, n_tasks: int, split: str | None = None) -> dict[str, float]:
        """Play the first ``n_tasks`` tasks of ``split`` greedily (and ``eval_samples`` times sampled); log episodes.

        The episodes go to ``eval_<split>_update<u>.jsonl``; see :func:`~empg_gym.agents.evaluate.evaluate_policy`.
        """
        from empg_gym.agents.evaluate import evaluate_policy

        split = split or self.config.eval_split
        result = evaluate_policy(self.policy, self.config, split=split, n_tasks=n_tasks, envs=self.eval_envs,
                                 log_path=self.out_dir / f"eval_{split}_update{self.update_step}.jsonl")
        return {f"eval/{split}/{k}": v for k, v in result.items()}

    # ----------------------------------------------------------------------------------------- checkpoints
    def save_checkpoint(self) -> Path:
        """Write weights (safetensors), optimizer, RNG states and the update counter atomically."""
        import torch
        from safetensors.torch import save_file

        final = self.out_dir / CHECKPOINT
        tmp = self.out_dir / f".{CHECKPOINT}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        trainable = {k: v.detach().contiguous() for k, v in self.policy.model.named_parameters() if v.requires_grad}
        save_file(trainable, str(tmp / "trainable.safetensors"))
        torch.save(self.optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save({"python": random.getstate(), "numpy": np.random.get_state(),
                    "torch": torch.random.get_rng_state()}, tmp / "rng.pt")
        state = {"update": self.update_step, "rollout_batches": self.rollout_batches, "env_steps": self.env_steps,
                 "attempt": self._attempt, "skipped_rounds": self._skipped, "skipped_success": self._skipped_success,
                 "config": self.config.to_dict()}
        (tmp / "state.json").write_text(json.dumps(state, default=str))
        if unc_state := self.uncertainty.state_dict():
            torch.save(unc_state, tmp / "uncertainty.pt")
        if critic_state := self.critic.state_dict():
            torch.save(critic_state, tmp / "critic.pt")
        old = self.out_dir / f".{CHECKPOINT}.old-{os.getpid()}"
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
        return final

    def load_checkpoint(self, path: Path) -> None:
        """Restore what :meth:`save_checkpoint` wrote."""
        import torch

        state = json.loads((path / "state.json").read_text())
        load_weights(self.policy, path)
        self.optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
        if (path / "uncertainty.pt").is_file():
            self.uncertainty.load_state_dict(torch.load(path / "uncertainty.pt", weights_only=False))
        if (path / "critic.pt").is_file():
            self.critic.load_state_dict(torch.load(path / "critic.pt", weights_only=False))
        rng = torch.load(path / "rng.pt", weights_only=False)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.random.set_rng_state(rng["torch"])
        self.update_step = int(state["update"])
        self.rollout_batches = int(state.get("rollout_batches", self.update_step))
        self.env_steps = int(state.get("env_steps", 0))
        every = self.config.eval_every_env_steps
        self.evaluated_budget = self.env_steps // every * every if every else 0  # evaluated before the checkpoint
        self._attempt = int(state.get("attempt", 0))
        self._skipped = int(state.get("skipped_rounds", 0))
        self._skipped_success = state.get("skipped_success")  # a resumed run that stopped solved says so again
        logger.info("resumed from %s at update %d", path, self.update_step)

    def close(self) -> None:
        """Close the envs (training and evaluation ones)."""
        if getattr(self, "_eval_envs", None) is not None:
            self._eval_envs.close()
        if isinstance(self.envs, gym.vector.VectorEnv):
            self.envs.close()
        else:
            for env in self.envs:
                env.close()


def load_weights(policy: Any, checkpoint: Path) -> None:
    """Copy a checkpoint's trained weights into ``policy`` (built from the same model spec and LoRA rank)."""
    import torch
    from safetensors.torch import load_file

    weights = load_file(str(checkpoint / "trainable.safetensors"))
    params = dict(policy.model.named_parameters())
    unknown = sorted(set(weights) - set(params))
    if unknown:
        raise ConfigError(f"Checkpoint {checkpoint} does not fit this model (unknown weights {unknown[:3]}); "
                          "use the same model and lora_rank as the run that wrote it.")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def _pad_to(x: Any, width: int) -> Any:
    """Right-pad (or crop) a ``(N, t)`` tensor with zeros to ``(N, width)``."""
    import torch

    if x.shape[1] >= width:
        return x[:, :width]
    return torch.nn.functional.pad(x, (0, width - x.shape[1]))
