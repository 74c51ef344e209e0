"""Engine parity of the customer, assurance and quality marts: Spark gives the rows DuckDB gives.

One Spark session for the module; every mart is built once per engine from the same literal rows (the
quality data set exercises every check and the alarm rule, the churn data set the snapshots).
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
import shutil
from pathlib import Path

import ibis
import pytest

from etl.transforms import load_models

_spec = importlib.util.spec_from_file_location("marts_testdata", Path(__file__).with_name("marts_testdata.py"))
td = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(td)

pytestmark = [pytest.mark.spark, pytest.mark.slow]

MARTS = ("marts.subscriber_cell_usage", "marts.customer_360", "marts.alarm_customers", "marts.alarm_impact",
         "marts.data_quality", "marts.freshness")


@pytest.fixture(scope="module")
def spark_con():
    pytest.importorskip("pyspark")
    if shutil.which("java") is None:
        pytest.skip("Spark needs Java (17+), which is not installed")
    from etl.transforms.run import spark_session

    session = spark_session(app_name="opencem-marts-parity")
    yield ibis.pyspark.connect(session)


def _canon(rows: list[dict], key: tuple[str, ...]) -> list[tuple]:
    """Rows as comparable tuples, sorted by key; floats rounded so engines' last bits do not matter."""
    def value(v):
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 9)
        if isinstance(v, dt.datetime):
            return v.replace(tzinfo=None)
        return tuple(v) if isinstance(v, list) else v

    names = sorted(rows[0]) if rows else []
    out = [tuple((c, value(r[c])) for c in names) for r in rows]
    return sorted(out, key=lambda t: tuple(str(dict(t)[k]) for k in key))


def _compare(duck: dict, spark: dict) -> None:
    models = load_models()
    for name, rows in duck.items():
        assert rows, f"{name}: the parity data should give rows"
        key = models[name].key
        assert sorted(rows[0]) == sorted(spark[name][0]), name
        assert _canon(spark[name], key) == _canon(rows, key), name


def test_marts_same_rows_on_spark_and_duckdb(spark_con):
    rows = td.quality_rows()
    rows["raw.manifest"] = [{"file": "charging_20260310.csv", "source": "charging", "rows_read": 10,
                             "load_id": 1, "loaded_at": td.ts("2026-03-11 02:00")}]
    duck = td.build(ibis.duckdb.connect(), rows, *MARTS)
    _compare(duck, td.build(spark_con, rows, *MARTS))


def test_churn_features_same_rows_on_spark_and_duckdb(spark_con):
    rows = td.churn_rows()
    duck = td.build(ibis.duckdb.connect(), rows, "marts.churn_features")
    _compare(duck, td.build(spark_con, rows, "marts.churn_features"))
