"""Incremental builds on DuckDB: rebuild only the dates whose input rows changed.

A model declared with `partition=<DATE column>` promises that its rows of one date depend only on the rows of
that date of its *fact* inputs (the daily raw sources below, and other partitioned models), and on its other
inputs (its *dimensions*) as a whole. The working copy of a refresh starts as a copy of the live version, so
such a table already holds every date; after a load only some dates changed:

- a raw fact's changed dates are found by comparing, date by date, a fingerprint of its rows (count and XOR
  of row hashes: raw rows are only ever inserted or deleted, never updated) with the one stored by the
  previous build in `meta.build_state`;
- a partitioned model's changed dates are the union of its fact inputs' changed dates, plus the dates its
  `partition_floor` (a moving window) now leaves out;
- the model is rebuilt incrementally (DELETE those dates, INSERT the model's own expression filtered to
  them) only when every dimension's fingerprint equals the stored one and the model's compiled SQL is the
  same as the stored one (so a new opencem version, or a changed setting, rebuilds it whole). Otherwise,
  or on the first build, or on Spark, the table is rebuilt whole.

A date that changed in a few rows (late events of a day already loaded) need not be rebuilt whole. A model
with `compare_rows` (staging.charging: its values are copied from the landed rows, never summed) rebuilds a
date it already holds by computing that date's rows and writing only the ones that differ from the stored
ones; the `subkey` values (customers) of the rows that changed go downstream, and a model with the same
`subkey` rebuilds only those values' rows of that date, when every input that changed the date says which
values changed and they are at most KEYED_MAX.

A model that is not partitioned keeps its table as the working copy holds it when its compiled SQL is the
stored one and none of its inputs changed: no changed date in a fact input, every model it reads kept, and
every other input's fingerprint the stored one. A daily load leaves customers, subscriptions, bills and what
is built from them alone; without this, each refresh would rebuild them for nothing.

The result is the same table a whole rebuild gives (tests compare them); the state is written at the end of
every DuckDB build.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import duckdb
import ibis
import ibis.expr.types as ir

from etl.transforms.checks import qident, table_columns, table_exists
from etl.transforms.registry import Model

log = logging.getLogger(__name__)

#: The raw daily sources, each with the timestamp column that dates its rows.
RAW_FACTS: dict[str, str] = {
    "raw.charging": "usage_at",
    "raw.kpi_hourly": "period_start",
    "raw.topups": "topup_at",
}
STATE_TABLE = "meta.build_state"
#: A date whose changed subkey values are more than this is rebuilt whole (cheaper than a long list).
KEYED_MAX = 10_000

#: Per date, the subkey values whose rows changed (a date absent: any row may have changed).
Keys = dict[dt.date, frozenset]


@dataclass
class State:
    """Fingerprints of the previous build (empty when there was none)."""

    dates: dict[str, dict[dt.date | None, tuple[int, int]]] = field(default_factory=dict)
    """Raw fact → date → (rows, XOR of row hashes)."""
    whole: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Dimension table → (rows, XOR of row hashes)."""
    sql: dict[str, str] = field(default_factory=dict)
    """Model → sha256 of its compiled SQL."""


def read_state(con: duckdb.DuckDBPyConnection) -> State:
    state = State()
    if not table_exists(con, STATE_TABLE):
        return state
    for kind, name, part, n, h in con.execute(
            f"SELECT kind, name, part, n_rows, fingerprint FROM {STATE_TABLE}").fetchall():
        if kind == "date":
            state.dates.setdefault(name, {})[None if part is None else dt.date.fromisoformat(part)] = (n, int(h))
        elif kind == "whole":
            state.whole[name] = (n, int(h))
        elif kind == "sql":
            state.sql[name] = part
    return state


def write_state(con: duckdb.DuckDBPyConnection, state: State) -> None:
    rows: list[tuple] = []
    for name, by_date in state.dates.items():
        rows += [("date", name, None if d is None else d.isoformat(), n, str(h)) for d, (n, h) in by_date.items()]
    rows += [("whole", name, None, n, str(h)) for name, (n, h) in state.whole.items()]
    rows += [("sql", name, digest, None, None) for name, digest in state.sql.items()]
    con.execute("CREATE SCHEMA IF NOT EXISTS meta").fetchall()
    con.execute(f"CREATE OR REPLACE TABLE {STATE_TABLE} (kind VARCHAR, name VARCHAR, part VARCHAR, "
                "n_rows BIGINT, fingerprint VARCHAR)").fetchall()
    if rows:
        con.executemany(f"INSERT INTO {STATE_TABLE} VALUES (?, ?, ?, ?, ?)", rows)


def date_fingerprints(con: duckdb.DuckDBPyConnection, table: str, column: str
                      ) -> dict[dt.date | None, tuple[int, int]]:
    """Per date of `column`: rows and the XOR of their row hashes (order-free, so equal sets agree)."""
    rows = con.execute(f"SELECT CAST({qident(column)} AS DATE) AS d, count(*), bit_xor(hash(t)) "
                       f"FROM {qident(table)} AS t GROUP BY d").fetchall()
    return {d: (n, int(h)) for d, n, h in rows}


def whole_fingerprint(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, int]:
    n, h = con.execute(f"SELECT count(*), coalesce(bit_xor(hash(t)), 0) FROM {qident(table)} AS t").fetchall()[0]
    return n, int(h)


def changed_dates(before: Mapping[dt.date | None, tuple[int, int]],
                  after: Mapping[dt.date | None, tuple[int, int]]) -> set[dt.date | None]:
    return {d for d in set(before) | set(after) if before.get(d) != after.get(d)}


def sql_digest(expr: ir.Table) -> str:
    return hashlib.sha256(str(ibis.to_sql(expr, dialect="duckdb")).encode()).hexdigest()


class Planner:
    """Decides, model by model, whether a DuckDB build can rebuild only some dates, and records the state."""

    def __init__(self, con: duckdb.DuckDBPyConnection, order: Iterable[Model], *, enabled: bool = True):
        self.con = con
        self.previous = read_state(con) if enabled else State()
        self.current = State()
        self.enabled = enabled and bool(self.previous.sql)  # a previous build left its state
        self.partitioned = {m.name: m for m in order if m.partition}
        self.models = {m.name for m in order}
        self.kept: set[str] = set()
        """Models that are not partitioned whose table this build kept (`unchanged`)."""
        self.keys: dict[str, Keys] = {}
        """Partitioned models with a subkey → the values whose rows changed, for dates rebuilt by values."""
        self.touched: dict[str, set[dt.date | None]] = {}
        self.dates: dict[str, set[dt.date | None]] = {}
        for table, column in RAW_FACTS.items():
            if table_exists(con, table):
                self.current.dates[table] = date_fingerprints(con, table, column)
                self.touched[table] = changed_dates(self.previous.dates.get(table, {}),
                                                    self.current.dates[table])

    def is_fact(self, name: str) -> bool:
        return name in RAW_FACTS or name in self.partitioned

    def dimensions(self, m: Model) -> list[str]:
        return [d for d in m.depends_on if not self.is_fact(d) and d not in m.floor_inputs]

    def plan(self, m: Model, expr: ir.Table) -> set[dt.date | None] | None:
        """The dates to rebuild, or None to rebuild the whole table (also records the model's state)."""
        digest = sql_digest(expr)
        self.current.sql[m.name] = digest
        dims = self.dimensions(m)
        if m.always_whole:
            return None
        for d in dims:
            self._fingerprint(d)
        why = self._new(m, digest)
        if why is None:
            changed = [d for d in dims if self.previous.whole.get(d) != self.current.whole.get(d)]
            if changed:
                why = "changed: " + ", ".join(changed)
            missing = [d for d in m.depends_on if self.is_fact(d) and d not in self.touched]
            if missing:
                why = "not tracked: " + ", ".join(missing)
        if why:
            log.info("build: %s whole (%s)", m.name, why)
            return None
        dates: set[dt.date | None] = set()
        for d in m.depends_on:
            if self.is_fact(d):
                dates |= self.touched[d]
        return dates

    def keys_for(self, m: Model, dates: Iterable[dt.date | None]) -> Keys:
        """For each date, the subkey values whose rows of that date may have changed, when every input that
        changed the date knows them (the dates left out are rebuilt whole)."""
        if not m.subkey:
            return {}
        facts = [d for d in m.depends_on if self.is_fact(d) and d not in m.floor_inputs]
        out: Keys = {}
        for day in dates:
            if day is None:
                continue
            sets = []
            for f in facts:
                if day not in self.touched.get(f, set()):
                    continue
                same = f in self.partitioned and self.partitioned[f].subkey == m.subkey
                known = self.keys.get(f, {}).get(day) if same else None
                if known is None:
                    break
                sets.append(known)
            else:
                if sets:
                    out[day] = frozenset().union(*sets)
        return out

    def unchanged(self, m: Model, expr: ir.Table) -> bool:
        """Whether a model that is not partitioned keeps its table (also records the model's state): its
        compiled SQL is the stored one, and none of its inputs changed since the last build."""
        digest = sql_digest(expr)
        self.current.sql[m.name] = digest
        for d in m.depends_on:
            if not self.is_fact(d):
                self._fingerprint(d)
        why = self._new(m, digest)
        if why is None:
            changed = [d for d in m.depends_on if not self._input_unchanged(d)]
            if changed:
                why = "changed: " + ", ".join(changed)
        if why:
            log.info("build: %s rebuilt (%s)", m.name, why)
            return False
        self.kept.add(m.name)
        log.info("build: %s kept (its inputs and definition are unchanged)", m.name)
        return True

    def _new(self, m: Model, digest: str) -> str | None:
        """Why the model's table cannot be kept or rebuilt by dates whatever its inputs, or None."""
        if not self.enabled:
            return "first build"
        if not table_exists(self.con, m.name):
            return "table missing"
        if self.previous.sql.get(m.name) != digest:
            return "definition changed" if m.name in self.previous.sql else "first build"
        return None

    def _fingerprint(self, name: str) -> None:
        """Record the fingerprint of a table read as a whole (a kept model's is the stored one)."""
        if name in self.current.whole:
            return
        if name in self.kept and name in self.previous.whole:
            self.current.whole[name] = self.previous.whole[name]
        elif table_exists(self.con, name):
            self.current.whole[name] = whole_fingerprint(self.con, name)

    def _input_unchanged(self, name: str) -> bool:
        if self.is_fact(name):
            return name in self.touched and not self.touched[name]
        if name in self.models:
            return name in self.kept
        before = self.previous.whole.get(name)
        return before is not None and before == self.current.whole.get(name)

    def input_dates(self, m: Model) -> set[dt.date | None]:
        """Every date the model's fact inputs hold (its rows can only be of those dates)."""
        out: set[dt.date | None] = set()
        for d in m.depends_on:
            if d in RAW_FACTS:
                out |= set(self.current.dates.get(d, {}))
            elif d in self.partitioned:
                out |= self.dates.get(d, set())
        return out

    def record_dates(self, m: Model) -> None:
        """Note the dates a partitioned model's table holds (the models downstream build by them)."""
        self.dates[m.name] = {r[0] for r in self.con.execute(
            f"SELECT DISTINCT {qident(m.partition)} FROM {qident(m.name)}").fetchall()}

    def fingerprints_of(self, m: Model) -> dict[dt.date | None, tuple[int, int]]:
        """Per date of a partitioned model's table: its fingerprint, when a model downstream may rebuild
        only some dates (else nothing is computed: everything downstream is rebuilt whole anyway)."""
        if not (m.partition and self.enabled and table_exists(self.con, m.name)):
            return {}
        return date_fingerprints(self.con, m.name, m.partition)

    def save(self) -> None:
        write_state(self.con, self.current)


def rebuild_dates(con: duckdb.DuckDBPyConnection, m: Model, expr: ir.Table, dates: set[dt.date | None],
                  tables: Mapping[str, ir.Table], *, keys: Keys | None = None
                  ) -> tuple[set[dt.date | None], Keys]:
    """Replace the rows of `dates` (and of dates before the model's floor) of `m` by its expression's rows.

    `keys` (`Planner.keys_for`): dates the table already holds where only some subkey values changed; only
    their rows are rebuilt. A `compare_rows` model rebuilds the other dates it already holds by comparison.
    Returns every date whose rows changed (those rebuilt and those dropped by the floor), and for the dates
    rebuilt by values or by comparison, the subkey values whose rows changed.
    """
    col, table = qident(m.partition), qident(m.name)
    dropped: set[dt.date | None] = set()
    if m.partition_floor is not None:
        rows = con.execute(str(ibis.to_sql(m.partition_floor(tables), dialect="duckdb"))).fetchall()
        row = rows[0] if rows else None
        if row is not None and row[0] is not None:
            dropped = {r[0] for r in con.execute(f"SELECT DISTINCT {col} FROM {table} WHERE {col} < ?",
                                                 [row[0]]).fetchall()}
    todo = sorted(d for d in dates | dropped if d is not None)
    has_null = None in dates
    if not todo and not has_null:
        return set(), {}
    held: set[dt.date] = set()
    if m.subkey:
        held = {r[0] for r in con.execute(f"SELECT DISTINCT {col} FROM {table} WHERE {col} IN "
                                          "(SELECT unnest(?::DATE[]))", [todo]).fetchall()} - dropped
    keys = keys or {}
    by_values = {d: keys[d] for d in todo if d in held and d in keys and len(keys[d]) <= KEYED_MAX}
    compared = [d for d in todo if m.compare_rows and d in held and d not in by_values]
    whole = [d for d in todo if d not in by_values and d not in compared]
    changed: set[dt.date | None] = set()
    changed_keys: Keys = {}
    if whole or has_null:
        _replace_dates(con, m, expr, whole, has_null)
        changed |= set(whole) | ({None} if has_null else set())
    for d, values in by_values.items():
        t0 = time.perf_counter()
        _replace_values(con, m, expr, d, values)
        log.info("build: %s: %s rebuilt for %d %s value(s) in %.2f s", m.name, d, len(values), m.subkey,
                 time.perf_counter() - t0)
        changed.add(d)
        changed_keys[d] = values
    for d in compared:
        t0 = time.perf_counter()
        values = _replace_differing_rows(con, m, expr, d)
        log.info("build: %s: %s compared, rows of %d %s value(s) changed, in %.2f s", m.name, d, len(values),
                 m.subkey, time.perf_counter() - t0)
        if values:
            changed.add(d)
            changed_keys[d] = values
    return changed, changed_keys


def _replace_dates(con: duckdb.DuckDBPyConnection, m: Model, expr: ir.Table, todo: list[dt.date],
                   has_null: bool) -> None:
    col, table = qident(m.partition), qident(m.name)
    where = f"{col} IN (SELECT unnest(?::DATE[]))" + (f" OR {col} IS NULL" if has_null else "")
    t0 = time.perf_counter()
    con.execute(f"DELETE FROM {table} WHERE {where}", [todo]).fetchall()
    t1 = time.perf_counter()
    part = expr[m.partition]
    cond = part.isin(todo) if todo else ibis.literal(False)
    if has_null:
        cond = cond | part.isnull()
    sql = ibis.to_sql(expr.filter(cond), dialect="duckdb")
    con.execute(f"INSERT INTO {table} BY NAME {sql}").fetchall()
    log.info("build: %s: %d date(s) deleted in %.2f s, rebuilt in %.2f s", m.name, len(todo) + has_null,
             t1 - t0, time.perf_counter() - t1)


def _values_filter(column: str, values: frozenset) -> tuple[str, list]:
    """SQL for the column expression `column` among `values` (None among them: the null rows too), and its
    parameters: a list of constants, which DuckDB pushes down to the scans (a subquery it would not)."""
    given = sorted(v for v in values if v is not None)
    parts = [f"{column} IN ({', '.join('?' * len(given))})"] if given else []
    if None in values:
        parts.append(f"{column} IS NULL")
    return "(" + (" OR ".join(parts) or "false") + ")", given


def _replace_values(con: duckdb.DuckDBPyConnection, m: Model, expr: ir.Table, day: dt.date,
                    values: frozenset) -> None:
    """Rebuild the rows of one date and some subkey values."""
    col, key, table = qident(m.partition), qident(m.subkey), qident(m.name)
    cond, params = _values_filter(key, values)
    con.execute(f"DELETE FROM {table} WHERE {col} = ? AND {cond}", [day, *params]).fetchall()
    sql = ibis.to_sql(expr.filter(expr[m.partition] == day), dialect="duckdb")
    cond, params = _values_filter(f"n.{key}", values)
    con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM ({sql}) AS n WHERE {cond}", params).fetchall()


def _replace_differing_rows(con: duckdb.DuckDBPyConnection, m: Model, expr: ir.Table, day: dt.date
                            ) -> frozenset:
    """Rebuild one date by comparison: delete the stored rows no new row equals, insert the new rows no
    stored row equals; return the subkey values of both (the values whose rows changed)."""
    col, key, table = qident(m.partition), qident(m.subkey), qident(m.name)
    cols = table_columns(con, m.name)
    same = " AND ".join(f"o.{qident(c)} IS NOT DISTINCT FROM n.{qident(c)}" for c in cols)
    sql = ibis.to_sql(expr.filter(expr[m.partition] == day), dialect="duckdb")
    new, stale, fresh = '"__opencem_new"', '"__opencem_stale"', '"__opencem_fresh"'
    try:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {new} AS SELECT {', '.join(qident(c) for c in cols)} "
                    f"FROM ({sql})").fetchall()
        stored = f"(SELECT rowid AS rid, * FROM {table} WHERE {col} = ?) AS o"
        con.execute(f"CREATE OR REPLACE TEMP TABLE {stale} AS SELECT o.rid, o.{key} AS k FROM {stored} "
                    f"ANTI JOIN {new} AS n ON {same}", [day]).fetchall()
        con.execute(f"CREATE OR REPLACE TEMP TABLE {fresh} AS SELECT n.* FROM {new} AS n "
                    f"ANTI JOIN {stored} ON {same}", [day]).fetchall()
        values = {r[0] for r in con.execute(f"SELECT DISTINCT k FROM {stale}").fetchall()}
        values |= {r[0] for r in con.execute(f"SELECT DISTINCT {key} FROM {fresh}").fetchall()}
        con.execute(f"DELETE FROM {table} WHERE rowid IN (SELECT rid FROM {stale})").fetchall()
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {fresh}").fetchall()
    finally:
        for t in (new, stale, fresh):
            con.execute(f"DROP TABLE IF EXISTS {t}").fetchall()
    return frozenset(values)
