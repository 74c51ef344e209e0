"""Find a customer `/customers`: by customer id, by phone number in any notation (national, with the
country code, with spaces or dashes), or by name. Roles that see personal data masked may search by
customer id only. The search text never goes into the URL (a number or a name is personal data)."""

from __future__ import annotations

import dash
import dash_mantine_components as dmc
from dash import Input, Output, callback, dcc, html
from dash.exceptions import PreventUpdate

from app import queries_customer as qc
from app.auth import audit, current_viewer
from app.components import create_empty_state
from app.context import reader
from app.pages.customer import ROLES
from app.warehouse import NoWarehouse

dash.register_page(__name__, path="/customers", name="Customers", title="opencem: find a customer", order=2,
                   roles=ROLES)


def layout(**kwargs) -> html.Div:
    viewer = current_viewer()
    hint = ("Customer id, phone number (any notation) or name" if viewer and viewer.sees_personal_data
            else "Customer id (your roles see personal data masked)")
    return html.Div([
        dmc.Title("Find a customer", order=2),
        dmc.TextInput(id="cs-query", placeholder=hint, w=460, debounce=300, mt="sm",
                      leftSection=html.Span("Search", style={"fontSize": "11px", "color": "#868e96"}),
                      leftSectionWidth=58),
        dcc.Loading(html.Div(id="cs-results", style={"marginTop": "12px"}), type="dot"),
    ])


def create_results(result: qc.SearchResult) -> list:
    """The matches as a table whose customer ids link to their page."""
    out: list = []
    if result.note:
        out.append(dmc.Text(result.note, size="sm", c="dimmed", id="cs-note"))
    if result.rows.height == 0:
        if result.query.kind not in ("empty", "too_short") and not result.note:
            out.append(create_empty_state(f"No customer matches {result.query.text!r}.", title="No match"))
        return out
    kind = {"customer_id": "customer id", "msisdn": "phone number", "name": "name"}[result.query.kind]
    out.append(dmc.Text(f"{result.total:,} customer{'s' if result.total != 1 else ''} by {kind}", size="sm"))
    head = html.Thead(html.Tr([html.Th(h) for h in ("Customer", "Name", "Numbers", "Segment", "Status",
                                                     "Home zone", "Active lines")]))
    body = html.Tbody([
        html.Tr([
            html.Td(dcc.Link(r["customer_id"], href=f"/customer/{r['customer_id']}", className="cs-link")),
            html.Td(r["name"]), html.Td(r["msisdns"]), html.Td(r["segment"]), html.Td(r["customer_status"]),
            html.Td(f"{r['zone_name'] or '-'} ({r['home_zone_id'] or '-'})"), html.Td(r["n_active_subscriptions"]),
        ])
        for r in result.rows.iter_rows(named=True)
    ])
    out.append(dmc.Table([head, body], striped=True, highlightOnHover=True, id="cs-table"))
    return out


@callback(Output("cs-results", "children"), Input("cs-query", "value"))
def search(text):
    if text is None:
        raise PreventUpdate
    viewer = current_viewer()
    if viewer is None:
        raise PreventUpdate
    try:
        result = qc.search_customers(reader(), text, viewer=viewer)
    except NoWarehouse as exc:
        return create_empty_state(str(exc), title="No warehouse yet")
    if result.query.kind not in ("empty", "too_short"):
        audit("search", kind=result.query.kind, query=text[:100], n_results=result.total,
              customer_ids=result.rows["customer_id"].head(10).to_list())
    return create_results(result)
