"""Shared pieces of the benchmarks: run a command in a subprocess and measure wall time and peak RSS."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "benchmarks" / "data"
BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Run:
    wall_s: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> dict:
        return json.loads(self.stdout) if self.stdout.strip() else {}


def _tree_rss_kb(pid: int) -> int:
    """Resident set of a process and its children, from /proc (Linux)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
            with open(f"/proc/{p}/task/{p}/children") as fh:
                todo += [int(c) for c in fh.read().split()]
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return total


def run(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Run:
    """Run `cmd`, polling the peak RSS of its process tree every 50 ms."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                            env={**os.environ, **(env or {})})
    peak = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, _tree_rss_kb(proc.pid))
            stop.wait(0.05)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    t.join()
    return Run(wall_s=wall, peak_rss_mb=peak / 1024, returncode=proc.returncode, stdout=out, stderr=err)


def opencem(*args: str) -> list[str]:
    return [str(BIN / "opencem"), *args]


def ensure_generated(customers: int, days: int, *, seed: int = 11, zones: int | None = None) -> Path:
    """Generate (once, cached under benchmarks/data) an operator of the given size, as plain CSV."""
    out = DATA / (f"op_{customers}_{days}_{seed}" + (f"_{zones}z" if zones else ""))
    if not (out / "truth.json").exists():
        print(f"generating {customers} customers x {days} days into {out} ...", file=sys.stderr)
        extra = ["--zones", str(zones)] if zones else []
        r = run(opencem("generate", "--out", str(out), "--customers", str(customers), "--days", str(days),
                        "--seed", str(seed), "--no-compress", *extra))
        if r.returncode:
            raise SystemExit(f"generate failed:\n{r.stderr}")
        print(f"  generated in {r.wall_s:.1f}s, peak RSS {r.peak_rss_mb:.0f} MB", file=sys.stderr)
    return out


def table(rows: list[tuple], headers: tuple[str, ...]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths))] +
                     [fmt.format(*map(str, r)) for r in rows])


def ensure_warehouse(customers: int, days: int, *, zones: int | None = None) -> Path:
    """A warehouse refreshed (once, cached under benchmarks/data) from the generated operator of that size."""
    src = ensure_generated(customers, days, zones=zones)
    wh = DATA / f"wh_{src.name}"
    if not (wh / "CURRENT").exists():
        print(f"refreshing {src} into {wh} ...", file=sys.stderr)
        r = run(opencem("refresh", "--source", str(src), "--warehouse", str(wh), "--json"))
        if r.returncode:
            raise SystemExit(f"refresh failed:\n{r.stderr[-4000:]}")
        print(f"  refreshed in {r.wall_s:.0f}s, peak RSS {r.peak_rss_mb:,.0f} MB", file=sys.stderr)
    return wh


def pct(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank)."""
    values = sorted(values)
    return values[min(len(values) - 1, round(q * (len(values) - 1)))]
