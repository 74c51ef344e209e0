"""The customer page's lookup marts (etl/transforms/marts_search.py): literal raw rows in, mart rows out."""

from __future__ import annotations

import datetime as dt
from typing import Any

import duckdb
import pytest

from app.queries_customer import fold_name, msisdn_digits
from etl.contracts import SOURCES
from etl.transforms.run import build

DUCK = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "date": "DATE",
        "timestamp": "TIMESTAMP", "geometry": "VARCHAR"}
MARTS = ["marts.customer_search", "marts.msisdn_lookup", "marts.customer_usage_daily", "marts.customer_usage_hourly"]
D0 = dt.datetime(2026, 10, 1)
NAMES = ["Ana D'Angelo", "José Müller-Łukasz", "ÉLODIE  o'Brien", None]
NUMBERS = ["+39 312 345 6789", "0039-312-000-1111", "(312) 555 0000", "+393120000002"]


def _raw(con: duckdb.DuckDBPyConnection, rows: dict[str, list[dict[str, Any]]]) -> None:
    """Every raw.<source> table of the contracts, with the given rows (unnamed columns null)."""
    con.execute("CREATE SCHEMA raw")
    for name, src in SOURCES.items():
        cols = [(c.name, DUCK[c.dtype]) for c in src.columns] + [("_file", "VARCHAR"), ("_line", "BIGINT"),
                                                                 ("_load_id", "BIGINT")]
        con.execute(f"CREATE TABLE raw.{name} ({', '.join(f'{c} {t}' for c, t in cols)})")
        for line, row in enumerate(rows.get(name, []), start=2):
            values = [row.get(c.name) for c in src.columns] + [f"{name}.csv", line, 1]
            con.execute(f"INSERT INTO raw.{name} VALUES ({', '.join('?' * len(values))})", values)


@pytest.fixture(scope="module")
def built() -> duckdb.DuckDBPyConnection:
    customers = [{"customer_id": f"K{i}", "name": n, "segment": "consumer", "status": "active",
                  "created_at": D0} for i, n in enumerate(NAMES)]
    subs = [{"subscription_id": f"P{i}", "customer_id": f"K{i % 3}", "msisdn": m, "product_offering": "Basic",
             "payment_type": "prepaid", "status": "active" if i < 3 else "terminated",
             "start_date": dt.date(2025, 1, 1), "monthly_fee": 5.0} for i, m in enumerate(NUMBERS)]
    charging = []
    # K0: voice and data on C1 every day for 10 days (two events in one hour on the last day); K1: data
    # on C2 and a roaming call (no cell); an event of an unknown subscription (no customer) is left out.
    for day in range(10):
        t = D0 + dt.timedelta(days=day, hours=9)
        charging += [
            {"usage_id": f"v{day}", "subscription_id": "P0", "usage_at": t, "service": "voice", "cell_id": "C1",
             "quantity": 120.0, "unit": "second", "amount": 0.1},
            {"usage_id": f"d{day}", "subscription_id": "P0", "usage_at": t + dt.timedelta(minutes=5),
             "service": "data", "cell_id": "C1", "quantity": 50.0, "unit": "megabyte", "amount": 0.2},
        ]
    charging += [
        {"usage_id": "k1d", "subscription_id": "P1", "usage_at": D0 + dt.timedelta(days=9, hours=20),
         "service": "data", "cell_id": "C2", "quantity": 10.0, "unit": "megabyte", "amount": 0.05},
        {"usage_id": "k1r", "subscription_id": "P1", "usage_at": D0 + dt.timedelta(days=9, hours=21),
         "service": "roaming", "cell_id": None, "quantity": 60.0, "unit": "second", "amount": 1.5},
        {"usage_id": "x", "subscription_id": "P9", "usage_at": D0 + dt.timedelta(days=9), "service": "sms",
         "cell_id": "C1", "quantity": 1.0, "unit": "message", "amount": 0.01},
    ]
    for c in charging:
        c.update(currency="EUR", payment_type="prepaid", is_billed=True)
    con = duckdb.connect(":memory:")
    _raw(con, {"customers": customers, "subscriptions": subs, "charging": charging,
               "sites": [{"site_id": "S1", "latitude": 0.0, "longitude": 0.0, "status": "in_service"}],
               "cells": [{"cell_id": c, "site_id": "S1", "technology": "4G", "band_mhz": 1800,
                          "capacity_mbps": 100.0, "status": "in_service"} for c in ("C1", "C2")]})
    result = build(con, only=MARTS)
    assert result.passed, [c for c in result.checks if not c.passed]
    yield con
    con.close()


def test_search_keys_fold_names_like_the_app_and_count_lines(built) -> None:
    rows = built.execute("SELECT customer_id, name_key, n_subscriptions, n_active_subscriptions "
                         "FROM marts.customer_search ORDER BY customer_id").fetchall()
    keys = {r[0]: r[1] for r in rows}
    assert keys["K0"] == " ana d angelo" and keys["K2"] == " elodie o brien"
    for name, (cid, key) in zip(NAMES, sorted(keys.items()), strict=True):
        assert key == " " + fold_name(name or ""), (cid, name, key)
    assert [(r[0], r[2], r[3]) for r in rows] == [("K0", 2, 1), ("K1", 1, 1), ("K2", 1, 1), ("K3", 0, 0)]


def test_numbers_become_digits_like_the_app_folds_them(built) -> None:
    rows = dict(built.execute("SELECT msisdn, msisdn_digits FROM marts.msisdn_lookup").fetchall())
    assert rows == {m: msisdn_digits(m) for m in NUMBERS}
    assert rows["0039-312-000-1111"] == "393120001111" and rows["(312) 555 0000"] == "3125550000"


def test_usage_daily_keeps_every_event_of_known_customers_by_service(built) -> None:
    daily = built.execute("SELECT customer_id, service, sum(n_events), round(sum(amount), 4), sum(data_mb), "
                          "sum(voice_min) FROM marts.customer_usage_daily GROUP BY ALL ORDER BY ALL").fetchall()
    assert daily == [("K0", "data", 10, 2.0, 500.0, 0.0), ("K0", "voice", 10, 1.0, 0.0, 20.0),
                     ("K1", "data", 1, 0.05, 10.0, 0.0), ("K1", "roaming", 1, 1.5, 0.0, 1.0)]


def test_usage_hourly_covers_the_last_seven_loaded_days_on_cells_only(built) -> None:
    rows = built.execute("SELECT customer_id, cell_id, min(hour_at), max(hour_at), count(*), sum(n_events), "
                         "sum(n_voice), sum(n_data) FROM marts.customer_usage_hourly GROUP BY ALL ORDER BY ALL"
                         ).fetchall()
    first_kept = dt.datetime(2026, 10, 4, 9)  # the last loaded date is 10 Oct: 4 to 10 Oct are kept
    assert rows == [("K0", "C1", first_kept, dt.datetime(2026, 10, 10, 9), 7, 14, 7, 7),
                    ("K1", "C2", dt.datetime(2026, 10, 10, 20), dt.datetime(2026, 10, 10, 20), 1, 1, 0, 1)]


def test_lookup_marts_are_stored_in_customer_order(built) -> None:
    for table in MARTS:
        ids = [r[0] for r in built.execute(f"SELECT customer_id FROM {table}").fetchall()]
        assert ids == sorted(ids), table
