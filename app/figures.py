"""Figures as pure functions: frames in, Plotly figures out. No Dash, no warehouse, tested on their own.

Arrays go to Plotly as NumPy arrays: it validates Python lists element by element, which at hundreds of
zones costs more than the queries. Maps use MapLibre traces (`Choroplethmap`, `Scattermap`) on the `white-bg` style: no tiles, no token, no
request leaves the machine; zone outlines are drawn from our own geometry. An operator with a tile server
can pass its URL template as `tile_url`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date

import numpy as np
import plotly.graph_objects as go
import polars as pl

from app.constants import MAP_HEIGHT, OUTLINE_COLOUR, QUADRANTS, SERVICE_LABELS, Kpi

FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12}


def _layout_base(height: int, title: str | None = None) -> dict:
    return {"height": height, "margin": {"l": 8, "r": 8, "t": 36 if title else 8, "b": 8}, "font": FONT,
            "title": {"text": title, "x": 0.01, "font": {"size": 14}} if title else None,
            "paper_bgcolor": "white", "plot_bgcolor": "white"}


def _base_layout(fig: go.Figure, *, height: int, title: str | None = None) -> go.Figure:
    fig.update_layout(**_layout_base(height, title))
    return fig


def map_view(bbox: Sequence[float], *, width_px: int = 640, height_px: int = MAP_HEIGHT) -> dict:
    """Centre and zoom that fit a (min_lon, min_lat, max_lon, max_lat) box in a map of the given size."""
    min_lon, min_lat, max_lon, max_lat = bbox
    lon_span = max(max_lon - min_lon, 1e-4)
    lat_rad = [math.radians(v) for v in (min_lat, max_lat)]
    merc = [math.log(math.tan(math.pi / 4 + r / 2)) for r in lat_rad]
    lat_span = max((merc[1] - merc[0]) * 180 / math.pi, 1e-4)
    # MapLibre draws the world 512 px wide at zoom 0; a fifth of a level keeps a margin round the outline.
    zoom = min(math.log2(360 * width_px / 512 / lon_span), math.log2(360 * height_px / 512 / lat_span)) - 0.2
    return {"center": {"lon": (min_lon + max_lon) / 2, "lat": (min_lat + max_lat) / 2},
            "zoom": max(0.0, min(zoom, 18.0))}


def _map_layout_dict(bbox: Sequence[float], *, height: int, tile_url: str | None, title: str | None,
                     width_px: int = 520) -> dict:
    view = map_view(bbox, width_px=width_px, height_px=height)
    map_args: dict = {"style": "white-bg", **view}
    if tile_url:
        map_args["layers"] = [{"below": "traces", "sourcetype": "raster", "source": [tile_url]}]
    return {"map": map_args, "uirevision": "zones", **_layout_base(height, title)}


def _map_layout(fig: go.Figure, bbox: Sequence[float], *, height: int, tile_url: str | None,
                title: str | None, width_px: int = 520) -> go.Figure:
    fig.update_layout(**_map_layout_dict(bbox, height=height, tile_url=tile_url, title=title, width_px=width_px))
    return fig


def zone_choropleth(zones: pl.DataFrame, geojson: dict, *, value: str, colorbar_title: str, colorscale: str,
                    bbox: Sequence[float], hover_columns: Sequence[tuple[str, str, str]] = (),
                    height: int = MAP_HEIGHT, tile_url: str | None = None, title: str | None = None,
                    highlight: str | None = None) -> go.Figure:
    """A choropleth of `value` per zone; zones without a value are drawn as grey outlines, never as zero.

    `zones` has `zone_id`, `zone_name` and `value`; `hover_columns` are (column, label, d3-format)
    triples shown on hover. `geojson` is a FeatureCollection whose features carry `id` = zone_id.
    """
    known = zones.filter(pl.col(value).is_not_null())
    missing = zones.filter(pl.col(value).is_null())
    hover = "<b>%{customdata[0]}</b> (%{location})<br>" + "<br>".join(
        f"{label}: %{{customdata[{i + 1}]:{fmt}}}" for i, (_, label, fmt) in enumerate(hover_columns)
    ) + "<extra></extra>"
    custom_cols = ["zone_name", *[c for c, _, _ in hover_columns]]
    traces = []
    traces.append(go.Choroplethmap(
        geojson=geojson, locations=known["zone_id"].to_numpy(), z=known[value].to_numpy(),
        customdata=known.select(custom_cols).to_numpy(), hovertemplate=hover, colorscale=colorscale,
        marker={"line": {"width": 0.6, "color": OUTLINE_COLOUR}, "opacity": 0.85},
        colorbar={"title": {"text": colorbar_title}, "thickness": 12, "len": 0.8}, name=value,
    ))
    if missing.height:
        traces.append(go.Choroplethmap(
            geojson=geojson, locations=missing["zone_id"].to_numpy(), z=np.zeros(missing.height),
            colorscale=[[0, "#f1f3f5"], [1, "#f1f3f5"]], showscale=False,
            customdata=missing.select(["zone_name"]).to_numpy(),
            hovertemplate="<b>%{customdata[0]}</b> (%{location})<br>no data for this zone<extra></extra>",
            marker={"line": {"width": 0.6, "color": OUTLINE_COLOUR}}, name="no data",
        ))
    # The outline of the selected or hovered zone (linked across maps by app/assets/opencem.js).
    traces.append(go.Choroplethmap(
            geojson=geojson, locations=[highlight] if highlight else [], z=[0] if highlight else [], colorscale=[[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]],
            showscale=False, hoverinfo="skip", marker={"line": {"width": 3, "color": "#212529"}}, name="selected",
    ))
    return go.Figure(data=traces, layout=_map_layout_dict(bbox, height=height, tile_url=tile_url, title=title))


def value_experience_matrix(zones: pl.DataFrame, *, value_threshold: float, experience_threshold: float,
                            height: int = 420) -> go.Figure:
    """Each zone a point: revenue (y) against experience (x), the four quadrants named and shaded.

    `zones` has zone_id, zone_name, revenue, experience_index, subscribers, quadrant. The figure is built
    in one constructor call: Plotly validates every property set, and piecemeal updates cost several times more.
    """
    if zones.height == 0:
        return _base_layout(go.Figure(), height=height)
    x_max = max(100.0, float(zones["experience_index"].max() or 100))
    y_max = float(zones["revenue"].max() or 1) * 1.08
    x_min = min(0.0, float(zones["experience_index"].min() or 0))
    boxes = {  # quadrant → (x0, x1, y0, y1)
        "invest": (x_min, experience_threshold, value_threshold, y_max),
        "protect": (experience_threshold, x_max, value_threshold, y_max),
        "maintain": (experience_threshold, x_max, 0, value_threshold),
        "monitor": (x_min, experience_threshold, 0, value_threshold),
    }
    shapes = [{"type": "rect", "x0": x0, "x1": x1, "y0": y0, "y1": y1, "fillcolor": QUADRANTS[name][1],
               "opacity": 0.07, "line": {"width": 0}, "layer": "below"} for name, (x0, x1, y0, y1) in boxes.items()]
    dotted = {"dash": "dot", "color": "#868e96", "width": 1}
    shapes += [{"type": "line", "x0": experience_threshold, "x1": experience_threshold, "y0": 0, "y1": 1,
                "yref": "paper", "line": dotted},
               {"type": "line", "x0": 0, "x1": 1, "xref": "paper", "y0": value_threshold, "y1": value_threshold,
                "line": dotted}]
    corners = {"invest": (0.01, 0.99, "left", "top"), "protect": (0.99, 0.99, "right", "top"),
               "maintain": (0.99, 0.01, "right", "bottom"), "monitor": (0.01, 0.01, "left", "bottom")}
    annotations = [{"x": x, "y": y, "xref": "paper", "yref": "paper", "xanchor": xa, "yanchor": ya,
                    "showarrow": False, "text": f"<b>{name}</b>", "font": {"color": QUADRANTS[name][1], "size": 13},
                    "bgcolor": "rgba(255,255,255,0.8)"} for name, (x, y, xa, ya) in corners.items()]
    size_ref = max(float(zones["subscribers"].max() or 1), 1.0)
    traces = []
    for name, (_, colour) in QUADRANTS.items():
        part = zones.filter(pl.col("quadrant") == name)
        if part.height == 0:
            continue
        traces.append(go.Scatter(
            x=part["experience_index"].to_numpy(), y=part["revenue"].to_numpy(), mode="markers", name=name,
            marker={"color": colour, "size": (8 + 22 * part["subscribers"].fill_null(0) / size_ref).to_numpy(),
                    "line": {"width": 0.5, "color": "white"}},
            customdata=part.select(["zone_id", "zone_name", "subscribers"]).to_numpy(),
            hovertemplate="<b>%{customdata[1]}</b> (%{customdata[0]})<br>revenue %{y:,.0f}<br>"
                          "experience %{x:.1f}<br>%{customdata[2]:,} subscribers<extra>" + name + "</extra>",
        ))
    layout = {
        "shapes": shapes, "annotations": annotations, "legend": {"orientation": "h", "y": -0.2},
        "xaxis": {"title": {"text": "experience index (0-100, higher is better)"}, "range": [x_min, x_max],
                  "gridcolor": "#eee"},
        "yaxis": {"title": {"text": "revenue in the period"}, "range": [0, y_max], "gridcolor": "#eee"},
        **_layout_base(height),
    }
    return go.Figure(data=traces, layout=layout)


def revenue_by_service(df: pl.DataFrame, *, height: int = 320, currency: str = "EUR") -> go.Figure:
    """Stacked daily revenue per service: df has day, service, revenue."""
    fig = go.Figure()
    for service in df["service"].unique(maintain_order=True).to_list():
        part = df.filter(pl.col("service") == service).sort("day")
        fig.add_trace(go.Bar(x=part["day"].to_list(), y=part["revenue"].to_list(),
                             name=SERVICE_LABELS.get(service, service),
                             hovertemplate="%{x|%d %b}: %{y:,.2f} " + currency + "<extra>%{fullData.name}</extra>"))
    fig.update_layout(barmode="stack", legend={"orientation": "h", "y": -0.25})
    fig.update_yaxes(title=f"revenue ({currency})", gridcolor="#eee")
    return _base_layout(fig, height=height)


def kpi_trend(df: pl.DataFrame, kpi: Kpi, *, threshold: float | None = None, height: int = 320) -> go.Figure:
    """Daily KPI of a zone with the share of hours present: df has day, value, completeness."""
    fig = go.Figure()
    fig.add_trace(go.Scatter(
        x=df["day"].to_list(), y=df["value"].to_list(), mode="lines+markers", name=kpi.label,
        customdata=[[c * 100 if c is not None else None] for c in df["completeness"].to_list()],
        hovertemplate="%{x|%d %b}: %{y:" + kpi.fmt + "} " + kpi.unit +
                      "<br>%{customdata[0]:.0f}% of hours present<extra></extra>",
    ))
    if threshold is not None:
        fig.add_hline(y=threshold, line_dash="dot", line_color="#e03131",
                      annotation_text=f"threshold {threshold:g} {kpi.unit}", annotation_position="top left")
    fig.update_yaxes(title=f"{kpi.label} ({kpi.unit}, {kpi.better} is better)", gridcolor="#eee")
    return _base_layout(fig, height=height)


def cells_map(cells: pl.DataFrame, zone_geojson: dict, *, bbox: Sequence[float], height: int = 380,
              tile_url: str | None = None) -> go.Figure:
    """The zone's outline and its cells, red where a KPI breaches its threshold.

    `cells` has cell_id, latitude, longitude, technology, n_breaches, breaches (text).
    """
    fig = go.Figure()
    fig.add_trace(go.Choroplethmap(
        geojson=zone_geojson, locations=[f["id"] for f in zone_geojson["features"]],
        z=[0] * len(zone_geojson["features"]), colorscale=[[0, "#e7f5ff"], [1, "#e7f5ff"]], showscale=False,
        marker={"line": {"width": 1.5, "color": OUTLINE_COLOUR}, "opacity": 0.6}, hoverinfo="skip", name="zone",
    ))
    for flagged, colour, name in ((False, "#1c7ed6", "within thresholds"), (True, "#e03131", "breaching")):
        part = cells.filter((pl.col("n_breaches") > 0) == flagged)
        if part.height == 0:
            continue
        fig.add_trace(go.Scattermap(
            lat=part["latitude"].to_numpy(), lon=part["longitude"].to_numpy(), mode="markers", name=name,
            marker={"size": 11, "color": colour},
            customdata=part.select(["cell_id", "technology", "breaches"]).to_numpy(),
            hovertemplate="<b>%{customdata[0]}</b> %{customdata[1]}<br>%{customdata[2]}<extra></extra>",
        ))
    fig.update_layout(legend={"orientation": "h", "y": -0.05})
    return _map_layout(fig, bbox, height=height, tile_url=tile_url, title=None)


def warm_up() -> None:
    """Build one small figure of each kind, so that Plotly's validators are imported before the first
    request needs them (the first figure of a process otherwise costs about a second)."""
    zones = pl.DataFrame({"zone_id": ["a"], "zone_name": ["a"], "revenue": [1.0], "experience_index": [1.0],
                          "subscribers": [1], "quadrant": ["invest"]})
    value_experience_matrix(zones, value_threshold=1.0, experience_threshold=1.0)
    zone_choropleth(zones, "/warm-up.geojson", value="revenue", colorbar_title="", colorscale="Blues",
                    bbox=(0, 0, 1, 1))
    cells = pl.DataFrame({"cell_id": ["c"], "latitude": [0.5], "longitude": [0.5], "technology": ["4G"],
                          "n_breaches": [0], "breaches": [""]})
    cells_map(cells, {"type": "FeatureCollection", "features": []}, bbox=(0, 0, 1, 1))
    day = pl.DataFrame({"day": [date(2026, 1, 1)], "service": ["data"], "revenue": [1.0], "value": [1.0],
                        "completeness": [1.0]})
    revenue_by_service(day)
