"""Churn features: which columns the model may use, where each comes from, and the frame it learns from.

The features are `marts.churn_features` (the ETL builds them per customer per weekly snapshot from data
before the snapshot date) plus three snapshot-safe extras computed here: the days from each snapshot to
the customer's next termination (the label's raw form, so a time split can cut labels at its own date),
promotions that ended in the 30 days before the snapshot, and the fee compared with what customers of
the same segment and payment type pay at the same snapshot.

Two shapes of data are recognised (`detect_mode`):

- `snapshots`: a history of daily extracts; the model learns from several weekly snapshots.
- `labelled_table`: a one-off export where every termination falls on the data's last date (a customer
  table with a churn flag brought through a mapping, like the BigML set). The features are taken as of
  the end of that date and the label is the flag; there is no history to split on, so evaluation holds
  out customers instead of a later snapshot.

A leak guard refuses outcome columns as features (`guard`), and `single_feature_auc` finds any one
feature that on its own separates churners almost perfectly, for the training report.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from etl.transforms.marts_customer import LABEL_HORIZON_DAYS, LOOKBACK_DAYS
from models.errors import LeakError, ModelError

Mode = Literal["snapshots", "labelled_table"]
Kind = Literal["numeric", "categorical"]

#: Columns that say what happened after the snapshot (or are the outcome itself): never features.
OUTCOME_COLUMNS: tuple[str, ...] = (
    "label_churn_30d", "label_observed_days", "days_to_churn", "horizon_days", "label",
    "termination_date", "last_termination_date", "termination_reason", "customer_status", "status",
    "is_active", "churn", "churned", "is_churned", "n_terminating",
)
#: Any column whose name starts with one of these is an outcome too.
OUTCOME_PREFIXES: tuple[str, ...] = ("label_", "churn_", "future_")
#: Identifiers and bookkeeping: carried along, never learnt from.
ID_COLUMNS: tuple[str, ...] = ("customer_id", "snapshot_date", "home_zone_id")


@dataclass(frozen=True)
class Group:
    """A family of features and the extract sources it needs: missing sources, missing group."""

    name: str
    side: Literal["BSS", "OSS"]
    sources: tuple[str, ...]
    description: str


GROUPS: dict[str, Group] = {g.name: g for g in (
    Group("subscription", "BSS", ("customers", "subscriptions"),
          "tenure, tariff and fee, payment type, lines held"),
    Group("usage", "BSS", ("charging",), "ARPU and its trend, activity, days since last use"),
    Group("topups", "BSS", ("topups",), "top-up rhythm and amounts"),
    Group("bills", "BSS", ("bills",), "unpaid and overdue bills"),
    Group("tickets", "BSS", ("tickets",), "trouble tickets, open ones and their outcome"),
    Group("promotions", "BSS", ("promotions", "subscriptions"), "discounts in force, ending or just ended"),
    Group("network", "OSS", ("kpi_hourly", "charging"),
          "drop rate, throughput, availability, accessibility and latency on the cells each customer used, "
          "weighted by their usage"),
    Group("outages", "OSS", ("alarms", "charging"), "service-affecting outages lived through, in minutes"),
)}

#: Reason units: features that are perturbed together when a score is explained, and their title.
REASON_TITLES: dict[str, str] = {
    "price": "price paid", "tenure": "short tenure", "payment": "payment type", "profile": "lines and segment",
    "usage": "falling or low usage", "topups": "top-up rhythm", "bills": "overdue bills",
    "tickets": "trouble tickets", "promotion": "promotion ending or ended",
    "network": "network experience on the cells used", "outages": "outages lived through",
}


@dataclass(frozen=True)
class Feature:
    """One model input: its kind, its group (for missing data), its reason unit and any monotone prior."""

    name: str
    kind: Kind
    group: str
    reason: str
    description: str
    monotone: int = 0
    """+1: more of it never lowers the risk, all else equal; -1: never raises it; 0: learnt freely."""
    per_lookback: bool = False
    """A count or sum over the lookback, scaled to LOOKBACK_DAYS when a snapshot had less history loaded."""
    extra: bool = False
    """Computed here (not a column of marts.churn_features)."""


def _f(name: str, group: str, reason: str, description: str, *, kind: Kind = "numeric", monotone: int = 0,
       per_lookback: bool = False, extra: bool = False) -> Feature:
    return Feature(name=name, kind=kind, group=group, reason=reason, description=description,
                   monotone=monotone, per_lookback=per_lookback, extra=extra)


FEATURES: tuple[Feature, ...] = (
    _f("tenure_days", "subscription", "tenure", "days since the first subscription started", monotone=-1),
    _f("monthly_fee_total", "subscription", "price", "recurring fees of the active lines"),
    _f("fee_vs_peers", "subscription", "price",
       "monthly fee / the median fee of customers of the same segment and payment type", extra=True),
    _f("main_product_offering", "subscription", "price", "tariff of the main line", kind="categorical"),
    _f("segment", "subscription", "profile", "commercial segment", kind="categorical"),
    _f("payment_type", "subscription", "payment", "prepaid, postpaid or mixed", kind="categorical"),
    _f("n_active_subscriptions", "subscription", "profile", "active lines"),
    _f("n_terminated_subscriptions", "subscription", "profile", "lines ended before the snapshot"),
    _f("arpu_30d", "usage", "usage", "usage revenue per 30 days plus recurring fees"),
    _f("usage_revenue_28d", "usage", "usage", "usage revenue over the lookback", per_lookback=True),
    _f("usage_trend_ratio", "usage", "usage", "daily revenue of the last 7 days / of the lookback"),
    _f("n_events_28d", "usage", "usage", "charged events over the lookback", per_lookback=True),
    _f("data_mb_28d", "usage", "usage", "data volume over the lookback", per_lookback=True),
    _f("voice_min_28d", "usage", "usage", "voice minutes over the lookback", per_lookback=True),
    _f("n_active_days_28d", "usage", "usage", "days with usage over the lookback", per_lookback=True),
    _f("days_since_last_usage", "usage", "usage", "days from the last usage to the snapshot"),
    _f("n_cells_used_28d", "usage", "usage", "distinct cells used over the lookback"),
    _f("n_topups_28d", "topups", "topups", "top-ups over the lookback", per_lookback=True),
    _f("topup_amount_28d", "topups", "topups", "amount topped up over the lookback", per_lookback=True),
    _f("days_since_last_topup", "topups", "topups", "days from the last top-up to the snapshot"),
    _f("mean_days_between_topups", "topups", "topups", "usual gap between top-ups"),
    _f("n_bills", "bills", "bills", "bills issued before the snapshot"),
    _f("n_overdue_bills", "bills", "bills", "bills past due and not fully paid", monotone=1),
    _f("overdue_amount", "bills", "bills", "amount owed on overdue bills", monotone=1),
    _f("n_tickets_28d", "tickets", "tickets", "tickets opened over the lookback", monotone=1, per_lookback=True),
    _f("n_network_tickets_28d", "tickets", "tickets", "network tickets over the lookback", monotone=1,
       per_lookback=True),
    _f("n_billing_tickets_28d", "tickets", "tickets", "billing tickets over the lookback", monotone=1,
       per_lookback=True),
    _f("n_open_tickets", "tickets", "tickets", "tickets not resolved at the snapshot", monotone=1),
    _f("n_tickets_bad_outcome_28d", "tickets", "tickets", "tickets closed unresolved or no fault found",
       monotone=1, per_lookback=True),
    _f("n_active_promotions", "promotions", "promotion", "promotions in force"),
    _f("max_discount_pct", "promotions", "promotion", "largest discount in force"),
    _f("n_promotions_ending_30d", "promotions", "promotion", "promotions ending within 30 days"),
    _f("days_to_promotion_end", "promotions", "promotion", "days until the first promotion in force ends"),
    _f("n_promotions_ended_30d", "promotions", "promotion", "promotions that ended in the 30 days before",
       extra=True),
    _f("days_since_promotion_ended", "promotions", "promotion", "days since the last promotion ended",
       extra=True),
    _f("exp_drop_rate_pct", "network", "network", "drop rate on the cells used, weighted by usage", monotone=1),
    _f("exp_dl_throughput_mbps", "network", "network", "downlink throughput on the cells used, weighted "
       "by usage", monotone=-1),
    _f("exp_latency_ms", "network", "network", "latency on the cells used, weighted by usage", monotone=1),
    _f("exp_availability_pct", "network", "network", "availability of the cells used, weighted by usage",
       monotone=-1),
    _f("exp_accessibility_pct", "network", "network", "accessibility of the cells used, weighted by usage",
       monotone=-1),
    _f("n_outages_28d", "outages", "outages", "outages lived through over the lookback", monotone=1,
       per_lookback=True),
    _f("outage_minutes_28d", "outages", "outages", "outage minutes lived through over the lookback",
       monotone=1, per_lookback=True),
)
FEATURES_BY_NAME: dict[str, Feature] = {f.name: f for f in FEATURES}
#: Columns of the frame besides the features: ids, slices, revenue, label parts.
CARRIED = ("customer_id", "snapshot_date", "home_zone_id", "history_days", "label_churn_30d",
           "label_observed_days", "segment", "payment_type", "main_product_offering", "tenure_days", "arpu_30d",
           "monthly_fee_total")


def is_outcome(column: str) -> bool:
    """Whether `column` names an outcome (known only after the snapshot) by the stated list or prefix."""
    c = column.lower()
    return c in OUTCOME_COLUMNS or c.startswith(OUTCOME_PREFIXES)


def guard(columns: Iterable[str], *, table: str = "marts.churn_features") -> None:
    """Refuse outcome and identifier columns as features; raise LeakError naming each offender."""
    cols = list(columns)
    bad = [c for c in cols if is_outcome(c)]
    ids = [c for c in cols if c in ID_COLUMNS]
    if bad:
        raise LeakError(
            f"leak guard: {', '.join(bad)} in {table} {'is an outcome' if len(bad) == 1 else 'are outcomes'} "
            f"(known only after the snapshot date) and cannot be a feature; expected none of "
            f"{', '.join(OUTCOME_COLUMNS)} nor a name starting with {', '.join(OUTCOME_PREFIXES)}"
        )
    if ids:
        raise LeakError(f"leak guard: {', '.join(ids)} in {table} identify rows and cannot be features")


def resolve_features(names: Sequence[str] | None) -> tuple[Feature, ...]:
    """The features to use: all of FEATURES, or the named ones (an unknown name is an extra numeric column
    of marts.churn_features, group `extra`); outcome columns are refused."""
    if names is None:
        return FEATURES
    guard(names)
    out = []
    for n in names:
        out.append(FEATURES_BY_NAME.get(n) or Feature(name=n, kind="numeric", group="extra", reason="profile",
                                                      description=f"column {n} of marts.churn_features"))
    return tuple(out)


@dataclass
class FeatureFrame:
    """The rows the model learns from and scores, and what is known about them."""

    rows: pd.DataFrame
    """One row per customer per snapshot: CARRIED columns, every usable feature, `days_to_churn`."""
    features: tuple[Feature, ...]
    """The features in use (those of missing groups removed)."""
    mode: Mode
    missing_groups: tuple[str, ...]
    loaded_sources: tuple[str, ...]
    data_end: date
    """The last date of loaded data; the scoring snapshot is the day after."""
    data_hash: str
    """sha256 over the loaded files' hashes (raw.manifest): which data the model saw."""
    notes: list[str] = field(default_factory=list)

    @property
    def score_date(self) -> date:
        return self.rows["snapshot_date"].max().date() if len(self.rows) else self.data_end + timedelta(days=1)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]

    @property
    def numeric(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "numeric"]


# ------------------------------------------------------------------------------------------ reading


def _exists(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
        [schema, table]).fetchall()[0][0])


def loaded_sources(con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """Contract sources with at least one landed row (raw.<source>)."""
    from etl.contracts import SOURCES

    out = []
    for name in SOURCES:
        if _exists(con, "raw", name) and con.execute(f'SELECT EXISTS (SELECT 1 FROM raw."{name}")').fetchall()[0][0]:
            out.append(name)
    return tuple(out)


def data_hash(con: duckdb.DuckDBPyConnection) -> str:
    """sha256 over the sorted (file, sha256) pairs of raw.manifest: the identity of the loaded data."""
    h = hashlib.sha256()
    if _exists(con, "raw", "manifest"):
        for file, sha in con.execute("SELECT file, sha256 FROM raw.manifest ORDER BY file").fetchall():
            h.update(f"{file}\t{sha}\n".encode())
    return h.hexdigest()


def detect_mode(con: duckdb.DuckDBPyConnection, data_end: date) -> tuple[Mode, str]:
    """`labelled_table` when every termination falls on the data's last date, else `snapshots`; and why."""
    n, n_dates, last = con.execute(
        "SELECT count(*), count(DISTINCT termination_date), max(termination_date) FROM staging.subscriptions "
        "WHERE termination_date IS NOT NULL").fetchall()[0]
    if n and n_dates == 1 and last == data_end:
        return "labelled_table", (
            f"all {n:,} terminations fall on {last}, the last date of the data: the extract is a labelled "
            f"table (one observation, a churn flag), not a history; features are taken as of the end of "
            f"{last} and the label is the termination")
    return "snapshots", (f"{n:,} terminations over {n_dates} dates: a history, the model learns from "
                         "weekly snapshots")


def _select_list(features: Sequence[Feature], available: set[str]) -> list[str]:
    wanted = [c for c in CARRIED if c in available]
    wanted += [f.name for f in features if not f.extra and f.name in available and f.name not in wanted]
    return wanted


EXTRAS_SQL = """
WITH f AS (SELECT DISTINCT customer_id, snapshot_date FROM {rows}),
ends AS (
    SELECT f.customer_id, f.snapshot_date,
           date_diff('day', f.snapshot_date,
                     min(s.termination_date) FILTER (WHERE s.termination_date >= f.snapshot_date))
               AS days_to_churn
    FROM f JOIN staging.subscriptions s ON s.customer_id = f.customer_id AND s.start_date < f.snapshot_date
    GROUP BY f.customer_id, f.snapshot_date
),
p AS (
    SELECT s.customer_id, p.valid_to
    FROM staging.promotions p JOIN staging.subscriptions s ON s.subscription_id = p.subscription_id
    WHERE p.valid_to IS NOT NULL
),
ended AS (
    SELECT f.customer_id, f.snapshot_date,
           count(*) FILTER (WHERE p.valid_to >= f.snapshot_date - INTERVAL 30 DAY) AS n_promotions_ended_30d,
           date_diff('day', max(p.valid_to), f.snapshot_date) AS days_since_promotion_ended
    FROM f JOIN p ON p.customer_id = f.customer_id AND p.valid_to < f.snapshot_date
    GROUP BY f.customer_id, f.snapshot_date
)
SELECT r.*, e.days_to_churn,
       coalesce(d.n_promotions_ended_30d, 0) AS n_promotions_ended_30d, d.days_since_promotion_ended
FROM {rows} r
LEFT JOIN ends e ON e.customer_id = r.customer_id AND e.snapshot_date = r.snapshot_date
LEFT JOIN ended d ON d.customer_id = r.customer_id AND d.snapshot_date = r.snapshot_date
ORDER BY r.snapshot_date, r.customer_id
"""


def release_memory(con: duckdb.DuckDBPyConnection) -> None:
    """Hand the memory DuckDB keeps after a large query back to the system, the memory limit unchanged.

    DuckDB holds on to the buffers of a finished query (at a million customers, about 2 GB after the
    features are read) up to its memory limit; lowering the limit evicts them, then it is set back.
    """
    limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
    try:
        con.execute("SET memory_limit = '64MB'")
    finally:
        con.execute(f"SET memory_limit = '{limit}'")


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> pd.DataFrame:
    """The result of `sql` as a pandas frame, by way of Arrow: DuckDB's buffers are released before the
    conversion, and the Arrow columns as they are converted (at a million customers, 1.5 GB less at the
    peak than `.df()`). Integer columns with missing values arrive as floats, dates as datetime64."""
    table = con.sql(sql).to_arrow_table()
    release_memory(con)
    return table.to_pandas(self_destruct=True, split_blocks=True, date_as_object=False)


def _snapshot_rows(con: duckdb.DuckDBPyConnection, columns: list[str], *, latest_only: bool = False
                   ) -> pd.DataFrame:
    cols = ", ".join(f'"{c}"' for c in columns)
    where = (" WHERE snapshot_date = (SELECT max(snapshot_date) FROM marts.churn_features)" if latest_only
             else "")
    con.execute(f"CREATE OR REPLACE TEMP VIEW _churn_rows AS SELECT {cols} FROM marts.churn_features{where}")
    try:
        return _fetch(con, EXTRAS_SQL.format(rows="_churn_rows"))
    finally:
        con.execute("DROP VIEW IF EXISTS _churn_rows")


def _labelled_table_rows(con: duckdb.DuckDBPyConnection, columns: list[str], observed: date) -> pd.DataFrame:
    """The churn features of the one snapshot after `observed`, with terminations on `observed` counted as
    the outcome (they are moved to the next day, so the churners are still in the population).

    Built with the ETL's own `churn_features` expression, so the features mean exactly what they mean in
    the history case.
    """
    import ibis

    from etl.transforms import load_models

    spec = load_models()["marts.churn_features"]
    be = ibis.duckdb.from_connection(con)
    tables = {}
    for name in spec.depends_on:
        schema, _, table = name.partition(".")
        tables[name] = be.table(table, database=schema)
    subs = tables["staging.subscriptions"]
    day = ibis.literal(observed)
    tables["staging.subscriptions"] = subs.mutate(termination_date=ibis.cases(
        (subs.termination_date == day, subs.termination_date + ibis.interval(days=1)),
        else_=subs.termination_date))
    expr = spec.build(tables)
    expr = expr.filter(expr.snapshot_date == day + ibis.interval(days=1))
    expr = expr.select(*[c for c in columns if c in expr.columns])
    arrow = be.to_pyarrow(expr)
    con.register("_churn_rows_arrow", arrow)
    try:
        con.execute("CREATE OR REPLACE TEMP TABLE _churn_rows AS SELECT * FROM _churn_rows_arrow")
    finally:
        con.unregister("_churn_rows_arrow")
    try:
        df = _fetch(con, EXTRAS_SQL.format(rows="_churn_rows"))
    finally:
        con.execute("DROP TABLE IF EXISTS _churn_rows")
    # Every row has its label observed in full: the flag is the outcome.
    df["label_observed_days"] = LABEL_HORIZON_DAYS
    df["days_to_churn"] = np.where(df["label_churn_30d"].astype(bool), 0, np.nan)
    return df


def load_frame(con: duckdb.DuckDBPyConnection, *, mode: Mode | Literal["auto"] = "auto",
               features: Sequence[str] | None = None, latest_only: bool = False) -> FeatureFrame:
    """Read the churn features of the warehouse behind `con` (the features, the extras, the label parts).

    Feature groups whose sources are not loaded are left out and named in `missing_groups`. With
    `latest_only`, only the rows of the latest snapshot are read (the customers to score; training needs
    every snapshot).
    Raises ModelError when there is no `marts.churn_features` or it is empty.
    """
    chosen = resolve_features(features)
    con.execute("SET enable_progress_bar = false")  # stdout belongs to `--json`; DuckDB would draw a bar there
    if not _exists(con, "marts", "churn_features"):
        raise ModelError("the warehouse has no marts.churn_features: run `opencem refresh --source DIR` first")
    available = {r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = 'marts' "
        "AND table_name = 'churn_features'").fetchall()}
    absent = [f.name for f in chosen if not f.extra and f.name not in available]
    if features is not None and absent:
        raise ModelError(f"marts.churn_features has no column {', '.join(absent)}; expected one of "
                         f"{', '.join(sorted(available))}")
    end = con.execute("SELECT max(snapshot_date) FROM marts.churn_features").fetchall()[0][0]
    if end is None:
        raise ModelError("marts.churn_features is empty: no customer had an active subscription in the loaded "
                         "data, or no event source (charging, top-ups, tickets, KPIs, alarms) is loaded")
    data_end = end - timedelta(days=1)
    loaded = loaded_sources(con)
    notes: list[str] = []
    if mode == "auto":
        mode, why = detect_mode(con, data_end)
        notes.append(why)
    columns = _select_list(chosen, available)
    rows = (_snapshot_rows(con, columns, latest_only=latest_only) if mode == "snapshots" else
            _labelled_table_rows(con, columns, data_end))
    missing = tuple(g for g in GROUPS if any(s not in loaded for s in GROUPS[g].sources))
    wanted = [f for f in chosen if f.group not in missing]
    rows = prepare(rows, [f for f in wanted if f.name in rows.columns or f.name == "fee_vs_peers"])
    # The columns Arrow allocated and `prepare` replaced stay with Arrow's allocator (a gigabyte at a
    # million customers) until it is told to hand them back.
    pa.default_memory_pool().release_unused()
    usable = tuple(f for f in wanted if f.name in rows.columns)
    # A feature with one value (or none) in every row carries nothing, and an all-empty one breaks binning.
    flat = [f.name for f in usable if not _varies(rows[f.name])]
    if flat:
        usable = tuple(f for f in usable if f.name not in flat)
        notes.append(f"left out, the same (or empty) for every customer: {', '.join(flat)}")
    return FeatureFrame(rows=rows, features=usable, mode=mode, missing_groups=missing, loaded_sources=loaded,
                        data_end=data_end, data_hash=data_hash(con), notes=notes)


def _varies(x: pd.Series) -> bool:
    """Whether `x` holds two different values (missing ones aside); cheaper than counting them all."""
    v = x.dropna()
    if v.empty:
        return False
    if pd.api.types.is_numeric_dtype(v.dtype) and not pd.api.types.is_bool_dtype(v.dtype):
        return bool(v.min() != v.max())
    return bool((v != v.iloc[0]).any())


def prepare(rows: pd.DataFrame, features: Sequence[Feature]) -> pd.DataFrame:
    """Derive `fee_vs_peers`, scale lookback counts to LOOKBACK_DAYS, and type the columns for the model.

    Scaling matters for the first snapshots of a short history: a snapshot with 7 days loaded before it
    would otherwise look like a customer who used a quarter as much. `rows` is changed in place (at a
    million customers a copy of the frame costs a gigabyte).
    """
    df = rows
    df["snapshot_date"] = pd.to_datetime(df["snapshot_date"]).astype("datetime64[us]")
    names = {f.name for f in features}
    if "fee_vs_peers" in names and "monthly_fee_total" in df.columns:
        keys = [c for c in ("snapshot_date", "segment", "payment_type") if c in df.columns]
        fee = df["monthly_fee_total"].astype("float64")
        # Grouped on the columns as they are (a missing segment or payment type is a group of its own):
        # as objects, a million dates and strings take seconds to convert and to hash.
        med = (fee.groupby([df[k] for k in keys], dropna=False, sort=False, observed=True).transform("median")
               if keys else pd.Series(fee.median(), index=df.index))
        df["fee_vs_peers"] = (fee / med.where(med > 0)).astype("float64")
    if "history_days" in df.columns:
        hist = df["history_days"].astype("float64").clip(lower=1)
        factor = (LOOKBACK_DAYS / hist).where(hist < LOOKBACK_DAYS, 1.0)
        for f in features:
            if f.per_lookback and f.name in df.columns:
                df[f.name] = df[f.name].astype("float64") * factor
    for f in features:
        if f.kind == "categorical":
            df[f.name] = df[f.name].astype("object").where(df[f.name].notna(), None)
        else:
            df[f.name] = pd.to_numeric(df[f.name], errors="coerce").astype("float64")
    if "label_churn_30d" in df.columns:
        df["label_churn_30d"] = df["label_churn_30d"].fillna(False).astype(bool)
    if "days_to_churn" in df.columns:
        df["days_to_churn"] = pd.to_numeric(df["days_to_churn"], errors="coerce").astype("float64")
    return df


# ------------------------------------------------------------------------------------------ leak check


def single_feature_auc(x: pd.Series, y: np.ndarray, *, kind: Kind) -> float | None:
    """ROC AUC of one feature on its own (either direction: max(auc, 1 - auc)); None if undefined.

    A categorical feature is scored by each category's churn rate; missing values form their own group.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y).astype(int)
    if y.min() == y.max():
        return None
    if kind == "categorical":
        key = x.astype("object").fillna("<missing>")
        v = key.map(pd.Series(y, index=x.index).groupby(key).mean()).astype("float64").to_numpy()
    else:
        v = pd.to_numeric(x, errors="coerce").astype("float64").to_numpy()
        if np.isnan(v).all():
            return None
        v = np.where(np.isnan(v), np.nanmin(v) - 1.0, v)
    if np.nanmax(v) == np.nanmin(v):
        return 0.5
    a = float(roc_auc_score(y, v))
    return max(a, 1.0 - a)
