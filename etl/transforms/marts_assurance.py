"""Assurance marts: each alarm with the cells, customers and revenue it puts at stake.

The affected customers of an alarm follow one rule, shared with the synthetic generator's truth.json:
customers who had at least one charging event with a cell in the 7 x 24 hours before `raised_at`, and
for whom the alarm's cells carried more than half of those events (events counted over all the customer's
subscriptions). `marts.alarm_customers` lists that exact set; `marts.alarm_impact` sums it per alarm.
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from etl.contracts import SOURCES
from etl.transforms.marts_customer import HOURS_PER_MONTH, attach, count_if, minutes_between, ratio
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
