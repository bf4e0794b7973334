"""The shop as a real web application (Flask): WebShop's pages for a person or a browser to use.

Routes (every one escapes what it shows; nothing is served from the file system):

- ``GET /`` starts a session with a task of the ``split`` query parameter (default: the server's split), the
  ``seed``-th one if given, else a random one, and redirects to it.
- ``GET /start/<sid>?task_id=...`` (or ``?split=&seed=``) starts or restarts session ``sid``.
- ``GET /page/<sid>`` shows the session's current page (search, results, item, sub-page, done).
- ``POST /act/<sid>`` with ``search_query=...`` or ``click=...`` (forms on the pages), and ``GET
  /act/<sid>?click=<asin>`` (product links) apply one action, then redirect to ``/page/<sid>``. An action the
  page does not offer answers 400 with the reason and the unchanged page.
- ``GET /state/<sid>`` gives the session's page kind, reward and reward components as JSON.

Session ids are 1-64 letters, digits, ``_`` or ``-``; at most :data:`MAX_SESSIONS` are kept (oldest dropped).
Start it with :func:`serve` (``empg-gym serve-webshop``) or ``python -m empg_gym.envs.webshop.server``; it binds
127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import logging
import re
import secrets
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from empg_gym.envs.webshop.engine import SEP, PageView, ShopSession, check_action, shorten
from empg_gym.envs.webshop.search import CatalogConfig, Store, get_store
from empg_gym.errors import ConfigError, TaskNotFoundError
from empg_gym.tasks import check_split

logger = logging.getLogger(__name__)

#: Sessions a server keeps at once (the oldest is dropped beyond that).
MAX_SESSIONS = 1000
_SID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_TEXT_TAGS = frozenset({"h1", "h2", "h3", "h4", "p", "li", "pre"})

PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>WebShop</title>
<link rel="icon" href="data:,">
<style>
body { font-family: sans-serif; max-width: 960px; margin: 2em auto; color: #222; }
form.inline { display: inline-block; margin: 0 .3em .5em 0; }
button.btn { padding: .35em .9em; border: 1px solid #2a6; background: #3b7; color: #fff; border-radius: 4px; }
.product { border-top: 1px solid #ddd; padding: .4em 0; }
.options label { margin-right: .8em; }
.error { color: #b00; border: 1px solid #b00; padding: .5em; }
#search_input { width: 70%; padding: .4em; }
</style>
</head>
<body data-page="{{ view.kind }}">
{% if error %}<div class="error" role="alert">{{ error }}</div>{% endif %}
{% for b in view.blocks %}
{% if b.kind == "text" %}<{{ b.tag }} class="text">{{ b.text }}</{{ b.tag }}>
{% elif b.kind == "button" %}<form class="inline" method="post" action="{{ act_url }}"><button class="btn" type="submit" name="click" value="{{ b.text | lower }}">{{ b.text }}</button></form>
{% elif b.kind == "product" %}<div class="product"><h4><a class="product-link" href="{{ act_url }}?click={{ b.text | lower | urlencode }}">{{ b.text }}</a></h4><h4 class="product-title">{{ b.extra[0] }}</h4><h5 class="product-price">{{ b.extra[1] }}</h5></div>
{% elif b.kind == "options" %}{% set group = loop.index0 %}<div class="options"><h4>{{ b.text }}</h4><form method="post" action="{{ act_url }}">{% for v in b.extra %}<input type="radio" name="click" id="radio_{{ group }}_{{ loop.index0 }}" value="{{ v }}"{% if v == b.selected %} checked{% endif %} onclick="this.form.submit()"><label for="radio_{{ group }}_{{ loop.index0 }}">{{ v }}</label>{% endfor %}</form></div>
{% elif b.kind == "search" %}<form method="post" action="{{ act_url }}"><input id="search_input" type="text" name="search_query" placeholder="Search..." maxlength="{{ max_query }}" required><button class="btn-search" type="submit">Search</button></form>
{% endif %}
{% endfor %}
</body>
</html>
"""


def _check_sid(sid: str) -> str:
    from flask import abort

    if not _SID.match(sid):
        abort(404)
    return sid


class ShopApp:
    """The Flask application over a :class:`Store` plus its sessions (thread-safe)."""

    def __init__(self, store: Store, split: str = "train") -> None:
        import jinja2
        from flask import Flask

        from empg_gym.envs.webshop.engine import MAX_QUERY_CHARS

        self.store = store
        self.split = check_split(split)
        self.sessions: OrderedDict[str, ShopSession] = OrderedDict()
        self.lock = threading.RLock()
        self._max_query = MAX_QUERY_CHARS
        self._template = jinja2.Environment(autoescape=True).from_string(PAGE_TEMPLATE)
        self.flask = Flask(__name__)
        self.flask.config["MAX_CONTENT_LENGTH"] = 64 * 1024
        self._routes()

    # ----------------------------------------------------------------------------------------- sessions
    def start(self, sid: str, task_id: str) -> ShopSession:
        """Start (or restart) session ``sid`` on task ``task_id``."""
        task = self.store.manifest.get(task_id)
        session = ShopSession(self.store, task.goal, dict(task.data))
        with self.lock:
            self.sessions[sid] = session
            self.sessions.move_to_end(sid)
            while len(self.sessions) > MAX_SESSIONS:
                self.sessions.popitem(last=False)
        return session

    def session(self, sid: str) -> ShopSession | None:
        """Return session ``sid`` or ``None``."""
        with self.lock:
            return self.sessions.get(sid)

    def render(self, sid: str, view: PageView, error: str = "") -> str:
        """Return the HTML of ``view`` for session ``sid``."""
        return self._template.render(view=view, act_url=f"/act/{sid}", error=error, max_query=self._max_query)

    # ------------------------------------------------------------------------------------------- routes
    def _routes(self) -> None:
        from flask import abort, jsonify, redirect, request

        app = self.flask

        def pick_task() -> str:
            split = request.args.get("split", self.split)
            try:
                ids = self.store.manifest.task_ids(split)
            except ConfigError as err:
                abort(400, str(err))
            try:
                seed = int(request.args["seed"]) if "seed" in request.args else None
            except ValueError:  # not an integer, or more digits than Python reads (4,300)
                abort(400, f"seed must be an integer, got {shorten(request.args['seed'])!r}; e.g. /?seed=3.")
            if not ids:
                abort(400, f"split {split!r} has no tasks; choose another split.")
            return ids[(secrets.randbelow(len(ids)) if seed is None else seed) % len(ids)]

        @app.get("/")
        def home() -> Any:
            sid = secrets.token_hex(8)
            return redirect(f"/start/{sid}?task_id={_quote(pick_task())}", code=303)

        @app.get("/start/<sid>")
        def start(sid: str) -> Any:
            _check_sid(sid)
            task_id = request.args.get("task_id") or pick_task()
            try:
                self.start(sid, task_id)
            except TaskNotFoundError:
                abort(404, "unknown task id")
            return redirect(f"/page/{sid}", code=303)

        @app.get("/page/<sid>")
        def page(sid: str) -> Any:
            session = self.session(_check_sid(sid)) or abort(404, "unknown session; start one at /")
            with self.lock:
                return self.render(sid, session.view())

        @app.route("/act/<sid>", methods=["GET", "POST"])
        def act(sid: str) -> Any:
            session = self.session(_check_sid(sid)) or abort(404, "unknown session; start one at /")
            values = request.form if request.method == "POST" else request.args
            if "search_query" in values:
                action = f"search[{values.get('search_query', '')}]"
            elif "click" in values:
                action = f"click[{values.get('click', '')}]"
            else:
                abort(400, "expected a search_query or click field")
            with self.lock:
                view = session.view()
                parsed, reason = check_action(action, view)
                if parsed is None or session.page == "done":
                    return self.render(sid, view, error=f"Invalid action: {reason or 'the purchase is complete'}."), 400
                session.act(action)
            return redirect(f"/page/{sid}", code=303)

        @app.get("/state/<sid>")
        def state(sid: str) -> Any:
            session = self.session(_check_sid(sid)) or abort(404, "unknown session")
            with self.lock:
                return jsonify(page=session.page, reward=session.reward, reward_info=session.reward_info)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def create_app(catalog: CatalogConfig | None = None, split: str = "train") -> ShopApp:
    """Return a :class:`ShopApp` over the process-wide store of ``catalog`` (default: the embedded one)."""
    return ShopApp(get_store(catalog or CatalogConfig()), split)


class BackgroundServer:
    """Serve a :class:`ShopApp` from a daemon thread on 127.0.0.1 and a free port; :meth:`close` stops it."""

    def __init__(self, app: ShopApp, host: str = "127.0.0.1", port: int = 0) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class QuietHandler(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        self.app = app
        self._server = make_server(host, port, app.flask, threaded=True, request_handler=QuietHandler)
        self.host, self.port = host, self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, name="webshop-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL of the running server."""
        return f"http://{self.host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()


def serve(
    host: str = "127.0.0.1", port: int = 3000, *, catalog: CatalogConfig | None = None, split: str = "train"
) -> None:
    """Serve the shop until interrupted (blocking). Open ``http://HOST:PORT/`` for a new shopping session."""
    from werkzeug.serving import run_simple

    if host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("serving WebShop on %s: it is reachable from other machines", host)
    app = create_app(catalog, split)
    logger.info("WebShop on http://%s:%s/ (%d products)", host, port, len(app.store.products))
    run_simple(host, port, app.flask, threaded=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m empg_gym.envs.webshop.server [--host H] [--port P] [--split S] ...``."""
    parser = argparse.ArgumentParser(prog="empg-gym serve-webshop", description="Serve the WebShop site.")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=3000, help="port (default: 3000)")
    parser.add_argument("--split", default="train", help="split new sessions draw tasks from")
    parser.add_argument("--n-products", type=int, default=None, help="generate a catalog of this size")
    parser.add_argument("--items", help="WebShop items_shuffle*.json (real catalog)")
    parser.add_argument("--attrs", help="WebShop items_ins_v2*.json (real catalog)")
    parser.add_argument("--human-ins", help="WebShop items_human_ins.json (human goals)")
    args = parser.parse_args(argv)
    if args.items or args.attrs:
        catalog = CatalogConfig("real", items_path=args.items, attrs_path=args.attrs, human_ins_path=args.human_ins)
    else:
        catalog = CatalogConfig(n_products=args.n_products)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    serve(args.host, args.port, catalog=catalog, split=args.split)
    return 0


__all__ = ["SEP", "BackgroundServer", "ShopApp", "create_app", "main", "serve"]

if __name__ == "__main__":
    raise SystemExit(main())
