"""KeyDoor: a tiny multi-step text task for fast tests and CPU learning checks.

## Description
A corridor of ``n`` rooms. A key lies in one room, a locked door is at the east end. The agent must walk to the
key, take it, walk to the door and open it. The optimal episode takes 3 to 8 steps, there are at most five
admissible actions, and a step costs microseconds, so an RL loop with a tiny model learns it in CPU minutes.

## Action grammar
``go east``, ``go west``, ``take key``, ``open door``, ``look`` — only those valid in the current room are
admissible, and an action must match one of them exactly (lowercase, single spaces: ``GO EAST`` and
a tab between the words are not actions); anything else answers ``Nothing happens.`` with ``action_valid=False``.

## Observation
``You are in room 2 of 4. You see a key. You carry nothing.`` (``You carry the key.`` once it is taken) and, on
reset, ``Your task is to: open the door.``

## Rewards
1.0 when the door opens (terminated), else 0.0. With ``reward_mode="dense"``, plus the potential-based shaping of
:class:`~empg_gym.core.TextEnv` with ``Φ(s) = max(0, 1 − d(s) / d(s_0))``, ``d`` the length of the oracle's plan
from ``s`` (:func:`plan_progress`): each step of the oracle's episode earns ``1 / d(s_0)`` and they sum to 1.

## Episode end
Terminated when the door opens; truncated at the registered step limit (10).

## Info
The standard keys (:mod:`empg_gym.core`); ``potential`` with ``reward_mode="dense"``.

## Arguments
``split``: ``train`` (9 layouts) and ``eval_in_distribution`` (4) have 2 to 3 rooms (disjoint start/key layouts),
``eval_out_of_distribution`` (16) has 4 rooms. ``reward_mode``: ``"sparse"`` (default) or ``"dense"``.

## Version history
- v0: initial version; the observation says what the agent carries (``You carry nothing.``/``You carry the
  key.``), so the state is fully observed (the first release said "The room is empty." with and without the key).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import random
from dataclasses import dataclass
from typing import Any, ClassVar

from empg_gym.core import StepResult, TextEnv
from empg_gym.errors import ConfigError, did_you_mean
from empg_gym.tasks import SPLITS, Task, TaskManifest


def plan_progress(remaining: int, initial: int) -> float:
    """Return the toy tasks' potential, the share of the start state's plan done: ``max(0, 1 - remaining / initial)``.

    ``remaining`` is the length of the oracle's plan from the current state, ``initial`` from the start state (a
    plan is at least one action before the episode ends, so the potential stays below 1 until then). Walking away
    from the goal lowers it, down to 0.

    Example:
        >>> plan_progress(4, 4), plan_progress(1, 4), plan_progress(6, 4)
        (0.0, 0.75, 0.0)
    """
    return max(0.0, 1.0 - remaining / initial)


def _layouts(n_rooms: int) -> list[Task]:
    tasks = []
    for start in range(1, n_rooms + 1):
        for key in range(1, n_rooms + 1):
            tasks.append(
                Task(
                    f"keydoor-{n_rooms}r-s{start}-k{key}",
                    "key_door",
                    "open the door.",
                    {"rooms": n_rooms, "start": start, "key": key},
                )
            )
    return tasks


def keydoor_manifest() -> TaskManifest:
    """Return the fixed KeyDoor task set: 13 layouts with 2-3 rooms split 9/4 in distribution, 16 with 4 rooms."""
    in_dist = _layouts(2) + _layouts(3)
    train = [t for i, t in enumerate(in_dist) if i % 3 != 2]
    eval_id = [t for i, t in enumerate(in_dist) if i % 3 == 2]
    return TaskManifest(
        family="toy",
        name="keydoor",
        version="1",
        source="embedded",
        splits={"train": tuple(train), "eval_in_distribution": tuple(eval_id), "eval_out_of_distribution": tuple(_layouts(4))},
    )


class KeyDoorEnv(TextEnv):
    """Walk to the key, take it, walk to the east door and open it (see the module docstring)."""

    family = "toy"
    #: Every action the env can admit, and the words of its text: the vocabulary of ``model="tiny-actions"``.
    action_vocabulary: ClassVar[tuple[str, ...]] = ("go east", "go west", "take key", "open door", "look")
    text_vocabulary: ClassVar[tuple[str, ...]] = ("room", "of", "1", "2", "3", "4", "key", "door", "empty", "see",
                                                  "pick", "locked", "task", "carry", "nothing", "the")

    def _load_manifest(self) -> TaskManifest:
        return keydoor_manifest()

    def _start_task(self, task: Task) -> str:
        self._rooms: int = task.data["rooms"]
        self._pos: int = task.data["start"]
        self._key_at: int | None = task.data["key"]
        self._has_key = False
        self._open = False
        self._initial_plan = len(self.oracle_actions())
        return f"{self._describe()}\n\nYour task is to: {task.goal}"

    def _describe(self) -> str:
        things = []
        if self._key_at == self._pos:
            things.append("a key")
        if self._pos == self._rooms:
            things.append("a door")
        seen = f" You see {' and '.join(things)}." if things else " The room is empty."
        carry = "the key" if self._has_key else "nothing"
        return f"You are in room {self._pos} of {self._rooms}.{seen} You carry {carry}."

    def admissible_actions(self) -> list[str]:
        """Return the moves possible in the current room (sorted)."""
        if self._open:
            return []
        acts = ["look"]
        if self._pos < self._rooms:
            acts.append("go east")
        if self._pos > 1:
            acts.append("go west")
        if self._key_at == self._pos:
            acts.append("take key")
        if self._pos == self._rooms:
            acts.append("open door")
        return sorted(acts)

    def _step(self, action: str) -> StepResult:
        if action not in self.admissible_actions():
            return StepResult("Nothing happens.", valid=False)
        if action == "go east":
            self._pos += 1
        elif action == "go west":
            self._pos -= 1
        elif action == "take key":
            self._key_at, self._has_key = None, True
            return StepResult(f"You pick up the key. {self._describe()}")
        elif action == "open door":
            if not self._has_key:
                return StepResult("The door is locked.")
            self._open = True
            return StepResult("You unlock the door and open it.", reward=1.0, terminated=True)
        return StepResult(self._describe())

    def _won(self) -> bool:
        return self._open

    def _potential(self) -> float:
        """``Φ = 1 − d(s) / d(s_0)`` (floored at 0), ``d`` the length of the oracle's plan (:func:`plan_progress`)."""
        return plan_progress(len(self.oracle_actions()), self._initial_plan)

    def oracle_actions(self) -> list[str]:
        """Return the shortest winning action sequence from the current state."""
        plan, pos = [], self._pos
        if not self._has_key and self._key_at is not None:
            step = "go east" if self._key_at > pos else "go west"
            plan += [step] * abs(self._key_at - pos) + ["take key"]
            pos = self._key_at
        plan += ["go east"] * (self._rooms - pos) + ["open door"]
        return plan


# ============================================================================================ KeyDoor v1
#: Colours of keys and doors in KeyDoor-v1.
COLOURS = ("red", "blue", "green", "yellow", "purple", "white")


@dataclass(frozen=True)
class RoomsSizes:
    """Ranges (inclusive) that KeyDoor-v1 draws a layout's size from."""

    doors: tuple[int, int]
    segment: tuple[int, int]
    distractors: tuple[int, int]


#: Layout sizes per split: doors, rooms per segment (a segment ends at a door), distractor keys.
ROOMS_SIZES = {
    "train": RoomsSizes(doors=(1, 3), segment=(1, 2), distractors=(0, 2)),
    "eval_in_distribution": RoomsSizes(doors=(1, 3), segment=(1, 2), distractors=(0, 2)),
    "eval_out_of_distribution": RoomsSizes(doors=(4, 6), segment=(1, 3), distractors=(1, 3)),
}
#: The hard variant's sizes (``difficulty="hard"``, ``EMPG-KeyRoomsHard-v0``): every layout has 2 or 3 doors (never the
#: one-door layouts a random policy wins most often), segments of up to 3 rooms and 1 to 3 distractor keys, so a
#: uniformly random policy wins 1.3% of training episodes instead of 7.7% (benchmarks/keyrooms_random_policy.py) and
#: optimal episodes are about 1.5x as long; out of distribution 4 to 6 doors and segments of 2 to 4 rooms.
ROOMS_SIZES_HARD = {
    "train": RoomsSizes(doors=(2, 3), segment=(1, 3), distractors=(1, 3)),
    "eval_in_distribution": RoomsSizes(doors=(2, 3), segment=(1, 3), distractors=(1, 3)),
    "eval_out_of_distribution": RoomsSizes(doors=(4, 6), segment=(2, 4), distractors=(2, 4)),
}
ROOMS_SPLIT_SIZES = {"train": 400, "eval_in_distribution": 100, "eval_out_of_distribution": 100}
_ROOMS_SEEDS = {"train": 11, "eval_in_distribution": 22, "eval_out_of_distribution": 33}
_ROOMS_SEEDS_HARD = {"train": 44, "eval_in_distribution": 55, "eval_out_of_distribution": 66}
#: ``difficulty`` -> (sizes, seeds, task-id prefix).
ROOMS_DIFFICULTIES = {"standard": (ROOMS_SIZES, _ROOMS_SEEDS, "keyrooms"),
                      "hard": (ROOMS_SIZES_HARD, _ROOMS_SEEDS_HARD, "keyrooms_hard")}


def _draw(rng: random.Random, lo: int, hi: int) -> int:
    """Uniform int in ``[lo, hi]`` from the Mersenne Twister's float stream (stable across Python versions)."""
    return lo + int(rng.random() * (hi - lo + 1))


def _rooms_layout(rng: random.Random, sizes: RoomsSizes) -> dict[str, Any]:
    """Draw one layout: doors ``[room, colour]`` (the door is on the room's east side), keys, start room."""
    n_doors = _draw(rng, *sizes.doors)
    pool = list(COLOURS)
    colours = [pool.pop(_draw(rng, 0, len(pool) - 1)) for _ in range(len(COLOURS))]
    doors, keys, first = [], {}, 1
    for colour in colours[:n_doors]:
        last = first + _draw(rng, *sizes.segment) - 1
        keys[_draw(rng, first, last)] = colour  # a door's key lies in the segment before it
        doors.append([last, colour])
        first = last + 1
    rooms = first - 1
    free = [r for r in range(1, rooms + 1) if r not in keys]
    for colour in colours[n_doors:n_doors + _draw(rng, *sizes.distractors)]:
        if free:  # at most one key per room
            keys[free.pop(_draw(rng, 0, len(free) - 1))] = colour
    start = _draw(rng, 1, doors[0][0])
    return {"rooms": rooms, "start": start, "doors": doors, "keys": sorted([r, c] for r, c in keys.items())}


@functools.cache  # deterministic and frozen: every env of a process shares one (a build takes ~12 ms)
def keydoor_rooms_manifest(difficulty: str = "standard") -> TaskManifest:
    """Return KeyRooms' fixed task set: 400 / 100 / 100 generated layouts (OOD: more doors, longer corridors).

    Layouts come from fixed seeds; no layout appears twice (an eval layout never repeats a training one). Each
    task stores its layout, the oracle's (shortest) length and its step budget. ``difficulty="hard"`` draws from
    :data:`ROOMS_SIZES_HARD` with seeds of its own.

    Example:
        >>> m = keydoor_rooms_manifest()
        >>> m.sizes()
        {'train': 400, 'eval_in_distribution': 100, 'eval_out_of_distribution': 100}
        >>> t = m.get("keyrooms-eval_out_of_distribution-000")
        >>> t.task_type, t.data["optimal_steps"] >= 10
        ('doors_5', True)
        >>> sorted({t.task_type for t in keydoor_rooms_manifest("hard").tasks("train")})
        ['doors_2', 'doors_3']
    """
    if difficulty not in ROOMS_DIFFICULTIES:
        raise ConfigError(f"difficulty={difficulty!r}{did_you_mean(difficulty, ROOMS_DIFFICULTIES)}; choose from "
                          f"{sorted(ROOMS_DIFFICULTIES)}.")
    sizes, seeds, prefix = ROOMS_DIFFICULTIES[difficulty]
    splits: dict[str, tuple[Task, ...]] = {}
    seen: set[str] = set()
    for split in SPLITS:
        rng, tasks = random.Random(seeds[split]), []
        while len(tasks) < ROOMS_SPLIT_SIZES[split]:
            layout = _rooms_layout(rng, sizes[split])
            signature = json.dumps(layout, sort_keys=True)
            if signature in seen:
                continue
            seen.add(signature)
            optimal = len(_rooms_plan(layout, layout["start"], None, set()))
            layout.update(optimal_steps=optimal, step_budget=2 * optimal + 4)
            tasks.append(Task(f"{prefix}-{split}-{len(tasks):03d}", f"doors_{len(layout['doors'])}",
                              f"open the {layout['doors'][-1][1]} exit door.", layout))
        splits[split] = tuple(tasks)
    name = "keydoor-rooms" if difficulty == "standard" else f"keydoor-rooms-{difficulty}"
    return TaskManifest(family="toy", name=name, version="1", source="embedded", splits=splits,
                        meta={"sizes": {k: dataclasses.asdict(v) for k, v in sizes.items()},
                              "seeds": seeds, "step_budget": "2 x optimal + 4"})


def _rooms_plan(layout: dict[str, Any], pos: int, carried: str | None, opened: set[int]) -> list[str]:
    """Shortest winning actions from a state: for each closed door, fetch its key (unless carried), walk, open."""
    keys = {room: colour for room, colour in layout["keys"]}
    plan: list[str] = []

    def walk(to: int) -> None:
        plan.extend(["go east" if to > pos else "go west"] * abs(to - pos))

    for room, colour in layout["doors"]:
        if room in opened:
            continue
        if carried != colour:
            key_room = next(r for r, c in keys.items() if c == colour)
            walk(key_room)
            pos = key_room
            plan.append("take key")
            del keys[key_room]
            if carried is not None:
                keys[key_room] = carried  # taking a key drops the one carried
            carried = colour
        walk(room)
        pos = room
        plan.append("open door")
        carried = None
        if room != layout["rooms"]:
            plan.append("go east")
            pos += 1
    return plan


class KeyDoorRoomsEnv(TextEnv):
    """Rooms behind coloured locked doors: fetch each door's key, open the doors, open the exit door.

    ## Description
    ``n`` rooms in a row, west to east, cut into segments by locked doors of distinct colours; the last door is the
    exit. Each door's key lies in the segment before it (in the first segment possibly west of the start), and
    distractor keys of other colours lie in other rooms; a room holds at most one key. The agent carries one key at
    a time: taking a key drops the one it carries. Opening a door uses its key up. The observation says what is in
    the room, what the agent carries and what it needs next in which direction, so the state is fully observed and
    a memoryless policy can act optimally: what makes the task hard for reinforcement learning is the horizon
    (optimal episodes of 2 to 15 steps in distribution, 14 to 30 out of distribution) and the single outcome
    reward, earned through a few decisive steps (take the right key and only it, open the door) among many routine
    moves.

    ## Action grammar
    ``go east``, ``go west``, ``take key``, ``open door``, ``look``. An action must match an admissible one exactly
    (lowercase, single spaces); anything else answers ``Nothing happens.`` and the room's description (the state
    stays in view), with ``action_valid=False``. ``go east``
    is admissible unless a locked door or the corridor's end is east; ``take key`` where a key lies; ``open door``
    at a locked door, with or without its key (without it nothing opens).

    ## Observation
    ``You are in room 2. You see a white key. A locked blue door leads east. You carry a red key. Next: the blue
    key, west.`` — on reset after ``Your task is to: open the <colour> exit door.``, and after the feedback of every
    action, so the ``Next:`` line always ends the observation.

    ## Rewards
    1.0 when the exit door opens (terminated), else 0.0. With ``reward_mode="dense"``, plus the potential-based
    shaping of :class:`~empg_gym.core.TextEnv` with ``Φ(s) = max(0, 1 − d(s) / d(s_0))``: ``d`` is the length of the
    oracle's plan from ``s`` (fetch the next door's key, walk to the door, open it, step through; ... up to the exit),
    so ``Φ`` rises with each right key taken, each door opened and each room walked towards the next target, and
    falls when the agent walks away from its next target (:func:`plan_progress`). Each step of the oracle's episode
    earns ``1 / d(s_0)`` (``1 / task.data["optimal_steps"]``) and an episode that opens the exit sums to 1.

    ## Episode end
    Terminated when the exit door opens; truncated once the layout's step budget is spent (2 × its optimal length
    + 4, in ``task.data["step_budget"]``) or at the registered limit (80).

    ## Info
    The standard keys (:mod:`empg_gym.core`); ``task_type`` is ``doors_<number of doors>``; ``potential`` with
    ``reward_mode="dense"``.

    ## Arguments
    ``split``: ``train`` (400 layouts) and ``eval_in_distribution`` (100) have 1 to 3 doors, 1 to 3 rooms per
    segment and up to 2 distractor keys; ``eval_out_of_distribution`` (100) has 4 or 5 doors, 2 to 4 rooms per
    segment and 1 to 3 distractor keys. ``reward_mode``: ``"sparse"`` (default) or ``"dense"`` (see Rewards).
    ``difficulty``: ``"standard"`` (default) or ``"hard"`` (``EMPG-KeyRoomsHard-v0``: :data:`ROOMS_SIZES_HARD`, 2 or
    3 doors in every train and in-distribution layout, 4 to 6 out of distribution, task ids ``keyrooms_hard-...``).

    ## Version history
    - v0: initial version (EMPG-KeyDoor-v0 is the single-key corridor).

    Example:
        >>> import gymnasium as gym, empg_gym
        >>> env = gym.make("EMPG-KeyRooms-v0")
        >>> obs, info = env.reset(options={"task_id": "keyrooms-train-000"})
        >>> plan = env.unwrapped.oracle_actions()
        >>> plan[:3], len(plan) == env.unwrapped.current_task.data["optimal_steps"]
        (['go east', 'take key', 'open door'], True)
        >>> for action in plan:
        ...     obs, reward, terminated, truncated, info = env.step(action)
        >>> reward, terminated, info["won"]
        (1.0, True, True)
    """

    family = "toy"
    action_vocabulary: ClassVar[tuple[str, ...]] = ("go east", "go west", "take key", "open door", "look")
    #: The informative words of the text (what is seen, carried, locked, next and where); the tiny model's
    #: tokenizer drops the others ("You are in room 2." says nothing a policy needs: ``Next:`` gives the direction).
    text_vocabulary: ClassVar[tuple[str, ...]] = (
        "see", "key", "door", "locked", "open", "exit", "east", "west", "here", "carry", "nothing", "next", "task",
        "pick", "drop", "unlock", "need", "outside", "win") + COLOURS

    def __init__(self, *, difficulty: str = "standard", **kwargs: Any) -> None:
        if difficulty not in ROOMS_DIFFICULTIES:
            raise ConfigError(f"difficulty={difficulty!r}{did_you_mean(difficulty, ROOMS_DIFFICULTIES)}; choose "
                              f"from {sorted(ROOMS_DIFFICULTIES)}.")
        super().__init__(**kwargs)
        self.difficulty = difficulty

    def _load_manifest(self) -> TaskManifest:
        return keydoor_rooms_manifest(self.difficulty)

    def _start_task(self, task: Task) -> str:
        self._layout: dict[str, Any] = dict(task.data)
        self._rooms: int = task.data["rooms"]
        self._pos: int = task.data["start"]
        self._budget: int = task.data["step_budget"]
        self._steps = 0
        self._keys: dict[int, str] = {room: colour for room, colour in task.data["keys"]}
        self._doors: dict[int, str] = {room: colour for room, colour in task.data["doors"]}
        self._opened: set[int] = set()
        self._carried: str | None = None
        return f"Your task is to: {task.goal}\n\n{self._describe()}"

    def _next_target(self) -> tuple[str, str, int] | None:
        """Return ``(colour, "key"|"door", room)`` of what to reach next, or ``None`` once the exit is open."""
        for room, colour in self._doors.items():
            if room not in self._opened:
                if self._carried == colour:
                    return colour, "door", room
                return colour, "key", next(r for r, c in self._keys.items() if c == colour)
        return None

    def _describe(self) -> str:
        text = f"You are in room {self._pos}."
        if self._pos in self._keys:
            text += f" You see a {self._keys[self._pos]} key."
        if self._pos in self._doors:
            state = "An open" if self._pos in self._opened else "A locked"
            exit_ = " exit" if self._pos == self._rooms else ""
            text += f" {state} {self._doors[self._pos]}{exit_} door leads east."
        text += f" You carry {f'a {self._carried} key' if self._carried else 'nothing'}."
        target = self._next_target()
        if target is not None:
            colour, what, room = target
            where = "here" if room == self._pos else ("east" if room > self._pos else "west")
            text += f" Next: the {colour} {what}, {where}."
        return text

    def admissible_actions(self) -> list[str]:
        """Return the actions valid in the current room (sorted)."""
        if self._won():
            return []
        locked_here = self._pos in self._doors and self._pos not in self._opened
        acts = ["look"]
        if self._pos < self._rooms and not locked_here:
            acts.append("go east")
        if self._pos > 1:
            acts.append("go west")
        if self._pos in self._keys:
            acts.append("take key")
        if locked_here:
            acts.append("open door")
        return sorted(acts)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict[str, Any]]:
        """Apply one action; ``truncated`` once the layout's step budget is spent."""
        obs, reward, terminated, truncated, info = super().step(action)
        self._steps += 1
        return obs, reward, terminated, truncated or (not terminated and self._steps >= self._budget), info

    def _step(self, action: str) -> StepResult:
        if action not in self.admissible_actions():
            return StepResult(f"Nothing happens. {self._describe()}", valid=False)
        if action == "go east":
            self._pos += 1
        elif action == "go west":
            self._pos -= 1
        elif action == "take key":
            colour, dropped = self._keys.pop(self._pos), self._carried
            if dropped is not None:
                self._keys[self._pos] = dropped
            self._carried = colour
            drop = f"You drop the {dropped} key and pick up the {colour} key." if dropped else \
                f"You pick up the {colour} key."
            return StepResult(f"{drop} {self._describe()}")
        elif action == "open door":
            colour = self._doors[self._pos]
            if self._carried != colour:
                return StepResult(f"The {colour} door is locked; you need the {colour} key. {self._describe()}")
            self._carried = None
            self._opened.add(self._pos)
            if self._pos == self._rooms:
                return StepResult(f"You unlock the {colour} exit door and step outside. You win.", reward=1.0,
                                  terminated=True)
            return StepResult(f"You unlock the {colour} door and open it. {self._describe()}")
        return StepResult(self._describe())

    def _won(self) -> bool:
        return self._rooms in getattr(self, "_opened", ())

    def _potential(self) -> float:
        """``Φ = 1 − d(s) / d(s_0)`` (floored at 0), ``d`` the length of the oracle's plan (:func:`plan_progress`)."""
        return plan_progress(len(self.oracle_actions()), self._layout["optimal_steps"])

    def oracle_actions(self) -> list[str]:
        """Return the shortest winning action sequence from the current state (it follows ``Next:``)."""
        layout = dict(self._layout, keys=[[r, c] for r, c in self._keys.items()])
        return _rooms_plan(layout, self._pos, self._carried, set(self._opened))
