"""Policy loss, loss aggregation and KL estimators as small pure tensor functions (``[N, T]`` token matrices).

``policy_loss`` is PPO's clipped surrogate with DAPO's decoupled clip range ("clip-higher") and optional dual clip
(Ye et al. 2019, arXiv 1912.09729), as in verl's ``compute_policy_loss_vanilla``, or GSPO's sequence-level ratio
(verl's ``compute_policy_loss_gspo``) or CISPO's clipped, stop-gradient importance weight
(``compute_policy_loss_cispo``); ``value_loss`` is PPO's clipped critic loss (``compute_value_loss``); aggregation and the KL estimators
follow verl 0.9.1's ``agg_loss`` and ``kl_penalty`` (Schulman, "Approximating KL divergence", 2020).

A mini-batch split into micro-batches for gradient accumulation passes its :class:`LossNorm` to each micro-batch's
loss: the micro-batch losses then add up to the mini-batch's, so the gradient does not depend on the split.
"""

from __future__ import annotations

from typing import Literal, NamedTuple, get_args

import torch
from torch import Tensor

from empg_gym.errors import ConfigError, did_you_mean

LossAgg = Literal["token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm"]
KLKind = Literal["k1", "k2", "k3"]
PolicyLossKind = Literal["vanilla", "gspo", "cispo"]
LOSS_AGGS: tuple[str, ...] = get_args(LossAgg)
KL_KINDS: tuple[str, ...] = get_args(KLKind)
#: The policy losses :func:`policy_loss` computes (verl's ``actor.policy_loss.loss_mode`` names).
POLICY_LOSS_KINDS: tuple[str, ...] = get_args(PolicyLossKind)
_KL_ALIASES = {"kl": "k1", "mse": "k2", "low_var_kl": "k3"}


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` over entries where ``mask`` is set (0 when the mask is empty)."""
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp(min=1.0)


class LossNorm(NamedTuple):
    """The divisors of :func:`agg_loss`, counted once over a whole mini-batch (verl's ``batch_num_tokens`` and
    ``global_batch_size``).

    Passing the mini-batch's ``LossNorm`` to every micro-batch's :func:`agg_loss` makes the micro-batch losses
    *add up* to the mini-batch's loss, in every mode: gradient accumulation then gives the same gradient however the
    mini-batch is split.

    Attributes:
        num_tokens: response tokens in the mini-batch (``token-mean`` divides by it).
        num_seqs: sequences of the mini-batch with at least one response token (``seq-mean-*`` divide by it).
    """  # noqa: D205

    num_tokens: float
    num_seqs: float


def loss_norm(mask: Tensor) -> LossNorm:
    """Count the :class:`LossNorm` of a ``[N, T]`` response mask.

    Example:
        >>> loss_norm(torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0]]))
        LossNorm(num_tokens=3.0, num_seqs=2.0)
    """
    return LossNorm(num_tokens=float(mask.sum()), num_seqs=float((mask.sum(-1) > 0).sum()))


def agg_loss(
    loss_mat: Tensor, mask: Tensor, agg: str = "token-mean", norm_len: int | None = None, norm: LossNorm | None = None
) -> Tensor:
    """Reduce a ``[N, T]`` per-token loss to a scalar, as verl 0.9.1's ``agg_loss``.

    With ``M`` the response mask, ``|o_i| = sum_t M_it`` the length of sequence ``i``, ``K`` the number of sequences
    with ``|o_i| > 0`` and ``S_i = sum_t M_it L_it`` the token sum of sequence ``i``:

    - ``token-mean``: ``sum_i S_i / sum_i |o_i|``, the mean over all response tokens (DAPO's token-level loss).
    - ``seq-mean-token-mean``: ``(1/K) sum_i S_i / |o_i|`` (original GRPO).
    - ``seq-mean-token-sum``: ``(1/K) sum_i S_i``.
    - ``seq-mean-token-sum-norm``: ``(1/K) sum_i S_i / norm_len`` (Dr.GRPO, arXiv 2503.20783): the
      ``seq-mean-token-sum`` value divided by a constant, verl's ``loss_scale_factor``. ``norm_len`` defaults to
      ``T``, as verl; pass the response budget to keep it constant through training.

    Sequences without any response token add nothing and are not counted in ``K``.

    Args:
        loss_mat: ``[N, T]`` per-token losses.
        mask: ``[N, T]`` response-token mask.
        agg: one of :data:`LOSS_AGGS`.
        norm_len: the constant of ``seq-mean-token-sum-norm`` (``None``: ``T``).
        norm: divisors counted over the whole mini-batch when ``loss_mat`` is one micro-batch of it (see
            :class:`LossNorm`); ``None`` counts them over ``mask`` itself.

    Example:
        >>> L = torch.tensor([[1.0, 3.0], [5.0, 0.0]]); M = torch.tensor([[1, 1], [1, 0]])
        >>> [round(agg_loss(L, M, a).item(), 4) for a in LOSS_AGGS]
        [3.0, 3.5, 4.5, 2.25]
        >>> norm = loss_norm(M)   # two micro-batches of one row each add up to the whole
        >>> [round((agg_loss(L[:1], M[:1], a, 2, norm) + agg_loss(L[1:], M[1:], a, 2, norm)).item(), 4)
        ...  for a in LOSS_AGGS]
        [3.0, 3.5, 4.5, 2.25]
    """
    if agg not in LOSS_AGGS:
        raise ConfigError(f"loss aggregation {agg!r} is not one of {LOSS_AGGS}.{did_you_mean(agg, LOSS_AGGS)}")
    norm = norm if norm is not None else loss_norm(mask)
    m = mask.to(loss_mat.dtype)
    seq_sum = (loss_mat * m).sum(-1)  # S_i
    if agg == "token-mean":
        return seq_sum.sum() / max(norm.num_tokens, 1.0)
    if agg == "seq-mean-token-mean":
        seq_sum = seq_sum / m.sum(-1).clamp(min=1.0)  # S_i / |o_i|; empty rows have S_i = 0
    loss = seq_sum.sum() / max(norm.num_seqs, 1.0)
    if agg == "seq-mean-token-sum-norm":
        loss = loss / (norm_len if norm_len is not None else loss_mat.shape[-1])
    return loss


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    clip_c: float | None = None,
    agg: str = "token-mean",
    norm_len: int | None = None,
    norm: LossNorm | None = None,
    kind: str = "vanilla",
) -> tuple[Tensor, dict[str, float]]:
    """Clipped policy loss: PPO's (with clip-higher and optional dual clip), GSPO's or CISPO's.

    - ``vanilla`` (verl's ``compute_policy_loss_vanilla``): ``r = exp(clamp(logp - old_logp, -20, 20))``;
      ``L = max(-A r, -A clip(r, 1 - clip_low, 1 + clip_high))``; for ``A < 0`` and ``clip_c`` set,
      ``L = min(L, -A clip_c)``. Tokens on a clipped branch have zero gradient.
    - ``gspo`` (GSPO, arXiv 2507.18071; verl's ``compute_policy_loss_gspo``): the sequence ratio
      ``s_i = exp(mean_t (logp - old_logp))`` over the row's response tokens, used at every token as
      ``s_it = sg[s_i] * exp(logp - sg[logp])`` (``log s_it`` clamped at 10), in the same clipped surrogate: every
      token of a row shares one value and one clip decision. No dual clip.
    - ``cispo`` (CISPO, MiniMax-M1 arXiv 2506.13585; verl's ``compute_policy_loss_cispo``):
      ``L = -sg[clip(r, 1 - clip_low, 1 + clip_high)] A logp``: the clipped ratio weighs a REINFORCE term and no token
      loses its gradient. No dual clip.

    Args:
        logp: ``[N, T]`` log-probs of the sampled tokens under the current policy (requires grad).
        old_logp: ``[N, T]`` log-probs under the behaviour policy that sampled them.
        advantages: ``[N]`` (one per step sample, broadcast over its tokens) or ``[N, T]``.
        mask: ``[N, T]`` response-token mask.
        clip_low: ``epsilon_low`` (GRPO and DAPO 0.2, GSPO 3e-4).
        clip_high: ``epsilon_high`` (GRPO 0.2, DAPO 0.28, GSPO 4e-4).
        clip_c: dual-clip constant ``c > 1`` (verl uses 3), or ``None`` for no dual clip (``vanilla`` only).
        agg: one of :data:`LOSS_AGGS` (see :func:`agg_loss`).
        norm_len: constant divisor for ``seq-mean-token-sum-norm``.
        norm: the mini-batch's divisors when this is one micro-batch of it (see :class:`LossNorm`); the returned
            loss and ``actor/pg_loss`` are then this micro-batch's share, which sum to the mini-batch's loss. GSPO's
            sequence ratio is per row, so it splits over micro-batches of whole rows too.
        kind: one of :data:`POLICY_LOSS_KINDS`.

    Returns:
        ``(loss, metrics)`` with ``actor/pg_loss``, ``actor/clipfrac`` (tokens on the clip branch; CISPO: tokens whose
        ratio was clipped), ``actor/clipfrac_lower`` (tokens on the dual-clip branch), ``actor/approx_kl`` (mean
        ``old_logp - logp``) and ``actor/ratio_mean`` (GSPO: of the sequence ratio at each token).

    Example:
        >>> lp = torch.log(torch.tensor([[1.5, 1.0]])); old = torch.zeros(1, 2)
        >>> loss, m = policy_loss(lp, old, torch.tensor([1.0]), torch.ones(1, 2))
        >>> round(loss.item(), 4), m["actor/clipfrac"]
        (-1.1, 0.5)
        >>> [round(policy_loss(lp, old, torch.tensor([1.0]), torch.ones(1, 2), kind=k)[0].item(), 4)
        ...  for k in ("gspo", "cispo")]
        [-1.2, -0.2433]
    """
    if logp.shape != old_logp.shape or logp.shape != mask.shape or logp.dim() != 2:
        raise ConfigError(
            f"logp, old_logp and mask must all be [N, T]; got {list(logp.shape)}, {list(old_logp.shape)}, "
            f"{list(mask.shape)}."
        )
    if kind not in POLICY_LOSS_KINDS:
        raise ConfigError(f"policy loss kind {kind!r} is not one of {POLICY_LOSS_KINDS}."
                          f"{did_you_mean(str(kind), POLICY_LOSS_KINDS)}")
    if clip_c is not None and clip_c <= 1.0:
        raise ConfigError(f"dual-clip constant clip_c must be > 1 (verl uses 3.0), got {clip_c}; or pass None.")
    if clip_c is not None and kind != "vanilla":
        raise ConfigError(f"the dual clip (clip_c={clip_c}) applies to kind='vanilla' only; verl's {kind} loss has "
                          "none. Pass clip_c=None.")
    A = advantages.unsqueeze(-1) if advantages.dim() == 1 else advantages
    if A.shape[0] != logp.shape[0]:
        raise ConfigError(f"advantages must be [N] or [N, T] with N={logp.shape[0]}, got {list(advantages.shape)}.")
    log_ratio = logp - old_logp
    if kind == "gspo":
        m = mask.to(logp.dtype)
        seq = (log_ratio * m).sum(-1) / m.sum(-1).clamp(min=1.0)
        log_ratio_used = torch.clamp(logp - logp.detach() + seq.detach().unsqueeze(-1), max=10.0)
    else:
        log_ratio = torch.clamp(log_ratio, -20.0, 20.0)
        log_ratio_used = log_ratio
    ratio = torch.exp(log_ratio_used)
    clipped_ratio = torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    lower = torch.zeros_like(mask, dtype=torch.bool)
    if kind == "cispo":
        loss_tok = -clipped_ratio.detach() * A * logp
        is_clipped = ratio != clipped_ratio
    else:
        loss_unclipped = -A * ratio
        loss_clipped = -A * clipped_ratio
        loss_tok = torch.maximum(loss_unclipped, loss_clipped)
        is_clipped = loss_clipped > loss_unclipped
        if clip_c is not None:
            loss_dual = -A * clip_c
            lower = (A < 0) & (loss_tok > loss_dual)
            loss_tok = torch.where(A < 0, torch.minimum(loss_tok, loss_dual), loss_tok)
    loss = agg_loss(loss_tok, mask, agg, norm_len, norm)
    with torch.no_grad():
        metrics = {
            "actor/pg_loss": float(loss.detach()),
            "actor/clipfrac": float(masked_mean(is_clipped.to(logp.dtype), mask)),
            "actor/clipfrac_lower": float(masked_mean(lower.to(logp.dtype), mask)),
            "actor/approx_kl": float(masked_mean(-log_ratio, mask)),
            "actor/ratio_mean": float(masked_mean(ratio, mask)),
        }
    return loss, metrics


def value_loss(
    values: Tensor,
    old_values: Tensor,
    returns: Tensor,
    mask: Tensor,
    clip: float | None = 0.5,
    agg: str = "token-mean",
    norm_len: int | None = None,
    norm: LossNorm | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """PPO's clipped value loss, as verl's ``compute_value_loss``: ``1/2 agg(max((V - G)^2, (V_clip - G)^2))``.

    ``V_clip = clamp(V, V_old - clip, V_old + clip)``; ``clip=None`` drops the clipped branch (``(V - G)^2`` only).

    Args:
        values: ``[N, T]`` the critic's predictions being trained (requires grad).
        old_values: ``[N, T]`` its predictions when the batch was collected.
        returns: ``[N, T]`` the targets (GAE's ``A + V_old``).
        mask: ``[N, T]`` where the loss counts.
        clip: verl's ``critic.cliprange_value`` (0.5), or ``None``.
        agg: one of :data:`LOSS_AGGS` (see :func:`agg_loss`).
        norm_len: constant divisor for ``seq-mean-token-sum-norm``.
        norm: the mini-batch's divisors when this is one micro-batch of it (see :class:`LossNorm`).

    Returns:
        ``(loss, metrics)`` with ``critic/vf_loss``, ``critic/vf_clipfrac`` (positions on the clipped branch),
        ``critic/vpred_mean`` and ``critic/vf_explained_var`` (:func:`explained_variance` of ``values``).

    Example:
        >>> v = torch.tensor([[1.0, 0.0]]); old = torch.tensor([[0.0, 0.0]]); G = torch.tensor([[2.0, 1.0]])
        >>> loss, m = value_loss(v, old, G, torch.ones(1, 2), clip=0.5)
        >>> loss.item(), m["critic/vf_clipfrac"]
        (0.8125, 0.5)
    """
    for name, x in (("values", values), ("old_values", old_values), ("returns", returns)):
        if x.shape != mask.shape or x.dim() != 2:
            raise ConfigError(f"{name} must be [N, T] like the mask {list(mask.shape)}, got {list(x.shape)}.")
    if clip is not None and clip <= 0:
        raise ConfigError(f"value clip must be > 0 (verl's cliprange_value is 0.5) or None, got {clip}.")
    loss1 = (values - returns) ** 2
    if clip is None:
        loss_tok, clipped = loss1, torch.zeros_like(mask, dtype=torch.bool)
    else:
        v_clip = torch.clamp(values, old_values - clip, old_values + clip)
        loss2 = (v_clip - returns) ** 2
        loss_tok, clipped = torch.maximum(loss1, loss2), loss2 > loss1
    loss = 0.5 * agg_loss(loss_tok, mask, agg, norm_len, norm)
    with torch.no_grad():
        metrics = {
            "critic/vf_loss": float(loss.detach()),
            "critic/vf_clipfrac": float(masked_mean(clipped.to(values.dtype), mask)),
            "critic/vpred_mean": float(masked_mean(values.detach(), mask)),
            "critic/vf_explained_var": float(explained_variance(values.detach(), returns, mask)),
        }
    return loss, metrics


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """``1 - Var(G - V) / (Var(G) + 1e-5)`` over the masked entries, as verl's ``critic/vf_explained_var``.

    Both variances are the biased (population) ones. 1: the critic predicts every return; 0: no better than their
    mean; negative: worse.

    Example:
        >>> G = torch.tensor([[1.0, 0.0, 1.0, 0.0]]); m = torch.ones(1, 4)
        >>> round(explained_variance(G, G, m).item(), 4), round(explained_variance(torch.zeros(1, 4), G, m).item(), 4)
        (1.0, 0.0)
    """
    m = mask.to(returns.dtype)
    n = m.sum().clamp(min=1.0)

    def var(x: Tensor) -> Tensor:
        mean = (x * m).sum() / n
        return (((x - mean) ** 2) * m).sum() / n

    return 1.0 - var(returns - values) / (var(returns) + 1e-5)


def kl_penalty(logp: Tensor, ref_logp: Tensor, kind: str = "k3") -> Tensor:
    """Per-token KL estimate between the current policy and the reference, ``[N, T]``.

    ``k1 = logp - ref``; ``k2 = (logp - ref)^2 / 2``; ``k3`` (verl's ``low_var_kl``): ``x = clamp(ref - logp, -20, 20)``,
    ``clamp(exp(x) - x - 1, -10, 10)``. verl's names ``kl``, ``mse``, ``low_var_kl`` are accepted too.

    Example:
        >>> lp, ref = torch.tensor([0.0]), torch.tensor([-1.0])
        >>> [round(kl_penalty(lp, ref, k).item(), 4) for k in ("k1", "k2", "k3")]
        [1.0, 0.5, 0.3679]
    """
    k = _KL_ALIASES.get(kind, kind)
    if k == "k1":
        return logp - ref_logp
    if k == "k2":
        return 0.5 * (logp - ref_logp) ** 2
    if k == "k3":
        x = torch.clamp(ref_logp - logp, -20.0, 20.0)
        return torch.clamp(torch.exp(x) - x - 1.0, -10.0, 10.0)
    raise ConfigError(f"KL kind {kind!r} is not one of {KL_KINDS}.{did_you_mean(kind, KL_KINDS)}")
