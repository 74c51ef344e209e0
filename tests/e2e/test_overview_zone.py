"""The overview and zone pages as an executive and a planner see them, in the system's Chromium."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parents[2]
TRUTH = json.loads((ROOT / "data" / "sample" / "truth.json").read_text())
N_ZONES = len(json.loads((ROOT / "data" / "sample" / "zones.geojson").read_text())["features"])

# The Plotly graph div inside a dcc.Graph.
GD = "const gd = document.querySelector('#' + id + ' .js-plotly-plot');"
# The zones a choropleth draws: every trace but the highlight outline.
ZONES_DRAWN = """id => {
  """ + GD + """
  if (!gd || !gd.data || !gd._fullLayout || !gd._fullLayout.map) return null;
  return gd.data.filter(t => t.name !== 'selected').flatMap(t => t.locations || []);
}"""
# The value drawn for a zone: from Plotly's resolved trace (numeric arrays travel base64-encoded).
Z_OF = """([id, zone]) => {
  """ + GD + """
  const t = gd._fullData[0]; const locs = Array.from(t.locations);
  const i = locs.indexOf(zone); return i < 0 ? null : Number(t.z[i]);
}"""


def wait_for_maps(page) -> None:
    for graph in ("ov-revenue-map", "ov-kpi-map"):
        page.wait_for_function(f"() => ({ZONES_DRAWN})('{graph}') !== null && ({ZONES_DRAWN})('{graph}').length > 0",
                               timeout=30_000)
    page.wait_for_selector("#ov-kpi-map .maplibregl-canvas", timeout=30_000)


def test_overview_draws_both_maps_follows_filters_and_opens_a_zone(guarded_page, live_server, screenshot,
                                                                  sample_warehouse) -> None:
    page, _guard = guarded_page
    page.goto(live_server + "/")
    wait_for_maps(page)
    for graph in ("ov-revenue-map", "ov-kpi-map"):
        drawn = page.evaluate(ZONES_DRAWN, graph)
        assert len(drawn) == len(set(drawn)) == N_ZONES, f"{graph} drew {len(drawn)} of {N_ZONES} zones"
    assert "data as of" in page.inner_text("#ov-asof").lower()
    assert re.search(r"\d", page.inner_text("#ov-card-revenue"))
    # The matrix is drawn after the maps (its drawing waits for them): every quadrant with zones in it.
    page.wait_for_selector("#ov-matrix .scatterlayer .trace", timeout=30_000)
    names = page.evaluate("() => document.querySelector('#ov-matrix .js-plotly-plot').data.map(t => t.name)")
    assert "invest" in names and set(names) <= {"invest", "protect", "maintain", "monitor"}
    screenshot(page, "overview")

    zone = TRUTH["degraded_high_value_zones"][0]
    all_services = page.evaluate(Z_OF, ["ov-revenue-map", zone])
    page.click("#ov-service")
    page.get_by_role("option", name="Data", exact=True).click()
    page.wait_for_function(f"() => ({Z_OF})(['ov-revenue-map', '{zone}']) !== {all_services}", timeout=30_000)
    data_only = page.evaluate(Z_OF, ["ov-revenue-map", zone])
    assert 0 <= data_only < all_services
    assert "service=data" in page.url, "the filter is not kept in the URL"
    assert "Data" in page.inner_text("#ov-revenue-title")

    # The KPI map follows its own filter, and says which way is good.
    page.click("#ov-kpi")
    page.get_by_role("option", name="Drop rate", exact=True).click()
    page.wait_for_function("() => document.getElementById('ov-kpi-title').innerText.includes('Drop rate')")
    assert "lower is better" in page.inner_text("#ov-kpi-title")
    screenshot(page, "overview_filtered")

    # A shared link opens the same view.
    page.goto(page.url)
    wait_for_maps(page)
    assert "Drop rate" in page.inner_text("#ov-kpi-title") and "Data" in page.inner_text("#ov-revenue-title")

    # Click the zone on the revenue map: the click lands on the zone's centroid, projected by MapLibre.
    con = duckdb.connect(str(next((sample_warehouse / "versions").glob("*.duckdb"))), read_only=True)
    lat, lon = con.execute("SELECT centroid_lat, centroid_lon FROM staging.zones_map WHERE zone_id = ?",
                           [zone]).fetchone()
    con.close()
    xy = page.evaluate("""([lon, lat]) => {
        const gd = document.querySelector('#ov-revenue-map .js-plotly-plot');
        const map = gd._fullLayout.map._subplot.map;
        const p = map.project([lon, lat]);
        const r = map.getCanvas().getBoundingClientRect();
        return [r.left + p.x, r.top + p.y];
    }""", [lon, lat])
    page.mouse.move(*xy)
    page.mouse.click(*xy)
    page.wait_for_url(re.compile(rf".*/zone/{zone}\b.*"), timeout=30_000)
    page.wait_for_selector("#zone-title h2", timeout=30_000)
    assert zone in page.inner_text("#zone-title")
    assert "invest" in page.inner_text("#zone-title").lower()


def test_zone_page_shows_cells_breaches_and_the_ranking(guarded_page, live_server, screenshot) -> None:
    page, _guard = guarded_page
    zone = TRUTH["degraded_high_value_zones"][0]
    page.goto(f"{live_server}/zone/{zone}?period=28")
    page.wait_for_selector("#zone-cells-map .maplibregl-canvas", timeout=30_000)
    page.wait_for_selector(".ag-row", timeout=30_000)
    text = page.inner_text("body")
    assert "investment rank" in text and "breaching a KPI target" in text
    assert re.search(r"investment rank [123] of \d+", text)
    assert page.locator(".opencem-row-flagged").count() > 0
    # The ranking across all zones (its rows arrive on their own) highlights this zone's row.
    page.wait_for_selector(f'div[id*="zone-invest-grid"] .ag-row[row-id="{zone}"].opencem-row-flagged',
                           timeout=30_000)
    assert page.locator('div[id*="zone-invest-grid"] .ag-row.opencem-row-flagged').count() == 1
    page.wait_for_function("() => document.querySelector('#zone-kpi-trend .scatterlayer .trace') !== null")
    screenshot(page, "zone")

    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").first.click()
    assert download.value.suggested_filename == f"cells_{zone}.csv"
    rows = list(csv.reader(io.StringIO(Path(download.value.path()).read_text())))
    assert rows[0][:3] == ["Cell", "Site", "Tech"] and "Breaches" in rows[0]
    assert len(rows) - 1 == int(re.search(r"(\d+) cells, \d+ breaching", text).group(1)) > 0

    # The export is written on the server and neutralises text a spreadsheet would run as a formula: put
    # such text in the grid (as a source extract could) and export again.
    page.evaluate("""() => window.dash_clientside.set_props({type: 'grid', grid: 'zone-cells-grid'}, {rowData: [
        {cell_id: '=HYPERLINK("http://x")', site_id: '+S1', technology: '@4G', availability_pct: -1.5,
         breaches: '-bad', n_breaches: 1},
        {cell_id: 'C1', site_id: 'S1', technology: '4G', availability_pct: 99.5, breaches: '', n_breaches: 0}]})""")
    page.wait_for_function("() => document.querySelectorAll('div[id*=\"zone-cells-grid\"] "
                           ".ag-center-cols-container .ag-row').length === 2")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").first.click()
    text = Path(download.value.path()).read_text()
    rows = list(csv.reader(io.StringIO(text)))
    header = rows[0]
    bad = dict(zip(header, rows[1], strict=True))
    assert bad["Cell"] == "'=HYPERLINK(\"http://x\")" and bad["Site"] == "'+S1" and bad["Tech"] == "'@4G"
    assert bad["Breaches"] == "'-bad" and bad["Availability %"] == "-1.5", "numbers are left as numbers"
    assert dict(zip(header, rows[2], strict=True))["Cell"] == "C1"

    # The investment ranking exports all zones, this one among them.
    with page.expect_download() as download:
        page.get_by_role("button", name="Export CSV").nth(1).click()
    ranking = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert download.value.suggested_filename == "investment_ranking.csv"
    assert len(ranking) >= 3 and ranking[0]["#"] == "1" and any(r["Zone"] for r in ranking)


def test_unknown_zone_is_an_empty_state_not_an_error(guarded_page, live_server) -> None:
    page, _guard = guarded_page
    page.goto(f"{live_server}/zone/NOPE")
    page.wait_for_selector("text=Unknown zone", timeout=30_000)
    assert "no zone NOPE" in page.inner_text("body")
    page.wait_for_load_state("networkidle")
    assert not page.locator("#zone-ranking").is_visible(), "no ranking for a zone that is not there"
