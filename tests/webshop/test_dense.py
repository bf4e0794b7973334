"""WebShop's dense rewards: Φ = ½ × the score the product in view would get if bought now."""

from __future__ import annotations

import gymnasium as gym
import pytest

from empg_gym.envs.webshop.env import VIEW_WEIGHT


@pytest.fixture()
def env():
    e = gym.make("EMPG-WebShop-v0", reward_mode="dense")
    yield e
    e.close()


def _goal_sizes(env):
    data = env.unwrapped.current_task.data
    options = data["goal_options"]
    return len(data["attributes"]), len(options.values() if isinstance(options, dict) else options)


@pytest.mark.parametrize("seed", [0, 4, 21, 37])
def test_good_episode_by_hand(env, seed):
    """Search (Φ 0), open the target (its attributes and price match: ½ (|A| + 1) / (|A| + |O| + 1)), each goal
    option (+ ½ / (|A| + |O| + 1)), buy (1 - ½): monotone, and the sum is the purchase's reward, 1."""
    _, info = env.reset(seed=seed)
    assert info["potential"] == 0.0
    n_att, n_opt = _goal_sizes(env)
    denominator = n_att + n_opt + 1
    plan = env.unwrapped.oracle_actions()
    rewards, phis = [], []
    for action in plan:
        obs, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        phis.append(info["potential"])
    product = next(i for i, a in enumerate(plan) if a.startswith("click[b0"))
    options = len(plan) - product - 2
    assert options == n_opt
    assert phis[:product] == [0.0] * product  # search and results pages show no product
    expected = [VIEW_WEIGHT * (n_att + 1 + k) / denominator for k in range(options + 1)]
    assert phis[product:-1] == pytest.approx(expected, abs=1e-12)
    assert phis[-1] == 0.0 and terminated and info["won"]  # terminal: back to the start's potential
    assert rewards[-1] == pytest.approx(1.0 - VIEW_WEIGHT, abs=1e-12)
    assert all(r >= 0.0 for r in rewards) and sum(rewards) == pytest.approx(1.0, abs=1e-12)


def test_potential_follows_the_product_in_view(env):
    """A worse product lowers Φ, leaving it for the results page drops Φ to 0, the sub-pages keep the product's Φ."""
    env.reset(seed=21)
    u = env.unwrapped
    target = u.current_task.data["asin"].lower()
    plan = u.oracle_actions()
    product = next(i for i, a in enumerate(plan) if a.startswith("click[b0"))
    for action in plan[:product]:
        _, _, _, _, info = env.step(action)
    other = next(a for a in info["admissible_actions"] if a.startswith("click[b0") and target not in a)
    _, r_other, _, _, info = env.step(other)
    phi_other = info["potential"]
    assert phi_other == pytest.approx(VIEW_WEIGHT * u._session.purchase_reward()[0]) and r_other == phi_other
    _, r_back, _, _, info = env.step("click[< prev]")
    assert info["potential"] == 0.0 and r_back == pytest.approx(-phi_other)
    _, _, _, _, info = env.step(plan[product])
    phi_target = info["potential"]
    assert phi_target > phi_other
    _, r_sub, _, _, info = env.step("click[features]")
    assert info["potential"] == phi_target and r_sub == 0.0


def test_a_bad_purchase_sums_to_its_reward(env):
    env.reset(seed=21)
    u = env.unwrapped
    target = u.current_task.data["asin"].lower()
    total = 0.0
    for action in u.oracle_actions()[:1]:
        total += env.step(action)[1]
    info = env.step("click[next >]")[4]
    other = next(a for a in info["admissible_actions"] if a.startswith("click[b0") and target not in a)
    total += env.step(other)[1]
    _, reward, terminated, _, info = env.step("click[buy now]")
    assert terminated and not info["won"]
    assert total + reward == pytest.approx(info["score"], abs=1e-12)


@pytest.mark.browser
@pytest.mark.slow
def test_browser_env_gives_the_text_envs_dense_rewards(env):
    browser = gym.make("EMPG-WebShop-Browser-v0", reward_mode="dense")
    try:
        for seed in (0, 4):
            _, info_t = env.reset(seed=seed)
            _, info_b = browser.reset(seed=seed)
            assert info_b["potential"] == info_t["potential"] == 0.0
            for action in env.unwrapped.oracle_actions():
                t = env.step(action)
                b = browser.step(action)
                assert b[1] == t[1] and b[4]["potential"] == t[4]["potential"], action
            assert b[2] and b[4]["won"]
    finally:
        browser.close()
