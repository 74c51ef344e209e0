"""The churn model and the customer experience index, trained and published by `opencem train`.

Stages: features.py (what the model may learn from, leak guard), train.py (split, fit, calibrate, run),
evaluate.py (held-out metrics and curves), trees.py (contributions tree by tree), score.py (scores,
reasons, tables), reasons.py (reasons in words), registry.py (signed, versioned artifacts under
`WAREHOUSE/models/`), card.py (model card), experience.py (the experience index and its formula).

Tables published in schema `models` of the new warehouse version (a later refresh copies them along
until the next training run; `churn_runs.data_as_of` says which data they were computed on):

| table | one row per | columns that other pages read |
|---|---|---|
| `churn_scores` | active customer at the scoring date | customer_id, probability (30 days), risk_band (low, medium, high), risk_rank, top_reasons (sentences, strongest first), reason_codes, reason_contributions (log-odds), reasons_text, monthly_revenue, expected_revenue_at_risk, segment, payment_type, home_zone_id, model_version, scored_at, data_as_of |
| `churn_metrics` | model (gbm, logistic) x slice (overall, segment, payment_type) | n, n_positive, base_rate, mean_probability, roc_auc, pr_auc, recall_top_decile, lift_top_decile, brier |
| `churn_curves` | model x curve (roc, pr, reliability, lift, gains) x point | x, y, n, threshold |
| `churn_drivers` | reason unit | rank, reason, title, side, features, mean_rise, importance (held-out ROC AUC lost when shuffled), share_first_reason |
| `churn_runs` | training run (kept across runs) | model_version, trained_at, data_as_of, split, missing_groups, warnings, notes, band_medium_from, band_high_from |
| `experience_customer` | customer with KPIs on the cells they used | experience_index (0-100), <kpi>_score, n_cells, worst_cell_id, worst_cell_index, zone_id, is_poor |
| `experience_zone` | zone (where customers live) | experience_index (mean), experience_index_p25, n_customers, share_poor, zone_name, formula |
| `experience_formula` | KPI of the index | weight, bad, good, description, formula, poor_below, source |
"""
