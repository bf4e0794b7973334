"""The verl-side ``empg``, ``gigpo`` and ``empg_gym_grpo`` estimators equal our own functions on random step batches.

Batches are built in verl's data structure (``DataProto`` with ``token_level_rewards``, ``response_mask`` and ``uid``,
rows shuffled as verl's sequence balancing does, plus verl's synthetic padding rows) and go through verl's own v1
advantage entry point ``compute_advantage_for_multi_trajectories``, as ``GymStepTrainer`` runs it.
"""

from __future__ import annotations

import os
import random

import numpy as np
import pytest
import torch

if os.environ.get("EMPG_GYM_REQUIRE_VERL") == "1":
    import verl  # noqa: F401  (the verl venv must import verl: fail, never skip)
else:
    pytest.importorskip("verl", reason="verl is not installed (the verl tests run in .venv-verl: make test-verl)")

from omegaconf import OmegaConf  # noqa: E402
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories  # noqa: E402

from empg_gym.agents.algorithms import (  # noqa: E402
    EMPG_BASES,
    discounted_returns,
    empg_advantages,
    get_algorithm,
    gigpo_advantages,
    grpo_advantages,
    observation_keys,
    step_entropy,
)
from empg_gym.errors import ConfigError  # noqa: E402
from empg_gym.integrations.verl import (  # noqa: E402
    STEP_ESTIMATOR_FNS,
    STEP_ESTIMATORS,
    StepRows,
    algorithm_for,
    provide_step_rows,
)

SCALE = 10.0


def random_rows(seed: int, n_groups: int, G: int, T: int, penalty: float = 0.0) -> list[dict]:
    """Step rows of ``n_groups`` prompts × ``G`` trajectories (1-6 steps), shuffled like verl's balanced batch."""
    rng = random.Random(seed)
    rows = []
    for g in range(n_groups):
        for s in range(G):
            won, n = rng.random() < 0.5, rng.randint(1, 6)
            for t in range(n):
                pen = penalty if rng.random() < 0.3 else 0.0
                rows.append({
                    "uid": f"uid{g}", "session": s, "length": rng.randint(1, T), "R": SCALE * won,
                    "extra": {"traj_id": f"uid{g}_{s}", "step_index": t, "is_last": t == n - 1,
                              "anchor_obs": "start" if t == 0 else f"room {rng.randint(1, 3)}",
                              "format_penalty": pen, "env_reward": float(won and t == n - 1),
                              "format_valid": pen == 0.0, "action_valid": True, "reward_scale": SCALE},
                })
    rng.shuffle(rows)
    return rows


def verl_batch(rows: list[dict], T: int, seed: int, n_padding: int = 0) -> tuple[DataProto, StepRows, list[str]]:
    """``rows`` in verl's structures; ``n_padding`` synthetic rows copy row 0's fields with an empty mask (as verl)."""
    g = torch.Generator().manual_seed(seed)
    bs = len(rows) + n_padding
    mask = torch.zeros(bs, T, dtype=torch.int64)
    rewards = torch.zeros(bs, T)
    for i, r in enumerate(rows):
        mask[i, : r["length"]] = 1
        rewards[i, r["length"] - 1] = r["R"]
    entropy = torch.rand(bs, T, generator=g) * 3 + 100.0 * (1 - mask)  # junk beyond the mask must not count
    uids = [r["uid"] for r in rows] + ["pad-uid"] * n_padding
    extras = [r["extra"] for r in rows] + [dict(rows[0]["extra"])] * n_padding
    data = DataProto.from_dict(tensors={"token_level_rewards": rewards, "response_mask": mask},
                               non_tensors={"uid": np.array(uids, dtype=object)})
    padding = torch.tensor([False] * len(rows) + [True] * n_padding)
    keys = [f"{r['uid']}_{r['session']}_{r['extra']['step_index']}" for r in rows]
    keys += [f"pad-uid_{k}_0" for k in range(n_padding)]
    return data, StepRows(tuple(extras), entropy, mask, padding), keys


def ours(rows: list[dict], data: DataProto, step_rows: StepRows, estimator: str, norm: bool = True) -> torch.Tensor:
    """The expected [bs, T] advantages, straight from empg_gym.agents.algorithms' tensor functions.

    Both estimators count each trajectory once in the outcome term's group statistics (``traj_ids``), and a step's
    invalid-format penalty is subtracted from its advantage after the estimator and EMPG (docs/algorithms.md).
    """
    n = len(rows)
    mask = data.batch["response_mask"][:n]
    R = torch.tensor([r["R"] for r in rows])
    group = torch.tensor([int(r["uid"][3:]) for r in rows])
    traj = torch.tensor([int(r["uid"][3:]) * 100 + r["session"] for r in rows])
    step = torch.tensor([r["extra"]["step_index"] for r in rows])
    if estimator == "gigpo":
        G_t = discounted_returns(torch.tensor([SCALE * r["extra"]["env_reward"] for r in rows]), traj, step, 0.95)
        obs = observation_keys([r["extra"]["anchor_obs"] for r in rows])
        A = gigpo_advantages(R, group, G_t, obs, omega=1.0, norm_by_std=norm, traj_ids=traj)
    else:
        A = grpo_advantages(R, group, norm_by_std=norm, traj_ids=traj)
        if estimator == "empg":
            A = empg_advantages(A, step_entropy(step_rows.entropy[:n], mask), traj, step, k=1.0, k_next=1.0, zeta=0.05)
    A = A - torch.tensor([r["extra"]["format_penalty"] for r in rows])
    out = torch.zeros(data.batch["response_mask"].shape)
    out[:n] = A.unsqueeze(-1) * mask
    return out


def run_verl(data: DataProto, step_rows: StepRows, keys: list[str], estimator: str, norm: bool = True,
             **extra: object) -> tuple[torch.Tensor, dict]:
    config = OmegaConf.create({"adv_estimator": estimator, "norm_adv_by_std_in_grpo": norm, **extra})
    with provide_step_rows(step_rows) as context:
        out = compute_advantage_for_multi_trajectories(data, batch_keys=keys, adv_estimator=estimator,
                                                       norm_adv_by_std_in_grpo=norm, config=config)
    return out.batch["advantages"], context.metrics


def test_importing_the_integration_registers_everything_with_verl():
    from importlib.metadata import entry_points

    from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
    from verl.trainer.ppo.v1 import get_trainer_cls

    from empg_gym.integrations.verl import GymAgentLoop, GymStepTrainer

    assert _agent_loop_registry["empg_gym"] == {"_target_": f"{GymAgentLoop.__module__}.GymAgentLoop"}
    for name in ("empg", "gigpo", "empg_gym_grpo"):
        assert core_algos.get_adv_estimator_fn(name).__name__ == f"compute_{name}_step_advantage"
    # EMPG over every base whose estimator runs on step rows, and EMPG in verl-agent's pipeline
    bases = sorted(b.name for b in EMPG_BASES if b.name != "ppo")
    assert sorted(STEP_ESTIMATORS) == sorted(["empg", "gigpo", "empg_gym_grpo", "empg-verl-agent",
                                              *(f"empg+{b}" for b in bases)])
    for name, fn in STEP_ESTIMATOR_FNS.items():
        assert core_algos.get_adv_estimator_fn(name) is fn
    assert get_trainer_cls("empg_gym") is GymStepTrainer
    # verl imports every "verl.plugins" entry point on `import verl`; ours names this package.
    plugins = {ep.name: ep.value for ep in entry_points(group="verl.plugins")}
    assert plugins.get("empg_gym") == "empg_gym.integrations.verl"


@pytest.mark.parametrize("module", ["episodes", "env_pool", "steps", "recipes"])
def test_module_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"empg_gym.integrations.verl.{module}"))
    assert result.attempted > 0 and result.failed == 0


def test_a_fresh_import_of_verl_loads_the_integration_through_the_plugin_entry_point():
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("VERL_USE_EXTERNAL_MODULES", "VERL_USE_EXTERNAL_PLUGINS")}
    code = ("import sys, verl; from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY; "
            "print('empg_gym.integrations.verl' in sys.modules, 'empg' in ADV_ESTIMATOR_REGISTRY)")
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True,
                         check=True, stdin=subprocess.DEVNULL, cwd=os.path.dirname(__file__))
    assert out.stdout.split()[-2:] == ["True", "True"], out.stderr[-2000:]


def test_the_plugin_loads_only_what_each_verl_process_imports():
    # issue #21 (2.7): the plugin used to import verl's whole v1 trainer stack in every verl process (vLLM servers and
    # FSDP actors included); now each part registers right after the verl module it extends is imported
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("VERL_USE_EXTERNAL_MODULES", "VERL_USE_EXTERNAL_PLUGINS")}
    code = """
import sys, verl
report = lambda: print(*(m in sys.modules for m in ("empg_gym.integrations.verl", "verl.trainer.ppo.v1",
                       "empg_gym.integrations.verl.trainer", "empg_gym.integrations.verl.agent_loop")))
report()
from verl.trainer.ppo.core_algos import ADV_ESTIMATOR_REGISTRY
print(sorted(n for n in ADV_ESTIMATOR_REGISTRY if n in ("empg", "gigpo", "empg_gym_grpo")))
from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
print("empg_gym" in _agent_loop_registry)
from verl.trainer.ppo.v1 import get_trainer_cls
print(get_trainer_cls("empg_gym").__name__)
report()
"""
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], env=env, capture_output=True, text=True,
                         check=True, stdin=subprocess.DEVNULL, cwd=os.path.dirname(__file__))
    lines = out.stdout.splitlines()[-5:]
    assert lines == ["True False False False", "['empg', 'empg_gym_grpo', 'gigpo']", "True", "GymStepTrainer",
                     "True True True True"], out.stdout[-2000:] + out.stderr[-2000:]


@pytest.mark.parametrize("estimator", ["empg", "gigpo", "empg_gym_grpo"])
@pytest.mark.parametrize("seed", range(4))
def test_verl_side_advantages_equal_ours(estimator, seed):
    rng = random.Random(seed)
    T = rng.choice([3, 8, 17])
    rows = random_rows(seed, n_groups=rng.randint(1, 4), G=rng.choice([2, 4, 5]), T=T, penalty=0.1 * (seed % 2))
    assert any(r["extra"]["format_penalty"] for r in rows) == bool(seed % 2)
    data, step_rows, keys = verl_batch(rows, T, seed, n_padding=seed % 3)
    norm = seed != 1
    got, metrics = run_verl(data, step_rows, keys, estimator, norm=norm)
    torch.testing.assert_close(got, ours(rows, data, step_rows, estimator, norm=norm), atol=1e-6, rtol=1e-6)
    assert not got[len(rows):].any()  # verl's padding rows get no advantage
    assert metrics["adv/mean"] == pytest.approx(float(ours(rows, data, step_rows, estimator, norm)[:len(rows)]
                                                      .sum(-1).div(data.batch["response_mask"][:len(rows)].sum(-1))
                                                      .mean()), abs=1e-5)
    if estimator == "empg":
        assert metrics["empg/g_mean"] == pytest.approx(1.0, abs=1e-5)


def test_empg_knobs_come_from_the_algorithm_config():
    rows = random_rows(7, n_groups=3, G=4, T=6)
    data, step_rows, keys = verl_batch(rows, 6, 7)
    got, _ = run_verl(data, step_rows, keys, "empg", empg={"zeta": 0.2, "k": 2.0})
    n = len(rows)
    traj = torch.tensor([int(r["uid"][3:]) * 100 + r["session"] for r in rows])
    step = torch.tensor([r["extra"]["step_index"] for r in rows])
    A = grpo_advantages(torch.tensor([r["R"] for r in rows]), torch.tensor([int(r["uid"][3:]) for r in rows]),
                        traj_ids=traj)
    H = step_entropy(step_rows.entropy, data.batch["response_mask"])
    want = empg_advantages(A, H, traj, step, k=2.0, k_next=1.0, zeta=0.2).unsqueeze(-1) * data.batch["response_mask"]
    torch.testing.assert_close(got[:n], want, atol=1e-6, rtol=1e-6)
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['zetta'\]"):
        algorithm_for("empg", {"empg": {"zetta": 0.1}})
    with pytest.raises(ConfigError, match=r"runs 'empg\+dr_grpo', whose advantage is not divided by the group std, "
                                          r"but algorithm.norm_adv_by_std_in_grpo=True; set it to False"):
        algorithm_for("empg+dr_grpo", {"norm_adv_by_std_in_grpo": True})
    assert algorithm_for("empg+dr_grpo").norm_by_std is False
    assert algorithm_for("empg", {"empg": {"recentre": False}}).empg.recentre is False


@pytest.mark.parametrize("penalty", [0.0, 0.1])
def test_empg_gym_grpo_is_verls_grpo_minus_each_steps_format_penalty(penalty):
    # verl's own grpo reads each trajectory's last row and gives its advantage to every row; it knows no penalty.
    # Ours counts each trajectory once too, then subtracts the step's penalty from the step's advantage.
    rows = random_rows(11, n_groups=4, G=4, T=5, penalty=penalty)
    assert any(r["extra"]["format_penalty"] for r in rows) == bool(penalty)
    data, step_rows, keys = verl_batch(rows, 5, 11)
    ours_grpo, _ = run_verl(data, step_rows, keys, "empg_gym_grpo")
    data2, _, _ = verl_batch(rows, 5, 11)
    verl_grpo = compute_advantage_for_multi_trajectories(data2, batch_keys=keys, adv_estimator="grpo",
                                                         config=OmegaConf.create({"adv_estimator": "grpo"}))
    p = torch.tensor([r["extra"]["format_penalty"] for r in rows]).unsqueeze(-1)
    want = verl_grpo.batch["advantages"] - p * data.batch["response_mask"]
    torch.testing.assert_close(ours_grpo, want, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("estimator", sorted(STEP_ESTIMATORS))
def test_format_penalties_enter_as_in_our_trainer(estimator):
    """Every estimator registered with verl (``empg+<base>`` included) is our preset's ``compute_advantages``."""
    from empg_gym.agents.algorithms import compute_advantages
    from empg_gym.agents.rollout import StepSample
    from empg_gym.agents.trainer import to_step_batch

    rows = random_rows(5, n_groups=3, G=4, T=6, penalty=0.1)
    assert any(r["extra"]["format_penalty"] for r in rows)
    data, step_rows, keys = verl_batch(rows, 6, 5)
    preset = get_algorithm(STEP_ESTIMATORS[estimator])
    got, _ = run_verl(data, step_rows, keys, estimator, norm=preset.norm_by_std)
    mask = data.batch["response_mask"].bool()
    samples = [StepSample(
        prompt_ids=torch.zeros(0, dtype=torch.long), response_ids=torch.zeros(int(mask[i].sum()), dtype=torch.long),
        old_log_probs=torch.zeros(int(mask[i].sum())), entropies=step_rows.entropy[i][mask[i]], reward=r["R"],
        format_penalty=r["extra"]["format_penalty"], group_id=int(r["uid"][3:]),
        traj_id=int(r["uid"][3:]) * 100 + r["session"], step_index=r["extra"]["step_index"],
        is_last=r["extra"]["is_last"], observation=r["extra"]["anchor_obs"], action="", response_text="", task_id="",
        format_valid=r["extra"]["format_valid"], action_valid=True, env_reward=r["extra"]["env_reward"],
    ) for i, r in enumerate(rows)]
    batch, _, _ = to_step_batch(samples, SCALE)
    want, _ = compute_advantages(preset, batch)
    torch.testing.assert_close(got, want.unsqueeze(-1) * data.batch["response_mask"], atol=1e-6, rtol=1e-6)


def test_called_by_plain_verl_without_step_rows_it_says_how_to_run():
    rows = random_rows(0, n_groups=1, G=2, T=4)
    data, _, _ = verl_batch(rows, 4, 0)
    with pytest.raises(ConfigError, match="trainer.v1.trainer_mode=empg_gym"):
        compute_advantage(data, adv_estimator="empg", config=OmegaConf.create({"adv_estimator": "empg"}))


def test_rows_not_played_by_the_gym_loop_are_refused():
    rows = random_rows(0, n_groups=1, G=2, T=4)
    data, step_rows, keys = verl_batch(rows, 4, 0)
    bare = StepRows(tuple({"turn_scores": []} for _ in rows), step_rows.entropy, step_rows.entropy_mask)
    with pytest.raises(ConfigError, match="lacks extra field"):
        run_verl(data, bare, keys, "gigpo")
    with pytest.raises(ConfigError, match="bypass mode"):
        run_verl(data, StepRows(step_rows.extra_fields), keys, "empg")
