"""Queries of the customer view and search, and the care agent's answer: a reader and plain values in,
Polars frames (or small dataclasses) out.

Every result that can carry personal data passes through `app.auth.mask` here, in the query layer, so
what a page shows, what its grids export and what its callbacks return are masked alike for roles that
may not see it. "Now" is the data's as-of time (the latest event loaded), never the wall clock. Values
reach SQL only as parameters.

The care answer is split in two: `care_facts` gathers what the warehouse knows about the customer's
cells (alarms, KPI breaches, who else uses them) and `care_answer` turns those facts into one sentence,
what to tell the customer, and the evidence; the second is a pure function, tested on literal facts.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import polars as pl

from app.auth import Viewer, mask
from app.constants import KPIS
from app.queries import zones_geojson
from app.warehouse import WarehouseReader
from etl.transforms.marts_search import PROFILE_COLUMNS

#: The care answer looks this far back from the data's as-of time.
CARE_WINDOW_HOURS = 72
#: The timeline shows the customer's usage and their cells' KPIs hour by hour over this many days.
TIMELINE_DAYS = 7
#: A cell is "where the customer is" when it carries at least this share of their recent usage (the
#: main cell always is).
MIN_CELL_SHARE = 0.10
#: Cells drawn on the timeline (the customer's most used).
TIMELINE_CELLS = 5
SEARCH_LIMIT = 25
#: Words of a name search that are matched (the rest are ignored).
MAX_NAME_TOKENS = 5
#: KPIs in the order a breach of them matters to a customer (an outage first, congestion last).
BREACH_ORDER = ("availability_pct", "accessibility_pct", "drop_rate_pct", "dl_throughput_mbps", "latency_ms",
                "prb_utilisation_pct")
SEVERITY_ORDER = {"critical": 0, "major": 1, "minor": 2, "warning": 3, "indeterminate": 4, "cleared": 5}
ALARM_TYPE_LABELS = {
    "communicationsAlarm": "communications alarm", "qualityOfServiceAlarm": "quality-of-service alarm",
    "processingErrorAlarm": "processing-error alarm", "equipmentAlarm": "equipment alarm",
    "environmentalAlarm": "environmental alarm",
}


def _fmt_at(ts: dt.datetime | None) -> str:
    return "unknown time" if ts is None else f"{ts:%d %b %H:%M} UTC"


def _fmt_duration(minutes: float) -> str:
    minutes = max(0.0, minutes)
    if minutes < 90:
        return f"{minutes:.0f} min"
    if minutes < 48 * 60:
        return f"{minutes / 60:.1f} h"
    return f"{minutes / 1440:.1f} days"


# ------------------------------------------------------------------------------------------- as of


def _memo(db: WarehouseReader, key: str, compute):
    """`compute()` once per published version (what only a refresh changes), when the reader keeps a memo."""
    memo = getattr(db, "memo", None)
    return memo(("customer", key), compute) if memo else compute()


def data_now(db: WarehouseReader) -> dt.datetime | None:
    """The data's as-of time: the latest usage event, KPI hour (its end) or alarm loaded."""
    def compute() -> dt.datetime | None:
        if not db.has_table("marts.freshness"):
            return None
        df = db.query(
            "SELECT max(CASE WHEN source = 'kpi_hourly' THEN as_of + INTERVAL 1 HOUR ELSE as_of END) AS now "
            "FROM marts.freshness WHERE source IN ('charging', 'kpi_hourly', 'alarms') AND is_loaded"
        )
        return df["now"][0] if df.height else None

    return _memo(db, "data_now", compute)


def version_and_asof(db: WarehouseReader) -> tuple[str, dt.datetime | None, list[str]]:
    """The live version's name, the data's as-of time, and the sources that are not loaded."""
    version = db.version.name

    def missing() -> list[str]:
        if not db.has_table("marts.freshness"):
            return []
        return db.query("SELECT source FROM marts.freshness WHERE NOT is_loaded ORDER BY source")["source"].to_list()

    return version, data_now(db), _memo(db, "missing_sources", missing)


def table_columns(db: WarehouseReader, table: str) -> frozenset[str]:
    """The columns of a table of the live version (once per version; empty when there is no such table)."""
    def compute() -> frozenset[str]:
        if not db.has_table(table):
            return frozenset()
        schema, _, name = table.partition(".")
        return frozenset(db.query("SELECT column_name FROM information_schema.columns WHERE table_schema = ? "
                                  "AND table_name = ?", [schema, name])["column_name"].to_list())

    return _memo(db, f"columns:{table}", compute)


def zone_names(db: WarehouseReader) -> dict[str, str]:
    """Zone id -> zone name (once per version)."""
    return _memo(db, "zone_names", lambda: dict(db.query("SELECT zone_id, zone_name FROM staging.zones").rows()))


CELL_INFO_SCHEMA = {"cell_id": pl.String, "site_id": pl.String, "technology": pl.String, "band_mhz": pl.Int64,
                    "latitude": pl.Float64, "longitude": pl.Float64, "zone_id": pl.String, "zone_name": pl.String}


def cell_info(db: WarehouseReader) -> pl.DataFrame:
    """Every cell with its site, technology, location and zone (once per version: a few thousand rows)."""
    return _memo(db, "cell_info", lambda: db.query(
        "SELECT c.cell_id, c.site_id, c.technology, c.band_mhz, c.latitude, c.longitude, c.zone_id, z.zone_name "
        "FROM staging.cells c LEFT JOIN staging.zones z ON z.zone_id = c.zone_id").cast(CELL_INFO_SCHEMA))


def zone_outlines(db: WarehouseReader) -> dict:
    """Every zone's simplified outline as one FeatureCollection (feature id = zone_id), once per version."""
    return _memo(db, "zone_outlines", lambda: zones_geojson(db)[0])


def alarm_table(db: WarehouseReader) -> pl.DataFrame:
    """Every alarm with its place, cause and impact (marts.alarm_impact), and the names of its zones
    (once per version: alarms are few beside customers)."""
    def compute() -> pl.DataFrame:
        if not db.has_table("marts.alarm_impact"):
            return pl.DataFrame()
        df = db.query(
            "SELECT alarm_id, alarmed_object_id, alarmed_object_type, alarm_type, perceived_severity, "
            "probable_cause, specific_problem, service_affecting, raised_at, cleared_at, is_open, duration_min, "
            "site_id, cell_ids, zone_ids, n_customers_affected FROM marts.alarm_impact")
        names = zone_names(db)
        return df.with_columns(zone_names=pl.col("zone_ids").map_elements(
            lambda z: ", ".join(names.get(x, x) for x in z.split(",") if x) or None, return_dtype=pl.String))

    return _memo(db, "alarm_table", compute)


def alarm_cell_table(db: WarehouseReader) -> pl.DataFrame:
    """(alarm_id, cell_id) for every cell each alarm touches (once per version)."""
    return _memo(db, "alarm_cells", lambda: db.query("SELECT DISTINCT alarm_id, cell_id FROM staging.alarm_cells")
                 if db.has_table("staging.alarm_cells") else pl.DataFrame(schema={"alarm_id": pl.String,
                                                                                  "cell_id": pl.String}))


def main_cell_counts(db: WarehouseReader) -> dict[str, int]:
    """Per cell, how many customers have it as their main cell (once per version)."""
    return _memo(db, "main_cell_counts", lambda: dict(db.query(
        "SELECT cell_id, count(*) AS n FROM marts.subscriber_cell_usage WHERE is_main_cell GROUP BY cell_id"
    ).rows()))


# ------------------------------------------------------------------------------------------- search


SearchKind = Literal["customer_id", "msisdn", "name", "empty", "too_short"]
_PHONE = re.compile(r"^[+\d\s().\-/]+$")
_CUSTOMER_ID = re.compile(r"^[A-Za-z]{1,4}[-_]?\d+$")


@dataclass(frozen=True)
class SearchQuery:
    """What a search box's text asks for: a customer id, a number (as digits), or name words."""

    text: str
    kind: SearchKind
    value: str = ""
    tokens: tuple[str, ...] = ()


def fold_name(text: str) -> str:
    """Lower case, accents dropped (Unicode NFKD), every run of other characters than a-z and 0-9 one
    space: the same folding as `marts.customer_search.name_key` (without its leading space)."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return re.sub(r"[^a-z0-9]+", " ", plain).strip()


def msisdn_digits(text: str) -> str:
    """A phone number as digits only, an international `00` prefix dropped (as `marts.msisdn_lookup`)."""
    digits = re.sub(r"\D", "", text)
    return digits.removeprefix("00")


def parse_search(text: str | None) -> SearchQuery:
    """Classify a search text: a phone number in any notation (`+39 312 345 6789`, `0039...`, `312-345...`,
    `(312) 345 6789`), a customer id (`CU0000042`), or words of a name."""
    t = (text or "").strip()
    if not t:
        return SearchQuery(t, "empty")
    if _PHONE.match(t):
        digits = msisdn_digits(t)
        return SearchQuery(t, "msisdn", digits) if len(digits) >= 6 else SearchQuery(t, "too_short", digits)
    if _CUSTOMER_ID.match(t):
        return SearchQuery(t, "customer_id", re.sub(r"[-_]", "", t).upper())
    tokens = tuple(fold_name(t).split())[:MAX_NAME_TOKENS]
    if not tokens or sum(len(w) for w in tokens) < 2:
        return SearchQuery(t, "too_short")
    return SearchQuery(t, "name", " ".join(tokens), tokens)


@dataclass(frozen=True)
class SearchResult:
    query: SearchQuery
    rows: pl.DataFrame
    total: int
    note: str | None = None


SEARCH_COLUMNS = {"customer_id": pl.String, "name": pl.String, "segment": pl.String, "customer_status": pl.String,
                  "home_zone_id": pl.String, "zone_name": pl.String, "msisdns": pl.String,
                  "n_active_subscriptions": pl.Int64, "matched_on": pl.String}


def _empty_search() -> pl.DataFrame:
    return pl.DataFrame(schema=SEARCH_COLUMNS)


def search_customers(db: WarehouseReader, text: str | None, *, viewer: Viewer | None,
                     limit: int = SEARCH_LIMIT) -> SearchResult:
    """Customers matching a customer id (exact, or its beginning), a phone number in any notation
    (the number with its country code, the national number, or with a trunk 0), or the beginnings of the
    words of a name (accents and case ignored). Roles that see personal data masked may search by
    customer id only: a name or a number would find a person through their personal data.
    """
    q = parse_search(text)
    if q.kind == "empty":
        return SearchResult(q, _empty_search(), 0)
    if q.kind == "too_short":
        return SearchResult(q, _empty_search(), 0, "Type at least 6 digits of a number, two letters of a name, "
                                                    "or a customer id.")
    if q.kind in ("msisdn", "name") and not (viewer and viewer.sees_personal_data):
        return SearchResult(q, _empty_search(), 0, "Your roles see personal data masked, so you may search by "
                                                    "customer id only (for example CU0000042).")
    if not db.has_table("marts.customer_search"):
        return SearchResult(q, _empty_search(), 0, "The warehouse has no search table yet: run `opencem refresh`.")
    # First the matching customers (a page of them, and how many there are), then their numbers: both
    # read tables stored in customer order.
    common = ("s.customer_id, s.name, s.segment, s.customer_status, s.home_zone_id, s.n_active_subscriptions, "
              "count(*) OVER () AS total")
    if q.kind == "customer_id":
        df = db.query(
            f"""SELECT {common}, 'customer id' AS matched_on FROM marts.customer_search s
            WHERE s.customer_id = $id OR starts_with(s.customer_id, $id)
            ORDER BY s.customer_id <> $id, s.customer_id LIMIT $limit""",
            {"id": q.value, "limit": limit},
        )
    elif q.kind == "msisdn":
        trunk = q.value.lstrip("0") if q.value.startswith("0") else q.value
        df = db.query(
            f"""WITH hits AS (
                SELECT customer_id, bool_or(msisdn_digits = $d) AS exact FROM marts.msisdn_lookup
                WHERE msisdn_digits = $d
                   OR (ends_with(msisdn_digits, $d) AND length(msisdn_digits) - length($d) BETWEEN 1 AND 3)
                   OR (ends_with(msisdn_digits, $t) AND length(msisdn_digits) - length($t) BETWEEN 1 AND 3)
                   OR (ends_with($d, msisdn_digits) AND length($d) - length(msisdn_digits) BETWEEN 1 AND 3
                       AND length(msisdn_digits) >= 6)
                GROUP BY customer_id)
            SELECT {common}, 'number' AS matched_on
            FROM hits h JOIN marts.customer_search s ON s.customer_id = h.customer_id
            ORDER BY h.exact DESC, s.customer_id LIMIT $limit""",
            {"d": q.value, "t": trunk, "limit": limit},
        )
    else:
        # Each word must begin a word of the name: ' ' + word within the key (which starts with a space).
        words: dict[str, object] = {f"w{i}": " " + w for i, w in enumerate(q.tokens)}
        where = " AND ".join(f"contains(s.name_key, ${k})" for k in words)
        df = db.query(
            f"""SELECT {common}, 'name' AS matched_on FROM marts.customer_search s WHERE {where}
            ORDER BY s.name_key <> $full, s.name, s.customer_id LIMIT $limit""",
            {**words, "full": " " + q.value, "limit": limit},
        )
    if df.height == 0:
        return SearchResult(q, _empty_search(), 0)
    total = int(df["total"][0])
    ids = {f"c{i}": c for i, c in enumerate(df["customer_id"].to_list())}
    numbers = db.query(
        "SELECT customer_id, string_agg(msisdn, ', ' ORDER BY status, msisdn) AS msisdns FROM marts.msisdn_lookup "
        f"WHERE customer_id IN ({', '.join('$' + k for k in ids)}) GROUP BY customer_id",
        ids,
    )
    names = zone_names(db)
    rows = (df.drop("total").join(numbers, on="customer_id", how="left", maintain_order="left")
            .with_columns(zone_name=pl.col("home_zone_id").replace_strict(names, default=None, return_dtype=pl.String))
            .select(list(SEARCH_COLUMNS)).cast(SEARCH_COLUMNS))
    note = None if total <= limit else f"Showing the first {limit} of {total:,} matches: type more to narrow it."
    return SearchResult(q, mask(rows, viewer), total, note)


# ------------------------------------------------------------------------------------- the customer


def customer_profile(db: WarehouseReader, customer_id: str, *, viewer: Viewer | None) -> dict | None:
    """Identity, segment, contact data (masked per role) and the customer_360 summary; None if unknown.

    The summary comes from marts.customer_search (the customer_360 columns the page shows, stored in customer
    order: one row group read instead of the table), or from customer_360 in a version without it."""
    table = ("marts.customer_search" if "main_cell_id" in table_columns(db, "marts.customer_search")
             else "marts.customer_360")
    if not db.has_table(table):
        return None
    summary = db.query(f"SELECT {', '.join(PROFILE_COLUMNS)} FROM {table} WHERE customer_id = ?",
                       [customer_id])  # a fixed table and fixed column names
    if summary.height == 0:
        return None
    contact = db.query("SELECT address, email, birth_date, home_latitude, home_longitude FROM staging.customers "
                       "WHERE customer_id = ?", [customer_id])
    row = summary.row(0, named=True)
    names = zone_names(db)
    extra = contact.row(0, named=True) if contact.height else dict.fromkeys(contact.columns)
    df = pl.DataFrame([{**row, **extra, "home_zone_name": names.get(row.get("home_zone_id")),
                        "usage_zone_name": names.get(row.get("usage_zone_id"))}],
                      schema={**summary.schema, **contact.schema, "home_zone_name": pl.String,
                              "usage_zone_name": pl.String})
    return mask(df, viewer).row(0, named=True)


def customer_home(db: WarehouseReader, customer_id: str, *, viewer: Viewer | None) -> tuple[float, float] | None:
    """The customer's home coordinates (personal data: None for roles that see it masked, or when unknown)."""
    df = mask(db.query("SELECT home_latitude, home_longitude FROM staging.customers WHERE customer_id = ?",
                       [customer_id]), viewer)
    if df.height == 0 or df["home_latitude"][0] is None or df["home_longitude"][0] is None:
        return None
    return float(df["home_latitude"][0]), float(df["home_longitude"][0])


def customer_subscriptions(db: WarehouseReader, customer_id: str, *, viewer: Viewer | None,
                           promotions: pl.DataFrame | None = None) -> pl.DataFrame:
    """The customer's subscriptions (prepaid and postpaid): number (masked per role), tariff, payment type,
    status, dates, monthly fee, and the largest discount of their promotions in force (`promotions`, as
    `customer_promotions` returns them; `with_discounts` adds it later). Read from marts.msisdn_lookup
    (stored in customer order)."""
    table = ("marts.msisdn_lookup" if "monthly_fee" in table_columns(db, "marts.msisdn_lookup")
             else "staging.subscriptions")
    df = db.query(
        "SELECT subscription_id, msisdn, product_offering, payment_type, status, start_date, termination_date, "
        f"termination_reason, monthly_fee, currency FROM {table} WHERE customer_id = ? "  # a fixed table name
        "ORDER BY status = 'active' DESC, start_date DESC, subscription_id",
        [customer_id],
    )
    return mask(with_discounts(df, promotions), viewer)


def with_discounts(subscriptions: pl.DataFrame, promotions: pl.DataFrame | None) -> pl.DataFrame:
    """`discount_pct` on each subscription: the largest discount of its promotions in force (else empty)."""
    subscriptions = subscriptions.drop("discount_pct", strict=False)
    if promotions is None or promotions.height == 0:
        return subscriptions.with_columns(discount_pct=pl.lit(None, pl.Float64))
    best = (promotions.filter(pl.col("state") == "in force").group_by("subscription_id")
            .agg(discount_pct=pl.col("discount_pct").max()))
    return subscriptions.join(best, on="subscription_id", how="left", maintain_order="left")


PROMOTION_SCHEMA = {"promotion_id": pl.String, "subscription_id": pl.String, "promotion_type": pl.String,
                    "discount_pct": pl.Float64, "valid_from": pl.Date, "valid_to": pl.Date, "state": pl.String,
                    "days_left": pl.Int64}


def customer_promotions(db: WarehouseReader, subscription_ids: Sequence[str], as_of: dt.date | None
                        ) -> pl.DataFrame:
    """Promotions on the given subscriptions (a customer's), with their state on the as-of date and days
    left."""
    if not subscription_ids:
        return pl.DataFrame(schema=PROMOTION_SCHEMA)
    subs = {f"s{i}": sid for i, sid in enumerate(subscription_ids)}
    return db.query(
        f"""
        SELECT p.promotion_id, p.subscription_id, p.promotion_type, p.discount AS discount_pct, p.valid_from,
               p.valid_to,
               CASE WHEN p.valid_from > $as_of_date THEN 'upcoming'
                    WHEN p.valid_to IS NOT NULL AND p.valid_to < $as_of_date THEN 'ended'
                    ELSE 'in force' END AS state,
               CASE WHEN p.valid_to IS NOT NULL AND p.valid_to >= $as_of_date
                    THEN date_diff('day', $as_of_date, p.valid_to) END AS days_left
        FROM staging.promotions p
        WHERE p.subscription_id IN ({", ".join("$" + k for k in subs)})
        ORDER BY state = 'in force' DESC, p.valid_to NULLS FIRST, p.promotion_id
        """,
        {**subs, "as_of_date": as_of},
    ).cast(PROMOTION_SCHEMA)


def customer_bills(db: WarehouseReader, customer_id: str) -> pl.DataFrame:
    """The customer's postpaid bills, newest first, with what is still open."""
    return db.query(
        "SELECT bill_id, bill_date, billing_period_start, billing_period_end, payment_due_date, amount_due, "
        "amount_paid, amount_open, state FROM staging.bills WHERE customer_id = ? ORDER BY bill_date DESC, bill_id",
        [customer_id],
    )


def customer_topups(db: WarehouseReader, customer_id: str) -> pl.DataFrame:
    """The customer's prepaid top-ups, newest first."""
    return db.query(
        "SELECT topup_id, subscription_id, topup_at, amount, channel FROM staging.topups "
        "WHERE customer_id = ? ORDER BY topup_at DESC, topup_id",
        [customer_id],
    )


def customer_tickets(db: WarehouseReader, customer_id: str) -> pl.DataFrame:
    """The customer's trouble tickets, newest first, with their outcome and hours to resolve."""
    return db.query(
        """
        SELECT ticket_id, subscription_id, created_at, resolved_at, category, channel, severity, status,
               coalesce(resolution, CASE WHEN resolved_at IS NULL THEN 'open' END) AS outcome,
               round(date_diff('minute', created_at, resolved_at) / 60.0, 1) AS hours_to_resolve
        FROM staging.tickets WHERE customer_id = ? ORDER BY created_at DESC, ticket_id
        """,
        [customer_id],
    )


def customer_usage_daily(db: WarehouseReader, customer_id: str) -> pl.DataFrame:
    """Usage and charges per day and service over the loaded window (marts.customer_usage_daily)."""
    if db.has_table("marts.customer_usage_daily"):
        return db.query(
            "SELECT usage_date AS day, service, n_events, amount, data_mb, voice_min, n_sms, n_other "
            "FROM marts.customer_usage_daily WHERE customer_id = ? ORDER BY day, service",
            [customer_id],
        )
    # A version published before the lookup marts existed: the same figures from staging (slower).
    return db.query(
        """
        SELECT usage_date AS day, service, count(*) AS n_events, sum(amount) AS amount,
               coalesce(sum(quantity) FILTER (WHERE unit = 'megabyte'), 0) AS data_mb,
               coalesce(sum(quantity) FILTER (WHERE unit = 'second'), 0) / 60.0 AS voice_min,
               coalesce(sum(quantity) FILTER (WHERE unit = 'message'), 0) AS n_sms,
               coalesce(sum(quantity) FILTER (WHERE unit = 'event'), 0) AS n_other
        FROM staging.charging WHERE customer_id = ? GROUP BY ALL ORDER BY day, service
        """,
        [customer_id],
    )


HOURS_SCHEMA = {"hour_at": pl.Datetime("us"), "cell_id": pl.String, "n_events": pl.Int64, "n_voice": pl.Int64,
                "n_sms": pl.Int64, "n_data": pl.Int64, "data_mb": pl.Float64, "voice_min": pl.Float64}


def customer_hours(db: WarehouseReader, customer_id: str) -> pl.DataFrame:
    """The customer's usage per cell and hour over the last loaded days (marts.customer_usage_hourly)."""
    if not db.has_table("marts.customer_usage_hourly"):
        return pl.DataFrame(schema=HOURS_SCHEMA)
    return db.query(
        "SELECT hour_at, cell_id, n_events, n_voice, n_sms, n_data, data_mb, voice_min "
        "FROM marts.customer_usage_hourly WHERE customer_id = ? ORDER BY hour_at, cell_id",
        [customer_id],
    ).cast(HOURS_SCHEMA)


def customer_cells(db: WarehouseReader, customer_id: str, hours: pl.DataFrame | None = None) -> pl.DataFrame:
    """The cells the customer's usage happens on, most used first, with each cell's site, technology,
    location and zone: their events and share over the last loaded days (`hours`, as `customer_hours`
    returns them); for a customer with no usage then, over the whole loaded window
    (marts.subscriber_cell_usage: `n_events`, `share_of_events`)."""
    hours = customer_hours(db, customer_id) if hours is None else hours
    if hours.height:
        recent = hours.group_by("cell_id").agg(n_events_recent=pl.col("n_events").sum())
        df = recent.with_columns(share_recent=pl.col("n_events_recent") / pl.col("n_events_recent").sum(),
                                 n_events=pl.lit(None, pl.Int64), share_of_events=pl.lit(None, pl.Float64))
    else:
        df = db.query("SELECT cell_id, n_events, share_of_events FROM marts.subscriber_cell_usage "
                      "WHERE customer_id = ?", [customer_id]).with_columns(
            n_events_recent=pl.lit(0, pl.Int64), share_recent=pl.lit(0.0))
    df = df.select("cell_id", "n_events_recent", "share_recent", "n_events", "share_of_events").cast(
        {"n_events_recent": pl.Int64, "share_recent": pl.Float64, "n_events": pl.Int64,
         "share_of_events": pl.Float64})
    df = df.join(cell_info(db), on="cell_id", how="left")
    return df.sort(["n_events_recent", "n_events", "cell_id"], descending=[True, True, False], nulls_last=True)


def where_cells(cells: pl.DataFrame) -> pl.DataFrame:
    """The cells "where the customer is": those carrying MIN_CELL_SHARE of their recent usage (their main
    one always), or of their whole-window usage when they have none recently. `share` says which."""
    if cells.height == 0:
        return cells.with_columns(share=pl.lit(None, pl.Float64))
    basis = "share_recent" if cells["n_events_recent"].sum() > 0 else "share_of_events"
    ranked = cells.sort(basis, descending=True).with_columns(share=pl.col(basis))
    return ranked.with_row_index("_r").filter((pl.col("_r") == 0) | (pl.col("share") >= MIN_CELL_SHARE)).drop("_r")


def usage_by_hour(hours: pl.DataFrame, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """The customer's usage per hour in [start, end) on our cells, with the cell that carried most of it."""
    h = hours.filter((pl.col("hour_at") >= start) & (pl.col("hour_at") < end))
    return (h.sort(["hour_at", "n_events"], descending=[False, True])
            .group_by("hour_at", maintain_order=True)
            .agg(pl.col("n_events", "n_voice", "n_sms", "n_data", "data_mb", "voice_min").sum(),
                 main_cell_id=pl.col("cell_id").first()))


def usage_hourly(db: WarehouseReader, customer_id: str, start: dt.datetime, end: dt.datetime) -> pl.DataFrame:
    """The customer's usage per hour on our cells (events by kind, data MB, voice minutes, main cell)."""
    return usage_by_hour(customer_hours(db, customer_id), start, end)


KPI_HOURLY_SCHEMA = {"cell_id": pl.String, "period_start": pl.Datetime("us"), **{
    c: pl.Float64 for c in ("availability_pct", "accessibility_pct", "drop_rate_pct", "dl_throughput_mbps",
                            "latency_ms", "prb_utilisation_pct", "traffic_volume_mb", "period_s", "available_s",
                            "traffic_weight_mb", "throughput_weight_s")}}


def cells_kpi_hourly(db: WarehouseReader, cell_ids: Sequence[str], start: dt.datetime,
                     end: dt.datetime) -> pl.DataFrame:
    """Hourly KPIs of the given cells in [start, end), with the weights the window aggregates use."""
    if not cell_ids:
        return pl.DataFrame(schema=KPI_HOURLY_SCHEMA)
    # One placeholder per cell (an IN list of parameters filters the scan; a list parameter would not).
    cells = {f"c{i}": c for i, c in enumerate(cell_ids)}
    return db.query(
        f"""
        SELECT cell_id, period_start, availability_pct, accessibility_pct, drop_rate_pct, dl_throughput_mbps,
               latency_ms, prb_utilisation_pct, traffic_volume_mb, period_s, available_s, traffic_weight_mb,
               throughput_weight_s
        FROM staging.kpi_hourly
        WHERE period_start >= $start AND period_start < $end AND cell_id IN ({", ".join("$" + k for k in cells)})
        ORDER BY cell_id, period_start
        """,
        {**cells, "start": start, "end": end},
    ).cast(KPI_HOURLY_SCHEMA)


def alarm_customer_table(db: WarehouseReader) -> pl.DataFrame:
    """Every (customer, alarm) pair of marts.alarm_customers with the customer's share on the alarm's cells,
    in customer order (once per version: filtered per customer in memory)."""
    def compute() -> pl.DataFrame:
        if not db.has_table("marts.alarm_customers"):
            return pl.DataFrame(schema={"customer_id": pl.String, "alarm_id": pl.String,
                                        "share_on_alarm_cells": pl.Float64})
        return db.query("SELECT customer_id, alarm_id, share_on_alarm_cells FROM marts.alarm_customers "
                        "ORDER BY customer_id, alarm_id")

    return _memo(db, "alarm_customers", compute)


def customer_alarms(db: WarehouseReader, customer_id: str, cell_ids: Sequence[str],
                    now: dt.datetime) -> pl.DataFrame:
    """Alarms raised by `now` that affected the customer (marts.alarm_customers: the shared majority rule)
    or that touched one of `cell_ids`, with their place, cause, impact and the customer's cells hit."""
    alarms = alarm_table(db)
    if alarms.height == 0:
        return alarms
    pairs = alarm_customer_table(db)
    lo = pairs["customer_id"].search_sorted(customer_id, side="left")
    hi = pairs["customer_id"].search_sorted(customer_id, side="right")
    mine = pairs.slice(lo, hi - lo).drop("customer_id").with_columns(affects_customer=pl.lit(True))
    hit = (alarm_cell_table(db).filter(pl.col("cell_id").is_in(list(cell_ids))).sort("cell_id")
           .group_by("alarm_id").agg(customer_cells_hit=pl.col("cell_id").str.join(",")))
    ids = set(mine["alarm_id"].to_list()) | set(hit["alarm_id"].to_list())
    out = (alarms.filter(pl.col("alarm_id").is_in(list(ids)) & (pl.col("raised_at") <= now))
           .join(mine, on="alarm_id", how="left").join(hit, on="alarm_id", how="left")
           .with_columns(pl.col("affects_customer").fill_null(False)))
    return out.sort(["raised_at", "alarm_id"], descending=[True, False])


def main_cell_sharers(db: WarehouseReader, cell_ids: Sequence[str], *, own_main_cell: str | None) -> dict[str, int]:
    """Per cell, how many other customers have it as their main cell (most of their events)."""
    counts = main_cell_counts(db)
    return {c: counts.get(c, 0) - (1 if c == own_main_cell else 0) for c in cell_ids}


def model_outputs(db: WarehouseReader, customer_id: str) -> dict[str, dict | None]:
    """The customer's churn score (`models.churn_scores`) and experience index (`models.experience_customer`)
    when those tables are published; None for each one that is not (the page says so plainly)."""
    out: dict[str, dict | None] = {}
    for key, table in (("churn", "models.churn_scores"), ("experience", "models.experience_customer")):
        if not db.has_table(table):
            out[key] = None
            continue
        df = db.query(f"SELECT * FROM {table} WHERE customer_id = ?", [customer_id])  # table: a fixed name
        out[key] = df.row(0, named=True) if df.height else {}
    return out


# ------------------------------------------------------------------------------------ the care answer


@dataclass(frozen=True)
class CellFact:
    """A cell where the customer is: its share of their usage, and where it stands."""

    cell_id: str
    share: float
    site_id: str | None = None
    zone_id: str | None = None
    zone_name: str | None = None


@dataclass(frozen=True)
class AlarmFact:
    """An alarm that affected the customer (by the shared rule) or touched one of their cells."""

    alarm_id: str
    alarm_type: str
    perceived_severity: str
    probable_cause: str | None
    specific_problem: str | None
    service_affecting: bool
    raised_at: dt.datetime
    cleared_at: dt.datetime | None
    alarmed_object_type: str
    alarmed_object_id: str
    site_id: str | None
    cell_ids: tuple[str, ...]
    zone_ids: tuple[str, ...]
    zone_names: str | None
    n_customers_affected: int
    affects_customer: bool
    share_on_alarm_cells: float | None = None
    customer_cells_hit: tuple[str, ...] = ()


@dataclass(frozen=True)
class BreachFact:
    """A KPI of one of the customer's cells that missed its target over the care window."""

    cell_id: str
    kpi: str
    value: float
    target: float
    n_hours_breached: int
    n_hours: int
    first_at: dt.datetime | None
    last_at: dt.datetime | None
    worst_at: dt.datetime | None
    worst_value: float | None
    share: float = 0.0
    site_id: str | None = None
    zone_id: str | None = None
    zone_name: str | None = None
    n_sharing: int = 0


@dataclass(frozen=True)
class CareFacts:
    """Everything the care answer rests on, for one customer at the data's as-of time `now`."""

    customer_id: str
    now: dt.datetime
    since: dt.datetime
    cells: tuple[CellFact, ...]
    alarms: tuple[AlarmFact, ...]
    breaches: tuple[BreachFact, ...]
    kpi_summary: Mapping[str, float | None] = field(default_factory=dict)
    """Each KPI over the window on the customer's cells (usage-share weighted), for the evidence."""
    kpi_hours: tuple[int, int] = (0, 0)
    """(cell-hours with KPIs, cell-hours expected) on the customer's cells in the window."""
    basis: Literal["recent", "window", "none"] = "recent"


CareStatus = Literal["outage_now", "outage_recent", "degraded", "none", "no_data"]


@dataclass(frozen=True)
class CareAnswer:
    """The care agent's answer: one sentence, what to tell the customer, and the evidence behind it."""

    status: CareStatus
    sentence: str
    advice: str
    evidence: tuple[str, ...] = ()
    earlier: tuple[str, ...] = ()
    alarm_ids: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        """Everything the answer says, as one text (what the page shows, in order)."""
        return " ".join([self.sentence, self.advice, *self.evidence, *self.earlier])


def _where_alarm(a: AlarmFact) -> str:
    zones = a.zone_names or ", ".join(a.zone_ids) or "an unknown zone"
    zone_ids = f" ({', '.join(a.zone_ids)})" if a.zone_ids and a.zone_names else ""
    if a.alarmed_object_type == "site":
        cells = f", cells {', '.join(a.cell_ids)}" if a.cell_ids else ""
        return f"site {a.alarmed_object_id}{cells} in {zones}{zone_ids}"
    site = f" of site {a.site_id}" if a.site_id else ""
    return f"cell {a.alarmed_object_id}{site} in {zones}{zone_ids}"


def _what_alarm(a: AlarmFact) -> str:
    cause = a.specific_problem or a.probable_cause or "cause not given"
    kind = ALARM_TYPE_LABELS.get(a.alarm_type, a.alarm_type)
    return f"alarm {a.alarm_id}, {a.perceived_severity} {kind}: {cause}"


def _others(a: AlarmFact) -> str:
    if a.affects_customer:
        n = max(a.n_customers_affected - 1, 0)
        return f"it affects {n:,} other customer{'s' if n != 1 else ''} whose usage runs mainly on those cells"
    share = f" ({a.share_on_alarm_cells:.0%} of theirs)" if a.share_on_alarm_cells else ""
    return (f"it affects {a.n_customers_affected:,} customers whose usage runs mainly on those cells; this "
            f"customer uses {', '.join(a.customer_cells_hit) or 'them'} less{share}")


def _alarm_sentence(a: AlarmFact, now: dt.datetime) -> str:
    if a.cleared_at is None:
        return (f"{_where_alarm(a)} has a known outage since {_fmt_at(a.raised_at)} "
                f"({_fmt_duration((now - a.raised_at).total_seconds() / 60)} so far; {_what_alarm(a)}), "
                f"still open; {_others(a)}.")
    return (f"{_where_alarm(a)} had an outage from {_fmt_at(a.raised_at)} to {_fmt_at(a.cleared_at)} "
            f"({_fmt_duration((a.cleared_at - a.raised_at).total_seconds() / 60)}; {_what_alarm(a)}), now "
            f"cleared; {_others(a)}.")


def _minor_sentence(a: AlarmFact) -> str:
    state = "still open" if a.cleared_at is None else f"cleared {_fmt_at(a.cleared_at)}"
    return (f"Not service-affecting: {_what_alarm(a)} on {_where_alarm(a)}, raised {_fmt_at(a.raised_at)}, "
            f"{state}.")


def _alarm_order(a: AlarmFact) -> tuple:
    return (a.cleared_at is not None, not a.affects_customer, SEVERITY_ORDER.get(a.perceived_severity, 9),
            -a.raised_at.timestamp(), a.alarm_id)


#: What a customer notices when a KPI misses its target, and what the agent can say about it.
SYMPTOMS = {
    "availability_pct": ("the cell serving them was off the air at times",
                         "service may drop out entirely for short spells"),
    "accessibility_pct": ("calls and data sessions on the cell fail to connect more often than they should",
                          "calls or data may fail to start; trying again usually works"),
    "drop_rate_pct": ("calls and sessions on the cell drop more often than they should",
                      "calls may drop; calling back usually works"),
    "dl_throughput_mbps": ("the cell is congested and data is slower than it should be",
                           "data is slow at busy hours; it is better outside the evening peak or on Wi-Fi"),
    "latency_ms": ("the cell answers slowly", "apps and video calls may feel sluggish"),
    "prb_utilisation_pct": ("the cell is running near its capacity", "data may be slow at busy hours"),
}


def _kpi_value(kpi: str, value: float | None) -> str:
    if value is None:
        return "no data"
    k = KPIS.get(kpi)
    return f"{value:{k.fmt}} {k.unit}" if k else f"{value:.2f}"


def _breach_sentence(b: BreachFact, hours: int) -> str:
    k = KPIS[b.kpi]
    word = "below" if k.better == "higher" else "above"
    zone = f" in {b.zone_name} ({b.zone_id})" if b.zone_name else ""
    site = f" of site {b.site_id}" if b.site_id else ""
    worst = (f"; worst {_kpi_value(b.kpi, b.worst_value)} at {_fmt_at(b.worst_at)}"
             if b.worst_at is not None else "")
    return (f"{k.label} on cell {b.cell_id}{site}{zone}, which carries {b.share:.0%} of their usage, was "
            f"{_kpi_value(b.kpi, b.value)} over the last {hours} hours against a {b.target:g} {k.unit} target "
            f"({word} it in {b.n_hours_breached} of {b.n_hours} hours, from {_fmt_at(b.first_at)} to "
            f"{_fmt_at(b.last_at)}{worst}); {b.n_sharing:,} other customer{'s' if b.n_sharing != 1 else ''} "
            f"have it as their main cell.")


def care_answer(facts: CareFacts, *, hours: int = CARE_WINDOW_HOURS) -> CareAnswer:
    """Is there a known network problem where the customer is, now or in the last `hours`? One sentence
    with the cause (an open or recent service-affecting alarm on their cells, else a KPI that missed its
    target on them), when and where, how many others share it and what to tell the customer; or "no
    network problem found on their cells" with the evidence. Earlier outages that affected them in the
    loaded data are listed after it (the customer may be calling about one)."""
    recent = [a for a in facts.alarms if a.raised_at <= facts.now
              and (a.cleared_at is None or a.cleared_at >= facts.since)]
    earlier = sorted((a for a in facts.alarms if a.affects_customer and a.service_affecting
                      and a.cleared_at is not None and a.cleared_at < facts.since), key=lambda a: a.raised_at)
    earlier_lines = tuple(
        f"Earlier in the loaded data: {_where_alarm(a)} had an outage from {_fmt_at(a.raised_at)} to "
        f"{_fmt_at(a.cleared_at)} ({_what_alarm(a)}) that affected them; it is cleared." for a in earlier)
    serious = sorted((a for a in recent if a.service_affecting and (a.affects_customer or a.customer_cells_hit)),
                     key=_alarm_order)
    minor = sorted((a for a in recent if not a.service_affecting), key=_alarm_order)
    if serious:
        first = serious[0]
        status: CareStatus = "outage_now" if first.cleared_at is None else "outage_recent"
        if first.cleared_at is None:
            advice = (f"Tell the customer: there is a known fault on the network serving their area since "
                      f"{_fmt_at(first.raised_at)}; engineers are working on it and service comes back when it "
                      "is cleared. There is no need to restart the phone or open a new fault ticket.")
        else:
            advice = (f"Tell the customer: a network fault near them from {_fmt_at(first.raised_at)} to "
                      f"{_fmt_at(first.cleared_at)} is fixed. If service is still poor, restart the phone; if "
                      "that does not help, open a network ticket.")
        evidence = tuple("Also: " + _alarm_sentence(a, facts.now) for a in serious[1:])
        evidence += tuple(_minor_sentence(a) for a in minor)
        evidence += tuple(_breach_sentence(b, hours) for b in facts.breaches)
        return CareAnswer(status, "Yes: " + _alarm_sentence(first, facts.now), advice, evidence, earlier_lines,
                          tuple(a.alarm_id for a in [*serious, *minor, *earlier]))
    if facts.breaches:
        order = {k: i for i, k in enumerate(BREACH_ORDER)}
        ranked = sorted(facts.breaches, key=lambda b: (order.get(b.kpi, 99), -b.share, b.cell_id))
        first = ranked[0]
        symptom, say = SYMPTOMS.get(first.kpi, ("the network is degraded", "service may be poor"))
        advice = (f"Tell the customer: {symptom}; this is known and tracked for the area, and {say}. If it "
                  "goes on, open a network ticket so it is counted.")
        evidence = tuple(_breach_sentence(b, hours) for b in ranked[1:])
        evidence += tuple(_minor_sentence(a) for a in minor)
        return CareAnswer("degraded", "Yes, degraded service: " + _breach_sentence(first, hours), advice,
                          evidence, earlier_lines, tuple(a.alarm_id for a in [*minor, *earlier]))
    if not facts.cells:
        return CareAnswer(
            "no_data", "No network evidence for this customer: none of their usage in the loaded data was on "
            "our cells, so there is no cell to check.",
            "Tell the customer: we cannot see their usage on our network; check that the line is active and the "
            "phone is on our network (not roaming), then open a ticket.", (), earlier_lines,
            tuple(a.alarm_id for a in earlier))
    cells = ", ".join(f"{c.cell_id} ({c.share:.0%})" for c in facts.cells)
    basis = "last 7 days" if facts.basis == "recent" else "loaded data"
    present, expected = facts.kpi_hours
    coverage = f"; KPIs present for {present} of {expected} cell-hours" if expected else ""
    kpis = ", ".join(f"{KPIS[k].label.lower()} {_kpi_value(k, v)}" for k, v in facts.kpi_summary.items()
                     if v is not None and k in KPIS)
    sentence = (f"No network problem found on their cells: no service-affecting alarm in the last {hours} hours "
                f"and every KPI met its target on {cells} of their usage in the {basis}"
                f"{' (' + kpis + ')' if kpis else ''}{coverage}.")
    advice = ("Tell the customer: the network around them shows no fault; check the phone (restart it, check its "
              "settings and SIM) and, if the problem goes on, open a ticket with where and when it happens.")
    return CareAnswer("none", sentence, advice, tuple(_minor_sentence(a) for a in minor), earlier_lines,
                      tuple(a.alarm_id for a in [*minor, *earlier]))


def problem_cells(facts: CareFacts) -> set[str]:
    """The customer's cells on which the care answer found a problem (a service-affecting alarm in the window,
    or a KPI that missed its target)."""
    mine = {c.cell_id for c in facts.cells}
    hit = {c for a in facts.alarms if a.service_affecting and a.raised_at <= facts.now
           and (a.cleared_at is None or a.cleared_at >= facts.since) for c in (a.customer_cells_hit or a.cell_ids)}
    return (hit & mine) | {b.cell_id for b in facts.breaches}


def _weighted(df: pl.DataFrame, value: str, weight: str) -> float | None:
    d = df.filter(pl.col(value).is_not_null() & pl.col(weight).is_not_null())
    w = d[weight].sum()
    if d.height == 0:
        return None
    if not w:
        return float(d[value].mean())
    return float((d[value] * d[weight]).sum() / w)


def window_kpis(kpis: pl.DataFrame) -> dict[str, float | None]:
    """KPIs of a set of cell-hours, aggregated as the marts do: availability and PRB by time, accessibility,
    drop rate and latency by traffic, throughput as volume over active time."""
    if kpis.height == 0:
        return {k: None for k in BREACH_ORDER}
    period = kpis["period_s"].sum()
    thr_time = kpis.filter(pl.col("throughput_weight_s") > 0)
    return {
        "availability_pct": float(100 * kpis["available_s"].sum() / period) if period else None,
        "accessibility_pct": _weighted(kpis, "accessibility_pct", "traffic_weight_mb"),
        "drop_rate_pct": _weighted(kpis, "drop_rate_pct", "traffic_weight_mb"),
        "dl_throughput_mbps": (float(thr_time["traffic_weight_mb"].sum() * 8 / thr_time["throughput_weight_s"].sum())
                               if thr_time.height else _weighted(kpis, "dl_throughput_mbps", "period_s")),
        "latency_ms": _weighted(kpis, "latency_ms", "traffic_weight_mb"),
        "prb_utilisation_pct": _weighted(kpis, "prb_utilisation_pct", "period_s"),
    }


def cell_breaches(kpis: pl.DataFrame, thresholds: Mapping[str, float], *, since: dt.datetime,
                  until: dt.datetime) -> list[BreachFact]:
    """Per cell and KPI: a breach when the KPI over [since, until) misses its target (aggregated as the
    marts aggregate it), with how many hours missed it, the first and last of them and the worst."""
    out = []
    window = kpis.filter((pl.col("period_start") >= since) & (pl.col("period_start") < until))
    for (cell_id,), cell in window.group_by(["cell_id"], maintain_order=True):
        agg = window_kpis(cell)
        for kpi in BREACH_ORDER:
            target, value = thresholds.get(kpi), agg.get(kpi)
            if target is None or value is None or kpi not in KPIS:
                continue
            higher = KPIS[kpi].better == "higher"
            if (value >= target) if higher else (value <= target):
                continue
            bad = cell.filter(pl.col(kpi) < target if higher else pl.col(kpi) > target).sort("period_start")
            worst = bad.sort(kpi, descending=not higher).head(1)
            out.append(BreachFact(
                cell_id=str(cell_id), kpi=kpi, value=value, target=float(target), n_hours_breached=bad.height,
                n_hours=cell.filter(pl.col(kpi).is_not_null()).height,
                first_at=bad["period_start"].min() if bad.height else None,
                last_at=bad["period_start"].max() if bad.height else None,
                worst_at=worst["period_start"][0] if worst.height else None,
                worst_value=float(worst[kpi][0]) if worst.height else None,
            ))
    return out


def _alarm_facts(alarms: pl.DataFrame) -> tuple[AlarmFact, ...]:
    split = lambda s: tuple(x for x in (s or "").split(",") if x)
    return tuple(
        AlarmFact(
            alarm_id=r["alarm_id"], alarm_type=r["alarm_type"], perceived_severity=r["perceived_severity"],
            probable_cause=r["probable_cause"], specific_problem=r["specific_problem"],
            service_affecting=bool(r["service_affecting"]), raised_at=r["raised_at"], cleared_at=r["cleared_at"],
            alarmed_object_type=r["alarmed_object_type"], alarmed_object_id=r["alarmed_object_id"],
            site_id=r["site_id"], cell_ids=split(r["cell_ids"]), zone_ids=split(r["zone_ids"]),
            zone_names=r["zone_names"], n_customers_affected=int(r["n_customers_affected"] or 0),
            affects_customer=bool(r["affects_customer"]), share_on_alarm_cells=r["share_on_alarm_cells"],
            customer_cells_hit=split(r["customer_cells_hit"]),
        )
        for r in alarms.iter_rows(named=True)
    ) if alarms.height else ()


@dataclass(frozen=True)
class NetworkView:
    """What the care answer and the timeline share: the window, the cells, their KPIs and alarms."""

    now: dt.datetime
    since: dt.datetime
    timeline_start: dt.datetime
    hours: pl.DataFrame
    cells: pl.DataFrame
    where: pl.DataFrame
    shown: tuple[str, ...]
    kpis: pl.DataFrame
    alarms: pl.DataFrame
    main_cell_id: str | None = None
    """The customer's main cell over the loaded window (customer_360), for counting who else has it."""


def network_view(db: WarehouseReader, customer_id: str, now: dt.datetime, *,
                 hours: int = CARE_WINDOW_HOURS) -> NetworkView:
    """The customer's hourly usage and cells, "where they are", the hourly KPIs over the last TIMELINE_DAYS
    of those cells and of their most used ones (`shown`), and every alarm that affected them or touched
    their cells."""
    usage = customer_hours(db, customer_id)
    cells = customer_cells(db, customer_id, usage)
    where = where_cells(cells)
    timeline_start = now - dt.timedelta(days=TIMELINE_DAYS)
    shown = tuple(dict.fromkeys([*where["cell_id"].to_list(), *cells.head(TIMELINE_CELLS)["cell_id"].to_list()]))
    kpis = cells_kpi_hourly(db, shown, timeline_start, now)
    alarms = customer_alarms(db, customer_id, where["cell_id"].to_list(), now)
    main = (db.query("SELECT main_cell_id FROM marts.customer_search WHERE customer_id = ?", [customer_id])
            if "main_cell_id" in table_columns(db, "marts.customer_search") else pl.DataFrame())
    return NetworkView(now=now, since=now - dt.timedelta(hours=hours), timeline_start=timeline_start,
                       hours=usage, cells=cells, where=where, shown=shown, kpis=kpis, alarms=alarms,
                       main_cell_id=main["main_cell_id"][0] if main.height else None)


def care_facts(db: WarehouseReader, customer_id: str, view: NetworkView, thresholds: Mapping[str, float],
               ) -> CareFacts:
    """The facts of the care answer, from the network view (and, for breaches, who else uses the cells)."""
    where = view.where
    basis: Literal["recent", "window", "none"] = (
        "none" if where.height == 0 else "recent" if view.cells["n_events_recent"].sum() > 0 else "window")
    info = {r["cell_id"]: r for r in where.iter_rows(named=True)}
    cells = tuple(CellFact(cell_id=c, share=float(r["share"] or 0.0), site_id=r["site_id"], zone_id=r["zone_id"],
                           zone_name=r["zone_name"]) for c, r in info.items())
    mine = view.kpis.filter(pl.col("cell_id").is_in(list(info))) if view.kpis.height else view.kpis
    breaches = cell_breaches(mine, thresholds, since=view.since, until=view.now) if mine.height else []
    sharers = main_cell_sharers(db, sorted({b.cell_id for b in breaches}), own_main_cell=view.main_cell_id)
    breaches = [
        BreachFact(**{**b.__dict__, "share": float(info[b.cell_id]["share"] or 0.0),
                      "site_id": info[b.cell_id]["site_id"], "zone_id": info[b.cell_id]["zone_id"],
                      "zone_name": info[b.cell_id]["zone_name"], "n_sharing": sharers.get(b.cell_id, 0)})
        for b in breaches
    ]
    in_window = mine.filter(pl.col("period_start") >= view.since) if mine.height else mine
    summary = window_kpis(in_window) if in_window.height else {}
    expected = len(info) * int((view.now - view.since).total_seconds() // 3600)
    return CareFacts(customer_id=customer_id, now=view.now, since=view.since, cells=cells,
                     alarms=_alarm_facts(view.alarms), breaches=tuple(breaches),
                     kpi_summary={k: summary.get(k) for k in ("availability_pct", "drop_rate_pct",
                                                              "dl_throughput_mbps")} if summary else {},
                     kpi_hours=(in_window.height, expected), basis=basis)
