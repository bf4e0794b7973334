"""Advantage estimators and reward shaping as pure tensor functions (one sample = one env step).

Shapes: ``N`` step samples, ``T`` response tokens per sample (padded), ``V`` vocabulary size. Every function here is
deterministic, differentiable where that makes sense, and free of Python loops over samples.

References:
    GRPO: Shao et al. 2024, arXiv 2402.03300; Dr.GRPO (no std): Liu et al. 2025, arXiv 2503.20783.
    DAPO: Yu et al. 2025, arXiv 2503.14476. EMPG: Wang et al. 2025, arXiv 2509.09265.
    GiGPO: Feng et al. 2025, arXiv 2505.10978 (verl-agent).
"""

from __future__ import annotations

import torch
from torch import Tensor

from empg_gym.agents.algorithms._groups import (
    as_float,
    check_1d,
    dense_ids,
    group_mean_std,
    next_step_index,
    trajectory_order,
)
from empg_gym.errors import ConfigError


def group_statistics(
    rewards: Tensor, group_ids: Tensor, traj_ids: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Return ``(index [N], mean [G], std [G], counts [G])`` of ``rewards`` per group (``G`` groups, dense ids).

    With ``traj_ids`` each trajectory counts once (step rows of one trajectory share its outcome), so ``counts`` are
    trajectories per group; without, every row counts. ``index`` maps each row to its group.

    Example:
        >>> index, mean, std, counts = group_statistics(torch.tensor([1.0, 0.0, 3.0]), torch.tensor([5, 5, 9]))
        >>> index.tolist(), mean.tolist(), counts.tolist()
        ([0, 0, 1], [0.5, 3.0], [2, 1])
    """
    check_1d("rewards", rewards)
    check_1d("group_ids", group_ids, len(rewards))
    index, counts = dense_ids(group_ids)
    if traj_ids is None:
        mean, std = group_mean_std(rewards, index, counts)
    else:
        check_1d("traj_ids", traj_ids, len(rewards))
        mean, std, counts = _trajectory_mean_std(rewards, index, dense_ids(group_ids, traj_ids)[0])
    return index, mean, std, counts


def grpo_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    norm_by_std: bool = True,
    eps: float = 1e-6,
    traj_ids: Tensor | None = None,
) -> Tensor:
    """GRPO's group-relative advantage ``A = (R - mean_group) / (std_group + eps)``, one value per sample.

    The std is the unbiased one; a group of one sample gets mean 0 and std 1, as in verl's
    ``compute_grpo_outcome_advantage``. ``norm_by_std=False`` gives Dr.GRPO's ``A = R - mean_group``.

    Args:
        rewards: ``[N]`` the outcome reward each sample carries (every step of a trajectory carries its outcome).
        group_ids: ``[N]`` integer id of the task group (the G trajectories started from one task).
        norm_by_std: divide by the group std (GRPO) or not (Dr.GRPO).
        eps: added to the std.
        traj_ids: ``[N]`` optional. When given, group statistics count each trajectory once (the textbook
            "group of G trajectories"): every trajectory weighs ``1/G``, shared by its steps, so the mean is the
            mean of trajectory rewards and the std their unbiased std. Steps of one trajectory may carry different
            rewards (DAPO's overlong shaping depends on each step's response length); their spread enters the std
            too, so a step's deviation is never divided by a near-zero std. When ``None`` statistics run over all step
            samples, as verl-agent's default ``compute_mean_std_cross_all_data=True`` (longer trajectories weigh
            more).

    Returns:
        ``[N]`` advantages, dtype of ``rewards``.

    Example:
        >>> [round(a, 4) for a in grpo_advantages(torch.tensor([1.0, 0.0, 3.0]), torch.tensor([0, 0, 1])).tolist()]
        [0.7071, -0.7071, 3.0]
    """
    rewards = as_float("rewards", rewards)
    check_1d("rewards", rewards)
    if len(rewards) == 0:
        check_1d("group_ids", group_ids, 0)
        return rewards.clone()
    index, mean, std, counts = group_statistics(rewards, group_ids, traj_ids)
    single = counts[index] == 1
    mean_i = torch.where(single, torch.zeros_like(rewards), mean[index])
    std_i = torch.where(single, torch.ones_like(rewards), std[index])
    centred = rewards - mean_i
    return centred / (std_i + eps) if norm_by_std else centred


def _trajectory_mean_std(rewards: Tensor, index: Tensor, t_index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Per-group mean and std with every trajectory weighted ``1/G`` (split evenly over its steps).

    ``var = G/(G-1) * sum_i w_i (r_i - mean)^2`` with ``w_i = 1/(G * len(traj_i))``: the unbiased variance of the
    trajectory rewards when each trajectory's steps share one reward. Returns ``(mean, std, trajectories per group)``.
    """
    n_traj = int(t_index.max()) + 1
    steps = torch.bincount(t_index, minlength=n_traj).to(rewards.dtype)
    t_group = torch.zeros(n_traj, dtype=index.dtype, device=index.device).scatter_(0, t_index, index)
    G = torch.bincount(t_group, minlength=int(index.max()) + 1)
    w = 1.0 / (G[index].to(rewards.dtype) * steps[t_index])
    mean = torch.zeros(len(G), dtype=rewards.dtype, device=rewards.device).index_add_(0, index, w * rewards)
    ss = torch.zeros_like(mean).index_add_(0, index, w * (rewards - mean[index]) ** 2)
    Gf = G.to(rewards.dtype)
    std = torch.sqrt(ss * Gf / (Gf - 1).clamp(min=1.0))
    return mean, std, G


def token_entropy(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """Entropy of the softmax of each row of logits: ``H = logsumexp(z) - sum softmax(z) * z`` with ``z = logits / T``.

    Args:
        logits: ``[..., V]`` (e.g. ``[N, T, V]``).
        temperature: sampling temperature; EMPG measures the entropy of the distribution actually sampled from.

    Returns:
        ``[...]`` entropies in nats.

    Example:
        >>> round(token_entropy(torch.zeros(4)).item(), 6) == round(float(torch.log(torch.tensor(4.0))), 6)
        True
    """
    if temperature <= 0:
        raise ConfigError(f"temperature must be > 0, got {temperature}; use 1.0 for the raw logits.")
    z = logits / temperature
    p = torch.softmax(z, dim=-1)
    return torch.logsumexp(z, dim=-1) - (p * z).sum(dim=-1)


def step_entropy(token_entropy: Tensor, mask: Tensor) -> Tensor:
    """Step entropy ``H_t``: mean token entropy over each sample's response tokens (EMPG §3.2).

    Args:
        token_entropy: ``[N, T]`` per-token entropies.
        mask: ``[N, T]`` 1/True on response tokens. A sample with no response token gets 0.

    Returns:
        ``[N]``.

    Example:
        >>> step_entropy(torch.tensor([[1.0, 3.0, 9.0]]), torch.tensor([[1, 1, 0]])).tolist()
        [2.0]
    """
    if token_entropy.shape != mask.shape or token_entropy.dim() != 2:
        raise ConfigError(
            f"token_entropy and mask must both be [N, T], got {list(token_entropy.shape)} and {list(mask.shape)}."
        )
    m = mask.to(token_entropy.dtype)
    return (token_entropy * m).sum(-1) / m.sum(-1).clamp(min=1.0)


#: Entropy spreads at most this fraction of the batch's largest |H| count as none (float32 keeps ~7 digits).
H_SPREAD_RTOL = 1e-5


def empg_terms(
    step_entropy: Tensor, traj_ids: Tensor, step_index: Tensor, k: float = 1.0, k_next: float = 1.0, eps: float = 1e-8
) -> tuple[Tensor, Tensor, Tensor]:
    """EMPG's ingredients ``(H_norm, g, f)``, each ``[N]``.

    ``H_norm = (H - min H) / (max H - min H + eps)`` over the whole batch; ``g = exp(-k H_norm) / mean(exp(-k H_norm))``
    (self-calibrating: ``mean(g) = 1``); ``f_t = exp(-k_next H_norm_{t+1})`` from step ``t + 1`` of the same trajectory,
    0 when that step is not in the batch (a trajectory's last step gets no future-clarity bonus).

    Computed in float64 and returned in ``step_entropy``'s dtype. A batch whose entropies differ by no more than
    :data:`H_SPREAD_RTOL` of their magnitude (equal up to float32 rounding) gets ``H_norm = 0``, so ``g = 1``: the
    min-max normalisation would otherwise stretch rounding noise to the full ``[0, 1]`` range (issue #23).

    Example:
        >>> H = torch.full((4,), 2.302585) + torch.tensor([0.0, 1e-7, -1e-7, 2e-7])  # equal up to rounding
        >>> empg_terms(H, torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1]))[1].tolist()
        [1.0, 1.0, 1.0, 1.0]
    """
    check_1d("step_entropy", step_entropy)
    check_1d("traj_ids", traj_ids, len(step_entropy))
    check_1d("step_index", step_index, len(step_entropy))
    if len(step_entropy) == 0:
        raise ConfigError("EMPG needs at least one step sample; got an empty batch.")
    H = step_entropy.double()
    spread = H.max() - H.min()
    if spread <= H_SPREAD_RTOL * H.abs().max():
        H_norm = torch.zeros_like(H)
    else:
        H_norm = (H - H.min()) / (spread + eps)
    w = torch.exp(-k * H_norm)
    g = w / w.mean()
    nxt = next_step_index(traj_ids, step_index)
    has_next = nxt >= 0
    f = torch.where(has_next, torch.exp(-k_next * H_norm[nxt.clamp(min=0)]), torch.zeros_like(H))
    dtype = step_entropy.dtype if step_entropy.is_floating_point() else torch.get_default_dtype()
    return H_norm.to(dtype), g.to(dtype), f.to(dtype)


def empg_advantages(
    advantages: Tensor,
    step_entropy: Tensor,
    traj_ids: Tensor,
    step_index: Tensor,
    k: float = 1.0,
    k_next: float = 1.0,
    zeta: float = 0.05,
    eps: float = 1e-8,
    recentre: bool = True,
) -> Tensor:
    """EMPG's modulated advantage: ``A_mod = g(H_t) * A + zeta * f(H_{t+1})``, then minus its batch mean.

    Modulates any base advantage (GRPO, DAPO, ...). The final step only centres: no std division (DESIGN §7).
    ``recentre=False`` skips it, so ``k = 0, zeta = 0`` returns ``advantages`` unchanged.

    Args:
        advantages: ``[N]`` base advantage per step sample.
        step_entropy: ``[N]`` step entropy ``H_t`` (see :func:`step_entropy`).
        traj_ids: ``[N]`` trajectory id.
        step_index: ``[N]`` position of the step in its trajectory (the bonus reads step ``t + 1``).
        k: sharpness of ``g`` (paper: 1).
        k_next: sharpness of ``f`` (paper: 1).
        zeta: weight of the future-clarity bonus (paper: 0.05).
        eps: added to ``max - min`` in the min-max normalisation.
        recentre: subtract the batch mean of ``A_mod`` (the paper's last step).

    Returns:
        ``[N]`` modulated advantages (with zero batch mean when ``recentre``).

    Example:
        >>> A = torch.tensor([1.0, 1.0, -1.0])
        >>> out = empg_advantages(A, torch.tensor([0.0, 1.0, 0.5]), torch.tensor([0, 0, 1]), torch.tensor([0, 1, 0]))
        >>> round(out.sum().item(), 6)
        0.0
    """
    check_1d("advantages", advantages, len(step_entropy))
    _, g, f = empg_terms(step_entropy, traj_ids, step_index, k, k_next, eps)
    A_mod = g * advantages + zeta * f
    return A_mod - A_mod.mean() if recentre else A_mod


def discounted_returns(step_rewards: Tensor, traj_ids: Tensor, step_index: Tensor, gamma: float) -> Tensor:
    """Per-step discounted return ``G_t = sum_{j >= t} gamma^(j - t) r_j`` within each trajectory.

    Every step of a trajectory must be in the batch with consecutive ``step_index`` values.

    Example:
        >>> discounted_returns(torch.tensor([0.0, 0.0, 1.0]), torch.tensor([7, 7, 7]), torch.tensor([0, 1, 2]), 0.5)
        tensor([0.2500, 0.5000, 1.0000])
    """
    step_rewards = as_float("step_rewards", step_rewards)
    check_1d("step_rewards", step_rewards)
    check_1d("traj_ids", traj_ids, len(step_rewards))
    check_1d("step_index", step_index, len(step_rewards))
    order = trajectory_order(traj_ids, step_index)
    t, s, r = traj_ids[order], step_index[order], step_rewards[order]
    same = t[1:] == t[:-1]
    if bool((same & (s[1:] != s[:-1] + 1)).any()):
        i = int(torch.nonzero(same & (s[1:] != s[:-1] + 1))[0, 0])
        raise ConfigError(
            f"Trajectory {int(t[i])} jumps from step_index {int(s[i])} to {int(s[i + 1])}; discounted returns need "
            "every step of a trajectory in the batch. Keep whole trajectories together."
        )
    starts = torch.ones_like(t, dtype=torch.bool)
    starts[1:] = ~same
    traj_row = torch.cumsum(starts.long(), 0) - 1
    pos = torch.arange(len(t), device=t.device) - torch.nonzero(starts)[:, 0][traj_row]
    n_traj, horizon = int(traj_row[-1]) + 1 if len(t) else 0, int(pos.max()) + 1 if len(t) else 0
    R = torch.zeros(n_traj, horizon + 1, dtype=step_rewards.dtype, device=step_rewards.device)
    R[traj_row, pos] = r
    for j in range(horizon - 1, -1, -1):
        R[:, j] = R[:, j] + gamma * R[:, j + 1]
    out = torch.empty_like(step_rewards)
    out[order] = R[traj_row, pos]
    return out


def gigpo_advantages(
    rewards: Tensor,
    group_ids: Tensor,
    step_returns: Tensor,
    obs_keys: Tensor,
    omega: float = 1.0,
    norm_by_std: bool = True,
    eps: float = 1e-6,
    traj_ids: Tensor | None = None,
) -> Tensor:
    """GiGPO: ``A = A_episode + omega * A_step`` (Feng et al. 2025, arXiv 2505.10978).

    ``A_episode`` is :func:`grpo_advantages` of the outcome rewards, with the same group statistics as GRPO's
    (``traj_ids`` given: each trajectory counted once). ``A_step`` normalises the discounted step return
    within each *anchor-state group*: the steps of one task group whose observation is identical (same ``obs_key``).
    A step whose observation no other step of its group saw gets ``A_step = 0`` (verl-agent's ``step_norm_reward``).

    Args:
        rewards: ``[N]`` outcome reward.
        group_ids: ``[N]`` task group.
        step_returns: ``[N]`` discounted return from each step (see :func:`discounted_returns`, gamma 0.95).
        obs_keys: ``[N]`` integer key of the observation the step acted on (see ``observation_key``).
        omega: weight of the step term.
        norm_by_std: divide both terms by their group std (verl-agent ``mean_std_norm``) or not (``mean_norm``).
        eps: added to the stds.
        traj_ids: ``[N]`` trajectory ids for the episode term's statistics (see :func:`grpo_advantages`); ``None``
            runs them over step samples (verl-agent).

    Example:
        >>> A = gigpo_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]), torch.tensor([0.9, 0.0]),
        ...                      torch.tensor([5, 5]), norm_by_std=False)
        >>> A.tolist()
        [0.949999988079071, -0.949999988079071]
    """
    n = len(rewards)
    step_returns = as_float("step_returns", step_returns)
    check_1d("step_returns", step_returns, n)
    check_1d("obs_keys", obs_keys, n)
    A_episode = grpo_advantages(rewards, group_ids, norm_by_std, eps, traj_ids=traj_ids)
    index, counts = dense_ids(group_ids, obs_keys)
    mean, std = group_mean_std(step_returns, index, counts)
    single = counts[index] == 1
    std_i = torch.where(single, torch.ones_like(step_returns), std[index])
    centred = step_returns - mean[index]
    A_step = centred / (std_i + eps) if norm_by_std else centred
    return A_episode + omega * A_step


def dapo_filter_groups(rewards: Tensor, group_ids: Tensor) -> Tensor:
    """DAPO's dynamic-sampling filter: a ``[N]`` bool mask keeping samples of groups whose rewards are not all equal.

    A group where every trajectory succeeded (or every one failed) has zero GRPO advantage and no gradient.

    Example:
        >>> dapo_filter_groups(torch.tensor([1.0, 1.0, 0.0, 1.0]), torch.tensor([0, 0, 1, 1])).tolist()
        [False, False, True, True]
    """
    rewards = as_float("rewards", rewards)
    check_1d("rewards", rewards)
    check_1d("group_ids", group_ids, len(rewards))
    index, counts = dense_ids(group_ids)
    lo = torch.full((len(counts),), float("inf"), dtype=rewards.dtype, device=rewards.device)
    hi = torch.full_like(lo, float("-inf"))
    lo = lo.scatter_reduce(0, index, rewards, "amin")
    hi = hi.scatter_reduce(0, index, rewards, "amax")
    return (hi > lo)[index]


def overlong_penalty(lengths: Tensor, max_len: int, buffer_len: int, factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment, added to the reward of each response (DAPO eq. 13).

    ``0`` while ``L <= max_len - buffer_len``; ``-(L - (max_len - buffer_len)) / buffer_len * factor`` inside the
    buffer (verl's ``DAPORewardManager``); ``-factor`` beyond ``max_len`` (the paper's ``-1``).

    Example:
        >>> overlong_penalty(torch.tensor([10, 100, 112, 128, 200]), max_len=128, buffer_len=32).tolist()
        [0.0, -0.125, -0.5, -1.0, -1.0]
    """
    if buffer_len <= 0 or buffer_len > max_len:
        raise ConfigError(
            f"overlong buffer_len must be in (0, max_len={max_len}], got {buffer_len}; DAPO uses about max_len / 5."
        )
    expected = max_len - buffer_len
    exceed = lengths.to(torch.float32 if not lengths.is_floating_point() else lengths.dtype) - expected
    return torch.clamp(-exceed / buffer_len * factor, min=-factor, max=0.0)
