"""The ALFWorld engine's memory stays bounded across games, with the same text and wins (issue #15)."""

from __future__ import annotations

import doctest
import json

import gymnasium as gym
import pytest

pytest.importorskip("alfworld")
pytest.importorskip("textworld")

import empg_gym  # noqa: E402, F401
from empg_gym.envs.alfworld import engine as E  # noqa: E402
from empg_gym.errors import ConfigError  # noqa: E402


def valid_seen_ids(env, n: int) -> list[str]:
    ids = env.unwrapped.task_ids("eval_in_distribution")
    return ids[:: len(ids) // n][:n]


def play_walkthrough(env, task_id: str) -> list[tuple[str, list[str]]]:
    obs, info = env.reset(options={"task_id": task_id})
    seen = [(obs, info["admissible_actions"])]
    for action in env.unwrapped.oracle_actions():
        obs, reward, terminated, truncated, info = env.step(action)
        seen.append((obs, info["admissible_actions"]))
    assert terminated and info["won"], task_id
    return seen


@pytest.fixture
def real_env(alfworld_data):
    env = gym.make("EMPG-ALFWorld-v0", data_path=alfworld_data, split="eval_in_distribution")
    yield env
    env.close()


def test_interned_facts_stay_bounded_and_textworld_is_untouched(real_env, monkeypatch):
    import mementos.core

    table = E.BoundedInternTable(max_items=2_000)
    monkeypatch.setattr(E, "_INTERNED", table)
    outside = len(mementos.core._memento_cache)
    sizes = []
    for task_id in valid_seen_ids(real_env, 4):
        play_walkthrough(real_env, task_id)
        sizes.append(len(table))
    assert max(sizes) <= 2_000 and sizes[-1] > 0
    assert len(mementos.core._memento_cache) == outside  # textworld's own table got nothing from the engine
    assert mementos.core._memento_cache is not table


def test_a_tiny_intern_table_changes_nothing_but_memory(real_env, monkeypatch):
    task_id = valid_seen_ids(real_env, 3)[2]
    normal = play_walkthrough(real_env, task_id)
    monkeypatch.setattr(E, "_INTERNED", E.BoundedInternTable(max_items=64))
    assert play_walkthrough(real_env, task_id) == normal


def test_translation_cache_keeps_at_most_max_items_in_memory(alfworld_data, tmp_path):
    from fast_downward import pddl2sas

    games = sorted((alfworld_data / "json_2.1.1" / "valid_seen").glob("*/*/game.tw-pddl"))[::40][:3]
    data = [json.loads(p.read_text()) for p in games]
    cache = E.TranslationCache(max_items=2, directory=tmp_path)
    first = [cache.translate(pddl2sas, g["pddl_domain"], g["pddl_problem"])[1] for g in data]
    assert (cache.misses, cache.hits, len(cache._items)) == (3, 0, 2)
    assert len(list(tmp_path.rglob("*.pkl.z"))) == 3
    again = cache.translate(pddl2sas, data[0]["pddl_domain"], data[0]["pddl_problem"])[1]  # evicted: read from disk
    assert again == first[0] and (cache.misses, cache.hits, len(cache._items)) == (3, 1, 2)
    memory_only = E.TranslationCache(max_items=1)
    for g in data[:2] + data[:1]:
        memory_only.translate(pddl2sas, g["pddl_domain"], g["pddl_problem"])
    assert (memory_only.misses, memory_only.hits, len(memory_only._items)) == (3, 0, 1)


def test_bounded_intern_table_rejects_a_useless_size():
    with pytest.raises(ConfigError, match="max_items must be at least 2, got 1"):
        E.BoundedInternTable(max_items=1)


def test_module_doctests():
    assert doctest.testmod(E).failed == 0
