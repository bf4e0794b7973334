r"""A retrieval server with Search-R1's API over our BM25 index, so Search-R1 / verl trainers can use it.

``POST /retrieve`` takes Search-R1's batch request ``{"queries": [...], "topk": 3, "return_scores": true}`` or
verl-agent's single-query request ``{"query": "...", ...}`` and answers ``{"result": [[hit, ...], ...]}``: one
list per query, each hit ``{"document": {"id", "contents"}, "score"}`` with ``return_scores``, else the bare
document. ``topk`` defaults to the server's (3). ``GET /health`` reports the corpus size. Malformed requests get
HTTP 400 with ``{"error": "..."}`` saying what was wrong: a body that is not JSON (numbers of more than
:data:`MAX_INT_DIGITS` digits and arrays or objects nested too deeply to parse included), a ``topk`` outside 1 to
:data:`MAX_TOPK`, more than :data:`MAX_QUERIES` queries, or more than :data:`MAX_HITS` passages asked for
(queries × topk: split the batch, as :class:`HTTPRetriever` does). Bodies over 16 MB get 413. The server binds
to 127.0.0.1 unless told otherwise.

``empg-gym serve-retriever`` calls :func:`main`; in Python, :class:`RetrievalServer` runs one in a thread.

Example:
    >>> from empg_gym.envs.deepsearch.retrievers import BM25Retriever, HTTPRetriever, Passage
    >>> bm25 = BM25Retriever.from_passages([Passage("0", '"Tarnholm"\nTarnholm is a city.')], cache=False)
    >>> with RetrievalServer(bm25, port=0) as server:
    ...     HTTPRetriever(server.url).search("Tarnholm", topk=3)[0].doc_id
    '0'
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import reprlib
import threading
from collections.abc import Sequence
from typing import Any

from empg_gym.envs.deepsearch.retrievers import (
    MAX_HITS,
    MAX_QUERIES,
    MAX_TOPK,
    BM25Retriever,
    Passage,
    Retriever,
)
from empg_gym.errors import ConfigError

logger = logging.getLogger(__name__)

#: Longest integer a request body may hold (``topk`` needs 4 digits; Python refuses to read more than 4,300).
MAX_INT_DIGITS = 100
_EXAMPLE = '{"queries": ["what is X?"], "topk": 3, "return_scores": true}'

# Short, depth-limited previews of request values for error messages (a value may be huge or nested deep).
_preview = reprlib.Repr()
_preview.maxlevel, _preview.maxlist, _preview.maxdict = 3, 6, 6
_preview.maxstring, _preview.maxlong, _preview.maxother = 60, 40, 60


class RequestError(ValueError):
    """A request the server refuses with HTTP 400."""


def _parse_int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_INT_DIGITS:
        raise RequestError(
            f"The request body holds a {n}-digit number; numbers in a request have at most {MAX_INT_DIGITS} digits "
            f"('topk' is from 1 to {MAX_TOPK}). Send e.g. {_EXAMPLE}."
        )
    return int(digits)


def _topk(body: dict[str, Any], default: int) -> int:
    topk = body.get("topk")
    if topk is None or topk == 0:  # Search-R1 falls back to its default when topk is missing or 0
        return default
    if isinstance(topk, bool) or not isinstance(topk, int) or not 1 <= topk <= MAX_TOPK:
        raise RequestError(f"'topk' must be an integer from 1 to {MAX_TOPK}, got {_preview.repr(topk)}.")
    return topk


def parse_request(raw: bytes, default_topk: int) -> tuple[list[str], int, bool, bool]:
    """Validate a ``/retrieve`` body; return ``(queries, topk, return_scores, batch)``.

    Raises:
        RequestError: with a message that says what was wrong and what a valid body looks like.
    """
    try:
        body = json.loads(raw.decode("utf-8"), parse_int=_parse_int)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RequestError(f"The request body is not valid JSON ({err}). Send e.g. {_EXAMPLE}.") from None
    except RecursionError:
        raise RequestError(
            f"The request body nests arrays or objects too deeply to read; a request is one object holding a list "
            f"of strings. Send e.g. {_EXAMPLE}."
        ) from None
    if not isinstance(body, dict):
        raise RequestError(f"The request body must be a JSON object, got {type(body).__name__}.")
    if "queries" in body:
        queries, batch = body["queries"], True
        if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
            raise RequestError(f"'queries' must be a list of strings, got {_preview.repr(queries)}.")
        if len(queries) > MAX_QUERIES:
            raise RequestError(f"'queries' has {len(queries)} entries; send at most {MAX_QUERIES} per request.")
    elif "query" in body:
        if not isinstance(body["query"], str):
            raise RequestError(f"'query' must be a string, got {_preview.repr(body['query'])}.")
        queries, batch = [body["query"]], False
    else:
        keys = _preview.repr(sorted(body))
        raise RequestError(f"The request needs 'queries' (a list of strings) or 'query' (a string); got keys {keys}.")
    return_scores = body.get("return_scores", False)
    if not isinstance(return_scores, bool):
        raise RequestError(f"'return_scores' must be true or false, got {_preview.repr(return_scores)}.")
    topk = _topk(body, default_topk)
    if len(queries) * topk > MAX_HITS:
        raise RequestError(
            f"The request asks for {len(queries)} queries x topk {topk} = {len(queries) * topk} passages; one "
            f"response holds at most {MAX_HITS}. Split the queries over several requests (at most "
            f"{max(1, MAX_HITS // topk)} at topk {topk}) or ask for a smaller topk."
        )
    return queries, topk, return_scores, batch


def create_app(retriever: Retriever, *, default_topk: int = 3, num_passages: int | None = None) -> Any:
    """Return a Flask app serving ``retriever`` with Search-R1's ``/retrieve`` API."""
    from flask import Flask, jsonify, request

    app = Flask("empg_gym.retriever")
    app.config["MAX_CONTENT_LENGTH"] = 16 * 1024 * 1024

    @app.post("/retrieve")
    def retrieve() -> Any:
        try:
            queries, topk, return_scores, _ = parse_request(request.get_data(cache=False), default_topk)
        except RequestError as err:
            return jsonify({"error": str(err)}), 400
        results = retriever.batch_search(queries, topk)
        if return_scores:
            rows = [[h.to_json() for h in hits] for hits in results]
        else:
            rows = [[h.to_json()["document"] for h in hits] for hits in results]
        return jsonify({"result": rows})

    @app.get("/health")
    def health() -> Any:
        return jsonify({"status": "ok", "num_passages": num_passages, "default_topk": default_topk})

    @app.errorhandler(404)
    @app.errorhandler(405)
    @app.errorhandler(413)
    def http_error(err: Any) -> Any:
        return jsonify({"error": f"{err.name}: {err.description} The API is POST /retrieve and GET /health."}), err.code

    return app


class RetrievalServer:
    """A retrieval server running in a background thread (for tests, notebooks and in-process trainers).

    Args:
        retriever: What to serve.
        host: Interface to bind (loopback by default).
        port: Port; 0 picks a free one (read it back from :attr:`port`).
        default_topk: ``topk`` when a request leaves it out.
        log_requests: Log one line per request (werkzeug's access log), as ``empg-gym serve-retriever`` does.
    """

    def __init__(
        self,
        retriever: Retriever,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        default_topk: int = 3,
        log_requests: bool = False,
    ):
        from werkzeug.serving import WSGIRequestHandler, make_server

        class _Handler(WSGIRequestHandler):
            def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
                if log_requests:
                    super().log_request(code, size)

        num = getattr(retriever, "num_passages", None)
        app = create_app(retriever, default_topk=default_topk, num_passages=num)
        self._server = make_server(host, port, app, threaded=True, request_handler=_Handler)
        self.host, self.port = host, int(self._server.server_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The ``/retrieve`` endpoint."""
        return f"http://{self.host}:{self.port}/retrieve"

    def start(self) -> RetrievalServer:
        """Start serving in a daemon thread."""
        self._thread = threading.Thread(target=self._server.serve_forever, name="empg-retriever", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> RetrievalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def load_retriever(corpus_file: str | os.PathLike[str] | None = None) -> BM25Retriever:
    """Return BM25 over a wiki-18 corpus file, or over the embedded generated world when ``corpus_file`` is None."""
    passages: Sequence[Passage]
    if corpus_file is None:
        from empg_gym.envs.deepsearch.world import embedded_world

        passages, name = embedded_world().passages, "generated-v1"
    else:
        from empg_gym.envs.deepsearch.data import load_wiki_corpus

        passages, name = load_wiki_corpus(corpus_file), "corpus"
    return BM25Retriever.from_passages(passages, name=name)


def serve(
    host: str = "127.0.0.1", port: int = 8000, *, corpus_file: str | os.PathLike[str] | None = None, topk: int = 3
) -> None:
    """Serve BM25 retrieval with Search-R1's API until interrupted (blocking).

    Args:
        host: Interface to bind; keep the default loopback unless other machines must reach it.
        port: TCP port (Search-R1's default is 8000).
        corpus_file: A wiki-18 ``{id, contents}`` jsonl; default: the embedded generated world's corpus.
        topk: ``topk`` when a request leaves it out.
    """
    if isinstance(topk, bool) or not isinstance(topk, int) or topk < 1:
        raise ConfigError(f"topk must be a positive int, got {topk!r}.")
    server = RetrievalServer(load_retriever(corpus_file), host=host, port=port, default_topk=topk, log_requests=True)
    logger.info("Serving %s (POST /retrieve, GET /health)", server.url)
    try:
        server._server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._server.server_close()


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``empg-gym serve-retriever``."""
    parser = argparse.ArgumentParser(
        prog="empg-gym serve-retriever",
        description="Serve BM25 retrieval with Search-R1's /retrieve API (for Search-R1, verl-agent or empg-gym).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (default: 8000)")
    parser.add_argument("--corpus", default=None, help="wiki-18 {id, contents} jsonl (default: the generated world)")
    parser.add_argument("--topk", type=int, default=3, help="passages per query when a request omits topk (default: 3)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``empg-gym serve-retriever`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve(args.host, args.port, corpus_file=args.corpus, topk=args.topk)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
