"""Incremental builds: a refresh that adds a day (and corrects an earlier day's file) rebuilds only the
changed dates of the partitioned models, and leaves exactly the tables a whole build of the same landed rows
gives (a whole build of a copy of the same version: which row wins a duplicate key depends on the order of
the loads, by the stated rule, so a fresh warehouse of the same files may land other rows).
"""

from __future__ import annotations

import datetime as dt
import gzip
import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import ibis
import pytest

from etl.config import Settings
from etl.pipeline import refresh
from etl.publish import Warehouse
from etl.transforms import load_models
from etl.transforms.incremental import changed_dates
from etl.transforms.run import build

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "data" / "sample"
LAST_DAY = "20261028"
CORRECTED_DAY = "20261010"


def _link_sample(dst: Path, *, skip_day: str | None = None) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(SAMPLE.iterdir()):
        if skip_day and f"_{skip_day}." in f.name:
            continue
        target = dst / f.name
        if not target.exists():
            target.symlink_to(f)


def _correct_charging_file(folder: Path) -> None:
    """Replace one day's charging file by a corrected copy: the first event's amount changes."""
    name = f"charging_{CORRECTED_DAY}.csv.gz"
    src = SAMPLE / name
    lines = gzip.decompress(src.read_bytes()).decode().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    amount = header.index("amount")
    first = lines[1].rstrip("\n").split(",")
    first[amount] = f"{float(first[amount]) + 1.25:.2f}"
    lines[1] = ",".join(first) + "\n"
    (folder / name).unlink()
    (folder / name).write_bytes(gzip.compress("".join(lines).encode()))


def _whole_build(version: Path, copy: Path) -> Path:
    """A copy of a published version with every model rebuilt whole from its landed rows."""
    shutil.copyfile(version, copy)
    con = duckdb.connect(str(copy))
    try:
        build(con, incremental=False)
    finally:
        con.close()
    return copy


def _live(root: Path) -> Path:
    wh = Warehouse(root)
    return wh.versions_dir / wh.live_name()


def _differences(a: Path, b: Path) -> dict[str, int]:
    """Rows that differ between the model tables of two warehouse files, matched on each model's key
    (floats equal to 1e-9 relative: sums taken in another order differ in the last bits)."""
    con = duckdb.connect(str(a), read_only=True)
    con.execute(f"ATTACH '{b}' AS other (READ_ONLY)")
    out = {}
    for name, m in load_models().items():
        schema, _, table = name.partition(".")
        cols = con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = current_database()"
            " AND table_schema = ? AND table_name = ? ORDER BY ordinal_position", [schema, table]).fetchall()
        on = " AND ".join(f'x."{k}" IS NOT DISTINCT FROM y."{k}"' for k in m.key)
        differ = [
            f'NOT (x."{c}" IS NOT DISTINCT FROM y."{c}" OR abs(x."{c}" - y."{c}") <= 1e-9 * greatest(1, abs(x."{c}")))'
            if t == "DOUBLE" else f'x."{c}" IS DISTINCT FROM y."{c}"'
            for c, t in cols if c not in m.key
        ]
        k = m.key[0]
        n = con.execute(
            f'SELECT count(*) FROM {schema}.{table} x FULL JOIN other.{schema}.{table} y ON {on} '
            f'WHERE x."{k}" IS NULL OR y."{k}" IS NULL OR {" OR ".join(differ) or "false"}').fetchall()[0][0]
        if n:
            out[name] = n
    con.close()
    return out


@pytest.fixture(scope="module")
def two_step(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(incremental warehouse, whole warehouse, log lines of the incremental refresh): the sample without its
    last day, then the last day plus a corrected earlier charging file; and the same final files at once."""
    tmp = tmp_path_factory.mktemp("incremental")
    src = tmp / "src"
    _link_sample(src, skip_day=LAST_DAY)
    inc = tmp / "inc"
    assert refresh(Settings(warehouse_dir=inc), source=src, log=lambda _m: None).ok
    _link_sample(src)
    _correct_charging_file(src)
    handler = _Collect()
    logging.getLogger("etl.transforms").addHandler(handler)
    logging.getLogger("etl.transforms").setLevel(logging.INFO)
    try:
        result = refresh(Settings(warehouse_dir=inc), source=src, log=lambda _m: None)
    finally:
        logging.getLogger("etl.transforms").removeHandler(handler)
    assert result.ok, result.describe()
    geo = [s for s in result.steps if s.step == "geo"]
    assert geo and geo[0].note.startswith("placements kept"), geo  # only daily files changed
    return _live(inc), _whole_build(_live(inc), tmp / "whole.duckdb"), handler.lines


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_next_day_and_a_corrected_file_give_the_tables_of_a_whole_build(two_step):
    inc, whole, _ = two_step
    assert _differences(inc, whole) == {}


def test_only_the_changed_dates_are_rebuilt(two_step):
    _, _, lines = two_step
    summary = {m.group(1): int(m.group(2)) for line in lines
               if (m := re.match(r"build: (\S+) rebuilt (\d+) date\(s\) of \d+ changed", line))}
    for name in ("staging.charging", "marts.customer_cell_daily", "marts.customer_usage_daily",
                 "marts.customer_usage_hourly", "marts.zone_daily"):
        assert name in summary, f"{name} was not rebuilt by dates: {lines}"
    # charging: the new day, the corrected one, and the day whose duplicate of a corrected row now loses
    # to it (the latest load wins); KPI hours and top-ups only changed on the new day. Not the 28 days.
    assert 2 <= summary["staging.charging"] <= 3, summary
    assert summary["staging.kpi_hourly"] == 1, summary
    assert summary["staging.topups"] == 1, summary
    # the hourly mart keeps 7 days: the new day in, the oldest kept day out (the changed older days are
    # outside its window: asked for, they add no row)
    assert 2 <= summary["marts.customer_usage_hourly"] <= 4, summary


def test_a_day_changed_in_a_few_rows_is_rebuilt_for_the_customers_it_changed(two_step):
    """The corrected file changed one event of a day already loaded: staging.charging compares that day's
    rows with the stored ones instead of rewriting the day, and the per-customer daily marts rebuild only
    the rows of the customers whose events changed (the comparison with a whole build shows they are right).
    The new day, which nothing held, is built whole."""
    _, _, lines = two_step
    day = dt.datetime.strptime(CORRECTED_DAY, "%Y%m%d").date().isoformat()
    compared = [m for line in lines
                if (m := re.match(rf"build: staging\.charging: {day} compared, rows of (\d+) customer_id", line))]
    assert compared and 1 <= int(compared[0].group(1)) <= 2, lines
    for name in ("marts.customer_cell_daily", "marts.customer_usage_daily"):
        assert any(re.match(rf"build: {re.escape(name)}: {day} rebuilt for [12] customer_id value", line)
                   for line in lines), (name, lines)
    new_day = dt.datetime.strptime(LAST_DAY, "%Y%m%d").date().isoformat()
    assert not any(line.startswith(f"build: staging.charging: {new_day} compared") for line in lines)
    assert any(re.match(r"build: staging\.charging: 1 date\(s\) deleted", line) for line in lines), lines


def test_models_whose_inputs_did_not_change_are_kept(two_step):
    """A daily load changes no customer dimension: the tables built only from those are kept as they were
    (the comparison with a whole build above shows they are still right); the others are rebuilt."""
    _, _, lines = two_step
    kept = {line.split()[1] for line in lines if line.endswith("kept (its inputs and definition are unchanged)")}
    assert {"staging.subscriptions", "staging.promotions", "staging.bills", "staging.cells", "staging.sites",
            "staging.zones", "marts.msisdn_lookup"} <= kept, lines
    # read the new day's events, tickets or alarms: rebuilt
    assert not kept & {"staging.customers", "staging.tickets", "marts.customer_360", "marts.churn_features",
                       "marts.subscriber_cell_usage", "marts.data_quality", "marts.freshness"}, kept


def test_model_sql_is_the_same_in_every_process(tmp_path: Path):
    """The digests that decide what an incremental build keeps do not depend on Python's hash seed (ibis
    compiles a multi-column `drop` in set order; the models avoid it)."""
    script = tmp_path / "digests.py"
    script.write_text(
        "import duckdb, ibis\n"
        "from etl.transforms import load_models\n"
        "from etl.transforms.incremental import sql_digest\n"
        "from etl.transforms.run import build, build_order\n"
        "con = duckdb.connect()\n"
        "build(con)\n"
        "be = ibis.duckdb.from_connection(con)\n"
        "tables = {}\n"
        "for s, t in con.execute('SELECT schema_name, table_name FROM duckdb_tables()').fetchall():\n"
        "    tables[f'{s}.{t}'] = be.table(t, database=s)\n"
        "for m in build_order(load_models()):\n"
        "    print(m.name, sql_digest(m.build(tables)))\n"
    )
    outs = []
    for seed in ("1", "2", "3"):
        run = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT,
                             env={**os.environ, "PYTHONHASHSEED": seed}, check=False)
        assert run.returncode == 0, run.stderr[-2000:]
        outs.append(run.stdout)
    assert outs[0].count("\n") >= 30
    assert outs[0] == outs[1] == outs[2]


def test_key_checks_read_only_the_rebuilt_dates(two_step):
    """The key checks of tables rebuilt by dates read the rows those dates involve; the others, and every key
    check of a whole build, read the whole table."""
    inc, whole, _ = two_step
    def descriptions(path: Path) -> dict[str, str]:
        with duckdb.connect(str(path), read_only=True) as con:
            return dict(con.execute("SELECT name, description FROM meta.checks WHERE name LIKE 'key:%'").fetchall())
    scoped = {n for n, d in descriptions(inc).items() if "date(s) this build rebuilt" in d}
    assert scoped == {"key:staging.kpi_hourly", "key:marts.customer_cell_daily", "key:marts.customer_usage_daily",
                      "key:marts.customer_usage_hourly", "key:marts.zone_daily",
                      # one-column keys: the rows sharing a key with the rebuilt dates
                      "key:staging.charging", "key:staging.topups"}
    assert not any("rebuilt" in d for d in descriptions(whole).values())


def test_a_changed_dimension_rebuilds_whole(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    src = tmp_path / "src"
    _link_sample(src)
    wh = tmp_path / "wh"
    assert refresh(Settings(warehouse_dir=wh), source=src, log=lambda _m: None).ok
    subs = (src / "subscriptions.csv").read_text().splitlines(keepends=True)
    (src / "subscriptions.csv").unlink()
    (src / "subscriptions.csv").write_text("".join(subs[:1] + subs[2:]))  # one landed subscription fewer
    with caplog.at_level(logging.INFO, logger="etl.transforms"):
        assert refresh(Settings(warehouse_dir=wh), source=src, log=lambda _m: None).ok
    messages = [r.getMessage() for r in caplog.records]
    assert any("staging.charging whole (changed: raw.subscriptions" in m for m in messages), messages
    assert any("staging.subscriptions rebuilt (changed: raw.subscriptions)" in m for m in messages), messages
    assert _differences(_live(wh), _whole_build(_live(wh), tmp_path / "whole.duckdb")) == {}


def test_changed_dates_compares_date_by_date():
    d1, d2, d3 = dt.date(2026, 10, 1), dt.date(2026, 10, 2), dt.date(2026, 10, 3)
    before = {d1: (3, 11), d2: (2, 7)}
    after = {d1: (3, 11), d2: (2, 8), d3: (1, 5)}
    assert changed_dates(before, after) == {d2, d3}
    assert changed_dates(after, after) == set()
    assert changed_dates({d1: (1, 1)}, {}) == {d1}


def test_rebuild_by_comparison_and_by_values_on_literal_tables():
    """A row-level model compared on a day it holds (a changed row, a removed row, a new row of a null
    customer) writes only those rows and names their customers (None for the null one); an aggregate with
    the same subkey rebuilt for those customers equals its whole rebuild; a day nothing changed on is not
    reported."""
    from etl.transforms.incremental import rebuild_dates
    from etl.transforms.registry import Model

    d1, d2 = dt.date(2026, 10, 1), dt.date(2026, 10, 2)
    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw; CREATE SCHEMA staging; CREATE SCHEMA marts")
    con.execute("CREATE TABLE raw.ev (id VARCHAR, customer_id VARCHAR, day DATE, amount DOUBLE)")
    con.execute("INSERT INTO raw.ev VALUES ('e1', 'c1', ?, 1.0), ('e2', 'c1', ?, 2.0), ('e3', 'c2', ?, 4.0), "
                "('e4', 'c3', ?, 8.0), ('e5', 'c1', ?, 16.0)", [d1, d1, d1, d1, d2])
    be = ibis.duckdb.from_connection(con)

    def per_customer(tables):
        ev = tables["staging.ev"]
        return ev.group_by(["customer_id", "day"]).aggregate(n=ev.count(), amount=ev.amount.sum())

    staged = Model(name="staging.ev", grain="event", key=("id",), depends_on=("raw.ev",),
                   build=lambda tables: tables["raw.ev"], partition="day", subkey="customer_id", compare_rows=True)
    agg = Model(name="marts.per_customer", grain="customer day", key=("customer_id", "day"),
                nullable_key=("customer_id",), depends_on=("staging.ev",), build=per_customer,
                partition="day", subkey="customer_id")
    tables = {"raw.ev": be.table("ev", database="raw")}
    be.create_table("ev", staged.build(tables), database="staging")
    tables["staging.ev"] = be.table("ev", database="staging")
    be.create_table("per_customer", agg.build(tables), database="marts")

    con.execute("UPDATE raw.ev SET amount = 3.0 WHERE id = 'e2'")
    con.execute("DELETE FROM raw.ev WHERE id = 'e3'")
    con.execute("INSERT INTO raw.ev VALUES ('e6', NULL, ?, 32.0)", [d1])
    changed, keys = rebuild_dates(con, staged, staged.build(tables), {d1, d2}, tables)
    assert changed == {d1} and keys == {d1: frozenset({"c1", "c2", None})}  # d2 compared: nothing changed
    assert sorted(con.execute("SELECT * FROM staging.ev").fetchall(), key=str) == sorted(
        con.execute("SELECT * FROM raw.ev").fetchall(), key=str)

    changed, _ = rebuild_dates(con, agg, agg.build(tables), changed, tables, keys=keys)
    assert changed == {d1}
    expect = con.execute(f"SELECT * FROM ({ibis.to_sql(agg.build(tables), dialect='duckdb')}) ORDER BY ALL").fetchall()
    assert con.execute("SELECT * FROM marts.per_customer ORDER BY ALL").fetchall() == expect
    assert ("c3", d1, 1, 8.0) in expect and (None, d1, 1, 32.0) in expect
    assert not any(r[0] == "c2" for r in expect)
