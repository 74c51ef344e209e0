"""Extraction of literal little files: CSV, gzip, Parquet, GeoJSON, BOM, Latin-1, empty, header only, ragged
and blank lines, quoted line breaks, missing and extra columns; line numbers and conservation on every file."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from etl.contracts import REASONS, SOURCES
from etl.errors import ContractError
from etl.extract import ExtractResult, extract_file, extract_source_dir, read_columns, read_table
from etl.validate import QUARANTINE_SCHEMA

HEADER = "usage_id,subscription_id,usage_at,service,cell_id,quantity,unit,amount,currency,payment_type,is_billed"


def row(i: int, **kw) -> str:
    values = {"usage_id": f"U{i}", "subscription_id": "S1", "usage_at": "2026-11-03T10:00:00", "service": "voice",
              "cell_id": "C1", "quantity": "60", "unit": "second", "amount": "0.5", "currency": "EUR",
              "payment_type": "prepaid", "is_billed": "true"} | kw
    return ",".join(values[c] for c in HEADER.split(","))


def write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def conserved(result: ExtractResult) -> ExtractResult:
    """Every test file: rows read = kept + quarantined, and every reject is complete."""
    assert result.rows_read == result.good.height + result.rejects.height
    assert result.rejects.schema == pl.Schema(QUARANTINE_SCHEMA)
    assert set(result.rejects.get_column("reason").to_list()) <= set(REASONS)
    assert result.rejects.get_column("line").null_count() == 0
    assert result.rejects.get_column("raw").null_count() == 0
    for message in result.rejects.get_column("message").to_list():
        assert message.startswith(f"{result.file}, ")
    assert result.good.get_column("_file").unique().to_list() in ([result.file], [])
    return result


def lines_of(result: ExtractResult) -> tuple[list[int], list[int]]:
    return result.good.get_column("_line").to_list(), result.rejects.get_column("line").to_list()


def test_a_clean_csv_is_typed_with_physical_lines(tmp_path):
    path = write(tmp_path / "charging_20261103.csv", "\n".join([HEADER, row(1), row(2, is_billed="no")]) + "\n")
    result = conserved(extract_file(path, "charging"))
    assert (result.source, result.file, result.rows_read) == ("charging", "charging_20261103.csv", 2)
    assert result.good.get_column("usage_at").to_list() == [datetime(2026, 11, 3, 10)] * 2
    assert result.good.get_column("is_billed").to_list() == [True, False]
    assert lines_of(result) == ([2, 3], [])
    assert result.warnings == () and result.extra_columns == ()
    assert result.good.columns == [*SOURCES["charging"].column_names, "_file", "_line"]


def test_ragged_blank_and_bad_rows_keep_their_lines(tmp_path):
    text = "\n".join([
        HEADER,
        row(1),
        "U2,S1,2026-11-03T10:00:00,voice",  # too few fields
        row(3, amount="-12.5"),
        "",
        row(5) + ",surplus",  # too many fields
        row(6, usage_at="2026-11-03T10:00:00+01:00"),
        "",
        "",
        row(7, service="fax"),
        row(8),
    ])
    path = write(tmp_path / "charging_20261103.csv", text)  # no newline at the end
    result = conserved(extract_file(path, "charging"))
    assert result.rows_read == 7
    assert lines_of(result) == ([2, 7, 11], [3, 4, 6, 10])
    assert result.rejects.get_column("reason").to_list() == ["malformed_row", "out_of_range", "malformed_row",
                                                             "not_allowed"]
    malformed = result.rejects.filter(pl.col("reason") == "malformed_row").to_dicts()
    assert malformed[0]["raw"] == "U2,S1,2026-11-03T10:00:00,voice"
    assert malformed[0]["message"].startswith("charging_20261103.csv, line 3: 4 fields where the header has 11")
    assert malformed[1]["raw"] == row(5) + ",surplus"
    assert "12 fields where the header has 11" in malformed[1]["message"]
    assert (malformed[0]["column"], malformed[0]["value"]) == (None, None)
    assert result.good.get_column("usage_at").to_list()[1] == datetime(2026, 11, 3, 9)
    assert result.warnings == ("charging_20261103.csv: 3 blank lines skipped (line 5, 8, 9)",)
    raw = json.loads(result.rejects.row(1, named=True)["raw"])
    assert raw["amount"] == "-12.5" and raw["usage_id"] == "U3"


def test_gzip_gives_the_same_result_as_plain(tmp_path):
    text = "\n".join([HEADER, row(1), "broken", row(3, quantity="x")]) + "\n"
    plain = conserved(extract_file(write(tmp_path / "charging_20261103.csv", text), "charging"))
    gz = conserved(extract_file(write(tmp_path / "charging_20261104.csv.gz", gzip.compress(text.encode())),
                                "charging"))
    assert gz.good.drop("_file").equals(plain.good.drop("_file"))
    assert gz.rejects.drop("file", "message").equals(plain.rejects.drop("file", "message"))


def test_a_gz_name_on_a_file_that_is_not_gzip_is_rejected(tmp_path):
    path = write(tmp_path / "charging_20261103.csv.gz", HEADER + "\n")
    with pytest.raises(ContractError, match="charging_20261103.csv.gz: the name says gzip but the file is not"):
        extract_file(path, "charging")
    truncated = write(tmp_path / "charging_20261104.csv.gz", gzip.compress((HEADER + "\n" + row(1)).encode())[:-12])
    with pytest.raises(ContractError, match="charging_20261104.csv.gz: the gzip stream is truncated"):
        extract_file(truncated, "charging")


def test_utf8_bom_is_stripped(tmp_path):
    path = write(tmp_path / "charging.csv", b"\xef\xbb\xbf" + f"{HEADER}\n{row(1, cell_id='Zürich')}\n".encode())
    result = conserved(extract_file(path, "charging"))
    assert result.good.get_column("usage_id").to_list() == ["U1"]
    assert result.good.get_column("cell_id").to_list() == ["Zürich"]
    assert result.warnings == ()


def test_latin1_is_detected_and_read_with_a_warning(tmp_path):
    text = f"{HEADER}\n{row(1)}\n{row(2, cell_id='Köln')}\n"
    path = write(tmp_path / "charging.csv", text.encode("latin-1"))
    result = conserved(extract_file(path, "charging"))
    assert result.good.get_column("cell_id").to_list() == ["C1", "Köln"]
    assert result.warnings == ("charging.csv: read as Latin-1 (the file is not valid UTF-8, first at line 3)",)


def test_an_empty_file_has_no_header(tmp_path):
    with pytest.raises(ContractError, match="charging.csv: empty file, no header"):
        extract_file(write(tmp_path / "charging.csv", ""), "charging")
    with pytest.raises(ContractError, match="empty file, no header"):
        extract_file(write(tmp_path / "charging_2.csv.gz", gzip.compress(b"")), "charging")
    with pytest.raises(ContractError, match="empty file, no header"):
        extract_file(write(tmp_path / "charging_3.csv", "\n\n"), "charging")


def test_header_only_is_zero_rows(tmp_path):
    for text in (HEADER, HEADER + "\n", HEADER + "\r\n\r\n"):
        result = conserved(extract_file(write(tmp_path / "charging.csv", text), "charging"))
        assert (result.rows_read, result.good.height, result.rejects.height) == (0, 0, 0)
        assert result.good.schema["usage_at"] == pl.Datetime("us")


def test_missing_required_columns_reject_the_file_whole(tmp_path):
    header = HEADER.replace("subscription_id,", "").replace(",amount", "")
    path = write(tmp_path / "charging_20261103.csv", header + "\n" + "U1,2026-11-03T10:00:00\n")
    with pytest.raises(ContractError) as err:
        extract_file(path, "charging")
    assert "charging_20261103.csv" in str(err.value)
    assert "requires columns it lacks: subscription_id, amount" in str(err.value)


def test_extra_columns_are_reported_and_ignored(tmp_path):
    path = write(tmp_path / "charging.csv", f"{HEADER},note,tariff\n{row(1)},hello,A\n")
    result = conserved(extract_file(path, "charging"))
    assert result.extra_columns == ("note", "tariff")
    assert result.warnings == ("charging.csv: extra columns ignored: note, tariff",)
    assert "note" not in result.good.columns
    assert result.good.height == 1


def test_optional_columns_may_be_absent(tmp_path):
    path = write(tmp_path / "topups_20261103.csv",
                 "topup_id,subscription_id,topup_at,amount,channel\nT1,S1,2026-11-03 09:00,10,app\n")
    result = conserved(extract_file(path, "topups"))
    assert result.good.get_column("currency").to_list() == [None]


def test_quoted_values_and_line_breaks_inside_quotes(tmp_path):
    header = "customer_id,name,segment,status,created_at,address"
    text = (f"{header}\n"
            'C1,"Doe, Jane",consumer,active,2026-01-01T00:00:00,"1 Main St\nSpringfield"\n'
            'C2,"Roe ""Rich"" R.",vip,active,2026-01-02T00:00:00,\n'
            "C3,short\n"
            'C4,"Line\n\nBreaks",business,nope,2026-01-03T00:00:00,x\n'
            "C5,Ok,consumer,active,2026-01-04T00:00:00,\n")
    result = conserved(extract_file(write(tmp_path / "customers.csv", text), "customers"))
    assert result.rows_read == 5
    assert result.good.get_column("name").to_list() == ["Doe, Jane", 'Roe "Rich" R.', "Ok"]
    assert result.good.get_column("address").to_list() == ["1 Main St\nSpringfield", None, None]
    assert lines_of(result) == ([2, 4, 9], [5, 6])
    assert result.rejects.get_column("reason").to_list() == ["malformed_row", "not_allowed"]


def test_an_unclosed_quote_loses_only_its_own_line(tmp_path):
    text = f"{HEADER}\n{row(1)}\n" + row(2, cell_id='"C1') + f"\n{row(3)}\n{row(4)}\n"
    result = conserved(extract_file(write(tmp_path / "charging.csv", text), "charging"))
    assert lines_of(result) == ([2, 4, 5], [3])
    assert result.rejects.row(0, named=True)["reason"] == "malformed_row"


def test_crlf_line_endings(tmp_path):
    text = "\r\n".join([HEADER, row(1), "x,y", row(3)]) + "\r\n"
    result = conserved(extract_file(write(tmp_path / "charging.csv", text), "charging"))
    assert lines_of(result) == ([2, 4], [3])
    assert result.good.get_column("is_billed").to_list() == [True, True]


def test_header_problems(tmp_path):
    with pytest.raises(ContractError, match="repeats column names: usage_id"):
        extract_file(write(tmp_path / "charging.csv", f"{HEADER},usage_id\n"), "charging")
    with pytest.raises(ContractError, match="reserved"):
        extract_file(write(tmp_path / "charging.csv", f"{HEADER},_line\n"), "charging")


def test_parquet_reads_typed_columns_as_they_are(tmp_path):
    frame = pl.DataFrame({
        "usage_id": ["U1", "U2", "U3"], "subscription_id": ["S1"] * 3,
        "usage_at": [datetime(2026, 11, 3, 10), datetime(2026, 11, 3, 11), None],
        "service": ["voice", "sms", "data"], "cell_id": ["C1", None, "C2"], "quantity": [60.0, 1.0, 5.0],
        "unit": ["second", "message", "megabyte"], "amount": ["0.5", "0.1", "x"], "currency": ["EUR"] * 3,
        "payment_type": ["prepaid"] * 3, "is_billed": [True, False, True], "extra": [1, 2, 3],
    })
    path = tmp_path / "charging_20261103.parquet"
    frame.write_parquet(path)
    result = conserved(extract_file(path, "charging"))
    assert result.good.get_column("usage_id").to_list() == ["U1", "U2"]
    assert result.good.get_column("amount").to_list() == [0.5, 0.1]
    assert lines_of(result) == ([2, 3], [4])
    assert result.rejects.row(0, named=True)["reason"] == "null_required"  # usage_at comes first in the contract
    assert json.loads(result.rejects.row(0, named=True)["raw"])["extra"] == "3"
    assert result.extra_columns == ("extra",)


def test_a_file_that_is_not_parquet(tmp_path):
    with pytest.raises(ContractError, match="charging.parquet: cannot be read as Parquet"):
        extract_file(write(tmp_path / "charging.parquet", "a,b\n1,2\n"), "charging")


def geojson(features) -> str:
    return json.dumps({"type": "FeatureCollection", "features": features})


def feature(props, geometry):
    return {"type": "Feature", "properties": props, "geometry": geometry}


SQUARE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}


def test_geojson_zones_one_row_per_feature(tmp_path):
    text = geojson([
        feature({"zone_id": "Z1", "zone_name": "Centre", "zone_type": "urban", "population": 1200,
                 "meta": {"a": 1}}, SQUARE),
        feature({"zone_id": "Z2", "zone_name": "Bow", "population": None}, BOWTIE),
        feature({"zone_id": "Z3", "zone_name": "Nowhere"}, None),
        "not a feature",
        feature({"zone_id": "Z5", "zone_name": "Odd", "population": 12.5}, SQUARE),
    ])
    result = conserved(extract_file(write(tmp_path / "zones.geojson", text), "zones"))
    assert result.rows_read == 5
    assert result.good.get_column("zone_id").to_list() == ["Z1"]
    assert result.good.get_column("geometry").to_list() == ["POLYGON ((0 0, 1 0, 1 1, 0 1, 0 0))"]
    assert result.good.get_column("population").to_list() == [1200]
    assert result.extra_columns == ("meta",)
    reasons = result.rejects.select("line", "reason", "column").rows()
    assert reasons == [(2, "bad_type", "geometry"), (3, "null_required", "geometry"), (4, "malformed_row", None),
                       (5, "bad_type", "population")]
    assert result.rejects.row(0, named=True)["message"].startswith("zones.geojson, feature 2, column geometry: ")


def test_geojson_that_is_not_a_feature_collection(tmp_path):
    with pytest.raises(ContractError, match="zones.geojson: not a GeoJSON FeatureCollection"):
        extract_file(write(tmp_path / "zones.geojson", '{"type": "Feature"}'), "zones")
    with pytest.raises(ContractError, match="zones.geojson: not valid JSON"):
        extract_file(write(tmp_path / "zones.geojson", '{"type": '), "zones")


def test_the_fast_and_the_exact_reader_agree(tmp_path):
    """Quoted line breaks send a file to the exact reader: the same rows must come out as from the fast one."""
    rows = [row(1), "U2,S1", row(3, amount="-1"), row(4), "", row(5, service="fax"), row(6)]
    fast = conserved(extract_file(write(tmp_path / "charging_a.csv", "\n".join([HEADER, *rows])), "charging"))
    # the same rows and lines, plus one valid row with a quoted line break at the end
    exact = conserved(extract_file(write(tmp_path / "charging_b.csv", "\n".join(
        [HEADER, *rows, row(7, cell_id='"C\n1"')])), "charging"))
    assert exact.good.head(fast.good.height).drop("_file").equals(fast.good.drop("_file"))
    assert exact.rejects.drop("file", "message").equals(fast.rejects.drop("file", "message"))
    assert exact.good.row(-1, named=True)["_line"] == 9


def test_read_columns_without_reading_rows(tmp_path):
    path = write(tmp_path / "x.csv.gz", gzip.compress(b",lon,lat\n1,2,3\n"))
    assert read_columns(path) == ("column0", "lon", "lat")


def test_discovery_in_load_order_with_ignored_files(tmp_path):
    for name in ("charging_20261102.csv.gz", "charging_20261101.csv", "cells.csv", "zones.geojson", "truth.json",
                 "notes.txt", ".hidden.csv"):
        write(tmp_path / name, "x")
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "sites.csv", "x")
    found = extract_source_dir(tmp_path)
    assert [(found.name(p), s.name) for p, s in found] == [
        ("zones.geojson", "zones"), ("cells.csv", "cells"), ("charging_20261101.csv", "charging"),
        ("charging_20261102.csv.gz", "charging")]
    assert [found.name(p) for p in found.ignored] == ["notes.txt", "sub/sites.csv", "truth.json"]
    with pytest.raises(ContractError, match="does not exist"):
        extract_source_dir(tmp_path / "nope")


def test_a_missing_file(tmp_path):
    with pytest.raises(ContractError, match="charging.csv: no such file"):
        extract_file(tmp_path / "charging.csv", "charging")


TRICKY = {
    "plain": "a,b,c\n1,x,y\n2,x\n\n3,x,y\n",
    "line breaks": 'a,b,c\n1,"x\ny",z\n2,x\n3,"p\n\nq\n",r\n\n4,"a ""quoted"" word",b\n5,x,y,z\n6,x,y',
    "crlf and breaks": 'a,b,c\r\n1,"x\r\ny",z\r\n2,x\r\n\r\n3,x,y\r\n',
    "rejected record with a break": 'a,b,c\n1,"x\ny"\n2,x,y\n',
    "stray quote and a break": 'a,b,c\n1,ab"c,d\n2,"x\ny",z\n3,x,y\n',
    "unclosed quote": 'a,b,c\n1,x,y\n2,"x,y\n3,x,y\n4,x,y\n',
    "trailing delimiters": 'a,b,c\n1,2,\n1,2,,\n1,2,,,\n"1,",2,3,\n"1,",2,\n1,2,3\n',
    "trailing delimiters and breaks": 'a,b,c\n1,"x\ny",\n1,"x\ny",,\n2,"x\ny,",z\n3,x,\n4,x,,\n',
}


@pytest.mark.parametrize("name", TRICKY)
def test_the_duckdb_reader_agrees_with_the_exact_reader(tmp_path, name):
    path = write(tmp_path / "t.csv", TRICKY[name])
    auto, exact = read_table(path), read_table(path, exact=True)
    assert auto.rows_read == exact.rows_read == auto.frame.height + auto.malformed.height
    assert auto.frame.equals(exact.frame)
    assert auto.malformed.get_column("line").to_list() == exact.malformed.get_column("line").to_list()
    assert auto.warnings == exact.warnings


def test_extra_empty_fields_at_the_end_are_malformed_not_dropped(tmp_path):
    """DuckDB alone reads `1,2,,,` as three columns; the extract counts the fields and rejects the row."""
    table = read_table(write(tmp_path / "t.csv", TRICKY["trailing delimiters"]))
    assert table.frame.get_column("_line").to_list() == [2, 6, 7]
    assert table.malformed.select("line", "raw").rows() == [(3, "1,2,,"), (4, "1,2,,,"), (5, '"1,",2,3,')]
    assert table.malformed.get_column("message").to_list()[1].startswith("t.csv, line 4: 5 fields where the header has 3")
    breaks = read_table(write(tmp_path / "b.csv", TRICKY["trailing delimiters and breaks"]))
    assert breaks.frame.get_column("_line").to_list() == [2, 6, 8]
    assert breaks.malformed.get_column("line").to_list() == [4, 9]


def test_physical_lines_around_quoted_line_breaks(tmp_path):
    table = read_table(write(tmp_path / "t.csv", TRICKY["line breaks"]))
    assert table.frame.get_column("_line").to_list() == [2, 5, 10, 12]
    assert table.frame.get_column("b").to_list() == ["x\ny", "p\n\nq\n", 'a "quoted" word', "x"]
    assert table.malformed.get_column("line").to_list() == [4, 11]
    # the empty line inside the quoted value is part of it, not a blank line
    assert table.warnings == read_table(tmp_path / "t.csv", exact=True).warnings == (
        "t.csv: 1 blank line skipped (line 9)",)
    stray = read_table(write(tmp_path / "s.csv", TRICKY["stray quote and a break"]))
    assert stray.frame.get_column("_line").to_list() == [2, 3, 5]
    unclosed = read_table(write(tmp_path / "u.csv", TRICKY["unclosed quote"]))
    assert unclosed.frame.get_column("_line").to_list() == [2, 4, 5]
    assert unclosed.malformed.get_column("line").to_list() == [3]


@pytest.mark.parametrize("seed", range(12))
def test_readers_agree_on_random_messy_files(tmp_path, seed):
    """Seeded random files mixing short and long rows, blank lines, quoted commas, doubled quotes and quoted
    line breaks: the DuckDB reader and the exact reader give the same rows, lines and rejects."""
    import random

    rng = random.Random(seed)
    pieces = ["x", "", "a b", '"q,c"', '"dq ""in"" side"', '"br\nk"', '"two\n\nbreaks"', "7.5", "ü"]
    weights = [8, 3, 3, 2, 2, 1 if seed % 3 else 0, 1 if seed % 3 else 0, 3, 1]
    lines = ["a,b,c,d"]
    for _ in range(rng.randint(5, 60)):
        kind = rng.random()
        if kind < 0.08:
            lines.append("")
        else:
            n = 4 if kind < 0.85 else rng.choice([1, 2, 3, 5, 6])
            lines.append(",".join(rng.choices(pieces, weights, k=n)))
    text = "\n".join(lines) + ("\n" if seed % 2 else "")
    path = write(tmp_path / "r.csv", text)
    auto, exact = read_table(path), read_table(path, exact=True)
    assert auto.rows_read == exact.rows_read == auto.frame.height + auto.malformed.height
    assert auto.frame.equals(exact.frame)
    assert auto.malformed.get_column("line").to_list() == exact.malformed.get_column("line").to_list()
    assert auto.warnings == exact.warnings


def test_many_malformed_lines_are_all_kept(tmp_path):
    text = HEADER + "\n" + "\n".join(row(i) if i % 2 else "short,row" for i in range(1, 20001)) + "\n"
    result = conserved(extract_file(write(tmp_path / "charging.csv", text), "charging"))
    assert (result.rows_read, result.good.height, result.rejects.height) == (20000, 10000, 10000)
    assert result.rejects.get_column("line").to_list() == list(range(3, 20002, 2))


def test_a_file_validated_in_slices_gives_what_one_piece_gives(tmp_path, monkeypatch):
    """Large files are validated a slice at a time (to bound memory): same rows, rejects and lines."""
    from etl import extract

    bad = {7: {"quantity": "lots"}, 8: {"service": "fax"}, 20: {"usage_at": "yesterday"}, 29: {"amount": "x"}}
    lines = [HEADER] + [row(i, **bad.get(i, {})) for i in range(30)]
    path = write(tmp_path / "charging_20261103.csv", "\n".join(lines) + "\n")
    whole = conserved(extract_file(path, "charging"))
    monkeypatch.setattr(extract, "VALIDATE_SLICE_ROWS", 4)
    sliced = conserved(extract_file(path, "charging"))
    assert sliced.good.equals(whole.good)
    assert sliced.rejects.equals(whole.rejects)
    assert sliced.rejects.get_column("line").to_list() == [9, 10, 22, 31]


def test_added_columns_follow_the_chunks_of_a_large_result():
    """A column added to a frame of many chunks comes in the same chunks (else Polars copies the frame)."""
    from etl.extract import _chunked_like

    frame = pl.concat([pl.DataFrame({"a": ["x"] * n}) for n in (3, 5, 2)], rechunk=False)
    added = frame.with_columns(_chunked_like(pl.Series("_row", range(10)), frame))
    assert added.n_chunks("all") == [3, 3]
    assert added.get_column("_row").chunk_lengths() == [3, 5, 2]
    assert added.get_column("_row").to_list() == list(range(10))
