"""Reasons in words: one sentence per reason unit, with the customer's own numbers, for many rows at once.

Which units are a customer's reasons is the model's decision (models/score.py); this module only writes
them, as a person reads them: "4 days with dropped calls above 2% on cell C0012-1", "bill overdue 45
days, 80.00 EUR owed". Sentences are built with Polars expressions over all the customers that need a
unit, so writing a million customers' reasons takes seconds, not minutes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from etl.transforms.marts_customer import LOOKBACK_DAYS
from models.features import REASON_TITLES

#: Network KPIs with bad-day evidence per cell (models/score.py, CELL_EVIDENCE_SQL): days and cell columns.
EVIDENCE_KINDS = (("drop_days", "drop_cell"), ("slow_days", "slow_cell"), ("latency_days", "latency_cell"),
                  ("access_days", "access_cell"))
#: The usage-weighted KPIs, how to print them, and which way is worse (+1: higher is worse).
KPI_WORDS = (("exp_drop_rate_pct", "dropped calls", "%", 1, 1), ("exp_dl_throughput_mbps", "data at", " Mbit/s", 1, -1),
             ("exp_latency_ms", "latency", " ms", 0, 1), ("exp_accessibility_pct", "connections succeed", "%", 2, -1),
             ("exp_availability_pct", "cells available", "%", 2, -1))


def fixed(e: pl.Expr, decimals: int) -> pl.Expr:
    """A number as text with exactly `decimals` decimals (null stays null)."""
    if decimals == 0:
        return e.round(0).cast(pl.Int64).cast(pl.String)
    scale = 10 ** decimals
    scaled = (e * scale).round(0).cast(pl.Int64)
    a = scaled.abs()
    return pl.concat_str([pl.when(scaled < 0).then(pl.lit("-")).otherwise(pl.lit("")),
                          (a // scale).cast(pl.String), pl.lit("."),
                          (a % scale).cast(pl.String).str.zfill(decimals)])


def plural(n: pl.Expr, word: str) -> pl.Expr:
    k = n.round(0).cast(pl.Int64)
    return pl.concat_str([k.cast(pl.String), pl.lit(" " + word),
                          pl.when(k == 1).then(pl.lit("")).otherwise(pl.lit("s"))])


def lit(text: str) -> pl.Expr:
    return pl.lit(text, dtype=pl.String)


def _g(x: float) -> str:
    return f"{x:g}"


class ReasonWriter:
    """Writes reason units as sentences; `texts(unit, frame)` for many rows, `write(unit, row)` for one."""

    def __init__(self, reference: Mapping[str, Any], thresholds: Mapping[str, float], currency: str) -> None:
        self.ref = reference
        self.th = thresholds
        self.cur = currency
        self._cols: set[str] = set()

    # -- helpers -----------------------------------------------------------------------------------

    def typical(self, name: str) -> float | None:
        v = self.ref.get(name)
        try:
            f = float(v)
        except (TypeError, ValueError):
            return None
        return None if np.isnan(f) else f

    def num(self, name: str) -> pl.Expr:
        return pl.col(name).cast(pl.Float64) if name in self._cols else pl.lit(None, dtype=pl.Float64)

    def text(self, name: str) -> pl.Expr:
        return pl.col(name).cast(pl.String) if name in self._cols else pl.lit(None, dtype=pl.String)

    # -- entry points --------------------------------------------------------------------------------

    def texts(self, unit: str, frame: pl.DataFrame) -> pl.Series:
        """The sentence of `unit` for every row of `frame` (a title when the unit has no writer)."""
        self._cols = set(frame.columns)
        if unit == "network":
            return self._network(frame)
        fn = getattr(self, f"_{unit}", None)
        expr = fn() if fn else lit(REASON_TITLES.get(unit, unit))
        return frame.select(expr.fill_null(lit(REASON_TITLES.get(unit, unit))).alias("text"))["text"]

    def write(self, unit: str, row: Mapping[str, Any]) -> str:
        """One customer's sentence (for a page that explains a single score)."""
        frame = pl.DataFrame([{k: v for k, v in row.items()}]) if row else pl.DataFrame({"_": [0]})
        return self.texts(unit, frame)[0]

    # -- units ---------------------------------------------------------------------------------------

    def _network(self, f: pl.DataFrame) -> pl.Series:
        """The KPI with the most bad days on one of their cells (and a second one on the same cell), else the
        KPI furthest from typical."""
        th = self.th
        labels = (f"dropped calls above {_g(th.get('drop_rate_pct', 2.0))}%",
                  f"data below {_g(th.get('dl_throughput_mbps', 10.0))} Mbit/s",
                  f"latency above {_g(th.get('latency_ms', 60.0))} ms", "outages or refused connections")
        n = f.height
        days = np.zeros((n, 4))
        cells = np.full((n, 4), None, dtype=object)
        for k, (dc, cc) in enumerate(EVIDENCE_KINDS):
            if dc in f.columns and cc in f.columns:
                days[:, k] = f[dc].cast(pl.Float64).fill_null(0).to_numpy()
                cells[:, k] = f[cc].cast(pl.String).to_numpy()
        valid = (days > 0) & (cells != None)
        d = np.where(valid, days, -1.0)
        best = d.argmax(axis=1)
        has = d.max(axis=1) > 0
        idx = np.arange(n)
        best_cell = cells[idx, best]
        same = valid & (cells == best_cell[:, None]) & (np.arange(4)[None, :] != best[:, None])
        d2 = np.where(same, days, -1.0)
        second = d2.argmax(axis=1)
        has2 = d2.max(axis=1) > 0
        # Fallback: the KPI furthest from its typical value in the bad direction.
        gaps = np.full((n, len(KPI_WORDS)), -np.inf)
        for k, (col, _w, _u, _d, worse) in enumerate(KPI_WORDS):
            typ = self.typical(col)
            if col in f.columns and typ:
                v = f[col].cast(pl.Float64).to_numpy()
                gaps[:, k] = np.where(np.isnan(v), -np.inf, worse * (v - typ) / abs(typ))
        far = gaps.argmax(axis=1)
        has_kpi = np.isfinite(gaps.max(axis=1))
        g = f.with_columns(
            pl.Series("_has", has), pl.Series("_best", best), pl.Series("_days", days[idx, best]),
            pl.Series("_cell", best_cell.astype(str)), pl.Series("_has2", has2), pl.Series("_second", second),
            pl.Series("_days2", days[idx, second]), pl.Series("_far", far), pl.Series("_has_kpi", has_kpi))
        label = pl.col("_best").replace_strict(list(range(4)), list(labels), return_dtype=pl.String)
        label2 = pl.col("_second").replace_strict(list(range(4)), list(labels), return_dtype=pl.String)
        evidence = pl.concat_str([
            plural(pl.col("_days"), "day"), lit(" with "), label,
            pl.when(pl.col("_has2")).then(pl.concat_str([lit(" and "), fixed(pl.col("_days2"), 0), lit(" with "),
                                                         label2])).otherwise(lit("")),
            lit(" on cell "), pl.col("_cell")])
        fallback = lit("no network measurements on the cells they use")
        for k, (col, words, unit, dec, _worse) in enumerate(KPI_WORDS):
            typ = self.typical(col)
            if typ is None:
                continue
            sentence = pl.concat_str([lit(f"{words} "), fixed(self.num(col), dec), lit(f"{unit} on the cells they use "
                                                                                      f"(typical {typ:.{dec}f}{unit})")])
            fallback = pl.when(pl.col("_has_kpi") & (pl.col("_far") == k)).then(sentence).otherwise(fallback)
        return g.select(pl.when(pl.col("_has")).then(evidence).otherwise(fallback).alias("text"))["text"]

    def _outages(self) -> pl.Expr:
        n, m = self.num("n_outages_28d"), self.num("outage_minutes_28d")
        return pl.when(n > 0).then(pl.concat_str([
            lit("lived through "), plural(n, "outage"), lit(" ("), fixed(m.fill_null(0), 0),
            lit(f" minutes) in the last {LOOKBACK_DAYS} days")])).otherwise(lit("no outage in the last weeks"))

    def _tickets(self) -> pl.Expr:
        n, net = self.num("n_tickets_28d").fill_null(0), self.num("n_network_tickets_28d").fill_null(0)
        bill, open_ = self.num("n_billing_tickets_28d").fill_null(0), self.num("n_open_tickets").fill_null(0)
        bad = self.num("n_tickets_bad_outcome_28d").fill_null(0)
        about_net = pl.when(net > 0).then(pl.concat_str([fixed(net, 0), lit(" about the network")]))
        about_bill = pl.when(bill > 0).then(pl.concat_str([fixed(bill, 0), lit(" about billing")]))
        about = pl.concat_str([about_net, about_bill], separator=", ", ignore_nulls=True)
        head = pl.concat_str([plural(n, "ticket"), lit(f" in {LOOKBACK_DAYS} days"),
                              pl.when(about != "").then(pl.concat_str([lit(" ("), about, lit(")")])).otherwise(lit(""))])
        parts = pl.concat_str([
            head,
            pl.when(open_ > 0).then(pl.concat_str([fixed(open_, 0), lit(" still open")])),
            pl.when(bad > 0).then(pl.concat_str([fixed(bad, 0), lit(" closed without a fix")])),
        ], separator=", ", ignore_nulls=True)
        return pl.when((n > 0) | (open_ > 0) | (bad > 0)).then(parts).otherwise(lit("no recent ticket"))

    def _bills(self) -> pl.Expr:
        days, owed = self.num("days_overdue"), self.num("owed")
        n = self.num("n_overdue_bills").fill_null(0)
        owed_txt = pl.when(owed > 0).then(pl.concat_str([lit(", "), fixed(owed, 2), lit(f" {self.cur} owed")])
                                          ).otherwise(lit(""))
        one = pl.concat_str([lit("bill overdue "), fixed(days, 0), lit(" days"), owed_txt])
        many = pl.concat_str([fixed(n, 0), lit(" bills overdue, the oldest "), fixed(days, 0), lit(" days"), owed_txt])
        counted = pl.concat_str([plural(n, "bill"), lit(" overdue ("), fixed(self.num("overdue_amount").fill_null(0), 2),
                                 lit(f" {self.cur})")])
        return (pl.when(days > 0).then(pl.when(n > 1).then(many).otherwise(one))
                .when(n > 0).then(counted).otherwise(lit("bills paid on time")))

    def _topups(self) -> pl.Expr:
        since, gap = self.num("days_since_last_topup"), self.num("mean_days_between_topups")
        n, amount = self.num("n_topups_28d"), self.num("topup_amount_28d")
        typ_n, typ_amount = self.typical("n_topups_28d"), self.typical("topup_amount_28d")
        usually = pl.when(gap.is_not_null()).then(pl.concat_str([lit(" (usually every "), fixed(gap, 0), lit(")")])
                                                    ).otherwise(lit(""))
        idle = pl.concat_str([lit("no top-up for "), plural(since, "day"), usually])
        expr = (pl.when(since.is_not_null() & (since >= pl.max_horizontal(pl.lit(7.0), 1.5 * gap.fill_null(0))))
                .then(idle).when(n == 0).then(lit(f"no top-up in {LOOKBACK_DAYS} days")))
        if typ_n:
            expr = expr.when(n < typ_n).then(pl.concat_str([
                lit("only "), plural(n, "top-up"), lit(f" in {LOOKBACK_DAYS} days (typical {typ_n:.0f})")]))
        if typ_amount:
            expr = expr.when(amount < typ_amount).then(pl.concat_str([
                lit("topped up "), fixed(amount, 2), lit(f" {self.cur} in {LOOKBACK_DAYS} days (typical "
                                                         f"{typ_amount:.2f})")]))
        last = pl.when(since.is_not_null()).then(pl.concat_str([lit(", the last "), plural(since, "day"), lit(" ago")])
                                                ).otherwise(lit(""))
        return expr.otherwise(pl.concat_str([plural(n.fill_null(0), "top-up"), lit(f" in {LOOKBACK_DAYS} days"), last]))

    def _usage(self) -> pl.Expr:
        trend, idle = self.num("usage_trend_ratio"), self.num("days_since_last_usage")
        arpu = self.num("arpu_30d")
        typ = self.typical("arpu_30d")
        spends = pl.concat_str([lit("spends "), fixed(arpu, 2), lit(f" {self.cur} a month"
                                                                  + (f" (typical {typ:.2f})" if typ else ""))])
        return (pl.when(idle >= 3).then(pl.concat_str([lit("no usage for "), fixed(idle, 0), lit(" days")]))
                .when(trend < 0.8).then(pl.concat_str([lit("usage down "), fixed(100 * (1 - trend), 0),
                                                       lit("% in the last 7 days")]))
                .when(arpu.is_not_null()).then(spends).otherwise(lit("little usage")))

    def _price(self) -> pl.Expr:
        fee, rel = self.num("monthly_fee_total"), self.num("fee_vs_peers")
        tariff = self.text("main_product_offering")
        pays = pl.concat_str([lit("pays "), fixed(fee, 2), lit(f" {self.cur} a month")])
        return (pl.when((fee > 0) & (rel > 1.05)).then(pl.concat_str([
                    pays, lit(", "), fixed(100 * (rel - 1), 0), lit("% more than similar customers")]))
                .when((fee > 0) & tariff.is_not_null()).then(pl.concat_str([
                    lit("tariff "), tariff, lit(" ("), fixed(fee, 2), lit(f" {self.cur} a month)")]))
                .when(fee > 0).then(pays)
                .when(tariff.is_not_null()).then(pl.concat_str([lit("tariff "), tariff]))
                .otherwise(lit("the price of their tariff")))

    def _promotion(self) -> pl.Expr:
        ended, ending = self.num("days_since_promotion_ended"), self.num("days_to_promotion_end")
        disc = self.num("max_discount_pct")
        return (pl.when(ended <= 30).then(pl.concat_str([lit("a promotion ended "), plural(ended, "day"), lit(" ago")]))
                .when((ending <= 30) & (disc > 0)).then(pl.concat_str([fixed(disc, 0), lit("% discount ends in "),
                                                                       plural(ending, "day")]))
                .when(ending <= 30).then(pl.concat_str([lit("a promotion ends in "), plural(ending, "day")]))
                .when(disc > 0).then(pl.concat_str([
                    fixed(disc, 0), lit("% discount in force"),
                    pl.when(ending.is_not_null()).then(pl.concat_str([lit(", ends in "), plural(ending, "day")]))
                    .otherwise(lit(""))]))
                .when(ended.is_not_null()).then(pl.concat_str([lit("no promotion since one ended "),
                                                               plural(ended, "day"), lit(" ago")]))
                .otherwise(lit("no promotion in force")))

    def _tenure(self) -> pl.Expr:
        t = self.num("tenure_days")
        return (pl.when(t < 365).then(pl.concat_str([lit("customer for "), fixed(t, 0), lit(" days only")]))
                .when(t.is_not_null()).then(pl.concat_str([lit("customer for "), fixed(t / 365, 1), lit(" years")]))
                .otherwise(lit("tenure unknown")))

    def _payment(self) -> pl.Expr:
        p = self.text("payment_type")
        return (pl.when(p == "prepaid").then(lit("prepaid: no contract holds them"))
                .when(p == "mixed").then(lit("prepaid and postpaid lines"))
                .when(p.is_not_null()).then(pl.concat_str([p, lit(" payment")]))
                .otherwise(lit("payment type unknown")))

    def _profile(self) -> pl.Expr:
        n, seg = self.num("n_active_subscriptions"), self.text("segment")
        seg_txt = pl.when(seg.is_not_null()).then(pl.concat_str([lit(", "), seg, lit(" segment")])).otherwise(lit(""))
        return (pl.when(n > 1).then(pl.concat_str([fixed(n, 0), lit(" lines"), seg_txt]))
                .when(seg.is_not_null()).then(pl.concat_str([seg, lit(" segment")]))
                .otherwise(lit("their profile")))
