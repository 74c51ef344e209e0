"""`refresh --mapping`: an operator's own export feeds a source through a mapping file; a bad mapping is
unreadable input (exit 2) and publishes nothing."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_refresh_data import write_operator

from etl.cli import main
from etl.config import Settings
from etl.errors import MappingError, UsageError
from etl.pipeline import refresh
from etl.publish import Warehouse

MAPPING = """
name = "test operator"
[sources.cells]
files = ["oss/inventory_*.csv"]
[sources.cells.columns]
cell_id = "CELL_NAME"
site_id = "SITE_CODE"
technology = "RAT"
band_mhz = "BAND"
azimuth_deg = "NULLIF(AZIMUTH, 'OMNI')"
capacity_mbps = "CAPACITY"
[sources.cells.constants]
status = "in_service"
[sources.cells.values.technology]
LTE = "4G"
NR = "5G"
"""

INVENTORY = """CELL_NAME,SITE_CODE,RAT,BAND,AZIMUTH,CAPACITY
C1,S1,LTE,1800,0,150
C2,S1,NR,3500,120,900
C3,S2,LTE,800,OMNI,75
"""


def test_a_mapped_export_feeds_its_source(tmp_path: Path):
    src = write_operator(tmp_path / "src", zones=False)
    (src / "oss").mkdir()
    (src / "oss" / "inventory_20261101.csv").write_text(INVENTORY)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text(MAPPING)
    settings = Settings(warehouse_dir=tmp_path / "wh")
    r = refresh(settings, source=src, mapping=mapping, log=lambda _m: None)
    assert r.ok, r.describe()
    cells = next(f for f in r.files if f.source == "cells")
    assert (cells.file, cells.rows_read, cells.rows_kept) == ("oss/inventory_20261101.csv", 3, 3)
    assert "cells.csv" in r.ignored_files  # the mapping names cells: the canonical file is not read
    assert r.quarantined_by_reason["charging"] == {"unknown_reference:cell_id": 1}
    con = Warehouse(settings.warehouse_dir).open_current()
    try:
        assert con.execute("SELECT cell_id, technology, azimuth_deg FROM raw.cells ORDER BY 1").fetchall() == [
            ("C1", "4G", 0.0), ("C2", "5G", 120.0), ("C3", "4G", None)]
        assert con.execute("SELECT source FROM raw.manifest WHERE file = 'oss/inventory_20261101.csv'"
                           ).fetchall() == [("cells",)]
    finally:
        con.close()
    again = refresh(settings, source=src, mapping=mapping, log=lambda _m: None)
    assert again.status == "nothing_new"


def test_a_bad_mapping_is_unreadable_input(tmp_path: Path, capsys):
    src = write_operator(tmp_path / "src")
    bad = tmp_path / "bad.toml"
    bad.write_text("[sources.cells]\nfiles = 3\n")
    with pytest.raises(MappingError, match="bad.toml"):
        refresh(Settings(warehouse_dir=tmp_path / "wh"), source=src, mapping=bad, log=lambda _m: None)
    with pytest.raises(UsageError, match="missing.toml"):
        refresh(Settings(warehouse_dir=tmp_path / "wh"), source=src, mapping=tmp_path / "missing.toml",
                log=lambda _m: None)
    code = main(["refresh", "--source", str(src), "--warehouse", str(tmp_path / "wh"), "--mapping", str(bad)])
    assert code == 2 and "bad.toml" in capsys.readouterr().err
    assert not (tmp_path / "wh" / "CURRENT").exists()
