"""The refresh: extract → validate → landing → staging → marts → checks → publish, as ordered steps.

Each step is a plain function over the working copy's connection and logs what it read, kept, rejected
and wrote. `refresh` orders them under the warehouse lock; nothing is visible to readers until the last
step switches CURRENT, so a refresh that fails or is killed leaves the last good version serving.

Outcomes (the CLI maps them to exit codes): a RefreshResult that is published or has nothing new (0) or is
rejected because checks failed (1); UsageError / ContractError / MappingError for input that cannot be
used (2); LockHeld when another refresh runs (3).
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import duckdb

from etl.config import Settings
from etl.contracts import LOAD_ORDER
from etl.errors import CheckFailed, UsageError
from etl.load import (
    FileStat,
    Folder,
    Manifest,
    ManifestDiff,
    ReferenceOutcome,
    SourceFile,
    begin_load,
    check_references,
    diff_manifest,
    ensure_schema,
    finish_load,
    land,
    loaded_sources,
    next_load_id,
    quarantine_by_reason,
    read_file_stats,
    read_manifest,
    reconcile,
    reject_rates,
    remove_file,
    resolve_duplicates,
    scan_folder,
    table_rows,
    utcnow,
)
from etl.publish import Warehouse, write_atomic

Log = Callable[[str], None]

#: Test hook: a comma-separated list of step names at which a refresh stops and waits to be killed.
PAUSE_ENV = "OPENCEM_TEST_PAUSE_AT"
#: The points `PAUSE_ENV` can name, in the order a refresh reaches them.
PAUSE_POINTS = ("locked", "copied", "landed", "built", "closed", "renamed", "current_written", "switched")
#: The outcome of the last refresh that held the lock, beside CURRENT (status reads it).
LAST_REFRESH = "last_refresh.json"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _pause_hook(log: Log) -> Callable[[str], None]:
    """The step hook: stops the process at the steps named in OPENCEM_TEST_PAUSE_AT (for SIGKILL tests)."""
    wanted = {s.strip() for s in os.environ.get(PAUSE_ENV, "").split(",") if s.strip()}

    def reached(step: str) -> None:
        if step in wanted:
            log(f"paused at step {step} (pid {os.getpid()}): {PAUSE_ENV} is set; waiting to be killed")
            while True:
                time.sleep(3600)

    return reached


# -- results ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepLog:
    """What one step did: rows read, kept, rejected (quarantined) and written, and how long it took."""

    step: str
    seconds: float
    read: int | None = None
    kept: int | None = None
    rejected: int | None = None
    written: int | None = None
    note: str = ""

    def line(self) -> str:
        parts = [f"{k} {v:,}" for k, v in (("read", self.read), ("kept", self.kept), ("rejected", self.rejected),
                                          ("written", self.written)) if v is not None]
        text = ", ".join(parts)
        return f"{self.step}: {text}{'; ' if text and self.note else ''}{self.note} ({self.seconds:.2f}s)"


@dataclass(frozen=True)
class FileOutcome:
    """One file loaded in this refresh, after every move (duplicates, references)."""

    file: str
    source: str
    change: Literal["new", "changed"]
    rows_read: int
    rows_kept: int
    rows_quarantined: int
    quarantined_by_reason: dict[str, int]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class CheckOutcome:
    """One check of the refresh; a failed one stops the publish."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True)
class RefreshResult:
    """What a refresh did. `ok` is False only when checks failed (nothing was published)."""

    status: Literal["published", "nothing_new", "rejected"]
    source_dir: str
    engine: str
    started_at: datetime
    duration_s: float
    version: str | None
    """The version published by this refresh, or the live one if nothing was published."""
    previous_version: str | None
    load_id: int | None = None
    files: tuple[FileOutcome, ...] = ()
    unchanged_files: int = 0
    ignored_files: tuple[str, ...] = ()
    files_not_in_folder: tuple[str, ...] = ()
    quarantined_by_reason: dict[str, dict[str, int]] = field(default_factory=dict)
    """Rows quarantined by this refresh, by source and `reason[:column]` (earlier files' rows included)."""
    earlier_rows_quarantined: int = 0
    """Rows of files loaded before that this refresh moved to quarantine (superseded or orphaned)."""
    duplicates: dict[str, int] = field(default_factory=dict)
    references: dict[str, int] = field(default_factory=dict)
    references_not_checked: dict[str, str] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    checks: tuple[CheckOutcome, ...] = ()
    sources_not_loaded: tuple[str, ...] = ()
    steps: tuple[StepLog, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status != "rejected"

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_kept(self) -> int:
        return sum(f.rows_kept for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    def to_dict(self) -> dict[str, Any]:
        """The summary as one JSON-ready object (what `opencem refresh --json` prints)."""
        d = dataclasses.asdict(self)
        d.update(ok=self.ok, rows_read=self.rows_read, rows_kept=self.rows_kept,
                 rows_quarantined=self.rows_quarantined, started_at=self.started_at.isoformat() + "Z",
                 duration_s=round(self.duration_s, 3))
        return d

    def describe(self) -> str:
        """The summary for people (stderr)."""
        head = {
            "published": f"published {self.version} (previous: {self.previous_version or 'none'})",
            "nothing_new": f"nothing new to load; {self.version or 'no version'} stays live",
            "rejected": "REJECTED: checks failed, nothing published; "
                        + (f"{self.previous_version} stays live" if self.previous_version
                           else "there is still no published version"),
        }[self.status]
        out = [f"opencem refresh: {head} in {self.duration_s:.1f}s (source {self.source_dir}, engine {self.engine})"]
        out.append(f"files: {len(self.files)} loaded, {self.unchanged_files} unchanged, "
                   f"{len(self.ignored_files)} ignored" + (f" ({', '.join(self.ignored_files)})"
                                                            if self.ignored_files else ""))
        if self.files_not_in_folder:
            out.append(f"files loaded earlier and no longer in the folder (their rows stay): "
                       f"{len(self.files_not_in_folder)}")
        if self.files:
            out.append(f"rows: {self.rows_read:,} read = {self.rows_kept:,} kept + "
                       f"{self.rows_quarantined:,} quarantined")
            for f in self.files:
                why = ", ".join(f"{k} {v:,}" for k, v in f.quarantined_by_reason.items())
                out.append(f"  {f.file} ({f.change}): read {f.rows_read:,}, kept {f.rows_kept:,}, "
                           f"quarantined {f.rows_quarantined:,}" + (f" [{why}]" if why else "")
                           + "".join(f"\n    warning: {w}" for w in f.warnings))
        if self.earlier_rows_quarantined:
            out.append(f"rows of earlier files moved to quarantine: {self.earlier_rows_quarantined:,}")
        if self.quarantined_by_reason:
            out.append("quarantined by reason:")
            for source, reasons in self.quarantined_by_reason.items():
                out.append(f"  {source}: " + ", ".join(f"{k} {v:,}" for k, v in reasons.items()))
        for label, why in self.references_not_checked.items():
            out.append(f"reference {label} not checked ({why})")
        if self.sources_not_loaded:
            out.append("sources not loaded: " + ", ".join(self.sources_not_loaded))
        failed = [c for c in self.checks if not c.ok]
        if self.checks:
            out.append(f"checks: {len(self.checks) - len(failed)} passed, {len(failed)} failed")
            for c in failed:
                out.append(f"  FAILED {c.name}: {c.detail}")
        if self.tables:
            out.append("rows per table: " + ", ".join(f"{k} {v:,}" for k, v in self.tables.items()))
        return "\n".join(out)


# -- steps -----------------------------------------------------------------------------------------------


class _Steps:
    """Times each step and logs its counts as it ends."""

    def __init__(self, log: Log) -> None:
        self.log = log
        self.done: list[StepLog] = []

    @contextmanager
    def step(self, name: str) -> Iterator[dict[str, Any]]:
        counts: dict[str, Any] = {}
        t0 = time.monotonic()
        yield counts
        entry = StepLog(step=name, seconds=time.monotonic() - t0, **counts)
        self.done.append(entry)
        self.log(entry.line())


def load_mapping(path: Path | None) -> Any:
    """The operator's mapping (None for canonical files); a bad mapping raises MappingError (exit 2)."""
    if path is None:
        return None
    if not Path(path).is_file():
        raise UsageError(f"mapping file {path} does not exist; expected a TOML mapping file")
    from etl.mapping import load_mapping as _load

    return _load(Path(path))


def read_live_manifest(wh: Warehouse) -> tuple[Manifest, dict[str, FileStat]]:
    """The manifest of the live version, and its files' recorded sizes and times (`read_file_stats`), read
    only; both empty when nothing is published."""
    if wh.live_name() is None:
        return {}, {}
    con = wh.open_current()
    try:
        return read_manifest(con), read_file_stats(con)
    finally:
        con.close()


def extract_and_land(con: duckdb.DuckDBPyConnection, diff: ManifestDiff, *, load_id: int, mapping: Any,
                     steps: _Steps) -> tuple[list[tuple[SourceFile, str, tuple[str, ...]]], set[str]]:
    """Extract every new or changed file and land it (an earlier version of a file is removed first).

    Returns the files landed (with their change and warnings) and the sources that lost rows to corrections.
    """
    from etl.extract import extract_file

    changed = {(f.name, f.source) for f in diff.changed}
    shrunk: set[str] = set()
    landed: list[tuple[SourceFile, str, tuple[str, ...]]] = []
    for f in diff.to_load:
        with steps.step(f"extract {f.name}") as counts:
            if (f.name, f.source) in changed:
                removed = remove_file(con, source=f.source, file=f.name)
                if removed.kept:
                    shrunk.add(f.source)
                counts["note"] = (f"replaces its earlier version ({removed.kept:,} rows landed, "
                                  f"{removed.quarantined:,} quarantined)")
            result = extract_file(f.path, f.source, name=f.name, mapping=mapping)
            after = f.path.stat()
            if (after.st_size, after.st_mtime_ns) != (f.size_bytes, f.mtime_ns):
                raise UsageError(f"file {f.name} changed while the refresh was reading it; run the refresh "
                                 "again once the file is complete")
            out = land(con, result, load_id=load_id, sha256=f.sha256, size_bytes=f.size_bytes,
                       mtime_ns=f.mtime_ns)
            counts.update(read=out.rows_read, kept=out.rows_kept, rejected=out.rows_quarantined, written=out.rows_kept)
            if result.warnings:
                counts["note"] = "; ".join(filter(None, [counts.get("note", ""), *result.warnings]))
        landed.append((f, "changed" if (f.name, f.source) in changed else "new", tuple(result.warnings)))
    return landed, shrunk


def apply_rules(con: duckdb.DuckDBPyConnection, *, load_id: int, sources: set[str], shrunk: set[str],
                first_loaded: set[str], steps: _Steps) -> tuple[dict[str, int], ReferenceOutcome]:
    """Duplicate keys, then references, then per-file conservation (CheckFailed if it does not hold)."""
    duplicates: dict[str, int] = {}
    with steps.step("duplicate keys") as counts:
        for name in LOAD_ORDER:
            if name in sources:
                n = resolve_duplicates(con, name, load_id=load_id)
                if n:
                    duplicates[name] = n
        counts.update(rejected=sum(duplicates.values()),
                      note=", ".join(f"{k} {v:,}" for k, v in duplicates.items()))
    with steps.step("references") as counts:
        refs = check_references(con, load_id=load_id, shrunk=shrunk, first_loaded=first_loaded)
        counts.update(rejected=refs.total, note=", ".join(f"{k} {v:,}" for k, v in refs.moved.items()))
    with steps.step("conservation") as counts:
        files = reconcile(con)
        counts.update(read=sum(c.rows_read for c in files), kept=sum(c.rows_kept for c in files),
                      rejected=sum(c.rows_quarantined for c in files), note=f"{len(files)} files balance")
    return duplicates, refs


def reject_rate_checks(con: duckdb.DuckDBPyConnection, *, load_id: int, limit: float) -> list[CheckOutcome]:
    """One check per source loaded: the quarantined share of its rows read in this refresh is under the limit."""
    return [
        CheckOutcome(
            name=f"reject_rate:{r.source}", ok=r.ok,
            detail=f"{r.rows_quarantined:,} of {r.rows_read:,} rows read quarantined ({r.rate:.1%}); "
                   f"expected at most {r.limit:.0%}",
        )
        for r in reject_rates(con, load_id=load_id, limit=limit)
    ]


def _module(name: str) -> Any | None:
    """The module if it is part of this installation, else None (a phased build of opencem)."""
    return importlib.import_module(name) if importlib.util.find_spec(name) is not None else None


def build_geo(con: duckdb.DuckDBPyConnection, *, settings: Settings, steps: _Steps) -> None:
    """Cells, sites and customers into zones (`etl.geo`), before the Ibis models that read them."""
    geo = _module("etl.geo")
    with steps.step("geo") as counts:
        if geo is None:
            counts["note"] = "etl.geo is not installed: no zone assignment"
            return
        result = geo.build_geo(con, settings, reuse=True)
        parts = []
        for kind in ("sites", "cells", "customers"):
            a = getattr(result, kind, None)
            if a is not None:
                parts.append(f"{kind} {a.n_points:,} ({a.n_within:,} within, {a.n_nearest:,} nearest, "
                             f"{a.n_unassigned:,} unassigned, {a.n_no_location:,} without location)")
        kept = "placements kept (zones, sites, cells and customers unchanged); " if result.reused else ""
        counts.update(read=getattr(result, "n_zones", None), note=kept + "zones; " + "; ".join(parts))


def build_models(con: duckdb.DuckDBPyConnection, *, settings: Settings, engine: str,
                 steps: _Steps) -> list[CheckOutcome]:
    """Staging and marts (`etl.transforms.run.build`) and their checks; failed checks are returned, not raised."""
    run = _module("etl.transforms.run")
    with steps.step("staging and marts") as counts:
        if run is None:
            counts["note"] = "etl.transforms.run is not installed: staging and marts not built"
            return []
        try:
            out = run.build(con, engine=engine, settings=settings)
        except CheckFailed as exc:
            out = getattr(exc, "result", None)
            if out is None:
                return [CheckOutcome(name="build", ok=False, detail=str(exc))]
        checks = [
            CheckOutcome(
                name=c.name, ok=bool(c.passed),
                detail=f"{c.table}: {c.n_bad:,} bad row(s); expected {c.description}"
                + (f"; first: {json.dumps(c.examples[0], default=str)}" if c.examples and not c.passed else ""),
            )
            for c in out.checks
        ]
        failed = sum(not c.ok for c in checks)
        counts.update(written=sum(out.rows.values()),
                      note=f"{len(out.rows)} tables ({engine}"
                      + (f", {len(out.kept)} kept unchanged" if out.kept else "")
                      + f"); {len(checks) - failed} checks passed, "
                      f"{failed} failed" + (f"; created empty: {', '.join(out.created_inputs)}"
                                            if out.created_inputs else ""))
    return checks


def _write_last(wh: Warehouse, record: dict[str, Any]) -> None:
    write_atomic(wh.root / LAST_REFRESH, json.dumps(record, default=str, sort_keys=True, indent=1) + "\n")


# -- the refresh -----------------------------------------------------------------------------------------


def limit_memory(con: duckdb.DuckDBPyConnection, limit: str, *, spill_to: Path) -> None:
    """Bound DuckDB's memory on the working copy (it spills to `spill_to` beyond the bound)."""
    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", limit.strip(), flags=re.IGNORECASE):
        raise UsageError(f"duckdb memory limit {limit!r}: expected a size such as 3GB or 512MiB")
    spill_to.mkdir(parents=True, exist_ok=True)
    # SET takes no parameters: the size is validated above and the path's quotes are doubled.
    con.execute(f"SET memory_limit = '{limit.strip()}'")
    con.execute("SET temp_directory = '{}'".format(str(spill_to).replace("'", "''")))


def refresh(settings: Settings, *, source: Path, mapping: Path | None = None, engine: str = "duckdb",
            log: Log = _stderr) -> RefreshResult:
    """Load what is new in `source`, build, check, and publish a new version if every check passes.

    Running it again with the same files does nothing (no new version); new files are loaded alone; a
    corrected file (same name, new hash) replaces its earlier rows. Raises UsageError, ContractError or
    MappingError for input that cannot be used and LockHeld if another refresh runs: nothing is published.
    """
    started, t0 = utcnow(), time.monotonic()
    steps = _Steps(log)
    source = Path(source)
    if not source.is_dir():
        raise UsageError(f"source folder {source} does not exist or is not a folder; expected a folder of extracts")
    mapping_obj = load_mapping(mapping)
    wh = Warehouse(Path(settings.warehouse_dir), keep_versions=settings.keep_versions)
    pause = _pause_hook(log)
    with wh.lock(command=f"refresh --source {source}"):
        pause("locked")
        previous = wh.live_name()
        record: dict[str, Any] = {"started_at": started.isoformat() + "Z", "source_dir": str(source),
                                  "engine": engine, "previous_version": previous}
        try:
            result = _refresh_locked(settings, wh, source, mapping_obj, engine=engine, steps=steps, pause=pause,
                                     started=started, t0=t0, previous=previous)
        except BaseException as exc:
            if isinstance(exc, Exception):
                record.update(status="failed", error=f"{type(exc).__name__}: {exc}", live_version=previous,
                              finished_at=utcnow().isoformat() + "Z")
                _write_last(wh, record)
            raise
        record.update(status=result.status, version=result.version, live_version=wh.live_name(),
                      load_id=result.load_id, rows_read=result.rows_read, finished_at=utcnow().isoformat() + "Z",
                      failed_checks=[dataclasses.asdict(c) for c in result.checks if not c.ok])
        _write_last(wh, record)
    return result


def _refresh_locked(settings: Settings, wh: Warehouse, source: Path, mapping: Any, *, engine: str,
                    steps: _Steps, pause: Callable[[str], None], started: datetime, t0: float,
                    previous: str | None) -> RefreshResult:
    manifest, stats = read_live_manifest(wh)
    with steps.step("scan") as counts:
        folder: Folder = scan_folder(source, mapping=mapping, known=stats)
        counts.update(read=len(folder.files), note=f"{folder.hashed} hashed, "
                      f"{len(folder.files) - folder.hashed} known by size and time; {len(folder.ignored)} ignored"
                      + (f" ({', '.join(folder.ignored)})" if folder.ignored else ""))
    with steps.step("manifest") as counts:
        diff = diff_manifest(manifest, folder.files)
        counts.update(read=len(folder.files), note=f"{len(diff.new)} new, {len(diff.changed)} changed, "
                      f"{len(diff.unchanged)} unchanged, {len(diff.missing)} no longer in the folder")
    base: dict[str, Any] = {
        "source_dir": str(folder.root), "engine": engine, "started_at": started, "previous_version": previous,
        "unchanged_files": len(diff.unchanged), "ignored_files": folder.ignored,
        "files_not_in_folder": diff.missing,
    }
    if not diff.to_load:
        return RefreshResult(status="nothing_new", version=previous, duration_s=time.monotonic() - t0,
                             steps=tuple(steps.done), **base)

    with wh.working_copy() as wc:
        con = wc.con
        assert con is not None
        with steps.step("working copy") as counts:
            limit_memory(con, settings.duckdb_memory_limit, spill_to=Path(settings.warehouse_dir) / "tmp")
            ensure_schema(con)
            load_id = next_load_id(con)
            begin_load(con, load_id=load_id, source_dir=str(folder.root), engine=engine, started_at=started)
            before = loaded_sources(con)
            counts["note"] = f"{wc.path.name} from {wc.based_on or 'nothing (first version)'}, load {load_id}"
        pause("copied")

        landed, shrunk = extract_and_land(con, diff, load_id=load_id, mapping=mapping, steps=steps)
        sources = {f.source for f, _, _ in landed}
        duplicates, refs = apply_rules(con, load_id=load_id, sources=sources, shrunk=shrunk,
                                       first_loaded=sources - before, steps=steps)
        pause("landed")

        checks = reject_rate_checks(con, load_id=load_id, limit=settings.max_reject_rate)
        build_geo(con, settings=settings, steps=steps)
        checks += build_models(con, settings=settings, engine=engine, steps=steps)
        pause("built")

        files = _file_outcomes(con, landed, load_id=load_id)
        by_reason = quarantine_by_reason(con, load_id=load_id)
        earlier = con.execute(
            "SELECT count(*) FROM raw.quarantine AS q ANTI JOIN "
            "(SELECT file, source FROM raw.manifest WHERE load_id = ?) AS m USING (file, source) "
            "WHERE q.load_id = ?", [load_id, load_id]
        ).fetchone()[0]
        tables = table_rows(con)
        not_loaded = tuple(s for s in LOAD_ORDER if s not in loaded_sources(con))
        failed = [c for c in checks if not c.ok]
        result = RefreshResult(
            status="rejected" if failed else "published", version=None if failed else wc.name, load_id=load_id,
            duration_s=0.0, files=tuple(files), quarantined_by_reason=by_reason, earlier_rows_quarantined=int(earlier),
            duplicates=duplicates, references=refs.moved, references_not_checked=refs.not_checked, tables=tables,
            checks=tuple(checks), sources_not_loaded=not_loaded, **base,
        )
        if failed:
            return dataclasses.replace(result, version=previous, duration_s=time.monotonic() - t0,
                                       steps=tuple(steps.done))
        with steps.step("publish") as counts:
            summary = dataclasses.replace(result, duration_s=time.monotonic() - t0, steps=tuple(steps.done))
            finish_load(con, load_id=load_id, status="published", summary=summary.to_dict())
            name = wh.publish(wc, on_step=pause)
            counts["note"] = f"CURRENT → {name}"
    return dataclasses.replace(result, version=name, duration_s=time.monotonic() - t0, steps=tuple(steps.done))


def _file_outcomes(con: duckdb.DuckDBPyConnection, landed: list[tuple[SourceFile, str, tuple[str, ...]]], *,
                   load_id: int) -> list[FileOutcome]:
    counts = {(r[0], r[1]): r[2:] for r in con.execute(
        "SELECT file, source, rows_read, rows_kept, rows_quarantined FROM raw.manifest WHERE load_id = ?",
        [load_id],
    ).fetchall()}
    reasons: dict[tuple[str, str], dict[str, int]] = {}
    for file, source, why, n in con.execute(
        "SELECT q.file, q.source, q.reason || coalesce(':' || q.\"column\", ''), count(*) FROM raw.quarantine AS q "
        "SEMI JOIN (SELECT file, source FROM raw.manifest WHERE load_id = ?) AS m USING (file, source) "
        "GROUP BY ALL ORDER BY 1, 2, 3", [load_id]
    ).fetchall():
        reasons.setdefault((file, source), {})[why] = int(n)
    out = []
    for f, change, warnings in landed:
        read, kept, quarantined = counts[(f.name, f.source)]
        out.append(FileOutcome(file=f.name, source=f.source, change=change, rows_read=int(read),  # type: ignore[arg-type]
                               rows_kept=int(kept), rows_quarantined=int(quarantined),
                               quarantined_by_reason=reasons.get((f.name, f.source), {}), warnings=warnings))
    return out
