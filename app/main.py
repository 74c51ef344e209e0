"""The Dash app's frame: `create_app(settings)` builds it; `server` (lazily) serves it under a WSGI server.

Production: `gunicorn --workers 4 --bind 127.0.0.1:8050 'app.main:create_server()'` (see README). Each
worker reads the published warehouse read-only; no work happens at import time.
"""

from __future__ import annotations

import gc
import importlib
import threading
from pathlib import Path

import dash
import dash_mantine_components as dmc
import duckdb
import flask
from dash import Dash, dcc, html

from app import auth, figures, queries
from app.components import create_dev_banner, create_header
from app.compression import install_compression
from app.constants import APP_TITLE
from app.context import reader
from app.warehouse import NoWarehouse, WarehouseReader
from etl.config import Settings
from etl.errors import UsageError

PAGES = ("app.pages.overview", "app.pages.zone", "app.pages.assurance",
         "app.pages.search", "app.pages.customer", "app.pages.churn", "app.pages.login", "app.pages.not_found")
HERE = Path(__file__).resolve().parent


def create_app(settings: Settings | None = None) -> Dash:
    """A new app on the warehouse `settings` names; pages are registered once per process."""
    settings = settings or Settings.from_env()
    app = Dash(
        "app",
        use_pages=True,
        pages_folder="",  # the page modules are imported below, once, as ordinary modules
        assets_folder=str(HERE / "assets"),
        serve_locally=True,
        title=APP_TITLE,
        suppress_callback_exceptions=True,
        update_title=None,
    )
    for name in PAGES:
        module = importlib.import_module(name)
        # Dash fills in `layout` only for the pages it imports itself; these are imported as modules.
        dash.page_registry[name]["layout"] = module.layout
    app.server.extensions["opencem.warehouse"] = WarehouseReader(settings.warehouse_dir)
    app.server.extensions["opencem.settings"] = settings
    app.server.add_url_rule("/opencem/zones/<version>.geojson", "zones_geojson", _zones_geojson)
    install_compression(app.server)
    _warm_each_version(app.server, settings)
    # Plotly's validators load on first use (about a second): load them now, beside the server starting.
    threading.Thread(target=figures.warm_up, name="opencem-warm-up", daemon=True).start()
    auth.init_app(app, settings)  # login, the role gate on pages and callbacks, the audit log
    _share_page_callbacks(app)
    app.layout = _shell  # a function: the header shows who is signed in and only the pages they may open
    return app


def _shell() -> dmc.MantineProvider:
    """The frame of every page for the current viewer: header, development-mode banner, the page."""
    viewer = auth.current_viewer()
    state = auth.auth_state()
    dev = bool(state and state.dev_mode)
    header = create_header(user=viewer.name if viewer else None,
                           role_label=viewer.role_label if viewer else None,
                           may_open=lambda page: auth.page_allows(page, viewer), dev_mode=dev)
    banner = [create_dev_banner(viewer.role_label)] if dev and viewer else []
    return dmc.MantineProvider(
        dmc.AppShell(
            [
                dmc.AppShellHeader(header, px="md"),
                dmc.AppShellMain(
                    html.Div([*banner, dcc.Location(id="nav", refresh="callback-nav"), dash.page_container],
                             style={"padding": "12px 20px"}),
                ),
            ],
            header={"height": 56},
        ),
        forceColorScheme="light",
    )


#: Server callbacks the page modules registered with `dash.callback`, kept here once collected: Dash hands
#: its global registry to the first app that serves a request and empties it, so a second app in the same
#: process (tests, benchmarks) would otherwise have none.
_PAGE_CALLBACKS: dict = {}
_PAGE_CALLBACK_LIST: list = []
_PAGE_INLINE_SCRIPTS: list = []


def _share_page_callbacks(app: Dash) -> None:
    """Give `app` every callback the page modules registered (Dash's global registry is moved here first)."""
    from dash import _callback

    _PAGE_CALLBACKS.update(_callback.GLOBAL_CALLBACK_MAP)
    _PAGE_CALLBACK_LIST.extend(_callback.GLOBAL_CALLBACK_LIST)
    _PAGE_INLINE_SCRIPTS.extend(_callback.GLOBAL_INLINE_SCRIPTS)
    _callback.GLOBAL_CALLBACK_MAP.clear()
    _callback.GLOBAL_CALLBACK_LIST.clear()
    _callback.GLOBAL_INLINE_SCRIPTS.clear()
    app.callback_map.update({k: dict(v) for k, v in _PAGE_CALLBACKS.items()})
    app._callback_list.extend(dict(c) for c in _PAGE_CALLBACK_LIST)
    app._inline_scripts.extend(_PAGE_INLINE_SCRIPTS)


def _warm_each_version(server: flask.Flask, settings: Settings) -> None:
    """Compute each live version's common answers (`queries.warm`) in a background thread: once when the
    app starts, and again when a request first sees a newly published version."""
    db: WarehouseReader = server.extensions["opencem.warehouse"]
    state = {"version": None}
    lock = threading.Lock()

    def warm() -> None:
        gc.unfreeze()  # the previous version's answers may go now
        try:
            queries.warm(db, settings.kpi_thresholds)
            queries.zones_outline_bytes(db)
            for name in PAGES:  # then each page's own answers, where a page has them
                page_warm = getattr(importlib.import_module(name), "warm", None)
                if page_warm is not None:
                    page_warm(db, settings)
        except (NoWarehouse, duckdb.Error) as exc:  # the requests that need an answer compute it and say why
            server.logger.warning("could not compute the common answers of the live version ahead: %s", exc)
            with lock:
                state["version"] = None  # try again on a later request
        # The libraries and the version's answers (a few hundred thousand objects) live as long as the version:
        # kept out of the cycle collector's full passes, which otherwise stall a request for 50-150 ms now and then.
        gc.freeze()

    def maybe_start() -> None:
        try:
            version = db.version.name
        except NoWarehouse:
            return
        with lock:
            if state["version"] == version:
                return
            state["version"] = version
        threading.Thread(target=warm, name="opencem-warm-queries", daemon=True).start()

    maybe_start()
    server.before_request(maybe_start)


def _zones_geojson(version: str) -> flask.Response:
    """The zone outlines of the live version as GeoJSON; the URL names the version, so browsers cache it."""
    db = reader()
    try:
        live = db.version.name
    except NoWarehouse:
        flask.abort(404)
    if version != live:  # an old page asking for outlines of a version that is gone: send it the live one
        return flask.redirect(f"/opencem/zones/{live}.geojson")
    response = flask.Response(queries.zones_outline_bytes(db), mimetype="application/geo+json")
    response.headers["Cache-Control"] = "public, max-age=86400, immutable"
    return response


def create_server(settings: Settings | None = None):
    """The WSGI callable, for gunicorn's factory syntax: `'app.main:create_server()'`."""
    return create_app(settings).server


def __getattr__(name: str):
    # `app.main:server` works for WSGI servers without building the app at import time.
    if name == "server":
        return create_server()
    raise AttributeError(name)


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8050, debug: bool = False) -> None:
    """Serve with the development server (one process, threaded). Development mode (no login) is served on
    a loopback address only."""
    if settings.dev_mode and host not in ("127.0.0.1", "localhost", "::1"):
        raise UsageError(f"development mode has no login, so it is served on 127.0.0.1 only, not {host}: "
                         "set up users with `opencem user add` and serve without OPENCEM_DEV_MODE")
    create_app(settings).run(host=host, port=port, debug=debug)
