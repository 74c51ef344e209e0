"""The churn page as marketing sees it, in the system's Chromium, on the sample with a trained model."""

from __future__ import annotations

import csv
import io
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

GD = "const gd = document.querySelector('#' + id + ' .js-plotly-plot');"
TRACES = "id => { " + GD + " return gd && gd.data ? gd.data.length : 0; }"
ZONES_DRAWN = "id => { " + GD + " if (!gd || !gd.data) return []; return gd.data.flatMap(t => t.locations || []); }"


@pytest.fixture(scope="session")
def churn_server(trained_sample: tuple[Path, dict]) -> Iterator[tuple[str, Path]]:
    """The app (development mode: every role) on the sample trained by `opencem train`'s function."""
    from werkzeug.serving import make_server

    from app.main import create_app
    from etl.config import Settings

    root, _ = trained_sample
    app = create_app(Settings(warehouse_dir=root, dev_mode=True))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = make_server("127.0.0.1", port, app.server, threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{port}", root
    server.shutdown()


def _db(root: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(root / "versions" / (root / "CURRENT").read_text().strip()), read_only=True)


def test_churn_page_shows_risk_customers_drivers_map_and_quality(guarded_page, churn_server, screenshot) -> None:
    page, _guard = guarded_page
    url, root = churn_server
    con = _db(root)
    try:
        n_high = con.sql("SELECT count(*) FROM models.churn_scores WHERE risk_band = 'high'").fetchall()[0][0]
        top_id = con.sql("SELECT customer_id FROM models.churn_scores ORDER BY probability DESC, customer_id "
                         "LIMIT 1").fetchall()[0][0]
        n_zones = con.sql("SELECT count(*) FROM staging.zones_map").fetchall()[0][0]
        auc = con.sql("SELECT roc_auc FROM models.churn_metrics WHERE model = 'gbm' AND slice = 'overall'"
                      ).fetchall()[0][0]
    finally:
        con.close()

    page.goto(url + "/churn")
    page.wait_for_selector("#churn-card-high", timeout=60_000)
    assert f"{n_high:,}" in page.inner_text("#churn-card-high")
    assert f"{auc:.3f}" in page.inner_text("#churn-card-auc")
    page.wait_for_selector("#churn-model-badge", timeout=30_000)
    assert "model churn-v" in page.inner_text("#churn-asof").lower()

    # The grid: high-risk customers by default, riskiest first, each linking to the customer page.
    page.wait_for_selector(".ag-row", timeout=30_000)
    first = page.locator(".ag-center-cols-container .ag-row[row-index='0']")
    assert top_id in first.inner_text()
    assert page.locator(f"a[href='/customer/{top_id}']").count() >= 1
    assert re.search(r"\d", first.inner_text())  # reasons with numbers

    for graph, minimum in (("churn-histogram", 1), ("churn-drivers", 1), ("churn-roc", 3), ("churn-pr", 2),
                           ("churn-lift", 2), ("churn-reliability", 3)):
        page.wait_for_function(f"() => ({TRACES})('{graph}') >= {minimum}", timeout=30_000)
    page.wait_for_function(f"() => ({ZONES_DRAWN})('churn-map').length === {n_zones}", timeout=30_000)
    assert "Experience index (0-100)" in page.inner_text("#churn-formula")
    assert "Evaluation: time split" in page.inner_text("#churn-quality")
    screenshot(page, "churn")

    # CSV export of what the grid shows: plain customer ids and the reasons in words.
    with page.expect_download() as dl:
        page.get_by_role("button", name="Export CSV").click()
    text = Path(dl.value.path()).read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == min(n_high, 2000)
    header = [h.strip('"') for h in text.splitlines()[0].split(",")]
    assert "customer_id" in header and any("reason" in h.lower() for h in header)
    assert rows[0][header[header.index("customer_id")]] == top_id

    # Filters follow into the URL, and widen the grid.
    page.get_by_text("All customers", exact=True).click()
    page.wait_for_function("() => window.location.search.includes('band=all')", timeout=30_000)
    page.wait_for_function(
        f"() => document.querySelector('#churn-grid-box').innerText.includes('customers') && "
        f"!document.querySelector('#churn-grid-box').innerText.startsWith('{n_high:,} customers')", timeout=30_000)


def test_churn_page_filters_come_from_the_url(guarded_page, churn_server) -> None:
    page, _guard = guarded_page
    url, root = churn_server
    con = _db(root)
    try:
        n = con.sql("SELECT count(*) FROM models.churn_scores WHERE payment_type = 'prepaid' "
                    "AND risk_band = 'medium'").fetchall()[0][0]
    finally:
        con.close()
    page.goto(url + "/churn?band=medium&payment=prepaid&map=experience_index")
    page.wait_for_selector("#churn-grid-box .ag-row", timeout=60_000)
    assert page.inner_text("#churn-grid-box").startswith(f"{min(n, 2000):,} customers")
    page.wait_for_function("() => { const gd = document.querySelector('#churn-map .js-plotly-plot'); "
                           "return gd && gd.data && gd.data.length > 0 && "
                           "JSON.stringify(gd.data[0].colorbar || {}).includes('Experience'); }", timeout=30_000)
