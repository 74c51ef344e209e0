"""The refresh, in process, on a tiny literal operator: rerun, next day, corrected file, duplicates,
conservation, reject rate, unreadable input, missing sources.

Every refresh builds the real staging and marts (a few seconds each), so the first refresh runs once per
module and each test works on a copy of its warehouse and source folder.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_refresh_data import charging_rows, usage_line, write_day, write_operator

from etl.config import Settings
from etl.contracts import LOAD_ORDER
from etl.errors import ContractError, UsageError
from etl.pipeline import LAST_REFRESH, refresh
from etl.publish import Warehouse
from etl.status import describe_status, status


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tiny operator's folder and the warehouse its first refresh published (shared: do not modify)."""
    root = tmp_path_factory.mktemp("base")
    src = write_operator(root / "src")
    settings = Settings(warehouse_dir=root / "wh")
    lines: list[str] = []
    first = refresh(settings, source=src, log=lines.append)
    return src, settings, first, lines


@pytest.fixture
def env(base, tmp_path: Path):
    """A copy of the base folder and warehouse (v000001 live) for a test to change."""
    src, settings, _, _ = base
    shutil.copytree(src, tmp_path / "src")
    shutil.copytree(settings.warehouse_dir, tmp_path / "wh")
    return tmp_path / "src", Settings(warehouse_dir=tmp_path / "wh")


def run(settings: Settings, src: Path, lines: list[str] | None = None, **kw):
    return refresh(settings, source=src, log=(lines.append if lines is not None else lambda _m: None), **kw)


def live(settings: Settings, sql: str, params=()):
    con = Warehouse(settings.warehouse_dir).open_current()
    try:
        return con.execute(sql, list(params)).fetchall()
    finally:
        con.close()


def test_first_refresh_publishes_and_summarises(base):
    _, settings, r, lines = base
    assert r.ok and r.status == "published" and r.version == "v000001.duckdb" and r.previous_version is None
    assert (settings.warehouse_dir / "CURRENT").read_text().strip() == "v000001.duckdb"
    assert {f.file for f in r.files} == {"zones.geojson", "sites.csv", "cells.csv", "customers.csv",
                                        "subscriptions.csv", "charging_20261101.csv"}
    assert r.ignored_files == ("truth.json",)
    charging = next(f for f in r.files if f.file == "charging_20261101.csv")
    assert (charging.rows_read, charging.rows_kept, charging.rows_quarantined) == (4, 3, 1)
    assert charging.quarantined_by_reason == {"unknown_reference:cell_id": 1}
    assert all(f.rows_read == f.rows_kept + f.rows_quarantined for f in r.files)
    assert r.quarantined_by_reason == {"charging": {"unknown_reference:cell_id": 1}}
    assert r.tables["raw.charging"] == 3 and r.tables["raw.quarantine"] == 1
    assert "topups" in r.sources_not_loaded and "charging" not in r.sources_not_loaded
    assert live(settings, "SELECT count(*) FROM raw.manifest") == [(6,)]
    assert live(settings, "SELECT status, summary->>'status' FROM raw.loads") == [("published", "published")]
    steps = [s.step for s in r.steps]
    assert steps[:2] == ["scan", "manifest"] and "references" in steps and "conservation" in steps
    assert any(line.startswith("extract charging_20261101.csv: read 4") for line in lines)
    d = r.to_dict()
    assert json.loads(json.dumps(d, default=str))["rows_read"] == r.rows_read == sum(f.rows_read for f in r.files)
    assert "published v000001.duckdb" in r.describe()


def test_running_the_same_refresh_twice_changes_nothing(env):
    src, settings = env
    before = sorted(p.name for p in (settings.warehouse_dir / "versions").iterdir())
    again = run(settings, src)
    assert again.ok and again.status == "nothing_new" and again.version == "v000001.duckdb"
    assert again.files == () and again.unchanged_files == 6
    assert sorted(p.name for p in (settings.warehouse_dir / "versions").iterdir()) == before
    assert "nothing new" in again.describe()
    last = json.loads((settings.warehouse_dir / LAST_REFRESH).read_text())
    assert last["status"] == "nothing_new" and last["live_version"] == "v000001.duckdb"


def test_files_known_by_size_and_time_are_not_read_again(env, monkeypatch: pytest.MonkeyPatch):
    """The manifest records each file's size and modification time: a file that still has both keeps its
    recorded hash unread; a touched file (same bytes, a new time) is read again and found unchanged."""
    import etl.load

    src, settings = env
    hashed: list[str] = []
    real = etl.load.sha256_file
    monkeypatch.setattr(etl.load, "sha256_file", lambda path, **kw: hashed.append(path.name) or real(path, **kw))
    lines: list[str] = []
    again = run(settings, src, lines)
    assert again.status == "nothing_new" and hashed == []
    assert any(line.startswith("scan: read 6; 0 hashed, 6 known by size and time; 1 ignored") for line in lines), lines
    cells = src / "cells.csv"
    st = cells.stat()
    os.utime(cells, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    again = run(settings, src)
    assert hashed == ["cells.csv"] and again.status == "nothing_new" and again.unchanged_files == 6
    write_day(src, "20261101", [usage_line("U20261101-1", "20261101", amount=7.0)])  # rewritten: a new time
    again = run(settings, src)
    assert "charging_20261101.csv" in hashed and [f.change for f in again.files] == ["changed"]


def test_the_next_day_loads_only_its_file(env):
    src, settings = env
    write_day(src, "20261102")
    r = run(settings, src)
    assert r.version == "v000002.duckdb" and [f.file for f in r.files] == ["charging_20261102.csv"]
    assert r.unchanged_files == 6
    assert live(settings, "SELECT _load_id, count(*) FROM raw.charging GROUP BY 1 ORDER BY 1") == [(1, 3), (2, 3)]
    assert live(settings, "SELECT file, load_id FROM raw.manifest WHERE source = 'charging' ORDER BY 1") == [
        ("charging_20261101.csv", 1), ("charging_20261102.csv", 2)]
    assert live(settings, "SELECT count(*) FROM raw.loads") == [(2,)]


def test_a_corrected_file_replaces_its_rows(env):
    src, settings = env
    day = "20261101"
    write_day(src, day, [usage_line(f"U{day}-1", day, amount=7.0), usage_line(f"U{day}-3", day, cell="C3")])
    r = run(settings, src)
    assert [(f.file, f.change, f.rows_read, f.rows_kept) for f in r.files] == [("charging_20261101.csv", "changed", 2, 2)]
    assert live(settings, "SELECT usage_id, amount FROM raw.charging ORDER BY 1") == [
        (f"U{day}-1", 7.0), (f"U{day}-3", 0.5)]
    assert live(settings, "SELECT count(*) FROM raw.quarantine") == [(0,)]  # the old file's reject went with it
    assert live(settings, "SELECT rows_read, rows_kept, rows_quarantined, load_id FROM raw.manifest "
                          "WHERE file = 'charging_20261101.csv'") == [(2, 2, 0, 2)]


def test_duplicate_keys_across_days_the_later_file_wins(env):
    src, settings = env
    rows = charging_rows("20261102") + [usage_line("U20261101-1", "20261102", amount=3.0)]
    write_day(src, "20261102", rows)
    r = run(settings, src)
    assert r.duplicates == {"charging": 1} and r.earlier_rows_quarantined == 1
    assert live(settings, "SELECT amount, _file FROM raw.charging WHERE usage_id = 'U20261101-1'") == [
        (3.0, "charging_20261102.csv")]
    q = live(settings, "SELECT file, line, reason, message FROM raw.quarantine WHERE reason = 'duplicate_key'")
    assert [x[:3] for x in q] == [("charging_20261101.csv", 2, "duplicate_key")]
    assert "charging_20261102.csv, row 6" in q[0][3]
    # conservation holds for the earlier file after its row moved
    assert live(settings, "SELECT rows_read, rows_kept, rows_quarantined FROM raw.manifest "
                          "WHERE file = 'charging_20261101.csv'") == [(4, 2, 2)]


def test_a_reject_rate_above_the_bound_publishes_nothing(env):
    src, settings = env
    write_day(src, "20261102", [usage_line(f"X{i}", "20261102", cell="C9") for i in range(5)])
    r = run(settings, src)
    assert not r.ok and r.status == "rejected" and r.version == "v000001.duckdb"
    failed = [c for c in r.checks if not c.ok]
    mine = next(c for c in failed if c.name == "reject_rate:charging")
    assert "5 of 5 rows" in mine.detail and "expected at most 25%" in mine.detail
    assert Warehouse(settings.warehouse_dir).live_name() == "v000001.duckdb"
    assert Warehouse(settings.warehouse_dir).versions() == ["v000001.duckdb"]
    assert "REJECTED" in r.describe() and "reject_rate:charging" in r.describe()
    last = json.loads((settings.warehouse_dir / LAST_REFRESH).read_text())
    assert last["status"] == "rejected" and "reject_rate:charging" in {c["name"] for c in last["failed_checks"]}
    # the rejected file was not recorded: with the bound raised, the same file loads
    lenient = Settings(warehouse_dir=settings.warehouse_dir, max_reject_rate=1.0)
    assert run(lenient, src).version == "v000002.duckdb"


def test_an_unreadable_file_stops_the_refresh_and_publishes_nothing(env):
    src, settings = env
    (src / "charging_20261102.csv").write_text("usage_id,amount\nU1,2\n")  # required columns missing
    with pytest.raises(ContractError, match="charging_20261102.csv"):
        run(settings, src)
    wh = Warehouse(settings.warehouse_dir)
    assert wh.live_name() == "v000001.duckdb" and wh.versions() == ["v000001.duckdb"]
    assert not list((settings.warehouse_dir / "versions").glob("*.building*"))
    last = json.loads((settings.warehouse_dir / LAST_REFRESH).read_text())
    assert last["status"] == "failed" and "ContractError" in last["error"]


def test_a_missing_source_folder_is_a_usage_error(tmp_path: Path):
    with pytest.raises(UsageError, match="does not exist"):
        run(Settings(warehouse_dir=tmp_path / "wh"), tmp_path / "nope")
    assert not (tmp_path / "wh" / "CURRENT").exists()


def test_phased_migration_bss_first_then_oss(tmp_path: Path):
    """Charging arrives before the network inventory: its cell references are not checked until cells load."""
    src = write_operator(tmp_path / "src", zones=False)
    oss = tmp_path / "later"
    oss.mkdir()
    for name in ("sites.csv", "cells.csv"):
        (src / name).rename(oss / name)
    settings = Settings(warehouse_dir=tmp_path / "wh")
    r = run(settings, src)
    assert r.ok and {"zones", "sites", "cells"} <= set(r.sources_not_loaded)
    assert r.references_not_checked == {"charging.cell_id": "not loaded: cells.cell_id"}
    assert live(settings, "SELECT count(*) FROM raw.charging") == [(4,)]
    s = status(settings)
    assert {"zones", "sites", "cells"} <= set(s["sources_not_loaded"])
    assert "NOT LOADED" in describe_status(s)
    for name in ("sites.csv", "cells.csv"):
        (oss / name).rename(src / name)
    r = run(settings, src)
    assert [f.file for f in r.files] == ["sites.csv", "cells.csv"]
    assert r.references == {"charging.cell_id": 1}  # the row on C9, loaded earlier, is now checked
    assert live(settings, "SELECT count(*) FROM raw.charging") == [(3,)]


def test_status_without_a_warehouse(tmp_path: Path):
    s = status(Settings(warehouse_dir=tmp_path / "wh"))
    assert s["live_version"] is None and s["sources_not_loaded"] == list(LOAD_ORDER)
    assert "no published version" in describe_status(s)


def test_status_reports_the_live_version(base):
    _, settings, _, _ = base
    s = status(settings)
    assert s["live_version"] == "v000001.duckdb" and s["versions"] == ["v000001.duckdb"]
    assert s["tables"]["raw.charging"] == 3
    assert s["quarantine"] == {"charging": {"unknown_reference:cell_id": 1}} and s["quarantine_total"] == 1
    ch = s["sources"]["charging"]
    assert ch["loaded"] and ch["files"] == 1 and ch["as_of"] == "2026-11-01T10:00:00"
    assert ch["as_of_column"] == "usage_at" and ch["rows_kept"] == 3 and ch["rows_quarantined"] == 1
    assert s["sources"]["cells"]["as_of"] == s["sources"]["cells"]["last_loaded_at"]  # no event time
    assert s["sources_not_loaded"] == ["promotions", "topups", "bills", "tickets", "kpi_hourly", "alarms"]
    assert s["last_refresh"]["status"] == "published" and s["refresh_running"] is None
    assert s["loads"][0]["load_id"] == 1 and s["published_at"]
    json.dumps(s)  # JSON-ready
    text = describe_status(s)
    assert "live version v000001.duckdb" in text and "charging" in text and "unknown_reference:cell_id 1" in text


def test_staging_and_marts_are_built_into_the_published_version(base):
    _, settings, r, _ = base
    con = duckdb.connect(str(settings.warehouse_dir / "versions" / r.version), read_only=True)
    try:
        schemas = {s for (s,) in con.execute("SELECT DISTINCT schema_name FROM duckdb_tables()").fetchall()}
        checks = con.execute("SELECT count(*), count(*) FILTER (WHERE passed) FROM meta.checks").fetchone()
        zones = con.execute("SELECT zone_id FROM staging.cell_zone ORDER BY cell_id").fetchall()
    finally:
        con.close()
    assert {"raw", "staging", "marts", "meta"} <= schemas
    assert checks[0] > 0 and checks[0] == checks[1]
    assert zones == [("Z1",), ("Z1",), ("Z1",)]  # geo placed the cells before the models ran
    assert all(c.ok for c in r.checks) and any(c.name == "reject_rate:charging" for c in r.checks)
    assert r.tables["marts.customer_360"] == 2


def test_a_file_rewritten_after_it_was_hashed_is_not_landed(tmp_path: Path):
    """The hash names the bytes the manifest records: a file that changes before it is read stops the refresh."""
    from etl.load import diff_manifest, ensure_schema, scan_folder
    from etl.pipeline import _Steps, extract_and_land

    src = write_operator(tmp_path / "src", zones=False)
    folder = scan_folder(src)
    write_day(src, "20261101", charging_rows("20261101")[:2])  # rewritten after the scan hashed it
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    try:
        ensure_schema(con)
        with pytest.raises(UsageError, match="charging_20261101.csv changed while the refresh was reading it"):
            extract_and_land(con, diff_manifest({}, folder.files), load_id=1, mapping=None, steps=_Steps(print))
    finally:
        con.close()
