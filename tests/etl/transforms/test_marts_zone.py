"""Zone and cell marts, data in and data out: a few literal raw rows, geo + build, the rows expected."""

from __future__ import annotations

import datetime as dt

import pytest

from etl.errors import CheckFailed
from etl.geo import build_geo
from etl.transforms.run import build

D = dt.date(2026, 3, 2)
T0 = dt.datetime(2026, 3, 2, 0, 0)


def hour(h: int) -> dt.datetime:
    return T0 + dt.timedelta(hours=h)


def base_rows(zt) -> dict:
    """Two zones; one site with a cell in each; customer K1 lives in Z1, K2 has no home coordinates."""
    return {
        "zones": [zt.square("Z1", 0), zt.square("Z2", 1)],
        "sites": [{"site_id": "S1", "latitude": 0.005, "longitude": 0.005},
                  {"site_id": "S2", "latitude": 0.005, "longitude": 0.015}],
        "cells": [{"cell_id": "C1", "site_id": "S1"}, {"cell_id": "C3", "site_id": "S1"},
                  {"cell_id": "C2", "site_id": "S2"}],
        "customers": [{"customer_id": "K1", "home_latitude": 0.002, "home_longitude": 0.002},
                      {"customer_id": "K2"}],
        "subscriptions": [{"subscription_id": "P1", "customer_id": "K1", "monthly_fee": 31.0},
                          {"subscription_id": "P2", "customer_id": "K2", "payment_type": "postpaid",
                           "monthly_fee": 0.0}],
    }


def run(con, zt, **kw):
    build_geo(con)
    return build(con, only=zt.ZONE_MODELS, **kw)


def test_availability_is_time_weighted_and_completeness_counts_missing_hours(raw_db, zt):
    rows = base_rows(zt)
    rows["kpi_hourly"] = [
        # C1: two hours, the first with 1800 s unavailable (the counter wins over the exported 99 %)
        {"cell_id": "C1", "period_start": hour(0), "unavailable_time_s": 1800.0, "availability_pct": 99.0},
        {"cell_id": "C1", "period_start": hour(1), "unavailable_time_s": 0.0},
        # C2 reports four hours: the KPI span of the day is 00:00-04:00
        *[{"cell_id": "C2", "period_start": hour(h)} for h in range(4)],
    ]
    con = raw_db(rows)
    run(con, zt)
    got = zt.fetch(con, "SELECT cell_id, hours_present, hours_expected, completeness, availability_pct "
                        "FROM marts.cell_kpi_daily ORDER BY cell_id")
    assert got == [
        {"cell_id": "C1", "hours_present": 2, "hours_expected": 4.0, "completeness": 0.5, "availability_pct": 75.0},
        {"cell_id": "C2", "hours_present": 4, "hours_expected": 4.0, "completeness": 1.0,
         "availability_pct": 100.0},
        # C3 is in service and silent: a row with no KPIs and completeness 0
        {"cell_id": "C3", "hours_present": 0, "hours_expected": 4.0, "completeness": 0.0,
         "availability_pct": None},
    ]
    z1 = zt.fetch(con, "SELECT n_cells, n_cells_reporting, hours_present, hours_expected, completeness, "
                       "availability_pct FROM marts.zone_kpi_daily WHERE zone_id = 'Z1'")
    # Z1: C1 and C3 in service, 8 cell-hours expected, 2 present; availability over the present time
    assert z1 == [{"n_cells": 2, "n_cells_reporting": 1, "hours_present": 2, "hours_expected": 8.0,
                   "completeness": 0.25, "availability_pct": 75.0}]


def test_zone_drop_rate_is_traffic_weighted_not_a_mean_of_percentages(raw_db, zt):
    rows = base_rows(zt)
    rows["kpi_hourly"] = [
        {"cell_id": "C1", "period_start": hour(0), "drop_rate_pct": 10.0, "traffic_volume_mb": 100.0,
         "latency_ms": 40.0},
        {"cell_id": "C3", "period_start": hour(0), "drop_rate_pct": 0.0, "traffic_volume_mb": 900.0,
         "latency_ms": 20.0},
    ]
    con = raw_db(rows)
    run(con, zt)
    (z1,) = zt.fetch(con, "SELECT drop_rate_pct, latency_ms, traffic_volume_mb FROM marts.zone_kpi_daily "
                          "WHERE zone_id = 'Z1'")
    assert z1["drop_rate_pct"] == pytest.approx(1.0)  # (10 x 100 + 0 x 900) / 1000, not (10 + 0) / 2
    assert z1["latency_ms"] == pytest.approx(22.0)
    assert z1["traffic_volume_mb"] == 1000.0


def test_counters_recompute_accessibility_and_drops(raw_db, zt):
    rows = base_rows(zt)
    rows["kpi_hourly"] = [
        {"cell_id": "C1", "period_start": hour(0), "accessibility_pct": 10.0, "drop_rate_pct": 50.0,
         "rrc_setup_attempts": 100, "rrc_setup_successes": 90, "erab_setup_attempts": 200,
         "erab_setup_successes": 180, "erab_releases": 400, "erab_abnormal_releases": 8},
        {"cell_id": "C1", "period_start": hour(1), "accessibility_pct": 97.0, "drop_rate_pct": 3.0},
    ]
    con = raw_db(rows)
    run(con, zt)
    got = zt.fetch(con, "SELECT accessibility_pct, drop_rate_pct, is_accessibility_recomputed AS a, "
                        "is_drop_rate_recomputed AS d FROM staging.kpi_hourly ORDER BY period_start")
    assert got[0]["accessibility_pct"] == pytest.approx(81.0)  # 100 x 0.9 x 0.9
    assert got[0]["drop_rate_pct"] == pytest.approx(2.0)
    assert (got[0]["a"], got[0]["d"]) == (True, True)
    assert got[1] == {"accessibility_pct": 97.0, "drop_rate_pct": 3.0, "a": False, "d": False}
    (c1,) = zt.fetch(con, "SELECT accessibility_pct FROM marts.cell_kpi_daily WHERE cell_id = 'C1'")
    assert c1["accessibility_pct"] == pytest.approx(89.0)  # equal traffic: (81 + 97) / 2


def test_revenue_lands_where_usage_happened_and_fees_at_home(raw_db, zt):
    rows = base_rows(zt)
    rows["charging"] = [
        # K1 lives in Z1 but uses C2 in Z2; K2 (no home coordinates) uses C1 twice in Z1 and roams once
        {"usage_id": "U1", "subscription_id": "P1", "usage_at": hour(9), "cell_id": "C2", "amount": 2.5},
        {"usage_id": "U2", "subscription_id": "P1", "usage_at": hour(10), "cell_id": "C2", "amount": 1.25,
         "service": "voice", "unit": "second", "quantity": 60.0},
        {"usage_id": "U3", "subscription_id": "P2", "usage_at": hour(11), "cell_id": "C1", "amount": 4.0,
         "payment_type": "postpaid"},
        {"usage_id": "U4", "subscription_id": "P2", "usage_at": hour(12), "cell_id": "C1", "amount": 1.0,
         "payment_type": "postpaid"},
        {"usage_id": "U5", "subscription_id": "P2", "usage_at": hour(13), "cell_id": None, "amount": 3.0,
         "service": "roaming", "payment_type": "postpaid"},
    ]
    con = raw_db(rows)
    result = run(con, zt)
    got = zt.fetch(con, "SELECT zone_id, date, service, payment_type, revenue, usage_revenue, fee_revenue, "
                        "n_events, active_subscribers, arpu FROM marts.zone_daily ORDER BY ALL")
    assert got == [
        # K2's home zone is where most of its usage happened: Z1 (so its roaming lands there too)
        {"zone_id": "Z1", "date": D, "service": "data", "payment_type": "postpaid", "revenue": 5.0,
         "usage_revenue": 5.0, "fee_revenue": 0.0, "n_events": 2, "active_subscribers": 1, "arpu": 5.0},
        {"zone_id": "Z1", "date": D, "service": "recurring", "payment_type": "postpaid", "revenue": 0.0,
         "usage_revenue": 0.0, "fee_revenue": 0.0, "n_events": 0, "active_subscribers": 1, "arpu": 0.0},
        # P1's fee: 31 a month in a 31-day month is 1.00 a day, in K1's home zone Z1
        {"zone_id": "Z1", "date": D, "service": "recurring", "payment_type": "prepaid", "revenue": 1.0,
         "usage_revenue": 0.0, "fee_revenue": 1.0, "n_events": 0, "active_subscribers": 1, "arpu": 1.0},
        {"zone_id": "Z1", "date": D, "service": "roaming", "payment_type": "postpaid", "revenue": 3.0,
         "usage_revenue": 3.0, "fee_revenue": 0.0, "n_events": 1, "active_subscribers": 1, "arpu": 3.0},
        {"zone_id": "Z2", "date": D, "service": "data", "payment_type": "prepaid", "revenue": 2.5,
         "usage_revenue": 2.5, "fee_revenue": 0.0, "n_events": 1, "active_subscribers": 1, "arpu": 2.5},
        {"zone_id": "Z2", "date": D, "service": "voice", "payment_type": "prepaid", "revenue": 1.25,
         "usage_revenue": 1.25, "fee_revenue": 0.0, "n_events": 1, "active_subscribers": 1, "arpu": 1.25},
    ]
    passed = {c.name: c.passed for c in result.checks}
    assert passed["reconcile:usage_revenue"] and passed["reconcile:fee_revenue"]
    home = zt.fetch(con, "SELECT customer_id, home_zone_id, home_zone_source FROM staging.customers ORDER BY 1")
    assert home == [{"customer_id": "K1", "home_zone_id": "Z1", "home_zone_source": "home_location"},
                    {"customer_id": "K2", "home_zone_id": "Z1", "home_zone_source": "usage"}]


def test_fees_net_of_promotions_and_stop_at_termination(raw_db, zt):
    rows = base_rows(zt)
    rows["subscriptions"][0]["termination_date"] = dt.date(2026, 3, 4)
    rows["promotions"] = [{"promotion_id": "R1", "subscription_id": "P1", "valid_from": D, "valid_to": D,
                           "discount": 20.0},
                          {"promotion_id": "R2", "subscription_id": "P1", "valid_from": D, "discount": 50.0}]
    rows["charging"] = [{"usage_id": f"U{d}", "subscription_id": "P2", "usage_at": hour(24 * d),
                         "cell_id": "C1", "amount": 1.0} for d in range(3)]
    con = raw_db(rows)
    run(con, zt)
    fees = zt.fetch(con, "SELECT date, fee_revenue FROM marts.zone_daily WHERE service = 'recurring' "
                         "AND payment_type = 'prepaid' ORDER BY date")
    # the largest discount applies (50 %, not 20 + 50); terminated on the 4th: no fee from that day
    assert fees == [{"date": D, "fee_revenue": 0.5}, {"date": D + dt.timedelta(days=1), "fee_revenue": 0.5}]


def test_scorecard_quadrants_and_investment_ranking(raw_db, zt):
    zones = [zt.square(z, i) for i, z in enumerate(["ZA", "ZB", "ZC", "ZD"])]
    sites = [{"site_id": f"S{z}", "latitude": 0.005, "longitude": 0.005 + 0.01 * i}
             for i, z in enumerate(["ZA", "ZB", "ZC", "ZD"])]
    cells = [{"cell_id": f"C{z}", "site_id": f"S{z}"} for z in ["ZA", "ZB", "ZC", "ZD"]]
    subs = [{"subscription_id": "P1", "customer_id": "K1"}]
    revenue = {"ZA": 100.0, "ZB": 80.0, "ZC": 5.0, "ZD": 3.0}  # ZA, ZB high value
    poor = {"ZA", "ZD"}  # ZA and ZD drop 10 % of calls every hour
    charging = [{"usage_id": f"U{z}", "subscription_id": "P1", "usage_at": hour(1), "cell_id": f"C{z}",
                 "amount": a} for z, a in revenue.items()]
    kpis = [{"cell_id": f"C{z}", "period_start": hour(h), "drop_rate_pct": 10.0 if z in poor else 0.5}
            for z in revenue for h in range(4)]
    con = raw_db({"zones": zones, "sites": sites, "cells": cells, "customers": [{"customer_id": "K1"}],
                  "subscriptions": subs, "charging": charging, "kpi_hourly": kpis})
    run(con, zt)
    got = zt.fetch(con, "SELECT zone_id, revenue, experience_index, value_class, experience_class, quadrant, "
                        "investment_score, invest_rank FROM marts.zone_scorecard WHERE period = 'all' "
                        "ORDER BY zone_id")
    assert got == [
        {"zone_id": "ZA", "revenue": 100.0, "experience_index": 0.0, "value_class": "high",
         "experience_class": "poor", "quadrant": "invest", "investment_score": 100.0, "invest_rank": 1},
        {"zone_id": "ZB", "revenue": 80.0, "experience_index": 100.0, "value_class": "high",
         "experience_class": "good", "quadrant": "protect", "investment_score": 0.0, "invest_rank": 3},
        {"zone_id": "ZC", "revenue": 5.0, "experience_index": 100.0, "value_class": "low",
         "experience_class": "good", "quadrant": "maintain", "investment_score": 0.0, "invest_rank": 4},
        {"zone_id": "ZD", "revenue": 3.0, "experience_index": 0.0, "value_class": "low",
         "experience_class": "poor", "quadrant": "monitor", "investment_score": 3.0, "invest_rank": 2},
    ]
    periods = zt.fetch(con, "SELECT DISTINCT period, period_start, period_end, n_days FROM marts.zone_scorecard "
                            "ORDER BY period")
    assert periods == [{"period": p, "period_start": D, "period_end": D, "n_days": 1}
                       for p in ("all", "last_28d", "last_7d")]


def test_duplicate_key_fails_the_build_and_is_recorded(raw_db, zt):
    rows = base_rows(zt)
    rows["cells"].append({"cell_id": "C1", "site_id": "S2"})  # C1 twice
    con = raw_db(rows)
    with pytest.raises(CheckFailed, match="key:staging.cells") as err:
        run(con, zt)
    assert not err.value.result.passed
    bad = zt.fetch(con, "SELECT name, \"table\", passed, n_bad, examples FROM meta.checks WHERE NOT passed "
                        "ORDER BY name")
    assert "key:staging.cells" in {b["name"] for b in bad}
    cells = [b for b in bad if b["name"] == "key:staging.cells"]
    assert cells[0]["n_bad"] == 1 and '"cell_id": "C1"' in cells[0]["examples"]


def test_a_build_with_only_bss_sources_gives_unassigned_revenue(raw_db, zt):
    rows = base_rows(zt)
    rows["charging"] = [{"usage_id": "U1", "subscription_id": "P1", "usage_at": hour(9), "cell_id": "C2",
                         "amount": 2.0}]
    bss = {k: v for k, v in rows.items() if k in ("customers", "subscriptions", "charging")}
    bss["customers"] = [{"customer_id": "K1"}, {"customer_id": "K2"}]
    con = raw_db(bss, sources=("customers", "subscriptions", "charging"))
    result = run(con, zt)
    assert "raw.kpi_hourly" in result.created_inputs
    got = zt.fetch(con, "SELECT zone_id, service, revenue FROM marts.zone_daily ORDER BY ALL")
    assert got == [{"zone_id": "UNASSIGNED", "service": "data", "revenue": 2.0},
                   {"zone_id": "UNASSIGNED", "service": "recurring", "revenue": 0.0},
                   {"zone_id": "UNASSIGNED", "service": "recurring", "revenue": 1.0}]
    assert result.rows["marts.zone_kpi_daily"] == 0
    (sc,) = zt.fetch(con, "SELECT zone_id, revenue, quadrant, kpi_completeness, experience_index "
                          "FROM marts.zone_scorecard WHERE period = 'all'")
    # no KPI at all: completeness and experience are unknown (null), not 100 %
    assert sc == {"zone_id": "UNASSIGNED", "revenue": 3.0, "quadrant": None, "kpi_completeness": None,
                  "experience_index": None}


def test_throughput_is_volume_over_active_time(raw_db, zt):
    rows = base_rows(zt)
    rows["kpi_hourly"] = [
        {"cell_id": "C1", "period_start": hour(0), "dl_throughput_mbps": 10.0, "dl_active_time_s": 100.0},
        {"cell_id": "C1", "period_start": hour(1), "dl_throughput_mbps": 40.0, "dl_active_time_s": 300.0},
        # no active-time counter: 100 MB at 20 Mbit/s is 40 s of transfer
        {"cell_id": "C3", "period_start": hour(0), "dl_throughput_mbps": 20.0, "traffic_volume_mb": 100.0},
    ]
    con = raw_db(rows)
    run(con, zt)
    got = zt.fetch(con, "SELECT cell_id, dl_throughput_mbps, throughput_weight_s FROM marts.cell_kpi_daily "
                        "WHERE hours_present > 0 ORDER BY cell_id")
    assert got == [{"cell_id": "C1", "dl_throughput_mbps": 32.5, "throughput_weight_s": 400.0},
                   {"cell_id": "C3", "dl_throughput_mbps": 20.0, "throughput_weight_s": 40.0}]
    (z1,) = zt.fetch(con, "SELECT dl_throughput_mbps FROM marts.zone_kpi_daily WHERE zone_id = 'Z1'")
    assert z1["dl_throughput_mbps"] == pytest.approx((1000 + 12000 + 800) / 440)
