"""The warehouse folder: versioned DuckDB files, the CURRENT pointer, the refresh lock, atomic publish.

Layout of `WAREHOUSE/` (docs/architecture.md, "The warehouse file"):

    versions/v000007.duckdb        published versions (never written again once published)
    versions/v000008.duckdb.building   the working copy of a refresh in progress
    CURRENT                        the live version's file name, replaced atomically with `os.replace`
    refresh.lock                   held with `fcntl.flock` for a whole refresh; holds the holder's pid

Readers open the file CURRENT names read-only and keep reading it even after a newer version is published
(or after the old file is pruned: an open file stays readable on POSIX). A refresh killed at any point
leaves CURRENT on the last good version; the debris it leaves is removed by the next refresh, under the lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from etl.errors import LockHeld, OpencemError, UsageError

VERSION_RE = re.compile(r"^v(\d{6,})\.duckdb$")
BUILDING_SUFFIX = ".building"
CURRENT = "CURRENT"
LOCK = "refresh.lock"

#: Called with the name of each publish step as it is reached (tests pause there to SIGKILL the process).
StepHook = Callable[[str], None]


def version_name(number: int) -> str:
    """The file name of version `number` (`v000007.duckdb`)."""
    return f"v{number:06d}.duckdb"


def version_number(name: str) -> int | None:
    """The number of a version file name, or None if the name is not one."""
    m = VERSION_RE.match(name)
    return int(m.group(1)) if m else None


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` so that a reader sees the old or the new content, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


@dataclass
class WorkingCopy:
    """A new version being built: a writable DuckDB file that nobody else can see until it is published."""

    path: Path
    number: int
    based_on: str | None
    """The live version it was copied from (None for the first version)."""
    con: duckdb.DuckDBPyConnection | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return version_name(self.number)

    def close(self) -> None:
        """Checkpoint and close the connection, so the file is whole on its own (no WAL beside it)."""
        if self.con is not None:
            try:
                self.con.execute("CHECKPOINT")
            finally:
                self.con.close()
                self.con = None


@dataclass(frozen=True)
class Warehouse:
    """One warehouse folder: finds the live version, holds the refresh lock, builds and publishes versions."""

    root: Path
    keep_versions: int = 3
    """How many published versions stay on disk, the live one included (at least 1)."""

    @property
    def versions_dir(self) -> Path:
        return self.root / "versions"

    @property
    def current_file(self) -> Path:
        return self.root / CURRENT

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK

    # -- reading -------------------------------------------------------------------------------------

    def live_name(self) -> str | None:
        """The live version's file name from CURRENT, or None when nothing was published yet."""
        try:
            text = self.current_file.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return None
        if version_number(text) is None:
            raise OpencemError(
                f"{self.current_file} holds {text!r}; expected a version file name like v000001.duckdb"
            )
        return text

    def live_path(self) -> Path | None:
        """The live version's file, or None when nothing was published yet."""
        name = self.live_name()
        return None if name is None else self.versions_dir / name

    def versions(self) -> list[str]:
        """Published version file names on disk, oldest first."""
        if not self.versions_dir.is_dir():
            return []
        names = [p.name for p in self.versions_dir.iterdir() if version_number(p.name) is not None]
        return sorted(names, key=lambda n: version_number(n) or 0)

    def open_current(self, *, read_only: bool = True) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the live version; it keeps reading that version whatever is published later."""
        if not read_only:
            raise UsageError(
                "the live version is never written in place: build a new version with "
                "Warehouse.lock() and Warehouse.working_copy(), then publish it"
            )
        path = self.live_path()
        if path is None:
            raise UsageError(
                f"no published version in {self.root} (no {CURRENT} file): run `opencem refresh --source DIR` first"
            )
        if not path.exists():
            raise OpencemError(f"{self.current_file} names {path.name}, which is missing from {self.versions_dir}")
        return duckdb.connect(str(path), read_only=True)

    # -- the lock ------------------------------------------------------------------------------------

    def holder(self) -> dict:
        """What the lock file says about its holder (pid, started_at, host, command); empty if unknown."""
        try:
            text = self.lock_file.read_text(encoding="utf-8").strip()
            return json.loads(text) if text else {}
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    @contextmanager
    def lock(self, *, command: str = "refresh") -> Iterator[None]:
        """Hold `refresh.lock` (non-blocking `flock`) for the block; raise LockHeld naming the holder if taken.

        The kernel releases a `flock` when its holder dies, so a killed refresh never leaves a stale lock.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                h = self.holder()
                who = (
                    f"pid {h.get('pid', 'unknown')} on {h.get('host', 'this host')}, "
                    f"{h.get('command', 'refresh')} started at {h.get('started_at', 'an unknown time')}"
                )
                raise LockHeld(
                    f"another refresh holds the lock {self.lock_file} ({who}); nothing was done. "
                    "Wait for it to finish (the lock is released when that process ends)."
                ) from None
            info = {
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "command": command,
                "started_at": datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z",
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
            os.fsync(fd)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _holds_lock(self) -> bool:
        """Whether this process holds the lock (the lock file names our pid)."""
        return self.holder().get("pid") == os.getpid()

    # -- building and publishing ----------------------------------------------------------------------

    def clean_debris(self) -> list[str]:
        """Remove what killed runs left: working copies, a half-written CURRENT.tmp, versions never made live.

        Call only under the lock. A version file newer than the live one was renamed into place by a run
        that died before switching CURRENT: it was never published, so it goes.
        """
        self._require_lock("clean up")
        removed: list[str] = []
        tmp = self.root / (CURRENT + ".tmp")
        if _unlink(tmp):
            removed.append(tmp.name)
        if not self.versions_dir.is_dir():
            return removed
        live = self.live_name()
        live_no = version_number(live) if live else 0
        for p in sorted(self.versions_dir.iterdir()):
            stem = p.name.removesuffix(".wal")
            if BUILDING_SUFFIX in stem or stem.endswith(".tmp"):
                _unlink(p)
                removed.append(p.name)
                continue
            no = version_number(stem)
            if no is not None and no > (live_no or 0) and stem != live:
                _unlink(p)
                removed.append(p.name)
        return removed

    def _require_lock(self, what: str) -> None:
        if not self._holds_lock():
            raise OpencemError(f"cannot {what} in {self.root} without holding {self.lock_file}")

    @contextmanager
    def working_copy(self, *, copy_live: bool = True) -> Iterator[WorkingCopy]:
        """A new writable version (a copy of the live one, or empty), discarded unless published in the block.

        Call only under the lock. The connection is `wc.con`; `publish(wc)` closes and publishes it.
        """
        self._require_lock("build a version")
        self.clean_debris()
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        live = self.live_name()
        numbers = [version_number(n) or 0 for n in self.versions()] + [version_number(live) if live else 0]
        number = max(numbers, default=0) + 1
        path = self.versions_dir / (version_name(number) + BUILDING_SUFFIX)
        if copy_live and live is not None:
            shutil.copyfile(self.versions_dir / live, path)
        wc = WorkingCopy(path=path, number=number, based_on=live)
        wc.con = duckdb.connect(str(path))
        try:
            yield wc
        finally:
            if wc.con is not None:
                wc.con.close()
                wc.con = None
            if path.exists():  # not published: discard it
                _unlink(path)
            _unlink(path.with_name(path.name + ".wal"))

    def publish(self, wc: WorkingCopy, *, on_step: StepHook | None = None) -> str:
        """Close `wc`, rename it into `versions/`, switch CURRENT to it atomically, prune old versions.

        Each step is durable before the next starts (fsync of the file, then of the directory), so a crash
        at any point leaves CURRENT naming a whole version: the old one until `os.replace`, the new one after.
        """
        self._require_lock("publish")
        step = on_step or (lambda _name: None)
        wc.close()
        wal = wc.path.with_name(wc.path.name + ".wal")
        if wal.exists():
            raise OpencemError(f"{wc.path} still has a write-ahead log {wal.name} after closing; not publishing")
        _fsync_file(wc.path)
        step("closed")
        final = self.versions_dir / wc.name
        if final.exists():
            raise OpencemError(f"{final} already exists; a version is never overwritten")
        os.rename(wc.path, final)
        _fsync_dir(self.versions_dir)
        step("renamed")
        tmp = self.root / (CURRENT + ".tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(wc.name + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        step("current_written")
        os.replace(tmp, self.current_file)
        _fsync_dir(self.root)
        step("switched")
        self.prune()
        return wc.name

    def prune(self) -> list[str]:
        """Delete published versions beyond `keep_versions` (oldest first); never the live one."""
        keep = max(1, self.keep_versions)
        live = self.live_name()
        names = self.versions()
        kept = set(names[-keep:]) | ({live} if live else set())
        removed = []
        for name in names:
            if name not in kept:
                _unlink(self.versions_dir / name)
                _unlink(self.versions_dir / (name + ".wal"))
                removed.append(name)
        return removed
