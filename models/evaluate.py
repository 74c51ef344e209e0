"""Held-out evaluation of churn probabilities: ranking, top-decile lift, calibration, overall and per slice.

Labels of the latest snapshots are often observed for fewer days than the 30-day horizon (a 28-day
history can observe at most 21). Ranking metrics do not care; calibration does, so the Brier score and
the reliability curve compare each row's label with the probability for the days actually observed,
`1 - (1 - p30) ** (days / 30)` (a constant hazard over the horizon), and say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

HORIZON_DAYS = 30
#: Curves are thinned to at most this many points for the page.
MAX_CURVE_POINTS = 200
RELIABILITY_BINS = 10


def at_horizon(p30: np.ndarray, days: np.ndarray | float, *, horizon: int = HORIZON_DAYS) -> np.ndarray:
    """The probability of churning within `days` given the 30-day one, under a constant hazard."""
    p30 = np.clip(np.asarray(p30, dtype="float64"), 0.0, 1.0 - 1e-12)
    frac = np.clip(np.asarray(days, dtype="float64") / horizon, 0.0, None)
    return -np.expm1(np.log1p(-p30) * frac)


def top_decile(y: np.ndarray, p: np.ndarray) -> tuple[float | None, float | None]:
    """Recall and lift among the 10% of rows with the highest scores (ties broken by order, stably)."""
    y = np.asarray(y).astype(int)
    n, pos = len(y), int(y.sum())
    if n == 0 or pos == 0:
        return None, None
    k = max(1, int(np.ceil(n * 0.1)))
    top = np.argsort(-np.asarray(p), kind="stable")[:k]
    caught = int(y[top].sum())
    return caught / pos, (caught / k) / (pos / n)


def metric_row(y: np.ndarray, p30: np.ndarray, p_obs: np.ndarray) -> dict[str, float | int | None]:
    """Every headline metric of one set of rows (None where the metric is undefined, e.g. one class)."""
    y = np.asarray(y).astype(int)
    n, pos = len(y), int(y.sum())
    two = 0 < pos < n
    recall, lift = top_decile(y, p30)
    return {
        "n": n,
        "n_positive": pos,
        "base_rate": pos / n if n else None,
        "mean_probability": float(np.mean(p_obs)) if n else None,
        "roc_auc": float(roc_auc_score(y, p30)) if two else None,
        "pr_auc": float(average_precision_score(y, p30)) if two else None,
        "recall_top_decile": recall,
        "lift_top_decile": lift,
        "brier": float(np.mean((p_obs - y) ** 2)) if n else None,
    }


def _thin(x: np.ndarray, y: np.ndarray, t: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    if len(x) <= MAX_CURVE_POINTS:
        return (x, y) if t is None else (x, y, t)
    idx = np.unique(np.linspace(0, len(x) - 1, MAX_CURVE_POINTS).round().astype(int))
    return (x[idx], y[idx]) if t is None else (x[idx], y[idx], t[idx])


def curves(y: np.ndarray, p30: np.ndarray, p_obs: np.ndarray) -> pd.DataFrame:
    """ROC, precision-recall, reliability and lift-by-decile points (curve, x, y, n, threshold)."""
    y = np.asarray(y).astype(int)
    rows: list[dict] = []
    if 0 < y.sum() < len(y):
        fpr, tpr, thr = roc_curve(y, p30)
        fpr, tpr, thr = _thin(fpr, tpr, np.where(np.isfinite(thr), thr, 1.0))
        rows += [{"curve": "roc", "x": a, "y": b, "threshold": t} for a, b, t in zip(fpr, tpr, thr)]
        prec, rec, thr = precision_recall_curve(y, p30)
        rec, prec = _thin(rec[::-1], prec[::-1])
        rows += [{"curve": "pr", "x": a, "y": b} for a, b in zip(rec, prec)]
    if len(y):
        order = np.argsort(-np.asarray(p30), kind="stable")
        deciles = np.array_split(order, 10)
        base = y.mean() if y.mean() > 0 else None
        cum = 0
        for i, idx in enumerate(deciles, start=1):
            if not len(idx):
                continue
            cum += int(y[idx].sum())
            rows.append({"curve": "lift", "x": float(i), "y": float(y[idx].mean() / base) if base else None,
                         "n": len(idx), "threshold": float(np.min(p30[idx]))})
            rows.append({"curve": "gains", "x": float(i) / 10,
                         "y": cum / y.sum() if y.sum() else None, "n": len(idx)})
        # Reliability: equal-count bins of the predicted probability for the observed days.
        q = np.unique(np.quantile(p_obs, np.linspace(0, 1, RELIABILITY_BINS + 1)))
        if len(q) >= 2:
            b = np.clip(np.searchsorted(q, p_obs, side="right") - 1, 0, len(q) - 2)
            for k in range(len(q) - 1):
                m = b == k
                if m.any():
                    rows.append({"curve": "reliability", "x": float(p_obs[m].mean()), "y": float(y[m].mean()),
                                 "n": int(m.sum())})
    out = pd.DataFrame(rows, columns=["curve", "x", "y", "n", "threshold"])
    out["n"] = out["n"].astype("Int64")
    return out


@dataclass(frozen=True)
class Evaluation:
    """Metrics (one row per model and slice) and curve points (one row per model, curve and point)."""

    metrics: pd.DataFrame
    curves: pd.DataFrame

    def overall(self, model: str) -> dict:
        m = self.metrics
        row = m[(m["model"] == model) & (m["slice"] == "overall")]
        return {} if row.empty else {k: _py(v) for k, v in row.iloc[0].to_dict().items()}


def _py(v):
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def evaluate(y: np.ndarray, predictions: Mapping[str, np.ndarray], *, observed_days: np.ndarray,
             slices: Mapping[str, pd.Series] | None = None, min_slice_rows: int = 20) -> Evaluation:
    """Evaluate 30-day probabilities of each model (name -> p30) on labels observed over `observed_days`.

    Slices (e.g. segment, payment_type) are evaluated per value with at least `min_slice_rows` rows.
    """
    y = np.asarray(y).astype(int)
    days = np.asarray(observed_days, dtype="float64")
    metrics, curve_frames = [], []
    for name, p30 in predictions.items():
        p30 = np.asarray(p30, dtype="float64")
        p_obs = at_horizon(p30, days)
        metrics.append({"model": name, "slice": "overall", "value": "all", **metric_row(y, p30, p_obs)})
        c = curves(y, p30, p_obs)
        c.insert(0, "model", name)
        curve_frames.append(c)
        for sname, s in (slices or {}).items():
            s = pd.Series(s).astype("object").fillna("unknown").to_numpy()
            for v in sorted(set(s)):
                m = s == v
                if m.sum() < min_slice_rows:
                    continue
                metrics.append({"model": name, "slice": sname, "value": str(v),
                                **metric_row(y[m], p30[m], p_obs[m])})
    return Evaluation(metrics=pd.DataFrame(metrics), curves=pd.concat(curve_frames, ignore_index=True))
