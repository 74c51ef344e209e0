"""Assurance `/assurance` for assurance engineers and care: open and recent alarms (refreshed and live), the
cells each takes down, the customers it hurts ranked for proactive contact, the revenue per hour at stake,
a map of the area, a contact list to export, an outage simulation and an order-time feasibility check.

Live alarms (files in the watched folder, see etl/live_alarms.py) are read every few seconds and judged by
the same rule as the refreshed ones, with read-only queries: the page never writes the warehouse.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
import polars as pl
from dash import Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from app import auth
from app import figures_assurance as figs
from app import queries_assurance as qa
from app.components import (
    create_asof,
    create_empty_state,
    create_graph,
    create_notice,
    create_section,
    create_stat_card,
)
from app.context import reader, settings
from app.warehouse import NoWarehouse, WarehouseReader
from etl.errors import UsageError
from etl.live_alarms import scan
from models import feasibility as fz

dash.register_page(__name__, path="/assurance", name="Assurance", title="opencem: assurance", order=40,
                   roles=("assurance", "care", "executive"))

WINDOWS = {"24": "Last 24 h", "72": "Last 72 h", "168": "Last 7 days", "all": "All loaded"}

ALARM_GRID_COLUMNS = [
    {"field": "group_label", "headerName": "Group", "width": 170},
    {"field": "alarm_id", "headerName": "Alarm", "width": 190, "pinned": "left"},
    {"field": "source", "headerName": "Source", "width": 100},
    {"field": "state", "headerName": "State", "width": 95},
    {"field": "perceived_severity", "headerName": "Severity", "width": 105},
    {"field": "object", "headerName": "Object", "width": 125},
    {"field": "n_customers_affected", "headerName": "Customers", "width": 115},
    {"field": "n_vip_affected", "headerName": "VIP", "width": 80},
    {"field": "revenue_per_hour_at_stake", "headerName": "Revenue / h", "width": 120,
     "valueFormatter": {"function": "params.value == null ? '' : d3.format(',.2f')(params.value)"}},
    {"field": "raised", "headerName": "Raised (UTC)", "width": 150},
    {"field": "cleared", "headerName": "Cleared (UTC)", "width": 150},
    {"field": "duration", "headerName": "Duration", "width": 105},
    {"field": "alarm_type", "headerName": "Type", "width": 190},
    {"field": "probable_cause", "headerName": "Probable cause", "width": 190},
    {"field": "service_affecting", "headerName": "Service affecting", "width": 140},
    {"field": "cell_ids", "headerName": "Cells", "width": 220},
]
CUSTOMER_GRID_COLUMNS = [
    ("priority", "#", None), ("customer_id", "Customer", None), ("name", "Name", None),
    ("msisdn", "MSISDN", None), ("segment", "Segment", None), ("churn_risk", "Churn risk", None),
    ("tier_label", "Why affected", None), ("share_on_alarm_cells", "Share on alarm cells", ".0%"),
    ("revenue_per_hour", "Revenue / h", ",.3f"), ("n_open_tickets", "Open tickets", None),
]


def layout(**kwargs) -> html.Div:
    cfg = settings()
    default_window = str(int(cfg.assurance_recent_hours))
    window = kwargs.get("window") if kwargs.get("window") in WINDOWS else (
        default_window if default_window in WINDOWS else "72")
    windows = dict(WINDOWS)
    if default_window not in windows:
        windows = {default_window: f"Last {default_window} h", **windows}
    return html.Div([
        dcc.Store(id="as-state"),
        dcc.Store(id="as-want", data=kwargs.get("alarm")),
        dcc.Store(id="as-selected"),
        dcc.Download(id="as-download"),
        dcc.Interval(id="as-poll", interval=int(cfg.assurance_poll_seconds * 1000)),
        dmc.Group([dmc.Title("Service assurance", order=2), html.Div(id="as-asof")], justify="space-between"),
        dmc.Group([
            dmc.SegmentedControl(id="as-window", value=window,
                                 data=[{"value": k, "label": v} for k, v in windows.items()]),
            dmc.Text(id="as-live-status", size="sm", c="dimmed"),
        ], justify="space-between", mt="xs"),
        html.Div(id="as-notices", style={"marginTop": "8px"}),
        create_section(
            "Open and recent alarms",
            dag.AgGrid(
                id="as-alarms", rowData=[], columnDefs=ALARM_GRID_COLUMNS, getRowId="params.data.alarm_id",
                defaultColDef={"sortable": True, "filter": True, "resizable": True},
                dashGridOptions={"rowSelection": {"mode": "singleRow", "checkboxes": False,
                                                  "enableClickSelection": True},
                                 "pagination": True, "paginationPageSize": 20, "animateRows": False},
                rowClassRules={"opencem-row-flagged": "params.data.source === 'live'"},
                style={"height": "330px"},
            ),
            description="Open alarms, and those raised or cleared within the window before the data's as-of "
                        "time. Alarms on one site whose spans overlap form a group under their root; live "
                        "rows (highlighted) came from the watched folder after the last refresh. Click a row.",
        ),
        html.Div(id="as-detail"),
        create_section(
            "Outage simulation",
            dmc.Select(id="as-sim-object", placeholder="pick a site or a cell", searchable=True, clearable=True,
                       w=420, data=[], limit=200),
            html.Div(id="as-sim-result"),
            description="What an outage there would cost now (at the data's as-of time), by the same rule.",
        ),
        create_section(
            "Feasibility check",
            dmc.Group([
                dmc.TextInput(id="as-fz-customer", label="Customer id", placeholder="CU0000001", w=160),
                dmc.NumberInput(id="as-fz-lat", label="or latitude", decimalScale=6, w=140),
                dmc.NumberInput(id="as-fz-lon", label="and longitude", decimalScale=6, w=140),
                dmc.Select(id="as-fz-service", label="Service", value="video", w=160, allowDeselect=False,
                           data=[{"value": k, "label": f"{k.replace('_', ' ')} ({v:g} Mbit/s)"}
                                 for k, v in fz.SERVICE_NEEDS.items()]),
                dmc.NumberInput(id="as-fz-mbps", label="Need (Mbit/s, busy hour)", value=5, min=0.01,
                                decimalScale=2, w=180),
                dmc.Button("Check", id="as-fz-check", mt=24),
            ], align="flex-start", gap="sm"),
            html.Div(id="as-fz-result"),
            description="Order-time service qualification (after TMF645): the busy-hour throughput, load and "
                        "availability of the cells that serve the customer or the place.",
        ),
    ])


# ------------------------------------------------------------------------------------------------ helpers


def _mask(df: pl.DataFrame) -> pl.DataFrame:
    """Names and MSISDNs as the viewer may see them (roles care and assurance): app/auth.py's one mask."""
    return auth.mask(df, auth.current_viewer())


def _since(at: datetime | None, window: str) -> datetime | None:
    if at is None or window == "all":
        return None
    return at - timedelta(hours=float(window))


def _fmt_time(t: datetime | None) -> str:
    return "" if t is None else f"{t:%Y-%m-%d %H:%M}"


def _fmt_duration(minutes: float | None) -> str:
    if minutes is None:
        return ""
    return f"{minutes:.0f} min" if minutes < 120 else f"{minutes / 60:.1f} h"


def _alarm_frame(db: WarehouseReader, window: str) -> tuple[pl.DataFrame, datetime | None, list, list[str]]:
    """Refreshed and live alarms of the window, grouped; with the live folder's problems."""
    at = qa.as_of(db)
    since = _since(at, window)
    live = scan(settings().live_alarms_path)
    live_rows, problems, _gone = qa.live_alarm_rows(db, live, as_of_at=at, since=since)
    refreshed = qa.refreshed_alarms(db, since=since)
    live_ids = set(live_rows["alarm_id"].to_list())
    refreshed = refreshed.filter(~pl.col("alarm_id").is_in(list(live_ids)))
    alarms = qa.group_alarms(pl.concat([live_rows, refreshed], how="vertical"), as_of_at=at)
    problems = [(b.file, b.message) for b in live.bad] + problems
    return alarms, at, problems, [b.file for b in live.bad]


def _grid_rows(alarms: pl.DataFrame) -> list[dict]:
    rows = []
    for r in alarms.to_dicts():
        size = r.get("group_size") or 1
        label = (f"{r['group_id']} ({size} alarms)" if r["is_root"] else f"  in {r['group_id']}") if size > 1 else ""
        rows.append({
            **{k: r[k] for k in ("alarm_id", "source", "alarm_type", "perceived_severity", "probable_cause",
                                 "cell_ids", "n_customers_affected", "n_vip_affected", "alarmed_object_id",
                                 "alarmed_object_type", "group_id", "is_root", "group_size", "site_id",
                                 "specific_problem", "zone_ids")},
            "revenue_per_hour_at_stake": r["revenue_per_hour_at_stake"],
            "group_label": label,
            "state": "open" if r["is_open"] else "cleared",
            "service_affecting": "yes" if r["service_affecting"] else "no",
            "object": f"{r['alarmed_object_type']} {r['alarmed_object_id']}",
            "raised": _fmt_time(r["raised_at"]), "cleared": _fmt_time(r["cleared_at"]),
            "raised_at": r["raised_at"].isoformat() if r["raised_at"] else None,
            "cleared_at": r["cleared_at"].isoformat() if r["cleared_at"] else None,
            "service_affecting_flag": bool(r["service_affecting"]),
            "duration": _fmt_duration(r["duration_min"]),
        })
    return rows


def _spec(row: dict) -> qa.AlarmSpec:
    return qa.AlarmSpec(row["alarm_id"], row["alarmed_object_id"], row["alarmed_object_type"],
                        datetime.fromisoformat(row["raised_at"]))


def _alarm_dict(row: dict) -> dict:
    return {"raised_at": datetime.fromisoformat(row["raised_at"]),
            "cleared_at": datetime.fromisoformat(row["cleared_at"]) if row.get("cleared_at") else None,
            "service_affecting": row.get("service_affecting_flag", True)}


def _members(row: dict, rows: list[dict]) -> list[dict]:
    """The alarms a selection stands for: a group's root stands for the whole group."""
    if row.get("is_root") and (row.get("group_size") or 1) > 1:
        return [r for r in rows if r.get("group_id") == row["alarm_id"]]
    return [row]


def _customers_for(db: WarehouseReader, members: list[dict]) -> pl.DataFrame:
    """The ranked affected customers of the selected alarm (or of its whole group, each customer once)."""
    impact = qa.affected_customers(db, [_spec(m) for m in members], as_of_at=qa.as_of(db))
    if len(members) > 1:
        impact = (impact.sort(["tier", "revenue_per_hour"], descending=[True, True])
                  .unique("customer_id", keep="first").with_columns(pl.lit(members[0]["alarm_id"]).alias("alarm_id")))
    return qa.enrich_customers(db, impact)


def _zone_label(db: WarehouseReader, row: dict) -> str | None:
    zones = [z for z in (row.get("zone_ids") or "").split(",") if z]
    names = qa.zone_names(db, zones)
    return ", ".join(names.get(z, z) for z in zones) or None


# ---------------------------------------------------------------------------------------------- callbacks


@callback(
    Output("as-state", "data"),
    Input("as-poll", "n_intervals"),
    Input("as-window", "value"),
    State("as-state", "data"),
)
def poll(_n, window, last):
    """What the page shows depends on the live version, the watched folder and the window: only when one
    of them changes does the page redraw (so a poll costs a folder listing)."""
    db, cfg = reader(), settings()
    try:
        version = db.version.name
    except NoWarehouse:
        version = None
    state = {"version": version, "live": scan(cfg.live_alarms_path).fingerprint, "window": window or "72"}
    if state == last:
        raise PreventUpdate
    return state


@callback(
    Output("as-alarms", "rowData"),
    Output("as-asof", "children"),
    Output("as-notices", "children"),
    Output("as-live-status", "children"),
    Output("as-sim-object", "data"),
    Input("as-state", "data"),
)
def update_alarms(state):
    if not state:
        raise PreventUpdate
    db, cfg = reader(), settings()
    if state.get("version") is None:
        return [], None, create_empty_state("No warehouse has been published yet: run `opencem refresh`.",
                                            title="No warehouse yet"), "", []
    alarms, at, problems, _bad = _alarm_frame(db, state["window"])
    asof = create_asof(f"{at:%Y-%m-%d %H:%M} UTC" if at else None, state["version"])
    notices = [create_notice(msg, color="red", title=f"Live alarm file skipped: {file}") for file, msg in problems]
    if alarms.height == 0:
        notices.append(create_empty_state(
            f"No alarm is open, and none was raised or cleared in the window ({WINDOWS.get(state['window'], '')}) "
            "before the data's as-of time.", title="No alarms"))
    n_live = int((alarms["source"] == "live").sum()) if alarms.height else 0
    n_open = int(alarms["is_open"].sum()) if alarms.height else 0
    status = (f"{alarms.height} alarms ({n_open} open, {n_live} live) · watching {cfg.live_alarms_path} "
              f"every {cfg.assurance_poll_seconds:g} s")
    return _grid_rows(alarms), asof, notices, status, qa.object_choices(db)


@callback(
    Output("as-detail", "children"),
    Output("as-selected", "data"),
    Input("as-alarms", "selectedRows"),
    Input("as-alarms", "rowData"),
    State("as-want", "data"),
)
def show_alarm(selected, rows, wanted):
    if not rows:
        return None, None
    row = None
    if selected:
        row = next((r for r in rows if r["alarm_id"] == selected[0]["alarm_id"]), None)
    if row is None and wanted:
        row = next((r for r in rows if r["alarm_id"] == wanted), None)
        if row is None:
            return create_notice(f"Alarm {wanted} is not in the window: choose a longer one.", color="yellow"), None
    if row is None:
        row = rows[0]
    db, cfg = reader(), settings()
    members = _members(row, rows)
    customers = _customers_for(db, members)
    return create_alarm_detail(db, row, members, customers, currency=cfg.currency, tile_url=cfg.tile_url), {
        "row": row, "members": members}


def create_alarm_detail(db: WarehouseReader, row: dict, members: list[dict], customers: pl.DataFrame, *,
                        currency: str, tile_url: str | None) -> html.Section:
    core = customers.filter(pl.col("tier") == "majority")
    n_high = int((core["churn_risk"] == "high").sum()) if qa.has_churn_scores(db) else None
    title = f"Alarm {row['alarm_id']}" + (f" and its group of {len(members)}" if len(members) > 1 else "")
    cards = dmc.SimpleGrid([
        create_stat_card("Customers affected", f"{core.height:,}", card_id="as-card-customers",
                         note=f"+ {customers.height - core.height} whose home cell is in alarm"),
        create_stat_card("VIP customers", f"{int(core['is_vip'].fill_null(False).sum()):,}"),
        create_stat_card("At high churn risk", "no churn scores published" if n_high is None else f"{n_high:,}",
                         note=None if n_high is not None else "run `opencem train` to rank by churn risk"),
        create_stat_card("Revenue per hour at stake", f"{float(core['revenue_per_hour'].sum() or 0):,.2f} {currency}",
                         note="usage of the 7 days before / 168 h + recurring fees / 730.5 h"),
    ], cols=4, spacing="sm", mt="sm")
    specs = [_spec(m) for m in members]
    area = qa.affected_area(db, specs)
    zones = sorted({z for z in area.filter(pl.col("is_in_alarm"))["zone_id"].to_list() if z}) if area.height else []
    geo, bbox = qa.zones_geojson(db, zones)
    located = area.filter(pl.col("latitude").is_not_null()) if area.height else area
    if bbox is None and located.height:
        bbox = (located["longitude"].min(), located["latitude"].min(), located["longitude"].max(),
                located["latitude"].max())
    area_view = (create_graph("as-map", figs.affected_area_map(area, geo, bbox=bbox, tile_url=tile_url))
                 if bbox else create_empty_state("The alarm's cells have no coordinates."))
    cells_text = ", ".join(sorted({c for m in members for c in (m.get("cell_ids") or "").split(",") if c}))
    facts = dmc.Stack([
        dmc.Text(f"{row['perceived_severity']} {row['alarm_type']} on {row['object']}: {row['probable_cause']}"
                 + (f" ({row['specific_problem']})" if row.get("specific_problem") else ""), fw=600),
        dmc.Text(f"Raised {row['raised']} UTC" + (f", cleared {row['cleared']} UTC" if row.get("cleared") else
                                                  ", still open") + f" · source: {row['source']}", size="sm"),
        dmc.Text(f"Cells down or degraded: {cells_text or 'none known to the inventory'}", size="sm"),
        dmc.Text("Affected: customers whose usage in the 7 days before the raise was mostly (over half) on these "
                 "cells; listed after them, those whose most-used cell is one of them.", size="xs", c="dimmed"),
    ], gap=2)
    shown = _mask(customers).with_columns(
        pl.col("tier").replace_strict({"majority": "most usage here", "home_cell": "home cell in alarm"},
                                      default=None).alias("tier_label"))
    grid = dag.AgGrid(
        id="as-customers", rowData=shown.select([c for c, _, _ in CUSTOMER_GRID_COLUMNS]).to_dicts(),
        columnDefs=[{"field": f, "headerName": h, **({"valueFormatter": {
            "function": f"params.value == null ? '' : d3.format('{spec}')(params.value)"}} if spec else {})}
            for f, h, spec in CUSTOMER_GRID_COLUMNS],
        getRowId="params.data.customer_id",
        defaultColDef={"sortable": True, "filter": True, "resizable": True, "flex": 1, "minWidth": 90},
        dashGridOptions={"pagination": True, "paginationPageSize": 20},
        rowClassRules={"opencem-row-flagged": "params.data.priority <= 10"}, style={"height": "360px"},
    )
    customers_view = (dmc.Stack([
        dmc.Group([dmc.Text(f"{customers.height} customers, ranked: VIP first, then churn risk, then value.",
                            size="sm"),
                   dmc.Button("Export contact list (CSV)", id="as-export", size="xs", variant="light")],
                  justify="space-between"),
        grid,
    ], gap=4) if customers.height else create_empty_state(
        "No customer used these cells in the 7 days before the alarm (or no usage is loaded for that window).",
        title="No affected customers"))
    return create_section(
        title,
        facts,
        cards,
        dmc.SimpleGrid([area_view, customers_view], cols=2, spacing="sm"),
        description="The cells it takes down or degrades, the customers it hurts and what it puts at stake.",
    )


@callback(
    Output("as-download", "data"),
    Input("as-export", "n_clicks"),
    State("as-selected", "data"),
    prevent_initial_call=True,
)
def export_contacts(n_clicks, selected):
    """The contact list, built on the server and neutralised cell by cell (`qa.to_safe_csv`), so what a
    spreadsheet opens cannot run."""
    if not n_clicks or not selected:
        raise PreventUpdate
    db = reader()
    row, members = selected["row"], selected["members"]
    customers = _customers_for(db, members)
    contacts = qa.contact_list(customers, _alarm_dict(row), zone_label=_zone_label(db, row))
    contacts = contacts.with_columns(pl.lit(row.get("specific_problem") or row.get("probable_cause"))
                                     .alias("alarm_problem"))
    contacts = _mask(contacts)
    viewer = auth.current_viewer()
    auth.audit("export_contacts", alarm_id=row["alarm_id"], rows=contacts.height,
               personal_data="shown" if viewer is not None and viewer.sees_personal_data else "masked")
    return {"content": qa.to_safe_csv(contacts), "filename": f"contacts_{row['alarm_id']}.csv",
            "type": "text/csv"}


@callback(
    Output("as-sim-result", "children"),
    Input("as-sim-object", "value"),
    prevent_initial_call=True,
)
def simulate(value):
    if not value:
        return None
    kind, _, object_id = value.partition(":")
    if kind not in ("site", "cell") or not object_id:
        raise PreventUpdate
    db, cfg = reader(), settings()
    est = qa.simulate_outage(db, kind, object_id)
    return dmc.Stack([
        dmc.SimpleGrid([
            create_stat_card("Customers", f"{est.n_customers:,}", card_id="as-sim-customers",
                             note=f"+ {est.n_home_cell} whose home cell it is"),
            create_stat_card("VIP customers", f"{est.n_vip:,}"),
            create_stat_card("Revenue per hour", f"{est.revenue_per_hour:,.2f} {cfg.currency}"),
            create_stat_card("Already at high churn risk", "no churn scores published" if est.n_high_churn_risk
                             is None else f"{est.n_high_churn_risk:,}"),
        ], cols=4, spacing="sm"),
        dmc.Text(f"An outage of {kind} {object_id} ({est.n_cells} cells) at {_fmt_time(est.at)} UTC, judged on "
                 "the 7 days of usage before it.", size="xs", c="dimmed"),
    ], gap=4, mt="xs")


@callback(
    Output("as-fz-result", "children"),
    Input("as-fz-check", "n_clicks"),
    State("as-fz-customer", "value"),
    State("as-fz-lat", "value"),
    State("as-fz-lon", "value"),
    State("as-fz-service", "value"),
    State("as-fz-mbps", "value"),
    prevent_initial_call=True,
)
def check_feasibility(n_clicks, customer_id, lat, lon, service, mbps):
    if not n_clicks:
        raise PreventUpdate
    db, cfg = reader(), settings()
    try:
        q = fz.check(db.query, need=fz.ServiceNeed(service or "video", float(mbps or 0)),
                     customer_id=(customer_id or "").strip() or None,
                     lat=None if lat in (None, "") else float(lat), lon=None if lon in (None, "") else float(lon),
                     limits=fz.limits_from(cfg))
    except UsageError as exc:
        return create_notice(str(exc), color="red", title="Cannot check")
    colour = {"qualified": "teal", "qualified_with_risk": "orange", "unqualified": "red"}[q.result]
    cells = pl.DataFrame([{"cell_id": v.cell.cell_id, "dl_throughput_median_mbps": v.cell.dl_throughput_median_mbps,
                           "dl_throughput_p10_mbps": v.cell.dl_throughput_p10_mbps, "result": v.result}
                          for v in q.cells],
                         schema={"cell_id": pl.String, "dl_throughput_median_mbps": pl.Float64,
                                 "dl_throughput_p10_mbps": pl.Float64, "result": pl.String})
    table = dmc.Table(
        data={"head": ["Cell", "Tech", "Busy hour", "Days", "Median Mbit/s", "Bad day Mbit/s", "PRB %", "Avail. %",
                       "Verdict"],
              "body": [[v.cell.cell_id, v.cell.technology or "",
                        "" if v.cell.busy_hour is None else f"{v.cell.busy_hour:02d}:00", v.cell.n_days,
                        v.cell.dl_throughput_median_mbps, v.cell.dl_throughput_p10_mbps,
                        v.cell.prb_utilisation_pct, v.cell.availability_pct, fz.RESULT_LABELS[v.result]]
                       for v in q.cells]},
        striped=True, fz="sm",
    )
    return dmc.Stack([
        dmc.Group([dmc.Badge(q.label, color=colour, size="lg", id="as-fz-verdict"),
                   dmc.Text(f"{q.need.service} at {q.need.mbps:g} Mbit/s in the busy hour"
                            + (f"; safe on a bad day: {q.safe_mbps:g} Mbit/s" if q.result == "qualified_with_risk"
                               and q.safe_mbps is not None else ""), size="sm")]),
        dmc.List([dmc.ListItem(label) for _, label in q.reasons], size="sm"),
        dmc.SimpleGrid([table, create_graph("as-fz-chart", figs.serving_cells_chart(cells, need_mbps=q.need.mbps))],
                       cols=2, spacing="sm") if q.cells else None,
    ], gap=6, mt="xs")
