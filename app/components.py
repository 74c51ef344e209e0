"""Small layout factories shared by the pages (`create_*`): header, cards, empty states, trust notes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

import dash
import dash_ag_grid as dag
import dash_mantine_components as dmc
import polars as pl
from dash import MATCH, Input, Output, State, callback, dcc, html
from dash.exceptions import PreventUpdate

from app.constants import APP_TITLE

#: A form's submit button drawn as a link (the header's sign-out).
LINK_BUTTON = {"background": "none", "border": "none", "padding": "2px 4px", "color": "#4263eb", "cursor": "pointer",
               "font": "inherit", "fontSize": "14px"}
#: A form's submit button drawn like Mantine's filled button (plain HTML: it must submit the form natively).
SUBMIT_BUTTON = {"background": "#4c6ef5", "color": "white", "border": "none", "borderRadius": "4px",
                 "padding": "8px 16px", "fontWeight": 600, "cursor": "pointer", "font": "inherit"}


def create_header(*, user: str | None = None, role_label: str | None = None,
                  may_open: Callable[[dict], bool] | None = None, dev_mode: bool = False) -> dmc.Group:
    """The top bar: the product name, one link per page that asks to be in the navigation and that the
    viewer may open (`may_open(page)`), and who is signed in with their roles and a sign-out button."""
    links = [
        dmc.Anchor(page["name"], href=page["relative_path"], underline="never", c="dark", fw=500)
        for page in dash.page_registry.values()
        if page.get("nav", True) and page.get("path_template") is None and (may_open is None or may_open(page))
    ]
    who = []
    if dev_mode:
        who.append(dmc.Badge("development mode", color="orange", variant="filled", id="header-dev-badge"))
    elif user:
        who += [
            dmc.Text(user, size="sm", fw=600, id="header-user"),
            dmc.Badge(role_label or "no role", color="indigo", variant="light", id="header-roles"),
            html.Form(html.Button("Sign out", type="submit", id="header-logout", style=LINK_BUTTON),
                      action="/auth/logout", method="post", style={"margin": 0}),
        ]
    return dmc.Group(
        [
            dmc.Group([dmc.Text(APP_TITLE, fw=700, size="xl", c="indigo"),
                       dmc.Text("customer experience analytics", size="sm", c="dimmed")], gap="xs"),
            dmc.Group([dmc.Group(links, gap="lg"), dmc.Group(who, gap="xs")], gap="xl"),
        ],
        justify="space-between", h="100%",
    )


def create_dev_banner(role_label: str) -> dmc.Alert:
    """The banner every page carries in development mode: there is no login and what that means."""
    return dmc.Alert(
        f"Development mode: there is no login, and every visitor acts as {role_label}, personal data "
        "included. Use it only on synthetic data on your own machine; set up users with `opencem user add` "
        "and serve without OPENCEM_DEV_MODE for anything else.",
        title="Development mode, no login", color="orange", variant="filled", id="dev-mode-banner", py=6,
        mb="sm",
    )


def create_refusal(page_name: str, *, roles: Sequence[str] = (), viewer_roles: str | None = None,
                   home: str | None = None, sign_in: str | None = None) -> dmc.Alert:
    """What a page shows, instead of itself, to a viewer whose roles may not see it (or who is not signed in)."""
    if sign_in:
        body = [dmc.Text(f"Sign in to open {page_name}."), dmc.Anchor("Sign in", href=sign_in)]
    else:
        body = [dmc.Text(f"{page_name} is for: {', '.join(roles) or 'no role'}. Your roles ({viewer_roles or 'none'}) "
                         "may not open it; ask an administrator if you need it.")]
        if home:
            body.append(dmc.Anchor("Go to a page you may open", href=home))
    return dmc.Alert(dmc.Stack(body, gap=4), title="Not allowed", color="red", variant="light",
                     id="access-refused")


def create_empty_state(sentence: str, *, title: str = "Nothing to show") -> dmc.Alert:
    """What a view shows instead of a blank chart: a title and a sentence that says why."""
    return dmc.Alert(sentence, title=title, color="gray", variant="light")


def create_notice(sentence: str, *, color: str = "yellow", title: str | None = None) -> dmc.Alert:
    return dmc.Alert(sentence, title=title, color=color, variant="light", py=6)


def create_stat_card(label: str, value: str, *, delta: str | None = None, delta_good: bool | None = None,
                     note: str | None = None, card_id: str | None = None) -> dmc.Paper:
    """A headline figure with its change against the previous period (green when the change is good)."""
    color = "dimmed" if delta_good is None else ("teal" if delta_good else "red")
    children = [dmc.Text(label, size="sm", c="dimmed"), dmc.Text(value, fw=700, size="xl")]
    if delta:
        children.append(dmc.Text(delta, size="sm", c=color))
    if note:
        children.append(dmc.Text(note, size="xs", c="dimmed"))
    kwargs = {"id": card_id} if card_id else {}
    return dmc.Paper(dmc.Stack(children, gap=2), withBorder=True, p="sm", radius="md", **kwargs)


def create_asof(as_of: datetime | str | None, version: str | None, *, missing: Sequence[str] = ()) -> dmc.Group:
    """The data's as-of time (UTC) and version, and the sources that are not loaded (never shown as zero)."""
    if isinstance(as_of, datetime):
        as_of = f"{as_of:%Y-%m-%d %H:%M} UTC"
    items = [dmc.Badge(f"data as of {as_of or 'unknown'}", color="indigo", variant="light"),
             dmc.Text(f"warehouse {version or '-'}", size="xs", c="dimmed")]
    if missing:
        items.append(dmc.Badge(f"not loaded: {', '.join(missing)}", color="orange", variant="light"))
    return dmc.Group(items, gap="sm")


def create_graph(graph_id: str | dict, figure=None, *, height: int | None = None) -> dcc.Graph:
    style = {"height": f"{height}px"} if height else None
    return dcc.Graph(id=graph_id, figure=figure or {}, config={"displaylogo": False, "scrollZoom": True},
                     style=style)


def create_section(title: str, *children, description: str | None = None) -> html.Section:
    head = [dmc.Title(title, order=4)]
    if description:
        head.append(dmc.Text(description, size="sm", c="dimmed"))
    return html.Section(dmc.Stack([*head, *children], gap="xs"), style={"marginTop": "18px"})


def _fmt(spec: str | None) -> dict | None:
    if spec is None:
        return None
    return {"function": f"params.value == null ? 'no data' : d3.format('{spec}')(params.value)"}


def create_grid(grid_id: str, columns: list[tuple[str, str, str | None]], rows: list[dict], *,
                file_name: str, row_id: str, flag_field: str | None = None, height: int = 360,
                row_class_rules: dict[str, str] | None = None, paginate: bool | None = None) -> html.Div:
    """A sortable, filterable grid (dash-ag-grid) with an export-to-CSV button above it.

    The export is written on the server (`export_grid_csv`) from the rows the grid shows, filters and sort
    applied, with every text cell that a spreadsheet would run as a formula neutralised
    (`queries_assurance.csv_safe`): the grid's own in-browser export writes such cells as they are.
    `flag_field` marks rows whose field is > 0; `row_class_rules` gives AG Grid rules of its own. Pages of
    20 rows when there are more (`paginate` decides for a grid whose rows come later).
    """
    defs = [{"field": f, "headerName": h, "valueFormatter": _fmt(spec), "filter": True, "sortable": True,
             "resizable": True, "minWidth": 90} for f, h, spec in columns]
    defs = [{k: v for k, v in d.items() if v is not None} for d in defs]
    rules = dict(row_class_rules or {})
    if flag_field:
        rules["opencem-row-flagged"] = f"params.data.{flag_field} > 0"
    grid_kwargs = {"rowClassRules": rules} if rules else {}
    return html.Div([
        dmc.Group([dmc.Button("Export CSV", id={"type": "export-csv-safe", "grid": grid_id}, size="xs",
                              variant="light")], justify="flex-end"),
        dcc.Download(id={"type": "download-csv", "grid": grid_id}),
        dag.AgGrid(
            id={"type": "grid", "grid": grid_id}, rowData=rows, columnDefs=defs, getRowId=f"params.data.{row_id}",
            defaultColDef={"flex": 1}, csvExportParams={"fileName": file_name},
            dashGridOptions={"pagination": len(rows) > 20 if paginate is None else paginate,
                             "paginationPageSize": 20},
            style={"height": f"{height}px"}, **grid_kwargs,
        ),
    ])


def grid_csv(rows: list[dict], column_defs: list[dict]) -> str:
    """The rows of a grid as CSV text: one column per column definition (its header as the title), numbers
    kept as numbers, text that a spreadsheet would run as a formula (=, +, -, @ ...) neutralised."""
    from app.queries_assurance import to_safe_csv

    columns = {}
    for d in column_defs:
        field = d.get("field")
        if not field:
            continue
        values = [r.get(field) if isinstance(r, dict) else None for r in rows]
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
            columns[d.get("headerName") or field] = pl.Series(values, dtype=pl.Int64)
        elif present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            columns[d.get("headerName") or field] = pl.Series([None if v is None else float(v) for v in values],
                                                              dtype=pl.Float64)
        else:  # text (or mixed): as text, so that the neutralisation applies to every value
            columns[d.get("headerName") or field] = pl.Series(
                [None if v is None else str(v) for v in values], dtype=pl.String)
    return to_safe_csv(pl.DataFrame(columns))


@callback(
    Output({"type": "download-csv", "grid": MATCH}, "data"),
    Input({"type": "export-csv-safe", "grid": MATCH}, "n_clicks"),
    State({"type": "grid", "grid": MATCH}, "virtualRowData"),
    State({"type": "grid", "grid": MATCH}, "rowData"),
    State({"type": "grid", "grid": MATCH}, "columnDefs"),
    State({"type": "grid", "grid": MATCH}, "csvExportParams"),
    prevent_initial_call=True,
)
def export_grid_csv(n_clicks: int | None, shown: list[dict] | None, rows: list[dict] | None,
                    column_defs: list[dict] | None, params: dict | None) -> dict:
    """The grid's rows as shown (filters and sort applied) as a CSV download, written on the server so that
    formula-like text is neutralised."""
    if not n_clicks or not column_defs:
        raise PreventUpdate
    name = str((params or {}).get("fileName") or "export.csv")
    return {"content": grid_csv(shown if shown is not None else rows or [], column_defs), "filename": name,
            "type": "text/csv"}


@callback(
    Output({"type": "grid", "grid": MATCH}, "exportDataAsCsv"),
    Input({"type": "export-csv", "grid": MATCH}, "n_clicks"),
    prevent_initial_call=True,
)
def export_csv(n_clicks: int | None) -> bool:
    """The grid's own CSV export of what it shows (for grids built outside `create_grid`)."""
    return bool(n_clicks)


def grid_rows(df: pl.DataFrame, columns: list[tuple[str, str, str | None]], *, extra: tuple[str, ...] = ()
              ) -> list[dict]:
    """The rows a grid needs: only its columns (and `extra` fields its rules read), floats rounded to one
    decimal more than the column shows, so the JSON sent stays short."""
    from app.figures import decimals

    keep = [c for c, _, _ in columns if c in df.columns] + [c for c in extra if c in df.columns]
    spec = {c: s for c, _, s in columns}
    return df.select(
        pl.col(c).fill_nan(None).round(decimals(spec.get(c))) if df.schema[c].is_float() else pl.col(c)
        for c in keep
    ).to_dicts()
