"""EMPG's step uncertainty ``H_t`` as registered signals (issue #16): which number of a step EMPG calls "entropy".

EMPG (arXiv 2509.09265) scales a step's advantage by ``g(H_t)`` and adds ``zeta f(H_{t+1})``; the paper's ``H_t`` is
the mean Shannon entropy of the sampling distribution over the step's response tokens. ``EMPGConfig.uncertainty``
picks another per-token signal; the step value is always its mean over the step's response tokens
(:func:`~empg_gym.agents.algorithms.advantages.step_entropy`), and ``H_norm``, ``g`` and ``f`` follow unchanged.

Two kinds are registered with :func:`register_uncertainty`:

- ``kind="token"``: ``fn(logp, token) -> u`` reads the sampling distribution ``logp = log softmax(z / T)``
  (``[..., V]``) and the drawn token (``[...]``) and returns ``[...]``. The policy computes it while it generates
  (:class:`~empg_gym.agents.policy.GenerationConfig` ``uncertainty``): no extra forward pass.
  Built in: ``entropy`` (Shannon, the paper's and the default), ``renyi2`` and ``one_minus_p``.
- ``kind="model"``: a class built as ``cls(policy, algo, lr=..., seed=...)``, subclassing :class:`UncertaintyHooks`,
  whose :meth:`~UncertaintyHooks.measure` runs teacher-forced passes over the sampled responses after the rollout,
  before the advantages. Built in: ``mc_dropout`` (K passes with dropout) and ``lora_ensemble`` (K trained low-rank
  heads on the output layer).

Shapes: ``N`` step samples, ``T`` response tokens (padded), ``V`` vocabulary, ``K`` passes or members, ``d`` the
width of the final hidden state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import torch
from torch import Tensor

from empg_gym.agents.algorithms.config import AlgorithmConfig, EMPGConfig, add_name_check
from empg_gym.agents.algorithms.losses import LossNorm, policy_loss
from empg_gym.agents.algorithms.registry import _register
from empg_gym.errors import ConfigError, did_you_mean

if TYPE_CHECKING:
    from empg_gym.agents.algorithms.batch import StepBatch

F = TypeVar("F", bound=Callable[..., Any])
UncertaintyKind = Literal["token", "model"]

#: Registered uncertainty signals, by name: token functions and model-based classes.
UNCERTAINTIES: dict[str, Callable[..., Any]] = {}
#: The kind of each registered signal: ``token`` (computed while generating) or ``model`` (extra passes).
UNCERTAINTY_KINDS: dict[str, UncertaintyKind] = {}


def register_uncertainty(name: str, *, kind: UncertaintyKind = "token", override: bool = False) -> Callable[[F], F]:
    """Register an uncertainty signal usable as ``EMPGConfig(uncertainty=name)``.

    ``kind="token"``: ``fn(logp[..., V], token[...]) -> u[...]``. ``kind="model"``: a :class:`UncertaintyHooks`
    subclass built as ``cls(policy, algo, lr=..., seed=...)``.

    Example:
        >>> @register_uncertainty("doc-neg-logp", override=True)
        ... def neg_logp(logp, token):
        ...     return -logp.gather(-1, token[..., None]).squeeze(-1)
        >>> UNCERTAINTY_KINDS["doc-neg-logp"]
        'token'
    """
    if kind not in ("token", "model"):
        raise ConfigError(f"An uncertainty signal's kind must be 'token' or 'model', got {kind!r}.")
    register = _register(UNCERTAINTIES, "uncertainty signal", name, override)

    def decorator(fn: F) -> F:
        register(fn)
        UNCERTAINTY_KINDS[name] = kind
        return fn

    return decorator


def check_signal(cfg: EMPGConfig) -> None:
    """Raise a :class:`ConfigError` unless ``cfg.uncertainty`` is registered and ``K`` suits its kind (>= 2 passes).

    Installed with :func:`~empg_gym.agents.algorithms.config.add_name_check`: every ``EMPGConfig`` runs it.
    """
    if cfg.uncertainty not in UNCERTAINTIES:
        raise ConfigError(f"EMPGConfig.uncertainty must be a registered signal, got {cfg.uncertainty!r}; registered: "
                          f"{sorted(UNCERTAINTIES)}.{did_you_mean(str(cfg.uncertainty), UNCERTAINTIES)} "
                          "Register yours with @register_uncertainty(name).")
    if UNCERTAINTY_KINDS[cfg.uncertainty] == "model" and cfg.uncertainty_samples < 2:
        raise ConfigError(f"EMPGConfig.uncertainty_samples must be an int >= 2 for {cfg.uncertainty!r} (a variance "
                          f"over K passes or members; K = 1 gives 0 everywhere), got {cfg.uncertainty_samples!r}; the "
                          "default is 4.")


add_name_check(EMPGConfig, check_signal)


def get_uncertainty(name: str) -> Callable[..., Any]:
    """Return the signal registered as ``name``; unknown names list the registered ones."""
    if name not in UNCERTAINTIES:
        raise ConfigError(f"Unknown uncertainty signal {name!r}; registered: {sorted(UNCERTAINTIES)}."
                          f"{did_you_mean(name, UNCERTAINTIES)}")
    return UNCERTAINTIES[name]


def token_signal(name: str) -> Callable[[Tensor, Tensor], Tensor]:
    """Return the token-level signal ``name`` (a ``model`` signal cannot be computed while generating)."""
    fn = get_uncertainty(name)
    if UNCERTAINTY_KINDS[name] != "token":
        raise ConfigError(f"Uncertainty signal {name!r} needs forward passes after the rollout (kind 'model'); "
                          "only token signals can be computed while generating: "
                          f"{sorted(n for n, k in UNCERTAINTY_KINDS.items() if k == 'token')}.")
    return fn


# ------------------------------------------------------------------------------------------ token signals
@register_uncertainty("entropy")
def entropy(logp: Tensor, token: Tensor) -> Tensor:
    """Shannon entropy ``H = -sum_v p_v log p_v`` of ``p = softmax(z / T)`` at each token (EMPG's own ``H_t``).

    The same expression as the policy's generation and scoring, so the default gives bit-identical numbers.

    Args:
        logp: ``[..., V]`` log-probabilities ``log softmax(z / T)``.
        token: ``[...]`` the drawn token ids (unused: entropy does not depend on the draw).

    Returns:
        ``[...]`` in nats.

    Example:
        >>> logp = torch.log(torch.full((4,), 0.25))
        >>> round(entropy(logp, torch.tensor(0)).item(), 6) == round(math.log(4), 6)
        True
    """
    return -(logp.exp() * logp).sum(-1)


@register_uncertainty("renyi2")
def renyi2(logp: Tensor, token: Tensor) -> Tensor:
    """Rényi entropy of order 2 (collision entropy) ``H_2 = -log sum_v p_v^2`` at each token.

    ``H_2 <= H`` (Shannon), with equality for uniform distributions; it weighs the dominant tokens more.

    Args:
        logp: ``[..., V]`` log-probabilities ``log softmax(z / T)``.
        token: ``[...]`` the drawn token ids (unused).

    Returns:
        ``[...]`` in nats.

    Example:
        >>> logp = torch.log(torch.tensor([0.5, 0.5]))
        >>> round(renyi2(logp, torch.tensor(0)).item(), 6) == round(math.log(2), 6)
        True
    """
    return -torch.logsumexp(2.0 * logp, dim=-1)


@register_uncertainty("one_minus_p")
def one_minus_p(logp: Tensor, token: Tensor) -> Tensor:
    """``1 - p(y_t)``: the probability the policy gave to tokens other than the one it drew.

    Args:
        logp: ``[..., V]`` log-probabilities ``log softmax(z / T)``.
        token: ``[...]`` int64 drawn token ids ``y_t``.

    Returns:
        ``[...]`` in ``[0, 1]``.

    Example:
        >>> round(one_minus_p(torch.log(torch.tensor([0.25, 0.75])), torch.tensor(1)).item(), 6)
        0.25
    """
    chosen = logp.gather(-1, token.long().unsqueeze(-1)).squeeze(-1)
    return -torch.expm1(chosen)


# ------------------------------------------------------------------------------------------ model signals
class UncertaintyHooks:
    """What the trainer calls around a model-based signal; this base does nothing (token signals, no EMPG).

    Order within one update: :meth:`measure` after the rollout (its result is the batch's ``token_uncertainty``),
    then, for every micro-batch of the policy's update, the policy's forward pass inside :meth:`capture` followed by
    :meth:`train_on`, and :meth:`step` after each optimizer step.
    """

    def measure(self, prompts: Sequence[Tensor], responses: Sequence[Tensor], *, temperature: float,
                chunk_size: int, seed: int) -> Tensor | None:
        """Return the ``[N, T]`` signal of every response token (0 on padding), or ``None``: it came with the rollout."""
        return None

    def capture(self) -> AbstractContextManager[Any]:
        """Wrap the policy's training forward pass of one micro-batch (to read its features)."""
        return nullcontext()

    def train_on(self, idx: Tensor, batch: StepBatch, advantages: Tensor, norm: LossNorm) -> dict[str, float]:
        """Accumulate gradients for the micro-batch ``idx`` (rows of the update's batch) just scored in :meth:`capture`."""
        return {}

    def step(self) -> None:
        """Apply the accumulated gradients (after the policy's optimizer step)."""

    def state_dict(self) -> dict[str, Any]:
        """Return what a checkpoint must hold to resume exactly (empty: nothing)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""


def build_uncertainty(algo: AlgorithmConfig, policy: Any, *, lr: float, seed: int) -> UncertaintyHooks:
    """Return the hooks of ``algo``'s model-based signal, or the no-op base for a token signal or without EMPG.

    Only the signal ``algo.empg.uncertainty`` names is built, so no other one costs anything.
    """
    cfg = algo.empg
    if cfg is None or UNCERTAINTY_KINDS.get(cfg.uncertainty) != "model":
        return UncertaintyHooks()
    return get_uncertainty(cfg.uncertainty)(policy, algo, lr=lr, seed=seed)  # type: ignore[no-any-return]


def generation_signal(algo: AlgorithmConfig) -> str | None:
    """Return the token signal the policy must report while generating.

    ``None`` for Shannon entropy (always reported), a model-based signal, or an algorithm without EMPG.
    """
    cfg = algo.empg
    if cfg is None or cfg.uncertainty == "entropy" or UNCERTAINTY_KINDS.get(cfg.uncertainty) != "token":
        return None
    return cfg.uncertainty


def logp_variance(logps: Tensor, mask: Tensor) -> Tensor:
    """Per-token variance over ``K`` passes or members of the chosen tokens' log-probs: ``(1/K) sum_k (l_k - mean)^2``.

    The population variance: ``K = 1`` (or identical passes) gives exactly 0.

    Args:
        logps: ``[K, N, T]`` log-probs of the chosen tokens.
        mask: ``[N, T]`` response-token mask (the result is 0 elsewhere).

    Returns:
        ``[N, T]``.

    Example:
        >>> logp_variance(torch.tensor([[[-1.0, -2.0]], [[-3.0, -2.0]]]), torch.tensor([[True, True]])).tolist()
        [[1.0, 0.0]]
    """
    if logps.dim() != 3 or tuple(logps.shape[1:]) != tuple(mask.shape):
        raise ConfigError(f"logps must be [K, N, T] with [N, T] = {list(mask.shape)}, got {list(logps.shape)}.")
    return logps.var(dim=0, correction=0) * mask.to(logps.dtype)


def decoder_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Return the model's decoder blocks: the members of its longest ``nn.ModuleList`` (Llama, Qwen: ``layers``)."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList) and len(m) > 0]
    if not lists:
        raise ConfigError(f"{type(model).__name__} has no nn.ModuleList of decoder layers; mc_dropout needs one.")
    return list(max(lists, key=len))


def _chosen_logp(policy: Any, prompts: Sequence[Tensor], responses: Sequence[Tensor], temperature: float,
                 chunk_size: int) -> tuple[Tensor, Tensor]:
    """``([N, T], [N, T] mask)``: log-probs of the responses under the policy as it is, in chunks, no gradients."""
    T = max(int(r.numel()) for r in responses)
    logps, masks = [], []
    with torch.no_grad():
        for s in range(0, len(responses), chunk_size):
            scores = policy.score(prompts[s : s + chunk_size], responses[s : s + chunk_size],
                                  temperature=temperature, with_entropy=False)
            pad = T - scores.log_probs.shape[1]
            logps.append(torch.nn.functional.pad(scores.log_probs.float(), (0, pad)))
            masks.append(torch.nn.functional.pad(scores.mask, (0, pad)))
    return torch.cat(logps), torch.cat(masks)


@register_uncertainty("mc_dropout", kind="model")
class MCDropout(UncertaintyHooks):
    """MC dropout (Gal & Ghahramani 2016, arXiv 1506.02142): variance of ``log pi(y_t)`` over ``K`` dropout passes.

    The models here are configured without dropout, so each pass adds it itself: a forward hook on every decoder
    block drops the block's *residual update* (``x + dropout_p(block(x) - x)``, the place GPT-2's ``resid_pdrop``
    and BERT's hidden dropout act), with inverted scaling ``1 / (1 - p)`` and masks drawn from a seeded generator.
    The hooks are removed and the model's train/eval mode restored afterwards; no weight is touched (passes run
    under ``no_grad``) and torch's global RNG is not consumed.

    Cost: ``K`` teacher-forced forward passes over the update's ``N`` responses (no backward), about ``K/3`` of a
    forward+backward update epoch, on top of the rollout.

    Args:
        policy: the :class:`~empg_gym.agents.policy.LLMPolicy` being trained.
        algo: its algorithm config (``empg.uncertainty_samples`` = ``K``, ``empg.mc_dropout_p`` = ``p``).
        lr: unused (nothing is trained).
        seed: unused (each :meth:`measure` gets its own seed).
    """

    def __init__(self, policy: Any, algo: AlgorithmConfig, *, lr: float = 0.0, seed: int = 0) -> None:
        assert algo.empg is not None
        self.policy, self.K, self.p = policy, algo.empg.uncertainty_samples, algo.empg.mc_dropout_p

    def measure(self, prompts: Sequence[Tensor], responses: Sequence[Tensor], *, temperature: float,
                chunk_size: int, seed: int) -> Tensor:
        """Return ``[N, T]``: the variance over ``K`` dropout passes of each chosen token's log-prob."""
        model = self.policy.model
        generator = torch.Generator(device=self.policy.device).manual_seed(seed)
        was_training = model.training
        handles = [layer.register_forward_hook(self._dropout_hook(generator), with_kwargs=True)
                   for layer in decoder_layers(model)]
        try:
            model.eval()
            passes = [_chosen_logp(self.policy, prompts, responses, temperature, chunk_size) for _ in range(self.K)]
        finally:
            for h in handles:
                h.remove()
            model.train(was_training)
        mask = passes[0][1]
        return logp_variance(torch.stack([lp for lp, _ in passes]), mask)

    def _dropout_hook(self, generator: torch.Generator) -> Callable[..., Any]:
        p = self.p

        def hook(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
            x = args[0] if args else kwargs["hidden_states"]
            y = output if isinstance(output, Tensor) else output[0]
            keep = torch.rand(y.shape, generator=generator, device=y.device) >= p
            y = x + (y - x) * keep.to(y.dtype) / (1.0 - p)
            return y if isinstance(output, Tensor) else (y, *output[1:])

        return hook


class LogitEnsemble(torch.nn.Module):
    """``K`` low-rank heads on a final hidden state: member ``k``'s logits are ``z + B_k A_k h``.

    ``A_k`` (``[r, d]``) and ``B_k`` (``[V, r]``) are drawn independently for every member: ``A ~ N(0, 1/d)``,
    ``B ~ N(0, init_std^2 / r)``, so each member's logit offset starts at a standard deviation of about ``init_std``
    (for ``|h|^2 ~ d``, as after an RMS norm). Unlike LoRA's zero-initialised ``B`` the members differ from the start:
    a randomized prior (Osband et al. 2018, arXiv 1806.03335), so their disagreement is informative at update 1.

    Example:
        >>> ens = LogitEnsemble(hidden=4, vocab=3, members=2, rank=1, generator=torch.Generator().manual_seed(0))
        >>> h, z = torch.randn(1, 2, 4), torch.zeros(1, 2, 3)
        >>> ens.member_logp(h, z, torch.tensor([[0, 2]]), temperature=1.0).shape
        torch.Size([2, 1, 2])
    """

    def __init__(self, hidden: int, vocab: int, members: int, rank: int, *, init_std: float = 0.1,
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.A = torch.nn.Parameter(torch.randn(members, rank, hidden, generator=generator) / math.sqrt(hidden))
        self.B = torch.nn.Parameter(torch.randn(members, vocab, rank, generator=generator) * init_std / math.sqrt(rank))

    def forward(self, h: Tensor) -> Tensor:
        """``[K, n, t, V]`` logit offsets ``B_k A_k h`` of ``h`` ``[n, t, d]``."""
        return torch.einsum("kntr,kvr->kntv", torch.einsum("ntd,krd->kntr", h, self.A), self.B)

    def member_logp(self, h: Tensor, z: Tensor, targets: Tensor, temperature: float) -> Tensor:
        """``[K, n, t]`` log-probs of ``targets`` (``[n, t]``) under ``softmax((z + B_k A_k h) / T)`` of each member.

        ``h`` ``[n, t, d]`` and ``z`` ``[n, t, V]`` are the policy's final hidden states and logits (constants here).
        """
        logits = (z.unsqueeze(0) + self(h)) / temperature
        index = targets.long().unsqueeze(0).expand(logits.shape[0], -1, -1).unsqueeze(-1)
        return torch.log_softmax(logits, dim=-1).gather(-1, index).squeeze(-1)


@register_uncertainty("lora_ensemble", kind="model")
class LoraEnsemble(UncertaintyHooks):
    """Ensemble disagreement: variance of ``log pi_k(y_t)`` over ``K`` trained low-rank output heads.

    Member ``k`` is the policy with a low-rank adapter on its output layer: logits ``z + B_k A_k h`` on the policy's
    final hidden state ``h`` (:class:`LogitEnsemble`, rank ``empg.ensemble_rank``, independent random inits). The
    policy alone samples; the members only score. Every update they are trained alongside the policy, on the same
    micro-batches and PPO epochs, with the algorithm's clipped policy-gradient loss (no KL term): each member's ratio
    is taken to its own log-probs at :meth:`measure` time, and each sequence's advantage is multiplied by a
    bootstrap weight ``w_ki ~ Poisson(1)`` drawn per update, so members fit different resamplings of the batch
    (Osband et al. 2016, arXiv 1602.04621). ``h`` and ``z`` are detached: the members' loss never moves the policy.

    Why heads on the output layer rather than ``K`` LoRA adapters inside the network (LoRA-Ensemble, arXiv
    2405.14438): members sharing the backbone need no extra backbone pass during the update (their features come
    from the policy's own training forward, read by a hook on the output layer), and the design is the same for
    the fully trained ``tiny-actions`` model and for an HF model with or without a LoRA adapter. Inner adapters
    would cost ``K`` backbone forward and backward passes per update.

    Cost: one teacher-forced forward pass over the update's responses (no backward) for :meth:`measure`, plus per
    micro-batch ``K`` head products (``d r + r V`` per token) and ``K`` softmaxes over ``V``, forward and backward.
    Memory: ``K (r d + V r)`` weights with AdamW state, and ``K n t V`` logits per micro-batch of ``n`` responses.

    Args:
        policy: the :class:`~empg_gym.agents.policy.LLMPolicy` being trained.
        algo: its algorithm config (``empg.uncertainty_samples`` = ``K``, ``ensemble_rank``, ``ensemble_lr``; the
            clip range and loss aggregation of the members' loss).
        lr: the heads' AdamW learning rate when ``empg.ensemble_lr`` is ``None`` (the trainer passes the policy's).
        seed: seeds the members' initial weights.
    """

    def __init__(self, policy: Any, algo: AlgorithmConfig, *, lr: float, seed: int = 0) -> None:
        cfg = algo.empg
        assert cfg is not None
        self.policy, self.algo, self.K = policy, algo, cfg.uncertainty_samples
        self.head = policy.model.get_output_embeddings()
        vocab, hidden = self.head.weight.shape
        generator = torch.Generator().manual_seed(seed)
        self.ensemble = LogitEnsemble(hidden, vocab, self.K, cfg.ensemble_rank, generator=generator).to(policy.device)
        self.optimizer = torch.optim.AdamW(self.ensemble.parameters(), lr=cfg.ensemble_lr or lr, weight_decay=0.0)
        self._captured: tuple[Tensor, Tensor] | None = None
        self._old_logp: Tensor | None = None  # [K, N, T] members' log-probs at measure time
        self._targets: Tensor | None = None  # [N, T] response ids
        self._weights: Tensor | None = None  # [K, N] bootstrap weights of this update
        self._temperature = 1.0

    @contextmanager
    def capture(self) -> Iterator[None]:
        """Record the output layer's input ``h`` and output ``z`` (detached) during the policy's forward pass."""

        def hook(module: torch.nn.Module, args: tuple[Any, ...], output: Tensor) -> None:
            self._captured = (args[0].detach(), output.detach())

        handle = self.head.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()

    def _features(self, t: int) -> tuple[Tensor, Tensor]:
        """``h`` ``[n, t, d]`` and ``z`` ``[n, t, V]`` at the positions that predict the ``t`` response tokens."""
        if self._captured is None:
            raise ConfigError("lora_ensemble: no policy forward pass was captured; score inside capture() first.")
        h, z = self._captured
        self._captured = None
        L = h.shape[1]  # t columns with logits_to_keep, else the whole sequence (whose last input is the
        return h[:, L - t :].float(), z[:, L - t :].float()  # last response token but one): the last t either way

    def measure(self, prompts: Sequence[Tensor], responses: Sequence[Tensor], *, temperature: float,
                chunk_size: int, seed: int) -> Tensor:
        """Return ``[N, T]`` member variance; keep the members' log-probs and draw this update's bootstrap weights."""
        N, T = len(responses), max(int(r.numel()) for r in responses)
        device = self.policy.device
        targets = torch.zeros((N, T), dtype=torch.long, device=device)
        mask = torch.zeros((N, T), dtype=torch.bool, device=device)
        for i, r in enumerate(responses):
            targets[i, : r.numel()] = r.to(device)
            mask[i, : r.numel()] = True
        logps = torch.zeros((self.K, N, T), device=device)
        with torch.no_grad():
            for s in range(0, N, chunk_size):
                t = max(int(r.numel()) for r in responses[s : s + chunk_size])
                with self.capture():
                    self.policy.score(prompts[s : s + chunk_size], responses[s : s + chunk_size],
                                      temperature=temperature, with_entropy=False)
                h, z = self._features(t)
                logps[:, s : s + chunk_size, :t] = self.ensemble.member_logp(h, z, targets[s : s + chunk_size, :t],
                                                                             temperature)
        self._old_logp, self._targets, self._temperature = logps * mask, targets, temperature
        rates = torch.ones((self.K, N))
        self._weights = torch.poisson(rates, generator=torch.Generator().manual_seed(seed)).to(device)
        return logp_variance(logps, mask)

    def train_on(self, idx: Tensor, batch: StepBatch, advantages: Tensor, norm: LossNorm) -> dict[str, float]:
        """Backpropagate the members' bootstrap-weighted clipped policy-gradient loss on micro-batch ``idx``."""
        if self._old_logp is None or self._targets is None or self._weights is None:
            raise ConfigError("lora_ensemble: train_on() before measure(); measure the update's batch first.")
        mask = batch.response_mask.to(self._targets.device)
        T, t = mask.shape[1], int(mask.sum(-1).max())
        h, z = self._features(t)
        rows = idx.to(self._targets.device)
        logp = self.ensemble.member_logp(h, z, self._targets[rows, :t], self._temperature)
        logp = torch.nn.functional.pad(logp, (0, T - t))
        old, w = self._old_logp[:, rows, :T], self._weights[:, rows]
        A = advantages.to(logp.device)
        a = self.algo
        loss = sum(policy_loss(logp[k], old[k], A * w[k], mask, a.clip_low, a.clip_high, a.clip_c, a.loss_agg,
                               a.loss_norm_len, norm, kind=a.loss_mode)[0] for k in range(self.K))
        loss.backward()  # type: ignore[union-attr]
        return {}

    def step(self) -> None:
        """One AdamW step of the members, then clear their gradients."""
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        """Return the members' weights and optimizer state."""
        return {"ensemble": self.ensemble.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.ensemble.load_state_dict(state["ensemble"])
        self.optimizer.load_state_dict(state["optimizer"])
