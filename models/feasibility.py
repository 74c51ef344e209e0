"""Order-time feasibility (service qualification, after TM Forum TMF645): can this customer or place get a
service that needs so many Mbit/s in the busy hour?

The cells that serve the place are looked up (a customer: the cells carrying their usage, else the cells
nearest their home; a location: the in-service cells nearest it), and each cell's busy hour (the hour of
day with the highest mean PRB utilisation over the last `BUSY_HOUR_DAYS` loaded days) is read from
`staging.kpi_hourly`. The decision is a pure function of those figures (`qualify`):

- qualified: a serving cell's busy-hour throughput on a bad day (the 10th percentile over the days) meets
  the need, with PRB utilisation under its limit and availability at its target;
- qualified with risk: a typical busy hour (the median) meets the need, but a bad day does not, or the cell
  is congested or unreliable in its busy hour; TMF645 `alternate`, with the bitrate that is safe proposed;
- unqualified: no serving cell meets the need even in a typical busy hour, or nothing serves the place.

The best serving cell decides (a device camps on the best cell it hears); every cell's figures are shown.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import polars as pl

from etl.config import Settings
from etl.errors import UsageError

Result = Literal["qualified", "qualified_with_risk", "unqualified"]
#: A query function: SQL and parameters in, a Polars frame out (the app's reader, or a CLI connection).
Query = Callable[[str, Any], pl.DataFrame]

TMF645_RESULT: dict[str, str] = {"qualified": "qualified", "qualified_with_risk": "alternate",
                                 "unqualified": "unqualified"}
RESULT_LABELS: dict[str, str] = {"qualified": "Qualified", "qualified_with_risk": "Qualified with risk",
                                 "unqualified": "Unqualified"}
#: Typical busy-hour downlink needs of common services (Mbit/s), for the page's choices.
SERVICE_NEEDS: dict[str, float] = {"voice": 0.1, "browsing": 1.0, "video": 5.0, "hd_video": 8.0,
                                   "fixed_wireless": 25.0}
BUSY_HOUR_DAYS = 14
NEAREST_CELLS = 3
MAX_DISTANCE_KM = 5.0
MIN_USAGE_SHARE = 0.10


@dataclass(frozen=True)
class ServiceNeed:
    service: str
    mbps: float


@dataclass(frozen=True)
class CellBusyHour:
    """One serving cell's figures in its busy hour, over the last days loaded."""

    cell_id: str
    site_id: str | None
    technology: str | None
    busy_hour: int | None
    """Hour of day (UTC, 0-23) with the highest mean PRB utilisation; None without KPI data."""
    n_days: int
    dl_throughput_median_mbps: float | None
    dl_throughput_p10_mbps: float | None
    prb_utilisation_pct: float | None
    availability_pct: float | None
    distance_km: float | None = None
    usage_share: float | None = None
    """For a customer: the share of their events this cell carried."""


@dataclass(frozen=True)
class Limits:
    """What a healthy busy hour is (defaults: the warehouse's KPI thresholds)."""

    prb_utilisation_pct: float = 80.0
    availability_pct: float = 99.0


@dataclass(frozen=True)
class CellVerdict:
    cell: CellBusyHour
    result: Result
    reasons: tuple[tuple[str, str], ...]
    """(code, sentence) pairs that say why."""


@dataclass(frozen=True)
class Qualification:
    """The answer: result, why, the figures of every serving cell, and the deciding cell."""

    need: ServiceNeed
    result: Result
    reasons: tuple[tuple[str, str], ...]
    cells: tuple[CellVerdict, ...]
    deciding_cell: str | None
    safe_mbps: float | None
    """The bitrate a bad busy hour still carries on the deciding cell (the alternate proposal)."""
    place: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return RESULT_LABELS[self.result]


def judge_cell(cell: CellBusyHour, need: ServiceNeed, limits: Limits) -> CellVerdict:
    """One cell's verdict for the need (pure)."""
    if cell.busy_hour is None or cell.dl_throughput_median_mbps is None:
        return CellVerdict(cell, "unqualified", (("no_kpi_data", (f"cell {cell.cell_id} has no KPI hours with "
                                                  "throughput in the days looked at")),))
    median, p10 = cell.dl_throughput_median_mbps, cell.dl_throughput_p10_mbps or 0.0
    bh = f"{cell.busy_hour:02d}:00"
    if median < need.mbps:
        return CellVerdict(cell, "unqualified", ((
            "insufficient_throughput",
            (f"cell {cell.cell_id}: a typical busy hour ({bh} UTC) gives {median:.1f} Mbit/s, under the "
            f"{need.mbps:g} Mbit/s {need.service} needs")),))
    risks = []
    if p10 < need.mbps:
        risks.append(("throughput_risk", (f"cell {cell.cell_id}: on a bad day the busy hour ({bh} UTC) gives "
                                         f"{p10:.1f} Mbit/s, under the {need.mbps:g} Mbit/s needed")))
    if cell.prb_utilisation_pct is not None and cell.prb_utilisation_pct >= limits.prb_utilisation_pct:
        risks.append(("congestion", (f"cell {cell.cell_id} is congested in its busy hour: PRB utilisation "
                                    f"{cell.prb_utilisation_pct:.0f}% (limit {limits.prb_utilisation_pct:g}%)")))
    if cell.availability_pct is not None and cell.availability_pct < limits.availability_pct:
        risks.append(("availability", (f"cell {cell.cell_id} is available {cell.availability_pct:.2f}% of its busy "
                                      f"hours (target {limits.availability_pct:g}%)")))
    if risks:
        return CellVerdict(cell, "qualified_with_risk", tuple(risks))
    return CellVerdict(cell, "qualified", ((
        "meets_need", (f"cell {cell.cell_id}: even a bad busy hour ({bh} UTC) gives {p10:.1f} Mbit/s for the "
                      f"{need.mbps:g} Mbit/s needed, PRB {cell.prb_utilisation_pct or 0:.0f}%")),))


RANK: dict[str, int] = {"qualified": 0, "qualified_with_risk": 1, "unqualified": 2}


def qualify(cells: Sequence[CellBusyHour], need: ServiceNeed, *, limits: Limits = Limits(),
            place: dict | None = None) -> Qualification:
    """The qualification of a need against the serving cells' busy-hour figures (pure: no warehouse).

    The best verdict wins; among equals, the cell with the most bad-day throughput.
    """
    if need.mbps <= 0 or not math.isfinite(need.mbps):
        raise UsageError(f"the need must be a positive number of Mbit/s, got {need.mbps}")
    if not cells:
        return Qualification(need, "unqualified", (("no_serving_cell", ("no in-service cell serves this place "
                                                    f"within {MAX_DISTANCE_KM:g} km, and no usage shows one")),),
                             (), None, None, place or {})
    verdicts = sorted((judge_cell(c, need, limits) for c in cells),
                      key=lambda v: (RANK[v.result], -(v.cell.dl_throughput_p10_mbps or 0.0), v.cell.cell_id))
    best = verdicts[0]
    safe = best.cell.dl_throughput_p10_mbps
    reasons = best.reasons
    if best.result == "unqualified" and len(verdicts) > 1:
        reasons = tuple(r for v in verdicts for r in v.reasons)
    return Qualification(need, best.result, reasons, tuple(verdicts), best.cell.cell_id,
                         None if safe is None else round(safe, 2), place or {})


def to_tmf645(q: Qualification, *, qualification_id: str, at: datetime) -> dict[str, Any]:
    """The answer as a TMF645 `CheckServiceQualification` with one `serviceQualificationItem`."""
    item: dict[str, Any] = {
        "id": "1",
        "state": "done",
        "qualificationResult": TMF645_RESULT[q.result],
        "service": {
            "serviceSpecification": {"name": q.need.service},
            "serviceCharacteristic": [{"name": "busyHourDownlinkMbps", "value": q.need.mbps}],
            "place": [q.place] if q.place else [],
        },
        "eligibilityUnavailabilityReason": [] if q.result == "qualified" else
        [{"code": code, "label": label} for code, label in q.reasons],
        "opencemQualification": q.result,
        "opencemReasons": [{"code": code, "label": label} for code, label in q.reasons],
        "opencemServingCells": [
            {**asdict(v.cell), "result": v.result, "reasons": [r for _, r in v.reasons]} for v in q.cells],
    }
    if q.result == "qualified_with_risk" and q.safe_mbps is not None:
        item["alternateServiceProposal"] = [{
            "id": "1",
            "alternateService": {
                "serviceSpecification": {"name": q.need.service},
                "serviceCharacteristic": [{"name": "busyHourDownlinkMbps", "value": q.safe_mbps}],
            },
        }]
    return {
        "@type": "CheckServiceQualification",
        "id": qualification_id,
        "checkServiceQualificationDate": at.replace(microsecond=0).isoformat() + "Z",
        "state": "done",
        "qualificationResult": TMF645_RESULT[q.result],
        "serviceQualificationItem": [item],
    }


# ------------------------------------------------------------------------------------ warehouse figures


def serving_cells_for_location(query: Query, lat: float, lon: float, *, limit: int = NEAREST_CELLS
                               ) -> pl.DataFrame:
    """The in-service cells nearest a point (within `MAX_DISTANCE_KM`): cell_id, distance_km."""
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise UsageError(f"latitude {lat} / longitude {lon} is not a place on Earth")
    return query(
        """
        SELECT cell_id, distance_km, NULL::DOUBLE AS usage_share FROM (
            SELECT cell_id, 2 * 6371.0 * asin(sqrt(
                     pow(sin(radians(latitude - $lat) / 2), 2)
                     + cos(radians($lat)) * cos(radians(latitude)) * pow(sin(radians(longitude - $lon) / 2), 2)
                   )) AS distance_km
            FROM staging.cells WHERE is_in_service AND latitude IS NOT NULL AND longitude IS NOT NULL)
        WHERE distance_km <= $max_km ORDER BY distance_km, cell_id LIMIT $limit
        """,
        {"lat": lat, "lon": lon, "max_km": MAX_DISTANCE_KM, "limit": limit},
    )


def customer_place(query: Query, customer_id: str) -> dict:
    """Where a customer is served: their home coordinates (if any) and the cells carrying their usage."""
    df = query("SELECT customer_id, home_latitude, home_longitude, home_zone_id FROM staging.customers "
               "WHERE customer_id = $c", {"c": customer_id})
    if df.height == 0:
        raise UsageError(f"there is no customer {customer_id} in the live version (staging.customers)")
    return df.row(0, named=True)


def serving_cells_for_customer(query: Query, customer_id: str, *, limit: int = NEAREST_CELLS) -> pl.DataFrame:
    """The cells carrying at least `MIN_USAGE_SHARE` of the customer's usage (their busiest first), else the
    in-service cells nearest their home."""
    place = customer_place(query, customer_id)
    used = query(
        "SELECT cell_id, NULL::DOUBLE AS distance_km, share_of_events AS usage_share "
        "FROM marts.subscriber_cell_usage WHERE customer_id = $c AND share_of_events >= $min "
        "ORDER BY share_of_events DESC, cell_id LIMIT $limit",
        {"c": customer_id, "min": MIN_USAGE_SHARE, "limit": limit})
    if used.height:
        return used
    if place.get("home_latitude") is not None and place.get("home_longitude") is not None:
        return serving_cells_for_location(query, place["home_latitude"], place["home_longitude"], limit=limit)
    return used


def busy_hour_figures(query: Query, serving: pl.DataFrame, *, days: int = BUSY_HOUR_DAYS) -> list[CellBusyHour]:
    """Each serving cell's busy hour over its last `days` loaded days, and its figures in that hour."""
    if serving.height == 0:
        return []
    ids = serving["cell_id"].to_list()
    df = query(
        """
        WITH k AS (
            SELECT k.cell_id, hour(k.period_start) AS hod, k.period_start, k.dl_throughput_mbps,
                   k.prb_utilisation_pct, k.available_s, k.period_s
            FROM staging.kpi_hourly k
            JOIN (SELECT cell_id, max(period_start) AS last_at FROM staging.kpi_hourly
                  WHERE list_contains($ids, cell_id) GROUP BY cell_id) m USING (cell_id)
            WHERE list_contains($ids, k.cell_id) AND k.period_start > m.last_at - to_days($days)),
        byhour AS (
            SELECT cell_id, hod, avg(prb_utilisation_pct) AS prb, count(*) AS n
            FROM k GROUP BY ALL),
        bh AS (SELECT cell_id, arg_max(hod, prb) AS busy_hour FROM byhour GROUP BY cell_id)
        SELECT bh.cell_id, bh.busy_hour, count(*) AS n_days,
               median(k.dl_throughput_mbps) AS dl_throughput_median_mbps,
               quantile_cont(k.dl_throughput_mbps, 0.1) AS dl_throughput_p10_mbps,
               avg(k.prb_utilisation_pct) AS prb_utilisation_pct,
               100 * sum(k.available_s) / nullif(sum(k.period_s), 0) AS availability_pct
        FROM bh JOIN k ON k.cell_id = bh.cell_id AND k.hod = bh.busy_hour
        GROUP BY ALL
        """,
        {"ids": ids, "days": days},
    )
    cells = query("SELECT cell_id, site_id, technology FROM staging.cells WHERE list_contains($ids, cell_id)",
                  {"ids": ids})
    info = {r["cell_id"]: r for r in cells.to_dicts()}
    figs = {r["cell_id"]: r for r in df.to_dicts()}
    out = []
    for r in serving.to_dicts():
        f, i = figs.get(r["cell_id"], {}), info.get(r["cell_id"], {})
        out.append(CellBusyHour(
            cell_id=r["cell_id"], site_id=i.get("site_id"), technology=i.get("technology"),
            busy_hour=f.get("busy_hour"), n_days=int(f.get("n_days") or 0),
            dl_throughput_median_mbps=_round(f.get("dl_throughput_median_mbps")),
            dl_throughput_p10_mbps=_round(f.get("dl_throughput_p10_mbps")),
            prb_utilisation_pct=_round(f.get("prb_utilisation_pct")),
            availability_pct=_round(f.get("availability_pct"), 3),
            distance_km=_round(r.get("distance_km"), 3), usage_share=_round(r.get("usage_share"), 4),
        ))
    return out


def _round(value: Any, digits: int = 2) -> float | None:
    return None if value is None else round(float(value), digits)


def check(query: Query, *, need: ServiceNeed, customer_id: str | None = None, lat: float | None = None,
          lon: float | None = None, limits: Limits = Limits()) -> Qualification:
    """Qualify a customer (`customer_id`) or a location (`lat`, `lon`) for a need, on the live version."""
    if customer_id:
        serving = serving_cells_for_customer(query, customer_id)
        place = {"@type": "customer", "id": customer_id}
    elif lat is not None and lon is not None:
        serving = serving_cells_for_location(query, lat, lon)
        place = {"@type": "GeographicLocation", "geometryType": "point",
                 "geometry": [{"x": lon, "y": lat}]}
    else:
        raise UsageError("a feasibility check needs a customer id, or a latitude and a longitude")
    return qualify(busy_hour_figures(query, serving), need, limits=limits, place=place)


def limits_from(settings: Settings) -> Limits:
    t = settings.kpi_thresholds
    return Limits(prb_utilisation_pct=t.get("prb_utilisation_pct", 80.0),
                  availability_pct=t.get("availability_pct", 99.0))


def cli_feasibility(args: argparse.Namespace, settings: Settings) -> int:
    """`opencem feasibility (--customer-id ID | --lat L --lon L) --service S --mbps M [--json]`."""
    from etl.publish import Warehouse

    if args.mbps is None or args.mbps <= 0:
        raise UsageError(f"--mbps must be a positive number, got {args.mbps}")
    con = Warehouse(settings.warehouse_dir).open_current()

    def query(sql: str, params: Any = None) -> pl.DataFrame:
        cur = con.cursor()
        try:
            return pl.from_arrow(cur.sql(sql, params=params or None).to_arrow_table())
        finally:
            cur.close()

    try:
        q = check(query, need=ServiceNeed(args.service, args.mbps), customer_id=args.customer_id,
                  lat=args.lat, lon=args.lon, limits=limits_from(settings))
    finally:
        con.close()
    now = datetime.now(UTC).replace(tzinfo=None)
    doc = to_tmf645(q, qualification_id=f"Q{now:%Y%m%dT%H%M%S}", at=now)
    if getattr(args, "json", False):
        print(json.dumps(doc, default=str, sort_keys=True))
    else:
        lines = [f"{q.label}: {q.need.service} at {q.need.mbps:g} Mbit/s in the busy hour"]
        lines += [f"  - {label}" for _, label in q.reasons]
        if q.result == "qualified_with_risk" and q.safe_mbps is not None:
            lines.append(f"  safe in a bad busy hour: {q.safe_mbps:g} Mbit/s")
        print("\n".join(lines), file=sys.stderr)
    return 0
