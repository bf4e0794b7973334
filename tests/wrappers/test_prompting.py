"""The step prompt: contents, history window, free-form variant, vector-env transport, validation."""

from __future__ import annotations

import doctest

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import empg_gym  # noqa: F401
from empg_gym.errors import ConfigError
from empg_gym.wrappers import PromptConfig, PromptWrapper, make_agent_env, prompting

GOOD = "<think>t</think><action>{}</action>"


def test_module_doctests():
    assert doctest.testmod(prompting).failed == 0


def test_first_prompt_has_task_observation_actions_and_format():
    env = make_agent_env("EMPG-KeyDoor-v0")
    prompt, info = env.reset(options={"task_id": "keydoor-3r-s1-k3"})
    assert "Your task is to: open the door." in prompt
    assert "Your current observation is: " + info["raw_observation"] in prompt
    assert "[\n'go east'\n'look'\n]" in prompt
    assert "<think> </think>" in prompt and "<action> </action>" in prompt
    assert "already taken" not in prompt  # no history block before the first step
    assert prompt in env.observation_space


def test_history_shows_the_last_n_pairs_with_absolute_step_numbers():
    env = make_agent_env("EMPG-KeyDoor-v0", prompt=PromptConfig(history_length=2))
    _, info = env.reset(options={"task_id": "keydoor-3r-s1-k3"})
    observations = [info["raw_observation"]]
    for act in ("go east", "look", "go east"):
        prompt, *_, info = env.step(GOOD.format(act))
        observations.append(info["raw_observation"])
    assert "you have already taken 3 step(s)" in prompt and "You are now at step 4." in prompt
    assert "most recent 2 observations" in prompt
    assert f"[Observation 2: '{observations[1]}', Action 2: 'look']" in prompt
    assert f"[Observation 3: '{observations[2]}', Action 3: 'go east']" in prompt
    assert "Observation 1:" not in prompt
    assert "'take key'" in prompt and "'open door'" in prompt  # room 3 has the key and the door


def test_history_records_the_parsed_action_not_the_raw_response():
    env = make_agent_env("EMPG-KeyDoor-v0")
    env.reset(options={"task_id": "keydoor-3r-s1-k3"})
    prompt, *_ = env.step("<think>long reasoning here</think><action>GO EAST</action>")
    assert "Action 1: 'go east'" in prompt and "long reasoning" not in prompt


def test_zero_history_and_hidden_actions():
    env = PromptWrapper(gym.make("EMPG-KeyDoor-v0"), PromptConfig(history_length=0, hidden_actions=("look",)))
    env.reset(options={"task_id": "keydoor-3r-s1-k3"})
    prompt, *_ = env.step("go east")
    assert "already taken" not in prompt and "'look'" not in prompt and "'go west'" in prompt


def test_free_form_env_gets_the_search_answer_format():
    from tests.wrappers.test_actions import EchoSearchEnv

    env = make_agent_env(EchoSearchEnv())
    prompt, _ = env.reset(seed=0)
    assert "Your question: What is the capital of France?" in prompt
    assert "<search> your query </search>" in prompt and "<answer> </answer>" in prompt
    assert "admissible actions" not in prompt
    prompt, *_ = env.step("<think>t</think><search>capital</search>")
    assert "Action 1: '<search>capital</search>'" in prompt and "<information>" in prompt


def test_without_think_the_prompt_stops_asking_for_a_think_block():
    from tests.wrappers.test_actions import EchoSearchEnv

    env = make_agent_env("EMPG-KeyDoor-v0", require_think=False)
    prompt, _ = env.reset(options={"task_id": "keydoor-3r-s1-k3"})
    assert "<think>" not in prompt and prompt.endswith("present it within <action> </action> tags.")
    *_, info = env.step("<action>go east</action>")
    assert info["format_valid"]
    search_prompt, _ = make_agent_env(EchoSearchEnv(), require_think=False).reset(seed=0)
    assert "<think>" not in search_prompt and "Do exactly one of the following:" in search_prompt
    custom = PromptConfig(action_template="Think first. T={task} A={admissible_actions}")
    assert make_agent_env("EMPG-KeyDoor-v0", prompt=custom, require_think=False).reset()[0].startswith("Think first.")


def test_custom_templates_are_validated():
    with pytest.raises(ConfigError, match=r"action_template uses unknown field\(s\) \['obs'\]"):
        PromptConfig(action_template="{obs}")
    with pytest.raises(ConfigError, match="history_length=-1 must be >= 0"):
        PromptConfig(history_length=-1)
    cfg = PromptConfig(action_template="T={task} O={observation} A={admissible_actions}{history_block}")
    env = make_agent_env("EMPG-KeyDoor-v0", prompt=cfg)
    prompt, _ = env.reset(options={"task_id": "keydoor-2r-s2-k2"})
    assert prompt.startswith("T=open the door. O=You are in room 2 of 2.")


def test_env_instance_with_make_kwargs_is_refused():
    with pytest.raises(ConfigError, match="only used with an env id"):
        make_agent_env(gym.make("EMPG-KeyDoor-v0"), split="train")


def test_wrapped_env_passes_check_env():
    check_env(make_agent_env("EMPG-KeyDoor-v0").unwrapped)  # the base contract
    env = make_agent_env("EMPG-KeyDoor-v0")
    prompt, _ = env.reset(seed=3)
    assert isinstance(prompt, str) and prompt in env.observation_space


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_prompts_survive_vector_envs_with_shared_memory(kind):
    fns = [lambda: make_agent_env("EMPG-KeyDoor-v0") for _ in range(2)]
    if kind == "sync":
        vec = gym.vector.SyncVectorEnv(fns)
    else:
        vec = gym.vector.AsyncVectorEnv(fns, shared_memory=True)
    try:
        obs, infos = vec.reset(seed=[0, 1])
        direct = [make_agent_env("EMPG-KeyDoor-v0").reset(seed=s)[0] for s in (0, 1)]
        assert list(obs) == direct
        obs, _, _, _, infos = vec.step([GOOD.format("look"), "bad"])
        assert list(infos["format_valid"]) == [True, False]
        assert "Action 1: 'look'" in obs[0] and "Action 1: 'bad'" in obs[1]
    finally:
        vec.close()
