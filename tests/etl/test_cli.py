"""`opencem refresh` and `opencem status` as schedulers call them: subprocesses, exit codes, JSON on stdout,
the lock (a second refresh exits 3), and SIGKILL at several points of a refresh."""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

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


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The tiny operator and the warehouse its first refresh published (shared: tests work on copies)."""
    root = tmp_path_factory.mktemp("base")
    src = write_operator(root / "src")
    assert refresh(Settings(warehouse_dir=root / "wh"), source=src, log=lambda _m: None).ok
    return src, root / "wh"


@pytest.fixture
def published(base, tmp_path: Path):
    """A copy of the base folder and of its warehouse (v000001 live)."""
    src, wh = base
    shutil.copytree(src, tmp_path / "src")
    shutil.copytree(wh, tmp_path / "wh")
    return tmp_path / "src", tmp_path / "wh"


def live_files(wh: Path) -> list[tuple[str]]:
    """The charging files the live version holds."""
    con = Warehouse(wh).open_current()
    try:
        return con.execute("SELECT DISTINCT _file FROM raw.charging ORDER BY 1").fetchall()
    finally:
        con.close()


def test_refresh_json_twice_then_status(tmp_path: Path):
    src, wh = write_operator(tmp_path / "src"), tmp_path / "wh"
    first = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)  # exactly one JSON object on stdout
    assert summary["status"] == "published" and summary["version"] == "v000001.duckdb" and summary["ok"]
    assert summary["rows_read"] == summary["rows_kept"] + summary["rows_quarantined"] == 14
    assert "extract charging_20261101.csv: read 4" in first.stderr  # progress goes to stderr

    # the same files again, the warehouse from the environment, the summary for people on stderr
    second = cli("refresh", "--source", str(src), env={"OPENCEM_WAREHOUSE": str(wh)})
    assert second.returncode == 0 and second.stdout == "", second.stderr
    assert "nothing new to load; v000001.duckdb stays live" in second.stderr
    assert Warehouse(wh).versions() == ["v000001.duckdb"]

    st = cli("status", "--warehouse", str(wh), "--json")
    assert st.returncode == 0, st.stderr
    s = json.loads(st.stdout)
    assert s["live_version"] == "v000001.duckdb" and s["sources"]["charging"]["rows_kept"] == 3
    assert s["last_refresh"]["status"] == "nothing_new"
    human = cli("status", "--warehouse", str(wh))
    assert human.returncode == 0 and human.stdout == "" and "live version v000001.duckdb" in human.stderr


def test_unreadable_input_exits_2(tmp_path: Path):
    src, wh = write_operator(tmp_path / "src"), tmp_path / "wh"
    r = cli("refresh", "--source", str(tmp_path / "nope"), "--warehouse", str(wh), "--json")
    assert r.returncode == 2 and "does not exist" in r.stderr
    err = json.loads(r.stdout)
    assert err == {"command": "refresh", "ok": False, "exit_code": 2, "error": err["error"]}
    (src / "cells.csv").write_text("cell_id\nC1\n")
    r = cli("refresh", "--source", str(src), "--warehouse", str(wh))
    assert r.returncode == 2 and "cells.csv" in r.stderr
    assert not (wh / "CURRENT").exists() and not list((wh / "versions").glob("*"))
    assert cli("refresh", "--warehouse", str(wh)).returncode == 2  # --source is required


def test_failed_checks_exit_1_and_publish_nothing(tmp_path: Path):
    src, wh = write_operator(tmp_path / "src", days=()), tmp_path / "wh"
    write_day(src, "20261101", [usage_line(f"X{i}", "20261101", cell="C9") for i in range(4)])
    r = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
    assert r.returncode == 1, r.stderr
    out = json.loads(r.stdout)
    assert out["status"] == "rejected" and not out["ok"] and out["version"] is None
    assert "reject_rate:charging" in [c["name"] for c in out["checks"] if not c["ok"]]
    assert not (wh / "CURRENT").exists()


def test_a_second_refresh_while_one_holds_the_lock_exits_3(published):
    src, wh = published
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
    with Warehouse(wh).lock():  # the kernel released the killed holder's lock
        pass
    assert Warehouse(wh).live_name() == "v000001.duckdb"


@pytest.mark.slow
def test_sigkill_at_any_step_leaves_the_last_good_version(published):
    """Kill a refresh of the next day at successive steps; after each, CURRENT names v000001 with its data."""
    src, wh = published
    write_day(src, "20261102")
    w = Warehouse(wh)
    for step in ("copied", "landed", "renamed", "current_written"):
        Paused("refresh", "--source", str(src), "--warehouse", str(wh), step=step).kill()
        assert w.live_name() == "v000001.duckdb", step
        assert live_files(wh) == [("charging_20261101.csv",)], step
    debris = sorted(p.name for p in (wh / "versions").iterdir())
    assert debris == ["v000001.duckdb", "v000002.duckdb"] and (wh / "CURRENT.tmp").exists()  # left by the kills

    # killed after the switch: the new version is live and whole
    Paused("refresh", "--source", str(src), "--warehouse", str(wh), step="switched").kill()
    assert w.live_name() == "v000002.duckdb"
    assert live_files(wh) == [("charging_20261101.csv",), ("charging_20261102.csv",)]
    assert not (wh / "CURRENT.tmp").exists()

    r = cli("refresh", "--source", str(src), "--warehouse", str(wh), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["status"] == "nothing_new"
    assert sorted(p.name for p in (wh / "versions").iterdir()) == ["v000001.duckdb", "v000002.duckdb"]
