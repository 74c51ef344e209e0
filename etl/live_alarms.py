"""Alarms between refreshes: a watched folder of TMF642 alarm files that the assurance page reads.

The warehouse has one writer (the refresh), so an alarm that arrives between two refreshes never goes into
it. Instead it is one JSON file per alarm, shaped as a TM Forum TMF642 `Alarm` resource, in the watched
folder (`Settings.live_alarms_path`, by default `WAREHOUSE/live_alarms/`). An OSS can drop files there, and
`opencem alarm raise|clear` writes them. Every write is atomic (a temp file beside, then `os.replace`), so
a reader sees the old file or the new one, never half of one. Readers validate each file on its own: a bad
file is reported with its name and what was expected, and skipped.

What a refresh does with them: nothing is converted or deleted. A live alarm stays until the live version
holds an alarm with the same id, which then supersedes it (the warehouse is the record once it has the
alarm), except that a live clear of an alarm the warehouse still has open keeps showing it cleared. `opencem
alarm prune` removes the superseded files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from etl.config import Settings
from etl.contracts import SOURCES
from etl.errors import ContractError, UsageError

ObjectType = Literal["cell", "site"]

ALARM_TYPES: tuple[str, ...] = SOURCES["alarms"].column("alarm_type").allowed or ()
SEVERITIES: tuple[str, ...] = SOURCES["alarms"].column("perceived_severity").allowed or ()
OBJECT_TYPES: tuple[str, ...] = ("cell", "site")
STATES = ("raised", "updated", "cleared")
#: Alarm ids become file names: letters, digits and `._:-` only.
ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-")
MAX_FILE_BYTES = 256 * 1024


@dataclass(frozen=True)
class LiveAlarm:
    """One alarm of the watched folder, in the warehouse's column names (times naive UTC)."""

    alarm_id: str
    alarmed_object_id: str
    alarmed_object_type: ObjectType
    alarm_type: str
    perceived_severity: str
    probable_cause: str
    service_affecting: bool
    raised_at: datetime
    cleared_at: datetime | None = None
    specific_problem: str | None = None
    changed_at: datetime | None = None
    """When this state was written (TMF642 `alarmChangedTime`)."""
    file: str = ""
    """The file it was read from (its name inside the watched folder)."""

    @property
    def is_open(self) -> bool:
        return self.cleared_at is None

    def to_tmf642(self) -> dict[str, Any]:
        """The alarm as a TMF642 `Alarm` resource (the shape the watched folder holds)."""
        doc: dict[str, Any] = {
            "@type": "Alarm",
            "id": self.alarm_id,
            "alarmType": self.alarm_type,
            "perceivedSeverity": self.perceived_severity,
            "probableCause": self.probable_cause,
            "specificProblem": self.specific_problem,
            "serviceAffecting": self.service_affecting,
            "alarmedObjectType": self.alarmed_object_type,
            "alarmedObject": {"id": self.alarmed_object_id, "@referredType": self.alarmed_object_type},
            "alarmRaisedTime": _iso(self.raised_at),
            "alarmReportingTime": _iso(self.changed_at or self.raised_at),
            "alarmChangedTime": _iso(self.changed_at or self.raised_at),
            "alarmClearedTime": _iso(self.cleared_at) if self.cleared_at else None,
            "state": "raised" if self.is_open else "cleared",
            "sourceSystemId": "opencem",
        }
        return {k: v for k, v in doc.items() if v is not None}

    def to_row(self) -> dict[str, Any]:
        """The alarm as one row of the warehouse's `staging.alarms` columns (plus `file`, `changed_at`)."""
        return asdict(self)


@dataclass(frozen=True)
class BadAlarmFile:
    """A file of the watched folder that is not a valid alarm: skipped, and reported with why."""

    file: str
    message: str


@dataclass(frozen=True)
class LiveFolder:
    """What the watched folder holds now: valid alarms (latest state per id), bad files, and a fingerprint
    that changes whenever a file is added, replaced or removed."""

    folder: Path
    alarms: tuple[LiveAlarm, ...]
    bad: tuple[BadAlarmFile, ...]
    fingerprint: str


def _iso(t: datetime) -> str:
    return t.replace(microsecond=0).isoformat() + "Z"


def parse_time(value: Any, *, file: str, field: str) -> datetime:
    """An ISO 8601 time as naive UTC (values with an offset are converted; naive values are UTC)."""
    if not isinstance(value, str) or not value.strip():
        raise ContractError("a time is missing or not text", file=file, column=field,
                            expected="an ISO 8601 date-time such as 2026-10-28T13:34:48Z")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        raise ContractError(f"{value!r} is not a time", file=file, column=field,
                            expected="an ISO 8601 date-time such as 2026-10-28T13:34:48Z") from None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t


def _text(doc: dict, key: str, *, file: str, required: bool = True, allowed: tuple[str, ...] | None = None
          ) -> str | None:
    value = doc.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ContractError("a required field is missing", file=file, column=key,
                                expected="one of " + ", ".join(allowed) if allowed else "non-empty text")
        return None
    if not isinstance(value, str):
        raise ContractError(f"{value!r} is not text", file=file, column=key, expected="text")
    value = value.strip()
    if allowed is not None and value not in allowed:
        raise ContractError(f"{value!r} is not allowed", file=file, column=key,
                            expected="one of " + ", ".join(allowed))
    return value


def check_alarm_id(alarm_id: str, *, file: str = "", field: str = "id") -> str:
    """An alarm id is 1 to 64 characters of letters, digits and `._:-` (it names the alarm's file)."""
    if not alarm_id or len(alarm_id) > 64 or not set(alarm_id) <= ID_CHARS or alarm_id.startswith("."):
        raise ContractError(f"{alarm_id!r} is not a usable alarm id", file=file or None, column=field,
                            expected="1 to 64 letters, digits or ._:- (not starting with a dot)")
    return alarm_id


def parse_alarm(doc: Any, *, file: str) -> LiveAlarm:
    """Validate one TMF642 `Alarm` document; raise `ContractError` naming the file, field and expectation.

    Required: `id`, `alarmedObject.id`, `alarmedObjectType` (or `alarmedObject.@referredType`) cell or
    site, `alarmType`, `perceivedSeverity`, `probableCause`, `serviceAffecting` (boolean),
    `alarmRaisedTime`. Optional: `alarmClearedTime` (not before the raise), `state`, `specificProblem`,
    `alarmChangedTime`.
    """
    if not isinstance(doc, dict):
        raise ContractError("the file does not hold one JSON object", file=file,
                            expected="a TMF642 Alarm object {\"id\": ..., \"alarmedObject\": {...}, ...}")
    alarm_id = check_alarm_id(_text(doc, "id", file=file) or "", file=file)
    obj = doc.get("alarmedObject")
    if not isinstance(obj, dict):
        raise ContractError("alarmedObject is missing or not an object", file=file, column="alarmedObject",
                            expected='{"id": "<cell or site id>", "@referredType": "cell" or "site"}')
    object_id = _text(obj, "id", file=file)
    object_type = doc.get("alarmedObjectType") or obj.get("@referredType")
    if object_type not in OBJECT_TYPES:
        raise ContractError(f"{object_type!r} is not a kind of object the warehouse knows", file=file,
                            column="alarmedObjectType", expected="cell or site")
    affecting = doc.get("serviceAffecting", doc.get("isServiceAffecting"))
    if not isinstance(affecting, bool):
        raise ContractError(f"{affecting!r} is not a boolean", file=file, column="serviceAffecting",
                            expected="true or false")
    raised_at = parse_time(doc.get("alarmRaisedTime"), file=file, field="alarmRaisedTime")
    cleared_raw = doc.get("alarmClearedTime")
    cleared_at = None if cleared_raw in (None, "") else parse_time(cleared_raw, file=file,
                                                                    field="alarmClearedTime")
    state = _text(doc, "state", file=file, required=False, allowed=STATES)
    if state == "cleared" and cleared_at is None:
        raise ContractError("the state is cleared but there is no clear time", file=file,
                            column="alarmClearedTime", expected="an ISO 8601 date-time when state is cleared")
    if cleared_at is not None and cleared_at < raised_at:
        raise ContractError(f"cleared at {cleared_at} before it was raised at {raised_at}", file=file,
                            column="alarmClearedTime", expected="a time not before alarmRaisedTime")
    changed_raw = doc.get("alarmChangedTime")
    changed_at = None if changed_raw in (None, "") else parse_time(changed_raw, file=file,
                                                                    field="alarmChangedTime")
    return LiveAlarm(
        alarm_id=alarm_id,
        alarmed_object_id=object_id or "",
        alarmed_object_type=object_type,
        alarm_type=_text(doc, "alarmType", file=file, allowed=ALARM_TYPES) or "",
        perceived_severity=_text(doc, "perceivedSeverity", file=file, allowed=SEVERITIES) or "",
        probable_cause=_text(doc, "probableCause", file=file) or "",
        specific_problem=_text(doc, "specificProblem", file=file, required=False),
        service_affecting=affecting,
        raised_at=raised_at,
        cleared_at=cleared_at,
        changed_at=changed_at,
        file=file,
    )


def read_alarm_file(path: Path) -> LiveAlarm:
    """Read and validate one alarm file (`ContractError` names the file and what was expected)."""
    name = path.name
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ContractError(f"the file is {size:,} bytes", file=name,
                                expected=f"one alarm of at most {MAX_FILE_BYTES:,} bytes")
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ContractError("the file is not UTF-8 text", file=name, expected="a UTF-8 JSON file") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ContractError(f"the file is not JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})",
                            file=name, row=exc.lineno, expected="one TMF642 Alarm as a JSON object") from None
    return parse_alarm(doc, file=name)


def _is_alarm_file(path: Path) -> bool:
    # Temp files of an atomic write start with a dot; anything but *.json is not ours to read.
    return path.suffix == ".json" and not path.name.startswith(".") and path.is_file()


def scan(folder: Path) -> LiveFolder:
    """Read every alarm file of the watched folder (a missing folder holds nothing).

    Two files with the same alarm id: the later `alarmChangedTime` (then the later file modification)
    wins and the other is reported as superseded.
    """
    folder = Path(folder)
    paths = sorted(p for p in folder.iterdir() if _is_alarm_file(p)) if folder.is_dir() else []
    digest = hashlib.sha256()
    best: dict[str, tuple[tuple, LiveAlarm]] = {}
    bad: list[BadAlarmFile] = []
    for path in paths:
        try:
            st = path.stat()
        except FileNotFoundError:  # removed between the listing and now
            continue
        digest.update(f"{path.name}\0{st.st_mtime_ns}\0{st.st_size}\0{st.st_ino}\n".encode())
        try:
            alarm = read_alarm_file(path)
        except FileNotFoundError:
            continue
        except ContractError as exc:
            bad.append(BadAlarmFile(path.name, str(exc)))
            continue
        order = (alarm.changed_at or alarm.cleared_at or alarm.raised_at, st.st_mtime_ns, path.name)
        previous = best.get(alarm.alarm_id)
        if previous is None or order > previous[0]:
            if previous is not None:
                bad.append(BadAlarmFile(previous[1].file, f"alarm {alarm.alarm_id} is also in {path.name}, "
                                        "whose state is newer: this file is ignored"))
            best[alarm.alarm_id] = (order, alarm)
        else:
            bad.append(BadAlarmFile(path.name, f"alarm {alarm.alarm_id} is also in {previous[1].file}, "
                                    "whose state is newer: this file is ignored"))
    alarms = tuple(sorted((a for _, a in best.values()), key=lambda a: (a.raised_at, a.alarm_id)))
    return LiveFolder(folder=folder, alarms=alarms, bad=tuple(bad), fingerprint=digest.hexdigest()[:16])


def alarm_path(folder: Path, alarm_id: str) -> Path:
    return Path(folder) / f"{check_alarm_id(alarm_id)}.json"


def write_alarm(folder: Path, alarm: LiveAlarm) -> Path:
    """Write the alarm's file atomically (temp file in the same folder, fsync, `os.replace`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = alarm_path(folder, alarm.alarm_id)
    tmp = folder / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(alarm.to_tmf642(), fh, indent=2, sort_keys=True)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return path


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def new_alarm_id(now: datetime) -> str:
    return f"L{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"


def raise_alarm(folder: Path, *, object_id: str, object_type: ObjectType, alarm_id: str | None = None,
                alarm_type: str = "communicationsAlarm", severity: str = "major",
                probable_cause: str = "unknown", specific_problem: str | None = None,
                service_affecting: bool = True, raised_at: datetime | None = None,
                now: datetime | None = None) -> LiveAlarm:
    """Write a new open alarm into the watched folder and return it (validated as a reader would)."""
    now = now or utc_now()
    alarm = LiveAlarm(
        alarm_id=alarm_id or new_alarm_id(now), alarmed_object_id=object_id, alarmed_object_type=object_type,
        alarm_type=alarm_type, perceived_severity=severity, probable_cause=probable_cause,
        specific_problem=specific_problem, service_affecting=service_affecting,
        raised_at=raised_at or now, changed_at=now,
    )
    checked = parse_alarm(alarm.to_tmf642(), file=f"{alarm.alarm_id}.json")  # the reader's own rules
    path = write_alarm(folder, checked)
    return replace(checked, file=path.name)


def clear_alarm(folder: Path, alarm_id: str, *, base: LiveAlarm | None = None,
                cleared_at: datetime | None = None, now: datetime | None = None) -> LiveAlarm:
    """Clear an alarm: its live file gets a clear time (the file is kept: a clear is news too).

    `base` is the alarm to clear when it has no live file yet (an alarm the warehouse holds open).
    """
    now = now or utc_now()
    path = alarm_path(folder, alarm_id)
    if path.exists():
        base = read_alarm_file(path)
    if base is None:
        raise UsageError(f"no alarm {alarm_id} in {folder} nor open in the warehouse: nothing to clear")
    if base.cleared_at is not None:
        raise UsageError(f"alarm {alarm_id} was already cleared at {base.cleared_at:%Y-%m-%d %H:%M:%S}")
    cleared = replace(base, cleared_at=cleared_at or now, changed_at=now)
    checked = parse_alarm(cleared.to_tmf642(), file=path.name)
    write_alarm(folder, checked)
    return replace(checked, file=path.name)


# ------------------------------------------------------------------------------------------ the warehouse


def _open_live(settings: Settings):
    from etl.publish import Warehouse

    return Warehouse(Path(settings.warehouse_dir)).open_current()


def warehouse_alarm(con, alarm_id: str) -> LiveAlarm | None:
    """The live version's alarm with this id (its latest state), or None."""
    row = con.execute(
        "SELECT alarm_id, alarmed_object_id, alarmed_object_type, alarm_type, perceived_severity, "
        "probable_cause, specific_problem, service_affecting, raised_at, cleared_at "
        "FROM staging.alarms WHERE alarm_id = ?", [alarm_id]).fetchone()
    if row is None:
        return None
    keys = ("alarm_id", "alarmed_object_id", "alarmed_object_type", "alarm_type", "perceived_severity",
            "probable_cause", "specific_problem", "service_affecting", "raised_at", "cleared_at")
    return LiveAlarm(**dict(zip(keys, row)), file="")


def check_object(con, object_id: str, object_type: ObjectType) -> None:
    """The alarmed cell or site must be in the live version's inventory (`UsageError` otherwise)."""
    table = "staging.cells" if object_type == "cell" else "staging.sites"
    column = "cell_id" if object_type == "cell" else "site_id"
    found = con.execute(f"SELECT count(*) FROM {table} WHERE {column} = ?", [object_id]).fetchone()[0]
    if not found:
        raise UsageError(f"there is no {object_type} {object_id} in the live version's inventory ({table})")


def superseded(alarm: LiveAlarm, refreshed: LiveAlarm | None) -> bool:
    """Whether the warehouse's alarm of the same id replaces the live one (see the module docstring)."""
    if refreshed is None:
        return False
    keeps_live_clear = alarm.cleared_at is not None and refreshed.cleared_at is None
    return not keeps_live_clear


# ----------------------------------------------------------------------------------------- the command


def _time_arg(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_time(value, file="command line", field=name)
    except ContractError as exc:
        raise UsageError(str(exc)) from None


def cli_alarm(args: argparse.Namespace, settings: Settings) -> int:
    """`opencem alarm raise|clear|list|prune`: the watched folder, never the warehouse file."""
    folder = Path(args.folder) if getattr(args, "folder", None) else settings.live_alarms_path
    as_json = bool(getattr(args, "json", False))

    def emit(result: dict, human: str) -> None:
        if as_json:
            print(json.dumps(result, default=str, sort_keys=True))
        else:
            print(human, file=sys.stderr)

    if args.action == "raise":
        if not args.object_id or not args.object_type:
            raise UsageError("opencem alarm raise needs --object-id and --object-type (cell or site)")
        for value, allowed, name in ((args.severity, SEVERITIES, "--severity"),
                                     (args.alarm_type, ALARM_TYPES, "--alarm-type")):
            if value not in allowed:
                raise UsageError(f"{name} {value!r} is not one of {', '.join(allowed)}")
        con = _open_live(settings)
        try:
            check_object(con, args.object_id, args.object_type)
            if args.alarm_id and warehouse_alarm(con, args.alarm_id) is not None:
                raise UsageError(f"alarm {args.alarm_id} is already in the warehouse: choose another id")
        finally:
            con.close()
        if args.alarm_id and alarm_path(folder, args.alarm_id).exists():
            raise UsageError(f"alarm {args.alarm_id} is already in {folder}: clear it or choose another id")
        try:
            alarm = raise_alarm(
                folder, object_id=args.object_id, object_type=args.object_type, alarm_id=args.alarm_id,
                alarm_type=args.alarm_type, severity=args.severity, probable_cause=args.probable_cause,
                specific_problem=args.specific_problem, service_affecting=not args.not_service_affecting,
                raised_at=_time_arg(args.raised_at, "--raised-at"),
            )
        except ContractError as exc:
            raise UsageError(str(exc)) from None
        emit({"action": "raise", "ok": True, "folder": str(folder), "alarm": alarm.to_tmf642()},
             f"raised {alarm.alarm_id} on {alarm.alarmed_object_type} {alarm.alarmed_object_id} "
             f"({folder / alarm.file})")
        return 0

    if args.action == "clear":
        if not args.alarm_id:
            raise UsageError("opencem alarm clear needs --alarm-id")
        base = None
        if not alarm_path(folder, args.alarm_id).exists():
            con = _open_live(settings)
            try:
                base = warehouse_alarm(con, args.alarm_id)
            finally:
                con.close()
        alarm = clear_alarm(folder, args.alarm_id, base=base, cleared_at=_time_arg(args.cleared_at, "--cleared-at"))
        emit({"action": "clear", "ok": True, "folder": str(folder), "alarm": alarm.to_tmf642()},
             f"cleared {alarm.alarm_id} at {alarm.cleared_at:%Y-%m-%d %H:%M:%S} UTC ({folder / alarm.file})")
        return 0

    live = scan(folder)
    refreshed: dict[str, LiveAlarm | None] = {}
    try:
        con = _open_live(settings)
    except UsageError:
        con = None
    try:
        for a in live.alarms:
            refreshed[a.alarm_id] = warehouse_alarm(con, a.alarm_id) if con is not None else None
    finally:
        if con is not None:
            con.close()

    if args.action == "prune":
        removed = []
        for a in live.alarms:
            if superseded(a, refreshed[a.alarm_id]):
                (folder / a.file).unlink(missing_ok=True)
                removed.append(a.file)
        emit({"action": "prune", "ok": True, "folder": str(folder), "removed": removed},
             f"removed {len(removed)} file(s) superseded by the warehouse from {folder}")
        return 0

    rows = []
    for a in live.alarms:
        row = {**a.to_tmf642(), "file": a.file, "superseded_by_refresh": superseded(a, refreshed[a.alarm_id])}
        rows.append(row)
    human = [f"{len(live.alarms)} alarm(s) in {folder}, {len(live.bad)} bad file(s)"]
    for r in rows:
        human.append(f"  {r['id']}  {r['state']:<8} {r['alarmedObjectType']} {r['alarmedObject']['id']}  "
                     f"raised {r['alarmRaisedTime']}" + ("  (superseded by the warehouse)"
                                                         if r["superseded_by_refresh"] else ""))
    human += [f"  bad: {b.file}: {b.message}" for b in live.bad]
    emit({"action": "list", "ok": True, "folder": str(folder), "alarms": rows,
          "bad_files": [asdict(b) for b in live.bad]}, "\n".join(human))
    return 0
