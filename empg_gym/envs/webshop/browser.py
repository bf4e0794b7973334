"""EMPG-WebShop-Browser-v0: the WebShop tasks in a real headless Chromium, driven by Selenium.

## Description
The same tasks, pages and rewards as ``EMPG-WebShop-v0`` (see :mod:`empg_gym.envs.webshop.env`), but every
action is carried out in Chromium against the family's Flask site (:mod:`empg_gym.envs.webshop.server`), which
the env serves from a background thread on 127.0.0.1. The observation is read from the browser's DOM (the
trimmed text nodes of the page joined with `` [SEP] ``), the clickables are the page's buttons, product links and
option radios, and the reward is the score the done page shows. For the same actions the two envs give the same
observations and rewards.

## Action grammar, Observation, Rewards, Episode end, Info
As ``EMPG-WebShop-v0``. ``search[...]`` fills the page's search box and presses its button; ``click[x]`` clicks
the button, link or radio whose lower-cased label (or value) is ``x``; the env waits for the new document. Every
action is checked against the page before the browser sees it, and a query is put in the box as the text env
searches it (:func:`~empg_gym.envs.webshop.engine.browser_text`: a valid Unicode string on one line), so any
string gives the text env's result or its invalid-action feedback, never an exception.

## Arguments
As ``EMPG-WebShop-v0`` (``reward_mode="dense"`` too: the potential reads the server's session, which holds the page
the browser shows), plus:

- ``chromium``: Chromium binary (default ``$EMPG_CHROMIUM`` or ``/usr/bin/chromium``).
- ``chromedriver``: chromedriver binary (default ``$EMPG_CHROMEDRIVER`` or ``/usr/bin/chromedriver``).
- ``page_timeout``: seconds to wait for a page (default 15).

The browser starts on the first ``reset`` with a fresh profile in a temporary folder and no network lookups;
``close()`` quits Chromium and chromedriver, stops the server and removes the profile.

## Version history
- v0: initial version.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from empg_gym.core import StepResult
from empg_gym.envs.webshop.engine import admissible, check_action, join_segments
from empg_gym.envs.webshop.env import WebShopTextEnv
from empg_gym.envs.webshop.search import CatalogConfig
from empg_gym.errors import BackendError
from empg_gym.tasks import Task

logger = logging.getLogger(__name__)

#: Chromium flags: headless, no sandbox/GPU/shm, and nothing that reaches the network.
CHROMIUM_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--metrics-recording-only",
    "--password-store=basic",
    "--window-size=1200,900",
)

# Reads the page in one round trip: visible text nodes of <body>, clickables, and whether there is a search box.
_READ_PAGE_JS = """
const skip = 'script,style,noscript,template';
const texts = [];
const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
while (walker.nextNode()) {
  const node = walker.currentNode;
  if (node.parentElement && node.parentElement.closest(skip)) continue;
  texts.push(node.nodeValue);
}
return {
  page: document.body.dataset.page || '',
  texts: texts,
  buttons: Array.from(document.querySelectorAll('button.btn')).map(b => b.textContent.trim().toLowerCase()),
  links: Array.from(document.querySelectorAll('a.product-link')).map(a => a.textContent.trim().toLowerCase()),
  radios: Array.from(document.querySelectorAll('input[type=radio]')).map(r => r.value),
  search: document.getElementById('search_input') !== null,
};
"""

# True once a new document (without the old window's mark) has loaded.
_READY_JS = "return window.__empgMark !== arguments[0] && document.readyState === 'complete' && !!document.body;"

# Returns the element to click for a clickable: the first button, else product link, else the last radio.
_FIND_JS = """
const key = arguments[0];
for (const b of document.querySelectorAll('button.btn')) if (b.textContent.trim().toLowerCase() === key) return b;
for (const a of document.querySelectorAll('a.product-link')) if (a.textContent.trim().toLowerCase() === key) return a;
let last = null;
for (const r of document.querySelectorAll('input[type=radio]')) if (r.value === key) last = r;
return last;
"""


@dataclass(frozen=True)
class DomPage:
    """A page as read from the browser: what :func:`check_action` and :func:`admissible` need."""

    kind: str
    texts: tuple[str, ...]
    buttons: tuple[str, ...]
    links: tuple[str, ...]
    radios: tuple[str, ...]
    has_search_bar: bool

    def clickables(self) -> list[str]:
        """Buttons, product links and option values, as WebShop collects them."""
        return list(dict.fromkeys(self.buttons + self.links + self.radios))

    def text(self) -> str:
        """Return the page as `` [SEP] `` text."""
        return join_segments(self.texts)


class WebShopBrowserEnv(WebShopTextEnv):
    """WebShop in headless Chromium (see the module docstring)."""

    def __init__(
        self,
        *,
        split: str = "train",
        catalog: CatalogConfig | Mapping[str, Any] | None = None,
        render_mode: str | None = None,
        chromium: str | None = None,
        chromedriver: str | None = None,
        page_timeout: float = 15.0,
        reward_mode: str = "sparse",
    ) -> None:
        super().__init__(split=split, catalog=catalog, render_mode=render_mode, reward_mode=reward_mode)
        self.chromium = chromium or os.environ.get("EMPG_CHROMIUM", "/usr/bin/chromium")
        self.chromedriver = chromedriver or os.environ.get("EMPG_CHROMEDRIVER", "/usr/bin/chromedriver")
        self.page_timeout = float(page_timeout)
        self._server: Any = None
        self._driver: Any = None
        self._profile: str | None = None
        self._sid = f"env{os.getpid()}x{id(self):x}"
        self._page: DomPage | None = None
        self._reward: float | None = None

    # -------------------------------------------------------------------------------------- lifecycle
    def _ensure_started(self) -> None:
        if self._server is None:
            from empg_gym.envs.webshop.server import BackgroundServer, ShopApp

            self._server = BackgroundServer(ShopApp(self.store, self.split))
        if self._driver is None:
            self._driver = self._start_driver()

    def _start_driver(self) -> Any:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service

        for path, what in ((self.chromium, "Chromium"), (self.chromedriver, "chromedriver")):
            if not os.path.isfile(path):
                raise BackendError(
                    f"{what} not found at {path!r}; install Debian's chromium and chromium-driver, or pass "
                    f"chromium=/chromedriver= (or set EMPG_CHROMIUM / EMPG_CHROMEDRIVER)."
                )
        self._profile = tempfile.mkdtemp(prefix="empg-webshop-chromium-")
        options = webdriver.ChromeOptions()
        options.binary_location = self.chromium
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={self._profile}"):
            options.add_argument(flag)
        try:
            driver = webdriver.Chrome(service=Service(self.chromedriver), options=options)
        except WebDriverException as e:
            shutil.rmtree(self._profile, ignore_errors=True)
            raise BackendError(f"Chromium did not start: {e.msg or e}") from None
        driver.set_page_load_timeout(self.page_timeout)
        return driver

    def close(self) -> None:
        """Quit Chromium and chromedriver, stop the server, and remove the browser profile."""
        if self._driver is not None:
            try:
                self._driver.quit()
            except Exception as e:  # noqa: BLE001  (a dead browser must not stop the clean-up)
                logger.warning("quitting Chromium failed: %s", e)
            self._driver = None
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._profile is not None:
            shutil.rmtree(self._profile, ignore_errors=True)
            self._profile = None
        super().close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110  (interpreter shutdown)
            pass

    # ------------------------------------------------------------------------------------------ pages
    def _navigate(self, do: Any) -> DomPage:
        """Run ``do()`` (which loads a new document) and wait until the new page is ready; return it.

        The old document's window carries a random mark; the new one is ready when its window lacks the mark
        and it has finished loading (``click()`` itself does not wait for the navigation it starts).
        """
        from selenium.common.exceptions import TimeoutException, WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        driver = self._driver
        mark = secrets.token_hex(8)
        try:
            driver.execute_script("window.__empgMark = arguments[0];", mark)
        except WebDriverException:
            pass  # no document yet (the first page of a fresh browser)
        try:
            do()
            wait = WebDriverWait(driver, self.page_timeout, poll_frequency=0.005, ignored_exceptions=(WebDriverException,))
            wait.until(lambda d: d.execute_script(_READY_JS, mark))
            raw = driver.execute_script(_READ_PAGE_JS)
        except TimeoutException:
            raise BackendError(f"The page did not load within {self.page_timeout} s ({driver.current_url}).") from None
        page = DomPage(
            raw["page"], tuple(raw["texts"]), tuple(raw["buttons"]), tuple(raw["links"]), tuple(raw["radios"]),
            bool(raw["search"]),
        )  # fmt: skip
        self._page = page
        return page

    def _start_task(self, task: Task) -> str:
        self._ensure_started()
        self._reward = None
        self._viewed = {}
        url = f"{self._server.url}/start/{self._sid}?task_id={quote(task.task_id, safe='')}"
        page = self._navigate(lambda: self._driver.get(url))
        self._session = self._server.app.session(self._sid)  # the server's session: read only by the oracle
        return page.text()

    def _current_view(self) -> DomPage:
        """Return the page as last read from the browser."""
        return self._page

    def _step(self, action: str) -> StepResult:
        page = self._page
        parsed, reason = check_action(action, page)
        if page.kind == "done":
            parsed, reason = None, "the purchase is complete; start a new session"
        if parsed is None:
            return self._invalid_action(reason)
        name, arg = parsed
        page = self._navigate(lambda: self._search(arg) if name == "search" else self._click(arg))
        if page.kind != "done":
            return StepResult(page.text())
        shown = [t.strip() for t in page.texts if t.strip()]
        try:
            self._reward = float(shown[-1])
        except (IndexError, ValueError):
            raise BackendError(f"The done page shows no score: {page.text()[:200]!r}.") from None
        info = {"reward_info": dict(self._session.reward_info)}
        return StepResult(page.text(), reward=self._reward, terminated=True, extra_info=info)

    def _search(self, keywords: str) -> None:
        from selenium.webdriver.common.by import By

        box = self._driver.find_element(By.ID, "search_input")
        self._driver.execute_script("arguments[0].value = arguments[1];", box, keywords)
        self._driver.find_element(By.CSS_SELECTOR, "button.btn-search").click()

    def _click(self, target: str) -> None:
        element = self._driver.execute_script(_FIND_JS, target)
        if element is None:
            raise BackendError(f"No element for clickable {target!r} on {self._driver.current_url}.")
        element.click()

    # ------------------------------------------------------------------------------------------ status
    def admissible_actions(self) -> list[str]:
        """Return the clicks of the page in the browser, and the search template where the search box is."""
        if self._page is None or self._page.kind == "done":
            return []
        return admissible(self._page)

    def _won(self) -> bool:
        return self._reward == 1.0

    def _score(self) -> float:
        return float(self._reward or 0.0)

    def oracle_actions(self) -> list[str]:
        """Return actions that buy the goal's product with the goal's options (reward 1)."""
        return super().oracle_actions()


__all__ = ["CHROMIUM_FLAGS", "DomPage", "WebShopBrowserEnv"]
