"""Benchmark of the churn model at scale: training (`python -m models.train`, the code behind `opencem
train`) and scoring with the registered model, each in its own process, timed with peak RSS.

    .venv/bin/python benchmarks/churn.py --customers 1000000 --days 21

Targets (issue: churn risk): at 1M customers, training under 3 minutes, scoring under 30 s, peak RSS under
6 GB, on 2 cores. The operator is generated once (benchmarks/data, plain CSV) and loaded once with
`opencem refresh` (its time is reported, not a target here). Training is everything `opencem train` does
before scoring (features, time split, fits, evaluation, the final fit); scoring is loading the registered
model (its hash checked), reading the latest snapshot's features (that snapshot only), predicting,
explaining every customer in words and writing nothing (the training run's own scoring-and-publishing
time is reported too). The load average before and after each step is printed and saved: on 2 shared
cores, figures taken under a load above 2 are slower than the code.
21 days give three weekly snapshots, two of them labelled: the time split has something to learn from.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import DATA, ROOT, ensure_generated, opencem, run, table

RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"train_s": 180.0, "score_s": 30.0, "peak_rss_mb": 6 * 1024}

SCORE = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
import duckdb
from threadpoolctl import threadpool_limits
from etl.config import Settings
from models.features import load_frame
from models.registry import Registry
from models.score import score_snapshot
from models.train import utcnow
root = Path(sys.argv[1])
threads = int(sys.argv[2])
t = {"imports": time.perf_counter() - t0}
with threadpool_limits(limits=threads):
    s = time.perf_counter()
    model, manifest = Registry.for_warehouse(root).load()
    t["load_model"] = time.perf_counter() - s
    con = duckdb.connect(str(root / "versions" / (root / "CURRENT").read_text().strip()), read_only=True)
    s = time.perf_counter()
    frame = load_frame(con, latest_only=True)
    t["features"] = time.perf_counter() - s
    s = time.perf_counter()
    scores = score_snapshot(con, model, frame, settings=Settings(warehouse_dir=root),
                            model_version=manifest["model_version"], scored_at=utcnow())
    t["predict_and_explain"] = time.perf_counter() - s
t["total"] = time.perf_counter() - t0
print(json.dumps({"timings_s": t, "n_scored": len(scores), "with_reasons": int((scores.frame["reason_codes"].list.len() > 0).sum())}))
"""


def _load(v: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--threads", type=int, default=1, help="OpenMP threads for fitting and scoring")
    ap.add_argument("--setup-only", action="store_true", help="generate and load the operator, then stop")
    args = ap.parse_args()

    src = ensure_generated(args.customers, args.days)
    wh = DATA / f"wh_churn_{args.customers}_{args.days}"
    rows = []
    if not (wh / "CURRENT").exists():
        print(f"refreshing {src} into {wh} ...", file=sys.stderr)
        r = run(opencem("refresh", "--source", str(src), "--warehouse", str(wh), "--json"))
        if r.returncode:
            raise SystemExit(f"refresh failed ({r.returncode}):\n{r.stderr[-4000:]}")
        rows.append(("refresh (setup)", f"{r.wall_s:.1f}", f"{r.peak_rss_mb:,.0f}", ""))
        print(f"refresh: {r.wall_s:.1f} s, peak RSS {r.peak_rss_mb:,.0f} MB", file=sys.stderr)
    if args.setup_only:
        return
    load = {"before_train": os.getloadavg()}
    print(f"training ... (load average {_load(load['before_train'])})", file=sys.stderr)
    tr = run([sys.executable, "-m", "models.train", "--warehouse", str(wh), "--json", "--threads", str(args.threads)])
    if tr.returncode:
        raise SystemExit(f"training failed ({tr.returncode}):\n{tr.stderr[-4000:]}")
    result = tr.json()
    t = result["timings_s"]
    train_s = sum(t.get(k, 0.0) for k in ("features", "fit", "evaluate", "refit"))  # not the file copy
    load["before_score"] = os.getloadavg()
    print(f"scoring ... (load average {_load(load['before_score'])})", file=sys.stderr)
    sc = run([sys.executable, "-c", SCORE, str(wh), str(args.threads)])
    load["after_score"] = os.getloadavg()
    if sc.returncode:
        raise SystemExit(f"scoring failed ({sc.returncode}):\n{sc.stderr[-4000:]}")
    scored = sc.json()
    score_s = scored["timings_s"]["total"]
    rows += [
        ("train (whole process)", f"{tr.wall_s:.1f}", f"{tr.peak_rss_mb:,.0f}",
         "; ".join(f"{k} {v:.1f}s" for k, v in t.items())),
        ("  of which training", f"{train_s:.1f}", "", f"target < {TARGETS['train_s']:.0f} s"),
        ("score (own process)", f"{sc.wall_s:.1f}", f"{sc.peak_rss_mb:,.0f}",
         "; ".join(f"{k} {v:.1f}s" for k, v in scored["timings_s"].items())),
        ("  of which scoring", f"{score_s:.1f}", "", f"target < {TARGETS['score_s']:.0f} s"),
    ]
    print(table(rows, ("step", "wall s", "peak RSS MB", "detail")))
    g = result["metrics"]["gbm"]
    print(f"\n{result['n_scored']:,} customers scored ({scored['with_reasons']:,} with reasons); {result['split']}; "
          f"held-out ROC AUC {g['roc_auc']:.3f}, PR AUC {g['pr_auc']:.3f}, lift {g['lift_top_decile']:.2f}; "
          f"drivers: {', '.join(d['reason'] for d in result['drivers'][:5])}")
    peak = max(tr.peak_rss_mb, sc.peak_rss_mb)
    verdict = {"train_s": train_s, "score_s": score_s, "peak_rss_mb": peak}
    ok = {k: v < TARGETS[k] for k, v in verdict.items()}
    print("load average (1, 5, 15 min): " + "; ".join(f"{k.replace('_', ' ')} {_load(v)}" for k, v in load.items()))
    print("targets: " + ", ".join(f"{k} {v:,.1f} ({'met' if ok[k] else 'MISSED'})" for k, v in verdict.items()))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"churn_{args.customers}x{args.days}.json"
    out.write_text(json.dumps({"customers": args.customers, "days": args.days, "threads": args.threads,
                               "train_wall_s": tr.wall_s, "train_peak_rss_mb": tr.peak_rss_mb, "train_s": train_s,
                               "score_wall_s": sc.wall_s, "score_peak_rss_mb": sc.peak_rss_mb, "score_s": score_s,
                               "train_timings_s": t, "score_timings_s": scored["timings_s"],
                               "n_scored": result["n_scored"], "metrics": result["metrics"],
                               "split": result["split"], "targets_met": ok,
                               "load_average": {k: [round(x, 2) for x in v] for k, v in load.items()}}, indent=2))
    print(f"written {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
