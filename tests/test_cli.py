"""The empg-gym command line."""

from __future__ import annotations

import io
import subprocess
import sys

from empg_gym.cli import main


def test_list_shows_ids_and_sizes():
    out = io.StringIO()
    assert main(["list", "--sizes"], out=out) == 0
    text = out.getvalue()
    assert "EMPG-KeyDoor-v0" in text and "eval_out_of_distribution=16" in text


def test_play_with_oracle_wins():
    out = io.StringIO()
    assert main(["play", "EMPG-KeyDoor-v0", "--oracle", "--seed", "2"], out=out) == 0
    assert "Episode won after 6 steps" in out.getvalue()


def test_play_reads_actions_from_stdin():
    proc = subprocess.run(
        [sys.executable, "-m", "empg_gym.cli", "play", "EMPG-KeyDoor-v0", "--task-id", "keydoor-2r-s2-k2"],
        input="dance\ntake key\nopen door\n", capture_output=True, text=True, timeout=60, check=True,
    )
    assert "Nothing happens.  (invalid action)" in proc.stdout
    assert "Episode won after 3 steps" in proc.stdout


def test_serve_commands_forward_their_options():
    for command, option in (("serve-webshop", "--n-products"), ("serve-retriever", "--corpus")):
        proc = subprocess.run([sys.executable, "-m", "empg_gym.cli", command, "--help"], capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 0 and option in proc.stdout, proc.stderr


def test_train_preset_then_config_file_then_flags(tmp_path):
    import pytest

    from empg_gym.agents.config import train_preset
    from empg_gym.cli import _train_config, build_parser

    parse = build_parser().parse_args
    cfg = _train_config(parse(["train", "--preset", "cpu", "--out", "x", "--max-new-tokens", "7"]))
    assert cfg.max_new_tokens == 7
    assert {k: getattr(cfg, k) for k in train_preset("cpu") if k != "max_new_tokens"} == {
        k: v for k, v in train_preset("cpu").items() if k != "max_new_tokens"}
    config = tmp_path / "run.toml"
    config.write_text("group_size = 2\nmax_new_tokens = 9\n")
    cfg = _train_config(parse(["train", "--preset", "cpu", "--config", str(config), "--max-new-tokens", "7",
                               "--out", "x"]))
    assert (cfg.tasks_per_update, cfg.group_size, cfg.max_new_tokens) == (1, 2, 7)
    # --set overrides the file (any field, JSON values), explicit flags override --set
    cfg = _train_config(parse(["train", "--preset", "cpu", "--config", str(config), "--set", "group_size=3",
                               "--set", 'algo_overrides={"empg.uncertainty": "renyi2"}', "--set", "max_new_tokens=5",
                               "--max-new-tokens", "7", "--algo", "empg", "--out", "x"]))
    assert (cfg.group_size, cfg.max_new_tokens, cfg.algorithm().empg.uncertainty) == (3, 7, "renyi2")
    from empg_gym.errors import ConfigError

    with pytest.raises(ConfigError, match="Unknown config key"):
        _train_config(parse(["train", "--set", "grup_size=3", "--out", "x"]))
    with pytest.raises(SystemExit):
        parse(["train", "--preset", "gpu", "--out", "x"])


def test_train_prints_the_estimate_the_first_step_and_each_update(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text(
        'model = "tiny-actions"\nmax_new_tokens = 1\nrequire_think = false\nhistory_length = 0\n'
        "tasks_per_update = 2\ngroup_size = 2\nmax_steps = 3\nmini_batch_size = 16\nmicro_batch_size = 8\n"
        "progress = false\n"
    )
    out = io.StringIO()
    assert main(["train", "--env", "EMPG-KeyDoor-v0", "--algo", "grpo", "--steps", "2", "--out",
                 str(tmp_path / "run"), "--config", str(config)], out=out) == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 5, lines
    assert lines[0].startswith("estimate: up to about ") and " per update on this CPU (2 tasks x 2 trajectories x 3 steps" \
        in lines[0]
    assert lines[1].startswith("first rollout step: ") and "s for 4 trajectories; revised estimate for update 1" in lines[1]
    assert lines[2].startswith("update 1/2: training success ") and "s per update (median)" in lines[2]
    assert lines[3].startswith("update 2/2: training success ") and lines[4].startswith("Trained grpo")


def test_train_refuses_zero_threads(tmp_path):
    import pytest

    from empg_gym.errors import ConfigError

    with pytest.raises(ConfigError, match="--threads 0 must be at least 1"):
        main(["train", "--threads", "0", "--model", "tiny-actions", "--env", "EMPG-KeyDoor-v0", "--out",
              str(tmp_path)])
