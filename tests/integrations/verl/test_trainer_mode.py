"""The ``empg_gym`` v1 trainer mode on verl's real config and a real (local, in-memory) TransferQueue.

Rows are played by verl's own v1 agent-loop worker code (``AgentLoopWorkerTQ._run_prompt``, which builds
``GymAgentLoop`` from verl's registry and stores its outputs), with a stand-in LLM client, and padded by verl's own
``upsample_batch_to_divisible_size``; random per-token entropy stands in for the actor's old-log-prob pass (written
as verl's ``_compute_old_log_prob`` writes it). Then ``GymStepTrainer`` runs verl's advantage step and verl's step
metrics, and the advantages read back from the TransferQueue must equal our trainer's; verl's replay buffer, with
DAPO's group filter on, must drop the groups our trainer's ``informative_groups`` drops.
"""

from __future__ import annotations

import os

import pytest
import torch

if os.environ.get("EMPG_GYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401  (the verl venv must import verl: fail, never skip)
else:
    pytest.importorskip("verl", reason="verl is not installed (the verl tests run in .venv-verl: make test-verl)")

from empg_gym.agents.algorithms import ALGORITHMS, compute_advantages, get_algorithm  # noqa: E402
from empg_gym.agents.rollout import StepSample  # noqa: E402
from empg_gym.agents.trainer import to_step_batch  # noqa: E402
from empg_gym.errors import ConfigError  # noqa: E402
from empg_gym.integrations.verl import GymStepTrainer, algorithm_for  # noqa: E402

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "verl")

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


def test_the_mode_is_verls_sync_trainer(tq, caplog, tmp_path):
    from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

    config = verl_config("algorithm.adv_estimator=empg")
    with caplog.at_level("WARNING", logger="empg_gym.integrations.verl.trainer"):
        trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config)
    # the config verl prints says "sync": the log says our trainer is the one running (issue #21, 2.5)
    assert "trainer_mode=empg_gym: empg_gym.integrations.verl.trainer.GymStepTrainer" in caplog.text
    assert "adv_estimator=empg (step rows" in caplog.text
    assert isinstance(trainer, GymStepTrainer) and isinstance(trainer, PPOTrainerSync)
    assert trainer.trainer_mode == "sync" and type(trainer.replay_buffer) is ReplayBuffer
    # the caller's config, which verl hands on to the agent-loop workers, still names our mode (issue #21, 2.5)
    assert config.trainer.v1.trainer_mode == "empg_gym" and trainer.config.trainer.v1.trainer_mode == "sync"

    with pytest.raises(ConfigError, match="bypass_mode=False"):
        GymStepTrainer(verl_config("algorithm.adv_estimator=empg", "algorithm.rollout_correction.bypass_mode=true"))

    # an export whose data this machine resolves differently fails at start-up, naming both sources (issue #21, 2.2)
    from empg_gym.integrations.verl import episode_rows, write_parquet

    rows = episode_rows("EMPG-KeyDoor-v0", "train", n_tasks=1)
    rows[0]["extra_info"]["source"] = "real"
    bad = write_parquet(rows, tmp_path / "train.parquet")
    with pytest.raises(ConfigError, match="exported from EMPG-KeyDoor-v0's 'real' data, but here the env resolved"):
        GymStepTrainer(verl_config("algorithm.adv_estimator=empg", f"data.train_files={bad}"))


def run_worker(tq, harness, prefix: str, lost_group: bool = False) -> dict[str, list]:
    """Play two prompts × three sessions of KeyDoor through verl's own v1 agent-loop worker code.

    ``AgentLoopWorkerTQ._run_prompt`` (as a Ray actor it would build the tokenizer from a model path; here its
    attributes are set directly, with the stand-in server as its LLM client) instantiates our loop from verl's registry
    with hydra, runs ``rollout.n`` sessions, and stores every output row in the TransferQueue with its tags.
    Session 0 plays the oracle plan (wins in 4 steps), session 1 wanders (10 steps, KeyDoor's limit), session 2 plays
    the plan without tags (the env still takes the actions: wins in 4 steps, each penalised). With ``lost_group`` a
    third prompt's sessions all wander (10 steps each, all lost), the last one without tags (every step penalised).
    Prompt ``k`` gets uid ``f"{prefix}{k}"``.
    """
    import asyncio
    import itertools

    from verl.trainer.ppo.v1 import AgentLoopWorkerTQ
    from verl.utils.dataset.rl_dataset import RLHFDataset
    from verl.utils.rollout_trace import RolloutTraceConfig

    plans = {"keydoor-3r-s1-k3": ["go east", "go east", "take key", "open door"],
             "keydoor-2r-s2-k1": ["go west", "take key", "go east", "open door"]}
    styles = ["<think>plan</think><action>{a}</action>", "<think>wander</think><action>look</action>", "{a}"]
    uids = {f"{prefix}{k}": task for k, task in enumerate(plans)}
    styles_of = dict.fromkeys(uids, styles)
    if lost_group:
        uids[f"{prefix}{len(uids)}"] = "keydoor-3r-s1-k3"
        styles_of[f"{prefix}{len(styles_of)}"] = [styles[1], styles[1], "look"]
    scripts = {f"{uid}_{s}": itertools.chain([style.format(a=a) for a in plans[task]],
                                             itertools.repeat(style.format(a="look")))
               for uid, task in uids.items() for s, style in enumerate(styles_of[uid])}
    server = harness.Server(lambda prompt, request_id: next(scripts[request_id.rsplit("-", 1)[0]]))

    config = verl_config("actor_rollout_ref.rollout.n=3", "data.max_prompt_length=4096",
                         "data.max_response_length=128")
    worker = object.__new__(AgentLoopWorkerTQ.__ray_actor_class__)
    worker.config, worker.llm_client, worker.tokenizer, worker.processor = config, server, harness.tokenizer, None
    worker.dataset_cls, worker.hf_model_type, worker.tools, worker.background_tasks = RLHFDataset, None, [], set()
    worker.distillation_enabled, worker.reward_loop_worker_handles, worker.mm_processor_kwargs = False, None, {}
    RolloutTraceConfig.init("test", "test", None, False, None)

    async def play() -> None:
        for index, (uid, task) in enumerate(uids.items()):
            prompt = {"uid": uid, "agent_name": "empg_gym", "index": index, "global_steps": 1,
                      "raw_prompt": [], "data_source": "empg_gym/EMPG-KeyDoor-v0/train",
                      "extra_info": {"index": index, "env_id": "EMPG-KeyDoor-v0", "task_id": task, "seed": index,
                                     "env_kwargs": "{}"}}
            trajectory = {"step": 1, "sample_index": index, "rollout_n": 0, "validate": False}
            await worker._run_prompt(prompt, {"temperature": 1.0}, trajectory=trajectory, trace=False)

    asyncio.run(play())
    listed = tq.kv_list("train")["train"]
    assert all(listed[uid]["status"] == "finished" for uid in uids), {uid: listed[uid] for uid in uids}
    keys = sorted(k for k in listed if k.split("_")[0] in uids and k.count("_") == 2)
    return {"uids": list(uids), "keys": keys, "tags": [listed[k] for k in keys]}


def step_samples(extras: list, uids: list, rewards: list, entropies: list) -> list[StepSample]:
    """Our trainer's ``StepSample`` of each stored row (its reward: the sum of verl's ``rm_scores``)."""
    samples, groups, trajs = [], {}, {}
    for e, uid, reward, ent in zip(extras, uids, rewards, entropies, strict=True):
        n = len(ent)
        samples.append(StepSample(
            prompt_ids=torch.zeros(0, dtype=torch.long), response_ids=torch.zeros(n, dtype=torch.long),
            old_log_probs=torch.zeros(n), entropies=ent, reward=float(reward),
            format_penalty=e["format_penalty"], group_id=groups.setdefault(uid, len(groups)),
            traj_id=trajs.setdefault(e["traj_id"], len(trajs)), step_index=e["step_index"], is_last=e["is_last"],
            observation=e["anchor_obs"], action="", response_text="", task_id=e["task_id"],
            format_valid=e["format_valid"], action_valid=e["action_valid"], env_reward=e["env_reward"]))
    return samples


@pytest.mark.parametrize("estimator", ["empg", "gigpo"])
def test_rows_from_verls_worker_go_through_the_advantage_step_and_metrics(tq, harness, estimator):
    from tensordict import TensorDict
    from transfer_queue import KVBatchMeta
    from verl.trainer.ppo.padding_utils import upsample_batch_to_divisible_size

    stored = run_worker(tq, harness, estimator[0])
    keys, tags = stored["keys"], stored["tags"]
    assert len(keys) == 2 * (4 + 10 + 4) and all(t["status"] == "success" and t["min_global_steps"] == 1 for t in tags)
    batch = upsample_batch_to_divisible_size(KVBatchMeta(partition_id="train", keys=keys, tags=tags), 16,
                                             harness.tokenizer.eos_token_id)
    n_pad = len(batch) - len(keys)
    assert n_pad > 0 and all(t.get("is_padding") for t in batch.tags[len(keys):])
    rows = tq.kv_batch_get(keys=keys, partition_id="train",
                           select_fields=["extra_fields", "rm_scores", "rollout_log_probs", "uid"])
    extras = list(rows["extra_fields"])
    assert {e["won"] for e in extras} == {True, False} and any(e["format_penalty"] for e in extras)
    # Stand-in for the actor's old-log-prob pass, which writes old_log_probs and entropy back as jagged fields.
    gen = torch.Generator().manual_seed(0)
    logprobs = list(rows["rollout_log_probs"].unbind())
    entropies = [torch.rand(len(lp), generator=gen) * 4 for lp in logprobs]

    def jagged(values):
        return torch.nested.as_nested_tensor(values + [torch.zeros(1)] * n_pad, layout=torch.jagged)

    tq.kv_batch_put(keys=batch.keys, partition_id="train", fields=TensorDict(
        {"entropy": jagged(entropies), "old_log_probs": jagged(logprobs)}, batch_size=len(batch)))

    trainer = GymStepTrainer(verl_config(f"algorithm.adv_estimator={estimator}", "actor_rollout_ref.rollout.n=3"))
    metrics: dict = {}
    trainer._compute_advantage(batch, metrics)
    got = list(tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["advantages"])["advantages"]
               .unbind())

    samples = step_samples(extras, list(rows["uid"]), [s.sum() for s in rows["rm_scores"].unbind()], entropies)
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
    tq.kv_clear(keys=batch.keys, partition_id="train")



@pytest.mark.parametrize("metric", ["won", "reward"])
def test_verls_dapo_filter_drops_the_groups_our_trainer_drops(tq, harness, metric):
    # verl's v1 replay buffer judges a group by a per-row metric (the reward_extra_info entry `won`, or the rm_scores
    # sum `reward`); our trainer by the reward its estimator sees (informative_groups), where the format penalty is
    # not (it is subtracted from the advantage). A group whose trajectories all lost, one of them with penalised
    # steps, carries no signal for either; the two groups with a win and a loss are kept by both.
    from empg_gym.agents.algorithms import informative_groups

    prefix = f"d{metric[0]}"
    stored = run_worker(tq, harness, prefix, lost_group=True)
    uids, keys = stored["uids"], stored["keys"]
    trainer = GymStepTrainer(verl_config("algorithm.adv_estimator=empg_gym_grpo", "actor_rollout_ref.rollout.n=3",
                                         "algorithm.filter_groups.enable=True",
                                         f"algorithm.filter_groups.metric={metric}"))
    buffer = trainer.replay_buffer
    assert buffer.filter_groups_metric == metric
    # The buffer's view after a poll: these finished prompts and their rows (the trainer did not submit the prompts
    # here, so the TransferQueue has no prompt tags for _sync_metadata_from_transfer_queue to read).
    buffer.partitions["train"] = dict(zip(keys, stored["tags"], strict=True))
    buffer.finished_keys["train"] = set(uids)
    dropped_by_verl, _ = buffer._dapo_filtered_keys("train")

    rows = tq.kv_batch_get(keys=keys, partition_id="train",
                           select_fields=["extra_fields", "rm_scores", "rollout_log_probs", "uid"])
    extras, row_uids = list(rows["extra_fields"]), list(rows["uid"])
    rewards = [float(s.sum()) for s in rows["rm_scores"].unbind()]
    lost = [(r, e) for r, e, uid in zip(rewards, extras, row_uids, strict=True) if uid == uids[-1]]
    assert not any(e["won"] for _, e in lost)
    # The old treatment (reward = outcome - penalty) would have seen different rewards here and kept the group.
    assert len({r - e["format_penalty"] for r, e in lost}) > 1
    samples = step_samples(extras, row_uids, rewards,
                           [torch.zeros(len(lp)) for lp in rows["rollout_log_probs"].unbind()])
    keep = informative_groups(algorithm_for("empg_gym_grpo", trainer.config.algorithm),
                              to_step_batch(samples, 10.0)[0])
    dropped_by_us = {uid for uid, k in zip(row_uids, keep.tolist(), strict=True) if not k}
    assert dropped_by_verl == dropped_by_us == {uids[-1]}
    tq.kv_clear(keys=keys, partition_id="train")


def script_overrides(script: str, tmp_path, *extra: str, **env_vars: str) -> list[str]:
    """The verl overrides an example launch script passes to ``verl.trainer.main_ppo`` (its PRINT_ARGS mode)."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("ALFWORLD_DATA", "SOURCE", "FAMILY", "ATTN")}
    env.update({"PRINT_ARGS": "1", "DATA": str(tmp_path), "N_GPUS": "2", **env_vars})
    out = subprocess.run(["bash", os.path.join(EXAMPLES, script), *extra], env=env, capture_output=True, text=True,
                         check=True, stdin=subprocess.DEVNULL)
    return out.stdout.splitlines()


@pytest.mark.parametrize("script,estimator,clip_high,dapo,family", [
    ("run_grpo.sh", "empg_gym_grpo", 0.2, False, "alfworld"),
    ("run_dapo.sh", "empg_gym_grpo", 0.28, True, "alfworld"),
    ("run_empg.sh", "empg", 0.2, False, "alfworld"),
    ("run_empg_dapo.sh", "empg", 0.28, True, "alfworld"),
    ("run_gigpo.sh", "gigpo", 0.2, False, "alfworld"),
    ("run_empg.sh", "empg", 0.2, False, "webshop"),
    ("run_gigpo.sh", "gigpo", 0.2, False, "deepsearch"),
])
def test_example_scripts_compose_a_valid_verl_config(tq, tmp_path, script, estimator, clip_high, dapo, family):
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.utils.config import validate_config

    overrides = [o for o in script_overrides(script, tmp_path, FAMILY=family)
                 if not o.startswith("trainer.v1.trainer_mode=")]
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
    # issue #21 (2.1): flash-attn is not installed by verl[vllm]; the scripts ask for sdpa and verl's padding-free
    # path (which packs sequences, for flash-attn only) is off
    model = config.actor_rollout_ref.model
    assert model.override_config.attn_implementation == "sdpa" and model.use_remove_padding is False
    # issue #21 (2.2, 2.4): the family's own files, and ALFWorld's source named in them
    tag = {"alfworld": "alfworld_procedural"}.get(family, family)
    assert config.data.train_files == str(tmp_path / f"{tag}_train.parquet")
    assert config.data.max_prompt_length == (2048 if family == "alfworld" else 4096)
    ours = algorithm_for(estimator, config.algorithm)
    assert (ours.empg is not None) == (estimator == "empg") and ours.norm_by_std
    if ours.empg is not None:
        assert (ours.empg.k, ours.empg.k_next, ours.empg.zeta) == (1.0, 1.0, 0.05)
    if estimator == "gigpo":
        assert (ours.gigpo.omega, ours.gigpo.gamma) == (1.0, 0.95)
    trainer = get_trainer_cls(config.trainer.v1.trainer_mode)(config)
    assert trainer.trainer_mode == "sync" and (trainer.replay_buffer.filter_groups_metric == "won") is dapo


def test_script_knobs_are_overridden_without_a_plus_and_flash_attn_is_one_variable(tq, tmp_path):
    # issue #21 (2.6): the scripts add algorithm.empg.*, so a user's override is `algorithm.empg.zeta=...` (docs/verl.md)
    overrides = script_overrides("run_empg.sh", tmp_path, "algorithm.empg.zeta=0.1", ATTN="flash_attention_2",
                                 ALFWORLD_DATA=str(tmp_path))
    config = verl_config(*[o for o in overrides if not o.startswith("trainer.v1.trainer_mode=")])
    assert algorithm_for("empg", config.algorithm).empg.zeta == 0.1
    model = config.actor_rollout_ref.model
    assert model.override_config.attn_implementation == "flash_attention_2" and model.use_remove_padding is True
    assert config.data.train_files == str(tmp_path / "alfworld_real_train.parquet")  # $ALFWORLD_DATA: real games


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


def test_gpu_smoke_verl_runs_compose_a_valid_config(tq, tmp_path):
    # issue #21 (3): part (b) of scripts/gpu_smoke.py needs a GPU; its verl command lines are checked here
    import importlib.util

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    spec = importlib.util.spec_from_file_location("gpu_smoke", os.path.join(EXAMPLES, "..", "..", "scripts",
                                                                            "gpu_smoke.py"))
    smoke = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(smoke)
    for name, estimator in (("empg", "empg"), ("gigpo", "gigpo"), ("empg_gym_grpo", "empg_gym_grpo"),
                            ("dapo", "empg_gym_grpo")):
        command = smoke.verl_command(name, tmp_path, tmp_path / "model", 1)
        assert command[1:3] == ["-m", "verl.trainer.main_ppo"]
        config = verl_config(*[o for o in command[3:] if not o.startswith("trainer.v1.trainer_mode=")])
        validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
        assert config.algorithm.adv_estimator == estimator and config.trainer.total_training_steps == 2
        assert bool(config.algorithm.filter_groups.enable) is (name == "dapo")
        assert config.data.train_files == str(tmp_path / "keyrooms_train.parquet")


@pytest.mark.parametrize("name", sorted(n for n in ALGORITHMS if n != "empg+ppo"))
def test_every_preset_runs_as_verls_own_recipe(tmp_path, name):
    """``verl_overrides``: each preset on verl's own estimator and loss names (ours where verl has none), composed
    over the GRPO script's settings, passes verl's ``validate_config`` and lands in verl's registries."""  # noqa: D205
    from verl.trainer.ppo.core_algos import POLICY_LOSS_REGISTRY, get_adv_estimator_fn
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from empg_gym.integrations.verl import NATIVE_ESTIMATORS, STEP_ESTIMATORS, verl_overrides

    ours = verl_overrides(name)
    keys = {o.split("=", 1)[0].lstrip("+") for o in ours}
    base = [o for o in script_overrides("run_grpo.sh", tmp_path) if o.split("=", 1)[0].lstrip("+") not in keys
            and not o.startswith("trainer.v1.trainer_mode=")]
    if get_algorithm(name).critic is not None:  # verl instantiates the critic's model config: give it a local one
        from transformers import Qwen2Config

        from empg_gym.agents.models import byte_level_tokenizer

        Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                    num_key_value_heads=1, vocab_size=300, architectures=["Qwen2ForCausalLM"]).save_pretrained(
                        tmp_path / "model")
        byte_level_tokenizer().save_pretrained(tmp_path / "model")
        base = [o for o in base if not o.startswith("actor_rollout_ref.model.path=")]
        base.append(f"actor_rollout_ref.model.path={tmp_path / 'model'}")
    config = verl_config(*base, *ours)
    validate_config(config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    preset, actor = get_algorithm(name), config.actor_rollout_ref.actor
    estimator = str(config.algorithm.adv_estimator)
    assert get_adv_estimator_fn(estimator) is not None and actor.policy_loss.loss_mode in POLICY_LOSS_REGISTRY
    native = preset.empg is None and preset.estimator in NATIVE_ESTIMATORS
    assert estimator == (NATIVE_ESTIMATORS[preset.estimator] if native else name if name in STEP_ESTIMATORS else
                         "empg")
    assert (actor.clip_ratio_low, actor.clip_ratio_high, actor.loss_agg_mode, actor.policy_loss.loss_mode) == (
        preset.clip_low, preset.clip_high, preset.loss_agg, preset.loss_mode)
    assert (actor.use_kl_loss, config.algorithm.norm_adv_by_std_in_grpo) == (preset.use_kl, preset.norm_by_std)
    assert config.algorithm.filter_groups.enable == preset.filter_groups
    assert need_critic(config) == (preset.critic is not None)
    if preset.empg is not None:
        assert algorithm_for(estimator, config.algorithm).empg == preset.empg
        assert algorithm_for(estimator, config.algorithm).format_penalty_on == preset.format_penalty_on


def test_presets_verl_cannot_run_are_refused_with_the_reason():
    from empg_gym.integrations.verl import verl_overrides

    with pytest.raises(ConfigError, match=r"No verl estimator runs EMPG over 'gae' \('empg\+ppo'\): the verl rows "
                                          r"carry no critic values"):
        verl_overrides("empg+ppo")
