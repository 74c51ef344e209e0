"""Roles in the browser: a direct URL to a page the role may not see is refused, a visitor who is not signed
in is sent to the login page and back, and development mode says so on every page."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRUTH = json.loads((ROOT / "data" / "sample" / "truth.json").read_text())
CUSTOMER = TRUTH["outages"][0]["affected_customer_ids"][0]
ZONE = TRUTH["degraded_high_value_zones"][0]


def test_a_direct_url_to_a_page_the_role_may_not_see_is_refused(guarded_page, auth_server, screenshot) -> None:
    page, _guard = guarded_page
    auth_server.login(page, "carla")
    nav = page.inner_text("header")
    assert "Customers" in nav and "Overview" not in nav, "care sees links only to pages it may open"
    page.goto(f"{auth_server.url}/zone/{ZONE}")
    page.wait_for_selector("#access-refused", timeout=30_000)
    refusal = page.inner_text("#access-refused")
    assert "Zone is for: executive, planner, data steward" in refusal and "care agent" in refusal
    assert page.locator("#zone-title").count() == 0, "nothing of the zone page is rendered"
    screenshot(page, "roles_care_refused_zone")

    page.wait_for_load_state("networkidle")
    page.click("#header-logout")
    page.wait_for_url("**/login")
    auth_server.login(page, "erin")
    page.goto(f"{auth_server.url}/customer/{CUSTOMER}")
    page.wait_for_selector("#access-refused", timeout=30_000)
    assert page.locator("#cu-care").count() == 0
    refused = [e for e in auth_server.audit() if e["event"] == "refused" and e["user"] == "erin"]
    assert refused and refused[-1]["customer_id"] == CUSTOMER


def test_a_visitor_who_is_not_signed_in_goes_to_login_and_back(guarded_page, auth_server) -> None:
    page, _guard = guarded_page
    page.goto(f"{auth_server.url}/customer/{CUSTOMER}")
    page.wait_for_selector("#login-form", timeout=30_000)
    assert "/login?next=" in page.url
    page.fill("#login-username", "piet")
    page.fill("#login-password", "not-the-password")
    with page.expect_navigation():
        page.click("#login-submit")
    assert "not right" in page.inner_text("#login-error")
    page.wait_for_load_state("networkidle")
    auth_server.login(page, "piet", next_path=f"/customer/{CUSTOMER}")
    page.wait_for_selector("#cu-care-answer", timeout=30_000)


def test_development_mode_says_so_on_every_page(guarded_page, live_server) -> None:
    page, _guard = guarded_page
    for path in ("/", f"/zone/{ZONE}", "/customers", f"/customer/{CUSTOMER}"):
        page.goto(live_server + path)
        page.wait_for_selector("#dev-mode-banner", timeout=30_000)
        assert "no login" in page.inner_text("#dev-mode-banner")
        assert page.locator("#access-refused").count() == 0
        page.wait_for_load_state("networkidle")
