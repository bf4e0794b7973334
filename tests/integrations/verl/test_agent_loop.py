"""GymAgentLoop.run against a stand-in for verl's server manager (scripted token ids), as verl's CPU tests do.

The stand-in (``harness.Server``, conftest.py) has verl's ``LLMServerClient.generate`` signature and returns verl's
``TokenOutput``; everything else is verl's own: ``AgentLoopBase`` and its chat-template token builder,
``AgentLoopOutput``, and the v1 worker's row packing (``list_of_dict_to_tensordict``).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import gymnasium as gym
import pytest

if os.environ.get("EMPG_GYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401  (the verl venv must import verl: fail, never skip)
else:
    pytest.importorskip("verl", reason="verl is not installed (the verl tests run in .venv-verl: make test-verl)")

from verl.utils.tensordict_utils import list_of_dict_to_tensordict  # noqa: E402

import empg_gym  # noqa: E402,F401
from empg_gym.errors import ConfigError  # noqa: E402
from empg_gym.integrations.verl import GymAgentLoop  # noqa: E402
from empg_gym.registration import register_env  # noqa: E402


def check_rows(outputs: list[Any], traj_id: str, response_length: int) -> None:
    """Well-formed verl rows: lengths agree, step indices 0..n-1, one last step, one outcome on every row."""
    assert [o.extra_fields["step_index"] for o in outputs] == list(range(len(outputs)))
    assert [o.extra_fields["is_last"] for o in outputs] == [False] * (len(outputs) - 1) + [True]
    for o in outputs:
        assert o.prompt_ids and o.response_ids
        assert len(o.response_ids) == len(o.response_mask) == len(o.response_logprobs) <= response_length
        assert set(o.response_mask) == {1}
        assert o.extra_fields["traj_id"] == traj_id
        assert o.reward_score == outputs[-1].reward_score
        assert o.extra_fields["reward_extra_info"] == outputs[-1].extra_fields["reward_extra_info"]
        # verl's v1 trainer reads the weight versions of every row (np.array(..., dtype=int) in its metrics).
        assert isinstance(o.extra_fields["min_global_steps"], int) and isinstance(o.extra_fields["max_global_steps"], int)
    # verl's v1 worker packs every output of a trajectory into one TensorDict: the dicts must share their keys.
    td = list_of_dict_to_tensordict([{**o.as_dict(), "uid": "u"} for o in outputs])
    assert td.batch_size[0] == len(outputs) and "rm_scores" in td.keys() and "rollout_log_probs" in td.keys()
    assert [float(s.sum()) for s in td["rm_scores"].unbind()] == [outputs[-1].reward_score] * len(outputs)


@pytest.mark.slow
@pytest.mark.parametrize("env_id", ["EMPG-ALFWorld-v0", "EMPG-WebShop-v0", "EMPG-DeepSearch-v0"])
def test_oracle_responses_win(harness, env_id):
    task_id = gym.make(env_id).unwrapped.task_ids("eval_in_distribution")[0]
    script, first_prompt = harness.oracle_script(env_id, task_id, seed=3)
    server = harness.Server(script, version=lambda k: 7 if k < 2 else 8)  # the weights change after two steps
    [outputs] = harness.play(server, [harness.row(env_id, task_id, seed=3, uid="g1", session=2)])

    assert len(outputs) == len(script) and len(server.calls) == len(script)
    check_rows(outputs, "g1_2", harness.response_length)
    assert all(o.extra_fields["won"] and o.reward_score == 10.0 for o in outputs)
    assert all(o.extra_fields["format_valid"] and o.extra_fields["format_penalty"] == 0.0 for o in outputs)
    assert outputs[-1].extra_fields["reward_extra_info"] == {"won": 1.0, "score": 1.0, "num_steps": len(script)}
    assert {o.extra_fields["task_id"] for o in outputs} == {task_id}
    assert {(o.extra_fields["min_global_steps"], o.extra_fields["max_global_steps"]) for o in outputs} == {(7, 8)}
    assert [o.extra_fields["global_steps"] for o in outputs[:3]] == [7, 7, 8]  # each row keeps its generation's
    # The model saw our trainer's step prompt as a chat user turn, and the rows hold exactly the scripted tokens.
    tok = harness.tokenizer
    assert server.calls[0]["prompt"] == tok.apply_chat_template(
        [{"role": "user", "content": first_prompt}], tokenize=False, add_generation_prompt=True)
    assert tok.decode(outputs[0].prompt_ids) == server.calls[0]["prompt"]
    assert tok.decode(outputs[0].response_ids, skip_special_tokens=True) == script[0]
    assert outputs[0].response_logprobs[:2] == pytest.approx([-0.01, -0.02])
    # One request id per trajectory (sticky routing), sampling params handed through.
    assert len({c["request_id"] for c in server.calls}) == 1
    assert all(c["sampling_params"] == {"temperature": 1.0} for c in server.calls)
    # The anchor observation is the raw observation each step acted on; later prompts carry the history.
    assert outputs[0].extra_fields["anchor_obs"] in first_prompt
    assert "Prior to this step" in server.calls[1]["prompt"] and "Prior to this step" not in first_prompt


@pytest.mark.slow
def test_concurrent_alfworld_episodes_in_worker_threads_all_win(harness):
    """Several ALFWorld engines stepped at once from the executor's threads stay independent."""
    env_id = "EMPG-ALFWorld-v0"
    tasks = gym.make(env_id).unwrapped.task_ids("eval_out_of_distribution")[:4]
    scripts = {f"t{i}": iter(harness.oracle_script(env_id, t, seed=i)[0]) for i, t in enumerate(tasks)}
    server = harness.Server(lambda prompt, request_id: next(scripts[request_id.split("_")[0]]))
    results = harness.play(server, [harness.row(env_id, t, seed=i, uid=f"t{i}") for i, t in enumerate(tasks)])
    assert all(outputs[-1].extra_fields["won"] for outputs in results)
    assert all(next(s, None) is None for s in scripts.values())  # every plan was played to its end


def test_history_window_and_system_prompt_follow_the_settings(harness):
    server = harness.Server(["<think>a</think><action>look</action>"] * 4)
    harness.play(server, [harness.row("EMPG-KeyDoor-v0", "keydoor-3r-s1-k3", uid="h")], history_length=1,
                 max_steps=4, system_prompt="Be brief.")
    last = server.calls[-1]["prompt"]
    assert len(server.calls) == 4
    assert last.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert "you have already taken 3 step(s). Below are the most recent 1 observations" in last


def test_malformed_text_gets_feedback_and_penalty_not_an_exception(harness):
    garbage = ["I would go east now", "", "<action>fly away</action>", "\ufffd\x00<think>x</think>"] * 3
    server = harness.Server(garbage)
    [outputs] = harness.play(server, [harness.row("EMPG-KeyDoor-v0", "keydoor-3r-s1-k3", uid="m")])

    assert len(outputs) == 10  # KeyDoor's registered step limit
    check_rows(outputs, "m_0", harness.response_length)
    assert all(not o.extra_fields["format_valid"] for o in outputs)
    assert all(o.extra_fields["format_penalty"] == pytest.approx(0.1) for o in outputs)
    assert not any(o.extra_fields["action_valid"] for o in outputs)
    assert all(o.reward_score == 0.0 and not o.extra_fields["won"] for o in outputs)
    assert "Nothing happens." in server.calls[1]["prompt"]  # the env's invalid-action feedback, shown next step
    # verl copies the last row's reward to every row, so the penalty travels as a field, not in reward_score.
    assert outputs[0].extra_fields["env_reward"] == 0.0


def test_penalty_follows_the_loop_setting_and_well_formed_steps_pay_none(harness):
    script = ["<think>key first</think><action>go east</action>", "go east"]
    [outputs] = harness.play(harness.Server(script), [harness.row("EMPG-KeyDoor-v0", "keydoor-3r-s1-k3", uid="p")],
                             invalid_format_penalty=0.25, max_steps=2)
    assert [o.extra_fields["format_penalty"] for o in outputs] == [0.0, 0.25]
    assert [o.extra_fields["format_valid"] for o in outputs] == [True, False]


class SlowStep(gym.Wrapper):
    """KeyDoor whose step blocks its thread for 0.25 s (like a slow simulator) and logs when it ran."""

    log: list[tuple[str, float, float]] = []

    def step(self, action):
        start = time.perf_counter()
        time.sleep(0.25)
        self.log.append((self.env.unwrapped.current_task.task_id, start, time.perf_counter()))
        return self.env.step(action)


register_env("EMPGTest/SlowKeyDoor-v0", lambda **kw: SlowStep(gym.make("EMPG-KeyDoor-v0", **kw)), max_episode_steps=3,
             family="toy")


def test_two_runs_on_one_event_loop_interleave_while_an_env_step_sleeps(harness):
    SlowStep.log.clear()
    server = harness.Server(lambda prompt, request_id: "<think>x</think><action>look</action>")
    start = time.perf_counter()
    a, b = harness.play(server, [harness.row("EMPGTest/SlowKeyDoor-v0", "keydoor-3r-s1-k3", uid="a"),
                                 harness.row("EMPGTest/SlowKeyDoor-v0", "keydoor-3r-s2-k1", uid="b")])
    wall = time.perf_counter() - start

    assert len(a) == len(b) == 3 and len(SlowStep.log) == 6
    steps_a = [(s, e) for t, s, e in SlowStep.log if t == "keydoor-3r-s1-k3"]
    steps_b = [(s, e) for t, s, e in SlowStep.log if t == "keydoor-3r-s2-k1"]
    overlaps = sum(sa < eb and sb < ea for sa, ea in steps_a for sb, eb in steps_b)
    assert overlaps >= 2, SlowStep.log  # B's env stepped while A's was blocked in its sleep, and vice versa
    assert wall < 6 * 0.25 * 0.8  # serial steps would take 1.5 s


def test_envs_are_reused_per_key_and_closed_when_an_episode_fails(harness):
    script = ["<think>x</think><action>look</action>"] * 2
    harness.play(harness.Server(script), [harness.row("EMPG-KeyDoor-v0", "keydoor-2r-s1-k1", uid="r1")], max_steps=2)
    pool = GymAgentLoop.pool
    before = pool.stats()
    harness.play(harness.Server(script), [harness.row("EMPG-KeyDoor-v0", "keydoor-2r-s1-k2", uid="r2")], max_steps=2)
    after = pool.stats()
    assert after["created"] == before["created"] and after["in_use"] == 0  # the idle env was reused

    class Boom(harness.Server):
        async def generate(self, request_id, **kwargs):
            raise RuntimeError("server went away")

    with pytest.raises(RuntimeError, match="server went away"):
        harness.play(Boom([]), [harness.row("EMPG-KeyDoor-v0", "keydoor-2r-s1-k2", uid="r3")], max_steps=2)
    failed = pool.stats()
    assert failed["in_use"] == 0 and failed["closed"] == after["closed"] + 1 and failed["idle"] == after["idle"] - 1

    threads = threading.active_count()
    harness.play(harness.Server(lambda prompt, request_id: script[0]),
                 [harness.row("EMPG-KeyDoor-v0", "keydoor-2r-s1-k2", uid=f"x{i}") for i in range(4)], max_steps=2)
    assert pool.stats()["in_use"] == 0 and threading.active_count() <= threads + 32


def test_bad_rows_say_what_is_wrong(harness):
    server = harness.Server([])
    with pytest.raises(ConfigError, match=r"lacks \['task_id', 'seed'\]"):
        harness.play(server, [{"extra_info": {"env_id": "EMPG-KeyDoor-v0"}, "uid": "u", "session_id": 0}])
    with pytest.raises(ConfigError, match="only verl's v1 trainer"):
        harness.play(server, [{"extra_info": {"env_id": "EMPG-KeyDoor-v0", "task_id": "keydoor-3r-s1-k3",
                                              "seed": 0}}])
    with pytest.raises(ConfigError, match="env_kwargs is not JSON"):
        harness.play(server, [{**harness.row("EMPG-KeyDoor-v0", "keydoor-3r-s1-k3"),
                               "extra_info": {"env_id": "EMPG-KeyDoor-v0", "task_id": "keydoor-3r-s1-k3", "seed": 0,
                                              "env_kwargs": "{oops"}}])


def test_a_step_prompt_cut_by_prompt_length_is_counted_and_warned(harness, caplog):
    # issue #21 (2.9): verl keeps the last rollout.prompt_length tokens of a longer prompt; the row says so and the
    # loop warns with the fix, on the 1st, 2nd, 4th... cut of each env in the process
    env_id = "EMPG-KeyDoor-v0"
    task_id = gym.make(env_id).unwrapped.task_ids("eval_in_distribution")[0]
    script, _ = harness.oracle_script(env_id, task_id, seed=0)
    with caplog.at_level("WARNING", logger="empg_gym.integrations.verl.agent_loop"):
        [cut] = harness.play(harness.Server(script), [harness.row(env_id, task_id)], prompt_length=48)
    [whole] = harness.play(harness.Server(script), [harness.row(env_id, task_id)])
    assert all(o.extra_fields["prompt_truncated"] for o in cut) and len(cut[0].prompt_ids) == 48
    assert [o.extra_fields["prompt_tokens"] for o in cut] == [len(o.prompt_ids) for o in whole]
    assert not any(o.extra_fields["prompt_truncated"] for o in whole)
    assert f"{env_id}: a step prompt of {len(whole[0].prompt_ids)} tokens exceeds rollout.prompt_length=48" in caplog.text
    assert "Raise data.max_prompt_length" in caplog.text


@pytest.mark.parametrize("estimator,mode,refused", [
    ("empg", "sync", True), ("gigpo", "colocate_async", True), ("empg", "empg_gym", False), ("grpo", "sync", False),
])
def test_our_estimators_under_another_trainer_mode_are_refused_when_the_loop_starts(harness, estimator, mode, refused):
    # issue #21 (2.5): under trainer_mode=sync our estimators get no step rows and used to fail only at the first
    # advantage step, after a whole rollout; the first agent loop (validation before training) now refuses
    extra = {"algorithm": {"adv_estimator": estimator}, "trainer": {"v1": {"trainer_mode": mode}}}

    async def build():
        return harness.make_loop(harness.Server([]), extra_config=extra)

    if refused:
        with pytest.raises(ConfigError, match=f"adv_estimator={estimator} needs trainer.v1.trainer_mode=empg_gym"):
            asyncio.run(build())
    else:
        assert asyncio.run(build()).settings is not None
