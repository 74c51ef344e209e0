"""Landing with literal data: raw tables, manifest diff, corrected files, the duplicate rule, references,
conservation. The extracted frames are built by hand in the shape of `etl.extract.ExtractResult`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import polars as pl
import pytest

from etl.contracts import LOAD_ORDER, SOURCES
from etl.errors import CheckFailed, UsageError
from etl.load import (
    check_references,
    diff_manifest,
    ensure_schema,
    land,
    loaded_sources,
    quarantine_by_reason,
    read_manifest,
    reconcile,
    reject_rates,
    remove_file,
    resolve_duplicates,
    scan_folder,
    sha256_file,
    table_rows,
)

POLARS = {"string": pl.String, "int": pl.Int64, "float": pl.Float64, "bool": pl.Boolean, "date": pl.Date,
          "timestamp": pl.Datetime("us"), "geometry": pl.String}
QSCHEMA = {"source": pl.String, "file": pl.String, "line": pl.Int64, "reason": pl.String, "column": pl.String,
           "value": pl.String, "message": pl.String, "raw": pl.String}


@dataclass(frozen=True)
class Extract:
    """The fields of ExtractResult that landing reads."""

    source: str
    file: str
    rows_read: int
    good: pl.DataFrame
    rejects: pl.DataFrame


def extract(source: str, file: str, rows: list[dict], *, rejects: list[dict] = (), first_line: int = 2,
            schema_overrides: dict | None = None) -> Extract:
    """Good rows on consecutive lines from `first_line`; rejects carry their own `line`."""
    contract = SOURCES[source]
    cols = [c for c in contract.columns if any(c.name in r for r in rows)] if rows else list(contract.columns)
    schema = {c.name: POLARS[c.dtype] for c in cols} | (schema_overrides or {})
    data = [{c: r.get(c) for c in schema} for r in rows]
    good = pl.DataFrame(data, schema=schema, orient="row") if data else pl.DataFrame(schema=schema)
    good = good.with_columns(
        pl.lit(file).alias("_file"),
        pl.Series("_line", list(range(first_line, first_line + len(rows))), dtype=pl.Int64),
    )
    bad = pl.DataFrame([{k: r.get(k) for k in QSCHEMA} | {"source": source, "file": file} for r in rejects],
                       schema=QSCHEMA, orient="row") if rejects else pl.DataFrame(schema=QSCHEMA)
    return Extract(source=source, file=file, rows_read=len(rows) + len(rejects), good=good, rejects=bad)


def site(site_id: str, **kw) -> dict:
    return {"site_id": site_id, "latitude": 48.1, "longitude": 11.5, "status": "in_service"} | kw


def cell(cell_id: str, site_id: str, **kw) -> dict:
    return {"cell_id": cell_id, "site_id": site_id, "technology": "4G", "band_mhz": 1800, "azimuth_deg": 120.0,
            "capacity_mbps": 150.0, "status": "in_service"} | kw


def usage(usage_id: str, cell_id: str | None, *, amount: float = 1.0, sub: str = "S1", **kw) -> dict:
    return {"usage_id": usage_id, "subscription_id": sub, "usage_at": datetime(2026, 11, 1, 10), "service": "data",
            "cell_id": cell_id, "quantity": 5.0, "unit": "megabyte", "amount": amount, "currency": "EUR",
            "payment_type": "prepaid", "is_billed": True} | kw


@pytest.fixture
def con(tmp_path: Path):
    c = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(c)
    yield c
    c.close()


def put(con, ex: Extract, *, load_id: int, sha: str = "h"):
    return land(con, ex, load_id=load_id, sha256=sha, size_bytes=10)


def rows(con, sql: str, params=()):
    return con.execute(sql, list(params)).fetchall()


def test_ensure_schema_creates_typed_raw_tables_and_is_idempotent(con):
    ensure_schema(con)  # a second time changes nothing
    tables = set(table_rows(con))
    assert {f"raw.{s}" for s in LOAD_ORDER} | {"raw.quarantine", "raw.manifest", "raw.loads"} <= tables
    types = dict(rows(con, "SELECT column_name, data_type FROM duckdb_columns() "
                           "WHERE schema_name = 'raw' AND table_name = 'charging'"))
    assert types["usage_at"] == "TIMESTAMP" and types["amount"] == "DOUBLE" and types["is_billed"] == "BOOLEAN"
    assert types["_file"] == "VARCHAR" and types["_line"] == "BIGINT" and types["_load_id"] == "BIGINT"
    zt = dict(rows(con, "SELECT column_name, data_type FROM duckdb_columns() "
                        "WHERE schema_name = 'raw' AND table_name = 'zones'"))
    assert zt["geometry"] == "VARCHAR" and zt["population"] == "BIGINT"


def test_land_writes_good_rows_rejects_and_manifest(con):
    ex = extract("sites", "sites.csv", [site("A", commissioned_at=datetime(2020, 1, 1)), site("B")],
                 rejects=[{"line": 4, "reason": "bad_type", "column": "latitude", "value": "north",
                           "message": "file sites.csv, row 4, column latitude: 'north'", "raw": "{}"}])
    landed = put(con, ex, load_id=1, sha="abc")
    assert (landed.rows_read, landed.rows_kept, landed.rows_quarantined) == (3, 2, 1)
    assert rows(con, "SELECT site_id, _file, _line, _load_id, commissioned_at FROM raw.sites ORDER BY 1") == [
        ("A", "sites.csv", 2, 1, datetime(2020, 1, 1)), ("B", "sites.csv", 3, 1, None)]
    assert rows(con, "SELECT source, file, line, reason, \"column\", load_id FROM raw.quarantine") == [
        ("sites", "sites.csv", 4, "bad_type", "latitude", 1)]
    assert rows(con, "SELECT file, source, sha256, rows_read, rows_kept, rows_quarantined, load_id "
                     "FROM raw.manifest") == [("sites.csv", "sites", "abc", 3, 2, 1, 1)]
    assert read_manifest(con) == {("sites.csv", "sites"): "abc"}
    assert loaded_sources(con) == {"sites"}


def test_land_converts_offset_timestamps_to_naive_utc(con):
    ex = extract("sites", "sites.csv", [site("A", commissioned_at=datetime(2020, 1, 1, 12))],
                 schema_overrides={"commissioned_at": pl.Datetime("us", "Europe/Berlin")})
    # the literal 12:00 is taken as UTC by Polars; Berlin is UTC+1 in January: the instant must survive
    put(con, ex, load_id=1)
    assert rows(con, "SELECT commissioned_at FROM raw.sites") == [(datetime(2020, 1, 1, 12),)]


def test_land_refuses_an_extraction_that_loses_rows(con):
    ex = extract("sites", "sites.csv", [site("A")])
    broken = Extract(ex.source, ex.file, 5, ex.good, ex.rejects)
    with pytest.raises(CheckFailed, match=r"sites.csv.*read 5"):
        put(con, broken, load_id=1)


def test_manifest_diff_new_changed_unchanged_missing(tmp_path: Path):
    for name, text in {"sites.csv": "a", "cells.csv": "b", "charging_20261101.csv": "c", "truth.json": "{}",
                       "notes.txt": "x"}.items():
        (tmp_path / name).write_text(text)
    folder = scan_folder(tmp_path)
    assert [f.name for f in folder.files] == ["sites.csv", "cells.csv", "charging_20261101.csv"]
    assert folder.ignored == ("notes.txt", "truth.json")
    manifest = {("sites.csv", "sites"): sha256_file(tmp_path / "sites.csv"), ("cells.csv", "cells"): "old",
                ("gone.csv", "sites"): "x"}
    diff = diff_manifest(manifest, folder.files)
    assert [f.name for f in diff.unchanged] == ["sites.csv"]
    assert [f.name for f in diff.changed] == ["cells.csv"]
    assert [f.name for f in diff.new] == ["charging_20261101.csv"]
    assert diff.missing == ("gone.csv",)
    assert [f.name for f in diff.to_load] == ["cells.csv", "charging_20261101.csv"]


def test_scan_folder_rejects_a_missing_folder(tmp_path: Path):
    with pytest.raises(UsageError, match="nope"):
        scan_folder(tmp_path / "nope")


def test_corrected_file_replaces_landed_and_quarantined_rows(con):
    put(con, extract("sites", "sites.csv", [site("A"), site("B")],
                     rejects=[{"line": 4, "reason": "bad_type", "column": "latitude"}]), load_id=1)
    removed = remove_file(con, source="sites", file="sites.csv")
    assert (removed.kept, removed.quarantined) == (2, 1)
    put(con, extract("sites", "sites.csv", [site("A", name="Alpha")]), load_id=2, sha="new")
    assert rows(con, "SELECT site_id, name, _load_id FROM raw.sites") == [("A", "Alpha", 2)]
    assert rows(con, "SELECT count(*) FROM raw.quarantine") == [(0,)]
    assert rows(con, "SELECT sha256, rows_read FROM raw.manifest") == [("new", 1)]


def test_duplicates_within_one_load_later_file_then_later_line_wins(con):
    put(con, extract("charging", "charging_20261101.csv", [usage("U1", None, amount=1), usage("U2", None),
                                                            usage("U1", None, amount=2)]), load_id=1)
    put(con, extract("charging", "charging_20261102.csv", [usage("U2", None, amount=9)]), load_id=1)
    assert resolve_duplicates(con, "charging", load_id=1) == 2
    assert rows(con, "SELECT usage_id, amount, _file, _line FROM raw.charging ORDER BY 1") == [
        ("U1", 2.0, "charging_20261101.csv", 4), ("U2", 9.0, "charging_20261102.csv", 2)]
    q = rows(con, "SELECT file, line, reason, \"column\", value, message FROM raw.quarantine ORDER BY line")
    assert [r[:5] for r in q] == [("charging_20261101.csv", 2, "duplicate_key", None, "U1"),
                                  ("charging_20261101.csv", 3, "duplicate_key", None, "U2")]
    assert "file charging_20261101.csv, row 2" in q[0][5] and "file charging_20261101.csv, row 4" in q[0][5]
    assert "charging_20261102.csv, row 2" in q[1][5] and "usage_id" in q[1][5]
    raw = json.loads(rows(con, "SELECT raw FROM raw.quarantine WHERE line = 2")[0][0])
    assert raw["usage_id"] == "U1" and raw["amount"] == "1.0"


def test_duplicates_across_loads_the_later_load_wins_even_with_an_earlier_name(con):
    put(con, extract("charging", "charging_20261105.csv", [usage("U1", None, amount=1)]), load_id=1)
    assert resolve_duplicates(con, "charging", load_id=1) == 0
    put(con, extract("charging", "charging_20261101.csv", [usage("U1", None, amount=7)]), load_id=2)
    assert resolve_duplicates(con, "charging", load_id=2) == 1
    assert rows(con, "SELECT amount, _file FROM raw.charging") == [(7.0, "charging_20261101.csv")]
    assert rows(con, "SELECT file, load_id FROM raw.quarantine") == [("charging_20261105.csv", 2)]
    counts = {c.file: (c.rows_kept, c.rows_quarantined) for c in reconcile(con)}
    assert counts == {"charging_20261105.csv": (0, 1), "charging_20261101.csv": (1, 0)}


def test_a_small_load_among_many_rows_finds_its_duplicates_the_same_way(con):
    """A load of under a quarter of the table counts only its own keys (the other way counts every key):
    the same rows win, and a repeat among earlier rows only is this load's business only if it touches it."""
    put(con, extract("charging", "charging_20261101.csv",
                     [usage(f"U{i}", None, amount=i) for i in range(12)] + [usage("U0", None, amount=50)]),
        load_id=1)
    con.execute("DELETE FROM raw.quarantine")
    con.execute("INSERT INTO raw.charging SELECT * REPLACE (50.0 AS amount, 99 AS _line) FROM raw.charging "
                "WHERE usage_id = 'U5'")  # a repeat left by an earlier load that this load does not touch
    put(con, extract("charging", "charging_20261102.csv", [usage("U3", None, amount=33)]), load_id=2)
    assert resolve_duplicates(con, "charging", load_id=2) == 1
    assert rows(con, "SELECT amount, _file FROM raw.charging WHERE usage_id = 'U3'") == [
        (33.0, "charging_20261102.csv")]
    assert rows(con, "SELECT count(*) FROM raw.charging WHERE usage_id IN ('U0', 'U5')") == [(4,)]
    assert resolve_duplicates(con, "charging", load_id=1) == 2  # load 1's own repeats: U0 and U5
    assert rows(con, "SELECT usage_id, amount FROM raw.charging WHERE usage_id IN ('U0', 'U5') ORDER BY 1") == [
        ("U0", 50.0), ("U5", 50.0)]


def test_composite_keys_are_deduplicated_on_all_their_columns(con):
    k = {"availability_pct": 100.0, "accessibility_pct": 99.0, "drop_rate_pct": 0.5, "prb_utilisation_pct": 40.0,
         "traffic_volume_mb": 10.0}
    h10, h11 = datetime(2026, 11, 1, 10), datetime(2026, 11, 1, 11)
    put(con, extract("kpi_hourly", "kpi_hourly_20261101.csv", [
        {"cell_id": "C1", "period_start": h10} | k, {"cell_id": "C1", "period_start": h11} | k,
        {"cell_id": "C2", "period_start": h10} | k, {"cell_id": "C1", "period_start": h10} | k]), load_id=1)
    assert resolve_duplicates(con, "kpi_hourly", load_id=1) == 1
    assert rows(con, "SELECT value FROM raw.quarantine") == [("C1|2026-11-01 10:00:00",)]


def test_unknown_references_are_quarantined_and_cascade(con):
    put(con, extract("sites", "sites.csv", [site("A"), site("B")]), load_id=1)
    put(con, extract("cells", "cells.csv", [cell("C1", "A"), cell("C2", "B"), cell("C3", "Z")]), load_id=1)
    put(con, extract("charging", "charging_20261101.csv",
                     [usage("U1", "C1"), usage("U2", "C2"), usage("U3", "C3"), usage("U4", None)]), load_id=1)
    out = check_references(con, load_id=1, shrunk=set(), first_loaded={"sites", "cells", "charging"})
    assert out.moved == {"cells.site_id": 1, "charging.cell_id": 1}
    assert "charging.subscription_id" in out.not_checked  # subscriptions were never loaded
    assert rows(con, "SELECT usage_id FROM raw.charging ORDER BY 1") == [("U1",), ("U2",), ("U4",)]
    q = rows(con, "SELECT source, \"column\", value, reason, message FROM raw.quarantine ORDER BY source")
    assert [r[:4] for r in q] == [("cells", "site_id", "Z", "unknown_reference"),
                                  ("charging", "cell_id", "C3", "unknown_reference")]
    assert "file charging_20261101.csv, row 4, column cell_id: C3 is not in cells.cell_id" in q[1][4]

    # a corrected sites file drops B: cell C2 and then usage U2 follow it into quarantine
    remove_file(con, source="sites", file="sites.csv")
    put(con, extract("sites", "sites.csv", [site("A")]), load_id=2, sha="h2")
    out = check_references(con, load_id=2, shrunk={"sites"}, first_loaded=set())
    assert out.moved == {"cells.site_id": 1, "charging.cell_id": 1}
    assert rows(con, "SELECT usage_id FROM raw.charging ORDER BY 1") == [("U1",), ("U4",)]
    assert {c.file: (c.rows_kept, c.rows_quarantined) for c in reconcile(con)} == {
        "sites.csv": (1, 0), "cells.csv": (1, 2), "charging_20261101.csv": (2, 2)}


def test_alarms_may_name_a_cell_or_a_site(con):
    put(con, extract("sites", "sites.csv", [site("S1")]), load_id=1)
    put(con, extract("cells", "cells.csv", [cell("C1", "S1")]), load_id=1)
    base = {"alarmed_object_type": "cell", "alarm_type": "equipmentAlarm", "perceived_severity": "major",
            "probable_cause": "x", "service_affecting": True, "raised_at": datetime(2026, 11, 1)}
    put(con, extract("alarms", "alarms_20261101.csv", [
        {"alarm_id": "A1", "alarmed_object_id": "C1"} | base, {"alarm_id": "A2", "alarmed_object_id": "S1"} | base,
        {"alarm_id": "A3", "alarmed_object_id": "X9"} | base]), load_id=1)
    out = check_references(con, load_id=1, shrunk=set(), first_loaded={"sites", "cells", "alarms"})
    assert out.moved == {"alarms.alarmed_object_id": 1}
    assert rows(con, "SELECT alarm_id FROM raw.alarms ORDER BY 1") == [("A1",), ("A2",)]


def test_self_references_cascade_until_nothing_moves(con):
    z = {"zone_name": "z", "geometry": "POLYGON((0 0,1 0,1 1,0 0))"}
    put(con, extract("zones", "zones.geojson", [
        {"zone_id": "Z1"} | z, {"zone_id": "Z2", "parent_zone_id": "Z1"} | z,
        {"zone_id": "Z3", "parent_zone_id": "ZX"} | z, {"zone_id": "Z4", "parent_zone_id": "Z3"} | z,
        {"zone_id": "Z5", "parent_zone_id": "Z4"} | z]), load_id=1)
    out = check_references(con, load_id=1, shrunk=set(), first_loaded={"zones"})
    assert out.moved == {"zones.parent_zone_id": 3}
    assert rows(con, "SELECT zone_id FROM raw.zones ORDER BY 1") == [("Z1",), ("Z2",)]


def test_only_this_loads_rows_are_checked_when_targets_did_not_shrink(con):
    put(con, extract("sites", "sites.csv", [site("A")]), load_id=1)
    put(con, extract("cells", "cells.csv", [cell("C1", "A")]), load_id=1)
    check_references(con, load_id=1, shrunk=set(), first_loaded={"sites", "cells"})
    # a row that slipped in unchecked under load 1 stays, as the targets did not change in load 2
    con.execute("INSERT INTO raw.cells (cell_id, site_id, _file, _line, _load_id) VALUES ('C9', 'Q', 'cells.csv', 9, 1)")
    put(con, extract("charging", "charging_20261101.csv", [usage("U1", "C1")]), load_id=2)
    out = check_references(con, load_id=2, shrunk=set(), first_loaded={"charging"})
    assert out.moved == {}
    out = check_references(con, load_id=2, shrunk={"sites"}, first_loaded=set())
    assert out.moved == {"cells.site_id": 1}


def test_conservation_violation_is_a_check_failure(con):
    put(con, extract("sites", "sites.csv", [site("A"), site("B")]), load_id=1)
    assert [(c.rows_kept, c.rows_quarantined) for c in reconcile(con)] == [(2, 0)]
    con.execute("DELETE FROM raw.sites WHERE site_id = 'B'")  # a row lost outside the rules
    with pytest.raises(CheckFailed, match=r"sites.csv \(sites\): read 2, kept 1 \+ quarantined 0"):
        reconcile(con)


def test_rows_from_a_file_the_manifest_does_not_know_break_conservation(con):
    con.execute("INSERT INTO raw.sites (site_id, _file, _line, _load_id) VALUES ('A', 'ghost.csv', 2, 1)")
    with pytest.raises(CheckFailed, match="ghost.csv"):
        reconcile(con)


def test_reject_rates_and_quarantine_counts_per_load(con):
    put(con, extract("sites", "sites.csv", [site("A")],
                     rejects=[{"line": 3, "reason": "bad_type", "column": "latitude"},
                              {"line": 4, "reason": "malformed_row"}]), load_id=1)
    put(con, extract("cells", "cells.csv", [cell("C1", "A"), cell("C2", "A")]), load_id=2)
    reconcile(con)
    rates = {r.source: r for r in reject_rates(con, load_id=1, limit=0.5)}
    assert set(rates) == {"sites"} and rates["sites"].rate == pytest.approx(2 / 3) and not rates["sites"].ok
    assert reject_rates(con, load_id=2, limit=0.5)[0].ok
    assert quarantine_by_reason(con) == {"sites": {"bad_type:latitude": 1, "malformed_row": 1}}
    assert quarantine_by_reason(con, load_id=2) == {}


def test_types_land_as_declared(con):
    put(con, extract("subscriptions", "subscriptions.csv", [{
        "subscription_id": "S1", "customer_id": "K1", "msisdn": "+491701234567", "product_offering": "M",
        "payment_type": "prepaid", "status": "active", "start_date": date(2025, 3, 1), "monthly_fee": 9.99}]),
        load_id=1)
    assert rows(con, "SELECT start_date, termination_date, monthly_fee FROM raw.subscriptions") == [
        (date(2025, 3, 1), None, 9.99)]


def test_rows_a_mapping_produced_from_one_line_move_one_by_one(con):
    """A mapping's `repeat` makes several rows of one input line: moves must not take a row's siblings."""
    put(con, extract("sites", "sites.csv", [site("S1")]), load_id=1)
    put(con, extract("cells", "cells.csv", [cell("C1", "S1")]), load_id=1)
    k = {"period_start": datetime(2026, 11, 1, 10), "availability_pct": 100.0, "accessibility_pct": 99.0,
         "drop_rate_pct": 0.5, "prb_utilisation_pct": 40.0, "traffic_volume_mb": 10.0}
    ex = extract("kpi_hourly", "kpi_wide.csv", [{"cell_id": "C1"} | k, {"cell_id": "C9"} | k,
                                                {"cell_id": "C1"} | k | {"traffic_volume_mb": 20.0}])
    ex = Extract(ex.source, ex.file, ex.rows_read, ex.good.with_columns(pl.lit(2, pl.Int64).alias("_line")),
                 ex.rejects)
    put(con, ex, load_id=1)
    assert resolve_duplicates(con, "kpi_hourly", load_id=1) == 1  # same line: the later row produced wins
    assert rows(con, "SELECT cell_id, traffic_volume_mb FROM raw.kpi_hourly ORDER BY 1") == [
        ("C1", 20.0), ("C9", 10.0)]
    out = check_references(con, load_id=1, shrunk=set(), first_loaded={"sites", "cells", "kpi_hourly"})
    assert out.moved == {"kpi_hourly.cell_id": 1}
    assert rows(con, "SELECT cell_id FROM raw.kpi_hourly") == [("C1",)]
    assert {c.file: (c.rows_kept, c.rows_quarantined) for c in reconcile(con)}["kpi_wide.csv"] == (1, 2)


def test_one_file_may_feed_two_sources(con):
    """With a mapping one export can feed several sources: the manifest knows it once per source."""
    put(con, extract("sites", "network.csv", [site("S1")]), load_id=1, sha="n1")
    put(con, extract("cells", "network.csv", [cell("C1", "S1"), cell("C2", "S1")]), load_id=1, sha="n1")
    assert read_manifest(con) == {("network.csv", "sites"): "n1", ("network.csv", "cells"): "n1"}
    assert [(c.source, c.rows_kept) for c in reconcile(con)] == [("cells", 2), ("sites", 1)]
    removed = remove_file(con, source="cells", file="network.csv")
    assert removed.kept == 2 and read_manifest(con) == {("network.csv", "sites"): "n1"}
    assert rows(con, "SELECT count(*) FROM raw.sites") == [(1,)]
