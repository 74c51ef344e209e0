"""The runner: dependency order, missing sources, settings written as data, results and timings."""

from __future__ import annotations

import datetime as dt

import ibis
import pytest

from etl.config import Settings
from etl.errors import OpencemError
from etl.geo import build_geo
from etl.transforms import load_models
from etl.transforms.registry import Model
from etl.transforms.run import build, build_order, external_inputs
from etl.transforms.staging import contract_columns


def _m(name: str, *deps: str) -> Model:
    return Model(name=name, grain="g", key=("k",), depends_on=deps, build=lambda t: t)


def test_build_order_puts_each_model_after_its_inputs():
    models = {m.name: m for m in (_m("marts.c", "marts.b", "staging.a"), _m("marts.b", "staging.a"),
                                  _m("staging.a", "raw.x"), _m("marts.d"))}
    assert [m.name for m in build_order(models)] == ["staging.a", "marts.b", "marts.c", "marts.d"]
    assert [m.name for m in build_order(models, only=["marts.b"])] == ["staging.a", "marts.b"]
    assert external_inputs(build_order(models)) == ["raw.x"]


def test_build_order_rejects_cycles_and_unknown_models():
    models = {m.name: m for m in (_m("marts.a", "marts.b"), _m("marts.b", "marts.a"))}
    with pytest.raises(OpencemError, match="cycle: marts.a -> marts.b -> marts.a"):
        build_order(models)
    with pytest.raises(OpencemError, match="unknown model"):
        build_order(models, only=["marts.nope"])


def test_every_registered_model_builds_from_nothing(raw_db):
    """A warehouse where no source was ever loaded (no raw table at all) still builds every model."""
    import duckdb

    con = duckdb.connect()
    build_geo(con)
    result = build(con)
    models = load_models()
    assert set(result.rows) == set(models)
    assert "raw.charging" in result.created_inputs and "raw.kpi_hourly" in result.created_inputs
    assert result.passed and result.engine == "duckdb"
    assert set(result.timings_s) >= set(models) | {"checks"} and result.total_s > 0
    stored = con.execute("SELECT count(*), bool_and(passed) FROM meta.checks").fetchall()
    assert stored == [(len(result.checks), True)]
    con.close()


def test_oss_only_sources_build_every_model(raw_db, zt):
    con = raw_db({
        "zones": [zt.square("Z1", 0)],
        "sites": [{"site_id": "S1", "latitude": 0.005, "longitude": 0.005}],
        "cells": [{"cell_id": "C1", "site_id": "S1"}],
    }, sources=("zones", "sites", "cells"))
    build_geo(con)
    result = build(con)
    assert result.rows["staging.cells"] == 1 and result.rows["marts.zone_daily"] == 0
    assert result.rows["marts.zone_scorecard"] == 0  # no event day loaded: no period to score


def test_kpi_thresholds_come_from_settings(raw_db, zt):
    con = raw_db({
        "zones": [zt.square("Z1", 0)],
        "sites": [{"site_id": "S1", "latitude": 0.005, "longitude": 0.005}],
        "cells": [{"cell_id": "C1", "site_id": "S1"}],
        "kpi_hourly": [{"cell_id": "C1", "period_start": dt.datetime(2026, 3, 2, h), "latency_ms": 50.0}
                       for h in range(2)],
    })
    build_geo(con)
    build(con, only=("marts.cell_kpi_daily",))
    assert con.execute("SELECT good_hours FROM marts.cell_kpi_daily").fetchall() == [(2,)]
    strict = Settings(kpi_thresholds={**Settings().kpi_thresholds, "latency_ms": 40.0})
    build(con, only=("marts.cell_kpi_daily",), settings=strict)
    assert con.execute("SELECT good_hours FROM marts.cell_kpi_daily").fetchall() == [(0,)]
    assert con.execute("SELECT threshold, higher_is_better FROM meta.kpi_thresholds "
                       "WHERE kpi = 'latency_ms'").fetchall() == [(40.0, False)]


def test_contract_columns_fill_absent_optional_columns_with_typed_nulls():
    t = ibis.table({"cell_id": "string", "period_start": "timestamp", "availability_pct": "float64"}, name="k")
    cols = contract_columns(t, "kpi_hourly")
    assert cols["unavailable_time_s"].type() == ibis.dtype("float64")
    assert cols["rrc_setup_attempts"].type() == ibis.dtype("int64")
    assert cols["_file"].type() == ibis.dtype("string")
    assert list(cols)[:3] == ["cell_id", "period_start", "availability_pct"]


def test_unknown_engine_is_refused():
    import duckdb

    with pytest.raises(OpencemError, match="unknown engine"):
        build(duckdb.connect(), engine="pandas")  # type: ignore[arg-type]
