"""The trainer: one loop for every algorithm, checkpoints that resume exactly, the CLI, and real learning on CPU."""

from __future__ import annotations

import dataclasses
import io
import json
import re

import pytest

from empg_gym.agents.config import TrainConfig
from empg_gym.agents.trainer import Trainer
from empg_gym.errors import ConfigError

TINY = dict(env_id="EMPG-KeyDoor-v0", model="tiny-actions", max_new_tokens=1, require_think=False,
            invalid_format_penalty=0.0, history_length=0, progress=False)



def _cfg(**kw):
    base = dict(TINY, algo="grpo", updates=2, tasks_per_update=2, group_size=4, lr=3e-3, mini_batch_size=32,
                micro_batch_size=16)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("algo", ["grpo", "dapo", "empg", "empg-dapo", "gigpo"])
def test_every_preset_runs_through_the_same_loop(tmp_path, algo):
    trainer = Trainer(_cfg(algo=algo, updates=1), tmp_path)
    history = trainer.train()
    if not history:  # DAPO found no group whose rewards differ in its whole rollout budget: no update, no row
        assert trainer.algo.filter_groups and trainer.update_step == 0
        assert trainer.rollout_batches == trainer.max_rollout_batches == 10
        assert not (tmp_path / "metrics.jsonl").exists()
        return  # DAPO's update path: test_an_uninformative_dapo_round_is_not_an_update
    m = history[-1]
    assert 0.0 <= m["rollout/success_rate"] <= 1.0
    assert {"actor/pg_loss", "actor/clipfrac", "actor/entropy", "actor/grad_norm", "budget/env_steps"} <= set(m)
    if algo.startswith("empg"):
        assert abs(m["empg/g_mean"] - 1.0) < 1e-5
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["update"] for x in lines] == [1]


def test_resume_continues_exactly(tmp_path):
    straight = Trainer(_cfg(updates=3, checkpoint_every=1), tmp_path / "a").train()
    first = Trainer(_cfg(updates=2, checkpoint_every=1), tmp_path / "b").train()
    resumed_trainer = Trainer(_cfg(updates=3, checkpoint_every=1), tmp_path / "b", resume=True)
    assert resumed_trainer.update_step == 2
    resumed = resumed_trainer.train()
    assert len(first) == 2 and len(resumed) == 1
    for key in ("rollout/success_rate", "actor/pg_loss", "actor/entropy"):
        assert resumed[0][key] == pytest.approx(straight[2][key], abs=1e-6), key
    updates = [json.loads(x)["update"] for x in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert updates == [1, 2, 3]


def test_checkpoint_is_complete_and_atomic(tmp_path):
    Trainer(_cfg(updates=1), tmp_path).train()
    ckpt = tmp_path / "checkpoint"
    assert {p.name for p in ckpt.iterdir()} == {"trainable.safetensors", "optimizer.pt", "rng.pt", "state.json"}
    assert not list(tmp_path.glob(".checkpoint*"))
    assert json.loads((ckpt / "state.json").read_text())["update"] == 1


def test_config_errors():
    with pytest.raises(ConfigError, match="Unknown algorithm|unknown|Did you mean"):
        TrainConfig(algo="grpp")
    with pytest.raises(ConfigError, match="micro_batch_size=64 exceeds mini_batch_size=8"):
        TrainConfig(mini_batch_size=8, micro_batch_size=64)
    with pytest.raises(ConfigError, match="has no field 'zetta'.*Did you mean 'zeta'"):
        TrainConfig(algo="empg", algo_overrides={"empg.zetta": 0.1})
    with pytest.raises(ConfigError, match="Unknown config key"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(ConfigError, match="tiny-actions"):
        Trainer(TrainConfig(env_id="EMPG-DeepSearch-v0", model="tiny-actions"), "/nonexistent-never-created")


def test_system_prompt_and_response_prefix_reach_the_policy(tmp_path):
    """The prefix opens every response the env sees; it sits in the prompt tokens, so it is never trained on."""
    from empg_gym.agents.trainer import build_policy

    cfg = TrainConfig(env_id="EMPG-KeyDoor-v0", model="tiny", system_prompt="Answer in one action.",
                      response_prefix="<action>", max_new_tokens=4, require_think=False, progress=False)
    policy = build_policy(cfg)
    assert (policy.system_prompt, policy.response_prefix) == ("Answer in one action.", "<action>")
    prompt = policy.encode_prompts(["go"])[0]
    assert policy.tokenizer.decode(prompt).endswith("<|im_start|>assistant\n<action>")
    assert "Answer in one action." in policy.tokenizer.decode(prompt)
    history = Trainer(dataclasses.replace(cfg, updates=1, tasks_per_update=1, group_size=2, mini_batch_size=8,
                                          micro_batch_size=8, max_steps=1, eval_tasks=1), tmp_path).train()
    assert history[0]["rollout/num_trajectories"] == 2 and "eval/eval_in_distribution/success_rate" in history[-1]
    episode = json.loads(next(tmp_path.glob("eval_*.jsonl")).read_text().splitlines()[0])
    assert all(step["response"].startswith("<action>") for step in episode["steps"]), episode


def test_cli_train_then_eval(tmp_path):
    from empg_gym.cli import main

    config = tmp_path / "run.toml"
    config.write_text(
        'model = "tiny-actions"\nmax_new_tokens = 1\nrequire_think = false\nhistory_length = 0\n'
        "tasks_per_update = 2\ngroup_size = 2\nmini_batch_size = 16\nmicro_batch_size = 8\nprogress = false\n"
    )
    out = io.StringIO()
    assert main(["train", "--env", "EMPG-KeyDoor-v0", "--algo", "empg", "--steps", "1", "--out",
                 str(tmp_path / "run"), "--config", str(config)], out=out) == 0
    assert "Trained empg on EMPG-KeyDoor-v0 for 1 updates" in out.getvalue()
    out = io.StringIO()
    log = tmp_path / "episodes.jsonl"
    assert main(["eval", "--env", "EMPG-KeyDoor-v0", "--model", str(tmp_path / "run"), "--split",
                 "eval_out_of_distribution", "--tasks", "4", "--log", str(log)], out=out) == 0
    assert "success rate" in out.getvalue() and "key_door" in out.getvalue()
    episodes = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(episodes) == 4 and all(ep["steps"] for ep in episodes)


#: Seeds of the learning check; each learns in the bench's quick preset (see docs/bench_quick_example.md).
LEARNING_SEED = 0


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["grpo", "dapo", "empg"])
def test_tiny_policy_learns_keyrooms_greedily(tmp_path, algo):
    """A real learning check on held-out layouts: greedy success on KeyRooms' unseen in-distribution layouts rises
    by at least 0.5 (from 0: the untrained policy answers the same action everywhere) with the quick preset's
    settings, the same trainer as an LLM's.
    """
    from empg_gym.agents.evaluate import evaluate_policy
    from empg_gym.bench.presets import QUICK

    cfg = TrainConfig(**{**dict(QUICK.train), "env_id": "EMPG-KeyRooms-v0", "algo": algo, "seed": LEARNING_SEED,
                         "updates": QUICK.updates, "checkpoint_every": QUICK.updates})
    trainer = Trainer(cfg, tmp_path)

    def greedy(split):
        return evaluate_policy(trainer.policy, cfg, split=split, n_tasks=QUICK.eval_tasks,
                               batch_size=QUICK.eval_tasks)["success_rate"]

    before = greedy("eval_in_distribution")
    history = [h for h in trainer.train() if "rollout/success_rate" in h]
    after, ood = greedy("eval_in_distribution"), greedy("eval_out_of_distribution")
    curve = [round(h["rollout/success_rate"], 2) for h in history]
    assert after >= before + 0.5, (algo, before, after, ood, curve)


@pytest.mark.slow
def test_smollm2_one_update_on_alfworld(tmp_path):
    """Smoke: the embedded SmolLM2 plays procedural ALFWorld and takes one EMPG update (LoRA, short budget)."""
    cfg = TrainConfig(env_id="EMPG-ALFWorld-v0", algo="empg", model="smollm2-135m", updates=1, tasks_per_update=1,
                      group_size=2, max_new_tokens=24, max_steps=2, lora_rank=8, lr=1e-4, mini_batch_size=4,
                      micro_batch_size=2, progress=False)
    trainer = Trainer(cfg, tmp_path)
    before = {k: v.detach().clone() for k, v in trainer.policy.model.named_parameters() if v.requires_grad}
    try:
        history = trainer.train()
    finally:
        trainer.close()
    m = history[-1]
    assert m["rollout/num_trajectories"] == 2 and m["rollout/episode_len"] <= 2
    assert {"actor/pg_loss", "empg/g_mean", "actor/kl_loss"} <= set(m)
    after = dict(trainer.policy.model.named_parameters())
    assert any(not torch_equal(before[k], after[k]) for k in before)


def torch_equal(a, b):
    import torch

    return torch.equal(a, b.detach())


# ------------------------------------------------------------------ issue #17 and #15: a fair, exact update


def _synthetic(trainer, lens=(1, 3, 7, 2, 5, 1, 4, 6), seed=0):
    """A batch of step samples with responses of the given (unequal) lengths, ratios != 1 and a live KL term."""
    import torch

    from empg_gym.agents.algorithms import StepBatch

    gen = torch.Generator().manual_seed(seed)
    n, T = len(lens), max(lens)
    vocab = trainer.policy.model.config.vocab_size
    prompts = [torch.randint(0, vocab, (4 + i % 3,), generator=gen) for i in range(n)]
    responses = [torch.randint(0, vocab, (k,), generator=gen) for k in lens]
    mask = torch.arange(T)[None, :] < torch.tensor(lens)[:, None]
    with torch.no_grad():
        logp = torch.nn.functional.pad(trainer.policy.score(prompts, responses).log_probs.float(), (0, 0))
    noise = lambda: 0.1 * torch.randn(n, T, generator=gen) * mask  # noqa: E731
    batch = StepBatch(response_mask=mask, old_logp=logp + noise(), reward=torch.zeros(n),
                      group_id=torch.zeros(n, dtype=torch.long), traj_id=torch.arange(n),
                      step_index=torch.zeros(n, dtype=torch.long), is_last=torch.ones(n, dtype=torch.bool),
                      ref_logp=logp + noise())
    return batch, torch.randn(n, generator=gen), prompts, responses


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"])
def test_micro_batch_size_does_not_change_the_gradient(tmp_path, agg):
    """Issue #17: micro-batches of 1 and the whole mini-batch give one gradient, for responses of unequal lengths.

    Before: each micro-batch's token mean was weighted by its share of *samples*; on this batch the token-mean gradient
    of micro-batch 1 differed from the whole mini-batch's by 216 % (relative L2), seq-mean-token-sum-norm's by 88 %,
    and the logged loss of the seq-mean modes changed with the split.
    """
    import torch

    trainer = Trainer(_cfg(mini_batch_size=8, micro_batch_size=8, max_grad_norm=1e9,
                           algo_overrides={"loss_agg": agg}), tmp_path)
    trainer.optimizer.param_groups[0]["lr"] = 0.0  # keep the weights: compare the gradients left in .grad
    batch, A, prompts, responses = _synthetic(trainer)
    grads, losses = {}, {}
    for micro in (1, 3, 8):
        trainer.config = dataclasses.replace(trainer.config, micro_batch_size=micro)
        m = trainer._update(batch, A, prompts, responses)
        grads[micro] = torch.cat([p.grad.flatten() for p in trainer.policy.trainable_parameters()])
        losses[micro] = m["actor/loss"]
    assert grads[8].norm() > 0
    for micro in (1, 3):
        torch.testing.assert_close(grads[micro], grads[8], rtol=1e-4, atol=1e-7)
        assert losses[micro] == pytest.approx(losses[8], rel=1e-5)


def test_mini_batches_spread_the_leftover_instead_of_stepping_on_it():
    import torch

    from empg_gym.agents.trainer import mini_batches

    for n, size in [(70, 32), (6, 32), (64, 32), (100, 32), (33, 32), (47, 32), (49, 32), (5, 1)]:
        parts = mini_batches(n, size, torch.Generator().manual_seed(n))
        sizes = [len(p) for p in parts]
        assert sorted(torch.cat(parts).tolist()) == list(range(n))
        assert max(sizes) - min(sizes) <= 1, (n, size, sizes)
        assert min(sizes) >= min(n, size / 2) and max(sizes) <= 1.5 * size, (n, size, sizes)
    assert [len(p) for p in mini_batches(70, 32)] == [35, 35]  # before: 32, 32 and a full step on 6


def test_a_bf16_update_at_lr_1e_6_moves_every_weight(tmp_path):
    """Issue #17: AdamW on bf16 weights at lr 1e-6 changed 2.1 % of a tiny model's entries; fp32 master: 99.9 %."""
    import torch

    trainer = Trainer(_cfg(model="tiny", dtype="bfloat16", lr=1e-6, mini_batch_size=8, micro_batch_size=4), tmp_path)
    assert trainer.policy.compute_dtype == torch.bfloat16
    params = trainer.policy.trainable_parameters()
    assert {p.dtype for p in params} == {torch.float32}
    before = [p.detach().clone() for p in params]
    batch, A, prompts, responses = _synthetic(trainer)
    trainer._update(batch, A, prompts, responses)
    changed = sum(int((p.detach() != b).sum()) for p, b in zip(params, before, strict=True))
    total = sum(b.numel() for b in before)
    assert changed >= 0.99 * total, f"{changed}/{total} entries changed"


def _patch_informative(monkeypatch, trainer, keep_after):
    """Make DAPO's filter drop every group for the first ``keep_after`` rollout batches, then keep them all."""
    calls = []

    def informative(samples):
        calls.append(len(samples))
        return list(samples) if len(calls) > keep_after else []

    monkeypatch.setattr(trainer, "_informative", informative)
    return calls


def test_an_uninformative_dapo_round_is_not_an_update(tmp_path, monkeypatch):
    """Issue #17: a round whose groups all have equal rewards changes nothing; it is retried, not counted."""
    trainer = Trainer(_cfg(algo="dapo", updates=2, max_steps=3, algo_overrides={"max_resample_batches": 2}), tmp_path)
    _patch_informative(monkeypatch, trainer, keep_after=2)  # round 1: 2 batches, nothing kept
    history = trainer.train()
    assert trainer.update_step == 2 and len(history) == 2
    assert [h["dapo/skipped_rounds"] for h in history] == [1.0, 0.0]
    assert [h["budget/rollout_batches"] for h in history] == [3.0, 4.0]
    assert all("actor/pg_loss" in h and "actor/skipped" not in h for h in history)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["update"] for r in rows] == [1, 2]


def test_dapo_stops_short_when_its_rollout_budget_is_spent(tmp_path, monkeypatch, caplog):
    trainer = Trainer(_cfg(algo="dapo", updates=2, max_steps=3, algo_overrides={"max_resample_batches": 2}), tmp_path)
    calls = _patch_informative(monkeypatch, trainer, keep_after=10**6)
    with caplog.at_level("WARNING"):
        assert trainer.train() == []
    assert (trainer.update_step, trainer.rollout_batches, len(calls)) == (0, 4, 4)  # updates x max_resample_batches
    assert "dapo drew its 4 rollout batches (updates x max_resample_batches) after 0 of 2 updates" in caplog.text
    assert not (tmp_path / "metrics.jsonl").exists()  # no update, no row
    state = json.loads((tmp_path / "checkpoint" / "state.json").read_text())
    assert (state["update"], state["rollout_batches"], state["skipped_rounds"]) == (0, 4, 2)
    resumed = Trainer(_cfg(algo="dapo", updates=2, max_steps=3, algo_overrides={"max_resample_batches": 2}), tmp_path,
                      resume=True)
    assert resumed.train() == [] and resumed.rollout_batches == 4  # the budget stays spent
    # A policy that wins every trajectory stops the same way, said as news: nothing is wrong with the settings.
    caplog.clear()
    with caplog.at_level("INFO", logger="empg_gym.agents.trainer"):
        resumed._skipped_success = 1.0
        resumed._stop_short()
    assert "every trajectory won" in caplog.text and "stops here, solved" in caplog.text
    assert all(r.levelname == "INFO" for r in caplog.records if "drew its" in r.getMessage())
    # ... and a run resumed from that checkpoint says the same, not the warning.
    caplog.clear()
    again = Trainer(_cfg(algo="dapo", updates=2, max_steps=3, algo_overrides={"max_resample_batches": 2}), tmp_path,
                    resume=True)
    with caplog.at_level("INFO", logger="empg_gym.agents.trainer"):
        assert again.train() == []
    assert "stops here, solved" in caplog.text
    assert all(r.levelname == "INFO" for r in caplog.records if "drew its" in r.getMessage())


def test_every_algorithm_starts_from_the_same_first_rollouts(tmp_path):
    """docs/fairness.md: same seed, same tasks and the same first rollout batch for every algorithm."""
    firsts = {}
    for algo in ("grpo", "dapo", "empg", "gigpo"):
        trainer = Trainer(_cfg(algo=algo, algo_overrides={"max_resample_batches": 1}), tmp_path / algo)
        from empg_gym.agents.rollout import collect_rollouts  # noqa: F401  (the trainer's own call is what counts)

        samples, metrics = trainer._collect()
        firsts[algo] = {k: v for k, v in metrics.items() if k.startswith("rollout/") and "time" not in k}
        trainer.close()
    assert all(m == firsts["grpo"] for m in firsts.values()), firsts


@pytest.mark.parametrize("kill_after", [5, 11])
def test_killed_run_resumes_with_one_row_per_update(tmp_path, kill_after):
    """Issue #15 item 8: SIGKILL after ``kill_after`` rows (checkpoint every 10), then ``--resume``.

    Before: killed before the first checkpoint, the rerun started from scratch but appended to the old
    metrics.jsonl, which held updates 1-5 twice. Killed after the checkpoint at 10, TensorBoard kept the killed run's
    update 11 whenever its event file sorted after the resumed run's (same second, larger process id): the killed
    run's file is renamed here so that it always does.
    """
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    from empg_gym.cli import main

    config = tmp_path / "run.toml"
    config.write_text(
        'model = "tiny-actions"\nmax_new_tokens = 1\nrequire_think = false\nhistory_length = 0\n'
        "tasks_per_update = 2\ngroup_size = 2\nmini_batch_size = 16\nmicro_batch_size = 8\nprogress = false\n"
        "checkpoint_every = 10\nmax_steps = 3\n"
    )
    out = tmp_path / "run"
    args = ["train", "--env", "EMPG-KeyDoor-v0", "--algo", "grpo", "--steps", "12", "--out", str(out),
            "--config", str(config)]
    killer = (
        "import os, signal, torch\n"
        "torch.set_num_threads(1)\n"
        "from empg_gym.agents import trainer\n"
        "log = trainer.MetricsLogger.log\n"
        "def log_then_die(self, step, metrics):\n"
        "    log(self, step, metrics)\n"
        f"    if step == {kill_after}:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "trainer.MetricsLogger.log = log_then_die\n"
        "from empg_gym.cli import main\n"
        f"main({args!r})\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", killer], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    rows = [json.loads(x)["update"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(1, kill_after + 1))
    assert (out / "checkpoint").exists() == (kill_after >= 10)
    for event_file in (out / "tensorboard").glob("events.out.tfevents.*"):
        event_file.rename(event_file.with_name("events.out.tfevents.9999999999.later.0"))
    assert main(args + ["--resume"], out=io.StringIO()) == 0
    rows = [json.loads(x)["update"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(1, 13))
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("rollout/success_rate")] == list(range(1, 13))


# ------------------------------------------------------------------------------ issue #13: time told truthfully
def test_log_tells_the_estimate_the_first_step_and_every_update(tmp_path):
    lines = []
    Trainer(_cfg(updates=2), tmp_path, log=lines.append).train()
    duration = r"[\d.]+ (ms|s|min|h|days)"
    assert len(lines) == 4, lines
    assert re.fullmatch(rf"estimate: up to about {duration} per update on this CPU \(2 tasks x 4 trajectories x 10 steps "
                        rf"x 1 token: rollout {duration}, update {duration}, if every trajectory runs all 10 steps\), "
                        rf"up to about {duration} for 2 updates; from a "
                        r"[\d.]+ m?s measurement of this model on a \d+-token prompt, so a rough guide, not a promise",
                        lines[0]), lines[0]
    assert re.fullmatch(rf"first rollout step: [\d.]+ m?s for 8 trajectories; revised estimate for update 1: up to "
                        rf"about {duration} of rollout \(10 steps at most\) \+ {duration} of update = {duration}; up to "
                        rf"about {duration} for 2 updates",
                        lines[1]), lines[1]
    for i, line in enumerate(lines[2:], 1):
        when = rf"about {duration} left in this run" if i < 2 else "the run's last update"
        assert re.fullmatch(rf"update {i}/2: training success \d\.\d\d; {duration} per update \(median\), "
                            rf"{when}; this update took {duration}", line), line


def _slow_cpu(monkeypatch):
    """Stand in for a measurement of SmolLM2 in fp32 on 2 busy cores (80 prompt tokens/s, 0.5 s per decoding step
    of 8 rows): the real one needs the real model, and the warning depends only on the numbers it returns."""
    from empg_gym.agents import trainer
    from empg_gym.agents.estimate import Speed

    speed = Speed(prompt_tokens=390, s_per_token=1 / 80, s_per_decode_step=0.5, decode_batch=8, seconds=9.0)
    monkeypatch.setattr(trainer, "measure_speed", lambda *args, **kwargs: speed)


def test_paper_sizes_on_a_cpu_are_warned_about_before_training(tmp_path, monkeypatch, caplog):
    _slow_cpu(monkeypatch)
    cfg = dataclasses.replace(_cfg(), tasks_per_update=None, group_size=None, max_new_tokens=256, history_length=2)
    lines = []
    trainer = Trainer(cfg, tmp_path / "a", log=lines.append)  # measures and warns before building its envs
    assert (trainer.B, trainer.G) == (16, 8)  # the paper's sizes
    assert len(lines) == 2 and lines[0].startswith("estimate: up to about ")
    assert re.fullmatch(r"This run needs about [\d.]+ (h|days) per update on this CPU \(16 tasks x 8 trajectories x "
                        r"10 steps x 256 tokens\); try the cpu preset \(`empg-gym train --preset cpu`, 1 task x 4 "
                        r"trajectories x 3 steps x 12 tokens: about [\d.]+ (s|min) per update\) or a GPU\. The run "
                        r"starts anyway; the estimate is rough .*", lines[1]), lines[1]
    with caplog.at_level("WARNING"):  # without a log callable: the module logger, the warning at WARNING
        Trainer(cfg, tmp_path / "b")
    assert [r.levelname for r in caplog.records if "This run needs" in r.message] == ["WARNING"]


def test_the_cpu_preset_is_not_warned_about(tmp_path, monkeypatch):
    from empg_gym.agents.config import train_preset

    _slow_cpu(monkeypatch)
    cfg = TrainConfig.from_dict({**TINY, **train_preset("cpu"), "response_prefix": ""})  # tiny-actions has no "<"
    lines = []
    Trainer(cfg, tmp_path, log=lines.append)
    assert len(lines) == 1 and "1 task x 4 trajectories x 3 steps x 12 tokens" in lines[0], lines
