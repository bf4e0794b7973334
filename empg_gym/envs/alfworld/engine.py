"""The ALFWorld engine: TextWorld's PDDL environment (fast-downward) behind alfworld's own wrappers.

The game logic is not reimplemented: a :class:`AlfworldEngine` is exactly what ``textworld.start(game_file,
wrappers=[AlfredDemangler(), AlfredInfos])`` builds, so observations, admissible commands, feedback and wins are
alfworld's. What is added:

- a **compiled-game cache**: fast-downward's PDDL -> SAS translation (about three quarters of a reset) is
  memoised per game, in memory (an LRU of :data:`TRANSLATIONS_IN_MEMORY` translations, two per game, 35-60 kB
  each compressed: at most ~4 MB) and on disk, so resetting a game that this process, or an earlier one, has
  seen skips it;
- **memoised parsing**: textworld re-parses the same grammar templates for every admissible command on every
  step; caching those pure parses makes steps about 3x faster with identical text;
- **bounded memory across games**: textworld interns every ``Proposition`` and ``Signature`` it builds in a
  process-wide dict (``mementos._memento_cache``) that is never emptied. Each new game adds 600-1,000 facts
  naming its own objects, so a process that plays many games grew by 1-1.5 MB per new game (issue #15:
  119 -> 264 MB over 146 resets). Inside the engine that dict is replaced by one bounded to :data:`MAX_INTERNED_FACTS`
  entries (the oldest half is dropped when it is full; textworld compares facts by value, so a dropped entry
  only means a fresh, equal object later). ``benchmarks/alfworld_memory.py`` prints RSS over 100 / 1,000
  distinct games;
- **one engine per env**: each engine owns its own copy of fast-downward's library (the library keeps global
  state, so sharing an engine between batch slots gives spurious ``done``), and :meth:`AlfworldEngine.close`
  frees its planning task, which textworld never does;
- **trial runs**: :meth:`AlfworldEngine.try_commands` plays commands and then puts the game back where it was
  (restart and replay), which is how the oracle checks each plan before handing it out.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import itertools
import logging
import os
import pickle
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from empg_gym.errors import BackendError, ConfigError
from empg_gym.tasks import atomic_write_bytes, cache_dir

logger = logging.getLogger(__name__)

#: Bump when the layout of cached translations changes.
_CACHE_FORMAT = "1"
#: Translations the process-wide cache keeps in memory (two per game, 35-60 kB each compressed: ~4 MB at most);
#: older ones are read back from its disk folder.
TRANSLATIONS_IN_MEMORY = 64
#: Interned textworld facts kept while the engine runs (~1 kB of RSS each: ~17 MB at most). One game with a few
#: steps interns 600-1,000, so this holds the facts of the last 16-25 games.
MAX_INTERNED_FACTS = 16_384


class TranslationCache:
    """Memoises ``fast_downward.pddl2sas`` per (domain, problem, optimize): an LRU in memory over zlib'd pickles on disk.

    Args:
        max_items: Translations kept in memory, least recently used dropped first (two per game; each is 35-60 kB
            compressed on ALFWorld's games).
        directory: Where translations are stored across processes; ``None`` keeps them in memory only.
    """

    def __init__(self, max_items: int = TRANSLATIONS_IN_MEMORY, directory: str | os.PathLike[str] | None = None) -> None:
        self.max_items = max_items
        self.directory = Path(directory) if directory is not None else None
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(domain: str, problem: str, optimize: bool) -> str:
        """Return the cache key of a translation."""
        h = hashlib.sha256()
        for part in (_CACHE_FORMAT, str(bool(optimize)), domain, problem):
            h.update(part.encode("utf-8"))
            h.update(b"\0")
        return h.hexdigest()

    def translate(self, original: Any, domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        """Return ``original(domain, problem, ...)``, from the cache when it holds the result."""
        key = self.key(domain, problem, optimize)
        blob = self._get(key)
        if blob is not None:
            self.hits += 1
            return pickle.loads(zlib.decompress(blob))
        self.misses += 1
        result = original(domain, problem, verbose=verbose, optimize=optimize)
        self._put(key, zlib.compress(pickle.dumps(result, protocol=pickle.HIGHEST_PROTOCOL), 1))
        return result

    def _path(self, key: str) -> Path | None:
        return None if self.directory is None else self.directory / key[:2] / f"{key}.pkl.z"

    def _get(self, key: str) -> bytes | None:
        with self._lock:
            blob = self._items.get(key)
            if blob is not None:
                self._items.move_to_end(key)
                return blob
        path = self._path(key)
        if path is not None and path.is_file():
            blob = path.read_bytes()
            self._remember(key, blob)
            return blob
        return None

    def _put(self, key: str, blob: bytes) -> None:
        self._remember(key, blob)
        path = self._path(key)
        if path is not None:
            atomic_write_bytes(path, blob)

    def _remember(self, key: str, blob: bytes) -> None:
        with self._lock:
            self._items[key] = blob
            self._items.move_to_end(key)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)


_DEFAULT_CACHE: TranslationCache | None = None


def default_translation_cache() -> TranslationCache:
    """Return the process-wide translation cache (on disk under the empg-gym cache folder)."""
    global _DEFAULT_CACHE
    if _DEFAULT_CACHE is None:
        _DEFAULT_CACHE = TranslationCache(directory=cache_dir("alfworld", f"translations-v{_CACHE_FORMAT}"))
    return _DEFAULT_CACHE


class _FastDownwardWithCache:
    """Stands in for the ``fast_downward`` module inside textworld's PDDL logic while a cached call runs."""

    def __init__(self, module: Any, cache: TranslationCache) -> None:
        self._module, self._cache = module, cache

    def pddl2sas(self, domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
        return self._cache.translate(self._module.pddl2sas, domain, problem, verbose=verbose, optimize=optimize)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


class _ParseMemo:
    """Memoises the two pure text parsers textworld's grammar runs for every admissible command on every step.

    ``textgen._parse_and_convert`` (a tatsu parse of a template string) and ``Rule.parse_conjunctive_query`` (a
    parse of a rule condition) depend on their text alone; caching them makes steps about 3x faster with
    byte-identical output (``tests/alfworld/test_real_games.py`` compares against the unpatched engine).
    Parsed templates are handed out as deep copies because the grammar mutates them.
    """

    max_items = 50_000

    def __init__(self) -> None:
        self._templates: dict[tuple[str, str | None], Any] = {}
        self._queries: dict[str, Any] = {}

    def parse_and_convert(self, original: Any, text: str, rule_name: str | None = None, **_: Any) -> Any:
        key = (text, rule_name)
        parsed = self._templates.get(key)
        if parsed is None:
            if len(self._templates) >= self.max_items:
                self._templates.clear()
            parsed = self._templates[key] = original(text, rule_name=rule_name)
        return copy.deepcopy(parsed)

    def parse_query(self, original: Any, text: str) -> Any:
        parsed = self._queries.get(text)
        if parsed is None:
            if len(self._queries) >= self.max_items:
                self._queries.clear()
            parsed = self._queries[text] = original(text)
        return parsed


class BoundedInternTable(dict):  # type: ignore[type-arg]
    """A dict that drops its oldest half when it reaches ``max_items``: stands in for ``mementos._memento_cache``.

    ``mementos`` (textworld's interning of ``Proposition`` and ``Signature``) looks instances up by key and
    stores new ones with ``cache[key] = instance``; nothing else reads the dict, so bounding it changes memory,
    not behaviour.

    Example:
        >>> table = BoundedInternTable(max_items=4)
        >>> for i in range(5):
        ...     table[i] = str(i)
        >>> sorted(table)
        [2, 3, 4]
    """

    def __init__(self, max_items: int) -> None:
        super().__init__()
        if max_items < 2:
            raise ConfigError(f"max_items must be at least 2, got {max_items}; pass the number of facts to keep.")
        self.max_items = max_items

    def __setitem__(self, key: Any, value: Any) -> None:
        if key not in self and len(self) >= self.max_items:
            for old in list(itertools.islice(iter(self), len(self) // 2)):
                del self[old]
        super().__setitem__(key, value)


_PARSE_MEMO = _ParseMemo()
_INTERNED = BoundedInternTable(MAX_INTERNED_FACTS)
_PATCH_LOCK = threading.RLock()


@contextlib.contextmanager
def _fast_engine(cache: TranslationCache | None, memoise_parsing: bool) -> Iterator[None]:
    """Route textworld's PDDL translations through ``cache``, memoise its parsers and bound its interned facts.

    The patches are scoped to the block (and serialised by a lock), so other textworld users in the process see
    the library unchanged.
    """
    import mementos.core
    from textworld.envs.pddl import logic as pddl_logic
    from textworld.envs.pddl import textgen
    from textworld.logic import Rule

    with _PATCH_LOCK:
        saved = (pddl_logic.fast_downward, textgen._parse_and_convert, Rule.__dict__["parse_conjunctive_query"])
        saved_interned = mementos.core._memento_cache
        mementos.core._memento_cache = _INTERNED
        try:
            if cache is not None:
                pddl_logic.fast_downward = _FastDownwardWithCache(saved[0], cache)
            if memoise_parsing:
                original_parse, original_query = saved[1], saved[2].__func__
                textgen._parse_and_convert = functools.partial(_PARSE_MEMO.parse_and_convert, original_parse)
                Rule.parse_conjunctive_query = classmethod(
                    lambda cls, text: _PARSE_MEMO.parse_query(functools.partial(original_query, cls), text)
                )
            yield
        finally:
            pddl_logic.fast_downward, textgen._parse_and_convert = saved[0], saved[1]
            Rule.parse_conjunctive_query = saved[2]
            mementos.core._memento_cache = saved_interned


class AlfworldEngine:
    """One ALFWorld game engine: load a ``game.tw-pddl`` file, reset, step.

    Args:
        translation_cache: Where compiled games are memoised; ``None`` translates every time (as raw textworld).
        memoise_parsing: Cache textworld's template parses (see :class:`_ParseMemo`); ``False`` runs it unchanged.

    Example:
        >>> engine = AlfworldEngine()                                          # doctest: +SKIP
        >>> engine.load("json_2.1.1/valid_seen/.../game.tw-pddl")           # doctest: +SKIP
        >>> engine.reset()["feedback"].startswith("-= Welcome to TextWorld, ALFRED! =-")  # doctest: +SKIP
        True
    """

    def __init__(self, translation_cache: TranslationCache | None = None, memoise_parsing: bool = True) -> None:
        try:
            import textworld
            from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
            from textworld.envs.pddl import PddlEnv
        except ImportError as e:  # pragma: no cover - exercised only without the extra
            raise BackendError(
                f"The ALFWorld env needs alfworld and textworld[pddl] ({e}); install them with "
                "`pip install 'empg-gym[alfworld]'` (building fast-downward needs cmake and g++)."
            ) from e
        self._cache = translation_cache
        self._memoise = memoise_parsing
        infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
        base = PddlEnv(infos)
        self._env = AlfredInfos(AlfredDemangler(base))
        self._base = base
        self._game_key: str | None = None
        # (command, id of the fast-downward operator it applied) for each admissible command since the reset.
        self._history: list[tuple[str, int]] = []
        self.state: Mapping[str, Any] | None = None

    def load(self, game: str | os.PathLike[str] | Mapping[str, Any], key: str | None = None) -> None:
        """Load a game from a ``game.tw-pddl`` path or its parsed JSON (``key`` names it for reuse checks)."""
        source = os.fspath(game) if isinstance(game, (str, os.PathLike)) else dict(game)
        with _fast_engine(self._cache, self._memoise):
            self._env.load(source)
        self._game_key = key or (source if isinstance(source, str) else None)
        self._history = []
        self.state = None

    @property
    def game_key(self) -> str | None:
        """The key of the loaded game (its path unless given), or ``None``."""
        return self._game_key

    def reset(self) -> Mapping[str, Any]:
        """Restart the loaded game; return textworld's game state (``feedback``, ``admissible_commands``, ``won``)."""
        with _fast_engine(self._cache, self._memoise):
            self.state = self._env.reset()
        self._history = []
        return self.state

    def step(self, command: str) -> tuple[Mapping[str, Any], float, bool]:
        """Apply ``command``; commands that are not admissible answer ``Nothing happens.`` and change nothing."""
        command = command.strip()
        operator = self._operator_of(command)
        with _fast_engine(None, self._memoise):
            self.state, reward, done = self._env.step(command)
        if operator is not None:
            self._history.append((command, operator))
        return self.state, reward, done

    def _operator_of(self, command: str) -> int | None:
        """Return the id of the operator textworld applies for ``command`` now (its first match), or ``None``."""
        if self.state is None:
            return None
        commands = self.state["_valid_commands"]
        return self.state["_valid_actions"][commands.index(command)].id if command in commands else None

    @property
    def history(self) -> list[str]:
        """The admissible commands applied since the last reset, in order (replaying them rebuilds the state)."""
        return [command for command, _ in self._history]

    @property
    def walkthrough(self) -> list[str] | None:
        """The loaded game file's own expert action list, if it has one."""
        wt = getattr(self._base, "walkthrough", None)
        return list(wt) if wt else None

    @property
    def pddl_problem(self) -> str:
        """The loaded game's PDDL problem (objects, initial facts, goal)."""
        return str(self._base._game_data["pddl_problem"])

    def facts(self) -> list[tuple[str, tuple[str, ...]]]:
        """Return the current PDDL facts as ``(predicate, argument ids)``, lower-case as fast-downward reads them.

        Static facts (``receptacleatlocation``, ``objecttype``, ``cancontain`` ...) are included.
        """
        return [(f.name, tuple(v.name for v in f.arguments)) for f in self._base._pddl_state.facts]

    def entity_names(self) -> dict[str, str]:
        """Return the name commands use for each PDDL id (``apple_bar__minus_00_dot_48...`` -> ``apple 1``)."""
        return {key: info.name for key, info in self._base._entity_infos.items()}

    def try_commands(self, commands: Sequence[str]) -> tuple[int | None, str]:
        """Play ``commands`` from the current state, then put the game back exactly where it was.

        Returns:
            ``(n, "")`` when the game is won after the first ``n`` commands (the rest are not played), else
            ``(None, why)`` naming the first command that was not admissible or saying that none won.
        """
        if self.state is None:
            raise BackendError("try_commands() needs a started game: call load() and reset() first.")
        saved = list(self._history)
        facts = sorted(self.facts())
        try:
            for i, command in enumerate(commands):
                if command not in self.state["admissible_commands"]:
                    return None, f"{command!r} (step {i + 1} of the plan) is not admissible there"
                state, _, _ = self.step(command)
                if state["won"]:
                    return i + 1, ""
            return None, f"its {len(commands)} commands end without winning"
        finally:
            if self._history != saved:
                self._restore(saved, facts)

    def _restore(self, history: Sequence[tuple[str, int]], facts: list[tuple[str, tuple[str, ...]]]) -> None:
        """Restart the game and replay ``history``, then check that the facts are ``facts`` again.

        All but the last command are applied as fast-downward operators, without the text textworld writes for
        every admissible command (about 2 ms instead of 10-25 ms a step); the last is a normal step, so the
        state's feedback and admissible commands are textworld's own. Should the facts differ, the whole history
        is replayed as normal steps.
        """
        self.reset()
        if history:
            try:
                base, fast = self._base, list(history[:-1])
                with _fast_engine(None, self._memoise):
                    for _, operator in fast:
                        applicable = {a.id: a for a in base._pddl_state.all_applicable_actions()}
                        base._pddl_state.apply(applicable[operator])
                    base._moves += len(fast)
                    if fast:
                        base._gather_infos()
                self._history = fast
                self.step(history[-1][0])
            except (KeyError, ValueError):  # pragma: no cover - an operator id no longer applies
                self._history = []
        if self._history == list(history) and sorted(self.facts()) == facts:
            return
        self.reset()  # pragma: no cover - only if the fast replay and textworld disagree
        for command, _ in history:
            self.step(command)
        if self._history != list(history) or sorted(self.facts()) != facts:
            raise BackendError(
                f"Replaying the {len(history)} commands of this episode did not rebuild its state; reset the env "
                "before using it again."
            )

    def close(self) -> None:
        """Free the planning task held by this engine's copy of fast-downward's library.

        The library itself stays mapped: unloading it (``fast_downward.close_lib``) crashes the interpreter at
        exit while textworld objects still point into it.
        """
        lib = getattr(self._base, "downward_lib", None)
        if lib is not None:
            lib.cleanup()
            self._base.downward_lib = None
