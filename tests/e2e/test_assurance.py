"""The assurance page as an assurance engineer uses it, in the system's Chromium: a planted outage with
exactly its affected customers, a live alarm that shows within 10 seconds, and a contact list export that a
spreadsheet cannot run."""

from __future__ import annotations

import csv
import io
import json
import time
from datetime import timedelta
from pathlib import Path

from app import queries_assurance as qa
from app.warehouse import WarehouseReader
from etl import live_alarms as la

ROOT = Path(__file__).resolve().parents[2]
TRUTH = json.loads((ROOT / "data" / "sample" / "truth.json").read_text())

# getApi throws until the grid is initialised: asked again on the next poll.
API = """const api = (() => { try { return window.dash_ag_grid.getApi(id); } catch (e) { return null; } })();"""
ROWS = """id => {
  """ + API + """
  if (!api) return null;
  const out = []; api.forEachNode(n => out.push(n.data)); return out;
}"""
HAS_ROW = """([id, rowId]) => {
  """ + API + """
  return !!(api && api.getRowNode(rowId));
}"""


def customers_shown(page) -> list[dict]:
    page.wait_for_function(f"() => {{ const r = ({ROWS})('as-customers'); return r !== null && r.length > 0; }}",
                           timeout=30_000)
    return page.evaluate(ROWS, "as-customers")


def test_a_planted_outage_lists_exactly_its_affected_customers(guarded_page, live_server, screenshot) -> None:
    page, _guard = guarded_page
    outage = next(o for o in TRUTH["outages"] if o["kind"] == "older")
    page.goto(f"{live_server}/assurance?window=all&alarm={outage['alarm_id']}")
    page.wait_for_function(HAS_ROW, arg=["as-alarms", outage["alarm_id"]], timeout=30_000)
    page.wait_for_selector(f"text=Alarm {outage['alarm_id']}", timeout=30_000)
    rows = customers_shown(page)
    most = {r["customer_id"] for r in rows if r["tier_label"] == "most usage here"}
    assert most == set(outage["affected_customer_ids"])
    assert str(len(outage["affected_customer_ids"])) in page.inner_text("#as-card-customers").split()
    assert "data as of" in page.inner_text("#as-asof").lower()
    page.wait_for_function("() => document.querySelector('#as-map .js-plotly-plot') !== null", timeout=30_000)
    screenshot(page, "assurance_outage")


def test_a_raised_alarm_shows_within_10_seconds_and_its_export_is_safe(guarded_page, live_server, sample_warehouse,
                                                                        screenshot, tmp_path) -> None:
    page, _guard = guarded_page
    folder = sample_warehouse / "live_alarms"
    outage = TRUTH["outages"][0]
    at = qa.as_of(WarehouseReader(sample_warehouse))
    page.goto(f"{live_server}/assurance")
    page.wait_for_function(f"() => {{ const r = ({ROWS})('as-alarms'); return r !== null && r.length > 0; }}",
                           timeout=30_000)
    try:
        start = time.monotonic()
        la.raise_alarm(folder, object_id=outage["site_id"], object_type="site", alarm_id="E2E-LIVE-1",
                       severity="critical", probable_cause="powerProblem",
                       specific_problem='=HYPERLINK("http://evil.example","click")', raised_at=at - timedelta(hours=2))
        page.wait_for_function(HAS_ROW, arg=["as-alarms", "E2E-LIVE-1"], timeout=10_000)
        elapsed = time.monotonic() - start
        assert elapsed < 10, f"the live alarm took {elapsed:.1f} s to show"

        page.locator("#as-alarms .ag-row[row-id='E2E-LIVE-1']").first.click()
        page.wait_for_selector("text=Alarm E2E-LIVE-1", timeout=15_000)
        rows = customers_shown(page)
        expected = qa.affected_customers(WarehouseReader(sample_warehouse),
                                         [qa.AlarmSpec("x", outage["site_id"], "site", at - timedelta(hours=2))],
                                         as_of_at=at)
        assert {r["customer_id"] for r in rows} == set(expected["customer_id"])
        screenshot(page, "assurance_live_alarm")

        with page.expect_download(timeout=20_000) as info:
            page.click("#as-export")
        path = tmp_path / "contacts.csv"
        info.value.save_as(path)
        table = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
        header, body = table[0], table[1:]
        assert len(body) == len(rows)
        assert {r[header.index("customer_id")] for r in body} == set(expected["customer_id"])
        assert all(r[header.index("msisdn")].startswith("'+") for r in body if r[header.index("msisdn")])
        assert all(r[header.index("alarm_problem")].startswith("'=HYPERLINK") for r in body)
        for r in body:
            for cell in r:
                assert not cell.startswith(("=", "+", "@", "\t", "\r")), cell

        # A clear shows too, without a refresh.
        la.clear_alarm(folder, "E2E-LIVE-1")
        page.wait_for_function(
            """() => { const id = 'as-alarms'; """ + API + """
                       const n = api && api.getRowNode('E2E-LIVE-1'); return !!n && n.data.state === 'cleared'; }""",
            timeout=10_000)
    finally:
        for f in folder.glob("E2E-LIVE-*.json"):
            f.unlink()
