r"""Retrievers behind one interface: local BM25 (bm25s) and an HTTP client for Search-R1 retrieval servers.

A retriever maps a query to its top-k passages. Passages are wiki-18 records ``{"id", "contents"}`` whose
``contents`` is ``'"Title"\ntext'``. :class:`BM25Retriever` builds a bm25s index once per corpus, caches it under
``cache_dir("deepsearch", "bm25", ...)`` and memory-maps it afterwards; :class:`HTTPRetriever` talks to a server
with Search-R1's API (``POST /retrieve {"queries", "topk", "return_scores"}``) or the single-``query`` variant
that verl-agent's server speaks. ``bm25s`` is imported only when a BM25 index is built or loaded.

Example:
    >>> passages = [Passage("0", '"Tarnholm"\nTarnholm is a city in Velmora.'),
    ...             Passage("1", '"Velmora"\nVelmora is a country. Its capital is Oskar.')]
    >>> bm25 = BM25Retriever.from_passages(passages, cache=False)
    >>> [hit.doc_id for hit in bm25.search("Tarnholm city", topk=3)]
    ['0']
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from empg_gym.errors import BackendError, ConfigError, DataNotFoundError
from empg_gym.tasks import cache_dir

logger = logging.getLogger(__name__)

#: Bumped when the on-disk index layout or the tokenisation changes (part of the cache key).
INDEX_FORMAT = "1"
_DONE_MARKER = "empg_index.json"

#: Limits of one ``/retrieve`` request, as :mod:`~empg_gym.envs.deepsearch.server` enforces them: ``topk`` at
#: most ``MAX_TOPK``, at most ``MAX_QUERIES`` queries, and queries × topk at most ``MAX_HITS`` (the passages one
#: response may hold: a batch of 4,096 queries at Search-R1's topk 3 fits; about 12 MB of wiki-18 passages with
#: scores). :class:`HTTPRetriever` splits a larger batch into requests that fit.
MAX_TOPK = 1000
MAX_QUERIES = 4096
MAX_HITS = 16384


@dataclass(frozen=True)
class Passage:
    r"""One corpus passage in wiki-18 form.

    Attributes:
        doc_id: The passage id (a string, as in wiki-18 and FlashRAG).
        contents: ``'"Title"\ntext'``.
    """

    doc_id: str
    contents: str

    def to_json(self) -> dict[str, str]:
        """Return the wiki-18 record ``{"id", "contents"}``."""
        return {"id": self.doc_id, "contents": self.contents}


@dataclass(frozen=True)
class Hit:
    """One retrieved passage and its retrieval score."""

    doc_id: str
    contents: str
    score: float

    def to_json(self) -> dict[str, Any]:
        """Return the hit in Search-R1's response form ``{"document": {"id", "contents"}, "score"}``."""
        return {"document": {"id": self.doc_id, "contents": self.contents}, "score": self.score}


@runtime_checkable
class Retriever(Protocol):
    """What the Deep Search env needs from a retriever."""

    def batch_search(self, queries: Sequence[str], topk: int) -> list[list[Hit]]:
        """Return the top-``topk`` hits of each query, best first."""
        ...

    def search(self, query: str, topk: int) -> list[Hit]:
        """Return the top-``topk`` hits of one query, best first."""
        ...


def _check_topk(topk: Any) -> int:
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ConfigError(f"topk must be a positive int, got {topk!r}; Search-R1 uses 3.")
    return topk


def corpus_fingerprint(passages: Iterable[Passage]) -> str:
    r"""Return a SHA-256 over the passages' ids and contents (the BM25 cache key).

    Example:
        >>> len(corpus_fingerprint([Passage("0", '"A"\ntext')]))
        64
    """
    digest = hashlib.sha256(INDEX_FORMAT.encode())
    for p in passages:
        digest.update(p.doc_id.encode("utf-8") + b"\x00" + p.contents.encode("utf-8") + b"\x01")
    return digest.hexdigest()


def _tokenize(texts: list[str], *, as_ids: bool = False) -> Any:
    """Lowercase word tokens without English stopwords (bm25s's tokenizer); ``as_ids`` also builds a vocabulary."""
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=as_ids, show_progress=False)


class BM25Retriever:
    """BM25 over a passage corpus with bm25s; the index lives on disk and is memory-mapped.

    Hits with a zero score (no query term in the passage) are dropped, as Lucene returns only matching documents;
    an empty query therefore has no hits.

    Args:
        index_dir: A folder written by :meth:`build` (bm25s index + ``corpus.jsonl``).
        mmap: Memory-map the index and the corpus instead of reading them into memory.
    """

    def __init__(self, index_dir: str | os.PathLike[str], *, mmap: bool = True) -> None:
        import bm25s

        index_dir = Path(index_dir)
        if not (index_dir / _DONE_MARKER).is_file():
            raise DataNotFoundError(
                f"No complete BM25 index in {index_dir}; build one with BM25Retriever.build(passages, index_dir)."
            )
        self.index_dir = index_dir
        self._bm25 = bm25s.BM25.load(str(index_dir), load_corpus=True, mmap=mmap, show_progress=False)
        self.num_passages = int(json.loads((index_dir / _DONE_MARKER).read_text())["num_passages"])
        self._corpus_lock = threading.Lock()

    @staticmethod
    def build(passages: Sequence[Passage], index_dir: str | os.PathLike[str]) -> Path:
        """Index ``passages`` into ``index_dir`` atomically (a reader never sees half an index); return the folder.

        If another process finished the same folder first, its index is kept.
        """
        import bm25s

        if not passages:
            raise ConfigError("Cannot build a BM25 index over an empty corpus; pass at least one passage.")
        index_dir = Path(index_dir)
        if (index_dir / _DONE_MARKER).is_file():
            return index_dir
        index_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = index_dir.with_name(f".{index_dir.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
        model = bm25s.BM25()
        model.index(_tokenize([p.contents for p in passages], as_ids=True), show_progress=False)
        model.save(str(tmp), corpus=[p.to_json() for p in passages], show_progress=False)
        (tmp / _DONE_MARKER).write_text(json.dumps({"num_passages": len(passages), "format": INDEX_FORMAT}))
        try:
            os.replace(tmp, index_dir)
        except OSError:  # another process won the race: keep its index
            shutil.rmtree(tmp, ignore_errors=True)
            if not (index_dir / _DONE_MARKER).is_file():
                raise
        return index_dir

    @classmethod
    def from_passages(
        cls, passages: Sequence[Passage], *, name: str = "corpus", cache: bool = True, mmap: bool = True
    ) -> BM25Retriever:
        """Return a retriever over ``passages``, building the index once and reusing it from the cache.

        Args:
            passages: The corpus.
            name: A readable prefix of the cache folder.
            cache: Keep the index under ``cache_dir("deepsearch", "bm25")``; ``False`` builds into a temporary
                folder that is removed when the process exits.
            mmap: Memory-map the index.
        """
        fingerprint = corpus_fingerprint(passages)
        if cache:
            index_dir = cache_dir("deepsearch", "bm25") / f"{name}-{fingerprint[:16]}"
        else:
            import atexit
            import tempfile

            root = tempfile.mkdtemp(prefix="empg-bm25-")
            atexit.register(shutil.rmtree, root, True)
            index_dir = Path(root) / "index"
        if not (index_dir / _DONE_MARKER).is_file():
            started = time.perf_counter()
            cls.build(passages, index_dir)
            logger.info("Built BM25 index of %d passages in %.1f s at %s", len(passages), time.perf_counter() - started, index_dir)
        return cls(index_dir, mmap=mmap)

    def batch_search(self, queries: Sequence[str], topk: int = 3) -> list[list[Hit]]:
        """Return the top-``topk`` hits of each query (fewer when fewer passages share a term with it)."""
        topk = _check_topk(topk)
        queries = [str(q) for q in queries]
        if not queries:
            return []
        return [self._top_hits(tokens, topk) for tokens in _tokenize(queries)]

    def _top_hits(self, tokens: list[str], k: int) -> list[Hit]:
        import numpy as np

        ids = self._bm25.get_tokens_ids(tokens)
        if not ids:
            return []
        scores = self._bm25.get_scores_from_ids(ids)
        # Top-k among matching passages only: numpy's argpartition over ~100k mostly-zero scores is ~10x slower
        # than over the few thousand non-zero ones. Ties go to the lower passage index (deterministic).
        matching = np.flatnonzero(scores > 0)
        if len(matching) > k:
            matching = matching[np.argpartition(-scores[matching], k - 1)[:k]]
            # argpartition may cut a tie at the k-th score arbitrarily: take every passage tied with it
            kth = scores[matching].min()
            matching = np.union1d(matching, np.flatnonzero(scores == kth))
        order = matching[np.lexsort((matching, -scores[matching]))][:k]
        with self._corpus_lock:  # bm25s reads the mmap'd corpus with seek + readline: one reader at a time
            docs = [self._bm25.corpus[int(i)] for i in order]
        return [Hit(str(d["id"]), str(d["contents"]), float(scores[i])) for d, i in zip(docs, order, strict=True)]

    def search(self, query: str, topk: int = 3) -> list[Hit]:
        """Return the top-``topk`` hits of one query."""
        return self.batch_search([query], topk)[0]


class HTTPRetriever:
    """A client for a retrieval server that speaks Search-R1's API.

    Args:
        url: The endpoint, e.g. ``http://127.0.0.1:8000/retrieve``.
        api: ``"queries"``: Search-R1's batch request ``{"queries": [...], "topk", "return_scores"}``;
            ``"query"``: verl-agent's single-query request ``{"query": "...", "topk", "return_scores"}``
            (one request per query). Both answer ``{"result": [[hit, ...], ...]}``.
        timeout: Seconds per request.
        retries: Extra attempts after a connection error or a 5xx answer (1 s, 2 s, ... apart).

    Raises:
        BackendError: (from searches) when the server cannot be reached, refuses the request, or answers in
            another format.
    """

    def __init__(self, url: str, *, api: Literal["queries", "query"] = "queries", timeout: float = 30.0, retries: int = 2):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"Retrieval server url must start with http:// or https://, got {url!r}.")
        if api not in ("queries", "query"):
            raise ConfigError(f"Unknown retrieval api {api!r}; use 'queries' (Search-R1) or 'query' (verl-agent).")
        self.url, self.api, self.timeout, self.retries = url, api, float(timeout), int(retries)

    def _post(self, payload: dict[str, Any]) -> Any:
        body = json.dumps(payload).encode("utf-8")
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url, data=body, headers={"Content-Type": "application/json", "Accept": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    return json.loads(response.read().decode("utf-8"))
            except urllib.error.HTTPError as err:
                detail = err.read().decode("utf-8", errors="replace")[:500]
                if err.code < 500 or attempt == self.retries:
                    raise BackendError(
                        f"Retrieval server {self.url} answered HTTP {err.code}: {detail}. Check the request and the server log."
                    ) from None
            except (urllib.error.URLError, ConnectionError, TimeoutError) as err:
                if attempt == self.retries:
                    raise BackendError(
                        f"Cannot reach the retrieval server at {self.url} ({err}). Start one, e.g. "
                        "`empg-gym serve-retriever --port 8000`, or pass the right url."
                    ) from None
            except json.JSONDecodeError as err:
                raise BackendError(f"Retrieval server {self.url} did not answer JSON ({err}).") from None
            time.sleep(1.0 * (attempt + 1))
        raise AssertionError("unreachable")

    def _parse(self, payload: Any, n: int) -> list[list[Hit]]:
        rows = payload.get("result") if isinstance(payload, dict) else None
        if not isinstance(rows, list) or len(rows) != n:
            raise BackendError(
                f"Retrieval server {self.url} answered {str(payload)[:200]!r}; expected {{'result': [...]}} with {n} list(s)."
            )
        out = []
        for row in rows:
            hits = []
            for item in row:
                doc = item.get("document", item) if isinstance(item, dict) else None
                if not isinstance(doc, dict) or "contents" not in doc:
                    raise BackendError(f"Retrieval server {self.url} sent a hit without 'contents': {str(item)[:200]!r}.")
                hits.append(Hit(str(doc.get("id", "")), str(doc["contents"]), float(item.get("score", 0.0))))
            out.append(hits)
        return out

    def batch_search(self, queries: Sequence[str], topk: int = 3) -> list[list[Hit]]:
        """Return the top-``topk`` hits of each query from the server.

        With ``api="queries"`` the batch goes in as few requests as the server's limits allow (at most
        :data:`MAX_QUERIES` queries and :data:`MAX_HITS` queries × topk each).
        """
        topk = _check_topk(topk)
        queries = [str(q) for q in queries]
        if not queries:
            return []
        if self.api == "queries":
            size = max(1, min(MAX_QUERIES, MAX_HITS // topk))
            out: list[list[Hit]] = []
            for start in range(0, len(queries), size):
                chunk = queries[start : start + size]
                out += self._parse(self._post({"queries": chunk, "topk": topk, "return_scores": True}), len(chunk))
            return out
        return [self._parse(self._post({"query": q, "topk": topk, "return_scores": True}), 1)[0] for q in queries]

    def search(self, query: str, topk: int = 3) -> list[Hit]:
        """Return the top-``topk`` hits of one query from the server."""
        return self.batch_search([query], topk)[0]
