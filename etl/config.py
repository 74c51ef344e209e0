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
    duckdb_memory_limit: str = "3GB"
    """The most memory DuckDB may use while a refresh builds a version; beyond it, it spills to
    `WAREHOUSE/tmp` (so a refresh of millions of subscribers stays within a small machine)."""
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

    dev_mode: bool = False
    """Development mode: no login; every visitor acts with `dev_roles`, and every page says so in a banner.
    For synthetic data on a developer's machine only (`serve` refuses it on a host other than loopback)."""
    dev_roles: tuple[str, ...] = ()
    """The roles a visitor has in development mode (empty: every role, personal data shown)."""
    users_file: Path | None = None
    """The app's users and roles, with salted password hashes (TOML; default `WAREHOUSE/users.toml`)."""
    secret_key_file: Path | None = None
    """The key that signs session cookies, made with mode 0600 on first use (default `WAREHOUSE/secret_key`)."""
    audit_log_file: Path | None = None
    """Append-only JSON lines of who opened which customer record and when (default `WAREHOUSE/audit.jsonl`)."""
    session_hours: float = 8.0
    """How long a login lasts."""

    @property
    def users_path(self) -> Path:
        """The users file: the configured one, else `users.toml` in the warehouse folder."""
        return Path(self.users_file) if self.users_file else Path(self.warehouse_dir) / "users.toml"

    @property
    def secret_key_path(self) -> Path:
        """The session-signing key file: the configured one, else `secret_key` in the warehouse folder."""
        return Path(self.secret_key_file) if self.secret_key_file else Path(self.warehouse_dir) / "secret_key"

    @property
    def audit_log_path(self) -> Path:
        """The audit log: the configured one, else `audit.jsonl` in the warehouse folder."""
        return Path(self.audit_log_file) if self.audit_log_file else Path(self.warehouse_dir) / "audit.jsonl"

    @property
    def live_alarms_path(self) -> Path:
        """The watched folder of live alarms: the configured one, else `live_alarms/` in the warehouse."""
        return Path(self.live_alarms_dir) if self.live_alarms_dir else Path(self.warehouse_dir) / "live_alarms"

    @classmethod
    def from_env(cls, *, warehouse: str | os.PathLike[str] | None = None, **overrides) -> Settings:
        """Settings from arguments, else the environment (`OPENCEM_WAREHOUSE`, `OPENCEM_TILE_URL`,
        `OPENCEM_LIVE_ALARMS`, `OPENCEM_DEV_MODE`, `OPENCEM_DEV_ROLES`, `OPENCEM_USERS_FILE`,
        `OPENCEM_SECRET_KEY_FILE`, `OPENCEM_AUDIT_LOG`), else defaults."""
        wh = warehouse or os.environ.get("OPENCEM_WAREHOUSE") or "warehouse"
        overrides.setdefault("tile_url", os.environ.get("OPENCEM_TILE_URL") or None)
        if os.environ.get("OPENCEM_DUCKDB_MEMORY_LIMIT"):
            overrides.setdefault("duckdb_memory_limit", os.environ["OPENCEM_DUCKDB_MEMORY_LIMIT"])
        live = os.environ.get("OPENCEM_LIVE_ALARMS")
        overrides.setdefault("live_alarms_dir", Path(live) if live else None)
        overrides.setdefault("dev_mode", os.environ.get("OPENCEM_DEV_MODE", "").strip().lower()
                             in {"1", "true", "yes", "on"})
        dev_roles = os.environ.get("OPENCEM_DEV_ROLES", "")
        overrides.setdefault("dev_roles", tuple(r.strip() for r in dev_roles.split(",") if r.strip()))
        for name, var in (("users_file", "OPENCEM_USERS_FILE"), ("secret_key_file", "OPENCEM_SECRET_KEY_FILE"),
                          ("audit_log_file", "OPENCEM_AUDIT_LOG")):
            value = os.environ.get(var)
            overrides.setdefault(name, Path(value) if value else None)
        return cls(warehouse_dir=Path(wh), **overrides)
