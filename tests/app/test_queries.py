"""Queries of the app on the sample warehouse: what executives and planners are shown is right."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app import queries
from app.warehouse import WarehouseReader
from etl.config import Settings

TRUTH = json.loads((Path(__file__).resolve().parents[2] / "data" / "sample" / "truth.json").read_text())


@pytest.fixture(scope="module")
def db(sample_warehouse: Path) -> WarehouseReader:
    return WarehouseReader(sample_warehouse)


@pytest.mark.parametrize("choice", ["7", "28", "all"])
def test_degraded_high_value_zones_are_in_invest_and_top_of_the_list(db: WarehouseReader, choice: str) -> None:
    planted = set(TRUTH["degraded_high_value_zones"])
    p = queries.period(db, choice)
    ranking = queries.investment_list(db, p)
    assert set(ranking["zone_id"].head(len(planted)).to_list()) == planted
    sc = queries.scorecard(db, p)
    assert set(sc.filter(sc["quadrant"] == "invest")["zone_id"].to_list()) >= planted


def test_every_zone_has_an_outline_and_the_box_holds_them(db: WarehouseReader) -> None:
    geojson, bbox = queries.zones_geojson(db)
    zones = json.loads((Path(__file__).resolve().parents[2] / "data" / "sample" / "zones.geojson").read_text())
    assert {f["id"] for f in geojson["features"]} == {f["properties"]["zone_id"] for f in zones["features"]}
    min_lon, min_lat, max_lon, max_lat = bbox
    for f in geojson["features"]:
        ring = f["geometry"]["coordinates"][0] if f["geometry"]["type"] == "Polygon" \
            else f["geometry"]["coordinates"][0][0]
        assert all(min_lon <= x <= max_lon and min_lat <= y <= max_lat for x, y in ring)


def test_revenue_filters_partition_the_total(db: WarehouseReader) -> None:
    p = queries.period(db, "28")
    total = queries.zone_revenue(db, p, service=None, payment_type=None)["revenue"].sum()
    by_payment = sum(queries.zone_revenue(db, p, service=None, payment_type=t)["revenue"].sum()
                     for t in ("prepaid", "postpaid"))
    by_service = sum(queries.zone_revenue(db, p, service=s, payment_type=None)["revenue"].sum()
                     for s in ("voice", "sms", "data", "roaming", "vas", "recurring"))
    assert total > 0
    assert by_payment == pytest.approx(total) and by_service == pytest.approx(total)
    assert queries.headline(db, p)["revenue"] == pytest.approx(total)


def test_headline_compares_with_the_previous_period(db: WarehouseReader) -> None:
    p = queries.period(db, "7")
    prev = p.previous()
    assert prev.n_days == p.n_days == 7 and (p.start - prev.end).days == 1
    now, before = queries.headline(db, p), queries.headline(db, prev)
    assert 0 < now["availability_pct"] <= 100 and 0 < before["availability_pct"] <= 100
    assert now["subscribers"] > 0 and now["arpu_month"] > 0


def test_zone_cells_flag_breaches_in_a_degraded_zone(db: WarehouseReader) -> None:
    p = queries.period(db, "28")
    thresholds = Settings().kpi_thresholds
    zone = TRUTH["degraded_high_value_zones"][0]
    cells = queries.zone_cells(db, zone, p, thresholds)
    assert cells.height > 0 and (cells["n_breaches"] > 0).all()
    assert cells["breaches"].str.contains("target|above|below").all()
    healthy = queries.investment_list(db, p)["zone_id"].to_list()[-1]
    assert (queries.zone_cells(db, healthy, p, thresholds)["n_breaches"] == 0).mean() > 0.5


def test_poor_experience_counts_customers_of_the_zone(db: WarehouseReader) -> None:
    thresholds = Settings().kpi_thresholds
    bad = queries.zone_poor_experience(db, TRUTH["degraded_high_value_zones"][0], thresholds)
    good = queries.zone_poor_experience(db, queries.investment_list(db, queries.period(db, "28"))["zone_id"][-1],
                                        thresholds)
    assert bad["customers"] > 0 and bad["poor_customers"] / bad["customers"] > 0.5
    assert good["poor_customers"] / max(good["customers"], 1) < bad["poor_customers"] / bad["customers"]


def test_unknown_zone_has_no_row(db: WarehouseReader) -> None:
    assert queries.zone_row(db, "NOPE'; DROP TABLE x; --", queries.period(db, "28")) is None


def test_subscribers_by_payment_type_add_up_to_all(db: WarehouseReader) -> None:
    p = queries.period(db, "28")
    total = queries.subscribers(db, p)
    direct = db.query("SELECT count(*) AS n FROM staging.subscriptions WHERE start_date <= ? "
                      "AND (termination_date IS NULL OR termination_date > ?)", [p.end, p.start])["n"][0]
    assert total == direct > 0
    assert queries.subscribers(db, p, payment_type="prepaid") + queries.subscribers(
        db, p, payment_type="postpaid") == total
    assert queries.headline(db, p, payment_type="prepaid")["subscribers"] == queries.subscribers(
        db, p, payment_type="prepaid")


def test_zone_series_are_the_zone_rows_of_the_marts(db: WarehouseReader) -> None:
    """The zone page's series are cut from every zone's days (memoised per version): the same numbers as
    asking the marts for the one zone."""
    p = queries.period(db, "7")
    zone = TRUTH["degraded_high_value_zones"][0]
    revenue = queries.zone_revenue_by_service(db, zone, p)
    direct = db.query("SELECT date AS day, service, sum(revenue) AS revenue FROM marts.zone_daily "
                      "WHERE zone_id = ? AND date BETWEEN ? AND ? GROUP BY ALL ORDER BY day, service",
                      [zone, p.start, p.end])
    assert revenue.columns == ["day", "service", "revenue"] and revenue.height == direct.height > 0
    assert revenue["revenue"].sum() == pytest.approx(direct["revenue"].sum())
    trend = queries.zone_kpi_trend(db, zone, p, "drop_rate_pct")
    kpi = db.query("SELECT date AS day, drop_rate_pct AS value FROM marts.zone_kpi_daily "
                   "WHERE zone_id = ? AND date BETWEEN ? AND ? ORDER BY day", [zone, p.start, p.end])
    assert trend.columns == ["day", "value", "completeness"] and trend["value"].to_list() == kpi["value"].to_list()
    assert queries.zone_kpi_trend(db, zone, p, "experience_index")["value"].max() <= 100
    cells = queries.zone_cells(db, zone, p, Settings().kpi_thresholds)
    inventory = db.query("SELECT cell_id FROM staging.cells WHERE zone_id = ? ORDER BY cell_id", [zone])
    assert cells["cell_id"].to_list() == inventory["cell_id"].to_list()
    assert queries.zone_cells(db, "NOPE", p, Settings().kpi_thresholds).height == 0


def test_warm_computes_the_common_answers_once(sample_warehouse: Path) -> None:
    fresh = WarehouseReader(sample_warehouse)
    queries.warm(fresh, Settings().kpi_thresholds)
    keys = {key for _version, key in fresh._memo}
    assert "zone_outlines" in keys and "freshness" in keys
    assert any(isinstance(k, tuple) and k[0] == "cells_of_period" for k in keys)
    assert any(isinstance(k, tuple) and k[0] == "poor_experience_by_zone" for k in keys)
    p = queries.period(fresh, "7")
    calls = []
    fresh.query = lambda *a, **k: calls.append(a)  # type: ignore[method-assign]
    zone = TRUTH["degraded_high_value_zones"][0]
    queries.zone_cells(fresh, zone, p, Settings().kpi_thresholds)
    queries.zone_revenue_by_service(fresh, zone, p)
    queries.headline(fresh, p)
    assert calls == [], "a zone page and the headline read nothing more once warmed"


def test_grid_export_neutralises_formula_like_text() -> None:
    from app.components import grid_csv

    defs = [{"field": "cell_id", "headerName": "Cell"}, {"field": "v", "headerName": "Value"},
            {"field": "n", "headerName": "N"}]
    rows = [{"cell_id": "=1+1", "v": -2.5, "n": 3}, {"cell_id": "@SUM(A1)", "v": None, "n": -1},
            {"cell_id": "C1", "v": 1.0, "n": None}]
    text = grid_csv(rows, defs)
    assert text.splitlines() == ['"Cell","Value","N"', '"\'=1+1","-2.5","3"', '"\'@SUM(A1)","","-1"',
                                 '"C1","1.0",""']
