"""Task manifests: the fixed, versioned task splits every env family draws from.

A :class:`TaskManifest` lists the tasks of one task set (say, procedural ALFWorld v1) in three splits named as
ALFWorld names them. It is plain data, saved as JSON, and carries a content hash so that two runs can tell
whether they evaluated on the same tasks. Evaluation iterates a whole split in order
(:meth:`TaskManifest.task_ids`); training picks tasks from a split with the env's seeded generator.

Example:
    >>> m = TaskManifest(family="demo", name="demo-tasks", version="1", source="embedded", splits={
    ...     "train": (Task("t0", "count", "count to one"),),
    ...     "eval_in_distribution": (Task("t1", "count", "count to two"),),
    ...     "eval_out_of_distribution": ()})
    >>> m.task_ids("train")
    ['t0']
    >>> m.get("t1").goal
    'count to two'
    >>> len(m.content_hash)
    64
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from empg_gym.errors import ConfigError, TaskNotFoundError, did_you_mean

SplitName = Literal["train", "eval_in_distribution", "eval_out_of_distribution"]
SPLITS: tuple[SplitName, ...] = ("train", "eval_in_distribution", "eval_out_of_distribution")


@dataclass(frozen=True)
class Task:
    """One task: what the agent is asked to do, and what the env needs to set it up.

    Attributes:
        task_id: Unique id within its manifest (for real ALFWorld: the game path relative to ``json_2.1.1``).
        task_type: A coarse category used for per-type success rates (ALFWorld: one of its six task types).
        goal: The goal text shown to the agent.
        data: Family-specific, JSON-serialisable setup data (a game path, a target product, gold answers...).
    """

    task_id: str
    task_type: str
    goal: str
    data: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """Return the task as a JSON-ready dict."""
        return {"task_id": self.task_id, "task_type": self.task_type, "goal": self.goal, "data": dict(self.data)}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Task:
        """Build a task from :meth:`to_json` output."""
        return cls(d["task_id"], d["task_type"], d["goal"], dict(d.get("data", {})))


def check_split(split: str) -> SplitName:
    """Return ``split`` if it names a split, else raise a :class:`ConfigError` that lists the valid ones."""
    if split not in SPLITS:
        raise ConfigError(f"Unknown split {split!r}; valid splits are {list(SPLITS)}.{did_you_mean(split, SPLITS)}")
    return split  # type: ignore[return-value]


@dataclass(frozen=True)
class TaskManifest:
    """A versioned task set split into ``train``, ``eval_in_distribution`` and ``eval_out_of_distribution``.

    Attributes:
        family: The env family (``alfworld``, ``webshop``, ``deepsearch``...).
        name: The task set's name, e.g. ``alfworld-procedural``.
        version: Bumped whenever the tasks change; part of the cache key of anything built from them.
        source: Where the tasks come from: ``procedural``/``embedded`` (made by this package) or ``real``.
        splits: Split name -> tasks, in evaluation order.
        meta: Free-form facts about the set (generator settings, verification results, data path...).
    """

    family: str
    name: str
    version: str
    source: str
    splits: Mapping[str, Sequence[Task]]
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = set(self.splits) - set(SPLITS)
        if unknown:
            raise ConfigError(f"Manifest {self.name!r} has unknown splits {sorted(unknown)}; valid: {list(SPLITS)}.")
        index: dict[str, tuple[str, Task]] = {}
        for split, tasks in self.splits.items():
            for task in tasks:
                if task.task_id in index:
                    raise ConfigError(f"Manifest {self.name!r} lists task id {task.task_id!r} twice.")
                index[task.task_id] = (split, task)
        object.__setattr__(self, "_index", index)

    def task_ids(self, split: str) -> list[str]:
        """Return the ids of ``split``'s tasks in evaluation order."""
        return [t.task_id for t in self.splits.get(check_split(split), ())]

    def tasks(self, split: str) -> Sequence[Task]:
        """Return ``split``'s tasks in evaluation order."""
        return self.splits.get(check_split(split), ())

    def get(self, task_id: str) -> Task:
        """Return the task with id ``task_id`` (any split)."""
        return self._lookup(task_id)[1]

    def split_of(self, task_id: str) -> str:
        """Return the name of the split that holds ``task_id``."""
        return self._lookup(task_id)[0]

    def _lookup(self, task_id: str) -> tuple[str, Task]:
        index: dict[str, tuple[str, Task]] = self._index  # type: ignore[attr-defined]
        try:
            return index[task_id]
        except KeyError:
            hint = did_you_mean(task_id, index) if len(index) < 20000 else ""
            raise TaskNotFoundError(
                f"Task id {task_id!r} is not in manifest {self.name} v{self.version} ({len(index)} tasks).{hint} "
                "List valid ids with env.unwrapped.task_ids(split)."
            ) from None

    def sizes(self) -> dict[str, int]:
        """Return the number of tasks in each split."""
        return {s: len(self.splits.get(s, ())) for s in SPLITS}

    @property
    def content_hash(self) -> str:
        """SHA-256 over the canonical JSON of the tasks (not of ``meta``): equal hashes mean equal task sets."""
        cached = self.__dict__.get("_hash")
        if cached is None:
            body = json.dumps(
                {s: [t.to_json() for t in self.splits.get(s, ())] for s in SPLITS},
                sort_keys=True,
                ensure_ascii=False,
                separators=(",", ":"),
            )
            cached = hashlib.sha256(body.encode("utf-8")).hexdigest()
            object.__setattr__(self, "_hash", cached)
        return cached

    def to_json(self) -> dict[str, Any]:
        """Return the manifest as a JSON-ready dict (with its content hash)."""
        return {
            "family": self.family,
            "name": self.name,
            "version": self.version,
            "source": self.source,
            "content_hash": self.content_hash,
            "meta": dict(self.meta),
            "splits": {s: [t.to_json() for t in self.splits.get(s, ())] for s in SPLITS},
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any], *, verify_hash: bool = True) -> TaskManifest:
        """Build a manifest from :meth:`to_json` output; with ``verify_hash``, refuse one whose tasks were edited."""
        m = cls(
            family=d["family"],
            name=d["name"],
            version=str(d["version"]),
            source=d["source"],
            splits={s: tuple(Task.from_json(t) for t in ts) for s, ts in d["splits"].items()},
            meta=dict(d.get("meta", {})),
        )
        stored = d.get("content_hash")
        if verify_hash and stored is not None and stored != m.content_hash:
            raise ConfigError(
                f"Manifest {m.name} v{m.version}: stored content hash {stored[:12]}... does not match its tasks "
                f"({m.content_hash[:12]}...). The file was edited or corrupted; rebuild it."
            )
        return m

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the manifest as JSON, atomically (a reader never sees half a file)."""
        atomic_write_bytes(path, json.dumps(self.to_json(), ensure_ascii=False, indent=1).encode("utf-8"))

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TaskManifest:
        """Read a manifest written by :meth:`save`."""
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


def cache_dir(*parts: str) -> Path:
    """Return (and create) a folder under the empg-gym cache: ``$EMPG_GYM_CACHE``, else ``~/.cache/empg_gym``.

    Generated games, indexes and converted models live here, never under the source tree.
    """
    root = os.environ.get("EMPG_GYM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "empg_gym"
    )
    path = Path(root, *parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: a reader sees the old file, the whole new one, or none, never half.

    The bytes go to a temp file with a unique name in the same folder (``tempfile.mkstemp``), then ``os.replace``
    moves it over ``path``; any number of threads and processes may write the same path at once.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> atomic_write_bytes(folder / "a" / "b.txt", b"hi").read_bytes(), sorted(p.name for p in folder.rglob("*"))
        (b'hi', ['a', 'b.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; cache files are shared like any other file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path
