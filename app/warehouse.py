"""Read-only access to the published warehouse: the version CURRENT names, a cursor per request.

The app never writes the warehouse. A reader keeps one read-only DuckDB connection per version file and
hands each request its own cursor (a DuckDB connection is not safe across threads; cursors are). When a
refresh publishes a new version, the next request sees it without a restart; requests already running
finish on the version they started with.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import polars as pl

T = TypeVar("T")


class NoWarehouse(LookupError):
    """No version has been published yet (or CURRENT names a file that is gone)."""


@dataclass(frozen=True)
class Version:
    name: str
    path: Path


class WarehouseReader:
    """Queries the live version of the warehouse under `root` (read-only, thread-safe)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._version: Version | None = None
        self._con: duckdb.DuckDBPyConnection | None = None
        self._tables: frozenset[str] = frozenset()
        self._pointer_stat: tuple[int, int] | None = None
        self._memo: dict[object, object] = {}

    def _read_pointer(self) -> Version:
        pointer = self.root / "CURRENT"
        try:
            name = pointer.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            raise NoWarehouse(f"no warehouse published under {self.root}: run `opencem refresh`") from None
        path = self.root / "versions" / name
        if not path.exists():
            raise NoWarehouse(f"{pointer} names {name}, which is not in {path.parent}")
        return Version(name=name, path=path)

    def _connection(self) -> tuple[Version, duckdb.DuckDBPyConnection]:
        pointer = self.root / "CURRENT"
        try:
            st = pointer.stat()
            stat = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stat = None
        with self._lock:
            if self._con is None or stat != self._pointer_stat:
                version = self._read_pointer()
                if self._version is None or version.name != self._version.name or self._con is None:
                    con = duckdb.connect(str(version.path), read_only=True)
                    tables = con.execute(
                        "SELECT table_schema || '.' || table_name FROM information_schema.tables"
                    ).fetchall()
                    # The old connection is left to the garbage collector: cursors of requests still
                    # running on it keep it alive until they finish.
                    self._con, self._version = con, version
                    self._tables = frozenset(t for (t,) in tables)
                    self._memo = {}
                self._pointer_stat = stat
            assert self._con is not None and self._version is not None
            return self._version, self._con

    @property
    def version(self) -> Version:
        return self._connection()[0]

    def has_table(self, name: str) -> bool:
        self._connection()
        return name in self._tables

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        _, con = self._connection()
        cur = con.cursor()
        try:
            yield cur
        finally:
            cur.close()

    def query(self, sql: str, params: Sequence[Any] | dict[str, Any] | None = None) -> pl.DataFrame:
        """Run one parameterised query on the live version and return the whole result."""
        with self.cursor() as cur:
            rel = cur.sql(sql, params=params or None)
            if rel is None:  # a statement that returns nothing (the connection is read-only anyway)
                return pl.DataFrame()
            return pl.from_arrow(rel.to_arrow_table())

    def memo(self, key: object, compute: Callable[[], T]) -> T:
        """`compute()` once per published version: for what every request needs and only a refresh changes
        (zone outlines, period bounds, the scorecard). A new version starts with an empty memo."""
        version, _ = self._connection()
        memo = self._memo
        full_key = (version.name, key)
        if full_key not in memo:
            memo[full_key] = compute()
        return memo[full_key]  # type: ignore[return-value]

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                self._con.close()
            self._con, self._version, self._pointer_stat = None, None, None
