"""EMPG-ALFWorld-v0 on the real ALFWorld games: expert wins, text equal to alfworld's own engine, hostile input."""

from __future__ import annotations

import gymnasium as gym
import pytest

import empg_gym  # noqa: F401
from empg_gym.envs.alfworld.real_data import load_real_manifest
from empg_gym.errors import ConfigError, DataNotFoundError


def game_dirs(root, split_dir):
    return sorted(p.parent for p in (root / "json_2.1.1" / split_dir).glob("*/*/game.tw-pddl"))


HOSTILE = ["", "x" * 1_000_000, "go to\x00 drawer 1\x1b[2J", "prends la pomme 🍎 ünïcode", "<img src=x onerror=alert(1)>"]


@pytest.fixture(scope="module")
def real_env(alfworld_data):
    env = gym.make("EMPG-ALFWorld-v0", data_path=alfworld_data, split="eval_in_distribution")
    yield env
    env.close()


def _play_oracle(env, task_id):
    obs, info = env.reset(options={"task_id": task_id})
    steps = 0
    for action in env.unwrapped.oracle_actions():
        obs, reward, terminated, truncated, info = env.step(action)
        assert info["action_valid"], (task_id, action, obs)
        steps += 1
    return reward, terminated, info, steps


def test_manifest_of_real_games(alfworld_data):
    root = alfworld_data / "json_2.1.1"
    m = load_real_manifest(root, progress=False)
    assert m.sizes() == {"train": 3553, "eval_in_distribution": 140, "eval_out_of_distribution": 0}
    assert m.source == "real"
    tid = m.task_ids("eval_in_distribution")[0]
    assert tid.startswith("valid_seen/") and "/trial_" in tid
    assert m.get(tid).task_type in tid.split("/")[1]
    assert m.get(tid).goal.endswith(".") and "Your task is to" not in m.get(tid).goal
    # A second scan hits the cache and gives the same tasks.
    assert load_real_manifest(root).content_hash == m.content_hash


@pytest.mark.slow
def test_walkthrough_wins_every_valid_seen_game(real_env):
    ids = real_env.unwrapped.task_ids("eval_in_distribution")
    assert len(ids) == 140
    for task_id in ids:
        reward, terminated, info, _ = _play_oracle(real_env, task_id)
        assert reward == 1.0 and terminated and info["won"] and info["score"] == 1.0, task_id


@pytest.mark.slow
def test_walkthrough_wins_on_train_sample(alfworld_data):
    env = gym.make("EMPG-ALFWorld-v0", data_path=alfworld_data, split="train")
    try:
        ids = env.unwrapped.task_ids("train")[::35]
        assert len(ids) >= 100
        types = set()
        for task_id in ids:
            reward, terminated, info, _ = _play_oracle(env, task_id)
            assert reward == 1.0 and terminated and info["won"], task_id
            types.add(info["task_type"])
        assert len(types) == 6
    finally:
        env.close()


def test_planner_oracle_after_a_detour(real_env):
    ids = real_env.unwrapped.task_ids("eval_in_distribution")
    obs, info = real_env.reset(options={"task_id": ids[10]})
    first = real_env.unwrapped.oracle_actions()[0]
    detour = next(a for a in info["admissible_actions"] if a.startswith("go to") and a != first)
    real_env.step(detour)
    plan = real_env.unwrapped.oracle_actions()  # off the walkthrough: the task-aware planner plans from here
    assert plan
    for action in plan:
        obs, reward, terminated, truncated, info = real_env.step(action)
    assert terminated and info["won"]


def _raw_engine(path):
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos

    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile"])
    return textworld.start(str(path), request_infos=infos, wrappers=[AlfredDemangler(), AlfredInfos])


def test_text_equals_alfworld_engine(alfworld_data):
    """Observations, admissible actions, feedback and wins equal alfworld's own engine on 20 real games."""
    games = game_dirs(alfworld_data, "valid_seen")[::7][:20]
    assert len(games) == 20
    env = gym.make("EMPG-ALFWorld-v0", data_path=alfworld_data)
    try:
        for game in games:
            task_id = game.relative_to(alfworld_data / "json_2.1.1").as_posix()
            raw = _raw_engine(game / "game.tw-pddl")
            state = raw.reset()
            obs, info = env.reset(options={"task_id": task_id})
            assert obs == state.feedback
            assert info["admissible_actions"] == state["admissible_commands"]
            walkthrough = env.unwrapped.oracle_actions()
            actions = []
            for i, a in enumerate(walkthrough):
                actions += ["look", "xyzzy", a] if i % 3 == 0 else (["inventory", a] if i % 3 == 1 else [a])
            for action in actions:
                state, raw_reward, raw_done = raw.step(action)
                obs, reward, terminated, truncated, info = env.step(action)
                assert obs == state.feedback, (task_id, action)
                assert info["admissible_actions"] == state["admissible_commands"], (task_id, action)
                assert info["won"] == state["won"] and reward == float(raw_reward) and terminated == raw_done
            assert info["won"]
            raw.close()
    finally:
        env.close()


@pytest.mark.parametrize("action", HOSTILE)
def test_hostile_actions(real_env, action):
    ids = real_env.unwrapped.task_ids("eval_in_distribution")
    obs0, info0 = real_env.reset(options={"task_id": ids[3]})
    obs, reward, terminated, truncated, info = real_env.step(action)
    assert obs == "Nothing happens." and info["action_valid"] is False
    assert reward == 0.0 and not terminated and not truncated
    assert info["admissible_actions"] == info0["admissible_actions"]
    for a in real_env.unwrapped.oracle_actions():  # the game is still winnable from an unchanged state
        obs, reward, terminated, truncated, info = real_env.step(a)
    assert info["won"]


def test_step_limit_is_50(real_env):
    real_env.reset(seed=0)
    for i in range(50):
        obs, reward, terminated, truncated, info = real_env.step("look")
        assert truncated == (i == 49) and not terminated


def test_async_vector_env_plays_a_batch(alfworld_data):
    ids = None
    envs = gym.make_vec(
        "EMPG-ALFWorld-v0", num_envs=2, vectorization_mode="async", data_path=str(alfworld_data),
        split="eval_in_distribution",
    )
    try:
        obs, infos = envs.reset(seed=[1, 2])
        ids = list(infos["task_id"])
        assert all(o.startswith("-= Welcome to TextWorld, ALFRED! =-") for o in obs)
        plans = [list(p) for p in envs.call("oracle_actions")]
        done = [False, False]
        for t in range(max(map(len, plans))):
            actions = [p[t] if t < len(p) else "look" for p in plans]
            obs, rewards, terminated, truncated, infos = envs.step(actions)
            for i in range(2):
                if t == len(plans[i]) - 1:
                    assert terminated[i] and rewards[i] == 1.0, (ids[i], obs[i])
                    done[i] = True
        assert all(done)
    finally:
        envs.close()
    single = gym.make("EMPG-ALFWorld-v0", data_path=alfworld_data, split="eval_in_distribution")
    assert single.reset(seed=1)[1]["task_id"] == ids[0]
    single.close()


def test_data_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match="No ALFWorld games under"):
        gym.make("EMPG-ALFWorld-v0", data_path=tmp_path)
    with pytest.raises(ConfigError, match="Unknown source 'web'"):
        gym.make("EMPG-ALFWorld-v0", source="web")


def test_real_games_are_reported_under_the_papers_task_types(real_env):
    from empg_gym.agents.per_type import annotate, per_type_rows

    manifest = real_env.unwrapped.manifest
    tasks = manifest.tasks("eval_in_distribution")
    eps = [annotate({"task_type": t.task_type, "won": i % 2 == 0, "score": float(i % 2 == 0)}, "alfworld", t,
                    manifest.source, {}) for i, t in enumerate(tasks)]
    rows = per_type_rows(eps, "alfworld")
    assert rows[0].label == "all" and rows[0].n == len(tasks)
    assert {r.label for r in rows[1:]} == {
        {"pick_and_place_simple": "pick", "look_at_obj_in_light": "look", "pick_two_obj_and_place": "pick2",
         "pick_clean_then_place_in_recep": "clean", "pick_heat_then_place_in_recep": "heat",
         "pick_cool_then_place_in_recep": "cool"}[t.task_type] for t in tasks}
    assert sum(r.n for r in rows[1:]) == len(tasks)
