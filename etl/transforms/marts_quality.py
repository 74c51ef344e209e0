"""Quality marts: what the data stewards see: every problem counted with examples, and every source's age.

`marts.data_quality` has one row per check: the quarantine counted by source, reason and column (check
`quarantine:<source>:<reason>[:<column>]`), the documented warehouse checks (`duplicate_msisdn`,
`missing_kpi_hours`, `cells_without_kpis`, `usage_on_unknown_cells`) and BSS<->OSS reconciliation checks.
A check is a query over the bad rows: `n` counts them and `examples` lists a few. `marts.freshness` has
one row per contract source, loaded or not.
"""

from __future__ import annotations

from collections.abc import Callable

import ibis
import ibis.expr.types as ir

from etl.contracts import LOAD_ORDER, REASONS, SOURCES
from etl.transforms.marts_customer import count_if
from etl.transforms.registry import Tables, model

#: How many examples a check lists.
N_EXAMPLES = 5
#: Quarantine reasons whose rows have no single column: their check name carries none.
NO_COLUMN_REASONS = ("malformed_row", "duplicate_key")
#: Cell states in which a cell cannot carry traffic.
NOT_CARRYING = ("planned", "decommissioned")
#: Separators an MSISDN may be written with; they do not make a different number.
MSISDN_SEPARATORS = r"[ ().-]"

_STAGING = tuple(f"staging.{s}" for s in LOAD_ORDER)


def _row(*, check: str, source: str, description: str, n: ir.Table, examples: ir.Table) -> ir.Table:
    """One data_quality row from a one-row table with `n` and a one-row table with `examples`."""
    ex = examples.examples
    examples = examples.select(examples=ibis.ifelse(ex.length() > 0, ex.sort(), ibis.null("array<string>")))
    out = n.cross_join(examples)
    return out.select(
        check=ibis.literal(check),
        source=ibis.literal(source),
        n=out.n.fill_null(0).cast("int64"),
        examples=out.examples,
        description=ibis.literal(description),
    )


def _rows_check(rows: ir.Table, example: Callable[[ir.Table], ir.StringValue], *, check: str, source: str,
                description: str) -> ir.Table:
    """A check whose count is the number of `rows` (the bad rows), with the first few `example` strings."""
    n = rows.aggregate(n=rows.count())
    ex = rows.select(e=example(rows)).order_by("e").limit(N_EXAMPLES)
    return _row(check=check, source=source, description=description, n=n,
                examples=ex.aggregate(examples=ex.e.collect()))


def _quarantine_checks(q: ir.Table) -> ir.Table:
    """`quarantine:<source>:<reason>[:<column>]`: quarantined rows by source, reason and column."""
    col = ibis.ifelse(q["column"].notnull() & ~q["reason"].isin(NO_COLUMN_REASONS), q["column"],
                      ibis.null("string"))
    q = q.mutate(check_column=col)
    order = ibis.window(group_by=["source", "reason", "check_column"], order_by=["file", "line"])
    q = q.mutate(rn=ibis.row_number().over(order))
    g = q.group_by(["source", "reason", "check_column"]).aggregate(
        n=q.count(), examples=q["message"].collect(where=q.rn < N_EXAMPLES),
    )
    suffix = ibis.ifelse(g.check_column.isnull(), "", ":" + g.check_column.fill_null(""))
    reason_text = g["reason"].substitute(REASONS, else_=g["reason"])
    return g.select(
        check="quarantine:" + g["source"] + ":" + g["reason"] + suffix,
        source=g["source"],
        n=g.n.cast("int64"),
        examples=ibis.ifelse(g.examples.length() > 0, g.examples.sort(), ibis.null("array<string>")),
        description="rows of " + g["source"] + " quarantined: " + reason_text,
    )


def _missing_kpi_hours(cells: ir.Table, kpi: ir.Table) -> ir.Table:
    """`missing_kpi_hours`: in-service cells x hours from the first to the last KPI hour, minus rows there."""
    in_service = cells.filter(cells.status == "in_service").select("cell_id")
    bounds = kpi.aggregate(first_at=kpi.period_start.min(), last_at=kpi.period_start.max())
    hours = ((bounds.last_at.epoch_seconds() - bounds.first_at.epoch_seconds()) / 3600.0).round()
    bounds = bounds.select(n_hours=(hours.cast("int64") + 1).fill_null(0))
    present = kpi.group_by("cell_id").aggregate(n_present=kpi.period_start.nunique())
    per = in_service.left_join(present, "cell_id").drop("cell_id_right").cross_join(bounds)
    per = per.mutate(n_missing=per.n_hours - per.n_present.fill_null(0))
    bad = per.filter(per.n_missing > 0)
    ex = bad.order_by([ibis.desc("n_missing"), "cell_id"]).limit(N_EXAMPLES)
    ex = ex.select(e=ex.cell_id + ": " + ex.n_missing.cast("string") + " of " + ex.n_hours.cast("string")
                   + " hours missing")
    return _row(
        check="missing_kpi_hours", source="kpi_hourly",
        description="(cell, hour) pairs with no KPI row, for in-service cells, over the hours from the first "
        "to the last KPI hour loaded",
        n=per.aggregate(n=per.n_missing.sum()), examples=ex.aggregate(examples=ex.e.collect()),
    )


def _duplicate_msisdn(subs: ir.Table) -> ir.Table:
    """`duplicate_msisdn`: active subscriptions sharing an MSISDN, counted beyond the first of each number."""
    s = subs.filter(subs.status == "active")
    s = s.mutate(number=s.msisdn.re_replace(MSISDN_SEPARATORS, ""))
    g = s.group_by("number").aggregate(k=s.count(), ids=s.subscription_id.collect().sort().join(" & "))
    dup = g.filter(g.k > 1)
    ex = dup.select(e=dup.ids + " share one number").order_by("e").limit(N_EXAMPLES)
    return _row(
        check="duplicate_msisdn", source="subscriptions",
        description="active subscriptions whose MSISDN another active subscription also has, beyond the "
        "first one (a shared number counted once per extra subscription; separators ignored)",
        n=dup.aggregate(n=(dup.k - 1).sum()), examples=ex.aggregate(examples=ex.e.collect()),
    )


@model(
    "marts.data_quality",
    grain="one row per data quality check (quarantine checks: one per source, reason and column)",
    key=("check",),
    depends_on=("raw.quarantine", "staging.sites", "staging.cells", "staging.customers",
                "staging.subscriptions", "staging.charging", "staging.topups", "staging.tickets",
                "staging.kpi_hourly"),
)
def data_quality(tables: Tables) -> ir.Table:
    """One row per check: `check`, `source`, `n` (bad rows), `examples` (a few, as a list), `description`.

    The documented checks always have a row (n = 0 when clean); quarantine checks exist for the reasons
    that occurred.
    """
    q = tables["raw.quarantine"]
    sites, cells = tables["staging.sites"], tables["staging.cells"]
    cust, subs = tables["staging.customers"], tables["staging.subscriptions"]
    ch, topups = tables["staging.charging"], tables["staging.topups"]
    tickets, kpi = tables["staging.tickets"], tables["staging.kpi_hourly"]

    cell_state = cells.select(c_cell_id=cells.cell_id, c_status=cells.status)
    sub_info = subs.select(s_subscription_id=subs.subscription_id, s_customer_id=subs.customer_id,
                           s_payment_type=subs.payment_type, s_start_date=subs.start_date,
                           s_termination_date=subs.termination_date)
    usage = ch.select("usage_id", "subscription_id", "customer_id", "usage_date", "cell_id", "payment_type")
    usage_cells = usage.join(cell_state, usage.cell_id == cell_state.c_cell_id)
    usage_subs = usage.join(sub_info, usage.subscription_id == sub_info.s_subscription_id)

    in_service_cells = cells.filter(cells.status == "in_service")
    unknown_cell_usage = q.filter((q["source"] == "charging") & (q["reason"] == "unknown_reference")
                                  & (q["column"] == "cell_id"))

    # Customer-days with usage on which none of the customer's subscriptions was active (by their dates).
    days = ch.select("customer_id", "usage_date").distinct()
    d = days.join(sub_info, days.customer_id == sub_info.s_customer_id, how="left")
    active_then = (d.s_start_date <= d.usage_date) & (
        d.s_termination_date.isnull() | (d.s_termination_date >= d.usage_date))
    per_day = d.group_by(["customer_id", "usage_date"]).aggregate(n_active=count_if(d, active_then))
    orphan_days = per_day.filter(per_day.n_active == 0)
    orphan_customers = orphan_days.group_by("customer_id").aggregate(
        first_date=orphan_days.usage_date.min(), n_days=orphan_days.count())

    tk = tickets.filter(tickets.subscription_id.notnull())
    tk = tk.join(sub_info, tk.subscription_id == sub_info.s_subscription_id)
    topup_subs = topups.join(sub_info, topups.subscription_id == sub_info.s_subscription_id)
    cust_state = cust.select(k_customer_id=cust.customer_id, k_status=cust.status)
    sub_cust = subs.join(cust_state, subs.customer_id == cust_state.k_customer_id)
    kpi_rows = kpi.select("cell_id", "period_start")
    kpi_cells = kpi_rows.join(cell_state, kpi_rows.cell_id == cell_state.c_cell_id)

    checks = [
        _quarantine_checks(q),
        _duplicate_msisdn(subs),
        _missing_kpi_hours(cells, kpi),
        _rows_check(
            in_service_cells.anti_join(kpi, "cell_id"), lambda t: t.cell_id,
            check="cells_without_kpis", source="kpi_hourly",
            description="in-service cells with no KPI row at all"),
        _rows_check(
            unknown_cell_usage, lambda t: t["message"],
            check="usage_on_unknown_cells", source="charging",
            description="charging rows quarantined because their cell is not in inventory"),
        _rows_check(
            usage_cells.filter(usage_cells.c_status.isin(NOT_CARRYING)),
            lambda t: t.usage_id + " on " + t.cell_id + " (" + t.c_status + ")",
            check="usage_on_planned_or_decommissioned_cells", source="charging",
            description="charging rows whose serving cell is planned or decommissioned in inventory"),
        _rows_check(
            usage_subs.filter((usage_subs.usage_date < usage_subs.s_start_date)
                              | (usage_subs.usage_date > usage_subs.s_termination_date)),
            lambda t: t.usage_id + " on " + t.usage_date.cast("string") + " (" + t.subscription_id + ")",
            check="usage_outside_subscription_period", source="charging",
            description="charging rows dated before their subscription started or after it was terminated"),
        _rows_check(
            usage_subs.filter(usage_subs.payment_type != usage_subs.s_payment_type),
            lambda t: t.usage_id + " charged " + t.payment_type + " on a " + t.s_payment_type
            + " subscription",
            check="usage_payment_type_mismatch", source="charging",
            description="charging rows whose payment type differs from their subscription's payment type"),
        _rows_check(
            orphan_customers,
            lambda t: t.customer_id + " (" + t.n_days.cast("string") + " days from "
            + t.first_date.cast("string") + ")",
            check="customers_with_usage_but_no_active_subscription", source="customers",
            description="customers with usage on days when none of their subscriptions was active "
            "(by start and termination dates)"),
        _rows_check(
            sites.filter(sites.status == "in_service").anti_join(cells, "site_id"), lambda t: t.site_id,
            check="sites_without_cells", source="sites",
            description="in-service sites that carry no cell in the cell inventory"),
        _rows_check(
            cells.anti_join(sites, "site_id"), lambda t: t.cell_id + " (site " + t.site_id + ")",
            check="cells_with_unknown_site", source="cells",
            description="cells whose site is not in the site inventory"),
        _rows_check(
            cells.filter(cells.zone_id.isnull()), lambda t: t.cell_id,
            check="cells_without_zone", source="cells",
            description="cells whose location lies in no loaded zone (their traffic cannot be mapped)"),
        _rows_check(
            kpi_cells.filter(kpi_cells.c_status.isin(NOT_CARRYING)),
            lambda t: t.cell_id + " at " + t.period_start.cast("string") + " (" + t.c_status + ")",
            check="kpis_on_planned_or_decommissioned_cells", source="kpi_hourly",
            description="KPI rows of cells that are planned or decommissioned in inventory"),
        _rows_check(
            cust.filter(cust.home_zone_id.isnull()), lambda t: t.customer_id,
            check="customers_without_home_zone", source="customers",
            description="customers whose home location is missing or lies in no loaded zone"),
        _rows_check(
            sub_cust.filter((sub_cust.status == "active") & (sub_cust.k_status == "terminated")),
            lambda t: t.subscription_id + " of " + t.customer_id,
            check="active_subscriptions_of_terminated_customers", source="subscriptions",
            description="subscriptions still active whose customer is terminated"),
        _rows_check(
            topup_subs.filter(topup_subs.s_payment_type == "postpaid"),
            lambda t: t.topup_id + " on " + t.subscription_id,
            check="topups_on_postpaid_subscriptions", source="topups",
            description="prepaid top-ups made on postpaid subscriptions"),
        _rows_check(
            tk.filter(tk.customer_id != tk.s_customer_id),
            lambda t: t.ticket_id + " by " + t.customer_id + " on " + t.subscription_id + " of "
            + t.s_customer_id,
            check="tickets_on_another_customers_subscription", source="tickets",
            description="trouble tickets whose subscription belongs to another customer"),
    ]
    return ibis.union(*checks)


@model(
    "marts.freshness",
    grain="one row per contract source, loaded or not",
    key=("source",),
    depends_on=(*_STAGING, "raw.manifest", "raw.quarantine"),
)
def freshness(tables: Tables) -> ir.Table:
    """One row per contract source: whether it is loaded, rows, files, quarantined rows, its data as-of time
    (the latest value of the contract's event-time column, null for sources without one) and when its last
    file was loaded.
    """
    parts = []
    for name in LOAD_ORDER:
        src = SOURCES[name]
        st = tables[f"staging.{name}"]
        if src.event_time:
            agg = st.aggregate(n_rows=st.count(), as_of=st[src.event_time].max().cast("timestamp"))
        else:
            agg = st.aggregate(n_rows=st.count()).mutate(as_of=ibis.null("timestamp"))
        parts.append(agg.select(
            source=ibis.literal(name), side=ibis.literal(src.side),
            event_time_column=ibis.literal(src.event_time, type="string"),
            n_rows=agg.n_rows.cast("int64"), as_of=agg.as_of,
        ))
    out = ibis.union(*parts)
    man = tables["raw.manifest"]
    files = man.group_by("source").aggregate(
        n_files=man.count(), rows_read=man["rows_read"].sum(), last_loaded_at=man["loaded_at"].max(),
    )
    q = tables["raw.quarantine"]
    rejected = q.group_by("source").aggregate(n_quarantined=q.count())
    out = out.left_join(files, "source").drop("source_right")
    out = out.left_join(rejected, "source").drop("source_right")
    out = out.mutate(
        n_files=out.n_files.fill_null(0).cast("int64"),
        rows_read=out.rows_read.fill_null(0).cast("int64"),
        n_quarantined=out.n_quarantined.fill_null(0).cast("int64"),
    )
    return out.mutate(is_loaded=(out.n_files > 0) | (out.n_rows > 0)).relocate("source", "side", "is_loaded")
