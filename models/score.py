"""Scoring: a 30-day churn probability, a risk band and the top reasons, in words, for every active customer.

Reasons come from the model, not from rules: for each reason unit (a few related features, e.g. the
ticket counts), the customer's features are moved to their typical value and the change in the model's
log-odds is the unit's contribution. The units that raise the risk most become the reasons, and each is
written with the customer's own numbers and, where the network is concerned, the cell it happened on
("4 days with dropped calls above 2% on cell C0012-1").

The tables written (schema `models` of the version being published):

- `churn_scores`: one row per active customer at the scoring date (see `SCORE_COLUMNS`)
- `churn_metrics`, `churn_curves`: held-out evaluation of the model and of the logistic baseline
- `churn_drivers`: reason units ranked by how much they raise risk on average, with held-out
  permutation importance beside
- `churn_runs`: one row per training run (kept across runs), with the split, warnings and band edges
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa

from etl.config import Settings
from etl.transforms.marts_customer import LOOKBACK_DAYS
from models.evaluate import Evaluation
from models.features import GROUPS, REASON_TITLES, FeatureFrame, release_memory
from models.reasons import ReasonWriter

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


def contributions_by_perturbation(model, rows: pd.DataFrame) -> pd.DataFrame:
    """Per row and reason unit: log-odds now minus log-odds with the unit's features at their typical value.

    The plain definition (one prediction per unit); `contributions` gives the same numbers tree by tree.
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


def contributions(model, rows: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Log-odds of each row and each reason unit's contribution (see `contributions_by_perturbation`),
    computed tree by tree for the gradient-boosted model (models/trees.py)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from models.trees import TreeView, reference_frame

    if not isinstance(model.pipeline.named_steps["model"], HistGradientBoostingClassifier):
        X = rows[model.names].reset_index(drop=True)
        return model.raw(X), contributions_by_perturbation(model, X)
    view = TreeView.of(model)
    X = view.matrix(rows, model.names)
    ref = view.matrix(reference_frame(model.reference, model.features), model.names)
    raw, c = view.contributions(X, ref)
    return raw, c[list(units_of(model))]


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
                  ) -> pl.DataFrame:
    """Per customer: the used cell with the most bad days for each KPI over the lookback, and the oldest
    unpaid bill past its due date (what reasons cite)."""
    since = score_date - timedelta(days=LOOKBACK_DAYS)
    frames = []
    if _has(con, "marts", "cell_kpi_daily") and _has(con, "marts", "subscriber_cell_usage"):
        frames.append(con.sql(CELL_EVIDENCE_SQL, params={
            "drop": thresholds.get("drop_rate_pct", 2.0), "thr": thresholds.get("dl_throughput_mbps", 10.0),
            "lat": thresholds.get("latency_ms", 60.0), "avail": thresholds.get("availability_pct", 99.0),
            "access": thresholds.get("accessibility_pct", 98.0), "since": since, "until": score_date,
            "min_share": 0.05}).pl())
    if _has(con, "staging", "bills"):
        b = con.sql(BILL_EVIDENCE_SQL, params={"until": score_date}).pl()
        b = b.with_columns(days_overdue=(pl.lit(score_date) - pl.col("oldest_due")).dt.total_days()).drop("oldest_due")
        frames.append(b)
    if not frames:
        return pl.DataFrame(schema={"customer_id": pl.String})
    out = frames[0]
    for f in frames[1:]:
        out = out.join(f, on="customer_id", how="full", coalesce=True)
    return out


# ------------------------------------------------------------------------------------------ scoring


def risk_bands(p: np.ndarray, *, multiples: tuple[float, float]) -> tuple[np.ndarray, float, float]:
    """low / medium / high by multiples of the expected churn rate (the mean probability)."""
    m = float(np.mean(p)) if len(p) else 0.0
    medium, high = multiples[0] * m, multiples[1] * m
    band = np.where(p >= high, "high", np.where(p >= medium, "medium", "low"))
    return band, medium, high


@dataclass
class Scores:
    """The scores of one run (SCORE_COLUMNS) and the probabilities where the medium and high bands start."""

    frame: pl.DataFrame
    medium_from: float
    high_from: float
    mean_rise: dict[str, float] = field(default_factory=dict)
    """Per reason unit: the mean over customers of how much it raises their log-odds above typical."""
    mean_abs: dict[str, float] = field(default_factory=dict)
    """Per reason unit: the mean absolute change in log-odds it makes (up or down)."""

    def __len__(self) -> int:
        return self.frame.height


def score_rows(model, rows: pd.DataFrame, *, evidence: pl.DataFrame | None, settings: Settings,
               model_version: str, scored_at: datetime, data_as_of: date,
               band_multiples: tuple[float, float] = (1.5, 3.0), n_reasons: int = 3) -> Scores:
    """Probability, band, rank and top reasons (codes, contributions, words) for each row of `rows`."""
    rows = rows.reset_index(drop=True)
    n = len(rows)
    raw, contrib = contributions(model, rows)
    p = model.calibrator.predict(raw)
    band, medium, high = risk_bands(p, multiples=band_multiples)
    units = np.array(contrib.columns, dtype=object)
    values = contrib.to_numpy()
    k = min(n_reasons, values.shape[1])
    order = np.argsort(-values, axis=1, kind="stable")[:, :k]
    top = np.take_along_axis(values, order, axis=1)
    keep = (top > MIN_CONTRIBUTION).ravel()
    long = pl.DataFrame({
        "row": np.repeat(np.arange(n, dtype=np.int64), k)[keep],
        "slot": np.tile(np.arange(k, dtype=np.int64), n)[keep],
        "unit": units[order.ravel()][keep].astype(str) if keep.any() else np.array([], dtype=str),
        "contribution": np.round(top.ravel()[keep], 4),
    }, schema={"row": pl.Int64, "slot": pl.Int64, "unit": pl.String, "contribution": pl.Float64})
    wanted = [c for c in rows.columns if c in set(model.names) | {"customer_id", "arpu_30d", "monthly_fee_total",
                                                                  "segment", "payment_type", "tenure_days",
                                                                  "main_product_offering", "n_overdue_bills",
                                                                  "overdue_amount"}]
    ctx = pl.from_pandas(rows[wanted]).with_row_index("row").with_columns(pl.col("row").cast(pl.Int64))
    if evidence is not None and evidence.width > 1:
        ctx = ctx.join(evidence, on="customer_id", how="left", maintain_order="left")
    writer = ReasonWriter(model.reference, settings.kpi_thresholds, settings.currency)
    pieces = [pl.DataFrame({"row": pl.Series([], dtype=pl.Int64), "unit": pl.Series([], dtype=pl.String),
                            "text": pl.Series([], dtype=pl.String)})]
    for unit in long["unit"].unique().sort().to_list():
        ids = long.filter(pl.col("unit") == unit)["row"].unique().sort().to_numpy()
        sub = ctx[ids]
        pieces.append(pl.DataFrame({"row": sub["row"], "unit": [unit] * sub.height,
                                    "text": writer.texts(unit, sub)}))
    texts = pl.concat(pieces)
    agg = (long.join(texts, on=["row", "unit"], how="left").sort(["row", "slot"])
           .group_by("row").agg(reason_codes=pl.col("unit"), top_reasons=pl.col("text"),
                                reason_contributions=pl.col("contribution")))
    revenue = (rows["arpu_30d"] if "arpu_30d" in rows.columns else rows["monthly_fee_total"]).astype("float64")
    rev = revenue.to_numpy()
    base = pl.DataFrame({
        "row": np.arange(n, dtype=np.int64),
        "customer_id": rows["customer_id"].astype(str).to_numpy(),
        "score_date": pl.from_pandas(pd.to_datetime(rows["snapshot_date"])).dt.date(),
        "probability": p,
        "risk_band": band,
        "monthly_revenue": rev,
        "expected_revenue_at_risk": p * np.nan_to_num(rev),
    })
    extra = {}
    for c in ("segment", "payment_type", "main_product_offering", "tenure_days", "home_zone_id"):
        extra[c] = (pl.from_pandas(rows[c]) if c in rows.columns else pl.Series(c, [None] * n, dtype=pl.String))
    out = (base.with_columns(**extra)
           .join(agg, on="row", how="left", maintain_order="left")
           .with_columns(
               pl.col("reason_codes").fill_null(pl.lit([], dtype=pl.List(pl.String))),
               pl.col("top_reasons").fill_null(pl.lit([], dtype=pl.List(pl.String))),
               pl.col("reason_contributions").fill_null(pl.lit([], dtype=pl.List(pl.Float64))),
               risk_rank=pl.col("probability").rank("ordinal", descending=True).cast(pl.Int64),
               tenure_days=pl.col("tenure_days").cast(pl.Float64).round(0).cast(pl.Int64),
               model_version=pl.lit(model_version), scored_at=pl.lit(scored_at), data_as_of=pl.lit(data_as_of))
           .with_columns(reasons_text=pl.col("top_reasons").list.join("; "))
           .select(SCORE_COLUMNS))
    rise = {u: float(v) for u, v in contrib.clip(lower=0).mean().items()} if n else {}
    size = {u: float(v) for u, v in contrib.abs().mean().items()} if n else {}
    return Scores(frame=out, medium_from=medium, high_from=high, mean_rise=rise, mean_abs=size)


def score_snapshot(con: duckdb.DuckDBPyConnection, model, frame: FeatureFrame, *, settings: Settings,
                   model_version: str, scored_at: datetime, band_multiples: tuple[float, float] = (1.5, 3.0),
                   n_reasons: int = 3) -> Scores:
    """Score every customer of the latest snapshot (every customer with an active line at the data's end)."""
    rows = frame.rows[frame.rows["snapshot_date"] == frame.rows["snapshot_date"].max()]
    if frame.mode == "labelled_table":
        rows = rows[~rows["label_churn_30d"]]  # the churners of a labelled table have left already
    evidence = load_evidence(con, frame.score_date, settings.kpi_thresholds)
    release_memory(con)
    return score_rows(model, rows, evidence=evidence, settings=settings, model_version=model_version,
                      scored_at=scored_at, data_as_of=frame.data_end, band_multiples=band_multiples,
                      n_reasons=n_reasons)


def drivers_table(importance: pd.DataFrame, scores: Scores, *, model) -> pd.DataFrame:
    """Reason units ranked by how much they raise the customers' risk on average (from the model), with
    their held-out permutation importance, their side and features, and how often they lead the reasons."""
    units = units_of(model)
    side = {f.reason: GROUPS[f.group].side if f.group in GROUPS else "BSS" for f in model.features}
    n = max(len(scores), 1)
    codes = scores.frame["reason_codes"]
    first = dict(codes.list.first().drop_nulls().value_counts().iter_rows())
    anywhere = dict(codes.explode().drop_nulls().value_counts().iter_rows())
    imp = {r["reason"]: r for r in importance.to_dict(orient="records")} if len(importance) else {}
    rows = []
    for unit, cols in units.items():
        rows.append({
            "reason": unit, "title": REASON_TITLES.get(unit, unit), "side": side.get(unit, "BSS"),
            "features": ", ".join(cols),
            "mean_rise": scores.mean_rise.get(unit, 0.0),
            "mean_abs_contribution": scores.mean_abs.get(unit, 0.0),
            "importance": float(imp.get(unit, {}).get("importance", 0.0)),
            "importance_sd": float(imp.get(unit, {}).get("importance_sd", 0.0)),
            "share_first_reason": float(first.get(unit, 0)) / n,
            "share_any_reason": float(anywhere.get(unit, 0)) / n,
        })
    out = pd.DataFrame(rows).sort_values(["mean_rise", "importance"], ascending=False, ignore_index=True)
    out.insert(0, "rank", np.arange(1, len(out) + 1))
    return out


# ------------------------------------------------------------------------------------------ writing


def _arrow(df: pd.DataFrame | pl.DataFrame) -> pa.Table:
    return df.to_arrow() if isinstance(df, pl.DataFrame) else pa.Table.from_pandas(df, preserve_index=False)


def replace_table(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame | pl.DataFrame) -> None:
    """Create or replace `models.<name>` with the rows of `df` (through Arrow, types kept)."""
    con.execute("CREATE SCHEMA IF NOT EXISTS models")
    view = f"_frame_{name}"
    con.register(view, _arrow(df))
    try:
        con.execute(f'CREATE OR REPLACE TABLE models."{name}" AS SELECT * FROM "{view}"')
    finally:
        con.unregister(view)


def write_tables(con: duckdb.DuckDBPyConnection, *, scores: Scores, evaluation: Evaluation,
                 drivers: pd.DataFrame, run_row: dict[str, Any], model_version: str,
                 extra: Mapping[str, pd.DataFrame] | None = None) -> None:
    """Write the scoring and evaluation tables into schema `models`; `churn_runs` keeps every run."""
    replace_table(con, "churn_scores", scores.frame)
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
