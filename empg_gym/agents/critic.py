"""The ``ppo`` preset's turn-level critic: a value head on the policy's features at each step's last prompt token.

Turn-PPO (Li et al. 2025, arXiv 2512.17008) treats each env step as one action: the state is the step's prompt, and
the critic's value ``V(s_t)`` is read where the prompt ends. GAE then runs over the steps of each trajectory
(:func:`~empg_gym.agents.algorithms.turn_gae`, gamma 0.99, lambda 0.9 as that paper's ablation recommends).

Where the head sits, and why: a small MLP (:class:`ValueHead`) on the *detached* final hidden state of the policy
trunk at the last prompt token, with its own AdamW. The features come from the policy's own forward passes (a hook on
the output layer, as the ``lora_ensemble`` signal reads them), so the critic costs no backbone backward pass and no
second model in memory, and it is the same for the fully trained ``tiny-actions`` model and for an HF model with or
without a LoRA adapter. The value loss never moves the policy's weights: PPO's actor update is exactly the other
presets' (only the advantages differ), which keeps bench comparisons about the estimator. The price: the critic sees
the policy's features, not ones it learns itself (verl and Turn-PPO train a separate critic model, initialised from
the policy). Its extra compute per update: one no-grad forward of the trunk over the batch's prompts (the values
before the update), and per micro-batch of the update an MLP forward/backward on ``n`` feature vectors.

The trainer calls :meth:`Critic.measure` before the advantages, :meth:`Critic.capture` around the policy's forward of
each micro-batch followed by :meth:`Critic.train_on`, :meth:`Critic.step` after each optimizer step, and checkpoints
:meth:`Critic.state_dict`. :class:`NoCritic` (every preset without ``critic``) does nothing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor

from empg_gym.agents.algorithms import (
    AlgorithmConfig,
    LossNorm,
    StepBatch,
    explained_variance,
    gae_step_rewards,
    turn_gae,
    value_loss,
)
from empg_gym.errors import ConfigError


class ValueHead(torch.nn.Module):
    """``V(h) = w2 . tanh(W1 h + b1) + b2``: a two-layer MLP from a ``[.., d]`` feature to a scalar value.

    Example:
        >>> head = ValueHead(8, 16, generator=torch.Generator().manual_seed(0))
        >>> head(torch.zeros(3, 8)).shape
        torch.Size([3])
    """

    def __init__(self, hidden: int, width: int, *, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(hidden, width), torch.nn.Tanh(), torch.nn.Linear(width, 1))
        with torch.no_grad():
            for layer in (self.net[0], self.net[2]):
                layer.weight.normal_(0.0, hidden**-0.5 if layer is self.net[0] else width**-0.5, generator=generator)
                layer.bias.zero_()

    def forward(self, h: Tensor) -> Tensor:
        """``[..., d] -> [...]``."""
        return self.net(h).squeeze(-1)


class NoCritic:
    """The critic of a preset without one: every hook does nothing."""

    def measure(self, batch: StepBatch, prompts: Sequence[Tensor], responses: Sequence[Tensor], *,
                temperature: float, chunk_size: int) -> tuple[StepBatch, dict[str, float]]:
        """Return ``batch`` unchanged and no metrics."""
        return batch, {}

    def capture(self) -> AbstractContextManager[Any]:
        """Nothing to read."""
        return nullcontext()

    def train_on(self, idx: Tensor, batch: StepBatch, norm: LossNorm) -> dict[str, float]:
        """Nothing to train."""
        return {}

    def step(self) -> None:
        """Nothing to apply."""

    def state_dict(self) -> dict[str, Any]:
        """Nothing to save."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore."""


class Critic(NoCritic):
    """Turn-level value head trained beside the policy (see the module docstring).

    Args:
        policy: the :class:`~empg_gym.agents.policy.LLMPolicy` being trained.
        algo: its algorithm config; ``algo.critic`` holds the head's width, learning rate, clip and ``vf_coef``.
        lr: the policy's learning rate; with ``algo.critic.lr = None`` the head's is ``lr_scale`` x this.
        seed: seeds the head's initial weights.
    """

    def __init__(self, policy: Any, algo: AlgorithmConfig, *, lr: float, seed: int = 0) -> None:
        cfg = algo.critic
        if cfg is None:
            raise ConfigError("Critic needs algo.critic (a CriticConfig); the ppo preset sets it.")
        self.policy, self.algo, self.cfg = policy, algo, cfg
        self.head_layer = policy.model.get_output_embeddings()
        hidden = int(self.head_layer.weight.shape[1])
        self.value = ValueHead(hidden, cfg.width, generator=torch.Generator().manual_seed(seed)).to(policy.device)
        self.lr = cfg.lr if cfg.lr is not None else cfg.lr_scale * lr
        self.optimizer = torch.optim.AdamW(self.value.parameters(), lr=self.lr, weight_decay=0.0)
        self._captured: Tensor | None = None
        self._old: Tensor | None = None  # [N] values at measure time
        self._returns: Tensor | None = None  # [N] GAE returns of this update

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the output layer's input (detached) during one policy forward pass."""

        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            self._captured = args[0].detach()

        handle = self.head_layer.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def _prompt_features(self, t: int) -> Tensor:
        """``[n, d]``: the captured hidden state at the last prompt token.

        :meth:`~empg_gym.agents.policy.Policy.score` feeds the prompt and all response tokens but the last, so the
        last prompt token is the first of the last ``t`` columns (the only ones when the head keeps ``t``).
        """
        if self._captured is None:
            raise ConfigError("critic: no policy forward pass was captured; score inside capture() first.")
        h, self._captured = self._captured, None
        return h[:, h.shape[1] - t].float()

    def measure(self, batch: StepBatch, prompts: Sequence[Tensor], responses: Sequence[Tensor], *,
                temperature: float, chunk_size: int) -> tuple[StepBatch, dict[str, float]]:
        """Value each step's prompt (one no-grad trunk pass over the prompts), fill ``batch.values``, compute returns.

        Returns the batch with ``values`` and the metrics ``critic/values_mean``, ``critic/returns_mean`` and
        ``critic/vf_explained_var`` (of these values, before this update, against this batch's GAE returns: the
        critic's accuracy on fresh data).
        """
        N = batch.size
        values = torch.zeros(N)
        first = [r[:1] for r in responses]  # the last prompt token's state does not depend on the response
        with torch.no_grad():
            for s in range(0, N, chunk_size):
                with self.capture():
                    self.policy.score(prompts[s : s + chunk_size], first[s : s + chunk_size],
                                      temperature=temperature, with_entropy=False)
                values[s : s + chunk_size] = self.value(self._prompt_features(1)).cpu()
        batch = dataclasses.replace(batch, values=values.to(batch.reward.dtype))
        _, returns = turn_gae(gae_step_rewards(batch, self.algo), batch.values, batch.traj_id, batch.step_index,
                              self.cfg.gamma, self.cfg.lam)
        self._old, self._returns = batch.values.detach().float(), returns.float()
        ev = explained_variance(self._old[None], self._returns[None], torch.ones(1, N))
        return batch, {"critic/values_mean": float(self._old.mean()), "critic/returns_mean": float(returns.mean()),
                       "critic/vf_explained_var": float(ev)}

    def train_on(self, idx: Tensor, batch: StepBatch, norm: LossNorm) -> dict[str, float]:
        """Backpropagate ``vf_coef`` x the clipped value loss of micro-batch ``idx`` (rows of the update's batch).

        ``norm`` is the mini-batch's; the value loss counts one term per step, so its share divides by the
        mini-batch's number of steps and the shares add up to the mini-batch's mean.
        """
        if self._old is None or self._returns is None:
            raise ConfigError("critic: train_on() before measure(); measure the update's batch first.")
        t = int(batch.response_mask.sum(-1).max())
        v = self.value(self._prompt_features(t))
        rows = idx.to(self._old.device)
        ones = torch.ones(len(rows), 1, dtype=torch.bool)
        steps = LossNorm(num_tokens=norm.num_seqs, num_seqs=norm.num_seqs)
        loss, m = value_loss(v[:, None], self._old[rows, None].to(v.device), self._returns[rows, None].to(v.device),
                             ones.to(v.device), self.cfg.clip, "token-mean", None, steps)
        (self.cfg.vf_coef * loss).backward()
        m.pop("critic/vf_explained_var")  # a micro-batch's is noise; measure() reports the batch's
        return m

    def step(self) -> None:
        """Clip the head's gradient norm to ``critic.grad_clip``, one AdamW step, clear the gradients."""
        torch.nn.utils.clip_grad_norm_(self.value.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        """Return the head's weights and optimizer state."""
        return {"value": self.value.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.value.load_state_dict(state["value"])
        self.optimizer.load_state_dict(state["optimizer"])


def build_critic(algo: AlgorithmConfig, policy: Any, *, lr: float, seed: int) -> NoCritic:
    """Return the :class:`Critic` of ``algo`` (``algo.critic`` set), else the no-op :class:`NoCritic`."""
    return Critic(policy, algo, lr=lr, seed=seed) if algo.critic is not None else NoCritic()
