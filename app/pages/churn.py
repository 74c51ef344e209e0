"""Churn `/churn` for marketing: the risk distribution, the customers at risk with their revenue and reasons
(exportable), the main drivers, revenue at risk by zone on the map, and the model's quality on held-out
data. Everything comes from the `models.*` tables `opencem train` publishes; filters live in the URL."""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
import polars as pl
from dash import Input, Output, callback, clientside_callback, html
from dash.exceptions import PreventUpdate

from app import figures, figures_churn, queries, queries_churn
from app.components import (
    create_asof,
    create_empty_state,
    create_graph,
    create_notice,
    create_section,
    create_stat_card,
)
from app.context import reader, settings
from app.warehouse import NoWarehouse

dash.register_page(__name__, path="/churn", name="Churn", title="opencem: churn risk", order=3,
                   roles=("marketing", "executive", "care"))

BANDS = {"all": "All customers", "high": "High risk", "medium": "Medium risk", "low": "Low risk"}
MAP_VALUES = {
    "revenue_at_risk": ("Expected revenue at risk per month", "Reds"),
    "high_risk": ("Customers at high risk", "Oranges"),
    "experience_index": ("Experience index (0-100)", "RdYlGn"),
}
GRID_ID = "churn-grid"


def _clean(kwargs: dict) -> dict[str, str]:
    band = kwargs.get("band") if kwargs.get("band") in BANDS else "high"
    seg = kwargs.get("segment") or "all"
    pay = kwargs.get("payment") or "all"
    view = kwargs.get("map") if kwargs.get("map") in MAP_VALUES else "revenue_at_risk"
    return {"band": band, "segment": seg, "payment": pay, "map": view}


def layout(**kwargs) -> html.Div:
    v = _clean(kwargs)
    return html.Div([
        dmc.Group([dmc.Title("Churn risk", order=2), html.Div(id="churn-asof")], justify="space-between"),
        dmc.Group([
            dmc.SegmentedControl(id="churn-band", value=v["band"],
                                 data=[{"value": k, "label": lbl} for k, lbl in BANDS.items()]),
            dmc.Select(id="churn-segment", value=v["segment"], w=170, allowDeselect=False,
                       data=[{"value": v["segment"], "label": v["segment"]}]),
            dmc.Select(id="churn-payment", value=v["payment"], w=170, allowDeselect=False,
                       data=[{"value": v["payment"], "label": v["payment"]}]),
        ], gap="sm", mt="xs"),
        html.Div(id="churn-notices", style={"marginTop": "8px"}),
        dmc.SimpleGrid(id="churn-cards", cols=4, spacing="sm", mt="sm"),
        dmc.SimpleGrid([
            create_section("Risk distribution", create_graph("churn-histogram"),
                           description="Customers by their probability of churning within 30 days."),
            create_section("Main drivers", create_graph("churn-drivers"),
                           description="How much each raises the customers' risk above a typical customer's, "
                                       "on average (from the model); blue: BSS, green: network (OSS)."),
        ], cols=2, spacing="lg"),
        create_section("Customers at risk", html.Div(id="churn-grid-box"),
                       description="Highest probability first, with their monthly revenue and the reasons the "
                                   "model gives; export what the grid shows to CSV."),
        create_section(
            "Revenue at risk by zone",
            dmc.SegmentedControl(id="churn-map-value", value=v["map"],
                                 data=[{"value": k, "label": lbl} for k, (lbl, _) in MAP_VALUES.items()]),
            html.Div(id="churn-map-box"),
            html.Div(id="churn-formula"),
            description="Where the customers live; expected revenue at risk = probability x monthly revenue.",
        ),
        create_section("Model quality on held-out data", html.Div(id="churn-quality")),
        html.Div(id="churn-url-sync", hidden=True),
    ])


clientside_callback(
    """
    function (band, segment, payment, view) {
      const params = new URLSearchParams(window.location.search);
      const values = {band: band, segment: segment, payment: payment, map: view};
      Object.keys(values).forEach(function (k) { if (values[k]) { params.set(k, values[k]); } });
      const url = window.location.pathname + "?" + params.toString();
      if (url !== window.location.pathname + window.location.search) {
        window.history.replaceState(window.history.state, "", url);
      }
      return window.dash_clientside.no_update;
    }
    """,
    Output("churn-url-sync", "children"),
    Input("churn-band", "value"),
    Input("churn-segment", "value"),
    Input("churn-payment", "value"),
    Input("churn-map-value", "value"),
)


def _opt(value: str | None) -> str | None:
    return None if value in (None, "", "all") else value


def _pct(x: float | None, spec: str = ".1%") -> str:
    return "-" if x is None else format(x, spec)


def create_header(db, run: dict, end) -> tuple:
    """As-of badges, and the notices that keep the page honest: stale scores, missing data, warnings."""
    fresh = queries.freshness(db)
    as_of = fresh["as_of"].max() if fresh.height else None
    missing = fresh.filter(~pl.col("is_loaded"))["source"].to_list() if fresh.height else []
    badges = dmc.Group([
        create_asof(f"{as_of:%Y-%m-%d %H:%M} UTC" if as_of else None, db.version.name, missing=missing),
        dmc.Badge(f"model {run['model_version']}, trained {run['trained_at']:%Y-%m-%d %H:%M} UTC", color="grape",
                  variant="light", id="churn-model-badge"),
    ], gap="xs")
    notices = []
    if end is not None and run.get("data_as_of") is not None and run["data_as_of"] < end:
        notices.append(create_notice(
            f"These scores use data up to {run['data_as_of']:%Y-%m-%d}, and the warehouse now holds data up to "
            f"{end:%Y-%m-%d}: run `opencem train` to score the customers on the newer data.",
            color="orange", title="Scores are older than the data"))
    if run.get("missing_groups"):
        notices.append(create_notice(
            "The model was trained without these feature groups, whose sources were not loaded: "
            + ", ".join(run["missing_groups"]) + ".", title="Partial data"))
    for w in run.get("warnings") or []:
        notices.append(create_notice(w, color="red", title="Training warning"))
    return badges, notices


def create_cards(summary: dict, overall: dict, baseline: dict, currency: str) -> list:
    n = summary.get("customers") or 0
    high = summary.get("high") or 0
    return [
        create_stat_card("Customers scored", f"{n:,}",
                         note=f"mean probability {_pct(summary.get('mean_probability'), '.2%')} over 30 days"),
        create_stat_card("At high risk", f"{high:,}", card_id="churn-card-high",
                         note=f"{high / n:.1%} of customers, {summary.get('high_revenue') or 0:,.0f} {currency} "
                              "monthly revenue" if n else None),
        create_stat_card("Expected revenue at risk", f"{summary.get('revenue_at_risk') or 0:,.0f} {currency}",
                         note=f"per month, of {summary.get('revenue') or 0:,.0f} {currency}"),
        create_stat_card("Held-out ROC AUC", _pct(overall.get("roc_auc"), ".3f"), card_id="churn-card-auc",
                         note=f"logistic baseline {_pct(baseline.get('roc_auc'), '.3f')}; top-decile lift "
                              f"{_pct(overall.get('lift_top_decile'), '.2f')}"),
    ]


GRID_COLUMNS = [
    {"field": "risk_rank", "headerName": "#", "width": 70},
    {"field": "customer_id", "headerName": "customer_id", "hide": True},  # plain id for the CSV
    {"field": "customer", "headerName": "Customer", "cellRenderer": "markdown", "width": 120},
    {"field": "probability", "headerName": "30-day risk", "width": 110,
     "valueFormatter": {"function": "d3.format('.1%')(params.value)"}},
    {"field": "risk_band", "headerName": "Band", "width": 90},
    {"field": "reasons_text", "headerName": "Top reasons", "flex": 1, "minWidth": 380, "wrapText": True,
     "autoHeight": True, "cellStyle": {"lineHeight": "1.4", "paddingTop": "6px", "paddingBottom": "6px"}},
    {"field": "monthly_revenue", "headerName": "Revenue / month", "width": 135,
     "valueFormatter": {"function": "params.value == null ? '-' : d3.format(',.2f')(params.value)"}},
    {"field": "expected_revenue_at_risk", "headerName": "At risk / month", "width": 130,
     "valueFormatter": {"function": "params.value == null ? '-' : d3.format(',.2f')(params.value)"}},
    {"field": "experience_index", "headerName": "Experience", "width": 115,
     "valueFormatter": {"function": "params.value == null ? 'no KPIs' : d3.format('.0f')(params.value)"}},
    {"field": "segment", "headerName": "Segment", "width": 110},
    {"field": "payment_type", "headerName": "Payment", "width": 105},
    {"field": "main_product_offering", "headerName": "Tariff", "width": 150},
]


def create_risk_grid(df: pl.DataFrame, *, file_name: str) -> html.Div:
    """The at-risk customers with a link to each customer's page, and a CSV export of what is shown."""
    rows = df.with_columns(
        pl.format("[{}](/customer/{})", pl.col("customer_id"), pl.col("customer_id")).alias("customer")
    ).to_dicts()
    return html.Div([
        dmc.Group([
            dmc.Text(f"{df.height:,} customers" + (" (the first 2,000)" if df.height >= queries_churn.MAX_GRID_ROWS
                                                  else ""), size="sm", c="dimmed"),
            dmc.Button("Export CSV", id={"type": "export-csv", "grid": GRID_ID}, size="xs", variant="light"),
        ], justify="space-between"),
        dag.AgGrid(
            id={"type": "grid", "grid": GRID_ID}, rowData=rows, columnDefs=GRID_COLUMNS,
            getRowId="params.data.customer_id",
            defaultColDef={"sortable": True, "filter": True, "resizable": True},
            csvExportParams={"fileName": file_name,
                             "columnKeys": ["risk_rank", "customer_id", "probability", "risk_band",
                                            "monthly_revenue", "expected_revenue_at_risk", "experience_index",
                                            "segment", "payment_type", "main_product_offering", "reasons_text"]},
            dashGridOptions={"pagination": True, "paginationPageSize": 20},
            style={"height": "560px"},
        ),
    ])


def create_quality(db, run: dict, metrics: pl.DataFrame, curves: pl.DataFrame) -> html.Div:
    overall = metrics.filter(pl.col("slice") == "overall")
    by_model = {r["model"]: r for r in overall.to_dicts()}
    aucs = {k: v.get("roc_auc") for k, v in by_model.items()}
    aps = {k: v.get("pr_auc") for k, v in by_model.items()}
    base = (by_model.get("gbm") or {}).get("base_rate")
    graphs = dmc.SimpleGrid([
        create_graph("churn-roc", figures_churn.roc_figure(curves, aucs)),
        create_graph("churn-pr", figures_churn.pr_figure(curves, aps, base_rate=base)),
        create_graph("churn-lift", figures_churn.lift_figure(curves)),
        create_graph("churn-reliability", figures_churn.reliability_figure(curves)),
    ], cols=2, spacing="sm")
    head = dmc.TableThead(dmc.TableTr([dmc.TableTh(h) for h in (
        "Model", "Slice", "Rows", "Churners", "ROC AUC", "PR AUC", "Top-decile recall", "Top-decile lift",
        "Brier")]))
    body = []
    labels = {"gbm": "gradient boosting", "logistic": "logistic baseline"}
    for r in metrics.to_dicts():
        body.append(dmc.TableTr([
            dmc.TableTd(labels.get(r["model"], r["model"])),
            dmc.TableTd("overall" if r["slice"] == "overall" else f"{r['slice']}: {r['value']}"),
            dmc.TableTd(f"{r['n']:,}"), dmc.TableTd(f"{r['n_positive']:,}"),
            dmc.TableTd(_pct(r.get("roc_auc"), ".3f")), dmc.TableTd(_pct(r.get("pr_auc"), ".3f")),
            dmc.TableTd(_pct(r.get("recall_top_decile"))), dmc.TableTd(_pct(r.get("lift_top_decile"), ".2f")),
            dmc.TableTd(_pct(r.get("brier"), ".4f")),
        ]))
    table = dmc.Table([head, dmc.TableTbody(body)], striped=True, highlightOnHover=True, id="churn-metrics")
    notes = [dmc.Text(f"Evaluation: {run['split']}.", size="sm")]
    notes += [dmc.Text(n, size="sm", c="dimmed") for n in run.get("notes") or []]
    notes.append(dmc.Text(
        f"Risk bands: medium from {_pct(run.get('band_medium_from'), '.1%')}, high from "
        f"{_pct(run.get('band_high_from'), '.1%')} (1.5 and 3 times the expected churn rate). The model card "
        f"is in the warehouse folder: models/{run['model_version']}/model_card.md.", size="sm", c="dimmed"))
    return html.Div([dmc.Stack(notes, gap=2), graphs, table])


def _context():
    db = reader()
    try:
        db.version  # noqa: B018  (raises NoWarehouse when nothing is published)
    except NoWarehouse as exc:
        return None, None, create_empty_state(str(exc), title="No warehouse yet")
    run = queries_churn.latest_run(db)
    if run is None:
        return db, None, create_empty_state(
            "No churn model has been trained on this warehouse yet: run `opencem train` to score the customers.",
            title="No churn scores yet")
    return db, run, None


@callback(
    Output("churn-asof", "children"),
    Output("churn-notices", "children"),
    Output("churn-segment", "data"),
    Output("churn-payment", "data"),
    Output("churn-drivers", "figure"),
    Output("churn-quality", "children"),
    Input("churn-band", "id"),
)
def update_static(_):
    """The parts that do not depend on the filters: header, notices, filter choices, drivers, quality."""
    db, run, empty = _context()
    all_seg = [{"value": "all", "label": "All segments"}]
    all_pay = [{"value": "all", "label": "All payment types"}]
    if run is None:
        return None, empty, all_seg, all_pay, {}, None
    badges, notices = create_header(db, run, queries_churn.data_end(db))
    ch = queries_churn.choices(db)
    seg = all_seg + [{"value": s, "label": s} for s in ch["segment"]]
    pay = all_pay + [{"value": s, "label": s} for s in ch["payment_type"]]
    drv = queries_churn.drivers(db)
    quality = create_quality(db, run, queries_churn.metrics(db), queries_churn.curves(db))
    return badges, notices, seg, pay, (figures_churn.drivers_bar(drv) if drv.height else {}), quality


@callback(
    Output("churn-cards", "children"),
    Output("churn-histogram", "figure"),
    Output("churn-grid-box", "children"),
    Input("churn-band", "value"),
    Input("churn-segment", "value"),
    Input("churn-payment", "value"),
)
def update_customers(band, segment, payment):
    if not band or not segment or not payment:
        raise PreventUpdate
    db, run, empty = _context()
    if run is None:
        return [], {}, empty
    cfg = settings()
    seg, pay = _opt(segment), _opt(payment)
    summary = queries_churn.summary(db, segment=seg, payment_type=pay)
    overall = queries_churn.metrics(db).filter(pl.col("slice") == "overall")
    by_model = {r["model"]: r for r in overall.to_dicts()}
    cards = create_cards(summary, by_model.get("gbm", {}), by_model.get("logistic", {}),
                         run.get("currency") or cfg.currency)
    hist = queries_churn.risk_histogram(db, segment=seg, payment_type=pay)
    hist_fig = figures_churn.risk_histogram(hist, medium_from=run.get("band_medium_from"),
                                            high_from=run.get("band_high_from")) if hist.height else {}
    grid_rows = queries_churn.at_risk(db, band=_opt(band), segment=seg, payment_type=pay)
    grid = (create_risk_grid(grid_rows, file_name=f"churn_risk_{band}.csv") if grid_rows.height else
            create_empty_state("No customer matches these filters."))
    return cards, hist_fig, grid


@callback(
    Output("churn-map-box", "children"),
    Output("churn-formula", "children"),
    Input("churn-map-value", "value"),
)
def update_map(view):
    if view not in MAP_VALUES:
        raise PreventUpdate
    db, run, empty = _context()
    if run is None:
        return empty, None
    cfg = settings()
    geojson, bbox = queries.zones_geojson(db)
    zones = queries_churn.zone_risk(db)
    if bbox is None or zones.height == 0:
        box = create_empty_state("No zones are loaded, so there is no map to draw. Load a zones file.")
    else:
        title, scale = MAP_VALUES[view]
        currency = run.get("currency") or cfg.currency
        hover = [("revenue_at_risk", f"revenue at risk ({currency}/month)", ",.0f"),
                 ("high_risk", "customers at high risk", ",.0f"), ("customers", "customers scored", ",.0f"),
                 ("experience_index", "experience index", ".1f")]
        zones = zones.with_columns(pl.col(c).cast(pl.Float64) for c, _, _ in hover)
        fig = figures.zone_choropleth(zones, geojson, value=view, colorbar_title=title, colorscale=scale,
                                      bbox=bbox, hover_columns=hover, tile_url=cfg.tile_url)
        box = create_graph("churn-map", fig)
    formula = queries_churn.experience_formula(db)
    text = None
    if formula.height:
        f0 = formula.to_dicts()[0]
        text = dmc.Stack([dmc.Text(f0["formula"], size="sm", id="churn-formula-text"),
                          dmc.List([dmc.ListItem(r["description"]) for r in formula.to_dicts()], size="xs")],
                         gap=2)
    return box, text
