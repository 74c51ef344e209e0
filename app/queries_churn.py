"""Parameterised queries of the churn page on the published `models.*` tables (written by `opencem train`).

Every function takes a reader and plain values and returns a Polars frame or a dict; a table the live
version does not have gives an empty result (the page then says that no model was trained yet).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import polars as pl

from app.warehouse import WarehouseReader

BANDS = ("high", "medium", "low")
HISTOGRAM_BINS = 40
MAX_GRID_ROWS = 2000


def has_model(db: WarehouseReader) -> bool:
    return db.has_table("models.churn_scores") and db.has_table("models.churn_runs")


def latest_run(db: WarehouseReader) -> dict[str, Any] | None:
    """The last training run that wrote the live scores: version, dates, split, bands, warnings."""
    if not has_model(db):
        return None
    df = db.query("SELECT * FROM models.churn_runs WHERE model_version = (SELECT any_value(model_version) "
                  "FROM models.churn_scores) ORDER BY trained_at DESC LIMIT 1")
    return df.to_dicts()[0] if df.height else None


def data_end(db: WarehouseReader) -> date | None:
    """The last date of the data in the live version (the day before its latest churn snapshot)."""
    if not db.has_table("marts.churn_features"):
        return None
    df = db.query("SELECT max(snapshot_date) AS d FROM marts.churn_features")
    d = df["d"][0] if df.height else None
    return None if d is None else d - timedelta(days=1)


def _where(band: str | None, segment: str | None, payment_type: str | None) -> tuple[str, dict[str, Any]]:
    return (("($band IS NULL OR risk_band = $band) AND ($segment IS NULL OR segment = $segment) AND "
            "($payment IS NULL OR payment_type = $payment)"),
            {"band": band, "segment": segment, "payment": payment_type})


def summary(db: WarehouseReader, *, segment: str | None = None, payment_type: str | None = None
            ) -> dict[str, Any]:
    """Customers scored, per band, and the monthly revenue and expected revenue at risk."""
    if not has_model(db):
        return {}
    where, params = _where(None, segment, payment_type)
    df = db.query(
        "SELECT count(*) AS customers, count(*) FILTER (WHERE risk_band = 'high') AS high, "
        "count(*) FILTER (WHERE risk_band = 'medium') AS medium, sum(monthly_revenue) AS revenue, "
        "sum(monthly_revenue) FILTER (WHERE risk_band = 'high') AS high_revenue, "
        "sum(expected_revenue_at_risk) AS revenue_at_risk, avg(probability) AS mean_probability "
        f"FROM models.churn_scores WHERE {where}", params)
    return df.to_dicts()[0]


def risk_histogram(db: WarehouseReader, *, segment: str | None = None, payment_type: str | None = None,
                   bins: int = HISTOGRAM_BINS) -> pl.DataFrame:
    """Customers per probability bin and band (bin_start, bin_end, risk_band, customers)."""
    if not has_model(db):
        return pl.DataFrame(schema={"bin_start": pl.Float64, "bin_end": pl.Float64, "risk_band": pl.String,
                                    "customers": pl.Int64})
    where, params = _where(None, segment, payment_type)
    return db.query(
        "WITH s AS (SELECT probability, risk_band FROM models.churn_scores WHERE " + where + "), "
        "w AS (SELECT greatest(max(probability), 1e-6) / $bins AS width FROM s) "
        "SELECT least(floor(probability / width), $bins - 1) * width AS bin_start, "
        "(least(floor(probability / width), $bins - 1) + 1) * width AS bin_end, risk_band, count(*) AS customers "
        "FROM s, w GROUP BY ALL ORDER BY bin_start, risk_band", {**params, "bins": bins})


def at_risk(db: WarehouseReader, *, band: str | None = None, segment: str | None = None,
            payment_type: str | None = None, limit: int = MAX_GRID_ROWS) -> pl.DataFrame:
    """The customers most at risk (highest probability first) with their revenue, reasons and experience."""
    if not has_model(db):
        return pl.DataFrame()
    where, params = _where(band, segment, payment_type)
    exp = db.has_table("models.experience_customer")
    join = "LEFT JOIN models.experience_customer e USING (customer_id)" if exp else ""
    exp_col = "e.experience_index" if exp else "NULL::DOUBLE"
    return db.query(
        "SELECT s.risk_rank, s.customer_id, s.probability, s.risk_band, s.monthly_revenue, "
        "s.expected_revenue_at_risk, s.segment, s.payment_type, s.main_product_offering, s.tenure_days, "
        f"s.home_zone_id, {exp_col} AS experience_index, s.reasons_text "
        f"FROM models.churn_scores s {join} WHERE {where} ORDER BY s.probability DESC, s.customer_id LIMIT $limit",
        {**params, "limit": limit})


def drivers(db: WarehouseReader) -> pl.DataFrame:
    if not db.has_table("models.churn_drivers"):
        return pl.DataFrame()
    return db.query("SELECT rank, reason, title, side, features, mean_rise, mean_abs_contribution, importance, "
                    "importance_sd, share_first_reason, share_any_reason FROM models.churn_drivers ORDER BY rank")


def metrics(db: WarehouseReader) -> pl.DataFrame:
    if not db.has_table("models.churn_metrics"):
        return pl.DataFrame()
    return db.query("SELECT * FROM models.churn_metrics ORDER BY model, slice <> 'overall', slice, value")


def curves(db: WarehouseReader) -> pl.DataFrame:
    if not db.has_table("models.churn_curves"):
        return pl.DataFrame(schema={"model": pl.String, "curve": pl.String, "x": pl.Float64, "y": pl.Float64})
    return db.query("SELECT model, curve, x, y, n, threshold FROM models.churn_curves ORDER BY model, curve, x")


def zone_risk(db: WarehouseReader) -> pl.DataFrame:
    """Per zone (where customers live): customers scored, high-risk ones, revenue and expected revenue at
    risk per month, and the mean experience index; every zone of the map, with nulls where none."""
    if not has_model(db) or not db.has_table("staging.zones_map"):
        return pl.DataFrame()
    exp = db.has_table("models.experience_zone")
    exp_join = "LEFT JOIN models.experience_zone e ON e.zone_id = z.zone_id" if exp else ""
    exp_cols = ("e.experience_index, e.share_poor" if exp else "NULL::DOUBLE AS experience_index, "
                                                                "NULL::DOUBLE AS share_poor")
    return db.query(
        "WITH r AS (SELECT home_zone_id AS zone_id, count(*) AS customers, "
        "count(*) FILTER (WHERE risk_band = 'high') AS high_risk, sum(monthly_revenue) AS revenue, "
        "sum(expected_revenue_at_risk) AS revenue_at_risk, avg(probability) AS mean_probability "
        "FROM models.churn_scores WHERE home_zone_id IS NOT NULL GROUP BY 1) "
        f"SELECT z.zone_id, z.zone_name, r.customers, r.high_risk, r.revenue, r.revenue_at_risk, "
        f"r.mean_probability, {exp_cols} "
        f"FROM staging.zones_map z LEFT JOIN r ON r.zone_id = z.zone_id {exp_join} ORDER BY z.zone_id")


def experience_formula(db: WarehouseReader) -> pl.DataFrame:
    if not db.has_table("models.experience_formula"):
        return pl.DataFrame()
    return db.query("SELECT kpi, label, unit, weight, bad, good, description, formula, poor_below, source "
                    "FROM models.experience_formula")


def choices(db: WarehouseReader) -> dict[str, list[str]]:
    """Segments and payment types present in the scores (for the filters)."""
    if not has_model(db):
        return {"segment": [], "payment_type": []}
    df = db.query("SELECT list(DISTINCT segment ORDER BY segment) FILTER (WHERE segment IS NOT NULL) AS segment, "
                  "list(DISTINCT payment_type ORDER BY payment_type) FILTER (WHERE payment_type IS NOT NULL) "
                  "AS payment_type FROM models.churn_scores")
    row = df.to_dicts()[0]
    return {k: list(v or []) for k, v in row.items()}
