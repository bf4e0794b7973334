"""The ALFWorld potential for dense rewards: the share of the goal's stages the current facts satisfy.

A goal (:class:`~empg_gym.envs.alfworld.oracle.Goal`, parsed from the game's PDDL) is cut into stages that the
engine's facts show directly:

- **place** ``n`` objects in one receptacle of a type, each with facts ``F`` (the changing ones ``C ⊆ F``:
  ``isHot``, ``isCool``, ``isClean``, ``isSliced``): per object, *held* (1), each fact of ``C`` it has (1 each),
  and *in the receptacle with all of* ``F`` (the object's every stage at once, ``|C| + 2``). An object's stages
  count for the best ``n`` objects of the type (those with ``F``'s static facts, e.g. ``heatable``), for the best
  receptacle of the type;
- **look** (hold an object where a toggled lamp stands): *an object of the type held* (1), *a lamp of the type
  toggled* (1), out of 3 stages (the third is the win itself).

``Φ = stages done / stages``. It is 1 exactly when the goal holds, which ends the episode, so ``Φ < 1`` on every
state the agent acts in. The facts come from one pass over the engine's current PDDL state
(:meth:`AlfworldEngine.facts`), the same :class:`~empg_gym.envs.alfworld.oracle.World` the oracle plans over.
"""

from __future__ import annotations

from empg_gym.envs.alfworld.oracle import Goal, World

#: Object facts that actions make true (the rest of a goal's object facts, like ``heatable``, never change).
CHANGING_FACTS = frozenset({"ishot", "iscool", "isclean", "issliced"})


def goal_progress(w: World, g: Goal) -> float:
    """Return the share of goal ``g``'s stages that world ``w`` satisfies, in ``[0, 1]`` (see the module docstring).

    Example:
        >>> w = World.from_facts([("objecttype", ("apple1", "appletype")), ("pickupable", ("apple1",)),
        ...                       ("heatable", ("apple1",)), ("receptacletype", ("bin1", "garbagecantype")),
        ...                       ("holds", ("agent1", "apple1")), ("ishot", ("apple1",))], {})
        >>> g = Goal("place", "appletype", recep_type="garbagecantype", obj_facts=frozenset({"heatable", "ishot"}))
        >>> goal_progress(w, g)  # held and hot, not yet in the garbage can: 2 of 3 stages
        0.6666666666666666
    """
    if g.kind == "look":
        held = w.held is not None and w.obj_type.get(w.held) == g.obj_type
        lit = any(t == g.lamp_type and "istoggled" in w.props[o] for o, t in w.obj_type.items())
        return (held + lit) / 3
    changing = g.obj_facts & CHANGING_FACTS
    per_object = len(changing) + 2
    static = g.obj_facts - changing
    objs = [o for o, t in w.obj_type.items() if t == g.obj_type and static <= w.props[o]]
    dests: list[str | None] = [r for r, t in w.recep_type.items() if t == g.recep_type] or [None]
    best = 0
    for dest in dests:
        stages = sorted(
            (
                per_object
                if dest in w.obj_in[o] and g.obj_facts <= w.props[o]
                else (o == w.held) + len(changing & w.props[o])
                for o in objs
            ),
            reverse=True,
        )
        best = max(best, sum(stages[: g.count]))
    return best / (g.count * per_object)
