"""data_quality and freshness: every check counted exactly, examples, and sources not loaded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ibis
import pytest

from etl.contracts import LOAD_ORDER

_spec = importlib.util.spec_from_file_location("marts_testdata", Path(__file__).with_name("marts_testdata.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)

ts, d = td.ts, td.d
DQ, FR = "marts.data_quality", "marts.freshness"
DOCUMENTED = ("duplicate_msisdn", "missing_kpi_hours", "cells_without_kpis", "usage_on_unknown_cells")


@pytest.fixture
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def test_every_check_counted_exactly(con):
    out = td.by_key(td.build(con, td.quality_rows(), DQ)[DQ], "check")
    counts = {k: v["n"] for k, v in out.items()}
    assert counts == {
        "quarantine:charging:unknown_reference:cell_id": 2,
        "quarantine:charging:malformed_row": 1,
        "quarantine:charging:duplicate_key": 1,
        "quarantine:charging:out_of_range:amount": 2,
        "quarantine:subscriptions:unknown_reference:customer_id": 1,
        "duplicate_msisdn": 2,
        # in-service C1, C2, C3 x 164 hours (03-05 10:00 .. 03-12 05:00) - 4 rows present (C4 is decommissioned)
        "missing_kpi_hours": 3 * 164 - 4,
        "cells_without_kpis": 1,
        "usage_on_unknown_cells": 2,
        "usage_on_planned_or_decommissioned_cells": 1,
        "usage_outside_subscription_period": 1,
        "usage_payment_type_mismatch": 1,
        "customers_with_usage_but_no_active_subscription": 1,
        "sites_without_cells": 1,
        "cells_with_unknown_site": 1,
        "cells_without_zone": 1,
        "kpis_on_planned_or_decommissioned_cells": 1,
        "customers_without_home_zone": 1,
        "active_subscriptions_of_terminated_customers": 1,
        "topups_on_postpaid_subscriptions": 1,
        "tickets_on_another_customers_subscription": 1,
    }
    assert {k: v["source"] for k, v in out.items() if k.startswith("quarantine:")} == {
        "quarantine:charging:unknown_reference:cell_id": "charging", "quarantine:charging:malformed_row": "charging",
        "quarantine:charging:duplicate_key": "charging", "quarantine:charging:out_of_range:amount": "charging",
        "quarantine:subscriptions:unknown_reference:customer_id": "subscriptions",
    }
    assert all(v["description"] for v in out.values())


def test_examples(con):
    out = td.by_key(td.build(con, td.quality_rows(), DQ)[DQ], "check")
    ex = {k: v["examples"] for k, v in out.items()}
    assert ex["quarantine:charging:unknown_reference:cell_id"] == [
        "charging_20260305.csv row 3: unknown_reference cell_id", "charging_20260305.csv row 5: unknown_reference cell_id"]
    assert ex["duplicate_msisdn"] == ["SUB1 & SUB6 & SUB7 share one number"]  # no MSISDN (personal data) shown
    assert ex["missing_kpi_hours"] == ["C1: 162 of 164 hours missing", "C2: 164 of 164 hours missing",
                                       "C3: 162 of 164 hours missing"]
    assert ex["cells_without_kpis"] == ["C2"]
    assert ex["usage_on_planned_or_decommissioned_cells"] == ["U30 on C4 (decommissioned)"]
    assert ex["customers_with_usage_but_no_active_subscription"] == ["K4 (1 days from 2026-03-21)"]
    assert ex["tickets_on_another_customers_subscription"] == ["TK2 by K2 on SUB1 of K1"]
    assert ex["sites_without_cells"] == ["S3"]


def test_examples_are_limited_to_five(con):
    rows = td.quality_rows()
    rows["raw.quarantine"] += [td.quarantine_row("topups", "bad_type", "topup_at", 100 + i) for i in range(8)]
    out = td.by_key(td.build(con, rows, DQ)[DQ], "check")
    check = out["quarantine:topups:bad_type:topup_at"]
    assert check["n"] == 8 and len(check["examples"]) == 5
    assert check["examples"][0] == "topups_20260305.csv row 100: bad_type topup_at"


def test_clean_data_has_every_documented_check_at_zero(con):
    rows = td.base_rows()
    rows["staging.kpi_hourly"] = []
    out = td.by_key(td.build(con, rows, DQ)[DQ], "check")
    assert not any(k.startswith("quarantine:") for k in out)
    assert set(DOCUMENTED) <= set(out)
    # No KPI loaded: no hour range, so no missing hour; but every in-service cell lacks KPIs.
    assert (out["missing_kpi_hours"]["n"], out["missing_kpi_hours"]["examples"]) == (0, None)
    assert (out["cells_without_kpis"]["n"], out["duplicate_msisdn"]["n"]) == (3, 0)
    assert out["duplicate_msisdn"]["examples"] is None


def test_nothing_loaded(con):
    out = td.by_key(td.build(con, {}, DQ)[DQ], "check")
    assert set(DOCUMENTED) <= set(out)
    assert all(v["n"] == 0 and v["examples"] is None for v in out.values())


def test_freshness(con):
    rows = td.base_rows()
    rows["raw.manifest"] = [
        {"file": "charging_20260310.csv", "source": "charging", "rows_read": 10, "load_id": 1,
         "loaded_at": ts("2026-03-11 02:00")},
        {"file": "charging_20260311.csv", "source": "charging", "rows_read": 5, "load_id": 2,
         "loaded_at": ts("2026-03-12 02:00")},
        {"file": "subscriptions.csv", "source": "subscriptions", "rows_read": 6, "load_id": 1,
         "loaded_at": ts("2026-03-11 02:00")},
    ]
    rows["raw.quarantine"] = [td.quarantine_row("charging", "bad_type", "usage_at", 4), td.quarantine_row("subscriptions", "bad_type",
                                                                              "start_date", 2)]
    out = td.by_key(td.build(con, rows, FR)[FR], "source")
    assert list(out) == list(LOAD_ORDER) or set(out) == set(LOAD_ORDER)
    td.assert_row(out["charging"], {
        "source": "charging", "side": "BSS", "is_loaded": True, "event_time_column": "usage_at", "n_rows": 13,
        "as_of": ts("2026-03-10 13:00"), "n_files": 2, "rows_read": 15, "last_loaded_at": ts("2026-03-12 02:00"),
        "n_quarantined": 1,
    })
    assert (out["subscriptions"]["as_of"], out["subscriptions"]["n_files"]) == (ts("2026-01-01 00:00"), 1)
    # Loaded rows but no manifest row (as in a hand-built test warehouse) still count as loaded.
    assert (out["cells"]["is_loaded"], out["cells"]["as_of"], out["cells"]["event_time_column"]) == (True, None, None)
    assert (out["kpi_hourly"]["as_of"], out["alarms"]["as_of"]) == (ts("2026-03-12 05:00"), ts("2026-03-12 00:00"))
    for name in ("zones", "promotions", "topups", "bills", "tickets"):
        assert (out[name]["is_loaded"], out[name]["n_rows"], out[name]["n_files"], out[name]["as_of"],
                out[name]["last_loaded_at"]) == (False, 0, 0, None, None), name


def test_freshness_nothing_loaded(con):
    out = td.by_key(td.build(con, {}, FR)[FR], "source")
    assert set(out) == set(LOAD_ORDER)
    assert not any(v["is_loaded"] for v in out.values())
