"""The ALFWorld oracle: a planner for ALFWorld's goals over the engine's current facts, each plan checked in the engine.

Why not fast-downward: textworld's ``replan`` searches the whole ALFRED domain from the current state with
fast-downward inside the process. Once an agent leaves the walkthrough, some states made it run for minutes and
grow to gigabytes (issue #15: seed 1022 of ``eval_out_of_distribution`` after ``look``); a C search in-process can
be neither timed out nor capped.

What instead: every ALFWorld goal is one of two shapes (read from the game's PDDL goal, the form ALFWorld's goal
library writes):

- **place** ``n`` objects of a type, each with some facts (``isHot``, ``isCool``, ``isClean``, or static ones
  like ``heatable``), in one receptacle of a type (``pick_and_place_simple``, ``pick_two_obj_and_place`` and the
  three ``pick_*_then_place_in_recep`` types);
- **look**: hold an object of a type where a toggled lamp of a type stands (``look_at_obj_in_light``).

A plan is then a few subgoals: put down whatever the agent holds if it is not needed, go to an object, open its
receptacle if closed, take it, go to the microwave / fridge / sink basin and heat / cool / clean it, go to the
destination, open it if closed, move the object there; or take the object to the lamp and use it. The planner
reads the current facts (where the agent is, what it holds, what lies where, what is open, hot, cool, clean,
toggled), enumerates the choices (destination receptacle, which objects, in which order, which lamp), simulates
each choice on those facts, and sorts the plans by length. The work is bounded by the number of choices
(at most :data:`MAX_CANDIDATES` plans are simulated) and takes milliseconds.

Every plan is then played in the engine itself (:meth:`AlfworldEngine.try_commands`, which restores the state
afterwards by restarting and replaying the episode) and cut at the step that wins; the first of the
:data:`MAX_TRIALS` shortest plans that wins is returned. When no plan exists (no object of the type can be taken,
no receptacle of the type, no appliance, a goal of another shape) :class:`NoPlanError` says why, without running
the engine.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from empg_gym.envs.alfworld.engine import AlfworldEngine
from empg_gym.errors import EmpgGymError

#: Goal facts a command can make true on a held object: receptacle type that does it, and the command's verb.
TREATMENTS = {"ishot": ("microwavetype", "heat"), "iscool": ("fridgetype", "cool"), "isclean": ("sinkbasintype", "clean")}
#: Heating an object makes it not cool, and cooling makes it not hot (ALFWorld's domain).
_UNDOES = {"ishot": "iscool", "iscool": "ishot"}
#: Most plans simulated for one call (choices of destination x objects x order x lamp).
MAX_CANDIDATES = 20_000
#: Most plans played in the engine before giving up.
MAX_TRIALS = 3
_GOAL_START = re.compile(r"\(\s*:goal\b", re.IGNORECASE)


class NoPlanError(EmpgGymError, RuntimeError):
    """No action list wins the current ALFWorld game from its current state (the message says why)."""


# ----------------------------------------------------------------------------------------------- goal


@dataclass(frozen=True)
class Goal:
    """What an ALFWorld game asks for, read from its PDDL goal (names lower-case, as fast-downward reads them).

    Attributes:
        kind: ``"place"`` (objects in a receptacle) or ``"look"`` (hold an object by a toggled lamp).
        obj_type: The object type, e.g. ``"appletype"``.
        count: How many distinct objects of ``obj_type`` must be in the receptacle (place).
        recep_type: The receptacle type, e.g. ``"garbagecantype"`` (place).
        obj_facts: One-argument facts each placed object needs, e.g. ``{"heatable", "ishot"}`` (place).
        lamp_type: The lamp's object type, e.g. ``"desklamptype"`` (look).
    """

    kind: str
    obj_type: str
    count: int = 1
    recep_type: str = ""
    obj_facts: frozenset[str] = frozenset()
    lamp_type: str = ""

    def describe(self) -> str:
        """Return the goal in words, e.g. ``2 x cd (with iscool) in a drawer``."""
        obj = self.obj_type.removesuffix("type")
        if self.kind == "look":
            return f"hold a {obj} where a toggled {self.lamp_type.removesuffix('type')} stands"
        facts = f" (with {', '.join(sorted(self.obj_facts))})" if self.obj_facts else ""
        return f"{self.count} x {obj}{facts} in a {self.recep_type.removesuffix('type')}"


def _sexpr(text: str, start: int) -> list:  # type: ignore[type-arg]
    """Parse the parenthesised expression that starts at ``text[start]`` into nested lists of lower-case words."""
    tokens = re.findall(r"\(|\)|[^\s()]+", re.sub(r";[^\n]*", "", text[start:]).lower())
    stack: list[list] = [[]]  # type: ignore[type-arg]
    for token in tokens:
        if token == "(":
            stack.append([])
        elif token == ")":
            if len(stack) == 1:
                break
            done = stack.pop()
            stack[-1].append(done)
            if len(stack) == 1:
                return done
        else:
            stack[-1].append(token)
    raise NoPlanError("The game's PDDL goal is not a balanced expression; the game file is damaged.")


def _atoms(expr: list, distinct: set[frozenset[str]]) -> Iterator[tuple[str, ...]]:  # type: ignore[type-arg]
    """Yield the positive atoms of a goal made of ``and``/``exists``; record ``(not (= a b))`` in ``distinct``."""
    head = expr[0] if expr and isinstance(expr[0], str) else None
    if head == "and":
        for sub in expr[1:]:
            yield from _atoms(sub, distinct)
    elif head == "exists" and len(expr) == 3:
        yield from _atoms(expr[2], distinct)
    elif head == "not" and len(expr) == 2 and expr[1] and expr[1][0] == "=":
        distinct.add(frozenset(expr[1][1:]))
    elif head is not None and head not in ("not", "or", "forall", "imply", "when", "exists", "=") and all(
        isinstance(a, str) for a in expr
    ):
        yield tuple(expr)
    else:
        raise _unsupported(f"the goal uses {_show(expr)!r}")


def _show(expr: object) -> str:
    if isinstance(expr, list):
        return "(" + " ".join(_show(e) for e in expr) + ")"
    return str(expr)


def _unsupported(why: str) -> NoPlanError:
    return NoPlanError(
        f"The ALFWorld oracle cannot plan for this goal: {why}. It plans ALFWorld's six task types (place "
        "objects, optionally heated/cooled/cleaned, in a receptacle; or look at an object under a lamp); play "
        "the game's walkthrough (oracle_actions() right after reset) or your own agent instead."
    )


def parse_goal(problem: str) -> Goal:
    """Return the :class:`Goal` of a PDDL problem written in the form of ALFWorld's goal library.

    Example:
        >>> problem = '''(:goal (and (exists (?r - receptacle) (exists (?o - object) (and (heatable ?o)
        ...   (objectType ?o AppleType) (receptacleType ?r GarbageCanType) (isHot ?o) (inReceptacle ?o ?r))))))'''
        >>> parse_goal(problem).describe()
        '1 x apple (with heatable, ishot) in a garbagecan'

    Raises:
        NoPlanError: the problem has no goal, or a goal of another shape.
    """
    match = _GOAL_START.search(problem)
    if match is None:
        raise NoPlanError("The game's PDDL problem has no (:goal ...) section; the game file is damaged.")
    expr = _sexpr(problem, match.start())
    if len(expr) != 2:
        raise _unsupported(f"the goal section is {_show(expr)[:200]!r}")
    distinct: set[frozenset[str]] = set()
    atoms = list(_atoms(expr[1], distinct))
    otype = {a[1]: a[2] for a in atoms if a[0] == "objecttype" and len(a) == 3}
    rtype = {a[1]: a[2] for a in atoms if a[0] == "receptacletype" and len(a) == 3}
    holds = [a for a in atoms if a[0] == "holds"]
    if holds:
        toggled = [a[1] for a in atoms if a[0] == "istoggled"]
        held = holds[0][-1]
        if len(holds) != 1 or len(toggled) != 1 or held not in otype or toggled[0] not in otype:
            raise _unsupported("it holds an object but not as look_at_obj_in_light does")
        return Goal("look", obj_type=otype[held], lamp_type=otype[toggled[0]])
    placed = [a for a in atoms if a[0] == "inreceptacle" and len(a) == 3]
    objs = sorted({a[1] for a in placed})
    receps = {a[2] for a in placed}
    if not placed or len(receps) != 1 or set(otype) != set(objs) or len({otype[o] for o in objs}) != 1:
        raise _unsupported("it is not one type of object in one receptacle")
    (recep,) = receps
    if recep not in rtype:
        raise _unsupported("the receptacle has no type")
    if len(objs) > 1 and not all(frozenset(pair) in distinct for pair in itertools.combinations(objs, 2)):
        raise _unsupported("several objects are not required to be distinct")
    known = {("objecttype", 3), ("receptacletype", 3), ("inreceptacle", 3)}
    facts_by_obj = [frozenset(a[0] for a in atoms if len(a) == 2 and a[1] == o) for o in objs]
    other = [a for a in atoms if (a[0], len(a)) not in known and not (len(a) == 2 and a[1] in objs)]
    if other or len(set(facts_by_obj)) != 1:
        raise _unsupported(f"it also asks for {' '.join(map(_show, map(list, other)))[:200] or 'different facts per object'}")
    return Goal("place", obj_type=otype[objs[0]], count=len(objs), recep_type=rtype[recep], obj_facts=facts_by_obj[0])


# ----------------------------------------------------------------------------------------------- world


@dataclass
class World:
    """The facts of an ALFWorld state that plans depend on (PDDL ids; ``names`` maps them to command words)."""

    at: str | None
    held: str | None
    recep_loc: dict[str, str]
    recep_type: dict[str, str]
    openable: set[str]
    opened: set[str]
    obj_type: dict[str, str]
    obj_in: dict[str, set[str]]
    props: dict[str, set[str]]
    can_contain: set[tuple[str, str]]
    names: Mapping[str, str]

    @classmethod
    def from_facts(cls, facts: Iterable[tuple[str, tuple[str, ...]]], names: Mapping[str, str]) -> World:
        """Build the world from ``(predicate, args)`` facts (as :meth:`AlfworldEngine.facts` returns them)."""
        w = cls(None, None, {}, {}, set(), set(), {}, {}, {}, set(), names)
        unary: list[tuple[str, str]] = []
        for name, args in facts:
            if name == "atlocation" and len(args) == 2:
                w.at = args[1]
            elif name == "holds" and len(args) == 2:
                w.held = args[1]
            elif name == "receptacleatlocation":
                w.recep_loc[args[0]] = args[1]
            elif name == "receptacletype":
                w.recep_type[args[0]] = args[1]
            elif name == "openable":
                w.openable.add(args[0])
            elif name == "opened":
                w.opened.add(args[0])
            elif name == "objecttype":
                w.obj_type[args[0]] = args[1]
            elif name == "inreceptacle":
                w.obj_in.setdefault(args[0], set()).add(args[1])
            elif name == "cancontain":
                w.can_contain.add((args[0], args[1]))
            elif len(args) == 1:
                unary.append((name, args[0]))
        for o in w.obj_type:
            w.obj_in.setdefault(o, set())
            w.props[o] = set()
        for name, arg in unary:
            if arg in w.props:
                w.props[arg].add(name)
        return w

    def name(self, entity: str) -> str:
        """Return the word commands use for a PDDL id."""
        return self.names.get(entity, entity)

    def fits(self, obj: str, recep: str) -> bool:
        """Whether ``obj`` may be moved into ``recep`` (its ``canContain`` fact)."""
        return (self.recep_type.get(recep, ""), self.obj_type.get(obj, "")) in self.can_contain

    def takeable(self, obj: str) -> bool:
        """Whether ``obj`` is held, or lies in a receptacle and can be picked up."""
        return obj == self.held or ("pickupable" in self.props.get(obj, ()) and bool(self.obj_in.get(obj)))


class _Sim:
    """Writes a plan's commands while tracking the facts they change (a copy: the world is not touched)."""

    def __init__(self, w: World) -> None:
        self.w, self.at, self.held = w, w.at, w.held
        self.opened = set(w.opened)
        self._obj_in: dict[str, set[str]] = {}  # copies of the world's sets, made when a plan changes them
        self._props: dict[str, set[str]] = {}
        self.commands: list[str] = []

    def obj_in(self, obj: str) -> set[str]:
        if obj not in self._obj_in:
            self._obj_in[obj] = set(self.w.obj_in[obj])
        return self._obj_in[obj]

    def props(self, obj: str) -> set[str]:
        if obj not in self._props:
            self._props[obj] = set(self.w.props[obj])
        return self._props[obj]

    def go(self, recep: str) -> None:
        loc = self.w.recep_loc[recep]
        if loc != self.at:  # "go to R" is not admissible where the agent already stands
            self.commands.append(f"go to {self.w.name(recep)}")
            self.at = loc

    def reach_inside(self, recep: str) -> None:
        self.go(recep)
        if recep in self.w.openable and recep not in self.opened:
            self.commands.append(f"open {self.w.name(recep)}")
            self.opened.add(recep)

    def _cost(self, recep: str) -> tuple[int, str]:
        closed = recep in self.w.openable and recep not in self.opened
        return (self.w.recep_loc[recep] != self.at) + closed, self.w.name(recep)

    def take(self, obj: str, keep: str = "") -> bool:
        """Take ``obj``, from another receptacle than ``keep`` where it lies in several (it stays in the rest)."""
        sources = [r for r in self.obj_in(obj) if r in self.w.recep_loc]
        if not sources or "pickupable" not in self.props(obj):
            return False
        recep = min(sources, key=lambda r: (r == keep, *self._cost(r)))
        self.reach_inside(recep)
        self.commands.append(f"take {self.w.name(obj)} from {self.w.name(recep)}")
        self.obj_in(obj).discard(recep)
        self.held = obj
        return True

    def put(self, obj: str, recep: str) -> bool:
        if not self.w.fits(obj, recep) or recep not in self.w.recep_loc:
            return False
        self.reach_inside(recep)
        self.commands.append(f"move {self.w.name(obj)} to {self.w.name(recep)}")
        self.obj_in(obj).add(recep)
        self.held = None
        return True

    def drop(self) -> bool:
        """Put the held object in the nearest receptacle that takes it."""
        obj = self.held
        spots = [r for r in self.w.recep_loc if obj is not None and self.w.fits(obj, r)]
        return obj is not None and bool(spots) and self.put(obj, min(spots, key=self._cost))

    def hold(self, obj: str, keep: str = "") -> bool:
        if self.held == obj:
            return True
        if self.held is not None and not self.drop():
            return False
        return self.take(obj, keep)

    def treat(self, obj: str, fact: str) -> bool:
        rtype, verb = TREATMENTS[fact]
        stations = [r for r, t in self.w.recep_type.items() if t == rtype and r in self.w.recep_loc]
        if not stations:
            return False
        station = min(stations, key=self._cost)
        self.go(station)
        self.commands.append(f"{verb} {self.w.name(obj)} with {self.w.name(station)}")
        self.props(obj).add(fact)
        self.props(obj).discard(_UNDOES.get(fact, ""))
        return True

    def use(self, lamp: str) -> bool:
        spots = [r for r in self.obj_in(lamp) if r in self.w.recep_loc]
        if not spots:
            return False
        self.go(min(spots, key=self._cost))
        if "istoggled" not in self.props(lamp):
            self.commands.append(f"use {self.w.name(lamp)}")
        return True


def _place_plans(w: World, g: Goal) -> Iterator[list[str]]:
    needed = g.obj_facts & TREATMENTS.keys()
    if {"ishot", "iscool"} <= needed:
        return
    static = g.obj_facts - needed
    objs = [o for o, t in sorted(w.obj_type.items()) if t == g.obj_type and static <= w.props[o]]
    for dest in sorted(r for r, t in w.recep_type.items() if t == g.recep_type and r in w.recep_loc):
        done = [o for o in objs if dest in w.obj_in[o] and g.obj_facts <= w.props[o]]
        rest = [o for o in objs if o not in done and w.takeable(o) and w.fits(o, dest)]
        need = g.count - len(done)
        if need <= 0:
            continue
        for chosen in itertools.permutations(rest, need):
            if w.held in chosen and chosen[0] != w.held:
                continue
            sim = _Sim(w)
            ok = all(  # an object that lies in several receptacles, dest among them, is still "in" dest when held
                sim.hold(o, keep=dest)
                and all(sim.treat(o, f) for f in sorted(needed - sim.props(o)))
                and (dest in sim.obj_in(o) or sim.put(o, dest))
                for o in chosen
            )
            if ok:
                yield sim.commands


def _look_plans(w: World, g: Goal) -> Iterator[list[str]]:
    lamps = [o for o, t in sorted(w.obj_type.items()) if t == g.lamp_type and "toggleable" in w.props[o]]
    objs = [o for o, t in sorted(w.obj_type.items()) if t == g.obj_type and w.takeable(o)]
    for lamp, obj in itertools.product(lamps, objs):
        sim = _Sim(w)
        if sim.hold(obj) and sim.use(lamp):
            yield sim.commands


def why_no_plan(w: World, g: Goal) -> str:
    """Say which part of the goal no object or receptacle of the current state can provide."""
    obj = g.obj_type.removesuffix("type")
    if not any(t == g.obj_type for t in w.obj_type.values()):
        return f"there is no {obj} in this game"
    if not any(t == g.obj_type and w.takeable(o) for o, t in w.obj_type.items()):
        return f"no {obj} can be picked up (none is pickupable and inside a receptacle)"
    held = w.held
    if held is not None and w.obj_type.get(held) != g.obj_type and not any(w.fits(held, r) for r in w.recep_loc):
        return (
            f"the agent holds {w.name(held)}, which no receptacle can take (the game has no canContain fact for "
            f"it), so its hands stay full and it cannot pick up a {obj}"
        )
    if g.kind == "look":
        return f"no toggleable {g.lamp_type.removesuffix('type')} stands in a receptacle"
    recep = g.recep_type.removesuffix("type")
    if not any(t == g.recep_type for t in w.recep_type.values()):
        return f"there is no {recep} in this game"
    if (g.recep_type, g.obj_type) not in w.can_contain:
        return f"a {recep} cannot contain a {obj} (no canContain fact)"
    for fact in sorted(g.obj_facts & TREATMENTS.keys()):
        if not any(t == TREATMENTS[fact][0] for t in w.recep_type.values()):
            return f"there is no {TREATMENTS[fact][0].removesuffix('type')} to make it {fact.removeprefix('is')}"
    if {"ishot", "iscool"} <= g.obj_facts:
        return "an object cannot be hot and cool at once"
    return f"fewer than {g.count} {obj} that have {sorted(g.obj_facts)} or can get them"


def find_plans(w: World, g: Goal) -> list[list[str]]:
    """Return the distinct plans the planner finds for goal ``g`` in world ``w``, shortest first.

    At most :data:`MAX_CANDIDATES` choices are simulated; an empty list means no plan exists (see
    :func:`why_no_plan`).
    """
    found = _look_plans(w, g) if g.kind == "look" else _place_plans(w, g)
    unique = {tuple(p) for p in itertools.islice(found, MAX_CANDIDATES)}
    return [list(p) for p in sorted(unique, key=lambda p: (len(p), p))]


def plan(engine: AlfworldEngine, task_id: str = "") -> list[str]:
    """Return commands that win the engine's game from its current state, checked in the engine.

    Raises:
        NoPlanError: no plan wins from here; the message says why.
    """
    where = f" (task {task_id!r})" if task_id else ""
    goal = parse_goal(engine.pddl_problem)
    world = World.from_facts(engine.facts(), engine.entity_names())
    plans = find_plans(world, goal)
    if not plans:
        raise NoPlanError(
            f"No plan reaches the goal ({goal.describe()}){where} from the current state: {why_no_plan(world, goal)}. "
            "The game cannot be won from here; reset the env (or pick another task)."
        )
    failures = []
    for commands in plans[:MAX_TRIALS]:
        won_after, why = engine.try_commands(commands)
        if won_after is not None:
            return commands[:won_after]
        failures.append(f"{commands} failed: {why}")
    raise NoPlanError(
        f"None of the {len(failures)} shortest plans for the goal ({goal.describe()}){where} won when played in "
        f"the engine: {'; '.join(failures)}. Please report this game and state (env.unwrapped._engine.history)."
    )
