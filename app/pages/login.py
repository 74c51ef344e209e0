"""Sign in `/login`: a plain form posted to the server (`/auth/login`), which checks the password against
the users file and sets a signed session cookie. Open to everyone; it shows no data."""

from __future__ import annotations

import dash
import dash_mantine_components as dmc
from dash import dcc, html

from app.auth import LOGIN_POST, auth_state, current_viewer, landing_path
from app.components import SUBMIT_BUTTON

dash.register_page(__name__, path="/login", name="Sign in", title="opencem: sign in", nav=False)

ERRORS = {
    "invalid": "The user name or password is not right.",
    "throttled": "Too many failed attempts for this user name: wait 15 minutes and try again.",
}


def layout(next: str | None = None, error: str | None = None, **kwargs) -> dmc.Center:
    state = auth_state()
    viewer = current_viewer()
    children: list = [dmc.Title("Sign in to opencem", order=2)]
    if state is not None and state.dev_mode:
        children.append(dmc.Alert("Development mode: there is no login here; every page is open.",
                                  color="orange", variant="light"))
        children.append(dmc.Anchor("Go to the app", href=landing_path(viewer)))
        return dmc.Center(dmc.Paper(dmc.Stack(children, gap="sm"), p="lg", withBorder=True, w=420), mt=40)
    if viewer is not None:
        children += [dmc.Text(f"You are signed in as {viewer.name} ({viewer.role_label})."),
                     dmc.Anchor("Continue", href=landing_path(viewer))]
        return dmc.Center(dmc.Paper(dmc.Stack(children, gap="sm"), p="lg", withBorder=True, w=420), mt=40)
    if state is not None and state.users.error:
        children.append(dmc.Alert(state.users.error, title="The users file cannot be used", color="red"))
    elif state is not None and not state.users.users():
        children.append(dmc.Alert(
            f"No users are set up yet. Add one on the server with `opencem user add NAME --role ROLE` "
            f"(users file {state.settings.users_path}), or run the app in development mode "
            "(OPENCEM_DEV_MODE=1) on synthetic data.", title="No users", color="yellow"))
    if error in ERRORS:
        children.append(dmc.Alert(ERRORS[error], color="red", variant="light", id="login-error"))
    children.append(html.Form(
        dmc.Stack([
            dmc.TextInput(label="User name", name="username", id="login-username", required=True,
                          autoComplete="username"),
            dmc.PasswordInput(label="Password", name="password", id="login-password", required=True,
                              autoComplete="current-password"),
            dcc.Input(type="hidden", name="next", value=next or "", id="login-next"),
            html.Button("Sign in", type="submit", id="login-submit", style=SUBMIT_BUTTON),
        ], gap="sm"),
        action=LOGIN_POST, method="post", id="login-form",
    ))
    return dmc.Center(dmc.Paper(dmc.Stack(children, gap="sm"), p="lg", withBorder=True, w=420), mt=40)
