"""The page for a path that names no view."""

from __future__ import annotations

import dash
import dash_mantine_components as dmc

dash.register_page(__name__, path="/404", name="Not found", nav=False)


def layout(**kwargs) -> dmc.Stack:
    return dmc.Stack([
        dmc.Title("No such page", order=2),
        dmc.Text("The address names no view of opencem."),
        dmc.Anchor("Go to the overview", href="/"),
    ])
