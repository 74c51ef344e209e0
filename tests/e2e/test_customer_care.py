"""The customer view as a care agent and as a planner see it, in the system's Chromium, with login on."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
TRUTH = json.loads((ROOT / "data" / "sample" / "truth.json").read_text())
OPEN = next(o for o in TRUTH["outages"] if o["kind"] == "still_open")


def _person(sample_warehouse: Path, customer_id: str) -> tuple[str, str, str]:
    con = duckdb.connect(str(next((sample_warehouse / "versions").glob("*.duckdb"))), read_only=True)
    try:
        return con.execute(
            "SELECT c.name, s.msisdn, c.address FROM staging.customers c JOIN staging.subscriptions s "
            "USING (customer_id) WHERE customer_id = ? ORDER BY s.subscription_id LIMIT 1", [customer_id]).fetchone()
    finally:
        con.close()


def test_care_finds_a_customer_by_number_and_sees_the_outage(guarded_page, auth_server, screenshot,
                                                               sample_warehouse) -> None:
    page, _guard = guarded_page
    customer = OPEN["affected_customer_ids"][0]
    name, msisdn, address = _person(sample_warehouse, customer)
    national = msisdn.removeprefix("+39")
    typed = f"{national[:3]} {national[3:6]} {national[6:]}"  # national notation, with spaces

    auth_server.login(page, "carla")
    assert page.url.endswith("/customers"), "care lands on the customer search"
    assert page.inner_text("#header-user") == "carla" and "care agent" in page.inner_text("#header-roles").lower()
    page.fill("#cs-query", typed)
    link = page.locator("#cs-table a.cs-link", has_text=customer)
    link.wait_for(timeout=30_000)
    assert name in page.inner_text("#cs-table") and msisdn in page.inner_text("#cs-table")
    screenshot(page, "customer_search_care")
    link.click()

    page.wait_for_selector("#cu-care-answer", timeout=30_000)
    answer = page.inner_text("#cu-care-answer")
    assert OPEN["alarm_id"] in answer and OPEN["site_id"] in answer and "still open" in answer
    assert page.get_attribute("#cu-care-answer", "data-status") == "outage_now"
    assert "Tell the customer" in page.inner_text("#cu-care-advice")
    assert name in page.inner_text("#cu-name") and address in page.inner_text("#cu-identity")
    page.wait_for_function("() => { const gd = document.querySelector('#cu-timeline .js-plotly-plot');"
                           " return gd && gd.data && gd.data.length > 1; }", timeout=30_000)
    page.wait_for_selector("#cu-map .maplibregl-canvas", timeout=30_000)
    page.wait_for_selector("#cu-usage-chart .js-plotly-plot", timeout=30_000)
    screenshot(page, "customer_care")
    page.wait_for_load_state("networkidle")
    opened = [e for e in auth_server.audit() if e["event"] == "open_customer" and e["customer_id"] == customer
              and e["user"] == "carla"]
    assert opened and opened[0]["personal_data"] == "shown"


def test_the_planner_sees_the_same_customer_masked(guarded_page, auth_server, screenshot, sample_warehouse) -> None:
    page, _guard = guarded_page
    customer = OPEN["affected_customer_ids"][0]
    name, msisdn, address = _person(sample_warehouse, customer)

    auth_server.login(page, "piet", next_path=f"/customer/{customer}")
    assert page.url.endswith(f"/customer/{customer}"), "login returns to the page asked for"
    page.wait_for_selector("#cu-care-answer", timeout=30_000)
    page.wait_for_selector("#cu-subs-box .ag-row", timeout=30_000)
    assert OPEN["alarm_id"] in page.inner_text("#cu-care-answer"), "the network answer is not personal data"
    assert "(hidden)" in page.inner_text("#cu-name") and "Personal data masked" in page.inner_text("#cu-notices")
    text = page.inner_text("body")
    for value in (name, msisdn, address):
        assert value not in text, f"{value!r} is shown to the planner"
    assert "(hidden)" in page.inner_text("#cu-subs-box")
    screenshot(page, "customer_planner_masked")
    page.wait_for_load_state("networkidle")
    opened = [e for e in auth_server.audit() if e["event"] == "open_customer" and e["user"] == "piet"
              and e["customer_id"] == customer and e.get("view") == "record"]
    assert opened and opened[0]["personal_data"] == "masked"
