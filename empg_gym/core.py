"""The text-env contract every empg-gym environment follows.

An empg-gym env is a ``gymnasium.Env[str, str]``: the agent reads text and writes text. :class:`TextEnv` holds the
part every family shares (task choice from a versioned :class:`~empg_gym.tasks.TaskManifest`, the ``info`` keys,
invalid-action handling); a family implements five small hooks.

``info`` on reset and on every step has these keys:

================  ======================================================================================
``task_id``        id of the current task in its manifest
``task``           the goal text
``task_type``      the task's category (per-type success rates)
``split``          ``train``, ``eval_in_distribution`` or ``eval_out_of_distribution``
``source``         where the task set comes from: ``procedural``/``embedded`` or ``real``
``admissible_actions``  list of the actions valid now (empty for free-form envs such as Deep Search)
``action_valid``   whether the last action was understood (``True`` on reset)
``won``            whether the task is solved
``score``          the task's own score so far (ALFWorld 0/1, WebShop reward, Deep Search EM)
================  ======================================================================================

In dense-reward mode (``reward_mode="dense"``, see :class:`TextEnv`) ``info`` on reset and on every step also has

================  ======================================================================================
``potential``      the shaping potential ``Φ`` of the state the env is now in (on the step that terminates the
                   episode: ``Φ(s_0)``, the terminal convention); ``reward = sparse reward + Φ_new − Φ_old``
================  ======================================================================================

and nothing else changes: the sparse default has exactly the benchmark's rewards and info keys.

An action is a ``str``. Invalid actions never raise: the env answers with feedback text, ``action_valid=False``,
and leaves its state unchanged (the step still counts towards the step limit, as in the original benchmarks).
Anything that is not a ``str`` (``bytes`` included: decode it first) and any string longer than
:data:`MAX_ACTION_CHARS` is such an invalid action; a family shapes the feedback for it as for its own invalid
actions (:meth:`TextEnv._invalid_action`).
"""

from __future__ import annotations

import abc
import ctypes
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.spaces import Text
from gymnasium.vector.utils import create_shared_memory, read_from_shared_memory, write_to_shared_memory

from empg_gym.errors import ConfigError, EmpgGymError, did_you_mean
from empg_gym.tasks import SPLITS, Task, TaskManifest, check_split

#: Longest observation any env emits; longer text is cut (never reached by the built-in tasks).
MAX_OBSERVATION_CHARS = 1 << 17
#: Actions longer than this are refused as invalid without being parsed.
MAX_ACTION_CHARS = 1 << 20
#: Reward modes every empg-gym env accepts: the benchmark's own (sparse) reward, or it plus potential-based shaping.
REWARD_MODES = ("sparse", "dense")
#: Characters :meth:`TextSpace.sample` draws from: printable ASCII plus some non-ASCII letters and symbols.
SAMPLE_CHARSET = "".join(chr(c) for c in range(32, 127)) + "àéîõüßçñøåæœ€£¥©°±µ¶«»—–‘’“”•…αβγδλπΣΩЖжшЯ中文字日本語한국어🙂"


class TextSpace(Text):
    r"""A :class:`gymnasium.spaces.Text` that contains *every* string up to ``max_length`` characters.

    Gymnasium's ``Text`` only contains strings over its charset (letters and digits by default); the text an env
    produces (punctuation, newlines, unicode product names) must be in its observation space. ``sample`` draws
    short strings from :data:`SAMPLE_CHARSET`.

    Example:
        >>> space = TextSpace(max_length=100)
        >>> "You arrive at drawer 1. Ünïcode, <b>tags</b> & newlines\\n" in space
        True
        >>> 42 in space
        False
    """

    def __init__(self, max_length: int = MAX_OBSERVATION_CHARS, *, sample_max_length: int = 64, seed: Any = None):
        super().__init__(max_length=max_length, min_length=0, charset=SAMPLE_CHARSET, seed=seed)
        self.sample_max_length = min(sample_max_length, max_length)

    def contains(self, x: Any) -> bool:
        """Return whether ``x`` is a string of at most ``max_length`` characters."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """Return a random string of up to ``sample_max_length`` characters (or as ``mask`` asks)."""
        if mask is None and probability is None:
            length = int(self.np_random.integers(self.min_length, self.sample_max_length + 1))
            mask = (length, None)
        return super().sample(mask=mask, probability=probability)

    def __repr__(self) -> str:
        return f"TextSpace(max_length={self.max_length})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TextSpace) and other.max_length == self.max_length


# Async vector envs pass observations through shared memory. Gymnasium stores Text as charset indices, which loses
# every character outside the charset; a TextSpace is stored as UTF-8 bytes after a 4-byte length instead.
def _slot_bytes(space: TextSpace) -> int:
    return 4 + 4 * space.max_length


@create_shared_memory.register(TextSpace)
def _create_textspace_shared_memory(space: TextSpace, n: int = 1, ctx: Any = None) -> Any:
    import multiprocessing as mp

    return (ctx or mp).Array(ctypes.c_uint8, n * _slot_bytes(space))


@write_to_shared_memory.register(TextSpace)
def _write_textspace_shared_memory(space: TextSpace, index: int, value: str, shared_memory: Any) -> None:
    size = _slot_bytes(space)
    data = value.encode("utf-8")[: size - 4]
    buf = np.frombuffer(shared_memory.get_obj(), dtype=np.uint8)
    start = index * size
    buf[start : start + 4] = np.frombuffer(len(data).to_bytes(4, "little"), dtype=np.uint8)
    buf[start + 4 : start + 4 + len(data)] = np.frombuffer(data, dtype=np.uint8)


class SharedTextBatch(Sequence[str]):
    """A live, read-only view of the strings in a shared-memory buffer (one slot per sub-env).

    Gymnasium's ``AsyncVectorEnv`` reads its shared observation buffer once and expects a view that follows later
    writes, as a numpy array does; this is that view for text. Copying it (``AsyncVectorEnv(copy=True)``, the
    default) gives a plain tuple of the current strings.
    """

    def __init__(self, space: TextSpace, shared_memory: Any, n: int) -> None:
        self._buf = np.frombuffer(shared_memory.get_obj(), dtype=np.uint8)
        self._size, self._n = _slot_bytes(space), n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(self._n)))
        if not -self._n <= i < self._n:
            raise IndexError(i)
        start = (i % self._n) * self._size
        length = int.from_bytes(self._buf[start : start + 4].tobytes(), "little")
        return self._buf[start + 4 : start + 4 + length].tobytes().decode("utf-8", errors="replace")

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[str, ...]:
        return tuple(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return repr(tuple(self))


@read_from_shared_memory.register(TextSpace)
def _read_textspace_shared_memory(space: TextSpace, shared_memory: Any, n: int = 1) -> SharedTextBatch:
    return SharedTextBatch(space, shared_memory, n)


@dataclass
class StepResult:
    """What a family's :meth:`TextEnv._step` returns.

    Attributes:
        observation: Text shown to the agent.
        reward: The task's own reward for this step.
        terminated: The task ended (won, bought, answered, or lost for good).
        valid: Whether the action was understood; when ``False`` the state must be unchanged.
        extra_info: Family-specific info keys added to the standard ones.
    """

    observation: str
    reward: float = 0.0
    terminated: bool = False
    valid: bool = True
    extra_info: dict[str, Any] = field(default_factory=dict)


class EpisodeOverError(EmpgGymError, RuntimeError):
    """``step`` was called after the episode terminated; call ``reset`` first."""


class TextEnv(gym.Env[str, str], abc.ABC):
    """Base class of every empg-gym env: task choice, info keys, and invalid-action handling.

    A family implements :meth:`_load_manifest`, :meth:`_start_task`, :meth:`_step`, :meth:`admissible_actions`,
    :meth:`_won`, :meth:`_score` and (if it can) :meth:`oracle_actions`; it may override :meth:`_invalid_action` so
    that a non-string or over-long action gets the same kind of feedback as its own invalid actions. Randomness
    comes only from ``self.np_random`` (seeded by ``reset(seed=...)``).

    Dense rewards: with ``reward_mode="dense"`` every step's reward is potential-based shaping (Ng, Harada & Russell
    1999, "Policy invariance under reward transformations") on top of the task's own reward, with ``γ = 1``::

        r_t = r_t^sparse + Φ(s_{t+1}) − Φ(s_t),   Φ(terminal) := Φ(s_0)

    where ``Φ`` is the family's :meth:`_potential` (progress towards the goal, in ``[0, 1)`` on every state that
    does not end the episode). The shaping terms telescope: an episode's dense rewards sum to its sparse reward plus
    ``Φ(s_T) − Φ(s_0)``, and because a terminal state's potential is the start state's, an episode that *ends*
    (won, bought, answered) sums to exactly its sparse reward; a truncated one keeps ``Φ(s_T) − Φ(s_0)``, the
    progress it made. Every built-in ``Φ`` is below 1 before the end (and 0 at the start, unless an ALFWorld game
    starts with part of its goal done), so the winning step's dense reward ``1 − Φ(s_{T-1})`` is positive. An invalid action changes no state, so its shaping term is 0.
    ``reward_mode`` is a constructor argument (``gym.make(id, reward_mode="dense")``), not a reset option: the
    reward's definition belongs to the env, like its split, so envs built alike (a vector env, a training group)
    always report rewards on one scale.

    Args:
        split: The split that ``reset`` draws tasks from unless ``options["task_id"]`` pins one.
        render_mode: ``"ansi"`` (``render()`` returns the last observation) or ``"human"`` (writes it to stdout).
        reward_mode: ``"sparse"`` (default: the task's own reward, as the real benchmark gives it) or ``"dense"``
            (plus the shaping above; the family must implement :meth:`_potential`).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human"], "render_fps": 4}
    #: Short family name reported by ``empg-gym list``.
    family: ClassVar[str] = "text"
    #: Options ``reset`` understands.
    reset_options: ClassVar[tuple[str, ...]] = ("task_id", "split")

    def __init__(self, *, split: str = "train", render_mode: str | None = None, reward_mode: str = "sparse") -> None:
        self.split = check_split(split)
        self.reward_mode = check_reward_mode(reward_mode)
        if self.reward_mode == "dense" and type(self)._potential is TextEnv._potential:
            raise ConfigError(
                f"{type(self).__name__} defines no potential, so reward_mode='dense' has nothing to shape with; "
                "implement _potential() (docs/custom_env.md) or use reward_mode='sparse'."
            )
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ConfigError(
                f"Unknown render_mode {render_mode!r}; choose one of {self.metadata['render_modes']} or None."
            )
        self.render_mode = render_mode
        self.observation_space = TextSpace(MAX_OBSERVATION_CHARS)
        self.action_space = TextSpace(MAX_ACTION_CHARS)
        self._manifest: TaskManifest | None = None
        self._task: Task | None = None
        self._task_split: str = self.split
        self._last_obs: str = ""
        self._done = False
        self._phi_start = self._phi = 0.0

    # ----------------------------------------------------------------------------------------- family hooks
    @abc.abstractmethod
    def _load_manifest(self) -> TaskManifest:
        """Return the task manifest (called once, lazily)."""

    @abc.abstractmethod
    def _start_task(self, task: Task) -> str:
        """Set the env up for ``task`` and return the first observation."""

    @abc.abstractmethod
    def _step(self, action: str) -> StepResult:
        """Apply ``action`` (a string within the length limit) and report what happened."""

    @abc.abstractmethod
    def admissible_actions(self) -> list[str]:
        """Return the actions valid in the current state (empty for free-form envs)."""

    @abc.abstractmethod
    def _won(self) -> bool:
        """Return whether the current task is solved."""

    def _invalid_action(self, reason: str) -> StepResult:
        """Return the step result for an action refused before :meth:`_step` (not a ``str``, or too long).

        ``reason`` says what was wrong (e.g. ``expected a string, got bytes ...``). The default answers
        ``Invalid action: <reason>.``; a family overrides this to give the feedback its own invalid actions get.
        The state must stay unchanged.
        """
        return StepResult(f"Invalid action: {reason}.", valid=False)

    def _potential(self) -> float:
        """Return the shaping potential ``Φ`` of the current state (only called with ``reward_mode="dense"``).

        A deterministic function of the state (and task), ideally 0 at the start and in ``[0, 1)`` on every state
        that does not end the episode; :class:`TextEnv` handles the terminal convention and invalid actions. A family
        without one cannot be built with ``reward_mode="dense"``.
        """
        raise NotImplementedError(f"{type(self).__name__} has no potential.")

    def _score(self) -> float:
        """Return the task's score so far (default: 1.0 if won else 0.0)."""
        return 1.0 if self._won() else 0.0

    def _source(self) -> str:
        """Return where the current task comes from (default: the manifest's source)."""
        return self.manifest.source

    def oracle_actions(self) -> list[str]:
        """Return actions that solve the current task from the current state.

        Raises:
            NotImplementedError: for families without an oracle.
        """
        raise NotImplementedError(f"{type(self).__name__} has no oracle.")

    # ------------------------------------------------------------------------------------------- public API
    @property
    def manifest(self) -> TaskManifest:
        """The env's task manifest (loaded on first use)."""
        if self._manifest is None:
            self._manifest = self._load_manifest()
        return self._manifest

    def task_ids(self, split: str | None = None) -> list[str]:
        """Return the task ids of ``split`` (default: the env's split) in evaluation order.

        Evaluate a whole split with ``for tid in env.unwrapped.task_ids("eval_in_distribution"):
        env.reset(options={"task_id": tid}) ...``.
        """
        return self.manifest.task_ids(split or self.split)

    @property
    def current_task(self) -> Task | None:
        """The task of the current episode (``None`` before the first reset)."""
        return self._task

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        """Start an episode.

        Args:
            seed: Seeds ``self.np_random``; the same seed and options give the same episode in any process.
            options: ``{"task_id": id}`` pins a task (from any split); ``{"split": name}`` draws from another split.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = sorted(set(options) - set(self.reset_options))
        if unknown:
            raise ConfigError(
                f"Unknown reset option(s) {unknown}; {type(self).__name__} understands {list(self.reset_options)}."
                + did_you_mean(unknown[0], self.reset_options)
            )
        if options.get("task_id") is not None:
            task_id = str(options["task_id"])
            task = self.manifest.get(task_id)
            self._task_split = self.manifest.split_of(task_id)
        else:
            split = check_split(options.get("split") or self.split)
            tasks = self.manifest.tasks(split)
            if not tasks:
                sizes = self.manifest.sizes()
                raise ConfigError(
                    f"Split {split!r} of {self.manifest.name} v{self.manifest.version} is empty (sizes: {sizes}); "
                    f"choose another split."
                )
            task = tasks[int(self.np_random.integers(len(tasks)))]
            self._task_split = split
        self._task = task
        self._done = False
        obs = self._clip(self._start_task(task))
        self._last_obs = obs
        info = self._info(valid=True)
        if self.reward_mode == "dense":
            self._phi_start = self._phi = float(self._potential())
            info["potential"] = self._phi
        return obs, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply one text action; an action the env cannot use gives feedback and ``info["action_valid"]=False``.

        ``action`` must be a ``str``: anything else (``bytes`` included) is answered as an invalid action, never
        raised, and changes nothing.
        """
        if self._task is None:
            raise gym.error.ResetNeeded("Call reset() before step().")
        if self._done:
            raise EpisodeOverError("The episode has terminated; call reset() to start a new one.")
        if not isinstance(action, str):
            result = self._invalid_action(_not_a_string(action))
        elif len(action) > MAX_ACTION_CHARS:
            result = self._invalid_action(f"the action has {len(action)} characters, longer than the limit of {MAX_ACTION_CHARS}")
        else:
            result = self._step(action)
        obs = self._clip(result.observation)
        self._last_obs = obs
        self._done = bool(result.terminated)
        info = self._info(valid=result.valid)
        info.update(result.extra_info)
        reward = float(result.reward)
        if self.reward_mode == "dense":
            reward += self._shaping(result)
            info["potential"] = self._phi
        if self.render_mode == "human":
            self.render()
        return obs, reward, bool(result.terminated), False, info

    def render(self) -> str | None:
        """Return (``ansi``) or print (``human``) the last observation."""
        if self.render_mode == "ansi":
            return self._last_obs
        if self.render_mode == "human":
            import sys

            sys.stdout.write(self._last_obs + "\n")
        return None

    # ------------------------------------------------------------------------------------------- internals
    def _shaping(self, result: StepResult) -> float:
        """Return ``Φ(s_{t+1}) − Φ(s_t)`` for the step just taken and remember ``Φ(s_{t+1})``.

        A terminating step's new potential is ``Φ(s_0)`` (so an ended episode's rewards sum to its sparse reward);
        an invalid action leaves the state, hence the potential, unchanged.
        """
        if result.terminated:
            phi = self._phi_start
        elif result.valid:
            phi = float(self._potential())
        else:
            phi = self._phi
        delta, self._phi = phi - self._phi, phi
        return delta

    @staticmethod
    def _clip(obs: str) -> str:
        return obs if len(obs) <= MAX_OBSERVATION_CHARS else obs[: MAX_OBSERVATION_CHARS - 3] + "..."

    def _info(self, *, valid: bool) -> dict[str, Any]:
        assert self._task is not None
        return {
            "task_id": self._task.task_id,
            "task": self._task.goal,
            "task_type": self._task.task_type,
            "split": self._task_split,
            "source": self._source(),
            "admissible_actions": list(self.admissible_actions()),
            "action_valid": bool(valid),
            "won": bool(self._won()),
            "score": float(self._score()),
        }


def _not_a_string(action: object) -> str:
    """Return the reason a non-``str`` action is refused, with the fix where there is an obvious one."""
    kind = type(action).__name__
    if isinstance(action, (bytes, bytearray)):
        return f"expected a string, got {kind}; decode it first, e.g. action.decode('utf-8')"
    return f"expected a string, got {kind}"


def check_reward_mode(reward_mode: object) -> str:
    """Return ``reward_mode`` if it is one of :data:`REWARD_MODES`, else raise a :class:`ConfigError` saying which.

    Example:
        >>> check_reward_mode("dense")
        'dense'
    """
    if not isinstance(reward_mode, str) or reward_mode not in REWARD_MODES:
        hint = did_you_mean(reward_mode, REWARD_MODES) if isinstance(reward_mode, str) else ""
        raise ConfigError(
            f"Unknown reward_mode {reward_mode!r}; choose 'sparse' (the benchmark's own reward, the default) or "
            f"'dense' (plus potential-based shaping, docs/dense_rewards.md).{hint}"
        )
    return reward_mode


def split_sizes(env: gym.Env[Any, Any]) -> dict[str, int]:
    """Return ``{split: number of tasks}`` for an empg-gym env (wrapped or not)."""
    unwrapped = env.unwrapped
    if not isinstance(unwrapped, TextEnv):
        raise ConfigError(f"{type(unwrapped).__name__} is not an empg-gym TextEnv.")
    return unwrapped.manifest.sizes()


__all__: Sequence[str] = [
    "MAX_ACTION_CHARS",
    "MAX_OBSERVATION_CHARS",
    "REWARD_MODES",
    "SPLITS",
    "EpisodeOverError",
    "StepResult",
    "TextEnv",
    "TextSpace",
    "check_reward_mode",
    "split_sizes",
]
