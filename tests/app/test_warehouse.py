from __future__ import annotations

import os
import threading
from pathlib import Path

import duckdb
import pytest

from app.warehouse import NoWarehouse, WarehouseReader


def publish(root: Path, name: str, value: int) -> None:
    """A minimal published version: a DuckDB file under versions/ and CURRENT naming it (atomically)."""
    (root / "versions").mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(root / "versions" / name))
    con.execute("CREATE SCHEMA marts")
    con.execute("CREATE TABLE marts.t AS SELECT ? AS v", [value])
    con.close()
    tmp = root / "CURRENT.tmp"
    tmp.write_text(name)
    os.replace(tmp, root / "CURRENT")


def test_no_warehouse_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(NoWarehouse, match="opencem refresh"):
        WarehouseReader(tmp_path).query("SELECT 1")


def test_reads_the_current_version_and_follows_a_new_one_without_restart(tmp_path: Path) -> None:
    publish(tmp_path, "v000001.duckdb", 1)
    db = WarehouseReader(tmp_path)
    assert db.query("SELECT v FROM marts.t")["v"][0] == 1
    assert db.has_table("marts.t") and not db.has_table("marts.nope")
    publish(tmp_path, "v000002.duckdb", 2)
    assert db.query("SELECT v FROM marts.t")["v"][0] == 2
    assert db.version.name == "v000002.duckdb"


def test_a_request_running_on_the_old_version_finishes_there(tmp_path: Path) -> None:
    publish(tmp_path, "v000001.duckdb", 1)
    db = WarehouseReader(tmp_path)
    with db.cursor() as cur:
        publish(tmp_path, "v000002.duckdb", 2)
        assert cur.execute("SELECT v FROM marts.t").fetchone()[0] == 1
    assert db.query("SELECT v FROM marts.t")["v"][0] == 2


def test_the_app_cannot_write(tmp_path: Path) -> None:
    publish(tmp_path, "v000001.duckdb", 1)
    db = WarehouseReader(tmp_path)
    with pytest.raises(duckdb.Error):
        db.query("CREATE TABLE marts.x AS SELECT 1")


def test_parameters_are_bound_not_formatted(tmp_path: Path) -> None:
    publish(tmp_path, "v000001.duckdb", 1)
    db = WarehouseReader(tmp_path)
    assert db.query("SELECT count(*) AS n FROM marts.t WHERE CAST(v AS VARCHAR) = ?", ["1 OR 1=1"])["n"][0] == 0


def test_cursors_from_many_threads(tmp_path: Path) -> None:
    publish(tmp_path, "v000001.duckdb", 7)
    db = WarehouseReader(tmp_path)
    seen: list[int] = []
    threads = [threading.Thread(target=lambda: seen.append(db.query("SELECT v FROM marts.t")["v"][0]))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [7] * 8
