"""The page model of the shop: one shopping session's state, its actions, and what each page shows.

A :class:`ShopSession` is WebShop's server-side session: it holds the goal, the current page (search, results,
item, item sub-page, done), the search results, the chosen product and options. :meth:`ShopSession.view`
describes the current page as a list of blocks (text, buttons, product links, option radios, the search form);
the text env joins their visible text with `` [SEP] `` and the Flask site renders the same blocks as HTML, so the
two modes show the same page.

Actions follow WebShop: ``search[keywords]`` on the search page, ``click[x]`` with ``x`` one of the page's
lower-cased clickables (button labels, product asins, option values). Pages and transitions as in WebShop's
``SimServer``: ``next >`` / ``< prev`` page the results (``next >`` is always shown, as in WebShop); ``< prev``
on an item page returns to the results, on a sub-page to the item; a product click resets the chosen options;
``buy now`` scores the purchase and ends the session.

Example:
    >>> from empg_gym.envs.webshop.search import get_store
    >>> store = get_store()
    >>> task = store.manifest.tasks("eval_in_distribution")[0]
    >>> s = ShopSession(store, task.goal, dict(task.data))
    >>> s.view().text().startswith("WebShop [SEP] Instruction: [SEP] ")
    True
    >>> s.act("click[buy now]").valid
    False
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from empg_gym.envs.webshop.reward import get_reward
from empg_gym.envs.webshop.search import PRODUCT_WINDOW, Store

SEP = " [SEP] "
#: Search queries longer than this are refused (a browser form could not post them either).
MAX_QUERY_CHARS = 1000
#: The template shown in ``admissible_actions`` for a free-form search.
SEARCH_TEMPLATE = "search[<your query>]"

BACK_TO_SEARCH, NEXT_PAGE, PREV_PAGE, BUY_NOW = "Back to Search", "Next >", "< Prev", "Buy Now"
SUB_PAGES = ("Description", "Features", "Reviews")

PageKind = Literal["search", "results", "item", "sub", "done"]
_ACTION = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Block:
    """One piece of a page, in display order.

    ``kind`` is ``text`` (``text``, shown in a ``tag`` element), ``button`` (``text`` is the label), ``product``
    (``text`` is the asin; ``extra`` holds title and price), ``options`` (``text`` is the option group name;
    ``extra`` its values, ``selected`` the chosen one: shown checked in HTML, not part of the text) or ``search``
    (the search form; its button reads ``Search``).
    """

    kind: Literal["text", "button", "product", "options", "search"]
    text: str = ""
    tag: str = "p"
    extra: tuple[str, ...] = ()
    selected: str = ""


def clean_segment(text: str) -> str:
    r"""Normalise a piece of visible text as a browser's DOM would hold it, then strip it.

    Example:
        >>> clean_segment("  a\r\nb ")
        'a\nb'
    """
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "\ufffd").strip()


def join_segments(segments: Sequence[str]) -> str:
    """Join visible text pieces as WebShop's simple text mode does (empty pieces dropped)."""
    return SEP.join(s for s in (clean_segment(t) for t in segments) if s)


@dataclass(frozen=True)
class PageView:
    """A rendered page: its kind, blocks, and the reward shown on the done page."""

    kind: PageKind
    blocks: tuple[Block, ...]
    reward: float | None = None

    def segments(self) -> list[str]:
        """Return the visible text pieces in document order."""
        out: list[str] = []
        for b in self.blocks:
            if b.kind == "product":
                out += [b.text, *b.extra]
            elif b.kind == "options":
                out += [b.text, *b.extra]
            elif b.kind == "search":
                out.append("Search")
            else:
                out.append(b.text)
        return out

    def text(self) -> str:
        """Return the page as WebShop's `` [SEP] `` text."""
        return join_segments(self.segments())

    @property
    def has_search_bar(self) -> bool:
        """Whether the page has the search form."""
        return any(b.kind == "search" for b in self.blocks)

    def clickables(self) -> list[str]:
        """Return the page's clickables as WebShop collects them: buttons, product links, option values.

        Lower-cased labels and asins; option values as they are. The search form's button is not clickable.
        """
        buttons = [b.text.lower() for b in self.blocks if b.kind == "button"]
        links = [b.text.lower() for b in self.blocks if b.kind == "product"]
        radios = [v for b in self.blocks if b.kind == "options" for v in b.extra]
        return list(dict.fromkeys(buttons + links + radios))


def browser_text(text: str) -> str:
    r"""Return ``text`` as a browser's search box holds it: a valid Unicode string on one line.

    A browser keeps text as UTF-16 and sends a form as UTF-8: a lone surrogate (``"\ud800"``, which Python
    strings may hold) becomes U+FFFD and a surrogate pair the character it encodes; a text box holds no line
    breaks (the browser deletes them; here each becomes a space, so the words on either side stay apart, as in
    WebShop's text mode). Every search query goes through this in text mode, in the browser and on the site, so
    the three search for the same words and show the same results.

    Example:
        >>> browser_text("\ud800 shampoo\r\nfor dry hair"), browser_text("\ud83d\ude42")
        ('� shampoo  for dry hair', '🙂')
    """
    if not text.isascii():
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text.replace("\r", " ").replace("\n", " ")


def parse_action(action: str) -> tuple[str, str] | None:
    r"""Return ``(name, argument)`` of a ``search[...]`` / ``click[...]`` action, or ``None``.

    The argument is stripped and lower-cased; a search query is first made what a browser's search box would
    send (:func:`browser_text`).

    Example:
        >>> parse_action("click[ Buy Now ]"), parse_action("jump"), parse_action("search[Dry\nHair]")
        (('click', 'buy now'), None, ('search', 'dry hair'))
    """
    m = _ACTION.match(action)
    if m is None:
        return None
    name, arg = m.group(1).lower(), m.group(2)
    if name == "search":
        arg = browser_text(arg)
    return name, arg.strip().lower()


def shorten(text: str, n: int = 60) -> str:
    """Return ``text`` cut to ``n`` characters (ending in ``...`` when cut), for quoting it in a message."""
    return text if len(text) <= n else text[: n - 3] + "..."


def check_action(action: str, view: PageView) -> tuple[tuple[str, str] | None, str]:
    """Validate ``action`` against a page: ``((name, arg), "")`` if it can be done, else ``(None, reason)``."""
    parsed = parse_action(action)
    if parsed is None:
        return None, f"{shorten(action)!r} is not of the form search[keywords] or click[element]"
    name, arg = parsed
    if name == "search":
        if not view.has_search_bar:
            return None, "there is no search box on this page; click[back to search] first"
        if not arg:
            return None, "the search query is empty"
        if len(arg) > MAX_QUERY_CHARS:
            return None, f"the search query has {len(arg)} characters, more than the limit of {MAX_QUERY_CHARS}"
        return parsed, ""
    if arg not in view.clickables():
        return None, f"{shorten(arg)!r} is not a clickable element of this page"
    return parsed, ""


def invalid_observation(reason: str, view: PageView) -> str:
    """Return the observation after an invalid action: the reason, then the unchanged page."""
    return f"Invalid action: {reason}.{SEP}{view.text()}"


def admissible(view: PageView) -> list[str]:
    """Return the actions valid on a page (a search template where the search box is)."""
    acts = [SEARCH_TEMPLATE] if view.has_search_bar else []
    return acts + [f"click[{c}]" for c in view.clickables()]


@dataclass
class Outcome:
    """What one action did."""

    valid: bool
    reason: str = ""
    reward: float = 0.0
    done: bool = False


@dataclass
class ShopSession:
    """One shopper's session on the site (WebShop's ``user_sessions[session_id]``)."""

    store: Store
    instruction: str
    goal: Mapping[str, Any]
    page: PageKind = "search"
    keywords: str = ""
    results: list[str] = field(default_factory=list)
    page_no: int = 1
    asin: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    sub_page: str = ""
    reward: float | None = None
    reward_info: dict[str, Any] = field(default_factory=dict)

    # ----------------------------------------------------------------------------------------- actions
    def act(self, action: str) -> Outcome:
        """Apply one action; an invalid one changes nothing and says why."""
        if self.page == "done":
            return Outcome(False, "the purchase is complete; start a new session")
        parsed, reason = check_action(action, self.view())
        if parsed is None:
            return Outcome(False, reason)
        name, arg = parsed
        if name == "search":
            self._search(arg)
            return Outcome(True)
        return self._click(arg)

    def _search(self, keywords: str) -> None:
        self.keywords = keywords
        self.results = self.store.search(keywords)
        self.page, self.page_no, self.asin, self.options, self.sub_page = "results", 1, None, {}, ""

    def _click(self, target: str) -> Outcome:
        if target == BACK_TO_SEARCH.lower():
            self.page, self.keywords, self.results, self.asin, self.options = "search", "", [], None, {}
        elif target == NEXT_PAGE.lower():
            self.page_no += 1
        elif target == PREV_PAGE.lower():
            if self.page == "results":
                self.page_no -= 1
            elif self.page == "item":
                self.page = "results"
            else:
                self.page = "item"
        elif target == BUY_NOW.lower():
            return self._buy()
        elif target in (s.lower() for s in SUB_PAGES):
            self.page, self.sub_page = "sub", next(s for s in SUB_PAGES if s.lower() == target)
        elif self.page == "results":
            self.page, self.asin, self.options = "item", target.upper(), {}
        else:  # an option value: the last group offering it, as WebShop's clickable map keeps the last
            product = self.store.by_asin[self.asin]
            group = [name for name, values in product.options.items() if target in values][-1]
            self.options[group] = target
        return Outcome(True)

    def _buy(self) -> Outcome:
        product = self.store.by_asin[self.asin]
        self.reward, self.reward_info = self.purchase_reward()
        self.reward_info = dict(self.reward_info, asin=product.asin, options=dict(self.options), price=product.price)
        self.page = "done"
        return Outcome(True, reward=self.reward, done=True)

    def purchase_reward(self) -> tuple[float, dict[str, Any]]:
        """Return WebShop's reward, and its components, for buying the open product now with the chosen options.

        What ``buy now`` would score (the dense-reward potential reads it on every item page). Needs an open
        product (``asin`` set).
        """
        product = self.store.by_asin[self.asin]
        purchased = {
            "query": product.query, "product_category": product.product_category, "name": product.Title,
            "Title": product.Title, "Attributes": product.Attributes, "BulletPoints": product.BulletPoints,
            "Description": product.Description,
        }  # fmt: skip
        return get_reward(purchased, self.goal, product.price, self.options)

    # -------------------------------------------------------------------------------------------- pages
    def view(self) -> PageView:
        """Return the current page."""
        return getattr(self, f"_view_{self.page}")()

    def _head(self) -> list[Block]:
        return [Block("text", "Instruction:", "h4"), Block("text", self.instruction, "h4")]

    def _view_search(self) -> PageView:
        return PageView("search", (Block("text", "WebShop", "h2"), *self._head(), Block("search")))

    def _view_results(self) -> PageView:
        blocks = [*self._head(), Block("button", BACK_TO_SEARCH)]
        blocks.append(Block("text", f"Page {self.page_no} (Total results: {len(self.results)})", "h3"))
        if self.page_no > 1:
            blocks.append(Block("button", PREV_PAGE))
        blocks.append(Block("button", NEXT_PAGE))
        start = (self.page_no - 1) * PRODUCT_WINDOW
        for asin in self.results[start : start + PRODUCT_WINDOW]:
            p = self.store.by_asin[asin]
            blocks.append(Block("product", p.asin, extra=(p.Title, p.Price)))
        return PageView("results", tuple(blocks))

    def _view_item(self) -> PageView:
        p = self.store.by_asin[self.asin]
        blocks = [*self._head(), Block("button", BACK_TO_SEARCH), Block("button", PREV_PAGE)]
        blocks += [
            Block("options", name, extra=tuple(values), selected=self.options.get(name, ""))
            for name, values in p.options.items()
        ]
        blocks += [
            Block("text", p.Title, "h2"),
            Block("text", f"Price: {p.Price}", "h4"),
            Block("text", f"Rating: {p.Rating}", "h4"),
        ]
        blocks += [Block("button", s) for s in SUB_PAGES] + [Block("button", BUY_NOW)]
        return PageView("item", tuple(blocks))

    def _view_sub(self) -> PageView:
        p = self.store.by_asin[self.asin]
        blocks = [*self._head(), Block("button", BACK_TO_SEARCH), Block("button", PREV_PAGE)]
        if self.sub_page == "Description":
            blocks.append(Block("text", p.Description))
        elif self.sub_page == "Features":
            blocks += [Block("text", b, "li") for b in p.BulletPoints]
        else:
            for r in p.Reviews:
                blocks += [Block("text", f'"{r["title"]}"', "h4"), Block("text", str(r["score"])), Block("text", r["body"])]
        return PageView("sub", tuple(blocks))

    def _view_done(self) -> PageView:
        blocks = (
            Block("text", "Thank you for shopping with us!", "h1"),
            Block("text", "Your score (min 0.0, max 1.0)", "h3"),
            Block("text", str(self.reward), "pre"),
        )
        return PageView("done", blocks, reward=self.reward)

    # ------------------------------------------------------------------------------------------ oracle
    def oracle_plan(self) -> list[str]:
        """Return actions that buy the goal's product with its options from the current page.

        Searches the target's title, pages to it, clicks it, picks each goal option, buys.
        """
        target = self.goal["asin"]
        plan: list[str] = []
        page = self.page
        if page in ("item", "sub") and self.asin == target:
            if page == "sub":
                plan.append(f"click[{PREV_PAGE.lower()}]")
        else:
            if page != "search":
                plan.append(f"click[{BACK_TO_SEARCH.lower()}]")
            title = self.store.by_asin[target].Title
            query = title.lower()[:MAX_QUERY_CHARS]
            plan.append(f"search[{query}]")
            rank = self.store.search(query).index(target)
            plan += [f"click[{NEXT_PAGE.lower()}]"] * (rank // PRODUCT_WINDOW)
            plan.append(f"click[{target.lower()}]")
        goal_options = self.goal["goal_options"]
        values = goal_options.values() if isinstance(goal_options, Mapping) else goal_options
        offered = [v for vals in self.store.by_asin[target].options.values() for v in vals]
        plan += [f"click[{v}]" for v in (_closest_option(g, offered) for g in values) if v is not None]
        plan.append(f"click[{BUY_NOW.lower()}]")
        return plan


def _closest_option(goal_value: str, offered: Sequence[str]) -> str | None:
    """Return the offered option value that matches ``goal_value`` (itself, else the best fuzzy match > 85)."""
    if goal_value in offered:
        return goal_value
    from empg_gym.envs.webshop.reward import MATCH_THRESHOLD, match_score, normalize_color

    scored = [(match_score(normalize_color(v), normalize_color(goal_value)), v) for v in offered]
    best = max(scored, default=(0, None), key=lambda sv: sv[0])
    return best[1] if best[0] > MATCH_THRESHOLD else None
