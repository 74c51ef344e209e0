"""The churn model's published scores as the other pages read them (assurance ranks by churn risk)."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from app import queries_assurance as qa
from app.warehouse import WarehouseReader


@pytest.fixture(scope="module")
def trained_db(trained_sample: tuple[Path, dict]) -> WarehouseReader:
    return WarehouseReader(trained_sample[0])


def test_assurance_ranks_affected_customers_with_the_published_churn_scores(trained_db: WarehouseReader) -> None:
    alarm = trained_db.query("SELECT alarm_id, customer_id FROM marts.alarm_customers LIMIT 20")
    impact = pl.DataFrame({
        "alarm_id": alarm["alarm_id"], "customer_id": alarm["customer_id"], "tier": ["majority"] * alarm.height,
        "n_events_on_alarm_cells": [3] * alarm.height, "n_events_7d": [4] * alarm.height,
        "share_on_alarm_cells": [0.75] * alarm.height, "home_cell_id": [None] * alarm.height,
        "usage_revenue_7d": [1.0] * alarm.height, "monthly_fee_total": [10.0] * alarm.height,
        "revenue_per_hour": [0.1] * alarm.height,
    }, schema=qa.IMPACT_SCHEMA)
    assert qa.has_churn_scores(trained_db)
    ranked = qa.enrich_customers(trained_db, impact)
    scored = ranked.filter(pl.col("churn_probability").is_not_null())
    assert scored.height > 0
    assert set(scored["churn_risk"].unique().to_list()) <= {"low", "medium", "high"}
    assert (scored["churn_reasons"].str.len_chars() > 0).any()  # low risks may carry no reason
