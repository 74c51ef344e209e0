"""Queries of the assurance page: alarms (refreshed and live), the customers each affects, outage
simulation, and the contact list. A reader and plain values in, Polars frames out; values reach SQL only
as parameters.

The affected customers of an alarm follow the rule of `marts.alarm_customers` (etl/transforms/
marts_assurance.py), computed here with read-only queries so that an alarm that arrived between refreshes
gets the same answer a refresh would give it:

- `majority`: customers with at least one charging event on the alarm's cells in the 168 hours before
  the alarm was raised, for whom those cells carried more than half of their events with a cell then;
- `home_cell`: customers whose most-used cell in that window (their home cell; ties: the smallest cell id)
  is one of the alarm's cells, but who fall short of the majority.

The headline figures (customers affected, revenue per hour at stake) count `majority` customers only, as
the mart does; `home_cell` customers are listed after them, marked, for the contact list. A live alarm
raised after the loaded data ends is judged on the last 168 hours the warehouse holds (the window ends at
the data's as-of time), since no later usage is known yet.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import polars as pl

from app.warehouse import WarehouseReader
from etl.live_alarms import LiveAlarm, LiveFolder, superseded

IMPACT_WINDOW_HOURS = 7 * 24  # the mart's window (etl.transforms.marts_assurance.IMPACT_WINDOW_HOURS)
HOURS_PER_MONTH = 730.5  # as etl.transforms.marts_customer
RISK_ORDER = {"high": 0, "medium": 1, "low": 2}
#: Personal data on this page: shown and exported only to roles that may see it (app/auth.py's `mask`).
PII_COLUMNS = ("name", "msisdn")

ALARM_COLUMNS = {
    "alarm_id": pl.String, "source": pl.String, "alarmed_object_id": pl.String,
    "alarmed_object_type": pl.String, "alarm_type": pl.String, "perceived_severity": pl.String,
    "probable_cause": pl.String, "specific_problem": pl.String, "service_affecting": pl.Boolean,
    "raised_at": pl.Datetime("us"), "cleared_at": pl.Datetime("us"), "is_open": pl.Boolean,
    "duration_min": pl.Float64, "site_id": pl.String, "cell_ids": pl.String, "zone_ids": pl.String,
    "n_cells_affected": pl.Int64, "n_customers_affected": pl.Int64, "n_vip_affected": pl.Int64,
    "revenue_per_hour_at_stake": pl.Float64, "file": pl.String,
}
IMPACT_SCHEMA = {
    "alarm_id": pl.String, "customer_id": pl.String, "tier": pl.String, "n_events_on_alarm_cells": pl.Int64,
    "n_events_7d": pl.Int64, "share_on_alarm_cells": pl.Float64, "home_cell_id": pl.String,
    "usage_revenue_7d": pl.Float64, "monthly_fee_total": pl.Float64, "revenue_per_hour": pl.Float64,
}


@dataclass(frozen=True)
class AlarmSpec:
    """What the rule needs of an alarm: its id, the object in alarm and when it was raised."""

    alarm_id: str
    object_id: str
    object_type: str
    raised_at: datetime


# ------------------------------------------------------------------------------------------- as-of time


def as_of(db: WarehouseReader) -> datetime | None:
    """The data's as-of time for alarms: the end of the loaded data (`marts.alarm_impact.as_of_at`), the
    "now" of open and recent alarms (never the wall clock, so the same data always shows the same)."""
    if db.has_table("marts.alarm_impact"):
        df = db.query("SELECT max(as_of_at) AS t FROM marts.alarm_impact")
        if df.height and df["t"][0] is not None:
            return df["t"][0]
    if db.has_table("marts.freshness"):
        df = db.query("SELECT max(as_of) AS t FROM marts.freshness")
        if df.height and df["t"][0] is not None:
            return df["t"][0]
    return None


# ---------------------------------------------------------------------------------------------- alarms


def refreshed_alarms(db: WarehouseReader, *, since: datetime | None) -> pl.DataFrame:
    """Alarms of the live version that are open, or were raised or cleared at or after `since` (all when
    None), with the mart's impact figures."""
    if not db.has_table("marts.alarm_impact"):
        return pl.DataFrame(schema=ALARM_COLUMNS)
    df = db.query(
        """
        SELECT alarm_id, 'refreshed' AS source, alarmed_object_id, alarmed_object_type, alarm_type,
               perceived_severity, probable_cause, specific_problem, service_affecting, raised_at, cleared_at,
               is_open, duration_min, site_id, cell_ids, zone_ids, n_cells_affected, n_customers_affected,
               n_vip_affected, revenue_per_hour_at_stake, NULL::VARCHAR AS file
        FROM marts.alarm_impact
        WHERE $since IS NULL OR is_open OR raised_at >= $since OR cleared_at >= $since
        ORDER BY raised_at DESC, alarm_id
        """,
        {"since": since},
    )
    return df.cast(ALARM_COLUMNS)


def warehouse_alarm_states(db: WarehouseReader, alarm_ids: Sequence[str]) -> dict[str, LiveAlarm]:
    """The live version's alarms among `alarm_ids`, as `LiveAlarm`s (to tell which live files they supersede)."""
    if not alarm_ids or not db.has_table("staging.alarms"):
        return {}
    df = db.query(
        "SELECT alarm_id, alarmed_object_id, alarmed_object_type, alarm_type, perceived_severity, probable_cause, "
        "specific_problem, service_affecting, raised_at, cleared_at FROM staging.alarms "
        "WHERE list_contains($ids, alarm_id)", {"ids": list(alarm_ids)})
    return {r["alarm_id"]: LiveAlarm(**r) for r in df.to_dicts()}


def live_alarm_rows(db: WarehouseReader, live: LiveFolder, *, as_of_at: datetime | None,
                    since: datetime | None) -> tuple[pl.DataFrame, list[tuple[str, str]], list[str]]:
    """The watched folder's alarms as alarm rows with their impact by the shared rule.

    Returns (rows, problems, superseded ids): a live alarm on a cell or site the inventory does not know is
    a problem (file, message) and is skipped; one the warehouse holds is superseded by it (and skipped),
    unless it clears an alarm the warehouse still has open, which then shows as cleared.
    """
    refreshed = warehouse_alarm_states(db, [a.alarm_id for a in live.alarms])
    inventory = object_inventory(db, [(a.alarmed_object_id, a.alarmed_object_type) for a in live.alarms])
    problems: list[tuple[str, str]] = []
    gone: list[str] = []
    keep: list[LiveAlarm] = []
    for a in live.alarms:
        if superseded(a, refreshed.get(a.alarm_id)):
            gone.append(a.alarm_id)
            continue
        if (a.alarmed_object_id, a.alarmed_object_type) not in inventory:
            problems.append((a.file, (f"{a.alarmed_object_type} {a.alarmed_object_id} of alarm {a.alarm_id} is not "
                             f"in the live version's inventory (file {a.file}, field alarmedObject.id); expected "
                             f"a {a.alarmed_object_type} id of staging.{a.alarmed_object_type}s")))
            continue
        if since is not None and a.cleared_at is not None and a.cleared_at < since and a.raised_at < since:
            continue
        keep.append(a)
    if not keep:
        return pl.DataFrame(schema=ALARM_COLUMNS), problems, gone
    specs = [AlarmSpec(a.alarm_id, a.alarmed_object_id, a.alarmed_object_type, a.raised_at) for a in keep]
    impact = affected_customers(db, specs, as_of_at=as_of_at)
    summary = summarise_impact(impact, vip=vip_flags(db, impact["customer_id"].unique().to_list()))
    cells = alarm_cells(db, specs)
    rows = []
    for a in keep:
        c = cells.filter(pl.col("alarm_id") == a.alarm_id)
        s = summary.get(a.alarm_id, {})
        end = a.cleared_at or max(as_of_at or a.raised_at, a.raised_at)
        rows.append({
            "alarm_id": a.alarm_id, "source": "live", "alarmed_object_id": a.alarmed_object_id,
            "alarmed_object_type": a.alarmed_object_type, "alarm_type": a.alarm_type,
            "perceived_severity": a.perceived_severity, "probable_cause": a.probable_cause,
            "specific_problem": a.specific_problem, "service_affecting": a.service_affecting,
            "raised_at": a.raised_at, "cleared_at": a.cleared_at, "is_open": a.is_open,
            "duration_min": max((end - a.raised_at).total_seconds() / 60, 0.0),
            "site_id": c["site_id"][0] if c.height else None,
            "cell_ids": ",".join(sorted(c["cell_id"].to_list())),
            "zone_ids": ",".join(sorted({z for z in c["zone_id"].to_list() if z})),
            "n_cells_affected": c.height, "n_customers_affected": s.get("n_customers", 0),
            "n_vip_affected": s.get("n_vip", 0), "revenue_per_hour_at_stake": s.get("revenue_per_hour", 0.0),
            "file": a.file,
        })
    return pl.DataFrame(rows, schema=ALARM_COLUMNS), problems, gone


def object_inventory(db: WarehouseReader, objects: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
    """Which of the (object id, cell|site) pairs the live version's inventory holds."""
    objects = list(objects)
    if not objects:
        return set()
    df = db.query(
        """
        SELECT o.object_id, o.object_type
        FROM (SELECT unnest($ids) AS object_id, unnest($types) AS object_type) o
        WHERE (o.object_type = 'cell' AND o.object_id IN (SELECT cell_id FROM staging.cells))
           OR (o.object_type = 'site' AND o.object_id IN (SELECT site_id FROM staging.sites))
        """,
        {"ids": [o for o, _ in objects], "types": [t for _, t in objects]},
    )
    return set(df.rows())


def group_alarms(alarms: pl.DataFrame, *, as_of_at: datetime | None) -> pl.DataFrame:
    """Add `group_id` and `is_root`: alarms on one site whose active spans overlap share a root.

    The root is the group's site-level alarm (the earliest, if several), else its earliest alarm; the group
    is named after it. An open alarm lasts until the later of `as_of_at` and its raise.
    """
    if alarms.height == 0:
        return alarms.with_columns(pl.lit(None, pl.String).alias("group_id"), pl.lit(None, pl.Boolean)
                                   .alias("is_root"), pl.lit(None, pl.Int64).alias("group_size"))
    rows = alarms.sort(["raised_at", "alarm_id"]).to_dicts()
    group_of: dict[str, str] = {}
    by_site: dict[str | None, list[dict]] = {}
    for r in rows:
        by_site.setdefault(r["site_id"] or f"?{r['alarm_id']}", []).append(r)
    for members in by_site.values():
        current: list[dict] = []
        current_end: datetime | None = None
        clusters: list[list[dict]] = []
        for r in members:
            end = r["cleared_at"] or max(as_of_at or r["raised_at"], r["raised_at"])
            if current and current_end is not None and r["raised_at"] <= current_end:
                current.append(r)
                current_end = max(current_end, end)
            else:
                if current:
                    clusters.append(current)
                current, current_end = [r], end
        if current:
            clusters.append(current)
        for cluster in clusters:
            sites = [r for r in cluster if r["alarmed_object_type"] == "site"]
            root = (sites or cluster)[0]
            for r in cluster:
                group_of[r["alarm_id"]] = root["alarm_id"]
    out = alarms.with_columns(pl.col("alarm_id").replace_strict(group_of, return_dtype=pl.String).alias("group_id"))
    out = out.with_columns((pl.col("group_id") == pl.col("alarm_id")).alias("is_root"),
                           pl.len().over("group_id").cast(pl.Int64).alias("group_size"))
    # Groups in the order of their root's raise (newest first), the root first within its group.
    root_time = out.filter(pl.col("is_root")).select("group_id", pl.col("raised_at").alias("_root_at"))
    out = out.join(root_time, on="group_id", how="left")
    return out.sort(["_root_at", "group_id", "is_root", "raised_at"], descending=[True, False, True, False]
                    ).drop("_root_at")


# ----------------------------------------------------------------------------------- affected customers


def _spec_params(specs: Sequence[AlarmSpec]) -> dict:
    return {"ids": [s.alarm_id for s in specs], "objects": [s.object_id for s in specs],
            "types": [s.object_type for s in specs], "raised": [s.raised_at for s in specs]}


_SPECS_SQL = """
    specs AS (SELECT unnest($ids) AS alarm_id, unnest($objects) AS object_id, unnest($types) AS object_type,
                     unnest($raised)::TIMESTAMP AS raised_at),
    acells AS (
        SELECT DISTINCT s.alarm_id, c.cell_id, c.site_id, c.zone_id
        FROM specs s JOIN staging.cells c
          ON (s.object_type = 'site' AND c.site_id = s.object_id)
          OR (s.object_type = 'cell' AND c.cell_id = s.object_id))
"""


def alarm_cells(db: WarehouseReader, specs: Sequence[AlarmSpec]) -> pl.DataFrame:
    """The cells each alarm takes down or degrades (a site alarm: every cell of the site)."""
    if not specs:
        return pl.DataFrame(schema={"alarm_id": pl.String, "cell_id": pl.String, "site_id": pl.String,
                                    "zone_id": pl.String})
    return db.query(f"WITH {_SPECS_SQL} SELECT alarm_id, cell_id, site_id, zone_id FROM acells "
                    "ORDER BY alarm_id, cell_id", _spec_params(specs))


#: The marts the rule reads as counts for the whole hours they hold (etl/transforms/marts_assurance.py).
HOURLY_TABLES = ("marts.assurance_usage_range", "marts.cell_customers", "marts.customer_usage_hourly",
                 "marts.customer_roaming_hourly")
HOUR = timedelta(hours=1)
#: Revenue per hour is ranked to this many decimals, then by customer: sums of the same charges added in
#: another order (per event or per hour) differ in the last bits of a float and must not reorder ties.
ORDER_DIGITS = 9


@dataclass(frozen=True)
class ImpactWindow:
    """Where the rule reads an alarm's window [start, end): the whole hours [hours_from, hours_to) from the
    hourly marts (None: none), and the rest, `slices`, from the charging events."""

    start: datetime
    end: datetime
    hours: tuple[datetime, datetime] | None
    slices: tuple[tuple[datetime, datetime], ...]


def impact_window(raised_at: datetime, as_of_at: datetime | None) -> tuple[datetime, datetime]:
    """The 168 hours before the raise, ending at `as_of_at` instead when the raise is later."""
    end = as_of_at if as_of_at is not None and raised_at > as_of_at else raised_at
    return end - timedelta(hours=IMPACT_WINDOW_HOURS), end


def _floor_hour(t: datetime) -> datetime:
    return t.replace(minute=0, second=0, microsecond=0)


def _ceil_hour(t: datetime) -> datetime:
    return _floor_hour(t) + (HOUR if _floor_hour(t) < t else timedelta(0))


def split_window(start: datetime, end: datetime, usage_range: dict | None) -> ImpactWindow:
    """Split [start, end) into the whole hours the hourly marts hold and the slices read from the events.

    `usage_range` is the row of `marts.assurance_usage_range` (None: no hourly marts, every event is read).
    The hours start at the first whole hour of the window that is at or after `hours_from_at`; before them
    (a partial first hour, or a window that starts before the marts' hours) and after them (the partial last
    hour) the events are read, but never before `usage_from_at`, the first usage loaded. With no hours to
    read (`hours` None), every event of the window is read.
    """
    whole = ImpactWindow(start, end, None, ((start, end),))
    first_usage = (usage_range or {}).get("usage_from_at")
    if not usage_range or usage_range.get("hours_from_at") is None or first_usage is None:
        return whole
    lo, hi = _ceil_hour(max(start, usage_range["hours_from_at"])), _floor_hour(end)
    if lo >= hi:
        return whole
    slices = tuple((a, b) for a, b in ((max(start, first_usage), lo), (hi, end)) if a < b)
    return ImpactWindow(start, end, (lo, hi), slices)


def usage_range(db: WarehouseReader) -> dict | None:
    """The row of `marts.assurance_usage_range` of the live version (None without the hourly marts)."""
    if not all(db.has_table(t) for t in HOURLY_TABLES):
        return None

    def read() -> dict | None:
        df = db.query("SELECT hours_from_at, usage_from_at FROM marts.assurance_usage_range")
        return df.row(0, named=True) if df.height else None

    return db.memo("assurance_usage_range", read)


_WINDOW_SPECS_SQL = """
    specs AS (SELECT unnest($ids) AS alarm_id, unnest($objects) AS object_id, unnest($types) AS object_type,
                     unnest($raised)::TIMESTAMP AS raised_at, unnest($w_start)::TIMESTAMP AS w_start,
                     unnest($w_end)::TIMESTAMP AS w_end, unnest($h_from)::TIMESTAMP AS h_from,
                     unnest($h_to)::TIMESTAMP AS h_to),
    acells AS (
        SELECT DISTINCT s.alarm_id, c.cell_id
        FROM specs s JOIN staging.cells c
          ON (s.object_type = 'site' AND c.site_id = s.object_id)
          OR (s.object_type = 'cell' AND c.cell_id = s.object_id))
"""

# The rule on `cand` (alarm_id, customer_id, n_on: events on the alarm's cells in the window) and `ev`
# (alarm_id, customer_id, cell_id, n, revenue: every event of each candidate in the window, a null cell for
# events without one), whichever way they were counted.
_RULE_SQL = """
    per AS (
        SELECT alarm_id, customer_id,
               sum(n) FILTER (WHERE cell_id IS NOT NULL) AS n_events_7d,
               sum(revenue) AS usage_revenue_7d,
               first(cell_id ORDER BY n DESC, cell_id) FILTER (WHERE cell_id IS NOT NULL) AS home_cell_id
        FROM ev GROUP BY ALL),
    hit AS (
        SELECT p.*, c.n_on AS n_events_on_alarm_cells,
               CASE WHEN c.n_on * 2 > p.n_events_7d THEN 'majority' ELSE 'home_cell' END AS tier
        FROM per p JOIN cand c USING (alarm_id, customer_id)
        WHERE c.n_on * 2 > p.n_events_7d
           OR EXISTS (SELECT 1 FROM acells a WHERE a.alarm_id = p.alarm_id AND a.cell_id = p.home_cell_id)),
    hit_day AS (SELECT h.alarm_id, h.customer_id, sp.raised_at::DATE AS raised_on
                FROM hit h JOIN specs sp USING (alarm_id)),
    fees AS (
        SELECT h.alarm_id, h.customer_id, sum(s.monthly_fee) AS monthly_fee_total
        FROM hit_day h JOIN staging.subscriptions s ON s.customer_id = h.customer_id
        WHERE s.start_date <= h.raised_on AND (s.termination_date IS NULL OR s.termination_date > h.raised_on)
        GROUP BY ALL)
    SELECT h.alarm_id, h.customer_id, h.tier, h.n_events_on_alarm_cells, h.n_events_7d,
           h.n_events_on_alarm_cells / h.n_events_7d AS share_on_alarm_cells, h.home_cell_id,
           h.usage_revenue_7d, coalesce(f.monthly_fee_total, 0.0) AS monthly_fee_total,
           h.usage_revenue_7d / $hours + coalesce(f.monthly_fee_total, 0.0) / $per_month AS revenue_per_hour
    FROM hit h LEFT JOIN fees f USING (alarm_id, customer_id)
    ORDER BY h.alarm_id, h.tier DESC, round(revenue_per_hour, $order_digits) DESC, h.customer_id
"""

# Every event of the window, from staging.charging: candidates on the alarm's cells, then all their events.
_FROM_EVENTS_SQL = """
    cand AS MATERIALIZED (
        SELECT s.alarm_id, ch.customer_id, count(*) AS n_on
        FROM specs s JOIN acells a USING (alarm_id)
        JOIN staging.charging ch ON ch.cell_id = a.cell_id
         AND ch.usage_at >= s.w_start AND ch.usage_at < s.w_end
        WHERE ch.customer_id IS NOT NULL
        GROUP BY ALL),
    ev AS (
        SELECT c.alarm_id, c.customer_id, ch.cell_id, count(*) AS n, sum(ch.amount) AS revenue
        FROM cand c JOIN specs s USING (alarm_id)
        JOIN staging.charging ch ON ch.customer_id = c.customer_id
         AND ch.usage_at >= s.w_start AND ch.usage_at < s.w_end
        GROUP BY ALL),
"""

# The whole hours [h_from, h_to) from the hourly marts, the slices of the window around them from the
# events: customers the alarm's cells served then (a superset: cell_customers says which hours only by
# their first and last), then their counts per cell.
_FROM_HOURS_SQL = """
    slices AS (SELECT unnest($slice_alarm::VARCHAR[]) AS alarm_id, unnest($slice_lo::TIMESTAMP[]) AS lo,
                      unnest($slice_hi::TIMESTAMP[]) AS hi),
    near0 AS (
        SELECT s.alarm_id, cc.customer_id
        FROM specs s JOIN acells a USING (alarm_id) JOIN marts.cell_customers cc ON cc.cell_id = a.cell_id
        WHERE cc.last_hour_at >= s.h_from AND cc.first_hour_at < s.h_to
        UNION
        SELECT o.alarm_id, ch.customer_id
        FROM staging.charging ch JOIN acells a ON a.cell_id = ch.cell_id
        JOIN slices o ON o.alarm_id = a.alarm_id AND ch.usage_at >= o.lo AND ch.usage_at < o.hi
        WHERE ch.customer_id IS NOT NULL AND ({spans})),
    near AS MATERIALIZED (
        SELECT n.alarm_id, n.customer_id, s.h_from, s.h_to FROM near0 n JOIN specs s USING (alarm_id)),
    sl AS (
        SELECT o.alarm_id, ch.customer_id, ch.cell_id, count(*) AS n, sum(ch.amount) AS revenue
        FROM staging.charging ch JOIN near c ON c.customer_id = ch.customer_id
        JOIN slices o ON o.alarm_id = c.alarm_id AND ch.usage_at >= o.lo AND ch.usage_at < o.hi
        WHERE {spans}
        GROUP BY ALL),
    ev AS MATERIALIZED (
        SELECT alarm_id, customer_id, cell_id, sum(n) AS n, sum(revenue) AS revenue
        FROM (
            SELECT c.alarm_id, h.customer_id, h.cell_id, h.n_events AS n, h.amount AS revenue
            FROM near c JOIN marts.customer_usage_hourly h ON h.customer_id = c.customer_id
            WHERE h.hour_at >= c.h_from AND h.hour_at < c.h_to
              AND h.hour_at >= $hours_lo AND h.hour_at < $hours_hi
            UNION ALL
            SELECT c.alarm_id, r.customer_id, NULL AS cell_id, r.n_events AS n, r.amount AS revenue
            FROM near c JOIN marts.customer_roaming_hourly r ON r.customer_id = c.customer_id
            WHERE r.hour_at >= c.h_from AND r.hour_at < c.h_to
            UNION ALL
            SELECT alarm_id, customer_id, cell_id, n, revenue FROM sl)
        GROUP BY ALL),
    cand AS (
        SELECT e.alarm_id, e.customer_id, sum(e.n) AS n_on
        FROM ev e JOIN acells a USING (alarm_id, cell_id) GROUP BY ALL),
"""
#: At most this many separate time ranges bound the scan of the slices' events (beyond: one range over all).
MAX_SPANS = 16


def _spans(slices: Iterable[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    """The slices merged where they overlap or touch, in time order (at most MAX_SPANS: else their hull)."""
    out: list[tuple[datetime, datetime]] = []
    for lo, hi in sorted(slices):
        if out and lo <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], hi))
        else:
            out.append((lo, hi))
    if len(out) > MAX_SPANS:
        out = [(out[0][0], max(hi for _, hi in out))]
    return out


def affected_customers(db: WarehouseReader, specs: Sequence[AlarmSpec], *, as_of_at: datetime | None,
                       hourly: bool = True) -> pl.DataFrame:
    """One row per alarm per affected customer (`IMPACT_SCHEMA`), by the rule in the module docstring.

    The window is the 168 hours before the raise, ending at `as_of_at` instead when the raise is later;
    revenue per hour is the window's usage revenue / 168 plus the recurring fees of the subscriptions
    active on the day of the raise / 730.5 (as the mart).

    The whole hours of the window that the hourly marts hold are read as counts (`split_window`), the rest
    from `staging.charging`'s events; an alarm whose window the marts do not reach (an old one), or every
    alarm with `hourly=False` or on a warehouse without those marts, is read from the events alone. Both
    ways give the same rows (the sums of charges may differ in the last bits of a float).
    """
    if not specs or not db.has_table("staging.charging"):
        return pl.DataFrame(schema=IMPACT_SCHEMA)
    rng = usage_range(db) if hourly else None
    windows = [split_window(*impact_window(s.raised_at, as_of_at), rng) for s in specs]
    parts = []
    events = [(s, w) for s, w in zip(specs, windows, strict=True) if w.hours is None]
    hours = [(s, w) for s, w in zip(specs, windows, strict=True) if w.hours is not None]
    if events:
        parts.append(_rule_query(db, events, _FROM_EVENTS_SQL, {}))
    if hours:
        parts.append(_hours_query(db, hours))
    parts = [p for p in parts if p.height]
    if not parts:
        return pl.DataFrame(schema=IMPACT_SCHEMA)
    if len(parts) == 1:
        return parts[0]
    both = pl.concat(parts).with_columns(pl.col("revenue_per_hour").round(ORDER_DIGITS).alias("_m"))
    return both.sort(["alarm_id", "tier", "_m", "customer_id"], descending=[False, True, True, False],
                     nulls_last=True).drop("_m")


def _rule_query(db: WarehouseReader, specs: Sequence[tuple[AlarmSpec, ImpactWindow]], source_sql: str,
                extra: dict) -> pl.DataFrame:
    params = {
        "ids": [s.alarm_id for s, _ in specs], "objects": [s.object_id for s, _ in specs],
        "types": [s.object_type for s, _ in specs], "raised": [s.raised_at for s, _ in specs],
        "w_start": [w.start for _, w in specs], "w_end": [w.end for _, w in specs],
        "h_from": [w.hours[0] if w.hours else None for _, w in specs],
        "h_to": [w.hours[1] if w.hours else None for _, w in specs],
        "hours": IMPACT_WINDOW_HOURS, "per_month": HOURS_PER_MONTH, "order_digits": ORDER_DIGITS, **extra,
    }
    df = db.query(f"WITH {_WINDOW_SPECS_SQL}, {source_sql} {_RULE_SQL}", params)
    return df.cast(IMPACT_SCHEMA) if df.height else pl.DataFrame(schema=IMPACT_SCHEMA)


def _hours_query(db: WarehouseReader, specs: Sequence[tuple[AlarmSpec, ImpactWindow]]) -> pl.DataFrame:
    """The rule for alarms whose window the hourly marts reach. The events of the slices are read within
    explicit time ranges (`_spans`), so a table stored in time order is read only where they lie."""
    pairs = [(s.alarm_id, sl) for s, w in specs for sl in w.slices]
    spans = _spans(sl for _, sl in pairs)
    extra: dict = {
        "slice_alarm": [a for a, _ in pairs], "slice_lo": [lo for _, (lo, _) in pairs],
        "slice_hi": [hi for _, (_, hi) in pairs],
        "hours_lo": min(w.hours[0] for _, w in specs), "hours_hi": max(w.hours[1] for _, w in specs),
    }
    terms = []
    for i, (lo, hi) in enumerate(spans):
        terms.append(f"(ch.usage_at >= $span{i}_lo AND ch.usage_at < $span{i}_hi)")
        extra |= {f"span{i}_lo": lo, f"span{i}_hi": hi}
    return _rule_query(db, specs, _FROM_HOURS_SQL.format(spans=" OR ".join(terms) or "false"), extra)


def vip_flags(db: WarehouseReader, customer_ids: Sequence[str]) -> dict[str, bool]:
    if not customer_ids or not db.has_table("staging.customers"):
        return {}
    df = db.query("SELECT customer_id, segment = 'vip' AS is_vip FROM staging.customers "
                  "WHERE list_contains($ids, customer_id)", {"ids": list(customer_ids)})
    return dict(df.rows())


def summarise_impact(impact: pl.DataFrame, *, vip: dict[str, bool]) -> dict[str, dict]:
    """Per alarm: customers affected, VIPs among them and revenue per hour at stake (`majority` tier, as
    the mart counts), and the `home_cell` customers listed beside them."""
    out: dict[str, dict] = {}
    for (alarm_id,), part in impact.group_by("alarm_id"):
        core = part.filter(pl.col("tier") == "majority")
        out[alarm_id] = {
            "n_customers": core.height,
            "n_vip": sum(1 for c in core["customer_id"].to_list() if vip.get(c)),
            "revenue_per_hour": float(core["revenue_per_hour"].sum() or 0.0),
            "n_home_cell": part.height - core.height,
        }
    return out


def has_churn_scores(db: WarehouseReader) -> bool:
    return db.has_table("models.churn_scores")


def enrich_customers(db: WarehouseReader, impact: pl.DataFrame) -> pl.DataFrame:
    """The affected customers with who they are: segment, VIP, payment type, MSISDNs of their active lines,
    open tickets, churn risk (when `models.churn_scores` exists; null otherwise), ranked for contact:
    VIPs first, then high churn risk, then value (revenue per hour at stake), `majority` before `home_cell`."""
    ids = impact["customer_id"].unique().to_list()
    if not ids:
        return impact.with_columns(
            *(pl.lit(None, dtype).alias(c) for c, dtype in CUSTOMER_COLUMNS.items()), pl.lit(None, pl.Int64)
            .alias("priority"))
    people = db.query(
        """
        SELECT c.customer_id, c.name, c.segment, c.segment = 'vip' AS is_vip, c.home_zone_id,
               c360.payment_type, c360.usage_revenue_30d, c360.n_open_tickets, c360.n_network_tickets,
               subs.msisdn
        FROM staging.customers c
        LEFT JOIN marts.customer_360 c360 USING (customer_id)
        LEFT JOIN (SELECT customer_id, string_agg(msisdn, ' ' ORDER BY start_date, msisdn) AS msisdn
                   FROM staging.subscriptions WHERE is_active AND list_contains($ids, customer_id)
                   GROUP BY customer_id) subs USING (customer_id)
        WHERE list_contains($ids, c.customer_id)
        """,
        {"ids": ids},
    )
    if has_churn_scores(db):
        churn = db.query(
            "SELECT customer_id, probability AS churn_probability, risk_band AS churn_risk, "
            "reasons_text AS churn_reasons FROM models.churn_scores "
            "WHERE list_contains($ids, customer_id)", {"ids": ids})
    else:
        churn = pl.DataFrame(schema={"customer_id": pl.String, "churn_probability": pl.Float64,
                                     "churn_risk": pl.String, "churn_reasons": pl.String})
    out = impact.join(people, on="customer_id", how="left").join(
        churn.unique("customer_id"), on="customer_id", how="left")
    out = out.cast({c: t for c, t in CUSTOMER_COLUMNS.items() if c in out.columns})
    return rank_customers(out)


CUSTOMER_COLUMNS = {
    "name": pl.String, "segment": pl.String, "is_vip": pl.Boolean, "home_zone_id": pl.String,
    "payment_type": pl.String, "usage_revenue_30d": pl.Float64, "n_open_tickets": pl.Int64,
    "n_network_tickets": pl.Int64, "msisdn": pl.String, "churn_probability": pl.Float64,
    "churn_risk": pl.String, "churn_reasons": pl.String,
}


def rank_customers(df: pl.DataFrame) -> pl.DataFrame:
    """Order for proactive contact, per alarm: `majority` before `home_cell`, VIPs first, then churn risk
    (high, medium, low, unknown), then revenue per hour at stake (to ORDER_DIGITS decimals), then customer id;
    `priority` numbers the order from 1."""
    key = df.with_columns(
        (pl.col("tier") != "majority").alias("_t"),
        (~pl.col("is_vip").fill_null(False)).alias("_v"),
        pl.col("churn_risk").replace_strict(RISK_ORDER, default=3, return_dtype=pl.Int64).alias("_r"),
        (-pl.col("revenue_per_hour").fill_null(0.0).round(ORDER_DIGITS)).alias("_m"),
    ).sort(["alarm_id", "_t", "_v", "_r", "_m", "customer_id"])
    return key.with_columns(pl.int_range(1, pl.len() + 1).over("alarm_id").cast(pl.Int64).alias("priority")
                            ).drop("_t", "_v", "_r", "_m")


# ------------------------------------------------------------------------------------- the area and map


def affected_area(db: WarehouseReader, specs: Sequence[AlarmSpec]) -> pl.DataFrame:
    """The alarm's cells and the other cells of the zones they lie in, with coordinates, for the map:
    `cell_id`, `site_id`, `zone_id`, `technology`, `latitude`, `longitude`, `is_in_alarm`."""
    if not specs:
        return pl.DataFrame()
    return db.query(
        f"""
        WITH {_SPECS_SQL}
        SELECT c.cell_id, c.site_id, c.zone_id, c.technology, c.latitude, c.longitude, c.status,
               c.cell_id IN (SELECT cell_id FROM acells) AS is_in_alarm
        FROM staging.cells c
        WHERE c.cell_id IN (SELECT cell_id FROM acells)
           OR c.zone_id IN (SELECT zone_id FROM acells WHERE zone_id IS NOT NULL)
        ORDER BY is_in_alarm, c.cell_id
        """,
        _spec_params(specs),
    )


def zones_geojson(db: WarehouseReader, zone_ids: Sequence[str]
                  ) -> tuple[dict, tuple[float, float, float, float] | None]:
    """The outlines of `zone_ids` (feature id = zone_id) and their bounding box."""
    if not zone_ids or not db.has_table("staging.zones_map"):
        return {"type": "FeatureCollection", "features": []}, None
    df = db.query("SELECT zone_id, zone_name, geojson, bbox_min_lon, bbox_min_lat, bbox_max_lon, bbox_max_lat "
                  "FROM staging.zones_map WHERE list_contains($ids, zone_id) ORDER BY zone_id",
                  {"ids": list(zone_ids)})
    if df.height == 0:
        return {"type": "FeatureCollection", "features": []}, None
    features = [{"type": "Feature", "id": z, "properties": {"zone_id": z, "zone_name": n},
                 "geometry": json.loads(g)} for z, n, g in df.select("zone_id", "zone_name", "geojson").rows()]
    bbox = (df["bbox_min_lon"].min(), df["bbox_min_lat"].min(), df["bbox_max_lon"].max(), df["bbox_max_lat"].max())
    return {"type": "FeatureCollection", "features": features}, bbox


def zone_names(db: WarehouseReader, zone_ids: Sequence[str]) -> dict[str, str]:
    if not zone_ids or not db.has_table("staging.zones"):
        return {}
    df = db.query("SELECT zone_id, zone_name FROM staging.zones WHERE list_contains($ids, zone_id)",
                  {"ids": list(zone_ids)})
    return dict(df.rows())


# ------------------------------------------------------------------------------------ outage simulation


def object_choices(db: WarehouseReader) -> list[dict]:
    """Every site and cell of the inventory as select options (`site:S0001`, `cell:C0001-1`)."""
    if not db.has_table("staging.cells"):
        return []
    df = db.query(
        """
        SELECT 'site:' || s.site_id AS value, 'site ' || s.site_id || coalesce(' ' || s.name, '')
               || coalesce(' (' || z.zone_name || ')', '') AS label, 0 AS k, s.site_id AS o
        FROM staging.sites s LEFT JOIN staging.zones z ON z.zone_id = s.zone_id
        UNION ALL
        SELECT 'cell:' || c.cell_id, 'cell ' || c.cell_id || ' ' || c.technology || coalesce(' (' || z.zone_name || ')', ''),
               1, c.cell_id
        FROM staging.cells c LEFT JOIN staging.zones z ON z.zone_id = c.zone_id
        ORDER BY k, o
        """
    )
    return [{"value": v, "label": lab} for v, lab in df.select("value", "label").rows()]


@dataclass(frozen=True)
class OutageEstimate:
    """What an outage of a site or cell at the data's as-of time would cost (the same rule as alarms)."""

    object_type: str
    object_id: str
    at: datetime | None
    n_cells: int
    n_customers: int
    n_vip: int
    revenue_per_hour: float
    n_high_churn_risk: int | None
    """None when no churn scores are published."""
    n_home_cell: int


def simulate_outage(db: WarehouseReader, object_type: str, object_id: str) -> OutageEstimate:
    at = as_of(db)
    spec = AlarmSpec("simulation", object_id, object_type, at or datetime(1970, 1, 1))
    impact = affected_customers(db, [spec], as_of_at=at)
    people = enrich_customers(db, impact)
    core = people.filter(pl.col("tier") == "majority")
    return OutageEstimate(
        object_type=object_type, object_id=object_id, at=at, n_cells=alarm_cells(db, [spec]).height,
        n_customers=core.height, n_vip=int(core["is_vip"].fill_null(False).sum()),
        revenue_per_hour=float(core["revenue_per_hour"].sum() or 0.0),
        n_high_churn_risk=int((core["churn_risk"] == "high").sum()) if has_churn_scores(db) else None,
        n_home_cell=people.height - core.height,
    )


# ----------------------------------------------------------------------------------------- contact list


def contact_message(alarm: dict, *, zone_label: str | None) -> str:
    """What to tell an affected customer about an alarm, in plain words (no jargon, no internal ids)."""
    where = f"in {zone_label}" if zone_label else "in your area"
    what = "calls and mobile data" if alarm.get("service_affecting", True) else "the quality of your service"
    since = alarm["raised_at"]
    if alarm.get("cleared_at") is None:
        return (f"We are aware of a network problem {where} since {since:%d %b %H:%M} UTC that may affect "
                f"{what}. Our engineers are working on it; we will let you know as soon as it is fixed.")
    took = alarm["cleared_at"] - since
    hours = took.total_seconds() / 3600
    span = f"{hours:.1f} hours" if hours >= 1 else f"{max(took.total_seconds() / 60, 1):.0f} minutes"
    return (f"A network problem {where} on {since:%d %b} from {since:%H:%M} UTC may have affected {what} for "
            f"about {span}. It has been fixed; we apologise for the inconvenience.")


def suggested_action(row: dict) -> str:
    if row.get("is_vip"):
        return "call (VIP); offer a goodwill credit"
    if row.get("churn_risk") == "high":
        return "call (high churn risk); offer a goodwill credit"
    if (row.get("n_open_tickets") or 0) > 0:
        return "call (open ticket): link it to the alarm"
    return "SMS"


CONTACT_COLUMNS = (
    "priority", "alarm_id", "customer_id", "name", "msisdn", "segment", "payment_type", "churn_risk",
    "why_affected", "share_on_alarm_cells", "revenue_per_hour", "suggested_action", "message",
)


def contact_list(customers: pl.DataFrame, alarm: dict, *, zone_label: str | None) -> pl.DataFrame:
    """The affected customers of one alarm as a contact list: who, why, what to do and what to tell them."""
    message = contact_message(alarm, zone_label=zone_label)
    rows = []
    for r in customers.to_dicts():
        share = r.get("share_on_alarm_cells") or 0.0
        why = (f"{share:.0%} of their usage in the 7 days before was on these cells" if r["tier"] == "majority"
               else f"their most-used cell {r.get('home_cell_id')} is in alarm ({share:.0%} of their usage)")
        rows.append({**{c: r.get(c) for c in CONTACT_COLUMNS}, "why_affected": why,
                     "share_on_alarm_cells": round(share, 4),
                     "revenue_per_hour": round(r.get("revenue_per_hour") or 0.0, 4),
                     "suggested_action": suggested_action(r), "message": message})
    schema = {c: pl.String for c in CONTACT_COLUMNS} | {"priority": pl.Int64, "share_on_alarm_cells": pl.Float64,
                                                      "revenue_per_hour": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


# ------------------------------------------------------------------------------------------ CSV safety

#: First characters that make a spreadsheet read a cell as a formula (OWASP: CSV injection).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: object) -> object:
    """A cell value that a spreadsheet cannot run: text starting with =, +, -, @, tab or CR is prefixed
    with a single quote (OWASP's advice); numbers, booleans and empty values are left as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def to_safe_csv(df: pl.DataFrame) -> str:
    """The frame as CSV text (every field quoted) whose text cells are neutralised by `csv_safe`."""
    buf = io.StringIO()
    writer = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    writer.writerow([csv_safe(c) for c in df.columns])
    for row in df.iter_rows():
        writer.writerow(["" if v is None else csv_safe(_plain(v)) for v in row])
    return buf.getvalue()


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, timedelta):
        return str(value)
    return value
