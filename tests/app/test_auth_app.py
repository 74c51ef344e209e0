"""The app's login, role gate and audit log through Flask's test client, on the sample warehouse.

The gate is tested where it acts: page loads, Dash's layout routing and `/_dash-update-component` posts
(what a browser, or anyone with curl, sends), not by looking at which links are drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.auth import MASK, User, hash_password, write_users
from etl.config import Settings

PASSWORDS = {"carla": "carla-care-password", "piet": "piet-planner-password", "erin": "erin-exec-password"}
ROLES = {"carla": ("care",), "piet": ("planner",), "erin": ("executive",)}
CUSTOMER = "CU0000001"
RECORD = ("..cu-title.children...cu-asof.children...cu-notices.children...cu-profile.children"
          "...cu-accounts.children...cu-models.children..")


@pytest.fixture(scope="module")
def auth_app(sample_warehouse: Path, tmp_path_factory: pytest.TempPathFactory):
    from app.main import create_app

    folder = tmp_path_factory.mktemp("auth_app")
    write_users(folder / "users.toml", {n: User(n, ROLES[n], hash_password(p)) for n, p in PASSWORDS.items()})
    settings = Settings(warehouse_dir=sample_warehouse, users_file=folder / "users.toml",
                        secret_key_file=folder / "secret_key", audit_log_file=folder / "audit.jsonl")
    app = create_app(settings)
    app.server.config["TESTING"] = True
    return app, folder


def _audit(folder: Path) -> list[dict]:
    path = folder / "audit.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def login(client, user: str, password: str | None = None, **form) -> object:
    return client.post("/auth/login", data={"username": user, "password": password or PASSWORDS[user], **form})


def post_callback(client, output: str, inputs: list[tuple[str, str, object]], state=()):
    """What the browser posts to run a server callback: `output` as Dash names it, inputs as (id, prop, value)."""
    outs = [dict(zip(("id", "property"), part.rsplit(".", 1))) for part in output.strip(".").split("...")]
    body = {"output": output, "outputs": outs if len(outs) > 1 else outs[0],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
            "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
            "changedPropIds": [f"{i}.{p}" for i, p, _ in inputs]}
    return client.post("/_dash-update-component", json=body)


def route(client, pathname: str):
    """Dash's page routing: the layout of `pathname` as the server renders it for this session."""
    return post_callback(client, ".._pages_content.children..._pages_store.data..",
                         [("_pages_location", "pathname", pathname), ("_pages_location", "search", "")])


def test_anonymous_visitors_are_sent_to_login_and_see_no_data(auth_app) -> None:
    app, _ = auth_app
    client = app.server.test_client()
    r = client.get(f"/customer/{CUSTOMER}")
    assert r.status_code == 302 and r.headers["Location"] == f"/login?next=%2Fcustomer%2F{CUSTOMER}"
    assert client.get("/").headers["Location"] == "/login"
    assert client.get("/login").status_code == 200
    assert post_callback(client, RECORD, [("cu-id", "data", CUSTOMER)]).status_code == 401
    page = route(client, f"/customer/{CUSTOMER}")
    assert page.status_code == 200 and "access-refused" in page.text and "Sign in" in page.text


def test_login_sets_a_session_and_follows_only_local_next_paths(auth_app) -> None:
    app, folder = auth_app
    client = app.server.test_client()
    bad = login(client, "carla", "not-her-password", next="/customers")
    assert bad.status_code == 303 and "error=invalid" in bad.headers["Location"]
    assert client.get("/customers").status_code == 302
    ok = login(client, "carla", next="//evil.example/steal")
    assert ok.status_code == 303 and ok.headers["Location"] == "/customers", "a foreign next must be ignored"
    assert client.get("/customers").status_code == 200
    search = route(client, "/customers")
    assert search.status_code == 200 and "cs-query" in search.text and "phone number" in search.text
    layout = client.get("/_dash-layout").json
    header = json.dumps(layout)
    assert '"carla"' in header and '"care agent"' in header, header[:3000]
    assert '"href": "/customers"' in header and '"href": "/"' not in header, "care sees no link to the overview"
    cross = app.server.test_client().post("/auth/login", headers={"Origin": "http://evil.example"},
                                          data={"username": "carla", "password": PASSWORDS["carla"]})
    assert cross.status_code == 403
    events = [e["event"] for e in _audit(folder)]
    assert "login_failed" in events and "login" in events


def test_a_role_is_refused_pages_and_callbacks_it_may_not_see(auth_app) -> None:
    app, folder = auth_app
    care, exe = app.server.test_client(), app.server.test_client()
    login(care, "carla")
    login(exe, "erin")
    refused = route(care, "/zone/Z001")
    assert "access-refused" in refused.text and "Zone is for: executive, planner, data steward" in refused.text
    assert "access-refused" in route(care, "/").text
    trend = post_callback(care, "zone-kpi-trend.figure",
                          [("zone-kpi", "value", "availability_pct"), ("zone-period", "value", "28")],
                          state=[("zone-id", "data", "Z001")])
    assert trend.status_code == 403
    assert "access-refused" in route(exe, f"/customer/{CUSTOMER}").text
    assert post_callback(exe, RECORD, [("cu-id", "data", CUSTOMER)]).status_code == 403
    assert "access-refused" not in route(exe, "/").text
    events = {(e["event"], e["user"]) for e in _audit(folder)}
    assert ("refused", "carla") in events and ("refused_callback", "erin") in events


def test_personal_data_is_masked_for_the_planner_and_shown_to_care(auth_app, sample_warehouse: Path) -> None:
    import duckdb

    con = duckdb.connect(str(next((sample_warehouse / "versions").glob("*.duckdb"))), read_only=True)
    name, msisdn, address = con.execute(
        "SELECT c.name, s.msisdn, c.address FROM staging.customers c JOIN staging.subscriptions s USING "
        "(customer_id) WHERE customer_id = ? LIMIT 1", [CUSTOMER]).fetchone()
    con.close()
    app, folder = auth_app
    care, planner = app.server.test_client(), app.server.test_client()
    login(care, "carla")
    login(planner, "piet")
    shown = post_callback(care, RECORD, [("cu-id", "data", CUSTOMER)])
    hidden = post_callback(planner, RECORD, [("cu-id", "data", CUSTOMER)])
    assert shown.status_code == hidden.status_code == 200
    for value in (name, msisdn, address):
        assert value in shown.text
        assert value not in hidden.text, f"{value!r} reached the planner"
    assert MASK in hidden.text and "Personal data masked" in hidden.text
    # The planner may search by customer id only; care finds the customer by their number.
    by_number = post_callback(planner, "cs-results.children", [("cs-query", "value", msisdn)])
    assert CUSTOMER not in by_number.text and "customer id only" in by_number.text
    assert CUSTOMER in post_callback(care, "cs-results.children", [("cs-query", "value", msisdn)]).text
    opened = [e for e in _audit(folder) if e["event"] == "open_customer" and e["customer_id"] == CUSTOMER
              and e.get("view") == "record"]
    assert {(e["user"], e["personal_data"]) for e in opened} >= {("carla", "shown"), ("piet", "masked")}
    assert all(e["at"] and e["remote_addr"] for e in opened)


def test_a_removed_user_loses_the_session_at_once(auth_app) -> None:
    app, folder = auth_app
    client = app.server.test_client()
    login(client, "piet")
    assert client.get("/").status_code == 200
    users_file = folder / "users.toml"
    before = users_file.read_text()
    try:
        write_users(users_file, {n: User(n, ROLES[n], hash_password(p)) for n, p in PASSWORDS.items()
                                 if n != "piet"})
        assert client.get("/").status_code == 302
    finally:
        users_file.write_text(before)


def test_logins_are_throttled_per_user_name(auth_app) -> None:
    app, _ = auth_app
    client = app.server.test_client()
    for _ in range(5):
        login(client, "erin", "wrong-password-x")
    r = login(client, "erin")  # the right password, but too late
    assert "error=throttled" in r.headers["Location"]
    app.server.extensions["opencem.auth"].throttle.succeeded("erin")


def test_development_mode_needs_no_login_and_says_so(sample_warehouse: Path, tmp_path: Path) -> None:
    from app.main import create_app

    app = create_app(Settings(warehouse_dir=sample_warehouse, dev_mode=True, dev_roles=("planner",),
                              audit_log_file=tmp_path / "audit.jsonl"))
    client = app.server.test_client()
    assert client.get(f"/customer/{CUSTOMER}").status_code == 200
    assert "Development mode" in client.get("/_dash-layout").text
    record = post_callback(client, RECORD, [("cu-id", "data", CUSTOMER)])
    assert record.status_code == 200 and MASK in record.text, "a planner in dev mode still sees masked data"
    assert not (tmp_path / "secret_key").exists()
