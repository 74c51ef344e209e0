"""Row validation with literal frames: typed conversion, every column-level reason code, the one-reject-per-row
rule, the message format, Parquet pass-through and the header check."""

from __future__ import annotations

from datetime import date, datetime

import polars as pl
import pytest

from etl.contracts import REASONS, SOURCES
from etl.errors import ContractError
from etl.validate import (
    QUARANTINE_SCHEMA,
    check_conservation,
    check_header,
    contract_schema,
    convert_column,
    parse_timestamps,
    validate_rows,
)

CHARGING = SOURCES["charging"]


def charging_rows(*overrides: dict) -> pl.DataFrame:
    """Text rows of charging: a valid row, changed by each override (one row per override)."""
    base = {"usage_id": "U1", "subscription_id": "S1", "usage_at": "2026-11-03T10:00:00", "service": "voice",
            "cell_id": "C1", "quantity": "60", "unit": "second", "amount": "0.5", "currency": "EUR",
            "payment_type": "prepaid", "is_billed": "true"}
    rows = [{**base, "usage_id": f"U{i}", **o} for i, o in enumerate(overrides, start=1)]
    frame = pl.DataFrame(rows, schema={c: pl.String for c in base}, orient="row")
    return frame.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias("_line"), pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))


def check(frame: pl.DataFrame, source=CHARGING, **kw):
    out = validate_rows(frame, source, file="charging_20261103.csv.gz", **kw)
    check_conservation(file="x", rows_read=frame.height, kept=out.good.height, quarantined=out.rejects.height)
    assert set(out.rejects.get_column("reason").to_list()) <= set(REASONS)
    return out


def test_the_message_names_file_line_column_value_and_expectation():
    out = check(charging_rows({}, {}, {"amount": "-12.5"}))
    assert out.good.height == 2
    (reject,) = out.rejects.to_dicts()
    assert reject["message"] == ('charging_20261103.csv.gz, line 4, column amount: "-12.5" is out of range '
                                 "(expected float, between 0 and 1000, not empty)")
    assert (reject["reason"], reject["column"], reject["value"], reject["line"], reject["_row"]) == (
        "out_of_range", "amount", "-12.5", 4, 2)


@pytest.mark.parametrize(
    ("override", "reason", "column"),
    [
        ({"usage_at": "yesterday"}, "bad_type", "usage_at"),
        ({"quantity": "12,5"}, "bad_type", "quantity"),
        ({"quantity": "NaN"}, "bad_type", "quantity"),
        ({"quantity": "inf"}, "bad_type", "quantity"),
        ({"is_billed": "maybe"}, "bad_type", "is_billed"),
        ({"subscription_id": None}, "null_required", "subscription_id"),
        ({"subscription_id": ""}, "null_required", "subscription_id"),
        ({"service": "telepathy"}, "not_allowed", "service"),
        ({"service": "Voice"}, "not_allowed", "service"),
        ({"amount": "1000.01"}, "out_of_range", "amount"),
        ({"quantity": "-1"}, "out_of_range", "quantity"),
        ({"currency": "eur"}, "bad_pattern", "currency"),
    ],
)
def test_each_reason_code(override, reason, column):
    out = check(charging_rows({}, override))
    assert out.good.height == 1
    assert out.rejects.select("reason", "column").row(0) == (reason, column)
    assert out.rejects.get_column("line").to_list() == [3]


def test_bad_type_is_never_a_silent_null():
    out = check(charging_rows({"amount": "abc"}))
    assert out.good.height == 0
    assert out.rejects.row(0, named=True)["message"].endswith(
        'column amount: "abc" is not a valid float (expected float, between 0 and 1000, not empty)')


def test_bad_order_names_both_columns():
    subs = SOURCES["subscriptions"]
    base = {"subscription_id": "S1", "customer_id": "C1", "msisdn": "+49 170 1234567", "product_offering": "M",
            "payment_type": "postpaid", "status": "terminated", "start_date": "2026-03-01",
            "termination_date": "2026-02-01", "monthly_fee": "20"}
    frame = pl.DataFrame([base, {**base, "subscription_id": "S2", "termination_date": "2026-03-01"}]).with_columns(
        pl.Series("_line", [2, 3]), pl.Series("_row", [0, 1]))
    out = check(frame, subs)
    assert out.good.get_column("subscription_id").to_list() == ["S2"]  # the same day is not out of order
    reject = out.rejects.row(0, named=True)
    assert (reject["reason"], reject["column"]) == ("bad_order", "termination_date")
    assert reject["message"] == ('charging_20261103.csv.gz, line 2, column termination_date: "2026-02-01" is before '
                                 'start_date "2026-03-01" (expected termination_date not before start_date)')


def test_a_row_with_several_problems_is_quarantined_once_for_the_first_in_column_order():
    out = check(charging_rows({"amount": "-1", "service": "telepathy", "usage_at": "soon"}))
    assert out.rejects.height == 1
    reject = out.rejects.row(0, named=True)
    assert (reject["reason"], reject["column"]) == ("bad_type", "usage_at")
    assert reject["message"].endswith("; also service (not_allowed), amount (out_of_range)")


def test_typed_values_of_good_rows():
    out = check(charging_rows({"quantity": " 12 ", "amount": "1e1", "is_billed": "Y"},
                              {"is_billed": "FALSE", "cell_id": ""}))
    good = out.good
    assert good.schema == pl.Schema(contract_schema(CHARGING))
    assert good.get_column("quantity").to_list() == [12.0, 60.0]
    assert good.get_column("amount").to_list() == [10.0, 0.5]
    assert good.get_column("is_billed").to_list() == [True, False]
    assert good.get_column("cell_id").to_list() == ["C1", None]
    assert good.get_column("_file").unique().to_list() == ["charging_20261103.csv.gz"]
    assert good.get_column("_line").to_list() == [2, 3]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-03T10:00:00", datetime(2026, 11, 3, 10)),
        ("2026-11-03 10:00:00", datetime(2026, 11, 3, 10)),
        ("2026-11-03T10:00", datetime(2026, 11, 3, 10)),
        ("2026-11-03T10:00:05.25", datetime(2026, 11, 3, 10, 0, 5, 250000)),
        ("2026-11-03T10:00:00Z", datetime(2026, 11, 3, 10)),
        ("2026-11-03T10:00:00+02:00", datetime(2026, 11, 3, 8)),
        ("2026-11-03T10:00:00-0530", datetime(2026, 11, 3, 15, 30)),
        ("2026-11-03 01:00+03", datetime(2026, 11, 2, 22)),
        ("2026-11-03", datetime(2026, 11, 3)),
        ("2026-11-03T25:00:00", None),
        ("2026-02-30T10:00:00", None),
        ("03/11/2026 10:00", None),
        ("2026-11-03T10:00:00+25:00", None),
    ],
)
def test_iso_timestamps_with_offsets_become_naive_utc(text, expected):
    # a valid first value makes the fast format T-separated; the case under test then takes either path
    values = parse_timestamps(pl.Series(["2026-01-01T00:00:00", text]))
    assert values.to_list()[1] == expected


def test_custom_formats_for_dates_and_timestamps():
    col = SOURCES["subscriptions"].column("start_date")
    _, value, bad = convert_column(pl.Series(["31/10/2026", "2026-10-31"]), col, fmt="%d/%m/%Y")
    assert value.to_list() == [date(2026, 10, 31), None]
    assert bad.to_list() == [False, True]
    ts = CHARGING.column("usage_at")
    _, value, _ = convert_column(pl.Series(["31.10.2026 23:30 +0100"]), ts, fmt="%d.%m.%Y %H:%M %z")
    assert value.to_list() == [datetime(2026, 10, 31, 22, 30)]


def test_integers_accept_a_zero_fraction_only():
    col = SOURCES["cells"].column("band_mhz")
    _, value, bad = convert_column(pl.Series(["1800", "1800.0", "1800.5", " 900 ", "", "   "]), col)
    assert value.to_list() == [1800, 1800, None, 900, None, None]
    assert bad.to_list() == [False, False, True, False, False, False]


def test_parquet_typed_columns_pass_through_and_other_types_are_read_as_text():
    frame = pl.DataFrame({
        "usage_id": ["U1", "U2"], "subscription_id": ["S1", "S1"],
        "usage_at": pl.Series([datetime(2026, 11, 3, 10), datetime(2026, 11, 3, 11)]).dt.replace_time_zone(
            "Europe/Berlin"),
        "service": ["voice", "sms"], "cell_id": [None, "C1"], "quantity": pl.Series([60, 1], dtype=pl.Int32),
        "unit": ["second", "message"], "amount": [0.5, 2000.0], "currency": ["EUR", "EUR"],
        "payment_type": ["prepaid", "prepaid"], "is_billed": ["yes", "no"],
        "_line": [2, 3], "_row": [0, 1],
    })
    out = check(frame)
    assert out.good.get_column("usage_at").to_list() == [datetime(2026, 11, 3, 9)]  # converted to UTC
    assert out.good.get_column("quantity").dtype == pl.Float64
    assert out.good.get_column("is_billed").to_list() == [True]
    assert out.rejects.select("reason", "column", "value").row(0) == ("out_of_range", "amount", "2000.0")


def test_absent_optional_columns_become_typed_nulls():
    topups = SOURCES["topups"]
    frame = pl.DataFrame({"topup_id": ["T1"], "subscription_id": ["S1"], "topup_at": ["2026-11-03T10:00:00"],
                          "amount": ["10"], "channel": ["app"], "_line": [2], "_row": [0]})
    out = check(frame, topups)
    assert out.good.get_column("currency").dtype == pl.String
    assert out.good.get_column("currency").to_list() == [None]


def test_geometry_must_be_a_valid_polygon():
    zones = SOURCES["zones"]
    frame = pl.DataFrame({
        "zone_id": ["Z1", "Z2", "Z3", "Z4"], "zone_name": ["a", "b", "c", "d"],
        "geometry": ["POLYGON ((0 0, 1 0, 1 1, 0 0))", "POLYGON ((0 0, 1 1, 1 0, 0 1, 0 0))", "POINT (1 2)",
                     "not wkt"],
        "_line": [1, 2, 3, 4], "_row": [0, 1, 2, 3],
    })
    out = check(frame, zones, unit="feature")
    assert out.good.get_column("zone_id").to_list() == ["Z1"]
    assert out.rejects.get_column("reason").to_list() == ["bad_type"] * 3
    messages = out.rejects.get_column("message").to_list()
    assert messages[0].startswith("charging_20261103.csv.gz, feature 2, column geometry: ")
    assert "Self-intersection" in messages[0]
    assert "a Point, not a Polygon or MultiPolygon" in messages[1]
    assert "not WKT" in messages[2]


def test_long_values_are_cut_in_messages_but_kept_whole_in_value():
    long = "x" * 500
    out = check(charging_rows({"service": long}))
    reject = out.rejects.row(0, named=True)
    assert reject["value"] == long
    assert len(reject["message"]) < 300 and "…" in reject["message"]


def test_header_check_names_every_missing_column_and_returns_extras():
    columns = ["usage_id", "Subscription_ID", "usage_at", "service", "cell_id", "quantity", "unit", "currency",
               "payment_type", "is_billed", "note"]
    with pytest.raises(ContractError) as err:
        check_header(columns, CHARGING, file="charging_20261103.csv")
    text = str(err.value)
    assert "charging_20261103.csv" in text
    assert "lacks: subscription_id, amount" in text
    assert "subscription_id (the file has 'Subscription_ID')" in text
    assert err.value.file == "charging_20261103.csv" and err.value.column == "subscription_id, amount"
    ok = [c for c in CHARGING.column_names] + ["note", "x"]
    assert check_header(ok, CHARGING, file="f") == ("note", "x")
    with pytest.raises(ContractError, match="repeats column names: usage_id"):
        check_header(ok + ["usage_id"], CHARGING, file="f")


def test_conservation_check_fails_loudly():
    with pytest.raises(ContractError, match="conservation broken: 10 rows read but 8 kept and 1 quarantined"):
        check_conservation(file="f.csv", rows_read=10, kept=8, quarantined=1)


def test_quarantine_schema_is_the_documented_one():
    assert list(QUARANTINE_SCHEMA) == ["source", "file", "line", "reason", "column", "value", "message", "raw"]
    assert QUARANTINE_SCHEMA["line"] == pl.Int64
