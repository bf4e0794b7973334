"""RLOO, REINFORCE++, REINFORCE++-baseline and GAE as pure tensor functions, as verl 0.9.1's ``core_algos``.

Each function mirrors one verl estimator on single-turn token-level input (one response per row, the outcome on its
last response token); the docstrings name it. The registered estimators in :mod:`.pipeline` apply them to our step
rows (one row per env step; see docs/algorithms.md, "Multi-turn semantics").

Shapes: ``N`` rows, ``T`` response tokens per row (padded).

References:
    RLOO: Ahmadian et al. 2024, arXiv 2402.14740. REINFORCE++: Hu 2025, arXiv 2501.03262.
    GAE: Schulman et al. 2016, arXiv 1506.02438.
"""

from __future__ import annotations

import torch
from torch import Tensor

from empg_gym.agents.algorithms._groups import as_float, check_1d, trajectory_order
from empg_gym.agents.algorithms.advantages import group_statistics, grpo_advantages
from empg_gym.errors import ConfigError


def _check_tokens(name: str, x: Tensor, mask: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or tuple(x.shape) != tuple(mask.shape):
        got = list(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ConfigError(f"{name} must be [N, T] like the mask {list(mask.shape)}, got {got}.")


def masked_whiten(values: Tensor, mask: Tensor) -> Tensor:
    """Whiten ``values`` with the mean and unbiased variance of its entries under ``mask``, as verl's ``masked_whiten``.

    ``mean = sum(m x) / (sum m + 1e-8)``, ``var = mean_m((x - mean)^2) * n / (n - 1)`` (``n = sum m``),
    ``(x - mean) / sqrt(var + 1e-8)``. Entries outside the mask are shifted and scaled too (not zeroed).

    Args:
        values: ``[N, T]``.
        mask: ``[N, T]`` bool or 0/1, at least two entries set.

    Example:
        >>> x = torch.tensor([[1.0, 3.0, 9.0]]); m = torch.tensor([[1, 1, 0]])
        >>> [round(v, 4) for v in masked_whiten(x, m)[0].tolist()]
        [-0.7071, 0.7071, 4.9497]
    """
    m = mask.to(values.dtype)
    n = m.sum()
    if n < 2:
        raise ConfigError(f"masked_whiten needs at least 2 masked entries for an unbiased variance, got {int(n)}; "
                          "pass a larger batch.")
    mean = (values * m).sum() / (n + 1e-8)
    var = (((values - mean) ** 2) * m).sum() / (n + 1e-8) * (n / (n - 1))
    return (values - mean) * torch.rsqrt(var + 1e-8)


def rloo_advantages(rewards: Tensor, group_ids: Tensor, traj_ids: Tensor | None = None) -> Tensor:
    """RLOO's leave-one-out advantage ``A_i = R_i - mean_{j != i} R_j = n/(n-1) (R_i - mean_group)``.

    Mirrors verl's ``compute_rloo_outcome_advantage`` (``adv_estimator=rloo``): the score of a group of one is left as
    it is (verl's ``rloo_vectorized`` gives it 0 instead).

    Args:
        rewards: ``[N]`` the outcome reward of each row.
        group_ids: ``[N]`` the task group of each row.
        traj_ids: ``[N]`` optional. When given, ``n`` counts trajectories and the group mean weighs each trajectory
            once (as :func:`~empg_gym.agents.algorithms.grpo_advantages`): with one reward per trajectory that is
            RLOO over trajectories, whatever their lengths. ``None``: every row is one sample (verl).

    Returns:
        ``[N]`` advantages.

    Example:
        >>> rloo_advantages(torch.tensor([1.0, 0.0, 0.0, 2.0]), torch.tensor([0, 0, 0, 1])).tolist()
        [1.0, -0.5, -0.5, 2.0]
    """
    rewards = as_float("rewards", rewards)
    check_1d("rewards", rewards)
    if len(rewards) == 0:
        check_1d("group_ids", group_ids, 0)
        return rewards.clone()
    index, mean, _, counts = group_statistics(rewards, group_ids, traj_ids)
    n = counts[index].to(rewards.dtype)
    scale = n / (n - 1).clamp(min=1.0)
    loo = rewards * scale - mean[index] * scale  # verl's order of operations
    return torch.where(n > 1, loo, rewards)


def reinforce_pp_baseline_advantages(
    rewards: Tensor, group_ids: Tensor, mask: Tensor, traj_ids: Tensor | None = None
) -> Tensor:
    """REINFORCE++-baseline: the group mean removed from each reward, then whitened over the batch's response tokens.

    Mirrors verl's ``compute_reinforce_plus_plus_baseline_outcome_advantage``: ``s_i = R_i - mean_group`` (0 for the
    mean of a group of one), broadcast to the row's response tokens, :func:`masked_whiten` over all of them (a row
    weighs as many tokens as it has), times the mask.

    Args:
        rewards: ``[N]`` outcome rewards.
        group_ids: ``[N]`` task groups.
        mask: ``[N, T]`` response-token mask.
        traj_ids: ``[N]`` optional: group means weigh each trajectory once (see :func:`rloo_advantages`).

    Returns:
        ``[N, T]`` advantages (verl returns them as the returns too).

    Example:
        >>> A = reinforce_pp_baseline_advantages(torch.tensor([1.0, 0.0]), torch.tensor([0, 0]),
        ...                                      torch.tensor([[1, 1], [1, 0]]))
        >>> [[round(a, 4) for a in row] for row in A.tolist()]
        [[0.5774, 0.5774], [-1.1547, -0.0]]
    """
    rewards = as_float("rewards", rewards)
    check_1d("rewards", rewards)
    if mask.dim() != 2 or mask.shape[0] != len(rewards):
        raise ConfigError(f"mask must be [N, T] with N={len(rewards)} rows, got {list(mask.shape)}.")
    s = grpo_advantages(rewards, group_ids, norm_by_std=False, traj_ids=traj_ids)
    m = mask.to(rewards.dtype)
    scores = s.unsqueeze(-1) * m
    return masked_whiten(scores, mask) * m


def reinforce_pp_advantages(token_rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> tuple[Tensor, Tensor]:
    """REINFORCE++: discounted return-to-go at each response token, whitened over the batch's response tokens.

    Mirrors verl's ``compute_reinforce_plus_plus_outcome_advantage``: ``G_t = r_t + gamma G_{t+1}`` over response
    tokens; a token outside the mask (an observation inside a multi-turn response) carries ``G`` through unchanged
    and gets return 0. Advantages are ``masked_whiten(G) * mask``.

    Args:
        token_rewards: ``[N, T]`` reward of each token (single-turn: the outcome on the last response token).
        mask: ``[N, T]`` response-token mask.
        gamma: discount (verl's ``algorithm.gamma``, default 1).

    Returns:
        ``(advantages [N, T], returns [N, T])``.

    Example:
        >>> r = torch.tensor([[0.0, 1.0], [0.0, 0.0]]); m = torch.ones(2, 2)
        >>> A, G = reinforce_pp_advantages(r, m, gamma=0.5)
        >>> G.tolist(), [round(a, 4) for a in A[0].tolist()]
        ([[0.5, 1.0], [0.0, 0.0]], [0.2611, 1.3056])
    """
    token_rewards = as_float("token_rewards", token_rewards)
    _check_tokens("token_rewards", token_rewards, mask)
    if not 0 <= gamma <= 1:
        raise ConfigError(f"REINFORCE++ gamma must be in [0, 1] (verl default 1.0), got {gamma}.")
    m = mask.to(token_rewards.dtype)
    returns = torch.zeros_like(token_rewards)
    running = torch.zeros_like(token_rewards[:, 0])
    for t in range(token_rewards.shape[1] - 1, -1, -1):
        new = token_rewards[:, t] + gamma * running
        returns[:, t] = new * m[:, t]
        running = new * m[:, t] + running * (1 - m[:, t])
    return masked_whiten(returns, mask) * m, returns


def gae_advantages(
    token_rewards: Tensor, values: Tensor, mask: Tensor, gamma: float = 1.0, lam: float = 1.0
) -> tuple[Tensor, Tensor]:
    """Generalised advantage estimation, whitened, as verl's ``compute_gae_advantage_return``.

    Backwards over positions: ``delta_t = r_t + gamma V_next - V_t``, ``A_t = delta_t + gamma lam A_next``; at a
    position outside the mask (an observation token, or padding) neither ``V_next`` nor ``A_next`` moves, so the
    recursion skips it. ``returns = A + V`` (before whitening); advantages are :func:`masked_whiten` ed and, as in
    verl, not zeroed outside the mask.

    A turn-level critic (the ``ppo`` preset) calls this with one column per env step instead of per token.

    Args:
        token_rewards: ``[N, T]`` rewards (single-turn: the outcome on the last response token).
        values: ``[N, T]`` critic values ``V_t``.
        mask: ``[N, T]`` response-token (or step) mask.
        gamma: discount (verl default 1.0).
        lam: GAE's lambda (verl default 1.0).

    Returns:
        ``(advantages [N, T], returns [N, T])``.

    Example:
        >>> r = torch.tensor([[0.0, 1.0], [0.0, 0.0]]); v = torch.tensor([[0.5, 0.5], [0.2, 0.1]])
        >>> A, G = gae_advantages(r, v, torch.ones(2, 2), gamma=1.0, lam=0.5)
        >>> [[round(x, 4) for x in row] for row in G.tolist()]
        [[0.75, 1.0], [0.05, 0.0]]
    """
    token_rewards = as_float("token_rewards", token_rewards)
    _check_tokens("token_rewards", token_rewards, mask)
    _check_tokens("values", values, mask)
    if not (0 <= gamma <= 1 and 0 <= lam <= 1):
        raise ConfigError(f"GAE needs gamma and lam in [0, 1] (verl default 1.0, 1.0), got gamma={gamma}, lam={lam}.")
    values = values.to(token_rewards.dtype)
    m = mask.to(token_rewards.dtype)
    next_v = torch.zeros_like(values[:, 0])
    last = torch.zeros_like(values[:, 0])
    out = torch.zeros_like(values)
    for t in range(values.shape[1] - 1, -1, -1):
        delta = token_rewards[:, t] + gamma * next_v - values[:, t]
        new = delta + gamma * lam * last
        next_v = values[:, t] * m[:, t] + (1 - m[:, t]) * next_v
        last = new * m[:, t] + (1 - m[:, t]) * last
        out[:, t] = last
    returns = out + values
    return masked_whiten(out, mask), returns


def last_token_rewards(rewards: Tensor, mask: Tensor) -> Tensor:
    """``[N, T]`` token rewards with each row's reward on its last response token (verl's outcome placement).

    Rows without a response token get no reward.

    Example:
        >>> last_token_rewards(torch.tensor([1.0, 2.0]), torch.tensor([[1, 1, 0], [0, 0, 0]])).tolist()
        [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    rewards = as_float("rewards", rewards)
    check_1d("rewards", rewards, mask.shape[0] if mask.dim() == 2 else None)
    T = mask.shape[-1]
    pos = torch.arange(T, device=mask.device).expand_as(mask)
    last = torch.where(mask.bool(), pos, torch.full_like(pos, -1)).amax(-1)
    out = torch.zeros(mask.shape, dtype=rewards.dtype, device=rewards.device)
    has = last >= 0
    out[has.nonzero()[:, 0], last[has]] = rewards[has]
    return out


def turn_gae(
    rewards: Tensor, values: Tensor, traj_ids: Tensor, step_index: Tensor, gamma: float = 0.99, lam: float = 0.9
) -> tuple[Tensor, Tensor]:
    """Turn-level GAE (Turn-PPO, arXiv 2512.17008): :func:`gae_advantages` over the steps of each trajectory.

    Each env step is one action: ``delta_t = r_t + gamma V_{t+1} - V_t`` (``V`` after the last step is 0),
    ``A_t = delta_t + gamma lam A_{t+1}``, ``returns = A + V``; advantages are whitened over all steps of the batch
    (each step counts once, whatever its response length).

    Args:
        rewards: ``[N]`` reward of each step (the ``ppo`` preset: the outcome on a trajectory's last step, 0 before).
        values: ``[N]`` the critic's value of each step's prompt.
        traj_ids: ``[N]`` trajectory of each step.
        step_index: ``[N]`` position of the step in its trajectory; a trajectory's steps must all be in the batch.
        gamma: discount over steps (Turn-PPO: 0.99).
        lam: GAE's lambda over steps (Turn-PPO: 0.9).

    Returns:
        ``(advantages [N], returns [N])``.

    Example:
        >>> A, G = turn_gae(torch.tensor([0.0, 1.0, 0.0]), torch.tensor([0.5, 0.5, 0.2]), torch.tensor([0, 0, 1]),
        ...                 torch.tensor([0, 1, 0]), gamma=1.0, lam=0.5)
        >>> [round(g, 4) for g in G.tolist()]
        [0.75, 1.0, 0.0]
    """
    rewards = as_float("rewards", rewards)
    n = len(rewards)
    check_1d("rewards", rewards)
    for name, x in (("values", values), ("traj_ids", traj_ids), ("step_index", step_index)):
        check_1d(name, x, n)
    order = trajectory_order(traj_ids, step_index)
    t = traj_ids[order]
    starts = torch.ones(n, dtype=torch.bool, device=t.device)
    starts[1:] = t[1:] != t[:-1]
    row = torch.cumsum(starts.long(), 0) - 1
    pos = torch.arange(n, device=t.device) - torch.nonzero(starts)[:, 0][row]
    if bool((step_index[order] - step_index[order][starts][row] != pos).any()):
        raise ConfigError("turn_gae needs every step of a trajectory in the batch (step_index jumps inside one); "
                          "keep whole trajectories together.")
    shape = (int(row[-1]) + 1, int(pos.max()) + 1) if n else (0, 0)
    R = torch.zeros(shape, dtype=rewards.dtype, device=rewards.device)
    V = torch.zeros_like(R)
    M = torch.zeros(shape, dtype=torch.bool, device=rewards.device)
    R[row, pos], V[row, pos], M[row, pos] = rewards[order], values[order].to(rewards.dtype), True
    A_mat, G_mat = gae_advantages(R, V, M, gamma, lam)
    A, G = torch.empty_like(rewards), torch.empty_like(rewards)
    A[order], G[order] = A_mat[row, pos], G_mat[row, pos]
    return A, G
