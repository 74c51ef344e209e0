"""Extraction: read one extract file, every value as text, and hand it to validation; find the files.

CSV (plain or gzip'd, decompressed once to a temporary file) is read by DuckDB on a private in-memory
connection, in two passes and no loop per row: a cheap pass over the physical lines (the encoding, which
lines are blank, which few lines need their fields counted exactly) and a `read_csv` pass, all columns
as text with `store_rejects`, for the values and the lines that do not split into the header's columns.
Physical line numbers (header = line 1) come from matching the two: directly when every record is one
line, by quote parity when quoted values hold line breaks (checked three ways). Rows DuckDB would
silently shorten (`1,2,3,,` for three columns) are counted and rejected. Anything the match cannot
vouch for (a quote never closed, a quote inside an unquoted value next to a multi-line record) goes
through Python's `csv` module, record by record: exact, and slower. Parquet columns are read as they
are (row i is line i + 2, as if under a header); GeoJSON gives one row per feature (line = feature
number). The interface (`extract_file`, `ExtractResult`) is fixed in docs/architecture.md.
"""

from __future__ import annotations

import csv
import gzip
import io
import itertools
import json
import re
import tempfile
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import duckdb
import polars as pl

from etl.contracts import LOAD_ORDER, SOURCES, Source, source_for_file
from etl.errors import ContractError
from etl.mapping import CsvOptions, Mapping, map_rows, private_connection
from etl.validate import (
    QUARANTINE_SCHEMA,
    Unit,
    Validated,
    as_text,
    check_conservation,
    check_header,
    empty_quarantine,
    validate_rows,
)

FileFormat = Literal["csv", "parquet", "geojson"]

_LINE_DELIM = "\x1f\x1e"
"""The line pass splits on this (never in text exports), so each physical line is one value."""
_MAX_LINE_BYTES = 1 << 24
"""Longest CSV line accepted (16 MiB: a county's WKT polygon fits); a longer one is a malformed row."""
_HEAD_BYTES = 1 << 20
_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
VALIDATE_SLICE_ROWS = 500_000
"""Rows validated at a time (see `_validate_in_slices`)."""


@dataclass
class ExtractResult:
    """One file read and validated: typed good rows, quarantined rows, and what was noticed."""

    source: str
    """Contract name."""
    file: str
    """The name used in messages and in the manifest (relative to the source dir)."""
    rows_read: int
    """Data rows in the file (header excluded); for a mapping that repeats rows, the rows produced."""
    good: pl.DataFrame
    """Every contract column (absent optional ones as nulls), typed, plus `_file` and `_line`."""
    rejects: pl.DataFrame
    """`QUARANTINE_SCHEMA`, one row per rejected row."""
    extra_columns: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def rows_kept(self) -> int:
        return self.good.height

    @property
    def rows_quarantined(self) -> int:
        return self.rejects.height

    def check(self) -> None:
        """Conservation: rows read = rows kept + rows quarantined (raises `ContractError` otherwise)."""
        check_conservation(file=self.file, rows_read=self.rows_read, kept=self.good.height,
                           quarantined=self.rejects.height)


@dataclass(frozen=True)
class TextTable:
    """A file as read, before any typing: input columns, where each row sits, and what did not split."""

    frame: pl.DataFrame
    """The input columns (text; Parquet columns keep their types), `_line` and `_row` (0-based position)."""
    columns: tuple[str, ...]
    """Input column names in file order (an unnamed header cell is `column<i>`, 0-based)."""
    rows_read: int
    """Data rows found: `frame.height + malformed.height`."""
    malformed: pl.DataFrame
    """`line`, `raw`, `message` of rows that do not split into the header's columns."""
    warnings: tuple[str, ...] = ()
    unit: Unit = "line"


def extract_file(
    path: str | Path,
    source: Source | str,
    *,
    name: str | None = None,
    mapping: Mapping | None = None,
) -> ExtractResult:
    """Read one extract file, convert every value with the contract's types and apply its row rules.

    `name` is how the file is called in messages and in the manifest (default: its file name). With a
    `mapping` that maps `source`, the file is the operator's own export and is mapped onto the contract
    first (the same conversion and checks follow). Raises `ContractError` when the file cannot be used
    at all: unreadable, empty with no header, missing required columns.
    """
    path = Path(path)
    src = SOURCES[source] if isinstance(source, str) else source
    file = name or path.name
    if not path.is_file():
        raise ContractError(f"{file}: no such file ({path})", file=file)
    sm = mapping.sources.get(src.name) if mapping is not None else None
    warnings: list[str] = []
    if sm is None:
        table = read_table(path, file=file, fmt=_format_of(path))
        extra = check_header(table.columns, src, file=file)
        frame = table.frame.select([c for c in src.column_names if c in table.columns] + ["_line", "_row"])
        checked = _validate_in_slices(frame, src, file=file, unit=table.unit)
        repeat_rejects = None
        rows_read = table.rows_read
        if extra:
            warnings.append(f"{file}: extra columns ignored: {', '.join(extra)}")
    else:
        table = read_table(path, file=file, fmt=sm.format if sm.format != "auto" else
                           _format_of(path), options=sm.csv, text=True)
        mapped = map_rows(table.frame, table.columns, sm, file=file, mapping_path=mapping.path, unit=table.unit)
        checked = _validate_in_slices(mapped.frame, src, file=file, formats=sm.formats, unit=table.unit)
        repeat_rejects = mapped.rejects
        rows_read = table.malformed.height + mapped.rows_out
        extra = tuple(c for c in table.columns if c not in mapped.referenced)
        warnings.extend(mapped.warnings)
        if extra:
            warnings.append(f"{file}: columns the mapping of {src.name} does not use: {', '.join(extra)}")
    warnings[:0] = table.warnings

    parts = [_malformed_rejects(table.malformed, source=src.name, file=file)]
    for rejects in (repeat_rejects, checked.rejects):
        if rejects is not None and rejects.height:
            parts.append(_with_raw(rejects, table, source=src.name, file=file))
    rejects = pl.concat(parts, how="vertical").sort("line", maintain_order=True)
    result = ExtractResult(
        source=src.name, file=file, rows_read=rows_read, good=checked.good, rejects=rejects,
        extra_columns=tuple(extra), warnings=tuple(warnings),
    )
    result.check()
    return result


def _validate_in_slices(frame: pl.DataFrame, src: Source, *, file: str, formats: dict[str, str] | None = None,
                        unit: Unit = "line") -> Validated:
    """`validate_rows` over slices of VALIDATE_SLICE_ROWS rows (its rules are row by row): the conversion's
    intermediate columns then exist for one slice at a time, which bounds the extraction's peak memory
    on a large daily file (a 4.8M-row charging file needed 1.5 GB more in one piece)."""
    if frame.height <= VALIDATE_SLICE_ROWS:
        return validate_rows(frame, src, file=file, formats=formats, unit=unit)
    parts = [validate_rows(frame.slice(i, VALIDATE_SLICE_ROWS), src, file=file, formats=formats, unit=unit)
             for i in range(0, frame.height, VALIDATE_SLICE_ROWS)]
    return Validated(good=pl.concat([p.good for p in parts], how="vertical", rechunk=False),
                     rejects=pl.concat([p.rejects for p in parts], how="vertical"))


# --- discovery --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Discovery:
    """The files of a source folder by source, in `LOAD_ORDER` then by name, and the files no source takes.

    Iterating gives `(path, source)` pairs; one file may appear under several sources when a mapping
    feeds several sources from it.
    """

    root: Path
    files: tuple[tuple[Path, Source], ...]
    ignored: tuple[Path, ...] = ()

    def __iter__(self) -> Iterator[tuple[Path, Source]]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)

    def name(self, path: Path) -> str:
        """The name a file has in messages and in the manifest: its path relative to the folder."""
        return Path(path).relative_to(self.root).as_posix()


def extract_source_dir(source_dir: str | Path, *, mapping: Mapping | None = None) -> Discovery:
    """Find the extract files of a folder: canonical names (flat) and, with a mapping, its patterns.

    A source the mapping maps takes only the files its patterns match; the other sources take the
    canonical files (`charging_20261101.csv.gz`) in the folder itself. Every other file, in the folder
    or below it, is listed in `ignored` so the caller reports it (hidden files and folders excepted).
    """
    root = Path(source_dir)
    if not root.is_dir():
        raise ContractError(f"{root}: the source folder does not exist or is not a folder", file=str(root))
    everything = sorted(
        (p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".")
                                                                for part in p.relative_to(root).parts)),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    claimed: set[Path] = set()
    by_source: dict[str, list[Path]] = {name: [] for name in LOAD_ORDER}
    mapped = mapping.sources if mapping is not None else {}
    for name, sm in mapped.items():
        for p in everything:
            if sm.matches(p.relative_to(root).as_posix()):
                by_source[name].append(p)
                claimed.add(p)
    for p in everything:
        if p in claimed or p.parent != root:
            continue
        src = source_for_file(p)
        if src is not None and src.name not in mapped:
            by_source[src.name].append(p)
            claimed.add(p)
    files = tuple((p, SOURCES[name]) for name in LOAD_ORDER for p in by_source[name])
    ignored = tuple(p for p in everything if p not in claimed)
    return Discovery(root=root, files=files, ignored=ignored)


# --- readers ----------------------------------------------------------------------------------------------


def _format_of(path: Path) -> FileFormat:
    """The reader a file needs, from its name and its first bytes."""
    name = path.name.lower()
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if name.endswith(".parquet") or magic == _PARQUET_MAGIC:
        return "parquet"
    if name.endswith((".geojson", ".json")):
        return "geojson"
    return "csv"


def read_table(
    path: str | Path,
    *,
    file: str | None = None,
    fmt: FileFormat | Literal["auto"] = "auto",
    options: CsvOptions | None = None,
    text: bool = False,
    exact: bool = False,
) -> TextTable:
    """Read a file as a `TextTable` (CSV, gzip'd CSV, Parquet or GeoJSON); `text` casts Parquet to text.

    `exact` reads a CSV record by record with Python's csv module: slow, for files DuckDB cannot split
    (and for checking that both readers agree)."""
    path = Path(path)
    file = file or path.name
    if fmt == "auto":
        fmt = _format_of(path)
    if fmt == "parquet":
        table = _read_parquet(path, file=file)
        if text:
            table = TextTable(
                frame=table.frame.with_columns([as_text(table.frame.get_column(c)) for c in table.columns]),
                columns=table.columns, rows_read=table.rows_read, malformed=table.malformed,
                warnings=table.warnings, unit=table.unit,
            )
        return table
    if fmt == "geojson":
        return _read_geojson(path, file=file)
    return _read_csv(path, file=file, options=options or CsvOptions(), exact=exact)


def _read_csv(path: Path, *, file: str, options: CsvOptions, exact: bool = False) -> TextTable:
    with tempfile.TemporaryDirectory(prefix="opencem-extract-") as tmp:
        plain = _plain_file(path, Path(tmp), file=file)
        if plain.stat().st_size == 0:
            raise ContractError(f"{file}: empty file, no header", file=file, row=1,
                                expected="a header line naming the columns")
        with private_connection(files=True) as con:
            con.sql("DROP TABLE IF EXISTS reject_errors")  # rejects of an earlier file on this connection
            con.sql("DROP TABLE IF EXISTS reject_scans")
            warnings: list[str] = []
            guess = _guess_encoding(plain, options=options)
            columns, header_lines = _header(plain, file=file, options=options, encoding=guess)
            encoding, info = _line_pass(con, plain, file=file, options=options, warnings=warnings,
                                        ncols=len(columns))
            if encoding != guess:
                columns, header_lines = _header(plain, file=file, options=options, encoding=encoding)
            fast = None
            if header_lines <= 1 and not exact:
                fast = _duckdb_records(con, plain, file=file, options=options, encoding=encoding,
                                       columns=columns, header_lines=header_lines, info=info)
        if fast is None:
            frame, malformed, rows_read, blanks = _python_records(
                plain, file=file, options=options, encoding=encoding, columns=columns, header_lines=header_lines,
            )
        else:
            frame, malformed, rows_read, blanks = fast
    if blanks.len():
        shown = ", ".join(str(x) for x in blanks.head(5).to_list()) + (", …" if blanks.len() > 5 else "")
        warnings.append(f"{file}: {blanks.len()} blank line{'s' if blanks.len() != 1 else ''} skipped "
                        f"(line {shown})")
    return TextTable(frame=frame, columns=tuple(columns), rows_read=rows_read, malformed=malformed,
                     warnings=tuple(warnings), unit="line")


def _plain_file(path: Path, tmp: Path, *, file: str) -> Path:
    """The file itself, or its gzip'd content decompressed once into `tmp` (DuckDB then reads it in
    parallel, which is faster than its own single-threaded gzip scan)."""
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic != _GZIP_MAGIC:
        if path.name.lower().endswith(".gz") and path.stat().st_size:
            raise ContractError(f"{file}: the name says gzip but the file is not gzip'd", file=file,
                                expected="a gzip'd CSV file")
        return path
    out = tmp / "decompressed.csv"
    try:
        with open(path, "rb") as src, open(out, "wb") as dst:
            inflater = zlib.decompressobj(wbits=31)
            while chunk := src.read(1 << 22):
                dst.write(inflater.decompress(chunk))
                while inflater.unused_data:  # concatenated gzip members
                    rest = inflater.unused_data
                    dst.write(inflater.flush())
                    inflater = zlib.decompressobj(wbits=31)
                    dst.write(inflater.decompress(rest))
            dst.write(inflater.flush())
            if not inflater.eof:
                raise ContractError(f"{file}: the gzip stream is truncated", file=file,
                                    expected="a complete gzip'd CSV file")
    except zlib.error as exc:
        raise ContractError(f"{file}: cannot be decompressed: {exc}", file=file,
                            expected="a gzip'd CSV file") from exc
    return out


def _guess_encoding(plain: Path, *, options: CsvOptions) -> str:
    """The encoding to read the header with (the line pass decides for the whole file)."""
    if options.encoding != "auto":
        return options.encoding
    with open(plain, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # not merely a character cut at the end of the read
            return "latin-1"
    return "utf-8"


def _line_pass(
    con: duckdb.DuckDBPyConnection, plain: Path, *, file: str, options: CsvOptions, warnings: list[str],
    ncols: int,
) -> tuple[str, pl.DataFrame]:
    """One cheap pass over the physical lines: the encoding (UTF-8, else Latin-1), which lines are blank,
    and the text of the few lines whose field count DuckDB cannot be trusted with.

    DuckDB's reader accepts a row with extra empty fields at its end (`1,2,3,,` for three columns) as a
    good row: the lines ending with the delimiter that have too many delimiters (or quotes, which only
    a real CSV parser can count through) come back as `suspect` so their fields are counted exactly.
    """
    encoding = "latin-1" if options.encoding == "latin-1" else "utf-8"
    query = (
        "SELECT l IS NULL AS blank, CASE WHEN suffix(l, $delim) AND ((length($quote) > 0 AND contains(l, $quote)) "
        "OR length(l) - length(replace(l, $delim, '')) + 1 > $ncols) THEN l END AS suspect "
        "FROM read_csv($path, columns = $columns, header = false, auto_detect = false, delim = $line_delim, "
        "quote = '', escape = '', encoding = $encoding, strict_mode = false, null_padding = false, "
        "max_line_size = $max_line)"
    )
    params = {"path": str(plain), "columns": {"l": "VARCHAR"}, "line_delim": _LINE_DELIM, "encoding": encoding,
              "max_line": _MAX_LINE_BYTES, "delim": options.delimiter, "quote": options.quote, "ncols": ncols}
    try:
        info = con.sql(query, params=params).pl()
    except duckdb.Error as exc:
        text = str(exc)
        if encoding == "utf-8" and ("utf-8" in text.lower() or "unicode" in text.lower()):
            where = re.search(r"Line: (\d+)", text)
            at = f", first at line {where.group(1)}" if where else ""
            if options.encoding == "utf-8":
                raise ContractError(f"{file}: the file is not valid UTF-8{at}", file=file,
                                    row=int(where.group(1)) if where else None,
                                    expected="UTF-8 text (or encoding = \"latin-1\" in the mapping)") from exc
            encoding = "latin-1"
            params["encoding"] = encoding
            warnings.append(f"{file}: read as Latin-1 (the file is not valid UTF-8{at})")
            try:
                info = con.sql(query, params=params).pl()
            except duckdb.Error as exc2:
                raise _unreadable(file, exc2) from exc2
        else:
            raise _unreadable(file, exc) from exc
    return encoding, info


def _unreadable(file: str, exc: Exception) -> ContractError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return ContractError(f"{file}: cannot be read as CSV: {first}", file=file, expected="a CSV file")


def _header(plain: Path, *, file: str, options: CsvOptions, encoding: str) -> tuple[list[str], int]:
    """The column names, and how many physical lines the header takes (0 without a header)."""
    with open(plain, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
    return _header_of(head, file=file, options=options, encoding=encoding)


def _header_of(head: bytes, *, file: str, options: CsvOptions, encoding: str) -> tuple[list[str], int]:
    text = head.decode("utf-8-sig" if encoding == "utf-8" else "latin-1", errors="ignore")
    lines = list(io.StringIO(text, newline=""))[options.skip:]
    if not options.header:
        return list(options.names), 0
    if not lines:
        raise ContractError(f"{file}: empty file, no header", file=file, row=options.skip + 1,
                            expected="a header line naming the columns")
    reader = csv.reader(iter(lines), **_dialect(options))
    try:
        names = next(reader)
    except (csv.Error, StopIteration) as exc:
        raise ContractError(f"{file}: the header cannot be read: {exc}", file=file, row=options.skip + 1,
                            expected="a header line naming the columns") from exc
    if not names or all(not n.strip() for n in names):
        raise ContractError(f"{file}: empty file, no header (line {options.skip + 1} is blank)", file=file,
                            row=options.skip + 1, expected="a header line naming the columns")
    if len(head) >= _HEAD_BYTES and reader.line_num >= len(lines):
        raise ContractError(f"{file}: the header does not end within its first {_HEAD_BYTES >> 20} MiB", file=file,
                            row=options.skip + 1, expected="a header line naming the columns")
    columns = [n.strip() or f"column{i}" for i, n in enumerate(names)]
    _check_names(columns, file=file, row=options.skip + 1)
    return columns, reader.line_num


_RESERVED = ("_line", "_row")


def _check_names(columns: Sequence[str], *, file: str, row: int | None = 1) -> None:
    """Column names must be unique, and not the names extraction uses for where a row sits."""
    seen: set[str] = set()
    repeated = sorted({c for c in columns if c in seen or seen.add(c)})
    if repeated:
        raise ContractError(f"{file}: the header repeats column names: {', '.join(repeated)}", file=file,
                            column=repeated[0], row=row, expected="each column named once")
    reserved = [c for c in columns if c in _RESERVED]
    if reserved:
        raise ContractError(f"{file}: column names {', '.join(reserved)} are reserved for the row's position",
                            file=file, column=reserved[0], row=row,
                            expected=f"no column named {' or '.join(_RESERVED)}")


def read_columns(
    path: str | Path, *, file: str | None = None, fmt: FileFormat | Literal["auto"] = "auto",
    options: CsvOptions | None = None,
) -> tuple[str, ...]:
    """A file's column names without reading its rows (the header of a CSV, the schema of a Parquet)."""
    path = Path(path)
    file = file or path.name
    options = options or CsvOptions()
    if fmt == "auto":
        fmt = _format_of(path)
    if fmt == "parquet":
        try:
            return tuple(pl.read_parquet_schema(path))
        except Exception as exc:  # polars raises several kinds for a file that is not Parquet
            raise ContractError(f"{file}: cannot be read as Parquet: {str(exc).splitlines()[0]}", file=file,
                                expected="a Parquet file") from exc
    if fmt == "geojson":
        return _read_geojson(path, file=file).columns
    if not options.header:
        return tuple(options.names)
    with open(path, "rb") as fh:
        gzipped = fh.read(2) == _GZIP_MAGIC
    try:
        if gzipped:
            with gzip.open(path, "rb") as fh:
                head = fh.read(_HEAD_BYTES)
        else:
            with open(path, "rb") as fh:
                head = fh.read(_HEAD_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise ContractError(f"{file}: cannot be decompressed: {exc}", file=file, expected="a gzip'd CSV file") from exc
    if not head:
        raise ContractError(f"{file}: empty file, no header", file=file, row=1,
                            expected="a header line naming the columns")
    encoding = options.encoding if options.encoding != "auto" else "utf-8"
    if encoding == "utf-8":
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if exc.start < len(head) - 4:  # not merely a character cut at the end of the read
                encoding = "latin-1"
    return tuple(_header_of(head, file=file, options=options, encoding=encoding)[0])


def _dialect(options: CsvOptions) -> dict:
    if not options.quote:
        return {"delimiter": options.delimiter, "quoting": csv.QUOTE_NONE, "strict": True}
    escape = options.escape if options.escape is not None else options.quote
    if escape == options.quote:
        return {"delimiter": options.delimiter, "quotechar": options.quote, "doublequote": True,
                "strict": True}
    return {"delimiter": options.delimiter, "quotechar": options.quote, "doublequote": False,
            "escapechar": escape or None, "strict": True}


def _duckdb_records(
    con: duckdb.DuckDBPyConnection, plain: Path, *, file: str, options: CsvOptions, encoding: str,
    columns: Sequence[str], header_lines: int, info: pl.DataFrame,
) -> tuple[pl.DataFrame, pl.DataFrame, int, pl.Series] | None:
    """The values (text) and the rejected lines by DuckDB, with physical lines: (rows, malformed rows,
    rows read, blank lines). None if lines cannot be matched to records exactly: the exact path then."""
    escape = options.escape if options.escape is not None else options.quote
    query = (
        "SELECT * FROM read_csv($path, columns = $columns, header = $header, skip = $skip, "
        "auto_detect = false, delim = $delim, quote = $quote, escape = $escape, encoding = $encoding, "
        "store_rejects = true, strict_mode = true, null_padding = false, nullstr = $nulls, "
        "max_line_size = $max_line)"
    )
    params = {
        "path": str(plain), "columns": {c: "VARCHAR" for c in columns}, "header": header_lines == 1,
        "skip": options.skip, "delim": options.delimiter, "quote": options.quote, "escape": escape,
        "encoding": encoding, "nulls": list(options.nulls), "max_line": _MAX_LINE_BYTES,
    }
    try:
        frame = con.sql(query, params=params).pl()
        errors = con.sql(
            "SELECT line, min(error_type)::VARCHAR AS error_type, first(csv_line) AS csv_line, "
            "first(error_message) AS error_message FROM reject_errors GROUP BY line ORDER BY line"
        ).pl()
    except duckdb.Error:
        return None
    first_data = options.skip + header_lines + 1
    blank = info.get_column("blank")
    data_lines = (blank.slice(first_data - 1).not_().arg_true() + first_data).cast(pl.Int64)
    reject_lines = errors.get_column("line").cast(pl.Int64)
    if data_lines.len() == frame.height + errors.height and reject_lines.is_in(data_lines.implode()).all():
        # one record per non-blank line: DuckDB's line numbers are physical lines
        good_lines = data_lines.filter(~data_lines.is_in(reject_lines.implode())) if errors.height else data_lines
        rows_read = data_lines.len()
        blanks = (blank.slice(first_data - 1).arg_true() + first_data).cast(pl.Int64)
        suspects = info.select((pl.int_range(pl.len(), dtype=pl.Int64) + 1).alias("line"), pl.col("suspect")) \
            .filter(pl.col("suspect").is_not_null()).rename({"suspect": "text"})
    else:
        matched = _lines_by_quotes(con, plain, options=options, encoding=encoding, first_data=first_data,
                                   frame=frame, reject_lines=reject_lines, info=info)
        if matched is None:
            return None
        good_lines, physical, rows_read, blanks, suspects = matched
        errors = errors.with_columns(physical.alias("line"))
    malformed = _describe_duckdb_rejects(errors, file=file, options=options, ncols=len(columns))
    frame = frame.with_columns(_chunked_like(good_lines.alias("_line"), frame))
    frame, truncated = _drop_truncated(frame, suspects, file=file, options=options, ncols=len(columns))
    if truncated.height:
        malformed = pl.concat([malformed, truncated]).sort("line")
    frame = frame.with_columns(_chunked_like(pl.int_range(frame.height, dtype=pl.Int64, eager=True).alias("_row"),
                                             frame))
    return frame, malformed, rows_read, blanks


def _chunked_like(series: pl.Series, frame: pl.DataFrame) -> pl.Series:
    """`series` cut into the chunks of `frame`'s columns. DuckDB hands a large result over in many chunks; a
    column of one chunk beside them makes Polars copy the whole frame into single chunks at its next select
    (800 MB more for a 4.8M-row file)."""
    if not frame.width:
        return series
    lengths = frame.to_series(0).chunk_lengths()
    if len(lengths) <= 1:
        return series
    offsets = itertools.accumulate(lengths, initial=0)
    return pl.concat([series.slice(o, n) for o, n in zip(offsets, lengths)], rechunk=False)


def _drop_truncated(
    frame: pl.DataFrame, suspects: pl.DataFrame, *, file: str, options: CsvOptions, ncols: int,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Good rows whose record ends with the delimiter are counted exactly: DuckDB drops empty fields at the
    end of a row, so `1,2,3,,` would pass as three columns. Those are malformed rows, not good ones."""
    candidates = suspects.filter(pl.col("line").is_in(frame.get_column("_line").implode()))
    bad = []
    for line, text in candidates.iter_rows():
        n = _count_fields(text, options=options)
        if n != ncols:
            problem = f"{n} field{'s' if n != 1 else ''} where the header has {ncols}"
            bad.append((line, text, _malformed_message(file, line, problem, options, ncols)))
    truncated = pl.DataFrame(bad, schema={"line": pl.Int64, "raw": pl.String, "message": pl.String}, orient="row")
    if truncated.height:
        frame = frame.filter(~pl.col("_line").is_in(truncated.get_column("line").implode()))
    return frame, truncated


def _count_fields(text: str, *, options: CsvOptions) -> int:
    """The number of fields of one record (its text may span lines), as RFC 4180 counts them."""
    try:
        return len(next(csv.reader(io.StringIO(text, newline=""), **{**_dialect(options), "strict": False})))
    except (csv.Error, StopIteration):
        return -1


def _lines_by_quotes(
    con: duckdb.DuckDBPyConnection, plain: Path, *, options: CsvOptions, encoding: str, first_data: int,
    frame: pl.DataFrame, reject_lines: pl.Series, info: pl.DataFrame,
) -> tuple[pl.Series, pl.Series, int, pl.Series, pl.DataFrame] | None:
    """Physical lines when quoted values hold line breaks, still without a loop per row.

    A line starts a record when the quotes before it are balanced. DuckDB numbers a record (and a blank
    line) one more than the one before, so its reject numbers index these records. The match is checked
    three ways (records counted, rejects on records, line breaks inside good values); any doubt (a quote
    left open, a quote inside an unquoted value) returns None and the exact reader takes over.
    """
    if not options.quote:
        return None
    lines = con.sql(
        "SELECT l FROM read_csv($path, columns = $columns, header = false, auto_detect = false, delim = $delim, "
        "quote = '', escape = '', encoding = $encoding, strict_mode = false, null_padding = false, "
        "max_line_size = $max_line)",
        params={"path": str(plain), "columns": {"l": "VARCHAR"}, "delim": _LINE_DELIM, "encoding": encoding,
                "max_line": _MAX_LINE_BYTES},
    ).pl().get_column("l").slice(first_data - 1)
    if lines.len() != info.height - (first_data - 1):
        return None
    escape = options.escape if options.escape is not None else options.quote
    text = lines
    if escape != options.quote:
        text = text.str.replace_all(escape + escape, "", literal=True).str.replace_all(
            escape + options.quote, "", literal=True)
    quotes = text.str.count_matches(options.quote, literal=True).fill_null(0).cast(pl.Int64)
    before = quotes.cum_sum() - quotes
    if lines.len() and int(quotes.sum()) % 2:
        return None  # a quote is never closed: let the exact reader recover the lines after it
    starts = (before % 2 == 0).arg_true()  # positions (in the data region) where an item starts
    n = lines.len()
    ends = pl.concat([starts.slice(1), pl.Series([n], dtype=starts.dtype)])
    spans = (ends - starts).cast(pl.Int64)
    blank = lines.is_null().gather(starts)
    items = pl.DataFrame({"line": (starts.cast(pl.Int64) + first_data), "span": spans, "blank": blank})
    items = items.with_row_index("item")
    records = items.filter(~pl.col("blank"))
    rejected_items = (reject_lines - first_data).cast(pl.Int64)
    if records.height != frame.height + reject_lines.len():
        return None
    if not rejected_items.is_in(records.get_column("item").cast(pl.Int64).implode()).all():
        return None
    good = records.filter(~pl.col("item").cast(pl.Int64).is_in(rejected_items.implode()))
    breaks = frame.select(pl.sum_horizontal(
        [pl.col(c).str.count_matches("\n", literal=True).fill_null(0) for c in frame.columns]).sum()).item()
    if int(good.get_column("span").sum()) - good.height != int(breaks or 0):
        return None
    physical = items.get_column("line").gather(rejected_items)
    blanks = items.filter(pl.col("blank")).get_column("line")
    # records whose last line ends with the delimiter: their whole text, for an exact field count
    suspect = info.get_column("suspect").slice(first_data - 1)
    last = (good.get_column("line") + good.get_column("span") - 1 - first_data).cast(pl.Int64)
    ends = good.filter(suspect.gather(last).is_not_null())
    texts = ["\n".join(lines.slice(start - first_data, span).fill_null("").to_list())
             for start, span in ends.select("line", "span").iter_rows()]
    suspects = pl.DataFrame({"line": ends.get_column("line"), "text": pl.Series(texts, dtype=pl.String)})
    return good.get_column("line"), physical, records.height, blanks, suspects


_DUCKDB_ERRORS = {
    "UNQUOTED VALUE": "a quoted value is not closed properly",
    "LINE SIZE OVER MAXIMUM": f"the line is longer than {_MAX_LINE_BYTES // (1 << 20)} MiB",
    "INVALID ENCODING": "the line holds bytes that are not valid in the file's encoding",
}


def _describe_duckdb_rejects(errors: pl.DataFrame, *, file: str, options: CsvOptions, ncols: int) -> pl.DataFrame:
    rows = []
    for line, kind, raw, detail in errors.iter_rows():
        raw = (raw or "").lstrip("\r\n").rstrip("\r\n")
        if kind in ("MISSING COLUMNS", "TOO MANY COLUMNS"):
            problem = _field_count_problem(raw, options=options, ncols=ncols)
        else:
            problem = _DUCKDB_ERRORS.get(kind, (detail or kind or "unreadable").splitlines()[0])
        rows.append((int(line), raw, _malformed_message(file, int(line), problem, options, ncols)))
    return pl.DataFrame(rows, schema={"line": pl.Int64, "raw": pl.String, "message": pl.String}, orient="row")


def _field_count_problem(raw: str, *, options: CsvOptions, ncols: int) -> str:
    try:
        n = len(next(csv.reader([raw], **{**_dialect(options), "strict": False})))
    except (csv.Error, StopIteration):
        return "the row does not split into the header's columns"
    return f"{n} field{'s' if n != 1 else ''} where the header has {ncols}"


def _malformed_message(file: str, line: int, problem: str, options: CsvOptions, ncols: int) -> str:
    return (f"{file}, line {line}: {problem} (expected {ncols} fields separated by {options.delimiter!r}, "
            f"values with {options.delimiter!r}, quotes or line breaks quoted)")


def _python_records(
    plain: Path, *, file: str, options: CsvOptions, encoding: str, columns: Sequence[str], header_lines: int,
) -> tuple[pl.DataFrame, pl.DataFrame, int, pl.Series]:
    """The exact path: Python's csv module, record by record, with each record's first physical line."""
    text = plain.read_bytes().decode("utf-8-sig" if encoding == "utf-8" else "latin-1", errors="replace")
    lines = list(io.StringIO(text, newline=""))
    ncols = len(columns)
    dialect = _dialect(options)
    nulls = set(options.nulls)
    good: list[list[str]] = []
    good_lines: list[int] = []
    bad: list[tuple[int, str, str]] = []
    blanks: list[int] = []
    start = options.skip + header_lines
    while start < len(lines):
        reader = csv.reader(itertools.islice(lines, start, None), **dialect)
        consumed = 0
        try:
            for record in reader:
                first, consumed = start + consumed, reader.line_num
                if not record:
                    blanks.append(first + 1)  # a blank line: not a row
                    continue
                if len(record) != ncols:
                    raw = "".join(lines[first:start + consumed]).rstrip("\r\n")
                    problem = f"{len(record)} field{'s' if len(record) != 1 else ''} where the header has {ncols}"
                    bad.append((first + 1, raw, _malformed_message(file, first + 1, problem, options, ncols)))
                else:
                    good.append(record)
                    good_lines.append(first + 1)
            break
        except csv.Error as exc:
            first = start + consumed
            raw = lines[first].rstrip("\r\n")
            bad.append((first + 1, raw, _malformed_message(file, first + 1, f"the line cannot be split: {exc}",
                                                           options, ncols)))
            start = first + 1
    data = {
        name: pl.Series(name, [None if r[i] in nulls else r[i] for r in good], dtype=pl.String)
        for i, name in enumerate(columns)
    }
    frame = pl.DataFrame(data, schema={c: pl.String for c in columns}).with_columns(
        pl.Series("_line", good_lines, dtype=pl.Int64), pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"),
    )
    malformed = pl.DataFrame(bad, schema={"line": pl.Int64, "raw": pl.String, "message": pl.String}, orient="row")
    return frame, malformed, len(good) + len(bad), pl.Series("line", blanks, dtype=pl.Int64)


def _read_parquet(path: Path, *, file: str) -> TextTable:
    try:
        frame = pl.read_parquet(path)
    except Exception as exc:  # polars raises several kinds for a file that is not Parquet
        raise ContractError(f"{file}: cannot be read as Parquet: {str(exc).splitlines()[0]}", file=file,
                            expected="a Parquet file") from exc
    columns = tuple(frame.columns)
    _check_names(columns, file=file, row=None)
    frame = frame.with_columns(
        (pl.int_range(pl.len(), dtype=pl.Int64) + 2).alias("_line"),
        pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"),
    )
    return TextTable(frame=frame, columns=columns, rows_read=frame.height, malformed=_no_malformed(),
                     unit="line")


def _read_geojson(path: Path, *, file: str) -> TextTable:
    """One row per feature: properties as text columns (nested ones as JSON), geometry as WKT."""
    import shapely.geometry

    data = path.read_bytes()
    if not data.strip():
        raise ContractError(f"{file}: empty file, no features", file=file, expected="a GeoJSON FeatureCollection")
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContractError(f"{file}: not valid JSON: {exc}", file=file,
                            row=getattr(exc, "lineno", None), expected="a GeoJSON FeatureCollection") from exc
    if not isinstance(doc, dict) or doc.get("type") != "FeatureCollection" or not isinstance(
            doc.get("features"), list):
        raise ContractError(f"{file}: not a GeoJSON FeatureCollection", file=file,
                            expected='{"type": "FeatureCollection", "features": [...]}')
    columns: dict[str, None] = {}
    rows: list[dict[str, str | None]] = []
    lines: list[int] = []
    bad: list[tuple[int, str, str]] = []
    warnings: list[str] = []
    shadowed = False
    for number, feature in enumerate(doc["features"], start=1):
        if not isinstance(feature, dict) or feature.get("type") != "Feature" or not isinstance(
                feature.get("properties") or {}, dict):
            message = (f"{file}, feature {number}: not a GeoJSON Feature with properties "
                       '(expected {"type": "Feature", "properties": {...}, "geometry": ...})')
            bad.append((number, json.dumps(feature, ensure_ascii=False), message))
            continue
        row: dict[str, str | None] = {}
        if "id" in feature:
            row["id"] = _json_text(feature["id"])
        for key, value in (feature.get("properties") or {}).items():
            if key == "geometry":
                if not shadowed:
                    warnings.append(f"{file}: a property named geometry is ignored (the feature's geometry wins)")
                    shadowed = True
                continue
            row[str(key)] = _json_text(value)
        geometry = feature.get("geometry")
        if geometry is None:
            row["geometry"] = None
        else:
            try:
                row["geometry"] = shapely.geometry.shape(geometry).wkt
            except Exception:  # shapely raises many kinds for a malformed geometry  # noqa: BLE001
                row["geometry"] = json.dumps(geometry)  # not WKT: quarantined as bad_type
        for key in row:
            columns.setdefault(key, None)
        rows.append(row)
        lines.append(number)
    names = [c for c in columns if c != "geometry"] + ["geometry"]
    _check_names(names, file=file, row=None)
    frame = pl.DataFrame({c: [r.get(c) for r in rows] for c in names}, schema={c: pl.String for c in names})
    frame = frame.with_columns(pl.Series("_line", lines, dtype=pl.Int64),
                               pl.int_range(pl.len(), dtype=pl.Int64).alias("_row"))
    malformed = pl.DataFrame(bad, schema={"line": pl.Int64, "raw": pl.String, "message": pl.String}, orient="row")
    return TextTable(frame=frame, columns=tuple(names), rows_read=len(rows) + len(bad), malformed=malformed,
                     warnings=tuple(warnings), unit="feature")


def _json_text(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, float) else str(value)
    return json.dumps(value, ensure_ascii=False)


def _no_malformed() -> pl.DataFrame:
    return pl.DataFrame(schema={"line": pl.Int64, "raw": pl.String, "message": pl.String})


# --- quarantine rows --------------------------------------------------------------------------------------


def _malformed_rejects(malformed: pl.DataFrame, *, source: str, file: str) -> pl.DataFrame:
    if not malformed.height:
        return empty_quarantine()
    return malformed.select(
        pl.lit(source, pl.String).alias("source"), pl.lit(file, pl.String).alias("file"),
        pl.col("line").cast(pl.Int64), pl.lit("malformed_row", pl.String).alias("reason"),
        pl.lit(None, pl.String).alias("column"), pl.lit(None, pl.String).alias("value"),
        pl.col("message"), pl.col("raw"),
    )


def _with_raw(rejects: pl.DataFrame, table: TextTable, *, source: str, file: str) -> pl.DataFrame:
    """Quarantine rows from validation rejects: the input row's text fields as JSON in `raw`."""
    picked = table.frame.select(list(table.columns)).gather(rejects.get_column("_row"))
    picked = picked.with_columns([as_text(picked.get_column(c)) for c in table.columns])
    raw = picked.select(pl.struct(list(table.columns)).struct.json_encode().alias("raw")).get_column("raw") \
        if table.columns else pl.Series("raw", ["{}"] * rejects.height)
    return rejects.with_columns(raw).select(
        pl.lit(source, pl.String).alias("source"), pl.lit(file, pl.String).alias("file"),
        pl.col("line").cast(pl.Int64), pl.col("reason"), pl.col("column"), pl.col("value"), pl.col("message"),
        pl.col("raw"),
    ).cast(QUARANTINE_SCHEMA)
