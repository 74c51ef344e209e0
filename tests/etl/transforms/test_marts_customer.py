"""subscriber_cell_usage and customer_360: data in, data out, and missing sources."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ibis
import pytest

_spec = importlib.util.spec_from_file_location("marts_testdata", Path(__file__).with_name("marts_testdata.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)

ts, d = td.ts, td.d


@pytest.fixture
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def test_subscriber_cell_usage(con):
    out = td.by_key(td.build(con, td.base_rows(), "marts.subscriber_cell_usage")["marts.subscriber_cell_usage"],
                    "customer_id", "cell_id")
    assert set(out) == {("K1", "C1"), ("K1", "C3"), ("K2", "C2"), ("K2", "C3"), ("K3", "C1"), ("K3", "C2"),
                        ("K3", "C3"), ("K4", "C1")}  # K2's roaming event has no cell: no row
    td.assert_row(out[("K1", "C1")], {
        "customer_id": "K1", "cell_id": "C1", "zone_id": "Z1", "n_events": 3, "n_subscriptions": 2,
        "n_days": 3, "usage_revenue": 8.0, "data_mb": 20.0, "voice_min": 2.0,
        "first_usage_at": ts("2026-03-05 10:00"), "last_usage_at": ts("2026-03-10 13:00"),
        "n_events_with_kpi": 2, "exp_availability_pct": 95.0, "exp_accessibility_pct": 98.0,
        "exp_drop_rate_pct": 2.0, "exp_dl_throughput_mbps": 15.0, "exp_latency_ms": 40.0,
        "share_of_events": 0.6, "cell_rank": 1, "is_main_cell": True, "usage_zone_id": "Z1",
        "is_usage_zone": True,
    })
    k1c3 = out[("K1", "C3")]
    assert (k1c3["n_events"], k1c3["cell_rank"], k1c3["share_of_events"], k1c3["zone_id"], k1c3["is_usage_zone"],
            k1c3["exp_availability_pct"], k1c3["exp_dl_throughput_mbps"], k1c3["n_events_with_kpi"]) \
        == (2, 2, 0.4, "Z2", False, 80.0, None, 1)
    # Ties on events break by revenue, then by cell id; the usage zone is where most events are.
    assert [out[("K3", c)]["cell_rank"] for c in ("C1", "C2", "C3")] == [1, 2, 3]
    assert out[("K3", "C3")]["usage_zone_id"] == "Z1"
    assert out[("K2", "C2")]["share_of_events"] == pytest.approx(2 / 3)
    assert out[("K2", "C2")]["exp_availability_pct"] is None  # no KPI row for those hours


def _with_bss_extras():
    rows = td.base_rows()
    rows["staging.topups"] = [
        {"topup_id": "T1", "subscription_id": "SUB1", "topup_at": ts("2026-03-02 09:00"), "amount": 10.0},
        {"topup_id": "T2", "subscription_id": "SUB1", "topup_at": ts("2026-03-09 09:00"), "amount": 15.0},
    ]
    rows["staging.bills"] = [
        {"bill_id": "B1", "customer_id": "K1", "bill_date": d("2026-02-01"), "billing_period_start": d("2026-01-01"),
         "billing_period_end": d("2026-01-31"), "amount_due": 20.0, "amount_paid": 20.0, "state": "settled"},
        {"bill_id": "B2", "customer_id": "K1", "bill_date": d("2026-03-01"), "billing_period_start": d("2026-02-01"),
         "billing_period_end": d("2026-02-28"), "amount_due": 25.0, "amount_paid": 5.0},
    ]
    rows["staging.tickets"] = [
        {"ticket_id": "TK1", "customer_id": "K1", "subscription_id": "SUB1", "created_at": ts("2026-03-08 08:00"),
         "category": "network_quality", "status": "in_progress"},
        {"ticket_id": "TK2", "customer_id": "K1", "created_at": ts("2026-03-01 08:00"),
         "resolved_at": ts("2026-03-02 08:00"), "category": "billing", "resolution": "unresolved"},
    ]
    rows["staging.promotions"] = [
        {"promotion_id": "P1", "subscription_id": "SUB2", "valid_from": d("2026-01-01"), "valid_to": d("2026-04-01"),
         "discount": 25.0},
        {"promotion_id": "P2", "subscription_id": "SUB1", "valid_from": d("2025-01-01"), "valid_to": d("2025-12-31")},
    ]
    return rows


def test_customer_360(con):
    out = td.by_key(td.build(con, _with_bss_extras(), "marts.customer_360")["marts.customer_360"], "customer_id")
    assert set(out) == {"K1", "K2", "K3", "K4"}
    k1 = out["K1"]
    expected = {
        "customer_id": "K1", "name": "Ann", "segment": "vip", "home_zone_id": "Z1", "customer_status": "active",
        "is_vip": True, "as_of_date": d("2026-03-12"),
        "n_subscriptions": 2, "n_active_subscriptions": 2, "monthly_fee_total": 30.0, "payment_type": "mixed",
        "first_start_date": d("2025-01-01"), "last_termination_date": None, "main_product_offering": "Max",
        "tenure_days": 435,
        "n_events": 5, "usage_revenue": 10.0, "usage_revenue_30d": 10.0, "data_mb": 40.0, "voice_min": 2.0,
        "n_active_days": 5, "first_usage_at": ts("2026-03-05 10:00"), "last_usage_at": ts("2026-03-10 13:00"),
        "n_events_on_cells": 5, "n_events_with_kpi": 3, "kpi_coverage_pct": 60.0,
        "exp_availability_pct": 90.0, "exp_accessibility_pct": 97.0, "exp_drop_rate_pct": 3.0,
        "exp_dl_throughput_mbps": 15.0, "exp_latency_ms": 40.0,
        "usage_zone_id": "Z1", "main_cell_id": "C1", "main_cell_share": 0.6, "n_cells_used": 2,
        "n_topups": 2, "topup_amount": 25.0, "last_topup_at": ts("2026-03-09 09:00"),
        "n_bills": 2, "amount_due_total": 45.0, "amount_unpaid": 20.0, "n_unpaid_bills": 1,
        "last_bill_date": d("2026-03-01"),
        "n_tickets": 2, "n_open_tickets": 1, "n_network_tickets": 1, "n_tickets_bad_outcome": 1,
        "last_ticket_at": ts("2026-03-08 08:00"),
        "n_active_promotions": 1, "max_active_discount_pct": 25.0, "next_promotion_end_date": d("2026-04-01"),
        "n_alarms_affected": 0, "n_outages": 0, "outage_minutes": 0.0, "last_alarm_at": None,
    }
    td.assert_row({k: v for k, v in k1.items() if k != "created_at"}, expected)
    k2, k4 = out["K2"], out["K4"]
    assert (k2["n_alarms_affected"], k2["n_outages"], k2["outage_minutes"], k2["last_alarm_at"]) == \
        (1, 1, 150.0, ts("2026-03-10 12:00"))
    assert (k2["usage_revenue"], k2["n_events"], k2["n_events_on_cells"], k2["payment_type"]) == \
        (11.0, 4, 3, "postpaid")  # the roaming event counts as usage, not as a cell event
    assert (k4["n_active_subscriptions"], k4["payment_type"], k4["monthly_fee_total"],
            k4["last_termination_date"], k4["n_topups"], k4["main_product_offering"]) == \
        (0, None, 0.0, d("2026-03-20"), 0, None)


def test_customer_360_recent_revenue_is_the_last_30_days(con):
    rows = td.base_rows()
    rows["staging.charging"].append(
        {"usage_id": "U20", "subscription_id": "SUB1", "usage_at": ts("2026-02-10 10:00"), "cell_id": "C1",
         "amount": 7.0})
    k1 = td.by_key(td.build(con, rows, "marts.customer_360")["marts.customer_360"], "customer_id")["K1"]
    assert (k1["usage_revenue"], k1["usage_revenue_30d"]) == (17.0, 10.0)  # 02-10 is 30 days before 03-12


def test_only_customers_loaded(con):
    rows = {"staging.customers": td.base_rows()["staging.customers"]}
    built = td.build(con, rows, "marts.customer_360", "marts.subscriber_cell_usage")
    assert built["marts.subscriber_cell_usage"] == []
    out = td.by_key(built["marts.customer_360"], "customer_id")
    assert set(out) == {"K1", "K2", "K3", "K4"}
    k1 = out["K1"]
    assert (k1["as_of_date"], k1["n_subscriptions"], k1["n_events"], k1["usage_revenue"], k1["main_cell_id"],
            k1["tenure_days"]) == (None, 0, 0, 0.0, None, None)


def test_nothing_loaded_builds_empty(con):
    built = td.build(con, {}, "marts.customer_360", "marts.subscriber_cell_usage")
    assert built == {"marts.customer_360": [], "marts.subscriber_cell_usage": []}


def test_usage_without_landed_subscriptions_belongs_to_no_customer(con):
    rows = td.base_rows()
    del rows["staging.subscriptions"]  # charging landed before its subscriptions: customer_id is null
    built = td.build(con, rows, "marts.subscriber_cell_usage", "marts.customer_360", "marts.alarm_customers")
    assert built["marts.subscriber_cell_usage"] == [] and built["marts.alarm_customers"] == []
    assert all(r["n_events"] == 0 for r in built["marts.customer_360"])
