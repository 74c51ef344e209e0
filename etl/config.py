"""Settings: where the warehouse lives and the few choices an operator makes. Read once, passed in."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Engine = Literal["duckdb", "spark"]


@dataclass(frozen=True)
class Settings:
    """Everything a command needs to know besides its own arguments."""

    warehouse_dir: Path = Path("warehouse")
    currency: str = "EUR"
    keep_versions: int = 3
    """How many published versions stay on disk (the live one included)."""
    engine: Engine = "duckdb"
    tile_url: str | None = None
    """An operator's own raster tile server (`https://tiles.example/{z}/{x}/{y}.png`); none by default, so
    maps draw zone outlines on white and nothing leaves the machine."""
    max_reject_rate: float = 0.25
    """A source whose share of quarantined rows in one refresh exceeds this fails the checks."""
    kpi_thresholds: dict[str, float] = field(
        default_factory=lambda: {
            "availability_pct": 99.0,
            "accessibility_pct": 98.0,
            "drop_rate_pct": 2.0,
            "dl_throughput_mbps": 10.0,
            "latency_ms": 60.0,
            "prb_utilisation_pct": 80.0,
        }
    )

    live_alarms_dir: Path | None = None
    """The watched folder of TMF642 alarm files between refreshes (default `WAREHOUSE/live_alarms`)."""
    assurance_recent_hours: float = 72.0
    """Alarms cleared less than this many hours before the data's as-of time are "recent" on /assurance."""
    assurance_poll_seconds: float = 3.0
    """How often the assurance page looks at the watched folder for new or cleared alarms."""

    @property
    def live_alarms_path(self) -> Path:
        """The watched folder of live alarms: the configured one, else `live_alarms/` in the warehouse."""
        return Path(self.live_alarms_dir) if self.live_alarms_dir else Path(self.warehouse_dir) / "live_alarms"

    @classmethod
    def from_env(cls, *, warehouse: str | os.PathLike[str] | None = None, **overrides) -> Settings:
        """Settings from arguments, else the environment (`OPENCEM_WAREHOUSE`, `OPENCEM_TILE_URL`,
        `OPENCEM_LIVE_ALARMS`), else defaults."""
        wh = warehouse or os.environ.get("OPENCEM_WAREHOUSE") or "warehouse"
        overrides.setdefault("tile_url", os.environ.get("OPENCEM_TILE_URL") or None)
        live = os.environ.get("OPENCEM_LIVE_ALARMS")
        overrides.setdefault("live_alarms_dir", Path(live) if live else None)
        return cls(warehouse_dir=Path(wh), **overrides)
