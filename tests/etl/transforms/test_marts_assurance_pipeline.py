"""The assurance, customer and quality marts through the real runner: raw rows in, staging by the staging
models, marts out, in one in-memory DuckDB (the contract between staging and these marts, end to end)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb
import pytest

from etl.contracts import SOURCES
from etl.load import ensure_schema
from etl.transforms.checks import REGISTERED, run_checks
from etl.transforms.run import build

_spec = importlib.util.spec_from_file_location("marts_testdata", Path(__file__).with_name("marts_testdata.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)


def _load_raw(con: duckdb.DuckDBPyConnection, rows: td.Rows) -> None:
    """Land the contract columns of staging-shaped test rows in raw.<source>, as the loader would."""
    ensure_schema(con)
    for name, given in td.complete(rows).items():
        source = name.partition(".")[2]
        if not name.startswith("staging.") or source not in SOURCES:
            continue
        data = td.arrow_table(name, given).select(list(SOURCES[source].column_names))
        con.register("landing", data)
        con.execute(f"INSERT INTO raw.{source} BY NAME SELECT *, 'test.csv' AS _file, 1 AS _line, "
                    "1 AS _load_id FROM landing")
        con.unregister("landing")


@pytest.fixture(scope="module")
def warehouse():
    con = duckdb.connect()
    _load_raw(con, td.base_rows())
    build(con)
    yield con
    con.close()


def test_alarm_rule_end_to_end(warehouse):
    got = warehouse.execute("SELECT alarm_id, customer_id FROM marts.alarm_customers ORDER BY 1, 2").fetchall()
    assert got == [("A1", "K2"), ("A2", "K3")]
    impact = warehouse.execute(
        "SELECT alarm_id, n_cells_affected, cell_ids, n_customers_affected, is_open FROM marts.alarm_impact "
        "ORDER BY 1").fetchall()
    assert impact == [("A1", 2, "C1,C2", 1, False), ("A2", 1, "C3", 1, True)]


def test_customer_marts_end_to_end(warehouse):
    got = warehouse.execute(
        "SELECT customer_id, n_events, usage_revenue, main_cell_id, n_alarms_affected FROM marts.customer_360 "
        "ORDER BY 1").fetchall()
    assert got == [("K1", 5, 10.0, "C1", 0), ("K2", 4, 11.0, "C2", 1), ("K3", 3, 2.5, "C1", 1),
                   ("K4", 1, 1.0, "C1", 0)]
    n = warehouse.execute("SELECT count(*) FROM marts.churn_features").fetchone()[0]
    assert n == 4  # one snapshot (2026-03-13), four customers with a subscription active then


def test_quality_marts_end_to_end(warehouse):
    checks = dict(warehouse.execute('SELECT "check", n FROM marts.data_quality').fetchall())
    assert (checks["cells_without_kpis"], checks["sites_without_cells"], checks["duplicate_msisdn"]) == (1, 1, 0)
    loaded = dict(warehouse.execute("SELECT source, n_rows FROM marts.freshness WHERE n_rows > 0").fetchall())
    assert loaded == {"sites": 3, "cells": 4, "customers": 4, "subscriptions": 5, "charging": 13,
                      "kpi_hourly": 4, "alarms": 2}


def test_the_hourly_marts_hold_every_event_of_their_hours(warehouse):
    passed = dict(warehouse.execute("SELECT name, passed FROM meta.checks").fetchall())
    assert passed["reconcile:assurance_usage_hours"] is True
    assert "skipped" not in warehouse.execute(
        "SELECT description FROM meta.checks WHERE name = 'reconcile:assurance_usage_hours'").fetchone()[0]


def test_the_reconciliation_finds_an_event_the_hourly_marts_miss(warehouse):
    check = REGISTERED["reconcile:assurance_usage_hours"]
    cur = warehouse.cursor()
    try:
        cur.execute("BEGIN")
        cur.execute("DELETE FROM marts.customer_roaming_hourly")  # K2's roaming event U09 on 2026-03-06
        cur.execute("UPDATE marts.cell_customers SET n_events = n_events + 1 WHERE customer_id = 'K4'")
        [result] = run_checks(cur, [check])
        assert not result.passed and result.n_bad == 2
        bad = {(e["what"], str(e["day"])) for e in result.examples}
        assert bad == {("events per day", "2026-03-06"), ("cell_customers events", "None")}
    finally:
        cur.execute("ROLLBACK")
