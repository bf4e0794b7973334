"""TrainConfig.device: where the policy lives (``auto`` picks the first CUDA GPU when there is one)."""

from __future__ import annotations

import pytest
import torch

from empg_gym.agents.config import TrainConfig
from empg_gym.agents.trainer import build_policy, resolve_device
from empg_gym.errors import ConfigError


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "", 0])
def test_bad_devices_are_refused_with_the_choices(device):
    with pytest.raises(ConfigError, match=r"choose 'auto', 'cpu', 'cuda' or 'cuda:N'"):
        TrainConfig(device=device)


def test_auto_is_the_cpu_without_cuda_and_the_policy_lives_there():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    policy = build_policy(TrainConfig(env_id="EMPG-KeyDoor-v0", model="tiny-actions", device="cpu"))
    assert policy.device.type == "cpu"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_without_one_says_so():
    with pytest.raises(ConfigError, match="torch sees no CUDA GPU here; use device='cpu' or 'auto'"):
        resolve_device("cuda:0")
