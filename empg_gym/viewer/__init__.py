r"""The episode viewer: one self-contained HTML page of a run's or a bench's episodes (``empg-gym view DIR``).

:func:`write_viewer` gathers every evaluated episode (``eval_<split>.jsonl``, ``eval_<split>_update<N>.jsonl``) and
the sampled training rollouts (``rollouts.jsonl``, :mod:`~empg_gym.agents.rollout_log`) of the runs under a folder —
a bench folder (``bench.json``, its ``runs/`` and its ``pipeline/`` check), a ``train`` run (``config.json``) or an
``eval --out`` folder (``eval.json``) — and writes ``viewer.html``: the page's script and style inline, the episodes
as JSON in a ``<script type="application/json">`` block (every ``<``, ``>`` and ``&`` escaped, so no text can close
the block), rendered by the page with ``textContent`` only, 50 episodes a page. Repeated texts (observations,
responses, actions, goals) are stored once.

A page holds at most :data:`MAX_EPISODES` episodes, shared equally by the runs: each run's last evaluation first
(greedy episodes before sampled ones), then its training rollouts, then its earlier evaluations, latest first. A
120-run ``study`` bench logs about 600,000 episodes, whose page would be ~190 MB and take minutes and gigabytes to
write; the page says how many it left out, and ``empg-gym view RUN_FOLDER`` shows every episode of one run.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> run = Path(tempfile.mkdtemp())
    >>> _ = (run / "config.json").write_text(json.dumps({"env_id": "E", "algo": "grpo", "seed": 0}))
    >>> step = {"observation": "<script>alert(1)</script>", "response": "r", "action": "a", "action_valid": True}
    >>> _ = (run / "eval_train_update3.jsonl").write_text(json.dumps(
    ...     {"task_id": "t", "task_type": "x", "won": True, "score": 1.0, "length": 1, "steps": [step]}) + "\n")
    >>> data = viewer_data(run)
    >>> len(data["episodes"]), data["runs"][0]["algo"], data["episodes"][0]["update"]
    (1, 'grpo', 3)
    >>> html = page(data)
    >>> "<script>alert" in html, "\\u003cscript\\u003ealert" in html
    (False, True)
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from importlib import resources
from itertools import groupby
from pathlib import Path
from typing import Any

from empg_gym.errors import ConfigError

#: File name of the page in the folder it shows.
VIEWER = "viewer.html"
_PLACEHOLDER = re.compile(r"/\*STYLE\*/|/\*SCRIPT\*/|<!--STEPS-->|<!--TITLE-->|/\*DATA\*/")
_EVAL_LOG = re.compile(r"^eval_(?P<split>.+?)(?:_update(?P<update>\d+))?\.jsonl$")
#: Step fields, in the order each step's array holds them (the page reads the same list).
STEP_FIELDS = ("observation", "response", "action", "format_valid", "action_valid", "reward", "H", "g", "f",
               "advantage")
_TEXT_FIELDS = ("observation", "response", "action")
#: The most episodes one page holds (``None`` or 0 in :func:`viewer_data`: no limit).
MAX_EPISODES = 50_000


class _Strings:
    """A table of distinct strings: each is stored once and referred to by its index."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.table: list[str] = []

    def __call__(self, text: Any) -> int:
        text = "" if text is None else str(text)
        if text not in self.index:
            self.index[text] = len(self.table)
            self.table.append(text)
        return self.index[text]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def _runs(folder: Path) -> list[dict[str, Any]]:
    """Return ``{env, algo, seed, dir}`` for every run under ``folder`` (a bench, a train run or an eval folder)."""
    if (folder / "bench.json").is_file():
        runs = []
        for root, tag in ((folder, ""), (folder / "pipeline", " (pipeline check)")):
            if not (root / "bench.json").is_file():
                continue
            meta = json.loads((root / "bench.json").read_text(encoding="utf-8"))
            cfg = meta["config"]
            for env in cfg["envs"]:
                for algo in meta.get("labels") or cfg["algos"]:
                    for seed in cfg["seeds"]:
                        path = root / "runs" / env / algo / f"seed{seed}"
                        if path.is_dir():
                            runs.append({"env": env, "algo": algo + tag, "seed": seed, "dir": path})
        return runs
    for name, env_key, algo_key in (("config.json", "env_id", "algo"), ("eval.json", "env", "model")):
        if (folder / name).is_file():
            cfg = json.loads((folder / name).read_text(encoding="utf-8"))
            return [{"env": cfg.get(env_key, "?"), "algo": str(cfg.get(algo_key, "?")), "seed": cfg.get("seed", 0),
                     "dir": folder}]
    raise ConfigError(f"{folder} holds no run: expected a bench folder (bench.json), a `train` run (config.json) "
                      "or an `eval --out` folder (eval.json). Pass the folder that `empg-gym bench/train/eval` wrote.")


def _final_update(run_dir: Path) -> int | None:
    """Return the update a bench run's ``eval_<split>.jsonl`` belongs to: the last one it evaluated."""
    evals = run_dir / "evals.jsonl"
    if evals.is_file():
        updates = [r["update"] for r in _read_jsonl(evals)]
        return max(updates) if updates else None
    return None


def _short(value: Any) -> Any:
    """Round a float to 4 decimals (the page shows 3; the file is about half as big); a bool as 0/1."""
    if isinstance(value, bool):
        return int(value)
    return round(value, 4) if isinstance(value, float) else value


def _episode(ep: dict[str, Any], run: int, kind: str, split: str, update: int | None, s: _Strings) -> dict[str, Any]:
    from empg_gym.agents.per_type import label

    facets = ep.get("facets") or {"type": ep.get("task_type", "")}
    steps = []
    for st in ep.get("steps", []):
        row: list[Any] = [s(st.get(k)) if k in _TEXT_FIELDS else _short(st.get(k)) for k in STEP_FIELDS]
        while row and row[-1] is None:  # an evaluated step has no H, g, f or advantage
            row.pop()
        steps.append(row)
    return {"run": run, "kind": kind, "split": split, "update": update, "task": ep.get("task_id", ""),
            "goal": s(ep.get("goal", "")), "types": [label(k, str(v)) for k, v in facets.items()],
            "won": bool(ep.get("won")), "score": ep.get("score"), "length": ep.get("length", len(steps)),
            "group": ep.get("group"), "mode": ep.get("mode", "greedy" if kind == "eval" else "sampled"),
            "steps": steps}


def viewer_data(folder: str | Path, max_episodes: int | None = MAX_EPISODES) -> dict[str, Any]:
    """Return the page's data for the runs under ``folder``: runs, episodes, the string table and what was left out.

    Args:
        folder: A bench, ``train`` or ``eval --out`` folder.
        max_episodes: At most this many episodes, each run getting an equal share (``None`` or 0: every episode).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; pass a bench, train or eval output folder.")
    if max_episodes is not None and max_episodes < 0:
        raise ConfigError(f"max_episodes={max_episodes} must be >= 0 (0 or None: no limit).")
    strings = _Strings()
    runs = _runs(folder)
    per_run = -(-max_episodes // max(len(runs), 1)) if max_episodes else None
    episodes: list[dict[str, Any]] = []
    omitted = 0
    for i, run in enumerate(runs):
        kept, left_out = _run_episodes(run["dir"], i, strings, per_run)
        episodes += kept
        omitted += left_out
    return {"source": folder.name, "fields": list(STEP_FIELDS), "strings": strings.table,
            "runs": [{k: (str(v.relative_to(folder)) if k == "dir" else v) for k, v in r.items()} for r in runs],
            "episodes": episodes, "omitted": omitted, "per_run": per_run}


def _run_episodes(d: Path, run: int, strings: _Strings, budget: int | None) -> tuple[list[dict[str, Any]], int]:
    """Return one run's episodes, at most ``budget`` (in the module docstring's priority), and how many it left out.

    A log wholly past the budget is counted, not parsed.
    """
    final = _final_update(d)
    sources: list[tuple[str, str, int | None, Path]] = []  # (kind, split, update, log), in the page's order
    for path in sorted(d.glob("eval_*.jsonl")):
        m = _EVAL_LOG.match(path.name)
        if m is not None:
            sources.append(("eval", m["split"], int(m["update"]) if m["update"] is not None else final, path))
    if (d / "rollouts.jsonl").is_file():
        sources.append(("train", "train", None, d / "rollouts.jsonl"))

    def rank(src: tuple[str, str, int | None, Path]) -> tuple[int, int]:
        kind, _, update, _ = src
        return (0 if kind == "eval" and update == final else 1 if kind == "train" else 2), -(update or 0)

    kept: dict[Path, list[dict[str, Any]]] = defaultdict(list)
    left, omitted = budget, 0
    for _, tier in groupby(sorted(sources, key=rank), key=rank):  # a tier: e.g. the last evaluation of every split
        paths = [src[3] for src in tier]
        if left is not None and left <= 0:
            omitted += sum(1 for path in paths for ln in path.open(encoding="utf-8") if ln.strip())
            continue
        eps = [(path, ep) for path in paths for ep in _read_jsonl(path)]
        if left is not None:
            if len(eps) > left:  # greedy episodes of every split first; a stable sort keeps the files' order
                eps.sort(key=lambda pe: pe[1].get("mode", "greedy") != "greedy")
                omitted += len(eps) - left
                eps = eps[:left]
            left -= len(eps)
        for path, ep in eps:
            kept[path].append(ep)
    return [_episode(ep, run, kind, split, ep.get("update") if kind == "train" else update, strings)
            for kind, split, update, path in sources for ep in kept.get(path, [])], omitted


def _asset(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


def embed_json(data: Any) -> str:
    r"""Return ``data`` as JSON safe inside a ``<script>`` block: ``<``, ``>`` and ``&`` as ``\u`` escapes.

    Example:
        >>> embed_json({"obs": "</script><b>&"})
        '{"obs":"\\u003c/script\\u003e\\u003cb\\u003e\\u0026"}'
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def colour_scales(episodes: list[dict[str, Any]]) -> dict[str, float]:
    """Return the largest ``|advantage|``, ``|log g|``, ``f`` and ``H`` over every step (the page's colour scales).

    Example:
        >>> row = [0, 0, 0, 1, 1, 0.0, 1.5, 2.0, 0.5, -3.0]
        >>> {k: round(v, 3) for k, v in colour_scales([{"steps": [row]}]).items()}
        {'advantage': 3.0, 'g': 0.693, 'f': 0.5, 'H': 1.5}
    """
    col = {k: STEP_FIELDS.index(k) for k in ("advantage", "g", "f", "H")}
    out = dict.fromkeys(col, 0.0)
    for ep in episodes:
        for st in ep["steps"]:
            if len(st) <= col["advantage"]:
                continue
            for k, i in col.items():
                v = st[i]
                if isinstance(v, (int, float)):
                    v = abs(math.log(v)) if k == "g" and v > 0 else (0.0 if k == "g" else abs(v))
                    out[k] = max(out[k], v)
    return out


def page(data: dict[str, Any]) -> str:
    """Return the self-contained HTML page for ``data`` (:func:`viewer_data`).

    The episodes' steps go into one JSON block per run, which the page parses only when one of its episodes is
    opened; the main block (parsed on load) holds the episodes' summaries.
    """
    title = "empg-gym episodes: " + data.get("source", "")
    chunks: list[list[Any]] = [[] for _ in data["runs"]]
    summaries = []
    for ep in data["episodes"]:
        chunk = chunks[ep["run"]]
        summaries.append({**{k: v for k, v in ep.items() if k != "steps"}, "pos": len(chunk)})
        chunk.append(ep["steps"])
    main = {**data, "episodes": summaries, "scale": colour_scales(data["episodes"])}
    blocks = "\n".join(f'<script type="application/json" id="steps-{i}">{embed_json(c)}</script>'
                        for i, c in enumerate(chunks))
    parts = {"/*STYLE*/": _asset("page.css"), "/*SCRIPT*/": _asset("page.js"), "<!--STEPS-->": blocks,
             "<!--TITLE-->": title.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"),
             "/*DATA*/": embed_json(main)}
    # one pass over the template: a text that happens to hold a placeholder is never replaced
    return _PLACEHOLDER.sub(lambda m: parts[m.group(0)], _asset("page.html"))


def write_viewer(folder: str | Path, path: str | Path | None = None,
                 max_episodes: int | None = MAX_EPISODES) -> Path:
    """Write the viewer of the runs under ``folder`` to ``path`` (default ``folder/viewer.html``); return it.

    ``max_episodes``: see :func:`viewer_data`.
    """
    folder = Path(folder)
    out = Path(path) if path is not None else folder / VIEWER
    out.write_text(page(viewer_data(folder, max_episodes)), encoding="utf-8")
    return out
