"""Benchmark of the synthetic operator generator: wall time, peak RSS, rows per source and rows/s.

    .venv/bin/python benchmarks/generate.py --customers 100000 --days 7
    .venv/bin/python benchmarks/generate.py --customers 1000000 --days 7 --rss-days 1,3

Targets (issue: the synthetic operator): 1M customers x 7 days in under 5 minutes and under 4 GB on 2
cores; the generator streams day by day, so its peak RSS must not grow with --days (`--rss-days` runs
the same size for other numbers of days to show it). Runs write plain CSV (`--no-compress`, as big
benchmark runs do) unless `--compress` is given. Results go to benchmarks/results/ (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import table

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
RESULTS = ROOT / "benchmarks" / "results"


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def measure(*, customers: int, days: int, seed: int, compress: bool, out: Path) -> dict:
    """Run the generator in a child process: wall time, peak RSS (the kernel's, from wait4) and an RSS
    timeline sampled every 0.5 s, rows per source from truth.json, bytes written."""
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "etl.generate", "--out", str(out), "--customers", str(customers),
           "--days", str(days), "--seed", str(seed), "--quiet"] + ([] if compress else ["--no-compress"])
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    timeline: list[tuple[float, int]] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            timeline.append((round(time.perf_counter() - start, 1), _rss_kb(proc.pid)))
            stop.wait(0.5)

    sampler = threading.Thread(target=poll, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    err = proc.stderr.read() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code:
        raise SystemExit(f"generator failed ({code}):\n{err}")
    truth = json.loads((out / "truth.json").read_text())
    rows = truth["totals"]["rows"]
    total = sum(rows.values())
    return {
        "customers": customers, "days": days, "seed": seed, "compress": compress,
        "wall_s": round(wall, 2), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "cpu_user_s": round(usage.ru_utime, 1), "cpu_sys_s": round(usage.ru_stime, 1),
        "rows": rows, "rows_total": total, "rows_per_s": round(total / wall),
        "charging_rows_per_s": round(rows["charging"] / wall),
        "bytes_written_mb": round(sum(f.stat().st_size for f in out.iterdir()) / 2**20, 1),
        "subscriptions": truth["totals"]["subscriptions"], "cells": truth["generator"]["cells"],
        "zones": truth["generator"]["zones"], "load_average_1m": round(os.getloadavg()[0], 2),
        "rss_timeline_mb": [(t, round(kb / 1024)) for t, kb in timeline[:: max(1, len(timeline) // 60)]],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--compress", action="store_true", help="write gzip'd daily files (the default of the CLI)")
    ap.add_argument("--rss-days", default="", help="comma-separated other day counts to compare peak RSS")
    ap.add_argument("--keep", action="store_true", help="keep the generated files under benchmarks/data")
    args = ap.parse_args(argv)

    runs = []
    day_counts = [args.days] + [int(d) for d in args.rss_days.split(",") if d.strip()]
    for days in day_counts:
        out = DATA / f"gen_{args.customers}x{days}_{args.seed}"
        print(f"generating {args.customers} customers x {days} days ...", file=sys.stderr, flush=True)
        r = measure(customers=args.customers, days=days, seed=args.seed, compress=args.compress, out=out)
        runs.append(r)
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)

    main_run = runs[0]
    print(f"\n{args.customers} customers x {args.days} days ({'gzip' if args.compress else 'plain CSV'}), "
          f"{main_run['subscriptions']} subscriptions, {main_run['cells']} cells, {main_run['zones']} zones, "
          f"load average {main_run['load_average_1m']}")
    print(table([(s, n, f"{n / main_run['wall_s']:,.0f}") for s, n in sorted(main_run["rows"].items())],
                ("source", "rows", "rows/s")))
    print(table([(r["days"], f"{r['wall_s']:.1f}", f"{r['peak_rss_mb']:.0f}", f"{r['rows_total']:,}",
                  f"{r['rows_per_s']:,}", f"{r['bytes_written_mb']:.0f}") for r in runs],
                ("days", "wall s", "peak RSS MB", "rows", "rows/s", "written MB")))
    if len(runs) > 1:
        peaks = [r["peak_rss_mb"] for r in runs]
        print(f"peak RSS across day counts {day_counts}: {min(peaks):.0f}-{max(peaks):.0f} MB "
              f"(spread {100 * (max(peaks) / min(peaks) - 1):.0f}%)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = f"generate_{args.customers}x{args.days}{'_gz' if args.compress else ''}.json"
    (RESULTS / name).write_text(json.dumps(runs, indent=2) + "\n")
    print(f"results: {RESULTS / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
