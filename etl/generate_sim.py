"""The synthetic operator's days: hourly KPIs, usage, alarms and outages, tickets, top-ups, churn, bills.

`Simulation` streams one day at a time: it draws the day from its own child generators, writes the
day's five files and keeps only per-subscription and per-cell state (memory grows with customers,
never with days). `etl/generate.py` builds the world, runs the days and writes snapshots and truth.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl

from etl.generate_io import (
    AppendingCsv,
    BackgroundWriter,
    daily_name,
    iso_timestamps,
    render_lines,
)
from etl.generate_world import (
    DATA_MEDIAN_MB,
    DATA_SIGMA,
    NO_END,
    OFFERINGS,
    OOB_DATA_CAP,
    OOB_DATA_MB,
    OOB_SMS,
    OOB_VOICE_MIN,
    PREPAID_DATA_CAP,
    PREPAID_DATA_MB,
    PREPAID_SMS,
    PREPAID_VOICE_MIN,
    ROAMING_DATA_CAP,
    ROAMING_DATA_MB,
    ROAMING_VOICE_MIN,
    SERVICE_P,
    SERVICES,
    VAS_PRICES,
    VOICE_MEDIAN_S,
    VOICE_SIGMA,
    Base,
    City,
    Network,
    expected_event_amount,
    rng_for,
)

DAY_S = 86_400
HOUR_S = 3_600
LOOKBACK_S = 7 * 24 * HOUR_S

# Hour-of-day activity (weekday, weekend) and where people are at each hour.
_ACTIVITY = np.array([
    [0.8, 0.5, 0.35, 0.3, 0.3, 0.5, 1.2, 2.5, 3.8, 4.5, 5.0, 5.3, 5.6, 5.2, 5.0, 5.0, 5.2, 5.8, 6.3, 6.5, 6.2,
     5.2, 3.6, 2.0],
    [1.2, 0.8, 0.5, 0.4, 0.35, 0.4, 0.7, 1.3, 2.4, 3.6, 4.6, 5.2, 5.6, 5.4, 5.2, 5.2, 5.3, 5.6, 6.0, 6.3, 6.2,
     5.5, 4.2, 2.6],
])
HOUR_SHARE = _ACTIVITY / _ACTIVITY.sum(axis=1, keepdims=True)
HOUR_CDF = np.cumsum(HOUR_SHARE, axis=1)
P_HOME = np.array([
    [0.94] * 7 + [0.8, 0.62] + [0.58] * 8 + [0.66, 0.8] + [0.92] * 5,
    [0.95] * 8 + [0.86] * 4 + [0.78] * 8 + [0.9] * 4,
])
P_WORK = 0.8 * (1 - P_HOME)
WEEKEND_ACTIVITY = 0.9
SERVICE_CDF = np.cumsum(SERVICE_P)
UNITS = ("second", "message", "megabyte", "event")

# KPI model: a cell carries at most EFFECTIVE_SHARE of its nominal capacity; load = demand / that.
MEDIAN_BUSY_HOUR_MBPS = 3.0
EFFECTIVE_SHARE = 0.1
NORMAL_LOAD = (0.3, 0.7)
DEGRADED_LOAD = (1.4, 1.9)
MIN_NOMINAL_MBPS = 75.0
DEGRADED_NOMINAL_MBPS = (5.0, 40.0)
DEMAND_FLOOR_MBPS = 0.05

# Planted inconsistencies: expected rows per charging row (or per cell-hour, per alarm).
RATE_UNKNOWN_CELL = 2e-4
RATE_NEGATIVE = 5e-5
RATE_ABSURD = 5e-5
RATE_MALFORMED = 3e-5
RATE_UNPARSEABLE = 3e-5
RATE_DUPLICATE = 5e-5
RATE_MISSING_KPI = 1.5e-4
RATE_UNKNOWN_ALARM = 0.01
BAD_TIMESTAMPS = ("2026-02-30 25:61:00", "2026-13-45T10:00:00", "not-a-date", "2026-10-3X 12:00:00")

AFFECTED_RULE = (
    "customers who had at least one charging event with a cell in the 7 x 24 hours before raised_at, and "
    "for whom the outage site's cells carried more than half of those events (counted over the charging "
    "rows that pass validation, each usage_id once, all of the customer's subscriptions together)"
)


@dataclass(frozen=True)
class ChurnModel:
    """Log-hazard coefficients of the daily churn draw; base hazards are calibrated to the target rate."""

    target_monthly: float = 0.025
    price: float = 1.5
    """x = (monthly fee - the segment's usual fee for the payment type) / usual fee, in [-1, 2]."""
    short_tenure: float = 0.8
    """x = exp(-tenure_days / 180)."""
    tickets: float = 0.45
    """x = tickets in the last weeks (each decays by 7% a day), capped at 3."""
    network: float = 1.0
    """x = 0.75 * home cell + 0.25 * work cell badness (daily: drops above 1%, throughput under 15 Mbit/s,
    outage minutes), smoothed with a 0.75/0.25 exponential average over days."""
    prepaid: float = 0.8
    promotion_ended: float = 0.9
    """x = 1 when the line's promotion ended in the last 30 days."""
    unpaid_bills: float = 0.8
    """x = the customer's overdue bills not settled, capped at 3."""

    def as_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in ("price", "short_tenure", "tickets", "network", "prepaid",
                                               "promotion_ended", "unpaid_bills")}


@dataclass(frozen=True)
class Outage:
    """A planted site outage: a critical service-affecting alarm; its cells carry nothing meanwhile."""

    kind: str
    site: int
    cells: np.ndarray
    start_s: int
    end_s: int | None
    """Seconds from the window start; None while still open at the end of the data."""
    alarm_id: str
    alarm_type: str
    probable_cause: str
    specific_problem: str

    def overlap(self, lo: int, hi: int) -> tuple[int, int] | None:
        end = self.end_s if self.end_s is not None else 1 << 40
        a, b = max(lo, self.start_s), min(hi, end)
        return (a, b) if a < b else None


@dataclass(frozen=True)
class Fault:
    """An ordinary alarm's effect on its cells' KPIs while it lasts."""

    cells: np.ndarray
    start_s: int
    end_s: int
    drop: float
    throughput: float
    access: float
    latency: float


@dataclass
class Planted:
    """Exact counts of the planted inconsistencies, as truth.json reports them."""

    usage_on_unknown_cells: int = 0
    negative_amounts: int = 0
    absurd_amounts: int = 0
    malformed_rows: int = 0
    malformed_by_file: dict[str, int] = field(default_factory=dict)
    unparseable_values: int = 0
    duplicate_usage_records: int = 0
    missing_kpi_hours: int = 0
    alarms_on_unknown_resources: int = 0


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pl.Series:
    """`prefix` + zero-padded numbers, built column-wise."""
    s = pl.Series(numbers.astype(np.int64)).cast(pl.String).str.zfill(width)
    return pl.select(pl.lit(prefix) + s).to_series()


def _dt(start: date, seconds: np.ndarray) -> pl.Series:
    """Timestamps `seconds` after the window start, as ISO text (what the CSV holds)."""
    return iso_timestamps(start, seconds)


def _pick(values: tuple[str, ...], codes: np.ndarray) -> pl.Series:
    return pl.Series(values, dtype=pl.String).gather(pl.Series(codes.astype(np.int64)))


class Simulation:
    """The operator's window, day by day. Call `prepare()`, then `run_day(d)` for each day, then read state."""

    def __init__(self, *, seed: int, start: date, days: int, city: City, net: Network, base: Base, out: Path,
                 compress: bool, log: Callable[[str], None], churn: ChurnModel | None = None) -> None:
        self.seed, self.start, self.days = seed, start, days
        self.city, self.net, self.base = city, net, base
        self.out, self.compress, self.log = out, compress, log
        self.churn = churn or ChurnModel()
        self.start_epoch = calendar.timegm(start.timetuple())
        self.end_date = start + timedelta(days=days - 1)
        self.as_of_s = days * DAY_S - 1
        n, nc = base.n_subs, len(net.cell_ids)
        self.n_cust = len(base.cust_x)
        self.end_day = base.sub_end_day.copy()
        self.reason = base.sub_reason.copy()
        self.cell_is = np.flatnonzero(net.cell_in_service)
        self.ema_bad = np.zeros(nc)
        self.tickets_recent = np.zeros(n, np.float32)
        self.month_charges = np.zeros(n)
        self.unpaid_cust = np.zeros(0, np.int64)
        self.unpaid_due = np.zeros(0, np.int64)
        self.faults: list[Fault] = []
        self.outages: list[Outage] = []
        self.planted = Planted()
        self.rows: dict[str, int] = {s: 0 for s in ("charging", "topups", "tickets", "kpi_hourly", "alarms",
                                                    "bills")}
        self.dup_lines: list[str] = []
        self.writer = BackgroundWriter()
        self.sub_w = max(7, len(str(n + 1000)))
        self.cust_w = max(7, len(str(self.n_cust + 1000)))
        self.usage_w = max(7, len(str(int(n * 12))))
        self.sub_id_series = _ids("S", np.arange(1, n + 1), self.sub_w)
        self.cust_id_series = _ids("CU", np.arange(1, self.n_cust + 1), self.cust_w)
        self.cell_id_ext = pl.Series(list(net.cell_ids) + [None], dtype=pl.String)
        self.offer_rate = np.array([o.rate for o in OFFERINGS])
        self.offer_oob = np.array([o.oob for o in OFFERINGS])
        self.offer_names = tuple(o.name for o in OFFERINGS)
        self.sub_promo_to = np.full(n, NO_END, np.int32)
        self.sub_promo_to[base.promo_sub] = base.promo_to_day
        # Accumulators for truth.
        self.sub_days = np.zeros(2)
        self.charged = np.zeros(2)
        self.recurring = np.zeros(2)
        self.churned = np.zeros(2, np.int64)
        self.at_risk_days = np.zeros(2, np.int64)
        self.churn_by_reason = np.zeros(4, np.int64)
        self.tickets_by_category: dict[str, int] = {}
        self.cell_revenue = np.zeros(nc)
        self.cell_traffic_mb = np.zeros(nc)
        self.outage_tot: list[np.ndarray] = []
        self.outage_on: list[np.ndarray] = []
        self.outage_tickets: list[int] = []

    # ------------------------------------------------------------------------------------- preparing

    def live(self, d: int) -> np.ndarray:
        b = self.base
        return np.flatnonzero((b.sub_start_day <= d) & (d < self.end_day) & ~b.sub_suspended)

    def prepare(self) -> None:
        """Choose degraded zones, dimension cells, plan outages, warm up experience, calibrate churn."""
        live0 = self.live(0)
        self._choose_degraded(live0)
        self._dimension(live0)
        self._plan_outages(live0)
        self.outage_tot = [np.zeros(self.base.n_subs, np.int32) for _ in self.outages]
        self.outage_on = [np.zeros(self.base.n_subs, np.int32) for _ in self.outages]
        self.outage_tickets = [0 for _ in self.outages]
        warm = self._kpi_arrays(rng_for(self.seed, "warmup"), live0, weekend=False,
                                avail=np.ones((len(self.cell_is), 24)), faults=None)
        self.ema_bad[self.cell_is] = warm["badness"]
        self._calibrate_churn(live0)
        self.log(f"planted: degraded zones {[self.city.zone_ids[z] for z in self.degraded_zones]}, "
                 f"{len(self.outages)} site outages ({', '.join(o.kind for o in self.outages)})")
        self.bills = AppendingCsv(self.out / "bills.csv")
        first_month = date(self.start.year, self.start.month, 1)
        for k in (3, 2, 1):
            ps = _add_months(first_month, -k)
            self._bill_period(ps, _add_months(ps, 1) - timedelta(days=1), actual=None)

    def _expected_revenue(self, subs: np.ndarray) -> np.ndarray:
        b = self.base
        per_event = np.array([expected_event_amount(rate=o.rate, postpaid=o.payment_type == "postpaid",
                                                    oob=o.oob) for o in OFFERINGS])
        return b.sub_fee[subs] + 30 * b.sub_lambda[subs] * per_event[b.sub_offer[subs]]

    def _choose_degraded(self, live0: np.ndarray) -> None:
        """2-4 zones among the top-revenue ones (by where customers live) get under-dimensioned cells."""
        rng = rng_for(self.seed, "degraded")
        nz = len(self.city.zone_ids)
        zone_rev = np.bincount(self.base.cust_zone[self.base.sub_cust[live0]],
                               self._expected_revenue(live0), minlength=nz)
        cells_per_zone = np.bincount(self.net.cell_zone[self.cell_is], minlength=nz)
        rank = np.argsort(-zone_rev, kind="stable")
        self.zone_revenue_rank = {int(z): r + 1 for r, z in enumerate(rank)}
        pool = [int(z) for z in rank[: max(6, nz // 4)] if cells_per_zone[z] >= 2]
        k = 2 if nz < 20 else 3 if nz < 200 else 4
        self.degraded_zones = sorted(int(z) for z in rng.choice(pool, size=min(k, len(pool)), replace=False))
        self.net.cell_degraded = np.isin(self.net.cell_zone, self.degraded_zones) & self.net.cell_in_service

    def _weights(self, live: np.ndarray, weekend: bool) -> tuple[np.ndarray, np.ndarray, float]:
        """Expected events per day homed (H) and worked (Wk) on each in-service cell, and their total."""
        b, nc = self.base, len(self.net.cell_ids)
        lam = b.sub_lambda[live] * (WEEKEND_ACTIVITY if weekend else 1.0)
        h = np.bincount(b.sub_home_cell[live], lam, minlength=nc)[self.cell_is]
        w = np.bincount(b.sub_work_cell[live], lam, minlength=nc)[self.cell_is]
        return h, w, float(lam.sum())

    def _events_per_hour(self, live: np.ndarray, weekend: bool) -> np.ndarray:
        h, w, total = self._weights(live, weekend)
        dt = int(weekend)
        share, ph, pw = HOUR_SHARE[dt], P_HOME[dt], P_WORK[dt]
        po = 1 - ph - pw
        return share[None, :] * (ph[None, :] * h[:, None] + pw[None, :] * w[:, None]
                                 + po[None, :] * total * self.other_p[:, None])

    def _dimension(self, live0: np.ndarray) -> None:
        """Capacity per cell from its busy-hour demand: comfortable, except in the degraded zones."""
        rng = rng_for(self.seed, "dimension")
        h, w, _ = self._weights(live0, False)
        pop = h + w + 0.02 * (h + w).mean()
        self.other_p = pop / pop.sum()
        self.other_cdf = np.cumsum(self.other_p)
        eph = self._events_per_hour(live0, False)
        peak = eph.max(axis=1)
        self.mbps_per_event_hour = MEDIAN_BUSY_HOUR_MBPS / float(np.median(peak[peak > 0]))
        busy = self.mbps_per_event_hour * peak + DEMAND_FLOOR_MBPS
        nc = len(self.net.cell_ids)
        deg = self.net.cell_degraded[self.cell_is]
        load = np.where(deg, rng.uniform(*DEGRADED_LOAD, len(busy)), rng.uniform(*NORMAL_LOAD, len(busy)))
        nominal = busy / (load * EFFECTIVE_SHARE)
        nominal = np.where(deg, np.clip(nominal, *DEGRADED_NOMINAL_MBPS), np.clip(nominal, MIN_NOMINAL_MBPS, 5000))
        full = np.full(nc, 700.0)  # planned cells: new 5G carriers
        full[self.cell_is] = np.round(nominal, 1)
        rural = np.array(self.city.zone_types, dtype=object)[self.net.cell_zone] == "rural"
        tech = np.where(full < 42, "3G", np.where(full < 400, "4G", "5G")).astype(object)
        band = np.where(full < 42, 2100, np.where(full < 160, np.where(rural, 800, 1800),
                                                  np.where(full < 400, 2600, 3500)))
        self.net.cell_nominal_mbps, self.net.cell_technology, self.net.cell_band = full, tech, band
        self.latency_base = np.where(tech == "3G", 45.0, np.where(tech == "5G", 12.0, np.where(band == 800, 25.0,
                                                                                             21.0)))

    def _plan_outages(self, live0: np.ndarray) -> None:
        """At least three site outages: one still open at the end, one cleared in the last 72 h, one older."""
        rng = rng_for(self.seed, "outages")
        net, b = self.net, self.base
        homed = np.bincount(net.cell_site[b.sub_home_cell[live0]], minlength=len(net.site_ids))
        ok = (net.site_type == "macro") & net.site_in_service & ~np.isin(net.site_zone, self.degraded_zones) \
            & (homed > 0)
        cand = np.flatnonzero(ok)
        cand = cand[np.argsort(-homed[cand], kind="stable")][: max(6, len(cand) // 2)]
        n_extra = int(len(self.cell_is) / 3 * self.days / 28 / 400)
        kinds = ["open", "recent", "older"] + ["older"] * n_extra
        sites = rng.choice(cand, size=min(len(kinds), len(cand)), replace=False)
        window = self.days * DAY_S
        plans = []
        for kind, site in zip(kinds, sites):
            dur = int(rng.uniform(2, 10) * HOUR_S)
            if kind == "open":
                start = window - int(rng.uniform(3, min(20, max(4, self.days * 12))) * HOUR_S)
                end = None
            elif kind == "recent":
                start = max(HOUR_S, window - int(rng.uniform(36, 66) * HOUR_S))
                dur = min(int(rng.uniform(2, 8) * HOUR_S), window - start - HOUR_S)
                end = start + dur
            else:
                hi = window - 73 * HOUR_S - dur
                lo = max(6 * HOUR_S, min(LOOKBACK_S, hi - 48 * HOUR_S))
                start = int(rng.uniform(lo, max(hi, lo + 1)))
                end = min(start + dur, window - HOUR_S)
            start = max(0, min(start, window - 2 * HOUR_S))
            plans.append((start, kind, int(site), end))
        plans.sort()
        causes = (("equipmentAlarm", "powerProblem", "Mains failure, battery exhausted"),
                  ("communicationsAlarm", "transmissionError", "Backhaul link down"),
                  ("equipmentAlarm", "equipmentMalfunction", "Baseband unit failure"))
        per_day: dict[int, int] = {}
        for start, kind, site, end in plans:
            d = start // DAY_S
            k = per_day.get(d, 0)
            per_day[d] = k + 1
            token = (self.start + timedelta(days=d)).strftime("%Y%m%d")
            atype, cause, problem = causes[int(rng.integers(0, len(causes)))]
            cells = np.arange(net.site_first_cell[site], net.site_first_cell[site] + net.site_n_cells[site])
            self.outages.append(Outage(kind=kind, site=site, cells=cells, start_s=start, end_s=end,
                                       alarm_id=f"A{token}{k:05d}", alarm_type=atype, probable_cause=cause,
                                       specific_problem=problem))
        self.outage_sites = np.array([o.site for o in self.outages])

    def _calibrate_churn(self, live0: np.ndarray) -> None:
        x = self._churn_covariates(0, live0)
        rel = np.exp(self._log_relative_hazard(x))
        self.churn_base = self.churn.target_monthly / 30 / float(rel.mean()) if len(rel) else 0.0

    # ------------------------------------------------------------------------------------------ KPIs

    def _avail(self, d: int) -> tuple[np.ndarray, np.ndarray]:
        """Available fraction per (in-service cell, hour) and the first unavailable second per cell today."""
        nci = len(self.cell_is)
        avail = np.ones((nci, 24))
        first_down = np.full(len(self.net.cell_ids), -1, np.int64)
        pos = np.full(len(self.net.cell_ids), -1)
        pos[self.cell_is] = np.arange(nci)
        for o in self.outages:
            for hr in range(24):
                lo = d * DAY_S + hr * HOUR_S
                ov = o.overlap(lo, lo + HOUR_S)
                if ov:
                    avail[pos[o.cells], hr] -= (ov[1] - ov[0]) / HOUR_S
                    fresh = first_down[o.cells] < 0
                    first_down[o.cells[fresh]] = ov[0]
        return np.clip(avail, 0, 1), first_down

    def _kpi_arrays(self, rng: np.random.Generator, live: np.ndarray, *, weekend: bool, avail: np.ndarray,
                    faults: list[Fault] | None, d: int = 0) -> dict[str, np.ndarray]:
        """Hourly KPIs and 3GPP counters for every in-service cell, from load against capacity."""
        nci = len(self.cell_is)
        eph = self._events_per_hour(live, weekend)
        demand = self.mbps_per_event_hour * eph * rng.lognormal(0, 0.08, (nci, 1)) \
            * rng.lognormal(0, 0.12, (nci, 24)) + DEMAND_FLOOR_MBPS
        mult = {k: np.ones((nci, 24)) for k in ("drop", "throughput", "latency")}
        access = np.zeros((nci, 24))
        if faults:
            pos = np.full(len(self.net.cell_ids), -1)
            pos[self.cell_is] = np.arange(nci)
            for f in faults:
                rows = pos[f.cells]
                rows = rows[rows >= 0]
                for hr in range(24):
                    lo = d * DAY_S + hr * HOUR_S
                    if f.start_s < lo + HOUR_S and f.end_s > lo:
                        mult["drop"][rows, hr] *= f.drop
                        mult["throughput"][rows, hr] *= f.throughput
                        mult["latency"][rows, hr] *= f.latency
                        access[rows, hr] += f.access
        nominal = self.net.cell_nominal_mbps[self.cell_is][:, None]
        c_eff = EFFECTIVE_SHARE * nominal
        rho = demand / c_eff
        u = np.clip(0.03 + 0.96 * (1 - np.exp(-1.5 * rho**1.3)) + rng.normal(0, 0.015, (nci, 24)), 0.005, 0.995)
        served = c_eff * np.tanh(rho)
        volume = np.round(served * HOUR_S * avail / 8, 3)
        up = avail > 0
        volume = np.where(up, np.maximum(volume, 0.001), 0.0)
        t_model = np.minimum(0.35 * nominal, 300) * (1 - 0.8 * u**2) * mult["throughput"]
        active = np.round(np.minimum(volume * 8 / np.maximum(t_model, 1e-3), HOUR_S * avail), 1)
        active = np.where(up, np.maximum(active, 0.1), 0.0)
        throughput = np.where(up, np.round(volume * 8 / np.where(up, active, 1), 4), np.nan)
        latency = np.where(up, np.round(self.latency_base[self.cell_is][:, None] * (1 + 3 * u**4)
                                        * mult["latency"] * rng.lognormal(0, 0.05, (nci, 24)), 1), np.nan)
        prb = np.round(100 * u * avail, 2)
        att = rng.poisson((150 * served + 20) * avail)
        p_rrc = np.clip(0.002 + 0.03 * u**4 + access, 0, 0.9)
        rrc_succ = rng.binomial(att, 1 - p_rrc)
        erab_att = rrc_succ + rng.binomial(rrc_succ, 0.15)
        erab_succ = rng.binomial(erab_att, 1 - np.clip(0.001 + 0.015 * u**4 + access / 2, 0, 0.9))
        p_drop = np.clip((0.004 + 0.04 * u**4) * mult["drop"], 0, 0.5)
        abnormal = rng.binomial(erab_succ, p_drop)
        with np.errstate(invalid="ignore", divide="ignore"):
            accessibility = np.where((att > 0) & (erab_att > 0),
                                     np.round(100 * rrc_succ / att * erab_succ / np.maximum(erab_att, 1), 4), 0.0)
            drop = np.where(erab_succ > 0, np.round(100 * abnormal / np.maximum(erab_succ, 1), 4), 0.0)
        unavailable = np.round(HOUR_S * (1 - avail), 1)
        availability = np.round(100 * (HOUR_S - unavailable) / HOUR_S, 4)
        voice = np.round(served * 0.9 * avail * rng.lognormal(0, 0.1, (nci, 24)), 3)
        # Daily experience per cell (feeds tickets and churn): drops, throughput, outage minutes.
        rel = erab_succ.sum(axis=1)
        drop_day = np.where(rel > 0, 100 * abnormal.sum(axis=1) / np.maximum(rel, 1), 0.0)
        act = active.sum(axis=1)
        tput_day = np.where(act > 0, volume.sum(axis=1) * 8 / np.maximum(act, 1e-9), 0.0)
        out_min = unavailable.sum(axis=1) / 60
        badness = (np.clip((drop_day - 1.0) / 1.5, 0, 2) + np.clip((15 - tput_day) / 10, 0, 1.5)
                   + np.clip(out_min / 120, 0, 3))
        return {
            "availability_pct": availability, "accessibility_pct": accessibility, "drop_rate_pct": drop,
            "dl_throughput_mbps": throughput, "latency_ms": latency, "prb_utilisation_pct": prb,
            "traffic_volume_mb": volume, "voice_traffic_erl": voice, "unavailable_time_s": unavailable,
            "rrc_setup_attempts": att, "rrc_setup_successes": rrc_succ, "erab_setup_attempts": erab_att,
            "erab_setup_successes": erab_succ, "erab_releases": erab_succ, "erab_abnormal_releases": abnormal,
            "dl_active_time_s": active, "badness": badness, "outage_s": unavailable.sum(axis=1),
        }

    def _kpi_day(self, d: int, live: np.ndarray, weekend: bool, token: str) -> dict[str, np.ndarray]:
        rng = rng_for(self.seed, "kpi", d)
        avail, first_down = self._avail(d)
        k = self._kpi_arrays(rng, live, weekend=weekend, avail=avail, faults=self.faults, d=d)
        nci = len(self.cell_is)
        # Planted: cell-hours left out of the export, never while an outage holds the cell.
        prng = rng_for(self.seed, "plant-kpi", d)
        eligible = np.flatnonzero((avail >= 1).T.ravel())  # hour-major order, like the file
        n_missing = min(len(eligible), int(prng.poisson(RATE_MISSING_KPI * nci * 24)) + (d == 0))
        drop_rows = prng.choice(eligible, size=n_missing, replace=False) if n_missing else np.zeros(0, np.int64)
        keep = np.ones(nci * 24, bool)
        keep[drop_rows] = False
        self.planted.missing_kpi_hours += int(n_missing)
        hours = np.repeat(np.arange(24), nci)
        cells = np.tile(self.cell_is, 24)
        cols: dict[str, pl.Series] = {
            "cell_id": self.cell_id_ext.gather(pl.Series(cells[keep])),
            "period_start": _dt(self.start, (d * DAY_S + hours * HOUR_S)[keep]),
        }
        ints = {"rrc_setup_attempts", "rrc_setup_successes", "erab_setup_attempts", "erab_setup_successes",
                "erab_releases", "erab_abnormal_releases"}
        for name in ("availability_pct", "accessibility_pct", "drop_rate_pct", "dl_throughput_mbps", "latency_ms",
                     "prb_utilisation_pct", "traffic_volume_mb", "voice_traffic_erl", "unavailable_time_s",
                     "rrc_setup_attempts", "rrc_setup_successes", "erab_setup_attempts", "erab_setup_successes",
                     "erab_releases", "erab_abnormal_releases", "dl_active_time_s"):
            v = k[name].T.ravel()[keep]
            cols[name] = pl.Series(v.astype(np.int64)) if name in ints else pl.Series(v, nan_to_null=True)
        df = pl.DataFrame(cols)
        self.rows["kpi_hourly"] += self.writer.submit(self.out / daily_name("kpi_hourly", token, compress=self.compress),
                                                  df, compress=self.compress)
        full_bad = np.zeros(len(self.net.cell_ids))
        full_bad[self.cell_is] = k["badness"]
        out_s = np.zeros(len(self.net.cell_ids))
        out_s[self.cell_is] = k["outage_s"]
        self.cell_traffic_mb[self.cell_is] += k["traffic_volume_mb"].sum(axis=1)
        return {"badness": full_bad, "outage_s": out_s, "first_down": first_down}

    # ----------------------------------------------------------------------------------------- usage

    def _rate(self, rng: np.random.Generator, sub: np.ndarray, svc: np.ndarray) -> tuple[np.ndarray, ...]:
        """Quantity, unit and rated amount per event: prepaid always charged, postpaid mostly in bundle."""
        b, n = self.base, len(sub)
        qty = np.ones(n)
        unit = np.full(n, 3, np.int8)
        roam = svc == 3
        roam_voice = roam & (rng.random(n) < 0.5)
        secs = (svc == 0) | roam_voice
        mbs = (svc == 2) | (roam & ~roam_voice)
        qty[secs] = np.clip(np.round(rng.lognormal(math.log(VOICE_MEDIAN_S), VOICE_SIGMA, secs.sum())), 1, 7200)
        qty[mbs] = np.clip(np.round(rng.lognormal(math.log(DATA_MEDIAN_MB), DATA_SIGMA, mbs.sum()), 3), 0.01, 20000)
        unit[secs], unit[svc == 1], unit[mbs] = 0, 1, 2
        offer = b.sub_offer[sub]
        prepaid = b.sub_pay[sub] == 0
        rate = self.offer_rate[offer]
        oob = rng.random(n) < self.offer_oob[offer]
        amount = np.zeros(n)
        v, s, dta = svc == 0, svc == 1, svc == 2
        amount = np.where(v & prepaid, PREPAID_VOICE_MIN * rate * qty / 60, amount)
        amount = np.where(s & prepaid, PREPAID_SMS * rate, amount)
        amount = np.where(dta & prepaid, np.minimum(PREPAID_DATA_CAP, PREPAID_DATA_MB * rate * qty), amount)
        amount = np.where(v & ~prepaid & oob, OOB_VOICE_MIN * qty / 60, amount)
        amount = np.where(s & ~prepaid & oob, OOB_SMS, amount)
        amount = np.where(dta & ~prepaid & oob, np.minimum(OOB_DATA_CAP, OOB_DATA_MB * qty), amount)
        amount = np.where(roam_voice, ROAMING_VOICE_MIN * qty / 60, amount)
        amount = np.where(roam & ~roam_voice, np.minimum(ROAMING_DATA_CAP, ROAMING_DATA_MB * qty), amount)
        vas = svc == 4
        amount[vas] = np.asarray(VAS_PRICES)[rng.integers(0, len(VAS_PRICES), vas.sum())]
        amount = np.round(amount, 4)
        amount = np.where(prepaid, np.maximum(amount, 0.001), amount)
        return qty, unit, amount

    def _usage_day(self, d: int, live: np.ndarray, weekend: bool, token: str) -> None:
        b, net = self.base, self.net
        rng = rng_for(self.seed, "usage", d)
        dt = int(weekend)
        lam = b.sub_lambda[live] * (WEEKEND_ACTIVITY if weekend else 1.0)
        sub = np.repeat(live, rng.poisson(lam)).astype(np.int64)
        n = len(sub)
        hour = np.searchsorted(HOUR_CDF[dt], rng.random(n) * HOUR_CDF[dt][-1], side="right")
        t = d * DAY_S + hour * HOUR_S + rng.integers(0, HOUR_S, n)
        u = rng.random(n)
        ph, pw = P_HOME[dt][hour], P_WORK[dt][hour]
        cell = np.where(u < ph, b.sub_home_cell[sub], b.sub_work_cell[sub]).astype(np.int64)
        other = u >= ph + pw
        cell[other] = self.cell_is[np.minimum(np.searchsorted(self.other_cdf, rng.random(other.sum()) *
                                                              self.other_cdf[-1]), len(self.cell_is) - 1)]
        svc = np.searchsorted(SERVICE_CDF, rng.random(n) * SERVICE_CDF[-1], side="right").astype(np.int8)
        cell[svc == 3] = -1
        qty, unit, amount = self._rate(rng, sub, svc)
        # Prepaid bundles renew monthly from the balance: a vas charge on the home cell at night.
        dom = (self.start + timedelta(days=d)).day
        renew = live[(b.sub_pay[live] == 0) & (b.sub_fee[live] > 0) & (b.sub_renew_dom[live] == dom)]
        if len(renew):
            sub = np.concatenate([sub, renew])
            t = np.concatenate([t, d * DAY_S + 2 * HOUR_S + rng.integers(0, HOUR_S, len(renew))])
            cell = np.concatenate([cell, b.sub_home_cell[renew].astype(np.int64)])
            svc = np.concatenate([svc, np.full(len(renew), 4, np.int8)])
            qty = np.concatenate([qty, np.ones(len(renew))])
            unit = np.concatenate([unit, np.full(len(renew), 3, np.int8)])
            amount = np.concatenate([amount, b.sub_fee[renew]])
        # Outages: the site's cells carry nothing while down.
        keep = np.ones(len(sub), bool)
        for o in self.outages:
            if o.overlap(d * DAY_S, (d + 1) * DAY_S):
                end = o.end_s if o.end_s is not None else 1 << 40
                keep &= ~(np.isin(cell, o.cells) & (t >= o.start_s) & (t < end))
        order = np.flatnonzero(keep)
        order = order[np.argsort(t[order] * b.n_subs + sub[order], kind="stable")]  # by time, then line
        sub, t, cell, svc, qty, unit, amount = (a[order] for a in (sub, t, cell, svc, qty, unit, amount))
        n = len(sub)
        # Truth accumulators: outage look-back, revenue, postpaid charges for the month's bill.
        for k, o in enumerate(self.outages):
            lo, hi = o.start_s - LOOKBACK_S, o.start_s
            if lo < (d + 1) * DAY_S and hi > d * DAY_S:
                m = (cell >= 0) & (t >= lo) & (t < hi)
                self.outage_tot[k] += np.bincount(sub[m], minlength=b.n_subs).astype(np.int32)
                m &= np.isin(cell, o.cells)
                self.outage_on[k] += np.bincount(sub[m], minlength=b.n_subs).astype(np.int32)
        pay = b.sub_pay[sub]
        self.charged += np.bincount(pay, amount, minlength=2)
        self.month_charges += np.bincount(sub[pay == 1], amount[pay == 1], minlength=b.n_subs)
        on_cell = cell >= 0
        self.cell_revenue += np.bincount(cell[on_cell], amount[on_cell], minlength=len(net.cell_ids))

        billed_today = self._billed(d)
        df = pl.DataFrame({
            "usage_id": _ids(f"U{token}", np.arange(n), self.usage_w),
            "subscription_id": self.sub_id_series.gather(pl.Series(sub)),
            "usage_at": _dt(self.start, t),
            "service": _pick(SERVICES, svc),
            "cell_id": self.cell_id_ext.gather(pl.Series(np.where(cell < 0, len(net.cell_ids), cell))),
            "quantity": pl.Series(qty),
            "unit": _pick(UNITS, unit),
            "amount": pl.Series(amount),
            "currency": pl.Series(["EUR"]).extend_constant("EUR", n - 1) if n else pl.Series([], dtype=pl.String),
            "payment_type": _pick(("prepaid", "postpaid"), pay),
            "is_billed": pl.Series((pay == 0) | billed_today, dtype=pl.Boolean),
        })
        inserts = self._planted_charging(d, token, live, df, t)
        inserts += [(df.height, line) for line in self._pick_duplicates(d, df)]
        name = daily_name("charging", token, compress=self.compress)
        self.rows["charging"] += self.writer.submit(self.out / name, df, compress=self.compress, inserts=inserts)

    def _billed(self, d: int) -> bool:
        """Postpaid usage is on a bill once its month's bill (dated the 1st of the next month) is out."""
        day = self.start + timedelta(days=d)
        return _add_months(date(day.year, day.month, 1), 1) <= self.end_date

    def _safe_cells(self) -> np.ndarray:
        """In-service cells on sites no outage touches: planted rows never sit in an outage."""
        return self.cell_is[~np.isin(self.net.cell_site[self.cell_is], self.outage_sites)]

    def _planted_charging(self, d: int, token: str, live: np.ndarray, df: pl.DataFrame,
                          t_sorted: np.ndarray) -> list[tuple[int, str]]:
        """Extra rows with exactly one problem each, placed where their time falls in the file."""
        rng = rng_for(self.seed, "plant-charging", d)
        n = df.height
        first = d == 0
        counts = {
            "unknown": int(rng.poisson(RATE_UNKNOWN_CELL * n)) + first,
            "negative": int(rng.poisson(RATE_NEGATIVE * n)) + first,
            "absurd": int(rng.poisson(RATE_ABSURD * n)) + first,
            "unparseable": int(rng.poisson(RATE_UNPARSEABLE * n)) + first,
            "malformed": int(rng.poisson(RATE_MALFORMED * n)) + first,
        }
        total = sum(counts.values())
        if total == 0 or len(live) == 0:
            return self._duplicate_inserts(rng, n)
        kinds = np.repeat(np.arange(5), list(counts.values()))
        sub = rng.choice(live, size=total)
        t = d * DAY_S + rng.integers(0, DAY_S, total)
        order = np.argsort(t, kind="stable")
        kinds, sub, t = kinds[order], sub[order], t[order]
        svc = np.where(rng.random(total) < 0.5, 0, 2).astype(np.int8)
        qty, unit, amount = self._rate(rng, sub, svc)
        safe = self._safe_cells()
        cell_ids = self.net.cell_ids[rng.choice(safe, size=total)].astype(object)
        n_sites = len(self.net.site_ids)
        width = max(4, len(str(n_sites)))
        unknown = kinds == 0
        new_sites = n_sites + 1 + rng.integers(0, max(10, n_sites // 10), unknown.sum())
        cell_ids[unknown] = [f"C{s:0{width}d}-{1 + int(k)}" for s, k in zip(new_sites, rng.integers(0, 3,
                                                                                                   unknown.sum()))]
        amount = np.where(kinds == 1, -np.round(rng.uniform(0.01, 50, total), 2), amount)
        amount = np.where(kinds == 2, np.round(rng.uniform(1500, 250_000, total), 2), amount)
        pay = self.base.sub_pay[sub]
        extra = pl.DataFrame({
            "usage_id": _ids(f"U{token}", np.arange(n, n + total), self.usage_w),
            "subscription_id": self.sub_id_series.gather(pl.Series(sub)),
            "usage_at": _dt(self.start, t),
            "service": _pick(SERVICES, svc),
            "cell_id": pl.Series(cell_ids.tolist(), dtype=pl.String),
            "quantity": pl.Series(qty),
            "unit": _pick(UNITS, unit),
            "amount": pl.Series(amount),
            "currency": pl.Series(["EUR"] * total),
            "payment_type": _pick(("prepaid", "postpaid"), pay),
            "is_billed": pl.Series((pay == 0) | self._billed(d), dtype=pl.Boolean),
        })
        lines = render_lines(extra)
        bad_ts = rng.integers(0, len(BAD_TIMESTAMPS), total)
        drop_field = rng.random(total) < 0.5
        out = []
        name = daily_name("charging", token, compress=self.compress)
        for i, line in enumerate(lines):
            kind = kinds[i]
            if kind == 3:
                fields = line.split(",")
                fields[2] = BAD_TIMESTAMPS[bad_ts[i]]
                line = ",".join(fields)
            elif kind == 4:
                fields = line.split(",")
                line = ",".join(fields[:-1]) if drop_field[i] else line + ",EXTRA"
            out.append((int(np.searchsorted(t_sorted, t[i], side="right")), line))
        p = self.planted
        p.usage_on_unknown_cells += counts["unknown"]
        p.negative_amounts += counts["negative"]
        p.absurd_amounts += counts["absurd"]
        p.unparseable_values += counts["unparseable"]
        p.malformed_rows += counts["malformed"]
        if counts["malformed"]:
            p.malformed_by_file[name] = counts["malformed"]
        return out + self._duplicate_inserts(rng, n)

    def _duplicate_inserts(self, rng: np.random.Generator, n: int) -> list[tuple[int, str]]:
        lines, self.dup_lines = self.dup_lines, []
        self.planted.duplicate_usage_records += len(lines)
        return [(int(p), line) for p, line in zip(rng.integers(0, n + 1, len(lines)), lines)]

    def _pick_duplicates(self, d: int, df: pl.DataFrame) -> list[str]:
        """Rows of today that the next day's file repeats exactly (the same usage_id in a later file).

        A one-day window has no later file: the copies then go at the end of the same file (returned).
        """
        nxt = d + 1
        if df.height == 0 or (nxt >= self.days and self.days > 1):
            return []
        rng = rng_for(self.seed, "plant-duplicates", nxt)
        k = min(df.height, int(rng.poisson(RATE_DUPLICATE * df.height)) + (nxt == 1))
        idx = np.sort(rng.choice(df.height, size=k, replace=False))
        lines = render_lines(df[pl.Series(idx)])
        if self.days == 1:
            self.planted.duplicate_usage_records += len(lines)
            return lines
        self.dup_lines = lines
        return []

    # ----------------------------------------------------------------------------------------- churn

    def _unpaid_count(self, d: int) -> np.ndarray:
        """Overdue bills not settled, per customer, as they stand on day d."""
        m = self.unpaid_due < d
        return np.bincount(self.unpaid_cust[m], minlength=self.n_cust)

    def _churn_covariates(self, d: int, subs: np.ndarray) -> dict[str, np.ndarray]:
        b = self.base
        promo_to = self.sub_promo_to[subs].astype(np.int64)
        return {
            "price": b.sub_price_index[subs],
            "short_tenure": np.exp(-(d - b.sub_start_day[subs]) / 180),
            "tickets": np.minimum(self.tickets_recent[subs], 3).astype(float),
            "network": 0.75 * self.ema_bad[b.sub_home_cell[subs]] + 0.25 * self.ema_bad[b.sub_work_cell[subs]],
            "prepaid": (b.sub_pay[subs] == 0).astype(float),
            "promotion_ended": ((promo_to < d) & (d - promo_to <= 30)).astype(float),
            "unpaid_bills": np.minimum(self._unpaid_count(d)[b.sub_cust[subs]], 3).astype(float),
        }

    def _log_relative_hazard(self, x: dict[str, np.ndarray]) -> np.ndarray:
        return sum(coef * x[k] for k, coef in self.churn.as_dict().items())

    def _churn_day(self, d: int) -> None:
        """Terminate lines by a daily hazard: price, tenure, tickets, network, prepaid, promotion, bills."""
        rng = rng_for(self.seed, "churn", d)
        b = self.base
        cand = self.live(d)
        cand = cand[b.sub_start_day[cand] < d]
        if not len(cand):
            return
        x = self._churn_covariates(d, cand)
        hazard = self.churn_base * np.exp(self._log_relative_hazard(x))
        self.at_risk_days += np.bincount(b.sub_pay[cand], minlength=2)
        hit = rng.random(len(cand)) < hazard
        gone = cand[hit]
        r = rng.random(len(gone))
        reason = np.where((x["unpaid_bills"][hit] >= 1) & (r < 0.6), 2, np.where(r > 0.96, 3, 1)).astype(np.int8)
        self.end_day[gone] = d
        self.reason[gone] = reason
        self.churned += np.bincount(b.sub_pay[gone], minlength=2)
        self.churn_by_reason += np.bincount(reason, minlength=4)

    # --------------------------------------------------------------------------------------- tickets

    def _tickets_day(self, d: int, live: np.ndarray, kpi: dict[str, np.ndarray], token: str) -> None:
        """Tickets follow bad experience on the home cell (and outages), plus billing and device ones."""
        rng = rng_for(self.seed, "tickets", d)
        b = self.base
        home, work = b.sub_home_cell[live], b.sub_work_cell[live]
        out_h = kpi["outage_s"][home] / HOUR_S
        unpaid = self._unpaid_count(d)[b.sub_cust[live]]
        n = len(live)
        comps = np.stack([
            0.15 * np.minimum(1.0, out_h / 2),
            0.0003 + 0.0025 * kpi["badness"][home] + 0.001 * kpi["badness"][work],
            0.0004 + 0.0004 * (b.sub_pay[live] == 1) + 0.004 * np.minimum(unpaid, 2),
            np.full(n, 0.0003), np.full(n, 0.0003), np.full(n, 0.0001),
        ])
        u = rng.random(n) * 1.0
        idx = np.flatnonzero(u < comps.sum(axis=0))
        comp = (u[idx][None, :] >= np.cumsum(comps[:, idx], axis=0)).sum(axis=0)
        k = len(idx)
        subs = live[idx]
        cell = b.sub_home_cell[subs]
        # Components map onto TICKET_CATEGORIES; 30% of quality complaints are filed as coverage.
        category = np.where((comp == 1) & (rng.random(k) < 0.3), 0, comp)
        hour = np.searchsorted(HOUR_CDF[0], rng.random(k) * HOUR_CDF[0][-1], side="right")
        created = d * DAY_S + hour * HOUR_S + rng.integers(0, HOUR_S, k)
        down = kpi["first_down"][cell]
        outage_t = np.clip(down + rng.integers(300, 3 * HOUR_S, k), d * DAY_S, (d + 1) * DAY_S - 1)
        created = np.where(comp == 0, outage_t, created)
        median_h = np.array([20.0, 20.0, 8.0, 30.0, 12.0, 12.0])[category]
        resolved = created + np.round(rng.lognormal(np.log(median_h * HOUR_S), 1.0)).astype(np.int64)
        # Outage tickets resolve after the site is back; open outages keep their tickets open.
        outage_end = np.full(len(self.net.cell_ids), -1, np.int64)
        for j, o in enumerate(self.outages):
            outage_end[o.cells] = o.end_s if o.end_s is not None else 1 << 40
            self.outage_tickets[j] += int(((comp == 0) & np.isin(cell, o.cells)).sum())
        after = np.maximum(created, outage_end[cell]) + (rng.uniform(0.5, 8, k) * HOUR_S).astype(np.int64)
        resolved = np.where((comp == 0) & (outage_end[cell] >= 0), after, resolved)
        is_open = resolved > self.as_of_s
        status = np.where(is_open, rng.choice([0, 1, 2], k, p=[0.3, 0.5, 0.2]),
                          rng.choice([3, 4, 5], k, p=[0.55, 0.4, 0.05]))
        resolution = np.select(
            [is_open, status == 5, comp == 0, category == 1, category == 2, category == 3, category == 4],
            [np.full(k, -1), np.full(k, 1), np.full(k, 0), rng.choice([0, 1, 3], k, p=[0.4, 0.3, 0.3]),
             rng.choice([3, 2], k, p=[0.6, 0.4]), rng.choice([0, 3], k), rng.choice([0, 3], k, p=[0.7, 0.3])],
            default=3,
        )
        severity = np.select(
            [comp == 0, category <= 1, category == 2],
            [np.where(rng.random(k) < 0.2, 0, 1), np.where(rng.random(k) < 0.3, 1, 2),
             np.where(rng.random(k) < 0.5, 3, 2)],
            default=3,
        )
        severity = np.where(b.cust_segment[b.sub_cust[subs]] == 2, np.maximum(severity - 1, 0), severity)
        channel = rng.choice(5, k, p=[0.45, 0.25, 0.15, 0.1, 0.05])
        no_sub = (category == 2) & (rng.random(k) < 0.2)
        order = np.argsort(created, kind="stable")
        (subs, created, resolved, category, channel, severity, status, resolution, is_open, no_sub) = (
            a[order] for a in (subs, created, resolved, category, channel, severity, status, resolution, is_open,
                               no_sub))
        sub_ids = self.sub_id_series.gather(pl.Series(subs))
        df = pl.DataFrame({
            "ticket_id": _ids(f"TT{token}", np.arange(k), 5),
            "customer_id": self.cust_id_series.gather(pl.Series(b.sub_cust[subs].astype(np.int64))),
            "subscription_id": pl.select(pl.when(pl.Series(no_sub)).then(None).otherwise(sub_ids)).to_series()
            if k else sub_ids,
            "created_at": _dt(self.start, created),
            "resolved_at": _dt(self.start, np.where(is_open, 0, resolved)).scatter(
                np.flatnonzero(is_open), None) if k else _dt(self.start, resolved),
            "category": _pick(TICKET_CATEGORIES, category),
            "channel": _pick(("call_center", "app", "web", "retail", "social"), channel),
            "severity": _pick(("critical", "high", "medium", "low"), severity),
            "status": _pick(("acknowledged", "in_progress", "pending", "resolved", "closed", "rejected"), status),
            "resolution": _pick(RESOLUTIONS + (None,), np.where(resolution < 0, len(RESOLUTIONS), resolution)),
        })
        for c, cnt in zip(*np.unique(category, return_counts=True)):
            self.tickets_by_category[TICKET_CATEGORIES[c]] = self.tickets_by_category.get(TICKET_CATEGORIES[c], 0) \
                + int(cnt)
        self.rows["tickets"] += self.writer.submit(self.out / daily_name("tickets", token, compress=self.compress), df,
                                               compress=self.compress)
        self.tickets_recent *= 0.93
        np.add.at(self.tickets_recent, subs, 1.0)

    # --------------------------------------------------------------------------------------- top-ups

    def _topups_day(self, d: int, live: np.ndarray, token: str) -> None:
        """Prepaid lines top up on their own rhythm (weekly to monthly), with a few unplanned top-ups."""
        rng = rng_for(self.seed, "topups", d)
        b = self.base
        pre = live[b.sub_pay[live] == 0]
        epoch_day = (self.start - date(2000, 1, 1)).days + d
        due = ((epoch_day + b.sub_topup_phase[pre]) % b.sub_topup_period[pre] == 0) & (rng.random(len(pre)) < 0.92)
        extra = rng.random(len(pre)) < 0.01
        pick = due | extra
        who = pre[pick]
        k = len(who)
        amount = np.where(due[pick], b.sub_topup_amount[who], rng.choice([5.0, 10.0, 15.0, 20.0], k))
        t = d * DAY_S + (8 + rng.integers(0, 14, k)) * HOUR_S + rng.integers(0, HOUR_S, k)
        channel = rng.choice(6, k, p=[0.25, 0.15, 0.3, 0.1, 0.1, 0.1])
        order = np.lexsort((who, t))
        who, t, amount, channel = who[order], t[order], amount[order], channel[order]
        df = pl.DataFrame({
            "topup_id": _ids(f"T{token}", np.arange(k), 6),
            "subscription_id": self.sub_id_series.gather(pl.Series(who)),
            "topup_at": _dt(self.start, t),
            "amount": pl.Series(amount.astype(float)),
            "channel": _pick(("retail", "online", "app", "voucher", "bank", "ussd"), channel),
            "currency": pl.Series(["EUR"] * k, dtype=pl.String),
        })
        self.rows["topups"] += self.writer.submit(self.out / daily_name("topups", token, compress=self.compress), df,
                                              compress=self.compress)

    # ---------------------------------------------------------------------------------------- alarms

    def _alarms_day(self, d: int, token: str) -> None:
        """Today's alarms (final state): planted outages, minor cell and site alarms, major cell faults."""
        rng = rng_for(self.seed, "alarms", d)
        net = self.net
        day0 = d * DAY_S
        groups: list[dict] = []
        todays = [o for o in self.outages if day0 <= o.start_s < day0 + DAY_S]
        if todays:
            groups.append({
                "id": [o.alarm_id for o in todays], "obj": [net.site_ids[o.site] for o in todays],
                "kind": ["site"] * len(todays), "atype": [o.alarm_type for o in todays],
                "severity": ["critical"] * len(todays), "cause": [o.probable_cause for o in todays],
                "problem": [o.specific_problem for o in todays], "sa": [True] * len(todays),
                "raised": np.array([o.start_s for o in todays]),
                "cleared": np.array([o.end_s if o.end_s is not None else -1 for o in todays]),
            })
        nci, in_sites = len(self.cell_is), np.flatnonzero(net.site_in_service)

        def draw(count: int, objects: np.ndarray, names: np.ndarray, kind: str, catalogue: tuple, severities: tuple,
                 sa: bool, dur_s: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
            obj = rng.choice(objects, size=count)
            cat = rng.integers(0, len(catalogue), count)
            raised = day0 + rng.integers(0, DAY_S, count)
            ends = raised + dur_s
            return {
                "id": None, "obj": list(names[obj]), "kind": [kind] * count,
                "atype": [catalogue[c][0] for c in cat], "severity": list(rng.choice(severities, count)),
                "cause": [catalogue[c][1] for c in cat], "problem": [catalogue[c][2] for c in cat],
                "sa": [sa] * count, "raised": raised, "cleared": np.where(ends <= self.as_of_s, ends, -1),
            }, obj, raised, ends

        n_minor = int(rng.poisson(0.015 * nci))
        g, obj, raised, ends = draw(n_minor, self.cell_is, net.cell_ids, "cell", MINOR_CELL_ALARMS,
                                    ("minor", "warning"), False,
                                    np.clip(rng.lognormal(np.log(2400), 1.0, n_minor), 60, 12 * HOUR_S).astype(int))
        groups.append(g)
        self.faults += [Fault(np.array([c]), int(r), int(e), 1.15, 0.95, 0.002, 1.05)
                        for c, r, e in zip(obj, raised, ends)]
        n_major = int(rng.poisson(0.003 * nci))
        g, obj, raised, ends = draw(n_major, self.cell_is, net.cell_ids, "cell", MAJOR_CELL_ALARMS, ("major",), True,
                                    (rng.uniform(1, 6, n_major) * HOUR_S).astype(int))
        groups.append(g)
        self.faults += [Fault(np.array([c]), int(r), int(e), 2.5, 0.6, 0.03, 1.4) for c, r, e in zip(obj, raised, ends)]
        n_site = int(rng.poisson(0.01 * len(in_sites)))
        g, *_ = draw(n_site, in_sites, net.site_ids, "site", SITE_WARNINGS, ("warning", "minor"), False,
                     np.clip(rng.lognormal(np.log(3600), 1.0, n_site), 60, 12 * HOUR_S).astype(int))
        groups.append(g)
        # Planted: alarms on resources that are not in the inventory.
        n_normal = sum(len(x["obj"]) for x in groups)
        n_unknown = int(rng.poisson(max(0.3, RATE_UNKNOWN_ALARM * n_normal))) + (d == 0)
        width = max(4, len(str(len(net.site_ids))))
        fake = len(net.site_ids) + 1 + rng.integers(0, max(10, len(net.site_ids) // 10), n_unknown)
        is_cell = rng.random(n_unknown) < 0.6
        names = np.array([f"C{s:0{width}d}-{int(k) + 1}" if c else f"S{s:0{width}d}"
                          for s, k, c in zip(fake, rng.integers(0, 3, n_unknown), is_cell)], dtype=object)
        g, *_ = draw(n_unknown, np.arange(n_unknown), names, "cell", MINOR_CELL_ALARMS, ("minor", "warning"), False,
                     np.clip(rng.lognormal(np.log(2400), 1.0, n_unknown), 60, 12 * HOUR_S).astype(int))
        g["obj"] = list(names)
        g["kind"] = ["cell" if c else "site" for c in is_cell]
        groups.append(g)
        self.planted.alarms_on_unknown_resources += n_unknown

        raised = np.concatenate([np.asarray(x["raised"], np.int64) for x in groups])
        cleared = np.concatenate([np.asarray(x["cleared"], np.int64) for x in groups])
        cols = {key: [v for x in groups for v in x[key]] for key in ("obj", "kind", "atype", "severity", "cause",
                                                                     "problem", "sa")}
        # Outage alarms keep their planned ids; the others are numbered after them in time order.
        n_out = len(todays)
        rest = n_out + np.argsort(raised[n_out:], kind="stable")
        order = np.concatenate([np.arange(n_out), rest]).astype(np.int64)
        raised, cleared = raised[order], cleared[order]
        cols = {key: [vals[i] for i in order] for key, vals in cols.items()}
        ids = [o.alarm_id for o in todays] + [f"A{token}{k:05d}" for k in range(n_out, len(raised))]
        df = pl.DataFrame({
            "alarm_id": pl.Series(ids, dtype=pl.String),
            "alarmed_object_id": pl.Series(cols["obj"], dtype=pl.String),
            "alarmed_object_type": pl.Series(cols["kind"], dtype=pl.String),
            "alarm_type": pl.Series(cols["atype"], dtype=pl.String),
            "perceived_severity": pl.Series(cols["severity"], dtype=pl.String),
            "probable_cause": pl.Series(cols["cause"], dtype=pl.String),
            "specific_problem": pl.Series(cols["problem"], dtype=pl.String),
            "service_affecting": pl.Series(cols["sa"], dtype=pl.Boolean),
            "raised_at": _dt(self.start, raised),
            "cleared_at": _dt(self.start, np.maximum(cleared, 0)).scatter(np.flatnonzero(cleared < 0), None)
            if len(raised) else _dt(self.start, cleared),
        }).sort("raised_at", "alarm_id")
        self.rows["alarms"] += self.writer.submit(self.out / daily_name("alarms", token, compress=self.compress), df,
                                              compress=self.compress)

    # ----------------------------------------------------------------------------------------- bills

    def _bill_period(self, ps: date, pe: date, *, actual: np.ndarray | None) -> None:
        """One month's postpaid bills: fees after promotions, plus usage (expected before the window)."""
        rng = rng_for(self.seed, "bills", ps.year * 12 + ps.month)
        b = self.base
        s0, s1 = (ps - self.start).days, (pe - self.start).days + 1
        lo = np.maximum(b.sub_start_day, s0)
        hi = np.minimum(self.end_day, s1)
        active_days = np.clip(hi - lo, 0, None)
        subs = np.flatnonzero((b.sub_pay == 1) & (active_days > 0))
        disc = np.zeros(b.n_subs)
        on = (b.promo_from_day <= s0) & (s0 <= b.promo_to_day)
        disc[b.promo_sub[on]] = b.promo_discount[on]
        fee = b.sub_fee[subs] * (1 - disc[subs] / 100) * active_days[subs] / (s1 - s0)
        before = np.clip(np.minimum(hi[subs], 0) - lo[subs], 0, None)
        per_event = np.array([expected_event_amount(rate=o.rate, postpaid=True, oob=o.oob) for o in OFFERINGS])
        usage = b.sub_lambda[subs] * per_event[b.sub_offer[subs]] * before * rng.gamma(4.0, 0.25, len(subs))
        if actual is not None:
            usage = usage + actual[subs]
        due_amount = np.bincount(b.sub_cust[subs], fee + usage, minlength=self.n_cust)
        cust = np.flatnonzero(due_amount > 0)
        amount = np.round(due_amount[cust], 2)
        k = len(cust)
        bill_date = pe + timedelta(days=1)
        due_date = bill_date + timedelta(days=20)
        overdue = due_date < self.end_date
        payer = b.cust_payer[cust]
        r = rng.random(k)
        if overdue:
            state = np.select([payer == 0, payer == 1], [np.where(r < 0.97, 5, 4), np.where(r < 0.4, 5, np.where(
                r < 0.8, 4, 3))], default=np.where(r < 0.85, 3, 4))
        else:
            state = np.where((payer == 0) & (r < 0.35), 5, 3)
        paid = np.select([state == 5, state == 4], [amount, np.round(amount * rng.uniform(0.3, 0.9, k), 2)], 0.0)
        unsettled = state != 5
        self.unpaid_cust = np.concatenate([self.unpaid_cust, cust[unsettled]])
        self.unpaid_due = np.concatenate([self.unpaid_due, np.full(unsettled.sum(), (due_date - self.start).days)])
        df = pl.DataFrame({
            "bill_id": _ids(f"B{ps:%Y%m}", cust + 1, self.cust_w),
            "customer_id": self.cust_id_series.gather(pl.Series(cust)),
            "bill_date": pl.Series([bill_date.isoformat()] * k, dtype=pl.String),
            "billing_period_start": pl.Series([ps.isoformat()] * k, dtype=pl.String),
            "billing_period_end": pl.Series([pe.isoformat()] * k, dtype=pl.String),
            "payment_due_date": pl.Series([due_date.isoformat()] * k, dtype=pl.String),
            "amount_due": pl.Series(amount),
            "amount_paid": pl.Series(paid.astype(float)),
            "state": _pick(("new", "on_hold", "validated", "sent", "partially_paid", "settled"), state),
        })
        self.bills.append(df)

    # ------------------------------------------------------------------------------------------- run

    def run_day(self, d: int) -> None:
        """One day: churn, alarms, KPIs, usage, tickets, top-ups; then update experience and counters."""
        day = self.start + timedelta(days=d)
        token = day.strftime("%Y%m%d")
        weekend = day.weekday() >= 5
        self.writer.drain()  # yesterday's files are written before today's are queued
        if day.day == 1 and d > 0:
            ps = _add_months(day, -1)
            self._bill_period(ps, day - timedelta(days=1), actual=self.month_charges)
            self.month_charges[:] = 0
        self.faults = [f for f in self.faults if f.end_s > d * DAY_S]
        self._churn_day(d)
        live = self.live(d)
        b = self.base
        self.sub_days += np.bincount(b.sub_pay[live], minlength=2)
        disc = np.zeros(b.n_subs)
        on = (b.promo_from_day <= d) & (d <= b.promo_to_day)
        disc[b.promo_sub[on]] = b.promo_discount[on]
        post = live[b.sub_pay[live] == 1]
        self.recurring[1] += float((b.sub_fee[post] * (1 - disc[post] / 100)).sum() / 30)
        self._alarms_day(d, token)
        kpi = self._kpi_day(d, live, weekend, token)
        self._usage_day(d, live, weekend, token)
        self._tickets_day(d, live, kpi, token)
        self._topups_day(d, live, token)
        self.ema_bad = 0.75 * self.ema_bad + 0.25 * kpi["badness"]

    def affected_customers(self, k: int) -> np.ndarray:
        """Customer indexes the k-th outage affects, by AFFECTED_RULE over the events written."""
        b = self.base
        tot = np.bincount(b.sub_cust, self.outage_tot[k], minlength=self.n_cust)
        on = np.bincount(b.sub_cust, self.outage_on[k], minlength=self.n_cust)
        return np.flatnonzero((tot >= 1) & (2 * on > tot))


TICKET_CATEGORIES = ("network_coverage", "network_quality", "billing", "device", "service_request", "other")
RESOLUTIONS = ("fixed", "no_fault_found", "compensated", "explained", "unresolved")
MINOR_CELL_ALARMS = (
    ("qualityOfServiceAlarm", "thresholdCrossed", "PRB utilisation above threshold"),
    ("communicationsAlarm", "degradedSignal", "Uplink interference detected"),
    ("processingErrorAlarm", "softwareError", "Cell process restarted"),
    ("qualityOfServiceAlarm", "performanceDegraded", "RRC setup success below threshold"),
)
MAJOR_CELL_ALARMS = (
    ("communicationsAlarm", "transmissionError", "Backhaul errors above threshold"),
    ("equipmentAlarm", "equipmentMalfunction", "RRU VSWR high"),
    ("equipmentAlarm", "transmitterFailure", "Transmit power degraded"),
)
SITE_WARNINGS = (
    ("environmentalAlarm", "temperatureUnacceptable", "High cabinet temperature"),
    ("environmentalAlarm", "enclosureDoorOpen", "Cabinet door open"),
    ("equipmentAlarm", "powerProblem", "Mains failure, running on battery"),
    ("equipmentAlarm", "coolingFanFailure", "Fan failure"),
)


def _add_months(day: date, months: int) -> date:
    """The same day of month `months` later (clamped to the month's end)."""
    y, m = divmod(day.month - 1 + months, 12)
    y, m = day.year + y, m + 1
    return date(y, m, min(day.day, calendar.monthrange(y, m)[1]))
