"""Zone and cell marts: revenue by zone and day, KPIs by cell and zone and day, and the zone scorecard.

Revenue attribution: usage revenue lands in the zone of the cell that carried the usage (usage with no
cell, e.g. roaming abroad, lands in the customer's home zone, else in `UNASSIGNED`); recurring fees accrue
daily in the customer's home zone. KPIs are aggregated per 3GPP TS 32.450, weighted by time or traffic,
never as a plain mean of percentages, and every KPI aggregate says how complete its hours are.
Every expression is portable Ibis (DuckDB and PySpark give the same rows).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from etl.transforms.registry import Tables, model, without

#: The zone that revenue or KPIs land in when no zone can be found for them.
UNASSIGNED = "UNASSIGNED"
#: The `service` of the rows of zone_daily that carry recurring fees (usage services are the contract's).
RECURRING = "recurring"
#: Seconds in a day, and the hour length of a KPI period.
DAY_S = 86400
HOUR_S = 3600
#: Scorecard periods: a label and how many days back from the last loaded day (None: everything).
PERIODS: tuple[tuple[str, int | None], ...] = (("all", None), ("last_28d", 28), ("last_7d", 7))
#: A zone's experience is poor when its experience index is below the period's median zone and below this.
EXPERIENCE_TARGET = 95.0
#: Average days in a month (365.25 / 12): normalises a period's revenue per subscriber to a month.
DAYS_PER_MONTH = 30.4375

_KPI_THRESHOLD_RULES: tuple[tuple[str, str], ...] = (
    ("availability_pct", "min"), ("accessibility_pct", "min"), ("dl_throughput_mbps", "min"),
    ("drop_rate_pct", "max"), ("latency_ms", "max"), ("prb_utilisation_pct", "max"),
)


# ------------------------------------------------------------------------------------------- helpers


def _left(left: ir.Table, right: ir.Table, on: list[tuple[str, str]]) -> ir.Table:
    """`left` left-joined with `right` on equal (left column, right column) pairs, every column of both kept.

    The left side is wrapped in a view first: Ibis would otherwise try to extend a join that `left` is a
    projection of, and reject the predicate.
    """
    v = left.view()
    j = v.left_join(right, [v[a] == right[b] for a, b in on])
    return j.select(*[j[c] for c in j.columns])


# ------------------------------------------------------------------------------------------- revenue


def _zone_names(tables: Tables) -> ir.Table:
    z = tables["staging.zones"]
    return z.select(n_zone_id=z.zone_id, zone_name=z.zone_name)


def daily_fees(tables: Tables) -> ir.Table:
    """One row per subscription per calendar day it is active: its fee accrued that day, net of promotions.

    A subscription is active from `start_date` up to the day before `termination_date`; the fee of a day
    is monthly_fee x (1 - the largest discount valid that day / 100) / days in that month.
    """
    cal = tables["staging.calendar"].select("date", "days_in_month")
    subs = tables["staging.subscriptions"]
    subs = subs.filter(subs.monthly_fee.notnull()).select(
        "subscription_id", "customer_id", "payment_type", "start_date", "termination_date", "monthly_fee"
    )
    active = cal.join(
        subs,
        [subs.start_date <= cal.date, subs.termination_date.isnull() | (cal.date < subs.termination_date)],
    )
    pr = tables["staging.promotions"]
    pr = pr.select(p_subscription_id=pr.subscription_id, valid_from=pr.valid_from, valid_to=pr.valid_to,
                   discount=pr.discount)
    j = active.left_join(
        pr,
        [active.subscription_id == pr.p_subscription_id, pr.valid_from <= active.date,
         pr.valid_to.isnull() | (active.date <= pr.valid_to)],
    )
    g = j.group_by(["date", "subscription_id", "customer_id", "payment_type", "monthly_fee", "days_in_month"])
    g = g.aggregate(discount=j.discount.max())
    return g.select(
        "date", "subscription_id", "customer_id", "payment_type",
        fee=g.monthly_fee * (1.0 - g.discount.fill_null(0.0) / 100.0) / g.days_in_month.cast("float64"),
    )


@model(
    "marts.zone_daily",
    grain="one row per zone, day, service and payment type",
    key=("zone_id", "date", "service", "payment_type"),
    depends_on=("staging.charging", "staging.customers", "staging.subscriptions", "staging.promotions",
                "staging.calendar", "staging.zones"),
    partition="date",
)
def zone_daily(tables: Tables) -> ir.Table:
    """One row per zone, day, service and payment type: revenue, usage and the subscribers behind it.

    Usage rows (service voice/sms/data/roaming/vas): `usage_revenue` = sum of charging amounts in the zone
    of the serving cell (no cell: the customer's home zone; neither: `UNASSIGNED`). Fee rows (service
    `recurring`): `fee_revenue` = the daily fee accrual (`daily_fees`) in the customer's home zone.
    `revenue` = usage_revenue + fee_revenue. `n_events`, `quantity` (in the service's unit): usage events.
    `active_subscribers`: distinct subscriptions with revenue in the row (they do not add up across rows);
    `arpu` = revenue / active_subscribers. `zone_name` from staging.zones (null for UNASSIGNED).
    """
    ch = tables["staging.charging"]
    home = tables["staging.customers"].select(h_customer_id="customer_id", home_zone_id="home_zone_id")
    u = ch.left_join(home, ch.customer_id == home.h_customer_id)
    u = u.select(
        zone_id=u.zone_id.coalesce(u.home_zone_id, ibis.literal(UNASSIGNED)),
        date=u.usage_date, service=u.service, payment_type=u.payment_type,
        subscription_id=u.subscription_id, amount=u.amount, quantity=u.quantity, usage_id=u.usage_id,
    )
    usage = u.group_by(["zone_id", "date", "service", "payment_type"]).aggregate(
        usage_revenue=u.amount.sum(),
        fee_revenue=ibis.literal(0.0, "float64"),
        n_events=u.usage_id.count(),
        quantity=u.quantity.sum(),
        active_subscribers=u.subscription_id.nunique(),
    )
    fees = daily_fees(tables)
    f = fees.left_join(home, fees.customer_id == home.h_customer_id)
    f = f.select(
        zone_id=f.home_zone_id.coalesce(ibis.literal(UNASSIGNED)), date=f.date,
        service=ibis.literal(RECURRING, "string"), payment_type=f.payment_type,
        subscription_id=f.subscription_id, fee=f.fee,
    )
    fee_rows = f.group_by(["zone_id", "date", "service", "payment_type"]).aggregate(
        usage_revenue=ibis.literal(0.0, "float64"),
        fee_revenue=f.fee.sum(),
        n_events=ibis.literal(0, "int64"),
        quantity=ibis.literal(0.0, "float64"),
        active_subscribers=f.subscription_id.nunique(),
    )
    rows = usage.union(fee_rows)
    rows = rows.mutate(revenue=rows.usage_revenue.fill_null(0.0) + rows.fee_revenue.fill_null(0.0))
    names = _zone_names(tables)
    j = rows.left_join(names, rows.zone_id == names.n_zone_id)
    return j.select(
        zone_id=j.zone_id.cast("string"), date=j.date.cast("date"), service=j.service.cast("string"),
        payment_type=j.payment_type.cast("string"), zone_name=j.zone_name,
        revenue=j.revenue, usage_revenue=j.usage_revenue.cast("float64"), fee_revenue=j.fee_revenue.cast("float64"),
        n_events=j.n_events.cast("int64"), quantity=j.quantity.cast("float64"),
        active_subscribers=j.active_subscribers.cast("int64"),
        arpu=j.revenue / j.active_subscribers.cast("float64").nullif(0.0),
    )


# ------------------------------------------------------------------------------------------------ KPIs


def _thresholds(tables: Tables) -> ir.Table:
    """The KPI targets of `meta.kpi_thresholds` as one row, a `th_<kpi>` column per KPI (null if unset)."""
    th = tables["meta.kpi_thresholds"]
    return th.aggregate(**{
        f"th_{kpi}": ibis.ifelse(th.kpi == kpi, th.threshold, ibis.null("float64")).max()
        for kpi, _ in _KPI_THRESHOLD_RULES
    })


def kpi_hours(tables: Tables) -> ir.Table:
    """staging.kpi_hourly with the zone (`UNASSIGNED` when none), the cell's in-service flag and
    `is_good_hour`: every KPI of the hour meets its target (a KPI or target that is null is not judged)."""
    h = tables["staging.kpi_hourly"]
    cells = tables["staging.cells"].select(c_cell_id="cell_id", c_in_service="is_in_service")
    h = h.left_join(cells, h.cell_id == cells.c_cell_id).cross_join(_thresholds(tables))
    good = ibis.literal(True)
    for kpi, rule in _KPI_THRESHOLD_RULES:
        v, t = h[kpi], h[f"th_{kpi}"]
        ok = (v >= t) if rule == "min" else (v <= t)
        good = good & ok.fill_null(True)
    return h.mutate(
        zone_id=h.zone_id.coalesce(ibis.literal(UNASSIGNED)),
        date=h.kpi_date,
        is_in_service=h.c_in_service.fill_null(False),
        is_good_hour=good,
    )


def _wmean(x: ir.NumericValue, w: ir.NumericValue) -> ir.FloatingValue:
    """The mean of x weighted by w over the rows where both are known (null when their weights sum to 0)."""
    known = x.notnull() & w.notnull()
    num = ibis.ifelse(known, x.cast("float64") * w.cast("float64"), 0.0).sum()
    den = ibis.ifelse(known, w.cast("float64"), 0.0).sum()
    return num / den.nullif(0.0)


def _pct(x: ir.FloatingValue) -> ir.FloatingValue:
    """A weighted mean of percentages kept in [0, 100]: it is bounded by its inputs, but float sums can
    land a rounding error past the bound (100.00000000000001)."""
    return _clip(x, 0.0, 100.0)


def _clip(x: ir.FloatingValue, lo: float, hi: float) -> ir.FloatingValue:
    """x limited to [lo, hi], null staying null (SQL's LEAST and GREATEST skip nulls on both engines)."""
    return ibis.cases((x > hi, hi), (x < lo, lo), else_=x)


def kpi_metrics(h: ir.Table) -> dict[str, ir.Value]:
    """The KPI aggregates of a group of cell-hours (see the marts' docstrings for the weighting)."""
    return {
        "hours_present": h.cell_id.count(),
        "hours_in_service": ibis.ifelse(h.is_in_service, 1, 0).sum().cast("int64"),
        "good_hours": ibis.ifelse(h.is_good_hour, 1, 0).sum().cast("int64"),
        "period_s": h.period_s.sum(),
        "available_s": h.available_s.sum(),
        "availability_pct": _pct(100.0 * h.available_s.sum() / h.period_s.sum().nullif(0.0)),
        "accessibility_pct": _pct(_wmean(h.accessibility_pct, h.traffic_weight_mb)),
        "drop_rate_pct": _pct(_wmean(h.drop_rate_pct, h.traffic_weight_mb)),
        "latency_ms": _wmean(h.latency_ms, h.traffic_weight_mb),
        "dl_throughput_mbps": _wmean(h.dl_throughput_mbps, h.throughput_weight_s),
        "prb_utilisation_pct": _pct(_wmean(h.prb_utilisation_pct, h.period_s)),
        "traffic_volume_mb": h.traffic_weight_mb.sum(),
        "voice_traffic_erlh": h.voice_traffic_erl.sum(),
        "throughput_weight_s": ibis.ifelse(h.dl_throughput_mbps.notnull(), h.throughput_weight_s, 0.0).sum(),
    }


def kpi_days(tables: Tables) -> ir.Table:
    """One row per day of the KPI span, with `hours_expected`: the hours of that day between the first and
    the last KPI hour loaded (24 inside the span, fewer on its first and last day)."""
    h = tables["staging.kpi_hourly"]
    b = h.aggregate(lo=h.period_start.min().epoch_seconds(), hi=h.period_start.max().epoch_seconds() + HOUR_S)
    b = b.filter(b.lo.notnull())  # no KPI loaded: no KPI day (LEAST/GREATEST below would skip the nulls)
    cal = tables["staging.calendar"].select("date")
    d = cal.cross_join(b)
    start = d.date.cast("timestamp").epoch_seconds()
    hours = (ibis.least(start + DAY_S, d.hi) - ibis.greatest(start, d.lo)) / HOUR_S
    d = d.select(date=d.date, hours_expected=hours.cast("float64"))
    return d.filter(d.hours_expected > 0)


def _completeness(present: ir.NumericValue, expected: ir.NumericValue) -> ir.FloatingValue:
    """present / expected, capped at 1; null when nothing was expected."""
    return _clip(present.cast("float64") / expected.cast("float64").nullif(0.0), 0.0, 1.0)


_KPI_OUT = ("availability_pct", "accessibility_pct", "drop_rate_pct", "dl_throughput_mbps", "latency_ms",
            "prb_utilisation_pct")
_KPI_DEPS = ("staging.kpi_hourly", "staging.cells", "staging.calendar", "meta.kpi_thresholds")


@model("marts.cell_kpi_daily", grain="one row per cell per day", key=("cell_id", "date"),
       depends_on=_KPI_DEPS)
def cell_kpi_daily(tables: Tables) -> ir.Table:
    """One row per cell per day of the KPI span: every in-service cell, and any cell that reported.

    - `availability_pct` = 100 x sum(available_s) / sum(period_s) over the hours present (time-weighted);
    - `accessibility_pct`, `drop_rate_pct`, `latency_ms`: weighted by each hour's traffic volume;
    - `dl_throughput_mbps`: weighted by active transfer time (volume over active time);
    - `prb_utilisation_pct`: time-weighted; `traffic_volume_mb`, `voice_traffic_erlh`: sums;
    - `throughput_weight_s`: the active time behind `dl_throughput_mbps` (to re-aggregate days exactly:
      sum(dl_throughput_mbps x throughput_weight_s) / sum(throughput_weight_s));
    - `hours_present`, `hours_expected`, `completeness` = hours_present / hours_expected (0 when silent);
    - `good_hours`, `good_hours_pct`: hours meeting every KPI target (meta.kpi_thresholds);
    - `site_id`, `zone_id` (`UNASSIGNED` when none), `technology`, `is_in_service` from staging.cells.
    """
    h = kpi_hours(tables)
    agg = h.group_by(["cell_id", "date"]).aggregate(**kpi_metrics(h))
    days = kpi_days(tables)
    cells = tables["staging.cells"]
    spine = cells.filter(cells.is_in_service).select(s_cell_id="cell_id").cross_join(
        days.select(s_date="date")
    )
    j = spine.outer_join(agg, [spine.s_cell_id == agg.cell_id, spine.s_date == agg.date])
    j = j.select(cell_id=j.s_cell_id.coalesce(j.cell_id), date=j.s_date.coalesce(j.date),
                 **{c: j[c] for c in agg.columns if c not in ("cell_id", "date")})
    info = cells.select(i_cell_id="cell_id", site_id="site_id", zone_id="zone_id", technology="technology",
                        is_in_service="is_in_service")
    exp = days.select(e_date="date", e_h="hours_expected")
    j = _left(j, info, [("cell_id", "i_cell_id")])
    j = _left(j, exp, [("date", "e_date")])
    hours_present = j.hours_present.fill_null(0).cast("int64")
    return j.select(
        cell_id=j.cell_id, date=j.date, site_id=j.site_id, zone_id=j.zone_id.coalesce(ibis.literal(UNASSIGNED)),
        technology=j.technology, is_in_service=j.is_in_service.fill_null(False),
        hours_present=hours_present, hours_expected=j.e_h.fill_null(24.0),
        completeness=_completeness(hours_present, j.e_h.fill_null(24.0)),
        **{c: j[c] for c in _KPI_OUT},
        period_s=j.period_s.fill_null(0.0), available_s=j.available_s.fill_null(0.0),
        traffic_volume_mb=j.traffic_volume_mb.fill_null(0.0), voice_traffic_erlh=j.voice_traffic_erlh,
        throughput_weight_s=j.throughput_weight_s.fill_null(0.0),
        good_hours=j.good_hours.fill_null(0).cast("int64"),
        good_hours_pct=100.0 * j.good_hours.cast("float64") / j.hours_present.cast("float64").nullif(0.0),
    )


@model("marts.zone_kpi_daily", grain="one row per zone per day", key=("zone_id", "date"),
       depends_on=(*_KPI_DEPS, "staging.zones"))
def zone_kpi_daily(tables: Tables) -> ir.Table:
    """One row per zone per day of the KPI span: every zone with in-service cells, and any that reported.

    KPIs aggregate the zone's cell-hours with the same weighting as cell_kpi_daily (time for availability
    and PRB, traffic for accessibility, drops and latency, active time for throughput). `n_cells`: in-service
    cells of the zone; `n_cells_reporting`: cells with a KPI row that day; `hours_expected` = n_cells x the
    day's hours; `completeness` = in-service cell-hours present / hours_expected. `good_hours`,
    `good_hours_pct`: cell-hours meeting every KPI target; `throughput_weight_s` as in cell_kpi_daily.
    `zone_name` from staging.zones.
    """
    h = kpi_hours(tables)
    agg = h.group_by(["zone_id", "date"]).aggregate(n_cells_reporting=h.cell_id.nunique(), **kpi_metrics(h))
    days = kpi_days(tables)
    cells = tables["staging.cells"]
    ins = cells.filter(cells.is_in_service)
    ins = ins.mutate(zone_id=ins.zone_id.coalesce(ibis.literal(UNASSIGNED)))
    ncell = ins.group_by("zone_id").aggregate(n_cells=ins.cell_id.nunique())
    spine = ncell.select(s_zone_id="zone_id").cross_join(days.select(s_date="date"))
    j = spine.outer_join(agg, [spine.s_zone_id == agg.zone_id, spine.s_date == agg.date])
    j = j.select(zone_id=j.s_zone_id.coalesce(j.zone_id), date=j.s_date.coalesce(j.date),
                 **{c: j[c] for c in agg.columns if c not in ("zone_id", "date")})
    nc = ncell.select(c_zone_id="zone_id", n_cells="n_cells")
    exp = days.select(e_date="date", e_h="hours_expected")
    names = _zone_names(tables)
    j = _left(j, nc, [("zone_id", "c_zone_id")])
    j = _left(j, exp, [("date", "e_date")])
    j = _left(j, names, [("zone_id", "n_zone_id")])
    n_cells = j.n_cells.fill_null(0).cast("int64")
    expected = n_cells.cast("float64") * j.e_h.fill_null(24.0)
    return j.select(
        zone_id=j.zone_id, date=j.date, zone_name=j.zone_name,
        n_cells=n_cells, n_cells_reporting=j.n_cells_reporting.fill_null(0).cast("int64"),
        hours_present=j.hours_present.fill_null(0).cast("int64"), hours_expected=expected,
        completeness=_completeness(j.hours_in_service.fill_null(0), expected),
        **{c: j[c] for c in _KPI_OUT},
        period_s=j.period_s.fill_null(0.0), available_s=j.available_s.fill_null(0.0),
        traffic_volume_mb=j.traffic_volume_mb.fill_null(0.0), voice_traffic_erlh=j.voice_traffic_erlh,
        throughput_weight_s=j.throughput_weight_s.fill_null(0.0),
        good_hours=j.good_hours.fill_null(0).cast("int64"),
        good_hours_pct=100.0 * j.good_hours.cast("float64") / j.hours_present.cast("float64").nullif(0.0),
    )


# ------------------------------------------------------------------------------------------- scorecard


def periods(tables: Tables) -> ir.Table:
    """The scorecard periods: `all` (every loaded day) and the last 28 and 7 days up to the last loaded day.

    Columns: `period`, `period_start`, `period_end` (DATE, inclusive), `n_days`.
    """
    cal = tables["staging.calendar"]
    b = cal.aggregate(lo=cal.date.min(), hi=cal.date.max())
    b = b.filter(b.hi.notnull())
    parts = []
    for label, days in PERIODS:
        start = b.lo if days is None else ibis.greatest(b.lo, b.hi - ibis.interval(days=days - 1))
        parts.append(b.select(period=ibis.literal(label, "string"), period_start=start.cast("date"),
                              period_end=b.hi.cast("date")))
    p = ibis.union(*parts)
    return p.mutate(n_days=(p.period_end.delta(p.period_start, unit="day") + 1).cast("int64"))


@model(
    "marts.zone_scorecard",
    grain="one row per zone per period",
    key=("zone_id", "period"),
    depends_on=("marts.zone_daily", *_KPI_DEPS, "staging.zones", "staging.subscriptions",
                "staging.customers"),
)
def zone_scorecard(tables: Tables) -> ir.Table:
    """One row per zone per period (`all`, `last_28d`, `last_7d`): value x experience and where to invest.

    - `revenue`, `usage_revenue`, `fee_revenue`: zone_daily summed over the period; `revenue_per_day`;
    - `subscribers`: subscriptions of customers living in the zone active at some time in the period;
      `arpu_month` = revenue / subscribers, per 30.4375 days;
    - KPIs over the period's cell-hours (weighted as in zone_kpi_daily), `kpi_completeness`;
    - `experience_index` = 100 x cell-hours meeting every KPI target / cell-hours present (null: no KPIs);
      `experience_gap_pct` = 100 - experience_index;
    - `value_class`: `high` when revenue is positive and at least the period's median zone revenue, else
      `low`; `experience_class`: `poor` when the index is below the period's median zone and below
      `EXPERIENCE_TARGET`, else `good` (null without KPIs); `quadrant`: invest (high, poor), protect
      (high, good), maintain (low, good), monitor (low, poor);
    - `revenue_at_stake` = revenue; `investment_score` = revenue_at_stake x experience_gap_pct / 100;
      `invest_rank` = 1 for the highest score in the period (zones with a score).
    `UNASSIGNED` (revenue with no zone) has a row so revenue reconciles, but no class, quadrant or rank; a
    zone without KPI hours has no experience class, so no quadrant either.
    """
    per = periods(tables)
    zd = tables["marts.zone_daily"]
    r = zd.join(per, [zd.date >= per.period_start, zd.date <= per.period_end])
    rev = r.group_by(["zone_id", "period"]).aggregate(
        revenue=r.revenue.sum(), usage_revenue=r.usage_revenue.sum(), fee_revenue=r.fee_revenue.sum()
    )

    h = kpi_hours(tables)
    hp = h.join(per, [h.date >= per.period_start, h.date <= per.period_end])
    kpi = hp.group_by(["zone_id", "period"]).aggregate(**kpi_metrics(hp))
    days = kpi_days(tables)
    cells = tables["staging.cells"]
    ins = cells.filter(cells.is_in_service)
    ins = ins.mutate(zone_id=ins.zone_id.coalesce(ibis.literal(UNASSIGNED)))
    ncell = ins.group_by("zone_id").aggregate(n_cells=ins.cell_id.nunique())
    dp = days.join(per, [days.date >= per.period_start, days.date <= per.period_end])
    ph = dp.group_by("period").aggregate(period_hours=dp.hours_expected.sum())

    subs = tables["staging.subscriptions"]
    home = tables["staging.customers"].select(h_customer_id="customer_id", home_zone_id="home_zone_id")
    s = subs.join(home, subs.customer_id == home.h_customer_id)
    s = s.join(per, [s.start_date <= per.period_end,
                     s.termination_date.isnull() | (s.termination_date > per.period_start)])
    s = s.mutate(zone_id=s.home_zone_id.coalesce(ibis.literal(UNASSIGNED)))
    nsub = s.group_by(["zone_id", "period"]).aggregate(subscribers=s.subscription_id.nunique())

    zones = tables["staging.zones"].select("zone_id")
    universe = ibis.union(zones, rev.select("zone_id"), kpi.select("zone_id"), ncell.select("zone_id"),
                          distinct=True)
    base = universe.cross_join(per)
    rv = rev.rename(r_zone_id="zone_id", r_period="period")
    kp = kpi.rename(k_zone_id="zone_id", k_period="period")
    ns = nsub.rename(s_zone_id="zone_id", s_period="period")
    nc = ncell.rename(c_zone_id="zone_id")
    pp = ph.rename(p_period="period")
    names = _zone_names(tables)
    j = _left(base, rv, [("zone_id", "r_zone_id"), ("period", "r_period")])
    j = _left(j, kp, [("zone_id", "k_zone_id"), ("period", "k_period")])
    j = _left(j, ns, [("zone_id", "s_zone_id"), ("period", "s_period")])
    j = _left(j, nc, [("zone_id", "c_zone_id")])
    j = _left(j, pp, [("period", "p_period")])
    j = _left(j, names, [("zone_id", "n_zone_id")])
    revenue = j.revenue.fill_null(0.0)
    expected = j.n_cells.fill_null(0).cast("float64") * j.period_hours.fill_null(0.0)
    index = 100.0 * j.good_hours.cast("float64") / j.hours_present.cast("float64").nullif(0.0)
    t = j.select(
        zone_id=j.zone_id, period=j.period, zone_name=j.zone_name, period_start=j.period_start,
        period_end=j.period_end, n_days=j.n_days,
        revenue=revenue, usage_revenue=j.usage_revenue.fill_null(0.0), fee_revenue=j.fee_revenue.fill_null(0.0),
        revenue_per_day=revenue / j.n_days.cast("float64"),
        subscribers=j.subscribers.fill_null(0).cast("int64"),
        arpu_month=revenue / j.subscribers.cast("float64").nullif(0.0) * DAYS_PER_MONTH
        / j.n_days.cast("float64"),
        n_cells=j.n_cells.fill_null(0).cast("int64"),
        hours_present=j.hours_present.fill_null(0).cast("int64"),
        kpi_completeness=_completeness(j.hours_in_service.fill_null(0), expected),
        **{c: j[c] for c in _KPI_OUT},
        traffic_volume_mb=j.traffic_volume_mb.fill_null(0.0),
        good_hours=j.good_hours.fill_null(0).cast("int64"),
        experience_index=index,
        experience_gap_pct=100.0 - index,
    )
    real = t.filter(t.zone_id != UNASSIGNED)
    med = real.group_by("period").aggregate(
        median_revenue=real.revenue.median(), median_index=real.experience_index.median()
    )
    md = med.rename(m_period="period")
    t = _left(t, md, [("period", "m_period")])
    is_real = t.zone_id != UNASSIGNED
    value = ibis.cases(
        (~is_real, ibis.null("string")),
        ((t.revenue > 0) & (t.revenue >= t.median_revenue), "high"),
        else_="low",
    )
    experience = ibis.cases(
        (~is_real | t.experience_index.isnull(), ibis.null("string")),
        ((t.experience_index < t.median_index) & (t.experience_index < EXPERIENCE_TARGET), "poor"),
        else_="good",
    )
    t = t.mutate(value_class=value, experience_class=experience)
    quadrant = ibis.cases(
        ((t.value_class == "high") & (t.experience_class == "poor"), "invest"),
        ((t.value_class == "high") & (t.experience_class == "good"), "protect"),
        ((t.value_class == "low") & (t.experience_class == "good"), "maintain"),
        ((t.value_class == "low") & (t.experience_class == "poor"), "monitor"),
        else_=ibis.null("string"),
    )
    score = ibis.ifelse(is_real, t.revenue * t.experience_gap_pct / 100.0, ibis.null("float64"))
    t = t.mutate(quadrant=quadrant, revenue_at_stake=t.revenue, investment_score=score)
    ranked = t.filter(t.investment_score.notnull())
    ranked = ranked.select(
        q_zone_id=ranked.zone_id, q_period=ranked.period,
        invest_rank=(ibis.row_number().over(group_by=ranked.period,
                                            order_by=[ibis.desc(ranked.investment_score), ranked.zone_id])
                     + 1).cast("int64"),
    )
    t = _left(t, ranked, [("zone_id", "q_zone_id"), ("period", "q_period")])
    return without(t, "m_period", "median_revenue", "median_index", "q_zone_id", "q_period")
