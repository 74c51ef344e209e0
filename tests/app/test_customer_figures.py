"""The customer figures as pure functions: literal frames in, valid Plotly figures out, drawing what they say."""

from __future__ import annotations

import datetime as dt

import plotly.graph_objects as go
import polars as pl

from app import figures_customer as figs
from app.constants import KPIS

T0 = dt.datetime(2026, 10, 27)


def test_usage_by_service_stacks_charges_and_events_per_service() -> None:
    daily = pl.DataFrame({
        "day": [dt.date(2026, 10, 1), dt.date(2026, 10, 1), dt.date(2026, 10, 2)],
        "service": ["voice", "data", "data"], "amount": [0.5, 1.25, 2.0], "n_events": [3, 4, 5],
    })
    fig = figs.usage_by_service(daily, currency="EUR")
    go.Figure(fig)  # a valid figure
    charges = {t["name"]: t["y"] for t in fig["data"] if t["yaxis"] == "y"}
    events = {t["legendgroup"]: t["y"] for t in fig["data"] if t["yaxis"] == "y2"}
    assert charges == {"Voice": [0.5], "Data": [1.25, 2.0]} and events == {"voice": [3], "data": [4, 5]}
    assert fig["layout"]["barmode"] == "stack" and "EUR" in fig["layout"]["yaxis"]["title"]["text"]


def test_timeline_draws_usage_kpis_with_gaps_alarms_and_the_target() -> None:
    end = T0 + dt.timedelta(hours=6)
    usage = pl.DataFrame({"hour_at": [T0 + dt.timedelta(hours=1)], "n_events": [4], "data_mb": [12.5]})
    kpis = pl.DataFrame({
        "cell_id": ["C1"] * 5, "period_start": [T0 + dt.timedelta(hours=h) for h in (0, 1, 2, 4, 5)],
        "availability_pct": [100.0, 100.0, 0.0, 100.0, 100.0],
    })
    alarms = pl.DataFrame({"alarm_id": ["A1", "A2"], "raised_at": [T0 + dt.timedelta(hours=2), T0 + dt.timedelta(hours=5)],
                           "cleared_at": [T0 + dt.timedelta(hours=3), None], "service_affecting": [True, False],
                           "perceived_severity": ["critical", "warning"]})
    fig = figs.experience_timeline(usage, kpis, alarms, kpi=KPIS["availability_pct"], threshold=99.0, start=T0, end=end,
                                   cells=["C1", "C2"], since=T0 + dt.timedelta(hours=3))
    go.Figure(fig)
    bars, c1, c2 = fig["data"]
    assert bars["y"] == [0, 4, 0, 0, 0, 0]
    assert c1["y"] == [100.0, 100.0, 0.0, None, 100.0, 100.0], "an hour without a KPI row is a gap, not a zero"
    assert c2["y"] == [None] * 6 and c1["connectgaps"] is False
    bands = [s for s in fig["layout"]["shapes"] if s["type"] == "rect"]
    assert [(b["x0"][11:16], b["x1"][11:16]) for b in bands] == [("02:00", "03:00"), ("05:00", "06:00")]
    assert bands[0]["fillcolor"] != bands[1]["fillcolor"], "service-affecting alarms stand out"
    target = [s for s in fig["layout"]["shapes"] if s["type"] == "line" and s.get("yref") == "y2"]
    assert target and target[0]["y0"] == 99.0
    texts = [a["text"] for a in fig["layout"]["annotations"]]
    assert "A1 (critical)" in texts and "care window" in texts


def test_cells_map_sizes_by_share_flags_problems_and_draws_home_only_when_known() -> None:
    cells = pl.DataFrame({"cell_id": ["C1", "C2", "C3"], "latitude": [45.1, 45.2, None], "longitude": [9.1, 9.2, None],
                          "share": [0.8, 0.2, 0.0], "zone_name": ["A", "B", "B"], "site_id": ["S1", "S2", "S3"],
                          "technology": ["4G", "5G", "4G"]})
    geo = {"type": "FeatureCollection", "features": [
        {"type": "Feature", "id": "Z1", "properties": {},
         "geometry": {"type": "Polygon", "coordinates": [[[9.0, 45.0], [9.3, 45.0], [9.3, 45.3], [9.0, 45.0]]]}}]}
    fig = figs.cells_map(cells, geo, home=(45.15, 9.15), flagged=["C2"])
    go.Figure(fig)
    names = [t["name"] for t in fig["data"]]
    assert names == ["zones", "their cells", "cells with a problem", "home"]
    blue, red = fig["data"][1], fig["data"][2]
    assert blue["customdata"][0][0] == "C1" and red["customdata"][0][0] == "C2"
    assert blue["marker"]["size"][0] > red["marker"]["size"][0]
    assert fig["layout"]["map"]["style"] == "white-bg" and "center" in fig["layout"]["map"]
    masked = figs.cells_map(cells, geo, home=None)
    assert "home" not in [t["name"] for t in masked["data"]]
