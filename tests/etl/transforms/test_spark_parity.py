"""Spark parity: every registered model built on DuckDB and on PySpark from one fixture gives the same rows.

Skips with the reason when pyspark or Java is missing, except in CI (CI=true), where it must run.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import os
import shutil

import pytest

from etl.geo import build_geo
from etl.transforms import load_models
from etl.transforms.run import build, build_order, spark_session

pytestmark = [pytest.mark.spark, pytest.mark.slow]

T0 = dt.datetime(2026, 3, 30, 0, 0)  # two days across a month end


def _spark_missing() -> str | None:
    if importlib.util.find_spec("pyspark") is None:
        return "pyspark is not installed (pip install -e '.[spark]')"
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        return "Java is not installed (pyspark needs a JVM, e.g. Debian's openjdk-17-jre-headless)"
    return None


def fixture_rows(zt) -> dict:
    """A small operator touching every source: 3 zones, 3 sites, 5 cells, 4 customers, 2 days of events."""
    h = lambda n: T0 + dt.timedelta(hours=n)
    cells = [("C1", "S1"), ("C2", "S1"), ("C3", "S2"), ("C4", "S3"), ("C5", "S3")]
    kpis = []
    for i, (cell, _) in enumerate(cells):
        for n in range(0, 48, 5 + i):  # gaps differ per cell: completeness differs
            kpis.append({
                "cell_id": cell, "period_start": h(n), "availability_pct": 100.0 - (n % 7),
                "drop_rate_pct": 0.3 * (n % 5) + i, "traffic_volume_mb": 50.0 + 13 * n + i,
                "latency_ms": 20.0 + n % 9, "dl_throughput_mbps": 5.0 + 3 * i + n % 4,
                "prb_utilisation_pct": 30.0 + 2 * n % 60,
                **({"unavailable_time_s": float(60 * (n % 4)), "rrc_setup_attempts": 100 + n,
                    "rrc_setup_successes": 95 + n, "erab_setup_attempts": 80, "erab_setup_successes": 79,
                    "erab_releases": 500, "erab_abnormal_releases": n % 6, "dl_active_time_s": 900.0}
                   if cell in ("C1", "C4") else {}),
            })
    subs = [("P1", "K1", "prepaid", 31.0), ("P2", "K2", "postpaid", 45.0), ("P3", "K3", "postpaid", 20.0),
            ("P4", "K4", "prepaid", 9.99), ("P5", "K1", "postpaid", 15.0)]
    charging = []
    for n in range(40):
        sub = subs[n % 5]
        charging.append({
            "usage_id": f"U{n:03d}", "subscription_id": sub[0], "usage_at": h(n + 0.25),
            "cell_id": None if n % 11 == 0 else cells[n % 5][0],
            "service": ("voice", "sms", "data", "vas")[n % 4] if n % 11 else "roaming",
            "amount": round(0.1 + 0.37 * n, 2), "payment_type": sub[2],
        })
    return {
        "zones": [zt.square("Z1", 0), zt.square("Z2", 1), zt.square("Z3", 2)],
        "sites": [{"site_id": "S1", "latitude": 0.005, "longitude": 0.005},
                  {"site_id": "S2", "latitude": 0.005, "longitude": 0.015},
                  {"site_id": "S3", "latitude": 0.005, "longitude": 0.0302}],  # just outside: nearest Z3
        "cells": [{"cell_id": c, "site_id": s} for c, s in cells],
        "customers": [{"customer_id": "K1", "home_latitude": 0.001, "home_longitude": 0.001,
                       "segment": "vip"},
                      {"customer_id": "K2", "home_latitude": 0.009, "home_longitude": 0.019},
                      {"customer_id": "K3", "segment": "business"}, {"customer_id": "K4"}],
        "subscriptions": [{"subscription_id": s, "customer_id": c, "payment_type": p, "monthly_fee": f,
                           "msisdn": f"+3361234567{i}",
                           "termination_date": dt.date(2026, 3, 31) if s == "P3" else None,
                           "status": "terminated" if s == "P3" else "active"}
                          for i, (s, c, p, f) in enumerate(subs)],
        "promotions": [{"promotion_id": "R1", "subscription_id": "P2", "valid_from": dt.date(2026, 3, 1),
                        "valid_to": dt.date(2026, 3, 30), "discount": 25.0}],
        "charging": charging,
        "topups": [{"topup_id": "T1", "subscription_id": "P1", "topup_at": h(3)},
                   {"topup_id": "T2", "subscription_id": "P4", "topup_at": h(30), "amount": 5.0}],
        "bills": [{"bill_id": "B1", "customer_id": "K2", "bill_date": dt.date(2026, 3, 31),
                   "billing_period_start": dt.date(2026, 3, 1), "billing_period_end": dt.date(2026, 3, 31),
                   "amount_due": 60.0, "amount_paid": 20.0}],
        "tickets": [{"ticket_id": "TK1", "customer_id": "K1", "created_at": h(20),
                     "category": "network_quality"},
                    {"ticket_id": "TK2", "customer_id": "K3", "created_at": h(4), "resolved_at": h(9)}],
        "kpi_hourly": kpis,
        "alarms": [{"alarm_id": "A1", "alarmed_object_id": "S1", "alarmed_object_type": "site",
                    "raised_at": h(10), "cleared_at": h(14)},
                   {"alarm_id": "A2", "alarmed_object_id": "C4", "alarmed_object_type": "cell",
                    "raised_at": h(30)}],
    }


def _rows(con, table: str, key: tuple[str, ...]) -> tuple[list[str], list[tuple]]:
    cur = con.execute(f"SELECT * FROM {table}")
    names = [d[0] for d in cur.description]
    rows = cur.fetchall()
    idx = [names.index(k) for k in key]
    rows.sort(key=lambda r: tuple((r[i] is None, r[i] if r[i] is not None else 0) for i in idx))
    return names, rows


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


def test_every_model_is_the_same_on_duckdb_and_spark(raw_db, zt):
    missing = _spark_missing()
    if missing:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"the Spark parity test must run in CI: {missing}")
        pytest.skip(missing)
    rows = fixture_rows(zt)
    duck, spark = raw_db(rows), raw_db(rows)
    for con in (duck, spark):
        build_geo(con)
    r_duck = build(duck, engine="duckdb")
    session = spark_session(app_name="opencem-parity")
    # tiny data: compiling generated code and re-planning stages cost more than they save
    session.conf.set("spark.sql.codegen.wholeStage", "false")
    session.conf.set("spark.sql.adaptive.enabled", "false")
    session.conf.set("spark.sql.shuffle.partitions", "1")
    try:
        r_spark = build(spark, engine="spark", spark=session)
    finally:
        session.stop()
    assert r_duck.rows == r_spark.rows
    order = build_order(load_models())
    assert {m.name for m in order} <= set(r_duck.rows)
    nonempty = [m.name for m in order if r_duck.rows[m.name]]
    assert {"marts.zone_daily", "marts.zone_kpi_daily", "marts.cell_kpi_daily", "marts.zone_scorecard"} <= set(
        nonempty)
    problems = []
    for m in order:
        names_d, rows_d = _rows(duck, m.name, m.key)
        names_s, rows_s = _rows(spark, m.name, m.key)
        assert names_d == names_s, m.name
        types_d = duck.execute(f"SELECT * FROM {m.name} LIMIT 0").description
        types_s = spark.execute(f"SELECT * FROM {m.name} LIMIT 0").description
        assert [t[1] for t in types_d] == [t[1] for t in types_s], m.name
        for rd, rs in zip(rows_d, rows_s, strict=True):
            diff = [(n, a, b) for n, a, b in zip(names_d, rd, rs) if not _same(a, b)]
            if diff:
                key = {k: rd[names_d.index(k)] for k in m.key}
                problems.append(f"{m.name} {key}: (column, duckdb, spark) {diff}")
                break  # one row per model is enough to point at the difference
    assert not problems, "models differ between DuckDB and Spark:\n" + "\n".join(problems)
