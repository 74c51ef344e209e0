"""The model card: what a churn model is for, what it learnt from, how well it does and where it falls short.

Rendered in Markdown from the manifest the registry signs, so the card and the artifact cannot disagree.
"""

from __future__ import annotations

import math
from typing import Any

from models.features import GROUPS


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c).replace("|", "/") for c in r) + " |" for r in rows]
    return "\n".join(out)


def render(manifest: dict[str, Any]) -> str:
    """The card for one registered model (the manifest as `models.train.run` writes it)."""
    m = manifest
    version = m.get("model_version", "(unregistered)")
    metrics = m.get("metrics", [])
    overall = {r["model"]: r for r in metrics if r.get("slice") == "overall"}
    g, b = overall.get("gbm", {}), overall.get("logistic", {})
    lines = [
        f"# Model card: churn risk {version}",
        "",
        "## What it is for",
        "",
        ("The probability that a customer with an active line terminates a subscription within the next "
        f"{m.get('horizon_days', 30)} days, with the reasons that raise it, so that marketing and care can "
        "reach the customers at risk first. It ranks and explains; it does not decide anything about a "
        "customer on its own."),
        "",
        "## Model",
        "",
        ("- scikit-learn Pipeline: column preparation (ordinal codes for categories, values as they are) and a "
        "HistGradientBoostingClassifier with monotone priors (more drops, tickets, outages or overdue bills "
        "never lower the risk, all else equal)"),
        (f"- probabilities calibrated on held-back scores: P(churn within d days) = 1 - exp(-exp(a s + b) d / 30) "
        f"of the log-odds s (a = {_fmt(m.get('calibrator', {}).get('a'))}, "
        f"b = {_fmt(m.get('calibrator', {}).get('b'))})"),
        "- baseline reported beside it: logistic regression on imputed, log-scaled, standardised features",
        ("- reasons: per customer, the change in log-odds when a group of features is set to its typical value; "
        "the groups that raise the risk most are written with the customer's own numbers"),
        f"- created {m.get('created_at')}, scikit-learn {m.get('sklearn_version')}; packages: "
        + ", ".join(f"{k} {v}" for k, v in sorted(m.get("packages", {}).items())),
        f"- artifact sha256 `{m.get('artifact_sha256', '-')}`",
        "",
        "## Data",
        "",
        (f"- warehouse version {m.get('warehouse_version')} (built from {m.get('based_on')}), data as of "
        f"{m.get('data_as_of')}, data hash `{m.get('data_hash')}`"),
        f"- shape of the data: {m.get('mode')}",
        f"- sources loaded: {', '.join(m.get('loaded_sources', [])) or 'none'}",
        "- feature groups missing (sources not loaded): " + (", ".join(
            f"{x} ({', '.join(GROUPS[x].sources)})" for x in m.get("missing_groups", []) if x in GROUPS) or "none"),
        f"- evaluation: {m.get('split')}",
        (f"- rows: {m.get('n_train', 0):,} to learn from, {m.get('n_test', 0):,} held out, "
        f"{m.get('n_final', 0):,} in the final fit; {m.get('n_scored', 0):,} customers scored"),
        "",
        "## Quality on held-out data",
        "",
        _table(["model", "ROC AUC", "PR AUC", "top-decile recall", "top-decile lift", "Brier", "churn rate", "rows"],
               [[name, _fmt(r.get("roc_auc")), _fmt(r.get("pr_auc")), _fmt(r.get("recall_top_decile"), ".1%"),
                 _fmt(r.get("lift_top_decile"), ".2f"), _fmt(r.get("brier"), ".4f"),
                 _fmt(r.get("base_rate"), ".2%"), _fmt(r.get("n"), ",")]
                for name, r in (("gradient boosting", g), ("logistic baseline", b)) if r]),
        "",
        "### Per segment and payment type (gradient boosting)",
        "",
        _table(["slice", "value", "rows", "churners", "ROC AUC", "PR AUC", "top-decile lift", "Brier"],
               [[r["slice"], r["value"], _fmt(r.get("n"), ","), _fmt(r.get("n_positive"), ","),
                 _fmt(r.get("roc_auc")), _fmt(r.get("pr_auc")), _fmt(r.get("lift_top_decile"), ".2f"),
                 _fmt(r.get("brier"), ".4f")]
                for r in metrics if r.get("model") == "gbm" and r.get("slice") != "overall"]),
        "",
        "A slice with fewer than 20 rows is not reported; a slice without churners has no ROC AUC.",
        "",
        "## Drivers",
        "",
        ("Ranked by how much each raises the customers' log-odds above a typical customer's, on average over "
         "the customers scored; beside it, the ROC AUC lost on held-out data when the driver is shuffled."),
        "",
        _table(["#", "driver", "side", "mean rise (log-odds)", "ROC AUC lost when shuffled", "first reason for",
                "features"],
               [[d.get("rank"), d.get("title"), d.get("side"), _fmt(d.get("mean_rise")), _fmt(d.get("importance")),
                 _fmt(d.get("share_first_reason"), ".1%"), d.get("features")] for d in m.get("drivers", [])]),
        "",
        "## Features",
        "",
        _table(["feature", "group", "kind", "monotone", "typical value", "what it is"],
               [[f["name"], f["group"], f["kind"], {1: "up", -1: "down"}.get(f.get("monotone", 0), ""),
                 _fmt(m.get("reference", {}).get(f["name"]), ".4g"), f["description"]]
                for f in m.get("features", [])]),
        "",
        ("Outcome columns are refused as features by a leak guard; counts over the lookback are scaled to 28 "
        "days when a snapshot had less history loaded."),
        "",
        "## Warnings and notes",
        "",
    ]
    notes = [f"- WARNING: {w}" for w in m.get("warnings", [])] + [f"- {n}" for n in m.get("notes", [])]
    lines += notes or ["- none"]
    lines += [
        "",
        "## Limits",
        "",
        ("- The label is the termination of any of the customer's lines; a customer who moves a line to "
        "another of their own offerings counts as churn when the extract records a termination."),
        ("- Held-out outcomes observed for fewer than 30 days make the Brier score and the reliability curve "
        "rest on few churners; read them with the row counts above."),
        "- Bills carry no payment dates: overdue bills before a snapshot are those still unpaid in the extract.",
        "",
    ]
    return "\n".join(lines)
