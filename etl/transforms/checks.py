"""Warehouse checks: each is a query that returns the bad rows; an empty result passes.

Every model gets a key check (its key unique and not null). On top of that: revenue reconciles (usage
revenue in `marts.zone_daily` equals the charging amounts kept in landing, per day and payment type, to the
cent; recurring-fee revenue equals the fee accrual recomputed here independently), KPI percentages lie in
[0, 100], completeness in [0, 1]. Results go to `meta.checks`. (`reject_rate_check` is available, but
the refresh pipeline checks reject rates itself, so builds do not add it.) Other model modules may add checks with `register_check`.
The SQL below is static: identifiers come from the model registry, values are parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import duckdb

from etl.config import Settings
from etl.transforms.registry import Model

log = logging.getLogger(__name__)

#: Amounts that reconcile may differ by less than half a cent (float sums in different orders).
CENT_TOLERANCE = 0.005
#: KPI columns that are percentages wherever a model carries them.
PCT_COLUMNS = (
    "availability_pct", "accessibility_pct", "drop_rate_pct", "prb_utilisation_pct", "experience_index",
    "experience_gap_pct", "good_hours_pct",
)
#: Columns that are shares of hours present, in [0, 1].
COMPLETENESS_COLUMNS = ("completeness", "kpi_completeness")
#: How many bad rows each result keeps as examples.
MAX_EXAMPLES = 5


@dataclass(frozen=True)
class Check:
    """A named query on one table that returns the rows that break a rule (none: the check passes)."""

    name: str
    table: str
    sql: str
    description: str
    params: tuple = ()
    requires: tuple[str, ...] = ()
    """Tables the query reads besides `table`; the check is skipped when one of them does not exist."""


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: passed, how many bad rows, and a few of them."""

    name: str
    table: str
    passed: bool
    n_bad: int
    examples: tuple[dict, ...] = field(default=())
    description: str = ""


#: Checks other modules registered (name -> check), run for every build whose models include the table.
REGISTERED: dict[str, Check] = {}


def register_check(check: Check) -> Check:
    """Add a check to every build (its table must be a built model or an existing table)."""
    if check.name in REGISTERED and REGISTERED[check.name] != check:
        raise ValueError(f"check {check.name} registered twice")
    REGISTERED[check.name] = check
    return check


def qident(name: str) -> str:
    """A qualified table name (`marts.zone_daily`) or column quoted for SQL; names come from the registry."""
    return ".".join('"' + p.replace('"', '""') + '"' for p in name.split("."))


def key_check(m: Model, *, dates: Collection[dt.date | None] | None = None) -> Check:
    """The model's key is unique and not null: bad rows are keys seen twice, or with a null part (other than
    the parts the model declares `nullable_key`).

    `dates` (the dates an incremental build rebuilt, for a model that `scoped_by_dates` allows) limits the
    check to the rows a duplicate must involve: those of the dates, when duplicates can only be within one
    date (`Model.key_within_date`); else, for a one-column key, every row whose key is also on those dates.
    The rows of the other dates were checked by the builds that wrote them.
    """
    keys = ", ".join(qident(k) for k in m.key)
    nulls = " OR ".join(f"{qident(k)} IS NULL" for k in m.key if k not in m.nullable_key) or "false"
    source, params, scope = qident(m.name), (), ""
    if dates is not None:
        if not scoped_by_dates(m):
            raise ValueError(f"{m.name}: a key check by dates needs a key within one partition date, or a "
                             "one-column key")
        part = qident(m.partition)
        days = sorted(d for d in dates if d is not None)
        on_dates = f"({part} IN (SELECT unnest(?::DATE[])){f' OR {part} IS NULL' if None in dates else ''})"
        if m.key_within_date:
            source = f"(SELECT * FROM {source} WHERE {on_dates})"
            params = (days,)
            scope = f"; rows of the {len(dates)} date(s) this build rebuilt"
        else:
            source = (f"(SELECT * FROM {source} WHERE {on_dates} OR {keys} IN "
                      f"(SELECT {keys} FROM {source} WHERE {on_dates}))")
            params = (days, days)
            scope = f"; rows whose key is on the {len(dates)} date(s) this build rebuilt"
    sql = (
        f"SELECT {keys}, count(*) AS n_rows FROM {source} GROUP BY {keys} "
        f"HAVING count(*) > 1 OR {nulls}"
    )
    nullable = f" ({', '.join(m.nullable_key)} may be null)" if m.nullable_key else ""
    return Check(name=f"key:{m.name}", table=m.name, sql=sql, params=params,
                 description=f"{', '.join(m.key)} unique and not null{nullable} ({m.grain}){scope}")


def scoped_by_dates(m: Model) -> bool:
    """Whether the key check of a model rebuilt by dates can read only the rows those dates involve."""
    return bool(m.partition) and (m.key_within_date or len(m.key) == 1)


def range_checks(table: str, columns: Sequence[str]) -> list[Check]:
    """KPI percentages in [0, 100] and completeness in [0, 1], for those columns `table` has."""
    out = []
    for c in columns:
        if c in PCT_COLUMNS:
            lo, hi = 0.0, 100.0
        elif c in COMPLETENESS_COLUMNS:
            lo, hi = 0.0, 1.0
        else:
            continue
        out.append(Check(
            name=f"range:{table}:{c}", table=table,
            sql=f"SELECT * FROM {qident(table)} WHERE {qident(c)} < ? OR {qident(c)} > ? OR isnan({qident(c)})",
            params=(lo, hi), description=f"{c} between {lo:g} and {hi:g} (or null)",
        ))
    return out


def usage_revenue_check() -> Check:
    """Usage revenue in marts.zone_daily equals raw.charging's amounts, per day and payment type."""
    sql = f"""
        WITH m AS (
            SELECT "date" AS usage_date, payment_type, sum(usage_revenue) AS mart_revenue
            FROM marts.zone_daily GROUP BY ALL
        ), s AS (
            SELECT CAST(usage_at AS DATE) AS usage_date, payment_type, sum(amount) AS landed_revenue
            FROM raw.charging GROUP BY ALL
        )
        SELECT coalesce(m.usage_date, s.usage_date) AS usage_date,
               coalesce(m.payment_type, s.payment_type) AS payment_type,
               coalesce(mart_revenue, 0) AS mart_revenue, coalesce(landed_revenue, 0) AS landed_revenue
        FROM m FULL OUTER JOIN s ON m.usage_date = s.usage_date AND m.payment_type IS NOT DISTINCT FROM s.payment_type
        WHERE abs(coalesce(mart_revenue, 0) - coalesce(landed_revenue, 0)) >= {CENT_TOLERANCE}
        ORDER BY 1, 2
    """
    return Check(name="reconcile:usage_revenue", table="marts.zone_daily", sql=sql, requires=("raw.charging",),
                 description="usage revenue per day and payment type = sum of raw.charging amount, to the cent")


def fee_revenue_check() -> Check:
    """Recurring-fee revenue in marts.zone_daily equals the fee accrual, recomputed here per day.

    The accrual: on each calendar day (`staging.calendar`) a subscription is active (start_date <= day and
    no termination_date or day < termination_date), it accrues monthly_fee x (1 - the largest discount of
    the promotions valid that day / 100) / the number of days in that month.
    """
    sql = f"""
        WITH acc AS (
            SELECT c."date", s.subscription_id, s.payment_type,
                   s.monthly_fee * (1 - coalesce(max(p.discount), 0) / 100.0) / c.days_in_month AS fee
            FROM staging.calendar AS c
            JOIN staging.subscriptions AS s
              ON s.start_date <= c."date" AND (s.termination_date IS NULL OR c."date" < s.termination_date)
            LEFT JOIN staging.promotions AS p
              ON p.subscription_id = s.subscription_id AND p.valid_from <= c."date"
             AND (p.valid_to IS NULL OR c."date" <= p.valid_to)
            WHERE s.monthly_fee IS NOT NULL
            GROUP BY c."date", s.subscription_id, s.payment_type, s.monthly_fee, c.days_in_month
        ), e AS (SELECT "date", payment_type, sum(fee) AS accrued FROM acc GROUP BY ALL),
        m AS (SELECT "date", payment_type, sum(fee_revenue) AS mart_fees FROM marts.zone_daily GROUP BY ALL)
        SELECT coalesce(m."date", e."date") AS "date", coalesce(m.payment_type, e.payment_type) AS payment_type,
               coalesce(mart_fees, 0) AS mart_fees, coalesce(accrued, 0) AS accrued
        FROM m FULL OUTER JOIN e ON m."date" = e."date" AND m.payment_type IS NOT DISTINCT FROM e.payment_type
        WHERE abs(coalesce(mart_fees, 0) - coalesce(accrued, 0)) >= {CENT_TOLERANCE}
        ORDER BY 1, 2
    """
    return Check(name="reconcile:fee_revenue", table="marts.zone_daily", sql=sql,
                 requires=("staging.calendar", "staging.subscriptions", "staging.promotions"),
                 description="recurring fees per day and payment type = the daily fee accrual, to the cent")


def scorecard_revenue_check() -> Check:
    """The scorecard's whole-period revenue equals zone_daily's revenue over all days."""
    sql = f"""
        WITH s AS (SELECT coalesce(sum(revenue), 0) AS scorecard FROM marts.zone_scorecard WHERE period = 'all'),
             d AS (SELECT coalesce(sum(revenue), 0) AS zone_daily FROM marts.zone_daily)
        SELECT scorecard, zone_daily FROM s, d WHERE abs(scorecard - zone_daily) >= {CENT_TOLERANCE}
    """
    return Check(name="reconcile:scorecard_revenue", table="marts.zone_scorecard", sql=sql,
                 requires=("marts.zone_daily",),
                 description="zone_scorecard revenue (period all) = zone_daily revenue, to the cent")


def reject_rate_check(limit: float) -> Check:
    """No source's quarantined share of the rows read in the latest load exceeds `limit`."""
    sql = """
        SELECT source, sum(rows_read) AS rows_read, sum(rows_quarantined) AS rows_quarantined,
               sum(rows_quarantined) / sum(rows_read) AS reject_rate
        FROM raw.manifest WHERE load_id = (SELECT max(load_id) FROM raw.manifest)
        GROUP BY source HAVING sum(rows_read) > 0 AND sum(rows_quarantined) / sum(rows_read) > ?
        ORDER BY source
    """
    return Check(name="reject_rate", table="raw.manifest", sql=sql, params=(limit,),
                 description=f"quarantined share of each source's rows in the latest load at most {limit:g}")


def checks_for(con: duckdb.DuckDBPyConnection, models: Mapping[str, Model], *,
               settings: Settings, rebuilt: Mapping[str, Collection[dt.date | None]] | None = None) -> list[Check]:
    """Every check that applies to the built `models`: keys, ranges, reconciliations, registered ones.

    `rebuilt` gives, for partitioned models an incremental build rebuilt by dates, those dates: their key
    checks read only the rows those dates involve (`key_check`).
    """
    rebuilt = rebuilt or {}
    out: list[Check] = []
    for m in models.values():
        by_dates = m.name in rebuilt and scoped_by_dates(m)
        out.append(key_check(m, dates=rebuilt[m.name] if by_dates else None))
        out += range_checks(m.name, table_columns(con, m.name))
    if "marts.zone_daily" in models:
        out += [usage_revenue_check(), fee_revenue_check()]
    if "marts.zone_scorecard" in models and "marts.zone_daily" in models:
        out.append(scorecard_revenue_check())
    out += [c for c in REGISTERED.values() if c.table in models or table_exists(con, c.table)]
    return out


def run_checks(con: duckdb.DuckDBPyConnection, checks: Iterable[Check], *,
               max_examples: int = MAX_EXAMPLES) -> list[CheckResult]:
    """Run each check; a check whose query fails is a failed check whose example is the error.

    A check on a table that does not exist (a source never loaded, no manifest yet) passes with no rows:
    there is nothing in it to be wrong.
    """
    results = []
    for c in checks:
        missing = [t for t in (c.table, *c.requires) if not table_exists(con, t)]
        if missing:
            results.append(CheckResult(c.name, c.table, True, 0, (), c.description + " (skipped: no "
                                       + ", ".join(missing) + ")"))
            continue
        try:
            n_bad = int(con.execute(f"SELECT count(*) FROM ({c.sql})", list(c.params)).fetchall()[0][0])
            examples: tuple[dict, ...] = ()
            if n_bad:
                cur = con.execute(f"SELECT * FROM ({c.sql}) LIMIT {int(max_examples)}", list(c.params))
                names = [d[0] for d in cur.description]
                examples = tuple({n: _jsonable(v) for n, v in zip(names, row)} for row in cur.fetchall())
        except duckdb.Error as e:
            results.append(CheckResult(c.name, c.table, False, 1, ({"error": str(e)},), c.description))
            continue
        results.append(CheckResult(c.name, c.table, n_bad == 0, n_bad, examples, c.description))
    for r in results:
        if not r.passed:
            log.warning("check %s on %s failed: %d bad row(s), e.g. %s", r.name, r.table, r.n_bad,
                        json.dumps(list(r.examples[:2]), default=str))
    return results


def write_checks(con: duckdb.DuckDBPyConnection, results: Sequence[CheckResult], *, engine: str,
                 checked_at: dt.datetime) -> None:
    """Replace `meta.checks` with these results (the checks of the last build)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    con.execute(
        'CREATE OR REPLACE TABLE meta.checks (name VARCHAR, "table" VARCHAR, passed BOOLEAN, n_bad BIGINT, '
        "examples JSON, description VARCHAR, engine VARCHAR, checked_at TIMESTAMP)"
    )
    if results:
        con.executemany(
            "INSERT INTO meta.checks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [(r.name, r.table, r.passed, r.n_bad, json.dumps(list(r.examples), default=str), r.description,
              engine, checked_at) for r in results],
        )


def failure_message(results: Sequence[CheckResult]) -> str:
    """One sentence per failed check: its name, table, count of bad rows and the first example."""
    lines = []
    for r in results:
        if not r.passed:
            first = json.dumps(r.examples[0], default=str) if r.examples else "no example"
            lines.append(f"check {r.name} on table {r.table} failed: {r.n_bad} bad row(s), expected "
                         f"{r.description}; first: {first}")
    return "; ".join(lines)


def table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    """Whether the qualified table (or view) `schema.table` exists in the connected database."""
    schema, _, table = name.partition(".")
    rows = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table],
    ).fetchall()
    return bool(rows[0][0])


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[str]:
    """The column names of the qualified table `schema.table` (none if it does not exist)."""
    schema, _, table = name.partition(".")
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
        "ORDER BY ordinal_position",
        [schema, table],
    ).fetchall()
    return [r[0] for r in rows]


def _jsonable(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, (dt.date, dt.datetime, dt.time)):
        return v.isoformat()
    return v
