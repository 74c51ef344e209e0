"""The app's per-process objects, found through the Flask app that serves the request (no globals)."""

from __future__ import annotations

from flask import current_app

from app.warehouse import WarehouseReader
from etl.config import Settings


def reader() -> WarehouseReader:
    return current_app.extensions["opencem.warehouse"]


def settings() -> Settings:
    return current_app.extensions["opencem.settings"]
