"""Order-time feasibility: the decision from busy-hour figures (pure), the figures from the warehouse, and
`opencem feasibility --json` in TMF645's shape."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import polars as pl
import pytest

from app.warehouse import WarehouseReader
from etl.cli import main
from etl.errors import UsageError
from models import feasibility as fz

NEED = fz.ServiceNeed("video", 5.0)


def cell(cell_id: str = "C1", *, median: float | None = 20.0, p10: float | None = 12.0, prb: float | None = 40.0,
         availability: float | None = 100.0, busy_hour: int | None = 19) -> fz.CellBusyHour:
    return fz.CellBusyHour(cell_id=cell_id, site_id="S1", technology="4G", busy_hour=busy_hour, n_days=14,
                           dl_throughput_median_mbps=median, dl_throughput_p10_mbps=p10, prb_utilisation_pct=prb,
                           availability_pct=availability)


def test_a_cell_with_room_on_a_bad_day_qualifies() -> None:
    q = fz.qualify([cell()], NEED)
    assert q.result == "qualified" and q.deciding_cell == "C1"
    assert [c for c, _ in q.reasons] == ["meets_need"] and "19:00" in q.reasons[0][1]


@pytest.mark.parametrize(("kwargs", "code"), [
    ({"p10": 3.0}, "throughput_risk"),
    ({"prb": 85.0}, "congestion"),
    ({"availability": 97.5}, "availability"),
])
def test_a_typical_busy_hour_that_fits_but_with_a_weakness_is_a_risk(kwargs, code) -> None:
    q = fz.qualify([cell(**kwargs)], NEED)
    assert q.result == "qualified_with_risk"
    assert [c for c, _ in q.reasons] == [code]


def test_too_little_throughput_or_no_data_or_no_cell_is_unqualified() -> None:
    assert fz.qualify([cell(median=4.0, p10=2.0)], NEED).result == "unqualified"
    assert fz.qualify([cell(median=None, p10=None, busy_hour=None)], NEED).reasons[0][0] == "no_kpi_data"
    none = fz.qualify([], NEED)
    assert none.result == "unqualified" and none.reasons[0][0] == "no_serving_cell"
    with pytest.raises(UsageError):
        fz.qualify([cell()], fz.ServiceNeed("video", 0))


def test_the_best_serving_cell_decides_and_every_cell_is_judged() -> None:
    q = fz.qualify([cell("weak", median=3.0, p10=1.0), cell("risky", p10=4.0), cell("good", p10=9.0)], NEED)
    assert q.result == "qualified" and q.deciding_cell == "good"
    assert {v.cell.cell_id: v.result for v in q.cells} == {
        "weak": "unqualified", "risky": "qualified_with_risk", "good": "qualified"}
    worse = fz.qualify([cell("weak", median=3.0, p10=1.0), cell("risky", p10=4.0)], NEED)
    assert worse.result == "qualified_with_risk" and worse.safe_mbps == 4.0


def test_the_answer_reads_as_tmf645() -> None:
    q = fz.qualify([cell(p10=4.0)], NEED, place={"@type": "customer", "id": "CU1"})
    doc = fz.to_tmf645(q, qualification_id="Q1", at=datetime(2026, 10, 28, 12))
    item = doc["serviceQualificationItem"][0]
    assert doc["qualificationResult"] == item["qualificationResult"] == "alternate"
    assert item["opencemQualification"] == "qualified_with_risk"
    assert item["eligibilityUnavailabilityReason"][0]["code"] == "throughput_risk"
    proposal = item["alternateServiceProposal"][0]["alternateService"]["serviceCharacteristic"][0]
    assert proposal == {"name": "busyHourDownlinkMbps", "value": 4.0}
    assert item["service"]["place"] == [{"@type": "customer", "id": "CU1"}]
    ok = fz.to_tmf645(fz.qualify([cell()], NEED), qualification_id="Q2", at=datetime(2026, 10, 28))
    assert ok["qualificationResult"] == "qualified"
    assert ok["serviceQualificationItem"][0]["eligibilityUnavailabilityReason"] == []


@pytest.fixture(scope="module")
def db(sample_warehouse: Path) -> WarehouseReader:
    return WarehouseReader(sample_warehouse)


def test_busy_hour_figures_are_those_of_the_cells_busiest_hour(db: WarehouseReader) -> None:
    cell_id = db.query("SELECT cell_id FROM staging.cells WHERE is_in_service ORDER BY cell_id LIMIT 1")["cell_id"][0]
    [figures] = fz.busy_hour_figures(db.query, pl.DataFrame({"cell_id": [cell_id], "distance_km": [0.1],
                                                            "usage_share": [None]}))
    # Recount the busy hour with Polars from the raw hours of the same days.
    k = db.query("SELECT period_start, prb_utilisation_pct, dl_throughput_mbps FROM staging.kpi_hourly "
                 "WHERE cell_id = ?", [cell_id])
    k = k.filter(pl.col("period_start") > k["period_start"].max() - pl.duration(days=fz.BUSY_HOUR_DAYS))
    by_hour = k.group_by(pl.col("period_start").dt.hour().alias("h")).agg(pl.col("prb_utilisation_pct").mean())
    assert figures.busy_hour == by_hour.sort("prb_utilisation_pct", descending=True)["h"][0]
    at_bh = k.filter(pl.col("period_start").dt.hour() == figures.busy_hour)
    assert figures.n_days == at_bh.height
    assert figures.dl_throughput_median_mbps == pytest.approx(at_bh["dl_throughput_mbps"].median(), abs=0.01)


def test_a_customer_is_served_by_the_cells_that_carry_their_usage(db: WarehouseReader) -> None:
    customer = db.query("SELECT customer_id FROM marts.subscriber_cell_usage WHERE share_of_events >= 0.5 "
                        "ORDER BY customer_id LIMIT 1")["customer_id"][0]
    q = fz.check(db.query, need=NEED, customer_id=customer)
    main_cell = db.query("SELECT cell_id FROM marts.subscriber_cell_usage WHERE customer_id = ? "
                         "ORDER BY share_of_events DESC LIMIT 1", [customer])["cell_id"][0]
    assert q.cells[0].cell.cell_id == main_cell or main_cell in {v.cell.cell_id for v in q.cells}
    assert all(v.cell.usage_share and v.cell.usage_share >= fz.MIN_USAGE_SHARE for v in q.cells)
    with pytest.raises(UsageError, match="no customer"):
        fz.check(db.query, need=NEED, customer_id="NOBODY")


def test_a_place_is_served_by_its_nearest_cells_and_far_away_by_none(db: WarehouseReader) -> None:
    site = db.query("SELECT latitude, longitude FROM staging.cells WHERE is_in_service ORDER BY cell_id LIMIT 1"
                    ).row(0, named=True)
    q = fz.check(db.query, need=NEED, lat=site["latitude"], lon=site["longitude"])
    assert len(q.cells) == fz.NEAREST_CELLS and q.cells[0].cell.distance_km is not None
    assert all(v.cell.distance_km <= fz.MAX_DISTANCE_KM for v in q.cells)
    assert fz.check(db.query, need=NEED, lat=0.0, lon=0.0).result == "unqualified"
    # A need above every cell's throughput can never be met.
    assert fz.check(db.query, need=fz.ServiceNeed("x", 10_000.0), lat=site["latitude"],
                    lon=site["longitude"]).result == "unqualified"


def test_opencem_feasibility_json(sample_warehouse: Path, capsys) -> None:
    assert main(["feasibility", "--warehouse", str(sample_warehouse), "--customer-id", "CU0000020",
                 "--service", "video", "--mbps", "5", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["@type"] == "CheckServiceQualification"
    assert doc["qualificationResult"] in ("qualified", "alternate", "unqualified")
    assert doc["serviceQualificationItem"][0]["opencemServingCells"]
    assert main(["feasibility", "--warehouse", str(sample_warehouse), "--json"]) == 2
    assert "customer id" in json.loads(capsys.readouterr().out)["error"]
