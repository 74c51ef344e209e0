"""Staging: every contract column kept under its name and type, plus the documented derived columns."""

from __future__ import annotations

import datetime as dt

import pytest

from etl.contracts import SOURCES
from etl.geo import build_geo
from etl.transforms.run import build
from etl.transforms.staging import IBIS_TYPES

DUCK = {"string": "VARCHAR", "int": "BIGINT", "float": "DOUBLE", "bool": "BOOLEAN", "date": "DATE",
        "timestamp": "TIMESTAMP", "geometry": "VARCHAR"}
STAGING = tuple(f"staging.{s}" for s in SOURCES) + ("staging.alarm_cells", "staging.calendar")
T0 = dt.datetime(2026, 3, 2, 22, 30)


def rows(zt) -> dict:
    return {
        "zones": [zt.square("Z1", 0), zt.square("Z2", 1)],
        "sites": [{"site_id": "S1", "latitude": 0.005, "longitude": 0.005},
                  {"site_id": "S2", "latitude": 0.005, "longitude": 0.015}],
        "cells": [{"cell_id": "C1", "site_id": "S1"},
                  {"cell_id": "C2", "site_id": "S1", "latitude": 0.005, "longitude": 0.015},
                  {"cell_id": "C3", "site_id": "S2", "status": "planned"}],
        "customers": [{"customer_id": "K1", "home_latitude": 0.005, "home_longitude": 0.015},
                      {"customer_id": "K2"}, {"customer_id": "K3"}],
        "subscriptions": [{"subscription_id": "P1", "customer_id": "K1"},
                          {"subscription_id": "P2", "customer_id": "K2", "status": "suspended"}],
        "charging": [
            {"usage_id": "U1", "subscription_id": "P2", "usage_at": T0, "cell_id": "C1", "amount": 1.0},
            {"usage_id": "U2", "subscription_id": "P2", "usage_at": T0 + dt.timedelta(hours=2),
             "cell_id": "C2", "amount": 1.0},
            {"usage_id": "U3", "subscription_id": "P2", "usage_at": T0, "cell_id": "C2", "amount": 1.0},
            {"usage_id": "U4", "subscription_id": "P1", "usage_at": T0, "cell_id": None, "amount": 1.0,
             "service": "roaming"},
        ],
        "kpi_hourly": [{"cell_id": "C1", "period_start": dt.datetime(2026, 3, 2, 23),
                        "availability_pct": 90.0, "unavailable_time_s": 900.0},
                       {"cell_id": "C2", "period_start": dt.datetime(2026, 3, 2, 23),
                        "availability_pct": 90.0, "traffic_volume_mb": 50.0, "dl_throughput_mbps": 10.0}],
        "alarms": [{"alarm_id": "A1", "alarmed_object_id": "S1", "alarmed_object_type": "site",
                    "raised_at": T0},
                   {"alarm_id": "A2", "alarmed_object_id": "C3", "alarmed_object_type": "cell",
                    "raised_at": T0}],
    }


@pytest.fixture
def built(raw_db, zt):
    con = raw_db(rows(zt))
    build_geo(con)
    build(con, only=STAGING)
    return con


def test_every_contract_column_keeps_its_name_and_type(built):
    for name, src in SOURCES.items():
        cols = built.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = 'staging' "
            "AND table_name = ? ORDER BY ordinal_position", [name]).fetchall()
        types = dict(cols)
        for c in src.columns:
            assert types.get(c.name) == DUCK[c.dtype], f"staging.{name}.{c.name}"
        assert "_file" in types
        assert set(IBIS_TYPES) == set(DUCK)
    raw_n = built.execute("SELECT count(*) FROM raw.charging").fetchall()
    assert built.execute("SELECT count(*) FROM staging.charging").fetchall() == raw_n


def test_cells_take_their_site_location_and_zone(built, zt):
    got = zt.fetch(built, "SELECT cell_id, latitude, longitude, location_source, zone_id, is_in_service "
                          "FROM staging.cells ORDER BY cell_id")
    assert got == [
        {"cell_id": "C1", "latitude": 0.005, "longitude": 0.005, "location_source": "site", "zone_id": "Z1",
         "is_in_service": True},
        {"cell_id": "C2", "latitude": 0.005, "longitude": 0.015, "location_source": "cell", "zone_id": "Z2",
         "is_in_service": True},
        {"cell_id": "C3", "latitude": 0.005, "longitude": 0.015, "location_source": "site", "zone_id": "Z2",
         "is_in_service": False},
    ]
    assert zt.fetch(built, "SELECT site_id, zone_id, zone_method FROM staging.sites ORDER BY 1") == [
        {"site_id": "S1", "zone_id": "Z1", "zone_method": "within"},
        {"site_id": "S2", "zone_id": "Z2", "zone_method": "within"}]


def test_charging_gets_date_hour_zone_and_customer(built, zt):
    got = zt.fetch(built, "SELECT usage_id, usage_date, usage_hour, zone_id, customer_id FROM staging.charging "
                          "ORDER BY usage_id")
    d = dt.date(2026, 3, 2)
    assert got == [
        {"usage_id": "U1", "usage_date": d, "usage_hour": dt.datetime(2026, 3, 2, 22), "zone_id": "Z1",
         "customer_id": "K2"},
        {"usage_id": "U2", "usage_date": d + dt.timedelta(days=1), "usage_hour": dt.datetime(2026, 3, 3, 0),
         "zone_id": "Z2", "customer_id": "K2"},
        {"usage_id": "U3", "usage_date": d, "usage_hour": dt.datetime(2026, 3, 2, 22), "zone_id": "Z2",
         "customer_id": "K2"},
        {"usage_id": "U4", "usage_date": d, "usage_hour": dt.datetime(2026, 3, 2, 22), "zone_id": None,
         "customer_id": "K1"},
    ]


def test_home_zone_from_coordinates_else_most_usage(built, zt):
    got = zt.fetch(built, "SELECT customer_id, home_zone_id, home_zone_source FROM staging.customers ORDER BY 1")
    assert got == [
        {"customer_id": "K1", "home_zone_id": "Z2", "home_zone_source": "home_location"},
        {"customer_id": "K2", "home_zone_id": "Z2", "home_zone_source": "usage"},  # 2 events in Z2, 1 in Z1
        {"customer_id": "K3", "home_zone_id": None, "home_zone_source": None},
    ]


def test_kpi_hours_recompute_availability_and_carry_weights(built, zt):
    got = zt.fetch(built, "SELECT cell_id, kpi_date, zone_id, availability_pct, period_s, unavailable_s, "
                          "available_s, traffic_weight_mb, throughput_weight_s, is_availability_recomputed AS r "
                          "FROM staging.kpi_hourly ORDER BY cell_id")
    assert got == [
        # the counter (900 s) wins over the exported 90 %: 100 x (3600 - 900) / 3600 = 75 %
        {"cell_id": "C1", "kpi_date": dt.date(2026, 3, 2), "zone_id": "Z1", "availability_pct": 75.0,
         "period_s": 3600.0, "unavailable_s": 900.0, "available_s": 2700.0, "traffic_weight_mb": 100.0,
         "throughput_weight_s": 16.0, "r": True},
        # no counter: the exported 90 % stands; 50 MB at 10 Mbit/s is 40 s of transfer
        {"cell_id": "C2", "kpi_date": dt.date(2026, 3, 2), "zone_id": "Z2", "availability_pct": 90.0,
         "period_s": 3600.0, "unavailable_s": 360.0, "available_s": 3240.0, "traffic_weight_mb": 50.0,
         "throughput_weight_s": 40.0, "r": False},
    ]


def test_alarm_cells_expand_sites_to_their_cells(built, zt):
    got = zt.fetch(built, "SELECT alarm_id, cell_id, site_id, alarmed_object_type FROM staging.alarm_cells "
                          "ORDER BY ALL")
    assert got == [
        {"alarm_id": "A1", "cell_id": "C1", "site_id": "S1", "alarmed_object_type": "site"},
        {"alarm_id": "A1", "cell_id": "C2", "site_id": "S1", "alarmed_object_type": "site"},
        {"alarm_id": "A2", "cell_id": "C3", "site_id": "S2", "alarmed_object_type": "cell"},
    ]


def test_calendar_spans_the_event_days(built, zt):
    got = zt.fetch(built, "SELECT date, month_start, days_in_month FROM staging.calendar ORDER BY date")
    assert got == [{"date": dt.date(2026, 3, 2), "month_start": dt.date(2026, 3, 1), "days_in_month": 31},
                   {"date": dt.date(2026, 3, 3), "month_start": dt.date(2026, 3, 1), "days_in_month": 31}]


def test_a_raw_table_without_optional_columns_still_stages(raw_db, zt):
    con = raw_db({}, sources=("zones", "sites"))
    # a landed kpi table that lacks every optional counter column
    con.execute("CREATE TABLE raw.kpi_hourly (cell_id VARCHAR, period_start TIMESTAMP, availability_pct DOUBLE, "
                "accessibility_pct DOUBLE, drop_rate_pct DOUBLE, dl_throughput_mbps DOUBLE, latency_ms DOUBLE, "
                "prb_utilisation_pct DOUBLE, traffic_volume_mb DOUBLE, _file VARCHAR, _line BIGINT, "
                "_load_id BIGINT)")
    con.execute("INSERT INTO raw.kpi_hourly VALUES ('C9', '2026-03-02 10:00', 99, 98, 1, 20, 30, 40, 10, "
                "'k.csv', 2, 1)")
    build_geo(con)
    build(con, only=("staging.kpi_hourly",))
    (row,) = zt.fetch(con, "SELECT cell_id, availability_pct, unavailable_time_s, zone_id, "
                           "is_drop_rate_recomputed FROM staging.kpi_hourly")
    assert row == {"cell_id": "C9", "availability_pct": 99.0, "unavailable_time_s": None, "zone_id": None,
                   "is_drop_rate_recomputed": False}
