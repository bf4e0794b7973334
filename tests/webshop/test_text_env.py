"""EMPG-WebShop-v0: the oracle on both eval splits, page transitions, invalid and hostile actions."""

from __future__ import annotations

import gymnasium as gym
import pytest

from empg_gym.core import EpisodeOverError
from empg_gym.envs.webshop.engine import SEARCH_TEMPLATE, parse_action

EVAL_SPLITS = ("eval_in_distribution", "eval_out_of_distribution")


@pytest.fixture()
def env():
    e = gym.make("EMPG-WebShop-v0")
    yield e
    e.close()


@pytest.mark.parametrize("split", EVAL_SPLITS)
def test_oracle_wins_every_eval_goal(env, split):
    u = env.unwrapped
    ids = u.task_ids(split)
    assert len(ids) >= 190
    for tid in ids:
        obs, info = env.reset(options={"task_id": tid})
        assert info["split"] == split and info["task"] in obs
        for action in u.oracle_actions():
            obs, reward, terminated, truncated, info = env.step(action)
            assert info["action_valid"], (tid, action, obs[:300])
        assert terminated and not truncated and reward == 1.0 and info["won"] and info["score"] == 1.0, (tid, info)
        assert info["reward_info"]["r_type"] == 1.0


def _to_item(env, seed=0):
    obs, info = env.reset(seed=seed)
    u = env.unwrapped
    plan = u.oracle_actions()
    for action in plan[: plan.index(next(a for a in plan if a.startswith("click[b0")))+ 1]:
        obs, *_, info = env.step(action)
    return obs, info, plan


def test_pages_and_transitions(env):
    obs, info = env.reset(seed=11)
    assert obs == f"WebShop [SEP] Instruction: [SEP] {info['task']} [SEP] Search"
    assert info["admissible_actions"] == [SEARCH_TEMPLATE]
    obs, r, term, trunc, info = env.step("search[shampoo for dry hair]")
    assert obs.startswith(f"Instruction: [SEP] {info['task']} [SEP] Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] B0")
    assert info["admissible_actions"][:2] == ["click[back to search]", "click[next >]"]
    assert len(info["admissible_actions"]) == 12  # 2 buttons + 10 products
    page1 = obs
    obs, *_, info = env.step("click[next >]")
    assert "Page 2 (Total results: 50) [SEP] < Prev [SEP] Next >" in obs and "click[< prev]" in info["admissible_actions"]
    obs, *_, info = env.step("click[< prev]")
    assert obs == page1
    asin = info["admissible_actions"][2][len("click["):-1]
    obs, *_, info = env.step(f"click[{asin}]")
    assert "Back to Search [SEP] < Prev [SEP] " in obs and obs.endswith("Description [SEP] Features [SEP] Reviews [SEP] Buy Now")
    product = env.unwrapped.store.by_asin[asin.upper()]
    assert f"{product.Title} [SEP] Price: {product.Price} [SEP] Rating: N.A." in obs
    for name, values in product.options.items():
        assert f"{name} [SEP] {' [SEP] '.join(values)}" in obs
    item = obs
    obs, *_, info = env.step("click[features]")
    assert obs.endswith(" [SEP] < Prev [SEP] " + " [SEP] ".join(product.BulletPoints))
    obs, *_, info = env.step("click[< prev]")
    assert obs == item
    obs, *_, info = env.step("click[description]")
    assert obs.endswith("< Prev [SEP] " + product.Description)
    env.step("click[< prev]")
    obs, *_, info = env.step("click[reviews]")
    for review in product.Reviews:
        assert f'"{review["title"]}" [SEP] {review["score"]} [SEP] {review["body"]}' in obs
    env.step("click[< prev]")
    obs, *_, info = env.step("click[< prev]")
    assert obs == page1
    obs, *_, info = env.step("click[back to search]")
    assert obs.startswith("WebShop [SEP] Instruction:")


def test_options_then_buy_scores_and_ends(env):
    obs, info, plan = _to_item(env, seed=4)
    for action in plan[plan.index(next(a for a in plan if a.startswith("click[b0"))) + 1 :]:
        obs, reward, term, trunc, info = env.step(action)
    assert obs == "Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] 1.0"
    assert term and info["won"] and info["admissible_actions"] == []
    with pytest.raises(EpisodeOverError, match="call reset"):
        env.step("click[buy now]")


def test_wrong_product_scores_less_and_does_not_win(env):
    obs, info = env.reset(seed=21)
    target = env.unwrapped.current_task.data["asin"]
    env.step("search[beef jerky teriyaki]")
    obs, *_, info = env.step("click[next >]")
    asin = next(a for a in info["admissible_actions"] if a.startswith("click[b0") and target.lower() not in a)
    env.step(asin)
    obs, reward, term, trunc, info = env.step("click[buy now]")
    assert term and 0.0 <= reward < 1.0 and not info["won"] and info["score"] == reward
    assert set(info["reward_info"]) >= {"r_type", "r_att", "r_price", "query_match", "category_match", "title_score"}


def test_invalid_actions_give_feedback_and_leave_state(env):
    obs0, info0 = env.reset(seed=2)
    cases = {
        "jump": "is not of the form search[keywords] or click[element]",
        "click[buy now]": "'buy now' is not a clickable element of this page",
        "click[search]": "'search' is not a clickable element",
        "search[]": "the search query is empty",
        "search[   ]": "the search query is empty",
        "search[" + "a" * 1_000_000 + "]": "the search query has 1000000 characters, more than the limit of 1000",
        "": "is not of the form",
    }
    for action, reason in cases.items():
        obs, reward, term, trunc, info = env.step(action)
        assert not info["action_valid"] and reward == 0.0 and not term
        assert obs.startswith("Invalid action: ") and reason in obs and obs.endswith(obs0), action[:40]
        assert info["admissible_actions"] == info0["admissible_actions"]
    results_page, *_ = env.step("search[shampoo]")
    obs, *_, info = env.step("search[shampoo]")
    assert not info["action_valid"] and "no search box on this page" in obs and obs.endswith(results_page)
    obs, *_, info = env.step(42)
    assert not info["action_valid"] and obs == f"Invalid action: expected a string, got int. [SEP] {results_page}"


@pytest.mark.parametrize(
    "action, reason",
    [
        (b"search[shampoo]", "expected a string, got bytes; decode it first, e.g. action.decode('utf-8')"),
        (bytearray(b"click[buy now]"), "expected a string, got bytearray; decode it first"),
        (None, "expected a string, got NoneType"),
        (["search[shampoo]"], "expected a string, got list"),
        ("search[" + "a" * (1 << 20) + "]", "the action has 1048584 characters, longer than the limit of 1048576"),
    ],
)
def test_refused_actions_of_any_type_get_the_same_feedback_shape(env, action, reason):
    """Not a str (bytes too) or over-long: ``Invalid action: <reason>. [SEP] <unchanged page>``, state unchanged."""
    obs0, info0 = env.reset(seed=2)
    obs, reward, term, trunc, info = env.step(action)
    assert obs.startswith(f"Invalid action: {reason}") and obs.endswith(f". [SEP] {obs0}")
    assert not info["action_valid"] and reward == 0.0 and not term and not trunc
    assert info["admissible_actions"] == info0["admissible_actions"]
    ref = gym.make("EMPG-WebShop-v0")
    ref.reset(seed=2)
    assert env.step("search[shampoo]") == ref.step("search[shampoo]")


def test_queries_are_what_a_browser_search_box_sends():
    """Line breaks become spaces, a lone surrogate U+FFFD, a surrogate pair its character; clicks stay as typed."""
    assert parse_action("search[Dry\nHair \r\nShampoo]") == ("search", "dry hair   shampoo")
    assert parse_action("search[\ud800 shampoo \udc00]") == ("search", "\ufffd shampoo \ufffd")
    assert parse_action("search[\ud83d\ude42 \ude42\ud83d]") == ("search", "🙂 \ufffd\ufffd")
    assert parse_action("search[\x00\ufeff\u2028\uffff]") == ("search", "\x00\ufeff\u2028\uffff")
    assert parse_action("click[\ud800]") == ("click", "\ud800")
    for query in ("\r\n\n", " \r "):
        env = gym.make("EMPG-WebShop-v0")
        env.reset(seed=1)
        obs, *_, info = env.step(f"search[{query}]")
        assert not info["action_valid"] and "the search query is empty" in obs


@pytest.mark.parametrize(
    "query",
    ['<script>alert("x")</script>', "\"><img src=x onerror=alert(1)>", "日本語 シャンプー 🙂", "ß ü é ñ", "../../etc/passwd",
     "a" * 1000, "\x00\x01 shampoo \r\n", "\ud800 shampoo", "\udc00", "sham\u0000poo\ufeff\u202e\uffff", "🙂" * 1000],
)
def test_hostile_searches_do_not_crash(env, query):
    env.reset(seed=1)
    obs, reward, term, trunc, info = env.step(f"search[{query}]")
    assert info["action_valid"] and not term
    assert obs.startswith("Instruction: [SEP] ") and "(Total results: " in obs
    assert obs in env.observation_space


def test_step_limit_truncates_at_15(env):
    env.reset(seed=0)
    env.step("search[dress]")
    truncs = []
    for _ in range(14):
        obs, r, term, trunc, info = env.step("click[next >]")
        assert not term
        truncs.append(trunc)
    assert truncs == [False] * 13 + [True]


def test_envs_share_one_store_and_same_seed_same_episode():
    a, b = gym.make("EMPG-WebShop-v0"), gym.make("EMPG-WebShop-v0", split="eval_out_of_distribution")
    assert a.unwrapped.store is b.unwrapped.store
    assert a.reset(seed=5) == a.reset(seed=5)
    assert b.reset(seed=5)[1]["split"] == "eval_out_of_distribution"


def test_bad_arguments():
    from empg_gym.errors import ConfigError

    with pytest.raises(ConfigError, match="Bad catalog settings"):
        gym.make("EMPG-WebShop-v0", catalog={"n_product": 5})
    with pytest.raises(ConfigError, match="Unknown split 'trian'"):
        gym.make("EMPG-WebShop-v0", split="trian")
