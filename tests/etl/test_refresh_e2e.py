"""End to end through the command line: generate a tiny operator, refresh it twice (the second finds
nothing new), and check that `opencem status` reports every planted quarantine problem of truth.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENCEM_WAREHOUSE"}
    return subprocess.run([sys.executable, "-m", "etl.cli", *args], check=False, cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.slow
def test_generate_refresh_twice_status(tmp_path: Path):
    src, wh = tmp_path / "src", tmp_path / "wh"
    gen = cli("generate", "--out", str(src), "--customers", "200", "--days", "3", "--seed", "7")
    assert gen.returncode == 0, gen.stderr
    truth = json.loads((src / "truth.json").read_text())

    first = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
    assert first.returncode == 0, first.stderr
    r1 = json.loads(first.stdout)
    assert r1["status"] == "published" and r1["version"] == "v000001.duckdb"
    assert r1["ignored_files"] == ["truth.json"]
    assert r1["rows_read"] == r1["rows_kept"] + r1["rows_quarantined"] > 1000
    for f in r1["files"]:
        assert f["rows_read"] == f["rows_kept"] + f["rows_quarantined"], f
    assert all(c["ok"] for c in r1["checks"]), [c for c in r1["checks"] if not c["ok"]]
    assert r1["sources_not_loaded"] == []
    assert r1["tables"]["marts.customer_360"] > 0 and r1["tables"]["marts.zone_daily"] > 0

    second = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
    assert second.returncode == 0, second.stderr
    r2 = json.loads(second.stdout)
    assert r2["status"] == "nothing_new" and r2["version"] == "v000001.duckdb" and r2["files"] == []
    assert r2["unchanged_files"] == len(r1["files"])

    st = cli("status", "--warehouse", str(wh), "--json")
    assert st.returncode == 0, st.stderr
    s = json.loads(st.stdout)
    assert s["live_version"] == "v000001.duckdb" and s["sources_not_loaded"] == []
    assert s["quarantine_total"] == r1["rows_quarantined"]

    # every planted problem that quarantines rows is found, with its exact count
    planted: Counter[str] = Counter()
    for item in truth["inconsistencies"].values():
        if item["check"].startswith("quarantine:"):
            planted[item["check"]] += item["count"]
    found = {f"quarantine:{source}:{why}": n for source, reasons in s["quarantine"].items()
             for why, n in reasons.items()}
    for check, count in planted.items():
        assert found.get(check, 0) == count, (check, found)
    assert s["sources"]["charging"]["as_of"][:10] == truth["generator"]["end_date"][:10]
