"""Wrappers that make any empg-gym text env usable by stable-baselines3 (and other array-based RL libraries).

SB3 cannot consume text spaces. Two small wrappers turn a text env into an array env:

- :class:`DiscreteActions`: ``Discrete(max_actions)`` over the actions valid *now* (the env's admissible list, or
  candidates built from the text for free-form envs such as Deep Search). An index past the current list is a
  no-op: the env receives a text it cannot use, answers with its invalid-action feedback, ``action_valid=False``,
  and its state stays unchanged (the step still counts, as every invalid action does). ``action_masks()`` returns
  the valid indices for maskable algorithms (sb3-contrib's ``MaskablePPO``).
- :class:`HashedBagOfWords`: a fixed-size ``Box`` observation: hashed bag of words (unigrams and bigrams) of the
  observation text and of the goal, plus one small hashed block per action slot so the policy can tell the slots
  apart. Hashing is deterministic across processes (CRC32, not Python's salted ``hash``), needs no model and no
  download.

:func:`make_sb3_env` stacks both on ``gym.make(id)``. Wrap before SB3 wraps the env in its own ``Monitor``.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec

from empg_gym.errors import ConfigError

logger = logging.getLogger(__name__)

#: A candidate builder: ``(observations of this episode so far, latest info) -> actions``.
CandidateFn = Callable[[Sequence[str], dict[str, Any]], list[str]]

_PLACEHOLDER = re.compile(r"<[^<>]*>")
_TITLE = re.compile(r'Doc \d+\(Title: "?(.*?)"?\)')
_ENTITY = re.compile(r"\b[A-Z][\w'-]+(?: (?:(?:of|the|de|and) )*[A-Z][\w'-]+)*|\b\d{3,4}\b")
_STOP_ENTITIES = frozenset(
    "Doc Title Answer Question Reason To You When The It A An In On Of Who What Which Where Whose How Why".split()
)
_BUDGET = re.compile(r"You may search up to (\d+) times")
_TOKEN = re.compile(r"[a-z0-9]+")


def default_candidates(observations: Sequence[str], info: dict[str, Any]) -> list[str]:
    """Return the actions a discrete policy may choose from now.

    The env's ``admissible_actions`` when it has any, with templates such as WebShop's ``search[<your query>]``
    filled with the goal text. For free-form Search-R1 envs (no admissible list): search the goal, each name in
    it and each passage title seen this episode; answer with each title or capitalised name/year seen this
    episode; then search those names. Searches are left out once ``info["searches_used"]`` reaches the budget
    the first observation states.

    Example:
        >>> default_candidates(["You see a key."], {"admissible_actions": ["go east", "take key"], "task": "t"})
        ['go east', 'take key']
        >>> default_candidates(["..."], {"admissible_actions": ["search[<your query>]"], "task": "red shoes"})
        ['search[red shoes]']
        >>> obs = 'Doc 1(Title: "Blue Lake") Blue Lake was painted by Ada Lind in 1901.'
        >>> default_candidates(["Question: ...", obs], {"admissible_actions": [], "task": "Who painted Blue Lake?"})
        ['<search> Who painted Blue Lake? </search>', '<search> Blue Lake </search>', '<answer> Blue Lake </answer>', \
'<answer> Ada Lind </answer>', '<answer> 1901 </answer>', '<search> Ada Lind </search>', '<search> 1901 </search>']
    """
    goal = str(info.get("task", ""))
    admissible = list(info.get("admissible_actions") or [])
    if admissible:
        return _dedupe(_PLACEHOLDER.sub(lambda _: goal, a) if "<" in a else a for a in admissible)
    titles = [t for obs in observations for t in _TITLE.findall(obs)]
    entities = [e for obs in observations[1:] for e in _ENTITY.findall(_TITLE.sub(" ", obs))]
    asked = [e for e in _ENTITY.findall(goal) if e not in _STOP_ENTITIES]
    answers = [e for e in _dedupe(titles + entities) if e not in _STOP_ENTITIES]
    searches = [f"<search> {q} </search>" for q in _dedupe([goal, *asked, *titles]) if q]
    later = [f"<search> {q} </search>" for q in answers]
    budget = _BUDGET.search(observations[0]) if observations else None
    if budget and int(info.get("searches_used", 0)) >= int(budget.group(1)):
        searches, later = [], []
    return _dedupe(searches + [f"<answer> {a} </answer>" for a in answers] + later)


def _dedupe(items: Any) -> list[str]:
    return list(dict.fromkeys(items))


class DiscreteActions(gym.Wrapper[Any, np.int64, Any, str]):
    """``Discrete(max_actions)`` actions over the actions valid now; extra indices are no-ops with feedback.

    Each reset and step builds the current action list with ``candidates`` (default :func:`default_candidates`)
    and adds it to ``info`` as ``discrete_actions`` with a boolean ``action_mask``. Index ``i`` sends
    ``discrete_actions[i]`` to the env; an index at or past the list's length sends :attr:`NOOP_ACTION`, which
    no env understands, so the env gives its invalid-action feedback and leaves its state unchanged
    (``info["action_valid"] is False``, ``info["noop_index"]`` is the index). The list is empty once the episode
    has ended. Lists longer than ``max_actions`` are
    cut (logged once per env).

    Args:
        env: An empg-gym text env (``gym.make(...)``).
        max_actions: Size of the discrete action space (ALFWorld needs ~50, WebShop 12, KeyDoor 5).
        candidates: Builds the action list from the episode's observations and the latest info.

    Example:
        >>> import gymnasium as gym, empg_gym
        >>> env = DiscreteActions(gym.make("EMPG-KeyDoor-v0"), max_actions=6)
        >>> obs, info = env.reset(options={"task_id": "keydoor-2r-s1-k1"})
        >>> info["discrete_actions"], info["action_mask"].tolist()
        (['go east', 'look', 'take key'], [True, True, True, False, False, False])
        >>> env.step(2)[0]
        'You pick up the key. You are in room 1 of 2. The room is empty. You carry the key.'
        >>> obs, reward, terminated, truncated, info = env.step(5)
        >>> obs, info["action_valid"], info["noop_index"]
        ('Nothing happens.', False, 5)
    """

    #: The text sent for an index with no action behind it (no env accepts it).
    NOOP_ACTION = "(no-op: the chosen action index has no admissible action)"

    def __init__(self, env: gym.Env[Any, str], max_actions: int = 32, candidates: CandidateFn | None = None):
        if not isinstance(max_actions, (int, np.integer)) or isinstance(max_actions, bool) or max_actions < 1:
            raise ConfigError(f"max_actions must be a positive int, got {max_actions!r}; try 16-64.")
        super().__init__(env)
        self.max_actions = int(max_actions)
        self.action_space = spaces.Discrete(self.max_actions)
        self._candidates = candidates or default_candidates
        self._history: list[str] = []
        self._actions: list[str] = []
        self._warned = False

    @property
    def actions(self) -> list[str]:
        """The text behind each valid index now."""
        return list(self._actions)

    def action_masks(self) -> np.ndarray:
        """Return a ``(max_actions,)`` bool mask of the indices that map to an action (sb3-contrib convention)."""
        mask = np.zeros(self.max_actions, dtype=bool)
        mask[: len(self._actions)] = True
        return mask

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        """Reset the env and build the first action list."""
        obs, info = self.env.reset(seed=seed, options=options)
        self._history = [str(obs)]
        return obs, self._annotate(info)

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Send the text behind index ``action`` (or the no-op text) to the env."""
        index = _as_index(action)
        text = self._actions[index] if index is not None and 0 <= index < len(self._actions) else self.NOOP_ACTION
        obs, reward, terminated, truncated, info = self.env.step(text)
        self._history.append(str(obs))
        info = self._annotate(info, done=terminated or truncated)
        info["action_text"] = text
        if text is self.NOOP_ACTION:
            info["noop_index"] = action if index is None else index
        return obs, reward, terminated, truncated, info

    def _annotate(self, info: dict[str, Any], done: bool = False) -> dict[str, Any]:
        actions = [] if done else self._candidates(self._history, info)
        if len(actions) > self.max_actions and not self._warned:
            logger.warning("%d actions available but max_actions=%d; extra actions are dropped.", len(actions), self.max_actions)
            self._warned = True
        self._actions = list(actions[: self.max_actions])
        info = dict(info)
        info["discrete_actions"] = list(self._actions)
        info["action_mask"] = self.action_masks()
        return info


def _as_index(action: Any) -> int | None:
    """Return ``action`` as an int index, or ``None`` when it is not an integer scalar."""
    arr = np.asarray(action)
    if arr.size != 1 or not np.issubdtype(arr.dtype, np.integer):
        return None
    return int(arr.reshape(()))


def _bucket(token: str, dim: int) -> int:
    return zlib.crc32(token.encode("utf-8")) % dim


def hashed_bow(text: str, dim: int, prefix: str = "") -> np.ndarray:
    """Return the L2-normalised hashed counts of ``text``'s lowercase unigrams and bigrams, shape ``(dim,)``.

    Example:
        >>> v = hashed_bow("Go east!", 64)
        >>> v.shape, v.dtype.name, round(float((v ** 2).sum()), 6)
        ((64,), 'float32', 1.0)
        >>> bool((hashed_bow("go EAST", 64) == v).all())
        True
    """
    vec = np.zeros(dim, dtype=np.float32)
    tokens = _TOKEN.findall(text.lower())
    for tok in tokens:
        vec[_bucket(prefix + tok, dim)] += 1.0
    for a, b in zip(tokens, tokens[1:], strict=False):
        vec[_bucket(f"{prefix}{a} {b}", dim)] += 1.0
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


class HashedBagOfWords(gym.Wrapper[np.ndarray, Any, Any, Any]):
    """A ``Box(0, 1, (obs_dim + max_actions * (action_dim + 2),))`` observation built by hashing text.

    The observation text (``obs_dim // 2`` buckets) and the goal (``info["task"]``, the other ``obs_dim // 2``),
    each L2-normalised; then one block per action slot from ``info["discrete_actions"]`` (set by
    :class:`DiscreteActions`; else ``info["admissible_actions"]``): the action's own ``action_dim`` hashed buckets
    plus two overlap features, the share of its words found in the goal and in the observation (so that a policy
    can prefer ``go to countertop 1`` for a goal about a countertop without learning every word pair). Empty slots
    are zeros. The text itself stays available as ``info["text_obs"]``.

    Args:
        env: A text env, usually already wrapped in :class:`DiscreteActions`.
        obs_dim: Buckets for the observation and goal together (even, >= 2).
        action_dim: Buckets per action slot (0 leaves the action slots out entirely).
        max_actions: Action slots; default the wrapped env's ``Discrete`` size.

    Example:
        >>> import gymnasium as gym, empg_gym
        >>> env = HashedBagOfWords(DiscreteActions(gym.make("EMPG-KeyDoor-v0"), max_actions=5), obs_dim=64, action_dim=8)
        >>> obs, info = env.reset(options={"task_id": "keydoor-2r-s1-k1"})
        >>> obs.shape, obs.dtype.name, obs in env.observation_space
        ((114,), 'float32', True)
        >>> info["discrete_actions"], obs[64:].reshape(5, 10)[:, 8:].tolist()   # [goal overlap, obs overlap]
        (['go east', 'look', 'take key'], [[0.0, 0.0], [0.0, 0.0], [0.0, 0.5], [0.0, 0.0], [0.0, 0.0]])
        >>> info["text_obs"].startswith("You are in room 1")
        True
    """

    #: Overlap features per action slot (share of the action's words in the goal, in the observation).
    N_OVERLAP = 2

    def __init__(self, env: gym.Env[Any, Any], obs_dim: int = 256, action_dim: int = 16, max_actions: int | None = None):
        if not isinstance(obs_dim, int) or obs_dim < 2 or obs_dim % 2:
            raise ConfigError(f"obs_dim must be an even int >= 2, got {obs_dim!r}.")
        if not isinstance(action_dim, int) or action_dim < 0:
            raise ConfigError(f"action_dim must be an int >= 0, got {action_dim!r}.")
        if max_actions is None:
            if not isinstance(env.action_space, spaces.Discrete):
                raise ConfigError(
                    f"max_actions is needed when the env's action space is not Discrete (got {env.action_space}); "
                    f"wrap the env in DiscreteActions first or pass max_actions."
                )
            max_actions = int(env.action_space.n)
        super().__init__(env)
        self.obs_dim, self.action_dim, self.max_actions = obs_dim, action_dim, int(max_actions)
        self.slot_dim = action_dim + self.N_OVERLAP if action_dim else 0
        size = obs_dim + self.max_actions * self.slot_dim
        self.observation_space = spaces.Box(0.0, 1.0, shape=(size,), dtype=np.float32)

    def encode(self, text: str, info: dict[str, Any]) -> np.ndarray:
        """Return the feature vector of observation ``text`` with ``info``'s goal and actions."""
        half, goal = self.obs_dim // 2, str(info.get("task", ""))
        parts = [hashed_bow(text, half, "o:"), hashed_bow(goal, half, "g:")]
        if self.slot_dim:
            slots = np.zeros((self.max_actions, self.slot_dim), dtype=np.float32)
            goal_words, obs_words = set(_TOKEN.findall(goal.lower())), set(_TOKEN.findall(text.lower()))
            actions = info.get("discrete_actions", info.get("admissible_actions")) or []
            for i, act in enumerate(actions[: self.max_actions]):
                words = _TOKEN.findall(act.lower()) or [""]
                slots[i, : self.action_dim] = hashed_bow(act, self.action_dim, "a:")
                slots[i, self.action_dim] = sum(w in goal_words for w in words) / len(words)
                slots[i, self.action_dim + 1] = sum(w in obs_words for w in words) / len(words)
            parts.append(slots.reshape(-1))
        return np.concatenate(parts)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the env and encode its first observation."""
        obs, info = self.env.reset(seed=seed, options=options)
        info = {**info, "text_obs": obs}
        return self.encode(obs, info), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step the env and encode its observation."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        info = {**info, "text_obs": obs}
        return self.encode(obs, info), reward, terminated, truncated, info


def make_sb3_env(
    env_id: str | EnvSpec,
    *,
    max_actions: int = 32,
    obs_dim: int = 256,
    action_dim: int = 16,
    candidates: CandidateFn | None = None,
    **kwargs: Any,
) -> gym.Env[np.ndarray, np.int64]:
    """Return ``gym.make(env_id, **kwargs)`` wrapped in :class:`DiscreteActions` and :class:`HashedBagOfWords`.

    Example:
        >>> from stable_baselines3.common.env_checker import check_env
        >>> env = make_sb3_env("EMPG-KeyDoor-v0", max_actions=5, obs_dim=32, action_dim=8)
        >>> check_env(env)
        >>> env.action_space, env.observation_space.shape
        (Discrete(5), (82,))
    """
    env = gym.make(env_id, **kwargs)
    return HashedBagOfWords(DiscreteActions(env, max_actions, candidates), obs_dim=obs_dim, action_dim=action_dim)


__all__ = ["DiscreteActions", "HashedBagOfWords", "default_candidates", "hashed_bow", "make_sb3_env"]
