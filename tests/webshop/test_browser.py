"""EMPG-WebShop-Browser-v0 in real headless Chromium: contract, oracle, same text as the text env, clean exit."""

from __future__ import annotations

import random
import socket

import gymnasium as gym
import psutil
import pytest
from gymnasium.utils.env_checker import check_env

import empg_gym  # noqa: F401  (registers the ids)

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EVAL_SPLITS = ("eval_in_distribution", "eval_out_of_distribution")


def _browser_children() -> list[psutil.Process]:
    out = []
    for p in psutil.Process().children(recursive=True):
        try:
            if any(k in p.name().lower() for k in ("chrom", "driver")):
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture(scope="module")
def envs():
    text, browser = gym.make("EMPG-WebShop-v0"), gym.make("EMPG-WebShop-Browser-v0")
    yield text, browser
    browser.close()
    text.close()


def _lockstep(text, browser, actions):
    rewards = []
    for action in actions:
        t = text.step(action)
        b = browser.step(action)
        assert b[0] == t[0], (action, t[0][:300], b[0][:300])
        assert b[1:4] == t[1:4], action
        assert b[4] == t[4], action
        rewards.append(b[1])
        if t[2]:
            break
    return rewards, b


def test_oracle_and_identical_to_text_mode(envs):
    """20 eval goals (10 per split): oracle actions with detours; every observation, reward and info equal."""
    text, browser = envs
    won = 0
    for split in EVAL_SPLITS:
        for tid in text.unwrapped.task_ids(split)[:10]:
            t_obs, t_info = text.reset(options={"task_id": tid})
            b_obs, b_info = browser.reset(options={"task_id": tid})
            assert b_obs == t_obs and b_info == t_info
            plan = browser.unwrapped.oracle_actions()
            assert plan == text.unwrapped.oracle_actions()
            actions = ["click[buy now]", plan[0], "click[not-here]", *plan[1:-1], "click[features]", "click[< prev]", plan[-1]]
            rewards, (obs, reward, term, trunc, info) = _lockstep(text, browser, actions)
            assert term and reward == 1.0 and info["won"], (tid, obs)
            won += 1
    assert won == 20


def test_random_walks_identical_to_text_mode(envs):
    text, browser = envs
    rng = random.Random(0)
    for seed in range(4):
        t_obs, info = text.reset(seed=seed)
        assert browser.reset(seed=seed)[0] == t_obs
        actions = []
        first = f"search[{' '.join(info['task'].split()[3:7])}]"
        _lockstep(text, browser, [first])
        for _ in range(7):
            acts = [a for a in text.unwrapped.admissible_actions() if a != "click[buy now]"] or ["click[back to search]"]
            action = rng.choice(acts)
            if action.startswith("search["):
                action = "search[garden hose]"
            actions.append(action)
            _lockstep(text, browser, [action])


@pytest.mark.parametrize(
    "query", ['<script>window.__pwned=1</script>', '"><img src=x onerror="window.__pwned=1">', "日本語 🙂 ñ", "a" * 1000]
)
def test_hostile_input_in_the_browser(envs, query):
    text, browser = envs
    text.reset(seed=3)
    browser.reset(seed=3)
    rewards, (obs, *_rest, info) = _lockstep(text, browser, [f"search[{query}]", "click[no such button]", "search[x]"])
    assert not info["action_valid"] and obs.startswith("Invalid action:")
    assert browser.unwrapped._driver.execute_script("return window.__pwned === undefined")


# Pieces of strings the text env accepts that a browser or chromedriver holds differently: lone and reversed
# surrogates, NUL and other controls, line breaks, BOM / zero-width / bidi marks, noncharacters, combining marks,
# astral characters, and the signs of form encoding and of the action grammar.
ODD_PIECES = [
    "\ud800", "\udbff", "\udc00", "\udfff", "\ude42\ud83d", "\ud83d\ude42", *map(chr, range(32)), "\x7f", "\x85",
    "\xa0", "\u2028", "\u2029", "\u200b", "\u200d", "\u202e", "\u2066", "\ufeff", "\ufffe", "\uffff", "\ufdd0",
    "\U0010ffff", "\U000e0001", "\ue000", "\u0301", "\u3000", "👩‍👩‍👧", "𝔘", "日本語", "العربية", "İ", "ﬁ",
    *"[]\\\"'<>&%+=?#/`${}", "shampoo", "hair", "coffee", "organic", "12", "oz", " ",
]  # fmt: skip


def _odd_queries() -> list[str]:
    named = [
        "\ud800 shampoo", "\udc00", "\ude42\ud83d soap", "a\x00b shampoo", "sham\npoo", "dry\r\nhair x", "\r\n\t\x0b",
        "\ud800" * 1000, "🙂" * 1000, "🙂" * 1001, "x" * 1001, "\ufeff\u200bsoap\u202e", "e\u0301\u0338 hair",
        "\ud800]]",
    ]  # fmt: skip
    rng = random.Random(15)
    return named + ["".join(rng.choice(ODD_PIECES) for _ in range(rng.randint(1, 30))) for _ in range(20)]


def test_odd_strings_give_the_text_envs_result_in_the_browser(envs):
    """Any string the text env takes (a search, a click, or no action at all) never raises in the browser env."""
    text, browser = envs
    queries = _odd_queries()
    actions = [f"search[{q}]" for q in queries]
    actions += ["\ud800", "\x00", "click[\ud800]", "click[" + "\udfff" * 5000 + "]"]
    actions += [b"search[shampoo]", bytearray(b"\xed\xa0\x80"), None, "x" * ((1 << 20) + 1)]
    valid = []
    for i, action in enumerate(actions):
        text.reset(seed=2000 + i % 3)
        browser.reset(seed=2000 + i % 3)
        _, (obs, *_rest, info) = _lockstep(text, browser, [action])
        valid.append(info["action_valid"])
        _lockstep(text, browser, ["click[back to search]", "search[\ud800]"])
    assert sum(valid[: len(queries)]) == len(queries) - 3  # all searches but one blank and two over 1,000 characters
    assert not any(valid[len(queries) :])


def test_check_env_and_clean_exit():
    before = {p.pid for p in _browser_children()}
    env = gym.make("EMPG-WebShop-Browser-v0")
    check_env(env.unwrapped, skip_render_check=True)
    started = [p for p in _browser_children() if p.pid not in before]
    assert any("chrom" in p.name().lower() for p in started)
    port = env.unwrapped._server.port
    env.close()
    psutil.wait_procs(started, timeout=10)
    assert not [p for p in _browser_children() if p.pid not in before and p.is_running() and p.status() != "zombie"]
    with socket.socket() as s, pytest.raises(OSError):
        s.connect(("127.0.0.1", port))
    env.close()  # closing twice is fine


def test_missing_browser_gives_a_clear_error(tmp_path):
    from empg_gym.errors import BackendError

    env = gym.make("EMPG-WebShop-Browser-v0", chromium=str(tmp_path / "no-chromium"))
    with pytest.raises(BackendError, match="Chromium not found at .*no-chromium"):
        env.reset(seed=0)
    env.close()


def test_zz_closing_the_shared_envs_leaves_no_browser(envs):
    """Runs last in this module: after close() no Chromium/chromedriver started by this process is left."""
    text, browser = envs
    started = _browser_children()
    assert started  # the module's browser env is running
    browser.close()
    psutil.wait_procs(started, timeout=10)
    assert not [p for p in _browser_children() if p.is_running() and p.status() != "zombie"]
