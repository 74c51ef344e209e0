"""Mapping files: load an operator's own exports without rewriting them (format: docs/mapping.md).

A mapping (TOML) says, per canonical source, which files feed it (globs or a regex, relative to the
`--source` folder), how to read them (CSV options), and how each canonical column is computed: a DuckDB
SQL expression over the file's columns (read as text), a constant, a value map and a date format. The
mapped text then goes through exactly the same typed conversion and contract checks as a canonical file,
so a bad value still becomes a quarantined row with its file and line. One input row may become several
output rows (`repeat`); then rows read = rows produced, and the expansion itself is counted and checked.
"""

from __future__ import annotations

import json
import os
import re
import threading
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import duckdb
import polars as pl

from etl.contracts import SOURCES, Column, Source
from etl.errors import ContractError, MappingError

Encoding = Literal["auto", "utf-8", "latin-1"]
InputFormat = Literal["auto", "csv", "parquet", "geojson"]

#: Columns every mapping expression may use besides the file's own (unless the file has one so named).
PSEUDO_COLUMNS: dict[str, str] = {
    "_line": "the row's physical line in the file (header = line 1; the feature number in GeoJSON)",
    "_row": "the row's number among the file's data rows (1-based)",
    "_file": "the file's path relative to the --source folder",
    "_repeat": "with `repeat`: which copy of the input row this is (1 to the repeat count)",
}

_ENCODINGS = {"auto": "auto", "utf-8": "utf-8", "utf8": "utf-8", "latin-1": "latin-1", "latin1": "latin-1",
              "iso-8859-1": "latin-1"}
_SOURCE_KEYS = ("files", "match", "format", "csv", "columns", "constants", "values", "formats", "repeat",
                "max_repeat")
_TOP_KEYS = ("name", "description", "format_version", "sources")
_STRFTIME = re.compile(r"%(?:[-_0^#]?[YCymbBhdeaAwuUWGgVjDxFvHkIlPpMSfRTXrZzcs tn%+]|\.?[369]?f|:{1,2}z|#z)")


@dataclass(frozen=True)
class CsvOptions:
    """How to split a CSV export into columns (the defaults are the canonical extracts' own)."""

    delimiter: str = ","
    quote: str = '"'
    """The quote character; empty for none."""
    escape: str | None = None
    """The escape character inside quotes; None means the quote doubled (`""`), as RFC 4180 says."""
    encoding: Encoding = "auto"
    """`auto`: UTF-8 (a BOM is dropped), or Latin-1 with a warning when the file is not valid UTF-8."""
    skip: int = 0
    """Lines to skip before the header (a title, an export banner)."""
    header: bool = True
    names: tuple[str, ...] = ()
    """Column names when the file has no header (`header = false`)."""
    nulls: tuple[str, ...] = ("",)
    """Values read as empty (null)."""


@dataclass(frozen=True)
class SourceMapping:
    """How one canonical source is computed from an operator's files."""

    source: str
    files: tuple[str, ...] = ()
    """Globs relative to the source folder (`*` stays in one folder, `**` crosses folders)."""
    match: str | None = None
    """Or a regular expression the file's relative path must match whole."""
    format: InputFormat = "auto"
    csv: CsvOptions = field(default_factory=CsvOptions)
    columns: dict[str, str] = field(default_factory=dict)
    """Canonical column -> DuckDB SQL expression over the file's columns (all text) and pseudo columns."""
    constants: dict[str, str] = field(default_factory=dict)
    """Canonical column -> one value for every row (given as text)."""
    values: dict[str, dict[str, str | None]] = field(default_factory=dict)
    """Canonical column -> {value as computed: value to load}; other values pass unchanged."""
    formats: dict[str, str] = field(default_factory=dict)
    """Canonical date/timestamp column -> strftime format of its text (else ISO 8601)."""
    repeat: str | None = None
    """An expression giving how many rows each input row becomes (0 or more); `_repeat` numbers them."""
    max_repeat: int = 1000

    def matches(self, relative_path: str) -> bool:
        """Whether a file (path relative to the source folder, with `/`) feeds this source."""
        if self.match is not None and re.fullmatch(self.match, relative_path):
            return True
        return any(glob_regex(g).fullmatch(relative_path) for g in self.files)


@dataclass(frozen=True)
class Mapping:
    """A whole mapping file: its sources (unmapped sources still load from canonical file names)."""

    path: Path
    sources: dict[str, SourceMapping]
    name: str = ""
    description: str = ""


def load_mapping(path: str | Path) -> Mapping:
    """Parse and validate a mapping file; `MappingError` names the file, the source and the key."""
    path = Path(path)
    where = str(path)
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise MappingError(f"{where}: no such mapping file") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise MappingError(f"{where}: not valid TOML: {exc}") from exc
    _unknown_keys(doc, _TOP_KEYS, where=where, section="")
    version = doc.get("format_version", 1)
    if version != 1:
        raise MappingError(f"{where}: format_version = {version!r} is not supported (expected 1)")
    sources = doc.get("sources")
    if not isinstance(sources, dict) or not sources:
        raise MappingError(f"{where}: [sources] is missing or empty (expected at least one [sources.<name>])")
    with private_connection(files=False) as con:
        parsed = {name: _source_mapping(name, body, where=where, con=con) for name, body in sources.items()}
    return Mapping(path=path, sources=parsed, name=str(doc.get("name", "")),
                   description=str(doc.get("description", "")))


def _fail(where: str, source: str | None, key: str, problem: str) -> MappingError:
    section = f"[sources.{source}] " if source else ""
    return MappingError(f"{where}: {section}{key}: {problem}")


def _unknown_keys(table: dict, known: Sequence[str], *, where: str, section: str, source: str | None = None,
                  what: str = "key") -> None:
    for key in table:
        if key not in known:
            raise _fail(where, source, f"{section}{key}",
                        f"unknown {what} (known: {', '.join(known)})")


def _source_mapping(name: str, body: Any, *, where: str, con: duckdb.DuckDBPyConnection) -> SourceMapping:
    if name not in SOURCES:
        raise MappingError(f"{where}: [sources.{name}]: unknown source {name!r} "
                           f"(known: {', '.join(SOURCES)})")
    if not isinstance(body, dict):
        raise _fail(where, name, "", "expected a table")
    src = SOURCES[name]
    _unknown_keys(body, _SOURCE_KEYS, where=where, section="", source=name)

    files = body.get("files", [])
    files = [files] if isinstance(files, str) else files
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        raise _fail(where, name, "files", "expected a glob or a list of globs")
    for pattern in files:
        problem = glob_problem(pattern)
        if problem:
            raise _fail(where, name, "files", f"{pattern!r}: {problem}")
    match = body.get("match")
    if match is not None:
        if not isinstance(match, str):
            raise _fail(where, name, "match", "expected a regular expression (a string)")
        try:
            re.compile(match)
        except re.error as exc:
            raise _fail(where, name, "match", f"{match!r} is not a valid regular expression: {exc}") from exc
    if not files and match is None:
        raise _fail(where, name, "files", "missing: say which files feed this source (files = [...] or match)")

    fmt = body.get("format", "auto")
    if fmt not in ("auto", "csv", "parquet", "geojson"):
        raise _fail(where, name, "format", f"{fmt!r} is not one of auto, csv, parquet, geojson")
    csv_options = _csv_options(body.get("csv", {}), where=where, source=name)

    columns = _string_table(body.get("columns", {}), where=where, source=name, key="columns")
    for col, expr in columns.items():
        _canonical(src, col, where=where, key=f"columns.{col}")
        check_expression(expr, where=where, source=name, key=f"columns.{col}", con=con)

    constants_raw = body.get("constants", {})
    if not isinstance(constants_raw, dict):
        raise _fail(where, name, "constants", "expected a table of column = value")
    constants: dict[str, str] = {}
    for col, value in constants_raw.items():
        _canonical(src, col, where=where, key=f"constants.{col}")
        if col in columns:
            raise _fail(where, name, f"constants.{col}", "the column is also in [columns]: give it once")
        constants[col] = _constant_text(value, where=where, source=name, key=f"constants.{col}")

    values_raw = body.get("values", {})
    if not isinstance(values_raw, dict):
        raise _fail(where, name, "values", "expected tables of value maps ([sources.x.values.<column>])")
    values: dict[str, dict[str, str | None]] = {}
    for col, table in values_raw.items():
        _canonical(src, col, where=where, key=f"values.{col}")
        if col not in columns and col not in constants:
            raise _fail(where, name, f"values.{col}", "the column is not mapped in [columns] or [constants]")
        mapped = _string_table(table, where=where, source=name, key=f"values.{col}")
        values[col] = {k: (v if v != "" else None) for k, v in mapped.items()}

    formats = _string_table(body.get("formats", {}), where=where, source=name, key="formats")
    for col, fmt_text in formats.items():
        column = _canonical(src, col, where=where, key=f"formats.{col}")
        if column.dtype not in ("date", "timestamp"):
            raise _fail(where, name, f"formats.{col}",
                        f"formats apply to date and timestamp columns; {col} is {column.dtype}")
        problem = strftime_problem(fmt_text)
        if problem:
            raise _fail(where, name, f"formats.{col}", f"{fmt_text!r}: {problem}")

    repeat = body.get("repeat")
    if repeat is not None:
        if not isinstance(repeat, str) or not repeat.strip():
            raise _fail(where, name, "repeat", "expected an SQL expression giving a whole number")
        check_expression(repeat, where=where, source=name, key="repeat", con=con)
    max_repeat = body.get("max_repeat", 1000)
    if not isinstance(max_repeat, int) or isinstance(max_repeat, bool) or max_repeat < 1:
        raise _fail(where, name, "max_repeat", f"{max_repeat!r} is not a whole number of at least 1")

    missing = [c for c in src.required_columns if c not in columns and c not in constants]
    if missing:
        raise _fail(where, name, "columns",
                    f"required columns of {name} are not mapped: {', '.join(missing)} "
                    "(map each in [columns] or [constants]; an expression may be NULL for a nullable one)")
    return SourceMapping(source=name, files=tuple(files), match=match, format=fmt, csv=csv_options,
                         columns=columns, constants=constants, values=values, formats=formats, repeat=repeat,
                         max_repeat=max_repeat)


def _canonical(src: Source, col: str, *, where: str, key: str) -> Column:
    try:
        return src.column(col)
    except KeyError:
        raise _fail(where, src.name, key, f"{src.name} has no column {col!r} "
                    f"(its columns: {', '.join(src.column_names)})") from None


def _string_table(table: Any, *, where: str, source: str, key: str) -> dict[str, str]:
    if not isinstance(table, dict):
        raise _fail(where, source, key, "expected a table of name = \"text\"")
    for k, v in table.items():
        if not isinstance(v, str):
            raise _fail(where, source, f"{key}.{k}", f"expected text, got {type(v).__name__} {v!r}")
    return dict(table)


def _constant_text(value: Any, *, where: str, source: str, key: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    raise _fail(where, source, key, f"expected text, a number, a boolean or a date, got {type(value).__name__}")


def _csv_options(table: Any, *, where: str, source: str) -> CsvOptions:
    if not isinstance(table, dict):
        raise _fail(where, source, "csv", "expected a table of CSV options")
    known = ("delimiter", "quote", "escape", "encoding", "skip", "header", "names", "nulls")
    _unknown_keys(table, known, where=where, section="csv.", source=source, what="CSV option")
    options: dict[str, Any] = {}
    delimiter = table.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\r\n\"":
        raise _fail(where, source, "csv.delimiter", f"{delimiter!r} is not one character (other than a line break "
                    "or a double quote)")
    options["delimiter"] = delimiter
    for key in ("quote", "escape"):
        if key in table:
            value = table[key]
            if not isinstance(value, str) or len(value) > 1 or value in ("\r", "\n") or (value and value == delimiter):
                raise _fail(where, source, f"csv.{key}", f"{value!r} is not one character (or empty), "
                            "other than the delimiter and line breaks")
            options[key] = value
    encoding = table.get("encoding", "auto")
    if not isinstance(encoding, str) or encoding.lower() not in _ENCODINGS:
        raise _fail(where, source, "csv.encoding", f"{encoding!r} is not one of auto, utf-8, latin-1")
    options["encoding"] = _ENCODINGS[encoding.lower()]
    skip = table.get("skip", 0)
    if not isinstance(skip, int) or isinstance(skip, bool) or skip < 0:
        raise _fail(where, source, "csv.skip", f"{skip!r} is not a whole number of lines (0 or more)")
    options["skip"] = skip
    header = table.get("header", True)
    if not isinstance(header, bool):
        raise _fail(where, source, "csv.header", f"{header!r} is not true or false")
    options["header"] = header
    names = table.get("names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise _fail(where, source, "csv.names", "expected a list of column names")
    if len(set(names)) != len(names):
        raise _fail(where, source, "csv.names", "a name is given twice")
    if not header and not names:
        raise _fail(where, source, "csv.names", "with header = false, names must list the file's columns")
    if header and names:
        raise _fail(where, source, "csv.names", "names are only for files without a header (header = false)")
    options["names"] = tuple(names)
    nulls = table.get("nulls", [""])
    if not isinstance(nulls, list) or not all(isinstance(n, str) for n in nulls):
        raise _fail(where, source, "csv.nulls", "expected a list of texts read as empty")
    options["nulls"] = tuple(nulls) if nulls else ("",)
    return CsvOptions(**options)


def glob_problem(pattern: str) -> str | None:
    """Why a file glob is unusable (None when it is fine): it must stay inside the source folder."""
    if not pattern.strip():
        return "empty pattern"
    if pattern.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", pattern):
        return "patterns are relative to the --source folder, not absolute"
    if ".." in PurePosixPath(pattern).parts:
        return "patterns may not leave the --source folder (..)"
    depth = 0
    for ch in pattern:
        if ch == "[":
            if depth:
                return "nested [ in a character class"
            depth = 1
        elif ch == "]" and depth:
            depth = 0
    if depth:
        return "unclosed [ in a character class"
    try:
        glob_regex(pattern)
    except re.error as exc:
        return f"not a valid glob: {exc}"
    return None


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A glob as a regular expression over relative paths: `*`, `?` and `[...]` stay within one folder,
    `**/` matches any number of folders."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:[^/]+/)*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i + 1)
            body = pattern[i + 1:end]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end + 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def strftime_problem(fmt: str) -> str | None:
    """Why a date format is unusable (None when it is fine): chrono/strftime directives only."""
    if "%" not in fmt:
        return "no strftime directive (expected e.g. %d/%m/%Y)"
    rest = _STRFTIME.sub("", fmt)
    if "%" in rest:
        bad = rest[rest.index("%"):rest.index("%") + 2]
        return f"{bad!r} is not a strftime directive"
    if not re.search(r"%[-_0^#]?[YyCGDFxvcs+]", fmt):
        return "no year in the format (expected %Y, %y, %F or similar)"
    return None


def check_expression(expr: str, *, where: str, source: str, key: str,
                     con: duckdb.DuckDBPyConnection) -> tuple[str, ...]:
    """Parse one mapping expression (it must be a single SQL value expression); return the columns it reads."""
    if not isinstance(expr, str) or not expr.strip():
        raise _fail(where, source, key, "empty expression")
    text = con.sql("SELECT json_serialize_sql($sql)", params={"sql": f"SELECT ({expr}) AS __value"}).fetchall()[0][0]
    doc = json.loads(text)
    if doc.get("error"):
        raise _fail(where, source, key, f"{expr!r} is not a valid SQL expression: {doc.get('error_message')}")
    statements = doc.get("statements", [])
    node = statements[0]["node"] if len(statements) == 1 else {}
    if (len(statements) != 1 or node.get("type") != "SELECT_NODE" or len(node.get("select_list", [])) != 1
            or node.get("from_table", {}).get("type") != "EMPTY" or node.get("where_clause") is not None):
        raise _fail(where, source, key, f"{expr!r} is not one SQL value expression")
    return tuple(sorted(_column_refs(node["select_list"][0])))


def _column_refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        if node.get("class") == "COLUMN_REF" and node.get("column_names"):
            found.add(node["column_names"][-1])
        for value in node.values():
            found |= _column_refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= _column_refs(value)
    return found


_PRIVATE = threading.local()


@contextmanager
def private_connection(*, files: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB connection of our own: no progress bar on stderr, strings handed to Polars as
    Arrow string views (no copy), and no file access at all when it only runs mapping expressions.

    Opening one costs about a tenth of a second, which a folder of daily files would pay per file, so
    each thread (and process) keeps one of each kind; after an error it is closed and the next use opens
    a fresh one. Callers leave nothing behind on it.
    """
    key = "files" if files else "sealed"
    cached = getattr(_PRIVATE, key, None)
    if cached is None or cached[0] != os.getpid():
        con = duckdb.connect(config={} if files else {"enable_external_access": False})
        con.sql("SET enable_progress_bar = false")
        con.sql("SET produce_arrow_string_view = true")
        con.sql("SET arrow_output_version = '1.5'")
        cached = (os.getpid(), con)
        setattr(_PRIVATE, key, cached)
    con = cached[1]
    try:
        yield con
    except BaseException:
        setattr(_PRIVATE, key, None)
        con.close()
        raise


# --- applying a mapping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mapped:
    """A file's rows mapped onto a source's columns, as text, ready for `validate_rows`."""

    frame: pl.DataFrame
    """Mapped canonical columns (text), `_line`, and `_row` (the input row it came from, 0-based)."""
    rejects: pl.DataFrame
    """Input rows whose repeat count is unusable (`_row`, line, reason, column, value, message)."""
    rows_in: int
    rows_out: int
    """Rows produced: `frame.height + rejects.height` (equal to rows_in without `repeat`)."""
    referenced: tuple[str, ...]
    """The file's columns the expressions read."""
    warnings: tuple[str, ...] = ()


def map_rows(
    frame: pl.DataFrame,
    columns: Sequence[str],
    sm: SourceMapping,
    *,
    file: str,
    mapping_path: str | Path,
    unit: str = "line",
) -> Mapped:
    """Compute the canonical columns of `sm.source` from a file's text rows with the mapping's SQL.

    Runs on a private in-memory DuckDB connection without file access. An expression that does not fit
    the file's header is a `MappingError`; one that fails on a value (a CAST, where TRY_CAST was meant)
    is a `ContractError` naming the file and the key.
    """
    src = SOURCES[sm.source]
    where = str(mapping_path)
    inputs = frame.select([pl.col(c) for c in columns]
                          + [pl.col("_line").alias("__line"), pl.col("_row").alias("__idx")])
    for name, value in (("_file", pl.lit(file, pl.String)), ("_row", pl.col("__idx") + 1),
                        ("_line", pl.col("__line"))):
        if name not in columns:  # a column of the file's own keeps its name
            inputs = inputs.with_columns(value.alias(name))
    with private_connection(files=False) as con:
        con.register("input", inputs.to_arrow())
        try:
            out, expected, referenced = _run_mapping(con, sm, src=src, columns=columns, file=file, where=where,
                                                     rows=inputs.height)
        finally:
            with suppress(duckdb.Error):
                con.unregister("input")
    return _finish_mapping(out, expected, referenced, sm, src=src, columns=columns, file=file, unit=unit,
                           rows_in=inputs.height)


def _run_mapping(con: duckdb.DuckDBPyConnection, sm: SourceMapping, *, src: Source, columns: Sequence[str],
                 file: str, where: str, rows: int) -> tuple[pl.DataFrame, int, set[str]]:
    """The mapping's query over the registered `input`: the mapped text columns, the number of rows the
    repeat counts promise (computed on its own, to check the expansion), and the file columns read."""
    params: dict[str, Any] = {}
    items = []
    referenced: set[str] = set()
    for col in src.column_names:
        if col in sm.columns:
            items.append(f"CAST(({sm.columns[col]}) AS VARCHAR) AS {_ident(col)}")
            referenced |= set(check_expression(sm.columns[col], where=where, source=sm.source,
                                               key=f"columns.{col}", con=con))
        elif col in sm.constants:  # a parameter, never text pasted into the query
            key = f"k{len(params)}"
            params[key] = sm.constants[col]
            items.append(f"CAST(${key} AS VARCHAR) AS {_ident(col)}")
    select = ", ".join(items)
    if sm.repeat is None:
        query = f"SELECT __idx, __line, {select} FROM input"
        count_query = None
    else:
        referenced |= set(check_expression(sm.repeat, where=where, source=sm.source, key="repeat", con=con))
        params["max_repeat"] = sm.max_repeat
        base = (f"WITH base AS (SELECT *, TRY_CAST(({sm.repeat}) AS BIGINT) AS __n, "
                f"CAST(({sm.repeat}) AS VARCHAR) AS __n_text FROM input)")
        query = (
            f"{base}, expanded AS (SELECT *, unnest(CASE WHEN __n BETWEEN 0 AND $max_repeat "
            "THEN range(1, __n + 1) ELSE [NULL::BIGINT] END) AS _repeat FROM base) "
            f"SELECT __idx, __line, (__n IS NULL OR __n < 0 OR __n > $max_repeat) AS __bad_repeat, __n_text, "
            f"{select} FROM expanded ORDER BY __idx, _repeat"
        )
        count_query = (f"{base} SELECT coalesce(sum(CASE WHEN __n BETWEEN 0 AND $max_repeat THEN __n "
                       "ELSE 1 END), 0) FROM base")
    try:
        relation = con.sql(query, params=params)
    except duckdb.Error as exc:
        _name_the_failing_expression(con, sm, columns=columns, file=file, where=where)
        raise _fail(where, sm.source, "columns", f"the mapping does not fit {file}: "
                    f"{str(exc).strip().splitlines()[0]}") from exc
    try:
        out = relation.pl()
        expected = con.sql(count_query, params={"max_repeat": sm.max_repeat}).fetchall()[0][0] \
            if count_query else rows
    except duckdb.Error as exc:
        raise ContractError(
            f"{file}: the mapping {where} [sources.{sm.source}] fails on a value of this file: "
            f"{str(exc).splitlines()[0]} (use TRY_CAST so that one bad value quarantines one row)",
            file=file, expected="expressions that work on every row") from exc
    return out, int(expected), referenced


def _finish_mapping(out: pl.DataFrame, expected: int, referenced: set[str], sm: SourceMapping, *, src: Source,
                    columns: Sequence[str], file: str, unit: str, rows_in: int) -> Mapped:
    """Check the expansion, apply the value maps, and split off the rows whose repeat count is unusable."""
    if out.height != expected:
        raise ContractError(f"{file}: mapping {sm.source}: {expected} rows expected from the repeat counts, "
                            f"{out.height} produced", file=file, expected="rows produced = sum of repeat counts")
    for col, table in sm.values.items():
        out = out.with_columns(pl.col(col).replace_strict(table, default=pl.col(col), return_dtype=pl.String))
    rejects = _repeat_rejects(out, sm, file=file, unit=unit) if sm.repeat is not None else _no_rejects()
    if sm.repeat is not None:
        out = out.filter(~pl.col("__bad_repeat"))
    mapped = out.select([pl.col(c) for c in src.column_names if c in out.columns]
                        + [pl.col("__line").alias("_line"), pl.col("__idx").alias("_row")])
    warnings: tuple[str, ...] = ()
    if sm.repeat is not None:
        warnings = ((f"{file}: {rows_in} input rows became {out.height + rejects.height} {sm.source} rows "
                     f"(repeat = {sm.repeat})"),)
    return Mapped(frame=mapped, rejects=rejects, rows_in=rows_in, rows_out=out.height + rejects.height,
                  referenced=tuple(c for c in columns if c in referenced), warnings=warnings)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _no_rejects() -> pl.DataFrame:
    return pl.DataFrame(schema={"_row": pl.Int64, "line": pl.Int64, "reason": pl.String, "column": pl.String,
                                "value": pl.String, "message": pl.String})


def _repeat_rejects(out: pl.DataFrame, sm: SourceMapping, *, file: str, unit: str) -> pl.DataFrame:
    bad = out.filter(pl.col("__bad_repeat"))
    if not bad.height:
        return _no_rejects()
    shown = pl.when(pl.col("__n_text").is_null()).then(pl.lit("empty")).otherwise(
        pl.concat_str([pl.lit('"'), pl.col("__n_text"), pl.lit('"')]))
    return bad.select(
        pl.col("__idx").cast(pl.Int64).alias("_row"), pl.col("__line").cast(pl.Int64).alias("line"),
        pl.lit("bad_type").alias("reason"), pl.lit("_repeat").alias("column"),
        pl.col("__n_text").alias("value"),
        pl.concat_str([pl.lit(f"{file}, {unit} "), pl.col("__line").cast(pl.String),
                       pl.lit(", column _repeat: "), shown,
                       pl.lit(f" is not a valid repeat count (expected int, between 0 and {sm.max_repeat}, "
                              f"not empty: the mapping's repeat = {sm.repeat})")]).alias("message"),
    )


def _name_the_failing_expression(con: duckdb.DuckDBPyConnection, sm: SourceMapping, *, columns: Sequence[str],
                                 file: str, where: str) -> None:
    """Bind each expression alone against the file's header and raise for the first that does not fit."""
    context = "(SELECT *, NULL::BIGINT AS _repeat FROM input)" if sm.repeat else "input"
    checks = [(f"columns.{c}", e) for c, e in sm.columns.items()]
    if sm.repeat:
        checks.insert(0, ("repeat", sm.repeat))
    for key, expr in checks:
        try:
            con.sql(f"SELECT ({expr}) FROM {context} LIMIT 0")
        except duckdb.Error as exc:
            message = str(exc).strip().splitlines()[0]
            raise _fail(where, sm.source, key,
                        f"{expr!r} does not fit {file}: {message} (the file's columns: {', '.join(columns)}; "
                        f"pseudo columns: {', '.join(PSEUDO_COLUMNS)})") from exc


def check_mapping(mapping: Mapping, source_dir: str | Path) -> tuple[str, ...]:
    """Check a mapping against a source folder before a refresh: every expression must fit the header
    of each file its source matches. Returns warnings (a source whose patterns match no file)."""
    from etl.extract import extract_source_dir, read_columns  # extract imports this module

    found = extract_source_dir(source_dir, mapping=mapping)
    warnings = []
    for name, sm in mapping.sources.items():
        paths = [p for p, s in found if s.name == name]
        if not paths:
            warnings.append(f"{mapping.path}: [sources.{name}] matches no file in {source_dir}")
            continue
        for path in paths:
            try:
                columns = read_columns(path, file=found.name(path), fmt=sm.format, options=sm.csv)
            except ContractError as exc:
                raise MappingError(f"{mapping.path}: [sources.{name}] files: {exc}") from exc
            empty = pl.DataFrame(schema={**{c: pl.String for c in columns}, "_line": pl.Int64, "_row": pl.Int64})
            map_rows(empty, columns, sm, file=found.name(path), mapping_path=mapping.path)
    return tuple(warnings)
