"""Zone `/zone/<zone_id>` for planners: revenue per service and its trend, the zone's cells with their KPIs
and breaches, subscribers and revenue whose experience is poor, and where the zone ranks for investment."""

from __future__ import annotations

import json

import dash
import dash_mantine_components as dmc
import polars as pl
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from app import figures, queries
from app.components import (
    create_asof,
    create_empty_state,
    create_graph,
    create_grid,
    create_section,
    create_stat_card,
    grid_rows,
)
from app.constants import KPIS, PERIODS, QUADRANTS
from app.context import reader, settings
from app.warehouse import NoWarehouse

dash.register_page(__name__, path_template="/zone/<zone_id>", name="Zone", title="opencem: zone", nav=False,
                   roles=("executive", "planner", "data_steward"))

CELL_COLUMNS = [
    ("cell_id", "Cell", None), ("site_id", "Site", None), ("technology", "Tech", None),
    ("availability_pct", "Availability %", ".2f"), ("accessibility_pct", "Accessibility %", ".2f"),
    ("drop_rate_pct", "Drop rate %", ".2f"), ("dl_throughput_mbps", "DL Mbit/s", ".1f"),
    ("latency_ms", "Latency ms", ".0f"), ("prb_utilisation_pct", "PRB %", ".0f"),
    ("traffic_volume_mb", "Traffic MB", ",.0f"), ("completeness", "Hours present", ".0%"),
    ("breaches", "Breaches", None),
]
INVEST_COLUMNS = [
    ("invest_rank", "#", None), ("zone_name", "Zone", None), ("quadrant", "Quadrant", None),
    ("revenue_at_stake", "Revenue", ",.0f"), ("experience_index", "Experience", ".1f"),
    ("investment_score", "Score", ",.0f"), ("drop_rate_pct", "Drop %", ".2f"),
    ("dl_throughput_mbps", "DL Mbit/s", ".1f"), ("availability_pct", "Avail. %", ".2f"),
]


def layout(zone_id: str | None = None, **kwargs) -> html.Div:
    period_choice = kwargs.get("period") if kwargs.get("period") in PERIODS else "28"
    kpi = kwargs.get("kpi") if kwargs.get("kpi") in KPIS else "experience_index"
    return html.Div([
        dcc.Store(id="zone-id", data=zone_id),
        dmc.Group([html.Div(id="zone-title"), html.Div(id="zone-asof")], justify="space-between"),
        dmc.Group([
            dmc.SegmentedControl(id="zone-period", value=period_choice,
                                 data=[{"value": k, "label": v} for k, v in PERIODS.items()]),
            dmc.Anchor("back to the overview", href="/", size="sm"),
        ], justify="space-between", mt="xs"),
        html.Div(id="zone-body"),
        create_section(
            "KPI trend",
            dmc.Select(id="zone-kpi", value=kpi, w=220, allowDeselect=False,
                       data=[{"value": k, "label": v.label} for k, v in KPIS.items()]),
            create_graph("zone-kpi-trend"),
            description="Daily value over the zone's cell-hours, with the share of hours present on hover.",
        ),
        html.Div(id="zone-body-cells"),
        create_ranking(zone_id),
    ])


def create_ranking(zone_id: str | None) -> html.Section:
    """The investment ranking across all zones, this zone's row highlighted. Its rows are the same on every
    zone's page and arrive by `update_ranking`; the section shows once the zone is known."""
    currency = settings().currency
    columns = [(c, f"Revenue ({currency})" if c == "revenue_at_stake" else h, s) for c, h, s in INVEST_COLUMNS]
    # A JSON string is a JS string literal: the zone id from the URL stays a value in the grid's rule.
    grid = create_grid(
        "zone-invest-grid", columns, [], file_name="investment_ranking.csv", row_id="zone_id", paginate=True,
        row_class_rules={"opencem-row-flagged": f"params.data.zone_id === {json.dumps(zone_id or '')}"},
        height=320,
    )
    section = create_section("Investment ranking across all zones", grid,
                             description="Revenue at stake x experience gap; this zone is highlighted.")
    return html.Div(section, id="zone-ranking", style={"display": "none"})


def _reasons(row: dict, thresholds: dict[str, float]) -> list[str]:
    out = []
    for kpi, limit in thresholds.items():
        value = row.get(kpi)
        if value is None or kpi not in KPIS:
            continue
        k = KPIS[kpi]
        if (k.better == "higher" and value < limit) or (k.better == "lower" and value > limit):
            out.append(f"{k.label} {value:{k.fmt}} {k.unit} ({'below' if k.better == 'higher' else 'above'} "
                       f"the {limit:g} {k.unit} target)")
    return out


@callback(
    Output("zone-title", "children"),
    Output("zone-asof", "children"),
    Output("zone-body", "children"),
    Input("zone-period", "value"),
    State("zone-id", "data"),
)
def update_zone(period_choice, zone_id):
    if not zone_id or not period_choice:
        raise PreventUpdate
    db, cfg = reader(), settings()
    try:
        version = db.version.name
    except NoWarehouse as exc:
        return dmc.Title("Zone", order=2), None, create_empty_state(str(exc), title="No warehouse yet")
    as_of, missing = queries.data_as_of(db)
    asof = create_asof(as_of, version, missing=missing)
    p = queries.period(db, period_choice)
    row = queries.zone_row(db, zone_id, p) if p else None
    if row is None:
        title = dmc.Title(f"Zone {zone_id}", order=2)
        return title, asof, create_empty_state(
            f"There is no zone {zone_id} in the warehouse, or no data for it in this period.",
            title="Unknown zone")

    # Known zones only reach here (a bounded set): the answer is kept per version, zone and period.
    return db.memo(("zone-page", zone_id, p), lambda: _zone_head(db, cfg, zone_id, p, row, asof))


def _zone_head(db, cfg, zone_id: str, p: queries.Period, row: dict, asof) -> tuple:
    thresholds = cfg.kpi_thresholds
    quadrant = row.get("quadrant")
    label, colour = QUADRANTS.get(quadrant, ("no quadrant: no KPIs or no revenue", "gray"))
    n_ranked = queries.investment_list(db, p).height
    title = dmc.Stack([
        dmc.Title(f"{row['zone_name'] or zone_id} ({zone_id})", order=2),
        dmc.Group([
            dmc.Badge(quadrant or "unclassified", color=colour if quadrant else "gray", variant="filled"),
            dmc.Text(label, size="sm"),
            dmc.Text(f"investment rank {row['invest_rank']} of {n_ranked}" if row.get("invest_rank") else
                     "not ranked", size="sm", fw=600),
        ], gap="xs"),
    ], gap=2)

    poor = queries.zone_poor_experience(db, zone_id, thresholds)
    reasons = _reasons(row, thresholds)
    cards = dmc.SimpleGrid([
        create_stat_card("Revenue in the period", f"{row['revenue']:,.0f} {cfg.currency}",
                         note=f"usage {row['usage_revenue']:,.0f}, fees {row['fee_revenue']:,.0f}"),
        create_stat_card("Subscribers (home zone)", f"{row['subscribers']:,}",
                         note=None if row.get("arpu_month") is None else
                         f"ARPU {row['arpu_month']:,.2f} {cfg.currency} per month"),
        create_stat_card("Experience index", "no KPIs" if row.get("experience_index") is None else
                         f"{row['experience_index']:.1f} / 100",
                         note="share of cell-hours meeting every KPI target"
                         + ("" if row.get("kpi_completeness") is None else
                            f"; {row['kpi_completeness'] * 100:.0f}% of hours present")),
        create_stat_card("Customers with poor experience",
                         "-" if not poor else f"{poor['poor_customers']:,} of {poor['customers']:,}",
                         note=None if not poor or poor.get("poor_revenue_month") is None else
                         f"{poor['poor_revenue_month']:,.0f} {cfg.currency} per month at risk"),
    ], cols=4, spacing="sm", mt="sm")
    why = dmc.List([dmc.ListItem(r) for r in reasons], size="sm") if reasons else dmc.Text(
        "Every zone-level KPI meets its target in this period.", size="sm")

    revenue = queries.zone_revenue_by_service(db, zone_id, p)
    revenue_view = (create_graph("zone-revenue", figures.revenue_by_service(revenue, currency=cfg.currency))
                    if revenue.height else create_empty_state("No revenue recorded in this zone in the period."))

    body = html.Div([
        cards,
        create_section("Why this zone ranks where it does", why),
        create_section("Revenue per service", revenue_view),
    ])
    return title, asof, body


@callback(
    Output("zone-body-cells", "children"),
    Input("zone-period", "value"),
    State("zone-id", "data"),
)
def update_cells(period_choice, zone_id):
    """The zone's cells: a map and a grid, those breaching a KPI target flagged."""
    if not zone_id or not period_choice:
        raise PreventUpdate
    db, cfg = reader(), settings()
    try:
        p = queries.period(db, period_choice)
    except NoWarehouse:
        return None
    if p is None or queries.zone_row(db, zone_id, p) is None:
        return None
    return db.memo(("zone-cells", zone_id, p), lambda: _cells_view(db, cfg, zone_id, p))


def _cells_view(db, cfg, zone_id: str, p: queries.Period) -> html.Section:
    cells = queries.zone_cells(db, zone_id, p, cfg.kpi_thresholds)
    zone_geo, bbox = queries.zones_geojson(db, zone_id=zone_id)
    if cells.height:
        located = cells.filter(pl.col("latitude").is_not_null() & pl.col("longitude").is_not_null())
        cell_map = (create_graph("zone-cells-map", figures.cells_map(located, zone_geo, bbox=bbox,
                                                                     tile_url=cfg.tile_url))
                    if bbox else create_empty_state("The zone's cells have no coordinates."))
        n_flagged = int((cells["n_breaches"] > 0).sum())
        rows = grid_rows(cells, CELL_COLUMNS, extra=("n_breaches",))
        cell_view = dmc.SimpleGrid([
            cell_map,
            dmc.Stack([
                dmc.Text(f"{cells.height} cells, {n_flagged} breaching a KPI target over the period "
                         "(red rows).", size="sm"),
                create_grid("zone-cells-grid", CELL_COLUMNS, rows, file_name=f"cells_{zone_id}.csv",
                            row_id="cell_id", flag_field="n_breaches"),
            ], gap=4),
        ], cols=2, spacing="sm")
    else:
        cell_view = create_empty_state("No cells of the inventory lie in this zone.")

    return create_section("Cells", cell_view, description="KPIs over the period, weighted by time or traffic.")


@callback(
    Output({"type": "grid", "grid": "zone-invest-grid"}, "rowData"),
    Output("zone-ranking", "style"),
    Input("zone-period", "value"),
    State("zone-id", "data"),
)
def update_ranking(period_choice, zone_id):
    """The ranking's rows: the same answer for every zone of a period (made once per version, and so sent
    compressed from memory), shown once the zone is known."""
    if not zone_id or not period_choice:
        raise PreventUpdate
    db = reader()
    try:
        p = queries.period(db, period_choice)
    except NoWarehouse:
        return [], {"display": "none"}
    if p is None or queries.zone_row(db, zone_id, p) is None:
        return [], {"display": "none"}
    return db.memo(("zone-invest-rows", p), lambda: grid_rows(
        queries.investment_list(db, p), INVEST_COLUMNS, extra=("zone_id",))), {}


@callback(
    Output("zone-kpi-trend", "figure"),
    Input("zone-kpi", "value"),
    Input("zone-period", "value"),
    State("zone-id", "data"),
)
def update_trend(kpi_name, period_choice, zone_id):
    if not zone_id or not kpi_name or not period_choice:
        raise PreventUpdate
    db, cfg = reader(), settings()
    try:
        p = queries.period(db, period_choice)
    except NoWarehouse:
        return {}
    if p is None or kpi_name not in KPIS:
        return {}
    df = queries.zone_kpi_trend(db, zone_id, p, kpi_name)
    if df.height == 0:
        return {}
    return db.memo(("zone-trend", zone_id, p, kpi_name),  # a zone with days: a known one, so a bounded set
                   lambda: figures.kpi_trend(df, KPIS[kpi_name], threshold=cfg.kpi_thresholds.get(kpi_name)))
