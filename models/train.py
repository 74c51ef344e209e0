"""`opencem train`: build the training set, split by time, fit, calibrate, evaluate, score, register, publish.

The model is a scikit-learn Pipeline (column preparation + HistGradientBoostingClassifier, with monotone
priors on drops, tickets, outages and overdue bills) whose log-odds are calibrated to a 30-day churn
probability, with a logistic-regression Pipeline as the baseline reported beside it.

The split is by time: the latest snapshot whose label is observed for at least `min_label_days` is held
out, the model learns from earlier snapshots, and their labels are cut at the held-out date (a churn that
happens after it is not yet known when that model would have been trained, so it cannot be learnt and
then "predicted"). Without two labelled snapshots (or for a labelled table), customers are held out
instead: the customers of one extract file (`holdout_file`) or a fixed fifth of them.

Labels observed for fewer days than the horizon are calibrated as such: the calibrator models the
probability of churning within the observed days as `1 - exp(-exp(a s + b) * days / 30)` of the
model's log-odds `s` (a proportional hazard), and the 30-day probability is the same with days = 30.
"""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy.optimize import minimize
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler

from etl.config import Settings
from models.errors import ModelError
from models.evaluate import HORIZON_DAYS, Evaluation, evaluate
from models.features import GROUPS, REASON_TITLES, Feature, FeatureFrame, guard, single_feature_auc

Log = Callable[[str], None]
SplitKind = Literal["time", "customers", "file"]


@dataclass(frozen=True)
class TrainOptions:
    """The choices of one training run; the defaults suit the sample and a million customers alike."""

    mode: Literal["auto", "snapshots", "labelled_table"] = "auto"
    """`auto` recognises a labelled table (every termination on the data's last date) from a history."""
    holdout_file: str | None = None
    """Evaluate on the customers loaded from this extract file (its name, or its path under the source
    folder) instead of a later snapshot: e.g. `churn-bigml-20.csv`."""
    holdout_fraction: float = 0.2
    """Share of customers held out when there is no time to split on and no holdout file."""
    min_label_days: int = 7
    """A snapshot counts as labelled when its outcome is observed for at least this many days."""
    refit: bool = True
    """After the held-out evaluation, learn again from every labelled snapshot for scoring (the metrics
    describe the same recipe on held-out data)."""
    max_train_rows: int = 400_000
    """Above this, negatives are sampled (every churner kept) and weighted back, to bound time and memory."""
    baseline_rows: int = 100_000
    """The logistic baseline learns from at most this many rows (every churner kept, weighted back)."""
    crossfit_below: int = 150_000
    """Below this many training rows the calibrator is fit on 3-fold out-of-fold scores; above, on a fifth
    of the customers held back from the fit."""
    features: tuple[str, ...] | None = None
    """Feature names (default: every known feature whose sources are loaded). Outcomes are refused."""
    leak_auc: float = 0.95
    """Warn about any single feature whose own ROC AUC on the training rows exceeds this."""
    seed: int = 7
    learning_rate: float = 0.1
    max_iter: int = 150
    max_leaf_nodes: int = 4
    """Small trees: churn hazards are close to additive in their drivers, and small trees learn them from
    few churners without memorising customers."""
    min_samples_leaf: int = 20
    l2_regularization: float = 1.0
    early_stopping_from: int = 500
    """Stop adding trees when a validation fifteenth stops improving, once the fit has this many churners
    (below, the validation part would hold too few churners to judge by)."""
    band_multiples: tuple[float, float] = (1.5, 3.0)
    """Risk bands as multiples of the expected churn rate: medium from the first, high from the second."""
    n_reasons: int = 3
    n_threads: int = 1
    """OpenMP threads for fitting and scoring. One by default: on cores shared with other work, OpenMP's
    busy-waiting makes two threads several times slower than one; raise it on a dedicated machine."""


# ------------------------------------------------------------------------------------------ the model


class HorizonCalibrator:
    """Maps model log-odds to churn probability over any number of days (proportional hazards, cloglog)."""

    def __init__(self, horizon_days: int = HORIZON_DAYS) -> None:
        self.horizon_days = horizon_days
        self.a = 1.0
        self.b = 0.0

    def _rate(self, s: np.ndarray, days: np.ndarray | float) -> np.ndarray:
        return np.exp(np.clip(self.a * s + self.b, -30, 30)) * (np.asarray(days, dtype="float64") / self.horizon_days)

    def fit(self, s: np.ndarray, y: np.ndarray, days: np.ndarray, weight: np.ndarray | None = None
            ) -> HorizonCalibrator:
        s = np.asarray(s, dtype="float64")
        y = np.asarray(y).astype(bool)
        d = np.asarray(days, dtype="float64") / self.horizon_days
        w = np.ones_like(s) if weight is None else np.asarray(weight, dtype="float64")
        if not y.any() or y.all():
            raise ModelError("cannot calibrate: the calibration rows hold a single class")

        def nll(theta: np.ndarray) -> tuple[float, np.ndarray]:
            a, b = theta
            lam = np.exp(np.clip(a * s + b, -30, 30)) * d
            # y = 1: -log(1 - exp(-lam)); y = 0: lam.
            em = -np.expm1(-lam)
            loss = np.where(y, -np.log(np.maximum(em, 1e-300)), lam)
            dl = np.where(y, -np.exp(-lam) / np.maximum(em, 1e-300), 1.0) * lam  # d loss / d (a s + b)
            return float(np.sum(w * loss)), np.array([np.sum(w * dl * s), np.sum(w * dl)])

        p = np.average(y, weights=w)
        b0 = float(np.log(-np.log1p(-min(max(p, 1e-6), 0.999))) - np.log(max(np.average(d, weights=w), 1e-6)))
        res = minimize(nll, x0=np.array([1.0, b0 - np.average(s, weights=w)]), jac=True, method="L-BFGS-B",
                       bounds=[(0.0, 20.0), (-50.0, 50.0)])
        self.a, self.b = float(res.x[0]), float(res.x[1])
        return self

    def predict(self, s: np.ndarray, days: np.ndarray | float | None = None) -> np.ndarray:
        """Probability of churn within `days` (default: the horizon) of log-odds `s`."""
        return -np.expm1(-self._rate(np.asarray(s, dtype="float64"),
                                     self.horizon_days if days is None else days))


@dataclass
class ChurnModel:
    """A fitted Pipeline, its calibrator, and what scoring and explaining need."""

    pipeline: Pipeline
    calibrator: HorizonCalibrator
    features: tuple[Feature, ...]
    reference: dict[str, Any]
    """Each feature's typical value (median, or mode; None when most rows have none): reasons perturb
    a customer's features towards it."""
    name: str = "gbm"

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def raw(self, rows: pd.DataFrame) -> np.ndarray:
        """Log-odds of the pipeline (monotone in the calibrated probability), computed in cache-sized chunks."""
        if len(rows) == 0:
            return np.zeros(0)
        if not isinstance(self.pipeline.named_steps["model"], HistGradientBoostingClassifier):
            step = 200_000  # in blocks: one-hot and indicator columns of a million rows add up
            return np.concatenate([np.asarray(self.pipeline.decision_function(rows.iloc[a:a + step][self.names]),
                                              dtype="float64") for a in range(0, max(len(rows), 1), step)])
        if len(rows) <= 4096:
            return np.asarray(self.pipeline.decision_function(rows[self.names]), dtype="float64")
        from models.trees import TreeView

        view = TreeView.of(self)
        return view.raw(view.matrix(rows, self.names))

    def predict(self, rows: pd.DataFrame, days: np.ndarray | float | None = None) -> np.ndarray:
        """Calibrated probability of churn within `days` (default 30) for each row."""
        return self.calibrator.predict(self.raw(rows), days)


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """log(1 + |x|) with the sign of x: tames heavy tails (revenue, minutes) for the linear baseline."""
    return np.sign(x) * np.log1p(np.abs(x))


def gbm_pipeline(features: Sequence[Feature], options: TrainOptions, *, n_positive: int = 0) -> Pipeline:
    cats = [f.name for f in features if f.kind == "categorical"]
    nums = [f.name for f in features if f.kind == "numeric"]
    prep = ColumnTransformer(
        [("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                encoded_missing_value=np.nan, max_categories=60), cats),
         ("num", "passthrough", nums)],
        verbose_feature_names_out=False,
    ).set_output(transform="pandas")
    mono = {f.name: f.monotone for f in features if f.monotone and f.kind == "numeric"}
    model = HistGradientBoostingClassifier(
        learning_rate=options.learning_rate, max_iter=options.max_iter, max_leaf_nodes=options.max_leaf_nodes,
        min_samples_leaf=options.min_samples_leaf, l2_regularization=options.l2_regularization,
        categorical_features=cats or None, monotonic_cst=mono or None,
        early_stopping=n_positive >= options.early_stopping_from,
        validation_fraction=0.15, n_iter_no_change=20, random_state=options.seed,
    )
    return Pipeline([("prepare", prep), ("model", model)])


def logistic_pipeline(features: Sequence[Feature], options: TrainOptions) -> Pipeline:
    cats = [f.name for f in features if f.kind == "categorical"]
    nums = [f.name for f in features if f.kind == "numeric"]
    num = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)),
                    ("log", FunctionTransformer(signed_log1p)), ("scale", StandardScaler())])
    prep = ColumnTransformer(
        [("cat", OneHotEncoder(handle_unknown="infrequent_if_exist", min_frequency=20, max_categories=30), cats),
         ("num", num, nums)],
    )
    return Pipeline([("prepare", prep), ("model", LogisticRegression(C=0.5, max_iter=2000))])


def reference_values(rows: pd.DataFrame, features: Sequence[Feature]) -> dict[str, Any]:
    """The typical value of each feature on the training rows (what reasons are measured against)."""
    ref: dict[str, Any] = {}
    for f in features:
        x = rows[f.name]
        if x.isna().mean() > 0.5:
            ref[f.name] = None
        elif f.kind == "categorical":
            ref[f.name] = x.dropna().astype(str).mode().iloc[0]
        else:
            ref[f.name] = float(x.median())
    return ref


def _groups_split(ids: pd.Series, fraction: float, seed: int) -> np.ndarray:
    """A stable pseudo-random choice of `fraction` of the customers (True = chosen), by hashing the id."""
    h = pd.util.hash_pandas_object(ids.astype(str) + f"#{seed}", index=False).to_numpy()
    return (h % 10_000) < round(fraction * 10_000)


def fit_model(rows: pd.DataFrame, y: np.ndarray, days: np.ndarray, weight: np.ndarray,
              features: Sequence[Feature], options: TrainOptions, *, log: Log) -> ChurnModel:
    """Fit the gradient-boosted Pipeline and its calibrator on `rows` (labels `y` observed over `days`)."""
    X = rows[[f.name for f in features]]
    ids = rows["customer_id"]
    n = len(rows)
    if n < options.crossfit_below:
        oof = np.zeros(n)
        folds = StratifiedGroupKFold(n_splits=3, shuffle=True, random_state=options.seed)
        for k, (a, b) in enumerate(folds.split(X, y, groups=ids)):
            p = gbm_pipeline(features, options, n_positive=int(y[a].sum())).fit(
                X.iloc[a], y[a], model__sample_weight=weight[a])
            oof[b] = p.decision_function(X.iloc[b])
        pipe = gbm_pipeline(features, options, n_positive=int(y.sum())).fit(X, y, model__sample_weight=weight)
        cal = HorizonCalibrator().fit(oof, y, days, weight)
        how = "3-fold out-of-fold scores"
    else:
        held = _groups_split(ids, 0.2, options.seed)
        if y[held].sum() == 0 or y[~held].sum() == 0:
            held = np.zeros(n, dtype=bool)
            held[np.arange(n) % 5 == 0] = True
        pipe = gbm_pipeline(features, options, n_positive=int(y[~held].sum())).fit(
            X[~held], y[~held], model__sample_weight=weight[~held])
        cal = HorizonCalibrator().fit(pipe.decision_function(X[held]), y[held], days[held], weight[held])
        how = "a fifth of the customers held back from the fit"
    it = pipe.named_steps["model"].n_iter_
    log(f"  fitted gradient boosting on {n:,} rows ({int(y.sum()):,} churners), {it} trees; calibrated on {how} "
        f"(a={cal.a:.3f}, b={cal.b:.3f})")
    return ChurnModel(pipeline=pipe, calibrator=cal, features=tuple(features),
                      reference=reference_values(rows, features))


def fit_baseline(rows: pd.DataFrame, y: np.ndarray, days: np.ndarray, weight: np.ndarray,
                 features: Sequence[Feature], options: TrainOptions) -> ChurnModel:
    """The logistic-regression baseline (calibrated the same way, on its own training scores)."""
    if len(rows) > options.baseline_rows:  # a baseline: a sample (every churner kept) is enough
        rng = np.random.default_rng(options.seed)
        neg = len(rows) - int(y.sum())
        rate = min(1.0, max(options.baseline_rows - int(y.sum()), 1) / max(neg, 1))
        keep = y.astype(bool) | (rng.random(len(rows)) < rate)
        rows, y, days = rows[keep], y[keep], days[keep]
        weight = np.where(y.astype(bool), 1.0, 1.0 / rate) * weight[keep]
    X = rows[[f.name for f in features]]
    pipe = logistic_pipeline(features, options).fit(X, y, model__sample_weight=weight)
    cal = HorizonCalibrator().fit(pipe.decision_function(X), y, days, weight)
    return ChurnModel(pipeline=pipe, calibrator=cal, features=tuple(features), reference={}, name="logistic")


# ------------------------------------------------------------------------------------------ the split


@dataclass
class TrainingSet:
    """Rows to learn from (labels, observed days, weights) and what they are."""

    rows: pd.DataFrame
    y: np.ndarray
    days: np.ndarray
    weight: np.ndarray
    description: str


@dataclass
class Split:
    kind: SplitKind
    train: TrainingSet
    test_rows: pd.DataFrame
    test_y: np.ndarray
    test_days: np.ndarray
    description: str


def _cap(rows: pd.DataFrame, y: np.ndarray, days: np.ndarray, options: TrainOptions, what: str, *,
         where: np.ndarray | None = None) -> TrainingSet:
    """Keep every churner and sample negatives down to `max_train_rows` (weighted back to their share).

    `where` (a mask over `rows`) says which rows `y` and `days` describe: the frame is then copied once,
    for the rows kept, instead of once for the candidates and again for the sample.
    """
    positions = np.flatnonzero(where) if where is not None else np.arange(len(rows))
    n, pos = len(positions), int(y.sum())
    weight = np.ones(n)
    note = f"{n:,} rows, {pos:,} churners"
    if n > options.max_train_rows and n - pos > 0:
        keep_neg = max(options.max_train_rows - pos, 1)
        rate = min(1.0, keep_neg / (n - pos))
        rng = np.random.default_rng(options.seed)
        keep = y.astype(bool) | (rng.random(n) < rate)
        weight = np.where(y.astype(bool), 1.0, 1.0 / rate)[keep]
        positions, y, days = positions[keep], y[keep], days[keep]
        note += f" (negatives sampled at {rate:.1%} and weighted back: {len(positions):,} rows used)"
    kept = rows.take(positions) if where is not None or len(positions) < len(rows) else rows
    return TrainingSet(rows=kept.reset_index(drop=True), y=np.asarray(y).astype(int), days=np.asarray(days, float),
                       weight=weight, description=f"{what}: {note}")


def _labelled_snapshots(frame: FeatureFrame, min_days: int) -> list[pd.Timestamp]:
    obs = frame.rows.groupby("snapshot_date")["label_observed_days"].min()
    return sorted(obs[obs >= min_days].index)


def _holdout_customers(rows: pd.DataFrame, *, holdout_ids: set[str] | None, options: TrainOptions) -> np.ndarray:
    if holdout_ids is not None:
        return rows["customer_id"].isin(holdout_ids).to_numpy()
    return _groups_split(rows["customer_id"], options.holdout_fraction, options.seed)


def plan_split(frame: FeatureFrame, options: TrainOptions, *, holdout_ids: set[str] | None = None) -> Split:
    """The held-out evaluation: by time when two labelled snapshots allow it, else by customers."""
    r = frame.rows
    labelled = _labelled_snapshots(frame, options.min_label_days)
    if not labelled:
        raise ModelError(
            f"no snapshot has its outcome observed for {options.min_label_days} days or more (the loaded data "
            f"ends on {frame.data_end}); load more days, or lower --min-label-days")
    if frame.mode == "snapshots" and holdout_ids is None and len(labelled) >= 2:
        test_date = labelled[-1]
        train_dates = [s for s in labelled[:-1] if (test_date - s).days >= options.min_label_days]
        in_train = r["snapshot_date"].isin(train_dates).to_numpy()
        snap = r["snapshot_date"][in_train]
        cut = np.minimum(HORIZON_DAYS, (test_date - snap).dt.days.to_numpy())
        y_tr = (r["days_to_churn"].to_numpy(dtype="float64", na_value=np.nan)[in_train] < cut).astype(int)
        te = r[r["snapshot_date"] == test_date]
        y_te = te["label_churn_30d"].to_numpy().astype(int)
        if y_tr.sum() >= 5 and 0 < y_te.sum() < len(y_te):
            dates = ", ".join(f"{d:%Y-%m-%d}" for d in train_dates)
            desc = (f"time split: learn from snapshots {dates} with outcomes cut at {test_date:%Y-%m-%d}; "
                    f"evaluate on the snapshot of {test_date:%Y-%m-%d} (outcome observed "
                    f"{int(te['label_observed_days'].min())} of {HORIZON_DAYS} days)")
            return Split("time", _cap(r, y_tr, cut, options, "training rows", where=in_train),
                         te.reset_index(drop=True), y_te,
                         te["label_observed_days"].to_numpy(dtype="float64"), desc)
    # By customers: the rows of held-out customers at the latest labelled snapshot.
    pool = r[r["snapshot_date"].isin(labelled)]
    held = _holdout_customers(pool, holdout_ids=holdout_ids, options=options)
    latest = (pool["snapshot_date"] == labelled[-1]).to_numpy()
    tr, te = pool[~held], pool[held & latest]
    y_tr = tr["label_churn_30d"].to_numpy().astype(int)
    y_te = te["label_churn_30d"].to_numpy().astype(int)
    if y_tr.sum() == 0 or y_te.sum() == 0 or y_te.sum() == len(y_te):
        raise ModelError(
            f"not enough churners to learn and evaluate: {int(y_tr.sum())} in the training rows, "
            f"{int(y_te.sum())} of {len(y_te)} in the held-out rows; expected at least one on each side")
    kind: SplitKind = "file" if holdout_ids is not None else "customers"
    who = (f"the {te['customer_id'].nunique():,} customers of {options.holdout_file}" if kind == "file" else
           f"{options.holdout_fraction:.0%} of the customers (a stable hash of their id)")
    desc = f"customer split: evaluate on {who} at {labelled[-1]:%Y-%m-%d}, learn from the others"
    if frame.mode == "snapshots":
        desc += (" (there are not two labelled snapshots with churners on both sides to split by time)"
                 if kind == "customers" else "")
    return Split(kind, _cap(tr, y_tr, tr["label_observed_days"].to_numpy(dtype="float64"), options,
                            "training rows"), te.reset_index(drop=True), y_te,
                 te["label_observed_days"].to_numpy(dtype="float64"), desc)


def final_training_set(frame: FeatureFrame, options: TrainOptions) -> TrainingSet:
    """Every labelled snapshot with its outcome as observed by the end of the data (for scoring)."""
    labelled = _labelled_snapshots(frame, options.min_label_days)
    r = frame.rows
    where = r["snapshot_date"].isin(labelled).to_numpy()
    return _cap(r, r["label_churn_30d"].to_numpy()[where].astype(int),
                r["label_observed_days"].to_numpy(dtype="float64")[where], options, "final fit", where=where)


# ------------------------------------------------------------------------------------------ checks


def leak_warnings(ts: TrainingSet, features: Sequence[Feature], limit: float) -> list[str]:
    """A warning for each feature whose own ROC AUC on the training rows exceeds `limit`."""
    out = []
    for f in features:
        auc = single_feature_auc(ts.rows[f.name], ts.y, kind=f.kind)
        if auc is not None and auc > limit:
            out.append(f"possible leak: {f.name} alone separates churners with ROC AUC {auc:.3f} (> {limit}); "
                       "check that it is known before the snapshot date")
    return out


def unit_importance(model: ChurnModel, rows: pd.DataFrame, y: np.ndarray, *, seed: int, repeats: int = 3,
                    max_rows: int = 50_000) -> pd.DataFrame:
    """Permutation importance per reason unit on held-out rows: the drop in ROC AUC when the unit's
    features are shuffled together (every churner kept when rows are sampled). Only the trees that read
    a unit are evaluated again (models/trees.py)."""
    from models.trees import TreeView

    rng = np.random.default_rng(seed)
    y = np.asarray(y).astype(int)
    if len(rows) > max_rows:
        keep = y.astype(bool) | (rng.random(len(rows)) < (max_rows - y.sum()) / max(len(rows) - y.sum(), 1))
        rows, y = rows[keep].reset_index(drop=True), y[keep]
    else:
        rows = rows.reset_index(drop=True)
    if y.min() == y.max():
        return pd.DataFrame(columns=["reason", "importance", "importance_sd"])
    view = TreeView.of(model)
    X = view.matrix(rows, model.names)
    raw = view.raw(X)
    base = roc_auc_score(y, raw)
    out = []
    for unit in view.units:
        drops = [base - roc_auc_score(y, view.permuted_raw(X, raw, unit, rng.permutation(len(rows))))
                 for _ in range(repeats)]
        out.append({"reason": unit, "importance": float(np.mean(drops)), "importance_sd": float(np.std(drops))})
    return pd.DataFrame(out).sort_values("importance", ascending=False, ignore_index=True)


# ------------------------------------------------------------------------------------------ result


@dataclass(frozen=True)
class TrainResult:
    """What a training run did: `ok` when a model was evaluated, scored and published."""

    ok: bool
    message: str
    model_version: str | None = None
    warehouse_version: str | None = None
    based_on: str | None = None
    mode: str | None = None
    split: str | None = None
    features: tuple[str, ...] = ()
    missing_groups: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Held-out metrics of each model (`gbm`, `logistic`): roc_auc, pr_auc, lift_top_decile, brier, ..."""
    drivers: tuple[dict[str, Any], ...] = ()
    n_train: int = 0
    n_test: int = 0
    n_scored: int = 0
    data_as_of: str | None = None
    scored_at: str | None = None
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types only (what `opencem train --json` prints)."""
        d = _native(asdict(self))
        d["status"] = "published" if self.ok else "failed"
        return d

    def describe(self) -> str:
        if not self.ok:
            return f"TRAINING FAILED: {self.message}"
        g, b = self.metrics.get("gbm", {}), self.metrics.get("logistic", {})

        def f(v: Any, spec: str = ".3f") -> str:
            return "-" if v is None else format(v, spec)

        lines = [
            (f"published {self.warehouse_version} (from {self.based_on}) with model {self.model_version}: "
            f"{self.n_scored:,} active customers scored, data as of {self.data_as_of}"),
            f"mode: {self.mode}; {self.split}",
            (f"held-out ({self.n_test:,} rows): ROC AUC {f(g.get('roc_auc'))} (logistic baseline "
            f"{f(b.get('roc_auc'))}), PR AUC {f(g.get('pr_auc'))} ({f(b.get('pr_auc'))}), top-decile lift "
            f"{f(g.get('lift_top_decile'), '.2f')} and recall {f(g.get('recall_top_decile'), '.1%')}, "
            f"Brier {f(g.get('brier'), '.4f')} ({f(b.get('brier'), '.4f')})"),
            "drivers (mean rise in log-odds; held-out ROC AUC lost when shuffled): " + ", ".join(
                f"{d['title']} ({d['mean_rise']:.3f}; {d['importance']:+.3f})" for d in self.drivers[:6]),
        ]
        if self.missing_groups:
            lines.append("feature groups missing (their sources are not loaded): " + ", ".join(
                f"{g} [{', '.join(GROUPS[g].sources)}]" for g in self.missing_groups))
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines.append("timings: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.timings_s.items()))
        return "\n".join(lines)


def _native(v: Any) -> Any:
    """numpy scalars to Python, NaN to None, tuples to lists, recursively (JSON-ready)."""
    if isinstance(v, dict):
        return {str(k): _native(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_native(x) for x in v]
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and v != v:  # noqa: PLR0124  (NaN)
        return None
    if isinstance(v, (datetime, pd.Timestamp)):
        return v.isoformat()
    return v


def _versions() -> dict[str, str]:
    import duckdb
    import joblib
    import scipy
    import sklearn

    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "scipy": scipy.__version__, "joblib": joblib.__version__,
            "duckdb": duckdb.__version__}


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


# ------------------------------------------------------------------------------------------ the run


def train_frame(frame: FeatureFrame, options: TrainOptions, *, holdout_ids: set[str] | None = None,
                log: Log = lambda _m: None) -> dict[str, Any]:
    """Everything short of writing: split, fit, evaluate, refit; returns the pieces the run publishes."""
    guard(frame.names)
    t: dict[str, float] = {}
    t0 = time.perf_counter()
    split = plan_split(frame, options, holdout_ids=holdout_ids)
    log(f"split: {split.description}")
    log(f"  {split.train.description}; held out: {len(split.test_rows):,} rows, {int(split.test_y.sum()):,} churners")
    warnings = leak_warnings(split.train, frame.features, options.leak_auc)
    for w in warnings:
        log(f"  WARNING {w}")
    ts = split.train
    model = fit_model(ts.rows, ts.y, ts.days, ts.weight, frame.features, options, log=log)
    base = fit_baseline(ts.rows, ts.y, ts.days, ts.weight, frame.features, options)
    t["fit"] = time.perf_counter() - t0
    slices = {k: split.test_rows[k] for k in ("segment", "payment_type") if k in split.test_rows.columns}
    ev: Evaluation = evaluate(split.test_y, {"gbm": model.predict(split.test_rows),
                                             "logistic": base.predict(split.test_rows)},
                              observed_days=split.test_days, slices=slices)
    importance = unit_importance(model, split.test_rows, split.test_y, seed=options.seed)
    t["evaluate"] = time.perf_counter() - t0 - t["fit"]
    final = model
    if options.refit:
        t1 = time.perf_counter()
        fts = final_training_set(frame, options)
        final = fit_model(fts.rows, fts.y, fts.days, fts.weight, frame.features, options, log=log)
        t["refit"] = time.perf_counter() - t1
        n_final = len(fts.rows)
    else:
        n_final = len(ts.rows)
    return {"split": split, "model": final, "evaluated_model": model, "baseline": base, "evaluation": ev,
            "importance": importance, "warnings": warnings, "timings": t, "n_final": n_final}


def holdout_customer_ids(con, holdout_file: str) -> set[str]:
    """Customers loaded from the extract file `holdout_file` (matched by its name or its path)."""
    rows = con.execute(
        "SELECT customer_id FROM staging.customers WHERE _file = $f OR _file LIKE '%/' || $f", {"f": holdout_file}
    ).fetchall()
    if not rows:
        files = [r[0] for r in con.execute(
            "SELECT DISTINCT _file FROM staging.customers WHERE _file IS NOT NULL ORDER BY 1 LIMIT 20").fetchall()]
        raise ModelError(f"no customer was loaded from a file named {holdout_file}; expected one of the customer "
                         f"files: {', '.join(files) or 'none'}")
    return {r[0] for r in rows}


def run(settings: Settings, *, log: Log, options: TrainOptions | None = None) -> TrainResult:
    """Train on the live warehouse version, score every active customer and publish a new version.

    Holds the warehouse lock for the whole run (a refresh waits, or exits 3). A ModelError (nothing to
    learn from, a refused feature) gives a result with `ok` False and publishes nothing; a missing
    warehouse raises UsageError and a held lock LockHeld, as for a refresh.
    """
    from threadpoolctl import threadpool_limits

    options = options or TrainOptions()
    with threadpool_limits(limits=max(1, options.n_threads)):
        return _run(settings, log=log, options=options)


def _run(settings: Settings, *, log: Log, options: TrainOptions) -> TrainResult:
    from etl.publish import Warehouse
    from models import card, experience, score
    from models.features import load_frame
    from models.registry import Registry

    wh = Warehouse(settings.warehouse_dir, keep_versions=settings.keep_versions)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    with wh.lock(command="train"):
        if wh.live_name() is None:
            from etl.errors import UsageError

            raise UsageError(f"no published version in {settings.warehouse_dir}: run `opencem refresh --source DIR` "
                             "first")
        with wh.working_copy() as wc:
            con = wc.con
            con.execute("SET enable_progress_bar = false")  # nothing but the result may reach stdout
            timings["copy"] = time.perf_counter() - t0
            t_features = time.perf_counter()
            try:
                frame = load_frame(con, mode=options.mode, features=options.features)
                log(f"features: {len(frame.features)} in use from {len(frame.rows):,} customer-snapshots "
                    f"({frame.mode}); missing groups: {', '.join(frame.missing_groups) or 'none'}")
                timings["features"] = time.perf_counter() - t_features
                holdout = holdout_customer_ids(con, options.holdout_file) if options.holdout_file else None
                out = train_frame(frame, options, holdout_ids=holdout, log=log)
            except ModelError as exc:
                log(f"training failed: {exc}")
                return TrainResult(ok=False, message=str(exc), based_on=wc.based_on)
            timings.update(out["timings"])
            split: Split = out["split"]
            n_train, n_test = len(split.train.rows), len(split.test_rows)
            # From here on only the customers to score are needed: let the training and held-out rows go
            # (at a million customers, more than a gigabyte of frames kept through scoring and writing).
            split.train.rows, split.test_rows = split.train.rows.iloc[:0], split.test_rows.iloc[:0]
            frame.rows = frame.rows[frame.rows["snapshot_date"] == frame.rows["snapshot_date"].max()]
            t1 = time.perf_counter()
            registry = Registry.for_warehouse(settings.warehouse_dir)
            version = registry.next_version()
            scored_at = utcnow()
            scored = score.score_snapshot(con, out["model"], frame, settings=settings, model_version=version,
                                          scored_at=scored_at, band_multiples=options.band_multiples,
                                          n_reasons=options.n_reasons)
            timings["score"] = time.perf_counter() - t1
            ev: Evaluation = out["evaluation"]
            drivers = score.drivers_table(out["importance"], scored, model=out["model"])
            metrics = {"gbm": ev.overall("gbm"), "logistic": ev.overall("logistic")}
            notes = list(frame.notes)
            if frame.mode == "snapshots" and split.kind == "time":
                short = int(split.test_days.min())
                if short < HORIZON_DAYS:
                    notes.append(f"the held-out outcome is observed for {short} of {HORIZON_DAYS} days: Brier and "
                                 "reliability compare with the probability for those days")
            run_row = {
                "model_version": version, "trained_at": scored_at, "data_as_of": frame.data_end,
                "score_date": frame.score_date, "mode": frame.mode, "split_kind": split.kind,
                "split": split.description, "n_train": n_train, "n_test": n_test,
                "n_final": out["n_final"], "n_scored": len(scored), "features": list(frame.names),
                "missing_groups": list(frame.missing_groups), "warnings": list(out["warnings"]), "notes": notes,
                "base_rate_30d": float(scored.frame["probability"].mean()) if len(scored) else None,
                "band_medium_from": float(scored.medium_from),
                "band_high_from": float(scored.high_from),
                "currency": settings.currency, "data_hash": frame.data_hash, "based_on": wc.based_on,
                "refit": options.refit,
            }
            manifest = {
                "created_at": scored_at.isoformat(), "kind": "churn", "horizon_days": HORIZON_DAYS,
                "data_as_of": str(frame.data_end), "data_hash": frame.data_hash, "warehouse_version": wc.name,
                "based_on": wc.based_on, "mode": frame.mode, "split": split.description,
                "features": [asdict(f) for f in frame.features], "missing_groups": list(frame.missing_groups),
                "loaded_sources": list(frame.loaded_sources), "reference": out["model"].reference,
                "calibrator": {"a": out["model"].calibrator.a, "b": out["model"].calibrator.b},
                "options": {k: v for k, v in asdict(options).items()}, "packages": _versions(),
                "metrics": ev.metrics.to_dict(orient="records"), "drivers": drivers.to_dict(orient="records"),
                "warnings": list(out["warnings"]), "notes": notes, "n_train": n_train,
                "n_test": n_test, "n_final": out["n_final"], "n_scored": len(scored),
            }
            registry.save(version, out["model"], manifest, card=card.render)
            log(f"registered model {version} in {registry.root / version}")
            experience_tables = experience.build(con, experience.load_config(settings.warehouse_dir))
            score.write_tables(con, scores=scored, evaluation=ev, drivers=drivers, run_row=run_row,
                               model_version=version, extra=experience_tables)
            timings["write"] = time.perf_counter() - t1 - timings["score"]
            name = wh.publish(wc)
            timings["total"] = time.perf_counter() - t0
            log(f"published {name}")
            return TrainResult(
                ok=True, message=f"published {name} with model {version}", model_version=version,
                warehouse_version=name, based_on=wc.based_on, mode=frame.mode, split=split.description,
                features=tuple(frame.names), missing_groups=frame.missing_groups, warnings=tuple(out["warnings"]),
                notes=tuple(notes), metrics=metrics,
                drivers=tuple(drivers.to_dict(orient="records")),
                n_train=n_train, n_test=n_test, n_scored=len(scored),
                data_as_of=str(frame.data_end), scored_at=scored_at.isoformat(),
                timings_s={k: round(v, 2) for k, v in timings.items()},
            )


def title(reason: str) -> str:
    return REASON_TITLES.get(reason, reason)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m models.train --warehouse DIR [--json]`: the same as `opencem train` (exit 0 published,
    1 failed), for benchmarks and for use before the CLI wires it."""
    import argparse
    import json
    import sys

    from etl.errors import LockHeld, OpencemError

    # Run as `python -m models.train`, this file is `__main__`: use the importable module, so that the
    # pickled model names `models.train.ChurnModel` and loads anywhere.
    from models.train import TrainOptions, run

    ap = argparse.ArgumentParser(prog="python -m models.train", description=run.__doc__.splitlines()[0])
    ap.add_argument("--warehouse", default=None, help="warehouse folder (default ./warehouse or OPENCEM_WAREHOUSE)")
    ap.add_argument("--json", action="store_true", help="print the result as one JSON object on stdout")
    ap.add_argument("--holdout-file", default=None, help="evaluate on the customers of this extract file")
    ap.add_argument("--mode", default="auto", choices=("auto", "snapshots", "labelled_table"))
    ap.add_argument("--min-label-days", type=int, default=TrainOptions.min_label_days)
    ap.add_argument("--threads", type=int, default=TrainOptions.n_threads)
    args = ap.parse_args(argv)
    settings = Settings.from_env(warehouse=args.warehouse)
    options = TrainOptions(mode=args.mode, holdout_file=args.holdout_file, min_label_days=args.min_label_days,
                           n_threads=args.threads)
    try:
        result = run(settings, log=lambda m: print(m, file=sys.stderr, flush=True), options=options)
    except OpencemError as exc:
        if args.json:
            print(json.dumps({"status": "error", "error": type(exc).__name__, "message": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, LockHeld) else 2
    if args.json:
        print(json.dumps(result.to_dict()))
    else:
        print(result.describe(), file=sys.stderr)
    return 0 if result.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
