"""The episode viewer: its data from run folders, and the page itself in real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from empg_gym.cli import main
from empg_gym.errors import ConfigError
from empg_gym.viewer import STEP_FIELDS, embed_json, page, viewer_data, write_viewer

HOSTILE = ("</script><script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> & <b>bold</b>"
           " /*DATA*/ <!--STEPS--> \u2028")
ENV = "EMPG-KeyRooms-v0"


def _step(obs: str, adv: float | None = None, g: float | None = None) -> dict:
    st = {"observation": obs, "response": "<think>hmm</think><action>go east</action>", "action": "go east",
          "format_valid": True, "action_valid": True, "reward": 0.0}
    if adv is not None:
        st.update({"H": 0.5, "g": g, "f": 0.3, "advantage": adv})
    return st


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def make_bench(root: Path, n_eval: int = 30) -> Path:
    """A bench folder as the runner leaves it: 2 algorithms x 2 seeds, eval logs and sampled training rollouts."""
    cfg = {"envs": [ENV], "algos": ["grpo", "empg"], "seeds": [0, 1],
           "eval_splits": ["eval_in_distribution", "eval_out_of_distribution"]}
    (root / "bench.json").write_text(json.dumps({"config": cfg, "labels": cfg["algos"]}))
    for algo in cfg["algos"]:
        for seed in cfg["seeds"]:
            run = root / "runs" / ENV / algo / f"seed{seed}"
            run.mkdir(parents=True)
            _jsonl(run / "evals.jsonl", [{"update": u, "split": s, "metrics": {}} for u in (0, 4)
                                         for s in cfg["eval_splits"]])
            for split in cfg["eval_splits"]:
                _jsonl(run / f"eval_{split}.jsonl", [
                    {"task_id": f"keyrooms-{split}-{i:03d}", "task_type": f"doors_{1 + i % 3}", "won": i % 2 == 0,
                     "score": float(i % 2 == 0), "length": 2, "goal": "open the blue exit door.",
                     "facets": {"doors": str(1 + i % 3)},
                     "steps": [_step(HOSTILE if (algo, seed, i) == ("empg", 0, 0) else f"room {i}"), _step("end")]}
                    for i in range(n_eval)])
            _jsonl(run / "rollouts.jsonl", [
                {"update": u, "group": 0, "traj": t, "task_id": f"keyrooms-train-{u:03d}", "task_type": "doors_2",
                 "goal": "g", "facets": {"doors": "2"}, "won": t == 0, "length": 2,
                 "steps": [_step("a", 1.0 if t == 0 else -0.5, 1.4), _step("b", 0.8 if t == 0 else -0.7, 0.6)]}
                for u in (1, 2, 3, 4) for t in range(2)])
    return root


def test_viewer_data_gathers_every_episode(tmp_path):
    data = viewer_data(make_bench(tmp_path))
    assert [(r["algo"], r["seed"]) for r in data["runs"]] == [("grpo", 0), ("grpo", 1), ("empg", 0), ("empg", 1)]
    eps = data["episodes"]
    assert len(eps) == 4 * (2 * 30 + 8)
    evals = [e for e in eps if e["kind"] == "eval"]
    assert {e["update"] for e in evals} == {4} and {e["mode"] for e in evals} == {"greedy"}
    train = [e for e in eps if e["kind"] == "train"]
    assert {e["update"] for e in train} == {1, 2, 3, 4} and train[0]["types"] == ["doors=2"]
    step = dict(zip(STEP_FIELDS, train[0]["steps"][0], strict=True))
    assert (step["advantage"], step["g"], data["strings"][step["observation"]]) == (1.0, 1.4, "a")
    assert len(data["strings"]) < 40  # repeated texts are stored once


def test_a_big_bench_keeps_each_runs_last_evaluation_first_and_says_what_it_left_out(tmp_path):
    bench = make_bench(tmp_path)
    for run in (bench / "runs" / ENV).glob("*/seed*"):  # an earlier evaluation, and sampled episodes in the last
        _jsonl(run / "eval_eval_in_distribution_update2.jsonl",
               [{"task_id": f"early-{i}", "won": False, "length": 1, "steps": [_step("x")]} for i in range(5)])
        for split in ("eval_in_distribution", "eval_out_of_distribution"):
            path = run / f"eval_{split}.jsonl"
            rows = [json.loads(ln) for ln in path.read_text().splitlines()]
            _jsonl(path, rows + [{**r, "mode": "sampled"} for r in rows[:10]])
    total = 4 * (2 * 40 + 8 + 5)
    full = viewer_data(bench, max_episodes=0)
    assert len(full["episodes"]) == total and full["omitted"] == 0 and full["per_run"] is None
    data = viewer_data(bench, max_episodes=4 * 70)  # 70 per run: 60 greedy final episodes, then 10 of the rest
    assert len(data["episodes"]) == 4 * 70 and data["omitted"] == total - 4 * 70 and data["per_run"] == 70
    for run in range(4):
        eps = [e for e in data["episodes"] if e["run"] == run]
        final = [e for e in eps if e["kind"] == "eval" and e["update"] == 4]
        assert len(final) == 70 and {e["split"] for e in final if e["mode"] == "greedy"} == {
            "eval_in_distribution", "eval_out_of_distribution"}
        assert sum(e["mode"] == "greedy" for e in final) == 60  # every greedy one, from both splits
        assert not [e for e in eps if e["kind"] == "train" or e["update"] == 2]  # no budget left for those
    small = viewer_data(bench, max_episodes=4 * 90)  # 90: the final 80, the 8 rollouts, 2 of the earlier eval
    kinds = [(e["kind"], e["update"]) for e in small["episodes"] if e["run"] == 0]
    assert kinds.count(("train", 1)) == 2 and sum(k == ("eval", 2) for k in kinds) == 2 and len(kinds) == 90
    html = page(data)
    assert f'"omitted":{total - 4 * 70}' in html  # the page's summary line reads it
    with pytest.raises(ConfigError, match="max_episodes=-1"):
        viewer_data(bench, max_episodes=-1)


def test_a_bench_pipeline_check_shows_as_its_own_runs(tmp_path):
    (tmp_path / "pipeline").mkdir()
    make_bench(tmp_path / "pipeline", n_eval=2)
    shutil.copy(tmp_path / "pipeline" / "bench.json", tmp_path / "bench.json")  # the main bench: no run finished yet
    data = viewer_data(tmp_path)
    assert {r["algo"] for r in data["runs"]} == {"grpo (pipeline check)", "empg (pipeline check)"}
    assert data["runs"][0]["dir"] == "pipeline/runs/EMPG-KeyRooms-v0/grpo/seed0"


def test_view_command_on_a_train_run(tmp_path, capsys):
    from empg_gym.agents.config import TrainConfig
    from empg_gym.agents.trainer import Trainer

    cfg = TrainConfig(env_id=ENV, algo="empg", model="tiny-actions", updates=1, tasks_per_update=2, group_size=2,
                      max_new_tokens=1, require_think=False, max_steps=3, eval_tasks=2, mini_batch_size=16,
                      micro_batch_size=8, progress=False)
    trainer = Trainer(cfg, tmp_path)
    trainer.train()
    trainer.close()
    assert main(["view", str(tmp_path)]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path == (tmp_path / "viewer.html").resolve() and path.is_file()
    data = viewer_data(tmp_path)
    kinds = [e["kind"] for e in data["episodes"]]
    assert kinds.count("eval") == 2 and kinds.count("train") == 2  # one group of G = 2 trajectories
    train = next(e for e in data["episodes"] if e["kind"] == "train")
    steps = [dict(zip(STEP_FIELDS, s, strict=True)) for s in train["steps"]]
    assert all(isinstance(s[k], float) for s in steps for k in ("H", "g", "f", "advantage"))
    assert train["types"][0].startswith("doors=")


def test_view_refuses_a_folder_without_runs(tmp_path):
    with pytest.raises(ConfigError, match="holds no run"):
        write_viewer(tmp_path)


def test_embedded_json_cannot_close_its_script_block():
    text = page({"source": "x", "fields": [], "strings": [HOSTILE], "runs": [{"algo": "a"}],
                 "episodes": [{"run": 0, "steps": [[HOSTILE]]}]})
    block = text.split('<script type="application/json" id="episode-data">', 1)[1].split("</script>", 1)[0]
    assert json.loads(block)["strings"] == [HOSTILE]
    steps = text.split('<script type="application/json" id="steps-0">', 1)[1].split("</script>", 1)[0]
    assert json.loads(steps) == [[[HOSTILE]]]
    assert "<" not in embed_json(HOSTILE) and ">" not in embed_json(HOSTILE)


# ------------------------------------------------------------------------------------------------ Chromium
@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from empg_gym.envs.webshop.browser import CHROMIUM_FLAGS

    chromium = os.environ.get("EMPG_CHROMIUM", "/usr/bin/chromium")
    chromedriver = os.environ.get("EMPG_CHROMEDRIVER", "/usr/bin/chromedriver")
    if not (os.path.isfile(chromium) and os.path.isfile(chromedriver)):
        pytest.skip("Chromium is not installed (scripts/setup.sh installs it)")
    profile = tempfile.mkdtemp(prefix="empg-viewer-test-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1400,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(chromedriver), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def loaded(browser, tmp_path_factory):
    from selenium.webdriver.support.ui import WebDriverWait

    path = write_viewer(make_bench(tmp_path_factory.mktemp("bench")))
    browser.get(path.resolve().as_uri())
    WebDriverWait(browser, 20).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
    return browser


def _select(driver, element_id: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element("id", element_id)).select_by_value(value)


def _shown(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#list details.ep > summary')).map(s => s.textContent)")


def _reset(driver) -> None:
    for fid in ("f-env", "f-algo", "f-seed", "f-kind", "f-split", "f-type", "f-outcome", "f-update"):
        _select(driver, fid, "")
    if driver.find_element("id", "f-side").is_selected():
        driver.find_element("id", "f-side").click()


@pytest.mark.browser
def test_page_loads_without_console_errors(loaded):
    errors = [e for e in loaded.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    assert loaded.find_element("id", "page").text == "page 1 of 6 (272 episodes)"
    assert len(_shown(loaded)) == 50


@pytest.mark.browser
def test_filters_change_what_is_shown(loaded):
    _reset(loaded)
    _select(loaded, "f-kind", "train")
    assert loaded.find_element("id", "page").text == "page 1 of 1 (32 episodes)"
    _select(loaded, "f-algo", "empg")
    _select(loaded, "f-outcome", "won")
    shown = _shown(loaded)
    assert len(shown) == 8 and all("empg" in s and "won" in s and "training rollout" in s for s in shown)
    _select(loaded, "f-update", "3")
    assert len(_shown(loaded)) == 2
    _reset(loaded)
    _select(loaded, "f-type", "doors=3")
    _select(loaded, "f-split", "eval_out_of_distribution")
    _select(loaded, "f-seed", "1")
    shown = _shown(loaded)
    assert len(shown) == 20 and all("doors=3" in s and "seed 1" in s for s in shown)
    loaded.find_element("id", "next").click()  # one page only: the button is disabled, nothing changes
    assert len(_shown(loaded)) == 20
    _reset(loaded)
    loaded.find_element("id", "next").click()
    assert loaded.find_element("id", "page").text == "page 2 of 6 (272 episodes)"
    assert [e for e in loaded.get_log("browser") if e["level"] == "SEVERE"] == []


@pytest.mark.browser
def test_side_by_side_pairs_two_algorithms_on_the_same_task(loaded):
    _reset(loaded)
    loaded.find_element("id", "f-side").click()
    _select(loaded, "f-side-a", "grpo")
    _select(loaded, "f-side-b", "empg")
    _select(loaded, "f-kind", "train")
    pairs = loaded.execute_script("""return Array.from(document.querySelectorAll('#list .pairs')).map(p =>
        Array.from(p.children).map(c => Array.from(c.querySelectorAll('summary')).map(s => s.textContent)))""")
    assert len(pairs) == 8  # 4 updates x 2 seeds, each with G = 2 trajectories per side
    for left, right in pairs:
        assert len(left) == len(right) == 2
        assert all("grpo" in s for s in left) and all("empg" in s for s in right)
        task = left[0].split("task ")[1].split(",")[0]
        assert all(task in s for s in left + right)
    _reset(loaded)


@pytest.mark.browser
def test_hostile_observation_is_shown_as_text(loaded):
    _reset(loaded)
    _select(loaded, "f-algo", "empg")
    _select(loaded, "f-seed", "0")
    _select(loaded, "f-split", "eval_in_distribution")
    cells = loaded.execute_script(
        "return Array.from(document.querySelectorAll('#list details.ep')[0].querySelectorAll('td.text'))"
        ".map(td => td.textContent)")
    assert cells[0] == HOSTILE
    assert loaded.execute_script("return window.__pwned === undefined && document.querySelector('#list b') === null")
    # the colour of a training step follows its advantage: positive green, negative red
    _select(loaded, "f-kind", "train")
    _select(loaded, "f-split", "")
    colours = loaded.execute_script(
        "return Array.from(document.querySelectorAll('#list details.ep')[0].querySelectorAll('tbody tr'))"
        ".map(tr => tr.style.background)")
    assert colours and all(c.startswith("rgba(46, 125, 50") for c in colours)


def test_eval_out_writes_per_type_results_and_the_viewer(tmp_path):
    import csv
    import io

    out = io.StringIO()
    folder = tmp_path / "ev"
    assert main(["eval", "--env", ENV, "--model", "tiny-actions", "--split", "eval_out_of_distribution",
                 "--tasks", "5", "--out", str(folder), "--log", str(tmp_path / "copy.jsonl")], out=out) == 0
    text = out.getvalue()
    rows = list(csv.DictReader(open(folder / "results.csv", encoding="utf-8")))
    assert rows[0]["type"] == "all" and rows[0]["n"] == "5" and {r["type"] for r in rows[1:]} <= {
        "doors=4", "doors=5", "doors=6"}
    assert sum(int(r["n"]) for r in rows[1:]) == 5 and set(rows[0]) == {"env", "split", "model", "type", "n",
                                                                         "success"}
    for r in rows:  # the printed table holds the same rows
        assert f"  {r['type']:<24} {int(r['n']):>5} {float(r['success']):>8.3f}" in text
    assert (tmp_path / "copy.jsonl").read_text() == (folder / "eval_eval_out_of_distribution.jsonl").read_text()
    assert text.rstrip().endswith(f"Viewer: {folder / 'viewer.html'}")
    data = viewer_data(folder)
    assert data["runs"][0]["algo"] == "tiny-actions" and len(data["episodes"]) == 5
