"""Scoring: a 30-day churn probability, a risk band and the top reasons, in words, for every active customer.

Reasons come from the model, not from rules: for each reason unit (a few related features, e.g. the
ticket counts), the customer's features are moved to their typical value and the change in the model's
log-odds is the unit's contribution. The units that raise the risk most become the reasons, and each is
written with the customer's own numbers and, where the network is concerned, the cell it happened on
("4 days with dropped calls above 2% on cell C0012-1").

The tables written (schema `models` of the version being published):

- `churn_scores`: one row per active customer at the scoring date (see `SCORE_COLUMNS`)
- `churn_metrics`, `churn_curves`: held-out evaluation of the model and of the logistic baseline
- `churn_drivers`: reason units ranked by held-out permutation importance
- `churn_runs`: one row per training run (kept across runs), with the split, warnings and band edges
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from etl.config import Settings
from etl.transforms.marts_customer import LOOKBACK_DAYS
from models.evaluate import Evaluation
from models.features import GROUPS, REASON_TITLES, FeatureFrame

#: A unit's contribution (in log-odds) must exceed this to be a reason: about a 5% rise in the odds.
MIN_CONTRIBUTION = 0.05

SCORE_COLUMNS = (
    "customer_id", "score_date", "probability", "risk_band", "risk_rank", "top_reasons", "reason_codes",
    "reason_contributions", "reasons_text", "monthly_revenue", "expected_revenue_at_risk", "segment",
    "payment_type", "main_product_offering", "tenure_days", "home_zone_id", "model_version", "scored_at",
    "data_as_of",
)


def units_of(model) -> dict[str, list[str]]:
    """Reason unit -> the model's features in it."""
    units: dict[str, list[str]] = {}
    for f in model.features:
        units.setdefault(f.reason, []).append(f.name)
    return units


def _differs(x: pd.Series, ref: Any) -> np.ndarray:
    if ref is None:
        return x.notna().to_numpy()
    if isinstance(ref, str):
        return (x.astype("object") != ref).to_numpy()
    v = pd.to_numeric(x, errors="coerce").to_numpy(dtype="float64")
    return ~(v == ref)


def contributions(model, rows: pd.DataFrame) -> pd.DataFrame:
    """Per row and reason unit: log-odds now minus log-odds with the unit's features at their typical value.

    Only rows whose unit differs from the typical value are re-scored (the others contribute zero).
    """
    X = rows[model.names].reset_index(drop=True)
    raw = model.raw(X)
    out = {}
    for unit, cols in units_of(model).items():
        mask = np.zeros(len(X), dtype=bool)
        for c in cols:
            mask |= _differs(X[c], model.reference.get(c))
        contrib = np.zeros(len(X))
        if mask.any():
            moved = X.loc[mask].copy()
            for c in cols:
                ref = model.reference.get(c)
                moved[c] = ref if ref is not None else (None if moved[c].dtype == object else np.nan)
            contrib[mask] = raw[mask] - model.raw(moved)
        out[unit] = contrib
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------ evidence


CELL_EVIDENCE_SQL = """
WITH k AS (
    SELECT cell_id,
           count(*) FILTER (WHERE drop_rate_pct > $drop) AS drop_days,
           count(*) FILTER (WHERE dl_throughput_mbps < $thr) AS slow_days,
           count(*) FILTER (WHERE latency_ms > $lat) AS latency_days,
           count(*) FILTER (WHERE availability_pct < $avail OR accessibility_pct < $access) AS access_days,
           max(drop_rate_pct) AS worst_drop_pct
    FROM marts.cell_kpi_daily
    WHERE date >= $since AND date < $until
    GROUP BY cell_id
),
u AS (
    SELECT u.customer_id, u.cell_id, u.share_of_events AS share, k.*
    FROM marts.subscriber_cell_usage u JOIN k USING (cell_id)
    WHERE u.share_of_events >= $min_share
)
SELECT customer_id,
       arg_max(cell_id, drop_days + share / 2) AS drop_cell, max(drop_days) AS drop_days,
       arg_max(share, drop_days + share / 2) AS drop_share,
       arg_max(cell_id, slow_days + share / 2) AS slow_cell, max(slow_days) AS slow_days,
       arg_max(cell_id, latency_days + share / 2) AS latency_cell, max(latency_days) AS latency_days,
       arg_max(cell_id, access_days + share / 2) AS access_cell, max(access_days) AS access_days
FROM u GROUP BY customer_id
"""

BILL_EVIDENCE_SQL = """
SELECT customer_id, min(coalesce(payment_due_date, bill_date)) AS oldest_due, count(*) AS n_open_bills,
       sum(amount_open) AS owed
FROM staging.bills
WHERE amount_open > 0.005 AND coalesce(payment_due_date, bill_date) < $until
GROUP BY customer_id
"""


def _has(con: duckdb.DuckDBPyConnection, schema: str, table: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = ? AND "
                            "table_name = ?", [schema, table]).fetchall()[0][0])


def load_evidence(con: duckdb.DuckDBPyConnection, score_date: date, thresholds: Mapping[str, float]
                  ) -> pd.DataFrame:
    """Per customer: the used cell with the most bad days for each KPI over the lookback, and the oldest
    unpaid bill past its due date (what reasons cite)."""
    since = score_date - timedelta(days=LOOKBACK_DAYS)
    frames = []
    if _has(con, "marts", "cell_kpi_daily") and _has(con, "marts", "subscriber_cell_usage"):
        frames.append(con.sql(CELL_EVIDENCE_SQL, params={
            "drop": thresholds.get("drop_rate_pct", 2.0), "thr": thresholds.get("dl_throughput_mbps", 10.0),
            "lat": thresholds.get("latency_ms", 60.0), "avail": thresholds.get("availability_pct", 99.0),
            "access": thresholds.get("accessibility_pct", 98.0), "since": since, "until": score_date,
            "min_share": 0.05}).df())
    if _has(con, "staging", "bills"):
        b = con.sql(BILL_EVIDENCE_SQL, params={"until": score_date}).df()
        b["days_overdue"] = (pd.Timestamp(score_date) - pd.to_datetime(b["oldest_due"])).dt.days
        frames.append(b.drop(columns=["oldest_due"]))
    if not frames:
        return pd.DataFrame({"customer_id": pd.Series(dtype="object")})
    out = frames[0]
    for f in frames[1:]:
        out = out.merge(f, on="customer_id", how="outer")
    return out


# ------------------------------------------------------------------------------------------ words


def _n(v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if np.isnan(f) else f


def _plural(n: float, word: str) -> str:
    k = int(round(n))
    return f"{k} {word}" + ("" if k == 1 else "s")


class ReasonWriter:
    """Writes one reason unit of one customer as a sentence with their numbers."""

    def __init__(self, reference: Mapping[str, Any], thresholds: Mapping[str, float], currency: str) -> None:
        self.ref = reference
        self.th = thresholds
        self.cur = currency

    def typical(self, name: str) -> float | None:
        return _n(self.ref.get(name))

    def write(self, unit: str, r: Mapping[str, Any]) -> str:
        fn = getattr(self, f"_{unit}", None)
        text = fn(r) if fn else None
        return text or REASON_TITLES.get(unit, unit)

    def _network(self, r) -> str:
        """The KPIs with the most bad days on one of their cells (up to two), else the furthest from typical."""
        th = self.th
        found = []
        for days_col, cell_col, text in (
            ("drop_days", "drop_cell", f"dropped calls above {th.get('drop_rate_pct', 2.0):g}%"),
            ("slow_days", "slow_cell", f"data below {th.get('dl_throughput_mbps', 10.0):g} Mbit/s"),
            ("latency_days", "latency_cell", f"latency above {th.get('latency_ms', 60.0):g} ms"),
            ("access_days", "access_cell", "outages or refused connections"),
        ):
            days, cell = _n(r.get(days_col)), r.get(cell_col)
            if days and cell and isinstance(cell, str):
                found.append((days, text, cell))
        if found:
            found.sort(key=lambda t: -t[0])
            days, text, cell = found[0]
            out = f"{_plural(days, 'day')} with {text}"
            more = [x for x in found[1:] if x[2] == cell]
            if more:
                out += f" and {int(more[0][0])} with {more[0][1]}"
            return out + f" on cell {cell}"
        options = []
        for col, label, unit, fmt, worse in (
            ("exp_drop_rate_pct", "dropped calls", "%", ".1f", 1), ("exp_dl_throughput_mbps", "data at", " Mbit/s",
                                                                    ".1f", -1),
            ("exp_latency_ms", "latency", " ms", ".0f", 1), ("exp_accessibility_pct", "connections succeed",
                                                             "%", ".2f", -1),
            ("exp_availability_pct", "cells available", "%", ".2f", -1),
        ):
            v, typ = _n(r.get(col)), self.typical(col)
            if v is None or not typ:
                continue
            gap = worse * (v - typ) / abs(typ)
            options.append((gap, f"{label} {v:{fmt}}{unit} on the cells they use (typical {typ:{fmt}}{unit})"))
        if options:
            return max(options)[1]
        return "no network measurements on the cells they use"

    def _outages(self, r) -> str:
        n, m = _n(r.get("n_outages_28d")), _n(r.get("outage_minutes_28d"))
        if n:
            return f"lived through {_plural(n, 'outage')} ({m or 0:,.0f} minutes) in the last {LOOKBACK_DAYS} days"
        return "no outage in the last weeks"

    def _tickets(self, r) -> str:
        n, net = _n(r.get("n_tickets_28d")) or 0, _n(r.get("n_network_tickets_28d")) or 0
        bill, open_ = _n(r.get("n_billing_tickets_28d")) or 0, _n(r.get("n_open_tickets")) or 0
        bad = _n(r.get("n_tickets_bad_outcome_28d")) or 0
        if not (n or open_ or bad):
            return "no recent ticket"
        parts = [f"{_plural(n, 'ticket')} in {LOOKBACK_DAYS} days"]
        about = [f"{int(round(net))} about the network"] if net else []
        about += [f"{int(round(bill))} about billing"] if bill else []
        if about:
            parts[0] += f" ({', '.join(about)})"
        if open_:
            parts.append(f"{int(round(open_))} still open")
        if bad:
            parts.append(f"{int(round(bad))} closed without a fix")
        return ", ".join(parts)

    def _bills(self, r) -> str:
        days, owed = _n(r.get("days_overdue")), _n(r.get("owed"))
        n = _n(r.get("n_overdue_bills")) or 0
        if days is not None and days > 0:
            text = f"bill overdue {int(days)} days"
            if n > 1:
                text = f"{int(n)} bills overdue, the oldest {int(days)} days"
            return text + (f", {owed:,.2f} {self.cur} owed" if owed else "")
        if n:
            return f"{_plural(n, 'bill')} overdue ({_n(r.get('overdue_amount')) or 0:,.2f} {self.cur})"
        return "bills paid on time"

    def _topups(self, r) -> str:
        since, gap = _n(r.get("days_since_last_topup")), _n(r.get("mean_days_between_topups"))
        n, amount = _n(r.get("n_topups_28d")), _n(r.get("topup_amount_28d"))
        if since is not None and since >= max(7.0, 1.5 * (gap or 0)):
            return f"no top-up for {_plural(since, 'day')}" + (f" (usually every {gap:.0f})" if gap else "")
        if n == 0:
            return f"no top-up in {LOOKBACK_DAYS} days"
        typ_n, typ_amount = self.typical("n_topups_28d"), self.typical("topup_amount_28d")
        if n is not None and typ_n and n < typ_n:
            return f"only {_plural(n, 'top-up')} in {LOOKBACK_DAYS} days (typical {typ_n:.0f})"
        if amount is not None and typ_amount and amount < typ_amount:
            return (f"topped up {amount:,.2f} {self.cur} in {LOOKBACK_DAYS} days (typical "
                    f"{typ_amount:,.2f})")
        return (f"{_plural(n or 0, 'top-up')} in {LOOKBACK_DAYS} days" +
                (f", the last {_plural(since, 'day')} ago" if since is not None else ""))

    def _usage(self, r) -> str:
        trend, idle = _n(r.get("usage_trend_ratio")), _n(r.get("days_since_last_usage"))
        arpu = _n(r.get("arpu_30d"))
        if idle is not None and idle >= 3:
            return f"no usage for {int(idle)} days"
        if trend is not None and trend < 0.8:
            return f"usage down {100 * (1 - trend):.0f}% in the last 7 days"
        if arpu is not None:
            typ = self.typical("arpu_30d")
            return f"spends {arpu:,.2f} {self.cur} a month" + (f" (typical {typ:,.2f})" if typ else "")
        return "little usage"

    def _price(self, r) -> str:
        fee, rel = _n(r.get("monthly_fee_total")), _n(r.get("fee_vs_peers"))
        tariff = r.get("main_product_offering")
        if fee and rel and rel > 1.05:
            return f"pays {fee:,.2f} {self.cur} a month, {100 * (rel - 1):.0f}% more than similar customers"
        if fee:
            return (f"tariff {tariff} ({fee:,.2f} {self.cur} a month)" if tariff else
                    f"pays {fee:,.2f} {self.cur} a month")
        return f"tariff {tariff}" if tariff else "the price of their tariff"

    def _promotion(self, r) -> str:
        ended, ending = _n(r.get("days_since_promotion_ended")), _n(r.get("days_to_promotion_end"))
        disc = _n(r.get("max_discount_pct"))
        if ended is not None and ended <= 30:
            return f"a promotion ended {_plural(ended, 'day')} ago"
        if ending is not None and ending <= 30:
            return (f"{disc:.0f}% discount ends in {_plural(ending, 'day')}" if disc else
                    f"a promotion ends in {_plural(ending, 'day')}")
        if disc:
            return f"{disc:.0f}% discount in force" + (f", ends in {_plural(ending, 'day')}" if ending else "")
        if ended is not None:
            return f"no promotion since one ended {_plural(ended, 'day')} ago"
        return "no promotion in force"

    def _tenure(self, r) -> str:
        t = _n(r.get("tenure_days"))
        return f"customer for {int(t)} days only" if t is not None and t < 365 else (
            f"customer for {t / 365:.1f} years" if t is not None else "tenure unknown")

    def _payment(self, r) -> str:
        p = r.get("payment_type")
        return {"prepaid": "prepaid: no contract holds them", "mixed": "prepaid and postpaid lines"}.get(
            str(p), f"{p} payment" if p else "payment type unknown")

    def _profile(self, r) -> str:
        n = _n(r.get("n_active_subscriptions"))
        seg = r.get("segment")
        if n and n > 1:
            return f"{int(n)} lines" + (f", {seg} segment" if seg else "")
        return f"{seg} segment" if seg else "their profile"


# ------------------------------------------------------------------------------------------ scoring


def risk_bands(p: np.ndarray, *, multiples: tuple[float, float]) -> tuple[np.ndarray, float, float]:
    """low / medium / high by multiples of the expected churn rate (the mean probability)."""
    m = float(np.mean(p)) if len(p) else 0.0
    medium, high = multiples[0] * m, multiples[1] * m
    band = np.where(p >= high, "high", np.where(p >= medium, "medium", "low"))
    return band, medium, high


def score_rows(model, rows: pd.DataFrame, *, evidence: pd.DataFrame, settings: Settings, model_version: str,
               scored_at: datetime, data_as_of: date, band_multiples: tuple[float, float] = (1.5, 3.0),
               n_reasons: int = 3) -> pd.DataFrame:
    """Probability, band, rank and top reasons (codes, contributions, words) for each row of `rows`."""
    rows = rows.reset_index(drop=True)
    p = model.predict(rows)
    band, medium, high = risk_bands(p, multiples=band_multiples)
    contrib = contributions(model, rows)
    units = np.array(contrib.columns)
    values = contrib.to_numpy()
    order = np.argsort(-values, axis=1, kind="stable")[:, :n_reasons]
    top_vals = np.take_along_axis(values, order, axis=1)
    ctx = rows.merge(evidence, on="customer_id", how="left") if len(evidence.columns) > 1 else rows
    writer = ReasonWriter(model.reference, settings.kpi_thresholds, settings.currency)
    codes, words, amounts = [], [], []
    records = ctx.to_dict(orient="records")
    for i, rec in enumerate(records):
        keep = top_vals[i] > MIN_CONTRIBUTION
        u = units[order[i][keep]].tolist()
        codes.append(u)
        amounts.append([round(float(v), 4) for v in top_vals[i][keep]])
        words.append([writer.write(k, rec) for k in u])
    revenue = rows["arpu_30d"].astype("float64") if "arpu_30d" in rows else rows["monthly_fee_total"].astype("float64")
    out = pd.DataFrame({
        "customer_id": rows["customer_id"].astype(str),
        "score_date": pd.to_datetime(rows["snapshot_date"]).dt.date,
        "probability": p,
        "risk_band": band,
        "top_reasons": words,
        "reason_codes": codes,
        "reason_contributions": amounts,
        "reasons_text": ["; ".join(w) for w in words],
        "monthly_revenue": revenue.to_numpy(),
        "expected_revenue_at_risk": p * revenue.fillna(0.0).to_numpy(),
    })
    for c in ("segment", "payment_type", "main_product_offering", "tenure_days", "home_zone_id"):
        out[c] = rows[c].to_numpy() if c in rows.columns else None
    out["risk_rank"] = out["probability"].rank(ascending=False, method="first").astype("int64")
    out["model_version"] = model_version
    out["scored_at"] = scored_at
    out["data_as_of"] = data_as_of
    out = out[list(SCORE_COLUMNS)]
    out.attrs["band_medium_from"], out.attrs["band_high_from"] = medium, high
    return out


def score_snapshot(con: duckdb.DuckDBPyConnection, model, frame: FeatureFrame, *, settings: Settings,
                   model_version: str, scored_at: datetime, band_multiples: tuple[float, float] = (1.5, 3.0),
                   n_reasons: int = 3) -> pd.DataFrame:
    """Score every customer of the latest snapshot (every customer with an active line at the data's end)."""
    rows = frame.rows[frame.rows["snapshot_date"] == frame.rows["snapshot_date"].max()]
    if frame.mode == "labelled_table":
        rows = rows[~rows["label_churn_30d"]]  # the churners of a labelled table have left already
    evidence = load_evidence(con, frame.score_date, settings.kpi_thresholds)
    return score_rows(model, rows, evidence=evidence, settings=settings, model_version=model_version,
                      scored_at=scored_at, data_as_of=frame.data_end, band_multiples=band_multiples,
                      n_reasons=n_reasons)


def drivers_table(importance: pd.DataFrame, scores: pd.DataFrame, *, model) -> pd.DataFrame:
    """Reason units ranked by held-out importance, with their side, features and how often they lead."""
    units = units_of(model)
    side = {f.reason: GROUPS[f.group].side if f.group in GROUPS else "BSS" for f in model.features}
    n = max(len(scores), 1)
    codes = scores["reason_codes"] if len(scores) else pd.Series([], dtype=object)
    first = pd.Series([c[0] for c in codes if len(c)]).value_counts()
    anywhere = pd.Series([u for c in codes for u in c]).value_counts()
    imp = importance.set_index("reason") if len(importance) else pd.DataFrame(columns=["importance",
                                                                                       "importance_sd"])
    rows = []
    for unit, cols in units.items():
        rows.append({
            "reason": unit, "title": REASON_TITLES.get(unit, unit), "side": side.get(unit, "BSS"),
            "features": ", ".join(cols),
            "importance": float(imp["importance"].get(unit, 0.0)) if len(imp) else 0.0,
            "importance_sd": float(imp["importance_sd"].get(unit, 0.0)) if len(imp) else 0.0,
            "share_first_reason": float(first.get(unit, 0)) / n,
            "share_any_reason": float(anywhere.get(unit, 0)) / n,
        })
    out = pd.DataFrame(rows).sort_values(["importance", "share_any_reason"], ascending=False, ignore_index=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    out["model_version"] = getattr(model, "version", None)
    return out


# ------------------------------------------------------------------------------------------ writing


def _arrow(df: pd.DataFrame) -> pa.Table:
    return pa.Table.from_pandas(df, preserve_index=False)


def replace_table(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> None:
    """Create or replace `models.<name>` with the rows of `df` (through Arrow, types kept)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS models")
    view = f"_frame_{name}"
    con.register(view, _arrow(df))
    try:
        con.execute(f'CREATE OR REPLACE TABLE models."{name}" AS SELECT * FROM "{view}"')
    finally:
        con.unregister(view)


def write_tables(con: duckdb.DuckDBPyConnection, *, scores: pd.DataFrame, evaluation: Evaluation,
                 drivers: pd.DataFrame, run_row: dict[str, Any], model_version: str,
                 extra: Mapping[str, pd.DataFrame] | None = None) -> None:
    """Write the scoring and evaluation tables into schema `models`; `churn_runs` keeps every run."""
    replace_table(con, "churn_scores", scores)
    metrics = evaluation.metrics.copy()
    metrics.insert(0, "model_version", model_version)
    replace_table(con, "churn_metrics", metrics)
    curves = evaluation.curves.copy()
    curves.insert(0, "model_version", model_version)
    replace_table(con, "churn_curves", curves)
    drivers = drivers.copy()
    drivers["model_version"] = model_version
    replace_table(con, "churn_drivers", drivers)
    run = pd.DataFrame([run_row])
    con.execute("CREATE SCHEMA IF NOT EXISTS models")
    exists = bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'models' "
                              "AND table_name = 'churn_runs'").fetchall()[0][0])
    con.register("_frame_run", _arrow(run))
    try:
        if exists:
            con.execute("INSERT INTO models.churn_runs BY NAME SELECT * FROM _frame_run")
        else:
            con.execute("CREATE TABLE models.churn_runs AS SELECT * FROM _frame_run")
    finally:
        con.unregister("_frame_run")
    for name, df in (extra or {}).items():
        replace_table(con, name, df)
