"""Staging models: one per source, every contract column kept under its contract name and type.

Staging renames nothing and drops no row: it casts each `raw.<source>` table to its contract (a column
the landed table lacks becomes a typed null, so a partial load still builds), keeps `_file` for lineage,
and adds only derived columns, each documented in its model's docstring. Geography comes from the
tables `etl.geo.build_geo` wrote before the models run (`staging.cell_zone`, `staging.site_zone`,
`staging.customer_zone`, `staging.zones_map`).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from etl.contracts import SOURCES
from etl.transforms.registry import Tables, model

#: The length of one `kpi_hourly` measurement period (granularity PT1H), in seconds.
PERIOD_S = 3600.0

#: Contract dtypes as Ibis types.
IBIS_TYPES: dict[str, str] = {
    "string": "string",
    "int": "int64",
    "float": "float64",
    "bool": "boolean",
    "date": "date",
    "timestamp": "timestamp",
    "geometry": "string",
}


def contract_columns(t: ir.Table, source: str) -> dict[str, ir.Value]:
    """Every contract column of `source` cast to its contract type, plus `_file`, in contract order.

    A column the landed table lacks (an optional column no file carried) is a typed null, so models
    downstream never depend on which optional columns an operator exports.
    """
    cols: dict[str, ir.Value] = {}
    present = set(t.columns)
    for c in SOURCES[source].columns:
        typ = IBIS_TYPES[c.dtype]
        cols[c.name] = t[c.name].cast(typ) if c.name in present else ibis.null(typ)
    cols["_file"] = t["_file"].cast("string") if "_file" in present else ibis.null("string")
    return cols


def _staged(t: ir.Table, source: str, **derived: ir.Value) -> ir.Table:
    """The contract columns of `t` followed by the derived ones (a derived name may replace a contract one)."""
    cols = contract_columns(t, source)
    cols.update(derived)
    return t.select(**cols)


@model("staging.zones", grain="one row per zone", key=("zone_id",),
       depends_on=("raw.zones", "staging.zones_map"))
def zones(tables: Tables) -> ir.Table:
    """One row per zone: the contract columns, plus from `staging.zones_map` (GeoPandas):

    - `area_km2` (DOUBLE): the zone's area on an equal-area projection;
    - `centroid_lat`, `centroid_lon` (DOUBLE): a point inside the zone (representative point), WGS84.
    """
    raw = tables["raw.zones"]
    zmap = tables["staging.zones_map"].select(
        "area_km2", "centroid_lat", "centroid_lon", map_zone_id="zone_id"
    )
    j = raw.left_join(zmap, raw.zone_id == zmap.map_zone_id)
    return _staged(j, "zones", area_km2=j.area_km2, centroid_lat=j.centroid_lat, centroid_lon=j.centroid_lon)


@model("staging.sites", grain="one row per site", key=("site_id",),
       depends_on=("raw.sites", "staging.site_zone"))
def sites(tables: Tables) -> ir.Table:
    """One row per site: the contract columns, plus from `staging.site_zone` (GeoPandas spatial join):

    - `zone_id`: the zone the site lies in (or the nearest one within the stated distance; else null);
    - `zone_method`: `within`, `nearest` or `none` (how `zone_id` was found).
    """
    raw = tables["raw.sites"]
    sz = tables["staging.site_zone"].select("zone_id", "method", sz_site_id="site_id")
    j = raw.left_join(sz, raw.site_id == sz.sz_site_id)
    return _staged(j, "sites", zone_id=j.zone_id, zone_method=j.method)


@model("staging.cells", grain="one row per cell", key=("cell_id",),
       depends_on=("raw.cells", "raw.sites", "staging.cell_zone"))
def cells(tables: Tables) -> ir.Table:
    """One row per cell: the contract columns, with derived ones:

    - `latitude`, `longitude`: the cell's own coordinates, else its site's (resolved when empty);
    - `location_source`: `cell`, `site`, or null when neither has coordinates;
    - `zone_id`, `zone_method`: the cell's zone from `staging.cell_zone` (GeoPandas spatial join of the
      resolved location: `within`, `nearest`, or `none` with a null zone);
    - `is_in_service` (BOOLEAN): status is `in_service`.
    """
    raw = tables["raw.cells"]
    site = tables["raw.sites"].select(
        s_site_id="site_id", site_latitude="latitude", site_longitude="longitude"
    )
    cz = tables["staging.cell_zone"].select("zone_id", "method", cz_cell_id="cell_id")
    j = raw.left_join(site, raw.site_id == site.s_site_id).left_join(cz, raw.cell_id == cz.cz_cell_id)
    has_own = j.latitude.notnull() & j.longitude.notnull() if "latitude" in raw.columns else ibis.literal(False)
    has_site = j.site_latitude.notnull() & j.site_longitude.notnull()
    lat = ibis.ifelse(has_own, j.latitude, j.site_latitude) if "latitude" in raw.columns else j.site_latitude
    lon = ibis.ifelse(has_own, j.longitude, j.site_longitude) if "longitude" in raw.columns else j.site_longitude
    return _staged(
        j, "cells",
        latitude=ibis.ifelse(has_own | has_site, lat.cast("float64"), ibis.null("float64")),
        longitude=ibis.ifelse(has_own | has_site, lon.cast("float64"), ibis.null("float64")),
        location_source=ibis.cases((has_own, "cell"), (has_site, "site"), else_=ibis.null("string")),
        zone_id=j.zone_id,
        zone_method=j.method,
        is_in_service=(j.status == "in_service").fill_null(False),
    )


@model("staging.subscriptions", grain="one row per product instance", key=("subscription_id",),
       depends_on=("raw.subscriptions",))
def subscriptions(tables: Tables) -> ir.Table:
    """One row per product instance: the contract columns, plus `is_active` (BOOLEAN: status is `active`)."""
    raw = tables["raw.subscriptions"]
    return _staged(raw, "subscriptions", is_active=(raw.status == "active").fill_null(False))


@model("staging.charging", grain="one row per rated usage event", key=("usage_id",),
       depends_on=("raw.charging", "raw.subscriptions", "staging.cell_zone"), partition="usage_date",
       subkey="customer_id", compare_rows=True)
def charging(tables: Tables) -> ir.Table:
    """One row per rated usage event: the contract columns, plus

    - `usage_date` (DATE) and `usage_hour` (TIMESTAMP, truncated to the hour) of `usage_at` (UTC);
    - `zone_id`: the serving cell's zone (`staging.cell_zone`); null when there is no cell (roaming) or
      the cell has no zone;
    - `customer_id`: the subscription's customer (null if the subscription is not landed).
    """
    raw = tables["raw.charging"]
    subs = tables["raw.subscriptions"].select("customer_id", s_subscription_id="subscription_id")
    cz = tables["staging.cell_zone"].select("zone_id", cz_cell_id="cell_id")
    j = raw.left_join(subs, raw.subscription_id == subs.s_subscription_id).left_join(
        cz, raw.cell_id == cz.cz_cell_id
    )
    usage_at = j.usage_at.cast("timestamp")
    return _staged(
        j, "charging",
        usage_date=usage_at.date(),
        usage_hour=usage_at.truncate("h"),
        zone_id=j.zone_id,
        customer_id=j.customer_id,
    )


@model("staging.customers", grain="one row per customer", key=("customer_id",),
       depends_on=("raw.customers", "staging.customer_zone", "staging.charging"))
def customers(tables: Tables) -> ir.Table:
    """One row per customer: the contract columns, plus

    - `home_zone_id`: the zone of the home coordinates (`staging.customer_zone`, GeoPandas); else the
      zone where most of the customer's usage events happened (ties: the smallest zone_id); else null;
    - `home_zone_source`: `home_location`, `usage` or null (how `home_zone_id` was found).
    """
    raw = tables["raw.customers"]
    cz = tables["staging.customer_zone"].select(cz_customer_id="customer_id", geo_zone_id="zone_id")
    placed = cz.filter(cz.geo_zone_id.notnull())
    ch = tables["staging.charging"]
    # only the customers the map could not place need their usage counted
    ch = ch.anti_join(placed, ch.customer_id == placed.cz_customer_id)
    used = (
        ch.filter(ch.zone_id.notnull() & ch.customer_id.notnull())
        .group_by(["customer_id", "zone_id"])
        .aggregate(n_events=ch.usage_id.count())
    )
    rank = ibis.row_number().over(group_by=used.customer_id, order_by=[ibis.desc(used.n_events), used.zone_id])
    top = used.mutate(rk=rank)
    top = top.filter(top.rk == 0).select(u_customer_id="customer_id", usage_zone_id="zone_id")
    j = raw.left_join(cz, raw.customer_id == cz.cz_customer_id).left_join(
        top, raw.customer_id == top.u_customer_id
    )
    return _staged(
        j, "customers",
        home_zone_id=j.geo_zone_id.coalesce(j.usage_zone_id),
        home_zone_source=ibis.cases(
            (j.geo_zone_id.notnull(), "home_location"), (j.usage_zone_id.notnull(), "usage"),
            else_=ibis.null("string"),
        ),
    )


@model("staging.promotions", grain="one row per promotion applied to a subscription", key=("promotion_id",),
       depends_on=("raw.promotions",))
def promotions(tables: Tables) -> ir.Table:
    """One row per promotion applied to a subscription: the contract columns only."""
    return _staged(tables["raw.promotions"], "promotions")


@model("staging.topups", grain="one row per prepaid top-up", key=("topup_id",),
       depends_on=("raw.topups", "raw.subscriptions"), partition="topup_date")
def topups(tables: Tables) -> ir.Table:
    """One row per prepaid top-up: the contract columns, plus `topup_date` (DATE of `topup_at`) and
    `customer_id` (the subscription's customer; null if the subscription is not landed)."""
    raw = tables["raw.topups"]
    subs = tables["raw.subscriptions"].select("customer_id", s_subscription_id="subscription_id")
    j = raw.left_join(subs, raw.subscription_id == subs.s_subscription_id)
    return _staged(j, "topups", topup_date=j.topup_at.cast("timestamp").date(), customer_id=j.customer_id)


@model("staging.bills", grain="one row per postpaid bill", key=("bill_id",), depends_on=("raw.bills",))
def bills(tables: Tables) -> ir.Table:
    """One row per postpaid bill: the contract columns, plus `amount_open` (amount_due - amount_paid,
    an empty amount_paid counting as 0)."""
    raw = tables["raw.bills"]
    return _staged(raw, "bills", amount_open=raw.amount_due - raw.amount_paid.fill_null(0.0))


@model("staging.tickets", grain="one row per trouble ticket", key=("ticket_id",), depends_on=("raw.tickets",))
def tickets(tables: Tables) -> ir.Table:
    """One row per trouble ticket: the contract columns, plus `created_date` (DATE of `created_at`) and
    `is_open` (BOOLEAN: no `resolved_at` yet)."""
    raw = tables["raw.tickets"]
    return _staged(raw, "tickets", created_date=raw.created_at.cast("timestamp").date(),
                   is_open=raw.resolved_at.isnull())


def _col(t: ir.Table, name: str, typ: str) -> ir.Value:
    """A column of `t`, or a typed null when the landed table lacks it (an optional counter)."""
    return t[name].cast(typ) if name in t.columns else ibis.null(typ)


def _ratio(num: ir.Value, den: ir.Value) -> ir.Value:
    """num / den as a float, null when either is null or den is not positive."""
    return ibis.ifelse(den > 0, num.cast("float64") / den.cast("float64"), ibis.null("float64"))


@model("staging.kpi_hourly", grain="one row per cell per hour", key=("cell_id", "period_start"),
       depends_on=("raw.kpi_hourly", "raw.cells", "staging.cell_zone"), partition="kpi_date",
       key_fixes_partition=True)
def kpi_hourly(tables: Tables) -> ir.Table:
    """One row per cell per hour, derived KPIs recomputed from 3GPP TS 32.450 counters where present.

    Recomputed (else kept as landed; ratios capped at 100 when counters disagree):
    - `availability_pct` = 100 x (T - unavailable_time_s) / T, T = 3600 s;
    - `accessibility_pct` = 100 x (rrc successes / attempts) x (E-RAB successes / attempts);
    - `drop_rate_pct` = 100 x abnormal E-RAB releases / E-RAB releases.
    Added: `kpi_date` (DATE of period_start), `site_id` and `zone_id` (the cell's, zone from
    `staging.cell_zone`); the weights marts aggregate with:
    - `period_s` (3600), `unavailable_s` (the counter, else (100 - availability_pct) x 36), `available_s`
      (period_s - unavailable_s): availability and PRB utilisation are time-weighted by them;
    - `traffic_weight_mb` (traffic_volume_mb, empty as 0): accessibility, drop rate and latency are
      traffic-weighted by it;
    - `throughput_weight_s`: dl_active_time_s, else the active time implied by the volume
      (traffic_volume_mb x 8 / dl_throughput_mbps): throughput aggregates as volume over active time;
    - `is_availability_recomputed`, `is_accessibility_recomputed`, `is_drop_rate_recomputed` (BOOLEAN).
    """
    raw = tables["raw.kpi_hourly"]
    cells_ = tables["raw.cells"].select("site_id", c_cell_id="cell_id")
    cz = tables["staging.cell_zone"].select("zone_id", cz_cell_id="cell_id")
    j = raw.left_join(cells_, raw.cell_id == cells_.c_cell_id).left_join(cz, raw.cell_id == cz.cz_cell_id)

    unavail_counter = _col(j, "unavailable_time_s", "float64")
    has_unavail = unavail_counter.notnull()
    unavailable_s = ibis.ifelse(
        has_unavail, ibis.greatest(0.0, ibis.least(PERIOD_S, unavail_counter)),
        (100.0 - j.availability_pct.cast("float64")) * (PERIOD_S / 100.0),
    )
    availability = ibis.ifelse(has_unavail, 100.0 * (PERIOD_S - unavailable_s) / PERIOD_S,
                               j.availability_pct.cast("float64"))

    rrc = _ratio(_col(j, "rrc_setup_successes", "int64"), _col(j, "rrc_setup_attempts", "int64"))
    erab = _ratio(_col(j, "erab_setup_successes", "int64"), _col(j, "erab_setup_attempts", "int64"))
    has_access = rrc.notnull() & erab.notnull()
    accessibility = ibis.ifelse(has_access, ibis.least(100.0, 100.0 * rrc * erab),
                                j.accessibility_pct.cast("float64"))

    drop = _ratio(_col(j, "erab_abnormal_releases", "int64"), _col(j, "erab_releases", "int64"))
    has_drop = drop.notnull()
    drop_rate = ibis.ifelse(has_drop, ibis.least(100.0, 100.0 * drop), j.drop_rate_pct.cast("float64"))

    traffic = j.traffic_volume_mb.cast("float64").fill_null(0.0)
    thr = j.dl_throughput_mbps.cast("float64")
    active = _col(j, "dl_active_time_s", "float64")
    throughput_weight = ibis.ifelse(
        active.notnull(), active, ibis.ifelse(thr > 0, traffic * 8.0 / thr, ibis.null("float64"))
    )
    return _staged(
        j, "kpi_hourly",
        availability_pct=availability,
        accessibility_pct=accessibility,
        drop_rate_pct=drop_rate,
        kpi_date=j.period_start.cast("timestamp").date(),
        site_id=j.site_id,
        zone_id=j.zone_id,
        period_s=ibis.literal(PERIOD_S, "float64"),
        unavailable_s=unavailable_s,
        available_s=PERIOD_S - unavailable_s,
        traffic_weight_mb=traffic,
        throughput_weight_s=throughput_weight,
        is_availability_recomputed=has_unavail,
        is_accessibility_recomputed=has_access,
        is_drop_rate_recomputed=has_drop,
    )


@model("staging.alarms", grain="one row per alarm (its latest state)", key=("alarm_id",),
       depends_on=("raw.alarms",))
def alarms(tables: Tables) -> ir.Table:
    """One row per alarm: the contract columns, plus `raised_date` (DATE of `raised_at`) and `is_open`
    (BOOLEAN: no `cleared_at` yet)."""
    raw = tables["raw.alarms"]
    return _staged(raw, "alarms", raised_date=raw.raised_at.cast("timestamp").date(),
                   is_open=raw.cleared_at.isnull())


@model("staging.alarm_cells", grain="one row per alarm per cell it touches", key=("alarm_id", "cell_id"),
       depends_on=("raw.alarms", "raw.cells"))
def alarm_cells(tables: Tables) -> ir.Table:
    """One row per alarm per cell it touches: a site alarm expands to every cell of the site, a cell
    alarm is its own cell. Columns: `alarm_id`, `cell_id`, `site_id` (the cell's), `alarmed_object_type`.
    An alarm on a site with no landed cell touches no cell (it has no row here).
    """
    al = tables["raw.alarms"]
    cl = tables["raw.cells"].select("cell_id", "site_id")
    on_site = al.filter(al.alarmed_object_type == "site")
    site_rows = on_site.join(cl, on_site.alarmed_object_id == cl.site_id).select(
        alarm_id=on_site.alarm_id.cast("string"), cell_id=cl.cell_id.cast("string"),
        site_id=cl.site_id.cast("string"), alarmed_object_type=ibis.literal("site", "string"),
    )
    on_cell = al.filter(al.alarmed_object_type == "cell")
    cj = on_cell.left_join(cl, on_cell.alarmed_object_id == cl.cell_id)
    cell_rows = cj.select(
        alarm_id=cj.alarm_id.cast("string"), cell_id=cj.alarmed_object_id.cast("string"),
        site_id=cj.site_id.cast("string"), alarmed_object_type=ibis.literal("cell", "string"),
    )
    return site_rows.union(cell_rows, distinct=True)


#: The event days that make up the calendar, and each source's date column.
CALENDAR_SOURCES: tuple[tuple[str, str], ...] = (
    ("staging.charging", "usage_date"), ("staging.topups", "topup_date"), ("staging.kpi_hourly", "kpi_date"),
)


def days_in_month(year: ir.IntegerValue, month: ir.IntegerValue) -> ir.IntegerValue:
    """The number of days of a month (Gregorian leap years), with integer arithmetic only (portable)."""
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return ibis.cases(
        (month == 2, ibis.ifelse(leap, 29, 28)),
        (month.isin([4, 6, 9, 11]), 30),
        else_=31,
    ).cast("int64")


@model("staging.calendar", grain="one row per day", key=("date",),
       depends_on=tuple(name for name, _ in CALENDAR_SOURCES), partition="date", always_whole=True)
def calendar(tables: Tables) -> ir.Table:
    """One row per day from the first to the last day with a usage event, a top-up or a KPI hour.

    Columns: `date`, `year`, `month`, `month_start` (DATE), `days_in_month` (the recurring-fee accrual
    divides a monthly fee by it). Empty when none of those sources has a row.
    """
    dates = ibis.union(*[tables[name].select(d=tables[name][col]) for name, col in CALENDAR_SOURCES])
    bounds = dates.aggregate(lo=dates.d.min(), hi=dates.d.max())
    bounds = bounds.filter(bounds.lo.notnull())
    steps = bounds.select(lo=bounds.lo, k=ibis.range(0, bounds.hi.delta(bounds.lo, unit="day") + 1, 1).unnest())
    days = steps.select(date=(steps.lo + steps.k.as_interval("D")).cast("date"))
    year, month = days.date.year().cast("int64"), days.date.month().cast("int64")
    return days.select(
        date=days.date,
        year=year,
        month=month,
        month_start=ibis.date(year, month, 1),
        days_in_month=days_in_month(year, month),
    )
