"""churn_features: snapshots, features from before the snapshot only, labels, and missing sources."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import ibis
import pytest

_spec = importlib.util.spec_from_file_location("marts_testdata", Path(__file__).with_name("marts_testdata.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)

ts, d = td.ts, td.d
CF = "marts.churn_features"


@pytest.fixture
def con():
    c = ibis.duckdb.connect()
    yield c
    c.disconnect()


def test_snapshots_and_population(con):
    out = td.build(con, td.churn_rows(), CF)[CF]
    keys = {(r["customer_id"], r["snapshot_date"]) for r in out}
    snaps = [d(x) for x in ("2026-03-08", "2026-03-15", "2026-03-22", "2026-03-29")]
    # K2 is gone by 03-29 (terminated 03-25); K3 arrives with SUB4 on 03-20.
    assert keys == {("K1", s) for s in snaps} | {("K2", s) for s in snaps[:3]} | {("K3", s) for s in snaps[2:]}
    meta = {r["snapshot_date"]: (r["history_days"], r["label_observed_days"]) for r in out}
    assert meta == {snaps[0]: (7, 21), snaps[1]: (14, 14), snaps[2]: (21, 7), snaps[3]: (28, 0)}
    labels = {(r["customer_id"], r["snapshot_date"]): r["label_churn_30d"] for r in out}
    assert [labels[("K2", s)] for s in snaps[:3]] == [True, True, True]
    assert not any(v for (c, _), v in labels.items() if c != "K2")


def test_features_of_one_snapshot(con):
    out = td.by_key(td.build(con, td.churn_rows(), CF)[CF], "customer_id", "snapshot_date")
    td.assert_row(out[("K1", d("2026-03-15"))], {
        "customer_id": "K1", "snapshot_date": d("2026-03-15"), "history_days": 14, "label_observed_days": 14,
        "segment": "vip", "home_zone_id": "Z1",
        "n_active_subscriptions": 2, "monthly_fee_total": 30.0, "n_terminated_subscriptions": 0,
        "main_product_offering": "Max", "payment_type": "mixed", "tenure_days": 438,
        "n_active_promotions": 1, "max_discount_pct": 20.0, "n_promotions_ending_30d": 1,
        "days_to_promotion_end": 16, "n_promotions_ended_28d": 0, "days_since_promotion_ended": None,
        "n_events_28d": 3, "usage_revenue_28d": 7.0, "usage_revenue_7d": 4.0, "data_mb_28d": 30.0,
        "voice_min_28d": 0.0, "n_active_days_28d": 3, "n_cells_used_28d": 2, "n_events_on_cells_28d": 3,
        "n_events_with_kpi_28d": 1, "kpi_coverage_pct": 100.0 / 3,
        "exp_availability_pct": 90.0, "exp_accessibility_pct": 99.0, "exp_drop_rate_pct": 2.0,
        "exp_dl_throughput_mbps": 20.0, "exp_latency_ms": 30.0,
        "arpu_30d": 7.0 / 14 * 30 + 30.0, "usage_trend_ratio": (4.0 / 7) / (7.0 / 14), "days_since_last_usage": 1,
        "n_topups_28d": 2, "topup_amount_28d": 20.0, "days_since_last_topup": 6, "mean_days_between_topups": 7.0,
        "n_tickets_28d": 1, "n_network_tickets_28d": 1, "n_billing_tickets_28d": 0, "n_open_tickets": 1,
        "n_tickets_bad_outcome_28d": 0,
        "n_bills": 0, "n_overdue_bills": 0, "overdue_amount": 0.0,
        "n_outages_28d": 1, "outage_minutes_28d": 120.0,
        "label_churn_30d": False,
    })
    k1_22 = out[("K1", d("2026-03-22"))]
    # The ticket was resolved (unresolved) on 03-16: known by 03-22, not by 03-15.
    assert (k1_22["n_open_tickets"], k1_22["n_tickets_bad_outcome_28d"]) == (0, 1)
    k2_08, k2_15 = out[("K2", d("2026-03-08"))], out[("K2", d("2026-03-15"))]
    # B1 is due 03-12: not overdue at 03-08, overdue at 03-15.
    assert (k2_08["n_bills"], k2_08["n_overdue_bills"]) == (1, 0)
    assert (k2_15["n_overdue_bills"], k2_15["overdue_amount"]) == (1, 30.0)
    # An open-ended promotion never ends within the horizon; a ticket without outcome is open, not bad.
    assert (k2_15["n_active_promotions"], k2_15["n_promotions_ending_30d"], k2_15["days_to_promotion_end"],
            k2_15["n_open_tickets"], k2_15["n_tickets_bad_outcome_28d"]) == (1, 0, None, 1, 0)
    assert out[("K1", d("2026-03-08"))]["n_active_subscriptions"] == 1  # SUB2 starts 03-10
    assert out[("K1", d("2026-03-08"))]["n_outages_28d"] == 0  # A1 is raised after 03-08


def _drop_labels(row: dict) -> dict:
    return {k: v for k, v in row.items() if not k.startswith("label_")}


def test_events_on_or_after_the_snapshot_never_change_its_features(con):
    before = td.by_key(td.build(con, td.churn_rows(), CF)[CF], "customer_id", "snapshot_date")
    rows = td.churn_rows()
    snap = d("2026-03-15")
    # Everything below happens on the snapshot date or later (the loaded window still ends 03-28).
    rows["staging.charging"] += [
        {"usage_id": "L1", "subscription_id": "SUB1", "usage_at": ts("2026-03-15 00:00"), "cell_id": "C1",
         "amount": 50.0},
        {"usage_id": "L2", "subscription_id": "SUB3", "usage_at": ts("2026-03-16 08:00"), "cell_id": "C2"},
    ]
    rows["staging.kpi_hourly"].append({"cell_id": "C1", "period_start": ts("2026-03-15 00:00"),
                                       "availability_pct": 1.0})
    rows["staging.topups"].append({"topup_id": "L3", "subscription_id": "SUB1", "topup_at": ts("2026-03-15 00:30")})
    rows["staging.tickets"].append({"ticket_id": "L4", "customer_id": "K2", "created_at": ts("2026-03-15 01:00"),
                                    "category": "network_coverage", "status": "acknowledged"})
    rows["staging.bills"].append({"bill_id": "L5", "customer_id": "K1", "bill_date": snap,
                                  "billing_period_start": d("2026-02-15"), "billing_period_end": d("2026-03-14"),
                                  "amount_due": 99.0, "amount_paid": 0.0})
    rows["staging.promotions"].append({"promotion_id": "L6", "subscription_id": "SUB2", "valid_from": snap,
                                       "valid_to": d("2026-03-20"), "discount": 50.0})
    rows["staging.alarms"].append({"alarm_id": "L7", "alarmed_object_id": "C1", "alarmed_object_type": "cell",
                                   "raised_at": ts("2026-03-15 02:00"), "cleared_at": ts("2026-03-15 05:00")})
    rows["staging.subscriptions"].append({"subscription_id": "L8", "customer_id": "K1", "msisdn": "+447700900009",
                                          "start_date": snap, "monthly_fee": 99.0})
    after = td.by_key(td.build(con, rows, CF)[CF], "customer_id", "snapshot_date")
    assert set(after) == set(before)
    for key in before:
        if key[1] <= snap:
            assert after[key] == before[key], key
    # The later snapshots do see them (so the additions were not simply ignored).
    assert after[("K1", d("2026-03-22"))]["usage_revenue_28d"] > before[("K1", d("2026-03-22"))]["usage_revenue_28d"]
    assert after[("K1", d("2026-03-22"))]["n_active_subscriptions"] == 3


def test_data_arriving_later_only_extends_the_labels(con):
    before = td.by_key(td.build(con, td.churn_rows(), CF)[CF], "customer_id", "snapshot_date")
    rows = td.churn_rows()
    rows["staging.charging"].append(
        {"usage_id": "U9", "subscription_id": "SUB1", "usage_at": ts("2026-04-04 13:00"), "cell_id": "C1"})
    after = td.by_key(td.build(con, rows, CF)[CF], "customer_id", "snapshot_date")
    assert d("2026-04-05") in {k[1] for k in after}
    for key, row in before.items():
        assert _drop_labels(after[key]) == _drop_labels(row), key
        assert after[key]["label_observed_days"] == min(row["label_observed_days"] + 7, 30)


def test_label_counts_terminations_within_30_days_only(con):
    rows = td.churn_rows()
    rows["staging.subscriptions"][2]["termination_date"] = d("2026-04-14")  # 30 days after 03-15
    out = td.by_key(td.build(con, rows, CF)[CF], "customer_id", "snapshot_date")
    assert out[("K2", d("2026-03-15"))]["label_churn_30d"] is False
    assert out[("K2", d("2026-03-22"))]["label_churn_30d"] is True


def test_only_subscriptions_loaded(con):
    rows = td.churn_rows()
    out = td.build(con, {"staging.subscriptions": rows["staging.subscriptions"]}, CF)[CF]
    # No event source: no loaded window, so no snapshot.
    assert out == []


def test_bss_only_still_builds(con):
    rows = td.churn_rows()
    for name in ("staging.kpi_hourly", "staging.alarms", "staging.cells", "staging.sites"):
        del rows[name]
    out = td.by_key(td.build(con, rows, CF)[CF], "customer_id", "snapshot_date")
    k1 = out[("K1", d("2026-03-15"))]
    assert (k1["n_events_28d"], k1["exp_availability_pct"], k1["n_outages_28d"], k1["kpi_coverage_pct"]) == \
        (3, None, 0, 0.0)


def test_nothing_loaded_builds_empty(con):
    assert td.build(con, {}, CF)[CF] == []


def test_an_old_alarm_does_not_stretch_the_history(con):
    before = td.build(con, td.churn_rows(), CF)[CF]
    rows = td.churn_rows()
    rows["staging.alarms"].append({"alarm_id": "OLD", "alarmed_object_id": "C2", "alarmed_object_type": "cell",
                                   "raised_at": ts("2025-12-01 00:00"), "cleared_at": ts("2025-12-02 00:00")})
    after = td.build(con, rows, CF)[CF]
    assert {r["snapshot_date"] for r in after} == {r["snapshot_date"] for r in before}


def test_a_promotion_that_just_ended(con):
    rows = td.churn_rows()
    rows["staging.promotions"].append({"promotion_id": "P3", "subscription_id": "SUB3", "valid_from": d("2025-06-01"),
                                       "valid_to": d("2026-03-10"), "discount": 30.0})
    out = td.by_key(td.build(con, rows, CF)[CF], "customer_id", "snapshot_date")
    k2_08, k2_15 = out[("K2", d("2026-03-08"))], out[("K2", d("2026-03-15"))]
    # Still in force (and ending within 30 days) at 03-08; ended 5 days before 03-15.
    assert (k2_08["n_active_promotions"], k2_08["n_promotions_ending_30d"], k2_08["max_discount_pct"],
            k2_08["days_to_promotion_end"], k2_08["n_promotions_ended_28d"]) == (2, 1, 30.0, 2, 0)
    assert (k2_15["n_active_promotions"], k2_15["max_discount_pct"], k2_15["n_promotions_ended_28d"],
            k2_15["days_since_promotion_ended"]) == (1, 5.0, 1, 5)
