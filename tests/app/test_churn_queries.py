"""Queries of the churn page on the sample with a trained model, and the page's honesty notices."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from app import queries_churn as q
from app.warehouse import WarehouseReader


@pytest.fixture(scope="module")
def db(trained_sample):
    reader = WarehouseReader(trained_sample[0])
    yield reader
    reader.close()


def test_untrained_warehouse_has_no_model(sample_warehouse):
    reader = WarehouseReader(sample_warehouse)
    try:
        assert not q.has_model(reader) and q.latest_run(reader) is None
        assert q.summary(reader) == {} and q.at_risk(reader).height == 0 and q.zone_risk(reader).height == 0
    finally:
        reader.close()


def test_summary_and_histogram_agree_with_the_scores(db):
    s = q.summary(db)
    n = db.query("SELECT count(*) AS n FROM models.churn_scores")["n"][0]
    assert s["customers"] == n and 0 < s["high"] < s["customers"]
    hist = q.risk_histogram(db)
    assert hist["customers"].sum() == n
    top = db.query("SELECT max(probability) AS m FROM models.churn_scores")["m"][0]
    assert hist["bin_end"].max() == pytest.approx(top)
    prepaid = q.summary(db, payment_type="prepaid")
    assert prepaid["customers"] == db.query(
        "SELECT count(*) AS n FROM models.churn_scores WHERE payment_type = 'prepaid'")["n"][0]


def test_at_risk_is_ordered_filtered_and_carries_reasons(db):
    high = q.at_risk(db, band="high")
    assert high.height == q.summary(db)["high"]
    assert high["probability"].is_sorted(descending=True)
    assert set(high["risk_band"]) == {"high"}
    assert high["reasons_text"].str.len_chars().min() > 0
    business = q.at_risk(db, segment="business", limit=5)
    assert business.height <= 5 and set(business["segment"]) <= {"business"}
    # A filter value is a parameter, never SQL: a quote is just a value that matches nothing.
    assert q.at_risk(db, segment="x' OR 1=1 --").height == 0


def test_zone_risk_covers_every_zone_and_sums_to_the_scores(db):
    z = q.zone_risk(db)
    n_zones = db.query("SELECT count(*) AS n FROM staging.zones_map")["n"][0]
    assert z.height == n_zones
    located = db.query("SELECT sum(expected_revenue_at_risk) AS r FROM models.churn_scores "
                       "WHERE home_zone_id IS NOT NULL")["r"][0]
    assert z["revenue_at_risk"].sum() == pytest.approx(located)
    assert z["experience_index"].drop_nulls().is_between(0, 100).all()


def test_run_drivers_metrics_curves_formula(db):
    run = q.latest_run(db)
    assert run["model_version"].startswith("churn-v") and run["split_kind"] == "time"
    assert q.data_end(db) == run["data_as_of"]
    assert q.drivers(db)["rank"].to_list() == list(range(1, q.drivers(db).height + 1))
    assert set(q.metrics(db)["model"]) == {"gbm", "logistic"}
    assert {"roc", "pr", "lift", "reliability"} <= set(q.curves(db)["curve"])
    assert q.experience_formula(db).height == 5
    assert set(q.choices(db)["payment_type"]) <= {"prepaid", "postpaid", "mixed"}


def test_the_page_says_when_scores_are_older_than_the_data(db):
    from app.main import create_app
    from etl.config import Settings

    create_app(Settings(warehouse_dir=db.root, dev_mode=True))  # pages register with an app
    from app.pages.churn import create_header

    run = dict(q.latest_run(db))
    _badges, notices = create_header(db, run, q.data_end(db))
    assert not [n for n in notices if "older than the data" in str(n)]
    run["data_as_of"] = date(2026, 10, 1)
    run["trained_at"] = datetime(2026, 10, 2, 3, 0)
    run["missing_groups"] = ["network", "outages"]
    _badges, notices = create_header(db, run, q.data_end(db))
    text = " ".join(str(n) for n in notices)
    assert "Scores are older than the data" in text and "2026-10-01" in text
    assert "network, outages" in text
