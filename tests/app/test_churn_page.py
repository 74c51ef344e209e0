"""The churn page's callbacks called as Dash calls them, on the sample with a trained model and on one without:
what each part shows, the filters read from the URL, and what the page says when there is nothing to show
(the browser tests in tests/e2e/test_churn.py check the same page end to end)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from dash.exceptions import PreventUpdate

from app.warehouse import WarehouseReader


def _walk(component) -> Iterator:
    """The component and everything under it (children, lists of children)."""
    yield component
    children = getattr(component, "children", None)
    if isinstance(children, (list, tuple)):
        for c in children:
            yield from _walk(c)
    elif children is not None and not isinstance(children, (str, int, float)):
        yield from _walk(children)


def _text(component) -> str:
    """Every string in the component tree, with the titles of alerts (what a reader sees)."""
    out = []
    for c in _walk(component):
        if isinstance(c, str):
            out.append(c)
        elif isinstance(getattr(c, "children", None), str):
            out.append(c.children)
        if isinstance(getattr(c, "title", None), str):
            out.append(c.title)
    return " ".join(out)


def _grid(component):
    found = [c for c in _walk(component) if type(c).__name__ == "AgGrid"]
    assert len(found) == 1
    return found[0]


@pytest.fixture(scope="module")
def churn_page():
    from app.pages import churn

    return churn


def _app(root: Path):
    from app.main import create_app
    from etl.config import Settings

    return create_app(Settings(warehouse_dir=root, dev_mode=True))


@pytest.fixture(scope="module")
def trained_app(trained_sample):
    app = _app(trained_sample[0])
    with app.server.app_context():
        yield app


@pytest.fixture(scope="module")
def db(trained_sample) -> Iterator[WarehouseReader]:
    reader = WarehouseReader(trained_sample[0])
    yield reader
    reader.close()


def test_url_values_are_checked_before_use(trained_app, churn_page):
    assert churn_page._clean({}) == {"band": "high", "segment": "all", "payment": "all", "map": "revenue_at_risk"}
    assert churn_page._clean({"band": "medium", "segment": "business", "payment": "prepaid", "map": "experience_index"}
                       ) == {"band": "medium", "segment": "business", "payment": "prepaid", "map": "experience_index"}
    # An unknown band or map value falls back to the default instead of reaching a query or a figure.
    assert churn_page._clean({"band": "everyone'; --", "map": "nope"})["band"] == "high"
    assert churn_page._clean({"band": "everyone'; --", "map": "nope"})["map"] == "revenue_at_risk"
    assert churn_page._opt("all") is None and churn_page._opt("") is None and churn_page._opt("prepaid") == "prepaid"
    controls = {c.id: c.value for c in _walk(churn_page.layout(band="low", payment="postpaid", map="high_risk"))
                if getattr(c, "id", None) in ("churn-band", "churn-payment", "churn-map-value")}
    assert controls == {"churn-band": "low", "churn-payment": "postpaid", "churn-map-value": "high_risk"}


def test_header_filters_drivers_and_quality_come_from_the_published_run(trained_app, churn_page, db):
    badges, notices, segments, payments, drivers, quality = churn_page.update_static("churn-band")
    run = db.query("SELECT model_version FROM models.churn_runs ORDER BY trained_at DESC LIMIT 1").to_dicts()[0]
    assert f"model {run['model_version']}" in _text(badges)
    assert not [n for n in notices if "older than the data" in _text(n)]  # trained on the data it holds
    assert segments[0] == {"value": "all", "label": "All segments"}
    in_scores = set(db.query("SELECT DISTINCT segment FROM models.churn_scores WHERE segment IS NOT NULL")["segment"])
    assert {s["value"] for s in segments[1:]} == in_scores
    assert {p["value"] for p in payments[1:]} <= {"prepaid", "postpaid", "mixed"}
    n_drivers = db.query("SELECT count(*) AS n FROM models.churn_drivers")["n"][0]
    assert sum(len(t.y) for t in drivers.data) == n_drivers
    text = _text(quality)
    assert "Evaluation: time split" in text and "gradient boosting" in text and "logistic baseline" in text


def test_cards_histogram_and_grid_follow_the_filters(trained_app, churn_page, db):
    n_high = db.query("SELECT count(*) AS n FROM models.churn_scores WHERE risk_band = 'high'")["n"][0]
    cards, hist, box = churn_page.update_customers("high", "all", "all")
    assert len(cards) == 4 and f"{n_high:,}" in _text(cards[1])
    n_all = db.query("SELECT count(*) AS n FROM models.churn_scores")["n"][0]
    assert sum(sum(t.y) for t in hist.data) == n_all  # the histogram shows every customer, the grid a band
    grid = _grid(box)
    rows = grid.rowData
    assert len(rows) == min(n_high, 2000) and {r["risk_band"] for r in rows} == {"high"}
    assert [r["probability"] for r in rows] == sorted((r["probability"] for r in rows), reverse=True)
    first = rows[0]
    assert first["customer"] == f"[{first['customer_id']}](/customer/{first['customer_id']})"
    keys = grid.csvExportParams["columnKeys"]
    assert "customer_id" in keys and "reasons_text" in keys and "customer" not in keys  # plain ids in the CSV
    assert grid.csvExportParams["fileName"] == "churn_risk_high.csv"

    n_prepaid = db.query("SELECT count(*) AS n FROM models.churn_scores WHERE payment_type = 'prepaid'")["n"][0]
    cards, hist, box = churn_page.update_customers("all", "all", "prepaid")
    assert f"{n_prepaid:,}" in _text(cards[0])
    assert {r["payment_type"] for r in _grid(box).rowData} == {"prepaid"}

    _cards, _hist, box = churn_page.update_customers("high", "no such segment", "all")
    assert "No customer matches these filters." in _text(box)
    with pytest.raises(PreventUpdate):
        churn_page.update_customers(None, "all", "all")


def _map_traces(box) -> list[dict]:
    graph = next(c for c in _walk(box) if getattr(c, "id", None) == "churn-map")
    fig = graph.figure if isinstance(graph.figure, dict) else graph.figure.to_plotly_json()
    return list(fig["data"])


def test_map_and_experience_formula(trained_app, churn_page, db):
    box, formula = churn_page.update_map("revenue_at_risk")
    n_zones = db.query("SELECT count(*) AS n FROM staging.zones_map")["n"][0]
    assert sum(len(t.get("locations") or []) for t in _map_traces(box)) == n_zones  # every zone is drawn
    assert "Experience index (0-100)" in _text(formula)
    box, _formula = churn_page.update_map("experience_index")
    assert "Experience" in json.dumps(_map_traces(box)[0].get("colorbar") or {}, default=str)
    with pytest.raises(PreventUpdate):
        churn_page.update_map("drop_rate")


def test_without_a_trained_model_every_part_says_so(sample_warehouse, churn_page):
    app = _app(sample_warehouse)
    with app.server.app_context():
        _badges, empty, segments, _payments, drivers, quality = churn_page.update_static("churn-band")
        assert "No churn scores yet" in _text(empty) and "opencem train" in _text(empty)
        assert segments == [{"value": "all", "label": "All segments"}] and drivers == {} and quality is None
        cards, hist, box = churn_page.update_customers("high", "all", "all")
        assert cards == [] and hist == {} and "No churn scores yet" in _text(box)
        box, formula = churn_page.update_map("revenue_at_risk")
        assert "No churn scores yet" in _text(box) and formula is None
