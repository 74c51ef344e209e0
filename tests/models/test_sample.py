"""Data and model tests on the bundled sample: what the issue says must hold, on the real inputs.

The sample warehouse is refreshed once per session (tests/conftest.py) and a copy is trained once with
the default options (tests/models/trained.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from etl.config import Settings
from models.features import GROUPS, load_frame
from models.registry import Registry
from models.score import load_evidence

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample"
pytestmark = pytest.mark.skipif(not (SAMPLE / "truth.json").exists(), reason="data/sample is not there")


def test_the_label_is_what_subscriptions_say(trained_con):
    """label_churn_30d == some line active at the snapshot ends within 30 days (from staging.subscriptions)."""
    frame = load_frame(trained_con)
    r = frame.rows
    assert frame.mode == "snapshots" and frame.missing_groups == ()
    assert np.array_equal(r["label_churn_30d"].to_numpy(), (r["days_to_churn"] < 30).to_numpy())
    # The latest snapshot is the scoring one: nothing observed after it.
    latest = r[r["snapshot_date"] == r["snapshot_date"].max()]
    assert (latest["label_observed_days"] == 0).all() and not latest["label_churn_30d"].any()


def test_held_out_quality_on_the_latest_labelled_snapshot(trained_sample):
    _, result = trained_sample
    gbm, base = result["metrics"]["gbm"], result["metrics"]["logistic"]
    assert "time split" in result["split"]
    assert gbm["roc_auc"] >= 0.80, result["split"]
    assert gbm["lift_top_decile"] > 2.0
    assert base["roc_auc"] is not None  # the baseline is reported beside it
    assert result["warnings"] == []  # no single feature separates churners suspiciously well


def test_the_planted_network_driver_is_among_the_top_drivers(trained_sample):
    _, result = trained_sample
    truth = json.loads((SAMPLE / "truth.json").read_text())
    assert truth["churn"]["drivers"]["network"] > 0
    top = [d["reason"] for d in result["drivers"][:3]]
    assert "network" in top, result["drivers"]
    net = next(d for d in result["drivers"] if d["reason"] == "network")
    assert net["side"] == "OSS" and net["mean_rise"] > 0 and net["importance"] > 0
    assert [d["mean_rise"] for d in result["drivers"]] == sorted((d["mean_rise"] for d in result["drivers"]),
                                                                 reverse=True)


def test_one_score_per_active_customer_in_zero_one(trained_con, trained_sample):
    _, result = trained_sample
    scores = trained_con.sql("SELECT * FROM models.churn_scores").df()
    active = trained_con.execute(
        "SELECT count(DISTINCT customer_id) FROM staging.subscriptions WHERE start_date <= ? AND "
        "(termination_date IS NULL OR termination_date > ?)",
        [result["data_as_of"], result["data_as_of"]]).fetchall()[0][0]
    assert len(scores) == active == result["n_scored"]
    assert scores["customer_id"].is_unique
    assert scores["probability"].between(0, 1).all()
    assert (scores["model_version"] == result["model_version"]).all()
    assert set(scores["risk_band"]) == {"low", "medium", "high"}
    high = scores[scores["risk_band"] == "high"]
    assert high["top_reasons"].map(len).min() >= 1
    # Reasons are sentences with the customer's own numbers, and some name the cell it happened on.
    words = [w for ws in scores["top_reasons"] for w in ws]
    assert any(" on cell " in w for w in words)
    assert all(any(ch.isdigit() for ch in w) for w in words if w.startswith(("bill", "no top-up")))


def test_calibration_is_sane_on_held_out_data(trained_con):
    m = trained_con.sql("SELECT * FROM models.churn_metrics WHERE slice = 'overall' AND model = 'gbm'").df()
    row = m.iloc[0]
    # The mean probability for the observed days is within a factor of two of the observed churn rate.
    assert 0.5 < row["mean_probability"] / row["base_rate"] < 2.0
    assert row["brier"] < row["base_rate"]  # better than always saying "churn"
    lift = trained_con.sql("SELECT x, y FROM models.churn_curves WHERE curve = 'lift' AND model = 'gbm' "
                           "ORDER BY x").df()
    assert lift["y"].iloc[0] > lift["y"].iloc[-1]


def test_metrics_per_segment_and_payment_type_and_curves(trained_con):
    m = trained_con.sql("SELECT DISTINCT model, slice FROM models.churn_metrics").df()
    assert set(m["slice"]) == {"overall", "segment", "payment_type"}
    assert set(m["model"]) == {"gbm", "logistic"}
    c = trained_con.sql("SELECT DISTINCT curve FROM models.churn_curves").df()
    assert set(c["curve"]) == {"roc", "pr", "reliability", "lift", "gains"}


def test_registry_artifact_manifest_and_card(trained_sample):
    root, result = trained_sample
    registry = Registry.for_warehouse(root)
    _model, manifest = registry.load(result["model_version"])
    assert manifest["data_hash"] and manifest["data_as_of"] == result["data_as_of"]
    assert {"scikit-learn", "numpy", "pandas", "duckdb"} <= set(manifest["packages"])
    assert [f["name"] for f in manifest["features"]] == list(result["features"])
    assert any(r["slice"] == "payment_type" for r in manifest["metrics"])
    card = (root / "models" / result["model_version"] / "model_card.md").read_text()
    assert "ROC AUC" in card and result["model_version"] in card and "Limits" in card


def test_runs_are_kept_and_say_what_was_missing(trained_con, trained_sample):
    _, result = trained_sample
    runs = trained_con.sql("SELECT * FROM models.churn_runs").df()
    assert runs["model_version"].iloc[-1] == result["model_version"]
    assert list(runs["missing_groups"].iloc[-1]) == []
    assert runs["band_high_from"].iloc[-1] > runs["band_medium_from"].iloc[-1] > 0


def test_experience_index_per_customer_and_zone(trained_con):
    cust = trained_con.sql("SELECT * FROM models.experience_customer").df()
    assert cust["experience_index"].dropna().between(0, 100).all()
    assert cust["customer_id"].is_unique
    zone = trained_con.sql("SELECT * FROM models.experience_zone").df()
    per_zone = cust.dropna(subset=["experience_index", "zone_id"]).groupby("zone_id")["experience_index"].mean()
    merged = zone.set_index("zone_id")["experience_index"]
    assert np.allclose(merged.loc[per_zone.index], per_zone)
    formula = trained_con.sql("SELECT * FROM models.experience_formula").df()
    assert formula["weight"].sum() > 0 and formula["formula"].nunique() == 1


def test_evidence_cites_cells_above_the_threshold(trained_con):
    ev = load_evidence(trained_con, pd.Timestamp("2026-10-29").date(), Settings().kpi_thresholds)
    row = ev.filter(pl.col("drop_days") > 0).row(0, named=True)
    days = trained_con.execute(
        "SELECT count(*) FROM marts.cell_kpi_daily WHERE cell_id = ? AND drop_rate_pct > 2 AND date >= "
        "DATE '2026-10-01' AND date < DATE '2026-10-29'", [row["drop_cell"]]).fetchall()[0][0]
    assert days == row["drop_days"]


def test_groups_cover_every_feature():
    from models.features import FEATURES

    assert {f.group for f in FEATURES} <= set(GROUPS)
