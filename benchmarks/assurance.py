"""Benchmark of the assurance page's core query: the affected customers of one alarm, by the shared rule, on
a published warehouse of a generated operator.

    .venv/bin/python benchmarks/assurance.py --customers 1000000 --days 7

Target (issue: service assurance): at 1M customers and ~5,000 cells, the affected customers of one alarm
are found in under 1 s. Also reported: agreement with `marts.alarm_customers` and precision / recall
against the planted outages of truth.json; for each alarm, which part of its window came from the hourly
marts (`hours`) and which from the events (`event_slices`), and (with --compare-events) the time of the
same query from the events alone (`hourly=False`, the way every alarm was read before the hourly marts),
whose rows must be the same.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import ROOT, ensure_generated, opencem, run

from app import queries_assurance as qa
from app.warehouse import WarehouseReader


def timed(fn, *, repeat: int) -> tuple[list[float], object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--source", help="extracts already generated (default: generate into benchmarks/data)")
    ap.add_argument("--warehouse", help="warehouse folder to (re)use (default: next to the extracts)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--compare-events", action="store_true",
                    help="also time each alarm from the events alone (hourly=False) and check the rows agree")
    args = ap.parse_args()
    load_before = round(os.getloadavg()[0], 2)

    src = Path(args.source) if args.source else ensure_generated(args.customers, args.days)
    wh = Path(args.warehouse) if args.warehouse else src.parent / (src.name + "_warehouse")
    refresh_s = None
    if not (wh / "CURRENT").exists():
        print(f"refreshing {src} into {wh} ...", file=sys.stderr)
        r = run(opencem("refresh", "--source", str(src), "--warehouse", str(wh), "--json"))
        if r.returncode:
            raise SystemExit(f"refresh failed:\n{r.stderr[-4000:]}")
        refresh_s = round(r.wall_s, 1)
        print(f"  refreshed in {r.wall_s:.1f}s", file=sys.stderr)

    db = WarehouseReader(wh)
    at = qa.as_of(db)
    sizes = db.query("SELECT (SELECT count(*) FROM staging.customers) AS customers, "
                     "(SELECT count(*) FROM staging.cells) AS cells, "
                     "(SELECT count(*) FROM staging.charging) AS charging_rows, "
                     "(SELECT count(*) FROM staging.alarms) AS alarms").row(0, named=True)
    alarms = db.query("SELECT alarm_id, alarmed_object_id, alarmed_object_type, raised_at, n_customers_affected "
                      "FROM marts.alarm_impact ORDER BY n_customers_affected DESC, alarm_id")
    picks = alarms.head(5).vstack(alarms.filter(alarms["alarmed_object_type"] == "cell").head(1))
    usage = qa.usage_range(db)
    results = []
    for a in picks.to_dicts():
        spec = qa.AlarmSpec(a["alarm_id"], a["alarmed_object_id"], a["alarmed_object_type"], a["raised_at"])
        window = qa.split_window(*qa.impact_window(spec.raised_at, at), usage)
        times, impact = timed(lambda spec=spec: qa.affected_customers(db, [spec], as_of_at=at), repeat=args.repeat)
        mart = set(db.query("SELECT customer_id FROM marts.alarm_customers WHERE alarm_id = ?",
                            [a["alarm_id"]])["customer_id"].to_list())
        core = set(impact.filter(impact["tier"] == "majority")["customer_id"].to_list())
        results.append({"alarm_id": a["alarm_id"], "object": f"{a['alarmed_object_type']} {a['alarmed_object_id']}",
                        "customers": len(core), "home_cell_customers": impact.height - len(core),
                        "agrees_with_mart": core == mart,
                        "hours": [str(t) for t in window.hours] if window.hours else None,
                        "event_slices": [[str(lo), str(hi)] for lo, hi in window.slices],
                        "first_s": round(times[0], 3), "median_s": round(statistics.median(times), 3),
                        "max_s": round(max(times), 3)})
        if args.compare_events:
            ev_times, ev_impact = timed(lambda spec=spec: qa.affected_customers(db, [spec], as_of_at=at, hourly=False),
                                        repeat=args.repeat)
            same = ev_impact.drop("usage_revenue_7d", "revenue_per_hour").equals(
                impact.drop("usage_revenue_7d", "revenue_per_hour")) and all(
                (ev_impact[c] - impact[c]).abs().max() < 1e-9 for c in ("usage_revenue_7d", "revenue_per_hour"))
            results[-1] |= {"events_only_same_rows": same, "events_only_median_s": round(statistics.median(ev_times), 3),
                            "events_only_max_s": round(max(ev_times), 3)}
        print(f"  {results[-1]}", file=sys.stderr)

    top = picks.row(0, named=True)
    live = qa.AlarmSpec("bench-live", top["alarmed_object_id"], top["alarmed_object_type"], at + timedelta(hours=1))
    live_times, _ = timed(lambda: qa.affected_customers(db, [live], as_of_at=at), repeat=args.repeat)
    sim_times, _ = timed(lambda: qa.simulate_outage(db, top["alarmed_object_type"], top["alarmed_object_id"]),
                         repeat=args.repeat)

    truth = json.loads((src / "truth.json").read_text())
    scores = []
    for o in truth.get("outages", []):
        row = alarms.filter(alarms["alarm_id"] == o["alarm_id"])
        if row.height == 0:
            continue
        r = row.row(0, named=True)
        spec = qa.AlarmSpec(r["alarm_id"], r["alarmed_object_id"], r["alarmed_object_type"], r["raised_at"])
        impact = qa.affected_customers(db, [spec], as_of_at=at)
        for tier, found in (("majority", set(impact.filter(impact["tier"] == "majority")["customer_id"])),
                            ("majority+home_cell", set(impact["customer_id"]))):
            planted = set(o["affected_customer_ids"])
            tp = len(found & planted)
            scores.append({"alarm_id": o["alarm_id"], "tier": tier, "planted": len(planted), "found": len(found),
                           "precision": round(tp / len(found), 4) if found else None,
                           "recall": round(tp / len(planted), 4) if planted else None})

    all_times = [t for r in results for t in (r["median_s"],)]
    out = {
        "customers": sizes["customers"], "cells": sizes["cells"], "charging_rows": sizes["charging_rows"],
        "alarms": sizes["alarms"], "days": args.days, "refresh_s": refresh_s, "warehouse": str(wh),
        "hourly_marts": usage, "load_average_1m_before": load_before,
        "load_average_1m": round(os.getloadavg()[0], 2), "repeat": args.repeat,
        "one_alarm": results, "worst_median_s": max(all_times), "worst_max_s": max(r["max_s"] for r in results),
        "live_alarm_after_data_median_s":
        round(statistics.median(live_times), 3), "outage_simulation_median_s": round(statistics.median(sim_times), 3),
        "truth": scores, "target_s": 1.0,
    }
    res = ROOT / "benchmarks" / "results" / f"assurance_{args.customers}x{args.days}.json"
    res.parent.mkdir(parents=True, exist_ok=True)
    res.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
