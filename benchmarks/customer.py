"""Benchmark of the customer page and customer search at scale: server time per page (p50, p95, max) and
per search, measured through the app itself with login on (the gate, the audit log and masking included).

    .venv/bin/python benchmarks/customer.py --customers 1000000 --days 7
    .venv/bin/python benchmarks/customer.py --warehouse DIR        # measure an existing warehouse

A page's server time is the sum of its four callbacks (record, network and care answer, timeline, usage),
each a POST to /_dash-update-component as the browser sends it; the browser runs them at once, so the
sum is an upper bound of what a care agent waits for on the server. Searches are the search page's
callback: a customer id, a number in four notations, and a name. Targets (issue: the 360 view): page p95
under 300 ms, search under 1 s, at 1M customers. The reference in the same run is a trivial DuckDB query
and the `/_dash-layout` request, which say how loaded the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ensure_warehouse, pct, table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"

RECORD = ("..cu-title.children...cu-asof.children...cu-notices.children...cu-profile.children"
          "...cu-accounts.children...cu-models.children..")
NETWORK = "..cu-care.children...cu-cells.children.."
TIMELINE = "cu-timeline.figure"
USAGE = "cu-usage.children"
SEARCH = "cs-results.children"
PASSWORD = "benchmark-care-password"


def post(client, output: str, inputs: list[tuple[str, str, object]]) -> tuple[float, int, int]:
    """One callback as the browser posts it: (server time in ms, status, response bytes)."""
    outs = [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True))
            for part in output.strip(".").split("...")]
    body = {"output": output, "outputs": outs if len(outs) > 1 else outs[0],
            "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs], "state": [],
            "changedPropIds": [f"{i}.{p}" for i, p, _ in inputs]}
    t0 = time.perf_counter()
    r = client.post("/_dash-update-component", json=body)
    ms = (time.perf_counter() - t0) * 1000
    return ms, r.status_code, len(r.data)


def notations(msisdn: str) -> dict[str, str]:
    """A number as a care agent may type it: as stored, national with spaces, 00 prefix, with dashes."""
    digits = "".join(ch for ch in msisdn if ch.isdigit())
    national = digits[2:] if msisdn.startswith("+39") else digits[-10:]
    cc = digits[: len(digits) - len(national)]
    return {"msisdn as stored": msisdn, "msisdn national, spaces": f"{national[:3]} {national[3:6]} {national[6:]}",
            "msisdn 00 prefix": f"00{cc} {national}", "msisdn dashes": f"+{cc}-{national[:3]}-{national[3:]}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--pages", type=int, default=200, help="customer pages to open (random customers)")
    ap.add_argument("--searches", type=int, default=40, help="customers to search for, each in six ways")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--warehouse", help="measure an existing warehouse instead of generating one")
    args = ap.parse_args()

    wh = Path(args.warehouse) if args.warehouse else ensure_warehouse(args.customers, args.days)

    from app.auth import User, hash_password, write_users
    from app.main import create_app
    from etl.config import Settings

    tmp = Path(tempfile.mkdtemp(prefix="opencem-bench-customer-"))
    write_users(tmp / "users.toml", {"care": User("care", ("care",), hash_password(PASSWORD))})
    app = create_app(Settings(warehouse_dir=wh, users_file=tmp / "users.toml", secret_key_file=tmp / "secret_key",
                              audit_log_file=tmp / "audit.jsonl"))
    client = app.server.test_client()
    assert client.post("/auth/login", data={"username": "care", "password": PASSWORD}).status_code == 303
    db = app.server.extensions["opencem.warehouse"]
    n_customers = int(db.query("SELECT count(*) AS n FROM marts.customer_search")["n"][0])
    n_charging = int(db.query("SELECT count(*) AS n FROM staging.charging")["n"][0])

    rng = random.Random(args.seed)
    ids = db.query("SELECT customer_id FROM marts.customer_search USING SAMPLE reservoir(5000 ROWS) REPEATABLE (7)"
                   )["customer_id"].to_list()
    ids.sort()
    rng.shuffle(ids)
    affected = db.query("SELECT customer_id FROM marts.alarm_customers WHERE service_affecting "
                        "USING SAMPLE reservoir(50 ROWS) REPEATABLE (7)")["customer_id"].to_list()
    page_ids = ids[: args.pages - len(affected[: args.pages // 5])] + affected[: args.pages // 5]

    ref = []
    for _ in range(30):
        t0 = time.perf_counter()
        db.query("SELECT 1")
        ref.append((time.perf_counter() - t0) * 1000)
    layout = []
    for _ in range(10):
        t0 = time.perf_counter()
        client.get("/_dash-layout")
        layout.append((time.perf_counter() - t0) * 1000)

    # Warm-up: the first requests open the version file and fill DuckDB's caches.
    for cid in ids[-5:]:
        for out, inputs in ((RECORD, [("cu-id", "data", cid)]), (NETWORK, [("cu-id", "data", cid)])):
            post(client, out, inputs)

    per_callback: dict[str, list[float]] = defaultdict(list)
    pages: list[float] = []
    sizes: dict[str, int] = defaultdict(int)
    statuses: set[int] = set()
    for cid in page_ids:
        total = 0.0
        for name, out, inputs in (
            ("record", RECORD, [("cu-id", "data", cid)]),
            ("network + care answer", NETWORK, [("cu-id", "data", cid)]),
            ("timeline", TIMELINE, [("cu-kpi", "value", "availability_pct"), ("cu-id", "data", cid)]),
            ("usage", USAGE, [("cu-id", "data", cid)]),
        ):
            ms, status, size = post(client, out, inputs)
            statuses.add(status)
            per_callback[name].append(ms)
            sizes[name] = max(sizes[name], size)
            total += ms
        pages.append(total)

    searches: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, int] = defaultdict(int)
    targets = ids[args.pages: args.pages + args.searches]
    people = db.query(
        "SELECT s.customer_id, s.name, min(m.msisdn) AS msisdn FROM marts.customer_search s "
        "JOIN marts.msisdn_lookup m USING (customer_id) WHERE list_contains($ids, s.customer_id) GROUP BY ALL",
        {"ids": targets})
    for row in people.iter_rows(named=True):
        queries = {"customer id": row["customer_id"], **notations(row["msisdn"]),
                   "name": row["name"] or row["customer_id"]}
        for kind, text in queries.items():
            ms, status, size = post(client, SEARCH, [("cs-query", "value", text)])
            statuses.add(status)
            searches[kind].append(ms)
    # Whether each search found its customer (on the same app, outside the timings).
    from app.auth import Viewer
    from app.queries_customer import search_customers

    care = Viewer("care", frozenset({"care"}))
    for row in people.head(10).iter_rows(named=True):
        for kind, text in {"customer id": row["customer_id"], **notations(row["msisdn"])}.items():
            found = search_customers(db, text, viewer=care).rows["customer_id"].to_list()
            hits[kind] += row["customer_id"] in found

    rows = [(name, len(v), f"{pct(v, 0.5):.1f}", f"{pct(v, 0.95):.1f}", f"{max(v):.1f}", f"{sizes[name] / 1024:,.1f}")
            for name, v in per_callback.items()]
    rows.append(("page (sum of the four)", len(pages), f"{pct(pages, 0.5):.1f}", f"{pct(pages, 0.95):.1f}",
                 f"{max(pages):.1f}", ""))
    search_rows = [(kind, len(v), f"{pct(v, 0.5):.1f}", f"{pct(v, 0.95):.1f}", f"{max(v):.1f}",
                    f"{hits.get(kind, '-')}/10" if kind in hits else "")
                   for kind, v in searches.items()]
    all_searches = [x for v in searches.values() for x in v]
    load = os.getloadavg()[0]
    print(f"\nopencem customer page benchmark: {n_customers:,} customers, {n_charging:,} charging rows "
          f"(warehouse {wh}); load average {load:.1f} on {os.cpu_count()} cores\n")
    print(table(rows, ("customer page callback", "n", "p50 ms", "p95 ms", "max ms", "max KB")))
    print()
    print(table(search_rows, ("search by", "n", "p50 ms", "p95 ms", "max ms", "found")))
    print(f"\nreference: trivial DuckDB query p50 {statistics.median(ref):.2f} ms; /_dash-layout p50 "
          f"{statistics.median(layout):.1f} ms; HTTP statuses seen {sorted(statuses)}")
    summary = {
        "customers": n_customers, "charging_rows": n_charging, "pages": len(pages),
        "page_p50_ms": round(pct(pages, 0.5), 1), "page_p95_ms": round(pct(pages, 0.95), 1),
        "page_max_ms": round(max(pages), 1),
        "callback_p95_ms": {k: round(pct(v, 0.95), 1) for k, v in per_callback.items()},
        "search_p50_ms": round(pct(all_searches, 0.5), 1), "search_p95_ms": round(pct(all_searches, 0.95), 1),
        "search_max_ms": round(max(all_searches), 1),
        "search_p95_by_kind_ms": {k: round(pct(v, 0.95), 1) for k, v in searches.items()},
        "search_found_of_10": dict(hits), "reference_select_1_ms": round(statistics.median(ref), 2),
        "reference_layout_ms": round(statistics.median(layout), 1), "load_average_1m": round(load, 2),
        "targets": {"page_p95_ms": 300, "search_ms": 1000},
    }
    print(f"page p95 {summary['page_p95_ms']:.0f} ms (target < 300); search p95 {summary['search_p95_ms']:.0f} ms, "
          f"max {summary['search_max_ms']:.0f} ms (target < 1000)")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"customer_{n_customers}.json"
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
