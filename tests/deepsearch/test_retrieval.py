"""BM25 retriever, the Search-R1-compatible server on loopback, and the HTTP client against it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import bm25s
import pytest

from empg_gym.envs.deepsearch.env import DeepSearchEnv, shared_bm25
from empg_gym.envs.deepsearch.retrievers import BM25Retriever, HTTPRetriever, Passage, Retriever
from empg_gym.envs.deepsearch.server import RetrievalServer
from empg_gym.envs.deepsearch.world import embedded_world
from empg_gym.errors import BackendError, ConfigError, DataNotFoundError


@pytest.fixture(scope="module")
def bm25():
    return shared_bm25(embedded_world().passages, "generated-v1")


@pytest.fixture(scope="module")
def server(bm25):
    with RetrievalServer(bm25, port=0) as s:
        yield s


def _post(url, body, raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------------ BM25
def test_bm25_finds_the_named_entity_first(bm25):
    world = embedded_world()
    q = world.splits["eval_out_of_distribution"][0]
    hits = bm25.search(q.oracle_queries[0], topk=3)
    assert hits[0].doc_id == q.gold_doc_ids[0]
    assert all(a.score >= b.score > 0 for a, b in zip(hits, hits[1:], strict=False))
    assert isinstance(bm25, Retriever)


def test_bm25_top_k_equals_a_full_sort_of_all_scores(bm25):
    world = embedded_world()
    queries = [q.question for q in world.questions[::37]] + ["painter", "city founded river", "Industries"]
    for query in queries:
        for k in (1, 3, 10):
            words = bm25s.tokenize([query], stopwords="en", return_ids=False, show_progress=False)[0]
            tokens = bm25._bm25.get_tokens_ids(words)
            scores = bm25._bm25.get_scores_from_ids(tokens) if tokens else []
            ref = sorted((i for i, sc in enumerate(scores) if sc > 0), key=lambda i: (-scores[i], i))[:k]
            assert [h.doc_id for h in bm25.search(query, k)] == [world.passages[i].doc_id for i in ref], (query, k)


def test_bm25_ties_go_to_the_lower_passage_index(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPG_GYM_CACHE", str(tmp_path))
    passages = [Passage(str(i), '"Same"\nidentical words here') for i in range(20)] + [Passage("x", '"Other"\nnothing')]
    bm25 = BM25Retriever.from_passages(passages, name="ties")
    assert [h.doc_id for h in bm25.search("identical words", 3)] == ["0", "1", "2"]


def test_bm25_empty_or_unknown_query_has_no_hits(bm25):
    assert bm25.search("", topk=3) == []
    assert bm25.search("zzqxv unknownword", topk=3) == []
    assert bm25.batch_search([], topk=3) == []
    with pytest.raises(ConfigError, match="topk must be a positive int, got 0"):
        bm25.search("x", topk=0)


def test_bm25_index_is_cached_on_disk_and_memory_mapped(tmp_path, monkeypatch):
    monkeypatch.setenv("EMPG_GYM_CACHE", str(tmp_path))
    passages = [Passage(str(i), f'"Doc {i}"\nalpha beta number{i} gamma') for i in range(50)]
    first = BM25Retriever.from_passages(passages, name="tiny")
    assert first.index_dir.parent == tmp_path / "deepsearch" / "bm25"
    stamp = (first.index_dir / "data.csc.index.npy").stat().st_mtime_ns
    second = BM25Retriever.from_passages(passages, name="tiny")
    assert second.index_dir == first.index_dir
    assert (first.index_dir / "data.csc.index.npy").stat().st_mtime_ns == stamp  # loaded, not rebuilt
    assert [h.doc_id for h in second.search("number7", 3)] == ["7"]
    other = BM25Retriever.from_passages(passages[:10], name="tiny")
    assert other.index_dir != first.index_dir  # another corpus, another cache key
    assert BM25Retriever.build(passages, first.index_dir) == first.index_dir


_BUILD_SCRIPT = """
import sys
from empg_gym.envs.deepsearch.retrievers import BM25Retriever, Passage
passages = [Passage(str(i), f'"Doc {i}"\\nshared words and token{i}') for i in range(3000)]
r = BM25Retriever.from_passages(passages, name="race")
print(r.index_dir, [h.doc_id for h in r.search("token42 shared", 2)])
"""


def test_parallel_processes_building_the_same_index_agree(tmp_path):
    # AsyncVectorEnv workers all build the index on their first search: exactly one folder must win.
    env = dict(os.environ, EMPG_GYM_CACHE=str(tmp_path), PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD_SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    lines = {o[0].strip() for o in outs}
    assert len(lines) == 1 and lines.pop().endswith("['42', '0']")
    built = list((tmp_path / "deepsearch" / "bm25").iterdir())
    assert [p.name.startswith("race-") for p in built] == [True]  # no temporary folders left behind


def test_bm25_refuses_missing_index_and_empty_corpus(tmp_path):
    with pytest.raises(DataNotFoundError, match="No complete BM25 index"):
        BM25Retriever(tmp_path / "nothing")
    with pytest.raises(ConfigError, match="empty corpus"):
        BM25Retriever.build([], tmp_path / "idx")


# ------------------------------------------------------------------------------------------------ server
def test_batch_request_matches_local_bm25(server, bm25):
    queries = ["Tarnholm city river", "founder shipbuilding company", "painter born"]
    status, body = _post(server.url, {"queries": queries, "topk": 3, "return_scores": True})
    assert status == 200 and len(body["result"]) == 3
    for row, hits in zip(body["result"], bm25.batch_search(queries, 3), strict=True):
        assert [(h["document"]["id"], h["document"]["contents"]) for h in row] == [(h.doc_id, h.contents) for h in hits]
        assert [h["score"] for h in row] == pytest.approx([h.score for h in hits])


def test_response_without_scores_and_default_topk(server):
    status, body = _post(server.url, {"queries": ["painter born"]})
    assert status == 200
    (row,) = body["result"]
    assert len(row) == 3 and set(row[0]) == {"id", "contents"}  # bare documents, Search-R1's default topk
    assert _post(server.url, {"queries": ["painter born"], "topk": 0})[1] == body  # topk 0 falls back to default
    status, body = _post(server.url, {"queries": ["painter born"], "topk": 5})
    assert len(body["result"][0]) == 5


def test_concurrent_requests_get_their_own_results(server, bm25):
    from concurrent.futures import ThreadPoolExecutor

    queries = [q.question for q in embedded_world().questions[:120]]
    expected = [[h.doc_id for h in hits] for hits in bm25.batch_search(queries, 3)]
    client = HTTPRetriever(server.url, api="query")
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda q: [h.doc_id for h in client.search(q, 3)], queries))
    assert got == expected


def test_single_query_variant(server):
    status, body = _post(server.url, {"query": "painter born", "topk": 2, "return_scores": True})
    assert status == 200 and len(body["result"]) == 1 and len(body["result"][0]) == 2
    assert set(body["result"][0][0]) == {"document", "score"}


@pytest.mark.parametrize(
    "raw, message",
    [
        (b'{"queries": ["a"', "The request body is not valid JSON"),
        (b"\xff\xfe", "The request body is not valid JSON"),
        (b'["a", "b"]', "must be a JSON object, got list"),
        (b'{"q": "a"}', "needs 'queries' (a list of strings) or 'query' (a string); got keys ['q']"),
        (b'{"queries": "a"}', "'queries' must be a list of strings"),
        (b'{"queries": [1, 2]}', "'queries' must be a list of strings"),
        (b'{"query": ["a"]}', "'query' must be a string"),
        (b'{"queries": ["a"], "topk": "3"}', "'topk' must be an integer from 1 to 1000, got '3'"),
        (b'{"queries": ["a"], "topk": -1}', "'topk' must be an integer from 1 to 1000, got -1"),
        (b'{"queries": ["a"], "return_scores": "yes"}', "'return_scores' must be true or false"),
        (b'{"queries": ["a"], "topk": ' + b"9" * 5000 + b"}", "holds a 5000-digit number; numbers in a request have "
         "at most 100 digits"),
        (b'{"queries": ["a", ' + b"1" * 4300 + b"]}", "holds a 4300-digit number"),
        (b'{"queries": ["a"], "topk": ' + b"9" * 101 + b"}", "holds a 101-digit number"),
        (b'{"queries": ["a"], "topk": ' + b"9" * 100 + b"}", "'topk' must be an integer from 1 to 1000, got 9999"),
        (b"[" * 100_000 + b"]" * 100_000, "nests arrays or objects too deeply to read"),
        (b'{"queries": ' + b'{"a": ' * 100_000 + b"1" + b"}" * 100_001, "nests arrays or objects too deeply"),
        (b'{"queries": ' + b"[" * 500 + b"]" * 500 + b"}", "'queries' must be a list of strings, got [[[[...]]]]."),
        (json.dumps({"queries": ["painter"] * 64, "topk": 1000}).encode(),
         "asks for 64 queries x topk 1000 = 64000 passages; one response holds at most 16384. Split the queries over "
         "several requests (at most 16 at topk 1000) or ask for a smaller topk."),
        (json.dumps({"queries": ["painter"] * 33, "topk": 512}).encode(), "33 queries x topk 512 = 16896 passages"),
        (json.dumps({"queries": ["painter"] * 4097}).encode(), "'queries' has 4097 entries; send at most 4096"),
    ],
)
def test_server_refuses_bad_requests_with_clear_400(server, raw, message):
    req = urllib.request.Request(server.url, data=raw, headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=30)
    assert err.value.code == 400 and err.value.headers["Content-Type"] == "application/json"
    text = err.value.read().decode()
    assert text.count("\n") == 1 and text.endswith("\n") and len(text) < 1000  # one short line of JSON
    assert message in json.loads(text)["error"]


def test_largest_allowed_response_is_served(server, bm25):
    """queries x topk = MAX_HITS exactly is answered (the cap is on what is asked for, not on what matches)."""
    from empg_gym.envs.deepsearch.server import MAX_HITS

    queries = ["Tarnholm city river"] * 32
    assert len(queries) * 512 == MAX_HITS
    status, body = _post(server.url, {"queries": queries, "topk": 512})
    assert status == 200 and len(body["result"]) == 32
    assert [d["id"] for d in body["result"][31]] == [h.doc_id for h in bm25.search(queries[0], 512)]


def test_server_wrong_route_or_method_is_json(server):
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url, timeout=10)  # GET
    assert err.value.code == 405 and "POST /retrieve" in json.loads(err.value.read())["error"]
    with urllib.request.urlopen(server.url.replace("/retrieve", "/health"), timeout=10) as r:
        assert json.loads(r.read()) == {"status": "ok", "num_passages": 1192, "default_topk": 3}


# ------------------------------------------------------------------------------------------------ client
@pytest.mark.parametrize("api", ["queries", "query"])
def test_http_client_equals_local_bm25(server, bm25, api):
    client = HTTPRetriever(server.url, api=api)
    queries = ["Tarnholm city river", "novel released critics"]
    remote, local = client.batch_search(queries, 4), bm25.batch_search(queries, 4)
    assert [[(h.doc_id, h.contents) for h in r] for r in remote] == [[(h.doc_id, h.contents) for h in r] for r in local]
    assert client.search("", 3) == []


def test_http_client_splits_a_batch_larger_than_one_response(server, bm25):
    """20 queries x topk 1000 exceeds one response (16,384 passages): the client sends two requests."""
    queries = ["Tarnholm city river", "novel released critics", "painter born", "founder company"] * 5
    remote = HTTPRetriever(server.url).batch_search(queries, 1000)
    local = bm25.batch_search(queries, 1000)
    assert [[h.doc_id for h in r] for r in remote] == [[h.doc_id for h in r] for r in local]
    assert sum(map(len, remote)) > 1000


def test_http_client_reports_server_refusal_and_unreachable_server(server):
    with pytest.raises(BackendError, match=r"answered HTTP 400: .*'topk' must be an integer from 1 to 1000, got 5000"):
        HTTPRetriever(server.url).search("x", topk=5000)
    with pytest.raises(BackendError, match="Cannot reach the retrieval server"):
        HTTPRetriever(f"http://127.0.0.1:{_free_port()}/retrieve", retries=0, timeout=5).search("x", 3)
    with pytest.raises(ConfigError, match="must start with http"):
        HTTPRetriever("localhost:8000/retrieve")
    with pytest.raises(ConfigError, match="Unknown retrieval api"):
        HTTPRetriever(server.url, api="batch")


@pytest.mark.parametrize("api", ["queries", "query"])
def test_env_over_the_server_matches_local_env(server, api):
    remote = DeepSearchEnv(split="eval_out_of_distribution", search_url=server.url, search_api=api)
    local = DeepSearchEnv(split="eval_out_of_distribution")
    for seed in (0, 1):
        assert remote.reset(seed=seed) == local.reset(seed=seed)
        plan = local.oracle_actions()
        for action in plan:
            r, loc = remote.step(action), local.step(action)
            assert r == loc
        assert loc[4]["won"]


def test_serve_retriever_main_in_a_subprocess(shared_data):
    port = _free_port()
    corpus = shared_data / "search/corpus/wiki18_sample_1000.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    proc = subprocess.Popen(
        [sys.executable, "-m", "empg_gym.envs.deepsearch.server", "--port", str(port), "--corpus", str(corpus)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )
    try:
        deadline, health = time.monotonic() + 90, None
        while time.monotonic() < deadline and health is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    health = json.loads(r.read())
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read().decode()
                time.sleep(0.3)
        assert health == {"status": "ok", "num_passages": 1000, "default_topk": 3}
        status, body = _post(f"http://127.0.0.1:{port}/retrieve", {"queries": ["Evan Morris lobbyist Genentech"]})
        assert status == 200 and body["result"][0][0]["contents"].startswith('"Evan Morris"')
    finally:
        proc.terminate()
        proc.wait(timeout=10)
