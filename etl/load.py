"""Landing: the raw tables, the manifest of loaded files, duplicate keys, references and conservation.

Everything here runs as set-based SQL on the working copy's connection (handed in, never opened here), so
it holds at tens of millions of rows: extracted frames go in through Arrow, rows move to quarantine with
one INSERT ... SELECT and one DELETE each, never row by row in Python.

The rules (docs/architecture.md, "The warehouse file"):

- A file is known by its name (relative to the source folder), the source it feeds (a mapping may feed
  several sources from one file) and its sha256. Unchanged files are skipped; a changed file (same name,
  new hash) first removes every row, landed or quarantined, of its earlier version. A file whose size and
  modification time (to the nanosecond) are the ones the manifest recorded when it was loaded is not read
  again to hash it: its recorded hash is taken (as `git status` does); any write to it changes the time.
- Duplicate keys: the row of the most recently loaded file wins (within one refresh, files load in name
  order; ties by the later line, then by the later row a mapping produced from it); the superseded row
  goes to quarantine as `duplicate_key`, naming its winner.
- References are checked in LOAD_ORDER against what is landed after this load; a failing row goes to
  quarantine as `unknown_reference` (and rows that referred to it follow: the cascade is counted). A
  reference to a source that was never loaded is not checked (phased migration) and is reported as such.
- Quarantine is final for a file version: re-sending the file (a new hash) re-evaluates all of its rows.
- Conservation, per file, after every move: rows kept + rows quarantined == rows read, else CheckFailed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import duckdb
import polars as pl

from etl.contracts import LOAD_ORDER, SOURCES, Source
from etl.errors import CheckFailed, OpencemError, UsageError

#: Contract dtypes as DuckDB column types (docs/architecture.md).
DUCKDB_TYPES: dict[str, str] = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "date": "DATE",
    "timestamp": "TIMESTAMP",
    "geometry": "VARCHAR",
}

#: raw.quarantine: QUARANTINE_SCHEMA of etl/validate.py plus the load that quarantined the row.
QUARANTINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("source", "VARCHAR"),
    ("file", "VARCHAR"),
    ("line", "BIGINT"),
    ("reason", "VARCHAR"),
    ("column", "VARCHAR"),
    ("value", "VARCHAR"),
    ("message", "VARCHAR"),
    ("raw", "VARCHAR"),
    ("load_id", "BIGINT"),
)

MANIFEST_COLUMNS: tuple[tuple[str, str], ...] = (
    ("file", "VARCHAR"),
    ("source", "VARCHAR"),
    ("sha256", "VARCHAR"),
    ("size_bytes", "BIGINT"),
    ("rows_read", "BIGINT"),
    ("rows_kept", "BIGINT"),
    ("rows_quarantined", "BIGINT"),
    ("load_id", "BIGINT"),
    ("loaded_at", "TIMESTAMP"),
    ("mtime_ns", "BIGINT"),
)

LOADS_COLUMNS: tuple[tuple[str, str], ...] = (
    ("load_id", "BIGINT"),
    ("started_at", "TIMESTAMP"),
    ("finished_at", "TIMESTAMP"),
    ("source_dir", "VARCHAR"),
    ("engine", "VARCHAR"),
    ("status", "VARCHAR"),
    ("summary", "JSON"),
)

SCHEMAS = ("raw", "staging", "marts", "meta")


class Extracted(Protocol):
    """What landing needs of `etl.extract.ExtractResult` (see docs/architecture.md)."""

    source: str
    file: str
    rows_read: int
    good: pl.DataFrame
    rejects: pl.DataFrame


def q(name: str) -> str:
    """A quoted SQL identifier. Identifiers come from the contracts, never from user input."""
    return '"' + name.replace('"', '""') + '"'


def raw_table(source: str) -> str:
    """The qualified raw table of a source (`raw."charging"`)."""
    if source not in SOURCES:
        raise OpencemError(f"unknown source {source!r}; expected one of {', '.join(LOAD_ORDER)}")
    return f"raw.{q(source)}"


def utcnow() -> datetime:
    """Now, as a naive UTC timestamp (the warehouse stores UTC without an offset)."""
    return datetime.now(UTC).replace(tzinfo=None)


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction for the block: its statements apply together or not at all.

    Row moves select rows by `rowid` and delete them in the same transaction, where row ids are stable
    (a checkpoint between the two statements could renumber them).
    """
    con.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


# -- schema ---------------------------------------------------------------------------------------------


def _columns_sql(columns: Iterable[tuple[str, str]]) -> str:
    return ", ".join(f"{q(n)} {t}" for n, t in columns)


def raw_columns(source: Source) -> tuple[tuple[str, str], ...]:
    """The columns of `raw.<source>`: the contract's, typed, then `_file`, `_line`, `_load_id`."""
    return tuple((c.name, DUCKDB_TYPES[c.dtype]) for c in source.columns) + (
        ("_file", "VARCHAR"),
        ("_line", "BIGINT"),
        ("_load_id", "BIGINT"),
    )


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the schemas and raw tables that are missing (and contract columns added since), keeping data."""
    for schema in SCHEMAS:
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    tables = {
        "raw.quarantine": QUARANTINE_COLUMNS,
        "raw.manifest": MANIFEST_COLUMNS,
        "raw.loads": LOADS_COLUMNS,
    }
    tables |= {raw_table(s): raw_columns(SOURCES[s]) for s in LOAD_ORDER}
    for table, columns in tables.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({_columns_sql(columns)})")
        for name, dtype in columns:
            con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {q(name)} {dtype}")


# -- the source folder and the manifest -----------------------------------------------------------------


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """The sha256 of a file's bytes, read in chunks (files may be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class SourceFile:
    """One extract file in the source folder, identified by its name and the hash of its bytes."""

    path: Path
    name: str
    source: str
    sha256: str
    size_bytes: int
    mtime_ns: int = 0
    """When the file was last modified, as hashed (a file that changes after that is caught before landing)."""


@dataclass(frozen=True)
class Folder:
    """What a source folder holds: extract files (in load order) and the names that match no source."""

    root: Path
    files: tuple[SourceFile, ...]
    ignored: tuple[str, ...]
    hashed: int = 0
    """Files read to hash them (the others' size and time were the manifest's: their hash is its)."""


def load_order_key(source: str, name: str) -> tuple[int, str]:
    """Files load source by source in LOAD_ORDER, and by name within a source (daily files by date)."""
    return (LOAD_ORDER.index(source), name)


def scan_folder(folder: Path, *, mapping: object | None = None, known: Mapping[str, FileStat] | None = None
                ) -> Folder:
    """The extract files of a folder with their hashes; the files no source takes are listed as ignored.

    Discovery is `etl.extract.extract_source_dir`: canonical names in the folder, plus a mapping's patterns.
    `known` (`read_file_stats` of the live manifest): a file whose size and modification time are the ones
    recorded there keeps its recorded hash instead of being read.
    """
    from etl.extract import extract_source_dir

    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"source folder {folder} does not exist or is not a folder; expected a folder of extracts")
    found = extract_source_dir(folder, mapping=mapping)
    known = known or {}
    hashes: dict[Path, tuple[str, int, int]] = {}
    files: list[SourceFile] = []
    hashed = 0
    for path, source in found:
        if path not in hashes:
            st = path.stat()
            seen = known.get(found.name(path))
            if seen is not None and (seen.size_bytes, seen.mtime_ns) == (st.st_size, st.st_mtime_ns):
                sha = seen.sha256
            else:
                sha, hashed = sha256_file(path), hashed + 1
            hashes[path] = (sha, st.st_size, st.st_mtime_ns)
        sha, size, mtime = hashes[path]
        files.append(SourceFile(path=path, name=found.name(path), source=source.name, sha256=sha, size_bytes=size,
                                mtime_ns=mtime))
    files.sort(key=lambda f: load_order_key(f.source, f.name))
    return Folder(root=folder, files=tuple(files), ignored=tuple(found.name(p) for p in found.ignored),
                  hashed=hashed)


@dataclass(frozen=True)
class ManifestDiff:
    """The folder against the manifest: which files are new, changed (same name, new hash) or unchanged."""

    new: tuple[SourceFile, ...]
    changed: tuple[SourceFile, ...]
    unchanged: tuple[SourceFile, ...]
    missing: tuple[str, ...]
    """Files in the manifest that are not in the folder (their rows stay: folders are often rotated)."""

    @property
    def to_load(self) -> tuple[SourceFile, ...]:
        """New and changed files, in load order."""
        return tuple(sorted(self.new + self.changed, key=lambda f: load_order_key(f.source, f.name)))


#: (file, source) → sha256 of every loaded file.
Manifest = dict[tuple[str, str], str]


def read_manifest(con: duckdb.DuckDBPyConnection) -> Manifest:
    """(file, source) → sha256 of every loaded file (empty for a warehouse without a manifest)."""
    exists = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'raw' AND table_name = 'manifest'"
    ).fetchone()[0]
    if not exists:
        return {}
    return {(f, s): h for f, s, h in con.execute("SELECT file, source, sha256 FROM raw.manifest").fetchall()}


@dataclass(frozen=True)
class FileStat:
    """What the manifest recorded of a loaded file: its size, modification time and hash."""

    size_bytes: int
    mtime_ns: int
    sha256: str


def read_file_stats(con: duckdb.DuckDBPyConnection) -> dict[str, FileStat]:
    """File name → its recorded size, time and hash (files loaded before times were recorded are left out)."""
    from etl.transforms.checks import table_columns

    if "mtime_ns" not in table_columns(con, "raw.manifest"):
        return {}
    rows = con.execute("SELECT file, size_bytes, mtime_ns, sha256 FROM raw.manifest "
                       "WHERE mtime_ns IS NOT NULL AND size_bytes IS NOT NULL").fetchall()
    return {f: FileStat(size_bytes=n, mtime_ns=t, sha256=h) for f, n, t, h in rows}


def diff_manifest(manifest: Manifest, files: Sequence[SourceFile]) -> ManifestDiff:
    """Sort the folder's files into new, changed and unchanged against `manifest`."""
    new = tuple(f for f in files if (f.name, f.source) not in manifest)
    changed = tuple(f for f in files if manifest.get((f.name, f.source), f.sha256) != f.sha256)
    unchanged = tuple(f for f in files if manifest.get((f.name, f.source)) == f.sha256)
    present = {(f.name, f.source) for f in files}
    missing = tuple(sorted({n for n, s in manifest if (n, s) not in present}))
    return ManifestDiff(new=new, changed=changed, unchanged=unchanged, missing=missing)


def loaded_sources(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Sources with at least one file in the manifest."""
    return {r[0] for r in con.execute("SELECT DISTINCT source FROM raw.manifest").fetchall()}


# -- loads ------------------------------------------------------------------------------------------------


def next_load_id(con: duckdb.DuckDBPyConnection) -> int:
    """One more than the highest load id recorded in this version."""
    return int(con.execute("SELECT coalesce(max(load_id), 0) + 1 FROM raw.loads").fetchone()[0])


def begin_load(con: duckdb.DuckDBPyConnection, *, load_id: int, source_dir: str, engine: str,
               started_at: datetime) -> None:
    """Record a load as running (it is only ever seen finished: a failed load's version is discarded)."""
    con.execute(
        "INSERT INTO raw.loads (load_id, started_at, source_dir, engine, status) VALUES (?, ?, ?, ?, 'running')",
        [load_id, started_at, source_dir, engine],
    )


def finish_load(con: duckdb.DuckDBPyConnection, *, load_id: int, status: str, summary: dict) -> None:
    """Record how a load ended, with its summary as JSON."""
    con.execute(
        "UPDATE raw.loads SET finished_at = ?, status = ?, summary = ? WHERE load_id = ?",
        [utcnow(), status, json.dumps(summary, default=str, sort_keys=True), load_id],
    )


# -- landing ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemovedRows:
    """Rows of an earlier version of a file that a corrected file removed."""

    file: str
    kept: int
    quarantined: int


def remove_file(con: duckdb.DuckDBPyConnection, *, source: str, file: str) -> RemovedRows:
    """Remove every row (landed or quarantined) and the manifest row of an earlier version of `file`."""
    with transaction(con):
        kept = con.execute(f"DELETE FROM {raw_table(source)} WHERE _file = ?", [file]).fetchone()[0]
        quarantined = con.execute("DELETE FROM raw.quarantine WHERE file = ? AND source = ?",
                                  [file, source]).fetchone()[0]
        con.execute("DELETE FROM raw.manifest WHERE file = ? AND source = ?", [file, source])
    return RemovedRows(file=file, kept=int(kept), quarantined=int(quarantined))


@dataclass(frozen=True)
class LandedFile:
    """One file as landed: rows read, and how many went to raw and to quarantine (before later moves)."""

    file: str
    source: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int


def _naive_utc(frame: pl.DataFrame) -> pl.DataFrame:
    """Timestamps with an offset become naive UTC (the warehouse's convention), so no session time zone applies."""
    aware = [n for n, t in frame.schema.items() if isinstance(t, pl.Datetime) and t.time_zone is not None]
    if not aware:
        return frame
    return frame.with_columns(
        pl.col(n).dt.convert_time_zone("UTC").dt.replace_time_zone(None) for n in aware
    )


def _insert_frame(con: duckdb.DuckDBPyConnection, frame: pl.DataFrame, *, table: str,
                  columns: Sequence[tuple[str, str]], fixed: dict[str, object]) -> int:
    """INSERT a Polars frame into `table` through Arrow: `fixed` columns are parameters, absent ones NULL."""
    if frame.height == 0:
        return 0
    select, params = [], []
    for name, dtype in columns:
        if name in fixed:
            select.append(f"CAST(? AS {dtype})")
            params.append(fixed[name])
        elif name in frame.columns:
            select.append(f"CAST(_incoming.{q(name)} AS {dtype})")
        else:
            select.append(f"CAST(NULL AS {dtype})")
    view = "_incoming"
    con.register(view, _naive_utc(frame).to_arrow())
    try:
        con.execute(
            f"INSERT INTO {table} ({', '.join(q(n) for n, _ in columns)}) SELECT {', '.join(select)} FROM {view}",
            params,
        )
    finally:
        con.unregister(view)
    return frame.height


def land(con: duckdb.DuckDBPyConnection, result: Extracted, *, load_id: int, sha256: str, size_bytes: int,
         loaded_at: datetime | None = None, mtime_ns: int | None = None) -> LandedFile:
    """Land one extracted file: good rows into raw.<source>, rejects into raw.quarantine, a manifest row.

    The caller removes an earlier version of the same file first (`remove_file`). `_file` and `file` are
    set from `result.file`, the name the manifest knows the file by.
    """
    source = SOURCES.get(result.source)
    if source is None:
        raise OpencemError(f"file {result.file}: unknown source {result.source!r}")
    good, rejects = result.good, result.rejects
    if result.rows_read != good.height + rejects.height:
        raise CheckFailed(
            f"file {result.file}: extraction does not conserve rows: read {result.rows_read}, "
            f"good {good.height} + rejected {rejects.height}; expected rows read = good + rejected"
        )
    if good.height and "_line" not in good.columns:
        raise OpencemError(f"file {result.file}: extracted rows have no _line column; expected _file and _line")
    if rejects.height and "line" not in rejects.columns:
        raise OpencemError(f"file {result.file}: rejected rows have no line column; expected QUARANTINE_SCHEMA")
    kept = _insert_frame(con, good, table=raw_table(source.name), columns=raw_columns(source),
                         fixed={"_file": result.file, "_load_id": load_id})
    quarantined = _insert_frame(con, rejects, table="raw.quarantine", columns=QUARANTINE_COLUMNS,
                                fixed={"source": source.name, "file": result.file, "load_id": load_id})
    con.execute("DELETE FROM raw.manifest WHERE file = ? AND source = ?", [result.file, source.name])
    con.execute(
        f"INSERT INTO raw.manifest ({', '.join(q(n) for n, _ in MANIFEST_COLUMNS)}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [result.file, source.name, sha256, size_bytes, result.rows_read, kept, quarantined, load_id,
         loaded_at or utcnow(), mtime_ns],
    )
    return LandedFile(file=result.file, source=source.name, rows_read=result.rows_read, rows_kept=kept,
                      rows_quarantined=quarantined)


# -- moving rows from raw to quarantine ------------------------------------------------------------------


def _raw_json(source: Source, alias: str) -> str:
    """SQL for a row's contract values as a JSON object of text (the quarantine's `raw`)."""
    pairs = ", ".join(f"'{c.name}', CAST({alias}.{q(c.name)} AS VARCHAR)" for c in source.columns)
    return f"json_object({pairs})"


def _move_to_quarantine(con: duckdb.DuckDBPyConnection, source: Source, *, moved: str, reason: str,
                        column_sql: str, value_sql: str, message_sql: str, load_id: int,
                        params: Sequence[object] = ()) -> int:
    """Quarantine the rows of temp table `moved` (`_rowid`, `_file`, `_line`, the contract columns and
    whatever `*_sql` refer to), then delete them from raw.<source>. Returns the number moved.

    Call inside the `transaction(con)` that filled `moved`: rows are matched by `rowid`.
    """
    n = con.execute(f"SELECT count(*) FROM {moved}").fetchone()[0]
    if not n:
        return 0
    con.execute(
        f"INSERT INTO raw.quarantine ({', '.join(q(c) for c, _ in QUARANTINE_COLUMNS)}) "
        f"SELECT ?, m._file, m._line, ?, {column_sql}, {value_sql}, {message_sql}, {_raw_json(source, 'm')}, ? "
        f"FROM {moved} AS m",
        [source.name, reason, *params, load_id],
    )
    deleted = con.execute(
        f"DELETE FROM {raw_table(source.name)} AS t USING {moved} AS m WHERE t.rowid = m._rowid"
    ).fetchone()[0]
    if deleted != n:
        raise CheckFailed(f"raw.{source.name}: quarantined {n} rows but deleted {deleted}; expected the same")
    return int(n)


def resolve_duplicates(con: duckdb.DuckDBPyConnection, source: str, *, load_id: int) -> int:
    """Apply the duplicate-key rule to the keys that rows of this load touch; return the rows superseded.

    The winner is the row of the most recently loaded file (highest load id, then the later file name in
    load order, then the later line, then the later row produced from it); every other row with the key
    goes to quarantine as `duplicate_key`. Only keys that repeat reach the window. When this load holds a
    quarter of the table or more, the repeated keys come from one aggregate of every key (6.6 s for 33M charging
    rows, where the way below took 17.6 s); otherwise this load's keys are found first and only they are
    counted (3.1 s for one day of 4.8M rows among 33M, where one aggregate takes 6.5 s).
    """
    src = SOURCES[source]
    keys = ", ".join(q(k) for k in src.key)
    key_desc = ", ".join(src.key)
    key_value = "concat_ws('|', " + ", ".join(f"CAST(m.{q(k)} AS VARCHAR)" for k in src.key) + ")"
    message = (
        "printf('file %s, row %d: key %s = %s is also in file %s, row %d, which was loaded later and wins; "
        "expected one row per %s', m._file, m._line, ?, "
        f"{key_value}, m._winner_file, m._winner_line, ?)"
    )
    ours, total = con.execute(f"SELECT count(*) FILTER (WHERE _load_id = ?), count(*) FROM {raw_table(source)}",
                              [load_id]).fetchone()
    if ours * 4 >= total:  # most rows are new: one aggregate of every key
        repeated = (f"repeated AS (SELECT {keys} FROM {raw_table(source)} GROUP BY {keys} "
                    "HAVING count(*) > 1 AND bool_or(_load_id = ?))")
    else:  # a day among many: this load's keys first, then only those are counted
        repeated = (f"touched AS (SELECT DISTINCT {keys} FROM {raw_table(source)} WHERE _load_id = ?), "
                    f"repeated AS (SELECT {keys} FROM {raw_table(source)} AS t SEMI JOIN touched USING ({keys}) "
                    f"GROUP BY {keys} HAVING count(*) > 1)")
    with transaction(con):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _superseded AS
            WITH {repeated},
            candidates AS (
                SELECT t.*, t.rowid AS _rowid FROM {raw_table(source)} AS t SEMI JOIN repeated USING ({keys})
            ),
            ranked AS (
                SELECT *, row_number() OVER w AS _rank, first_value(_file) OVER w AS _winner_file,
                       first_value(_line) OVER w AS _winner_line
                FROM candidates
                WINDOW w AS (PARTITION BY {keys} ORDER BY _load_id DESC, _file DESC, _line DESC, _rowid DESC)
            )
            SELECT * FROM ranked WHERE _rank > 1
            """,
            [load_id],
        )
        n = _move_to_quarantine(
            con, src, moved="_superseded", reason="duplicate_key", column_sql="CAST(NULL AS VARCHAR)",
            value_sql=key_value, message_sql=message, load_id=load_id, params=[key_desc, key_desc],
        )
        con.execute("DROP TABLE _superseded")
    return n


@dataclass(frozen=True)
class ReferenceOutcome:
    """What the reference checks did: rows moved per `source.column`, and references not checked."""

    moved: dict[str, int] = field(default_factory=dict)
    not_checked: dict[str, str] = field(default_factory=dict)
    """`source.column` → why (its target source was never loaded)."""

    @property
    def total(self) -> int:
        return sum(self.moved.values())


def check_references(con: duckdb.DuckDBPyConnection, *, load_id: int, shrunk: set[str],
                     first_loaded: set[str]) -> ReferenceOutcome:
    """Quarantine rows whose references name keys that are not landed, source by source in LOAD_ORDER.

    Only this load's rows are checked, unless a target lost rows (`shrunk`) or was loaded for the first
    time (`first_loaded`): then every row of the referring source is. Rows moved here make their own
    source shrink, so the sources after it are checked in full (the cascade).
    """
    loaded = loaded_sources(con)
    shrunk = set(shrunk)
    moved: dict[str, int] = {}
    not_checked: dict[str, str] = {}
    for name in LOAD_ORDER:
        src = SOURCES[name]
        if name not in loaded:
            continue
        for col in src.columns:
            if not col.references:
                continue
            targets = [tuple(r.split(".", 1)) for r in col.references]
            present = [(t, c) for t, c in targets if t in loaded]
            label = f"{name}.{col.name}"
            if not present:
                not_checked[label] = "not loaded: " + ", ".join(r for r in col.references)
                continue
            while True:
                full = any(t in shrunk or t in first_loaded for t, _ in present)
                n = _quarantine_orphans(con, src, col.name, present, load_id=load_id, full=full)
                if n:
                    moved[label] = moved.get(label, 0) + n
                    shrunk.add(name)
                if not (n and any(t == name for t, _ in present)):
                    break  # a self-reference (zones.parent_zone_id) repeats until nothing more moves
    return ReferenceOutcome(moved=moved, not_checked=not_checked)


def _quarantine_orphans(con: duckdb.DuckDBPyConnection, src: Source, column: str,
                        targets: Sequence[tuple[str, str]], *, load_id: int, full: bool) -> int:
    absent = " AND ".join(
        f"NOT EXISTS (SELECT 1 FROM {raw_table(t)} AS r WHERE r.{q(c)} = s.{q(column)})" for t, c in targets
    )
    scope = "" if full else "AND s._load_id = ?"
    wanted = " or ".join(f"{t}.{c}" for t, c in targets)
    message = (
        "printf('file %s, row %d, column %s: %s is not in %s; expected a value present in %s', "
        f"m._file, m._line, ?, CAST(m.{q(column)} AS VARCHAR), ?, ?)"
    )
    with transaction(con):
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _orphans AS SELECT s.*, s.rowid AS _rowid FROM {raw_table(src.name)} AS s "
            f"WHERE s.{q(column)} IS NOT NULL {scope} AND {absent}",
            [] if full else [load_id],
        )
        n = _move_to_quarantine(
            con, src, moved="_orphans", reason="unknown_reference", column_sql="CAST(? AS VARCHAR)",
            value_sql=f"CAST(m.{q(column)} AS VARCHAR)", message_sql=message, load_id=load_id,
            params=[column, column, wanted, wanted],
        )
        con.execute("DROP TABLE _orphans")
    return n


# -- conservation and counts -----------------------------------------------------------------------------


@dataclass(frozen=True)
class FileCounts:
    """One manifest row after every move."""

    file: str
    source: str
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    load_id: int


def reconcile(con: duckdb.DuckDBPyConnection) -> list[FileCounts]:
    """Recount every file's kept and quarantined rows into the manifest and check conservation.

    Rows read = rows kept + rows quarantined, for every file; a row from a file the manifest does not
    know is a violation too. Any violation is a bug, not bad data: CheckFailed names the files.
    """
    kept = " UNION ALL ".join(
        f"SELECT _file AS file, '{s}' AS source, count(*) AS kept, 0 AS quarantined FROM {raw_table(s)} "
        "GROUP BY _file"
        for s in LOAD_ORDER
    )
    with transaction(con):
        con.execute(
            f"""
            CREATE OR REPLACE TEMP TABLE _counts AS
            SELECT file, source, sum(kept)::BIGINT AS kept, sum(quarantined)::BIGINT AS quarantined FROM (
                {kept}
                UNION ALL SELECT file, source, 0, count(*) FROM raw.quarantine GROUP BY file, source
            ) GROUP BY file, source
            """
        )
        con.execute("UPDATE raw.manifest SET rows_kept = 0, rows_quarantined = 0")
        con.execute(
            "UPDATE raw.manifest SET rows_kept = c.kept, rows_quarantined = c.quarantined "
            "FROM _counts AS c WHERE raw.manifest.file = c.file AND raw.manifest.source = c.source"
        )
        strays = con.execute(
            "SELECT c.file, c.source, c.kept, c.quarantined FROM _counts AS c "
            "ANTI JOIN raw.manifest AS m USING (file, source) ORDER BY c.file"
        ).fetchall()
        con.execute("DROP TABLE _counts")
    rows = con.execute(
        "SELECT file, source, rows_read, rows_kept, rows_quarantined, load_id FROM raw.manifest ORDER BY file, source"
    ).fetchall()
    counts = [FileCounts(*r) for r in rows]
    problems = [
        f"file {c.file} ({c.source}): read {c.rows_read}, kept {c.rows_kept} + quarantined {c.rows_quarantined}"
        for c in counts
        if c.rows_kept + c.rows_quarantined != c.rows_read
    ]
    problems += [f"file {f} ({src}): {k} rows kept and {qn} quarantined but the manifest does not know it"
                 for f, src, k, qn in strays]
    if problems:
        raise CheckFailed(
            "conservation failed (expected rows read = rows kept + rows quarantined, per file): "
            + "; ".join(problems[:20]) + (f"; and {len(problems) - 20} more" if len(problems) > 20 else "")
        )
    return counts


def quarantine_by_reason(con: duckdb.DuckDBPyConnection, *, load_id: int | None = None
                         ) -> dict[str, dict[str, int]]:
    """Quarantined rows by source and reason (`reason` or `reason:column`), of one load or of all."""
    where, params = ("WHERE load_id = ?", [load_id]) if load_id is not None else ("", [])
    rows = con.execute(
        "SELECT source, reason || coalesce(':' || \"column\", '') AS why, count(*) FROM raw.quarantine "
        f"{where} GROUP BY ALL ORDER BY 1, 2",
        params,
    ).fetchall()
    out: dict[str, dict[str, int]] = {}
    for source, why, n in rows:
        out.setdefault(source, {})[why] = int(n)
    return out


@dataclass(frozen=True)
class RejectRate:
    """The share of a source's rows read in one load that ended in quarantine."""

    source: str
    rows_read: int
    rows_quarantined: int
    limit: float

    @property
    def rate(self) -> float:
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0

    @property
    def ok(self) -> bool:
        return self.rate <= self.limit


def reject_rates(con: duckdb.DuckDBPyConnection, *, load_id: int, limit: float) -> list[RejectRate]:
    """Per source, the quarantined share of the rows read from this load's files (after every move)."""
    rows = con.execute(
        "SELECT source, sum(rows_read)::BIGINT, sum(rows_quarantined)::BIGINT FROM raw.manifest "
        "WHERE load_id = ? GROUP BY source",
        [load_id],
    ).fetchall()
    rates = [RejectRate(source=s, rows_read=r, rows_quarantined=qn, limit=limit) for s, r, qn in rows]
    return sorted(rates, key=lambda r: LOAD_ORDER.index(r.source))


def table_rows(con: duckdb.DuckDBPyConnection, *, schemas: Sequence[str] = SCHEMAS) -> dict[str, int]:
    """Rows per table (`schema.table`) in the given schemas of the connected database."""
    names = con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database() "
        "AND NOT temporary ORDER BY 1, 2"
    ).fetchall()
    out: dict[str, int] = {}
    for schema, table in names:
        if schema in schemas:
            out[f"{schema}.{table}"] = int(
                con.execute(f"SELECT count(*) FROM {q(schema)}.{q(table)}").fetchone()[0]
            )
    return out
