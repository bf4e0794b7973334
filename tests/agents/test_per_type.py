"""Per-task-type results for every family, on the embedded task sets (and real Deep Search files)."""

from __future__ import annotations

import csv
import json
from collections import defaultdict

import gymnasium as gym
import pytest

import empg_gym  # noqa: F401  (registers the ids)
from empg_gym.agents.per_type import (
    annotate,
    family_of,
    per_type_csv_rows,
    per_type_lines,
    per_type_metrics,
    per_type_rows,
)


def _episodes(env_id: str, split: str, won_every: int = 3) -> list[dict]:
    """One record per task of ``split``: won every ``won_every``-th, score 1 when won else 0.25 (a partial score)."""
    env = gym.make(env_id)
    manifest = env.unwrapped.manifest
    env.close()
    out = []
    for i, task in enumerate(manifest.tasks(split)):
        won = i % won_every == 0
        out.append(annotate({"task_id": task.task_id, "task_type": task.task_type, "won": won,
                             "score": 1.0 if won else 0.25}, family_of(env_id), task, manifest.source, {}))
    return out


def _by_hand(episodes: list[dict], key) -> dict[str, tuple[int, float]]:
    groups = defaultdict(list)
    for ep in episodes:
        groups[key(ep)].append(float(ep["won"]))
    return {k: (len(v), sum(v) / len(v)) for k, v in groups.items()}


def test_alfworld_six_types_under_the_papers_names():
    eps = _episodes("EMPG-ALFWorld-v0", "eval_in_distribution")
    rows = per_type_rows(eps, "alfworld")
    assert [r.label for r in rows] == ["all", "pick", "look", "clean", "heat", "cool", "pick2"]
    names = {"pick_and_place_simple": "pick", "look_at_obj_in_light": "look", "pick_two_obj_and_place": "pick2",
             "pick_clean_then_place_in_recep": "clean", "pick_heat_then_place_in_recep": "heat",
             "pick_cool_then_place_in_recep": "cool"}
    expected = _by_hand(eps, lambda ep: names[ep["task_type"]])
    for r in rows[1:]:
        assert (r.n, r.values["success"]) == expected[r.label]
        assert set(r.values) == {"success"}
    assert rows[0].n == len(eps) == 240
    assert rows[0].values["success"] == sum(ep["won"] for ep in eps) / len(eps)


def test_a_record_without_facets_falls_back_to_its_task_type():
    old = [{"task_type": "pick_cool_then_place_in_recep", "won": True, "score": 1.0}]
    assert per_type_metrics(old, "alfworld") == {"all/success": 1.0, "cool/success": 1.0}
    assert per_type_metrics(old, "custom") == {"all/success": 1.0, "pick_cool_then_place_in_recep/success": 1.0}


def test_webshop_mean_score_and_success_per_goal_category():
    eps = _episodes("EMPG-WebShop-v0", "eval_in_distribution", won_every=4)
    rows = per_type_rows(eps, "webshop")
    assert [r.label for r in rows] == ["all"] + [f"category={c}" for c in
                                                 sorted({t["task_type"] for t in eps})]
    for r in rows[1:]:
        group = [ep for ep in eps if ep["task_type"] == r.label.split("=")[1]]
        assert r.n == len(group) == 32
        assert r.values["score"] == pytest.approx(sum(ep["score"] for ep in group) / len(group))
        assert r.values["success"] == pytest.approx(sum(ep["score"] == 1.0 for ep in group) / len(group))
        assert r.values["score"] > r.values["success"]  # the failed goals' partial scores count in the mean score


def test_deepsearch_em_and_f1_per_dataset_and_hop_count():
    eps = _episodes("EMPG-DeepSearch-v0", "eval_in_distribution") + _episodes("EMPG-DeepSearch-v0",
                                                                                "eval_out_of_distribution")
    for i, ep in enumerate(eps):  # f1 >= em: a wrong answer may still share tokens with the gold one
        ep.update({"em": ep["score"], "f1": 1.0 if ep["won"] else (0.5 if i % 2 else 0.0)})
    rows = {r.label: r for r in per_type_rows(eps, "deepsearch")}
    assert list(rows) == ["all", "dataset=generated", "hops=1", "hops=2", "hops=3"]
    assert rows["dataset=generated"].n == rows["all"].n == 400
    env = gym.make("EMPG-DeepSearch-v0")
    hops = {t.task_id: t.data["hops"] for s in ("eval_in_distribution", "eval_out_of_distribution")
            for t in env.unwrapped.manifest.tasks(s)}
    env.close()
    for h in (1, 2, 3):
        group = [ep for ep in eps if hops[ep["task_id"]] == h]
        assert rows[f"hops={h}"].n == len(group) > 0
        assert rows[f"hops={h}"].values["em"] == pytest.approx(sum(ep["em"] for ep in group) / len(group))
        assert rows[f"hops={h}"].values["f1"] == pytest.approx(sum(ep["f1"] for ep in group) / len(group))


def test_deepsearch_answer_scores_come_from_the_final_info():
    env = gym.make("EMPG-DeepSearch-v0", split="eval_in_distribution")
    _, info = env.reset(seed=0)
    for action in env.unwrapped.oracle_actions():
        _, _, terminated, _, info = env.step(action)
    task = env.unwrapped.manifest.get(info["task_id"])
    env.close()
    assert terminated and info["won"]
    ep = annotate({"task_type": task.task_type, "won": True, "score": info["score"]}, "deepsearch", task,
                  "embedded", info)
    assert (ep["em"], ep["f1"]) == (1.0, 1.0)
    assert ep["facets"] == {"dataset": "generated", "hops": str(task.data["hops"])}


def test_deepsearch_real_files_are_grouped_by_their_dataset(tmp_path):
    from empg_gym.envs.deepsearch.data import flashrag_manifest

    files = {}
    for name, n in (("nq_test", 3), ("hotpotqa_dev", 2)):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"id": str(i), "question": f"q{i}?", "golden_answers": ["a"]}) + "\n"
                                for i in range(n)))
        files[name] = path
    manifest = flashrag_manifest({"eval_in_distribution": [files["nq_test"], files["hotpotqa_dev"]]})
    eps = [annotate({"task_type": t.task_type, "won": i == 0, "score": float(i == 0)}, "deepsearch", t,
                    manifest.source, {"em": float(i == 0), "f1": 0.5 if i else 1.0})
           for i, t in enumerate(manifest.tasks("eval_in_distribution"))]
    metrics = per_type_metrics(eps, "deepsearch")
    assert metrics == {"all/em": 0.2, "all/f1": 0.6, "dataset=hotpotqa/em": 0.0, "dataset=hotpotqa/f1": 0.5,
                       "dataset=nq/em": pytest.approx(1 / 3), "dataset=nq/f1": pytest.approx(2 / 3)}


def test_keyrooms_success_per_number_of_doors():
    eps = _episodes("EMPG-KeyRooms-v0", "eval_in_distribution") + _episodes("EMPG-KeyRooms-v0",
                                                                              "eval_out_of_distribution")
    rows = per_type_rows(eps, "toy")
    assert [r.label for r in rows] == ["all"] + [f"doors={d}" for d in range(1, 7)]
    expected = _by_hand(eps, lambda ep: "doors=" + ep["task_type"].removeprefix("doors_"))
    assert {r.label: (r.n, r.values["success"]) for r in rows[1:]} == expected
    csv_rows = per_type_csv_rows(eps, "toy", env="EMPG-KeyRooms-v0")
    assert csv_rows[0] == {"env": "EMPG-KeyRooms-v0", "type": "all", "n": 200,
                           "success": sum(ep["won"] for ep in eps) / 200}


def test_per_type_lines_reads_a_bench_folder(tmp_path):
    cfg = {"envs": ["EMPG-KeyRooms-v0"], "algos": ["grpo", "empg"], "seeds": [0, 1],
           "eval_splits": ["eval_in_distribution", "eval_out_of_distribution"]}
    (tmp_path / "bench.json").write_text(json.dumps({"config": cfg, "labels": cfg["algos"]}))
    for algo, won in (("grpo", [1, 0]), ("empg", [1, 1])):
        for seed in (0, 1):
            folder = tmp_path / "runs" / "EMPG-KeyRooms-v0" / algo / f"seed{seed}"
            folder.mkdir(parents=True)
            (folder / "evals.jsonl").write_text(json.dumps({"update": 4, "split": "eval_in_distribution"}) + "\n")
            eps = [{"facets": {"doors": "1"}, "won": bool(won[0]), "score": 1.0},
                   {"facets": {"doors": "2"}, "won": bool(won[1]) and seed == 0, "score": 0.0, "mode": "greedy"},
                   {"facets": {"doors": "2"}, "won": True, "score": 1.0, "mode": "sampled"}]  # not in the tables
            (folder / "eval_eval_in_distribution.jsonl").write_text("".join(json.dumps(e) + "\n" for e in eps))
            before = [{"facets": {"doors": "1"}, "won": seed == 1, "score": 0.0},
                      {"facets": {"doors": "2"}, "won": False, "score": 0.0}]
            (folder / "eval_eval_in_distribution_update0.jsonl").write_text(
                "".join(json.dumps(e) + "\n" for e in before))
    lines = per_type_lines(tmp_path)
    text = "\n".join(lines)
    assert "## Results per task type" in text
    assert "eval_out_of_distribution" not in text  # no run logged that split
    assert "| algo | seeds | all (n=2) | doors=1 (n=1) | doors=2 (n=1) |" in lines
    assert "| grpo | 2 | 0.500 [0.50–0.50] | 1.000 [1.00–1.00] | 0.000 [0.00–0.00] |" in lines
    assert "| empg | 2 | 0.750 [0.50–1.00] | 1.000 [1.00–1.00] | 0.500 [0.00–1.00] |" in lines
    table = lines.index("| algo | seeds | all (n=2) | doors=1 (n=1) | doors=2 (n=1) |")
    assert lines[table + 2] == "| untrained (update 0) | 2 | 0.250 [0.00–0.50] | 0.500 [0.00–1.00] | 0.000 [0.00–0.00] |"
    rows = list(csv.DictReader(open(tmp_path / "results_per_type.csv", encoding="utf-8")))
    assert len(rows) == 2 * 2 * 2 * 3  # algos x seeds x (update 0, final) x (all, doors=1, doors=2)
    empg_final = [r for r in rows if (r["algo"], r["seed"], r["update"], r["type"]) == ("empg", "1", "4", "doors=2")]
    assert empg_final == [{"env": "EMPG-KeyRooms-v0", "split": "eval_in_distribution", "algo": "empg", "seed": "1",
                           "update": "4", "type": "doors=2", "n": "1", "success": "0.0"}]
    (tmp_path / "runs" / "EMPG-KeyRooms-v0" / "grpo" / "seed0" / "eval_eval_in_distribution.jsonl").unlink()
    assert "| grpo | 1 | 0.500 | 1.000 | 0.000 |" in per_type_lines(tmp_path)


def test_evaluate_policy_reports_and_logs_per_type(tmp_path):
    from empg_gym.agents.config import TrainConfig
    from empg_gym.agents.evaluate import evaluate_policy
    from empg_gym.agents.trainer import build_policy

    cfg = TrainConfig(env_id="EMPG-KeyRooms-v0", model="tiny-actions", max_new_tokens=1, require_think=False,
                      max_steps=3, progress=False)
    log = tmp_path / "eval.jsonl"
    result = evaluate_policy(build_policy(cfg), cfg, n_tasks=6, log_path=log)
    episodes = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert len(episodes) == 6
    assert result == pytest.approx({**result, **per_type_metrics(episodes, "toy")})
    assert "all/success" in result and any(k.startswith("doors=") for k in result)
    ep = episodes[0]
    assert ep["facets"] == {"doors": ep["task_type"].removeprefix("doors_")} and ep["goal"]
    assert {"observation", "response", "action", "action_valid", "format_valid", "reward"} <= set(ep["steps"][0])


def test_rollout_trajectories_carry_deepsearch_answer_scores():
    import torch

    from empg_gym.agents.policy import Generation
    from empg_gym.agents.rollout import RolloutConfig, collect_rollouts

    env = gym.make("EMPG-DeepSearch-v0", split="eval_in_distribution")
    task = env.unwrapped.manifest.tasks("eval_in_distribution")[0]
    gold = task.data["golden_answers"][0]

    class Answers:  # answers each prompt with the next of its texts, whatever the prompt
        device = torch.device("cpu")

        def __init__(self, texts):
            self.texts = list(texts)

        def generate(self, prompts, config=None, *, generator=None, **_):
            one = torch.ones(1, dtype=torch.long)
            return [Generation(one, one, torch.zeros(1), torch.zeros(1), self.texts.pop(0), "stop") for _ in prompts]

    envs = [env, gym.make("EMPG-DeepSearch-v0", split="eval_in_distribution")]
    texts = [f"<think>sure</think><answer>{gold}</answer>", f"<think>guess</think><answer>{gold} junior</answer>"]
    batch = collect_rollouts(Answers(texts), envs, RolloutConfig(group_size=2, split="eval_in_distribution",
                                                                 progress=False), task_ids=[task.task_id])
    for e in envs:
        e.close()
    right, wrong = batch.trajectories
    assert right.answer_scores == {"em": 1.0, "f1": 1.0} and right.won
    assert wrong.answer_scores["em"] == 0.0 and 0.0 < wrong.answer_scores["f1"] < 1.0


def test_real_webshop_goals_are_grouped_by_their_category(shared_data, tmp_path):
    # WebShop's own products and instructions (data_path-style real catalog): the goal category is WebShop's
    import json

    from empg_gym.agents.per_type import per_type_metrics, task_facets

    docs = [json.loads(x) for x in (shared_data / "webshop/data/resources_100_documents.jsonl").read_text().splitlines()]
    items = tmp_path / "items_shuffle_100.json"
    items.write_text(json.dumps([d["product"] for d in docs]))
    env = gym.make("EMPG-WebShop-v0", split="eval_in_distribution",
                   catalog={"source": "real", "items_path": str(items),
                            "attrs_path": str(shared_data / "webshop/data/items_ins_v2_1000.json")})
    manifest = env.unwrapped.manifest
    tasks = manifest.tasks("eval_in_distribution")[:300]
    episodes = [{"facets": task_facets("webshop", t, manifest.source), "won": i % 2 == 0, "score": 1.0 if i % 2 == 0
                 else 0.5} for i, t in enumerate(tasks)]
    env.close()
    assert manifest.source == "real"
    assert {e["facets"]["category"] for e in episodes} >= {"fashion", "electronics", "beauty"}
    assert all(e["facets"]["category"] == t.data["category"] for e, t in zip(episodes, tasks, strict=True))
    metrics = per_type_metrics(episodes, "webshop")
    assert metrics["all/success"] == 0.5 and metrics["all/score"] == 0.75
    assert "category=fashion/score" in metrics and "category=electronics/success" in metrics
