"""App-wide literals: KPI definitions, quadrant names, colours, labels. One place to change them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

APP_TITLE = "opencem"


@dataclass(frozen=True)
class Kpi:
    column: str
    label: str
    unit: str
    better: Literal["higher", "lower"]
    fmt: str

    @property
    def legend(self) -> str:
        """The colour-bar title: what the KPI is and which way is good."""
        return f"{self.label} ({self.unit})<br><sub>{self.better} is better</sub>"

    @property
    def colorscale(self) -> str:
        # Red is bad in both directions: reverse the scale when lower values are better.
        return "RdYlGn" if self.better == "higher" else "RdYlGn_r"


KPIS: dict[str, Kpi] = {
    k.column: k
    for k in (
        Kpi("experience_index", "Experience index", "0-100", "higher", ".0f"),
        Kpi("availability_pct", "Availability", "%", "higher", ".2f"),
        Kpi("accessibility_pct", "Accessibility", "%", "higher", ".2f"),
        Kpi("drop_rate_pct", "Drop rate", "%", "lower", ".2f"),
        Kpi("dl_throughput_mbps", "DL throughput", "Mbit/s", "higher", ".1f"),
        Kpi("latency_ms", "Latency", "ms", "lower", ".0f"),
        Kpi("prb_utilisation_pct", "PRB utilisation", "%", "lower", ".0f"),
    )
}

SERVICES = ("voice", "sms", "data", "roaming", "vas", "recurring")
SERVICE_LABELS = {"voice": "Voice", "sms": "SMS", "data": "Data", "roaming": "Roaming", "vas": "Value-added",
                  "recurring": "Recurring fees"}
PAYMENT_TYPES = ("prepaid", "postpaid")
PERIODS = {"7": "Last 7 days", "14": "Last 14 days", "28": "Last 28 days", "all": "All loaded days"}

QUADRANTS = {
    "invest": ("High value, poor experience: invest first", "#d6336c"),
    "protect": ("High value, good experience: protect", "#2f9e44"),
    "maintain": ("Low value, good experience: maintain", "#1c7ed6"),
    "monitor": ("Low value, poor experience: monitor", "#f08c00"),
}

MAP_HEIGHT = 430
OUTLINE_COLOUR = "#495057"
