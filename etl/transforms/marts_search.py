"""Lookup marts for finding a customer and drawing their page: search keys, and usage per customer.

The customer page reads one customer at a time. Each mart here is stored in customer order (the usage
marts: each day's rows in customer order), so DuckDB's per-row-group min/max statistics let a lookup by
`customer_id` read one row group (a day) instead of the table (at a million customers, a few
milliseconds instead of a scan of every charging row).

- `marts.customer_search`: one row per customer with a normalised name key (lower case, accents and
  punctuation folded, every word preceded by a space) so "d'angelo" finds "Ana D'Angelo", beside the
  customer_360 summary the page shows;
- `marts.msisdn_lookup`: one row per subscription with its number as digits only (an international `00`
  prefix dropped), so a number typed in any notation is compared digit by digit;
- `marts.customer_usage_daily`: usage and charges per customer, day and service over the loaded window
  (each day's rows in customer order: a refresh rewrites only the days that changed);
- `marts.customer_usage_hourly`: usage per customer, cell and hour over the last loaded days, beside which
  the page draws the KPIs of the same cells.

Everything is a portable Ibis expression (DuckDB and PySpark).
"""

from __future__ import annotations

import ibis
import ibis.expr.types as ir

from etl.transforms.checks import CENT_TOLERANCE, Check, register_check
from etl.transforms.marts_customer import count_if, data_window, day_start
from etl.transforms.registry import Tables, model

#: Days of hourly usage per customer kept for the network-experience timeline (counted back from the last
#: loaded date, that date included).
HOURLY_DAYS = 7
#: Accented letters folded to their base letter in name keys (after lower-casing). The app folds a typed
#: name the same way (Unicode NFKD, combining marks dropped), so both sides agree on these letters.
ACCENTED = "àáâãäåāăąçćčďèéêëēĕėęěìíîïĩīĭįñńňòóôõöōŏőùúûüũūŭůűųýÿśšşţťźżž"
PLAIN = "aaaaaaaaacccdeeeeeeeeeiiiiiiiinnnoooooooouuuuuuuuuuyysssttzzz"

_DAILY_DEPS = ("staging.charging",)
_WINDOW_DEPS = ("staging.charging", "staging.topups", "staging.tickets", "staging.kpi_hourly", "staging.alarms")


def name_key(name: ir.StringValue) -> ir.StringValue:
    """A name folded for matching: lower case, common accents removed, every run of characters other than
    a-z and 0-9 turned into one space, with one leading space (so a word prefix is `' ' + prefix`)."""
    folded = name.lower().translate(ACCENTED, PLAIN).re_replace(r"[^a-z0-9]+", " ").strip()
    return ibis.literal(" ") + folded


def msisdn_digits(msisdn: ir.StringValue) -> ir.StringValue:
    """A phone number as its digits only, without an international `00` prefix (`+39 312...` and
    `0039 312...` both become `39312...`)."""
    digits = msisdn.re_replace(r"[^0-9]", "")
    return ibis.ifelse(digits.startswith("00"), digits.substr(2), digits)


#: The customer_360 columns the customer page shows, kept beside the search keys so that the page reads one
#: row of a table stored in customer order (customer_360 itself has some fifty columns, in no order).
PROFILE_COLUMNS: tuple[str, ...] = (
    "customer_id", "name", "segment", "customer_status", "created_at", "is_vip", "home_zone_id", "usage_zone_id",
    "as_of_date", "main_product_offering", "payment_type", "tenure_days", "n_subscriptions",
    "n_active_subscriptions", "monthly_fee_total", "usage_revenue_30d", "amount_unpaid", "n_unpaid_bills",
    "n_tickets", "n_open_tickets", "n_network_tickets", "n_outages", "outage_minutes", "main_cell_id",
    "exp_availability_pct", "exp_accessibility_pct", "exp_drop_rate_pct", "exp_dl_throughput_mbps",
    "exp_latency_ms",
)


@model(
    "marts.customer_search",
    grain="one row per customer",
    key=("customer_id",),
    depends_on=("marts.customer_360",),
)
def customer_search(tables: Tables) -> ir.Table:
    """One row per customer: the name's search key beside the customer_360 summary the customer page shows
    (PROFILE_COLUMNS: segment, status, home zone, subscriptions, fees, tickets, experience ...); stored in
    customer_id order."""
    c360 = tables["marts.customer_360"]
    return c360.select(*PROFILE_COLUMNS, name_key=name_key(c360.name.fill_null(""))).order_by("customer_id")


@model(
    "marts.msisdn_lookup",
    grain="one row per subscription",
    key=("subscription_id",),
    depends_on=("staging.subscriptions",),
)
def msisdn_lookup(tables: Tables) -> ir.Table:
    """One row per subscription: its customer, number as landed and as digits, tariff, payment type,
    status, dates, monthly fee; stored in customer_id order (the customer page's list of subscriptions)."""
    subs = tables["staging.subscriptions"]
    return subs.select(
        "subscription_id", "customer_id", "msisdn", "product_offering", "payment_type", "status", "start_date",
        "termination_date", "termination_reason", "monthly_fee", "currency",
        msisdn_digits=msisdn_digits(subs.msisdn),
    ).order_by(["customer_id", "subscription_id"])


@model(
    "marts.customer_usage_daily",
    grain="one row per customer per day per service used",
    key=("customer_id", "usage_date", "service"),
    depends_on=_DAILY_DEPS,
    partition="usage_date",
    subkey="customer_id",
)
def customer_usage_daily(tables: Tables) -> ir.Table:
    """One row per customer per day per service: events, charges, and quantity in the service's units
    (data and roaming data in MB, voice and roaming voice in minutes, messages, value-added events).

    Usage of a subscription that is not landed (customer unknown) is left out, as in customer_360.
    """
    ch = tables["staging.charging"]
    ch = ch.filter(ch.customer_id.notnull())
    g = ch.group_by(["customer_id", "usage_date", "service"]).aggregate(
        n_events=ch.count(),
        amount=ch.amount.sum(),
        data_mb=ch.quantity.sum(where=ch.unit == "megabyte"),
        voice_min=ch.quantity.sum(where=ch.unit == "second") / 60.0,
        n_sms=ch.quantity.sum(where=ch.unit == "message"),
        n_other=ch.quantity.sum(where=ch.unit == "event"),
    )
    g = g.mutate(
        amount=g.amount.fill_null(0.0), data_mb=g.data_mb.fill_null(0.0), voice_min=g.voice_min.fill_null(0.0),
        n_sms=g.n_sms.fill_null(0.0), n_other=g.n_other.fill_null(0.0),
    )
    return g.order_by(["usage_date", "customer_id"])


def hourly_floor(tables: Tables) -> ir.Table:
    """One row, `from_date`: the first date `marts.customer_usage_hourly` keeps (HOURLY_DAYS back from the
    last loaded date, that date included)."""
    w = data_window(tables)
    return w.select(from_date=(w.end_date - ibis.interval(days=HOURLY_DAYS - 1)).cast("date"))


@model(
    "marts.customer_usage_hourly",
    grain="one row per customer per cell per hour, over the last HOURLY_DAYS loaded days",
    key=("customer_id", "cell_id", "hour_at"),
    depends_on=_WINDOW_DEPS,
    partition="usage_date",
    partition_floor=hourly_floor,
    floor_inputs=tuple(d for d in _WINDOW_DEPS if d != "staging.charging"),
    key_fixes_partition=True,  # usage_date is hour_at's date
    subkey="customer_id",
)
def customer_usage_hourly(tables: Tables) -> ir.Table:
    """One row per customer per cell per hour of the last 7 loaded days (the last loaded date included):
    events by kind, data MB, voice minutes, messages and charges, and `usage_date` (the hour's date); events
    without a cell (roaming abroad) have no row. Each date's rows are stored in customer_id, hour order.
    """
    ch = tables["staging.charging"]
    win = hourly_floor(tables).select(from_at=day_start(ibis._.from_date))
    ch = ch.filter(ch.customer_id.notnull() & ch.cell_id.notnull()).cross_join(win)
    ch = ch.filter(ch.usage_at >= ch.from_at)
    g = ch.group_by(["customer_id", "cell_id", ch.usage_at.truncate("h").name("hour_at"), "usage_date"]).aggregate(
        zone_id=ch.zone_id.max(),
        n_events=ch.count(),
        n_voice=count_if(ch, ch.service == "voice"),
        n_sms=count_if(ch, ch.service == "sms"),
        n_data=count_if(ch, ch.service == "data"),
        data_mb=ch.quantity.sum(where=ch.unit == "megabyte"),
        voice_min=ch.quantity.sum(where=ch.unit == "second") / 60.0,
        amount=ch.amount.sum(),
    )
    g = g.mutate(data_mb=g.data_mb.fill_null(0.0), voice_min=g.voice_min.fill_null(0.0),
                 amount=g.amount.fill_null(0.0))
    return g.order_by(["usage_date", "customer_id"])


register_check(Check(
    name="reconcile:customer_usage_daily",
    table="marts.customer_usage_daily",
    sql=f"""
        WITH m AS (SELECT usage_date, sum(amount) AS mart_amount, sum(n_events) AS mart_events
                   FROM marts.customer_usage_daily GROUP BY ALL),
             s AS (SELECT usage_date, sum(amount) AS staged_amount, count(*) AS staged_events
                   FROM staging.charging WHERE customer_id IS NOT NULL GROUP BY ALL)
        SELECT coalesce(m.usage_date, s.usage_date) AS usage_date, mart_amount, staged_amount, mart_events,
               staged_events
        FROM m FULL OUTER JOIN s ON m.usage_date = s.usage_date
        WHERE abs(coalesce(mart_amount, 0) - coalesce(staged_amount, 0)) >= {CENT_TOLERANCE}
           OR coalesce(mart_events, 0) <> coalesce(staged_events, 0)
        ORDER BY 1
    """,
    requires=("staging.charging",),
    description="charges and events per day in marts.customer_usage_daily = staging.charging's of known "
                "customers, to the cent",
))
