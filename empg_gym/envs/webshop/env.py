"""EMPG-WebShop-v0: WebShop's shopping task in text, without HTTP.

## Description
The agent is given an instruction such as ``i need a sulfate free shampoo with scent: lavender, and size: 8 fl
oz, and price lower than 30.00 dollars`` and must search the shop, open a product, choose its options and buy it
(Yao et al. 2022, WebShop). The shop is the family's page model (:mod:`empg_gym.envs.webshop.engine`) over a
catalog of 1,200 generated products (or WebShop's own files) with bm25s search: 50 results, 10 per page.

## Action grammar
``search[keywords]`` (only on the search page) and ``click[x]`` with ``x`` one of the page's lower-cased
clickables: ``back to search``, ``next >``, ``< prev``, a product asin (``b0...``), an option value,
``description``, ``features``, ``reviews``, ``buy now``. ``info["admissible_actions"]`` lists the clicks of the
current page, plus ``search[<your query>]`` (a template: any keywords) where the search box is. A query is
searched as a browser's search box would send it (line breaks become spaces, a lone surrogate U+FFFD) and may
have up to 1,000 characters. An action is a ``str``; anything else (``bytes`` included), and any action the page
does not offer, gives ``Invalid action: <reason>. [SEP] <the unchanged page>`` with ``action_valid=False``.

## Observation
The visible text of the page joined with `` [SEP] `` as WebShop's ``text`` observation mode, e.g.
``WebShop [SEP] Instruction: [SEP] <instruction> [SEP] Search`` and ``Instruction: [SEP] <instruction> [SEP]
Back to Search [SEP] Page 1 (Total results: 50) [SEP] Next > [SEP] B0... [SEP] <title> [SEP] $12.5 ...``.
After buying: ``Thank you for shopping with us! [SEP] Your score (min 0.0, max 1.0) [SEP] <reward>``.

## Rewards
0 until ``click[buy now]``; then WebShop's score in [0, 1] (:mod:`empg_gym.envs.webshop.reward`): matched
attributes, options and price over their number, times the type reward. With ``reward_mode="dense"``, plus the
potential-based shaping of :class:`~empg_gym.core.TextEnv` with ``Φ = ½ × the score buying the product in view
would get`` (its attributes, the options chosen so far and its price against the goal, times the type reward) on an
item page or its sub-pages, 0 on the search and results pages (:meth:`WebShopTextEnv._potential`). The buy step's
reward stays WebShop's, and a purchase's dense rewards sum to it.

## Episode end
Terminated on ``buy now``; truncated at the registered step limit (15).

## Info
The standard keys (:mod:`empg_gym.core`), and ``potential`` with ``reward_mode="dense"``; ``won`` iff the reward
is exactly 1; ``score`` is the reward; after a
purchase ``reward_info`` holds the components (``r_type``, ``r_att``, ``r_option``, ``r_price``,
``query_match``, ``category_match``, ``title_score``, the asin, options and price).

## Arguments
- ``split``: split ``reset`` draws from (``train``, ``eval_in_distribution``, ``eval_out_of_distribution``).
- ``catalog``: a :class:`~empg_gym.envs.webshop.search.CatalogConfig` or a dict of its fields: the embedded
  generated catalog by default; ``{"n_products": 10000}`` for a larger generated one; ``{"source": "real",
  "items_path": ..., "attrs_path": ..., "human_ins_path": ...}`` for WebShop's files.
- ``render_mode``: ``"ansi"`` or ``"human"``.
- ``reward_mode``: ``"sparse"`` (default, WebShop's own reward) or ``"dense"`` (see Rewards).

## Version history
- v0: initial version (generated catalog v1: 1,200 products, 1,728 / 192 / 480 goals).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from empg_gym.core import StepResult, TextEnv
from empg_gym.envs.webshop.engine import ShopSession, admissible, invalid_observation
from empg_gym.envs.webshop.search import CatalogConfig, Store, get_store
from empg_gym.errors import ConfigError
from empg_gym.tasks import Task, TaskManifest

#: Weight of the viewed product's score in WebShop's potential. Below 1, so that buying a product pays more than
#: looking at it until the step limit (a truncated episode keeps its last potential).
VIEW_WEIGHT = 0.5


def catalog_config(catalog: CatalogConfig | Mapping[str, Any] | None) -> CatalogConfig:
    """Return a :class:`CatalogConfig` from ``None``, a config, or a dict of its fields."""
    if catalog is None:
        return CatalogConfig()
    if isinstance(catalog, CatalogConfig):
        return catalog
    if isinstance(catalog, Mapping):
        try:
            return CatalogConfig(**dict(catalog))
        except TypeError as e:
            raise ConfigError(f"Bad catalog settings {dict(catalog)!r}: {e}. See CatalogConfig's fields.") from None
    raise ConfigError(f"catalog must be None, a CatalogConfig or a dict, got {type(catalog).__name__}.")


class WebShopTextEnv(TextEnv):
    """WebShop in text mode (see the module docstring)."""

    family = "webshop"

    def __init__(
        self,
        *,
        split: str = "train",
        catalog: CatalogConfig | Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        reward_mode: str = "sparse",
    ) -> None:
        super().__init__(split=split, render_mode=render_mode, reward_mode=reward_mode)
        self.catalog = catalog_config(catalog)
        self._session: ShopSession | None = None
        self._viewed: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    @property
    def store(self) -> Store:
        """The process-wide catalog, index and manifest this env uses."""
        return get_store(self.catalog)

    def _load_manifest(self) -> TaskManifest:
        return self.store.manifest

    def _potential(self) -> float:
        """``Φ = VIEW_WEIGHT × WebShop's reward for buying the product in view now``; 0 with no product in view.

        A product is in view on its item page and its sub-pages (description, features, reviews); the options count
        as chosen so far. Scores are memoised per episode by (product, options).
        """
        s = self._session
        if s is None or s.page not in ("item", "sub") or s.asin is None:
            return 0.0
        key = (s.asin, tuple(sorted(s.options.items())))
        if key not in self._viewed:
            self._viewed[key] = VIEW_WEIGHT * s.purchase_reward()[0]
        return self._viewed[key]

    def _new_session(self, task: Task) -> ShopSession:
        return ShopSession(self.store, task.goal, dict(task.data))

    def _start_task(self, task: Task) -> str:
        self._viewed = {}
        self._session = self._new_session(task)
        return self._session.view().text()

    def _current_view(self) -> Any:
        """Return the page the agent sees now (anything with ``text()``)."""
        return self._session.view()

    def _invalid_action(self, reason: str) -> StepResult:
        """Answer an invalid action, whatever its type: ``Invalid action: <reason>. [SEP] <the unchanged page>``."""
        return StepResult(invalid_observation(reason, self._current_view()), valid=False)

    def _step(self, action: str) -> StepResult:
        session = self._session
        outcome = session.act(action)
        if not outcome.valid:
            return self._invalid_action(outcome.reason)
        extra = {"reward_info": dict(session.reward_info)} if outcome.done else {}
        return StepResult(session.view().text(), reward=outcome.reward, terminated=outcome.done, extra_info=extra)

    def admissible_actions(self) -> list[str]:
        """Return the clicks of the current page, and the search template where the search box is."""
        if self._session is None or self._session.page == "done":
            return []
        return admissible(self._session.view())

    def _won(self) -> bool:
        return self._session is not None and self._session.reward == 1.0

    def _score(self) -> float:
        return float(self._session.reward or 0.0) if self._session is not None else 0.0

    def oracle_actions(self) -> list[str]:
        """Return actions that buy the goal's product with the goal's options (reward 1)."""
        if self._session is None:
            raise ConfigError("Call reset() before oracle_actions().")
        return self._session.oracle_plan()
