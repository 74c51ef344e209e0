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
    valued, missing = fig["data"]  # no outline trace of a selected zone until one is hovered
    assert valued["locations"] == ["Z1", "Z3"] and valued["z"] == [1.0, 3.0]
    assert missing["locations"] == ["Z2"] and missing["showscale"] is False
    assert "no data" in missing["hovertemplate"]
    assert "lower is better" in valued["colorbar"]["title"]["text"]
    checked = go.Figure(fig)  # well formed: Plotly accepts every property
    assert checked.layout.map.style == "white-bg" and not checked.layout.map.layers
    assert all(isinstance(t, go.Choroplethmap) for t in checked.data)


def test_choropleth_sends_short_numbers_and_a_highlight_only_when_asked() -> None:
    df = zones([1.23456789, 2.0, float("nan")]).with_columns(subscribers=pl.Series([10.4, 20.0, 30.0]))
    fig = figures.zone_choropleth(df, "/zones.geojson", value="drop_rate_pct", colorbar_title="x",
                                  colorscale="Blues", bbox=BBOX, highlight="Z2",
                                  hover_columns=[("drop_rate_pct", "drop rate", ".2f"),
                                                 ("subscribers", "subscribers", ",.0f")])
    valued, missing, selected = fig["data"]
    assert valued["z"] == [1.235, 2.0], "rounded to one decimal more than the hover shows"
    assert valued["customdata"][0] == ("North", 1.235, 10.4)
    assert missing["locations"] == ["Z3"], "NaN is no value, drawn grey"
    assert selected["name"] == "selected" and selected["locations"] == ["Z2"]
    assert all(t["geojson"] == "/zones.geojson" for t in fig["data"])
    go.Figure(fig)


def test_choropleth_uses_the_operator_tile_server_only_when_configured() -> None:
    fig = figures.zone_choropleth(zones([1.0, 2.0, 3.0]), GEO, value="drop_rate_pct", colorbar_title="x",
                                  colorscale="Blues", bbox=BBOX, tile_url="http://127.0.0.1:8080/{z}/{x}/{y}.png")
    assert fig["layout"]["map"]["layers"][0]["source"] == ["http://127.0.0.1:8080/{z}/{x}/{y}.png"]
    assert len(fig["data"]) == 1
    go.Figure(fig)


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
    by_name = {t["name"]: t for t in fig["data"]}
    assert set(by_name) == {"invest", "protect", "maintain", "monitor"}
    assert by_name["invest"]["customdata"][0][0] == "A" and by_name["invest"]["x"][0] < 90 < by_name["protect"]["x"][0]
    assert {a["text"] for a in fig["layout"]["annotations"]} == {"<b>invest</b>", "<b>protect</b>",
                                                                 "<b>maintain</b>", "<b>monitor</b>"}
    go.Figure(fig)


def test_matrix_of_nothing_is_an_empty_figure() -> None:
    empty = pl.DataFrame(schema={"zone_id": pl.String, "zone_name": pl.String, "revenue": pl.Float64,
                                 "experience_index": pl.Float64, "subscribers": pl.Int64, "quadrant": pl.String})
    assert len(figures.value_experience_matrix(empty, value_threshold=1, experience_threshold=1)["data"]) == 0


def test_revenue_by_service_stacks_services() -> None:
    df = pl.DataFrame({"day": [date(2026, 10, 1)] * 2 + [date(2026, 10, 2)], "service": ["data", "voice", "data"],
                       "revenue": [10.0, 5.0, 12.0]})
    fig = figures.revenue_by_service(df)
    assert fig["layout"]["barmode"] == "stack"
    assert {t["name"]: t["y"] for t in fig["data"]} == {"Data": [10.0, 12.0], "Voice": [5.0]}
    assert fig["data"][0]["x"] == ["2026-10-01", "2026-10-02"]
    go.Figure(fig)


def test_kpi_trend_states_completeness_and_threshold() -> None:
    df = pl.DataFrame({"day": [date(2026, 10, 1), date(2026, 10, 2)], "value": [1.5, 2.5],
                       "completeness": [1.0, 0.5]})
    fig = figures.kpi_trend(df, KPIS["drop_rate_pct"], threshold=2.0)
    trace = fig["data"][0]
    assert [c[0] for c in trace["customdata"]] == [100.0, 50.0]
    assert "of hours present" in trace["hovertemplate"]
    assert fig["layout"]["shapes"][0]["y0"] == 2.0 and "threshold 2" in fig["layout"]["annotations"][0]["text"]
    go.Figure(fig)


def test_cells_map_flags_breaching_cells_in_red() -> None:
    cells = pl.DataFrame({"cell_id": ["C1", "C2"], "latitude": [45.001, 45.002], "longitude": [9.001, 9.002],
                          "technology": ["4G", "5G"], "n_breaches": [0, 2], "breaches": ["", "Drop rate 3 %"]})
    fig = figures.cells_map(cells, {"type": "FeatureCollection", "features": [square("Z1", 9.0, 45.0)]},
                            bbox=BBOX)
    zone, ok, bad = fig["data"]
    assert zone["locations"] == ["Z1"] and ok["customdata"] == [("C1", "4G", "")]
    assert bad["marker"]["color"] == "#e03131" and bad["customdata"][0][0] == "C2"
    go.Figure(fig)


def test_warm_up_builds_every_kind() -> None:
    figures.warm_up()


def test_named_colour_scales_are_spelt_out_the_way_plotly_python_draws_them() -> None:
    """Plotly.js does not know `RdYlGn` and draws its own `Blues` from dark to light: dict figures carry the
    scale as colours, so that good is green and more revenue is darker."""
    good_high = figures.zone_choropleth(zones([1.0, 2.0, 3.0]), GEO, value="drop_rate_pct", colorbar_title="x",
                                        colorscale=KPIS["availability_pct"].colorscale, bbox=BBOX)["data"][0]
    assert good_high["colorscale"][0] == [0.0, "rgb(165,0,38)"] and good_high["colorscale"][-1][1] == "rgb(0,104,55)"
    good_low = figures.zone_choropleth(zones([1.0, 2.0, 3.0]), GEO, value="drop_rate_pct", colorbar_title="x",
                                       colorscale=KPIS["drop_rate_pct"].colorscale, bbox=BBOX)["data"][0]
    assert good_low["colorscale"][0][1] == "rgb(0,104,55)"
    blues = figures.zone_choropleth(zones([1.0, 2.0, 3.0]), GEO, value="drop_rate_pct", colorbar_title="x",
                                    colorscale="Blues", bbox=BBOX)["data"][0]["colorscale"]
    assert blues[0][1] == "rgb(247,251,255)" and blues[-1][1] == "rgb(8,48,107)"
    assert go.Figure({"data": [good_high]}).data[0].colorscale[0][1] == "rgb(165,0,38)"
