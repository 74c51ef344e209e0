"""Byte-deterministic writers for the synthetic operator: CSV (optionally gzip'd, mtime 0) and GeoJSON.

Same inputs, same bytes: gzip headers carry no time or file name, floats are rounded before writing,
and planted raw lines (malformed rows, unparseable values, duplicates) go in at fixed positions.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

import polars as pl

DATETIME_FORMAT = "%Y-%m-%dT%H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"
GZIP_LEVEL = 6


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
    """Write `df` with a header; each `(position, line)` of `inserts` goes in before data row `position`.

    Returns the number of data lines written (frame rows plus inserted lines).
    """
    raw = open(path, "wb")
    try:
        sink: BinaryIO = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                       compresslevel=GZIP_LEVEL) if compress else raw
        try:
            _csv(df.head(0), sink, header=True)
            prev = 0
            for pos, line in sorted(inserts, key=lambda t: t[0]):
                pos = min(max(pos, prev), df.height)
                if pos > prev:
                    _csv(df.slice(prev, pos - prev), sink, header=False)
                sink.write(line.encode() + b"\n")
                prev = pos
            if prev < df.height:
                _csv(df.slice(prev), sink, header=False)
        finally:
            if compress:
                sink.close()
    finally:
        raw.close()
    return df.height + len(inserts)


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
