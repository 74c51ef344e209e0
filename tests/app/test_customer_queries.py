"""Customer search, the customer queries and the care answer: pure functions on literal values, and the
queries on the sample warehouse against what truth.json says was planted."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import duckdb
import polars as pl
import pytest

from app import queries_customer as qc
from app.auth import MASK, Viewer
from app.warehouse import WarehouseReader
from etl.config import Settings

ROOT = Path(__file__).resolve().parents[2]
TRUTH = json.loads((ROOT / "data" / "sample" / "truth.json").read_text())
CARE = Viewer("carla", frozenset({"care"}))
PLANNER = Viewer("piet", frozenset({"planner"}))
THRESHOLDS = Settings().kpi_thresholds
NOW = dt.datetime(2026, 10, 29)
SINCE = NOW - dt.timedelta(hours=72)


@pytest.fixture(scope="module")
def db(sample_warehouse: Path) -> WarehouseReader:
    return WarehouseReader(sample_warehouse)


@pytest.fixture(scope="module")
def con(sample_warehouse: Path):
    c = duckdb.connect(str(next((sample_warehouse / "versions").glob("*.duckdb"))), read_only=True)
    yield c
    c.close()


# ------------------------------------------------------------------------------------------- search


@pytest.mark.parametrize(("text", "kind", "value"), [
    ("+39 312 345 6789", "msisdn", "393123456789"),
    ("0039-312-345-6789", "msisdn", "393123456789"),
    ("(312) 345.6789", "msisdn", "3123456789"),
    ("  CU0000042 ", "customer_id", "CU0000042"),
    ("cu-42", "customer_id", "CU42"),
    ("Ana D'Angelo", "name", "ana d angelo"),
    ("José  MÜLLER", "name", "jose muller"),
    ("12 34", "too_short", "1234"),
    ("a", "too_short", ""),
    ("", "empty", ""),
])
def test_parse_search_tells_numbers_ids_and_names_apart(text: str, kind: str, value: str) -> None:
    q = qc.parse_search(text)
    assert (q.kind, q.value) == (kind, value)


def _msisdn_of(con, customer_id: str) -> str:
    return con.execute("SELECT msisdn FROM staging.subscriptions WHERE customer_id = ? ORDER BY subscription_id "
                       "LIMIT 1", [customer_id]).fetchone()[0]


def test_a_number_is_found_in_any_notation(db, con) -> None:
    customer = TRUTH["outages"][0]["affected_customer_ids"][0]
    msisdn = _msisdn_of(con, customer)
    assert msisdn.startswith("+39"), "the sample's numbers are Italian, +39 and ten digits"
    national = msisdn[3:]
    for text in (msisdn, f"+39 {national[:3]} {national[3:6]} {national[6:]}", f"0039{national}",
                 f"{national[:3]}-{national[3:]}", f"({national[:3]}) {national[3:]}"):
        result = qc.search_customers(db, text, viewer=CARE)
        assert customer in result.rows["customer_id"].to_list(), text
        assert result.rows["matched_on"][0] == "number"
    assert qc.search_customers(db, national[-5:], viewer=CARE).total == 0, "five digits are not a number"


def test_names_and_ids_are_found_and_the_planner_searches_by_id_only(db, con) -> None:
    customer_id, name = con.execute(
        "SELECT customer_id, name FROM staging.customers WHERE name LIKE '% %' ORDER BY customer_id LIMIT 1 "
        "OFFSET 7").fetchone()
    first, last = name.split(" ", 1)
    by_name = qc.search_customers(db, f"{last.lower()} {first[:3]}", viewer=CARE)
    assert customer_id in by_name.rows["customer_id"].to_list()
    assert all(first[:3].lower() in n.lower() for n in by_name.rows["name"].to_list())
    by_id = qc.search_customers(db, customer_id.lower(), viewer=PLANNER)
    assert by_id.rows["customer_id"].to_list()[0] == customer_id
    assert set(by_id.rows["name"].to_list()) == {MASK} and set(by_id.rows["msisdns"].to_list()) <= {MASK, None}
    refused = qc.search_customers(db, name, viewer=PLANNER)
    assert refused.total == 0 and "customer id only" in refused.note
    wide = qc.search_customers(db, "CU0", viewer=CARE, limit=5)
    assert wide.rows.height == 5 and wide.total == TRUTH["generator"]["customers"] and "first 5" in wide.note


# ------------------------------------------------------------------------------------- the record


def test_the_record_is_masked_in_the_query_layer(db, con) -> None:
    customer = TRUTH["outages"][1]["affected_customer_ids"][0]
    name, address = con.execute("SELECT name, address FROM staging.customers WHERE customer_id = ?",
                                [customer]).fetchone()
    shown, hidden = qc.customer_profile(db, customer, viewer=CARE), qc.customer_profile(db, customer, viewer=PLANNER)
    assert (shown["name"], shown["address"]) == (name, address)
    assert (hidden["name"], hidden["address"], hidden["home_latitude"]) == (MASK, MASK, None)
    assert shown["segment"] == hidden["segment"] and shown["n_subscriptions"] == hidden["n_subscriptions"]
    subs = qc.customer_subscriptions(db, customer, viewer=PLANNER)
    assert subs.height and set(subs["msisdn"].to_list()) == {MASK}
    assert qc.customer_profile(db, "NOPE", viewer=CARE) is None


def test_usage_by_day_and_service_matches_charging(db, con) -> None:
    customer = TRUTH["outages"][2]["affected_customer_ids"][0]
    daily = qc.customer_usage_daily(db, customer)
    n, amount = con.execute("SELECT count(*), sum(amount) FROM staging.charging WHERE customer_id = ?",
                            [customer]).fetchone()
    assert daily["n_events"].sum() == n and daily["amount"].sum() == pytest.approx(amount)
    assert daily.select("day", "service").is_unique().all()


def test_cells_share_and_where_the_customer_is(db) -> None:
    customer = TRUTH["outages"][2]["affected_customer_ids"][0]
    cells = qc.customer_cells(db, customer)
    assert cells.height and cells["share_recent"].sum() == pytest.approx(1.0)
    where = qc.where_cells(cells)
    assert where["cell_id"][0] == cells.sort("share_recent", descending=True)["cell_id"][0]
    assert (where["share"].tail(where.height - 1) >= qc.MIN_CELL_SHARE).all()


# ----------------------------------------------------------------------------------- the care answer


def _alarm(alarm_id: str = "A1", *, raised: dt.datetime, cleared: dt.datetime | None, affects: bool = True,
           sa: bool = True, hit: tuple[str, ...] = ("C1-1",), n: int = 40) -> qc.AlarmFact:
    return qc.AlarmFact(alarm_id=alarm_id, alarm_type="equipmentAlarm", perceived_severity="critical",
                        probable_cause="powerProblem", specific_problem="Mains failure", service_affecting=sa,
                        raised_at=raised, cleared_at=cleared, alarmed_object_type="site", alarmed_object_id="S1",
                        site_id="S1", cell_ids=("C1-1", "C1-2"), zone_ids=("Z1",), zone_names="Old Town",
                        n_customers_affected=n, affects_customer=affects, share_on_alarm_cells=0.8,
                        customer_cells_hit=hit)


HOME_CELL = qc.CellFact("C1-1", 0.8, "S1", "Z1", "Old Town")


def _facts(alarms=(), breaches=(), cells=(HOME_CELL,)) -> qc.CareFacts:
    return qc.CareFacts(customer_id="CU1", now=NOW, since=SINCE, cells=tuple(cells), alarms=tuple(alarms),
                        breaches=tuple(breaches), kpi_summary={"availability_pct": 99.9, "drop_rate_pct": 0.4},
                        kpi_hours=(72, 72))


def test_an_open_outage_is_the_answer_with_place_time_others_and_advice() -> None:
    a = qc.care_answer(_facts([_alarm(raised=NOW - dt.timedelta(hours=5), cleared=None)]))
    assert a.status == "outage_now"
    assert "site S1" in a.sentence and "Old Town (Z1)" in a.sentence and "A1" in a.sentence
    assert "28 Oct 19:00 UTC" in a.sentence and "still open" in a.sentence and "39 other customers" in a.sentence
    assert a.advice.startswith("Tell the customer: there is a known fault")


def test_a_cleared_outage_in_the_window_comes_after_an_open_one() -> None:
    cleared = _alarm("A-old", raised=NOW - dt.timedelta(hours=30), cleared=NOW - dt.timedelta(hours=24))
    a = qc.care_answer(_facts([cleared]))
    assert a.status == "outage_recent" and "now cleared" in a.sentence and "is fixed" in a.advice
    both = qc.care_answer(_facts([cleared, _alarm("A-new", raised=NOW - dt.timedelta(hours=2), cleared=None,
                                                  affects=False, n=7)]))
    assert both.status == "outage_now" and "A-new" in both.sentence and "A-old" in both.text
    assert "affects 7 customers" in both.sentence, "the customer is not among those counted: all are others"


def test_an_older_outage_is_named_after_a_no_problem_answer() -> None:
    old = _alarm("A-10d", raised=NOW - dt.timedelta(days=10), cleared=NOW - dt.timedelta(days=10, hours=-6))
    a = qc.care_answer(_facts([old]))
    assert a.status == "none" and a.sentence.startswith("No network problem found on their cells")
    assert "A-10d" in a.earlier[0] and "A-10d" in a.text


def test_minor_alarms_do_not_make_a_problem_but_are_listed() -> None:
    minor = _alarm("A-warn", raised=NOW - dt.timedelta(hours=3), cleared=None, sa=False)
    a = qc.care_answer(_facts([minor]))
    assert a.status == "none" and "Not service-affecting" in a.evidence[0] and "A-warn" in a.evidence[0]


def test_a_kpi_breach_without_alarm_is_degraded_service() -> None:
    breach = qc.BreachFact(cell_id="C1-1", kpi="dl_throughput_mbps", value=4.2, target=10.0, n_hours_breached=60,
                           n_hours=72, first_at=SINCE, last_at=NOW - dt.timedelta(hours=1),
                           worst_at=NOW - dt.timedelta(hours=4), worst_value=1.3, share=0.8, site_id="S1",
                           zone_id="Z1", zone_name="Old Town", n_sharing=120)
    a = qc.care_answer(_facts(breaches=[breach]))
    assert a.status == "degraded" and "DL throughput on cell C1-1" in a.sentence and "4.2 Mbit/s" in a.sentence
    assert "60 of 72 hours" in a.sentence and "120 other customers" in a.sentence and "congested" in a.advice


def test_no_cells_means_no_evidence() -> None:
    a = qc.care_answer(_facts(cells=()))
    assert a.status == "no_data" and "no cell to check" in a.sentence


def _kpi_rows(cell: str, values: list[float | None], *, column: str = "availability_pct") -> pl.DataFrame:
    hours = [SINCE + dt.timedelta(hours=i) for i in range(len(values))]
    rows = []
    for h, v in zip(hours, values, strict=True):
        if v is None:
            continue  # the cell did not report this hour
        row = {"cell_id": cell, "period_start": h, "availability_pct": 100.0, "accessibility_pct": 99.5,
               "drop_rate_pct": 0.5, "dl_throughput_mbps": 30.0, "latency_ms": 20.0, "prb_utilisation_pct": 40.0,
               "traffic_volume_mb": 100.0, "period_s": 3600.0, "available_s": 3600.0, "traffic_weight_mb": 100.0,
               "throughput_weight_s": 100.0 * 8 / 30.0}
        row[column] = v
        if column == "availability_pct":
            row["available_s"] = 36.0 * v
        rows.append(row)
    return pl.DataFrame(rows, schema=qc.KPI_HOURLY_SCHEMA)


def test_cell_breaches_aggregate_the_window_as_the_marts_do() -> None:
    down = _kpi_rows("C1", [100.0] * 60 + [0.0] * 6 + [100.0] * 6)  # a six-hour outage: 91.7% over 72 h
    fine = _kpi_rows("C2", [100.0] * 70 + [98.0] * 2)  # two slightly short hours: 99.94%, above target
    breaches = qc.cell_breaches(pl.concat([down, fine]), THRESHOLDS, since=SINCE, until=NOW)
    assert [(b.cell_id, b.kpi) for b in breaches] == [("C1", "availability_pct")]
    b = breaches[0]
    assert b.value == pytest.approx(100 * 66 / 72) and b.n_hours_breached == 6 and b.n_hours == 72
    assert b.first_at == SINCE + dt.timedelta(hours=60) and b.worst_value == 0.0
    slow = _kpi_rows("C3", [5.0] * 72, column="dl_throughput_mbps").with_columns(throughput_weight_s=100 * 8 / 5.0)
    assert [(b.kpi, round(b.value, 1)) for b in qc.cell_breaches(slow, THRESHOLDS, since=SINCE, until=NOW)] == [
        ("dl_throughput_mbps", 5.0)]


# -------------------------------------------------------------- the care answer on the planted outages


def _answer(db, customer_id: str) -> qc.CareAnswer:
    now = qc.data_now(db)
    view = qc.network_view(db, customer_id, now)
    return qc.care_answer(qc.care_facts(db, customer_id, view, THRESHOLDS))


def test_data_now_is_the_end_of_the_loaded_data(db) -> None:
    assert qc.data_now(db) == dt.datetime.fromisoformat(TRUTH["as_of"]) + dt.timedelta(seconds=1)


@pytest.mark.slow
def test_every_customer_of_a_planted_outage_hears_of_that_outage(db) -> None:
    """Must hold: for every customer truth.json lists as affected by a planted outage, the answer names it
    (an open or recent one as the answer itself or beside it; an older one as an earlier outage)."""
    missed = []
    for outage in TRUTH["outages"]:
        for customer in outage["affected_customer_ids"]:
            a = _answer(db, customer)
            named = outage["alarm_id"] in a.text and outage["site_id"] in a.text
            if outage["kind"] == "still_open":
                named = named and a.status == "outage_now"
            elif outage["kind"] == "cleared_in_last_72h":
                named = named and a.status in ("outage_now", "outage_recent")
            else:
                named = named and any(outage["alarm_id"] in e for e in a.earlier)
            if not named:
                missed.append((outage["kind"], customer, a.status, a.sentence[:120]))
    assert not missed, missed[:5]


def test_a_customer_without_problem_is_told_none_was_found(db, con) -> None:
    """A customer on healthy cells (checked here independently: no alarm on them in the window, and every
    hourly KPI within target in the window) hears that no problem was found."""
    since, now = dt.datetime(2026, 10, 26), dt.datetime(2026, 10, 29)
    healthy = con.execute(
        """
        WITH bad AS (
            SELECT DISTINCT cell_id FROM staging.kpi_hourly
            WHERE period_start >= $since AND (availability_pct < 99 OR accessibility_pct < 98 OR drop_rate_pct > 2
                  OR dl_throughput_mbps < 10 OR latency_ms > 60 OR prb_utilisation_pct > 80)
            UNION SELECT cell_id FROM staging.alarm_cells ac JOIN staging.alarms a USING (alarm_id)
            WHERE coalesce(a.cleared_at, $now) >= $since
        )
        SELECT customer_id FROM marts.customer_usage_hourly GROUP BY customer_id
        HAVING count(*) >= 5 AND count(*) FILTER (WHERE cell_id IN (SELECT cell_id FROM bad)) = 0
           AND customer_id NOT IN (SELECT customer_id FROM marts.alarm_customers)
        ORDER BY customer_id LIMIT 3
        """, {"since": since, "now": now}).fetchall()
    assert healthy, "the sample has customers on healthy cells"
    for (customer,) in healthy:
        a = _answer(db, customer)
        assert a.status == "none", (customer, a.sentence)
        assert a.sentence.startswith("No network problem found on their cells")
        assert re.search(r"KPIs present for (\d+) of \1 cell-hours", a.sentence), a.sentence
