"""Parameterised queries on the published marts: a reader and plain values in, a Polars frame out.

Every query names the mart it reads; values reach SQL only as parameters. A query on a table the live
version does not have returns an empty frame with the expected columns (the page then says why).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import polars as pl

from app.constants import KPIS
from app.warehouse import WarehouseReader

PERIOD_ALIASES = {"7": "last_7d", "28": "last_28d", "all": "all"}
UNASSIGNED = "UNASSIGNED"


@dataclass(frozen=True)
class Period:
    name: str
    start: date
    end: date

    @property
    def n_days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        return Period(f"before {self.name}", self.start - timedelta(days=self.n_days),
                      self.start - timedelta(days=1))


def _zone_part(db: WarehouseReader, key: object, compute: Callable[[], pl.DataFrame], zone_id: str, *,
               column: str = "zone_id", drop: bool = True) -> pl.DataFrame:
    """The rows of one zone from a frame of every zone, split by zone once per version (`key`): a page then
    costs a dict look-up, not a scan. An unknown zone gets no rows, with the frame's columns."""
    def split() -> tuple[dict[object, pl.DataFrame], pl.DataFrame]:
        df = compute()
        parts = {k[0]: (part.drop(column) if drop else part)
                 for k, part in df.partition_by(column, as_dict=True, maintain_order=True).items()}
        return parts, (df.drop(column) if drop else df).clear()

    parts, empty = db.memo(key, split)
    return parts.get(zone_id, empty)


def period(db: WarehouseReader, choice: str) -> Period | None:
    """The dates of a scorecard period (`7`, `28` or `all`), as the scorecard computed them."""
    name = PERIOD_ALIASES.get(choice, "last_28d")
    return db.memo(("period", name), lambda: _period(db, name))


def _period(db: WarehouseReader, name: str) -> Period | None:
    if not db.has_table("marts.zone_scorecard"):
        return None
    df = db.query("SELECT DISTINCT period_start, period_end FROM marts.zone_scorecard WHERE period = ?", [name])
    if df.height == 0 or df["period_start"][0] is None:
        return None
    return Period(name, df["period_start"][0], df["period_end"][0])


def freshness(db: WarehouseReader) -> pl.DataFrame:
    """Per source: loaded or not, rows, as-of time and last load (marts.freshness), once per version."""
    return db.memo("freshness", lambda: _freshness(db))


def _freshness(db: WarehouseReader) -> pl.DataFrame:
    if not db.has_table("marts.freshness"):
        return pl.DataFrame(schema={"source": pl.String, "is_loaded": pl.Boolean, "as_of": pl.Datetime})
    return db.query("SELECT source, side, is_loaded, n_rows, as_of, last_loaded_at FROM marts.freshness "
                    "ORDER BY source")


def data_as_of(db: WarehouseReader) -> tuple[datetime | None, list[str]]:
    """The latest event time loaded across sources, and the sources not loaded at all."""
    fresh = freshness(db)
    if fresh.height == 0:
        return None, []
    return fresh["as_of"].max(), fresh.filter(~pl.col("is_loaded"))["source"].to_list()


def zones_geojson(db: WarehouseReader, *, zone_id: str | None = None
                  ) -> tuple[dict, tuple[float, float, float, float] | None]:
    """Zone outlines (simplified) as one FeatureCollection (feature id = zone_id) and their bounding box:
    every zone, or only `zone_id` (an unknown zone has no feature and no box). Read once per version."""
    features, boxes = db.memo("zone_outlines", lambda: _zone_outlines(db))
    if zone_id is None:
        if not features:
            return {"type": "FeatureCollection", "features": []}, None
        lows, highs = [b[:2] for b in boxes.values()], [b[2:] for b in boxes.values()]
        return db.memo("zones_geojson_all", lambda: (
            {"type": "FeatureCollection", "features": list(features.values())},
            (min(x for x, _ in lows), min(y for _, y in lows), max(x for x, _ in highs), max(y for _, y in highs))))
    if zone_id not in features:
        return {"type": "FeatureCollection", "features": []}, None
    return {"type": "FeatureCollection", "features": [features[zone_id]]}, boxes[zone_id]


def _zone_outlines(db: WarehouseReader) -> tuple[dict[str, dict], dict[str, tuple[float, float, float, float]]]:
    if not db.has_table("staging.zones_map"):
        return {}, {}
    df = db.query("SELECT zone_id, zone_name, geojson, bbox_min_lon, bbox_min_lat, bbox_max_lon, bbox_max_lat "
                  "FROM staging.zones_map ORDER BY zone_id")
    features, boxes = {}, {}
    for z, n, g, *box in df.rows():
        features[z] = {"type": "Feature", "id": z, "properties": {"zone_id": z, "zone_name": n},
                       "geometry": json.loads(g)}
        boxes[z] = tuple(box)
    return features, boxes


def zones_outline_bytes(db: WarehouseReader) -> bytes:
    """Every zone's outline as compact GeoJSON for the browser's maps: feature id and geometry only (the
    maps match features by id and say names from their own data). Once per version."""
    def encode() -> bytes:
        geojson, _ = zones_geojson(db)
        lean = {"type": "FeatureCollection",
                "features": [{"type": "Feature", "id": f["id"], "properties": {}, "geometry": f["geometry"]}
                             for f in geojson["features"]]}
        return json.dumps(lean, separators=(",", ":")).encode()
    return db.memo("zones_outline_bytes", encode)


def zone_list(db: WarehouseReader) -> pl.DataFrame:
    if not db.has_table("staging.zones_map"):
        return pl.DataFrame(schema={"zone_id": pl.String, "zone_name": pl.String})
    return db.memo("zone_list", lambda: db.query("SELECT zone_id, zone_name FROM staging.zones_map ORDER BY zone_id"))


def zone_revenue(db: WarehouseReader, p: Period, *, service: str | None, payment_type: str | None) -> pl.DataFrame:
    """Revenue per zone over a period, for one service (or all) and one payment type (or both); once per
    version and choice, all cut from one read of marts.zone_daily per period (zones x services x payment
    types: a few thousand rows)."""
    return db.memo(("zone_revenue", p, service, payment_type), lambda: _zone_revenue(db, p, service, payment_type))


def _zone_revenue(db: WarehouseReader, p: Period, service: str | None, payment_type: str | None) -> pl.DataFrame:
    split = db.memo(("zone_revenue_split", p), lambda: db.query(
        """
        SELECT zone_id, service, payment_type, sum(revenue) AS revenue, sum(usage_revenue) AS usage_revenue,
               sum(fee_revenue) AS fee_revenue, sum(n_events)::DOUBLE AS n_events
        FROM marts.zone_daily WHERE date BETWEEN $start AND $end GROUP BY ALL
        """,
        {"start": p.start, "end": p.end},
    ))
    if service is not None:
        split = split.filter(pl.col("service") == service)
    if payment_type is not None:
        split = split.filter(pl.col("payment_type") == payment_type)
    return split.group_by("zone_id", maintain_order=True).agg(
        pl.col("revenue", "usage_revenue", "fee_revenue", "n_events").sum())


def scorecard(db: WarehouseReader, p: Period) -> pl.DataFrame:
    """The zone scorecard of a period: value, experience, KPIs, quadrant, investment rank."""
    return db.memo(("scorecard", p.name), lambda: db.query(
        "SELECT * FROM marts.zone_scorecard WHERE period = ? AND zone_id <> ? ORDER BY zone_id",
        [p.name, UNASSIGNED],
    ))


def overview_zones(db: WarehouseReader, p: Period, *, service: str | None, payment_type: str | None) -> pl.DataFrame:
    """One row per zone: name, the period's scorecard, and the revenue of the chosen service/payment type;
    once per version and choice."""
    return db.memo(("overview_zones", p, service, payment_type),
                   lambda: _overview_zones(db, p, service, payment_type))


def _overview_zones(db: WarehouseReader, p: Period, service: str | None, payment_type: str | None) -> pl.DataFrame:
    sc = scorecard(db, p)
    rev = zone_revenue(db, p, service=service, payment_type=payment_type).rename(
        {"revenue": "selected_revenue", "usage_revenue": "selected_usage_revenue",
         "fee_revenue": "selected_fee_revenue", "n_events": "selected_events"})
    zones = zone_list(db)
    out = zones.join(sc.drop("zone_name"), on="zone_id", how="left").join(rev, on="zone_id", how="left")
    return out.with_columns(pl.col("selected_revenue").fill_null(0.0))


def headline(db: WarehouseReader, p: Period, *, service: str | None = None,
             payment_type: str | None = None) -> dict[str, float | None]:
    """Revenue (of a service and payment type, or all), subscribers (of the payment type), ARPU per month
    and network availability over a period; once per version and choice."""
    return db.memo(("headline", p, service, payment_type), lambda: _headline(db, p, service, payment_type))


def _headline(db: WarehouseReader, p: Period, service: str | None, payment_type: str | None
              ) -> dict[str, float | None]:
    rev = zone_revenue(db, p, service=service, payment_type=payment_type)["revenue"].sum() if db.has_table(
        "marts.zone_daily") else None
    subs = subscribers(db, p, payment_type=payment_type)
    kpi = db.query(
        "SELECT sum(available_s) AS a, sum(period_s) AS t, sum(hours_present)::DOUBLE AS present, "
        "sum(hours_expected)::DOUBLE AS expected FROM marts.zone_kpi_daily WHERE date BETWEEN ? AND ?",
        [p.start, p.end],
    )
    a, t = kpi["a"][0], kpi["t"][0]
    return {
        "revenue": rev,
        "subscribers": subs or None,
        "arpu_month": (rev / subs * 30.4375 / p.n_days) if rev is not None and subs else None,
        "availability_pct": (100.0 * a / t) if a is not None and t else None,
        "kpi_completeness": (kpi["present"][0] / kpi["expected"][0]) if kpi["expected"][0] else None,
    }


def subscribers(db: WarehouseReader, p: Period, *, payment_type: str | None = None) -> int:
    """Subscriptions active at some time in the period, of one payment type or both. One count per payment
    type per period and version (the period bounds are few: each choice and the one before it)."""
    by_type = db.memo(("subscribers", p.start, p.end), lambda: db.query(
        "SELECT payment_type, count(*) AS n FROM staging.subscriptions "  # subscription_id is its key
        "WHERE start_date <= $end AND (termination_date IS NULL OR termination_date > $start) "
        "GROUP BY payment_type",
        {"start": p.start, "end": p.end},
    ))
    if payment_type is not None:
        by_type = by_type.filter(pl.col("payment_type") == payment_type)
    return int(by_type["n"].sum())


def incomplete_zones(db: WarehouseReader, p: Period, *, below: float = 0.95) -> pl.DataFrame:
    """Zones whose KPIs over the period rest on fewer than `below` of the expected cell-hours."""
    sc = scorecard(db, p)
    return sc.filter((pl.col("n_cells") > 0) & (pl.col("kpi_completeness") < below)).select(
        "zone_id", "zone_name", "kpi_completeness").sort("kpi_completeness")


# ---------------------------------------------------------------------------------------------- zone page


def zone_row(db: WarehouseReader, zone_id: str, p: Period) -> dict | None:
    """The zone's scorecard row of the period (from the period's memoised scorecard)."""
    if not db.has_table("marts.zone_scorecard"):
        return None
    rows = db.memo(("scorecard_rows", p.name), lambda: {r["zone_id"]: r for r in db.query(
        "SELECT * FROM marts.zone_scorecard WHERE period = ?", [p.name]).to_dicts()})
    return rows.get(zone_id)


def zone_revenue_by_service(db: WarehouseReader, zone_id: str, p: Period) -> pl.DataFrame:
    """Daily revenue per service of one zone (day, service, revenue), from every zone's days of the
    period aggregated once per version (marts.zone_daily: zones x days x services, a few thousand rows)."""
    return _zone_part(db, ("zone_revenue_by_service", p), lambda: db.query(
        "SELECT zone_id, date AS day, service, sum(revenue) AS revenue FROM marts.zone_daily "
        "WHERE date BETWEEN ? AND ? GROUP BY ALL ORDER BY zone_id, day, service",
        [p.start, p.end],
    ), zone_id)


def zone_kpi_trend(db: WarehouseReader, zone_id: str, p: Period, kpi: str) -> pl.DataFrame:
    """Daily value of one KPI of a zone (day, value, completeness); the experience index is the share of
    good hours. Every zone's days of the period are read once per version (marts.zone_kpi_daily)."""
    column = "good_hours_pct" if kpi not in KPIS or kpi == "experience_index" else kpi
    days = _zone_part(db, ("zone_kpi_daily", p), lambda: db.query(
        "SELECT * FROM marts.zone_kpi_daily WHERE date BETWEEN ? AND ? ORDER BY zone_id, date",
        [p.start, p.end],
    ), zone_id)
    return days.select(pl.col("date").alias("day"), pl.col(column).alias("value"), "completeness")


def zone_cells(db: WarehouseReader, zone_id: str, p: Period, thresholds: dict[str, float]) -> pl.DataFrame:
    """The zone's cells with their KPIs over the period and breaches (see `cells_of_period`)."""
    return _zone_part(db, ("cells_of_period", p, tuple(sorted(thresholds.items()))),
                      lambda: cells_of_period(db, p, thresholds), zone_id)


def cells_of_period(db: WarehouseReader, p: Period, thresholds: dict[str, float]) -> pl.DataFrame:
    """Every cell with its KPIs over the period and the targets it misses: days re-aggregated with the
    marts' weights (time for availability and PRB, traffic for accessibility, drops and latency, active
    time for throughput). A few thousand cells: computed once per version, period and thresholds."""
    df = db.query(
        """
        SELECT c.zone_id, c.cell_id, c.site_id, c.technology, c.band_mhz, c.status, c.latitude, c.longitude,
               sum(d.hours_present)::DOUBLE AS hours_present, sum(d.hours_expected)::DOUBLE AS hours_expected,
               100 * sum(d.available_s) / nullif(sum(d.period_s), 0) AS availability_pct,
               sum(d.accessibility_pct * d.traffic_volume_mb) / nullif(sum(CASE WHEN d.accessibility_pct IS NOT NULL
                   THEN d.traffic_volume_mb END), 0) AS accessibility_pct,
               sum(d.drop_rate_pct * d.traffic_volume_mb) / nullif(sum(CASE WHEN d.drop_rate_pct IS NOT NULL
                   THEN d.traffic_volume_mb END), 0) AS drop_rate_pct,
               sum(d.latency_ms * d.traffic_volume_mb) / nullif(sum(CASE WHEN d.latency_ms IS NOT NULL
                   THEN d.traffic_volume_mb END), 0) AS latency_ms,
               sum(d.dl_throughput_mbps * d.throughput_weight_s) / nullif(sum(CASE WHEN d.dl_throughput_mbps
                   IS NOT NULL THEN d.throughput_weight_s END), 0) AS dl_throughput_mbps,
               sum(d.prb_utilisation_pct * d.period_s) / nullif(sum(CASE WHEN d.prb_utilisation_pct IS NOT NULL
                   THEN d.period_s END), 0) AS prb_utilisation_pct,
               sum(d.traffic_volume_mb) AS traffic_volume_mb,
               100.0 * sum(d.good_hours) / nullif(sum(d.hours_present), 0) AS experience_index
        FROM staging.cells c
        LEFT JOIN marts.cell_kpi_daily d ON d.cell_id = c.cell_id AND d.date BETWEEN ? AND ?
        GROUP BY ALL ORDER BY c.zone_id, c.cell_id
        """,
        [p.start, p.end],
    )
    df = df.with_columns(completeness=pl.col("hours_present") / pl.col("hours_expected"))
    # One sentence per KPI that misses its target, e.g. "Drop rate 2.31 % (above 2.0)".
    reasons = []
    for kpi, limit in thresholds.items():
        if kpi not in df.columns:
            continue
        k = KPIS[kpi]
        bad = (pl.col(kpi) < limit) if k.better == "higher" else (pl.col(kpi) > limit)
        word = "below" if k.better == "higher" else "above"
        reasons.append(pl.when(bad).then(pl.format("{} {} {} ({} {})", pl.lit(k.label), pl.col(kpi).round(2),
                                                   pl.lit(k.unit), pl.lit(word), pl.lit(limit))))
    df = df.with_columns(
        breaches=pl.concat_str(reasons, separator="; ", ignore_nulls=True) if reasons else pl.lit(""),
        n_breaches=pl.sum_horizontal([r.is_not_null().cast(pl.Int32) for r in reasons]) if reasons else pl.lit(0),
    )
    return df


def investment_list(db: WarehouseReader, p: Period) -> pl.DataFrame:
    """Zones ranked by revenue at stake x experience gap, with the KPIs behind the gap."""
    return db.memo(("investment_list", p.name), lambda: db.query(
        "SELECT invest_rank, zone_id, zone_name, quadrant, revenue_at_stake, experience_index, "
        "experience_gap_pct, investment_score, subscribers, availability_pct, drop_rate_pct, dl_throughput_mbps, "
        "latency_ms, prb_utilisation_pct, accessibility_pct, kpi_completeness "
        "FROM marts.zone_scorecard WHERE period = ? AND invest_rank IS NOT NULL ORDER BY invest_rank",
        [p.name],
    ))


def zone_poor_experience(db: WarehouseReader, zone_id: str, thresholds: dict[str, float]) -> dict:
    """Customers living in the zone whose usage-weighted experience breaches a KPI target, and their revenue.

    Experience per customer is marts.customer_360's `exp_<kpi>`: the KPIs of the cells they used, weighted
    by their usage. Revenue is the last 30 days' usage revenue plus the monthly fees.
    """
    if not db.has_table("marts.customer_360"):
        return {}
    conds = []
    for kpi in ("availability_pct", "accessibility_pct", "drop_rate_pct", "dl_throughput_mbps", "latency_ms"):
        if kpi in thresholds:
            op = "<" if KPIS[kpi].better == "higher" else ">"
            conds.append(f"exp_{kpi} {op} {float(thresholds[kpi])!r}")  # fixed names, numbers from settings
    poor = " OR ".join(conds) or "FALSE"
    by_zone = db.memo(("poor_experience_by_zone", tuple(sorted(thresholds.items()))), lambda: db.query(
        f"""
        SELECT home_zone_id, count(*) AS customers,
               count(*) FILTER (WHERE n_events_with_kpi > 0) AS customers_with_kpis,
               count(*) FILTER (WHERE {poor}) AS poor_customers,
               sum(coalesce(usage_revenue_30d, 0) + coalesce(monthly_fee_total, 0)) FILTER (WHERE {poor})
                   AS poor_revenue_month
        FROM marts.customer_360 WHERE n_active_subscriptions > 0 GROUP BY home_zone_id
        """).rows_by_key("home_zone_id", named=True, unique=True))
    # every zone at once, once per version: a zone page then costs no scan of 1M customers
    row = by_zone.get(zone_id)
    if row is None:
        return {"customers": 0, "customers_with_kpis": 0, "poor_customers": 0, "poor_revenue_month": None}
    return dict(row)


def warm(db: WarehouseReader, thresholds: dict[str, float]) -> None:
    """Compute, for the live version, the per-version answers the overview and zone pages start from
    (period bounds, scorecards, outlines, headline counts, every zone's series and cells, poor experience
    by zone), so that no visitor waits for a scan: run in the background when a version goes live."""
    zones_geojson(db)
    freshness(db)
    zone_list(db)
    first = period(db, "all")
    for choice in PERIOD_ALIASES:
        p = period(db, choice)
        if p is None:
            continue
        scorecard(db, p)
        investment_list(db, p)
        zone_row(db, "", p)
        headline(db, p)
        if first is not None and p.previous().start >= first.start:
            headline(db, p.previous())
        subscribers(db, p.previous())
        zone_revenue_by_service(db, "", p)
        zone_kpi_trend(db, "", p, "experience_index")
        zone_cells(db, "", p, thresholds)
    zone_poor_experience(db, "", thresholds)
