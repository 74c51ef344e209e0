"""The synthetic operator: `opencem generate` writes a whole operator's extracts and the truths it planted.

A city of irregular zones, sites and cells placed by population, customers and their lines, then day by
day: usage where people are, hourly KPIs that sag with load and faults, alarms and outages, tickets that
follow bad experience, top-ups, bills and churn. Known truths (degraded high-value zones, outages with
their exact affected customers, counts of planted BSS/OSS inconsistencies) go to `truth.json`. The same
seed gives the same bytes. Days stream: memory grows with customers, not with days.

Parts: `etl/generate_world.py` (geography, network, customers), `etl/generate_sim.py` (the days),
`etl/generate_io.py` (deterministic writers).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import shapely

from etl.contracts import source_for_file
from etl.errors import UsageError
from etl.generate_io import AppendingCsv, iso_dates, write_geojson
from etl.generate_sim import AFFECTED_RULE, DAY_S, NO_END, Simulation, _dt, _ids, _pick
from etl.generate_world import (
    FIRST_NAMES,
    LAST_NAMES,
    OFFERINGS,
    PAYMENT,
    SEGMENTS,
    STREETS,
    City,
    Network,
    build_base,
    build_city,
    build_network,
    default_zones,
    km_to_lonlat,
    msisdn_numbers,
    rng_for,
)

#: The fixed default start of the window, so the committed sample is stable.
DEFAULT_START = date(2026, 10, 1)
#: Planted subscription problems, per subscription (at least a few each).
RATE_DUPLICATE_MSISDN = 2e-3
RATE_UNKNOWN_CUSTOMER = 1e-3
REASONS = (None, "voluntary", "involuntary", "migration")


def generate(out: Path, *, customers: int = 3000, days: int = 28, seed: int = 7, start_date: date | None = None,
             zones: int | None = None, compress: bool = True, log: Callable[[str], None] | None = None) -> dict:
    """Write a synthetic operator to `out` (created if missing) and return the truth dict (also written)."""
    if customers < 50:
        raise UsageError(f"--customers must be at least 50, got {customers}")
    if days < 1:
        raise UsageError(f"--days must be at least 1, got {days}")
    if zones is not None and zones < 4:
        raise UsageError(f"--zones must be at least 4, got {zones}")
    say = log or (lambda _msg: None)
    out = Path(out)
    _clear_previous_output(out)
    out.mkdir(parents=True, exist_ok=True)
    start = start_date or DEFAULT_START
    n_zones = zones or default_zones(customers)
    t0 = time.perf_counter()

    city = build_city(seed, customers=customers, zones=n_zones)
    net = build_network(seed, city, customers=customers)
    base = build_base(seed, city, net, customers=customers, days=days)
    say(f"world: {n_zones} zones, {len(net.site_ids)} sites, {len(net.cell_ids)} cells, {customers} customers, "
        f"{base.n_subs} subscriptions ({time.perf_counter() - t0:.1f}s)")

    sim = Simulation(seed=seed, start=start, days=days, city=city, net=net, base=base, out=out, compress=compress,
                     log=say)
    try:
        sim.prepare()
        for d in range(days):
            sim.run_day(d)
            if d == days - 1 or d % 7 == 6:
                say(f"day {d + 1}/{days}: {sim.rows['charging']} charging rows so far "
                    f"({time.perf_counter() - t0:.1f}s)")
    finally:
        sim.writer.close()

    rows = _write_snapshots(out, sim)
    rows.update(sim.rows)
    rows["bills"] = sim.bills.rows
    truth = _truth(sim, customers=customers, days=days, seed=seed, zones=zones, compress=compress,
                   default_start=start_date is None or start_date == DEFAULT_START, rows=rows)
    (out / "truth.json").write_text(json.dumps(truth, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    say(f"done in {time.perf_counter() - t0:.1f}s: {sum(rows.values())} rows")
    return truth


def _clear_previous_output(out: Path) -> None:
    """Remove an earlier run's files (a longer run would leave stale days behind); refuse to mix with
    extract files the generator did not write (no truth.json beside them)."""
    if not out.is_dir():
        return
    ours = [p for p in out.iterdir() if p.is_file() and (source_for_file(p) is not None or p.name == "truth.json")]
    if ours and not (out / "truth.json").exists():
        raise UsageError(f"{out} already holds extract files that the generator did not write "
                         f"(e.g. {min(p.name for p in ours)}); choose an empty folder")
    for p in ours:
        p.unlink()


# ------------------------------------------------------------------------------------------ snapshots


def _write_snapshots(out: Path, sim: Simulation) -> dict[str, int]:
    city, net = sim.city, sim.net
    rows = {
        "zones": _write_zones(out, city),
        "sites": _write_sites(out, sim),
        "cells": _write_cells(out, net),
    }
    sub_status = _subscription_status(sim)
    rows["customers"] = _write_customers(out, sim, sub_status)
    rows["subscriptions"], planted = _write_subscriptions(out, sim, sub_status)
    sim.planted_subscriptions = planted
    rows["promotions"] = _write_promotions(out, sim)
    return rows


def _write_zones(out: Path, city: City) -> int:
    def feature(k: int) -> dict:
        geom = shapely.transform(city.zone_polygons[k],
                                 lambda c: np.round(np.column_stack(km_to_lonlat(c[:, 0], c[:, 1])), 6))
        return {
            "type": "Feature",
            "properties": {"zone_id": city.zone_ids[k], "zone_name": city.zone_names[k],
                           "zone_type": city.zone_types[k], "parent_zone_id": None,
                           "population": int(city.zone_population[k])},
            "geometry": json.loads(shapely.to_geojson(geom)),
        }

    return write_geojson(out / "zones.geojson", (feature(k) for k in range(len(city.zone_ids))))


def _write_sites(out: Path, sim: Simulation) -> int:
    net = sim.net
    lon, lat = km_to_lonlat(net.site_x, net.site_y)
    commissioned = _dt(sim.start, net.site_commissioned_day * DAY_S + 10 * 3600)
    df = pl.DataFrame({
        "site_id": pl.Series(net.site_ids.tolist(), dtype=pl.String),
        "name": pl.Series(net.site_names.tolist(), dtype=pl.String),
        "latitude": pl.Series(np.round(lat, 6)),
        "longitude": pl.Series(np.round(lon, 6)),
        "site_type": pl.Series(net.site_type.tolist(), dtype=pl.String),
        "status": pl.Series(np.where(net.site_in_service, "in_service", "planned").tolist(), dtype=pl.String),
        "commissioned_at": commissioned.scatter(np.flatnonzero(~net.site_in_service), None),
    })
    AppendingCsv(out / "sites.csv").append(df)
    return df.height


def _write_cells(out: Path, net: Network) -> int:
    df = pl.DataFrame({
        "cell_id": pl.Series(net.cell_ids.tolist(), dtype=pl.String),
        "site_id": pl.Series(net.site_ids[net.cell_site].tolist(), dtype=pl.String),
        "technology": pl.Series(net.cell_technology.tolist(), dtype=pl.String),
        "band_mhz": pl.Series(net.cell_band.astype(np.int64)),
        "azimuth_deg": pl.Series(net.cell_azimuth, nan_to_null=True),
        "capacity_mbps": pl.Series(net.cell_nominal_mbps),
        "status": pl.Series(np.where(net.cell_in_service, "in_service", "planned").tolist(), dtype=pl.String),
    })
    AppendingCsv(out / "cells.csv").append(df)
    return df.height


def _subscription_status(sim: Simulation) -> np.ndarray:
    """0 active, 1 suspended, 2 terminated, as the window ends."""
    b = sim.base
    terminated = sim.end_day < sim.days
    return np.where(terminated, 2, np.where(b.sub_suspended, 1, 0)).astype(np.int8)


def _ascii_lower(names: Sequence[str]) -> list[str]:
    return ["".join(ch for ch in n.lower() if ch.isalnum()) for n in names]


def _write_customers(out: Path, sim: Simulation, sub_status: np.ndarray) -> int:
    b = sim.base
    rng = rng_for(sim.seed, "customer-details")
    n = sim.n_cust
    first = rng.integers(0, len(FIRST_NAMES), n)
    last = rng.integers(0, len(LAST_NAMES), n)
    street = rng.integers(0, len(STREETS), n)
    number = rng.integers(1, 180, n)
    has_email = rng.random(n) < 0.8
    has_name = rng.random(n) > 0.002  # a few customers without a name on file (allowed: nullable)
    birth = (date(1940, 1, 1) - date(1970, 1, 1)).days + rng.integers(0, 67 * 365, n)
    best = np.full(n, 2, np.int8)
    np.minimum.at(best, b.sub_cust, sub_status)
    lon, lat = km_to_lonlat(b.cust_x, b.cust_y)
    f = pl.Series(FIRST_NAMES, dtype=pl.String).gather(pl.Series(first))
    la = pl.Series(LAST_NAMES, dtype=pl.String).gather(pl.Series(last))
    fe = pl.Series(_ascii_lower(FIRST_NAMES), dtype=pl.String).gather(pl.Series(first))
    le = pl.Series(_ascii_lower(LAST_NAMES), dtype=pl.String).gather(pl.Series(last))
    zone_name = pl.Series(list(sim.city.zone_names), dtype=pl.String).gather(pl.Series(b.cust_zone.astype(np.int64)))
    st = pl.Series(STREETS, dtype=pl.String).gather(pl.Series(street))
    frame = pl.DataFrame({"f": f, "la": la, "fe": fe, "le": le, "zone": zone_name, "st": st,
                          "num": pl.Series(number), "k": pl.Series(np.arange(1, n + 1))})
    df = frame.select(
        customer_id=sim.cust_id_series,
        name=pl.when(pl.Series(has_name)).then(pl.col("f") + " " + pl.col("la")),
        segment=_pick(SEGMENTS, b.cust_segment),
        status=_pick(("active", "suspended", "terminated"), best),
        created_at=_dt(sim.start, b.cust_created_s),
        home_latitude=pl.Series(np.round(lat, 6)),
        home_longitude=pl.Series(np.round(lon, 6)),
        address=pl.col("st") + " " + pl.col("num").cast(pl.String) + ", " + pl.col("zone"),
        email=pl.when(pl.Series(has_email)).then(
            pl.col("fe") + "." + pl.col("le") + pl.col("k").cast(pl.String) + "@example.com"),
        birth_date=iso_dates(date(1970, 1, 1), birth),
    )
    AppendingCsv(out / "customers.csv").append(df)
    return df.height


def _write_subscriptions(out: Path, sim: Simulation, sub_status: np.ndarray) -> tuple[int, dict]:
    """Every line, then the planted ones: shared MSISDNs and lines of customers not in customers.csv."""
    b = sim.base
    m = b.n_subs
    rng = rng_for(sim.seed, "plant-subscriptions")
    active = np.flatnonzero(sub_status == 0)
    n_dup = min(len(active), max(3, round(RATE_DUPLICATE_MSISDN * m)))
    n_unknown = max(3, round(RATE_UNKNOWN_CUSTOMER * m))
    targets = np.sort(rng.choice(active, size=n_dup, replace=False))
    active_customers = np.flatnonzero(np.bincount(b.sub_cust[active], minlength=sim.n_cust) > 0)
    k = n_dup + n_unknown
    p_cust = np.concatenate([rng.choice(active_customers, size=n_dup), sim.n_cust + np.arange(n_unknown)])
    p_offer = rng.integers(0, len(OFFERINGS), k)
    p_msisdn = np.concatenate([b.sub_msisdn[targets], msisdn_numbers(np.arange(m, m + n_unknown))])
    p_start = -rng.integers(10, 400, k)

    cust = np.concatenate([b.sub_cust, p_cust]).astype(np.int64)
    offer = np.concatenate([b.sub_offer, p_offer]).astype(np.int64)
    pay = np.array([o.payment_type == "postpaid" for o in OFFERINGS], dtype=np.int8)[offer]
    fee = np.concatenate([b.sub_fee, np.array([o.fee for o in OFFERINGS])[p_offer]])
    start = np.concatenate([b.sub_start_day, p_start]).astype(np.int64)
    end = np.concatenate([sim.end_day, np.full(k, NO_END)]).astype(np.int64)
    status = np.concatenate([sub_status, np.zeros(k, np.int8)])
    reason = np.concatenate([np.where(status[:m] == 2, sim.reason, 0), np.zeros(k, np.int8)]).astype(np.int64)
    msisdn = np.concatenate([b.sub_msisdn, p_msisdn])
    cust_ids = _ids("CU", cust + 1, sim.cust_w)
    df = pl.DataFrame({
        "subscription_id": _ids("S", np.arange(1, m + k + 1), sim.sub_w),
        "customer_id": cust_ids,
        "msisdn": pl.select(pl.lit("+39") + pl.Series(msisdn).cast(pl.String)).to_series(),
        "product_offering": _pick(tuple(o.name for o in OFFERINGS), offer),
        "payment_type": _pick(PAYMENT, pay),
        "status": _pick(("active", "suspended", "terminated"), status),
        "start_date": iso_dates(sim.start, start),
        "termination_date": iso_dates(sim.start, np.where(end == NO_END, 0, end)).scatter(
            np.flatnonzero(end == NO_END), None),
        "monthly_fee": pl.Series(np.round(fee, 2)),
        "currency": pl.Series(["EUR"] * (m + k), dtype=pl.String),
        "termination_reason": _pick(REASONS, reason),
    })
    AppendingCsv(out / "subscriptions.csv").append(df)
    ids = df["subscription_id"]
    planted = {
        "duplicate_msisdn_ids": ids.slice(m, n_dup).to_list(),
        "duplicate_msisdn_of": ids.gather(pl.Series(targets)).to_list(),
        "unknown_customer_ids": ids.slice(m + n_dup, n_unknown).to_list(),
    }
    return df.height, planted


def _write_promotions(out: Path, sim: Simulation) -> int:
    b = sim.base
    k = len(b.promo_sub)
    to = b.promo_to_day.astype(np.int64)
    df = pl.DataFrame({
        "promotion_id": _ids("P", np.arange(1, k + 1), max(6, len(str(k)))),
        "subscription_id": sim.sub_id_series.gather(pl.Series(b.promo_sub.astype(np.int64))),
        "promotion_type": pl.Series(b.promo_type.tolist(), dtype=pl.String),
        "valid_from": iso_dates(sim.start, b.promo_from_day),
        "valid_to": iso_dates(sim.start, np.where(to == NO_END, 0, to)).scatter(np.flatnonzero(to == NO_END), None),
        "discount": pl.Series(b.promo_discount.astype(float)),
    })
    AppendingCsv(out / "promotions.csv").append(df)
    return df.height


# ---------------------------------------------------------------------------------------------- truth


def _command(*, customers: int, days: int, seed: int, zones: int | None, compress: bool, start: date,
             default_start: bool) -> str:
    parts = ["opencem generate --out DIR", f"--customers {customers}", f"--days {days}", f"--seed {seed}"]
    if zones is not None:
        parts.append(f"--zones {zones}")
    if not compress:
        parts.append("--no-compress")
    if not default_start:
        parts.append(f"--start-date {start.isoformat()}  (python -m etl.generate only)")
    return " ".join(parts)


def _truth(sim: Simulation, *, customers: int, days: int, seed: int, zones: int | None, compress: bool,
           default_start: bool, rows: dict[str, int]) -> dict:
    city, net, base, p = sim.city, sim.net, sim.base, sim.planted
    midnight = datetime(sim.start.year, sim.start.month, sim.start.day)

    def ts(s: int | None) -> str | None:
        return None if s is None else (midnight + timedelta(seconds=int(s))).isoformat()

    cust_ids = sim.cust_id_series
    outages = []
    for k, o in enumerate(sim.outages):
        affected = sim.affected_customers(k)
        outages.append({
            "alarm_id": o.alarm_id,
            "site_id": str(net.site_ids[o.site]),
            "cell_ids": [str(c) for c in net.cell_ids[o.cells]],
            "zone_id": city.zone_ids[net.site_zone[o.site]],
            "kind": {"open": "still_open", "recent": "cleared_in_last_72h", "older": "older"}[o.kind],
            "raised_at": ts(o.start_s),
            "cleared_at": ts(o.end_s),
            "affected_customer_ids": cust_ids.gather(pl.Series(affected)).to_list(),
            "affected_customers": len(affected),
            "outage_tickets": int(sim.outage_tickets[k]),
            "rule": AFFECTED_RULE,
        })
    sub_planted = sim.planted_subscriptions
    inconsistencies = {
        "usage_on_unknown_cells": {"check": "quarantine:charging:unknown_reference:cell_id",
                                   "count": p.usage_on_unknown_cells},
        "duplicate_msisdns": {"check": "duplicate_msisdn", "count": len(sub_planted["duplicate_msisdn_ids"]),
                              "subscription_ids": sub_planted["duplicate_msisdn_ids"]},
        "subscriptions_of_unknown_customers": {"check": "quarantine:subscriptions:unknown_reference:customer_id",
                                               "count": len(sub_planted["unknown_customer_ids"]),
                                               "subscription_ids": sub_planted["unknown_customer_ids"]},
        "negative_amounts": {"check": "quarantine:charging:out_of_range:amount", "count": p.negative_amounts,
                             "note": "negative"},
        "absurd_amounts": {"check": "quarantine:charging:out_of_range:amount", "count": p.absurd_amounts,
                           "note": "above the contract's max"},
        "missing_kpi_hours": {"check": "missing_kpi_hours", "count": p.missing_kpi_hours},
        "alarms_on_unknown_resources": {"check": "quarantine:alarms:unknown_reference:alarmed_object_id",
                                        "count": p.alarms_on_unknown_resources},
        "malformed_rows": {"check": "quarantine:charging:malformed_row", "count": p.malformed_rows,
                           "by_file": dict(sorted(p.malformed_by_file.items()))},
        "unparseable_values": {"check": "quarantine:charging:bad_type:usage_at", "count": p.unparseable_values},
        "duplicate_usage_records": {"check": "quarantine:charging:duplicate_key", "count": p.duplicate_usage_records},
    }
    risk = np.maximum(sim.at_risk_days, 1)
    monthly = sim.churned / risk * 30
    arpu_pre = sim.charged[0] / max(sim.sub_days[0], 1) * 30
    arpu_post = (sim.charged[1] + sim.recurring[1]) / max(sim.sub_days[1], 1) * 30
    arpu_all = (sim.charged.sum() + sim.recurring[1]) / max(sim.sub_days.sum(), 1) * 30
    zone_rev = np.bincount(net.cell_zone, sim.cell_revenue, minlength=len(city.zone_ids))
    degraded = [city.zone_ids[z] for z in sim.degraded_zones]
    end_status = _subscription_status(sim)
    return {
        "generator": {
            "command": _command(customers=customers, days=days, seed=seed, zones=zones, compress=compress,
                                start=sim.start, default_start=default_start),
            "seed": seed, "customers": customers, "days": days, "start_date": sim.start.isoformat(),
            "end_date": sim.end_date.isoformat(), "zones": len(city.zone_ids), "sites": len(net.site_ids),
            "cells": len(net.cell_ids), "compress": compress,
            "centre": {"latitude": 45.46, "longitude": 9.19}, "city_radius_km": round(city.radius_km, 3),
        },
        "as_of": f"{sim.end_date.isoformat()}T23:59:59",
        "inconsistencies": inconsistencies,
        "degraded_high_value_zones": degraded,
        "degraded_zone_details": [
            {"zone_id": city.zone_ids[z], "zone_name": city.zone_names[z],
             "expected_revenue_rank": sim.zone_revenue_rank[z],
             "cell_ids": [str(c) for c in net.cell_ids[(net.cell_zone == z) & net.cell_in_service]],
             "rule": "among the top-revenue zones (expected revenue of the lines living there); its in-service "
                     "cells are under-dimensioned (busy-hour load 1.4-1.9x capacity) for the whole period"}
            for z in sim.degraded_zones
        ],
        "outages": outages,
        "churn": {
            "monthly_rate": round(float(sim.churned.sum() / risk.sum() * 30), 6),
            "monthly_rate_by_payment_type": {"prepaid": round(float(monthly[0]), 6),
                                             "postpaid": round(float(monthly[1]), 6)},
            "definition": "lines terminated in the window / line-days at risk (lines live before the day) x 30",
            "terminations_in_window": int(sim.churned.sum()),
            "terminations_by_reason": {REASONS[r]: int(sim.churn_by_reason[r]) for r in (1, 2, 3)},
            "target_monthly_rate": sim.churn.target_monthly,
            "base_daily_hazard": round(sim.churn_base, 9),
            "drivers": sim.churn.as_dict(),
            "driver_definitions": {
                "price": "(monthly_fee - the usual fee of the segment and payment type) / usual fee, in [-1, 2]",
                "short_tenure": "exp(-tenure_days / 180)",
                "tickets": "tickets of the line, each decaying by 7% a day, capped at 3",
                "network": "0.75 x home cell + 0.25 x work cell experience badness, exponentially averaged",
                "prepaid": "1 for prepaid lines",
                "promotion_ended": "1 when the line's promotion ended within the last 30 days",
                "unpaid_bills": "the customer's overdue bills not settled, capped at 3",
            },
            "network_driver": (
                "daily badness of a cell = clip((drop_rate_pct - 1) / 1.5, 0, 2) + clip((15 - dl_throughput_mbps) "
                "/ 10, 0, 1.5) + clip(outage_minutes / 120, 0, 3), from that day's KPI counters; smoothed as "
                "e = 0.75 e + 0.25 badness; hazard x exp(coef x (0.75 e_home + 0.25 e_work))"
            ),
        },
        "totals": {
            "rows": dict(sorted(rows.items())),
            "customers": sim.n_cust,
            "subscriptions": int(base.n_subs),
            "subscriptions_active_at_end": int((end_status == 0).sum()),
            "subscriptions_live_in_window": int(((base.sub_start_day < days) & (base.sub_end_day > 0)).sum()),
            "postpaid_share": round(float(base.sub_pay.mean()), 4),
            "arpu_eur_month": {"prepaid": round(float(arpu_pre), 4), "postpaid": round(float(arpu_post), 4),
                               "blended": round(float(arpu_all), 4),
                               "definition": "prepaid: charging amounts (bundle renewals included); postpaid: "
                                             "monthly fee after promotion discount plus charging amounts; per "
                                             "live line-day x 30"},
            "charging_revenue_eur": {"prepaid": round(float(sim.charged[0]), 2),
                                     "postpaid": round(float(sim.charged[1]), 2)},
            "top_revenue_zones_by_usage": [city.zone_ids[z] for z in np.argsort(-zone_rev, kind="stable")[:10]],
            "tickets_by_category": dict(sorted(sim.tickets_by_category.items())),
            "traffic_volume_mb": round(float(sim.cell_traffic_mb.sum()), 1),
        },
    }


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m etl.generate --out DIR ...`: the generator without the `opencem` wrapper."""
    parser = argparse.ArgumentParser(prog="python -m etl.generate", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--days", type=int, default=28)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--start-date", type=date.fromisoformat, default=None)
    parser.add_argument("--zones", type=int, default=None)
    parser.add_argument("--no-compress", action="store_true")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    log = None if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        truth = generate(Path(args.out), customers=args.customers, days=args.days, seed=args.seed,
                         start_date=args.start_date, zones=args.zones, compress=not args.no_compress, log=log)
    except UsageError as exc:
        print(f"generate: {exc}", file=sys.stderr)
        return 2
    counts = {k: v["count"] for k, v in truth["inconsistencies"].items()}
    print(json.dumps({"out": args.out, "rows": truth["totals"]["rows"], "planted": counts}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
