"""The canonical extract contracts: one declaration per source, read by validation, docs and mapping.

The contracts are data. `etl/validate.py` enforces them, `docs/contracts.md` is generated from them
(`python -m etl.contracts > docs/contracts.md`), and a mapping file maps an operator's exports onto them.
Field names follow the TM Forum Open API resource named on each source, flattened to columns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

DType = Literal["string", "int", "float", "bool", "date", "timestamp", "geometry"]
Side = Literal["BSS", "OSS"]

#: Reason codes a row can be quarantined with. Each is stable: tests, data_quality and users key on it.
REASONS: dict[str, str] = {
    "malformed_row": "the row could not be split into the file's columns (wrong number of fields)",
    "bad_type": "a value could not be parsed as the column's type",
    "null_required": "a value the contract requires is empty",
    "not_allowed": "a value is not one of the column's allowed values",
    "out_of_range": "a number or date lies outside the column's stated range",
    "bad_pattern": "a value does not match the column's pattern",
    "bad_order": "two columns of the row are out of order (an end before its start)",
    "unknown_reference": "a reference to another source names a key that is not there",
    "duplicate_key": "the row's key was already seen in the same load; the later row wins, the earlier one "
    "is quarantined",
}

#: Values accepted as booleans (case-insensitive) when a boolean column is parsed from text.
TRUE_VALUES = ("true", "t", "yes", "y", "1")
FALSE_VALUES = ("false", "f", "no", "n", "0")

#: Extensions a canonical extract may have; the source is the file name's stem before `_<suffix>`.
EXTENSIONS = (".csv", ".csv.gz", ".parquet", ".geojson", ".json")


@dataclass(frozen=True)
class Column:
    """One column of a source: its type, whether it must be present and filled, and what it may hold."""

    name: str
    dtype: DType
    description: str
    required: bool = True
    """The column must be in every file of the source (a file without it is rejected whole)."""
    nullable: bool = False
    """An empty value is allowed (only checked when the column is present)."""
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    pattern: str | None = None
    references: tuple[str, ...] = ()
    """`source.column` targets; a value must exist in at least one of them (checked across loads)."""
    unit: str | None = None
    tmf: str | None = None
    """The TM Forum (or 3GPP) field this column flattens."""
    pii: bool = False
    """Personal data: shown only to roles that need it."""

    def expectation(self) -> str:
        """A human sentence of what a value must be, used in error messages and docs."""
        parts = [self.dtype]
        if self.allowed:
            parts.append("one of " + ", ".join(self.allowed))
        if self.min is not None and self.max is not None:
            parts.append(f"between {_num(self.min)} and {_num(self.max)}")
        elif self.min is not None:
            parts.append(f"at least {_num(self.min)}")
        elif self.max is not None:
            parts.append(f"at most {_num(self.max)}")
        if self.pattern:
            parts.append(f"matching /{self.pattern}/")
        if self.references:
            parts.append("present in " + " or ".join(self.references))
        if not self.nullable:
            parts.append("not empty")
        return ", ".join(parts)


@dataclass(frozen=True)
class Order:
    """`before` must not be later than `after` when both are filled (an end never precedes its start)."""

    before: str
    after: str


@dataclass(frozen=True)
class Source:
    """One canonical extract: what a row is, its key, its columns and the rules across them."""

    name: str
    side: Side
    grain: str
    key: tuple[str, ...]
    columns: tuple[Column, ...]
    tmf: str
    description: str
    event_time: str | None = None
    """The column that says when a row happened: the source's as-of time is its maximum."""
    orders: tuple[Order, ...] = ()
    partitioned: bool = False
    """Files arrive per day (`charging_20261101.csv`); otherwise each file is a full snapshot."""
    geo: bool = False
    """The source is GeoJSON (one feature per row, properties as columns, geometry as WKT)."""

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"source {self.name} has no column {name}")

    @property
    def references(self) -> dict[str, tuple[str, ...]]:
        return {c.name: c.references for c in self.columns if c.references}


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


def _c(name: str, dtype: DType, description: str, **kw) -> Column:
    return Column(name=name, dtype=dtype, description=description, **kw)


PAYMENT_TYPES = ("prepaid", "postpaid")
SERVICES = ("voice", "sms", "data", "roaming", "vas")
TECHNOLOGIES = ("2G", "3G", "4G", "5G")
SEGMENTS = ("consumer", "business", "vip")
RESOURCE_STATUS = ("planned", "in_service", "out_of_service", "decommissioned")
CURRENCY = r"^[A-Z]{3}$"
MSISDN = r"^\+?[0-9][0-9 ()\-.]{5,19}$"

_SOURCES: tuple[Source, ...] = (
    Source(
        name="zones", side="OSS", geo=True, tmf="TMF674 Geographic Site / TMF675 Geographic Location",
        grain="one geometry per zone", key=("zone_id",),
        description="Areas the operator reports by (districts, counties): polygons in WGS84 longitude/latitude.",
        columns=(
            _c("zone_id", "string", "Zone identifier", tmf="GeographicLocation.id"),
            _c("zone_name", "string", "Zone name as people say it", tmf="GeographicLocation.name"),
            _c("zone_type", "string", "Kind of area",
               allowed=("urban", "suburban", "rural", "district", "county", "region"), required=False,
               nullable=True, tmf="GeographicLocation.@type"),
            _c("parent_zone_id", "string", "The zone this one belongs to", required=False, nullable=True,
               references=("zones.zone_id",)),
            _c("population", "int", "Residents", required=False, nullable=True, min=0, max=50_000_000),
            _c("geometry", "geometry", "Polygon or MultiPolygon (WGS84), stored as WKT",
               tmf="GeographicLocation.geometry"),
        ),
    ),
    Source(
        name="sites", side="OSS", tmf="TMF639 Resource Inventory / TMF674 Geographic Site",
        grain="one row per site", key=("site_id",), event_time="commissioned_at",
        description="Physical sites (towers, rooftops, indoor systems) that carry cells.",
        columns=(
            _c("site_id", "string", "Site identifier", tmf="GeographicSite.id"),
            _c("name", "string", "Site name", required=False, nullable=True, tmf="GeographicSite.name"),
            _c("latitude", "float", "WGS84 latitude", min=-90, max=90, unit="degree"),
            _c("longitude", "float", "WGS84 longitude", min=-180, max=180, unit="degree"),
            _c("site_type", "string", "Kind of site", allowed=("macro", "micro", "small_cell", "indoor"),
               required=False, nullable=True),
            _c("status", "string", "Operational status", allowed=RESOURCE_STATUS,
               tmf="Resource.resourceStatus"),
            _c("commissioned_at", "timestamp", "When the site went into service", required=False,
               nullable=True, tmf="Resource.startOperatingDate"),
        ),
    ),
    Source(
        name="cells", side="OSS", tmf="TMF639 Resource Inventory",
        grain="one row per cell", key=("cell_id",),
        description="Radio cells: the unit that carries traffic and reports KPIs.",
        columns=(
            _c("cell_id", "string", "Cell identifier (as it appears in charging and KPI records)",
               tmf="Resource.id"),
            _c("site_id", "string", "The site that carries the cell", references=("sites.site_id",),
               tmf="Resource.place"),
            _c("technology", "string", "Radio access technology", allowed=TECHNOLOGIES),
            _c("band_mhz", "int", "Carrier frequency band", min=400, max=100_000, unit="MHz"),
            _c("azimuth_deg", "float", "Antenna direction (empty for omni cells)", nullable=True, min=0,
               max=360, unit="degree"),
            _c("capacity_mbps", "float", "Nominal downlink capacity", min=0.01, max=100_000, unit="Mbit/s"),
            _c("status", "string", "Operational status", allowed=RESOURCE_STATUS,
               tmf="Resource.resourceStatus"),
            _c("latitude", "float", "Cell latitude when it differs from its site's", required=False,
               nullable=True, min=-90, max=90, unit="degree"),
            _c("longitude", "float", "Cell longitude when it differs from its site's", required=False,
               nullable=True, min=-180, max=180, unit="degree"),
        ),
    ),
    Source(
        name="customers", side="BSS", tmf="TMF629 Customer Management",
        grain="one row per customer", key=("customer_id",), event_time="created_at",
        description="Parties that hold subscriptions, with where they live.",
        columns=(
            _c("customer_id", "string", "Customer identifier", tmf="Customer.id"),
            _c("name", "string", "Full name", nullable=True, pii=True, tmf="Customer.name"),
            _c("segment", "string", "Commercial segment", allowed=SEGMENTS,
               tmf="Customer.customerCategory"),
            _c("status", "string", "Customer status", allowed=("active", "suspended", "terminated"),
               tmf="Customer.status"),
            _c("created_at", "timestamp", "When the customer was created", tmf="Customer.validFor.startDateTime"),
            _c("home_latitude", "float", "Home latitude (WGS84)", required=False, nullable=True, min=-90,
               max=90, pii=True, tmf="Customer.contactMedium.geographicAddress"),
            _c("home_longitude", "float", "Home longitude (WGS84)", required=False, nullable=True, min=-180,
               max=180, pii=True),
            _c("address", "string", "Postal address", required=False, nullable=True, pii=True),
            _c("email", "string", "Contact e-mail", required=False, nullable=True, pii=True),
            _c("birth_date", "date", "Date of birth", required=False, nullable=True, pii=True,
               min=None),
        ),
    ),
    Source(
        name="subscriptions", side="BSS", tmf="TMF637 Product Inventory",
        grain="one row per product instance", key=("subscription_id",), event_time="start_date",
        description="Product instances (mobile lines): tariff, payment type, life cycle.",
        orders=(Order("start_date", "termination_date"),),
        columns=(
            _c("subscription_id", "string", "Product instance identifier", tmf="Product.id"),
            _c("customer_id", "string", "The customer who holds it", references=("customers.customer_id",),
               tmf="Product.relatedParty"),
            _c("msisdn", "string", "Phone number", pattern=MSISDN, pii=True,
               tmf="Product.productCharacteristic[msisdn]"),
            _c("product_offering", "string", "Tariff (product offering) name", tmf="Product.productOffering.name"),
            _c("payment_type", "string", "Prepaid or postpaid", allowed=PAYMENT_TYPES),
            _c("status", "string", "Life-cycle status", allowed=("active", "suspended", "terminated"),
               tmf="Product.status"),
            _c("start_date", "date", "Activation date", tmf="Product.startDate"),
            _c("termination_date", "date", "Termination date (empty while active)", nullable=True,
               tmf="Product.terminationDate"),
            _c("monthly_fee", "float", "Recurring monthly fee before promotions", min=0, max=1000,
               unit="currency", tmf="Product.productPrice[recurring]"),
            _c("currency", "string", "ISO 4217 currency code", required=False, nullable=True, pattern=CURRENCY),
            _c("termination_reason", "string", "Why it ended (an outcome: never a churn feature)",
               required=False, nullable=True, allowed=("voluntary", "involuntary", "migration")),
        ),
    ),
    Source(
        name="promotions", side="BSS", tmf="TMF671 Promotion",
        grain="one row per promotion applied to a subscription", key=("promotion_id",),
        event_time="valid_from", orders=(Order("valid_from", "valid_to"),),
        description="Discounts and bundles applied to subscriptions, and when they end.",
        columns=(
            _c("promotion_id", "string", "Promotion instance identifier", tmf="Promotion.id"),
            _c("subscription_id", "string", "The subscription it applies to",
               references=("subscriptions.subscription_id",)),
            _c("promotion_type", "string", "Kind of promotion",
               allowed=("discount", "bundle", "loyalty", "retention", "device"), tmf="Promotion.type"),
            _c("valid_from", "date", "First day it applies", tmf="Promotion.validFor.startDateTime"),
            _c("valid_to", "date", "Last day it applies (empty if open-ended)", nullable=True,
               tmf="Promotion.validFor.endDateTime"),
            _c("discount", "float", "Discount on the monthly fee, in percent", min=0, max=100, unit="%"),
        ),
    ),
    Source(
        name="charging", side="BSS", tmf="TMF635 Usage Management", partitioned=True,
        grain="one row per rated usage event", key=("usage_id",), event_time="usage_at",
        description="Rated usage from online (prepaid) and offline (postpaid) charging, with the serving cell.",
        columns=(
            _c("usage_id", "string", "Usage record identifier", tmf="Usage.id"),
            _c("subscription_id", "string", "The subscription that used the service",
               references=("subscriptions.subscription_id",), tmf="Usage.relatedParty"),
            _c("usage_at", "timestamp", "When the usage started", tmf="Usage.usageDate"),
            _c("service", "string", "Service used", allowed=SERVICES, tmf="Usage.usageType"),
            _c("cell_id", "string", "Serving cell (empty when roaming abroad)", nullable=True,
               references=("cells.cell_id",), tmf="Usage.usageCharacteristic[cellId]"),
            _c("quantity", "float", "Amount used, in `unit`", min=0, max=1_000_000,
               tmf="Usage.usageCharacteristic[quantity]"),
            _c("unit", "string", "Unit of quantity", allowed=("second", "message", "megabyte", "event"),
               tmf="Usage.usageCharacteristic[unit]"),
            _c("amount", "float", "Rated charge (excluding recurring fees)", min=0, max=1000,
               unit="currency", tmf="Usage.ratedProductUsage.taxExcludedRatingAmount"),
            _c("currency", "string", "ISO 4217 currency code", pattern=CURRENCY),
            _c("payment_type", "string", "Charged online (prepaid) or offline (postpaid)",
               allowed=PAYMENT_TYPES),
            _c("is_billed", "bool", "Already on a bill (postpaid) or deducted (prepaid)",
               tmf="Usage.ratedProductUsage.isBilled"),
        ),
    ),
    Source(
        name="topups", side="BSS", tmf="TMF654 Prepay Balance Management", partitioned=True,
        grain="one row per prepaid top-up", key=("topup_id",), event_time="topup_at",
        description="Prepaid balance top-ups.",
        columns=(
            _c("topup_id", "string", "Top-up identifier", tmf="TopupBalance.id"),
            _c("subscription_id", "string", "The prepaid subscription topped up",
               references=("subscriptions.subscription_id",)),
            _c("topup_at", "timestamp", "When the top-up was made", tmf="TopupBalance.requestedDate"),
            _c("amount", "float", "Amount added", min=0.01, max=1000, unit="currency",
               tmf="TopupBalance.amount"),
            _c("channel", "string", "Where it was made",
               allowed=("retail", "online", "app", "voucher", "bank", "ussd"), tmf="TopupBalance.channel"),
            _c("currency", "string", "ISO 4217 currency code", required=False, nullable=True, pattern=CURRENCY),
        ),
    ),
    Source(
        name="bills", side="BSS", tmf="TMF678 Customer Bill Management",
        grain="one row per postpaid bill", key=("bill_id",), event_time="bill_date",
        orders=(Order("billing_period_start", "billing_period_end"), Order("billing_period_start", "bill_date")),
        description="Postpaid customer bills and what has been paid of them.",
        columns=(
            _c("bill_id", "string", "Bill identifier", tmf="CustomerBill.id"),
            _c("customer_id", "string", "The billed customer", references=("customers.customer_id",),
               tmf="CustomerBill.billingAccount"),
            _c("bill_date", "date", "Date the bill was issued", tmf="CustomerBill.billDate"),
            _c("billing_period_start", "date", "First day billed", tmf="CustomerBill.billingPeriod.startDateTime"),
            _c("billing_period_end", "date", "Last day billed", tmf="CustomerBill.billingPeriod.endDateTime"),
            _c("payment_due_date", "date", "When payment is due", required=False, nullable=True,
               tmf="CustomerBill.paymentDueDate"),
            _c("amount_due", "float", "Amount billed", min=0, max=100_000, unit="currency",
               tmf="CustomerBill.amountDue"),
            _c("amount_paid", "float", "Amount paid so far", nullable=True, min=0, max=100_000,
               unit="currency"),
            _c("state", "string", "Bill state",
               allowed=("new", "on_hold", "validated", "sent", "partially_paid", "settled"),
               tmf="CustomerBill.state"),
        ),
    ),
    Source(
        name="tickets", side="BSS", tmf="TMF621 Trouble Ticket", partitioned=True,
        grain="one row per trouble ticket", key=("ticket_id",), event_time="created_at",
        orders=(Order("created_at", "resolved_at"),),
        description="Customer trouble tickets, their category and outcome.",
        columns=(
            _c("ticket_id", "string", "Ticket identifier", tmf="TroubleTicket.id"),
            _c("customer_id", "string", "Customer who raised it", references=("customers.customer_id",),
               tmf="TroubleTicket.relatedParty"),
            _c("subscription_id", "string", "Subscription concerned", nullable=True,
               references=("subscriptions.subscription_id",), tmf="TroubleTicket.relatedEntity"),
            _c("created_at", "timestamp", "When it was opened", tmf="TroubleTicket.creationDate"),
            _c("resolved_at", "timestamp", "When it was resolved (empty while open)", nullable=True,
               tmf="TroubleTicket.resolutionDate"),
            _c("category", "string", "What it is about",
               allowed=("network_coverage", "network_quality", "billing", "device", "service_request", "other"),
               tmf="TroubleTicket.ticketType"),
            _c("channel", "string", "How it arrived", allowed=("call_center", "app", "web", "retail", "social"),
               tmf="TroubleTicket.channel"),
            _c("severity", "string", "Severity", allowed=("critical", "high", "medium", "low"),
               tmf="TroubleTicket.severity"),
            _c("status", "string", "Status",
               allowed=("acknowledged", "in_progress", "pending", "resolved", "closed", "rejected"),
               tmf="TroubleTicket.status"),
            _c("resolution", "string", "Outcome", required=False, nullable=True,
               allowed=("fixed", "no_fault_found", "compensated", "explained", "unresolved"),
               tmf="TroubleTicket.resolution"),
        ),
    ),
    Source(
        name="kpi_hourly", side="OSS", tmf="TMF628 Performance Management; 3GPP TS 32.450", partitioned=True,
        grain="one row per cell per hour", key=("cell_id", "period_start"), event_time="period_start",
        description=(
            "Hourly cell performance. Counters (optional) let KPIs be recomputed per 3GPP TS 32.450; the "
            "derived KPIs are what most exports carry."
        ),
        columns=(
            _c("cell_id", "string", "Measured cell", references=("cells.cell_id",),
               tmf="PerformanceMeasurement.resource"),
            _c("period_start", "timestamp", "Start of the hour measured", tmf="granularity PT1H"),
            _c("availability_pct", "float", "100 x (T - unavailable time) / T", min=0, max=100, unit="%"),
            _c("accessibility_pct", "float", "RRC setup success x E-RAB setup success", min=0, max=100,
               unit="%"),
            _c("drop_rate_pct", "float", "Abnormal releases / all releases (call or bearer drops)", min=0,
               max=100, unit="%"),
            _c("dl_throughput_mbps", "float", "Downlink volume / active transfer time", min=0, max=100_000,
               nullable=True, unit="Mbit/s"),
            _c("latency_ms", "float", "Average user-plane latency", min=0, max=60_000, nullable=True, unit="ms"),
            _c("prb_utilisation_pct", "float", "Physical resource block utilisation", min=0, max=100, unit="%"),
            _c("traffic_volume_mb", "float", "Downlink plus uplink data volume", min=0, max=100_000_000,
               unit="MB"),
            _c("voice_traffic_erl", "float", "Voice traffic", required=False, nullable=True, min=0,
               max=100_000, unit="Erlang"),
            _c("unavailable_time_s", "float", "Counter: seconds the cell was unavailable", required=False,
               nullable=True, min=0, max=3600, unit="s"),
            _c("rrc_setup_attempts", "int", "Counter: RRC connection setup attempts", required=False,
               nullable=True, min=0, max=100_000_000),
            _c("rrc_setup_successes", "int", "Counter: RRC connection setup successes", required=False,
               nullable=True, min=0, max=100_000_000),
            _c("erab_setup_attempts", "int", "Counter: E-RAB setup attempts", required=False, nullable=True,
               min=0, max=100_000_000),
            _c("erab_setup_successes", "int", "Counter: E-RAB setup successes", required=False, nullable=True,
               min=0, max=100_000_000),
            _c("erab_releases", "int", "Counter: E-RAB releases (normal and abnormal)", required=False,
               nullable=True, min=0, max=100_000_000),
            _c("erab_abnormal_releases", "int", "Counter: abnormal E-RAB releases (drops)", required=False,
               nullable=True, min=0, max=100_000_000),
            _c("dl_active_time_s", "float", "Counter: seconds with downlink data in the buffer",
               required=False, nullable=True, min=0, max=3600, unit="s"),
        ),
    ),
    Source(
        name="alarms", side="OSS", tmf="TMF642 Alarm Management", partitioned=True,
        grain="one row per alarm state (the latest state of an alarm wins)", key=("alarm_id",),
        event_time="raised_at", orders=(Order("raised_at", "cleared_at"),),
        description="Network alarms on cells and sites, raised and cleared.",
        columns=(
            _c("alarm_id", "string", "Alarm identifier", tmf="Alarm.id"),
            _c("alarmed_object_id", "string", "Cell or site in alarm", references=("cells.cell_id", "sites.site_id"),
               tmf="Alarm.alarmedObject.id"),
            _c("alarmed_object_type", "string", "What kind of object is in alarm", allowed=("cell", "site"),
               tmf="Alarm.alarmedObjectType"),
            _c("alarm_type", "string", "X.733 event type",
               allowed=("communicationsAlarm", "qualityOfServiceAlarm", "processingErrorAlarm",
                        "equipmentAlarm", "environmentalAlarm"), tmf="Alarm.alarmType"),
            _c("perceived_severity", "string", "X.733 perceived severity",
               allowed=("critical", "major", "minor", "warning", "indeterminate", "cleared"),
               tmf="Alarm.perceivedSeverity"),
            _c("probable_cause", "string", "X.733 probable cause", tmf="Alarm.probableCause"),
            _c("specific_problem", "string", "Vendor-specific problem text", required=False, nullable=True,
               tmf="Alarm.specificProblem"),
            _c("service_affecting", "bool", "Whether the alarm affects service", tmf="Alarm.isServiceAffecting"),
            _c("raised_at", "timestamp", "When it was raised", tmf="Alarm.alarmRaisedTime"),
            _c("cleared_at", "timestamp", "When it was cleared (empty while open)", nullable=True,
               tmf="Alarm.alarmClearedTime"),
        ),
    ),
)

SOURCES: dict[str, Source] = {s.name: s for s in _SOURCES}
#: Sources in the order they must load: a source comes after every source it references.
LOAD_ORDER: tuple[str, ...] = (
    "zones", "sites", "cells", "customers", "subscriptions", "promotions", "charging", "topups", "bills",
    "tickets", "kpi_hourly", "alarms",
)


def source_for_file(path: str | Path) -> Source | None:
    """The source a canonical file belongs to, from its name (`charging_20261101.csv.gz` is charging)."""
    name = Path(path).name
    for ext in sorted(EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext):
            stem = name[: -len(ext)]
            break
    else:
        return None
    for src in sorted(SOURCES, key=len, reverse=True):
        if stem == src or stem.startswith(src + "_"):
            return SOURCES[src]
    return None


def validate_contracts() -> None:
    """Check the declarations themselves: keys exist, references point at real keys, load order holds."""
    assert set(LOAD_ORDER) == set(SOURCES), "LOAD_ORDER must list every source once"
    position = {s: i for i, s in enumerate(LOAD_ORDER)}
    for src in SOURCES.values():
        names = src.column_names
        assert len(set(names)) == len(names), f"{src.name}: duplicate column names"
        for k in src.key:
            col = src.column(k)
            assert col.required and not col.nullable, f"{src.name}.{k}: key columns must be required"
        for o in src.orders:
            src.column(o.before), src.column(o.after)
        if src.event_time:
            src.column(src.event_time)
        for col in src.columns:
            if col.pattern:
                re.compile(col.pattern)
            for ref in col.references:
                target, _, target_col = ref.partition(".")
                assert target in SOURCES and target_col in SOURCES[target].key, f"bad reference {ref}"
                assert position[target] <= position[src.name], f"{src.name} loads before {target}"


def render_markdown() -> str:
    """The contracts as a Markdown reference (docs/contracts.md is this text, checked by a test)."""
    out = [
        "# Canonical extract contracts",
        "",
        "Generated from `etl/contracts.py` by `python -m etl.contracts > docs/contracts.md`; do not edit.",
        "",
        ("A file belongs to the source its name starts with (`charging.csv`, `charging_20261101.csv.gz`,"
        " `cells.parquet`, `zones.geojson`). CSV files are UTF-8 (a BOM is accepted) or Latin-1, comma"
        " separated, with a header row; gzip'd CSV and Parquet are read as they are. Dates are ISO 8601"
        " (`2026-11-01`), timestamps ISO 8601 without or with a UTC offset (`2026-11-01T13:00:00`); booleans"
        f" are one of {', '.join(TRUE_VALUES)} / {', '.join(FALSE_VALUES)}. An operator whose exports differ"
        " supplies a mapping file instead."),
        "",
        "## Reason codes",
        "",
        "Every row that breaks its contract goes to quarantine with one of these codes:",
        "",
        "| code | meaning |",
        "|---|---|",
    ]
    out += [f"| `{k}` | {v} |" for k, v in REASONS.items()]
    for name in LOAD_ORDER:
        s = SOURCES[name]
        out += [
            "",
            f"## {s.name} ({s.side})",
            "",
            s.description,
            "",
            f"- Grain: {s.grain}; key: {', '.join(f'`{k}`' for k in s.key)}",
            f"- TM Forum: {s.tmf}",
            (f"- Files: {'one per day, ' + s.name + '_YYYYMMDD' if s.partitioned else 'a full snapshot'}"
            f"{' (GeoJSON)' if s.geo else ''}"),
        ]
        if s.event_time:
            out.append(f"- As-of time: the latest `{s.event_time}`")
        for o in s.orders:
            out.append(f"- `{o.before}` must not be after `{o.after}`")
        out += ["", "| column | type | required | expected | unit | TM Forum | description |",
                "|---|---|---|---|---|---|---|"]
        for c in s.columns:
            flags = ("yes" if c.required else "no") + (" (PII)" if c.pii else "")
            out.append(
                f"| `{c.name}` | {c.dtype} | {flags} | {c.expectation()} | {c.unit or ''} | {c.tmf or ''} "
                f"| {c.description} |"
            )
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    validate_contracts()
    print(render_markdown(), end="")
