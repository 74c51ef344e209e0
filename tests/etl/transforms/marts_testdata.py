"""Staging-shaped test tables for the mart tests: a few literal rows in, typed as the staging contract says.

The mart tests state their input rows literally; this module only fills what every row of a source would
carry anyway (contract defaults, and the derived columns staging adds: usage_date, customer_id and zone_id
of charging rows, kpi_date and zone_id of KPI rows, the cells of each alarm), creates every staging table
(empty when a test gives no rows: a source not loaded) plus `raw.quarantine` and `raw.manifest`, and
builds marts in dependency order, like the runner, on DuckDB or Spark.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from etl.contracts import LOAD_ORDER, SOURCES
from etl.transforms import load_models

Rows = dict[str, list[dict[str, Any]]]

TYPES = {"string": "string", "int": "int64", "float": "float64", "bool": "boolean", "date": "date",
         "timestamp": "timestamp", "geometry": "string"}
#: Derived staging columns the marts read (the staging contract of the task).
DERIVED: dict[str, dict[str, str]] = {
    "sites": {"zone_id": "string"},
    "cells": {"zone_id": "string"},
    "customers": {"home_zone_id": "string"},
    "charging": {"usage_date": "date", "zone_id": "string", "customer_id": "string"},
    "kpi_hourly": {"kpi_date": "date", "zone_id": "string", "period_s": "float64", "available_s": "float64"},
}
OTHER_TABLES: dict[str, dict[str, str]] = {
    "staging.alarm_cells": {"alarm_id": "string", "cell_id": "string"},
    "raw.quarantine": {"source": "string", "file": "string", "line": "int64", "reason": "string",
                       "column": "string", "value": "string", "message": "string", "raw": "string",
                       "load_id": "int64"},
    "raw.manifest": {"file": "string", "source": "string", "sha256": "string", "size_bytes": "int64",
                     "rows_read": "int64", "rows_kept": "int64", "rows_quarantined": "int64",
                     "load_id": "int64", "loaded_at": "timestamp"},
}
#: Values every row of a source has unless the test says otherwise.
DEFAULTS: dict[str, dict[str, Any]] = {
    "sites": {"latitude": 48.0, "longitude": 2.0, "status": "in_service"},
    "cells": {"technology": "4G", "band_mhz": 1800, "capacity_mbps": 100.0, "status": "in_service"},
    "customers": {"segment": "consumer", "status": "active", "created_at": dt.datetime(2024, 1, 1)},
    "subscriptions": {"product_offering": "Basic", "payment_type": "prepaid", "status": "active",
                      "start_date": dt.date(2025, 1, 1), "monthly_fee": 10.0},
    "promotions": {"promotion_type": "discount", "discount": 10.0},
    "charging": {"service": "data", "quantity": 10.0, "unit": "megabyte", "amount": 1.0, "currency": "EUR",
                 "payment_type": "prepaid", "is_billed": True},
    "topups": {"amount": 10.0, "channel": "app"},
    "bills": {"state": "sent"},
    "tickets": {"category": "other", "channel": "app", "severity": "low", "status": "resolved"},
    "kpi_hourly": {"availability_pct": 100.0, "accessibility_pct": 99.0, "drop_rate_pct": 1.0,
                   "dl_throughput_mbps": 20.0, "latency_ms": 30.0, "prb_utilisation_pct": 50.0,
                   "traffic_volume_mb": 100.0},
    "alarms": {"alarm_type": "equipmentAlarm", "perceived_severity": "major", "probable_cause": "power",
               "service_affecting": True},
}


def ts(text: str) -> dt.datetime:
    """A naive UTC timestamp from `YYYY-MM-DD HH:MM[:SS]`."""
    return dt.datetime.fromisoformat(text)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def schema_of(name: str) -> dict[str, str]:
    """Column -> Ibis type of a staging or raw table the marts read."""
    if name in OTHER_TABLES:
        return dict(OTHER_TABLES[name])
    source = name.partition(".")[2]
    cols = {c.name: TYPES[c.dtype] for c in SOURCES[source].columns}
    cols.update(DERIVED.get(source, {}))
    return cols


def complete(rows: Rows) -> Rows:
    """The rows with defaults and staging's derived columns filled in (values given by the test win)."""
    out: Rows = {}
    for name, given in rows.items():
        source = name.partition(".")[2]
        out[name] = [{**DEFAULTS.get(source, {}), **r} for r in copy.deepcopy(given)]
    subs = {r["subscription_id"]: r["customer_id"] for r in out.get("staging.subscriptions", [])}
    cells = {r["cell_id"]: r for r in out.get("staging.cells", [])}
    for r in out.get("staging.charging", []):
        r.setdefault("usage_date", r["usage_at"].date())
        r.setdefault("customer_id", subs.get(r["subscription_id"]))
        r.setdefault("zone_id", cells.get(r.get("cell_id"), {}).get("zone_id"))
    for r in out.get("staging.kpi_hourly", []):
        r.setdefault("kpi_date", r["period_start"].date())
        r.setdefault("zone_id", cells.get(r["cell_id"], {}).get("zone_id"))
        r.setdefault("period_s", 3600.0)
        r.setdefault("available_s", 36.0 * r["availability_pct"])
    if "staging.alarm_cells" not in out:
        out["staging.alarm_cells"] = [
            {"alarm_id": a["alarm_id"], "cell_id": c["cell_id"]}
            for a in out.get("staging.alarms", [])
            for c in cells.values()
            if (a["alarmed_object_type"] == "site" and c["site_id"] == a["alarmed_object_id"])
            or (a["alarmed_object_type"] == "cell" and c["cell_id"] == a["alarmed_object_id"])
        ]
    return out


def arrow_table(name: str, rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """The rows as an Arrow table with the table's full typed schema (absent values are nulls)."""
    schema = ibis.schema(schema_of(name)).to_pyarrow()
    unknown = {k for r in rows for k in r} - set(schema.names)
    assert not unknown, f"{name}: test rows name columns the table does not have: {sorted(unknown)}"
    return pa.Table.from_pylist([{c: r.get(c) for c in schema.names} for r in rows], schema=schema)


def input_names() -> list[str]:
    return [f"staging.{s}" for s in LOAD_ORDER] + list(OTHER_TABLES)


def _is_spark(con: ibis.BaseBackend) -> bool:
    return con.name == "pyspark"


def make_tables(con: ibis.BaseBackend, rows: Rows) -> dict[str, ir.Table]:
    """Create every input table on `con` (those without rows empty) and return them by qualified name.

    On Spark the Arrow tables become temporary views directly (ibis' pandas route would turn empty
    strings into "NaN").
    """
    filled = complete(rows)
    unknown = set(filled) - set(input_names())
    assert not unknown, f"unknown tables in test rows: {sorted(unknown)}"
    tables = {}
    for name in input_names():
        tname = name.replace(".", "__")
        data = arrow_table(name, filled.get(name, []))
        if _is_spark(con):
            con._session.createDataFrame(data).createOrReplaceTempView(tname)
        else:
            con.create_table(tname, ibis.memtable(data), overwrite=True)
        tables[name] = con.table(tname)
    return tables


def build(con: ibis.BaseBackend, rows: Rows, *names: str) -> dict[str, list[dict[str, Any]]]:
    """Build the named marts (and the marts they need, first) on `con`; return each one's rows as dicts."""
    models = load_models()
    tables = make_tables(con, rows)

    def visit(name: str) -> None:
        if name in tables:
            return
        for dep in models[name].depends_on:
            visit(dep)
        tname = name.replace(".", "__")
        expr = models[name].build(tables)
        if _is_spark(con):
            con.create_view(tname, expr, overwrite=True)
        else:
            con.create_table(tname, expr, overwrite=True)
        tables[name] = con.table(tname)

    for name in names:
        visit(name)
    return {name: tables[name].to_pyarrow().to_pylist() for name in names}


def by_key(rows: Sequence[Mapping[str, Any]], *key: str) -> dict[Any, dict[str, Any]]:
    """Rows indexed by their key (one column: its value; several: a tuple)."""
    out = {}
    for r in rows:
        k = r[key[0]] if len(key) == 1 else tuple(r[c] for c in key)
        assert k not in out, f"duplicate key {k}"
        out[k] = dict(r)
    return out


def base_rows() -> Rows:
    """A small operator: two zones of cells, four customers, two alarms, a week of usage and KPIs.

    Alarm A1 (site S1: cells C1, C2) is raised 2026-03-10 12:00; its window is [03-03 12:00, 03-10 12:00).
    K1 has 2 of 4 cell events there on C1/C2 (exactly half: not affected); K2 has 2 of 3 (affected; a
    roaming event without cell adds revenue only); K3 has one event on C2 exactly at the window start and
    one on C3 (half: not affected); K4's only event on C1 is at raised_at itself (outside).
    Alarm A2 (cell C3) is raised 2026-03-12 00:00 and still open; window [03-05 00:00, 03-12 00:00): K3's
    only event in it is on C3 (affected), K1 has 2 of 5 on C3 (not affected). The loaded data ends with
    the KPI hour of 2026-03-12 05:00, so A2 has been open 360 minutes.
    """
    return {
        "staging.sites": [
            {"site_id": "S1", "zone_id": "Z1"}, {"site_id": "S2", "zone_id": "Z2"},
            {"site_id": "S3", "zone_id": "Z2"},
        ],
        "staging.cells": [
            {"cell_id": "C1", "site_id": "S1", "zone_id": "Z1"},
            {"cell_id": "C2", "site_id": "S1", "zone_id": "Z1"},
            {"cell_id": "C3", "site_id": "S2", "zone_id": "Z2"},
            {"cell_id": "C4", "site_id": "S2", "zone_id": "Z2", "status": "decommissioned"},
        ],
        "staging.customers": [
            {"customer_id": "K1", "name": "Ann", "segment": "vip", "home_zone_id": "Z1"},
            {"customer_id": "K2", "name": "Bob", "home_zone_id": "Z2"},
            {"customer_id": "K3", "name": "Cid", "segment": "business", "home_zone_id": "Z1"},
            {"customer_id": "K4", "name": "Dee", "home_zone_id": None},
        ],
        "staging.subscriptions": [
            {"subscription_id": "SUB1", "customer_id": "K1", "msisdn": "+44 7700 900001", "monthly_fee": 10.0,
             "start_date": d("2025-01-01")},
            {"subscription_id": "SUB2", "customer_id": "K1", "msisdn": "+447700900002", "monthly_fee": 20.0,
             "payment_type": "postpaid", "product_offering": "Max", "start_date": d("2025-06-01")},
            {"subscription_id": "SUB3", "customer_id": "K2", "msisdn": "+447700900003", "monthly_fee": 30.0,
             "payment_type": "postpaid", "start_date": d("2024-01-01")},
            {"subscription_id": "SUB4", "customer_id": "K3", "msisdn": "+447700900004", "monthly_fee": 5.0,
             "start_date": d("2026-01-01")},
            {"subscription_id": "SUB5", "customer_id": "K4", "msisdn": "+447700900005", "monthly_fee": 8.0,
             "status": "terminated", "termination_date": d("2026-03-20")},
        ],
        "staging.charging": [
            {"usage_id": "U01", "subscription_id": "SUB1", "usage_at": ts("2026-03-05 10:00"), "cell_id": "C1"},
            {"usage_id": "U02", "subscription_id": "SUB2", "usage_at": ts("2026-03-06 10:00"), "cell_id": "C1",
             "amount": 2.0, "service": "voice", "unit": "second", "quantity": 120.0, "payment_type": "postpaid"},
            {"usage_id": "U03", "subscription_id": "SUB1", "usage_at": ts("2026-03-07 10:00"), "cell_id": "C3"},
            {"usage_id": "U04", "subscription_id": "SUB2", "usage_at": ts("2026-03-08 10:00"), "cell_id": "C3",
             "payment_type": "postpaid"},
            {"usage_id": "U05", "subscription_id": "SUB1", "usage_at": ts("2026-03-10 13:00"), "cell_id": "C1",
             "amount": 5.0},
            {"usage_id": "U06", "subscription_id": "SUB3", "usage_at": ts("2026-03-09 09:00"), "cell_id": "C2",
             "amount": 3.0, "payment_type": "postpaid"},
            {"usage_id": "U07", "subscription_id": "SUB3", "usage_at": ts("2026-03-09 10:00"), "cell_id": "C2",
             "amount": 3.0, "payment_type": "postpaid"},
            {"usage_id": "U08", "subscription_id": "SUB3", "usage_at": ts("2026-03-04 08:00"), "cell_id": "C3",
             "payment_type": "postpaid"},
            {"usage_id": "U09", "subscription_id": "SUB3", "usage_at": ts("2026-03-06 12:00"), "cell_id": None,
             "service": "roaming", "amount": 4.0, "payment_type": "postpaid"},
            {"usage_id": "U10", "subscription_id": "SUB4", "usage_at": ts("2026-03-02 12:00"), "cell_id": "C1"},
            {"usage_id": "U11", "subscription_id": "SUB4", "usage_at": ts("2026-03-03 12:00"), "cell_id": "C2"},
            {"usage_id": "U12", "subscription_id": "SUB4", "usage_at": ts("2026-03-05 12:00"), "cell_id": "C3",
             "amount": 0.5},
            {"usage_id": "U13", "subscription_id": "SUB5", "usage_at": ts("2026-03-10 12:00"), "cell_id": "C1"},
        ],
        "staging.kpi_hourly": [
            {"cell_id": "C1", "period_start": ts("2026-03-05 10:00"), "availability_pct": 100.0,
             "accessibility_pct": 99.0, "drop_rate_pct": 1.0, "dl_throughput_mbps": 20.0, "latency_ms": 30.0},
            {"cell_id": "C1", "period_start": ts("2026-03-06 10:00"), "availability_pct": 90.0,
             "accessibility_pct": 97.0, "drop_rate_pct": 3.0, "dl_throughput_mbps": 10.0, "latency_ms": 50.0},
            {"cell_id": "C3", "period_start": ts("2026-03-07 10:00"), "availability_pct": 80.0,
             "accessibility_pct": 95.0, "drop_rate_pct": 5.0, "dl_throughput_mbps": None, "latency_ms": None},
            {"cell_id": "C3", "period_start": ts("2026-03-12 05:00"), "availability_pct": 0.0},
        ],
        "staging.alarms": [
            {"alarm_id": "A1", "alarmed_object_id": "S1", "alarmed_object_type": "site",
             "raised_at": ts("2026-03-10 12:00"), "cleared_at": ts("2026-03-10 14:30")},
            {"alarm_id": "A2", "alarmed_object_id": "C3", "alarmed_object_type": "cell",
             "raised_at": ts("2026-03-12 00:00"), "cleared_at": None, "perceived_severity": "critical"},
        ],
    }


def assert_row(actual: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """`actual` has exactly `expected`'s columns and values (floats to 1e-9, everything else exactly)."""
    assert set(actual) == set(expected), (
        f"columns differ: missing {sorted(set(expected) - set(actual))}, extra {sorted(set(actual) - set(expected))}"
    )
    wrong = {}
    for k, want in expected.items():
        got = actual[k]
        if isinstance(want, float) and isinstance(got, float):
            ok = math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
        else:
            ok = got == want and type(got) is type(want)
        if not ok:
            wrong[k] = (got, want)
    assert not wrong, f"(got, expected) per column: {wrong}"


def quarantine_row(source: str, reason: str, column: str | None, line: int, *, file: str | None = None,
                   value: str | None = None) -> dict[str, Any]:
    """A raw.quarantine row whose message names the file, row, reason and column."""
    file = file or f"{source}_20260305.csv"
    return {"source": source, "file": file, "line": line, "reason": reason, "column": column, "value": value,
            "message": f"{file} row {line}: {reason} {column or ''}".strip(), "raw": "{}", "load_id": 1}


def quality_rows() -> Rows:
    """The base operator plus exactly one or two planted problems of each kind."""
    rows = base_rows()
    rows["raw.quarantine"] = [
        quarantine_row("charging", "unknown_reference", "cell_id", 5, value="CX"),
        quarantine_row("charging", "unknown_reference", "cell_id", 3, value="CY"),
        quarantine_row("charging", "malformed_row", None, 7),
        quarantine_row("charging", "duplicate_key", "usage_id", 9, value="U01"),  # the check name carries no column
        quarantine_row("charging", "out_of_range", "amount", 11, value="-3"),
        quarantine_row("charging", "out_of_range", "amount", 12, value="5000"),
        quarantine_row("subscriptions", "unknown_reference", "customer_id", 2, file="subscriptions.csv", value="K9"),
    ]
    rows["staging.customers"].append({"customer_id": "K5", "status": "terminated", "home_zone_id": "Z2"})
    rows["staging.subscriptions"] += [
        # SUB1 is "+44 7700 900001": three active holders of that number (2 extra), one terminated one.
        {"subscription_id": "SUB6", "customer_id": "K2", "msisdn": "+447700900001"},
        {"subscription_id": "SUB7", "customer_id": "K3", "msisdn": "+44-7700-900001"},
        {"subscription_id": "SUB8", "customer_id": "K3", "msisdn": "+447700900001", "status": "terminated",
         "termination_date": d("2026-02-01")},
        {"subscription_id": "SUB9", "customer_id": "K5", "msisdn": "+447700900099"},
    ]
    rows["staging.cells"].append({"cell_id": "C5", "site_id": "S9", "zone_id": None, "status": "planned"})
    rows["staging.charging"] += [
        {"usage_id": "U30", "subscription_id": "SUB1", "usage_at": ts("2026-03-06 11:00"), "cell_id": "C4"},
        {"usage_id": "U31", "subscription_id": "SUB5", "usage_at": ts("2026-03-21 11:00"), "cell_id": "C1"},
        {"usage_id": "U32", "subscription_id": "SUB3", "usage_at": ts("2026-03-06 11:00"), "cell_id": "C3",
         "payment_type": "prepaid"},
    ]
    rows["staging.kpi_hourly"].append({"cell_id": "C4", "period_start": ts("2026-03-06 10:00")})
    rows["staging.topups"] = [
        {"topup_id": "T1", "subscription_id": "SUB1", "topup_at": ts("2026-03-02 09:00")},
        {"topup_id": "T2", "subscription_id": "SUB2", "topup_at": ts("2026-03-03 09:00")},
    ]
    rows["staging.tickets"] = [
        {"ticket_id": "TK1", "customer_id": "K1", "subscription_id": "SUB1", "created_at": ts("2026-03-08 08:00")},
        {"ticket_id": "TK2", "customer_id": "K2", "subscription_id": "SUB1", "created_at": ts("2026-03-08 09:00")},
        {"ticket_id": "TK3", "customer_id": "K2", "subscription_id": None, "created_at": ts("2026-03-08 10:00")},
    ]
    return rows


def churn_rows() -> Rows:
    """Four weeks of data, 2026-03-01 .. 2026-03-28: snapshots 03-08, 03-15, 03-22 and 03-29.

    K1 holds SUB1 (prepaid, since 2025) and SUB2 (postpaid, from 03-10); K2's SUB3 terminates 03-25; K3's
    SUB4 starts 03-20. Alarm A1 on C1 (raised 03-12 12:00, two hours) affects K1, whose only cell event in
    the 7 days before was on C1.
    """
    base = base_rows()
    return {
        "staging.sites": base["staging.sites"],
        "staging.cells": base["staging.cells"],
        "staging.customers": base["staging.customers"][:3],
        "staging.subscriptions": [
            {"subscription_id": "SUB1", "customer_id": "K1", "msisdn": "+447700900001", "monthly_fee": 10.0,
             "start_date": d("2025-01-01")},
            {"subscription_id": "SUB2", "customer_id": "K1", "msisdn": "+447700900002", "monthly_fee": 20.0,
             "payment_type": "postpaid", "product_offering": "Max", "start_date": d("2026-03-10")},
            {"subscription_id": "SUB3", "customer_id": "K2", "msisdn": "+447700900003", "monthly_fee": 30.0,
             "payment_type": "postpaid", "start_date": d("2024-01-01"), "termination_date": d("2026-03-25"),
             "status": "terminated"},
            {"subscription_id": "SUB4", "customer_id": "K3", "msisdn": "+447700900004", "monthly_fee": 5.0,
             "start_date": d("2026-03-20")},
        ],
        "staging.charging": [
            {"usage_id": "U1", "subscription_id": "SUB1", "usage_at": ts("2026-03-01 13:00"), "cell_id": "C1"},
            {"usage_id": "U2", "subscription_id": "SUB1", "usage_at": ts("2026-03-05 13:00"), "cell_id": "C1",
             "amount": 2.0},
            {"usage_id": "U3", "subscription_id": "SUB2", "usage_at": ts("2026-03-14 13:00"), "cell_id": "C2",
             "amount": 4.0},
            {"usage_id": "U4", "subscription_id": "SUB1", "usage_at": ts("2026-03-21 13:00"), "cell_id": "C1"},
            {"usage_id": "U5", "subscription_id": "SUB2", "usage_at": ts("2026-03-28 13:00"), "cell_id": "C2",
             "amount": 3.0},
            {"usage_id": "U6", "subscription_id": "SUB3", "usage_at": ts("2026-03-02 13:00"), "cell_id": "C2",
             "amount": 2.0},
        ],
        "staging.kpi_hourly": [
            {"cell_id": "C1", "period_start": ts("2026-03-05 13:00"), "availability_pct": 90.0,
             "drop_rate_pct": 2.0},
        ],
        "staging.topups": [
            {"topup_id": f"T{i}", "subscription_id": "SUB1", "topup_at": ts(f"2026-03-{day:02d} 10:00")}
            for i, day in enumerate((2, 9, 16), start=1)
        ],
        "staging.tickets": [
            {"ticket_id": "TK1", "customer_id": "K1", "created_at": ts("2026-03-10 09:00"),
             "resolved_at": ts("2026-03-16 09:00"), "category": "network_quality", "resolution": "unresolved"},
            {"ticket_id": "TK2", "customer_id": "K2", "created_at": ts("2026-03-03 09:00"), "status": "pending"},
        ],
        "staging.bills": [
            {"bill_id": "B1", "customer_id": "K2", "bill_date": d("2026-03-05"), "billing_period_start": d("2026-02-01"),
             "billing_period_end": d("2026-02-28"), "payment_due_date": d("2026-03-12"), "amount_due": 30.0,
             "amount_paid": 0.0},
        ],
        "staging.promotions": [
            {"promotion_id": "P1", "subscription_id": "SUB1", "valid_from": d("2026-02-01"),
             "valid_to": d("2026-03-31"), "discount": 20.0},
            {"promotion_id": "P2", "subscription_id": "SUB3", "valid_from": d("2026-02-01"), "valid_to": None,
             "discount": 5.0},
        ],
        "staging.alarms": [
            {"alarm_id": "A1", "alarmed_object_id": "C1", "alarmed_object_type": "cell",
             "raised_at": ts("2026-03-12 12:00"), "cleared_at": ts("2026-03-12 14:00")},
        ],
    }
