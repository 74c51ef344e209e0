"""`opencem refresh` and `opencem status` as schedulers call them: subprocesses, exit codes, JSON on stdout,
the lock (a second refresh exits 3), and SIGKILL at several points of a refresh."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import duckdb
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_refresh_data import usage_line, write_day, write_operator

from etl.config import Settings
from etl.pipeline import PAUSE_ENV, refresh
from etl.publish import Warehouse

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT_S = 120


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "etl.cli", *args], check=False, cwd=ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env={**os.environ, **(env or {})})


class Paused:
    """A refresh in a subprocess that stops at a named step (OPENCEM_TEST_PAUSE_AT) and waits to be killed."""

    def __init__(self, *args: str, step: str) -> None:
        env = {**os.environ, PAUSE_ENV: step}
        self.proc = subprocess.Popen([sys.executable, "-m", "etl.cli", *args], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._drain, daemon=True).start()
        self._wait_for(f"paused at step {step}")

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.put(line)
        self.lines.put("")

    def _wait_for(self, text: str) -> None:
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT_S)
            except queue.Empty:
                self.kill()
                raise AssertionError(f"no {text!r} within {TIMEOUT_S}s; stderr: {''.join(self.seen)}") from None
            self.seen.append(line)
            if text in line:
                return
            if line == "":
                raise AssertionError(f"exited ({self.proc.wait()}) before {text!r}: {''.join(self.seen)}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=TIMEOUT_S)


@pytest.fixture
def op(tmp_path: Path):
    return write_operator(tmp_path / "src"), tmp_path / "wh"


def test_refresh_json_twice_then_status(op):
    src, wh = op
    first = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)  # exactly one JSON object on stdout
    assert summary["status"] == "published" and summary["version"] == "v000001.duckdb" and summary["ok"]
    assert summary["rows_read"] == summary["rows_kept"] + summary["rows_quarantined"] > 0
    assert "extract charging_20261101.csv: read 4" in first.stderr  # progress goes to stderr

    second = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
    assert second.returncode == 0, second.stderr
    again = json.loads(second.stdout)
    assert again["status"] == "nothing_new" and again["version"] == "v000001.duckdb" and again["files"] == []

    st = cli("status", "--warehouse", str(wh), "--json")
    assert st.returncode == 0, st.stderr
    s = json.loads(st.stdout)
    assert s["live_version"] == "v000001.duckdb" and s["sources"]["charging"]["rows_kept"] == 3
    human = cli("status", "--warehouse", str(wh))
    assert human.returncode == 0 and human.stdout == "" and "live version v000001.duckdb" in human.stderr


def test_refresh_human_summary_goes_to_stderr(op):
    src, wh = op
    r = cli("refresh", "--source", str(src), "--warehouse", str(wh))
    assert r.returncode == 0 and r.stdout == ""
    assert "published v000001.duckdb" in r.stderr and "rows: 14 read = 13 kept + 1 quarantined" in r.stderr
    assert "quarantined by reason" in r.stderr


def test_the_warehouse_may_come_from_the_environment(op):
    src, wh = op
    r = cli("refresh", "--source", str(src), "--json", env={"OPENCEM_WAREHOUSE": str(wh)})
    assert r.returncode == 0, r.stderr
    assert (wh / "CURRENT").read_text().strip() == "v000001.duckdb"


def test_unreadable_input_exits_2(op, tmp_path: Path):
    src, wh = op
    r = cli("refresh", "--source", str(tmp_path / "nope"), "--warehouse", str(wh), "--json")
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert json.loads(r.stdout) == {"command": "refresh", "ok": False, "exit_code": 2,
                                    "error": json.loads(r.stdout)["error"]}
    (src / "cells.csv").write_text("cell_id\nC1\n")
    r = cli("refresh", "--source", str(src), "--warehouse", str(wh))
    assert r.returncode == 2 and "cells.csv" in r.stderr
    assert not (wh / "CURRENT").exists()
    assert cli("refresh", "--warehouse", str(wh)).returncode == 2  # --source is required


def test_failed_checks_exit_1_and_publish_nothing(op):
    src, wh = op
    assert cli("refresh", "--source", str(src), "--warehouse", str(wh)).returncode == 0
    write_day(src, "20261102", [usage_line(f"X{i}", "20261102", cell="C9") for i in range(4)])
    r = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "rejected" and not out["ok"]
    assert [c["name"] for c in out["checks"] if not c["ok"]] == ["reject_rate:charging"]
    assert (wh / "CURRENT").read_text().strip() == "v000001.duckdb"


def test_a_second_refresh_while_one_holds_the_lock_exits_3(op):
    src, wh = op
    first = Paused("refresh", "--source", str(src), "--warehouse", str(wh), step="locked")
    try:
        second = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
        assert second.returncode == 3, second.stderr
        assert f"pid {first.proc.pid}" in second.stderr and "another refresh holds the lock" in second.stderr
        assert json.loads(second.stdout)["exit_code"] == 3
        st = cli("status", "--warehouse", str(wh), "--json")
        assert json.loads(st.stdout)["refresh_running"]["pid"] == first.proc.pid
    finally:
        first.kill()
    assert cli("refresh", "--source", str(src), "--warehouse", str(wh)).returncode == 0  # released by the kill


@pytest.mark.slow
@pytest.mark.parametrize("step", ["copied", "landed", "built", "closed", "renamed", "current_written"])
def test_sigkill_at_any_step_leaves_the_last_good_version(op, step):
    src, wh = op
    settings = Settings(warehouse_dir=wh)
    assert refresh(settings, source=src, log=lambda _m: None).version == "v000001.duckdb"
    write_day(src, "20261102")

    Paused("refresh", "--source", str(src), "--warehouse", str(wh), step=step).kill()

    w = Warehouse(wh)
    assert w.live_name() == "v000001.duckdb"
    con = w.open_current()
    try:
        assert con.execute("SELECT DISTINCT _file FROM raw.charging").fetchall() == [("charging_20261101.csv",)]
    finally:
        con.close()
    r = refresh(settings, source=src, log=lambda _m: None)  # the next refresh cleans up and succeeds
    assert r.status == "published" and [f.file for f in r.files] == ["charging_20261102.csv"]
    assert w.live_name() == r.version == "v000002.duckdb"
    assert sorted(p.name for p in (wh / "versions").iterdir()) == ["v000001.duckdb", "v000002.duckdb"]
    assert not (wh / "CURRENT.tmp").exists()
    con = duckdb.connect(str(wh / "versions" / r.version), read_only=True)
    try:
        assert con.execute("SELECT count(DISTINCT _file) FROM raw.charging").fetchone()[0] == 2
    finally:
        con.close()


@pytest.mark.slow
def test_sigkill_after_the_switch_leaves_the_new_version_live(op):
    src, wh = op
    Paused("refresh", "--source", str(src), "--warehouse", str(wh), step="switched").kill()
    w = Warehouse(wh)
    assert w.live_name() == "v000001.duckdb"
    con = w.open_current()
    con.close()
    r = refresh(Settings(warehouse_dir=wh), source=src, log=lambda _m: None)
    assert r.status == "nothing_new" and r.version == "v000001.duckdb"
