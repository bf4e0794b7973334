"""The ``empg_gym`` v1 trainer mode on verl's real config and a real (local, in-memory) TransferQueue.

Rows are played by ``GymAgentLoop`` (KeyDoor, scripted responses), packed and stored the way verl's v1 worker
stores them, padded by verl's own ``upsample_batch_to_divisible_size``; the per-token entropy stands in for the
actor's old-log-prob pass (written as verl's ``_compute_old_log_prob`` writes it). Then ``GymStepTrainer`` runs
verl's advantage step, and the advantages read back from the TransferQueue must equal our trainer's.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("EMPG_GYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401  (the verl venv must import verl: fail, never skip)
else:
    pytest.importorskip("verl", reason="verl is not installed (the verl tests run in .venv-verl: make test-verl)")

from empg_gym.agents.algorithms import compute_advantages  # noqa: E402
from empg_gym.agents.rollout import StepSample  # noqa: E402
from empg_gym.agents.trainer import to_step_batch  # noqa: E402
from empg_gym.errors import ConfigError  # noqa: E402
from empg_gym.integrations.verl import GymStepTrainer, algorithm_for  # noqa: E402

pytestmark = pytest.mark.slow  # a local Ray cluster and TransferQueue: ~30 s to start on 2 cores


@pytest.fixture(scope="module")
def tq():
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    import transfer_queue
    from omegaconf import OmegaConf

    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024**2, log_to_driver=False)
    try:
        transfer_queue.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
        yield transfer_queue
        transfer_queue.close()
    finally:
        ray.shutdown()


def verl_config(*overrides: str):
    """verl's own ppo_trainer.yaml, composed as ``python -m verl.trainer.main_ppo`` would with these overrides."""
    import verl
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=os.path.join(os.path.dirname(verl.__file__), "trainer", "config"),
                               version_base=None):
        return compose("ppo_trainer", overrides=["trainer.v1.trainer_mode=empg_gym", *overrides])


def test_the_mode_is_verls_sync_trainer(tq):
    from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    config = verl_config("algorithm.adv_estimator=empg")
    trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config)
    assert isinstance(trainer, GymStepTrainer) and isinstance(trainer, PPOTrainerSync)
    assert trainer.trainer_mode == "sync" and type(trainer.replay_buffer) is ReplayBuffer

    with pytest.raises(ConfigError, match="bypass_mode=False"):
        GymStepTrainer(verl_config("algorithm.adv_estimator=empg", "algorithm.rollout_correction.bypass_mode=true"))


def play_groups(harness) -> list[tuple[str, int, list]]:
    """Two prompts × three sessions of KeyDoor: an oracle session (wins), a wandering one, a malformed one."""
    plans = {"keydoor-3r-s1-k3": ["go east", "go east", "take key", "open door"],
             "keydoor-2r-s2-k1": ["go west", "take key", "go east", "open door"]}
    styles = ["<think>plan</think><action>{a}</action>", "<think>wander</think><action>look</action>", "{a}"]
    groups = []
    for uid, task in zip(["p0", "p1"], plans, strict=True):
        for session, style in enumerate(styles):
            script = [style.format(a=a) for a in plans[task]]
            [outputs] = harness.play(harness.Server(script), [harness.row("EMPG-KeyDoor-v0", task, uid=uid,
                                                                          session=session)], max_steps=4)
            groups.append((uid, session, outputs))
    return groups


@pytest.mark.parametrize("estimator", ["empg", "gigpo"])
def test_advantage_step_reads_step_rows_from_the_transfer_queue(tq, harness, estimator):
    from tensordict import TensorDict
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    groups = play_groups(harness)
    won = {(uid, s): outputs[-1].extra_fields["won"] for uid, s, outputs in groups}
    assert set(won.values()) == {True, False}
    # Store the rows as verl's AgentLoopWorkerTQ does: key {uid}_{session}_{step}, fields = as_dict() + the sample's.
    keys, fields, tags, entropies = [], [], [], []
    gen = torch.Generator().manual_seed(0)
    for uid, session, outputs in groups:
        for i, out in enumerate(outputs):
            field = out.as_dict()
            field.update(uid=uid, session_id=session, global_steps=1)
            field["loss_mask"] = field["response_mask"]
            keys.append(f"{uid}_{session}_{i}")
            fields.append(field)
            n = len(out.response_ids)
            tags.append({"status": "success", "prompt_len": len(out.prompt_ids), "response_len": n,
                         "seq_len": len(out.prompt_ids) + n, "global_steps": 1,
                         "min_global_steps": field["extra_fields"].get("min_global_steps"),
                         "max_global_steps": field["extra_fields"].get("max_global_steps")})
            entropies.append(torch.rand(n, generator=gen) * 4)
    partition = f"train-{estimator}"
    tq.kv_batch_put(keys=keys, partition_id=partition, fields=list_of_dict_to_tensordict(fields), tags=tags)
    batch = upsample_batch_to_divisible_size(KVBatchMeta(partition_id=partition, keys=keys, tags=tags), 16,
                                             harness.tokenizer.eos_token_id)
    n_pad = len(batch) - len(keys)
    assert n_pad > 0 and all(t.get("is_padding") for t in batch.tags[len(keys):])
    # Stand-in for the actor's old-log-prob pass, which writes old_log_probs and entropy back as jagged fields.
    logprobs = [torch.tensor(out.response_logprobs) for _, _, outputs in groups for out in outputs]

    def jagged(rows):
        return torch.nested.as_nested_tensor(rows + [torch.zeros(1)] * n_pad, layout=torch.jagged)

    tq.kv_batch_put(keys=batch.keys, partition_id=partition, fields=TensorDict(
        {"entropy": jagged(entropies), "old_log_probs": jagged(logprobs)}, batch_size=len(batch)))

    trainer = GymStepTrainer(verl_config(f"algorithm.adv_estimator={estimator}"))
    metrics: dict = {}
    trainer._compute_advantage(batch, metrics)
    got = tq.kv_batch_get(keys=batch.keys, partition_id=partition, select_fields=["advantages"])["advantages"]
    got = [row for row in got.unbind()]

    samples, traj_ids = [], {}
    for uid, session, outputs in groups:
        for out in outputs:
            e = out.extra_fields
            samples.append(StepSample(
                prompt_ids=torch.tensor(out.prompt_ids), response_ids=torch.tensor(out.response_ids),
                old_log_probs=torch.tensor(out.response_logprobs), entropies=entropies[len(samples)],
                reward=out.reward_score, format_penalty=e["format_penalty"], group_id=int(uid[1:]),
                traj_id=traj_ids.setdefault((uid, session), len(traj_ids)), step_index=e["step_index"],
                is_last=e["is_last"], observation=e["anchor_obs"], action="", response_text="", task_id=e["task_id"],
                format_valid=e["format_valid"], action_valid=e["action_valid"], env_reward=e["env_reward"]))
    assert any(s.format_penalty for s in samples)
    want, want_metrics = compute_advantages(algorithm_for(estimator), to_step_batch(samples, 10.0)[0])
    for i, s in enumerate(samples):
        torch.testing.assert_close(got[i], want[i].expand(len(s.response_ids)), atol=1e-6, rtol=1e-6)
    assert all(not row.any() for row in got[len(samples):])  # padding rows
    assert metrics["adv/mean"] == pytest.approx(want_metrics["adv/mean"], abs=1e-6)
    assert any(k.startswith(f"{estimator}/") for k in metrics)
    # verl's own step metrics read every row (rewards, advantages, turns, weight versions from the tags). The GPU
    # resource pool (made by trainer.init() on a GPU machine) only reports the GPU count: a stand-in gives it.
    from types import SimpleNamespace

    trainer.resource_pool_manager = SimpleNamespace(get_n_gpus=lambda: 2)
    trainer._compute_metrics(batch, metrics, timing_raw={"step": 1.0, "gen": 0.5}, global_steps=1, epoch=0)
    assert metrics["training/off_policy/trajectory_spans/max"] == 1
    assert metrics["critic/score/max"] == 10.0 and metrics["critic/score/min"] == 0.0
    tq.kv_clear(keys=batch.keys, partition_id=partition)


EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "verl")


def script_overrides(script: str, tmp_path) -> list[str]:
    """The verl overrides an example launch script passes to ``verl.trainer.main_ppo`` (its PRINT_ARGS mode)."""
    import subprocess

    env = {**os.environ, "PRINT_ARGS": "1", "DATA": str(tmp_path), "N_GPUS": "2"}
    out = subprocess.run(["bash", os.path.join(EXAMPLES, script)], env=env, capture_output=True, text=True,
                         check=True, stdin=subprocess.DEVNULL)
    return out.stdout.splitlines()


@pytest.mark.parametrize("script,estimator,clip_high,dapo", [
    ("run_grpo.sh", "empg_gym_grpo", 0.2, False),
    ("run_dapo.sh", "empg_gym_grpo", 0.28, True),
    ("run_empg.sh", "empg", 0.2, False),
    ("run_empg_dapo.sh", "empg", 0.28, True),
])
def test_example_scripts_compose_a_valid_verl_config(tq, tmp_path, script, estimator, clip_high, dapo):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.utils.config import validate_config

    overrides = [o for o in script_overrides(script, tmp_path) if not o.startswith("trainer.v1.trainer_mode=")]
    config = verl_config(*overrides)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    assert config.algorithm.adv_estimator == estimator and config.trainer.v1.trainer_mode == "empg_gym"
    actor = config.actor_rollout_ref.actor
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.loss_agg_mode) == (0.2, clip_high, "token-mean")
    assert (actor.use_kl_loss, actor.kl_loss_coef, actor.kl_loss_type, actor.optim.lr) == (True, 0.01, "low_var_kl",
                                                                                          1e-6)
    assert (config.data.train_batch_size, config.actor_rollout_ref.rollout.n) == (16, 8)
    assert config.trainer.total_training_steps == 150
    assert bool(config.algorithm.filter_groups.enable) is dapo
    ours = algorithm_for(estimator, config.algorithm)
    assert (ours.empg is not None) == (estimator == "empg") and ours.norm_by_std
    if ours.empg is not None:
        assert (ours.empg.k, ours.empg.k_next, ours.empg.zeta) == (1.0, 1.0, 0.05)
    trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config)
    assert trainer.trainer_mode == "sync" and (trainer.replay_buffer.filter_groups_metric == "won") is dapo


def test_example_agent_loop_yaml_builds_the_loop_as_verls_worker_does(harness):
    import asyncio

    import hydra
    from omegaconf import OmegaConf
    from verl.experimental.agent_loop.agent_loop import DictConfigWrap
    from verl.utils.dataset.rl_dataset import RLHFDataset

    from empg_gym.integrations.verl import GymAgentLoop, LoopSettings

    [entry] = OmegaConf.load(os.path.join(EXAMPLES, "agent_loop.yaml"))
    config = OmegaConf.create({"actor_rollout_ref": {"rollout": {"prompt_length": 2048, "response_length": 512}}})

    async def build():
        return hydra.utils.instantiate(config=entry, trainer_config=DictConfigWrap(config),
                                       server_manager=harness.Server([]), tokenizer=harness.tokenizer, processor=None,
                                       hf_model_type=None, dataset_cls=RLHFDataset,
                                       data_config=DictConfigWrap(OmegaConf.create({})), tools=None)

    loop = asyncio.run(build())
    assert entry.name == "empg_gym" and isinstance(loop, GymAgentLoop)
    assert loop.settings == LoopSettings()  # the YAML writes out our trainer's defaults
