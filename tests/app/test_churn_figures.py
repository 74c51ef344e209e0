"""Figures of the churn page: literal frames in, figures out (no Dash, no warehouse)."""

from __future__ import annotations

import polars as pl
import pytest

from app import figures_churn as fc


def test_risk_histogram_stacks_bands_and_marks_their_edges():
    df = pl.DataFrame({"bin_start": [0.0, 0.02, 0.04, 0.06], "bin_end": [0.02, 0.04, 0.06, 0.08],
                       "risk_band": ["low", "medium", "high", "high"], "customers": [900, 60, 20, 5]})
    fig = fc.risk_histogram(df, medium_from=0.03, high_from=0.06)
    names = [t.name for t in fig.data]
    assert names == ["low risk", "medium risk", "high risk"]
    high = fig.data[2]
    assert list(high.y) == [20, 5] and list(high.x) == pytest.approx([5.0, 7.0])  # bin middles in percent
    assert high.marker.color == fc.BAND_COLOURS["high"]
    edges = sorted(s.x0 for s in fig.layout.shapes)
    assert edges == pytest.approx([3.0, 6.0])
    assert fig.layout.barmode == "stack"


def test_risk_histogram_without_band_edges():
    df = pl.DataFrame({"bin_start": [0.0], "bin_end": [0.1], "risk_band": ["low"], "customers": [3]})
    fig = fc.risk_histogram(df, medium_from=None, high_from=float("nan"))
    assert len(fig.data) == 1 and not fig.layout.shapes


def test_drivers_bar_colours_by_side_and_orders_by_mean_rise():
    df = pl.DataFrame({"title": ["price paid", "network experience", "tickets"], "side": ["BSS", "OSS", "BSS"],
                       "mean_rise": [0.4, 0.1, 0.01], "importance": [0.2, 0.05, 0.01], "importance_sd": [0.01, 0.01, 0.0],
                       "share_first_reason": [0.4, 0.1, 0.0], "features": ["fee", "exp_drop_rate_pct", "n"]})
    fig = fc.drivers_bar(df)
    by_side = {t.name: t for t in fig.data}
    assert set(by_side) == {"BSS", "OSS"}
    assert list(by_side["OSS"].y) == ["network experience"]
    assert by_side["OSS"].marker.color == fc.SIDE_COLOURS["OSS"]
    assert list(fig.layout.yaxis.categoryarray) == ["tickets", "network experience", "price paid"]


def _curves() -> pl.DataFrame:
    rows = []
    for model in ("gbm", "logistic"):
        rows += [{"model": model, "curve": "roc", "x": x, "y": min(1.0, x * 2), "n": None} for x in (0, 0.25, 0.5, 1)]
        rows += [{"model": model, "curve": "pr", "x": x, "y": 1 - x / 2, "n": None} for x in (0, 0.5, 1)]
        rows += [{"model": model, "curve": "lift", "x": float(d), "y": 3.0 / d, "n": 10} for d in range(1, 11)]
        rows += [{"model": model, "curve": "reliability", "x": p, "y": p * 1.1, "n": 50} for p in (0.01, 0.05)]
    return pl.DataFrame(rows)


def test_quality_figures_compare_the_model_with_its_baseline():
    c = _curves()
    roc = fc.roc_figure(c, {"gbm": 0.861, "logistic": 0.8})
    assert [t.name for t in roc.data] == ["Gradient boosting, AUC 0.861", "Logistic baseline, AUC 0.800", "chance"]
    pr = fc.pr_figure(c, {"gbm": 0.1, "logistic": None}, base_rate=0.01)
    assert pr.data[1].name == "Logistic baseline, PR AUC"
    assert any("churn rate 1.00%" in a.text for a in pr.layout.annotations)
    lift = fc.lift_figure(c)
    assert len(lift.data) == 2 and list(lift.data[0].x) == [float(d) for d in range(1, 11)]
    rel = fc.reliability_figure(c)
    assert rel.data[-1].name == "perfect calibration"
    assert rel.layout.xaxis.range[1] >= 0.055


def test_quality_figures_with_no_points_are_empty_not_broken():
    empty = pl.DataFrame(schema={"model": pl.String, "curve": pl.String, "x": pl.Float64, "y": pl.Float64,
                                 "n": pl.Int64})
    assert [t.name for t in fc.roc_figure(empty, {}).data] == ["chance"]
    assert len(fc.lift_figure(empty).data) == 0
    assert fc.reliability_figure(empty).data[-1].name == "perfect calibration"
