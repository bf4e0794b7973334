"""The real ALFWorld game files: find them, and list them as a task manifest.

The layout is what ``alfworld-download`` makes under ``$ALFWORLD_DATA``::

    json_2.1.1/{train,valid_seen,valid_unseen}/<task_type>-<Obj>-<MRecep|None>-<Recep>-<scene>/trial_*/game.tw-pddl

``train`` is the train split, ``valid_seen`` is ``eval_in_distribution`` and ``valid_unseen`` is
``eval_out_of_distribution``. As ALFWorld's own loader does, games whose path contains ``movable`` or ``Sliced``
and games marked unsolvable are skipped. A game's task id is its folder relative to ``json_2.1.1``, e.g.
``valid_seen/pick_and_place_simple-Pencil-None-Dresser-330/trial_T20190909_071128_012892``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from pathlib import Path

from tqdm.auto import tqdm

from empg_gym.errors import DataNotFoundError
from empg_gym.tasks import Task, TaskManifest, cache_dir

logger = logging.getLogger(__name__)

#: ALFWorld's split folders, by our split names.
SPLIT_DIRS = {"train": "train", "eval_in_distribution": "valid_seen", "eval_out_of_distribution": "valid_unseen"}
TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
_MANIFEST_FORMAT = "1"
# The grammar (TextWorld's text-generation format, not JSON) holds the goal sentence in its "task" rule.
_TASK_RULE = re.compile(r'"task"\s*:\s*\[\s*\{\s*"rhs"\s*:\s*"Your task is to: ((?:[^"\\]|\\.)*)"')


@functools.cache
def _warn_once(message: str) -> None:
    """Log ``message`` once per process (every env of a vector would otherwise repeat it)."""
    logger.warning(message)


def find_data_root(data_path: str | os.PathLike[str] | None = None) -> Path | None:
    """Return the ``json_2.1.1`` folder under ``data_path`` (or ``$ALFWORLD_DATA``), or ``None`` if there is none.

    ``data_path`` may be the folder that holds ``json_2.1.1`` (what ``$ALFWORLD_DATA`` names) or ``json_2.1.1``
    itself.

    Raises:
        DataNotFoundError: if ``data_path`` is given but holds no ``json_2.1.1`` split folder.
    """
    explicit = data_path is not None
    raw = data_path if explicit else os.environ.get("ALFWORLD_DATA")
    if not raw:
        return None
    base = Path(os.path.expandvars(os.path.expanduser(os.fspath(raw))))
    for candidate in (base / "json_2.1.1", base):
        if any((candidate / d).is_dir() for d in SPLIT_DIRS.values()):
            return candidate
    if explicit:
        raise DataNotFoundError(
            f"No ALFWorld games under {base}: expected json_2.1.1/{{train,valid_seen,valid_unseen}}/... as "
            "alfworld-download lays them out. Point data_path at the folder that holds json_2.1.1."
        )
    _warn_once(f"ALFWORLD_DATA={base} holds no json_2.1.1 games; using procedural games instead.")
    return None


def _game_files(root: Path, split_dir: str) -> list[Path]:
    folder = root / split_dir
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*/*/game.tw-pddl") if "movable" not in str(p) and "Sliced" not in str(p))


def _listing_signature(root: Path, files: dict[str, list[Path]]) -> str:
    h = hashlib.sha256(f"{_MANIFEST_FORMAT}|{root.resolve()}".encode())
    for split in SPLIT_DIRS:
        for p in files[split]:
            st = p.stat()
            h.update(f"{p.relative_to(root)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_task(root: Path, path: Path) -> Task | None:
    with open(path, encoding="utf-8") as f:
        game = json.load(f)
    if not game.get("solvable", False):
        return None
    match = _TASK_RULE.search(game["grammar"])
    if match is None:
        raise DataNotFoundError(f"{path}: its grammar has no 'task' rule; is this an ALFWorld game file?")
    goal = json.loads(f'"{match.group(1)}"')
    rel = path.parent.relative_to(root).as_posix()
    task_type = path.parent.parent.name.split("-", 1)[0]
    return Task(task_id=rel, task_type=task_type, goal=goal, data={"game_file": f"{rel}/game.tw-pddl"})


def load_real_manifest(root: Path, *, progress: bool = True) -> TaskManifest:
    """Return the manifest of the real games under ``root`` (a ``json_2.1.1`` folder).

    Scanning reads every game file once (about 3,900 files, 350 MB, for the full release); the result is cached
    under the empg-gym cache folder, keyed by the file listing, so later calls are instant.
    """
    files = {split: _game_files(root, d) for split, d in SPLIT_DIRS.items()}
    if not any(files.values()):
        raise DataNotFoundError(f"No game.tw-pddl files under {root}/{{train,valid_seen,valid_unseen}}.")
    signature = _listing_signature(root, files)
    cached = cache_dir("alfworld", "real-manifests") / f"{signature}.json"
    if cached.is_file():
        return TaskManifest.load(cached)
    splits: dict[str, tuple[Task, ...]] = {}
    skipped = 0
    total = sum(len(v) for v in files.values())
    with tqdm(total=total, desc="Indexing ALFWorld games", unit="game", disable=not progress or total < 200) as bar:
        for split, paths in files.items():
            tasks = []
            for path in paths:
                task = _read_task(root, path)
                bar.update(1)
                if task is None:
                    skipped += 1
                    continue
                tasks.append(task)
            splits[split] = tuple(tasks)
    manifest = TaskManifest(
        family="alfworld",
        name="alfworld-real",
        version="json_2.1.1",
        source="real",
        splits=splits,
        meta={"split_dirs": SPLIT_DIRS, "skipped_unsolvable": skipped},
    )
    manifest.save(cached)
    return manifest
