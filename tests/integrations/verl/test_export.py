"""`empg-gym export-verl` writes rows that verl's own RL dataset class loads, covering the whole split."""

from __future__ import annotations

import io
import os

import gymnasium as gym
import pytest

if os.environ.get("EMPG_GYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401  (the verl venv must import verl: fail, never skip)
else:
    pytest.importorskip("verl", reason="verl is not installed (the verl tests run in .venv-verl: make test-verl)")

from omegaconf import OmegaConf  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402
from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn  # noqa: E402

from empg_gym.cli import main  # noqa: E402
from empg_gym.errors import ConfigError  # noqa: E402
from empg_gym.integrations.verl import EpisodeSpec, LoopSettings, episode_rows, write_parquet  # noqa: E402


def load(path, tokenizer, tmp_path, max_prompt_length=100_000):
    config = OmegaConf.create({"prompt_key": "prompt", "max_prompt_length": max_prompt_length,
                               "filter_overlong_prompts": True, "filter_overlong_prompts_workers": 1,
                               "cache_dir": str(tmp_path / "verl-cache")})
    return RLHFDataset(data_files=str(path), tokenizer=tokenizer, config=config)


@pytest.mark.parametrize("env_id,split,n_tasks", [
    ("EMPG-KeyDoor-v0", "train", None),
    ("EMPG-DeepSearch-v0", "eval_out_of_distribution", None),
    ("EMPG-WebShop-v0", "eval_in_distribution", None),
    # ALFWorld translates each game's PDDL on its first reset: a whole split takes minutes on a cold cache.
    ("EMPG-ALFWorld-v0", "eval_out_of_distribution", 5),
])
def test_cli_rows_load_with_verls_dataset_and_cover_the_split(harness, tmp_path, env_id, split, n_tasks):
    out = io.StringIO()
    path = tmp_path / "rows.parquet"
    limit = ["--tasks", str(n_tasks)] if n_tasks else []
    assert main(["export-verl", "--env", env_id, "--split", split, "--out", str(path), "--repeat", "2", *limit],
                out=out) == 0
    tasks = gym.make(env_id).unwrapped.task_ids(split)[:n_tasks]
    assert f"Wrote {2 * len(tasks)} verl rows" in out.getvalue()

    dataset = load(path, harness.tokenizer, tmp_path)
    assert len(dataset) == 2 * len(tasks)
    items = [dataset[i] for i in range(len(dataset))]
    assert [it["extra_info"]["task_id"] for it in items] == tasks + tasks  # the whole split, in order, twice
    assert [it["extra_info"]["index"] for it in items] == list(range(2 * len(tasks)))
    first = items[0]
    assert first["agent_name"] == "empg_gym" and first["data_source"] == f"empg_gym/{env_id}/{split}"
    assert first["raw_prompt"][0]["role"] == "user" and first["index"] == 0
    spec = EpisodeSpec.from_row(first)  # what GymAgentLoop reads from verl's kwargs
    assert (spec.env_id, spec.task_id, spec.seed, dict(spec.env_kwargs)) == (env_id, tasks[0], 0, {})
    assert EpisodeSpec.from_row(items[len(tasks) + 1]).seed == 1  # a repeated row replays its task's seed
    # verl's dataloader collates the rows (what the trainer feeds the agent-loop workers).
    batch = next(iter(DataLoader(dataset, batch_size=4, collate_fn=collate_fn)))
    assert list(batch["agent_name"]) == ["empg_gym"] * 4


def test_the_first_prompt_is_the_one_the_agent_loop_sends(harness):
    [row] = [r for r in episode_rows("EMPG-KeyDoor-v0", "eval_in_distribution") if r["extra_info"]["index"] == 2]
    server = harness.Server(["<think>a</think><action>look</action>"])
    spec = row["extra_info"]
    harness.play(server, [harness.row(spec["env_id"], spec["task_id"], seed=spec["seed"], uid="e")], max_steps=1)
    assert server.calls[0]["prompt"] == harness.tokenizer.apply_chat_template(row["prompt"], tokenize=False,
                                                                              add_generation_prompt=True)


def test_overlong_first_prompts_are_what_verls_filter_drops(harness, tmp_path):
    rows = episode_rows("EMPG-KeyDoor-v0", "eval_out_of_distribution", settings=LoopSettings(system_prompt="Hi."))
    path = write_parquet(rows, tmp_path / "rows.parquet")
    tok = harness.tokenizer
    lengths = [len(tok.encode(tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True),
                              add_special_tokens=False)) for r in rows]
    cut = sorted(lengths)[len(lengths) // 2]
    kept = load(path, harness.tokenizer, tmp_path, max_prompt_length=cut)
    assert len(kept) == sum(n <= cut for n in lengths) < len(rows)


def test_bad_arguments_say_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match="must name a .parquet file"):
        write_parquet(episode_rows("EMPG-KeyDoor-v0", "train"), tmp_path / "rows.json")
    with pytest.raises(ConfigError, match="repeat=0 must be a positive int"):
        episode_rows("EMPG-KeyDoor-v0", "train", repeat=0)
    with pytest.raises(ConfigError, match="env_kwargs is not JSON"):
        main(["export-verl", "--env", "EMPG-KeyDoor-v0", "--split", "train", "--out", str(tmp_path / "x.parquet"),
              "--env-kwargs", "{nope"], out=io.StringIO())


def test_rows_carry_their_source_and_a_mismatch_is_named_at_startup_and_in_the_loop(harness, tmp_path):
    # issue #21 (2.2): a worker whose env resolved other data than the export failed every episode, and verl stopped
    # with "no materializable trajectories"; rows now carry the source, checked at start-up and on every reset
    from empg_gym.integrations.verl.episodes import check_export_sources

    rows = episode_rows("EMPG-KeyDoor-v0", "eval_in_distribution", n_tasks=2)
    env = gym.make("EMPG-KeyDoor-v0")
    _, info = env.reset(seed=0, options={"task_id": rows[0]["extra_info"]["task_id"]})
    env.close()
    assert {r["extra_info"]["source"] for r in rows} == {info["source"]} and info["source"]
    good = write_parquet(rows, tmp_path / "good.parquet")
    assert len(check_export_sources([good, tmp_path / "absent.parquet"])) == 1
    for r in rows:
        r["extra_info"]["source"] = "real"
    bad = write_parquet(rows, tmp_path / "bad.parquet")
    with pytest.raises(ConfigError, match=rf"exported from EMPG-KeyDoor-v0's 'real' data, but here the env resolved "
                                          rf"'{info['source']}'"):
        check_export_sources(str(bad))
    row = harness.row("EMPG-KeyDoor-v0", rows[0]["extra_info"]["task_id"])
    row["extra_info"]["source"] = "real"
    with pytest.raises(ConfigError, match="but here the env resolved"):
        harness.play(harness.Server(["<think>x</think><action>look</action>"] * 20), [row])
