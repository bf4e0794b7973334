"""Procedural ALFWorld games: the embedded default task set of ``EMPG-ALFWorld-v0`` (nothing to download).

Each task is an ALFWorld game for one of the six task types, written in the exact shape of the real
``game.tw-pddl`` files (``{pddl_domain, grammar, pddl_problem, solvable, walkthrough}``) from one of ALFRED's floor
plans in the alfworld wheel, with the wheel's domain (``alfred.pddl``) and grammar (``alfred.twl2``, the goal
sentence in place of ``UNKNOWN GOAL``). The goal formula per task type and the goal sentences are ALFWorld's
(``alfworld/gen/goal_library.py``). Objects are placed only in receptacles ALFRED lets hold them; see
:mod:`empg_gym.envs.alfworld.procgen_world`.

The manifest (:func:`load_manifest`, built by ``scripts/build_alfworld_manifest.py``) lists tasks only; a game is
regenerated from ``task.data`` on first use (:func:`game_file`) and cached under
``cache_dir("alfworld", "procedural", "v<PROCGEN_VERSION>")``.

Splits (as ALFWorld's): ``train`` and ``eval_in_distribution`` draw from the same 108 scenes with disjoint seeds;
``eval_out_of_distribution`` uses only the 12 scenes that ALFWorld's train split never uses (3 per room type:
kitchens 9, 10, 29; living rooms 215, 219, 226; bedrooms 308, 315, 325; bathrooms 404, 424, 425 — ALFWorld's
``valid_unseen`` draws from 10, 219, 308 and 424). Every split is balanced over the six task types.

Example:
    >>> from empg_gym.tasks import Task
    >>> task = make_task("train", "pick_heat_then_place_in_recep", scene=24, seed=7, obj="Apple",
    ...                  recep="GarbageCan", template=1)
    >>> task.task_id, task.goal
    ('procedural/train/pick_heat_then_place_in_recep-Apple-None-GarbageCan-24/s000007', 'heat some apple and put it in garbagecan.')
    >>> game = generate_game(task)
    >>> game["walkthrough"][-1].startswith("move apple ") and game["walkthrough"][-1].endswith(" to garbagecan 1")
    True
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import io
import json
import logging
import os
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from empg_gym.envs.alfworld import procgen_world as pw
from empg_gym.envs.alfworld.real_data import TASK_TYPES
from empg_gym.errors import ConfigError
from empg_gym.tasks import SPLITS, Task, TaskManifest, atomic_write_bytes, cache_dir

logger = logging.getLogger(__name__)

#: Bump when generated games (or the task lists) change: it keys the manifest and the on-disk game cache.
PROCGEN_VERSION = "1"
MANIFEST_FILE = Path(__file__).resolve().parent / "data" / f"procedural_v{PROCGEN_VERSION}.json.gz"

#: ALFWorld's goal sentences (``goal_library.gdict[task_type]["templates"]``), in its order.
TEMPLATES = {
    "pick_and_place_simple": ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    "look_at_obj_in_light": ("look at {obj} under the {toggle}", "examine the {obj} with the {toggle}"),
    "pick_clean_then_place_in_recep": ("put a clean {obj} in {recep}", "clean some {obj} and put it in {recep}"),
    "pick_heat_then_place_in_recep": ("put a hot {obj} in {recep}", "heat some {obj} and put it in {recep}"),
    "pick_cool_then_place_in_recep": ("put a cool {obj} in {recep}", "cool some {obj} and put it in {recep}"),
    "pick_two_obj_and_place": ("put two {obj} in {recep}", "find two {obj} and put them in {recep}"),
}
#: Room types each task type is generated in (ALFRED's ``constants.GOALS_VALID``).
ROOMS = {
    "pick_and_place_simple": {"Kitchen", "LivingRoom", "Bathroom", "Bedroom"},
    "pick_two_obj_and_place": {"Kitchen", "LivingRoom", "Bathroom", "Bedroom"},
    "look_at_obj_in_light": {"LivingRoom", "Bedroom"},
    "pick_clean_then_place_in_recep": {"Kitchen", "Bathroom"},
    "pick_heat_then_place_in_recep": {"Kitchen"},
    "pick_cool_then_place_in_recep": {"Kitchen"},
}
#: The receptacle type that changes the object's state, and the property the object needs for it.
STATE_CHANGE = {
    "pick_clean_then_place_in_recep": ("SinkBasin", "cleanable", "clean"),
    "pick_heat_then_place_in_recep": ("Microwave", "heatable", "heat"),
    "pick_cool_then_place_in_recep": ("Fridge", "coolable", "cool"),
}
#: Scenes ALFWorld's train split never uses: the out-of-distribution split's scenes.
UNSEEN_SCENES = (9, 10, 29, 215, 219, 226, 308, 315, 325, 404, 424, 425)
#: Default split sizes (games per task type); the build script may pass others.
PER_TYPE = {"train": 400, "eval_in_distribution": 40, "eval_out_of_distribution": 40}
#: First seed of each split (seeds are disjoint across splits).
SEED_BASE = {"train": 0, "eval_in_distribution": 1_000_000, "eval_out_of_distribution": 2_000_000}
_LAMP = "DeskLamp"


# ----------------------------------------------------------------------------------------------- task choice


def split_scenes(split: str) -> list[int]:
    """Return the scenes a split draws from: the 12 unseen scenes for ``eval_out_of_distribution``, else the rest.

    Example:
        >>> split_scenes("eval_out_of_distribution")[:3], len(split_scenes("train"))
        ([9, 10, 29], 108)
    """
    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r}; valid splits are {list(SPLITS)}.")
    unseen = set(UNSEEN_SCENES)
    return [s for s in pw.all_scenes() if (s in unseen) == (split == "eval_out_of_distribution")]


def _pickupable(scene: pw.Scene) -> list[str]:
    return [t for t in scene.object_types if t not in pw.NON_PICKUPABLE]


def task_options(scene_number: int, task_type: str) -> list[tuple[str, str]]:
    """Return every ``(object type, receptacle type)`` a task of ``task_type`` can use in the scene.

    For ``look_at_obj_in_light`` the receptacle slot holds the lamp type (``DeskLamp``), as ALFWorld's task names do.

    Example:
        >>> ("Apple", "GarbageCan") in task_options(24, "pick_heat_then_place_in_recep")
        True
        >>> task_options(24, "look_at_obj_in_light")  # no lamp in that kitchen
        []
    """
    _check_type(task_type)
    scene = pw.load_scene(scene_number)
    if scene.room not in ROOMS[task_type]:
        return []
    if task_type == "look_at_obj_in_light":
        has_stand = any(r.rtype in pw.LAMP_HOLDERS for r in scene.receptacles)
        if _LAMP not in scene.object_types or not has_stand:
            return []
        return [(o, _LAMP) for o in _pickupable(scene) if any(scene.holders(o))]
    tables = pw.alfred_tables()
    excluded = {"Toaster"}
    if task_type in STATE_CHANGE:
        station, prop, _ = STATE_CHANGE[task_type]
        if station not in scene.receptacle_types:
            return []
        excluded.add(station)
    options = []
    for obj in _pickupable(scene):
        if task_type in STATE_CHANGE and obj not in tables[STATE_CHANGE[task_type][1]]:
            continue
        for recep in sorted(scene.receptacle_types - excluded):
            if obj in tables["holds"].get(recep, ()) and _sources(scene, task_type, obj, recep):
                options.append((obj, recep))
    return options


def _forbidden(task_type: str, recep: str) -> frozenset[str]:
    """Receptacle types the target objects may not start in (the goal must not hold at the start)."""
    if task_type == "look_at_obj_in_light":
        return frozenset()
    return frozenset({recep, "Fridge"} if task_type == "pick_cool_then_place_in_recep" else {recep})


def _sources(scene: pw.Scene, task_type: str, obj: str, recep: str) -> list[pw.Receptacle]:
    return [r for r in scene.holders(obj) if r.rtype not in _forbidden(task_type, recep)]


def goal_text(task_type: str, obj: str, recep: str, template: int) -> str:
    """Return the goal sentence (with its final period) from ALFWorld's template ``template`` (0 or 1).

    Example:
        >>> goal_text("look_at_obj_in_light", "CD", "DeskLamp", 1)
        'examine the cd with the desklamp.'
    """
    _check_type(task_type)
    if template not in (0, 1):
        raise ConfigError(f"Goal template index must be 0 or 1, got {template!r}.")
    fields = {"obj": obj.lower(), "recep": recep.lower(), "toggle": recep.lower()}
    return TEMPLATES[task_type][template].format(**fields) + "."


def make_task(
    split: str, task_type: str, *, scene: int, seed: int, obj: str, recep: str, template: int
) -> Task:
    """Return the :class:`Task` for one procedural game (no engine, no file)."""
    if (obj, recep) not in task_options(scene, task_type):
        raise ConfigError(
            f"({obj!r}, {recep!r}) is not a valid {task_type} task in scene {scene}; "
            f"see task_options({scene}, {task_type!r})."
        )
    name = f"{task_type}-{obj}-None-{recep}-{scene}"
    data = {
        "task_type": task_type, "scene": scene, "seed": seed, "obj": obj, "mrecep": None, "recep": recep,
        "toggle": _LAMP if task_type == "look_at_obj_in_light" else None, "template": template,
    }
    return Task(f"procedural/{split}/{name}/s{seed:06d}", task_type, goal_text(task_type, obj, recep, template), data)


def _check_type(task_type: str) -> None:
    if task_type not in TASK_TYPES:
        raise ConfigError(f"Unknown ALFWorld task type {task_type!r}; valid: {list(TASK_TYPES)}.")


@functools.cache
def _options_by_scene(task_type: str, scenes: tuple[int, ...]) -> dict[int, list[tuple[str, str]]]:
    found = {s: task_options(s, task_type) for s in scenes}
    return {s: o for s, o in found.items() if o}


def sample_task(split: str, task_type: str, seed: int) -> Task:
    """Return the task that ``seed`` picks for ``task_type`` in ``split``: a scene, then an object, then a receptacle.

    Choosing the object type before the receptacle keeps object types spread evenly.
    """
    options = _options_by_scene(task_type, tuple(split_scenes(split)))
    if not options:
        raise ConfigError(f"No scene of split {split!r} supports task type {task_type!r}.")
    rng = random.Random(f"alfworld-procgen-v{PROCGEN_VERSION}|{split}|{task_type}|{seed}")
    scene = rng.choice(sorted(options))
    obj = rng.choice(sorted({o for o, _ in options[scene]}))
    recep = rng.choice([r for o, r in options[scene] if o == obj])
    return make_task(split, task_type, scene=scene, seed=seed, obj=obj, recep=recep, template=rng.randrange(2))


def sample_split(split: str, per_type: int, exclude: Iterable[str] = ()) -> list[Task]:
    """Return ``per_type`` tasks of each task type for ``split``, interleaved by type, skipping ids in ``exclude``."""
    excluded = set(exclude)
    columns = []
    for task_type in TASK_TYPES:
        tasks, seed = [], SEED_BASE[split]
        while len(tasks) < per_type:
            task = sample_task(split, task_type, seed)
            seed += 1
            if task.task_id not in excluded:
                tasks.append(task)
        columns.append(tasks)
    return [col[i] for i in range(per_type) for col in columns]


def build_manifest(
    per_type: Mapping[str, int] | None = None, exclude: Iterable[str] = (), meta: Mapping[str, Any] | None = None
) -> TaskManifest:
    """Return the procedural manifest (deterministic from :data:`PROCGEN_VERSION`, sizes and ``exclude``)."""
    sizes = dict(PER_TYPE if per_type is None else per_type)
    excluded = sorted(set(exclude))
    splits = {s: tuple(sample_split(s, sizes[s], excluded)) for s in SPLITS}
    info = {"per_type": sizes, "excluded": excluded, "unseen_scenes": list(UNSEEN_SCENES), **dict(meta or {})}
    return TaskManifest(family="alfworld", name="alfworld-procedural", version=PROCGEN_VERSION,
                        source="procedural", splits=splits, meta=info)


def load_manifest() -> TaskManifest:
    """Return the embedded procedural manifest (read from the package data file; its content hash is checked)."""
    return _load_manifest_file(str(MANIFEST_FILE))


@functools.lru_cache(maxsize=4)
def _load_manifest_file(path: str) -> TaskManifest:
    if not Path(path).is_file():
        raise ConfigError(
            f"The embedded procedural ALFWorld manifest is missing at {path}; rebuild it with "
            "python scripts/build_alfworld_manifest.py."
        )
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return TaskManifest.from_json(json.load(f))


def save_manifest(manifest: TaskManifest, path: str | os.PathLike[str] = MANIFEST_FILE) -> Path:
    """Write ``manifest`` as compact gzip JSON (no timestamp, so equal manifests give equal bytes)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = json.dumps(manifest.to_json(), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    raw = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(body.encode("utf-8"))
    return atomic_write_bytes(path, raw.getvalue())


# ----------------------------------------------------------------------------------------------- game writing


@dataclass(frozen=True)
class _Spec:
    task_type: str
    scene: int
    seed: int
    obj: str
    recep: str
    template: int

    @classmethod
    def from_task(cls, task: Task) -> _Spec:
        d = task.data
        missing = [k for k in ("task_type", "scene", "seed", "obj", "recep", "template") if k not in d]
        if missing:
            raise ConfigError(
                f"Task {task.task_id!r} is not a procedural ALFWorld task: its data lacks {missing}. "
                "Use tasks from empg_gym.envs.alfworld.procgen.load_manifest()."
            )
        _check_type(d["task_type"])
        return cls(d["task_type"], int(d["scene"]), int(d["seed"]), d["obj"], d["recep"], int(d["template"]))


def generate_game(task: Task) -> dict[str, Any]:
    """Return the ``game.tw-pddl`` content for ``task``: a pure, deterministic function of ``task.data``."""
    spec = _Spec.from_task(task)
    if (spec.obj, spec.recep) not in task_options(spec.scene, spec.task_type):
        raise ConfigError(f"Task {task.task_id!r}: ({spec.obj}, {spec.recep}) is not valid in scene {spec.scene}.")
    rng = random.Random(f"alfworld-procgen-v{PROCGEN_VERSION}|game|{spec}")
    scene = pw.load_scene(spec.scene)
    look = spec.task_type == "look_at_obj_in_light"
    n_target = rng.choice((2, 2, 3, 4) if spec.task_type == "pick_two_obj_and_place" else (1, 1, 2, 3))
    world, targets = pw.build_world(scene, rng, spec.obj, n_target, _forbidden(spec.task_type, spec.recep), look)
    goal = goal_text(spec.task_type, spec.obj, spec.recep, spec.template)
    wheel = pw.wheel_dir() / "data"
    return {
        "pddl_domain": (wheel / "alfred.pddl").read_text(encoding="utf-8"),
        "grammar": (wheel / "alfred.twl2").read_text(encoding="utf-8").replace("UNKNOWN GOAL", goal[:-1]),
        "pddl_problem": _problem(world, spec, targets),
        "solvable": True,
        "walkthrough": _walkthrough(world, spec, targets, rng),
    }


def game_bytes(game: Mapping[str, Any]) -> bytes:
    """Return the canonical file bytes of a game dict (what :func:`game_file` writes)."""
    return json.dumps(game, ensure_ascii=False, indent=2).encode("utf-8")


def game_dir() -> Path:
    """Return the cache folder of this generator version's games."""
    return cache_dir("alfworld", "procedural", f"v{PROCGEN_VERSION}")


def game_file(task: Task) -> Path:
    """Return the path of ``task``'s ``game.tw-pddl``, generating and caching it (atomically) on first use."""
    rel = task.task_id.removeprefix("procedural/")
    if not rel or ".." in rel.split("/") or rel.startswith("/"):
        raise ConfigError(f"Task id {task.task_id!r} cannot name a cache path.")
    path = game_dir() / rel / "game.tw-pddl"
    if path.is_file():
        return path
    return atomic_write_bytes(path, game_bytes(generate_game(task)))


# ----------------------------------------------------------------------------------------------- PDDL problem


def _goal_pddl(spec: _Spec) -> str:
    """Return the goal formula of ALFWorld's goal library for the task type (``#`` written as ``-``)."""
    if spec.task_type == "look_at_obj_in_light":
        return (
            "(:goal\n (and\n  (exists (?ot - object ?r - receptacle ?a - agent ?l - location)\n   (and\n"
            f"    (objectType ?ot {_LAMP}Type)\n    (toggleable ?ot)\n    (isToggled ?ot)\n"
            "    (receptacleAtLocation ?r ?l)\n    (atLocation ?a ?l)\n    (inReceptacle ?ot ?r)\n   )\n  )\n"
            f"  (exists (?o - object ?a - agent)\n   (and\n    (objectType ?o {spec.obj}Type)\n"
            "    (holds ?a ?o)\n   )\n  )\n )\n)"
        )
    o, r = f"(objectType ?o {spec.obj}Type)", f"(receptacleType ?r {spec.recep}Type)"
    if spec.task_type == "pick_two_obj_and_place":
        return (
            "(:goal\n (and\n  (exists (?r - receptacle)\n   (exists (?o1 - object)\n    (and\n"
            f"     (objectType ?o1 {spec.obj}Type)\n     {r}\n     (inReceptacle ?o1 ?r)\n"
            "     (exists (?o2 - object)\n      (and\n       (not (= ?o1 ?o2))\n"
            f"       (objectType ?o2 {spec.obj}Type)\n       {r}\n       (inReceptacle ?o2 ?r)\n"
            "      )\n     )\n    )\n   )\n  )\n )\n)"
        )
    if spec.task_type in STATE_CHANGE:
        prop = STATE_CHANGE[spec.task_type][1]
        state = {"cleanable": "isClean", "heatable": "isHot", "coolable": "isCool"}[prop]
        body = f"({prop} ?o)\n     {o}\n     {r}\n     ({state} ?o)\n     (inReceptacle ?o ?r)"
    else:
        body = f"(inReceptacle ?o ?r)\n     {o}\n     {r}"
    return f"(:goal\n (and\n  (exists (?r - receptacle)\n   (exists (?o - object)\n    (and\n     {body}\n    )\n   )\n  )\n )\n)"


def _problem(world: pw.World, spec: _Spec, targets: list[pw.Thing]) -> str:
    tables = pw.alfred_tables()
    scene, things = world.scene, world.things
    locations = sorted({r.loc for r in scene.receptacles} | {t.loc for t in things} | {world.start})
    objects = (
        ["agent1 - agent"]
        + [f"{t} - object" for t in tables["otypes"]]
        + [f"{t}Type - otype" for t in tables["otypes"]]
        + [f"{t}Type - rtype" for t in tables["rtypes"]]
        + [f"{t.oid} - object" for t in sorted(things, key=lambda t: t.oid)]
        + [f"{r.rid} - receptacle" for r in scene.receptacles]
        + [f"{loc} - location" for loc in locations]
    )
    name = "plan_procgen_" + hashlib.sha1(repr(spec).encode("utf-8")).hexdigest()[:16]
    init = "\n        ".join(_facts(world, spec, targets))
    objs = "\n        ".join(objects)
    return f"\n(define (problem {name})\n(:domain alfred)\n(:objects\n        {objs}\n        )\n\n(:init\n        {init}\n        )\n\n{_goal_pddl(spec)}\n)\n"


def _facts(world: pw.World, spec: _Spec, targets: list[pw.Thing]) -> list[str]:
    tables = pw.alfred_tables()
    scene, things = world.scene, sorted(world.things, key=lambda t: t.oid)
    facts = [f"(receptacleType {r.rid} {r.rtype}Type)" for r in scene.receptacles]
    facts += [f"(objectType {t.oid} {t.otype}Type)" for t in things]
    facts += [f"(isReceptacleObject {t.oid})" for t in things if t.otype in tables["movable"]]
    facts += [f"(openable {r.rid})" for r in scene.receptacles if r.rtype in pw.OPENABLE]
    facts.append(f"(atLocation agent1 {world.start})")
    for prop in ("cleanable", "heatable", "coolable", "sliceable", "toggleable"):
        facts += [f"({prop} {t.oid})" for t in things if t.otype in tables[prop]]
    fridges = {r.rid for r in scene.receptacles_of("Fridge")}
    facts += [f"(isCool {t.oid})" for t in targets if t.rid in fridges]  # ALFRED: target objects in a fridge
    facts += [f"(pickupable {t.oid})" for t in things if t.otype not in pw.NON_PICKUPABLE]
    facts += [f"(inReceptacle {t.oid} {t.rid})" for t in things if t.rid is not None]
    facts += [f"(receptacleAtLocation {r.rid} {r.loc})" for r in scene.receptacles]
    facts += [f"(objectAtLocation {t.oid} {t.loc})" for t in things]
    present = sorted({t.otype for t in things})
    for rtype in sorted(scene.receptacle_types):
        holds = tables["holds"].get(rtype, frozenset())
        facts += [f"(canContain {rtype}Type {otype}Type)" for otype in present if otype in holds]
    return facts


# ----------------------------------------------------------------------------------------------- walkthrough


class _Expert:
    """Writes the expert's commands, opening closed receptacles before taking from or putting into them.

    ``go to R`` is not admissible where the agent already stands at R's location, so the expert skips it there.
    """

    def __init__(self, world: pw.World) -> None:
        self.world, self.names, self.opened, self.actions = world, world.names(), set(), []
        self.at = world.start

    def go(self, rid: str) -> None:
        loc = self.world.receptacle(rid).loc
        if loc != self.at:
            self.actions.append(f"go to {self.names[rid]}")
            self.at = loc

    def reach_inside(self, rid: str) -> None:
        self.go(rid)
        if self.world.receptacle(rid).rtype in pw.OPENABLE and rid not in self.opened:
            self.opened.add(rid)
            self.actions.append(f"open {self.names[rid]}")

    def take(self, thing: pw.Thing) -> None:
        assert thing.rid is not None
        self.reach_inside(thing.rid)
        self.actions.append(f"take {self.names[thing.oid]} from {self.names[thing.rid]}")

    def put(self, thing: pw.Thing, rid: str) -> None:
        self.reach_inside(rid)
        self.actions.append(f"move {self.names[thing.oid]} to {self.names[rid]}")

    def apply(self, verb: str, thing: pw.Thing, rid: str) -> None:
        self.go(rid)
        self.actions.append(f"{verb} {self.names[thing.oid]} with {self.names[rid]}")


def _walkthrough(world: pw.World, spec: _Spec, targets: list[pw.Thing], rng: random.Random) -> list[str]:
    expert = _Expert(world)
    scene = world.scene
    if spec.task_type == "look_at_obj_in_light":
        lamp = next(t for t in world.things if t.otype == _LAMP and t.rid is not None)
        expert.take(rng.choice(targets))
        expert.go(lamp.rid)  # type: ignore[arg-type]
        expert.actions.append(f"use {expert.names[lamp.oid]}")
        return expert.actions
    dest = rng.choice(scene.receptacles_of(spec.recep)).rid
    chosen = rng.sample(targets, 2) if spec.task_type == "pick_two_obj_and_place" else [rng.choice(targets)]
    for thing in chosen:
        expert.take(thing)
        if spec.task_type in STATE_CHANGE:
            station, _, verb = STATE_CHANGE[spec.task_type]
            expert.apply(verb, thing, rng.choice(scene.receptacles_of(station)).rid)
        expert.put(thing, dest)
    return expert.actions


# ----------------------------------------------------------------------------------------------- verification

INTRO_HEAD = "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, you see "


def verify_walkthrough(task: Task) -> dict[str, Any]:
    """Play ``task``'s walkthrough in the real engine; return what happened (needs ``empg-gym[alfworld]``).

    The game is generated afresh (not read from the cache) into a temporary folder and loaded as alfworld loads
    its games: ``textworld.start`` with the ``AlfredDemangler`` and ``AlfredInfos`` wrappers. The result says
    whether every walkthrough action was admissible, whether the last one (and only the last) won, and whether
    the first observation reads like ALFWorld's.
    """
    import tempfile
    import time

    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    game = generate_game(task)
    with tempfile.TemporaryDirectory(prefix="empg-procgen-") as tmp:
        path = Path(tmp, "game.tw-pddl")
        path.write_bytes(game_bytes(game))
        start = time.perf_counter()
        infos = textworld.EnvInfos(won=True, admissible_commands=True)
        env = textworld.start(str(path), request_infos=infos, wrappers=[AlfredDemangler(), AlfredInfos])
        try:
            state = env.reset()
            load_s = time.perf_counter() - start
            result = _replay(env, state, game["walkthrough"])
        finally:
            env.close()
    intro = state.feedback.strip()
    result.update(
        task_id=task.task_id, load_s=round(load_s, 3), steps=len(game["walkthrough"]),
        intro_ok=intro.startswith(INTRO_HEAD) and intro.endswith(f"Your task is to: {task.goal}"),
    )
    result["ok"] = result["won"] and result["intro_ok"] and result["error"] is None
    return result


def _replay(env: Any, state: Any, walkthrough: list[str]) -> dict[str, Any]:
    for i, action in enumerate(walkthrough):
        if action not in state["admissible_commands"]:
            return {"won": False, "error": f"step {i}: {action!r} not admissible"}
        state, _, _ = env.step(action)
        if state["won"] and i < len(walkthrough) - 1:
            return {"won": False, "error": f"step {i}: won before the walkthrough ended"}
    return {"won": bool(state["won"]), "error": None if state["won"] else "walkthrough ended without a win"}
