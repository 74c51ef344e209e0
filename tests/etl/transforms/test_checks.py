"""Checks return the bad rows: keys, ranges, revenue reconciliation, reject rates, and meta.checks."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json

import duckdb
import pytest

from etl.errors import CheckFailed
from etl.geo import build_geo
from etl.transforms.checks import (
    Check,
    key_check,
    range_checks,
    reject_rate_check,
    run_checks,
    usage_revenue_check,
    write_checks,
)
from etl.transforms.registry import Model
from etl.transforms.run import build


@pytest.fixture
def con():
    c = duckdb.connect()
    c.execute("CREATE SCHEMA marts")
    yield c
    c.close()


def test_key_check_returns_duplicates_and_null_keys(con):
    con.execute("CREATE TABLE marts.t AS SELECT * FROM (VALUES ('a', 1), ('a', 1), ('b', 1), (NULL, 2), "
                "('c', 3)) v(k1, k2)")
    m = Model(name="marts.t", grain="one row per k1, k2", key=("k1", "k2"), depends_on=(), build=lambda t: t)
    (r,) = run_checks(con, [key_check(m)])
    assert (r.name, r.passed, r.n_bad) == ("key:marts.t", False, 2)
    assert sorted(r.examples, key=lambda e: (e["k1"] is None, str(e["k1"]))) == [
        {"k1": "a", "k2": 1, "n_rows": 2}, {"k1": None, "k2": 2, "n_rows": 1}]


def test_a_key_check_by_dates_reads_only_those_dates(con):
    """After an incremental build the key check of a date-partitioned table reads the rebuilt dates only."""
    con.execute("CREATE TABLE marts.d AS SELECT * FROM (VALUES ('a', DATE '2026-03-01'), ('a', DATE '2026-03-01'), "
                "('b', DATE '2026-03-02'), ('b', DATE '2026-03-02'), ('c', NULL), ('c', NULL)) v(k, day)")
    m = Model(name="marts.d", grain="one row per k per day", key=("k", "day"), nullable_key=("day",),
              depends_on=(), build=lambda t: t, partition="day")
    assert m.key_within_date
    whole, first, second, none, null = run_checks(con, [
        key_check(m), key_check(m, dates={dt.date(2026, 3, 1)}), key_check(m, dates={dt.date(2026, 3, 2)}),
        key_check(m, dates=set()), key_check(m, dates={None})])
    assert (whole.n_bad, first.n_bad, second.n_bad, none.n_bad, null.n_bad) == (3, 1, 1, 0, 1)
    assert first.examples == ({"k": "a", "day": "2026-03-01", "n_rows": 2},)
    assert "1 date(s) this build rebuilt" in first.description
    hourly = dataclasses.replace(m, name="marts.h", key=("k", "hour_at"))
    assert not hourly.key_within_date  # a key without the date could repeat across dates
    with pytest.raises(ValueError, match="within one partition date"):
        key_check(hourly, dates={dt.date(2026, 3, 1)})
    assert dataclasses.replace(hourly, key_fixes_partition=True).key_within_date


def test_a_one_column_key_by_dates_reads_the_rows_sharing_a_key_with_those_dates(con):
    """A key that does not fix the date (an event id) may repeat across dates: after an incremental build
    the check reads the rebuilt dates' rows and every row with one of their keys, not the rest."""
    d1, d2 = dt.date(2026, 3, 1), dt.date(2026, 3, 2)
    con.execute("CREATE TABLE marts.e (id VARCHAR, day DATE)")
    con.executemany("INSERT INTO marts.e VALUES (?, ?)", [
        ("a", d1), ("a", d2),  # across an old date and a rebuilt one: found
        ("b", d1), ("b", d1),  # both on an old date, checked when it was built: not read
        (None, d2), ("c", d2),
    ])
    m = Model(name="marts.e", grain="one row per event", key=("id",), depends_on=(), build=lambda t: t,
              partition="day")
    assert not m.key_within_date
    whole, scoped, old = run_checks(con, [key_check(m), key_check(m, dates={d2}), key_check(m, dates={d1})])
    assert whole.n_bad == 3 and scoped.n_bad == 2 and old.n_bad == 2
    assert sorted(scoped.examples, key=str) == sorted([{"id": "a", "n_rows": 2}, {"id": None, "n_rows": 1}], key=str)
    assert "rows whose key is on the 1 date(s) this build rebuilt" in scoped.description


def test_range_checks_cover_percentages_and_completeness(con):
    con.execute("CREATE TABLE marts.k AS SELECT * FROM (VALUES (100.0, 1.0, 5.0), (100.5, 0.5, 500.0), "
                "(NULL, 1.2, 1.0)) v(availability_pct, completeness, latency_ms)")
    results = {r.name: r for r in run_checks(con, range_checks("marts.k", ["availability_pct", "completeness",
                                                                           "latency_ms"]))}
    assert set(results) == {"range:marts.k:availability_pct", "range:marts.k:completeness"}
    assert results["range:marts.k:availability_pct"].n_bad == 1
    assert results["range:marts.k:completeness"].examples == ({"availability_pct": None, "completeness": 1.2,
                                                                "latency_ms": 1.0},)


def test_usage_revenue_must_reconcile_to_the_cent(con):
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.charging AS SELECT * FROM (VALUES (TIMESTAMP '2026-03-02 10:00', 'prepaid', "
                "1.10), (TIMESTAMP '2026-03-02 11:00', 'prepaid', 2.20)) v(usage_at, payment_type, amount)")
    con.execute("CREATE TABLE marts.zone_daily AS SELECT * FROM (VALUES ('Z1', DATE '2026-03-02', 'prepaid', "
                "3.3049)) v(zone_id, date, payment_type, usage_revenue)")
    (ok,) = run_checks(con, [usage_revenue_check()])
    assert ok.passed
    con.execute("UPDATE marts.zone_daily SET usage_revenue = 3.31")
    (bad,) = run_checks(con, [usage_revenue_check()])
    assert not bad.passed and bad.examples[0]["landed_revenue"] == pytest.approx(3.3)


def test_reject_rate_check_reads_the_latest_load(con):
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE TABLE raw.manifest AS SELECT * FROM (VALUES ('a.csv', 'charging', 100, 40, 1), "
                "('b.csv', 'charging', 100, 10, 2), ('c.csv', 'cells', 10, 5, 2)) "
                "v(file, source, rows_read, rows_quarantined, load_id)")
    (r,) = run_checks(con, [reject_rate_check(0.25)])
    assert [e["source"] for e in r.examples] == ["cells"] and r.n_bad == 1


def test_a_check_on_a_missing_table_is_skipped_and_a_broken_query_fails(con):
    con.execute("CREATE TABLE marts.t AS SELECT 1 AS k")
    skipped, broken = run_checks(con, [
        Check(name="x", table="marts.nope", sql="SELECT 1", description="d"),
        Check(name="y", table="marts.t", sql="SELECT * FROM marts.t WHERE no_such_column > 0", description="d"),
    ])
    assert skipped.passed and "skipped" in skipped.description
    assert not broken.passed and "error" in broken.examples[0]


def test_results_are_written_to_meta_checks(con):
    con.execute("CREATE TABLE marts.t AS SELECT 1 AS k UNION ALL SELECT 1")
    m = Model(name="marts.t", grain="g", key=("k",), depends_on=(), build=lambda t: t)
    results = run_checks(con, [key_check(m)])
    write_checks(con, results, engine="duckdb", checked_at=dt.datetime(2026, 3, 2))
    (row,) = con.execute('SELECT name, "table", passed, n_bad, examples FROM meta.checks').fetchall()
    assert row[:4] == ("key:marts.t", "marts.t", False, 1)
    assert json.loads(row[4]) == [{"k": 1, "n_rows": 2}]


def test_a_tampered_mart_fails_reconciliation_when_built(raw_db, zt, monkeypatch):
    """The checks run on what the build wrote: a mart that loses revenue fails the build."""
    import etl.transforms.marts_zone as mz

    rows = {"zones": [zt.square("Z1", 0)], "sites": [{"site_id": "S1", "latitude": 0.005, "longitude": 0.005}],
            "cells": [{"cell_id": "C1", "site_id": "S1"}], "customers": [{"customer_id": "K1"}],
            "subscriptions": [{"subscription_id": "P1", "customer_id": "K1"}],
            "charging": [{"usage_id": f"U{i}", "subscription_id": "P1", "cell_id": "C1", "amount": 1.0,
                          "usage_at": dt.datetime(2026, 3, 2, i)} for i in range(3)]}
    con = raw_db(rows)
    build_geo(con)
    from etl.transforms.registry import MODELS

    original = mz.zone_daily

    def lossy(tables):
        t = original(tables)
        return t.mutate(usage_revenue=t.usage_revenue * 0.99)

    monkeypatch.setitem(MODELS, "marts.zone_daily", dataclasses.replace(MODELS["marts.zone_daily"], build=lossy))
    with pytest.raises(CheckFailed, match="reconcile:usage_revenue"):
        build(con, only=("marts.zone_daily",))
