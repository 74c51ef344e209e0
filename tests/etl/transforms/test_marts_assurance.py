"""alarm_customers and alarm_impact: data in, data out, and the shared affected-customer rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ibis
import pytest

_spec = importlib.util.spec_from_file_location("marts_testdata", Path(__file__).with_name("marts_testdata.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)


@pytest.fixture
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def test_alarm_customers_follow_the_majority_rule(con):
    out = td.build(con, td.base_rows(), "marts.alarm_customers")["marts.alarm_customers"]
    rows = td.by_key(out, "alarm_id", "customer_id")
    # K1 (exactly half on A1's cells), K3 (half, boundary event at window start), K4 (event at raised_at)
    # are not affected; K2 (2 of 3) is, for A1; K3 (1 of 1 on C3) is, for A2.
    assert set(rows) == {("A1", "K2"), ("A2", "K3")}
    a1 = rows[("A1", "K2")]
    assert a1 == {
        "alarm_id": "A1", "customer_id": "K2",
        "n_events_on_alarm_cells": 2, "raised_at": td.ts("2026-03-10 12:00"),
        "cleared_at": td.ts("2026-03-10 14:30"), "is_open": False, "service_affecting": True,
        "duration_min": 150.0, "n_events_7d": 3, "usage_revenue_7d": 11.0, "monthly_fee_total": 30.0,
        "segment": "consumer", "home_zone_id": "Z2", "share_on_alarm_cells": pytest.approx(2 / 3),
        "revenue_per_hour": pytest.approx(11.0 / 168 + 30.0 / 730.5), "is_vip": False,
    }
    a2 = rows[("A2", "K3")]
    assert (a2["n_events_7d"], a2["n_events_on_alarm_cells"], a2["usage_revenue_7d"], a2["monthly_fee_total"]) \
        == (1, 1, 0.5, 5.0)
    assert a2["is_open"] is True and a2["duration_min"] == 360.0


def test_more_than_half_is_affected_exactly_half_is_not(con):
    rows = td.base_rows()
    # One more event of K1 on A1's cell C2: 3 of 5 instead of 2 of 4.
    rows["staging.charging"].append(
        {"usage_id": "U14", "subscription_id": "SUB2", "usage_at": td.ts("2026-03-09 11:00"), "cell_id": "C2",
         "amount": 2.0})
    out = td.by_key(td.build(con, rows, "marts.alarm_customers")["marts.alarm_customers"],
                    "alarm_id", "customer_id")
    k1 = out[("A1", "K1")]
    assert (k1["n_events_on_alarm_cells"], k1["n_events_7d"], k1["is_vip"]) == (3, 5, True)
    # revenue of K1 in the window: U01 1 + U02 2 + U03 1 + U04 1 + U14 2; fees of SUB1 and SUB2.
    assert k1["usage_revenue_7d"] == 7.0 and k1["monthly_fee_total"] == 30.0


def test_event_at_raised_at_is_outside_the_window(con):
    rows = td.base_rows()
    # Moving K4's event on C1 one second before raised_at brings it into A1's window: 1 of 1.
    for r in rows["staging.charging"]:
        if r["usage_id"] == "U13":
            r["usage_at"] = td.ts("2026-03-10 11:59:59")
    out = td.build(con, rows, "marts.alarm_customers")["marts.alarm_customers"]
    assert ("A1", "K4") in td.by_key(out, "alarm_id", "customer_id")


def test_terminated_subscriptions_pay_no_fee_at_stake(con):
    rows = td.base_rows()
    for r in rows["staging.subscriptions"]:
        if r["subscription_id"] == "SUB3":
            r["termination_date"] = td.d("2026-03-10")  # terminated on the day of the alarm
    out = td.by_key(td.build(con, rows, "marts.alarm_customers")["marts.alarm_customers"],
                    "alarm_id", "customer_id")
    assert out[("A1", "K2")]["monthly_fee_total"] == 0.0
    assert out[("A1", "K2")]["revenue_per_hour"] == pytest.approx(11.0 / 168)


def test_alarm_impact_one_row_per_alarm(con):
    out = td.by_key(td.build(con, td.base_rows(), "marts.alarm_impact")["marts.alarm_impact"], "alarm_id")
    assert set(out) == {"A1", "A2"}
    a1, a2 = out["A1"], out["A2"]
    assert {k: a1[k] for k in ("site_id", "n_cells_affected", "cell_ids", "zone_ids", "n_customers_affected",
                               "n_vip_affected", "usage_revenue_7d", "monthly_fee_total", "is_open",
                               "duration_min", "perceived_severity")} == {
        "site_id": "S1", "n_cells_affected": 2, "cell_ids": "C1,C2", "zone_ids": "Z1",
        "n_customers_affected": 1, "n_vip_affected": 0, "usage_revenue_7d": 11.0, "monthly_fee_total": 30.0,
        "is_open": False, "duration_min": 150.0, "perceived_severity": "major",
    }
    assert a1["revenue_per_hour_at_stake"] == pytest.approx(11.0 / 168 + 30.0 / 730.5)
    assert (a2["site_id"], a2["cell_ids"], a2["zone_ids"], a2["n_customers_affected"], a2["is_open"],
            a2["duration_min"]) == ("S2", "C3", "Z2", 1, True, 360.0)
    assert a2["revenue_per_hour_at_stake"] == pytest.approx(0.5 / 168 + 5.0 / 730.5)


def test_alarm_on_a_site_without_cells_has_no_impact(con):
    rows = td.base_rows()
    rows["staging.alarms"].append(
        {"alarm_id": "A3", "alarmed_object_id": "S3", "alarmed_object_type": "site",
         "raised_at": td.ts("2026-03-11 00:00"), "cleared_at": td.ts("2026-03-11 01:00")})
    out = td.by_key(td.build(con, rows, "marts.alarm_impact")["marts.alarm_impact"], "alarm_id")
    a3 = out["A3"]
    assert (a3["n_cells_affected"], a3["cell_ids"], a3["n_customers_affected"],
            a3["revenue_per_hour_at_stake"], a3["duration_min"]) == (0, None, 0, 0.0, 60.0)


def test_alarms_without_usage_or_subscriptions_still_build(con):
    rows = td.base_rows()
    for name in ("staging.charging", "staging.subscriptions", "staging.customers", "staging.kpi_hourly"):
        del rows[name]
    built = td.build(con, rows, "marts.alarm_impact", "marts.alarm_customers")
    assert built["marts.alarm_customers"] == []
    out = td.by_key(built["marts.alarm_impact"], "alarm_id")
    assert {k: (v["n_cells_affected"], v["n_customers_affected"]) for k, v in out.items()} == {
        "A1": (2, 0), "A2": (1, 0)}
    # Nothing but the alarms themselves tells how long A2 has been open: until its own raise.
    assert out["A2"]["duration_min"] == 0.0


def test_nothing_loaded_builds_empty(con):
    built = td.build(con, {}, "marts.alarm_impact", "marts.alarm_customers")
    assert built == {"marts.alarm_impact": [], "marts.alarm_customers": []}


HOURLY = ("marts.assurance_usage_range", "marts.cell_customers", "marts.customer_roaming_hourly")


def test_the_hours_the_assurance_query_reads_as_counts(con):
    built = td.build(con, td.base_rows(), *HOURLY)
    # The loaded dates end on 2026-03-12 (A2's raise, the last KPI hour): the hourly marts keep the 7 dates
    # from 2026-03-06; the first usage is U10 (2026-03-02 12:00), the last U05 (2026-03-10 13:00).
    assert built["marts.assurance_usage_range"] == [{
        "hours_from_at": td.ts("2026-03-06 00:00"), "usage_from_at": td.ts("2026-03-02 12:00"),
        "usage_until_at": td.ts("2026-03-10 13:00")}]
    cells = td.by_key(built["marts.cell_customers"], "cell_id", "customer_id")
    assert {k: (v["n_events"], v["first_hour_at"], v["last_hour_at"]) for k, v in cells.items()} == {
        ("C1", "K1"): (2, td.ts("2026-03-06 10:00"), td.ts("2026-03-10 13:00")),  # U02, U05
        ("C3", "K1"): (2, td.ts("2026-03-07 10:00"), td.ts("2026-03-08 10:00")),  # U03, U04
        ("C2", "K2"): (2, td.ts("2026-03-09 09:00"), td.ts("2026-03-09 10:00")),  # U06, U07
        ("C1", "K4"): (1, td.ts("2026-03-10 12:00"), td.ts("2026-03-10 12:00")),  # U13
    }  # U08, U10, U11, U12: before 2026-03-06
    # K2's roaming event U09 (no cell): the only usage without a cell.
    assert built["marts.customer_roaming_hourly"] == [
        {"customer_id": "K2", "hour_at": td.ts("2026-03-06 12:00"), "n_events": 1, "amount": 4.0}]


def test_roaming_before_the_hours_is_left_to_the_events(con):
    rows = td.base_rows()
    for r in rows["staging.charging"]:
        if r["usage_id"] == "U09":
            r["usage_at"] = td.ts("2026-03-05 23:59:59")
    assert td.build(con, rows, "marts.customer_roaming_hourly")["marts.customer_roaming_hourly"] == []


def test_nothing_loaded_has_no_hours(con):
    built = td.build(con, {}, *HOURLY)
    assert built == {name: [] for name in HOURLY}
