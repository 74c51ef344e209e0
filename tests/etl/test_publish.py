"""The versioned warehouse: lock, working copy, atomic publish, pruning, readers of old versions, debris."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from etl.errors import LockHeld, OpencemError, UsageError
from etl.publish import Warehouse, version_name, version_number

ROOT = Path(__file__).resolve().parents[2]


def publish_value(wh: Warehouse, value: int) -> str:
    """Publish a version whose table t holds `value` (the first version creates t)."""
    with wh.lock(), wh.working_copy() as wc:
        wc.con.execute("CREATE TABLE IF NOT EXISTS t (v BIGINT)")
        wc.con.execute("DELETE FROM t")
        wc.con.execute("INSERT INTO t VALUES (?)", [value])
        return wh.publish(wc)


def live_value(wh: Warehouse) -> int:
    con = wh.open_current()
    try:
        return con.execute("SELECT v FROM t").fetchone()[0]
    finally:
        con.close()


def test_version_names_round_trip():
    assert version_name(7) == "v000007.duckdb" and version_number("v000007.duckdb") == 7
    assert version_number("v000007.duckdb.building") is None and version_number("CURRENT") is None


def test_nothing_published_yet(tmp_path: Path):
    wh = Warehouse(tmp_path / "wh")
    assert wh.live_name() is None and wh.versions() == []
    with pytest.raises(UsageError, match="no published version.*opencem refresh"):
        wh.open_current()


def test_publish_switches_current_and_copies_the_live_version(tmp_path: Path):
    wh = Warehouse(tmp_path, keep_versions=3)
    assert publish_value(wh, 1) == "v000001.duckdb"
    assert (tmp_path / "CURRENT").read_text().strip() == "v000001.duckdb"
    assert live_value(wh) == 1
    with wh.lock(), wh.working_copy() as wc:  # the working copy starts as a copy of the live version
        assert wc.based_on == "v000001.duckdb" and wc.path.name == "v000002.duckdb.building"
        assert wc.con.execute("SELECT v FROM t").fetchone()[0] == 1
        wc.con.execute("UPDATE t SET v = 2")
        wh.publish(wc)
    assert live_value(wh) == 2 and wh.live_name() == "v000002.duckdb"
    assert not list(wh.versions_dir.glob("*.building*")) and not list(wh.versions_dir.glob("*.wal"))


def test_a_working_copy_not_published_is_discarded(tmp_path: Path):
    wh = Warehouse(tmp_path)
    publish_value(wh, 1)
    with pytest.raises(RuntimeError), wh.lock(), wh.working_copy() as wc:
        wc.con.execute("UPDATE t SET v = 99")
        raise RuntimeError("a step failed")
    assert wh.live_name() == "v000001.duckdb" and live_value(wh) == 1
    assert sorted(p.name for p in wh.versions_dir.iterdir()) == ["v000001.duckdb"]


def test_prune_keeps_the_last_versions(tmp_path: Path):
    wh = Warehouse(tmp_path, keep_versions=2)
    for v in range(1, 6):
        publish_value(wh, v)
    assert wh.versions() == ["v000004.duckdb", "v000005.duckdb"]
    assert live_value(wh) == 5


def test_prune_never_removes_the_live_version(tmp_path: Path):
    wh = Warehouse(tmp_path, keep_versions=1)
    publish_value(wh, 1)
    publish_value(wh, 2)
    # CURRENT pointed back at an old version by hand (a rollback): pruning keeps it
    (tmp_path / "CURRENT").write_text("v000002.duckdb\n")
    (wh.versions_dir / "v000003.duckdb").write_bytes((wh.versions_dir / "v000002.duckdb").read_bytes())
    assert wh.prune() == []
    (tmp_path / "CURRENT").write_text("v000003.duckdb\n")
    assert wh.prune() == ["v000002.duckdb"]


def test_a_reader_of_the_old_version_keeps_reading_it_after_publish_and_prune(tmp_path: Path):
    wh = Warehouse(tmp_path, keep_versions=1)
    publish_value(wh, 1)
    reader = wh.open_current()
    try:
        publish_value(wh, 2)
        publish_value(wh, 3)  # v000001 is pruned from disk while the reader holds it
        assert not (wh.versions_dir / "v000001.duckdb").exists()
        assert reader.execute("SELECT v FROM t").fetchone()[0] == 1
        assert live_value(wh) == 3
    finally:
        reader.close()


def test_the_live_version_is_never_opened_for_writing(tmp_path: Path):
    wh = Warehouse(tmp_path)
    publish_value(wh, 1)
    with pytest.raises(UsageError, match="never written in place"):
        wh.open_current(read_only=False)
    con = wh.open_current()
    with pytest.raises(duckdb.Error):
        con.execute("CREATE TABLE x (a INT)")
    con.close()


def test_the_lock_names_its_holder_and_is_released(tmp_path: Path):
    wh = Warehouse(tmp_path)
    with wh.lock():
        holder = wh.holder()
        assert holder["pid"] == os.getpid() and holder["started_at"].endswith("Z")
        expected = rf"pid {os.getpid()} .*started at {holder['started_at']}"
        with pytest.raises(LockHeld, match=expected), wh.lock():
            pass
    with wh.lock():  # released: taken again
        pass
    assert wh.holder() == {}


def test_the_lock_held_by_another_process(tmp_path: Path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from etl.publish import Warehouse
        with Warehouse(Path({str(tmp_path)!r})).lock():
            print("locked", flush=True)
            sys.stdin.readline()
    """)
    child = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(LockHeld, match=rf"pid {child.pid}"), Warehouse(tmp_path).lock():
            pass
    finally:
        child.kill()
        child.wait()
    with Warehouse(tmp_path).lock():  # the kernel released the dead holder's lock
        pass


def test_building_and_publishing_need_the_lock(tmp_path: Path):
    wh = Warehouse(tmp_path)
    with pytest.raises(OpencemError, match="without holding"), wh.working_copy():
        pass


def test_debris_of_killed_runs_is_cleaned_under_the_lock(tmp_path: Path):
    wh = Warehouse(tmp_path)
    publish_value(wh, 1)
    vd = wh.versions_dir
    for name in ("v000002.duckdb.building", "v000002.duckdb.building.wal", "v000003.duckdb"):
        (vd / name).write_bytes(b"half")
    (tmp_path / "CURRENT.tmp").write_text("v000003.duckdb\n")
    with wh.lock():
        removed = wh.clean_debris()
    assert sorted(removed) == ["CURRENT.tmp", "v000002.duckdb.building", "v000002.duckdb.building.wal",
                               "v000003.duckdb"]
    assert wh.versions() == ["v000001.duckdb"] and live_value(wh) == 1
    assert publish_value(wh, 2) == "v000002.duckdb"


def test_a_corrupt_current_pointer_is_reported(tmp_path: Path):
    (tmp_path / "CURRENT").write_text("../../etc/passwd\n")
    with pytest.raises(OpencemError, match="expected a version file name"):
        Warehouse(tmp_path).live_name()
