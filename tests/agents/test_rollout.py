"""Group rollouts: grouping, sample fields, rewards, seeding, vector envs, and a policy that wins."""

from __future__ import annotations

import gymnasium as gym
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import empg_gym  # noqa: E402, F401
from empg_gym.agents import rollout  # noqa: E402
from empg_gym.agents.models import tiny_random_model  # noqa: E402
from empg_gym.agents.policy import GenerationConfig, LLMPolicy  # noqa: E402
from empg_gym.agents.rollout import RolloutConfig, collect_rollouts  # noqa: E402
from empg_gym.errors import ConfigError  # noqa: E402
from empg_gym.wrappers import PromptConfig, make_agent_env  # noqa: E402

SHORT = PromptConfig(action_template="{observation}\n{history_block}[{admissible_actions}]", history_length=1)



@pytest.fixture(scope="module")
def tiny() -> LLMPolicy:
    return LLMPolicy(*tiny_random_model(seed=0))


def _envs(n: int, prompt: PromptConfig = SHORT) -> list[gym.Env]:
    return [make_agent_env("EMPG-KeyDoor-v0", prompt=prompt) for _ in range(n)]


def _config(**kw) -> RolloutConfig:
    base = {"group_size": 3, "max_steps": 3, "generation": GenerationConfig(max_new_tokens=6), "progress": False}
    return RolloutConfig(**{**base, **kw})


def test_module_doctest():
    import doctest

    assert doctest.testmod(rollout).failed == 0


def test_groups_share_a_task_and_samples_carry_their_indices(tiny):
    batch = collect_rollouts(tiny, _envs(6), _config(), seed=3)
    assert len(batch.trajectories) == 6 and len(batch.samples) == 6 * 3  # nobody wins in 3 random steps
    for traj in batch.trajectories:
        assert traj.group_id == traj.traj_id // 3
        mates = [t for t in batch.trajectories if t.group_id == traj.group_id]
        assert {t.task_id for t in mates} == {traj.task_id}
        steps = [s for s in batch.samples if s.traj_id == traj.traj_id]
        assert [s.step_index for s in steps] == list(range(traj.length))
        assert [s.is_last for s in steps] == [False] * (traj.length - 1) + [True]
        assert all(s.reward == 10.0 * traj.won and s.group_id == traj.group_id for s in steps)
        assert all(s.task_id == traj.task_id for s in steps)
        assert traj.truncated and not traj.won
    first = [s for s in batch.samples if s.step_index == 0]
    assert all(s.observation.startswith("You are in room") for s in first)
    assert all(s.format_penalty == 0.1 and not s.format_valid for s in batch.samples)  # random text is malformed
    m = batch.metrics
    assert m["rollout/success_rate"] == 0.0 and m["rollout/episode_len"] == 3.0 and m["rollout/num_samples"] == 18
    idx = batch.index_tensors()
    assert idx["traj_id"].tolist() == [s.traj_id for s in batch.samples]
    assert idx["step_entropy"].shape == (18,) and bool((idx["step_entropy"] > 0).all())


def test_old_log_probs_are_the_policys_log_probs(tiny):
    batch = collect_rollouts(tiny, _envs(3), _config(max_steps=2), seed=0)
    with torch.no_grad():
        scores = tiny.score([s.prompt_ids for s in batch.samples], [s.response_ids for s in batch.samples])
    for i, s in enumerate(batch.samples):
        n = s.response_ids.numel()
        torch.testing.assert_close(scores.log_probs[i, :n], s.old_log_probs, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(scores.entropies[i, :n], s.entropies, atol=1e-4, rtol=1e-4)
        assert tiny.tokenizer.decode(s.prompt_ids.tolist()).count(s.observation) == 1


def test_task_choice_is_seeded_or_explicit(tiny):
    cfg = _config(max_steps=1)
    a = collect_rollouts(tiny, _envs(6), cfg, seed=11)
    b = collect_rollouts(tiny, _envs(6), cfg, seed=11)
    assert [t.task_id for t in a.trajectories] == [t.task_id for t in b.trajectories]
    assert [s.response_ids.tolist() for s in a.samples] == [s.response_ids.tolist() for s in b.samples]
    draws = {tuple(t.task_id for t in collect_rollouts(tiny, _envs(6), cfg, seed=s).trajectories) for s in range(4)}
    assert len(draws) > 1
    train = set(gym.make("EMPG-KeyDoor-v0").unwrapped.task_ids("train"))
    assert all(t.task_id in train for t in a.trajectories)
    pinned = collect_rollouts(tiny, _envs(6), cfg, task_ids=["keydoor-4r-s1-k4", "keydoor-2r-s1-k1"], seed=0)
    assert [t.task_id for t in pinned.trajectories] == ["keydoor-4r-s1-k4"] * 3 + ["keydoor-2r-s1-k1"] * 3


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_vector_envs_give_the_same_rollout_as_a_list(tiny, kind):
    cfg = _config(max_steps=2)
    tasks = ["keydoor-3r-s2-k1", "keydoor-2r-s1-k2"]
    reference = collect_rollouts(tiny, _envs(6), cfg, task_ids=tasks, seed=5)
    fns = [lambda: make_agent_env("EMPG-KeyDoor-v0", prompt=SHORT) for _ in range(6)]
    vec = gym.vector.SyncVectorEnv(fns) if kind == "sync" else gym.vector.AsyncVectorEnv(fns, shared_memory=True)
    try:
        got = collect_rollouts(tiny, vec, cfg, task_ids=tasks, seed=5)
    finally:
        vec.close()
    assert [(s.traj_id, s.step_index, s.observation, s.action) for s in got.samples] == [
        (s.traj_id, s.step_index, s.observation, s.action) for s in reference.samples
    ]
    assert [s.response_ids.tolist() for s in got.samples] == [s.response_ids.tolist() for s in reference.samples]


def test_plain_envs_are_wrapped_for_the_agent(tiny):
    batch = collect_rollouts(tiny, [gym.make("EMPG-KeyDoor-v0") for _ in range(3)], _config(max_steps=1), seed=0)
    prompt = tiny.tokenizer.decode(batch.samples[0].prompt_ids.tolist())
    assert "Your admissible actions in the current situation are" in prompt


def test_a_policy_that_knows_the_task_wins_and_every_step_gets_the_outcome_reward():
    # Teach a tiny model the two steps of one task through LLMPolicy.score gradients, then roll it out greedily.
    pol = LLMPolicy(*tiny_random_model(seed=7))
    env = _envs(1)[0]
    p0, _ = env.reset(options={"task_id": "keydoor-2r-s2-k2"})
    r0 = "<think>key</think><action>take key</action>"
    p1, *_ = env.step(r0)
    r1 = "<think>door</think><action>open door</action>"
    prompts = pol.encode_prompts([p0, p1])
    responses = [torch.tensor(pol.tokenizer(r)["input_ids"]) for r in (r0, r1)]
    opt = torch.optim.Adam(pol.trainable_parameters(), lr=1e-2)
    pol.model.train()
    for _ in range(200):
        s = pol.score(prompts, responses, with_entropy=False)
        loss = -s.log_probs.sum() / s.mask.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    pol.model.eval()
    cfg = _config(group_size=2, max_steps=None, reward_scale=5.0,
                  generation=GenerationConfig(max_new_tokens=64, do_sample=False))
    batch = collect_rollouts(pol, _envs(2), cfg, task_ids=["keydoor-2r-s2-k2"], seed=0)
    assert [t.won for t in batch.trajectories] == [True, True]
    assert [t.length for t in batch.trajectories] == [2, 2] and not any(t.truncated for t in batch.trajectories)
    assert [s.action for s in batch.samples] == ["take key", "open door"] * 2
    assert all(s.reward == 5.0 and s.format_valid and s.format_penalty == 0.0 for s in batch.samples)
    assert [s.env_reward for s in batch.samples] == [0.0, 1.0, 0.0, 1.0]
    assert batch.metrics["rollout/success_rate"] == 1.0 and batch.metrics["rollout/format_valid_rate"] == 1.0


def test_bad_arguments_are_explained(tiny):
    with pytest.raises(ConfigError, match="Got 4 envs for group_size=3"):
        collect_rollouts(tiny, _envs(4), _config())
    with pytest.raises(ConfigError, match=r"task_ids must list one task per group \(2 = envs / group_size\)"):
        collect_rollouts(tiny, _envs(6), _config(), task_ids=["keydoor-2r-s1-k1"])
    with pytest.raises(ConfigError, match="group_size=0 must be at least 1"):
        RolloutConfig(group_size=0)
    with pytest.raises(ConfigError, match="Unknown split 'trian'"):
        RolloutConfig(split="trian")
    vec = gym.vector.SyncVectorEnv([lambda: gym.make("EMPG-KeyDoor-v0")] * 3)
    try:
        with pytest.raises(ConfigError, match="do not produce step prompts"):
            collect_rollouts(tiny, vec, _config())
    finally:
        vec.close()


def test_importing_the_agent_modules_does_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, empg_gym.wrappers, empg_gym.agents.rollout, empg_gym.agents.policy, empg_gym.agents.models; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_vector_env_draws_group_tasks_from_the_split(tiny):
    fns = [lambda: make_agent_env("EMPG-KeyDoor-v0", prompt=SHORT) for _ in range(6)]
    vec = gym.vector.SyncVectorEnv(fns)
    try:
        got = collect_rollouts(tiny, vec, _config(max_steps=1, split="eval_in_distribution"), seed=2)
    finally:
        vec.close()
    listed = collect_rollouts(tiny, _envs(6), _config(max_steps=1, split="eval_in_distribution"), seed=2)
    assert [t.task_id for t in got.trajectories] == [t.task_id for t in listed.trajectories]
    assert {t.task_id for t in got.trajectories} <= set(gym.make("EMPG-KeyDoor-v0").unwrapped.task_ids("eval_in_distribution"))


def test_on_step_reports_every_lockstep_step_in_order(tiny):
    calls = []
    batch = collect_rollouts(tiny, _envs(3), _config(max_steps=3), seed=0, on_step=lambda i, s: calls.append((i, s)))
    assert [i for i, _ in calls] == [0, 1, 2] == list(range(int(batch.metrics["rollout/episode_len"])))
    assert all(s > 0 for _, s in calls)
    assert sum(s for _, s in calls) <= batch.metrics["time/rollout_s"]
