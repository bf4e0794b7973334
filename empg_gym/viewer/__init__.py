r"""The episode viewer: one self-contained HTML page of a run's or a bench's episodes (``empg-gym view DIR``).

:func:`write_viewer` gathers every evaluated episode (``eval_<split>.jsonl``, ``eval_<split>_update<N>.jsonl``) and
the sampled training rollouts (``rollouts.jsonl``, :mod:`~empg_gym.agents.rollout_log`) of the runs under a folder —
a bench folder (``bench.json``, its ``runs/`` and its ``pipeline/`` check), a ``train`` run (``config.json``) or an
``eval --out`` folder (``eval.json``) — and writes ``viewer.html``: the page's script and style inline, the episodes
as JSON in a ``<script type="application/json">`` block (every ``<``, ``>`` and ``&`` escaped, so no text can close
the block), rendered by the page with ``textContent`` only, 50 episodes a page. Repeated texts (observations,
responses, actions, goals) are stored once.

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
from importlib import resources
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


def viewer_data(folder: str | Path) -> dict[str, Any]:
    """Return the page's data for the runs under ``folder``: runs, episodes and the string table."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder; pass a bench, train or eval output folder.")
    strings = _Strings()
    runs = _runs(folder)
    episodes = []
    for i, run in enumerate(runs):
        d: Path = run["dir"]
        final = _final_update(d)
        for path in sorted(d.glob("eval_*.jsonl")):
            m = _EVAL_LOG.match(path.name)
            if m is None:
                continue
            update = int(m["update"]) if m["update"] is not None else final
            episodes += [_episode(ep, i, "eval", m["split"], update, strings) for ep in _read_jsonl(path)]
        if (d / "rollouts.jsonl").is_file():
            episodes += [_episode(ep, i, "train", "train", ep.get("update"), strings)
                         for ep in _read_jsonl(d / "rollouts.jsonl")]
    return {"source": folder.name, "fields": list(STEP_FIELDS), "strings": strings.table,
            "runs": [{k: (str(v.relative_to(folder)) if k == "dir" else v) for k, v in r.items()} for r in runs],
            "episodes": episodes}


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


def write_viewer(folder: str | Path, path: str | Path | None = None) -> Path:
    """Write the viewer of the runs under ``folder`` to ``path`` (default ``folder/viewer.html``); return it."""
    folder = Path(folder)
    out = Path(path) if path is not None else folder / VIEWER
    out.write_text(page(viewer_data(folder)), encoding="utf-8")
    return out
