"""Model behaviour on the trained sample model: more dropped calls or more tickets never lower the risk,
all else equal; outage minutes and overdue bills likewise; scores stay probabilities."""

from __future__ import annotations

import numpy as np
import pytest

from models.features import load_frame
from models.registry import Registry


@pytest.fixture(scope="module")
def model_and_rows(trained_sample):
    import duckdb

    root, result = trained_sample
    model, _ = Registry.for_warehouse(root).load(result["model_version"])
    con = duckdb.connect(str(root / "versions" / (root / "CURRENT").read_text().strip()), read_only=True)
    try:
        frame = load_frame(con)
    finally:
        con.close()
    latest = frame.rows[frame.rows["snapshot_date"] == frame.rows["snapshot_date"].max()]
    return model, latest.sample(n=min(400, len(latest)), random_state=1).reset_index(drop=True)


@pytest.mark.parametrize("changes", [
    {"exp_drop_rate_pct": 1.0},
    {"exp_drop_rate_pct": 5.0},
    {"n_tickets_28d": 1, "n_network_tickets_28d": 1},
    {"n_tickets_28d": 3, "n_open_tickets": 2},
    {"outage_minutes_28d": 240, "n_outages_28d": 2},
    {"n_overdue_bills": 2, "overdue_amount": 60.0},
])
def test_more_trouble_is_never_less_risk(model_and_rows, changes):
    model, rows = model_and_rows
    worse = rows.copy()
    for col, add in changes.items():
        worse[col] = worse[col].fillna(0) + add
    before, after = model.predict(rows), model.predict(worse)
    assert np.all(after >= before - 1e-12), f"{int((after < before - 1e-12).sum())} customers scored lower"


def test_probabilities_stay_probabilities_at_the_extremes(model_and_rows):
    model, rows = model_and_rows
    extreme = rows.copy()
    extreme["exp_drop_rate_pct"] = 100.0
    extreme["n_tickets_28d"] = 50
    for frame in (rows, extreme):
        p = model.predict(frame)
        assert np.all((p >= 0) & (p <= 1))
    assert model.predict(extreme).mean() >= model.predict(rows).mean()
