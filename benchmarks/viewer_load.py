"""How big the episode viewer gets and how fast it opens: file size, write time, load time in headless Chromium.

Usage::

    python benchmarks/viewer_load.py BENCH_DIR                   # the viewer of a real bench folder
    python benchmarks/viewer_load.py BENCH_DIR --scale 15x50     # BENCH_DIR's runs copied up to 15 runs x 50 updates
    python benchmarks/viewer_load.py BENCH_DIR --screenshot docs/img/viewer.png --show f-kind=train f-update=25

``--scale RUNSxUPDATES`` builds, in a temporary folder, a bench of that size out of the real one's records: every run
folder is copied (round robin) until there are RUNS of them, each run's training rollouts are repeated until they
cover UPDATES updates, and each eval log holds ``--eval-tasks`` episodes (50). The quick preset is 15 runs (3 algorithms x 5 seeds) x 50 updates with 50 eval tasks on 2
splits. Load time = navigation start to the page's first render (``document.body.dataset.readyMs``), median of 3.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from empg_gym.envs.webshop.browser import CHROMIUM_FLAGS
from empg_gym.viewer import write_viewer


def scaled_copy(src: Path, runs: int, updates: int, eval_tasks: int, dst: Path) -> Path:
    """Copy the bench ``src`` to ``dst``: ``runs`` run folders, rollouts over ``updates`` updates, ``eval_tasks``
    episodes in every eval log (records repeated round robin).
    """  # noqa: D205
    meta = json.loads((src / "bench.json").read_text())
    cfg = meta["config"]
    real = [src / "runs" / e / a / f"seed{s}" for e in cfg["envs"] for a in (meta.get("labels") or cfg["algos"])
            for s in cfg["seeds"]]
    real = [r for r in real if r.is_dir()]
    algos = [f"algo{i}" for i in range(3)]
    seeds = list(range(-(-runs // len(algos))))
    made = 0
    for seed in seeds:
        for algo in algos:
            if made == runs:
                break
            run = real[made % len(real)]
            out = dst / "runs" / cfg["envs"][0] / algo / f"seed{seed}"
            out.mkdir(parents=True)
            for f in run.glob("eval_*.jsonl"):
                eps = [ln for ln in f.read_text().splitlines() if ln.strip()]
                (out / f.name).write_text("".join(eps[i % len(eps)] + "\n" for i in range(eval_tasks)))
            shutil.copy(run / "evals.jsonl", out / "evals.jsonl")
            rows = [json.loads(ln) for ln in (run / "rollouts.jsonl").read_text().splitlines() if ln.strip()]
            have = max(r["update"] for r in rows)
            with open(out / "rollouts.jsonl", "w") as fh:
                for u in range(1, updates + 1):
                    for r in rows:
                        if r["update"] == (u - 1) % have + 1:
                            fh.write(json.dumps({**r, "update": u}) + "\n")
            made += 1
    cfg = {**cfg, "algos": algos, "seeds": seeds}
    (dst / "bench.json").write_text(json.dumps({**meta, "config": cfg, "labels": algos}))
    return dst


def open_page(path: Path, screenshot: Path | None, show: list[str], repeats: int = 3) -> list[float]:
    """Open ``path`` in headless Chromium ``repeats`` times; return each load's milliseconds to the first render.

    With ``screenshot``, then set the page's controls (``show``: ``ID=VALUE``, ``on``/``off`` for a checkbox) and
    save a PNG.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import WebDriverWait

    profile = tempfile.mkdtemp(prefix="empg-viewer-bench-")
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("EMPG_CHROMIUM", "/usr/bin/chromium")
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1500,1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(os.environ.get("EMPG_CHROMEDRIVER", "/usr/bin/chromedriver")),
                              options=options)
    times = []
    try:
        for _ in range(repeats):
            driver.get("about:blank")
            driver.get(path.resolve().as_uri())
            WebDriverWait(driver, 120).until(lambda d: d.execute_script("return document.body.dataset.ready === '1'"))
            times.append(float(driver.execute_script("return Number(document.body.dataset.readyMs)")))
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        if errors:
            print("console errors:", errors)
        if screenshot is not None:
            for item in show:
                key, _, value = item.partition("=")
                driver.execute_script(
                    "const e = document.getElementById(arguments[0]);"
                    "if (e.type === 'checkbox') e.checked = arguments[1] === 'on'; else e.value = arguments[1];"
                    "e.dispatchEvent(new Event('change'));", key, value)
            driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("bench", type=Path)
    parser.add_argument("--scale", default=None, help="RUNSxUPDATES, e.g. 15x50 (the quick preset)")
    parser.add_argument("--eval-tasks", type=int, default=50, help="with --scale: episodes per eval log")
    parser.add_argument("--screenshot", type=Path, default=None)
    parser.add_argument("--show", nargs="*", default=["f-kind=train"],
                        help="controls set before the screenshot, e.g. f-kind=train f-algo=empg f-side=on")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.bench
        if args.scale:
            runs, updates = (int(x) for x in args.scale.lower().split("x"))
            folder = scaled_copy(args.bench, runs, updates, args.eval_tasks, Path(tmp) / "bench")
        t0 = time.perf_counter()
        path = write_viewer(folder, Path(tmp) / "viewer.html" if args.scale else None)
        write_s = time.perf_counter() - t0
        data = json.loads(path.read_text().split('id="episode-data">', 1)[1].split("</script>", 1)[0])
        kinds = [e["kind"] for e in data["episodes"]]
        times = open_page(path, args.screenshot, args.show)
        print(f"{folder.name}: {len(data['runs'])} runs, {kinds.count('eval')} eval episodes, "
              f"{kinds.count('train')} training rollouts, {sum(e['length'] for e in data['episodes'])} steps, "
              f"{len(data['strings'])} distinct texts")
        print(f"viewer.html: {path.stat().st_size / 1e6:.2f} MB, written in {write_s:.2f} s; first render "
              f"{statistics.median(times):.0f} ms (median of {len(times)}: {', '.join(f'{t:.0f}' for t in times)})")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
