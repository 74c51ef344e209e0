"""Figures of the customer view as pure functions: frames in, Plotly figure dicts out (no Dash, no warehouse).

They return plain `{"data": [...], "layout": {...}}` dicts, which Dash sends as they are: building them
skips Plotly's per-property validation, which would cost more than the page's queries. The tests pass
each through `plotly.graph_objects.Figure` to check it is a valid figure. Maps use MapLibre traces on the
`white-bg` style (no tiles, nothing leaves the machine unless an operator's tile URL is configured).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import polars as pl

from app.constants import OUTLINE_COLOUR, SERVICE_LABELS, Kpi
from app.figures import FONT, map_view

SERVICE_COLOURS = {"voice": "#1c7ed6", "sms": "#7048e8", "data": "#0ca678", "roaming": "#f08c00",
                   "vas": "#868e96", "recurring": "#adb5bd"}
CELL_COLOURS = ("#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#0c8599", "#5c940d", "#c2255c")
ALARM_FILL = {True: "rgba(224, 49, 49, 0.16)", False: "rgba(240, 140, 0, 0.12)"}
WINDOW_LINE = "#495057"


def _iso(value: dt.datetime | dt.date | None) -> str | None:
    return None if value is None else value.isoformat()


def _layout(height: int, **extra) -> dict:
    return {"height": height, "margin": {"l": 8, "r": 8, "t": 12, "b": 8}, "font": FONT,
            "paper_bgcolor": "white", "plot_bgcolor": "white", **extra}


def usage_by_service(daily: pl.DataFrame, *, currency: str, height: int = 360) -> dict:
    """Charges (top) and events (bottom) per day, stacked by service.

    `daily` has day, service, amount, n_events (one row per day and service).
    """
    data = []
    services = [s for s in SERVICE_LABELS if s in set(daily["service"].to_list())]
    services += sorted(set(daily["service"].to_list()) - set(services))
    for service in services:
        part = daily.filter(pl.col("service") == service).sort("day")
        days = [_iso(d) for d in part["day"].to_list()]
        label, colour = SERVICE_LABELS.get(service, service), SERVICE_COLOURS.get(service, "#495057")
        data.append({"type": "bar", "x": days, "y": part["amount"].round(4).to_list(), "name": label,
                     "legendgroup": service, "marker": {"color": colour}, "yaxis": "y",
                     "hovertemplate": "%{x|%d %b}: %{y:,.2f} " + currency + "<extra>" + label + "</extra>"})
        data.append({"type": "bar", "x": days, "y": part["n_events"].to_list(), "name": label,
                     "legendgroup": service, "showlegend": False, "marker": {"color": colour}, "yaxis": "y2",
                     "hovertemplate": "%{x|%d %b}: %{y:,} events<extra>" + label + "</extra>"})
    layout = _layout(
        height, barmode="stack", legend={"orientation": "h", "y": -0.12},
        xaxis={"anchor": "y2", "type": "date", "tickformat": "%d %b"},
        yaxis={"domain": [0.55, 1.0], "title": {"text": f"charges ({currency})"}, "gridcolor": "#eee"},
        yaxis2={"domain": [0.0, 0.45], "title": {"text": "events"}, "gridcolor": "#eee"},
    )
    return {"data": data, "layout": layout}


def _hour_grid(start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    hours, t = [], start.replace(minute=0, second=0, microsecond=0)
    while t < end:
        hours.append(t)
        t += dt.timedelta(hours=1)
    return hours


def experience_timeline(usage: pl.DataFrame, kpis: pl.DataFrame, alarms: pl.DataFrame, *, kpi: Kpi,
                        threshold: float | None, start: dt.datetime, end: dt.datetime,
                        cells: Sequence[str], since: dt.datetime | None = None, height: int = 440) -> dict:
    """The customer's own usage per hour (top) beside a KPI of their cells per hour (bottom), with their
    alarms drawn as bands from raised to cleared (open ones: to the end) and the care window marked.

    `usage`: hour_at, n_events, data_mb. `kpis`: cell_id, period_start, <kpi.column>. `alarms`: alarm_id,
    raised_at, cleared_at, service_affecting, perceived_severity. `cells`: the cells to draw, in order.
    An hour a cell did not report is a gap in its line, never a zero.
    """
    hours = _hour_grid(start, end)
    grid = [_iso(h) for h in hours]
    by_hour = {r["hour_at"]: r for r in usage.iter_rows(named=True)} if usage.height else {}
    data: list[dict] = [{
        "type": "bar", "x": grid, "y": [(by_hour.get(h) or {}).get("n_events", 0) for h in hours],
        "name": "their events", "marker": {"color": "#868e96"}, "yaxis": "y",
        "customdata": [[round((by_hour.get(h) or {}).get("data_mb") or 0.0, 1)] for h in hours],
        "hovertemplate": "%{x|%d %b %H:00}: %{y} events, %{customdata[0]} MB<extra>customer</extra>",
    }]
    column = kpi.column
    for i, cell in enumerate(cells):
        part = kpis.filter(pl.col("cell_id") == cell) if kpis.height else kpis
        values = dict(zip(part["period_start"].to_list(), part[column].to_list())) if part.height else {}
        data.append({
            "type": "scatter", "mode": "lines", "x": grid, "y": [values.get(h) for h in hours], "name": cell,
            "connectgaps": False, "yaxis": "y2", "line": {"width": 1.6, "color": CELL_COLOURS[i % len(CELL_COLOURS)]},
            "hovertemplate": "%{x|%d %b %H:00}: %{y:" + kpi.fmt + "} " + kpi.unit + "<extra>" + cell + "</extra>",
        })
    shapes: list[dict] = []
    annotations: list[dict] = []
    for a in alarms.iter_rows(named=True) if alarms.height else []:
        x0, x1 = max(a["raised_at"], start), min(a["cleared_at"] or end, end)
        if x1 < start or x0 > end:
            continue
        sa = bool(a["service_affecting"])
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": _iso(x0), "x1": _iso(max(x1, x0)),
                       "y0": 0, "y1": 1, "fillcolor": ALARM_FILL[sa], "line": {"width": 0}, "layer": "below"})
        annotations.append({"x": _iso(x0), "xref": "x", "y": 1.0, "yref": "paper", "yanchor": "bottom",
                            "xanchor": "left", "showarrow": False, "font": {"size": 10,
                                                                            "color": "#c92a2a" if sa else "#d9480f"},
                            "text": f"{a['alarm_id']} ({a['perceived_severity']})"})
    if threshold is not None:
        shapes.append({"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y2", "y0": threshold,
                       "y1": threshold, "line": {"dash": "dot", "color": "#e03131", "width": 1.2}})
        annotations.append({"xref": "paper", "x": 0.0, "xanchor": "left", "yref": "y2", "y": threshold,
                            "yanchor": "bottom", "showarrow": False, "font": {"size": 10, "color": "#e03131"},
                            "text": f"target {threshold:g} {kpi.unit}"})
    if since is not None and start < since < end:
        shapes.append({"type": "line", "xref": "x", "x0": _iso(since), "x1": _iso(since), "yref": "paper",
                       "y0": 0, "y1": 1, "line": {"dash": "dash", "color": WINDOW_LINE, "width": 1}})
        annotations.append({"x": _iso(since), "xref": "x", "y": 0.62, "yref": "paper", "xanchor": "left",
                            "showarrow": False, "font": {"size": 10, "color": WINDOW_LINE},
                            "text": "care window"})
    layout = _layout(
        height, margin={"l": 8, "r": 8, "t": 26, "b": 8}, shapes=shapes, annotations=annotations,
        legend={"orientation": "h", "y": -0.12}, hovermode="x unified", bargap=0.1,
        xaxis={"anchor": "y2", "type": "date", "range": [_iso(start), _iso(end)], "tickformat": "%d %b\n%H:%M"},
        yaxis={"domain": [0.68, 1.0], "title": {"text": "their events"}, "gridcolor": "#eee", "rangemode": "tozero"},
        yaxis2={"domain": [0.0, 0.6], "gridcolor": "#eee",
                "title": {"text": f"{kpi.label} ({kpi.unit}, {kpi.better} is better)"}},
    )
    return {"data": data, "layout": layout}


def cells_map(cells: pl.DataFrame, zone_geojson: dict, *, home: tuple[float, float] | None = None,
              flagged: Sequence[str] = (), height: int = 360, tile_url: str | None = None) -> dict:
    """The customer's cells (marker size by their share of the customer's usage, red when a problem is
    flagged on them) over the outlines of the zones they lie in, and the home location when known (roles
    that may not see personal data get no home: its coordinates come masked).

    `cells`: cell_id, latitude, longitude, share, zone_name, site_id, technology.
    """
    located = cells.filter(pl.col("latitude").is_not_null() & pl.col("longitude").is_not_null())
    lats, lons = located["latitude"].to_list(), located["longitude"].to_list()
    if home is not None:
        lats, lons = lats + [home[0]], lons + [home[1]]
    data: list[dict] = []
    if zone_geojson.get("features"):
        ids = [f["id"] for f in zone_geojson["features"]]
        data.append({"type": "choroplethmap", "geojson": zone_geojson, "locations": ids, "z": [0] * len(ids),
                     "colorscale": [[0, "#e7f5ff"], [1, "#e7f5ff"]], "showscale": False, "hoverinfo": "skip",
                     "marker": {"line": {"width": 1.2, "color": OUTLINE_COLOUR}, "opacity": 0.5}, "name": "zones"})
    flagged_set = set(flagged)
    for is_flagged, colour, name in ((False, "#1c7ed6", "their cells"), (True, "#e03131", "cells with a problem")):
        part = located.filter(pl.col("cell_id").is_in(list(flagged_set)) == is_flagged)
        if part.height == 0:
            continue
        sizes = [8 + 26 * (s or 0.0) ** 0.5 for s in part["share"].to_list()]
        data.append({
            "type": "scattermap", "mode": "markers", "lat": part["latitude"].to_list(),
            "lon": part["longitude"].to_list(), "name": name, "marker": {"size": sizes, "color": colour,
                                                                         "opacity": 0.85},
            "customdata": part.select(["cell_id", "site_id", "technology", "zone_name", "share"]).rows(),
            "hovertemplate": "<b>%{customdata[0]}</b> (site %{customdata[1]}, %{customdata[2]})<br>"
                             "%{customdata[3]}<br>%{customdata[4]:.0%} of their usage<extra></extra>",
        })
    if home is not None:
        data.append({"type": "scattermap", "mode": "markers", "lat": [home[0]], "lon": [home[1]], "name": "home",
                     "marker": {"size": 12, "color": "#212529", "symbol": "circle"},
                     "hovertemplate": "home<extra></extra>"})
    map_args: dict = {"style": "white-bg"}
    if lats:
        pad = 0.004
        map_args.update(map_view((min(lons) - pad, min(lats) - pad, max(lons) + pad, max(lats) + pad),
                                 width_px=520, height_px=height))
    if tile_url:
        map_args["layers"] = [{"below": "traces", "sourcetype": "raster", "source": [tile_url]}]
    return {"data": data, "layout": _layout(height, map=map_args, legend={"orientation": "h", "y": -0.02},
                                            uirevision="customer-cells")}
