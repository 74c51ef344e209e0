"""`opencem status`: the live version and what it holds, read-only.

Rows per table, quarantine counts by source and reason, the as-of time of every source (the latest
event time it carries, and when its last file was loaded), the sources not loaded yet (a phased
migration), and the outcome of the last refresh (a failed one leaves the previous version live).
"""

from __future__ import annotations

import json
import os
import socket
from datetime import date, datetime
from pathlib import Path
from typing import Any

import duckdb

from etl.config import Settings
from etl.contracts import LOAD_ORDER, SOURCES
from etl.load import q, quarantine_by_reason, raw_table, table_rows
from etl.pipeline import LAST_REFRESH
from etl.publish import Warehouse
from etl.transforms.checks import table_columns


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def _tables(con: duckdb.DuckDBPyConnection) -> set[str]:
    return {f"{s}.{t}" for s, t in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE NOT temporary").fetchall()}


def running_refresh(wh: Warehouse) -> dict | None:
    """The refresh holding the lock right now, if any (read from the lock file; the lock is not touched).

    Taking the lock to test it would make a refresh starting at that instant exit 3, so this reads what
    the holder wrote and checks that its process is alive (on this host).
    """
    holder = wh.holder()
    pid = holder.get("pid")
    if not isinstance(pid, int):
        return None
    if holder.get("host") in (None, socket.gethostname()):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
    return holder


def _last_refresh(wh: Warehouse) -> dict | None:
    try:
        return json.loads((wh.root / LAST_REFRESH).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def status(settings: Settings) -> dict[str, Any]:
    """The live version's state as one JSON-ready dict (no live version: `live_version` is None)."""
    wh = Warehouse(Path(settings.warehouse_dir), keep_versions=settings.keep_versions)
    out: dict[str, Any] = {
        "warehouse": str(wh.root),
        "live_version": wh.live_name(),
        "versions": wh.versions(),
        "refresh_running": running_refresh(wh),
        "last_refresh": _last_refresh(wh),
    }
    if out["live_version"] is None:
        out.update(sources={}, sources_not_loaded=list(LOAD_ORDER), tables={}, quarantine={},
                   quarantine_total=0, loads=[], checks={})
        return out
    con = wh.open_current()
    try:
        out.update(_read_version(con))
    finally:
        con.close()
    path = wh.live_path()
    out["live_file"] = str(path)
    out["live_size_bytes"] = path.stat().st_size if path is not None and path.exists() else None
    return out


def _read_version(con: duckdb.DuckDBPyConnection) -> dict[str, Any]:
    tables = _tables(con)
    out: dict[str, Any] = {"tables": table_rows(con)}
    has_raw = {"raw.manifest", "raw.quarantine", "raw.loads"} <= tables
    if not has_raw:
        out.update(sources={}, sources_not_loaded=list(LOAD_ORDER), quarantine={}, quarantine_total=0, loads=[],
                   checks={}, published_at=None)
        return out

    loads = con.execute(
        "SELECT load_id, started_at, finished_at, status, source_dir, engine, "
        "CAST(summary->>'rows_read' AS BIGINT), CAST(json_array_length(summary->'files') AS BIGINT) "
        "FROM raw.loads ORDER BY load_id DESC LIMIT 10"
    ).fetchall()
    out["loads"] = [
        {"load_id": r[0], "started_at": _iso(r[1]), "finished_at": _iso(r[2]), "status": r[3], "source_dir": r[4],
         "engine": r[5], "rows_read": r[6], "files": r[7]} for r in loads
    ]
    out["published_at"] = out["loads"][0]["finished_at"] if out["loads"] else None

    manifest = {r[0]: r[1:] for r in con.execute(
        "SELECT source, count(*), sum(rows_read), sum(rows_kept), sum(rows_quarantined), max(loaded_at), "
        "max(load_id), max(file) FROM raw.manifest GROUP BY source"
    ).fetchall()}
    sources: dict[str, Any] = {}
    for name in LOAD_ORDER:
        src = SOURCES[name]
        m = manifest.get(name)
        entry: dict[str, Any] = {"side": src.side, "loaded": m is not None}
        if m is not None:
            n_files, read, kept, quarantined, loaded_at, load_id, last_file = m
            entry.update(files=int(n_files), rows_read=int(read), rows_kept=int(kept),
                         rows_quarantined=int(quarantined), last_loaded_at=_iso(loaded_at), last_load_id=load_id,
                         last_file=last_file)
        if src.event_time and f"raw.{name}" in tables:
            entry["as_of_column"] = src.event_time
            value = con.execute(f"SELECT max({q(src.event_time)}) FROM {raw_table(name)}").fetchone()[0]
            entry["as_of"] = _iso(value)
        else:
            entry["as_of_column"] = None
            entry["as_of"] = entry.get("last_loaded_at")
        sources[name] = entry
    out["sources"] = sources
    out["sources_not_loaded"] = [s for s in LOAD_ORDER if not sources[s]["loaded"]]
    out["quarantine"] = quarantine_by_reason(con)
    out["quarantine_total"] = sum(sum(v.values()) for v in out["quarantine"].values())
    out["checks"] = _checks(con, tables)
    return out


def _checks(con: duckdb.DuckDBPyConnection, tables: set[str]) -> dict[str, Any]:
    """Passed and failed counts of `meta.checks` (the checks of the build that was published)."""
    if "meta.checks" not in tables:
        return {}
    cols = set(table_columns(con, "meta.checks"))
    ok_col = "ok" if "ok" in cols else "passed" if "passed" in cols else None
    total = con.execute("SELECT count(*) FROM meta.checks").fetchone()[0]
    if ok_col is None:
        return {"total": int(total)}
    passed = con.execute(f"SELECT count(*) FROM meta.checks WHERE {q(ok_col)}").fetchone()[0]
    return {"total": int(total), "passed": int(passed), "failed": int(total - passed)}


def describe_status(s: dict[str, Any]) -> str:
    """The status for people (stderr)."""
    out = [f"warehouse {s['warehouse']}"]
    running = s.get("refresh_running")
    if running:
        out.append(f"a refresh is running: pid {running.get('pid')}, started at {running.get('started_at')}")
    last = s.get("last_refresh")
    if s.get("live_version") is None:
        out.append("no published version yet: run `opencem refresh --source DIR`")
        if last:
            out.append(f"last refresh: {last.get('status')} at {last.get('finished_at')}"
                       + (f": {last['error']}" if last.get("error") else ""))
        return "\n".join(out)
    size = s.get("live_size_bytes")
    out.append(f"live version {s['live_version']}, published {s.get('published_at') or 'at an unknown time'}"
               + (f", {size / 1e6:,.1f} MB" if size else "") + f"; versions on disk: {', '.join(s['versions'])}")
    if last:
        line = f"last refresh: {last.get('status')} at {last.get('finished_at')}"
        if last.get("status") in ("failed", "rejected"):
            line += f" (live version unchanged: {last.get('live_version')})"
        if last.get("error"):
            line += f": {last['error']}"
        for c in last.get("failed_checks") or []:
            line += f"\n  failed check {c.get('name')}: {c.get('detail')}"
        out.append(line)
    out.append("sources:")
    for name, e in s.get("sources", {}).items():
        if not e.get("loaded"):
            out.append(f"  {name:<14} NOT LOADED")
            continue
        as_of = e.get("as_of") or "-"
        basis = f"latest {e['as_of_column']}" if e.get("as_of_column") else "loaded at"
        out.append(f"  {name:<14} {e['rows_kept']:>12,} rows, {e['rows_quarantined']:>9,} quarantined, "
                   f"{e['files']:>4} files, as of {as_of} ({basis})")
    if s.get("sources_not_loaded"):
        out.append("not loaded: " + ", ".join(s["sources_not_loaded"]))
    if s.get("quarantine"):
        out.append(f"quarantine: {s.get('quarantine_total', 0):,} rows")
        for source, reasons in s["quarantine"].items():
            out.append(f"  {source}: " + ", ".join(f"{k} {v:,}" for k, v in reasons.items()))
    checks = s.get("checks") or {}
    if checks.get("total"):
        out.append(f"checks of the published build: {checks.get('passed', '?')} passed, "
                   f"{checks.get('failed', '?')} failed")
    tables = s.get("tables") or {}
    for schema in ("staging", "marts", "meta"):
        names = {k: v for k, v in tables.items() if k.startswith(schema + ".")}
        if names:
            out.append(f"{schema}: " + ", ".join(f"{k.split('.', 1)[1]} {v:,}" for k, v in names.items()))
    return "\n".join(out)
