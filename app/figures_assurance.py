"""Figures of the assurance page as pure functions: frames in, Plotly figures out (no Dash, no warehouse).

The affected-area map follows app/figures.py: MapLibre traces on `white-bg`, our own zone outlines, no
tiles unless the operator has a tile server.
"""

from __future__ import annotations

from collections.abc import Sequence

import plotly.graph_objects as go
import polars as pl

from app.figures import _base_layout, _map_layout

IN_ALARM = "#e03131"
NEARBY = "#868e96"
ZONE_FILL = "#fff5f5"


def affected_area_map(cells: pl.DataFrame, zone_geojson: dict, *, bbox: Sequence[float], height: int = 380,
                      tile_url: str | None = None, title: str | None = None) -> go.Figure:
    """The zones an alarm touches, its cells in red and the zones' other cells in grey.

    `cells` has cell_id, site_id, technology, latitude, longitude, is_in_alarm.
    """
    fig = go.Figure()
    features = zone_geojson.get("features", [])
    fig.add_trace(go.Choroplethmap(
        geojson=zone_geojson, locations=[f["id"] for f in features], z=[0] * len(features),
        colorscale=[[0, ZONE_FILL], [1, ZONE_FILL]], showscale=False, name="affected zones",
        customdata=[[f["properties"].get("zone_name") or f["id"]] for f in features],
        hovertemplate="<b>%{customdata[0]}</b> (%{location})<extra></extra>",
        marker={"line": {"width": 1.5, "color": "#495057"}, "opacity": 0.6},
    ))
    located = cells.filter(pl.col("latitude").is_not_null() & pl.col("longitude").is_not_null())
    for in_alarm, colour, size, name in ((False, NEARBY, 8, "other cells of the zone"),
                                         (True, IN_ALARM, 14, "cells in alarm")):
        part = located.filter(pl.col("is_in_alarm") == in_alarm)
        if part.height == 0:
            continue
        fig.add_trace(go.Scattermap(
            lat=part["latitude"].to_list(), lon=part["longitude"].to_list(), mode="markers", name=name,
            marker={"size": size, "color": colour},
            customdata=part.select(["cell_id", "site_id", "technology"]).rows(),
            hovertemplate="<b>%{customdata[0]}</b> %{customdata[2]}<br>site %{customdata[1]}<extra>"
                          + name + "</extra>",
        ))
    fig.update_layout(legend={"orientation": "h", "y": -0.05})
    return _map_layout(fig, bbox, height=height, tile_url=tile_url, title=title)


def serving_cells_chart(cells: pl.DataFrame, *, need_mbps: float, height: int = 280) -> go.Figure:
    """Busy-hour downlink throughput of the serving cells (typical and bad day) against the need.

    `cells` has cell_id, dl_throughput_median_mbps, dl_throughput_p10_mbps, result.
    """
    fig = go.Figure()
    if cells.height == 0:
        return _base_layout(fig, height=height)
    ids = cells["cell_id"].to_list()
    fig.add_trace(go.Bar(x=ids, y=cells["dl_throughput_median_mbps"].to_list(), name="typical busy hour (median)",
                         marker_color="#74c0fc",
                         hovertemplate="%{x}: %{y:.1f} Mbit/s<extra>typical busy hour</extra>"))
    fig.add_trace(go.Bar(x=ids, y=cells["dl_throughput_p10_mbps"].to_list(), name="bad busy hour (10th percentile)",
                         marker_color="#1864ab",
                         hovertemplate="%{x}: %{y:.1f} Mbit/s<extra>bad busy hour</extra>"))
    fig.add_hline(y=need_mbps, line_dash="dot", line_color=IN_ALARM,
                  annotation_text=f"need {need_mbps:g} Mbit/s", annotation_position="top left")
    fig.update_layout(barmode="group", legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(title="downlink Mbit/s in the busy hour", gridcolor="#eee", rangemode="tozero")
    return _base_layout(fig, height=height)
