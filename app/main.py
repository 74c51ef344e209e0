"""The Dash app's frame: `create_app(settings)` builds it; `server` (lazily) serves it under a WSGI server.

Production: `gunicorn --workers 4 --bind 127.0.0.1:8050 'app.main:create_server()'` (see README). Each
worker reads the published warehouse read-only; no work happens at import time.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import dash
import dash_mantine_components as dmc
import flask
from dash import Dash, dcc, html

from app import queries
from app.components import create_header
from app.compression import install_compression
from app.constants import APP_TITLE
from app.context import reader
from app.warehouse import NoWarehouse, WarehouseReader
from etl.config import Settings

PAGES = ("app.pages.overview", "app.pages.zone", "app.pages.assurance", "app.pages.not_found")
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
    app.layout = dmc.MantineProvider(
        dmc.AppShell(
            [
                dmc.AppShellHeader(create_header(), px="md"),
                dmc.AppShellMain(
                    html.Div([dcc.Location(id="nav", refresh="callback-nav"), dash.page_container],
                             style={"padding": "12px 20px"}),
                ),
            ],
            header={"height": 56},
        ),
        forceColorScheme="light",
    )
    return app


def _zones_geojson(version: str) -> flask.Response:
    """The zone outlines of the live version as GeoJSON; the URL names the version, so browsers cache it."""
    db = reader()
    try:
        live = db.version.name
    except NoWarehouse:
        flask.abort(404)
    if version != live:  # an old page asking for outlines of a version that is gone: send it the live one
        return flask.redirect(f"/opencem/zones/{live}.geojson")
    body = db.memo("zones_geojson_bytes", lambda: json.dumps(queries.zones_geojson(db)[0]).encode())
    response = flask.Response(body, mimetype="application/geo+json")
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
    """Serve with the development server (one process, threaded)."""
    create_app(settings).run(host=host, port=port, debug=debug)
