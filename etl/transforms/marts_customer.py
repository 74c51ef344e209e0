"""Customer marts: where each customer's usage happens, one row per customer, churn features by snapshot.

`marts.subscriber_cell_usage` says on which cells (and zones) each customer's usage happens and what the
network gave them there; `marts.customer_360` is the care view's one row per customer; and
`marts.churn_features` is one row per customer per weekly snapshot date, built only from what was known
before that date, with the outcome in `label_*` columns that the model's leak guard excludes.

Everything is a portable Ibis expression (it runs on DuckDB and on ibis' PySpark backend), and every mart
builds from whatever is loaded: a missing source is an empty staging table, and its columns come out as
zeros or nulls instead of failing the build.
"""

from __future__ import annotations

from collections.abc import Sequence

import ibis
import ibis.expr.types as ir

from etl.transforms.registry import Tables, model, without

#: The hourly KPIs a customer "experiences": each charging event carries the KPIs of its cell in its hour.
EXPERIENCE_KPIS: tuple[str, ...] = (
    "availability_pct", "accessibility_pct", "drop_rate_pct", "dl_throughput_mbps", "latency_ms",
)
#: Days of history churn features look back over, and the shorter window their trend compares with.
LOOKBACK_DAYS = 28
SHORT_DAYS = 7
#: Snapshots are this many days apart, counted back from the day after the last loaded date.
SNAPSHOT_EVERY_DAYS = 7
#: Earlier snapshots need at least this much loaded history before them (the latest one is always kept).
MIN_HISTORY_DAYS = 7
#: The churn label looks this many days past the snapshot.
LABEL_HORIZON_DAYS = 30
#: customer_360's recent-revenue window, counted back from the last loaded date.
RECENT_DAYS = 30
#: Average hours in a month (365.25 x 24 / 12): turns a monthly fee into a fee per hour.
HOURS_PER_MONTH = 730.5
NETWORK_TICKET_CATEGORIES = ("network_coverage", "network_quality")
#: Ticket resolutions that left the customer without a fix.
BAD_TICKET_OUTCOMES = ("unresolved", "no_fault_found")
#: Ticket states in which the ticket is still being worked on.
OPEN_TICKET_STATES = ("acknowledged", "in_progress", "pending")

_USAGE_DEPS = ("staging.charging", "staging.kpi_hourly")


# --------------------------------------------------------------------------------------------- helpers


def attach(left: ir.Table, right: ir.Table, on: Sequence[str]) -> ir.Table:
    """Left-join `right` onto `left` by the `on` columns, keeping only the left copy of the keys."""
    joined = left.left_join(right, list(on))
    return without(joined, *[f"{k}_right" for k in on])


def ratio(num: ir.NumericValue, den: ir.NumericValue) -> ir.FloatingValue:
    """`num / den` as a float, null where the denominator is zero or null (never a division error)."""
    return num.cast("float64") / den.cast("float64").nullif(0.0)


def count_if(t: ir.Table, cond: ir.BooleanValue) -> ir.IntegerScalar:
    """Rows of `t` where `cond` holds; a null condition counts as false on every engine (Spark's count with
    a filter is a sum that would otherwise be null when every condition is null)."""
    return t.count(where=cond.fill_null(False))


def minutes_between(start: ir.TimestampValue, end: ir.TimestampValue) -> ir.FloatingValue:
    """Elapsed minutes from `start` to `end` (epoch arithmetic: the same on DuckDB and Spark)."""
    return (end.epoch_seconds() - start.epoch_seconds()).cast("float64") / 60.0


def day_start(date: ir.DateValue) -> ir.TimestampValue:
    """Midnight (UTC) at the start of `date`, to compare timestamps with a date boundary."""
    return date.cast("timestamp")


def data_window(tables: Tables) -> ir.Table:
    """One row: `start_date` and `end_date`, the span of the loaded daily extracts (null when none has a row).

    The end is the last date any daily source (usage, top-ups, tickets, KPIs, alarms) covers. The start is
    the first usage date when charging is loaded (an old alarm or ticket in the first file must not stretch
    the history back to where there is no usage), else the first date of the other sources.
    """
    ch, tu, tk = tables["staging.charging"], tables["staging.topups"], tables["staging.tickets"]
    kpi, al = tables["staging.kpi_hourly"], tables["staging.alarms"]
    usage = ch.aggregate(usage_lo=ch.usage_date.min(), usage_hi=ch.usage_date.max())
    parts = [
        tu.aggregate(lo=tu.topup_at.min().date(), hi=tu.topup_at.max().date()),
        tk.aggregate(lo=tk.created_at.min().date(), hi=tk.created_at.max().date()),
        kpi.aggregate(lo=kpi.kpi_date.min(), hi=kpi.kpi_date.max()),
        al.aggregate(lo=al.raised_at.min().date(), hi=al.raised_at.max().date()),
    ]
    u = ibis.union(*parts)
    others = u.aggregate(lo=u.lo.min(), hi=u.hi.max())
    w = usage.cross_join(others)
    return w.select(
        start_date=ibis.coalesce(w.usage_lo, w.lo),
        end_date=ibis.greatest(w.usage_hi, w.hi),
    )


def usage_base(tables: Tables) -> ir.Table:
    """The usage base every customer mart aggregates: `marts.customer_cell_daily`, built once per refresh."""
    return tables["marts.customer_cell_daily"]


@model(
    "marts.customer_cell_daily",
    grain="one row per customer per subscription per day per cell (a null cell: usage without a cell)",
    key=("customer_id", "subscription_id", "usage_date", "cell_id"),
    nullable_key=("cell_id",),
    depends_on=_USAGE_DEPS,
    partition="usage_date",
    subkey="customer_id",
)
def customer_cell_daily(tables: Tables) -> ir.Table:
    """Charging aggregated per customer, subscription, date and cell, with the KPIs of each event's cell-hour.

    Events whose subscription is not landed (customer unknown) are left out. Each event is matched to its
    cell's KPI row for the hour it started in; the KPI sums and counts
    (`sum_<kpi>`, `n_<kpi>`) let any coarser grain take usage-weighted means of what customers experienced.
    `subscriber_cell_usage`, `customer_360` and `churn_features` read this table instead of the events, so
    the events are joined to their KPIs and aggregated once per refresh.
    """
    ch, kpi = tables["staging.charging"], tables["staging.kpi_hourly"]
    ch = ch.filter(ch.customer_id.notnull())  # usage of a subscription not landed belongs to no customer
    ev = ch.select(
        "customer_id", "subscription_id", "usage_date", "usage_at", "cell_id", "zone_id", "service", "unit",
        "quantity", "amount", hour_at=ch.usage_at.truncate("h"),
    )
    k = kpi.select(kpi_cell_id=kpi.cell_id, kpi_hour_at=kpi.period_start,
                   **{f"kpi_{x}": kpi[x] for x in EXPERIENCE_KPIS})
    j = ev.left_join(k, [ev.cell_id == k.kpi_cell_id, ev.hour_at == k.kpi_hour_at])
    aggs: dict[str, ir.Value] = {
        "n_events": j.count(),
        "usage_revenue": j.amount.sum(),
        "data_mb": j.quantity.sum(where=j.unit == "megabyte"),
        "voice_min": j.quantity.sum(where=(j.service == "voice") & (j.unit == "second")) / 60.0,
        "n_sms": j.quantity.sum(where=j.unit == "message"),
        "first_usage_at": j.usage_at.min(),
        "last_usage_at": j.usage_at.max(),
        "n_events_with_kpi": j.kpi_cell_id.count(),
    }
    for x in EXPERIENCE_KPIS:
        aggs[f"sum_{x}"] = j[f"kpi_{x}"].sum()
        aggs[f"n_{x}"] = j[f"kpi_{x}"].count()
    g = j.group_by(["customer_id", "subscription_id", "usage_date", "cell_id", "zone_id"]).aggregate(**aggs)
    return g.mutate(
        usage_revenue=g.usage_revenue.fill_null(0.0),
        data_mb=g.data_mb.fill_null(0.0),
        voice_min=g.voice_min.fill_null(0.0),
        n_sms=g.n_sms.fill_null(0.0),
    )


def _experience(t: ir.Table, prefix: str = "exp_") -> dict[str, ir.Value]:
    """Usage-weighted KPI means over rows of a usage base (sum of KPI over events / events with the KPI)."""
    return {f"{prefix}{x}": ratio(t[f"sum_{x}"].sum(), t[f"n_{x}"].sum()) for x in EXPERIENCE_KPIS}


def _fill_zero(t: ir.Table, columns: Sequence[str]) -> ir.Table:
    """Counts and sums of a left-joined block are zero, not null, for rows the block had nothing for."""
    return t.mutate(**{c: t[c].fill_null(0) for c in columns})


# ---------------------------------------------------------------------------------- subscriber_cell_usage


@model(
    "marts.subscriber_cell_usage",
    grain="one row per customer per cell the customer's usage was charged on, over the loaded window",
    key=("customer_id", "cell_id"),
    depends_on=("marts.customer_cell_daily",),
)
def subscriber_cell_usage(tables: Tables) -> ir.Table:
    """One row per customer per cell used: events, revenue, share of the customer's usage, rank, and the
    usage-weighted KPIs the customer met there; `usage_zone_id` is the zone carrying most of their events.

    Events without a cell (roaming abroad) have no row here. `cell_rank` 1 is the customer's main cell
    (most events, then most revenue, then cell id).
    """
    base = usage_base(tables)
    base = base.filter(base.cell_id.notnull())
    g = base.group_by(["customer_id", "cell_id"]).aggregate(
        zone_id=base.zone_id.max(),
        n_events=base.n_events.sum(),
        n_subscriptions=base.subscription_id.nunique(),
        n_days=base.usage_date.nunique(),
        usage_revenue=base.usage_revenue.sum(),
        data_mb=base.data_mb.sum(),
        voice_min=base.voice_min.sum(),
        first_usage_at=base.first_usage_at.min(),
        last_usage_at=base.last_usage_at.max(),
        n_events_with_kpi=base.n_events_with_kpi.sum(),
        **_experience(base),
    )
    per_customer = ibis.window(group_by="customer_id")
    rank_w = ibis.window(group_by="customer_id",
                         order_by=[ibis.desc("n_events"), ibis.desc("usage_revenue"), "cell_id"])
    g = g.mutate(
        share_of_events=ratio(g.n_events, g.n_events.sum().over(per_customer)),
        cell_rank=(ibis.row_number().over(rank_w) + 1).cast("int64"),
    )
    g = g.mutate(is_main_cell=g.cell_rank == 1)

    z = base.filter(base.zone_id.notnull())
    zones = z.group_by(["customer_id", "zone_id"]).aggregate(n=z.n_events.sum(), rev=z.usage_revenue.sum())
    zones = zones.mutate(
        r=ibis.row_number().over(
            ibis.window(group_by="customer_id", order_by=[ibis.desc("n"), ibis.desc("rev"), "zone_id"])
        )
    )
    top_zone = zones.filter(zones.r == 0).select("customer_id", usage_zone_id=zones.zone_id)
    out = attach(g, top_zone, ["customer_id"])
    return out.mutate(is_usage_zone=(out.zone_id == out.usage_zone_id).fill_null(False))


# ------------------------------------------------------------------------------------------ customer_360


@model(
    "marts.customer_360",
    grain="one row per customer",
    key=("customer_id",),
    depends_on=(
        "staging.customers", "staging.subscriptions", "staging.promotions", "staging.charging",
        "staging.topups", "staging.bills", "staging.tickets", "staging.kpi_hourly", "staging.alarms",
        "marts.customer_cell_daily", "marts.subscriber_cell_usage", "marts.alarm_customers",
    ),
)
def customer_360(tables: Tables) -> ir.Table:
    """One row per customer: profile, subscriptions, usage and revenue, bills, top-ups, tickets, promotions,
    the cells and zone their usage happens on with the experience there, and the alarms that hit them.

    "Now" is `as_of_date`, the last date of the loaded window: tenure, recent revenue, active promotions
    and open tickets are as of that date.
    """
    cust = tables["staging.customers"]
    subs = tables["staging.subscriptions"]
    promos = tables["staging.promotions"]
    topups = tables["staging.topups"]
    bills = tables["staging.bills"]
    tickets = tables["staging.tickets"]
    scu = tables["marts.subscriber_cell_usage"]
    ac = tables["marts.alarm_customers"]
    win = data_window(tables).select(as_of_date="end_date")

    out = cust.select(
        "customer_id", "name", "segment", "home_zone_id", "created_at",
        customer_status=cust.status, is_vip=cust.segment == "vip",
    ).cross_join(win)

    # Subscriptions (their current status, as loaded).
    active = subs.status == "active"
    sub_blk = subs.group_by("customer_id").aggregate(
        n_subscriptions=subs.count(),
        n_active_subscriptions=count_if(subs, active),
        n_prepaid_active=count_if(subs, active & (subs.payment_type == "prepaid")),
        n_postpaid_active=count_if(subs, active & (subs.payment_type == "postpaid")),
        monthly_fee_total=subs.monthly_fee.sum(where=active),
        first_start_date=subs.start_date.min(),
        last_termination_date=subs.termination_date.max(),
    )
    ranked = subs.filter(active).mutate(
        r=ibis.row_number().over(
            ibis.window(group_by="customer_id", order_by=[ibis.desc("monthly_fee"), "subscription_id"])
        )
    )
    main_sub = ranked.filter(ranked.r == 0).select("customer_id", main_product_offering="product_offering")

    # Usage over the loaded window, and over its last RECENT_DAYS days.
    base = usage_base(tables).cross_join(win)
    recent = base.usage_date > base.as_of_date - ibis.interval(days=RECENT_DAYS)
    use_blk = base.group_by("customer_id").aggregate(
        n_events=base.n_events.sum(),
        usage_revenue=base.usage_revenue.sum(),
        usage_revenue_30d=base.usage_revenue.sum(where=recent),
        data_mb=base.data_mb.sum(),
        voice_min=base.voice_min.sum(),
        n_active_days=base.usage_date.nunique(),
        first_usage_at=base.first_usage_at.min(),
        last_usage_at=base.last_usage_at.max(),
        n_events_on_cells=base.n_events.sum(where=base.cell_id.notnull()),
        n_events_with_kpi=base.n_events_with_kpi.sum(),
        **_experience(base),
    )

    # Where: main cell, usage zone, how many cells.
    main = scu.filter(scu.cell_rank == 1).select(
        "customer_id", "usage_zone_id", main_cell_id="cell_id", main_cell_share="share_of_events",
    )
    cells_blk = scu.group_by("customer_id").aggregate(n_cells_used=scu.count())

    # Top-ups, bills, tickets.
    owner = subs.select("subscription_id", "customer_id")
    tu = topups.select("subscription_id", "topup_at", "amount").join(owner, "subscription_id")
    tu_blk = tu.group_by("customer_id").aggregate(
        n_topups=tu.count(), topup_amount=tu.amount.sum(), last_topup_at=tu.topup_at.max(),
    )
    unpaid = bills.amount_due - bills.amount_paid.fill_null(0.0)
    bill_blk = bills.group_by("customer_id").aggregate(
        n_bills=bills.count(),
        amount_due_total=bills.amount_due.sum(),
        amount_unpaid=ibis.greatest(unpaid, 0.0).sum(),
        n_unpaid_bills=count_if(bills, unpaid > 0),
        last_bill_date=bills.bill_date.max(),
    )
    tk_blk = tickets.group_by("customer_id").aggregate(
        n_tickets=tickets.count(),
        n_open_tickets=count_if(tickets, tickets.resolved_at.isnull()
                                     & tickets.status.isin(OPEN_TICKET_STATES)),
        n_network_tickets=count_if(tickets, tickets.category.isin(NETWORK_TICKET_CATEGORIES)),
        n_tickets_bad_outcome=count_if(tickets, tickets.resolution.isin(BAD_TICKET_OUTCOMES)),
        last_ticket_at=tickets.created_at.max(),
    )

    # Promotions in force on the as-of date.
    pr = promos.select("subscription_id", "valid_from", "valid_to", "discount").join(owner, "subscription_id")
    pr = pr.cross_join(win)
    in_force = (pr.valid_from <= pr.as_of_date) & (pr.valid_to.isnull() | (pr.valid_to >= pr.as_of_date))
    promo_blk = pr.group_by("customer_id").aggregate(
        n_active_promotions=count_if(pr, in_force),
        max_active_discount_pct=pr.discount.max(where=in_force),
        next_promotion_end_date=pr.valid_to.min(where=in_force),
    )

    # Alarms whose affected customers (marts.alarm_customers) include this one.
    alarm_blk = ac.group_by("customer_id").aggregate(
        n_alarms_affected=ac.count(),
        n_outages=count_if(ac, ac.service_affecting),
        outage_minutes=ac.duration_min.sum(where=ac.service_affecting),
        last_alarm_at=ac.raised_at.max(),
    )

    for blk in (sub_blk, main_sub, use_blk, main, cells_blk, tu_blk, bill_blk, tk_blk, promo_blk, alarm_blk):
        out = attach(out, blk, ["customer_id"])
    out = _fill_zero(out, [
        "n_subscriptions", "n_active_subscriptions", "n_prepaid_active", "n_postpaid_active",
        "monthly_fee_total", "n_events", "usage_revenue", "usage_revenue_30d", "data_mb", "voice_min",
        "n_active_days", "n_events_on_cells", "n_events_with_kpi", "n_cells_used", "n_topups", "topup_amount",
        "n_bills", "amount_due_total", "amount_unpaid", "n_unpaid_bills", "n_tickets", "n_open_tickets",
        "n_network_tickets", "n_tickets_bad_outcome", "n_active_promotions", "n_alarms_affected", "n_outages",
        "outage_minutes",
    ])
    out = out.mutate(
        payment_type=_payment_type(out.n_prepaid_active, out.n_postpaid_active),
        tenure_days=out.as_of_date.delta(ibis.coalesce(out.first_start_date, out.created_at.date()),
                                         unit="day"),
        kpi_coverage_pct=100.0 * ratio(out.n_events_with_kpi, out.n_events_on_cells),
    )
    return without(out, "n_prepaid_active", "n_postpaid_active")


def _payment_type(n_prepaid: ir.IntegerValue, n_postpaid: ir.IntegerValue) -> ir.StringValue:
    """prepaid, postpaid or mixed, from counts of active subscriptions of each kind (null when none)."""
    return ibis.cases(
        ((n_prepaid > 0) & (n_postpaid > 0), "mixed"),
        (n_prepaid > 0, "prepaid"),
        (n_postpaid > 0, "postpaid"),
        else_=ibis.null("string"),
    )


# ----------------------------------------------------------------------------------------- churn_features


def snapshot_dates(tables: Tables) -> ir.Table:
    """The snapshot dates: every SNAPSHOT_EVERY_DAYS days back from the day after the last loaded date.

    A snapshot date D means "as of 00:00 UTC on D": features use events strictly before D. The latest
    snapshot (the day after the last loaded date, for scoring) is always there; earlier ones need at least
    MIN_HISTORY_DAYS of loaded data before them. Columns: snapshot_date, start_date, end_date,
    history_days (loaded days before D within the lookback), label_observed_days.
    """
    w = data_window(tables)
    w = w.filter(w.end_date.notnull())
    span = w.end_date.delta(w.start_date, unit="day")
    n = ibis.greatest(span - (MIN_HISTORY_DAYS - 1), 0) // SNAPSHOT_EVERY_DAYS + 1
    s = w.select("start_date", "end_date", k=ibis.range(0, n).unnest())
    s = s.select(
        "start_date", "end_date",
        snapshot_date=s.end_date + ibis.interval(days=1) - (s.k * SNAPSHOT_EVERY_DAYS).as_interval("D"),
    )
    observed = s.end_date.delta(s.snapshot_date, unit="day") + 1
    return s.mutate(
        history_days=ibis.least(s.snapshot_date.delta(s.start_date, unit="day"), LOOKBACK_DAYS),
        label_observed_days=ibis.greatest(ibis.least(observed, LABEL_HORIZON_DAYS), 0),
    )


def _in_lookback(date: ir.DateValue, snap: ir.DateValue, days: int = LOOKBACK_DAYS) -> ir.BooleanValue:
    """`date` lies in the `days` days before the snapshot (the snapshot day itself excluded)."""
    return (date < snap) & (date >= snap - ibis.interval(days=days))


def _ts_in_lookback(ts: ir.TimestampValue, snap: ir.DateValue, days: int = LOOKBACK_DAYS) -> ir.BooleanValue:
    """`ts` lies in the `days` days before 00:00 of the snapshot date."""
    return (ts < day_start(snap)) & (ts >= day_start(snap - ibis.interval(days=days)))


@model(
    "marts.churn_features",
    grain="one row per customer per weekly snapshot date, for customers with a subscription active then",
    key=("customer_id", "snapshot_date"),
    depends_on=(
        "staging.customers", "staging.subscriptions", "staging.promotions", "staging.charging",
        "staging.topups", "staging.bills", "staging.tickets", "staging.kpi_hourly", "staging.alarms",
        "marts.customer_cell_daily", "marts.alarm_customers",
    ),
)
def churn_features(tables: Tables) -> ir.Table:
    """One row per customer per snapshot date: BSS and OSS features from data before the date only, and
    the outcome in `label_churn_30d` / `label_observed_days` (the only columns that look past the date).

    Subscription life cycles use their dates (start, termination), never their current status; usage,
    top-ups, tickets, KPIs and outages come from the LOOKBACK_DAYS days before the snapshot. Unpaid bills
    are the one approximation: the extract carries no payment dates, so `n_overdue_bills` counts bills due
    before the snapshot that are still unpaid in the loaded extract.
    """
    cust = tables["staging.customers"]
    subs = tables["staging.subscriptions"]
    promos = tables["staging.promotions"]
    topups = tables["staging.topups"]
    bills = tables["staging.bills"]
    tickets = tables["staging.tickets"]
    ac = tables["marts.alarm_customers"]
    snaps = snapshot_dates(tables)
    keys = ["customer_id", "snapshot_date"]
    snap_only = snaps.select("snapshot_date")

    # Population, tenure, tariff and the label, from subscription dates.
    s = subs.cross_join(snap_only)
    s = s.filter(s.start_date < s.snapshot_date)
    act = s.termination_date.isnull() | (s.termination_date >= s.snapshot_date)
    horizon = s.snapshot_date + ibis.interval(days=LABEL_HORIZON_DAYS)
    pop = s.group_by(keys).aggregate(
        n_active_subscriptions=count_if(s, act),
        n_prepaid_active=count_if(s, act & (s.payment_type == "prepaid")),
        n_postpaid_active=count_if(s, act & (s.payment_type == "postpaid")),
        monthly_fee_total=s.monthly_fee.sum(where=act),
        n_terminated_subscriptions=count_if(s, ~act),
        first_start_date=s.start_date.min(),
        n_terminating=count_if(s, act & (s.termination_date < horizon)),
    )
    pop = pop.filter(pop.n_active_subscriptions > 0)
    ranked = s.filter(act).mutate(
        r=ibis.row_number().over(
            ibis.window(group_by=keys, order_by=[ibis.desc("monthly_fee"), "subscription_id"])
        )
    )
    main_sub = ranked.filter(ranked.r == 0).select(*keys, main_product_offering="product_offering")

    # Promotions in force at the snapshot, those ending within the label horizon, those that just ended.
    owner = subs.select("subscription_id", "customer_id")
    p = promos.select("subscription_id", "valid_from", "valid_to", "discount").join(owner, "subscription_id")
    p = p.cross_join(snap_only)
    p = p.filter(p.valid_from < p.snapshot_date)
    in_force = p.valid_to.isnull() | (p.valid_to >= p.snapshot_date)
    ended = (p.valid_to < p.snapshot_date) & (p.valid_to >= p.snapshot_date - ibis.interval(days=LOOKBACK_DAYS))
    promo_blk = p.group_by(keys).aggregate(
        n_active_promotions=count_if(p, in_force),
        max_discount_pct=p.discount.max(where=in_force),
        n_promotions_ending_30d=count_if(
            p, in_force & (p.valid_to < p.snapshot_date + ibis.interval(days=LABEL_HORIZON_DAYS))),
        days_to_promotion_end=p.valid_to.min(where=in_force).delta(p.snapshot_date.max(), unit="day"),
        n_promotions_ended_28d=count_if(p, ended),
        days_since_promotion_ended=p.snapshot_date.max().delta(p.valid_to.max(where=ended), unit="day"),
    )

    # Usage and experienced network quality over the lookback.
    base = usage_base(tables)
    u = base.join(snap_only, _in_lookback(base.usage_date, snap_only.snapshot_date))
    short = u.usage_date >= u.snapshot_date - ibis.interval(days=SHORT_DAYS)
    usage_blk = u.group_by(keys).aggregate(
        n_events_28d=u.n_events.sum(),
        usage_revenue_28d=u.usage_revenue.sum(),
        usage_revenue_7d=u.usage_revenue.sum(where=short),
        data_mb_28d=u.data_mb.sum(),
        voice_min_28d=u.voice_min.sum(),
        n_active_days_28d=u.usage_date.nunique(),
        n_cells_used_28d=u.cell_id.nunique(),
        last_usage_date=u.usage_date.max(),
        n_events_on_cells_28d=u.n_events.sum(where=u.cell_id.notnull()),
        n_events_with_kpi_28d=u.n_events_with_kpi.sum(),
        **_experience(u),
    )

    # Top-ups (rhythm), tickets (volume, open ones, outcomes), bills (overdue).
    t = topups.select("subscription_id", "topup_at", "amount").join(owner, "subscription_id")
    t = t.cross_join(snap_only)
    t = t.filter(_ts_in_lookback(t.topup_at, t.snapshot_date))
    topup_blk = t.group_by(keys).aggregate(
        n_topups_28d=t.count(),
        topup_amount_28d=t.amount.sum(),
        first_topup_at=t.topup_at.min(),
        last_topup_at=t.topup_at.max(),
    )
    tk = tickets.cross_join(snap_only)
    tk = tk.filter(tk.created_at < day_start(tk.snapshot_date))
    recent_tk = tk.created_at >= day_start(tk.snapshot_date - ibis.interval(days=LOOKBACK_DAYS))
    resolved_before = tk.resolved_at.notnull() & (tk.resolved_at < day_start(tk.snapshot_date))
    ticket_blk = tk.group_by(keys).aggregate(
        n_tickets_28d=count_if(tk, recent_tk),
        n_network_tickets_28d=count_if(tk, recent_tk & tk.category.isin(NETWORK_TICKET_CATEGORIES)),
        n_billing_tickets_28d=count_if(tk, recent_tk & (tk.category == "billing")),
        n_open_tickets=count_if(tk, ~resolved_before),
        n_tickets_bad_outcome_28d=count_if(
            tk, recent_tk & resolved_before & tk.resolution.isin(BAD_TICKET_OUTCOMES)),
    )
    b = bills.cross_join(snap_only)
    b = b.filter(b.bill_date < b.snapshot_date)
    due = ibis.coalesce(b.payment_due_date, b.bill_date)
    owed = b.amount_due - b.amount_paid.fill_null(0.0)
    overdue = (due < b.snapshot_date) & (owed > 0)
    bill_blk = b.group_by(keys).aggregate(
        n_bills=b.count(),
        n_overdue_bills=count_if(b, overdue),
        overdue_amount=owed.sum(where=overdue),
    )

    # Outages lived through: service-affecting alarms that affected the customer, clipped to the snapshot.
    o = ac.filter(ac.service_affecting).cross_join(snap_only)
    o = o.filter(_ts_in_lookback(o.raised_at, o.snapshot_date))
    until = ibis.least(ibis.coalesce(o.cleared_at, day_start(o.snapshot_date)), day_start(o.snapshot_date))
    outage_blk = o.group_by(keys).aggregate(
        n_outages_28d=o.count(), outage_minutes_28d=minutes_between(o.raised_at, until).sum(),
    )

    out = pop.join(snaps, "snapshot_date")
    out = attach(out, cust.select("customer_id", "segment", "home_zone_id"), ["customer_id"])
    for blk in (main_sub, promo_blk, usage_blk, topup_blk, ticket_blk, bill_blk, outage_blk):
        out = attach(out, blk, keys)
    out = _fill_zero(out, [
        "n_active_promotions", "n_promotions_ending_30d", "n_promotions_ended_28d", "n_events_28d", "usage_revenue_28d",
        "usage_revenue_7d", "data_mb_28d", "voice_min_28d", "n_active_days_28d", "n_cells_used_28d",
        "n_events_on_cells_28d", "n_events_with_kpi_28d", "n_topups_28d", "topup_amount_28d",
        "n_tickets_28d", "n_network_tickets_28d", "n_billing_tickets_28d", "n_open_tickets",
        "n_tickets_bad_outcome_28d", "n_bills", "n_overdue_bills", "overdue_amount", "n_outages_28d",
        "outage_minutes_28d",
    ])
    short_days = ibis.least(out.history_days, SHORT_DAYS)
    daily_28 = ratio(out.usage_revenue_28d, out.history_days)
    gap_days = minutes_between(out.first_topup_at, out.last_topup_at) / (24.0 * 60.0)
    out = out.mutate(
        tenure_days=out.snapshot_date.delta(out.first_start_date, unit="day"),
        payment_type=_payment_type(out.n_prepaid_active, out.n_postpaid_active),
        arpu_30d=daily_28 * 30.0 + out.monthly_fee_total,
        usage_trend_ratio=ratio(ratio(out.usage_revenue_7d, short_days), daily_28),
        days_since_last_usage=out.snapshot_date.delta(out.last_usage_date, unit="day"),
        days_since_last_topup=out.snapshot_date.delta(out.last_topup_at.date(), unit="day"),
        mean_days_between_topups=ratio(gap_days, out.n_topups_28d - 1),
        kpi_coverage_pct=100.0 * ratio(out.n_events_with_kpi_28d, out.n_events_on_cells_28d),
        label_churn_30d=out.n_terminating > 0,
    )
    return without(
        out, "n_prepaid_active", "n_postpaid_active", "first_start_date", "last_usage_date", "first_topup_at",
        "last_topup_at", "n_terminating", "start_date", "end_date",
    ).relocate("customer_id", "snapshot_date")
