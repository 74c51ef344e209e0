"""Assurance marts: each alarm with the cells, customers and revenue it puts at stake.

The affected customers of an alarm follow one rule, shared with the synthetic generator's truth.json:
customers who had at least one charging event with a cell in the 7 x 24 hours before `raised_at`, and
for whom the alarm's cells carried more than half of those events (events counted over all the customer's
subscriptions). `marts.alarm_customers` lists that exact set; `marts.alarm_impact` sums it per alarm.

The assurance page runs the same rule for one alarm at a time, live alarms included
(`app/queries_assurance.py`). At a million customers it reads counts instead of events for the whole hours
of the alarm's window that `marts.customer_usage_hourly` holds; three small marts here make that possible:

- `marts.assurance_usage_range`: one row, from when on the hourly marts hold every usage event of a known
  customer (`hours_from_at`), and when the loaded usage starts (`usage_from_at`);
- `marts.cell_customers`: the customers each cell served in those hours, stored in cell order (an alarm's
  cells are a few row groups, not a scan of every hour);
- `marts.customer_roaming_hourly`: the usage without a cell (roaming abroad) per customer and hour in those
  hours, which `customer_usage_hourly` leaves out and the revenue at stake counts.

The check `reconcile:assurance_usage_hours` holds them (and `customer_usage_hourly`) to the events of
`staging.charging` day by day, so the page's counts and the events' never disagree.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from etl.contracts import SOURCES
from etl.transforms.checks import CENT_TOLERANCE, Check, register_check
from etl.transforms.marts_customer import (
    HOURS_PER_MONTH,
    attach,
    count_if,
    data_window,
    day_start,
    minutes_between,
    ratio,
)
from etl.transforms.marts_search import HOURLY_DAYS
from etl.transforms.registry import Tables, model

#: The alarm's own columns carried into the marts (the contract's: staging extras such as `_file` stay out).
ALARM_COLUMNS = tuple(SOURCES["alarms"].column_names)
#: The look-back before `raised_at` in which a customer's usage decides whether the alarm affects them.
IMPACT_WINDOW_HOURS = 7 * 24


def loaded_until(tables: Tables) -> ir.Table:
    """One row, `as_of_at`: the latest moment the loaded alarms, usage and KPI hours speak for.

    An alarm still open is counted as lasting until then (never until the wall clock, which would make a
    rebuild of the same data give another answer).
    """
    al, ch, kpi = tables["staging.alarms"], tables["staging.charging"], tables["staging.kpi_hourly"]
    parts = [
        al.aggregate(t=al.raised_at.max()),
        al.aggregate(t=al.cleared_at.max()),
        ch.aggregate(t=ch.usage_at.max()),
        kpi.aggregate(t=kpi.period_start.max() + ibis.interval(hours=1)),
    ]
    u = ibis.union(*parts)
    return u.aggregate(as_of_at=u.t.max())


def _alarms(tables: Tables) -> ir.Table:
    """Alarms with their impact window, open flag and duration (open ones: until the loaded data ends)."""
    al = tables["staging.alarms"].select(*ALARM_COLUMNS).cross_join(loaded_until(tables))
    end = ibis.coalesce(al.cleared_at, al.as_of_at)
    return al.mutate(
        window_start_at=al.raised_at - ibis.interval(hours=IMPACT_WINDOW_HOURS),
        is_open=al.cleared_at.isnull(),
        duration_min=ibis.greatest(minutes_between(al.raised_at, end), 0.0),
    )


@model(
    "marts.alarm_customers",
    grain="one row per alarm per customer it affects (the shared 7-day majority-of-events rule)",
    key=("alarm_id", "customer_id"),
    depends_on=(
        "staging.alarms", "staging.alarm_cells", "staging.charging", "staging.kpi_hourly",
        "staging.subscriptions", "staging.customers",
    ),
)
def alarm_customers(tables: Tables) -> ir.Table:
    """One row per alarm per affected customer: their events in the 168 hours before the alarm, the share on
    the alarm's cells, their usage revenue then, their recurring fees, and the revenue per hour at stake.

    Only events with a cell count for the rule (`n_events_7d`, `n_events_on_alarm_cells`); the usage
    revenue is every rated event of the customer in the window (roaming included).
    """
    al = _alarms(tables).select(
        "alarm_id", "raised_at", "cleared_at", "is_open", "service_affecting", "duration_min",
        "window_start_at",
    )
    acells = tables["staging.alarm_cells"].select("alarm_id", "cell_id").distinct()
    ch = tables["staging.charging"]
    ch = ch.filter(ch.customer_id.notnull()).select("customer_id", "cell_id", "usage_at", "amount")

    # Candidates: customers with at least one event on the alarm's cells in the window.
    on = al.join(acells, "alarm_id").join(ch, "cell_id")
    on = on.filter((on.usage_at >= on.window_start_at) & (on.usage_at < on.raised_at))
    on_blk = on.group_by(["alarm_id", "customer_id"]).aggregate(n_events_on_alarm_cells=on.count())

    # Every event of each candidate in the same window.
    cand = on_blk.join(al, "alarm_id")
    ev = cand.join(ch, "customer_id")
    ev = ev.filter((ev.usage_at >= ev.window_start_at) & (ev.usage_at < ev.raised_at))
    tot = ev.group_by(
        ["alarm_id", "customer_id", "n_events_on_alarm_cells", "raised_at", "cleared_at", "is_open",
         "service_affecting", "duration_min"]
    ).aggregate(
        n_events_7d=count_if(ev, ev.cell_id.notnull()),
        usage_revenue_7d=ev.amount.sum(),
    )
    hit = tot.filter(tot.n_events_on_alarm_cells * 2 > tot.n_events_7d)

    # Recurring fees of the subscriptions active on the day the alarm was raised.
    subs = tables["staging.subscriptions"]
    fee = hit.select("alarm_id", "customer_id", "raised_at").join(subs, "customer_id")
    raised_date = fee.raised_at.date()
    fee = fee.filter((fee.start_date <= raised_date)
                     & (fee.termination_date.isnull() | (fee.termination_date > raised_date)))
    fee_blk = fee.group_by(["alarm_id", "customer_id"]).aggregate(monthly_fee_total=fee.monthly_fee.sum())

    cust = tables["staging.customers"].select("customer_id", "segment", "home_zone_id")
    out = attach(attach(hit, fee_blk, ["alarm_id", "customer_id"]), cust, ["customer_id"])
    out = out.mutate(monthly_fee_total=out.monthly_fee_total.fill_null(0.0))
    return out.mutate(
        share_on_alarm_cells=ratio(out.n_events_on_alarm_cells, out.n_events_7d),
        revenue_per_hour=out.usage_revenue_7d / IMPACT_WINDOW_HOURS + out.monthly_fee_total / HOURS_PER_MONTH,
        is_vip=(out.segment == "vip").fill_null(False),
    ).relocate("alarm_id", "customer_id")


@model(
    "marts.alarm_impact",
    grain="one row per alarm",
    key=("alarm_id",),
    depends_on=(
        "staging.alarms", "staging.alarm_cells", "staging.cells", "staging.charging", "staging.kpi_hourly",
        "marts.alarm_customers",
    ),
)
def alarm_impact(tables: Tables) -> ir.Table:
    """One row per alarm: its object and site, affected cells and zones, affected customers (by the shared
    rule), VIPs among them, usage revenue in the 7 days before, revenue per hour at stake, open or
    cleared and for how long (open alarms: until the end of the loaded data, `as_of_at`).
    """
    al = _alarms(tables).drop("window_start_at")
    cells = tables["staging.cells"]
    acells = tables["staging.alarm_cells"].select("alarm_id", "cell_id").distinct()
    ac = tables["marts.alarm_customers"]

    located = attach(acells, cells.select("cell_id", "zone_id"), ["cell_id"])
    cell_blk = located.group_by("alarm_id").aggregate(
        n_cells_affected=located.count(),
        cell_ids=located.cell_id.collect(distinct=True).sort().join(","),
        zone_ids=located.zone_id.collect(distinct=True).sort().join(","),
    )
    cust_blk = ac.group_by("alarm_id").aggregate(
        n_customers_affected=ac.count(),
        n_vip_affected=count_if(ac, ac.is_vip),
        usage_revenue_7d=ac.usage_revenue_7d.sum(),
        monthly_fee_total=ac.monthly_fee_total.sum(),
        revenue_per_hour_at_stake=ac.revenue_per_hour.sum(),
    )
    cell_site = cells.select(alarmed_object_id=cells.cell_id, cell_site_id=cells.site_id)
    out = attach(al, cell_site, ["alarmed_object_id"])
    out = out.mutate(
        site_id=ibis.ifelse(out.alarmed_object_type == "site", out.alarmed_object_id, out.cell_site_id)
    ).drop("cell_site_id")
    out = attach(attach(out, cell_blk, ["alarm_id"]), cust_blk, ["alarm_id"])
    return out.mutate(
        n_cells_affected=out.n_cells_affected.fill_null(0),
        n_customers_affected=out.n_customers_affected.fill_null(0),
        n_vip_affected=out.n_vip_affected.fill_null(0),
        usage_revenue_7d=out.usage_revenue_7d.fill_null(0.0),
        monthly_fee_total=out.monthly_fee_total.fill_null(0.0),
        revenue_per_hour_at_stake=out.revenue_per_hour_at_stake.fill_null(0.0),
    ).relocate("alarm_id")


# ------------------------------------------------------------------------- the hours the page reads as counts

#: What the hourly usage window depends on (`data_window`: the span of the loaded daily extracts).
_WINDOW_DEPS = ("staging.charging", "staging.topups", "staging.tickets", "staging.kpi_hourly", "staging.alarms")


def hours_from(tables: Tables) -> ir.Table:
    """One row, `hours_from_at`: midnight of the first of the last HOURLY_DAYS loaded dates, where
    `marts.customer_usage_hourly` starts (the same expression as there; null when nothing is loaded)."""
    w = data_window(tables)
    return w.select(hours_from_at=day_start(w.end_date - ibis.interval(days=HOURLY_DAYS - 1)))


@model(
    "marts.assurance_usage_range",
    grain="one row: the hours the hourly usage marts hold (no row when nothing is loaded)",
    key=("hours_from_at",),
    depends_on=_WINDOW_DEPS,
)
def assurance_usage_range(tables: Tables) -> ir.Table:
    """One row: `hours_from_at`, from which on `marts.customer_usage_hourly`, `marts.cell_customers` and
    `marts.customer_roaming_hourly` hold every usage event of a known customer, and `usage_from_at` /
    `usage_until_at`, the first and last such event loaded (null without usage).

    The affected-customer query reads the whole hours of an alarm's window from `hours_from_at` on from
    those marts and only the rest of the window from the events; before `usage_from_at` there is nothing.
    """
    ch = tables["staging.charging"]
    ch = ch.filter(ch.customer_id.notnull())
    span = ch.aggregate(usage_from_at=ch.usage_at.min(), usage_until_at=ch.usage_at.max())
    r = hours_from(tables).cross_join(span)
    return r.filter(r.hours_from_at.notnull())


@model(
    "marts.cell_customers",
    grain="one row per cell per customer with usage on it in the hours of marts.customer_usage_hourly",
    key=("cell_id", "customer_id"),
    depends_on=("marts.customer_usage_hourly",),
)
def cell_customers(tables: Tables) -> ir.Table:
    """One row per cell per customer it served in the hours `marts.customer_usage_hourly` holds: events, and
    the first and last hour with one. Stored in cell_id order, so the customers of an alarm's cells are read
    from a few row groups."""
    h = tables["marts.customer_usage_hourly"]
    g = h.group_by(["cell_id", "customer_id"]).aggregate(
        n_events=h.n_events.sum(), first_hour_at=h.hour_at.min(), last_hour_at=h.hour_at.max())
    return g.order_by(["cell_id", "customer_id"])


@model(
    "marts.customer_roaming_hourly",
    grain="one row per customer per hour with usage without a cell, from assurance_usage_range.hours_from_at on",
    key=("customer_id", "hour_at"),
    depends_on=_WINDOW_DEPS,
)
def customer_roaming_hourly(tables: Tables) -> ir.Table:
    """One row per customer per hour with usage without a cell (roaming abroad) from `hours_from_at` on:
    events and charges (the part of a customer's usage revenue that `customer_usage_hourly` leaves out).
    Stored in customer_id, hour order."""
    ch = tables["staging.charging"]
    ch = ch.filter(ch.customer_id.notnull() & ch.cell_id.isnull()).cross_join(hours_from(tables))
    ch = ch.filter(ch.usage_at >= ch.hours_from_at)
    g = ch.group_by(["customer_id", ch.usage_at.truncate("h").name("hour_at")]).aggregate(
        n_events=ch.count(), amount=ch.amount.sum())
    return g.order_by(["customer_id", "hour_at"])


register_check(Check(
    name="reconcile:assurance_usage_hours",
    table="marts.assurance_usage_range",
    sql=f"""
        WITH r AS (SELECT hours_from_at FROM marts.assurance_usage_range),
        staged AS (
            SELECT CAST(c.usage_at AS DATE) AS day, count(c.cell_id) AS with_cell,
                   count(*) - count(c.cell_id) AS without_cell, coalesce(sum(c.amount), 0) AS amount
            FROM staging.charging c, r
            WHERE c.customer_id IS NOT NULL AND c.usage_at >= r.hours_from_at GROUP BY ALL),
        hourly AS (
            SELECT CAST(h.hour_at AS DATE) AS day, sum(h.n_events) AS with_cell, sum(h.amount) AS amount
            FROM marts.customer_usage_hourly h, r WHERE h.hour_at >= r.hours_from_at GROUP BY ALL),
        roaming AS (
            SELECT CAST(hour_at AS DATE) AS day, sum(n_events) AS without_cell, sum(amount) AS amount
            FROM marts.customer_roaming_hourly GROUP BY ALL),
        marts AS (
            SELECT coalesce(h.day, x.day) AS day, coalesce(h.with_cell, 0) AS with_cell,
                   coalesce(x.without_cell, 0) AS without_cell,
                   coalesce(h.amount, 0) + coalesce(x.amount, 0) AS amount
            FROM hourly h FULL OUTER JOIN roaming x ON h.day = x.day)
        SELECT coalesce(s.day, m.day) AS day, 'events per day' AS what,
               s.with_cell AS staged_with_cell, m.with_cell AS marts_with_cell,
               s.without_cell AS staged_without_cell, m.without_cell AS marts_without_cell,
               s.amount AS staged_amount, m.amount AS marts_amount
        FROM staged s FULL OUTER JOIN marts m ON s.day = m.day
        WHERE coalesce(s.with_cell, 0) <> coalesce(m.with_cell, 0)
           OR coalesce(s.without_cell, 0) <> coalesce(m.without_cell, 0)
           OR abs(coalesce(s.amount, 0) - coalesce(m.amount, 0)) >= {CENT_TOLERANCE}
        UNION ALL
        SELECT NULL, 'cell_customers events', (SELECT sum(n_events) FROM marts.customer_usage_hourly),
               (SELECT sum(n_events) FROM marts.cell_customers), NULL, NULL, NULL, NULL
        WHERE (SELECT sum(n_events) FROM marts.customer_usage_hourly)
              IS DISTINCT FROM (SELECT sum(n_events) FROM marts.cell_customers)
        ORDER BY 1
    """,
    requires=("staging.charging", "marts.customer_usage_hourly", "marts.cell_customers",
              "marts.customer_roaming_hourly"),
    description="from assurance_usage_range.hours_from_at on, marts.customer_usage_hourly (events with a cell) "
                "and marts.customer_roaming_hourly (events without) hold every event and charge of "
                "staging.charging's known customers, per day (charges to the cent); marts.cell_customers "
                "every event of customer_usage_hourly",
))
