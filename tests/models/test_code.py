"""Code tests of the churn model's parts on tiny, literal inputs: leak guard, split, calibration, metrics,
reasons and the experience index."""

from __future__ import annotations

from datetime import datetime

import duckdb
import numpy as np
import pandas as pd
import pytest

from etl.config import Settings
from models.errors import LeakError, ModelError
from models.evaluate import at_horizon, evaluate, metric_row, top_decile
from models.experience import ExperienceConfig, KpiScore, build, load_config
from models.features import Feature, FeatureFrame, guard, resolve_features, single_feature_auc
from models.reasons import ReasonWriter
from models.score import contributions, contributions_by_perturbation, risk_bands, score_rows
from models.train import HorizonCalibrator, TrainOptions, fit_model, plan_split

# ------------------------------------------------------------------------------------------ leak guard


@pytest.mark.parametrize("column", ["label_churn_30d", "label_observed_days", "termination_reason",
                                    "termination_date", "customer_status", "label_anything", "churn_flag"])
def test_guard_refuses_outcome_columns(column):
    with pytest.raises(LeakError, match=column):
        guard(["tenure_days", column])


def test_guard_refuses_identifiers_and_accepts_features():
    with pytest.raises(LeakError, match="customer_id"):
        guard(["customer_id", "tenure_days"])
    guard(["tenure_days", "exp_drop_rate_pct", "n_tickets_28d"])  # no error


def test_resolve_features_refuses_outcomes_in_a_chosen_list():
    with pytest.raises(LeakError, match="label_churn_30d"):
        resolve_features(["tenure_days", "label_churn_30d"])
    chosen = resolve_features(["tenure_days", "my_new_column"])
    assert [f.name for f in chosen] == ["tenure_days", "my_new_column"]
    assert chosen[1].group == "extra"


def test_single_feature_auc_both_directions_and_categories():
    y = np.array([0, 0, 0, 1, 1])
    assert single_feature_auc(pd.Series([1, 2, 3, 4, 5.0]), y, kind="numeric") == 1.0
    assert single_feature_auc(pd.Series([5, 4, 3, 2, 1.0]), y, kind="numeric") == 1.0
    assert single_feature_auc(pd.Series([1, 1, 1, 1, 1.0]), y, kind="numeric") == 0.5
    assert single_feature_auc(pd.Series(["a", "a", "a", "b", "b"]), y, kind="categorical") == 1.0
    assert single_feature_auc(pd.Series([1, 2, 3, 4, 5.0]), np.zeros(5), kind="numeric") is None


# ------------------------------------------------------------------------------------------ metrics


def test_metric_row_on_a_literal_case():
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.5, 0.6, 0.9])
    m = metric_row(y, p, p)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert m["n"] == 10 and m["n_positive"] == 2 and m["base_rate"] == 0.2
    # Top decile = the single highest score, a churner: half the churners, five times the base rate.
    assert m["recall_top_decile"] == 0.5 and m["lift_top_decile"] == pytest.approx(5.0)
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))


def test_top_decile_without_churners_is_undefined():
    assert top_decile(np.zeros(20), np.linspace(0, 1, 20)) == (None, None)


def test_at_horizon_scales_with_observed_days():
    assert at_horizon(np.array([0.3]), 30)[0] == pytest.approx(0.3)
    assert at_horizon(np.array([0.3]), 0)[0] == pytest.approx(0.0)
    assert at_horizon(np.array([0.3]), 15)[0] == pytest.approx(1 - 0.7 ** 0.5)


def test_evaluate_slices_and_curves():
    rng = np.random.default_rng(1)
    n = 400
    y = (rng.random(n) < 0.2).astype(int)
    p = np.clip(0.2 + 0.5 * (y - 0.2) + rng.normal(0, 0.1, n), 0.001, 0.999)
    seg = pd.Series(np.where(np.arange(n) % 2 == 0, "consumer", "business"))
    ev = evaluate(y, {"gbm": p, "logistic": 1 - p}, observed_days=np.full(n, 30.0), slices={"segment": seg})
    assert set(ev.metrics["slice"]) == {"overall", "segment"}
    assert ev.overall("gbm")["roc_auc"] > 0.9 > ev.overall("logistic")["roc_auc"]
    kinds = set(ev.curves.loc[ev.curves["model"] == "gbm", "curve"])
    assert kinds == {"roc", "pr", "lift", "gains", "reliability"}
    rel = ev.curves[(ev.curves["model"] == "gbm") & (ev.curves["curve"] == "reliability")]
    assert rel["n"].sum() == n


# ------------------------------------------------------------------------------------------ calibration


def test_horizon_calibrator_recovers_a_proportional_hazard():
    rng = np.random.default_rng(7)
    n = 40_000
    s = rng.normal(0, 1, n)
    days = rng.choice([7.0, 14.0, 30.0], n)
    lam = np.exp(0.8 * s - 3.0) * days / 30
    y = rng.random(n) < -np.expm1(-lam)
    cal = HorizonCalibrator().fit(s, y, days)
    assert cal.a == pytest.approx(0.8, abs=0.08) and cal.b == pytest.approx(-3.0, abs=0.1)
    p30 = cal.predict(s)
    assert np.all(np.diff(cal.predict(np.sort(s))) >= 0)  # monotone in the score
    assert cal.predict(s, 7).mean() < p30.mean()
    with pytest.raises(ModelError):
        HorizonCalibrator().fit(s[:10], np.zeros(10, bool), days[:10])


# ------------------------------------------------------------------------------------------ the split


FEATS = (
    Feature("drops", "numeric", "network", "network", "drop rate", monotone=1),
    Feature("fee", "numeric", "subscription", "price", "fee"),
    Feature("segment", "categorical", "subscription", "profile", "segment"),
)


def synthetic_frame(n_customers: int = 600, seed: int = 3) -> FeatureFrame:
    """Four weekly snapshots of customers whose churn hazard grows with drops and fee."""
    rng = np.random.default_rng(seed)
    snaps = pd.to_datetime(["2026-10-08", "2026-10-15", "2026-10-22", "2026-10-29"])
    observed = {snaps[0]: 21, snaps[1]: 14, snaps[2]: 7, snaps[3]: 0}
    drops = rng.gamma(2.0, 0.5, n_customers)
    fee = rng.uniform(5, 50, n_customers)
    seg = rng.choice(["consumer", "business"], n_customers)
    hazard = 0.0005 * np.exp(2.0 * drops + 0.04 * fee)
    churn_day = rng.exponential(1 / hazard)  # days after 2026-10-08
    rows = []
    for i in range(n_customers):
        for s in snaps:
            offset = (s - snaps[0]).days
            if churn_day[i] < offset:
                continue  # gone before this snapshot
            dtc = churn_day[i] - offset
            rows.append({"customer_id": f"C{i:04d}", "snapshot_date": s, "drops": drops[i], "fee": fee[i],
                         "segment": seg[i], "payment_type": "prepaid", "label_observed_days": observed[s],
                         "days_to_churn": np.floor(dtc) if dtc < observed[s] else np.nan,
                         "label_churn_30d": bool(dtc < observed[s]), "arpu_30d": fee[i],
                         "monthly_fee_total": fee[i]})
    df = pd.DataFrame(rows)
    return FeatureFrame(rows=df, features=FEATS, mode="snapshots", missing_groups=(),
                        loaded_sources=("customers",), data_end=datetime(2026, 10, 28).date(), data_hash="x")


def test_time_split_cuts_training_labels_at_the_test_date():
    frame = synthetic_frame()
    split = plan_split(frame, TrainOptions())
    assert split.kind == "time"
    test_date = pd.Timestamp("2026-10-22")
    assert (split.test_rows["snapshot_date"] == test_date).all()
    tr = split.train.rows
    assert set(tr["snapshot_date"]) == {pd.Timestamp("2026-10-08"), pd.Timestamp("2026-10-15")}
    # A training label is 1 only when the churn happened before the test date.
    cut = (test_date - tr["snapshot_date"]).dt.days.to_numpy()
    known = tr["days_to_churn"].to_numpy(dtype="float64", na_value=np.nan) < cut
    assert np.array_equal(split.train.y.astype(bool), known)
    assert np.array_equal(split.train.days, np.minimum(30, cut))
    # Some churners of the later weeks are negatives in training: their churn was not known yet.
    assert (tr["label_churn_30d"].to_numpy() & ~split.train.y.astype(bool)).any()


def test_customer_split_when_only_one_snapshot_is_labelled():
    frame = synthetic_frame()
    split = plan_split(frame, TrainOptions(min_label_days=15))  # only 2026-10-08 (21 days) qualifies
    assert split.kind == "customers"
    assert not set(split.train.rows["customer_id"]) & set(split.test_rows["customer_id"])
    held = {"C0001", "C0002", "C0003", "C0004"} | set(frame.rows.loc[frame.rows["label_churn_30d"], "customer_id"][:3])
    by_file = plan_split(frame, TrainOptions(min_label_days=15), holdout_ids=held)
    assert by_file.kind == "file" and set(by_file.test_rows["customer_id"]) <= held


def test_no_labelled_snapshot_is_a_model_error():
    with pytest.raises(ModelError, match="observed for 40 days"):
        plan_split(synthetic_frame(), TrainOptions(min_label_days=40))


def test_negative_sampling_keeps_churners_and_weights_back():
    frame = synthetic_frame()
    split = plan_split(frame, TrainOptions(max_train_rows=300))
    ts = split.train
    assert len(ts.rows) < 600 and ts.y.sum() > 0
    assert np.all(ts.weight[ts.y == 1] == 1.0) and np.all(ts.weight[ts.y == 0] > 1.0)


# ------------------------------------------------------------------------------------------ fit, reasons


@pytest.fixture(scope="module")
def small_model():
    frame = synthetic_frame(n_customers=1500)
    split = plan_split(frame, TrainOptions())
    ts = split.train
    model = fit_model(ts.rows, ts.y, ts.days, ts.weight, FEATS, TrainOptions(max_iter=80), log=lambda _m: None)
    return model, split


def test_fitted_model_ranks_and_is_monotone_in_drops(small_model):
    model, split = small_model
    from sklearn.metrics import roc_auc_score

    t = split.test_rows
    truth = roc_auc_score(split.test_y, 2.0 * t["drops"] + 0.04 * t["fee"])  # the hazard's own ranking
    assert roc_auc_score(split.test_y, model.predict(t)) > truth - 0.05
    grid = pd.DataFrame({"drops": np.linspace(0, 6, 50), "fee": 20.0, "segment": "consumer"})
    p = model.predict(grid)
    assert np.all((p >= 0) & (p <= 1)) and np.all(np.diff(p) >= -1e-12)


def test_contributions_are_zero_at_the_reference_and_positive_for_bad_drops(small_model):
    model, _ = small_model
    ref = {k: v for k, v in model.reference.items()}
    rows = pd.DataFrame([ref, {**ref, "drops": ref["drops"] + 4.0}])
    raw, c = contributions(model, rows)
    assert (c.iloc[0] == 0).all()
    assert c.loc[1, "network"] > 0 and c.loc[1, "price"] == 0
    assert raw[1] - raw[0] == pytest.approx(c.loc[1].sum())


def test_tree_by_tree_contributions_equal_the_plain_perturbation(small_model):
    model, split = small_model
    rows = split.test_rows.head(300)
    raw, fast = contributions(model, rows)
    slow = contributions_by_perturbation(model, rows)
    assert np.allclose(raw, model.pipeline.decision_function(rows[model.names]), atol=1e-12)
    assert np.allclose(fast.to_numpy(), slow[fast.columns].to_numpy(), atol=1e-9)


@pytest.mark.parametrize("leaves", [4, 8, 31])
def test_trees_read_as_tables_give_the_models_own_numbers(leaves):
    """Missing values on either side of a split, category sets, odd chunk sizes: the table reading of the
    trees gives the same log-odds and contributions, bit for bit, as scikit-learn's predictor row by row;
    trees too large for a table are read row by row."""
    from models.trees import SMALL_TREE_LEAVES, TreeView, reference_frame

    rng = np.random.default_rng(11)
    n = 3000
    rows = pd.DataFrame({"customer_id": [f"C{i:05d}" for i in range(n)], "drops": rng.gamma(2.0, 0.5, n),
                         "fee": rng.uniform(5, 50, n), "segment": rng.choice(["a", "b", "c", "d"], n)})
    logit = -3.0 + 1.2 * rows["drops"] + 0.03 * rows["fee"] + rows["segment"].map({"a": 0, "b": 1.5, "c": -1, "d": 0.5})
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    rows.loc[rng.random(n) < 0.15, "drops"] = np.nan
    rows.loc[rng.random(n) < 0.05, "segment"] = None
    model = fit_model(rows, y, np.full(n, 30.0), np.ones(n), FEATS,
                      TrainOptions(max_iter=30, max_leaf_nodes=leaves), log=lambda _m: None)
    view = TreeView.of(model)
    trees = [p for (p,) in view.hgb._predictors]
    assert (view.small_trees() is None) == any(t.get_n_leaf_nodes() > SMALL_TREE_LEAVES for t in trees)
    if leaves == 4:
        assert any(len(t.binned_left_cat_bitsets) for t in trees)  # category sets are exercised
        assert view.small_trees() is not None
    X = view.matrix(rows, model.names)
    ref = view.matrix(reference_frame(model.reference, model.features), model.names)
    raw, c = view.contributions(X, ref, chunk=97)
    raw_rows, c_rows = view._contributions_by_row(X, ref, chunk=97)
    assert np.array_equal(raw, raw_rows) and np.array_equal(c.to_numpy(), c_rows.to_numpy())
    assert list(c.columns) == list(c_rows.columns)
    assert np.array_equal(view.raw(X, chunk=97), raw)
    assert np.allclose(raw, model.pipeline.decision_function(rows[model.names]), atol=1e-12)


def test_score_rows_bands_reasons_and_revenue(small_model):
    model, split = small_model
    rows = split.test_rows.head(200).copy()
    scores = score_rows(model, rows, evidence=None, settings=Settings(), model_version="churn-v0001",
                        scored_at=datetime(2026, 10, 29), data_as_of=datetime(2026, 10, 28).date())
    out = scores.frame
    assert out.height == len(rows) and out["customer_id"].is_unique().all()
    assert out["probability"].is_between(0, 1).all()
    assert set(out["risk_band"]) <= {"low", "medium", "high"}
    assert sorted(out["risk_rank"]) == list(range(1, out.height + 1))
    assert scores.high_from == pytest.approx(2 * scores.medium_from)
    top = out.sort("probability").row(-1, named=True)
    assert top["reason_codes"] and len(top["top_reasons"]) == len(top["reason_codes"])
    assert top["reasons_text"] == "; ".join(top["top_reasons"])
    assert top["reason_contributions"] == sorted(top["reason_contributions"], reverse=True)
    assert (out["expected_revenue_at_risk"] <= out["monthly_revenue"] + 1e-9).all()


def test_risk_bands_are_multiples_of_the_mean():
    band, medium, high = risk_bands(np.array([0.01, 0.01, 0.01, 0.05]), multiples=(1.5, 3.0))
    assert medium == pytest.approx(0.03) and high == pytest.approx(0.06)
    assert list(band) == ["low", "low", "low", "medium"]


def test_reason_words_cite_the_customers_numbers():
    w = ReasonWriter({"exp_drop_rate_pct": 0.8, "n_topups_28d": 4}, {"drop_rate_pct": 3.0}, "EUR")
    assert w.write("network", {"drop_days": 4, "drop_cell": "C0012-1"}) == \
        "4 days with dropped calls above 3% on cell C0012-1"
    assert w.write("network", {"drop_days": 4, "drop_cell": "C7", "slow_days": 2, "slow_cell": "C7"}) == \
        "4 days with dropped calls above 3% and 2 with data below 10 Mbit/s on cell C7"
    assert w.write("network", {"exp_drop_rate_pct": 2.4}) == \
        "dropped calls 2.4% on the cells they use (typical 0.8%)"
    assert w.write("bills", {"days_overdue": 45, "n_overdue_bills": 1, "owed": 80.0}) == \
        "bill overdue 45 days, 80.00 EUR owed"
    assert w.write("tickets", {"n_tickets_28d": 3, "n_network_tickets_28d": 2, "n_open_tickets": 1}) == \
        "3 tickets in 28 days (2 about the network), 1 still open"
    assert w.write("topups", {"days_since_last_topup": 21, "mean_days_between_topups": 7}) == \
        "no top-up for 21 days (usually every 7)"
    assert w.write("tenure", {"tenure_days": 45}) == "customer for 45 days only"
    assert w.write("promotion", {"days_since_promotion_ended": 1}) == "a promotion ended 1 day ago"
    assert w.write("price", {"monthly_fee_total": 29.99, "fee_vs_peers": 1.5}) == \
        "pays 29.99 EUR a month, 50% more than similar customers"
    assert w.write("outages", {"n_outages_28d": 2, "outage_minutes_28d": 190.4}) == \
        "lived through 2 outages (190 minutes) in the last 28 days"
    assert w.write("usage", {"usage_trend_ratio": 0.4, "days_since_last_usage": 1}) == \
        "usage down 60% in the last 7 days"
    assert w.write("payment", {"payment_type": "prepaid"}) == "prepaid: no contract holds them"


def test_reason_words_for_many_rows_at_once():
    import polars as pl

    w = ReasonWriter({}, {"drop_rate_pct": 2.0}, "EUR")
    f = pl.DataFrame({"days_overdue": [45, None, 10], "n_overdue_bills": [1, 0, 3], "owed": [80.0, None, 12.5]})
    assert w.texts("bills", f).to_list() == ["bill overdue 45 days, 80.00 EUR owed", "bills paid on time",
                                             "3 bills overdue, the oldest 10 days, 12.50 EUR owed"]
    assert w.texts("network", pl.DataFrame({"x": [1]})).to_list() == ["no network measurements on the cells they use"]


# ------------------------------------------------------------------------------------------ experience


@pytest.fixture
def usage_db():
    con = duckdb.connect()
    con.execute("CREATE SCHEMA marts; CREATE SCHEMA staging")
    con.execute("""CREATE TABLE marts.subscriber_cell_usage AS SELECT * FROM (VALUES
        ('A', 'c1', 'Z1', 0.75, 'Z1', 30, 0.5, 30.0, 99.5, 99.9, 30.0),
        ('A', 'c2', 'Z1', 0.25, 'Z1', 10, 3.0, 30.0, 99.5, 99.9, 30.0),
        ('B', 'c2', 'Z2', 1.0, 'Z2', 5, NULL, 16.0, NULL, NULL, NULL),
        ('C', 'c3', 'Z2', 1.0, 'Z2', 0, NULL, NULL, NULL, NULL, NULL)
      ) t(customer_id, cell_id, zone_id, share_of_events, usage_zone_id, n_events_with_kpi, exp_drop_rate_pct,
          exp_dl_throughput_mbps, exp_accessibility_pct, exp_availability_pct, exp_latency_ms)""")
    con.execute("CREATE TABLE staging.customers AS SELECT * FROM (VALUES ('A', 'Z9'), ('B', NULL), ('C', 'Z2')) "
                "t(customer_id, home_zone_id)")
    yield con
    con.close()


def test_experience_index_weights_cells_by_usage(usage_db):
    out = build(usage_db)
    cust = out["experience_customer"].set_index("customer_id")
    # A: cell c1 scores 100 on every KPI; on c2 drops score 0 (30% weight): 70. Usage 30:10 -> 92.5.
    assert cust.loc["A", "experience_index"] == pytest.approx(92.5)
    assert cust.loc["A", "worst_cell_id"] == "c2" and cust.loc["A", "worst_cell_index"] == pytest.approx(70.0)
    # B: only throughput measured (16 Mbit/s between 2 and 30 -> 50): the weights renormalise to it.
    assert cust.loc["B", "experience_index"] == pytest.approx(50.0)
    assert "C" not in cust.index  # no event with KPIs: no index, never a zero
    # Zones: A lives in Z9, B has no home zone and counts in its usage zone Z2.
    zone = out["experience_zone"].set_index("zone_id")
    assert zone.loc["Z9", "experience_index"] == pytest.approx(92.5)
    assert zone.loc["Z2", "n_customers"] == 1 and zone.loc["Z2", "share_poor"] == 1.0
    assert len(out["experience_formula"]) == 5


def test_experience_weights_from_toml(tmp_path, usage_db):
    (tmp_path / "experience.toml").write_text(
        "[experience]\npoor_below = 80\n[experience.kpis.drop_rate_pct]\nweight = 0\n")
    cfg = load_config(tmp_path)
    assert cfg.poor_below == 80 and cfg.source.endswith("experience.toml")
    cust = build(usage_db, cfg)["experience_customer"].set_index("customer_id")
    assert cust.loc["A", "experience_index"] == pytest.approx(100.0)  # drops no longer count
    assert "0% dropped calls" not in cfg.formula()


@pytest.mark.parametrize("text, message", [
    ("[experience.kpis.jitter_ms]\nweight = 1\n", "jitter_ms"),
    ("[experience.kpis.latency_ms]\nweight = -1\n", "weight of latency_ms"),
    ("[experience.kpis.latency_ms]\nbad = 30\ngood = 30\n", "bad = good"),
    ("[experience]\ncolour = 1\n", "colour"),
    ("[experience\n", "not valid TOML"),
])
def test_experience_config_errors_name_the_file_and_key(tmp_path, text, message):
    (tmp_path / "experience.toml").write_text(text)
    with pytest.raises(ModelError, match=message):
        load_config(tmp_path)


def test_experience_defaults_without_a_file(tmp_path):
    assert load_config(tmp_path) == ExperienceConfig()
    assert KpiScore("latency_ms", "Latency", "ms", 1, 150, 30).sentence().startswith("Latency: 0 at 150 ms")


def test_a_feature_that_gives_the_answer_away_is_reported():
    from models.train import TrainingSet, leak_warnings

    rng = np.random.default_rng(0)
    y = (rng.random(500) < 0.1).astype(int)
    rows = pd.DataFrame({"drops": rng.random(500), "fee": y * 10.0 + rng.random(500)})
    ts = TrainingSet(rows=rows, y=y, days=np.full(500, 30.0), weight=np.ones(500), description="")
    warnings = leak_warnings(ts, FEATS[:2], 0.95)
    assert len(warnings) == 1 and warnings[0].startswith("possible leak: fee alone separates churners")
