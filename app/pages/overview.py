"""Overview `/` for executives: revenue by zone beside service performance by zone, the value x experience
matrix, headline figures against the previous period. Filters live in the URL so a view can be shared."""

from __future__ import annotations

from urllib.parse import urlencode

import dash
import dash_mantine_components as dmc
import polars as pl
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, dcc, html
from dash.exceptions import PreventUpdate

from app import figures, queries
from app.components import (
    create_asof,
    create_empty_state,
    create_graph,
    create_notice,
    create_section,
    create_stat_card,
)
from app.constants import KPIS, PAYMENT_TYPES, PERIODS, SERVICE_LABELS, SERVICES
from app.context import reader, settings
from app.warehouse import NoWarehouse

dash.register_page(__name__, path="/", name="Overview", title="opencem: overview", order=0,
                   roles=("executive", "planner", "data_steward"))

DEFAULTS = {"period": "28", "service": "all", "payment": "all", "kpi": "experience_index"}
EXPERIENCE_TARGET = 95.0  # the scorecard's bound on "poor" experience (etl.transforms.marts_zone)


def _clean(kwargs: dict) -> dict[str, str]:
    """Filter values from the URL, each replaced by its default when it is not one of the known choices."""
    allowed = {"period": PERIODS, "service": ("all", *SERVICES), "payment": ("all", *PAYMENT_TYPES),
               "kpi": KPIS}
    return {k: (kwargs.get(k) if kwargs.get(k) in allowed[k] else v) for k, v in DEFAULTS.items()}


def create_filters(values: dict[str, str]) -> dmc.Group:
    return dmc.Group(
        [
            dmc.SegmentedControl(id="ov-period", value=values["period"],
                                 data=[{"value": k, "label": v} for k, v in PERIODS.items()]),
            dmc.Select(id="ov-service", label=None, value=values["service"], w=170, allowDeselect=False,
                       data=[{"value": "all", "label": "All services"}]
                       + [{"value": s, "label": SERVICE_LABELS[s]} for s in SERVICES]),
            dmc.SegmentedControl(id="ov-payment", value=values["payment"],
                                 data=[{"value": "all", "label": "Prepaid + postpaid"},
                                       {"value": "prepaid", "label": "Prepaid"},
                                       {"value": "postpaid", "label": "Postpaid"}]),
            dmc.Select(id="ov-kpi", value=values["kpi"], w=210, allowDeselect=False,
                       data=[{"value": k, "label": v.label} for k, v in KPIS.items()]),
        ],
        gap="sm",
    )


def layout(**kwargs) -> html.Div:
    values = _clean(kwargs)
    return html.Div(
        [
            dmc.Group([dmc.Title("Revenue and experience by zone", order=2), html.Div(id="ov-asof")],
                      justify="space-between"),
            create_filters(values),
            html.Div(id="ov-notices", style={"marginTop": "8px"}),
            dmc.SimpleGrid(id="ov-cards", cols=4, spacing="sm", mt="sm"),
            dmc.SimpleGrid(
                [
                    dmc.Paper([dmc.Text(id="ov-revenue-title", fw=600),
                               create_graph("ov-revenue-map")], withBorder=True, p="xs"),
                    dmc.Paper([dmc.Text(id="ov-kpi-title", fw=600),
                               create_graph("ov-kpi-map")], withBorder=True, p="xs"),
                ],
                cols=2, spacing="sm", mt="sm",
            ),
            dmc.Text("Hover a zone to see its figures on both maps; click it to open the zone.", size="xs",
                     c="dimmed"),
            dmc.SimpleGrid(
                [
                    create_section("Value x experience", create_graph("ov-matrix"),
                                   description="Each zone a point; the quadrant says what to do."),
                    create_section("Where investment pays back", html.Div(id="ov-invest"),
                                   description="Revenue at stake x experience gap, top zones of the period."),
                ],
                cols=2, spacing="lg",
            ),
            html.Div(id="ov-url-sync", hidden=True),
            dcc.Store(id="ov-matrix-data"),
        ]
    )


def _fmt_money(x: float | None, currency: str) -> str:
    return "-" if x is None else f"{x:,.0f} {currency}"


def _delta(cur: float | None, prev: float | None, *, better: str = "higher") -> tuple[str | None, bool | None]:
    if cur is None or prev is None or prev == 0:
        return "no earlier period loaded to compare", None
    change = (cur - prev) / abs(prev) * 100
    good = change >= 0 if better == "higher" else change <= 0
    return f"{change:+.1f}% vs previous {'period'}", good


def create_cards(db, p: queries.Period, currency: str, *, service: str | None, payment_type: str | None) -> list:
    cur = queries.headline(db, p, service=service, payment_type=payment_type)
    prev_p = p.previous()
    first = queries.period(db, "all")
    prev = (queries.headline(db, prev_p, service=service, payment_type=payment_type)
            if first is not None and prev_p.start >= first.start else {})
    cards = []
    for key, label, fmt in (
        ("revenue", "Revenue" + ("" if service is None and payment_type is None else " (filtered)"),
         lambda v: _fmt_money(v, currency)),
        ("arpu_month", "ARPU per month", lambda v: "-" if v is None else f"{v:,.2f} {currency}"),
        ("subscribers", "Subscribers", lambda v: "-" if v is None else f"{v:,.0f}"),
        ("availability_pct", "Network availability", lambda v: "not loaded" if v is None else f"{v:.2f}%"),
    ):
        delta, good = _delta(cur.get(key), prev.get(key))
        note = None
        if key == "availability_pct" and cur.get("kpi_completeness") is not None:
            note = f"{cur['kpi_completeness'] * 100:.1f}% of cell-hours reported"
        cards.append(create_stat_card(label, fmt(cur.get(key)), delta=delta, delta_good=good, note=note,
                                      card_id=f"ov-card-{key}"))
    return cards


def zones_url(version: str) -> str:
    """Where the browser fetches the zone outlines of a version (served by app.main, cached by version)."""
    return f"/opencem/zones/{version}.geojson"


def create_invest_table(df: pl.DataFrame, currency: str, period_choice: str) -> dmc.Table:
    """The top of the investment ranking; each zone links to its page (a plain table keeps the first load light)."""
    head = dmc.TableThead(dmc.TableTr([dmc.TableTh(h) for h in
                                      ("#", "Zone", "Quadrant", f"Revenue ({currency})", "Experience", "Score")]))
    rows = []
    for r in df.head(15).to_dicts():
        link = dcc.Link(r["zone_name"] or r["zone_id"], href=f"/zone/{r['zone_id']}?period={period_choice}")
        rows.append(dmc.TableTr([
            dmc.TableTd(r["invest_rank"]), dmc.TableTd(link), dmc.TableTd(r["quadrant"] or "-"),
            dmc.TableTd(f"{r['revenue_at_stake']:,.0f}"),
            dmc.TableTd("-" if r["experience_index"] is None else f"{r['experience_index']:.1f}"),
            dmc.TableTd(f"{r['investment_score']:,.0f}"),
        ]))
    return dmc.Table([head, dmc.TableTbody(rows)], striped=True, highlightOnHover=True, id="ov-invest-table")


def _context(period_choice: str):
    """The reader, settings, live version and chosen period; an empty state instead when there is none."""
    db, cfg = reader(), settings()
    try:
        version = db.version.name
    except NoWarehouse as exc:
        return None, create_empty_state(str(exc), title="No warehouse yet")
    p = queries.period(db, period_choice)
    if p is None:
        return None, create_empty_state("The warehouse has no days of revenue or KPIs loaded yet.")
    return (db, cfg, version, p), None


def _known(period_choice=None, service=None, payment=None, kpi=None) -> bool:
    """Whether every filter value given is one of the choices (answers are memoised per choice: a value
    from elsewhere must not grow the memo)."""
    return ((period_choice is None or period_choice in PERIODS)
            and (service is None or service == "all" or service in SERVICES)
            and (payment is None or payment == "all" or payment in PAYMENT_TYPES)
            and (kpi is None or kpi in KPIS))


def _chosen(service: str, payment: str) -> dict[str, str | None]:
    return {"service": None if service == "all" else service, "payment_type": None if payment == "all" else payment}


@callback(
    Output("ov-asof", "children"),
    Output("ov-notices", "children"),
    Input("ov-period", "value"),
)
def update_header(period_choice):
    """The data's as-of time, sources not loaded and KPIs resting on incomplete hours: said, never hidden."""
    if not period_choice or not _known(period_choice):
        raise PreventUpdate
    ctx, empty = _context(period_choice)
    if ctx is None:
        return None, empty
    db, _cfg, version, p = ctx
    return header(db, version, p)


def header(db, version: str, p: queries.Period) -> tuple:
    """The header's as-of badge and notices of a period; once per version."""
    return db.memo(("ov-header", p), lambda: _header(db, version, p))


def _header(db, version: str, p: queries.Period) -> tuple:
    as_of, missing = queries.data_as_of(db)
    asof = create_asof(as_of, version, missing=missing)
    notices = []
    if missing:
        notices.append(create_notice(
            f"Not loaded: {', '.join(missing)}. Figures that need them are left empty, not shown as zero."))
    incomplete = queries.incomplete_zones(db, p)
    if incomplete.height:
        names = ", ".join(f"{r['zone_name']} ({r['kpi_completeness'] * 100:.0f}%)"
                          for r in incomplete.head(6).to_dicts())
        more = f" and {incomplete.height - 6} more" if incomplete.height > 6 else ""
        notices.append(create_notice(f"KPIs of {incomplete.height} zone(s) rest on incomplete hours: {names}{more}."))
    return asof, notices


@callback(
    Output("ov-cards", "children"),
    Input("ov-period", "value"),
    Input("ov-service", "value"),
    Input("ov-payment", "value"),
)
def update_cards(period_choice, service, payment):
    if not period_choice or not service or not payment or not _known(period_choice, service, payment):
        raise PreventUpdate
    ctx, _empty = _context(period_choice)
    if ctx is None:
        return []
    db, cfg, _version, p = ctx
    return cards(db, cfg, p, service, payment)


def cards(db, cfg, p: queries.Period, service: str, payment: str) -> list:
    """The headline cards of a period and filter choice; once per version."""
    return db.memo(("ov-cards", p, service, payment),
                   lambda: create_cards(db, p, cfg.currency, **_chosen(service, payment)))


def _hover(kpi_name: str | None, currency: str) -> list[tuple[str, str, str]]:
    """What hovering a zone shows: revenue (of the filters on the revenue map, of every service on the KPI
    map), subscribers, experience, the KPI map's KPI, the share of hours present."""
    revenue = f"revenue ({currency})" if kpi_name is None else f"revenue, all services ({currency})"
    hover = [("selected_revenue", revenue, ",.0f"), ("subscribers", "subscribers", ",.0f"),
             ("experience_index", "experience index", ".1f")]
    if kpi_name:
        kpi = KPIS[kpi_name]
        hover.append((kpi_name, kpi.label + f" ({kpi.unit})", kpi.fmt))
    hover.append(("kpi_completeness", "share of hours present", ".0%"))
    return list({c: (c, label, fmt) for c, label, fmt in hover}.values())  # one entry per column


@callback(
    Output("ov-revenue-title", "children"),
    Output("ov-revenue-map", "figure"),
    Input("ov-period", "value"),
    Input("ov-service", "value"),
    Input("ov-payment", "value"),
)
def update_revenue_map(period_choice, service, payment):
    """The revenue map of the chosen service and payment type; once per version and choice."""
    if not period_choice or not service or not payment or not _known(period_choice, service, payment):
        raise PreventUpdate
    ctx, empty = _context(period_choice)
    if ctx is None:
        return empty, {}
    db, cfg, version, p = ctx
    return revenue_map(db, cfg, version, p, service, payment)


def revenue_map(db, cfg, version: str, p: queries.Period, service: str, payment: str) -> tuple:
    """The revenue map's title and figure; once per version and choice."""
    return db.memo(("ov-revenue-map", p, service, payment),
                   lambda: _revenue_map(db, cfg, version, p, service, payment))


def _revenue_map(db, cfg, version: str, p: queries.Period, service: str, payment: str) -> tuple:
    _geojson, bbox = queries.zones_geojson(db)
    if bbox is None:
        return create_empty_state("No zones are loaded, so there is no map to draw. Load a zones file."), {}
    zones = queries.overview_zones(db, p, **_chosen(service, payment))
    service_label = "all services" if service == "all" else SERVICE_LABELS[service]
    payment_label = "prepaid and postpaid" if payment == "all" else payment
    title = f"Revenue, {service_label}, {payment_label} ({cfg.currency}, {queries_period_label(p)})"
    hover = _hover(None, cfg.currency)
    zones = zones.with_columns(pl.col(c).cast(pl.Float64) for c, _, _ in hover)
    fig = figures.zone_choropleth(
        zones, zones_url(version), value="selected_revenue",
        colorbar_title=f"{cfg.currency}<br><sub>higher is more</sub>", colorscale="Blues", bbox=bbox,
        hover_columns=hover, tile_url=cfg.tile_url)
    return title, fig


@callback(
    Output("ov-kpi-title", "children"),
    Output("ov-kpi-map", "figure"),
    Input("ov-period", "value"),
    Input("ov-kpi", "value"),
)
def update_kpi_map(period_choice, kpi_name):
    """The map of the chosen KPI (revenue on hover is of every service); once per version and choice."""
    if not period_choice or not kpi_name or not _known(period_choice, kpi=kpi_name):
        raise PreventUpdate
    ctx, _empty = _context(period_choice)
    if ctx is None:
        return None, {}
    db, cfg, version, p = ctx
    return kpi_map(db, cfg, version, p, kpi_name)


def kpi_map(db, cfg, version: str, p: queries.Period, kpi_name: str) -> tuple:
    """The KPI map's title and figure; once per version and choice."""
    return db.memo(("ov-kpi-map", p, kpi_name), lambda: _kpi_map(db, cfg, version, p, kpi_name))


def _kpi_map(db, cfg, version: str, p: queries.Period, kpi_name: str) -> tuple:
    _geojson, bbox = queries.zones_geojson(db)
    if bbox is None:
        return None, {}
    zones = queries.overview_zones(db, p, service=None, payment_type=None)
    kpi = KPIS[kpi_name]
    hover = _hover(kpi_name, cfg.currency)
    zones = zones.with_columns(pl.col(c).cast(pl.Float64) for c, _, _ in hover)
    fig = figures.zone_choropleth(
        zones, zones_url(version), value=kpi_name, colorbar_title=kpi.legend, colorscale=kpi.colorscale,
        bbox=bbox, hover_columns=hover, tile_url=cfg.tile_url)
    title = f"{kpi.label} ({kpi.unit}, {kpi.better} is better; {queries_period_label(p)})"
    return title, fig


@callback(
    Output("ov-matrix-data", "data"),
    Output("ov-invest", "children"),
    Input("ov-period", "value"),
)
def update_matrix(period_choice):
    if not period_choice or not _known(period_choice):
        raise PreventUpdate
    ctx, empty = _context(period_choice)
    if ctx is None:
        return {}, empty
    db, cfg, _version, p = ctx
    return matrix(db, cfg, p, period_choice)


def matrix(db, cfg, p: queries.Period, period_choice: str) -> tuple:
    """The value x experience matrix and the top of the investment ranking; once per version and choice."""
    return db.memo(("ov-matrix", p, period_choice), lambda: _matrix(db, cfg, p, period_choice))


def _matrix(db, cfg, p: queries.Period, period_choice: str) -> tuple:
    sc = queries.scorecard(db, p).filter(pl.col("quadrant").is_not_null())
    matrix = {}
    if sc.height:
        matrix = figures.value_experience_matrix(
            sc, value_threshold=float(sc["revenue"].median()),
            experience_threshold=min(float(sc["experience_index"].median()), EXPERIENCE_TARGET))
    invest = queries.investment_list(db, p)
    if invest.height == 0:
        return matrix, create_empty_state("No zone has both revenue and KPIs in this period to rank.")
    return matrix, create_invest_table(invest, cfg.currency, period_choice)


def queries_period_label(p: queries.Period) -> str:
    return f"{p.start:%d %b} - {p.end:%d %b %Y}"


@callback(
    Output("nav", "href", allow_duplicate=True),
    Input("ov-revenue-map", "clickData"),
    Input("ov-kpi-map", "clickData"),
    Input("ov-matrix", "clickData"),
    State("ov-period", "value"),
    prevent_initial_call=True,
)
def open_zone(rev_click, kpi_click, matrix_click, period_choice):
    trigger = dash.ctx.triggered_id
    data = {"ov-revenue-map": rev_click, "ov-kpi-map": kpi_click, "ov-matrix": matrix_click}.get(trigger)
    zone_id = None
    if data and data.get("points"):
        point = data["points"][0]
        zone_id = point.get("location") or (point.get("customdata") or [None])[0]
    if not zone_id:
        raise PreventUpdate
    return f"/zone/{zone_id}?{urlencode({'period': period_choice})}"


# The URL follows the filters (replaceState: no reload, no history entry per click).
clientside_callback(
    ClientsideFunction(namespace="opencem", function_name="syncQuery"),
    Output("ov-url-sync", "children"),
    Input("ov-period", "value"),
    Input("ov-service", "value"),
    Input("ov-payment", "value"),
    Input("ov-kpi", "value"),
)

# The matrix is drawn once the maps are painted: drawing its 537 points first would hold up the maps, which
# are what a visitor looks at first (its answer arrives with the others; only the drawing waits).
clientside_callback(
    ClientsideFunction(namespace="opencem", function_name="afterMaps"),
    Output("ov-matrix", "figure"),
    Input("ov-matrix-data", "data"),
)

# Linked maps: hovering a zone on either map outlines it on both.
clientside_callback(
    ClientsideFunction(namespace="opencem", function_name="linkHover"),
    Output("ov-url-sync", "title"),
    Input("ov-revenue-map", "hoverData"),
    Input("ov-kpi-map", "hoverData"),
    prevent_initial_call=True,
)


def warm(db, cfg) -> None:
    """Build every answer of the page for the live version ahead of its visitors (app.main runs this in the
    background when a version goes live): a few hundred small answers, since each filter has a few values."""
    version = db.version.name
    for choice in PERIODS:
        p = queries.period(db, choice)
        if p is None:
            continue
        header(db, version, p)
        matrix(db, cfg, p, choice)
        for kpi_name in KPIS:
            kpi_map(db, cfg, version, p, kpi_name)
        for service in ("all", *SERVICES):
            for payment in ("all", *PAYMENT_TYPES):
                revenue_map(db, cfg, version, p, service, payment)
                cards(db, cfg, p, service, payment)
