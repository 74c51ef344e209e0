"""The watched folder of live alarms: TMF642 files validated one by one, written atomically, and the
`opencem alarm` command that never writes the warehouse."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from etl import live_alarms as la
from etl.cli import main
from etl.errors import ContractError


def doc(**changes) -> dict:
    base = {
        "id": "L1", "alarmType": "equipmentAlarm", "perceivedSeverity": "critical", "probableCause": "powerProblem",
        "serviceAffecting": True, "alarmedObjectType": "site", "alarmedObject": {"id": "S0001"},
        "alarmRaisedTime": "2026-10-28T12:00:00+02:00",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def test_a_tmf642_alarm_is_read_in_the_warehouse_terms() -> None:
    a = la.parse_alarm(doc(alarmClearedTime="2026-10-28T11:30:00Z", state="cleared"), file="x.json")
    assert (a.alarm_id, a.alarmed_object_id, a.alarmed_object_type) == ("L1", "S0001", "site")
    assert a.raised_at == datetime(2026, 10, 28, 10, 0)  # offset converted to UTC, naive
    assert a.cleared_at == datetime(2026, 10, 28, 11, 30) and not a.is_open
    same = {"file": "", "changed_at": None}
    assert la.parse_alarm(a.to_tmf642(), file="y.json").to_row() | same == a.to_row() | same


@pytest.mark.parametrize(("changes", "field", "expected"), [
    ({"id": None}, "id", "non-empty text"),
    ({"id": "../etc/passwd"}, "id", "letters, digits"),
    ({"alarmedObject": "S0001"}, "alarmedObject", "@referredType"),
    ({"alarmedObjectType": "router", "alarmedObject": {"id": "S1"}}, "alarmedObjectType", "cell or site"),
    ({"alarmType": "oops"}, "alarmType", "one of communicationsAlarm"),
    ({"perceivedSeverity": "bad"}, "perceivedSeverity", "one of critical"),
    ({"serviceAffecting": "yes"}, "serviceAffecting", "true or false"),
    ({"alarmRaisedTime": "yesterday"}, "alarmRaisedTime", "ISO 8601"),
    ({"alarmClearedTime": "2026-10-28T09:00:00Z"}, "alarmClearedTime", "not before alarmRaisedTime"),
    ({"state": "cleared"}, "alarmClearedTime", "when state is cleared"),
])
def test_a_bad_alarm_names_the_file_the_field_and_what_was_expected(changes, field, expected) -> None:
    with pytest.raises(ContractError) as err:
        la.parse_alarm(doc(**changes), file="bad.json")
    assert err.value.file == "bad.json" and err.value.column == field
    assert expected in str(err.value) and "bad.json" in str(err.value)


def test_scan_skips_bad_files_with_a_reason_and_keeps_the_newest_state(tmp_path: Path) -> None:
    (tmp_path / "good.json").write_text(json.dumps(doc()))
    (tmp_path / "newer.json").write_text(json.dumps(doc(alarmChangedTime="2026-10-28T13:00:00Z",
                                                        alarmClearedTime="2026-10-28T12:30:00Z")))
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "list.json").write_text("[1, 2]")
    (tmp_path / ".L2.json.123.tmp").write_text("half a fi")  # a write in progress: not ours to read
    (tmp_path / "notes.txt").write_text("ignored")
    folder = la.scan(tmp_path)
    assert [a.alarm_id for a in folder.alarms] == ["L1"]
    assert folder.alarms[0].file == "newer.json" and folder.alarms[0].cleared_at is not None
    bad = {b.file: b.message for b in folder.bad}
    assert set(bad) == {"broken.json", "list.json", "good.json"}
    assert "not JSON" in bad["broken.json"] and "TMF642" in bad["list.json"]
    assert "newer.json" in bad["good.json"]
    assert la.scan(tmp_path / "missing").alarms == ()


def test_the_fingerprint_changes_when_a_file_is_added_or_replaced(tmp_path: Path) -> None:
    empty = la.scan(tmp_path).fingerprint
    a = la.raise_alarm(tmp_path, object_id="C1", object_type="cell", alarm_id="L9",
                       raised_at=datetime(2026, 10, 28, 12), now=datetime(2026, 10, 28, 12, 1))
    raised = la.scan(tmp_path).fingerprint
    la.clear_alarm(tmp_path, a.alarm_id, now=datetime(2026, 10, 28, 13))
    cleared = la.scan(tmp_path)
    assert len({empty, raised, cleared.fingerprint}) == 3
    assert cleared.alarms[0].cleared_at == datetime(2026, 10, 28, 13)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["L9.json"]  # no temp file is left behind


def test_raise_refuses_what_a_reader_would_refuse(tmp_path: Path) -> None:
    with pytest.raises(ContractError):
        la.raise_alarm(tmp_path, object_id="C1", object_type="cell", severity="apocalyptic")
    with pytest.raises(ContractError):
        la.raise_alarm(tmp_path, object_id="C1", object_type="cell", alarm_id="a/b")
    assert list(tmp_path.iterdir()) == []


def test_a_refreshed_alarm_supersedes_the_live_one_unless_the_live_one_clears_it() -> None:
    live_open = la.parse_alarm(doc(), file="a.json")
    live_cleared = la.parse_alarm(doc(alarmClearedTime="2026-10-28T12:00:00Z"), file="a.json")
    refreshed_open = la.parse_alarm(doc(), file="")
    refreshed_cleared = la.parse_alarm(doc(alarmClearedTime="2026-10-28T11:00:00Z"), file="")
    assert not la.superseded(live_open, None)
    assert la.superseded(live_open, refreshed_open)
    assert la.superseded(live_open, refreshed_cleared)
    assert not la.superseded(live_cleared, refreshed_open)
    assert la.superseded(live_cleared, refreshed_cleared)


def test_opencem_alarm_raise_list_clear_prune(sample_warehouse: Path, tmp_path: Path, capsys) -> None:
    base = ["--warehouse", str(sample_warehouse), "--folder", str(tmp_path), "--json"]
    before = sorted(p.name for p in (sample_warehouse / "versions").iterdir())
    assert main(["alarm", "raise", "--object-id", "NO-SUCH-SITE", "--object-type", "site", *base]) == 2
    assert "no site NO-SUCH-SITE" in json.loads(capsys.readouterr().out)["error"]

    assert main(["alarm", "raise", "--object-id", "S0006", "--object-type", "site", "--alarm-id", "LIVE-1",
                 "--raised-at", "2026-10-28T20:00:00Z", "--specific-problem", "=1+1", *base]) == 0
    raised = json.loads(capsys.readouterr().out)["alarm"]
    assert raised["id"] == "LIVE-1" and raised["state"] == "raised" and raised["alarmedObject"]["id"] == "S0006"
    assert main(["alarm", "raise", "--object-id", "S0006", "--object-type", "site", "--alarm-id", "LIVE-1",
                 *base]) == 2
    capsys.readouterr()

    # Clearing an alarm the warehouse holds open writes a live clear for it.
    open_id = next(o["alarm_id"] for o in json.loads((Path(__file__).resolve().parents[2] / "data" / "sample" /
                                                      "truth.json").read_text())["outages"] if not o["cleared_at"])
    assert main(["alarm", "clear", "--alarm-id", open_id, "--cleared-at", "2026-10-28T23:00:00Z", *base]) == 0
    capsys.readouterr()
    assert main(["alarm", "list", *base]) == 0
    listed = {a["id"]: a for a in json.loads(capsys.readouterr().out)["alarms"]}
    assert listed["LIVE-1"]["superseded_by_refresh"] is False
    assert listed[open_id]["state"] == "cleared" and listed[open_id]["superseded_by_refresh"] is False

    # A raise the warehouse already has is superseded, and prune removes it (and only it).
    la.write_alarm(tmp_path, la.parse_alarm(doc(id=open_id, alarmedObject={"id": "S0006"}), file="x"))
    assert main(["alarm", "prune", *base]) == 0
    assert json.loads(capsys.readouterr().out)["removed"] == [f"{open_id}.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["LIVE-1.json"]
    assert sorted(p.name for p in (sample_warehouse / "versions").iterdir()) == before  # never written
