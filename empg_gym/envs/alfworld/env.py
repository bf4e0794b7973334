r"""EMPG-ALFWorld-v0: household tasks in ALFWorld's text engine.

## Description
The agent is in a room of an ALFRED household scene and must reach a goal such as "heat some apple and put it in
garbagecan." The game runs in alfworld's own engine (TextWorld's PDDL environment with fast-downward, alfworld
0.4.2): observations, admissible commands, feedback and wins are exactly alfworld's. Tasks come from the real
ALFWorld release when you have it (``data_path=`` or ``$ALFWORLD_DATA``), else from the embedded procedural set
generated from the ALFRED floor plans shipped in the alfworld wheel (nothing is downloaded).

## Action grammar
``go to R``, ``open R``, ``close R``, ``take O from R``, ``move O to R``, ``use O``, ``heat O with R``,
``clean O with R``, ``cool O with R``, ``examine X``, ``inventory``, ``look``, ``help`` — the current list is
``info["admissible_actions"]`` (sorted). Anything else answers ``Nothing happens.``, sets
``info["action_valid"]=False``, changes nothing and uses a step. Leading and trailing spaces are ignored; case and
inner spacing are not (as in alfworld).

## Observation
The engine's text. On reset: ``-= Welcome to TextWorld, ALFRED! =-\\n\\nYou are in the middle of a room. Looking
quickly around you, you see a cabinet 6, ..., and a toaster 1.\\n\\nYour task is to: ...``; after an action its
feedback, e.g. ``You arrive at drawer 7. The drawer 7 is closed.``

## Rewards
1.0 on the step that completes the task, else 0.0. With ``reward_mode="dense"``, plus the potential-based shaping
of :class:`~empg_gym.core.TextEnv` with ``Φ`` = the share of the goal's stages the engine's current PDDL facts
satisfy (:mod:`empg_gym.envs.alfworld.potential`): the target object held, heated / cooled / cleaned as the task
type needs, in a receptacle of the goal's type; for ``look_at_obj_in_light`` the object held and the lamp toggled.
A won episode's dense rewards sum to 1.

## Episode end
Terminated when the task is won; truncated after 50 steps (the registered ``max_episode_steps``).

## Info
The standard keys (:mod:`empg_gym.core`), and ``potential`` with ``reward_mode="dense"``; ``source`` is ``real`` or
``procedural``; ``task_id`` of a real game is
its folder relative to ``json_2.1.1`` (``valid_seen/pick_and_place_simple-Pencil-None-Dresser-330/trial_...``).

## Arguments
- ``split``: ``train``, ``eval_in_distribution`` (ALFWorld's valid_seen) or ``eval_out_of_distribution``
  (valid_unseen; procedural: scenes never used in train).
- ``source``: ``"auto"`` (real data when ``data_path``/``$ALFWORLD_DATA`` points at it, else procedural),
  ``"real"`` or ``"procedural"``.
- ``data_path``: the folder that holds ``json_2.1.1`` (or ``json_2.1.1`` itself).
- ``compiled_cache``: memoise fast-downward's translation of each game in memory (the last 32 games, ~4 MB at
  most) and on disk (default ``True``; resets several times faster, identical games).
- ``reward_mode``: ``"sparse"`` (default, ALFWorld's own reward) or ``"dense"`` (see Rewards).

## Oracle
``env.unwrapped.oracle_actions()`` returns actions that win from the current state: the game's walkthrough while
the episode follows it, else a plan for the task's subgoals over the engine's current facts, played in the engine
before it is returned (:mod:`empg_gym.envs.alfworld.oracle`). Some states reachable by admissible actions cannot be
won (e.g. holding an object that no receptacle accepts, so the hands stay full); there it raises
:class:`~empg_gym.envs.alfworld.oracle.NoPlanError` saying why.

## Example
>>> import gymnasium as gym, empg_gym
>>> env = gym.make("EMPG-ALFWorld-v0")            # doctest: +SKIP
>>> obs, info = env.reset(seed=0)                  # doctest: +SKIP
>>> info["admissible_actions"][:2]                 # doctest: +SKIP
['go to cabinet 1', 'go to cabinet 2']

## Version history
- v0: initial version (alfworld 0.4.2 grammar: ``move O to R``, "You arrive at R.").
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

from empg_gym.core import StepResult, TextEnv
from empg_gym.envs.alfworld import oracle
from empg_gym.envs.alfworld.engine import AlfworldEngine, default_translation_cache
from empg_gym.envs.alfworld.potential import goal_progress
from empg_gym.envs.alfworld.real_data import find_data_root, load_real_manifest
from empg_gym.errors import ConfigError
from empg_gym.tasks import Task, TaskManifest

logger = logging.getLogger(__name__)
_LOGGED_SOURCES: set[tuple[str, str]] = set()
NOTHING_HAPPENS = "Nothing happens."


class AlfWorldEnv(TextEnv):
    """ALFWorld household tasks on alfworld's own engine (see the module docstring)."""

    family = "alfworld"

    def __init__(
        self,
        *,
        split: str = "train",
        source: Literal["auto", "real", "procedural"] = "auto",
        data_path: str | os.PathLike[str] | None = None,
        compiled_cache: bool = True,
        render_mode: str | None = None,
        reward_mode: str = "sparse",
    ) -> None:
        super().__init__(split=split, render_mode=render_mode, reward_mode=reward_mode)
        if source not in ("auto", "real", "procedural"):
            raise ConfigError(f"Unknown source {source!r}; choose 'auto', 'real' or 'procedural'.")
        root = find_data_root(data_path) if source != "procedural" else None
        if source == "real" and root is None:
            raise ConfigError(
                "source='real' needs the ALFWorld games: pass data_path=<folder with json_2.1.1> or set $ALFWORLD_DATA."
            )
        self._root: Path | None = root
        self._source_kind = "real" if root is not None else "procedural"
        key = (self._source_kind, str(root))
        if key not in _LOGGED_SOURCES:
            _LOGGED_SOURCES.add(key)
            logger.info("EMPG-ALFWorld: using %s games%s", self._source_kind, f" from {root}" if root else "")
        self._engine = AlfworldEngine(default_translation_cache() if compiled_cache else None)
        self._history: list[str] = []
        self._admissible: list[str] = []
        self._won_flag = False
        self._goal: oracle.Goal | None = None

    # ----------------------------------------------------------------------------------------------- hooks
    def _load_manifest(self) -> TaskManifest:
        if self._root is not None:
            return load_real_manifest(self._root)
        from empg_gym.envs.alfworld import procgen

        return procgen.load_manifest()

    def game_file(self, task: Task) -> Path:
        """Return the ``game.tw-pddl`` file of ``task`` (generating a procedural game on first use)."""
        if self._root is not None:
            return self._root / task.data["game_file"]
        from empg_gym.envs.alfworld import procgen

        return procgen.game_file(task)

    def _start_task(self, task: Task) -> str:
        path = str(self.game_file(task))
        if self._engine.game_key != path:
            self._engine.load(path)
        state = self._engine.reset()
        self._history = []
        self._goal = None
        self._sync(state)
        return state["feedback"]

    def _step(self, action: str) -> StepResult:
        command = action.strip()
        if command not in self._admissible:
            return StepResult(NOTHING_HAPPENS, valid=False)
        state, _, _ = self._engine.step(command)
        self._history.append(command)
        self._sync(state)
        return StepResult(state["feedback"], reward=1.0 if self._won_flag else 0.0, terminated=self._won_flag)

    def _sync(self, state: Any) -> None:
        self._admissible = list(state["admissible_commands"])
        self._won_flag = bool(state["won"])

    def admissible_actions(self) -> list[str]:
        """Return the engine's admissible commands (sorted, as alfworld lists them)."""
        return list(self._admissible)

    def _won(self) -> bool:
        return self._won_flag

    def _potential(self) -> float:
        """Share of the goal's stages the engine's current facts satisfy (:func:`~.potential.goal_progress`)."""
        if self._goal is None:
            try:
                self._goal = oracle.parse_goal(self._engine.pddl_problem)
            except oracle.NoPlanError as e:
                task = self._task.task_id if self._task is not None else "?"
                raise ConfigError(
                    f"reward_mode='dense' cannot measure progress on task {task!r}: {e} Use reward_mode='sparse'."
                ) from None
        return goal_progress(oracle.World.from_facts(self._engine.facts(), {}), self._goal)

    def oracle_actions(self) -> list[str]:
        """Return actions that win from the current state (``[]`` once won).

        While the episode has followed the game file's own walkthrough, the rest of it. Otherwise a plan from
        :func:`empg_gym.envs.alfworld.oracle.plan`: ALFWorld's subgoals (put down what is not needed, fetch the
        object, heat/cool/clean it, move it to the target receptacle; or take it to the lamp) planned over the
        engine's current facts, then played in the engine, which is restored afterwards, and cut at the winning
        step. The time is that of playing the plan (10-25 ms a step) plus a restart and a replay of the episode so
        far (~2 ms a step); planning itself takes about a millisecond and nothing searches without bound
        (``benchmarks/alfworld_oracle.py`` measures it).

        Raises:
            NoPlanError: no plan wins from the current state (the message says why); raised without stepping the
                engine when the state lacks what the goal needs.
            ConfigError: before the first ``reset``.
        """
        if self._task is None or self._engine.state is None:
            raise ConfigError("Call reset() before oracle_actions().")
        if self._won_flag:
            return []
        walkthrough = self._engine.walkthrough
        n = len(self._history)
        if walkthrough and walkthrough[:n] == self._history:
            return walkthrough[n:]
        return oracle.plan(self._engine, self._task.task_id)

    def close(self) -> None:
        """Release the engine's planning task."""
        self._engine.close()
        super().close()
