"""Benchmark of `opencem refresh` against DuckDB's own `read_csv` of the same files, measured in one run.

    .venv/bin/python benchmarks/etl.py --customers 1000000 --days 7

Targets (issue: the warehouse): full refresh within 2x the reference (aim 1.5x), peak RSS under 6 GB,
an incremental one-day refresh under a quarter of the full one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, ensure_generated, opencem, run, table

RESULTS = ROOT / "benchmarks" / "results"

REFERENCE = r"""
import duckdb, glob, os, sys
src, db = sys.argv[1], sys.argv[2]
con = duckdb.connect(db)
rows = 0
for name in sorted({f.split('_2')[0] if '_2' in f else f.split('.')[0] for f in os.listdir(src)
                    if f.endswith(('.csv', '.csv.gz'))}):
    files = sorted(glob.glob(os.path.join(src, name + '.csv*')) + glob.glob(os.path.join(src, name + '_*.csv*')))
    con.execute(f"CREATE TABLE {name} AS SELECT * FROM read_csv({files!r}, ignore_errors=true)")
    rows += con.execute(f"SELECT count(*) FROM {name}").fetchone()[0]
con.close()
print(rows)
"""

#: The write floor: copy every table a refresh stored (landing, staging, marts) into a new DuckDB file, with
#: the refresh's own memory limit. No parsing, joining or aggregating: what storing the rows alone costs.
#: A fourth argument, a comma-separated list of marts, copies landing, staging and those marts only.
WRITE_FLOOR = r"""
import duckdb, sys, time
src, dst, limit = sys.argv[1], sys.argv[2], sys.argv[3]
only = set(sys.argv[4].split(",")) if len(sys.argv) > 4 else None
con = duckdb.connect(dst)
con.execute("SET enable_progress_bar = false")
con.execute(f"SET memory_limit = '{limit}'")
con.execute(f"ATTACH '{src}' AS src (READ_ONLY)")
tables = con.execute("SELECT schema_name, table_name FROM duckdb_tables() "
                     "WHERE database_name = 'src' AND schema_name IN ('raw', 'staging', 'marts')").fetchall()
tables = [(s, t) for s, t in tables if only is None or s != "marts" or t in only]
rows = 0
t0 = time.perf_counter()
for schema, table in tables:
    con.execute(f'CREATE TABLE "{schema}__{table}" AS SELECT * FROM src."{schema}"."{table}"')
    rows += con.execute(f'SELECT count(*) FROM "{schema}__{table}"').fetchone()[0]
con.execute("CHECKPOINT")
print(rows, len(tables), time.perf_counter() - t0)
"""

#: The marts the warehouse issue names (the others serve the app's pages: customer view, assurance, search).
ISSUE_MARTS = ("zone_daily", "zone_kpi_daily", "cell_kpi_daily", "zone_scorecard", "subscriber_cell_usage",
               "customer_360", "churn_features", "alarm_impact", "data_quality", "freshness")

DAY = re.compile(r"_(\d{8})\.")


def link_tree(src: Path, dst: Path, *, skip_day: str | None = None) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.iterdir()):
        m = DAY.search(f.name)
        if skip_day and m and m.group(1) == skip_day:
            continue
        if not (dst / f.name).exists():
            (dst / f.name).symlink_to(f.resolve())


def write_floor(live: Path, dst: Path, *, marts: tuple[str, ...] | None = None, what: str):
    """Run WRITE_FLOOR from the warehouse file `live` into `dst` (removed after); (run, rows, tables)."""
    args = [sys.executable, "-c", WRITE_FLOOR, str(live), str(dst), "3GB"] + ([",".join(marts)] if marts else [])
    result = run(args)
    if result.returncode:
        raise SystemExit(f"{what} failed:\n{result.stderr[-4000:]}")
    dst.unlink()
    rows, tables, _ = result.stdout.strip().splitlines()[-1].split()
    return result, rows, tables


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--engine", default="duckdb")
    args = ap.parse_args()

    src = ensure_generated(args.customers, args.days)
    size_mb = sum(f.stat().st_size for f in src.iterdir()) / 2**20
    days = sorted({m.group(1) for f in src.iterdir() if (m := DAY.search(f.name))})
    work = Path(tempfile.mkdtemp(prefix="opencem-bench-"))
    try:
        ref = run([sys.executable, "-c", REFERENCE, str(src), str(work / "reference.duckdb")])
        if ref.returncode:
            raise SystemExit(ref.stderr)
        ref_rows = int(ref.stdout.strip().splitlines()[-1])

        full = run(opencem("refresh", "--source", str(src), "--warehouse", str(work / "wh_full"), "--json",
                           "--engine", args.engine))
        if full.returncode:
            raise SystemExit(f"full refresh failed ({full.returncode}):\n{full.stderr[-4000:]}")
        summary = full.json()
        live = work / "wh_full" / "versions" / (work / "wh_full" / "CURRENT").read_text().strip()
        floor, floor_rows, floor_tables = write_floor(live, work / "floor.duckdb", what="write floor")
        named, named_rows, named_tables = write_floor(live, work / "floor.duckdb", marts=ISSUE_MARTS,
                                                      what="write floor of the issue's tables")
        shutil.rmtree(work / "wh_full", ignore_errors=True)

        partial = work / "partial"
        link_tree(src, partial, skip_day=days[-1])
        first = run(opencem("refresh", "--source", str(partial), "--warehouse", str(work / "wh_inc"), "--json"))
        if first.returncode:
            raise SystemExit(f"refresh without the last day failed:\n{first.stderr[-4000:]}")
        link_tree(src, partial)
        inc = run(opencem("refresh", "--source", str(partial), "--warehouse", str(work / "wh_inc"), "--json"))
        if inc.returncode:
            raise SystemExit(f"incremental refresh failed:\n{inc.stderr[-4000:]}")
        again = run(opencem("refresh", "--source", str(partial), "--warehouse", str(work / "wh_inc"), "--json"))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rows_read = summary.get("rows_read", 0)
    print(f"\nopencem refresh benchmark: {args.customers:,} customers x {args.days} days, "
          f"{size_mb:,.0f} MB of extracts, engine {args.engine}\n")
    print(table([
        ("duckdb read_csv (reference)", f"{ref.wall_s:.1f}", f"{ref.peak_rss_mb:,.0f}", f"{ref_rows:,}",
         f"{ref_rows / ref.wall_s:,.0f}", "1.00"),
        ("opencem refresh, full", f"{full.wall_s:.1f}", f"{full.peak_rss_mb:,.0f}", f"{rows_read:,}",
         f"{rows_read / full.wall_s:,.0f}", f"{full.wall_s / ref.wall_s:.2f}"),
        ("write floor: copy the stored tables", f"{floor.wall_s:.1f}", f"{floor.peak_rss_mb:,.0f}",
         f"{int(floor_rows):,}", f"{int(floor_rows) / floor.wall_s:,.0f}", f"{floor.wall_s / ref.wall_s:.2f}"),
        ("write floor: landing, staging, issue's marts", f"{named.wall_s:.1f}", f"{named.peak_rss_mb:,.0f}",
         f"{int(named_rows):,}", f"{int(named_rows) / named.wall_s:,.0f}", f"{named.wall_s / ref.wall_s:.2f}"),
        ("opencem refresh, one new day", f"{inc.wall_s:.1f}", f"{inc.peak_rss_mb:,.0f}",
         f"{inc.json().get('rows_read', 0):,}", "", f"{inc.wall_s / ref.wall_s:.2f}"),
        ("opencem refresh, nothing new", f"{again.wall_s:.1f}", f"{again.peak_rss_mb:,.0f}",
         f"{again.json().get('rows_read', 0):,}", "", f"{again.wall_s / ref.wall_s:.2f}"),
    ], ("run", "wall s", "peak RSS MB", "rows", "rows/s", "x reference")))
    print(f"\nfull / reference = {full.wall_s / ref.wall_s:.2f} (target < 2, aim 1.5); "
          f"incremental / full = {inc.wall_s / full.wall_s:.2f} (target < 0.25); "
          f"peak RSS {full.peak_rss_mb / 1024:.2f} GB (target < 6)")
    print(f"write floor: copying the {floor_tables} tables the full refresh stored ({int(floor_rows):,} rows) into a "
          f"new file takes {floor.wall_s / ref.wall_s:.2f}x the reference, before any parsing or aggregating; "
          f"landing, staging and the {len(ISSUE_MARTS)} marts the issue names alone ({named_tables} tables, "
          f"{int(named_rows):,} rows) {named.wall_s / ref.wall_s:.2f}x")
    steps = summary.get("steps") or summary.get("timings")
    inc_steps = inc.json().get("steps") or inc.json().get("timings")
    if steps:
        print("\nfull refresh by step:", json.dumps(steps, indent=1, default=str))
        print("\none new day by step:", json.dumps(inc_steps, indent=1, default=str))
    out = RESULTS / f"etl_{args.customers}x{args.days}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "customers": args.customers, "days": args.days, "engine": args.engine, "extracts_mb": round(size_mb),
        "load_average_1m": os.getloadavg()[0],
        "reference": {"wall_s": ref.wall_s, "peak_rss_mb": ref.peak_rss_mb, "rows": ref_rows},
        "full": {"wall_s": full.wall_s, "peak_rss_mb": full.peak_rss_mb, "rows": rows_read, "steps": steps},
        "one_new_day": {"wall_s": inc.wall_s, "peak_rss_mb": inc.peak_rss_mb, "steps": inc_steps},
        "nothing_new": {"wall_s": again.wall_s, "peak_rss_mb": again.peak_rss_mb},
        "write_floor": {"wall_s": floor.wall_s, "peak_rss_mb": floor.peak_rss_mb, "rows": int(floor_rows),
                        "tables": int(floor_tables)},
        "write_floor_issue_tables": {"wall_s": named.wall_s, "peak_rss_mb": named.peak_rss_mb,
                                     "rows": int(named_rows), "tables": int(named_tables)},
        "full_over_reference": full.wall_s / ref.wall_s, "one_day_over_full": inc.wall_s / full.wall_s,
    }, indent=1, default=str))
    print(f"\nwritten {out}")


if __name__ == "__main__":
    main()
