"""The Flask site: the same pages as the text env, escaping, and hostile requests (no browser needed)."""

from __future__ import annotations

import inspect
import re
from html.parser import HTMLParser

import gymnasium as gym
import pytest

from empg_gym.envs.webshop.engine import join_segments
from empg_gym.envs.webshop.server import create_app, main, serve


class _Page(HTMLParser):
    """Visible text of <body> (script/style skipped), button values, product links, radio values."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.texts: list[str] = []
        self.links: dict[str, str] = {}
        self.buttons: list[str] = []
        self.radios: list[str] = []
        self._skip = 0
        self._in_body = False
        self._link: str | None = None
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "body":
            self._in_body = True
        if tag in ("script", "style"):
            self._skip += 1
        if tag == "a" and a.get("class") == "product-link":
            self._link = a["href"]
        if tag == "button" and a.get("class") == "btn":
            self.buttons.append(a["value"])
        if tag == "input" and a.get("type") == "radio":
            self.radios.append(a["value"])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if self._link is not None:
            self.links[data.strip().lower()] = self._link
            self._link = None
        if self._in_body and not self._skip:
            self.texts.append(data)

    def text(self) -> str:
        return join_segments(self.texts)


@pytest.fixture(scope="module")
def app():
    return create_app()


@pytest.fixture()
def client(app):
    return app.flask.test_client()


def _start(client, task_id, sid="s1"):
    r = client.get(f"/start/{sid}?task_id={task_id}")
    assert r.status_code == 303 and r.headers["Location"].endswith(f"/page/{sid}")
    return _Page(client.get(f"/page/{sid}").get_data(as_text=True))


def _act(client, page, action, sid="s1"):
    name, arg = action[:-1].split("[", 1)
    if name == "search":
        r = client.post(f"/act/{sid}", data={"search_query": arg})
    elif arg in page.links:
        r = client.get(page.links[arg])
    else:
        assert arg in page.buttons + page.radios, (arg, page.buttons, page.radios)
        r = client.post(f"/act/{sid}", data={"click": arg})
    assert r.status_code == 303, r.get_data(as_text=True)[:300]
    return _Page(client.get(f"/page/{sid}").get_data(as_text=True))


def test_site_pages_read_as_the_text_env(client):
    env = gym.make("EMPG-WebShop-v0")
    u = env.unwrapped
    for seed in range(8):
        obs, info = env.reset(seed=seed)
        page = _start(client, info["task_id"])
        assert page.text() == obs
        plan = u.oracle_actions()
        detour = ["click[next >]", "click[< prev]"]
        actions = plan[:1] + detour + plan[1:-1] + ["click[features]", "click[< prev]", "click[reviews]", "click[< prev]"] + plan[-1:]
        for action in actions:
            obs, reward, term, trunc, info = env.step(action)
            assert info["action_valid"]
            page = _act(client, page, action)
            assert page.text() == obs, action
            want = [a[len("click["):-1] for a in info["admissible_actions"] if a.startswith("click[")]
            assert list(dict.fromkeys(page.buttons + list(page.links) + page.radios)) == want
        assert reward == 1.0
        state = client.get("/state/s1").get_json()
        assert state["page"] == "done" and state["reward"] == 1.0


def test_hostile_requests_are_escaped_and_refused(client, app):
    task_id = app.store.manifest.task_ids("train")[0]
    _start(client, task_id, "h1")
    evil = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    r = client.post("/act/h1", data={"click": evil})
    html = r.get_data(as_text=True)
    assert r.status_code == 400 and "Invalid action:" in html
    assert "<script>alert" not in html and "<img src=x" not in html and "&lt;script&gt;alert" in html
    r = client.post("/act/h1", data={"search_query": evil})
    assert r.status_code == 303
    html = client.get("/page/h1").get_data(as_text=True)
    assert "<script>" not in html and "onerror=alert" not in html
    assert client.post("/act/h1", data={"search_query": "x" * 2_000_000}).status_code == 413
    r = client.post("/act/h1", data={"search_query": "日本語 🙂"})
    assert r.status_code == 400 and "no search box" in r.get_data(as_text=True)  # now on a results page
    assert client.post("/act/h1", data={"click": "back to search"}).status_code == 303
    assert client.post("/act/h1", data={"search_query": "日本語 🙂"}).status_code == 303
    assert client.post("/act/h1", data={"search_query": ""}).status_code == 400
    assert client.post("/act/h1", data={}).status_code == 400


@pytest.mark.parametrize(
    "path",
    ["/../../etc/passwd", "/page/..%2F..%2Fetc%2Fpasswd", "/static/../../etc/passwd", "/page/nosuchsession",
     "/page/" + "a" * 65, "/start/bad%20id", "/act/%3Cscript%3E", "/state/..", "/etc/passwd", "/page/s1/../../x"],
)
def test_no_path_traversal_or_unknown_pages(client, path):
    r = client.get(path)
    assert r.status_code in (404, 405)
    assert "root:" not in r.get_data(as_text=True)


def test_unknown_task_and_bad_split(client):
    r = client.get("/start/t1?task_id=%3Cb%3Enope%3C/b%3E")
    assert r.status_code == 404 and "<b>nope" not in r.get_data(as_text=True)
    r = client.get("/?split=trian")
    assert r.status_code == 400 and "Did you mean &#39;train&#39;?" in r.get_data(as_text=True)
    r = client.get("/?seed=x")
    assert r.status_code == 400 and "seed must be an integer, got &#39;x&#39;" in r.get_data(as_text=True)
    r = client.get("/?seed=" + "9" * 5000)  # more digits than Python reads: a 400, not a 500
    assert r.status_code == 400 and "seed must be an integer, got &#39;999" in r.get_data(as_text=True)
    assert len(r.get_data()) < 1000
    assert client.get("/?seed=-" + "9" * 4000).status_code == 303
    r = client.get("/?split=eval_in_distribution&seed=3")
    assert r.status_code == 303 and re.search(r"/start/[0-9a-f]{16}\?task_id=ws-b0", r.headers["Location"])


def test_serve_defaults_to_loopback_and_cli_help(capsys):
    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "--port" in capsys.readouterr().out


def test_chosen_option_is_shown_checked(client, app):
    task = app.store.manifest.tasks("train")[0]
    _start(client, task.task_id, "o1")
    client.post("/act/o1", data={"search_query": app.store.by_asin[task.data["asin"]].Title})
    client.get(f"/act/o1?click={task.data['asin'].lower()}")
    html = client.get("/page/o1").get_data(as_text=True)
    assert " checked" not in html
    value = next(iter(task.data["goal_options"].values()))
    assert client.post("/act/o1", data={"click": value}).status_code == 303
    html = client.get("/page/o1").get_data(as_text=True)
    assert re.findall(r'<input type="radio"[^>]* value="([^"]*)" checked', html) == [value]
