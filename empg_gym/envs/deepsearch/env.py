r"""Deep Search: answer a question by searching a corpus, with Search-R1's protocol.

## Description
The agent gets a question and may search a passage corpus a few times before it answers. The default task set is
a generated multi-hop world (:mod:`empg_gym.envs.deepsearch.world`): encyclopedia passages about fictional
countries, cities, people, companies and works, with 1-3 hop questions whose answers no model knows in advance.
Real FlashRAG-format QA files and wiki-18-format corpora plug in through ``qa_files`` and ``corpus_file``.
Retrieval is local BM25 (bm25s, index cached on disk) or, with ``search_url``, any server that speaks
Search-R1's ``/retrieve`` API (see :mod:`empg_gym.envs.deepsearch.server`).

## Action grammar
Free-form text containing exactly one of

- ``<search> query </search>``: retrieve the top-k passages (k = 3);
- ``<answer> text </answer>``: answer and end the episode.

Reasoning in ``<think>...</think>`` around it is allowed. A turn with neither block, with both a ``<search>``
and an ``<answer>`` tag, or with either tag twice is invalid (Search-R1 / verl-agent rules); so is a search
after the search budget is spent. ``admissible_actions`` is always empty.

## Observation
On reset: how to use the tags, then ``Question: ...``. After a search:
``<information>Doc 1(Title: "...") text\nDoc 2(Title: "...") text ...</information>`` (Search-R1's format,
capped at ``max_observation_chars``). After an invalid turn: Search-R1's feedback, ``My previous action is
invalid. If I want to search, ...`` (an action that is not a ``str``, ``bytes`` included, gets ``Invalid action:
expected a string, got <type>...`` instead). After the answer: ``Answer received: ...``.

## Rewards
At the answer: exact match (1.0 or 0.0) after Search-R1's normalisation (lowercase, no punctuation, no articles,
single spaces) against any golden answer; with ``reward="f1"``, the token F1 instead. 0.0 on every other step.
With ``reward_mode="dense"``, plus the potential-based shaping of :class:`~empg_gym.core.TextEnv` with
``Φ = ½ × [a search result shown so far holds a golden answer]`` (the normalised answer's words, whole, in the
normalised ``<information>`` text the agent saw: :func:`~empg_gym.envs.deepsearch.protocol.holds_answer`): the
search that first brings the answer into view earns ½, the answer step its EM (or F1) minus ½, and an answered
episode sums to its EM (or F1).

## Episode end
Terminated by an answer. Truncated by the registered step limit (5: four searches and the answer); invalid
turns count as steps.

## Info
The standard keys (:mod:`empg_gym.core`), and ``potential`` with ``reward_mode="dense"``; ``score`` is the EM
of the answer (0.0 before it) and ``won`` is EM = 1. Also ``searches_used`` on every step; ``query`` and
``retrieved_ids`` after a search; ``answer``, ``em`` and ``f1`` after the answer; ``invalid_reason`` after an
invalid turn.

## Arguments
- ``split``: ``train`` / ``eval_in_distribution`` (1-2 hops), ``eval_out_of_distribution`` (3 hops and unseen
  question forms) for the generated world; for real data, whatever ``qa_files`` assigns.
- ``topk`` (3), ``max_searches`` (4), ``reward`` (``"em"`` or ``"f1"``), ``max_observation_chars`` (2000, about
  Search-R1's 500-token cap), ``show_instructions`` (True): see :class:`DeepSearchConfig`.
- ``search_url`` / ``search_api``: use a retrieval server instead of local BM25.
- ``qa_files`` (``{split: path or [paths]}``) and ``corpus_file``: real FlashRAG QA and a wiki-18 corpus.
- ``config``: a :class:`DeepSearchConfig` instead of the keyword arguments above.
- ``reward_mode``: ``"sparse"`` (default, the answer's EM/F1 only) or ``"dense"`` (see Rewards).

## Version history
- v0: initial version (generated world manifest v1).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from empg_gym.core import StepResult, TextEnv
from empg_gym.envs.deepsearch.protocol import (
    INVALID_ACTION_FEEDBACK,
    holds_answer,
    information_block,
    parse_action,
    score_answer,
)
from empg_gym.envs.deepsearch.retrievers import (
    BM25Retriever,
    HTTPRetriever,
    Passage,
    Retriever,
    corpus_fingerprint,
)
from empg_gym.errors import ConfigError, did_you_mean
from empg_gym.tasks import Task, TaskManifest

#: Potential of a state where a retrieved passage holds the answer. Below 1, so that answering pays more than
#: having found the answer (a truncated episode keeps its last potential).
FOUND_WEIGHT = 0.5

INSTRUCTIONS = (
    "Answer the question below. Reason inside <think> and </think> whenever you get new information. To look "
    "something up, write a search query between <search> and </search>; the top passages come back between "
    "<information> and </information>. You may search up to {max_searches} times. When you know the answer, "
    "write only the answer between <answer> and </answer>, for example <answer> Beijing </answer>."
)


@dataclass(frozen=True)
class DeepSearchConfig:
    """Settings of one Deep Search env.

    Attributes:
        topk: Passages returned per search (Search-R1: 3).
        max_searches: Searches allowed per episode (Search-R1 / EMPG: 4 turns before the answer).
        reward: ``"em"`` (exact match, the paper's reward) or ``"f1"`` (token F1).
        max_observation_chars: Cap on the text inside ``<information>``; ``None`` for no cap.
        show_instructions: Put the protocol instructions before the question in the first observation.
        search_url: A Search-R1-compatible ``/retrieve`` endpoint to use instead of local BM25.
        search_api: ``"queries"`` (Search-R1's batch request) or ``"query"`` (verl-agent's single query).
    """

    topk: int = 3
    max_searches: int = 4
    reward: Literal["em", "f1"] = "em"
    max_observation_chars: int | None = 2000
    show_instructions: bool = True
    search_url: str | None = None
    search_api: Literal["queries", "query"] = "queries"

    def __post_init__(self) -> None:
        for name in ("topk", "max_searches"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"DeepSearchConfig.{name} must be a positive int, got {value!r}.")
        if self.reward not in ("em", "f1"):
            raise ConfigError(f"DeepSearchConfig.reward must be 'em' or 'f1', got {self.reward!r}.")
        if self.max_observation_chars is not None and self.max_observation_chars < 20:
            raise ConfigError(
                f"DeepSearchConfig.max_observation_chars must be None or >= 20, got {self.max_observation_chars!r}."
            )
        if self.search_api not in ("queries", "query"):
            raise ConfigError(f"DeepSearchConfig.search_api must be 'queries' or 'query', got {self.search_api!r}.")


_BM25_CACHE: dict[str, BM25Retriever] = {}


def shared_bm25(passages: Sequence[Passage], name: str) -> BM25Retriever:
    """Return one BM25 retriever per corpus and process (envs over the same corpus share it)."""
    key = corpus_fingerprint(passages)
    if key not in _BM25_CACHE:
        _BM25_CACHE[key] = BM25Retriever.from_passages(passages, name=name)
    return _BM25_CACHE[key]


class DeepSearchEnv(TextEnv):
    """Answer questions by searching a corpus with ``<search>``/``<answer>`` turns (see the module docstring)."""

    family = "deepsearch"

    def __init__(
        self,
        *,
        split: str = "train",
        render_mode: str | None = None,
        config: DeepSearchConfig | None = None,
        qa_files: Mapping[str, Any] | None = None,
        corpus_file: str | os.PathLike[str] | None = None,
        retriever: Retriever | None = None,
        reward_mode: str = "sparse",
        **overrides: Any,
    ) -> None:
        super().__init__(split=split, render_mode=render_mode, reward_mode=reward_mode)
        known = [f.name for f in fields(DeepSearchConfig)]
        unknown = sorted(set(overrides) - set(known))
        if unknown:
            raise ConfigError(
                f"Unknown DeepSearchEnv argument(s) {unknown}; config fields are {known}.{did_you_mean(unknown[0], known)}"
            )
        self.config = replace(config or DeepSearchConfig(), **overrides)
        if qa_files is not None and corpus_file is None and self.config.search_url is None and retriever is None:
            raise ConfigError(
                "qa_files needs a corpus to search: pass corpus_file (wiki-18 jsonl), search_url, or retriever."
            )
        self._qa_files, self._corpus_file = qa_files, corpus_file
        self._passages: Sequence[Passage] | None = None
        self._retriever = retriever
        self._queries: list[str] = []
        self._answer: str | None = None
        self._em = 0.0
        self._found = False
        self._by_id: dict[str, str] | None = None

    # ---------------------------------------------------------------------------------------- task set
    def passages(self) -> Sequence[Passage]:
        """Return the corpus this env searches with local BM25 (loaded on first use)."""
        if self._passages is None:
            if self._qa_files is not None and self._corpus_file is None:
                raise ConfigError(
                    "This env searches a retrieval server or a given retriever and has no local corpus; "
                    "pass corpus_file to search a wiki-18 file locally."
                )
            if self._corpus_file is not None:
                from empg_gym.envs.deepsearch.data import load_wiki_corpus

                self._passages = load_wiki_corpus(self._corpus_file)
            else:
                from empg_gym.envs.deepsearch.world import embedded_world

                self._passages = embedded_world().passages
        return self._passages

    def _load_manifest(self) -> TaskManifest:
        if self._qa_files is None:
            from empg_gym.envs.deepsearch.world import world_manifest

            return world_manifest()
        from empg_gym.envs.deepsearch.data import flashrag_manifest

        corpus = self.passages() if self._corpus_file is not None else ()
        return flashrag_manifest(self._qa_files, corpus=corpus)

    @property
    def retriever(self) -> Retriever:
        """The retriever (BM25 over :meth:`passages`, or the HTTP client when ``search_url`` is set)."""
        if self._retriever is None:
            if self.config.search_url is not None:
                self._retriever = HTTPRetriever(self.config.search_url, api=self.config.search_api)
            else:
                name = "generated-v1" if self._corpus_file is None else "corpus"
                self._retriever = shared_bm25(self.passages(), name)
        return self._retriever

    # ---------------------------------------------------------------------------------------- episode
    def _start_task(self, task: Task) -> str:
        self._queries, self._answer, self._em, self._found = [], None, 0.0, False
        question = f"Question: {task.goal}"
        if not self.config.show_instructions:
            return question
        return INSTRUCTIONS.format(max_searches=self.config.max_searches) + "\n\n" + question

    def _step(self, action: str) -> StepResult:
        parsed = parse_action(action)
        if not parsed.valid:
            return self._invalid(parsed.reason)
        if parsed.kind == "search":
            return self._search(parsed.content)
        return self._give_answer(parsed.content)

    def _invalid(self, reason: str, feedback: str = INVALID_ACTION_FEEDBACK) -> StepResult:
        return StepResult(feedback, valid=False, extra_info={"invalid_reason": reason, "searches_used": len(self._queries)})

    def _invalid_action(self, reason: str) -> StepResult:
        """Answer a non-string or over-long action with ``Invalid action: <reason>.`` and the invalid-turn info keys.

        Such an action is the caller's mistake, which Search-R1's text would hide; ``invalid_reason`` and
        ``searches_used`` are set as on every invalid turn.
        """
        return self._invalid(reason, f"Invalid action: {reason}.")

    def _search(self, query: str) -> StepResult:
        if len(self._queries) >= self.config.max_searches:
            return self._invalid(
                f"all {self.config.max_searches} searches are used",
                f"I have used all {self.config.max_searches} searches. "
                "I should give the final answer between <answer> and </answer>.",
            )
        hits = self.retriever.search(query, self.config.topk)
        self._queries.append(query)
        obs = information_block([h.contents for h in hits], self.config.max_observation_chars)
        if self.reward_mode == "dense" and not self._found:
            assert self._task is not None
            self._found = holds_answer(obs, self._task.data["golden_answers"])  # as shown: the cap may cut a passage
        info = {"query": query, "retrieved_ids": [h.doc_id for h in hits], "searches_used": len(self._queries)}
        return StepResult(obs, extra_info=info)

    def _give_answer(self, answer: str) -> StepResult:
        assert self._task is not None
        scores = score_answer(answer, self._task.data["golden_answers"])
        self._answer, self._em = answer, float(scores["em"])
        reward = scores["em"] if self.config.reward == "em" else scores["f1"]
        info = {"answer": answer, "em": scores["em"], "f1": scores["f1"], "searches_used": len(self._queries)}
        return StepResult(f"Answer received: {answer}", reward=float(reward), terminated=True, extra_info=info)

    def admissible_actions(self) -> list[str]:
        """Deep Search is free-form: always an empty list."""
        return []

    def _won(self) -> bool:
        return self._em == 1.0

    def _potential(self) -> float:
        """``Φ = FOUND_WEIGHT`` once a search result the agent saw holds a golden answer, else 0."""
        return FOUND_WEIGHT if self._found else 0.0

    def _score(self) -> float:
        return self._em

    def oracle_actions(self) -> list[str]:
        """Return searches that reach the gold passages not searched yet (within the budget), then the gold answer.

        A gold passage is searched by its title; when the title alone does not bring it into the top-k (short or
        symbol-heavy titles such as ``Maroon 5``), by the title followed by the question, or by the title followed
        by the passage's first words. Tasks without gold
        passages (most real QA sets) get the answer only.
        """
        assert self._task is not None, "Call reset() first."
        if self._answer is not None:
            return []
        data = self._task.data
        titles, gold_ids = list(data.get("oracle_queries", [])), list(data.get("gold_doc_ids", []))
        queries = [self._oracle_query(t, g) for t, g in zip(titles, gold_ids, strict=False)] + titles[len(gold_ids) :]
        queries = [q for q in queries if q not in self._queries]
        queries = queries[: max(0, self.config.max_searches - len(self._queries))]
        return [f"<search> {q} </search>" for q in queries] + [f"<answer> {data['golden_answers'][0]} </answer>"]

    def _oracle_query(self, title: str, gold_id: str) -> str:
        assert self._task is not None
        candidates = [title, f"{title} {self._task.goal}"]
        gold_text = self._gold_text(gold_id)
        if gold_text:
            candidates.append(f"{title} {' '.join(gold_text.split()[:12])}")
        for query in candidates:
            if gold_id in [h.doc_id for h in self.retriever.search(query, self.config.topk)]:
                return query
        return title

    def _gold_text(self, doc_id: str) -> str:
        if self.config.search_url is not None or (self._qa_files is not None and self._corpus_file is None):
            return ""  # the corpus lives elsewhere (a server or a caller's retriever)
        if self._by_id is None:
            self._by_id = {p.doc_id: p.contents for p in self.passages()}
        return self._by_id.get(doc_id, "").partition("\n")[2]
