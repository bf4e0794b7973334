"""How long an update will take: a pre-flight estimate from a short measurement of the loaded model.

:func:`measure_speed` times the policy itself, a few seconds on a CPU: one prefill of a real first step prompt gives
``c``, seconds per prompt token of a forward pass, and a few greedy decoding steps of ``k = min(B·G, 8)`` rows give
``d(k)``, seconds per decoding step. :func:`estimate_update` turns them into seconds per update for the run's sizes:
``n = B·G`` trajectories of at most ``S`` steps (``max_steps``, else the env's registered limit) and at most ``T``
response tokens (``max_new_tokens``), first prompt ``P`` tokens, a later one ``P_h = P + h·(T + OBS_TOKENS)``
(``h = history_length`` past observation/action pairs), ``E = ppo_epochs``::

    rollout ≈ s_1 + (S − 1)·[n·P_h·c + T·d(n)]                  s_1 = B·P·c + T·d(n), the first step
    update  ≈ (3 + g)·E·N·(P_h + T)·c + (r + u)·N·(P_h + T)·c   N = n·S step samples
    d(n)    = d(k)·max(1, n / k)

In the first step a group's ``G`` copies of one prompt share a prefill. A forward and backward pass cost about three
forward passes (``g = 1`` more with gradient checkpointing); ``r = 1`` when the algorithm scores a reference policy
for its KL term; ``u`` forward passes measure EMPG's uncertainty when it needs them (``K`` for ``mc_dropout``, one for
``lora_ensemble``, none for the signals read off the sampling distribution). Every trajectory is assumed to run to the step limit
and every response to the token budget, on a machine as busy as during the measurement; DAPO's extra rollout
batches and evaluations are not counted. A few seconds of measurement on a shared machine can be off by a factor of
a few, so once the run's first rollout step has been timed, :func:`revised_estimate` scales the whole estimate by
that step's measured time over ``s_1``; each update is then timed for real.

The model is linear in tokens, as an LLM's forward is: SmolLM2-135M on one CPU thread spends about the same per
token on 1, 8 or 64 distinct rows (2.5, 2.6, 3.0 ms). A tiny model's forward is mostly per-call overhead instead
(``tiny-actions``: 343, 48 and 10 µs per token at 1, 8 and 64 rows), so ``c`` from a one-row prefill overstates
its batched passes many-fold and the estimate is a loose upper bound (KeyRooms, 8 x 8 trajectories: "up to about
72 s per update", revised to 18 s after the first step, against 1.4 s measured); the pace logged after each update
is the figure to read there.

Example:
    >>> speed = Speed(prompt_tokens=400, s_per_token=0.01, s_per_decode_step=0.4, decode_batch=8, seconds=5.0)
    >>> sizes = Sizes(tasks=1, group=4, steps=3, new_tokens=16, history=0, epochs=1, reference=True)
    >>> est = estimate_update(speed, sizes)
    >>> round(est.rollout, 2), round(est.update, 2)  # (4 + 6.4) + 2·(16 + 6.4);  (3 + 1)·12·(400 + 16)·0.01
    (55.2, 199.68)
    >>> format_duration(est.total), sizes.describe()
    ('4.2 min', '1 task x 4 trajectories x 3 steps x 16 tokens')
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

#: Tokens one past observation adds to a prompt with history, beside its action (an ALFWorld-sized guess).
OBS_TOKENS = 64
#: Steps assumed when neither ``max_steps`` nor the env's registration sets a limit.
ASSUMED_STEPS = 50
#: Rows decoded at once when measuring ``d(k)`` (``k = min(B·G, MEASURE_BATCH)``).
MEASURE_BATCH = 8


@dataclass(frozen=True)
class Speed:
    """What :func:`measure_speed` measured.

    Attributes:
        prompt_tokens: Tokens ``P`` of the measured first prompt.
        s_per_token: ``c``: seconds per prompt token of a forward pass (no gradient).
        s_per_decode_step: ``d(k)``: seconds of one decoding step of ``decode_batch`` rows.
        decode_batch: ``k``.
        seconds: Wall time of the whole measurement.
    """

    prompt_tokens: int
    s_per_token: float
    s_per_decode_step: float
    decode_batch: int
    seconds: float

    def decode_step(self, n: int) -> float:
        """``d(n) = d(k)·max(1, n / k)``: linear in the rows beyond ``k``, never below the measured step."""
        return self.s_per_decode_step * max(1.0, n / self.decode_batch)


@dataclass(frozen=True)
class Sizes:
    """The sizes of one update that set its cost (see the module docstring for the symbols).

    Attributes:
        tasks: ``B``.
        group: ``G``.
        steps: ``S``, the step limit.
        new_tokens: ``T``, the response budget.
        history: ``h``, past observation/action pairs in the prompt.
        epochs: ``E``, passes over the batch.
        reference: Whether a reference policy is scored (KL).
        checkpointing: Whether activations are recomputed in the backward pass.
        uncertainty_passes: ``u``, extra forward passes over the batch for EMPG's uncertainty signal.
    """

    tasks: int
    group: int
    steps: int
    new_tokens: int
    history: int
    epochs: int
    reference: bool
    checkpointing: bool = False
    uncertainty_passes: int = 0

    @classmethod
    def of(cls, config: Any, algo: Any) -> Sizes:
        """Return the sizes of a :class:`~empg_gym.agents.config.TrainConfig` run with algorithm config ``algo``."""
        return cls(tasks=config.effective_tasks_per_update, group=config.effective_group_size,
                   steps=step_limit(config), new_tokens=config.max_new_tokens, history=config.history_length,
                   epochs=config.ppo_epochs, reference=bool(algo.use_kl and algo.kl_coef > 0),
                   checkpointing=config.gradient_checkpointing, uncertainty_passes=uncertainty_passes(algo))

    def describe(self) -> str:
        """``"16 tasks x 8 trajectories x 50 steps x 256 tokens"``."""
        return " x ".join(_count(n, one, many) for n, one, many in (
            (self.tasks, "task", "tasks"), (self.group, "trajectory", "trajectories"), (self.steps, "step", "steps"),
            (self.new_tokens, "token", "tokens")))


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@dataclass(frozen=True)
class UpdateEstimate:
    """Estimated seconds of one update: playing the rollout, then the policy update on its step samples."""

    rollout: float
    update: float

    @property
    def total(self) -> float:
        """Rollout plus update."""
        return self.rollout + self.update


def uncertainty_passes(algo: Any) -> int:
    """``u``: forward passes over the batch that EMPG's uncertainty signal adds (0 without EMPG).

    Example:
        >>> from empg_gym.agents.algorithms import get_algorithm
        >>> from empg_gym.agents.algorithms.config import EMPGConfig
        >>> empg = get_algorithm("empg")
        >>> uncertainty_passes(empg), uncertainty_passes(dataclasses.replace(empg, empg=EMPGConfig(
        ...     uncertainty="mc_dropout", uncertainty_samples=8)))
        (0, 8)
    """
    empg = getattr(algo, "empg", None)
    if empg is None:
        return 0
    return {"mc_dropout": empg.uncertainty_samples, "lora_ensemble": 1}.get(empg.uncertainty, 0)


def step_limit(config: Any) -> int:
    """``S``: ``max_steps`` or the env's registered limit, whichever is smaller (:data:`ASSUMED_STEPS` if neither)."""
    try:
        registered = gym.spec(config.env_id).max_episode_steps
    except gym.error.Error:
        registered = None
    limits = [s for s in (config.max_steps, registered) if s]
    return min(limits) if limits else ASSUMED_STEPS


def later_prompt_tokens(speed: Speed, sizes: Sizes) -> int:
    """``P_h = P + h·(T + OBS_TOKENS)``: a prompt once the history is full."""
    return speed.prompt_tokens + sizes.history * (sizes.new_tokens + OBS_TOKENS)


def estimate_update(speed: Speed, sizes: Sizes) -> UpdateEstimate:
    """Seconds of one update of ``sizes`` at ``speed`` (the formula of the module docstring)."""
    n, c, T = sizes.tasks * sizes.group, speed.s_per_token, sizes.new_tokens
    P_h = later_prompt_tokens(speed, sizes)
    decode = T * speed.decode_step(n)
    rollout = first_step_seconds(speed, sizes) + (sizes.steps - 1) * (n * P_h * c + decode)
    N = n * sizes.steps
    passes = (3 + sizes.checkpointing) * sizes.epochs + sizes.reference + sizes.uncertainty_passes
    return UpdateEstimate(rollout=rollout, update=passes * N * (P_h + T) * c)


def first_step_seconds(speed: Speed, sizes: Sizes) -> float:
    """``s_1 = B·P·c + T·d(n)``: the modelled first rollout step."""
    n = sizes.tasks * sizes.group
    return sizes.tasks * speed.prompt_tokens * speed.s_per_token + sizes.new_tokens * speed.decode_step(n)


def revised_estimate(first_step: float, speed: Speed, sizes: Sizes) -> UpdateEstimate:
    """Scale :func:`estimate_update` by ``first_step / s_1``: the run's first rollout step, timed, over its model.

    That step runs the real batch on the real prompts, so it corrects a measurement taken at a quieter or busier
    moment, or at a smaller batch.
    """
    f = first_step / max(first_step_seconds(speed, sizes), 1e-12)
    est = estimate_update(speed, sizes)
    return UpdateEstimate(rollout=f * est.rollout, update=f * est.update)


def measure_speed(policy: Any, prompt: str, batch: int, decode_steps: int = 4) -> Speed:
    """Time ``policy`` on ``prompt``: a warm-up, one prefill of the prompt, ``decode_steps`` greedy decoding steps
    of ``batch`` rows (on the prompt's first 16 tokens, whose prefill is subtracted).

    Greedy decoding draws no random numbers, so the measurement leaves every RNG as it was.
    """  # noqa: D205
    from empg_gym.agents.policy import GenerationConfig

    ids = policy.encode_prompts([prompt])[0]
    short = ids[:16]
    one = GenerationConfig(max_new_tokens=1, do_sample=False, stop=(), stop_at_eos=False)
    start = time.perf_counter()
    policy.generate([short], one)  # warm-up: first-call allocations and kernel choices
    t0 = time.perf_counter()
    policy.generate([ids], one)  # prefill only: max_new_tokens=1 samples from the prompt's last logits
    t1 = time.perf_counter()
    policy.generate([short] * batch, dataclasses.replace(one, max_new_tokens=1 + decode_steps))
    t2 = time.perf_counter()
    c = (t1 - t0) / ids.numel()
    d = max((t2 - t1 - short.numel() * c) / decode_steps, c)  # a decoding step costs at least a token's forward
    return Speed(prompt_tokens=int(ids.numel()), s_per_token=c, s_per_decode_step=d, decode_batch=batch,
                 seconds=t2 - start)


def format_duration(seconds: float) -> str:
    """Write a duration for people: ``"12 ms"``, ``"0.4 s"``, ``"42 s"``, ``"3.5 min"``, ``"2.1 h"``, ``"4.2 days"``.

    Example:
        >>> [format_duration(s) for s in (0.012, 0.42, 42, 210, 7560, 4.2 * 86400)]
        ['12 ms', '0.4 s', '42 s', '3.5 min', '2.1 h', '4.2 days']
    """
    if seconds < 0.1:  # a tiny model's forward: "0.0 s" would say nothing
        return f"{seconds * 1e3:.1f} ms" if seconds < 0.01 else f"{seconds * 1e3:.0f} ms"
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
