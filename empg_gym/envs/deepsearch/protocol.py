"""The Search-R1 text protocol: parsing an agent's turn, rendering passages, and scoring answers.

Everything here is plain string work (no retriever, no env), so trainers can reuse it to score their own rollouts.
Behaviour follows PeterGriffinJin/Search-R1 (``search_r1/llm_agent/generation.py`` for the ``<information>`` block
and the invalid-action feedback, ``verl/utils/reward_score/qa_em.py`` for answer normalisation) and verl-agent's
search projection for what counts as a malformed turn.

Example:
    >>> parse_action("<think>I need the capital.</think><search> capital of Velmora </search>")
    ParsedAction(kind='search', content='capital of Velmora', reason='')
    >>> exact_match("The Tarnholm!", ["tarnholm"])
    1.0
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

#: Search-R1's feedback for a turn that is neither a search nor an answer (``generation.py``, ``execute_predictions``).
INVALID_ACTION_FEEDBACK = (
    "My previous action is invalid. If I want to search, I should put the query between <search> and </search>. "
    "If I want to give the final answer, I should put the answer between <answer> and </answer>. Let me try again."
)

_SEARCH_BLOCK = re.compile(r"<search>(.*?)</search>", re.IGNORECASE | re.DOTALL)
_ANSWER_BLOCK = re.compile(r"<answer>(.*?)</answer>", re.IGNORECASE | re.DOTALL)
_SEARCH_OPEN = re.compile(r"<search>", re.IGNORECASE)
_ANSWER_OPEN = re.compile(r"<answer>", re.IGNORECASE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


@dataclass(frozen=True)
class ParsedAction:
    """One agent turn, parsed.

    Attributes:
        kind: ``"search"``, ``"answer"`` or ``"invalid"``.
        content: The stripped text between the tags (the query or the answer); empty when invalid.
        reason: Why the turn is invalid (empty when valid).
    """

    kind: Literal["search", "answer", "invalid"]
    content: str
    reason: str = ""

    @property
    def valid(self) -> bool:
        """Whether the turn is a well-formed search or answer."""
        return self.kind != "invalid"


def _cut_after_first_close(text: str) -> str:
    # Search-R1 stops generation at the first </search>, else at the first </answer>; text after it is dropped.
    for close in ("</search>", "</answer>"):
        if close in text:
            return text.split(close, 1)[0] + close
    return text


def parse_action(text: str) -> ParsedAction:
    """Parse one agent turn the way Search-R1 / verl-agent do.

    The first complete ``<search>...</search>`` block (case-insensitive) is a search, else the first
    ``<answer>...</answer>`` block is an answer. The turn is invalid when it has no complete block, when it opens
    both a search and an answer tag, or when it opens either tag more than once.

    Example:
        >>> parse_action("<answer> Tarnholm </answer>").content
        'Tarnholm'
        >>> parse_action("I think it is Tarnholm.").reason
        'no <search>...</search> or <answer>...</answer> block'
        >>> parse_action("<search>a</search><answer>b</answer>").kind
        'invalid'
    """
    n_search, n_answer = len(_SEARCH_OPEN.findall(text)), len(_ANSWER_OPEN.findall(text))
    if n_search and n_answer:
        return ParsedAction("invalid", "", "both a <search> and an <answer> tag")
    if n_search > 1 or n_answer > 1:
        tag = "<search>" if n_search > 1 else "<answer>"
        return ParsedAction("invalid", "", f"the {tag} tag appears {max(n_search, n_answer)} times")
    trimmed = _cut_after_first_close(text)
    match = _SEARCH_BLOCK.search(trimmed)
    if match:
        return ParsedAction("search", match.group(1).strip())
    match = _ANSWER_BLOCK.search(trimmed)
    if match:
        return ParsedAction("answer", match.group(1).strip())
    return ParsedAction("invalid", "", "no <search>...</search> or <answer>...</answer> block")


def split_contents(contents: str) -> tuple[str, str]:
    r"""Split a wiki-18 passage ``'"Title"\ntext'`` into ``(title line, text)`` as Search-R1 does.

    The title keeps its quotes: Search-R1 shows ``Doc 1(Title: "Paul Walker") ...``.

    Example:
        >>> split_contents('"Tarnholm"\nTarnholm is a city.')
        ('"Tarnholm"', 'Tarnholm is a city.')
    """
    title, _, text = contents.partition("\n")
    return title, text


def format_passages(contents: Iterable[str]) -> str:
    r"""Render retrieved passages as Search-R1's ``Doc i(Title: ...) text`` lines (one per passage).

    Example:
        >>> print(format_passages(['"A"\nfirst', '"B"\nsecond']))
        Doc 1(Title: "A") first
        Doc 2(Title: "B") second
        <BLANKLINE>
    """
    lines = []
    for i, passage in enumerate(contents, start=1):
        title, text = split_contents(passage)
        lines.append(f"Doc {i}(Title: {title}) {text}\n")
    return "".join(lines)


def information_block(contents: Sequence[str], max_chars: int | None = None) -> str:
    r"""Return the observation for a search: ``<information>...</information>`` around the formatted passages.

    Search-R1 strips the formatted text and caps each observation at ``max_obs_length`` tokens (500); here the cap
    is in characters (``max_chars``, about four per token) and keeps the closing tag.

    Example:
        >>> information_block(['"A"\nfirst'])
        '<information>Doc 1(Title: "A") first</information>'
        >>> information_block(['"A"\n' + "x" * 50], max_chars=20)
        '<information>Doc 1(Title: "A")...</information>'
    """
    body = format_passages(contents).strip()
    if max_chars is not None and len(body) > max_chars:
        body = body[: max(0, max_chars - 3)].rstrip() + "..."
    return f"<information>{body}</information>"


def normalize_answer(text: str) -> str:
    """Normalise an answer as Search-R1 / SQuAD do: lowercase, drop ASCII punctuation, drop articles, squeeze spaces.

    Example:
        >>> normalize_answer("  The  Amber-Lattice, an Epic! ")
        'amberlattice epic'
    """
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def _as_list(golden_answers: str | Sequence[str]) -> list[str]:
    return [golden_answers] if isinstance(golden_answers, str) else list(golden_answers)


def exact_match(prediction: str, golden_answers: str | Sequence[str]) -> float:
    """Return 1.0 if the normalised prediction equals any normalised golden answer, else 0.0.

    Example:
        >>> exact_match("Wilhelm Conrad Röntgen", ["wilhelm conrad röntgen"])
        1.0
        >>> exact_match("Röntgen", ["Wilhelm Conrad Röntgen"])
        0.0
    """
    pred = normalize_answer(prediction)
    return 1.0 if any(pred == normalize_answer(g) for g in _as_list(golden_answers)) else 0.0


def _f1_one(prediction: str, golden: str) -> float:
    pred, gold = normalize_answer(prediction), normalize_answer(golden)
    # HotpotQA / FlashRAG: yes, no and noanswer only score when they match exactly.
    if (pred in ("yes", "no", "noanswer") or gold in ("yes", "no", "noanswer")) and pred != gold:
        return 0.0
    pred_tokens, gold_tokens = pred.split(), gold.split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(pred_tokens), overlap / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def token_f1(prediction: str, golden_answers: str | Sequence[str]) -> float:
    """Return the best token-level F1 between the normalised prediction and any golden answer.

    Example:
        >>> round(token_f1("Conrad Röntgen", ["Wilhelm Conrad Röntgen"]), 3)
        0.8
        >>> token_f1("yes", ["no"])
        0.0
    """
    return max((_f1_one(prediction, g) for g in _as_list(golden_answers)), default=0.0)


def holds_answer(passage: str, golden_answers: str | Sequence[str]) -> bool:
    r"""Return whether a passage contains a golden answer: its normalised words, whole, inside the normalised passage.

    Both sides go through :func:`normalize_answer` (the EM/F1 normaliser); matching whole words keeps ``5`` from
    matching inside ``1955``. An answer that normalises to nothing matches no passage.

    Example:
        >>> holds_answer('"Tarnholm"\nTarnholm is the capital of the Amber-Lattice.', ["the amber lattice", "x"])
        False
        >>> holds_answer('"Tarnholm"\nTarnholm is the capital of the Amber-Lattice.', ["Amber-Lattice"])
        True
        >>> holds_answer("Founded in 1955.", "5")
        False
    """
    text = f" {normalize_answer(passage)} "
    return any(gold and f" {gold} " in text for gold in (normalize_answer(g) for g in _as_list(golden_answers)))


def score_answer(prediction: str, golden_answers: str | Sequence[str]) -> Mapping[str, Any]:
    """Return ``{"em": ..., "f1": ...}`` for one answer.

    Example:
        >>> score_answer("the tarnholm", "Tarnholm")
        {'em': 1.0, 'f1': 1.0}
    """
    return {"em": exact_match(prediction, golden_answers), "f1": token_f1(prediction, golden_answers)}
