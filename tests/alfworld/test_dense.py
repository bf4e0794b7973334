"""EMPG-ALFWorld-v0's dense rewards: Φ = the share of the goal's stages the engine's current facts satisfy."""

from __future__ import annotations

import gymnasium as gym
import pytest

pytest.importorskip("alfworld")
pytest.importorskip("textworld")

import empg_gym  # noqa: E402, F401
from empg_gym.envs.alfworld.oracle import Goal, World  # noqa: E402
from empg_gym.envs.alfworld.potential import goal_progress  # noqa: E402

TASK_TYPES = ("pick_and_place_simple", "look_at_obj_in_light", "pick_clean_then_place_in_recep",
              "pick_heat_then_place_in_recep", "pick_cool_then_place_in_recep", "pick_two_obj_and_place")

#: Stages of each task type's goal: held (+ heated / cooled / cleaned) + placed; two objects; held + lamp + win.
STAGES = dict(zip(TASK_TYPES, (2, 3, 3, 3, 3, 4), strict=True))


def _world(*facts):
    return World.from_facts(list(facts), {})


APPLES = [("objecttype", ("a1", "appletype")), ("objecttype", ("a2", "appletype")), ("pickupable", ("a1",)),
          ("pickupable", ("a2",)), ("heatable", ("a1",)), ("receptacletype", ("bin1", "garbagecantype")),
          ("receptacletype", ("bin2", "garbagecantype")), ("receptacletype", ("table1", "diningtabletype")),
          ("inreceptacle", ("a1", "table1")), ("inreceptacle", ("a2", "table1"))]
HEAT = Goal("place", "appletype", recep_type="garbagecantype", obj_facts=frozenset({"heatable", "ishot"}))
TWO = Goal("place", "appletype", count=2, recep_type="garbagecantype")


def test_heat_goal_stages_by_hand():
    """Held (1), hot (1), in the bin hot (all 3); a hot apple in the bin counts whole, a cold one nothing."""
    assert goal_progress(_world(*APPLES), HEAT) == 0.0
    assert goal_progress(_world(*APPLES, ("holds", ("agent1", "a1"))), HEAT) == pytest.approx(1 / 3)
    assert goal_progress(_world(*APPLES, ("holds", ("agent1", "a1")), ("ishot", ("a1",))), HEAT) == pytest.approx(2 / 3)
    assert goal_progress(_world(*APPLES, ("ishot", ("a1",))), HEAT) == pytest.approx(1 / 3)  # hot, put down
    assert goal_progress(_world(*APPLES, ("inreceptacle", ("a1", "bin1"))), HEAT) == 0.0  # in the bin, not hot
    assert goal_progress(_world(*APPLES, ("ishot", ("a1",)), ("inreceptacle", ("a1", "bin1"))), HEAT) == 1.0
    # a2 is not heatable (a static fact of the goal): holding it, even hot, is no progress
    assert goal_progress(_world(*APPLES, ("holds", ("agent1", "a2")), ("ishot", ("a2",))), HEAT) == 0.0


def test_two_objects_must_share_one_receptacle():
    one_in_each = _world(*APPLES, ("inreceptacle", ("a1", "bin1")), ("inreceptacle", ("a2", "bin2")))
    assert goal_progress(one_in_each, TWO) == pytest.approx(2 / 4)
    holding_the_second = _world(*APPLES, ("inreceptacle", ("a1", "bin1")), ("holds", ("agent1", "a2")))
    assert goal_progress(holding_the_second, TWO) == pytest.approx(3 / 4)
    both = _world(*APPLES, ("inreceptacle", ("a1", "bin2")), ("inreceptacle", ("a2", "bin2")))
    assert goal_progress(both, TWO) == 1.0


def test_look_goal_stages_by_hand():
    goal = Goal("look", "booktype", lamp_type="desklamptype")
    facts = [("objecttype", ("b1", "booktype")), ("objecttype", ("l1", "desklamptype")), ("toggleable", ("l1",))]
    assert goal_progress(_world(*facts), goal) == 0.0
    assert goal_progress(_world(*facts, ("holds", ("agent1", "b1"))), goal) == pytest.approx(1 / 3)
    assert goal_progress(_world(*facts, ("istoggled", ("l1",))), goal) == pytest.approx(1 / 3)
    assert goal_progress(_world(*facts, ("holds", ("agent1", "b1")), ("istoggled", ("l1",))), goal) == pytest.approx(2 / 3)


@pytest.fixture(scope="module")
def envs():
    sparse = gym.make("EMPG-ALFWorld-v0", source="procedural", split="eval_in_distribution")
    dense = gym.make("EMPG-ALFWorld-v0", source="procedural", split="eval_in_distribution", reward_mode="dense")
    yield sparse, dense
    sparse.close()
    dense.close()


def _one_per_type(env):
    seen, out = set(), []
    for task_id in env.unwrapped.task_ids():
        task_type = env.unwrapped.manifest.get(task_id).task_type
        if task_type not in seen:
            seen.add(task_type)
            out.append(task_id)
    return out


def test_oracle_episodes_rise_stage_by_stage_and_sum_to_one(envs):
    """Per task type: the oracle's cumulative dense reward never falls, each potential is a multiple of 1/stages,
    it rises at least once before the win, and the episode sums to the win's 1; rewards and infos match sparse."""
    sparse, dense = envs
    ids = _one_per_type(dense)
    assert {dense.unwrapped.manifest.get(t).task_type for t in ids} == set(TASK_TYPES)
    for task_id in ids:
        obs_s, info_s = sparse.reset(options={"task_id": task_id})
        obs_d, info_d = dense.reset(options={"task_id": task_id})
        assert obs_s == obs_d and {k: v for k, v in info_d.items() if k != "potential"} == info_s
        plan = dense.unwrapped.oracle_actions()
        stages = STAGES[dense.unwrapped.manifest.get(task_id).task_type]
        phi, total, potentials = info_d["potential"], 0.0, []
        for action in plan:
            s = sparse.step(action)
            d = dense.step(action)
            assert s[0] == d[0] and s[2:4] == d[2:4] and {k: v for k, v in d[4].items() if k != "potential"} == s[4]
            assert d[1] == pytest.approx(s[1] + d[4]["potential"] - phi, abs=1e-12) and d[1] >= 0.0, (task_id, action)
            phi = d[4]["potential"]
            potentials.append(phi)
            total += d[1]
        assert d[2] and d[4]["won"], task_id
        assert total == pytest.approx(1.0, abs=1e-12), task_id
        assert max(potentials[:-1]) > info_d["potential"], task_id
        assert all(abs(p * stages - round(p * stages)) < 1e-9 for p in potentials), (task_id, potentials)


def test_invalid_actions_and_looks_earn_nothing(envs):
    _, dense = envs
    _, info = dense.reset(options={"task_id": _one_per_type(dense)[0]})
    for action in ("dance", "look", "inventory"):
        _, reward, _, _, step_info = dense.step(action)
        assert reward == 0.0 and step_info["potential"] == info["potential"]
