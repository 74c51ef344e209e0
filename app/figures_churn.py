"""Figures of the churn page as pure functions: frames in, Plotly figures out (no Dash, no warehouse)."""

from __future__ import annotations

import math

import plotly.graph_objects as go
import polars as pl

FONT = {"family": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif", "size": 12}
BAND_COLOURS = {"high": "#e03131", "medium": "#f08c00", "low": "#74c0fc"}
SIDE_COLOURS = {"BSS": "#4263eb", "OSS": "#0ca678"}
MODEL_STYLES = {"gbm": ("Gradient boosting", "#4263eb", "solid"), "logistic": ("Logistic baseline", "#868e96", "dash")}


def _layout(fig: go.Figure, *, height: int, title: str | None = None) -> go.Figure:
    fig.update_layout(height=height, margin={"l": 8, "r": 8, "t": 36 if title else 8, "b": 8}, font=FONT,
                      title={"text": title, "x": 0.01, "font": {"size": 14}} if title else None,
                      paper_bgcolor="white", plot_bgcolor="white",
                      legend={"orientation": "h", "y": -0.2, "x": 0})
    fig.update_xaxes(gridcolor="#eee", zeroline=False)
    fig.update_yaxes(gridcolor="#eee", zeroline=False)
    return fig


def risk_histogram(df: pl.DataFrame, *, medium_from: float | None, high_from: float | None,
                   height: int = 300) -> go.Figure:
    """Customers per churn-probability bin, coloured by risk band, with the band edges marked.

    `df` has bin_start, bin_end, risk_band, customers (app.queries_churn.risk_histogram).
    """
    fig = go.Figure()
    for band in ("low", "medium", "high"):
        part = df.filter(pl.col("risk_band") == band)
        if part.height == 0:
            continue
        mid = ((part["bin_start"] + part["bin_end"]) / 2 * 100).to_list()
        width = ((part["bin_end"] - part["bin_start"]) * 100).to_list()
        fig.add_trace(go.Bar(
            x=mid, y=part["customers"].to_list(), width=width, name=f"{band} risk",
            marker={"color": BAND_COLOURS[band], "line": {"width": 0}},
            customdata=list(zip((part["bin_start"] * 100).to_list(), (part["bin_end"] * 100).to_list())),
            hovertemplate="%{customdata[0]:.1f}-%{customdata[1]:.1f}%: %{y:,} customers<extra>" + band + "</extra>",
        ))
    for edge, label, where in ((medium_from, "medium from", "top left"), (high_from, "high from", "top right")):
        if edge is not None and not math.isnan(edge):
            fig.add_vline(x=edge * 100, line_dash="dot", line_color="#495057",
                          annotation_text=f"{label} {edge * 100:.1f}%", annotation_position=where)
    fig.update_layout(barmode="stack", bargap=0)
    fig.update_xaxes(title="probability of churning within 30 days (%)")
    fig.update_yaxes(title="customers")
    return _layout(fig, height=height)


def drivers_bar(df: pl.DataFrame, *, height: int = 300) -> go.Figure:
    """Drivers ranked by how much they raise the customers' risk on average (mean rise in log-odds over a
    typical customer), coloured by BSS or OSS side; held-out importance and reach on hover."""
    d = df.sort("mean_rise")
    fig = go.Figure()
    for side in ("BSS", "OSS"):
        part = d.filter(pl.col("side") == side)
        if part.height == 0:
            continue
        fig.add_trace(go.Bar(
            x=part["mean_rise"].to_list(), y=part["title"].to_list(), orientation="h", name=side,
            marker={"color": SIDE_COLOURS[side]},
            customdata=list(zip(part["importance"].to_list(), (part["share_first_reason"] * 100).to_list(),
                                part["features"].to_list())),
            hovertemplate="<b>%{y}</b><br>mean rise in log-odds: %{x:.3f}<br>held-out ROC AUC lost when "
                          "shuffled: %{customdata[0]:.3f}<br>first reason for %{customdata[1]:.1f}% of "
                          "customers<br>%{customdata[2]}<extra>" + side + "</extra>",
        ))
    fig.update_yaxes(categoryorder="array", categoryarray=d["title"].to_list())
    fig.update_xaxes(title="mean rise in the log-odds of churning, over a typical customer")
    return _layout(fig, height=height)


def _model_lines(fig: go.Figure, curves: pl.DataFrame, curve: str, hover: str) -> None:
    for model, (label, colour, dash) in MODEL_STYLES.items():
        part = curves.filter((pl.col("model") == model) & (pl.col("curve") == curve)).sort("x")
        if part.height == 0:
            continue
        fig.add_trace(go.Scatter(x=part["x"].to_list(), y=part["y"].to_list(), mode="lines", name=label,
                                 line={"color": colour, "dash": dash, "width": 2}, hovertemplate=hover))


def _label(label: str, value: float | None) -> str:
    return label if value is None else f"{label} {value:.3f}"


def roc_figure(curves: pl.DataFrame, aucs: dict[str, float | None], *, height: int = 300) -> go.Figure:
    fig = go.Figure()
    _model_lines(fig, curves, "roc", "false positives %{x:.1%}, churners found %{y:.1%}<extra></extra>")
    for tr in fig.data:
        key = "gbm" if tr.name == MODEL_STYLES["gbm"][0] else "logistic"
        tr.name = _label(f"{tr.name}, AUC", aucs.get(key))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance", hoverinfo="skip",
                             line={"color": "#ced4da", "dash": "dot", "width": 1}))
    fig.update_xaxes(title="false positive rate", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title="churners found (recall)", range=[0, 1.02], tickformat=".0%")
    return _layout(fig, height=height, title="ROC curve")


def pr_figure(curves: pl.DataFrame, aps: dict[str, float | None], *, base_rate: float | None,
              height: int = 300) -> go.Figure:
    fig = go.Figure()
    _model_lines(fig, curves, "pr", "recall %{x:.1%}, precision %{y:.1%}<extra></extra>")
    for tr in fig.data:
        key = "gbm" if tr.name == MODEL_STYLES["gbm"][0] else "logistic"
        tr.name = _label(f"{tr.name}, PR AUC", aps.get(key))
    if base_rate:
        fig.add_hline(y=base_rate, line_dash="dot", line_color="#adb5bd",
                      annotation_text=f"churn rate {base_rate:.2%}", annotation_position="top right")
    fig.update_xaxes(title="recall", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title="precision", range=[0, 1.02], tickformat=".0%")
    return _layout(fig, height=height, title="Precision and recall")


def lift_figure(curves: pl.DataFrame, *, height: int = 300) -> go.Figure:
    """Churn rate in each decile of predicted risk, as a multiple of the overall rate (decile 1 = riskiest)."""
    fig = go.Figure()
    for model, (label, colour, _dash) in MODEL_STYLES.items():
        part = curves.filter((pl.col("model") == model) & (pl.col("curve") == "lift")).sort("x")
        if part.height == 0:
            continue
        fig.add_trace(go.Bar(x=part["x"].to_list(), y=part["y"].to_list(), name=label, marker={"color": colour},
                             hovertemplate="decile %{x}: %{y:.2f}x the churn rate<extra>" + label + "</extra>"))
    fig.add_hline(y=1, line_dash="dot", line_color="#adb5bd")
    fig.update_layout(barmode="group")
    fig.update_xaxes(title="decile of predicted risk (1 = highest)", dtick=1)
    fig.update_yaxes(title="lift (x the churn rate)")
    return _layout(fig, height=height, title="Lift by decile")


def reliability_figure(curves: pl.DataFrame, *, height: int = 300) -> go.Figure:
    """Observed churn against predicted probability in equal-count bins (the diagonal is perfect)."""
    fig = go.Figure()
    top = 0.0
    for model, (label, colour, dash) in MODEL_STYLES.items():
        part = curves.filter((pl.col("model") == model) & (pl.col("curve") == "reliability")).sort("x")
        if part.height == 0:
            continue
        top = max(top, float(part["x"].max()), float(part["y"].max()))
        fig.add_trace(go.Scatter(
            x=part["x"].to_list(), y=part["y"].to_list(), mode="lines+markers", name=label,
            line={"color": colour, "dash": dash}, customdata=part["n"].to_list(),
            hovertemplate="predicted %{x:.2%}, observed %{y:.2%} (%{customdata:,} customers)<extra></extra>"))
    top = top * 1.05 or 1.0
    fig.add_trace(go.Scatter(x=[0, top], y=[0, top], mode="lines", name="perfect calibration", hoverinfo="skip",
                             line={"color": "#ced4da", "dash": "dot", "width": 1}))
    fig.update_xaxes(title="predicted probability (over the days observed)", tickformat=".1%", range=[0, top])
    fig.update_yaxes(title="observed churn", tickformat=".1%", range=[0, top])
    return _layout(fig, height=height, title="Calibration (reliability)")
