"""On a generated operator, the zones truth.json marks as degraded and high-value lead the investment list."""

from __future__ import annotations

import json

import duckdb
import pytest

from etl.config import Settings
from etl.generate import generate
from etl.pipeline import refresh

pytestmark = pytest.mark.slow


def test_degraded_high_value_zones_are_in_invest_and_top_the_list(tmp_path):
    src, wh = tmp_path / "src", tmp_path / "wh"
    generate(src, customers=500, days=7, seed=7)
    refresh(Settings(warehouse_dir=wh), source=src)
    truth = json.loads((src / "truth.json").read_text())["degraded_high_value_zones"]
    assert truth, "the generator planted no degraded high-value zone"
    con = duckdb.connect(str(wh / "versions" / (wh / "CURRENT").read_text().strip()), read_only=True)
    try:
        rows = con.execute(
            "SELECT zone_id, quadrant FROM marts.zone_scorecard WHERE period = 'all' AND invest_rank IS NOT NULL "
            "ORDER BY invest_rank").fetchall()
    finally:
        con.close()
    quadrant = dict(rows)
    assert {z: quadrant[z] for z in truth} == {z: "invest" for z in truth}
    assert sorted(z for z, _ in rows[: len(truth)]) == sorted(truth)
