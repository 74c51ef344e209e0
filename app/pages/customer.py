"""Customer `/customer/<customer_id>` for care (and, with personal data masked, for the other roles that
work with customers): the care agent's answer on top (is there a known network problem where this
customer is, now or in the last 72 hours), then identity and segment, subscriptions, promotions, usage
and charges by service, bills, top-ups, tickets, the cells and zones their usage happens on, the network
experience hour by hour beside their own usage, and the churn risk and experience index when published.

Every callback that reads the customer's data appends to the audit log (who, when, which customer).
"""

from __future__ import annotations

import datetime as dt

import dash
import dash_mantine_components as dmc
import polars as pl
from dash import Input, Output, callback, dcc, html
from dash.exceptions import PreventUpdate

from app import figures_customer as figs
from app import queries_customer as qc
from app.auth import MASK, audit, current_viewer
from app.components import (
    create_asof,
    create_empty_state,
    create_graph,
    create_grid,
    create_notice,
    create_section,
)
from app.constants import KPIS
from app.context import reader, settings
from app.warehouse import NoWarehouse

#: Roles that may open a customer record (personal data is masked for those not in PERSONAL_DATA_ROLES).
ROLES = ("care", "assurance", "marketing", "planner", "data_steward")
dash.register_page(__name__, path_template="/customer/<customer_id>", name="Customer", title="opencem: customer",
                   nav=False, roles=ROLES)

TIMELINE_KPIS = ("availability_pct", "accessibility_pct", "drop_rate_pct", "dl_throughput_mbps", "latency_ms",
                 "prb_utilisation_pct")
CARE_COLOURS = {"outage_now": "red", "outage_recent": "orange", "degraded": "yellow", "none": "teal",
                "no_data": "gray"}
CARE_TITLES = {"outage_now": "Known network problem now", "outage_recent": "Known network problem in the last 72 h",
               "degraded": "Degraded service on their cells", "none": "No network problem found",
               "no_data": "No network evidence"}


def layout(customer_id: str | None = None, **kwargs) -> html.Div:
    kpi = kwargs.get("kpi") if kwargs.get("kpi") in TIMELINE_KPIS else "availability_pct"
    return html.Div([
        dcc.Store(id="cu-id", data=customer_id),
        dmc.Group([html.Div(id="cu-title"), html.Div(id="cu-asof")], justify="space-between"),
        dmc.Anchor("find another customer", href="/customers", size="sm"),
        html.Div(id="cu-notices"),
        dcc.Loading(html.Div(id="cu-care", style={"marginTop": "10px"}), type="dot"),
        html.Div(id="cu-profile"),
        create_section("Where their usage happens", html.Div(id="cu-cells"),
                       description="Cells carrying their usage (marker size: share of their events in the last 7 "
                                   "days); red where the care answer found a problem."),
        create_section(
            "Network experience, hour by hour",
            dmc.Select(id="cu-kpi", value=kpi, w=220, allowDeselect=False,
                       data=[{"value": k, "label": KPIS[k].label} for k in TIMELINE_KPIS]),
            create_graph("cu-timeline"),
            description="Their own events per hour (top) beside the KPI of the cells they use (bottom), alarms as "
                        "bands from raised to cleared; the dashed line starts the 72-hour care window.",
        ),
        create_section("Usage and charges by service", html.Div(id="cu-usage")),
        html.Div(id="cu-accounts"),
        html.Div(id="cu-models"),
    ])


def _viewer_or_stop():
    viewer = current_viewer()
    if viewer is None:  # the gate refuses anonymous callbacks; this guards a misconfigured app too
        raise PreventUpdate
    return viewer


def _audit_open(viewer, customer_id: str, view: str, **fields) -> None:
    """Log that `viewer` read part (`view`) of the customer's record, and whether personal data was shown."""
    audit("open_customer", customer_id=customer_id, view=view,
          personal_data="shown" if viewer.sees_personal_data else "masked", **fields)


def _fmt_money(x: float | None, currency: str) -> str:
    return "-" if x is None else f"{x:,.2f} {currency}"


def _field(label: str, value) -> dmc.Stack:
    shown = "-" if value is None or value == "" else str(value)
    style = {"c": "dimmed"} if shown == MASK else {}
    return dmc.Stack([dmc.Text(label, size="xs", c="dimmed"), dmc.Text(shown, size="sm", fw=500, **style)], gap=0)


def _rows(df: pl.DataFrame) -> list[dict]:
    """Grid rows with dates and times as text (what a person reads, and what the CSV export writes)."""
    out = df.with_columns(
        [pl.col(c).dt.strftime("%Y-%m-%d %H:%M") for c, t in df.schema.items() if t == pl.Datetime]
        + [pl.col(c).dt.strftime("%Y-%m-%d") for c, t in df.schema.items() if t == pl.Date]
    )
    return out.to_dicts()


def create_care_card(answer: qc.CareAnswer) -> dmc.Alert:
    """The care agent's answer: the sentence, what to tell the customer, then the evidence."""
    children = [dmc.Text(answer.sentence, fw=600, id="cu-care-sentence"),
                dmc.Text(answer.advice, size="sm", id="cu-care-advice")]
    if answer.evidence:
        children.append(dmc.List([dmc.ListItem(e) for e in answer.evidence], size="sm", id="cu-care-evidence"))
    if answer.earlier:
        children.append(dmc.List([dmc.ListItem(e) for e in answer.earlier], size="sm", id="cu-care-earlier"))
    return dmc.Alert(dmc.Stack(children, gap=6), title=CARE_TITLES[answer.status],
                     color=CARE_COLOURS[answer.status], variant="light", id="cu-care-answer",
                     **{"data-status": answer.status})


def create_profile(p: dict, currency: str) -> html.Div:
    identity = dmc.SimpleGrid([
        _field("Name", p.get("name")), _field("Segment", p.get("segment")),
        _field("Customer status", p.get("customer_status")), _field("Customer since",
                                                                     p["created_at"].date() if p.get("created_at") else None),
        _field("Address", p.get("address")), _field("E-mail", p.get("email")),
        _field("Date of birth", p.get("birth_date")),
        _field("Home zone", f"{p.get('home_zone_name') or '-'} ({p.get('home_zone_id') or '-'})"),
    ], cols=4, spacing="sm", id="cu-identity")
    summary = dmc.SimpleGrid([
        _field("Payment", p.get("payment_type") or "no active line"),
        _field("Active lines", f"{p.get('n_active_subscriptions') or 0} of {p.get('n_subscriptions') or 0}"),
        _field("Monthly fees", _fmt_money(p.get("monthly_fee_total"), currency)),
        _field("Usage charges, last 30 days", _fmt_money(p.get("usage_revenue_30d"), currency)),
        _field("Unpaid", f"{_fmt_money(p.get('amount_unpaid'), currency)} on {p.get('n_unpaid_bills') or 0} bill(s)"),
        _field("Tickets", f"{p.get('n_tickets') or 0} ({p.get('n_open_tickets') or 0} open, "
                          f"{p.get('n_network_tickets') or 0} about the network)"),
        _field("Outages lived through", f"{p.get('n_outages') or 0} ({(p.get('outage_minutes') or 0) / 60:.1f} h)"),
        _field("Usage zone", f"{p.get('usage_zone_name') or '-'} ({p.get('usage_zone_id') or '-'})"),
    ], cols=4, spacing="sm", mt="xs")
    return create_section("Identity and segment", dmc.Paper([identity, summary], withBorder=True, p="sm"))


SUB_COLUMNS = [("subscription_id", "Subscription", None), ("msisdn", "Number", None),
               ("product_offering", "Tariff", None), ("payment_type", "Payment", None), ("status", "Status", None),
               ("start_date", "Since", None), ("termination_date", "Ended", None), ("monthly_fee", "Monthly fee", ",.2f"),
               ("discount_pct", "Discount %", ".0f")]
PROMO_COLUMNS = [("promotion_id", "Promotion", None), ("subscription_id", "Subscription", None),
                 ("promotion_type", "Type", None), ("discount_pct", "Discount %", ".0f"), ("valid_from", "From", None),
                 ("valid_to", "Ends", None), ("state", "State", None), ("days_left", "Days left", None)]
BILL_COLUMNS = [("bill_id", "Bill", None), ("bill_date", "Date", None), ("billing_period_start", "From", None),
                ("billing_period_end", "To", None), ("payment_due_date", "Due", None),
                ("amount_due", "Due", ",.2f"), ("amount_paid", "Paid", ",.2f"), ("amount_open", "Open", ",.2f"),
                ("state", "State", None)]
TOPUP_COLUMNS = [("topup_id", "Top-up", None), ("subscription_id", "Subscription", None), ("topup_at", "When", None),
                 ("amount", "Amount", ",.2f"), ("channel", "Channel", None)]
TICKET_COLUMNS = [("ticket_id", "Ticket", None), ("created_at", "Opened", None), ("category", "Category", None),
                  ("channel", "Channel", None), ("severity", "Severity", None), ("status", "Status", None),
                  ("outcome", "Outcome", None), ("resolved_at", "Resolved", None),
                  ("hours_to_resolve", "Hours to resolve", ".1f")]
CELL_COLUMNS = [("cell_id", "Cell", None), ("site_id", "Site", None), ("technology", "Tech", None),
                ("zone_name", "Zone", None), ("share_recent", "Share of their events, 7 days", ".0%"),
                ("n_events_recent", "Events, 7 days", ",.0f")]


def _grid_or_empty(grid_id: str, columns, df: pl.DataFrame, *, row_id: str, file_name: str, empty: str,
                   height: int = 260):
    if df.height == 0:
        return html.Div(create_empty_state(empty, title="None"), id=f"{grid_id}-box")
    return html.Div(create_grid(grid_id, columns, _rows(df), file_name=file_name, row_id=row_id, height=height),
                    id=f"{grid_id}-box")


@callback(
    Output("cu-title", "children"),
    Output("cu-asof", "children"),
    Output("cu-notices", "children"),
    Output("cu-profile", "children"),
    Output("cu-accounts", "children"),
    Output("cu-models", "children"),
    Input("cu-id", "data"),
)
def load_record(customer_id):
    """The customer's record: identity, subscriptions, promotions, bills, top-ups, tickets, model outputs."""
    if not customer_id:
        raise PreventUpdate
    viewer = _viewer_or_stop()
    db, cfg = reader(), settings()
    try:
        version, now, missing = qc.version_and_asof(db)
    except NoWarehouse as exc:
        return dmc.Title("Customer", order=2), None, create_empty_state(str(exc), title="No warehouse yet"), \
            None, None, None
    asof = create_asof(f"{now:%Y-%m-%d %H:%M} UTC" if now else None, version, missing=missing)
    profile = qc.customer_profile(db, customer_id, viewer=viewer)
    _audit_open(viewer, customer_id, "record", found=profile is not None)
    if profile is None:
        return (dmc.Title(f"Customer {customer_id}", order=2), asof,
                create_empty_state(f"There is no customer {customer_id} in the warehouse.", title="Unknown customer"),
                None, None, None)
    title = dmc.Stack([
        dmc.Title(f"{profile['name'] or 'No name'} ({customer_id})", order=2, id="cu-name"),
        dmc.Group([dmc.Badge(profile.get("segment") or "no segment", variant="filled",
                             color="grape" if profile.get("is_vip") else "indigo"),
                   dmc.Text(f"{profile.get('main_product_offering') or 'no active tariff'}, "
                            f"tenure {(profile.get('tenure_days') or 0) / 365.25:.1f} years", size="sm")], gap="xs"),
    ], gap=2)
    notices = []
    if not viewer.sees_personal_data:
        notices.append(create_notice(
            f"Personal data is hidden for your roles ({viewer.role_label}): names, numbers, addresses and contact "
            f"details show as {MASK}, here and in every export.", color="gray", title="Personal data masked"))
    subs = qc.customer_subscriptions(db, customer_id, viewer=viewer)
    promos = qc.customer_promotions(db, subs["subscription_id"].to_list(), profile.get("as_of_date"))
    subs = qc.with_discounts(subs, promos)
    bills, topups, tickets = (qc.customer_bills(db, customer_id), qc.customer_topups(db, customer_id),
                              qc.customer_tickets(db, customer_id))
    accounts = html.Div([
        create_section("Subscriptions", _grid_or_empty("cu-subs", SUB_COLUMNS, subs, row_id="subscription_id",
                                                       file_name=f"subscriptions_{customer_id}.csv",
                                                       empty="No subscriptions.", height=200)),
        create_section("Promotions", _grid_or_empty("cu-promos", PROMO_COLUMNS, promos, row_id="promotion_id",
                                                    file_name=f"promotions_{customer_id}.csv",
                                                    empty="No promotions on their subscriptions.", height=200),
                       description="In force, upcoming and ended, on the data's as-of date."),
        dmc.SimpleGrid([
            create_section("Bills", _grid_or_empty("cu-bills", BILL_COLUMNS, bills, row_id="bill_id",
                                                   file_name=f"bills_{customer_id}.csv",
                                                   empty="No postpaid bills.")),
            create_section("Top-ups", _grid_or_empty("cu-topups", TOPUP_COLUMNS, topups, row_id="topup_id",
                                                     file_name=f"topups_{customer_id}.csv",
                                                     empty="No prepaid top-ups in the loaded data.")),
        ], cols=2, spacing="md"),
        create_section("Tickets", _grid_or_empty("cu-tickets", TICKET_COLUMNS, tickets, row_id="ticket_id",
                                                 file_name=f"tickets_{customer_id}.csv",
                                                 empty="No trouble tickets in the loaded data.")),
    ])
    return title, asof, notices, create_profile(profile, cfg.currency), accounts, create_models(
        qc.model_outputs(db, customer_id), profile)


def _pick(row: dict, *names: str):
    for n in names:
        if row.get(n) is not None:
            return row[n]
    return None


def create_models(outputs: dict, profile: dict) -> html.Section:
    """Churn risk with its reasons and the experience index, or a plain sentence when not published."""
    churn, experience = outputs.get("churn"), outputs.get("experience")
    parts = []
    if churn is None:
        parts.append(dmc.Text("Churn scores are not published yet (the churn model writes models.churn_scores "
                              "when it is trained: `opencem train`).", size="sm", id="cu-churn-missing"))
    elif not churn:
        parts.append(dmc.Text("The churn model scored no row for this customer (not active when it ran).",
                              size="sm", id="cu-churn-missing"))
    else:
        p = _pick(churn, "probability", "churn_probability", "score")
        band = _pick(churn, "risk_band", "band", "risk")
        # models.churn_scores carries the reasons as sentences (`top_reasons`, strongest first).
        flat = [str(r) for r in (churn.get("top_reasons") or []) if r]
        version = _pick(churn, "model_version", "version")
        parts.append(dmc.Group([
            dmc.Badge(f"churn risk {band or '-'}", color="red" if str(band).lower() == "high" else "orange"
                      if str(band).lower() == "medium" else "teal", variant="filled"),
            dmc.Text(f"{p:.0%} probability of leaving within the model's horizon" if isinstance(p, float)
                     else "no probability", size="sm"),
            dmc.Text(f"model {version}" if version else "", size="xs", c="dimmed"),
        ], gap="xs", id="cu-churn"))
        if flat:
            parts.append(dmc.List([dmc.ListItem(r) for r in flat[:5]], size="sm"))
    if experience is None:
        parts.append(dmc.Text("The experience index per customer is not published yet (models.experience_customer); "
                              "below, the network KPIs their own usage met over the loaded data.", size="sm",
                              id="cu-experience-missing"))
    elif experience:
        value = _pick(experience, "experience_index", "index", "score")
        parts.append(dmc.Text(f"Experience index {value:.0f} / 100" if isinstance(value, float | int)
                              else "Experience index: no value", fw=600, id="cu-experience"))
    lived = [(KPIS[k].label, profile.get(f"exp_{k}"), KPIS[k]) for k in
             ("availability_pct", "accessibility_pct", "drop_rate_pct", "dl_throughput_mbps", "latency_ms")]
    parts.append(dmc.Text("What their usage met (usage-weighted over the loaded data): " + ", ".join(
        f"{label} {v:{k.fmt}} {k.unit}" for label, v, k in lived if v is not None) or "no KPI on their usage",
        size="sm"))
    return create_section("Experience and churn risk", dmc.Stack(parts, gap=6))


@callback(
    Output("cu-care", "children"),
    Output("cu-cells", "children"),
    Input("cu-id", "data"),
)
def load_network(customer_id):
    """The care answer and the cells and zones where the customer's usage happens."""
    if not customer_id:
        raise PreventUpdate
    viewer = _viewer_or_stop()
    db, cfg = reader(), settings()
    try:
        now = qc.data_now(db)
    except NoWarehouse:
        return None, None
    _audit_open(viewer, customer_id, "network")
    if now is None:
        return create_empty_state("No usage, KPIs or alarms are loaded, so there is no network to check."), None
    view = qc.network_view(db, customer_id, now)
    facts = qc.care_facts(db, customer_id, view, cfg.kpi_thresholds)
    answer = qc.care_answer(facts)
    if view.cells.height == 0:
        return create_care_card(answer), create_empty_state("None of their usage was on our cells.")
    flagged = sorted(qc.problem_cells(facts))
    zone_ids = sorted({z for z in view.cells["zone_id"].to_list() if z})
    geo = {"type": "FeatureCollection",
           "features": [f for f in qc.zone_outlines(db)["features"] if f["id"] in zone_ids]}
    home = qc.customer_home(db, customer_id, viewer=viewer)
    cells = view.cells.with_columns(share=pl.when(pl.col("share_recent") > 0).then(pl.col("share_recent"))
                                    .otherwise(pl.col("share_of_events")))
    cell_map = create_graph("cu-map", figs.cells_map(cells, geo, home=home, flagged=flagged, tile_url=cfg.tile_url))
    grid = create_grid("cu-cells-grid", CELL_COLUMNS, _rows(view.cells.select([c for c, _, _ in CELL_COLUMNS])),
                       file_name=f"cells_{customer_id}.csv", row_id="cell_id", height=300)
    return create_care_card(answer), dmc.SimpleGrid([cell_map, grid], cols=2, spacing="sm")


@callback(
    Output("cu-timeline", "figure"),
    Input("cu-kpi", "value"),
    Input("cu-id", "data"),
)
def load_timeline(kpi_name, customer_id):
    """The customer's hourly usage beside the chosen KPI of their cells, with alarms marked."""
    if not customer_id or kpi_name not in TIMELINE_KPIS:
        raise PreventUpdate
    viewer = _viewer_or_stop()
    db, cfg = reader(), settings()
    try:
        now = qc.data_now(db)
    except NoWarehouse:
        return {}
    if now is None:
        return {}
    _audit_open(viewer, customer_id, "timeline", kpi=kpi_name)
    view = qc.network_view(db, customer_id, now)
    usage = qc.usage_by_hour(view.hours, view.timeline_start, now)
    return figs.experience_timeline(usage, view.kpis, view.alarms, kpi=KPIS[kpi_name],
                                    threshold=cfg.kpi_thresholds.get(kpi_name), start=view.timeline_start,
                                    end=now, cells=view.shown[:qc.TIMELINE_CELLS + 2], since=view.since)


@callback(
    Output("cu-usage", "children"),
    Input("cu-id", "data"),
)
def load_usage(customer_id):
    """Usage and charges per day and service over the loaded window."""
    if not customer_id:
        raise PreventUpdate
    viewer = _viewer_or_stop()
    db, cfg = reader(), settings()
    try:
        daily = qc.customer_usage_daily(db, customer_id)
    except NoWarehouse:
        return None
    _audit_open(viewer, customer_id, "usage")
    if daily.height == 0:
        return create_empty_state("No rated usage in the loaded data.")
    totals = daily.group_by("service").agg(pl.col("amount").sum(), pl.col("n_events").sum()).sort("service")
    text = ", ".join(f"{r['service']}: {r['n_events']:,} events, {r['amount']:,.2f} {cfg.currency}"
                     for r in totals.iter_rows(named=True))
    return html.Div([dmc.Text(f"Over the loaded data ({dt.date.isoformat(daily['day'].min())} to "
                              f"{dt.date.isoformat(daily['day'].max())}): {text}.", size="sm"),
                     create_graph("cu-usage-chart", figs.usage_by_service(daily, currency=cfg.currency))])
