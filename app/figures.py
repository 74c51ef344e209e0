"""Figures as pure functions: frames in, Plotly figures out. No Dash, no warehouse, tested on their own.

The figures of the overview and zone pages are plain JSON-ready dicts (`{"data": [...], "layout": {...}}`):
building Plotly objects validates every property and deep-copies every array, which at 537 zones cost more
per request than the queries. Numbers are rounded to one decimal more than their hover shows, so the JSON
sent stays short. The tests and `warm_up` pass each kind through `go.Figure` to check it is well formed.
Maps use MapLibre traces (`choroplethmap`, `scattermap`) on the `white-bg` style: no tiles, no token, no
request leaves the machine; zone outlines are drawn from our own geometry. An operator with a tile server
can pass its URL template as `tile_url`.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from datetime import date

import numpy  # noqa: F401  # fully imported before warm_up's thread: Plotly looks numpy up in sys.modules
import plotly.colors
import plotly.graph_objects as go
import polars as pl

from app.constants import MAP_HEIGHT, OUTLINE_COLOUR, QUADRANTS, SERVICE_LABELS, Kpi

FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12}
#: What the app takes from Plotly's default template (its dict figures carry no template of ~10 KB): the
#: colours, the text colour, room for tick labels and axis titles, and colour bars without a frame.
COLORWAY = ["#636efa", "#EF553B", "#00cc96", "#ab63fa", "#FFA15A", "#19d3f3", "#FF6692", "#B6E880", "#FF97FF",
            "#FECB52"]
AXIS = {"automargin": True, "gridcolor": "#eee", "zerolinecolor": "#eee", "linecolor": "#eee", "ticks": "",
        "title": {"standoff": 15}}
COLORBAR = {"outlinewidth": 0, "ticks": "", "thickness": 12, "len": 0.8}


def _layout_base(height: int, title: str | None = None) -> dict:
    return {"height": height, "margin": {"l": 8, "r": 8, "t": 36 if title else 8, "b": 8},
            "font": {**FONT, "color": "#2a3f5f"}, "colorway": COLORWAY, "hoverlabel": {"align": "left"},
            "hovermode": "closest", "title": {"text": title, "x": 0.01, "font": {"size": 14}} if title else None,
            "paper_bgcolor": "white", "plot_bgcolor": "white"}


@functools.lru_cache(maxsize=64)
def _named_scale(name: str) -> tuple[tuple[float, str], ...]:
    return tuple((float(pos), colour) for pos, colour in plotly.colors.get_colorscale(name))


def plotly_scale(scale: str | Sequence) -> list:
    """A colour scale as Plotly.js needs it in a dict figure: Plotly's Python names (`RdYlGn`, `Blues`,
    with `_r` for reversed) spelt out as [position, colour] pairs, since Plotly.js knows only a few names
    and draws some of them the other way round (its `Blues` runs from dark to light)."""
    if isinstance(scale, str):
        return [list(step) for step in _named_scale(scale)]
    return [list(step) for step in scale]


def _axis(title: str, **more) -> dict:
    return {**AXIS, "title": {**AXIS["title"], "text": title}, **more}


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


def decimals(fmt: str | None, default: int = 4) -> int:
    """Decimals to keep for values shown with a d3 format: one more than it shows (`.2f` keeps 3, `.0%` keeps
    3), so rounding never changes what a hover says while the JSON sent stays short."""
    m = re.search(r"\.(\d+)([f%])", fmt or "")
    if not m:
        return default
    return int(m.group(1)) + (3 if m.group(2) == "%" else 1)


def _values(s: pl.Series, decimals: int) -> list:
    """A column as a JSON-ready list: integers as they are, floats rounded, NaN and null as None."""
    if s.dtype.is_integer():
        return s.to_list()
    if s.dtype.is_numeric():
        return s.cast(pl.Float64).fill_nan(None).round(decimals).to_list()
    return s.to_list()


def _rows(df: pl.DataFrame, columns: Sequence[tuple[str, int]]) -> list[tuple]:
    """Per-row `customdata`: the columns as (name, decimals) pairs, each rounded, zipped into rows."""
    return list(zip(*(_values(df[c], d) for c, d in columns), strict=True)) if df.height else []


def zone_choropleth(zones: pl.DataFrame, geojson: dict | str, *, value: str, colorbar_title: str,
                    colorscale: str | Sequence, bbox: Sequence[float], hover_columns: Sequence[tuple[str, str, str]] = (),
                    height: int = MAP_HEIGHT, tile_url: str | None = None, title: str | None = None,
                    highlight: str | None = None, value_format: str | None = None) -> dict:
    """A choropleth of `value` per zone; zones without a value are drawn as grey outlines, never as zero.

    `zones` has `zone_id`, `zone_name` and `value`; `hover_columns` are (column, label, d3-format) triples
    shown on hover. `geojson` is a FeatureCollection whose features carry `id` = zone_id, or the URL of one
    (the browser then fetches it once and caches it). The outline of a highlighted zone is a third trace,
    drawn only when `highlight` names a zone (app/assets/opencem.js adds it on hover). Returns the figure
    as plain JSON-ready data: no Plotly object is built per request, numbers are rounded to what is shown.
    """
    formats = {c: fmt for c, _, fmt in hover_columns}
    vals = zones[value].cast(pl.Float64).fill_nan(None)
    has_value = vals.is_not_null()
    known, missing = zones.filter(has_value), zones.filter(~has_value)
    hover = "<b>%{customdata[0]}</b> (%{location})<br>" + "<br>".join(
        f"{label}: %{{customdata[{i + 1}]:{fmt}}}" for i, (_, label, fmt) in enumerate(hover_columns)
    ) + "<extra></extra>"
    custom = [("zone_name", 0), *[(c, decimals(fmt)) for c, _, fmt in hover_columns]]
    outline = {"width": 0.6, "color": OUTLINE_COLOUR}
    traces = [{
        "type": "choroplethmap", "name": value, "geojson": geojson, "locations": known["zone_id"].to_list(),
        "z": _values(known[value], decimals(formats.get(value) or value_format)),
        "customdata": _rows(known, custom), "hovertemplate": hover, "colorscale": plotly_scale(colorscale),
        "marker": {"line": outline, "opacity": 0.85},
        "colorbar": {**COLORBAR, "title": {"text": colorbar_title}},
    }]
    if missing.height:
        traces.append({
            "type": "choroplethmap", "name": "no data", "geojson": geojson,
            "locations": missing["zone_id"].to_list(), "z": [0] * missing.height,
            "colorscale": [[0, "#f1f3f5"], [1, "#f1f3f5"]], "showscale": False,
            "customdata": _rows(missing, [("zone_name", 0)]),
            "hovertemplate": "<b>%{customdata[0]}</b> (%{location})<br>no data for this zone<extra></extra>",
            "marker": {"line": outline},
        })
    if highlight:
        traces.append(highlight_trace(geojson, highlight))
    return {"data": traces, "layout": _map_layout_dict(bbox, height=height, tile_url=tile_url, title=title)}


def highlight_trace(geojson: dict | str, zone_id: str) -> dict:
    """The outline of one zone drawn over a choropleth (the selected or hovered zone). The same trace is
    built in app/assets/opencem.js when a zone is hovered: keep the two alike."""
    return {"type": "choroplethmap", "name": "selected", "geojson": geojson, "locations": [zone_id], "z": [0],
            "colorscale": [[0, "rgba(0,0,0,0)"], [1, "rgba(0,0,0,0)"]], "showscale": False, "hoverinfo": "skip",
            "marker": {"line": {"width": 3, "color": "#212529"}}}


def value_experience_matrix(zones: pl.DataFrame, *, value_threshold: float, experience_threshold: float,
                            height: int = 420) -> dict:
    """Each zone a point: revenue (y) against experience (x), the four quadrants named and shaded.

    `zones` has zone_id, zone_name, revenue, experience_index, subscribers, quadrant. Plain JSON-ready data,
    one trace per quadrant.
    """
    if zones.height == 0:
        return {"data": [], "layout": _layout_base(height)}
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
    zones = zones.with_columns(marker_size=8 + 22 * pl.col("subscribers").fill_null(0) / size_ref)
    traces = []
    for name, (_, colour) in QUADRANTS.items():
        part = zones.filter(pl.col("quadrant") == name)
        if part.height == 0:
            continue
        traces.append({
            "type": "scatter", "mode": "markers", "name": name,
            "x": _values(part["experience_index"], 2), "y": _values(part["revenue"], 1),
            "marker": {"color": colour, "size": _values(part["marker_size"], 1),
                       "line": {"width": 0.5, "color": "white"}},
            "customdata": _rows(part, [("zone_id", 0), ("zone_name", 0), ("subscribers", 0)]),
            "hovertemplate": "<b>%{customdata[1]}</b> (%{customdata[0]})<br>revenue %{y:,.0f}<br>"
                             "experience %{x:.1f}<br>%{customdata[2]:,} subscribers<extra>" + name + "</extra>",
        })
    layout = {
        "shapes": shapes, "annotations": annotations, "legend": {"orientation": "h", "y": -0.2},
        "xaxis": _axis("experience index (0-100, higher is better)", range=[x_min, x_max]),
        "yaxis": _axis("revenue in the period", range=[0, y_max]),
        **_layout_base(height),
    }
    return {"data": traces, "layout": layout}


def _days(s: pl.Series) -> list[str]:
    return s.cast(pl.String).to_list()


def revenue_by_service(df: pl.DataFrame, *, height: int = 320, currency: str = "EUR") -> dict:
    """Stacked daily revenue per service: df has day, service, revenue. One bar trace per service."""
    traces = []
    for part in df.sort("day").partition_by("service", maintain_order=True):
        service = part["service"][0]
        traces.append({"type": "bar", "name": SERVICE_LABELS.get(service, service), "x": _days(part["day"]),
                       "y": _values(part["revenue"], 2),
                       "hovertemplate": "%{x|%d %b}: %{y:,.2f} " + currency + "<extra>%{fullData.name}</extra>"})
    layout = {"barmode": "stack", "legend": {"orientation": "h", "y": -0.25},
              "xaxis": {**AXIS, "title": None}, "yaxis": _axis(f"revenue ({currency})"), **_layout_base(height)}
    return {"data": traces, "layout": layout}


def kpi_trend(df: pl.DataFrame, kpi: Kpi, *, threshold: float | None = None, height: int = 320) -> dict:
    """Daily KPI of a zone with the share of hours present: df has day, value, completeness."""
    share = _values(df["completeness"] * 100, 1)
    trace = {
        "type": "scatter", "mode": "lines+markers", "name": kpi.label, "x": _days(df["day"]),
        "y": _values(df["value"], decimals(kpi.fmt)), "customdata": [[c] for c in share],
        "hovertemplate": "%{x|%d %b}: %{y:" + kpi.fmt + "} " + kpi.unit +
                         "<br>%{customdata[0]:.0f}% of hours present<extra></extra>",
    }
    layout = {"xaxis": {**AXIS, "title": None}, "yaxis": _axis(f"{kpi.label} ({kpi.unit}, {kpi.better} is better)"),
              **_layout_base(height)}
    if threshold is not None:
        layout["shapes"] = [{"type": "line", "xref": "x domain", "x0": 0, "x1": 1, "y0": threshold,
                             "y1": threshold, "line": {"dash": "dot", "color": "#e03131"}}]
        layout["annotations"] = [{"xref": "x domain", "x": 0, "y": threshold, "xanchor": "left",
                                  "yanchor": "bottom", "showarrow": False,
                                  "text": f"threshold {threshold:g} {kpi.unit}"}]
    return {"data": [trace], "layout": layout}


def cells_map(cells: pl.DataFrame, zone_geojson: dict, *, bbox: Sequence[float], height: int = 380,
              tile_url: str | None = None) -> dict:
    """The zone's outline and its cells, red where a KPI breaches its threshold.

    `cells` has cell_id, latitude, longitude, technology, n_breaches, breaches (text).
    """
    features = zone_geojson["features"]
    traces = [{
        "type": "choroplethmap", "name": "zone", "geojson": zone_geojson, "locations": [f["id"] for f in features],
        "z": [0] * len(features), "colorscale": [[0, "#e7f5ff"], [1, "#e7f5ff"]], "showscale": False,
        "marker": {"line": {"width": 1.5, "color": OUTLINE_COLOUR}, "opacity": 0.6}, "hoverinfo": "skip",
    }]
    for flagged, colour, name in ((False, "#1c7ed6", "within thresholds"), (True, "#e03131", "breaching")):
        part = cells.filter((pl.col("n_breaches") > 0) == flagged)
        if part.height == 0:
            continue
        traces.append({
            "type": "scattermap", "mode": "markers", "name": name, "lat": _values(part["latitude"], 6),
            "lon": _values(part["longitude"], 6), "marker": {"size": 11, "color": colour},
            "customdata": _rows(part, [("cell_id", 0), ("technology", 0), ("breaches", 0)]),
            "hovertemplate": "<b>%{customdata[0]}</b> %{customdata[1]}<br>%{customdata[2]}<extra></extra>",
        })
    layout = {**_map_layout_dict(bbox, height=height, tile_url=tile_url, title=None),
              "legend": {"orientation": "h", "y": -0.05}}
    return {"data": traces, "layout": layout}


def warm_up() -> None:
    """Validate one small figure of each kind through Plotly (a check that they are well formed), which
    also imports Plotly's validators before a page that builds Plotly objects needs them (the first figure
    of a process otherwise costs about a second)."""
    zones = pl.DataFrame({"zone_id": ["a"], "zone_name": ["a"], "revenue": [1.0], "experience_index": [1.0],
                          "subscribers": [1], "quadrant": ["invest"]})
    cells = pl.DataFrame({"cell_id": ["c"], "latitude": [0.5], "longitude": [0.5], "technology": ["4G"],
                          "n_breaches": [0], "breaches": [""]})
    day = pl.DataFrame({"day": [date(2026, 1, 1)], "service": ["data"], "revenue": [1.0], "value": [1.0],
                        "completeness": [1.0]})
    for fig in (value_experience_matrix(zones, value_threshold=1.0, experience_threshold=1.0),
                zone_choropleth(zones, "/warm-up.geojson", value="revenue", colorbar_title="", colorscale="Blues",
                                bbox=(0, 0, 1, 1), highlight="a"),
                cells_map(cells, {"type": "FeatureCollection", "features": []}, bbox=(0, 0, 1, 1)),
                revenue_by_service(day)):
        go.Figure(fig)
