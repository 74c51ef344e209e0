"""Byte-deterministic writers for the synthetic operator: CSV (optionally gzip'd, mtime 0) and GeoJSON.

Same inputs, same bytes: gzip headers carry no time or file name, floats are rounded before writing,
and planted raw lines (malformed rows, unparseable values, duplicates) go in at fixed positions.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date, timedelta
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np
import polars as pl

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"
GZIP_LEVEL = 6
#: Files of at least this many rows are compressed at level 1: zlib's level 6 would dominate big runs.
BIG_FILE_ROWS = 200_000
#: At most this many places per file receive inserted lines.
INSERT_SLOTS = 48


@lru_cache(maxsize=1)
def _times_of_day() -> pl.Series:
    """"00:00:00" .. "23:59:59", built once on first use."""
    s = np.arange(86_400)
    return pl.Series([f"{h:02d}:{m:02d}:{x:02d}" for h, m, x in zip(s // 3600, s // 60 % 60, s % 60)],
                     dtype=pl.String)


def iso_dates(origin: date, days: np.ndarray) -> pl.Series:
    """ISO dates `origin + days`, formatted through a lookup table (much faster than per-value formatting)."""
    days = np.asarray(days, dtype=np.int64)
    if len(days) == 0:
        return pl.Series([], dtype=pl.String)
    lo, hi = int(days.min()), int(days.max())
    table = pl.Series([(origin + timedelta(days=k)).isoformat() for k in range(lo, hi + 1)], dtype=pl.String)
    return table.gather(pl.Series(days - lo))


def iso_timestamps(origin: date, seconds: np.ndarray) -> pl.Series:
    """ISO timestamps (`2026-10-01T13:05:00`, naive UTC) `seconds` after midnight of `origin`."""
    seconds = np.asarray(seconds, dtype=np.int64)
    if len(seconds) == 0:
        return pl.Series([], dtype=pl.String)
    day = iso_dates(origin, seconds // 86_400)
    tod = _times_of_day().gather(pl.Series(seconds % 86_400))
    return pl.select(day + "T" + tod).to_series()


def daily_name(source: str, day_token: str, *, compress: bool) -> str:
    """`charging_20261001.csv.gz` (or `.csv` when not compressing)."""
    return f"{source}_{day_token}.csv{'.gz' if compress else ''}"


def _csv(df: pl.DataFrame, sink: BinaryIO, *, header: bool) -> None:
    df.write_csv(sink, include_header=header, datetime_format=DATETIME_FORMAT, date_format=DATE_FORMAT)


def render_lines(df: pl.DataFrame) -> list[str]:
    """The rows of `df` as the CSV lines `write_csv_file` would write for them (no header)."""
    if df.height == 0:
        return []
    text = df.write_csv(include_header=False, datetime_format=DATETIME_FORMAT, date_format=DATE_FORMAT)
    return text.rstrip("\n").split("\n")


def write_csv_file(path: Path, df: pl.DataFrame, *, compress: bool,
                   inserts: Sequence[tuple[int, str]] = ()) -> int:
    """Write `df` with a header; each `(position, line)` of `inserts` goes in near data row `position`.

    Inserted lines are gathered at no more than INSERT_SLOTS places in the file (one frame write per
    place keeps big files fast). Returns the number of data lines written (rows plus inserted lines).
    """
    slot = max(1, -(-df.height // INSERT_SLOTS))
    groups: dict[int, list[str]] = {}
    for pos, line in sorted(inserts, key=lambda t: t[0]):
        groups.setdefault(min(df.height, (max(pos, 0) // slot) * slot), []).append(line)
    with open(path, "wb") as raw:
        level = GZIP_LEVEL if df.height < BIG_FILE_ROWS else 1
        sink: BinaryIO = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                       compresslevel=level) if compress else raw
        try:
            _csv(df.head(0), sink, header=True)
            prev = 0
            for pos in sorted(groups):
                if pos > prev:
                    _csv(df.slice(prev, pos - prev), sink, header=False)
                sink.write("".join(line + "\n" for line in groups[pos]).encode())
                prev = pos
            if prev < df.height:
                _csv(df.slice(prev), sink, header=False)
        finally:
            if compress:
                sink.close()
    return df.height + len(inserts)


class BackgroundWriter:
    """Writes files on one worker thread so compression overlaps the next day's work.

    `drain()` waits for everything submitted; the simulation drains once per day, so at most one day's
    frames are held besides the day being built (memory stays bounded whatever the number of days).
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="opencem-writer")
        self._pending: list[Future] = []

    def submit(self, path: Path, df: pl.DataFrame, *, compress: bool,
               inserts: Sequence[tuple[int, str]] = ()) -> int:
        """Queue one file; returns the number of data lines it will hold."""
        self._pending.append(self._pool.submit(write_csv_file, path, df, compress=compress, inserts=list(inserts)))
        return df.height + len(inserts)

    def drain(self) -> None:
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()  # re-raises a failed write here

    def close(self) -> None:
        try:
            self.drain()
        finally:
            self._pool.shutdown(wait=True)


class AppendingCsv:
    """A CSV written in parts (a header once, then frames), for snapshots built month by month."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows = 0
        self._header_written = False

    def append(self, df: pl.DataFrame) -> None:
        with open(self.path, "ab" if self._header_written else "wb") as f:
            _csv(df, f, header=not self._header_written)
        self._header_written = True
        self.rows += df.height


def write_geojson(path: Path, features: Iterable[dict]) -> int:
    """A FeatureCollection, one feature per line, keys in a fixed order."""
    feats = list(features)
    body = ",\n".join(json.dumps(f, separators=(",", ":"), ensure_ascii=False) for f in feats)
    path.write_text('{"type":"FeatureCollection","features":[\n' + body + "\n]}\n", encoding="utf-8")
    return len(feats)
