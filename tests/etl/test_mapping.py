"""Mapping files: parsing and validation errors (naming file, source and key), expressions checked against a
file's header, and mapped extraction (CSV options, value maps, constants, formats, pseudo columns, repeat)."""

from __future__ import annotations

import json
import textwrap
from datetime import date, datetime
from pathlib import Path

import polars as pl
import pytest

from etl.contracts import REASONS
from etl.errors import ContractError, MappingError
from etl.extract import ExtractResult, extract_file, extract_source_dir
from etl.mapping import CsvOptions, check_mapping, glob_regex, load_mapping

CELLS_OK = """
[sources.cells]
files = ["inventory/*.csv"]
[sources.cells.columns]
cell_id = "id"
site_id = "site"
technology = "tech"
band_mhz = "band"
azimuth_deg = "NULL"
capacity_mbps = "cap"
[sources.cells.constants]
status = "in_service"
"""


def mapping_file(tmp_path: Path, text: str, name: str = "mapping.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def load(tmp_path: Path, text: str):
    return load_mapping(mapping_file(tmp_path, text))


def conserved(result: ExtractResult) -> ExtractResult:
    assert result.rows_read == result.good.height + result.rejects.height
    assert set(result.rejects.get_column("reason").to_list()) <= set(REASONS)
    for message in result.rejects.get_column("message").to_list():
        assert message.startswith(f"{result.file}, ")
    return result


def test_a_valid_mapping_parses_into_frozen_dataclasses(tmp_path):
    m = load(tmp_path, 'name = "inventory"\nformat_version = 1\n' + CELLS_OK)
    sm = m.sources["cells"]
    assert m.name == "inventory" and m.path == tmp_path / "mapping.toml"
    assert sm.files == ("inventory/*.csv",) and sm.csv == CsvOptions()
    assert sm.columns["band_mhz"] == "band" and sm.constants == {"status": "in_service"}
    with pytest.raises(AttributeError):
        sm.repeat = "2"  # frozen


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sources.cells\n", "not valid TOML"),
        ("colour = 1\n" + CELLS_OK, "colour: unknown key"),
        ("format_version = 2\n" + CELLS_OK, "format_version = 2 is not supported"),
        ("name = 'x'\n", "[sources] is missing or empty"),
        (CELLS_OK.replace("sources.cells", "sources.cell"), "[sources.cell]: unknown source 'cell'"),
        (CELLS_OK.replace('files = ["inventory/*.csv"]', 'file = "x.csv"'), "[sources.cells] file: unknown key"),
        (CELLS_OK.replace('files = ["inventory/*.csv"]', ""), "[sources.cells] files: missing"),
        (CELLS_OK.replace('cap"', 'cap"\ncolour = "x"'), "[sources.cells] columns.colour: cells has no column 'colour'"),
        (CELLS_OK.replace('band_mhz = "band"\n', ""),
         "[sources.cells] columns: required columns of cells are not mapped: band_mhz"),
        (CELLS_OK.replace('"band"', '"foo("'), "[sources.cells] columns.band_mhz: 'foo(' is not a valid SQL expression"),
        (CELLS_OK.replace('"band"', '"1; DROP TABLE x"'), "columns.band_mhz: '1; DROP TABLE x' is not a valid SQL"),
        (CELLS_OK.replace('"band"', '"1) , (2"'), "columns.band_mhz: '1) , (2' is not one SQL value expression"),
        (CELLS_OK.replace('"band"', '"band FROM t"'), "columns.band_mhz: 'band FROM t' is not a valid SQL"),
        (CELLS_OK.replace('files = ["inventory/*.csv"]', 'match = "inv(.csv"'),
         "[sources.cells] match: 'inv(.csv' is not a valid regular expression"),
        (CELLS_OK.replace("inventory/*.csv", "inventory/[ab.csv"), "files: 'inventory/[ab.csv': unclosed ["),
        (CELLS_OK.replace("inventory/*.csv", "../other/*.csv"), "may not leave the --source folder"),
        (CELLS_OK.replace("inventory/*.csv", "/data/*.csv"), "relative to the --source folder, not absolute"),
        (CELLS_OK + "[sources.cells.csv]\nsep = ';'\n", "[sources.cells] csv.sep: unknown CSV option (known: "),
        (CELLS_OK + "[sources.cells.csv]\nencoding = 'utf-16'\n", "csv.encoding: 'utf-16' is not one of"),
        (CELLS_OK + "[sources.cells.csv]\nheader = false\n", "csv.names: with header = false, names must list"),
        (CELLS_OK + "[sources.cells.csv]\ndelimiter = '::'\n", "csv.delimiter: '::' is not one character"),
        (CELLS_OK + "[sources.cells.csv]\nskip = -1\n", "csv.skip: -1 is not a whole number"),
        (CELLS_OK + "[sources.cells.values.latitude]\nx = 'y'\n",
         "values.latitude: the column is not mapped in [columns] or [constants]"),
        (CELLS_OK + "[sources.cells.values.technology]\nx = 4\n", "values.technology.x: expected text, got int"),
        (CELLS_OK + "[sources.cells.formats]\nband_mhz = '%Y'\n",
         "formats.band_mhz: formats apply to date and timestamp columns; band_mhz is int"),
        (CELLS_OK.replace("status = ", "cell_id = 'x'\nstatus = "),
         "constants.cell_id: the column is also in [columns]: give it once"),
        (CELLS_OK.replace('status = "in_service"', "status = [1]"), "constants.status: expected text, a number"),
    ],
)
def test_invalid_mappings_name_the_file_the_source_and_the_key(tmp_path, text, expected):
    with pytest.raises(MappingError) as err:
        load(tmp_path, text)
    assert str(err.value).startswith(str(tmp_path / "mapping.toml") + ": ")
    assert expected in str(err.value)


@pytest.mark.parametrize(("fmt", "expected"), [("%d.%m.%Y", None), ("%Q/%m/%Y", "'%Q' is not a strftime directive"),
                                               ("dd/mm/yyyy", "no strftime directive"),
                                               ("%d.%m. %H:%M", "no year in the format")])
def test_date_formats_are_checked(tmp_path, fmt, expected):
    text = f"""
    [sources.promotions]
    files = ["p.csv"]
    [sources.promotions.columns]
    promotion_id = "id"
    subscription_id = "sub"
    promotion_type = "kind"
    valid_from = "start"
    valid_to = "stop"
    discount = "pct"
    [sources.promotions.formats]
    valid_from = "{fmt}"
    """
    if expected is None:
        assert load(tmp_path, text).sources["promotions"].formats == {"valid_from": fmt}
    else:
        with pytest.raises(MappingError, match=f"formats.valid_from: '{fmt}': {expected}"):
            load(tmp_path, text)


def test_a_missing_mapping_file(tmp_path):
    with pytest.raises(MappingError, match="no such mapping file"):
        load_mapping(tmp_path / "nope.toml")


def test_globs_stay_in_their_folder_and_regexes_match_whole_paths(tmp_path):
    assert glob_regex("*.csv").fullmatch("a.csv") and not glob_regex("*.csv").fullmatch("sub/a.csv")
    assert glob_regex("**/*.csv").fullmatch("a.csv") and glob_regex("**/*.csv").fullmatch("x/y/a.csv")
    assert glob_regex("inv/cells_[0-9]?.csv").fullmatch("inv/cells_12.csv")
    assert not glob_regex("inv/cells_[!0-9]*.csv").fullmatch("inv/cells_1.csv")
    m = load(tmp_path, CELLS_OK.replace('files = ["inventory/*.csv"]', r'match = "inv/cells_\\d{8}\\.csv"'))
    assert m.sources["cells"].matches("inv/cells_20261101.csv")
    assert not m.sources["cells"].matches("inv/cells_20261101.csv.bak")


INVENTORY = "id;site;tech;band;cap;note\n" \
            "C1;S1;4G;1800;150;first\n" \
            "C2;S1;LTE;800;75;\n" \
            "C3;S2;5G;lots;400;bad band\n" \
            "C4;S2\n" \
            "C5;S3;3G;2100;21;ok\n"


def inventory(tmp_path: Path, text: str = INVENTORY, *, name: str = "cells_export.csv") -> Path:
    folder = tmp_path / "src" / "inventory"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(text.encode("latin-1") if "ö" in text else text.encode())
    return path


def test_a_mapped_csv_goes_through_the_same_checks_with_file_and_line(tmp_path):
    path = inventory(tmp_path)
    m = load(tmp_path, CELLS_OK + """
    [sources.cells.csv]
    delimiter = ";"
    [sources.cells.values.technology]
    LTE = "4G"
    """)
    result = conserved(extract_file(path, "cells", name="inventory/cells_export.csv", mapping=m))
    good = result.good
    assert good.get_column("cell_id").to_list() == ["C1", "C2", "C5"]
    assert good.get_column("technology").to_list() == ["4G", "4G", "3G"]
    assert good.get_column("band_mhz").to_list() == [1800, 800, 2100]
    assert good.get_column("status").unique().to_list() == ["in_service"]
    assert good.get_column("_line").to_list() == [2, 3, 6]
    assert good.get_column("_file").unique().to_list() == ["inventory/cells_export.csv"]
    rejects = result.rejects.to_dicts()
    assert [(r["line"], r["reason"], r["column"]) for r in rejects] == [(4, "bad_type", "band_mhz"),
                                                                         (5, "malformed_row", None)]
    assert rejects[0]["message"] == ('inventory/cells_export.csv, line 4, column band_mhz: "lots" is not a valid int '
                                     "(expected int, between 400 and 100000, not empty)")
    assert json.loads(rejects[0]["raw"]) == {"id": "C3", "site": "S2", "tech": "5G", "band": "lots", "cap": "400",
                                             "note": "bad band"}
    assert rejects[1]["raw"] == "C4;S2"
    assert result.extra_columns == ("note",)
    assert "columns the mapping of cells does not use: note" in result.warnings[-1]


def test_csv_options_skip_encoding_nulls_formats_and_pseudo_columns(tmp_path):
    text = ("Export of 31.10.2026\n"
            "generated by CRM\n"
            "Nr|Kunde|Segment|Seit|Ort\n"
            "1|Jörg|privat|01.02.2020|NA\n"
            "2|Ana|firma|2021-03-04|Köln\n")
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "crm.txt").write_bytes(text.encode("latin-1"))
    m = load(tmp_path, """
    [sources.customers]
    files = ["crm.txt"]
    [sources.customers.csv]
    delimiter = "|"
    skip = 2
    encoding = "latin-1"
    nulls = ["", "NA"]
    [sources.customers.columns]
    customer_id = "concat(_file, ':', _row, ':', _line, ':', Nr)"
    name = "Kunde"
    segment = "Segment"
    created_at = "Seit"
    address = "Ort"
    [sources.customers.constants]
    status = "active"
    [sources.customers.values.segment]
    privat = "consumer"
    firma = "business"
    [sources.customers.formats]
    created_at = "%d.%m.%Y"
    """)
    found = extract_source_dir(folder, mapping=m)
    (path, source), = list(found)
    result = conserved(extract_file(path, source, name=found.name(path), mapping=m))
    assert result.good.get_column("customer_id").to_list() == ["crm.txt:1:4:1"]
    assert result.good.get_column("name").to_list() == ["Jörg"]
    assert result.good.get_column("address").to_list() == [None]
    assert result.good.get_column("created_at").to_list() == [datetime(2020, 2, 1)]
    assert result.good.get_column("segment").to_list() == ["consumer"]
    assert result.rejects.select("line", "reason", "column", "value").rows() == [
        (5, "bad_type", "created_at", "2021-03-04")]
    assert result.warnings == ()  # Latin-1 was asked for: no warning


def test_a_file_without_header(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "sites.dat").write_text("S1,48.1,11.5\nS2,48.2,200\n")
    m = load(tmp_path, """
    [sources.sites]
    files = ["*.dat"]
    [sources.sites.csv]
    header = false
    names = ["code", "lat", "lon"]
    [sources.sites.columns]
    site_id = "code"
    latitude = "lat"
    longitude = "lon"
    [sources.sites.constants]
    status = "in_service"
    """)
    result = conserved(extract_file(folder / "sites.dat", "sites", mapping=m))
    assert result.good.select("site_id", "_line").rows() == [("S1", 1)]
    assert result.rejects.select("line", "reason", "column").rows() == [(2, "out_of_range", "longitude")]


def test_an_expression_that_does_not_fit_the_header_is_a_mapping_error(tmp_path):
    path = inventory(tmp_path)
    m = load(tmp_path, CELLS_OK.replace('"cap"', '"capacity * 2"') + "[sources.cells.csv]\ndelimiter = ';'\n")
    with pytest.raises(MappingError) as err:
        extract_file(path, "cells", name="inventory/cells_export.csv", mapping=m)
    text = str(err.value)
    assert text.startswith(f"{tmp_path / 'mapping.toml'}: [sources.cells] columns.capacity_mbps: 'capacity * 2' "
                           "does not fit inventory/cells_export.csv")
    assert "the file's columns: id, site, tech, band, cap, note" in text
    with pytest.raises(MappingError, match=r"columns.capacity_mbps: 'capacity \* 2' does not fit"):
        check_mapping(m, tmp_path / "src")


def test_check_mapping_warns_about_sources_with_no_file(tmp_path):
    inventory(tmp_path)
    m = load(tmp_path, CELLS_OK + "[sources.cells.csv]\ndelimiter = ';'\n" + """
    [sources.sites]
    files = ["nowhere/*.csv"]
    [sources.sites.columns]
    site_id = "a"
    latitude = "b"
    longitude = "c"
    status = "d"
    """)
    assert check_mapping(m, tmp_path / "src") == (
        f"{tmp_path / 'mapping.toml'}: [sources.sites] matches no file in {tmp_path / 'src'}",)


def test_an_expression_that_fails_on_a_value_names_the_file_and_suggests_try_cast(tmp_path):
    path = inventory(tmp_path)
    m = load(tmp_path, CELLS_OK.replace('"band"', '"CAST(band AS INTEGER)"') + "[sources.cells.csv]\ndelimiter = ';'\n")
    with pytest.raises(ContractError, match=r"inventory/cells_export.csv: the mapping .* \[sources.cells\] fails on a "
                                            r"value of this file: .*use TRY_CAST"):
        extract_file(path, "cells", name="inventory/cells_export.csv", mapping=m)


REPEAT = """
[sources.tickets]
files = ["calls.csv"]
repeat = "TRY_CAST(calls AS BIGINT)"
max_repeat = 5
[sources.tickets.columns]
ticket_id = "concat(cust, '-T', _repeat)"
customer_id = "cust"
subscription_id = "NULL"
created_at = "TIMESTAMP '2026-10-01 09:00:00' + to_days(CAST(_repeat AS INTEGER))"
resolved_at = "NULL"
[sources.tickets.constants]
category = "other"
channel = "call_center"
severity = "low"
status = "closed"
"""


def test_repeat_turns_one_row_into_several_and_counts_them(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "calls.csv").write_text("cust,calls\nA,2\nB,0\nC,many\nD,3\nE\nF,9\n")
    m = load(tmp_path, REPEAT)
    result = conserved(extract_file(folder / "calls.csv", "tickets", mapping=m))
    # A: 2, B: 0, C: 1 unusable count, D: 3, E: 1 malformed line, F: 1 count above max_repeat
    assert result.rows_read == 2 + 0 + 1 + 3 + 1 + 1
    assert result.good.select("ticket_id", "_line").rows() == [("A-T1", 2), ("A-T2", 2), ("D-T1", 5), ("D-T2", 5),
                                                                ("D-T3", 5)]
    assert result.good.get_column("created_at").to_list()[:2] == [datetime(2026, 10, 2, 9), datetime(2026, 10, 3, 9)]
    assert result.rejects.select("line", "reason", "column", "value").rows() == [
        (4, "bad_type", "_repeat", None), (6, "malformed_row", None, None), (7, "bad_type", "_repeat", "9")]
    assert "is not a valid repeat count (expected int, between 0 and 5" in result.rejects.row(0, named=True)["message"]
    assert json.loads(result.rejects.row(0, named=True)["raw"]) == {"cust": "C", "calls": "many"}
    assert any("5 input rows became 7 tickets rows" in w for w in result.warnings)


def test_one_file_feeds_several_sources_and_unmapped_sources_keep_canonical_names(tmp_path):
    folder = tmp_path / "src"
    (folder / "towers").mkdir(parents=True)
    (folder / "towers" / "export.csv").write_text(",lon,lat,cell\n7,11.5,48.1,70000\n8,11.6,48.2,300\n")
    (folder / "sites.csv").write_text("ignored: sites is mapped\n")
    (folder / "customers.csv").write_text("canonical\n")
    (folder / "readme.txt").write_text("x")
    m = load(tmp_path, """
    [sources.sites]
    files = ["towers/*.csv"]
    [sources.sites.columns]
    site_id = "concat('T', column0)"
    latitude = "lat"
    longitude = "lon"
    [sources.sites.constants]
    status = "in_service"

    [sources.cells]
    files = ["towers/*.csv"]
    [sources.cells.columns]
    cell_id = "concat('T', column0, '-', cell)"
    site_id = "concat('T', column0)"
    technology = "CASE WHEN TRY_CAST(cell AS BIGINT) > 65535 THEN '4G' ELSE '2G' END"
    band_mhz = "CASE WHEN TRY_CAST(cell AS BIGINT) > 65535 THEN 1800 ELSE 900 END"
    azimuth_deg = "NULL"
    capacity_mbps = "150"
    [sources.cells.constants]
    status = "in_service"
    """)
    found = extract_source_dir(folder, mapping=m)
    assert [(found.name(p), s.name) for p, s in found] == [("towers/export.csv", "sites"),
                                                            ("towers/export.csv", "cells"),
                                                            ("customers.csv", "customers")]
    assert [found.name(p) for p in found.ignored] == ["readme.txt", "sites.csv"]
    sites = conserved(extract_file(folder / "towers" / "export.csv", "sites", mapping=m))
    cells = conserved(extract_file(folder / "towers" / "export.csv", "cells", mapping=m))
    assert sites.good.get_column("site_id").to_list() == ["T7", "T8"]
    assert cells.good.select("cell_id", "technology", "band_mhz").rows() == [("T7-70000", "4G", 1800),
                                                                            ("T8-300", "2G", 900)]


def test_parquet_and_geojson_inputs_are_mapped_as_text(tmp_path):
    folder = tmp_path / "src"
    folder.mkdir()
    pl.DataFrame({"code": [1, 2], "opened": [date(2020, 1, 1), None], "lat": [48.0, 91.0], "lon": [11.0, 11.0]}) \
        .write_parquet(folder / "sites.parquet")
    (folder / "areas.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "properties": {"NAME": "North"},
         "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}}]}))
    m = load(tmp_path, """
    [sources.zones]
    files = ["*.geojson"]
    [sources.zones.columns]
    zone_id = "upper(NAME)"
    zone_name = "NAME"
    geometry = "geometry"

    [sources.sites]
    files = ["*.parquet"]
    [sources.sites.columns]
    site_id = "concat('S', code)"
    latitude = "lat"
    longitude = "lon"
    commissioned_at = "opened"
    [sources.sites.constants]
    status = "in_service"
    """)
    zones = conserved(extract_file(folder / "areas.geojson", "zones", mapping=m))
    assert zones.good.select("zone_id", "zone_name", "_line").rows() == [("NORTH", "North", 1)]
    sites = conserved(extract_file(folder / "sites.parquet", "sites", mapping=m))
    assert sites.good.select("site_id", "commissioned_at").rows() == [("S1", datetime(2020, 1, 1))]
    assert sites.rejects.select("line", "reason", "column").rows() == [(3, "out_of_range", "latitude")]
