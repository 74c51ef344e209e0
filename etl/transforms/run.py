"""The transform runner: builds every registered model in dependency order on DuckDB or Spark, then checks.

On DuckDB the models run through Ibis on the working file's own connection. On Spark the inputs (the raw
tables, the geo tables and `meta.kpi_thresholds`) are copied to Parquet in a temporary folder, registered
in a local `SparkSession`, each model is built there with the same functions, and each result is written
back into the DuckDB file, cast to the types the DuckDB engine gives the same expression (so both engines
leave identical tables). Then the checks of `etl.transforms.checks` run on the DuckDB file, their results
go to `meta.checks`, and a failure raises `CheckFailed` (carrying the `BuildResult` as `.result`).

Missing sources never break a build: before building, the loader's own `etl.load.ensure_schema` creates
any raw table that does not exist yet (every `raw.<source>` from its contract, `raw.quarantine`,
`raw.manifest`, `raw.loads`), empty, and `etl.geo.ensure_geo_tables` the geo tables if `build_geo` did not
run; the models then see empty inputs and build empty or partial tables. Staging also reads a landed table
that lacks an optional contract column as typed nulls. KPI targets (`Settings.kpi_thresholds`) reach the
models as data, in `meta.kpi_thresholds`, so both engines read the same values.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import ibis
import ibis.expr.types as ir

from etl.config import Engine, Settings
from etl.errors import CheckFailed, OpencemError
from etl.geo import GEO_TABLES, ensure_geo_tables
from etl.transforms import load_models
from etl.transforms.checks import (
    CheckResult,
    checks_for,
    failure_message,
    qident,
    run_checks,
    table_exists,
    write_checks,
)
from etl.transforms.incremental import STATE_TABLE, Planner, changed_dates, rebuild_dates
from etl.transforms.registry import Model

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: KPIs whose target is a floor (the value must be at least the threshold); the others are ceilings.
HIGHER_IS_BETTER = ("availability_pct", "accessibility_pct", "dl_throughput_mbps")
THRESHOLDS_TABLE = "meta.kpi_thresholds"


@dataclass(frozen=True)
class BuildResult:
    """What a build did: rows per model table, every check's result, and how long each step took."""

    engine: Engine
    rows: dict[str, int]
    checks: tuple[CheckResult, ...]
    timings_s: dict[str, float]
    total_s: float
    created_inputs: tuple[str, ...] = field(default=())
    """Input tables that did not exist and were created empty (sources not loaded)."""
    kept: tuple[str, ...] = field(default=())
    """Models whose table was kept as it was: their inputs and definition are unchanged (DuckDB)."""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> tuple[CheckResult, ...]:
        return tuple(c for c in self.checks if not c.passed)


def build(con: duckdb.DuckDBPyConnection, *, engine: Engine = "duckdb", settings: Settings | None = None,
          spark: SparkSession | None = None, only: Iterable[str] | None = None,
          incremental: bool = True) -> BuildResult:
    """Build every registered model into the DuckDB file behind `con`, check, and write `meta.checks`.

    `spark` is an existing session to reuse (one is started, and stopped after, when it is None).
    `only` restricts the build to these models and the models they depend on (for tests and debugging).
    With `incremental` (DuckDB only, and not with `only`), partitioned models whose table is already in the
    file rebuild only the dates whose inputs changed since the last build (`etl.transforms.incremental`).
    Raises `CheckFailed` when a check fails (after `meta.checks` is written).
    """
    settings = settings or Settings()
    if engine not in ("duckdb", "spark"):
        raise OpencemError(f"unknown engine {engine!r}; expected duckdb or spark")
    t0 = time.perf_counter()
    models = load_models()
    order = build_order(models, only=only)
    created = ensure_inputs(con, order)
    write_kpi_thresholds(con, settings)
    timings: dict[str, float] = {}
    rebuilt: dict[str, set] = {}
    kept: set[str] = set()
    if engine == "duckdb":
        rebuilt, kept = _build_duckdb(con, order, timings, incremental=incremental and only is None)
    else:
        _build_spark(con, order, timings, session=spark)
        con.execute(f"DROP TABLE IF EXISTS {STATE_TABLE}")  # the next DuckDB build starts whole
    rows = {m.name: _count(con, m.name) for m in order}
    for m in order:
        log.info("build: %s %d rows in %.2f s", m.name, rows[m.name], timings[m.name])
    tc = time.perf_counter()
    results = run_checks(con, checks_for(con, {m.name: m for m in order}, settings=settings, rebuilt=rebuilt))
    write_checks(con, results, engine=engine, checked_at=dt.datetime.now(dt.UTC).replace(tzinfo=None))
    timings["checks"] = time.perf_counter() - tc
    result = BuildResult(engine=engine, rows=rows, checks=tuple(results), timings_s=timings,
                         total_s=time.perf_counter() - t0, created_inputs=tuple(created),
                         kept=tuple(m.name for m in order if m.name in kept))
    if not result.passed:
        err = CheckFailed(failure_message(results))
        err.result = result  # type: ignore[attr-defined]
        raise err
    return result


def build_order(models: Mapping[str, Model], *, only: Iterable[str] | None = None) -> list[Model]:
    """The models in an order where each comes after every model it depends on (ties by name).

    With `only`, just those models and what they depend on; an unknown name raises `OpencemError`.
    """
    done: dict[str, Model] = {}
    visiting: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        if name in done or name not in models:
            return
        if name in visiting:
            raise OpencemError(f"models depend on each other in a cycle: {' -> '.join(path + (name,))}")
        visiting.add(name)
        for dep in sorted(models[name].depends_on):
            visit(dep, path + (name,))
        visiting.discard(name)
        done[name] = models[name]

    wanted = sorted(models) if only is None else sorted(only)
    unknown = [n for n in wanted if n not in models]
    if unknown:
        raise OpencemError(f"unknown model(s) {', '.join(unknown)}; expected one of {', '.join(sorted(models))}")
    for name in wanted:
        visit(name, ())
    return list(done.values())


def external_inputs(order: Iterable[Model]) -> list[str]:
    """The tables the models read that no model builds (raw tables, geo tables, settings tables)."""
    built = {m.name for m in order}
    return sorted({d for m in order for d in m.depends_on if d not in built})


def ensure_inputs(con: duckdb.DuckDBPyConnection, order: list[Model]) -> list[str]:
    """Create the schemas, and each missing input table that can be created empty; return those created.

    Raises `OpencemError` naming a model's input that neither exists nor has a known empty form.
    """
    from etl.load import ensure_schema

    before = {n for n in external_inputs(order) if table_exists(con, n)}
    ensure_schema(con)  # the loader's own tables: every raw.<source>, raw.quarantine, raw.manifest, raw.loads
    created = [n for n in external_inputs(order) if n not in before and table_exists(con, n)]
    created += ensure_geo_tables(con)
    for name in created:
        log.info("build: %s did not exist; created empty (source not loaded)", name)
    for name in external_inputs(order):
        if not (table_exists(con, name) or name == THRESHOLDS_TABLE):
            needers = sorted(m.name for m in order if name in m.depends_on)
            raise OpencemError(f"table {name} does not exist (needed by {', '.join(needers)}); expected a raw "
                               f"table of a contract source, a geo table ({', '.join(GEO_TABLES)}) or a model")
    return created


def write_kpi_thresholds(con: duckdb.DuckDBPyConnection, settings: Settings) -> None:
    """Write the settings' KPI targets to `meta.kpi_thresholds` (kpi, threshold, higher_is_better)."""
    con.execute("CREATE OR REPLACE TABLE meta.kpi_thresholds (kpi VARCHAR, threshold DOUBLE, "
                "higher_is_better BOOLEAN)")
    rows = [(k, float(v), k in HIGHER_IS_BETTER) for k, v in sorted(settings.kpi_thresholds.items())]
    if rows:
        con.executemany("INSERT INTO meta.kpi_thresholds VALUES (?, ?, ?)", rows)


# --- DuckDB ----------------------------------------------------------------------------------------------


def _build_duckdb(con: duckdb.DuckDBPyConnection, order: list[Model], timings: dict[str, float], *,
                  incremental: bool) -> tuple[dict[str, set], set[str]]:
    """Build `order` on DuckDB; return, for each partitioned model rebuilt by dates, the dates rebuilt, and
    the models whose table was kept."""
    be = ibis.duckdb.from_connection(con)
    tables = {name: _ibis_table(be, name) for name in external_inputs(order)}
    t = time.perf_counter()
    planner = Planner(con, order, enabled=incremental)
    rebuilt: dict[str, set] = {}
    timings["incremental:plan"] = time.perf_counter() - t
    for m in order:
        t = time.perf_counter()
        schema, _, table = m.name.partition(".")
        expr = m.build(tables)
        dates = planner.plan(m, expr) if m.partition else None
        if not m.partition and planner.unchanged(m, expr):
            pass  # the working copy's table is this build's
        elif dates is None:
            before = planner.fingerprints_of(m)
            input_dates = planner.input_dates(m) if m.partition and not m.always_whole else None
            if input_dates:
                _create_by_dates(con, be, m, expr, input_dates)
            else:
                be.create_table(table, expr, database=schema, overwrite=True)
            if m.partition:
                planner.touched[m.name] = changed_dates(before, planner.fingerprints_of(m))
        else:
            changed, planner.keys[m.name] = rebuild_dates(con, m, expr, dates, tables,
                                                          keys=planner.keys_for(m, dates))
            planner.touched[m.name] = rebuilt[m.name] = changed
            log.info("build: %s rebuilt %d date(s) of %d changed", m.name, len(planner.touched[m.name]),
                     len(dates))
        if m.partition:
            planner.record_dates(m)
        tables[m.name] = _ibis_table(be, m.name)
        timings[m.name] = time.perf_counter() - t
    planner.save()
    return rebuilt, planner.kept


def _create_by_dates(con: duckdb.DuckDBPyConnection, be, m: Model, expr: ir.Table, dates: set) -> None:
    """Create a partitioned model's table one date at a time (the dates its fact inputs hold), then the rows
    of any other date: each statement aggregates, and sorts, one day of events instead of all of them, in
    far less memory; the table comes out in date order, as incremental builds keep it."""
    schema, _, table = m.name.partition(".")
    part = expr[m.partition]
    batches = sorted(d for d in dates if d is not None)
    conditions = [part == d for d in batches]
    conditions.append(part.isnull() | ~part.isin(batches) if batches else ibis.literal(True))
    for i, cond in enumerate(conditions):
        if i == 0:
            be.create_table(table, expr.filter(cond), database=schema, overwrite=True)
        else:
            con.execute(f"INSERT INTO {qident(m.name)} BY NAME {ibis.to_sql(expr.filter(cond), dialect='duckdb')}"
                        ).fetchall()


def _ibis_table(be, name: str) -> ir.Table:
    schema, _, table = name.partition(".")
    return be.table(table, database=schema)


# --- Spark -----------------------------------------------------------------------------------------------


def spark_session(*, app_name: str = "opencem", tmp_dir: str | os.PathLike[str] | None = None) -> SparkSession:
    """A local Spark session for the ETL: master local[2], few shuffle partitions, no UI, UTC, loopback only.

    Raises `OpencemError` if pyspark (the `[spark]` extra) or Java is missing.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError as e:
        raise OpencemError("the spark engine needs pyspark: install the [spark] extra") from e
    warehouse = Path(tmp_dir or tempfile.mkdtemp(prefix="opencem-spark-")) / "spark-warehouse"
    builder = (
        SparkSession.builder.master("local[2]").appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.sql.catalogImplementation", "in-memory")
        .config("spark.sql.warehouse.dir", str(warehouse))
        .config("spark.sql.parquet.inferTimestampNTZ.enabled", "true")
        .config("spark.driver.extraJavaOptions", "-Duser.timezone=UTC")
        .config("spark.executor.extraJavaOptions", "-Duser.timezone=UTC")
    )
    try:
        session = builder.getOrCreate()
    except Exception as e:  # the JVM failed to start: say what to install
        raise OpencemError(f"could not start Spark (is Java 17+ installed?): {e}") from e
    session.sparkContext.setLogLevel("ERROR")
    return session


def _build_spark(con: duckdb.DuckDBPyConnection, order: list[Model], timings: dict[str, float], *,
                 session: SparkSession | None) -> None:
    own = session is None
    with tempfile.TemporaryDirectory(prefix="opencem-spark-") as tmp:
        spark = session or spark_session(tmp_dir=tmp)
        try:
            _run_spark(con, spark, order, timings, Path(tmp))
        finally:
            if own:
                spark.stop()


def _run_spark(con: duckdb.DuckDBPyConnection, spark: SparkSession, order: list[Model],
               timings: dict[str, float], tmp: Path) -> None:
    run_id = f"r{time.time_ns()}"
    dbs = {name: f"{run_id}_{name}" for name in ("raw", "staging", "marts", "meta")}
    for db in dbs.values():
        spark.sql(f"CREATE DATABASE IF NOT EXISTS {db}")
    be_spark = ibis.pyspark.connect(spark)
    be_duck = ibis.duckdb.from_connection(con)
    spark_tables: dict[str, ir.Table] = {}
    duck_tables: dict[str, ir.Table] = {}
    t = time.perf_counter()
    for name in external_inputs(order):
        schema, _, table = name.partition(".")
        path = tmp / "in" / f"{name}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        con.execute(f"COPY (SELECT * FROM {qident(name)}) TO '{_sql_path(path)}' (FORMAT parquet)")
        spark.catalog.createTable(f"{dbs[schema]}.{table}", path=str(path), source="parquet")
        spark_tables[name] = be_spark.table(table, database=dbs[schema])
        duck_tables[name] = _ibis_table(be_duck, name)
    timings["spark:inputs"] = time.perf_counter() - t
    try:
        for m in order:
            t = time.perf_counter()
            schema, _, table = m.name.partition(".")
            out = tmp / "out" / m.name
            be_spark.to_parquet_dir(m.build(spark_tables), out)
            spark.catalog.createTable(f"{dbs[schema]}.{table}", path=str(out), source="parquet")
            spark_tables[m.name] = be_spark.table(table, database=dbs[schema])
            target = m.build(duck_tables).schema()
            _write_back(con, m.name, out, target)
            duck_tables[m.name] = _ibis_table(be_duck, m.name)
            timings[m.name] = time.perf_counter() - t
    finally:
        for db in dbs.values():
            spark.sql(f"DROP DATABASE IF EXISTS {db} CASCADE")


def _write_back(con: duckdb.DuckDBPyConnection, name: str, folder: Path, schema: ibis.Schema) -> None:
    """Replace DuckDB table `name` with the Parquet files Spark wrote, cast to `schema` (DuckDB's types)."""
    from ibis.backends.sql.datatypes import DuckDBType

    cols = [(c, DuckDBType.to_string(t)) for c, t in schema.items()]
    files = sorted(folder.glob("*.parquet"))
    if files:
        sel = ", ".join(f"CAST({qident(c)} AS {t}) AS {qident(c)}" for c, t in cols)
        src = f"read_parquet('{_sql_path(folder)}/*.parquet')"
        con.execute(f"CREATE OR REPLACE TABLE {qident(name)} AS SELECT {sel} FROM {src}")
    else:
        ddl = ", ".join(f"{qident(c)} {t}" for c, t in cols)
        con.execute(f"CREATE OR REPLACE TABLE {qident(name)} ({ddl})")


def _sql_path(path: Path) -> str:
    """A path of our own temporary folder as a SQL string literal body (quotes doubled)."""
    return str(path).replace("'", "''")




def _count(con: duckdb.DuckDBPyConnection, name: str) -> int:
    return int(con.execute(f"SELECT count(*) FROM {qident(name)}").fetchall()[0][0])
