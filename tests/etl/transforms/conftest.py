"""Raw-table fixtures for the geo, staging, zone-mart, runner and check tests: literal rows in a DuckDB.

`raw_db(rows)` creates every `raw.<source>` table from its contract (as the loader does) in an in-memory
DuckDB and inserts the given rows, filling the columns a test does not care about with contract-valid
defaults. The zone layout is a row of 0.01-degree squares on the equator (Z1 from longitude 0 to 0.01,
Z2 from 0.01 to 0.02, ...): tiny and square, which is fine for tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import duckdb
import pytest

from etl.contracts import SOURCES

DUCK = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "date": "DATE",
        "timestamp": "TIMESTAMP", "geometry": "VARCHAR"}

#: The models the zone tests build (with what they depend on): the other marts are tested elsewhere.
ZONE_MODELS = ("marts.zone_daily", "marts.zone_kpi_daily", "marts.cell_kpi_daily", "marts.zone_scorecard",
               "staging.alarm_cells", "staging.alarms", "staging.bills", "staging.tickets")

DEFAULTS: dict[str, dict[str, Any]] = {
    "zones": {"zone_type": "urban"},
    "sites": {"status": "in_service"},
    "cells": {"technology": "4G", "band_mhz": 1800, "capacity_mbps": 100.0, "status": "in_service",
              "azimuth_deg": None},
    "customers": {"name": "A. Person", "segment": "consumer", "status": "active",
                  "created_at": dt.datetime(2024, 1, 1)},
    "subscriptions": {"msisdn": "+3312345678", "product_offering": "Basic", "payment_type": "prepaid",
                      "status": "active", "start_date": dt.date(2025, 1, 1), "termination_date": None,
                      "monthly_fee": 0.0},
    "promotions": {"promotion_type": "discount", "valid_to": None},
    "charging": {"service": "data", "quantity": 10.0, "unit": "megabyte", "currency": "EUR",
                 "payment_type": "prepaid", "is_billed": True},
    "topups": {"amount": 10.0, "channel": "app"},
    "bills": {"state": "sent", "amount_paid": None},
    "tickets": {"category": "other", "channel": "app", "severity": "low", "status": "resolved",
                "subscription_id": None, "resolved_at": None},
    "kpi_hourly": {"availability_pct": 100.0, "accessibility_pct": 99.5, "drop_rate_pct": 0.5,
                   "dl_throughput_mbps": 50.0, "latency_ms": 20.0, "prb_utilisation_pct": 40.0,
                   "traffic_volume_mb": 100.0},
    "alarms": {"alarm_type": "equipmentAlarm", "perceived_severity": "major", "probable_cause": "x",
               "service_affecting": True, "cleared_at": None},
}


def square(zone_id: str, i: int, *, size: float = 0.01) -> dict[str, Any]:
    """Zone `zone_id`: the i-th square of the row, from longitude i*size to (i+1)*size, latitude 0 to size."""
    x0, x1 = i * size, (i + 1) * size
    return {"zone_id": zone_id, "zone_name": f"Zone {zone_id}",
            "geometry": f"POLYGON(({x0} 0, {x1} 0, {x1} {size}, {x0} {size}, {x0} 0))"}


def create_raw(con: duckdb.DuckDBPyConnection, rows: dict[str, list[dict[str, Any]]], *,
               sources: tuple[str, ...] | None = None) -> None:
    """Create `raw.<source>` for each of `sources` (default: all twelve) and insert `rows`."""
    con.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for name in sources or tuple(SOURCES):
        src = SOURCES[name]
        cols = [(c.name, DUCK[c.dtype]) for c in src.columns] + [
            ("_file", "VARCHAR"), ("_line", "BIGINT"), ("_load_id", "BIGINT")]
        con.execute(f"CREATE TABLE raw.{name} ({', '.join(f'{c} {t}' for c, t in cols)})")
        for line, row in enumerate(rows.get(name, []), start=2):
            full = {**{c.name: None for c in src.columns}, **DEFAULTS.get(name, {}), **row}
            unknown = set(full) - {c.name for c in src.columns}
            assert not unknown, f"test row of {name} has unknown columns {unknown}"
            values = [full[c.name] for c in src.columns] + [f"{name}.csv", line, 1]
            con.execute(f"INSERT INTO raw.{name} VALUES ({', '.join('?' * len(values))})", values)


@pytest.fixture
def raw_db() -> Callable[..., duckdb.DuckDBPyConnection]:
    """A factory: `raw_db(rows, sources=None)` gives an in-memory DuckDB with those raw tables and rows."""
    cons: list[duckdb.DuckDBPyConnection] = []

    def make(rows: dict[str, list[dict[str, Any]]] | None = None, *,
             sources: tuple[str, ...] | None = None) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect()
        create_raw(con, rows or {}, sources=sources)
        cons.append(con)
        return con

    yield make
    for con in cons:
        con.close()


def fetch(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> list[dict[str, Any]]:
    """Rows of a query as dicts (column name -> value)."""
    cur = con.execute(sql, params or [])
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


@pytest.fixture
def zt():
    """Helpers for the zone tests: `zt.square(zone_id, i)`, `zt.fetch(con, sql)`, `zt.ZONE_MODELS`."""
    from types import SimpleNamespace

    return SimpleNamespace(square=square, fetch=fetch, ZONE_MODELS=ZONE_MODELS, create_raw=create_raw)
