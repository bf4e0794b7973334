"""The procedural ALFWorld generator: determinism, manifest splits, goal text, world plausibility, engine wins."""

from __future__ import annotations

import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tarfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("alfworld")
pytest.importorskip("textworld")

from empg_gym.envs.alfworld import procgen as P  # noqa: E402
from empg_gym.envs.alfworld import procgen_world as pw  # noqa: E402
from empg_gym.errors import ConfigError  # noqa: E402
from empg_gym.tasks import SPLITS, Task  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EVAL_SPLITS = ("eval_in_distribution", "eval_out_of_distribution")


@pytest.fixture(scope="module")
def manifest():
    return P.load_manifest()


def first_of_each_type(tasks, n):
    seen, out = Counter(), []
    for t in tasks:
        if seen[t.task_type] < n:
            seen[t.task_type] += 1
            out.append(t)
    return out


def sample_tasks(manifest):
    """One task of each type from each split: 18 tasks."""
    return [t for s in SPLITS for t in first_of_each_type(manifest.tasks(s), 1)]


def facts(problem: str, name: str) -> list[list[str]]:
    init = problem.split("(:init", 1)[1].split("(:goal", 1)[0]
    return [m.split() for m in re.findall(rf"\({name} ([^()]*)\)", init)]


def types_of(problem: str) -> tuple[dict[str, str], dict[str, str]]:
    otype = {o: t.removesuffix("Type") for o, t in facts(problem, "objectType")}
    rtype = {r: t.removesuffix("Type") for r, t in facts(problem, "receptacleType")}
    return otype, rtype


# ----------------------------------------------------------------------------------------------- determinism


def test_generate_is_deterministic_in_process(manifest):
    for task in sample_tasks(manifest):
        assert P.game_bytes(P.generate_game(task)) == P.game_bytes(P.generate_game(task))


def test_generate_is_identical_in_another_process(manifest):
    tasks = sample_tasks(manifest)
    here = [hashlib.sha256(P.game_bytes(P.generate_game(t))).hexdigest() for t in tasks]
    code = (
        "import hashlib, json, sys\n"
        "from empg_gym.envs.alfworld import procgen as P\n"
        "from empg_gym.tasks import Task\n"
        "tasks = [Task.from_json(d) for d in json.load(sys.stdin)]\n"
        "print(json.dumps([hashlib.sha256(P.game_bytes(P.generate_game(t))).hexdigest() for t in tasks]))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps([t.to_json() for t in tasks]),
                         capture_output=True, text=True, env=env, check=True, cwd=REPO)
    assert json.loads(out.stdout) == here


def test_embedded_manifest_is_rebuilt_identically(manifest):
    rebuilt = P.build_manifest(manifest.meta["per_type"], exclude=manifest.meta["excluded"])
    assert rebuilt.content_hash == manifest.content_hash


def test_game_file_generates_once_and_caches(tmp_path, monkeypatch, manifest):
    monkeypatch.setenv("EMPG_GYM_CACHE", str(tmp_path))
    task = manifest.tasks("eval_in_distribution")[0]
    path = P.game_file(task)
    assert tmp_path in path.parents and path.name == "game.tw-pddl"
    assert f"v{P.PROCGEN_VERSION}" in path.parts
    assert path.read_bytes() == P.game_bytes(P.generate_game(task))
    stamp = path.stat().st_mtime_ns
    assert P.game_file(task) == path and path.stat().st_mtime_ns == stamp
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_game_file_on_a_cold_cache_survives_threads_racing(tmp_path, monkeypatch, manifest):
    # issue #21 (2.8): temp names made of pid + content hash collided between two threads of one verl worker, so
    # one thread's os.replace found its temp file already moved and raised
    import threading

    monkeypatch.setenv("EMPG_GYM_CACHE", str(tmp_path))
    task = manifest.tasks("eval_in_distribution")[1]
    barrier, paths, errors = threading.Barrier(8), [], []
    game_bytes = P.game_bytes

    def in_step(game):  # every thread has found the cache cold before any writes
        body = game_bytes(game)
        barrier.wait()
        return body

    monkeypatch.setattr(P, "game_bytes", in_step)

    def play() -> None:
        try:
            paths.append(P.game_file(task))
        except Exception as exc:  # noqa: BLE001  (collected, asserted below)
            errors.append(exc)

    threads = [threading.Thread(target=play) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(set(paths)) == 1
    assert paths[0].read_bytes() == game_bytes(P.generate_game(task))
    assert not [p for p in paths[0].parent.iterdir() if p.name.endswith(".tmp")]


def test_atomic_write_bytes_many_writers_one_whole_file(tmp_path):
    import threading

    from empg_gym.tasks import atomic_write_bytes

    target, payloads = tmp_path / "blob", [bytes([i]) * 100_000 for i in range(16)]
    threads = [threading.Thread(target=atomic_write_bytes, args=(target, b)) for b in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert target.read_bytes() in payloads and [p.name for p in tmp_path.iterdir()] == ["blob"]
    assert oct(target.stat().st_mode & 0o777) == "0o644"


def test_bad_tasks_get_clear_errors():
    with pytest.raises(ConfigError, match=r"not a procedural ALFWorld task: its data lacks \['task_type'"):
        P.generate_game(Task("x", "pick_and_place_simple", "put a cup in sink.", {}))
    with pytest.raises(ConfigError, match=r"Unknown ALFWorld task type 'pick_and_burn'"):
        P.task_options(24, "pick_and_burn")
    with pytest.raises(ConfigError, match=r"is not a valid look_at_obj_in_light task in scene 24"):
        P.make_task("train", "look_at_obj_in_light", scene=24, seed=0, obj="Apple", recep="DeskLamp", template=0)
    with pytest.raises(ConfigError, match=r"Scene 99 is not an ALFRED floor plan"):
        pw.room_type(99)
    with pytest.raises(ConfigError, match=r"cannot name a cache path"):
        P.game_file(Task("procedural/../../etc", "pick_and_place_simple", "g", {}))


# ----------------------------------------------------------------------------------------------- manifest


def test_manifest_identity_sizes_and_balance(manifest):
    assert (manifest.family, manifest.name, manifest.version, manifest.source) == (
        "alfworld", "alfworld-procedural", P.PROCGEN_VERSION, "procedural")
    sizes = manifest.sizes()
    assert sizes["train"] >= 2000 and sizes["eval_in_distribution"] >= 200 and sizes["eval_out_of_distribution"] >= 200
    for split in SPLITS:
        counts = Counter(t.task_type for t in manifest.tasks(split))
        assert set(counts) == set(P.TASK_TYPES)
        assert len(set(counts.values())) == 1, (split, counts)
    assert P.MANIFEST_FILE.stat().st_size < 1_000_000


def test_manifest_records_full_eval_verification(manifest):
    ver = manifest.meta["verification"]
    for split in EVAL_SPLITS:
        n = len(manifest.tasks(split))
        assert ver[split] == {"games": n, "verified": n, "won": n}
    assert ver["train"]["verified"] >= 60 and ver["train"]["won"] == ver["train"]["verified"]


def test_task_ids_mirror_alfworld_names(manifest):
    pattern = re.compile(r"^procedural/(?P<split>\w+)/(?P<type>\w+)-(?P<obj>\w+)-None-(?P<recep>\w+)-(?P<scene>\d+)/s\d{6,}$")
    for split in SPLITS:
        for t in manifest.tasks(split):
            m = pattern.match(t.task_id)
            assert m, t.task_id
            assert (m["split"], m["type"], m["obj"], m["recep"], int(m["scene"])) == (
                split, t.task_type, t.data["obj"], t.data["recep"], t.data["scene"])


def test_splits_disjoint_seeds_and_held_out_scenes(manifest):
    scenes = {s: {t.data["scene"] for t in manifest.tasks(s)} for s in SPLITS}
    seeds = {s: {t.data["seed"] for t in manifest.tasks(s)} for s in SPLITS}
    assert not seeds["train"] & seeds["eval_in_distribution"]
    assert scenes["eval_in_distribution"] <= scenes["train"]
    assert not scenes["eval_out_of_distribution"] & (scenes["train"] | scenes["eval_in_distribution"])
    rooms = Counter(pw.room_type(s) for s in scenes["eval_out_of_distribution"])
    assert set(rooms) == {"Kitchen", "LivingRoom", "Bedroom", "Bathroom"}
    assert set(P.UNSEEN_SCENES) >= scenes["eval_out_of_distribution"]


def test_held_out_scenes_are_unseen_in_real_alfworld_train(shared_data):
    names = tarfile.open(shared_data / "alfworld" / "json_2.1.1-train.tar.xz").getnames()
    real_train_scenes = {int(n.split("/")[2].rsplit("-", 1)[1]) for n in names if n.count("/") >= 3}
    assert len(real_train_scenes) > 100
    assert not real_train_scenes & set(P.UNSEEN_SCENES)
    assert real_train_scenes | set(P.UNSEEN_SCENES) == set(pw.all_scenes())


def test_goal_text_comes_from_alfworld_templates(manifest):
    from alfworld.gen import goal_library

    for task_type in P.TASK_TYPES:
        assert list(P.TEMPLATES[task_type]) == goal_library.gdict[task_type]["templates"]
    for split in SPLITS:
        for t in manifest.tasks(split):
            d = t.data
            fields = {"obj": d["obj"].lower(), "recep": d["recep"].lower(), "toggle": (d["toggle"] or "").lower()}
            allowed = {tpl.format(**fields) + "." for tpl in goal_library.gdict[t.task_type]["templates"]}
            assert t.goal in allowed, t.task_id


# ----------------------------------------------------------------------------------------------- game content


def test_game_has_the_real_file_shape(manifest, shared_data):
    real = json.loads(next((shared_data / "alfworld" / "json_2.1.1").glob("*/*/*/game.tw-pddl")).read_text())
    wheel = pw.wheel_dir() / "data"
    for task in sample_tasks(manifest):
        game = P.generate_game(task)
        assert list(game) == list(real) and game["solvable"] is True
        assert game["pddl_domain"] == (wheel / "alfred.pddl").read_text()
        assert game["grammar"] == (wheel / "alfred.twl2").read_text().replace("UNKNOWN GOAL", task.goal[:-1])
        problem = game["pddl_problem"]
        assert "(:domain alfred)" in problem and "(atLocation agent1 loc_bar_" in problem
        for rid, rtype in types_of(problem)[1].items():
            assert rid.startswith(rtype.removesuffix("Basin") + "_bar_")
            assert rid.endswith(f"_bar_{rtype}") == rtype.endswith("Basin"), rid


def test_objects_only_in_receptacles_that_can_hold_them(manifest):
    tables = pw.alfred_tables()
    for task in [t for s in SPLITS for t in first_of_each_type(manifest.tasks(s), 4)]:
        problem = P.generate_game(task)["pddl_problem"]
        otype, rtype = types_of(problem)
        pickupable = {o for (o,) in facts(problem, "pickupable")}
        can = {(r.removesuffix("Type"), o.removesuffix("Type")) for r, o in facts(problem, "canContain")}
        for o, r in facts(problem, "inReceptacle"):
            if o in pickupable:
                assert otype[o] in tables["holds"][rtype[r]], (task.task_id, o, r)
                assert (rtype[r], otype[o]) in can
        for prop in ("heatable", "coolable", "cleanable", "sliceable"):
            assert {otype[o] for (o,) in facts(problem, prop)} <= tables[prop]
        d = task.data
        targets = [o for o, t in otype.items() if t == d["obj"]]
        assert len(targets) >= (2 if task.task_type == "pick_two_obj_and_place" else 1)
        if task.task_type != "look_at_obj_in_light":
            assert (d["recep"], d["obj"]) in can
            start = {rtype[r] for o, r in facts(problem, "inReceptacle") if o in targets}
            assert d["recep"] not in start, task.task_id  # the goal does not hold at the start


def game_stats(game: dict) -> tuple[int, int, int, bool]:
    problem = game["pddl_problem"]
    otype, rtype = types_of(problem)
    return len(otype), len(rtype), len(game["walkthrough"]), any(a.startswith("open ") for a in game["walkthrough"])


def test_games_are_as_rich_as_real_ones(manifest, shared_data):
    real = [json.loads(p.read_text()) for p in sorted((shared_data / "alfworld" / "json_2.1.1").glob("*/*/*/game.tw-pddl"))]
    ours = [P.generate_game(t) for t in first_of_each_type(manifest.tasks("eval_in_distribution"), 5)]
    r_stats, o_stats = [game_stats(g) for g in real], [game_stats(g) for g in ours]
    for i, what in enumerate(("objects", "receptacles", "walkthrough steps", "games with a closed container")):
        r_mean = statistics.mean(s[i] for s in r_stats)
        o_mean = statistics.mean(s[i] for s in o_stats)
        upper = float("inf") if i == 3 else 1.6 * r_mean  # more closed containers than the real games is fine
        assert 0.6 * r_mean <= o_mean <= upper, (what, o_mean, r_mean)
    spread = [len({r for _, r in facts(g["pddl_problem"], "inReceptacle")}) for g in ours]
    assert min(spread) >= 3 and statistics.mean(spread) >= 6  # objects lie in several receptacles


# ----------------------------------------------------------------------------------------------- real engine


def _verify(task_json: dict) -> dict:
    return P.verify_walkthrough(Task.from_json(task_json))


@pytest.mark.slow
@pytest.mark.parametrize("split", EVAL_SPLITS)
def test_walkthroughs_win_in_the_real_engine(manifest, split):
    tasks = first_of_each_type(manifest.tasks(split), 10)
    assert len(tasks) == 60 and Counter(t.task_type for t in tasks) == {tt: 10 for tt in P.TASK_TYPES}
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_verify, [t.to_json() for t in tasks]))
    failed = [(r["task_id"], r["error"], r["intro_ok"]) for r in results if not r["ok"]]
    assert not failed
