"""Row validation: convert text columns with the contract's explicit types and apply its row rules.

Every value arrives as text (or as an already typed Parquet column). A value that does not convert is a
`bad_type` reason, never a silent null; then come `null_required`, `not_allowed`, `out_of_range`,
`bad_pattern` and `bad_order`. A row with several problems is quarantined once: its reason is the first
problem in column order, its message lists the others. Everything is vectorised (Polars), no loop per row.
References and duplicate keys are checked later, against the warehouse (`etl/load.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from etl.contracts import FALSE_VALUES, REASONS, TRUE_VALUES, Column, Source
from etl.errors import ContractError

#: One row per rejected input row; the loader appends `load_id` and lands it as `raw.quarantine`.
QUARANTINE_SCHEMA: dict[str, pl.DataType] = {
    "source": pl.String(),
    "file": pl.String(),
    "line": pl.Int64(),
    "reason": pl.String(),
    "column": pl.String(),
    "value": pl.String(),
    "message": pl.String(),
    "raw": pl.String(),
}

#: The Polars type each contract type converts to (DuckDB: VARCHAR, BIGINT, DOUBLE, BOOLEAN, DATE,
#: TIMESTAMP, VARCHAR).
POLARS_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int": pl.Int64(),
    "float": pl.Float64(),
    "bool": pl.Boolean(),
    "date": pl.Date(),
    "timestamp": pl.Datetime("us"),
    "geometry": pl.String(),
}

#: Where a row sits in its file, as messages say it: a CSV line, or a GeoJSON feature.
Unit = Literal["line", "feature"]

#: Column-level problem codes, in the order they are tested for one value (0 means no problem).
_CODES: tuple[str, ...] = ("", "bad_type", "null_required", "not_allowed", "out_of_range", "bad_pattern",
                           "bad_order")
assert all(code in REASONS for code in _CODES[1:])

_VALUE_SHOWN = 80
"""Values longer than this are cut in messages (the full row stays in `raw`)."""

_ISO_TIMESTAMP = (
    r"^(\d{4})-(\d{1,2})-(\d{1,2})"
    r"(?:[T ](\d{1,2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
_POLYGONAL = (3, 6)  # shapely type ids of Polygon and MultiPolygon


def contract_schema(source: Source) -> dict[str, pl.DataType]:
    """The typed columns of `ExtractResult.good` for a source: contract columns, then `_file`, `_line`."""
    schema = {c.name: POLARS_TYPES[c.dtype] for c in source.columns}
    schema["_file"] = pl.String()
    schema["_line"] = pl.Int64()
    return schema


def empty_quarantine() -> pl.DataFrame:
    """A quarantine frame with no rows (the schema every extract returns)."""
    return pl.DataFrame(schema=QUARANTINE_SCHEMA)


def check_header(columns: Sequence[str], source: Source, *, file: str) -> tuple[str, ...]:
    """Reject a file whose header lacks required columns or repeats a name; return its extra columns."""
    seen: set[str] = set()
    repeated = sorted({c for c in columns if c in seen or seen.add(c)})
    if repeated:
        raise ContractError(
            f"{file}: the header repeats column names: {', '.join(repeated)}", file=file,
            column=repeated[0], row=1, expected="each column named once",
        )
    present = set(columns)
    missing = [c for c in source.required_columns if c not in present]
    if missing:
        lowered = {c.lower().strip(): c for c in columns}
        hints = [f"{m} (the file has {lowered[m.lower()]!r})" for m in missing if m.lower() in lowered]
        hint = f"; names differ only in case or spaces: {', '.join(hints)}" if hints else ""
        raise ContractError(
            f"{file}: the file is rejected whole, {source.name} requires columns it lacks: "
            f"{', '.join(missing)}{hint}",
            file=file, column=", ".join(missing), row=1,
            expected=f"a header with {', '.join(source.required_columns)}",
        )
    known = set(source.column_names)
    return tuple(c for c in columns if c not in known)


@dataclass(frozen=True)
class Validated:
    """The outcome of `validate_rows`: typed good rows and one reject per bad row."""

    good: pl.DataFrame
    """Contract columns (typed, in contract order), then `_file` and `_line`."""
    rejects: pl.DataFrame
    """`_row`, `line`, `reason`, `column`, `value`, `message`: the caller adds source, file and raw."""


def validate_rows(
    frame: pl.DataFrame,
    source: Source,
    *,
    file: str,
    formats: Mapping[str, str] | None = None,
    unit: Unit = "line",
) -> Validated:
    """Convert `frame`'s contract columns with explicit types and apply the contract's row rules.

    `frame` holds the contract columns it has (text, or typed from Parquet), `_line` (where the row is)
    and `_row` (which input row it came from, for the caller's raw text). Absent optional columns become
    typed nulls; absent required ones are the caller's error (see `check_header`). `formats` gives
    strftime formats for date and timestamp columns that are not ISO 8601.
    """
    formats = dict(formats or {})
    n = frame.height
    texts: dict[str, pl.Series] = {}
    typed: dict[str, pl.Series] = {}
    bad: dict[str, pl.Series] = {}
    for col in source.columns:
        if col.name in frame.columns:
            text, value, is_bad = convert_column(frame.get_column(col.name), col, fmt=formats.get(col.name))
        else:
            if col.required:
                raise ContractError(f"{file}: column {col.name} is missing", file=file, column=col.name,
                                    expected=col.expectation())
            text = pl.Series(col.name, dtype=pl.String).extend_constant(None, n)
            value = pl.Series(col.name, dtype=POLARS_TYPES[col.dtype]).extend_constant(None, n)
            is_bad = None
        texts[col.name], typed[col.name] = text, value
        if is_bad is not None:
            bad[col.name] = is_bad

    checks = pl.DataFrame(list(typed.values()))
    for name, mask in bad.items():
        checks = checks.with_columns(mask.alias(f"__bad_{name}"))
    codes = checks.select([_code_expr(col, source, has_bad=col.name in bad).alias(col.name)
                           for col in source.columns])
    row_bad = codes.select(pl.any_horizontal(pl.all() > 0).alias("bad")).to_series()

    lines = frame.get_column("_line").cast(pl.Int64)
    good = pl.DataFrame(list(typed.values())).with_columns(
        pl.lit(file, dtype=pl.String).alias("_file"), lines.alias("_line"),
    )
    if not row_bad.any():
        return Validated(good=good, rejects=_empty_rejects())
    good = good.filter(~row_bad)
    rejects = _describe_rejects(
        codes=codes.filter(row_bad),
        texts=pl.DataFrame(list(texts.values())).filter(row_bad),
        rows=frame.get_column("_row").cast(pl.Int64).filter(row_bad),
        lines=lines.filter(row_bad),
        source=source, file=file, unit=unit,
    )
    geometry = [c.name for c in source.columns if c.dtype == "geometry"]
    if geometry:
        rejects = _explain_geometry(rejects, geometry)
    return Validated(good=good, rejects=rejects)


def _explain_geometry(rejects: pl.DataFrame, columns: Sequence[str]) -> pl.DataFrame:
    """Say why a geometry is not valid (few rows: zones are counted in hundreds, not millions)."""
    which = (rejects.get_column("reason") == "bad_type") & rejects.get_column("column").is_in(list(columns))
    if not which.any():
        return rejects
    messages = rejects.get_column("message").to_list()
    values = rejects.get_column("value").to_list()
    for i in which.arg_true().to_list():
        why = geometry_problem(values[i])
        if why:
            messages[i] = messages[i].replace(" is not a valid geometry (", f" is not a valid geometry: {why} (", 1)
    return rejects.with_columns(pl.Series("message", messages, dtype=pl.String))


def _empty_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema={"_row": pl.Int64, "line": pl.Int64, "reason": pl.String,
                                "column": pl.String, "value": pl.String, "message": pl.String})


def _code_expr(col: Column, source: Source, *, has_bad: bool) -> pl.Expr:
    """The first problem of each value of `col` as a small integer code (0: none)."""
    v = pl.col(col.name)
    chain = None

    def add(cond: pl.Expr, code: int) -> None:
        nonlocal chain
        chain = pl.when(cond).then(pl.lit(code, pl.UInt8)) if chain is None else \
            chain.when(cond).then(pl.lit(code, pl.UInt8))

    if has_bad:
        add(pl.col(f"__bad_{col.name}"), 1)
    if not col.nullable:
        add(v.is_null(), 2)
    if col.allowed:
        add(v.is_not_null() & ~v.is_in(list(col.allowed)), 3)
    if col.dtype in ("int", "float") and (col.min is not None or col.max is not None):
        outside = pl.lit(False)
        if col.min is not None:
            outside = outside | (v < col.min)
        if col.max is not None:
            outside = outside | (v > col.max)
        add(v.is_not_null() & outside, 4)
    if col.pattern and col.dtype == "string":
        add(v.is_not_null() & ~v.str.contains(col.pattern), 5)
    for order in source.orders:
        if order.after == col.name:
            before = pl.col(order.before)
            add(v.is_not_null() & before.is_not_null() & (v < before), 6)
    if chain is None:
        return pl.repeat(pl.lit(0, pl.UInt8), pl.len())
    return chain.otherwise(pl.lit(0, pl.UInt8))


def _describe_rejects(
    *, codes: pl.DataFrame, texts: pl.DataFrame, rows: pl.Series, lines: pl.Series, source: Source,
    file: str, unit: Unit,
) -> pl.DataFrame:
    """Reason, column, value and a message naming file, line, column and expectation, per bad row."""
    names = list(codes.columns)
    code_cols = {c: f"__code_{c}" for c in names}
    df = pl.concat(
        [codes.rename(code_cols), texts, pl.DataFrame([rows.alias("_row"), lines.alias("line")])],
        how="horizontal",
    )
    first = pl.coalesce([pl.when(pl.col(code_cols[c]) > 0).then(pl.lit(i, pl.Int32))
                         for i, c in enumerate(names)])
    df = df.with_columns(first.alias("__first"))

    def pick(per_column: Mapping[str, pl.Expr]) -> pl.Expr:
        chain = None
        for i, c in enumerate(names):
            cond = pl.col("__first") == i
            chain = pl.when(cond).then(per_column[c]) if chain is None else chain.when(cond).then(per_column[c])
        return chain.otherwise(None)

    reason_of = {i: code for i, code in enumerate(_CODES)}
    df = df.with_columns(
        pick({c: pl.col(code_cols[c]) for c in names}).alias("__code"),
        pick({c: pl.col(c) for c in names}).alias("value"),
        pick({c: pl.lit(c) for c in names}).alias("column"),
        pick({c: pl.lit(source.column(c).expectation()) for c in names}).alias("__expected"),
        pick({c: pl.lit(source.column(c).dtype) for c in names}).alias("__dtype"),
        pick({c: _before_expr(c, source) for c in names}).alias("__before"),
    ).with_columns(pl.col("__code").replace_strict(reason_of, return_dtype=pl.String).alias("reason"))

    shown = _shown(pl.col("value"))
    described = (
        pl.when(pl.col("reason") == "bad_type").then(pl.concat_str([shown, pl.lit(" is not a valid "),
                                                                    pl.col("__dtype")]))
        .when(pl.col("reason") == "null_required").then(pl.lit("the value is empty"))
        .when(pl.col("reason") == "not_allowed").then(pl.concat_str([shown, pl.lit(" is not an allowed value")]))
        .when(pl.col("reason") == "out_of_range").then(pl.concat_str([shown, pl.lit(" is out of range")]))
        .when(pl.col("reason") == "bad_pattern").then(pl.concat_str([shown, pl.lit(" does not match the pattern")]))
        .otherwise(pl.concat_str([shown, pl.lit(" is before "), pl.col("__before")]))
    )
    expected = (
        pl.when(pl.col("reason") == "bad_order")
        .then(pl.concat_str([pl.col("column"), pl.lit(" not before "), pl.col("__before_name")]))
        .otherwise(pl.col("__expected"))
    )
    also = pl.concat_str(
        [pl.when((pl.col(code_cols[c]) > 0) & (pl.col("__first") != i)).then(
            pl.concat_str([pl.lit(c + " ("), pl.col(code_cols[c]).replace_strict(reason_of,
                                                                                  return_dtype=pl.String),
                           pl.lit(")")]))
         for i, c in enumerate(names)],
        separator=", ", ignore_nulls=True,
    )
    df = df.with_columns(
        pl.coalesce([pick({c: _before_name_expr(c, source) for c in names}), pl.lit("")]).alias("__before_name"),
    )
    message = pl.concat_str(
        [pl.lit(f"{file}, {unit} "), pl.col("line").cast(pl.String), pl.lit(", column "), pl.col("column"),
         pl.lit(": "), described, pl.lit(" (expected "), expected, pl.lit(")"),
         pl.when(also != "").then(pl.concat_str([pl.lit("; also "), also])).otherwise(pl.lit(""))],
    )
    return df.select(
        pl.col("_row"), pl.col("line"), pl.col("reason"), pl.col("column"), pl.col("value"),
        message.alias("message"),
    )


def _before_expr(name: str, source: Source) -> pl.Expr:
    """For an order's `after` column: `<before> "<its value>"`, shown in a bad_order message."""
    for order in source.orders:
        if order.after == name:
            return pl.concat_str([pl.lit(order.before + " "), _shown(pl.col(order.before))])
    return pl.lit(None, pl.String)


def _before_name_expr(name: str, source: Source) -> pl.Expr:
    for order in source.orders:
        if order.after == name:
            return pl.lit(order.before)
    return pl.lit(None, pl.String)


def _shown(value: pl.Expr) -> pl.Expr:
    """A value as messages quote it: in double quotes, cut to a readable length, `empty` when null."""
    cut = pl.when(value.str.len_chars() > _VALUE_SHOWN).then(
        pl.concat_str([value.str.slice(0, _VALUE_SHOWN), pl.lit("…")])).otherwise(value)
    return pl.when(value.is_null()).then(pl.lit("empty")).otherwise(pl.concat_str([pl.lit('"'), cut, pl.lit('"')]))


# --- conversion -------------------------------------------------------------------------------------------


def convert_column(series: pl.Series, col: Column, *, fmt: str | None = None) -> tuple[pl.Series, pl.Series,
                                                                                       pl.Series | None]:
    """Convert one column: (its text for messages, the typed values, which values failed to convert).

    Text is converted with the column's type (empty text is null). A Parquet column already of the
    right type passes straight through. The failure mask is None when nothing can fail (strings).
    """
    name = col.name
    target = POLARS_TYPES[col.dtype]
    dtype = series.dtype
    if dtype == pl.Null:
        series = series.cast(pl.String)
        dtype = series.dtype
    if dtype != pl.String:
        passed = _pass_through(series, col)
        if passed is not None:
            return as_text(series).alias(name), passed.alias(name), None
        series = as_text(series)
    text = series.alias(name)
    value = _empty_to_null(text)
    if col.dtype == "string":
        return text, value, None
    if col.dtype == "geometry":
        return text, *_convert_geometry(value)
    if col.dtype == "int":
        value = _retry_stripped(value, _to_int)
    elif col.dtype == "float":
        value = _retry_stripped(value, _to_float)
    elif col.dtype == "bool":
        value = _retry_stripped(value, _to_bool)
    elif col.dtype == "date":
        value = _retry_stripped(value, lambda t: parse_dates(t, fmt=fmt))
    elif col.dtype == "timestamp":
        value = _retry_stripped(value, lambda t: parse_timestamps(t, fmt=fmt))
    else:  # pragma: no cover - DType is closed
        raise ValueError(f"unknown type {col.dtype}")
    converted = value.cast(target).alias(name)
    if converted.null_count() == text.null_count():
        return text, converted, None
    failed = (converted.is_null() & text.is_not_null()).alias(name)
    idx = failed.arg_true()
    blank = text.gather(idx).str.strip_chars() == ""  # only spaces: empty, not a failure
    if blank.any():
        failed = failed.scatter(idx.filter(blank), False)
    return text, converted, failed if failed.any() else None


def _empty_to_null(text: pl.Series) -> pl.Series:
    """Empty text is null (the CSV reader already does this; Parquet and mappings may not)."""
    if not (text == "").any():
        return text
    return pl.select(pl.when(text == "").then(None).otherwise(text)).to_series().alias(text.name)


def _retry_stripped(text: pl.Series, convert) -> pl.Series:
    """Convert, then convert again with surrounding spaces removed only where the first try failed
    (stripping every value would copy every string: most files have no spaces to strip)."""
    value = convert(text)
    failed = value.is_null() & text.is_not_null()
    if failed.any():
        idx = failed.arg_true()
        retried = convert(_empty_to_null(text.gather(idx).str.strip_chars()))
        value = value.scatter(idx, retried.cast(value.dtype))
    return value


def _to_float(text: pl.Series) -> pl.Series:
    value = text.cast(pl.Float64, strict=False)
    if value.is_infinite().any() or value.is_nan().any():
        value = pl.select(pl.when(value.is_finite()).then(value).otherwise(None)).to_series()
    return value


_BOOL_SPELLINGS: dict[str, bool] = {
    **{v: True for t in TRUE_VALUES for v in (t, t.upper(), t.title())},
    **{v: False for f in FALSE_VALUES for v in (f, f.upper(), f.title())},
}


def _to_bool(text: pl.Series) -> pl.Series:
    """Booleans from `TRUE_VALUES` / `FALSE_VALUES`, case-insensitive."""
    value = text.replace_strict(_BOOL_SPELLINGS, default=None, return_dtype=pl.Boolean)
    pending = value.is_null() & text.is_not_null()
    if pending.any():
        idx = pending.arg_true()
        lowered = text.gather(idx).str.to_lowercase()
        value = value.scatter(idx, lowered.replace_strict(_BOOL_SPELLINGS, default=None, return_dtype=pl.Boolean))
    return value


def _pass_through(series: pl.Series, col: Column) -> pl.Series | None:
    """A typed (Parquet) column that already holds the contract's type, converted losslessly, else None."""
    dtype = series.dtype
    if col.dtype == "int" and dtype.is_integer():
        return series.cast(pl.Int64)
    if col.dtype == "float" and (dtype.is_float() or dtype.is_integer()):
        values = series.cast(pl.Float64)
        return values if values.is_finite().fill_null(True).all() else None
    if col.dtype == "bool" and dtype == pl.Boolean:
        return series
    if col.dtype == "date" and dtype == pl.Date:
        return series
    if col.dtype == "timestamp" and isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            series = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return series.cast(pl.Datetime("us"))
    if col.dtype == "timestamp" and dtype == pl.Date:
        return series.cast(pl.Datetime("us"))
    return None


def as_text(series: pl.Series) -> pl.Series:
    """Any column as text, the way messages and `raw` show it (nested values as JSON)."""
    dtype = series.dtype
    if dtype == pl.String:
        return series
    if isinstance(dtype, (pl.List, pl.Array, pl.Struct)):
        frame = pl.DataFrame({"v": series})
        encoded = frame.select(pl.struct("v").struct.json_encode()).to_series()
        # {"v": X} -> X
        return pl.select(
            pl.when(series.is_null()).then(None).otherwise(encoded.str.slice(5, encoded.str.len_chars() - 6))
        ).to_series().alias(series.name)
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is not None:
            series = series.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
        return series.dt.to_string("%Y-%m-%dT%H:%M:%S%.f").alias(series.name)
    if dtype == pl.Boolean:
        return pl.select(pl.when(series).then(pl.lit("true")).when(~series).then(pl.lit("false"))
                         .otherwise(None)).to_series().alias(series.name)
    if dtype == pl.Binary:
        return series.bin.encode("hex").alias(series.name)
    return series.cast(pl.String).alias(series.name)


def _to_int(text: pl.Series) -> pl.Series:
    """Integers, also when written with a zero fraction (`12.0`, as many exporters write them)."""
    value = text.cast(pl.Int64, strict=False)
    missing = value.is_null() & text.is_not_null()
    if missing.any():
        as_float = text.cast(pl.Float64, strict=False)
        whole = as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < 9.0e18)
        value = pl.select(
            pl.when(missing & whole.fill_null(False)).then(as_float.cast(pl.Int64, strict=False)).otherwise(value)
        ).to_series()
    return value


def parse_dates(text: pl.Series, *, fmt: str | None = None) -> pl.Series:
    """Dates: ISO `YYYY-MM-DD`, or the mapping's strftime format."""
    if fmt is None:
        return text.str.to_date("%Y-%m-%d", strict=False, cache=False)
    if _has_time(fmt):
        return _naive_utc(text.str.to_datetime(fmt, strict=False, time_unit="us", cache=False)).dt.date()
    return text.str.to_date(fmt, strict=False, cache=False)


def parse_timestamps(text: pl.Series, *, fmt: str | None = None) -> pl.Series:
    """Timestamps as naive UTC: ISO 8601 (`T` or space, optional seconds, fraction, `Z` or offset)
    or the mapping's strftime format (an offset in it, `%z`, converts to UTC too)."""
    if fmt is not None:
        if _has_time(fmt):
            return _naive_utc(text.str.to_datetime(fmt, strict=False, time_unit="us", cache=False))
        return text.str.to_date(fmt, strict=False, cache=False).cast(pl.Datetime("us"))
    first = text.drop_nulls().head(1)
    sep = " " if first.len() and first.str.slice(10, 1).item() == " " else "T"
    value = text.str.to_datetime(f"%Y-%m-%d{sep}%H:%M:%S", strict=False, time_unit="us", cache=False)
    value = _naive_utc(value)
    pending = value.is_null() & text.is_not_null()
    if pending.any():
        idx = pending.arg_true()
        value = value.scatter(idx, _parse_iso_slow(text.gather(idx)))
    return value


def _parse_iso_slow(text: pl.Series) -> pl.Series:
    """The full ISO 8601 rule for the values the fast format did not take."""
    parts = text.str.extract_groups(_ISO_TIMESTAMP).struct.unnest()
    y, mo, d, h, mi, s, frac, off = (parts.get_column(str(i)) for i in range(1, 9))
    frame = pl.DataFrame({"y": y, "mo": mo, "d": d, "h": h, "mi": mi, "s": s, "frac": frac, "off": off})
    base = pl.concat_str([
        pl.col("y"), pl.lit("-"), pl.col("mo"), pl.lit("-"), pl.col("d"), pl.lit(" "),
        pl.col("h").fill_null("0"), pl.lit(":"), pl.col("mi").fill_null("00"), pl.lit(":"),
        pl.col("s").fill_null("00"),
    ]).str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us")
    micros = pl.col("frac").fill_null("").str.pad_end(6, "0").str.slice(0, 6).cast(pl.Int64, strict=False) \
        .fill_null(0)
    off = pl.col("off")
    sign = pl.when(off.str.starts_with("-")).then(-1).otherwise(1)
    digits = off.str.replace_all(":", "", literal=True)
    offset_min = pl.when(off.is_null() | off.str.to_uppercase().eq("Z")).then(0).otherwise(
        sign * (digits.str.slice(1, 2).cast(pl.Int64, strict=False) * 60
                + digits.str.slice(3, 2).cast(pl.Int64, strict=False).fill_null(0))
    )
    hours_ok = pl.when(off.is_null() | off.str.to_uppercase().eq("Z")).then(True).otherwise(
        digits.str.slice(1, 2).cast(pl.Int64, strict=False) <= 23)
    result = frame.select(
        pl.when(hours_ok).then(base + pl.duration(microseconds=micros) - pl.duration(minutes=offset_min))
        .otherwise(None).alias("v")
    ).to_series()
    return result.cast(pl.Datetime("us")).alias(text.name)


def _naive_utc(values: pl.Series) -> pl.Series:
    dtype = values.dtype
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        values = values.dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    return values.cast(pl.Datetime("us"))


def _has_time(fmt: str) -> bool:
    return bool(re.search(r"%[-_0]?[HIklMSfpPzTRXrcs]|%:z|%\.\d?f|%\d?f", fmt))


def _convert_geometry(text: pl.Series) -> tuple[pl.Series, pl.Series]:
    """WKT polygons: a value that is not parseable, not valid or not polygonal is `bad_type`."""
    import shapely

    values = text.to_numpy(allow_copy=True)
    present = np.array([v is not None for v in values], dtype=bool)
    geoms = shapely.from_wkt(np.where(present, values, None), on_invalid="ignore")
    ok = shapely.is_valid(geoms) & np.isin(shapely.get_type_id(geoms), _POLYGONAL)
    failed = pl.Series(text.name, present & ~ok)
    value = pl.select(pl.when(failed).then(None).otherwise(text)).to_series().alias(text.name)
    return value, failed


def geometry_problem(wkt: str | None) -> str | None:
    """Why a WKT text is not a usable zone geometry (None when it is), for messages and docs."""
    import shapely
    from shapely.validation import explain_validity

    if wkt is None:
        return None
    try:
        geom = shapely.from_wkt(wkt)
    except shapely.errors.ShapelyError as exc:
        return f"not WKT: {exc}"
    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        return f"a {geom.geom_type}, not a Polygon or MultiPolygon"
    if not geom.is_valid:
        return explain_validity(geom)
    return None


def check_conservation(*, file: str, rows_read: int, kept: int, quarantined: int) -> None:
    """Rows read = rows kept + rows quarantined, for one file: anything else is a bug, never data loss."""
    if rows_read != kept + quarantined:
        raise ContractError(
            f"{file}: conservation broken: {rows_read} rows read but {kept} kept and {quarantined} quarantined",
            file=file, expected="rows read = rows kept + rows quarantined",
        )
