"""EMPG-ALFWorld-v0's oracle off the walkthrough: plans from random states win, no plan gives a clear error (#15)."""

from __future__ import annotations

import copy
import doctest
import random

import gymnasium as gym
import pytest

pytest.importorskip("alfworld")
pytest.importorskip("textworld")

import empg_gym  # noqa: E402, F401
from empg_gym.envs.alfworld import oracle  # noqa: E402
from empg_gym.envs.alfworld.oracle import NoPlanError, parse_goal  # noqa: E402
from empg_gym.errors import ConfigError, EmpgGymError  # noqa: E402


def one_per_type(env, split: str, n: int = 1, skip: int = 0) -> list[str]:
    """The first ``n`` task ids of each task type in ``split`` (after skipping ``skip`` of each)."""
    seen: dict[str, int] = {}
    out = []
    for task_id in env.unwrapped.task_ids(split):
        task_type = env.unwrapped.manifest.get(task_id).task_type
        seen[task_type] = seen.get(task_type, 0) + 1
        if skip < seen[task_type] <= skip + n:
            out.append(task_id)
    return out


def random_prefix(env, task_id: str, rng: random.Random, longest: int = 10) -> dict | None:
    """Reset to ``task_id`` and play 1..``longest`` random admissible actions; ``None`` if that won by chance."""
    obs, info = env.reset(options={"task_id": task_id})
    for _ in range(rng.randint(1, longest)):
        obs, reward, terminated, truncated, info = env.step(rng.choice(info["admissible_actions"]))
        if terminated:
            return None
    return info


def assert_plan_wins(env, plan: list[str], context: object) -> None:
    assert plan, context
    for i, action in enumerate(plan):
        obs, reward, terminated, truncated, info = env.step(action)
        assert info["action_valid"], (context, action, obs)
        assert terminated == (i == len(plan) - 1), (context, plan, i)  # wins on the last action, not before
    assert info["won"] and reward == 1.0 and env.unwrapped.oracle_actions() == []


def check_random_prefixes(env, split: str, ids: list[str], prefixes: int, seed: int) -> int:
    rng = random.Random(seed)
    planned = 0
    for task_id in ids:
        for _ in range(prefixes):
            info = random_prefix(env, task_id, rng)
            if info is None:
                continue
            history = list(env.unwrapped._engine.history)
            admissible = info["admissible_actions"]
            plan = env.unwrapped.oracle_actions()
            # Checking the plan in the engine left the episode where it was.
            assert env.unwrapped._engine.history == history and env.unwrapped.admissible_actions() == admissible
            assert_plan_wins(env, plan, (task_id, history))
            planned += 1
    return planned


@pytest.fixture(scope="module")
def procedural_env():
    env = gym.make("EMPG-ALFWorld-v0", source="procedural")
    yield env
    env.close()


@pytest.fixture(scope="module")
def real_env(alfworld_data):
    env = gym.make("EMPG-ALFWorld-v0", data_path=alfworld_data, split="eval_in_distribution")
    yield env
    env.close()


# ----------------------------------------------------------------------------------------------- plans win


@pytest.mark.parametrize(("seed", "split"), [(1022, "eval_out_of_distribution"), (1030, "eval_in_distribution")])
def test_issue_15_states_get_a_plan(procedural_env, seed, split):
    """The two states of issue #15 where fast-downward's replanning never returned."""
    obs, info = procedural_env.reset(seed=seed, options={"split": split})
    procedural_env.step("look")
    assert_plan_wins(procedural_env, procedural_env.unwrapped.oracle_actions(), info["task_id"])


def test_random_prefixes_procedural(procedural_env):
    ids = one_per_type(procedural_env, "eval_out_of_distribution")
    assert len(ids) == 6
    assert check_random_prefixes(procedural_env, "eval_out_of_distribution", ids, prefixes=1, seed=15) >= 5


def test_random_prefixes_real(real_env):
    ids = one_per_type(real_env, "eval_in_distribution")
    assert len(ids) == 6
    assert check_random_prefixes(real_env, "eval_in_distribution", ids, prefixes=1, seed=15) >= 5


@pytest.mark.slow
def test_random_prefixes_more_games(procedural_env, alfworld_data):
    """Two more games of each type per source, two prefixes each: 48 states."""
    ids = one_per_type(procedural_env, "eval_in_distribution", n=2, skip=1)
    assert check_random_prefixes(procedural_env, "eval_in_distribution", ids, prefixes=2, seed=16) >= 20
    env = gym.make("EMPG-ALFWorld-v0", data_path=alfworld_data, split="train")
    try:
        ids = one_per_type(env, "train", n=2, skip=40)
        assert check_random_prefixes(env, "train", ids, prefixes=2, seed=17) >= 20
    finally:
        env.close()


def test_plan_after_holding_the_wrong_object(real_env):
    """The agent holds an object the task does not need: the plan puts it down first."""
    ids = [t for t in real_env.unwrapped.task_ids() if "pick_heat_then_place" in t]
    obs, info = real_env.reset(options={"task_id": ids[0]})
    goal_obj = parse_goal(real_env.unwrapped._engine.pddl_problem).obj_type.removesuffix("type")
    for target in sorted(a.removeprefix("go to ") for a in info["admissible_actions"] if a.startswith("go to ")):
        obs, reward, terminated, truncated, info = real_env.step(f"go to {target}")
        takes = [a for a in info["admissible_actions"] if a.startswith("take ") and not a.startswith(f"take {goal_obj} ")]
        if takes:
            real_env.step(takes[0])
            break
    else:
        pytest.fail("no receptacle holds an object to take")
    plan = real_env.unwrapped.oracle_actions()
    assert plan[0].startswith("move ") or plan[1].startswith(("move ", "open "))
    assert_plan_wins(real_env, plan, ids[0])


# ----------------------------------------------------------------------------------------------- errors


def test_oracle_before_reset():
    env = gym.make("EMPG-ALFWorld-v0", source="procedural")
    try:
        with pytest.raises(ConfigError, match=r"Call reset\(\) before oracle_actions\(\)"):
            env.unwrapped.oracle_actions()
    finally:
        env.close()


def test_dead_end_in_a_real_game(alfworld_data):
    """Taking the teddy bear in this game leaves the agent's hands full for good: no receptacle can hold it."""
    env = gym.make("EMPG-ALFWorld-v0", data_path=alfworld_data, split="train")
    try:
        env.reset(options={"task_id": "train/look_at_obj_in_light-Laptop-None-DeskLamp-306/trial_T20190908_105734_354331"})
        for action in ["go to bed 1", "take teddybear 1 from bed 1", "go to desk 1"]:
            obs, reward, terminated, truncated, info = env.step(action)
            assert info["action_valid"], (action, obs)
        assert not [a for a in info["admissible_actions"] if a.startswith(("move ", "take "))]
        state = env.unwrapped._engine.state
        with pytest.raises(NoPlanError, match=r"hold a laptop where a toggled desklamp stands.* the agent holds "
                           r"teddybear 1, which no receptacle can take .* cannot pick up a laptop") as raised:
            env.unwrapped.oracle_actions()
        assert isinstance(raised.value, EmpgGymError)
        assert env.unwrapped._engine.state is state  # said without playing anything in the engine
    finally:
        env.close()


def _world_and_goal(env, task_type: str):
    task_id = next(t for t in env.unwrapped.task_ids() if env.unwrapped.manifest.get(t).task_type == task_type)
    env.reset(options={"task_id": task_id})
    engine = env.unwrapped._engine
    return oracle.World.from_facts(engine.facts(), engine.entity_names()), parse_goal(engine.pddl_problem)


def test_why_no_plan_names_what_is_missing(real_env):
    world, goal = _world_and_goal(real_env, "pick_heat_then_place_in_recep")
    obj, recep = goal.obj_type.removesuffix("type"), goal.recep_type.removesuffix("type")
    assert oracle.find_plans(world, goal)
    targets = [o for o, t in world.obj_type.items() if t == goal.obj_type]
    unmovable = copy.deepcopy(world)
    for o in targets:
        unmovable.props[o].discard("pickupable")
    assert oracle.find_plans(unmovable, goal) == []
    assert oracle.why_no_plan(unmovable, goal) == f"no {obj} can be picked up (none is pickupable and inside a receptacle)"
    no_room = copy.deepcopy(world)
    no_room.can_contain.discard((goal.recep_type, goal.obj_type))
    assert oracle.find_plans(no_room, goal) == []
    assert oracle.why_no_plan(no_room, goal) == f"a {recep} cannot contain a {obj} (no canContain fact)"
    no_microwave = copy.deepcopy(world)
    no_microwave.recep_type = {r: t for r, t in world.recep_type.items() if t != "microwavetype"}
    assert oracle.find_plans(no_microwave, goal) == []
    assert oracle.why_no_plan(no_microwave, goal) == "there is no microwave to make it hot"


def test_goal_of_another_shape_is_refused():
    problem = "(:goal (and (exists (?o - object) (and (objectType ?o AppleType) (isSliced ?o)))))"
    with pytest.raises(NoPlanError, match=r"cannot plan for this goal: it is not one type of object in one receptacle"):
        parse_goal(problem)
    with pytest.raises(NoPlanError, match=r"cannot plan for this goal: the goal uses '\(or "):
        parse_goal("(:goal (or (holds agent1 apple1) (holds agent1 apple2)))")
    with pytest.raises(NoPlanError, match=r"has no \(:goal \.\.\.\) section"):
        parse_goal("(define (problem p))")


# ----------------------------------------------------------------------------------------------- parts


def test_goals_of_the_six_task_types(real_env):
    expected = {
        "pick_and_place_simple": (1, frozenset()),
        "pick_two_obj_and_place": (2, frozenset()),
        "pick_heat_then_place_in_recep": (1, frozenset({"heatable", "ishot"})),
        "pick_cool_then_place_in_recep": (1, frozenset({"coolable", "iscool"})),
        "pick_clean_then_place_in_recep": (1, frozenset({"cleanable", "isclean"})),
    }
    for task_id in one_per_type(real_env, "eval_in_distribution"):
        task = real_env.unwrapped.manifest.get(task_id)
        real_env.reset(options={"task_id": task_id})
        goal = parse_goal(real_env.unwrapped._engine.pddl_problem)
        _, obj, _, recep, _ = task_id.split("/")[1].split("-")
        assert goal.obj_type == f"{obj.lower()}type", task_id
        if task.task_type == "look_at_obj_in_light":
            assert (goal.kind, goal.lamp_type) == ("look", f"{recep.lower()}type")
        else:
            assert (goal.kind, goal.recep_type) == ("place", f"{recep.lower()}type")
            assert (goal.count, goal.obj_facts) == expected[task.task_type]


def test_try_commands_restores_the_state(real_env):
    engine = real_env.unwrapped._engine
    obs, info = real_env.reset(options={"task_id": real_env.unwrapped.task_ids()[5]})
    first = real_env.unwrapped.oracle_actions()[0]
    real_env.step(first)
    before = (engine.history, sorted(engine.facts()), list(engine.state["admissible_commands"]))
    assert engine.try_commands(["look", "inventory"]) == (None, "its 2 commands end without winning")
    assert engine.try_commands(["look", "fly away"]) == (None, "'fly away' (step 2 of the plan) is not admissible there")
    assert (engine.history, sorted(engine.facts()), list(engine.state["admissible_commands"])) == before
    rest = real_env.unwrapped.oracle_actions()
    assert engine.try_commands(rest + ["look"]) == (len(rest), "")
    assert (engine.history, sorted(engine.facts())) == before[:2]


def test_module_doctests():
    assert doctest.testmod(oracle).failed == 0
