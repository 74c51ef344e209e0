from __future__ import annotations

from datetime import date

import plotly.graph_objects as go
import polars as pl
import pytest

from app import figures
from app.constants import KPIS


def square(zone_id: str, x: float, y: float) -> dict:
    ring = [[x, y], [x + 0.01, y], [x + 0.01, y + 0.01], [x, y + 0.01], [x, y]]
    return {"type": "Feature", "id": zone_id, "properties": {"zone_id": zone_id},
            "geometry": {"type": "Polygon", "coordinates": [ring]}}


GEO = {"type": "FeatureCollection", "features": [square("Z1", 9.0, 45.0), square("Z2", 9.01, 45.0),
                                                 square("Z3", 9.02, 45.0)]}
BBOX = (9.0, 45.0, 9.03, 45.01)


def zones(values: list[float | None]) -> pl.DataFrame:
    return pl.DataFrame({"zone_id": ["Z1", "Z2", "Z3"], "zone_name": ["North", "Centre", "South"],
                         "drop_rate_pct": values, "subscribers": [10.0, 20.0, 30.0]})


def test_choropleth_draws_every_zone_and_never_shows_missing_as_zero() -> None:
    fig = figures.zone_choropleth(zones([1.0, None, 3.0]), GEO, value="drop_rate_pct",
                                  colorbar_title=KPIS["drop_rate_pct"].legend, colorscale="RdYlGn_r", bbox=BBOX,
                                  hover_columns=[("subscribers", "subscribers", ",.0f")])
    valued, missing, selected = fig.data
    assert list(valued.locations) == ["Z1", "Z3"] and list(valued.z) == [1.0, 3.0]
    assert list(missing.locations) == ["Z2"] and missing.showscale is False
    assert "no data" in missing.hovertemplate
    assert selected.name == "selected" and list(selected.locations) == []
    assert "lower is better" in valued.colorbar.title.text
    assert fig.layout.map.style == "white-bg" and not fig.layout.map.layers
    assert all(isinstance(t, go.Choroplethmap) for t in fig.data)


def test_choropleth_uses_the_operator_tile_server_only_when_configured() -> None:
    fig = figures.zone_choropleth(zones([1.0, 2.0, 3.0]), GEO, value="drop_rate_pct", colorbar_title="x",
                                  colorscale="Blues", bbox=BBOX, tile_url="http://127.0.0.1:8080/{z}/{x}/{y}.png")
    assert fig.layout.map.layers[0].source == ("http://127.0.0.1:8080/{z}/{x}/{y}.png",)


def test_map_view_fits_the_box() -> None:
    small = figures.map_view((9.0, 45.0, 9.03, 45.01))
    large = figures.map_view((8.0, 44.0, 10.0, 46.0))
    assert small["center"] == pytest.approx({"lon": 9.015, "lat": 45.005})
    assert small["zoom"] > large["zoom"] > 0


def test_matrix_puts_each_zone_in_its_quadrant() -> None:
    df = pl.DataFrame({
        "zone_id": ["A", "B", "C", "D"], "zone_name": list("ABCD"), "revenue": [900.0, 800.0, 100.0, 50.0],
        "experience_index": [60.0, 99.0, 98.0, 70.0], "subscribers": [10, 20, 5, 1],
        "quadrant": ["invest", "protect", "maintain", "monitor"],
    })
    fig = figures.value_experience_matrix(df, value_threshold=400.0, experience_threshold=90.0)
    by_name = {t.name: t for t in fig.data}
    assert set(by_name) == {"invest", "protect", "maintain", "monitor"}
    assert by_name["invest"].customdata[0][0] == "A" and by_name["invest"].x[0] < 90 < by_name["protect"].x[0]
    assert {a.text for a in fig.layout.annotations} == {"<b>invest</b>", "<b>protect</b>", "<b>maintain</b>",
                                                        "<b>monitor</b>"}


def test_matrix_of_nothing_is_an_empty_figure() -> None:
    empty = pl.DataFrame(schema={"zone_id": pl.String, "zone_name": pl.String, "revenue": pl.Float64,
                                 "experience_index": pl.Float64, "subscribers": pl.Int64, "quadrant": pl.String})
    assert len(figures.value_experience_matrix(empty, value_threshold=1, experience_threshold=1).data) == 0


def test_revenue_by_service_stacks_services() -> None:
    df = pl.DataFrame({"day": [date(2026, 10, 1)] * 2 + [date(2026, 10, 2)], "service": ["data", "voice", "data"],
                       "revenue": [10.0, 5.0, 12.0]})
    fig = figures.revenue_by_service(df)
    assert fig.layout.barmode == "stack"
    assert {t.name: list(t.y) for t in fig.data} == {"Data": [10.0, 12.0], "Voice": [5.0]}


def test_kpi_trend_states_completeness_and_threshold() -> None:
    df = pl.DataFrame({"day": [date(2026, 10, 1), date(2026, 10, 2)], "value": [1.5, 2.5],
                       "completeness": [1.0, 0.5]})
    fig = figures.kpi_trend(df, KPIS["drop_rate_pct"], threshold=2.0)
    assert [c[0] for c in fig.data[0].customdata] == [100.0, 50.0]
    assert "of hours present" in fig.data[0].hovertemplate
    assert fig.layout.shapes[0].y0 == 2.0
