"""The assurance queries on the sample warehouse: the affected customers of every alarm match the mart and
the planted outages, a live alarm gets the answer a refresh would give it, and exports are safe."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from app import figures_assurance as figs
from app import queries_assurance as qa
from app.warehouse import WarehouseReader
from etl import live_alarms as la

TRUTH = json.loads((Path(__file__).resolve().parents[2] / "data" / "sample" / "truth.json").read_text())


@pytest.fixture(scope="module")
def db(sample_warehouse: Path) -> WarehouseReader:
    return WarehouseReader(sample_warehouse)


@pytest.fixture(scope="module")
def at(db: WarehouseReader) -> datetime:
    return qa.as_of(db)


def spec_of(db: WarehouseReader, alarm_id: str) -> qa.AlarmSpec:
    r = db.query("SELECT alarm_id, alarmed_object_id, alarmed_object_type, raised_at FROM staging.alarms "
                 "WHERE alarm_id = ?", [alarm_id])
    return qa.AlarmSpec(*r.row(0))


@pytest.mark.parametrize("hourly", [True, False], ids=["hourly_marts", "events_only"])
def test_the_rule_gives_the_marts_answer_for_every_alarm(db: WarehouseReader, at: datetime, hourly: bool) -> None:
    specs = [qa.AlarmSpec(*r) for r in db.query(
        "SELECT alarm_id, alarmed_object_id, alarmed_object_type, raised_at FROM staging.alarms").rows()]
    impact = qa.affected_customers(db, specs, as_of_at=at, hourly=hourly).filter(pl.col("tier") == "majority")
    mart = db.query("SELECT alarm_id, customer_id, n_events_on_alarm_cells, n_events_7d, revenue_per_hour "
                    "FROM marts.alarm_customers")
    assert mart.height > 100
    both = mart.join(impact, on=["alarm_id", "customer_id"], how="full", coalesce=True)
    assert both.height == mart.height == impact.height
    for column in ("n_events_on_alarm_cells", "n_events_7d", "revenue_per_hour"):
        assert (both[column] - both[f"{column}_right"]).abs().max() < 1e-9, column


@pytest.mark.parametrize("outage", TRUTH["outages"], ids=lambda o: o["alarm_id"])
def test_planted_outages_precision_and_recall(db: WarehouseReader, at: datetime, outage: dict) -> None:
    impact = qa.affected_customers(db, [spec_of(db, outage["alarm_id"])], as_of_at=at)
    planted = set(outage["affected_customer_ids"])
    core = set(impact.filter(pl.col("tier") == "majority")["customer_id"])
    assert core == planted
    everyone = set(impact["customer_id"])  # with those whose home cell is in alarm
    assert len(everyone & planted) / len(planted) >= 0.95
    assert len(everyone & planted) / len(everyone) >= 0.95
    cells = qa.alarm_cells(db, [spec_of(db, outage["alarm_id"])])
    assert sorted(cells["cell_id"]) == sorted(outage["cell_ids"])


def test_home_cell_customers_have_their_most_used_cell_in_alarm(db: WarehouseReader, at: datetime) -> None:
    specs = [spec_of(db, o["alarm_id"]) for o in TRUTH["outages"]]
    impact = qa.affected_customers(db, specs, as_of_at=at)
    home = impact.filter(pl.col("tier") == "home_cell")
    assert home.height > 0
    cells = qa.alarm_cells(db, specs)
    for r in home.to_dicts():
        assert r["home_cell_id"] in cells.filter(pl.col("alarm_id") == r["alarm_id"])["cell_id"].to_list()
        assert r["n_events_on_alarm_cells"] * 2 <= r["n_events_7d"]


def test_a_live_alarm_gets_the_answer_a_refresh_would_give(db: WarehouseReader, at: datetime,
                                                         tmp_path: Path) -> None:
    outage = TRUTH["outages"][1]
    spec = spec_of(db, outage["alarm_id"])
    la.raise_alarm(tmp_path, object_id=spec.object_id, object_type=spec.object_type, alarm_id="LIVE-A",
                   raised_at=spec.raised_at)
    (tmp_path / "junk.json").write_text('{"id": "x"}')
    rows, problems, gone = qa.live_alarm_rows(db, la.scan(tmp_path), as_of_at=at, since=None)
    assert rows["alarm_id"].to_list() == ["LIVE-A"] and gone == []
    assert rows["n_customers_affected"][0] == outage["affected_customers"]
    mart = db.query("SELECT * FROM marts.alarm_impact WHERE alarm_id = ?", [outage["alarm_id"]]).row(0, named=True)
    assert rows["revenue_per_hour_at_stake"][0] == pytest.approx(mart["revenue_per_hour_at_stake"])
    assert rows["n_vip_affected"][0] == mart["n_vip_affected"]
    assert sorted(rows["cell_ids"][0].split(",")) == sorted(outage["cell_ids"])
    assert rows["site_id"][0] == outage["site_id"]
    assert [f for f, _ in problems] == []  # the junk file is the folder's bad file, not a row problem

    # On an unknown object: reported with the file name, not shown.
    la.raise_alarm(tmp_path, object_id="NOWHERE", object_type="cell", alarm_id="LIVE-B")
    rows, problems, _ = qa.live_alarm_rows(db, la.scan(tmp_path), as_of_at=at, since=None)
    assert "LIVE-B" not in rows["alarm_id"].to_list()
    assert problems[0][0] == "LIVE-B.json" and "NOWHERE" in problems[0][1]


def test_a_live_alarm_after_the_data_is_judged_on_the_last_week_loaded(db: WarehouseReader, at: datetime) -> None:
    site = TRUTH["outages"][0]["site_id"]
    later = qa.affected_customers(db, [qa.AlarmSpec("L", site, "site", at + timedelta(days=30))], as_of_at=at)
    now = qa.affected_customers(db, [qa.AlarmSpec("L", site, "site", at)], as_of_at=at)
    same = ["customer_id", "tier", "n_events_on_alarm_cells", "n_events_7d"]  # fees: those active on the day
    assert later.height > 0 and later.select(same).sort("customer_id").equals(now.select(same).sort("customer_id"))
    est = qa.simulate_outage(db, "site", site)
    assert est.n_customers == now.filter(pl.col("tier") == "majority").height
    assert est.n_cells == len(TRUTH["outages"][0]["cell_ids"]) and est.at == at


def _same_rows(a: pl.DataFrame, b: pl.DataFrame) -> None:
    """The same rows in the same order; sums of charges to 1e-9 (counted per hour or per event)."""
    assert a.columns == b.columns and a.height == b.height
    for c in a.columns:
        if a[c].dtype == pl.Float64:
            assert (a[c] - b[c]).abs().max() < 1e-9, c
        else:
            assert a[c].to_list() == b[c].to_list(), c


def test_hourly_counts_give_the_events_answer_at_every_edge(db: WarehouseReader, at: datetime) -> None:
    """Alarms raised on an event (it falls out of the window), a microsecond after it, on the hour before
    and after it, and a week and half a week after it (it opens the window): the whole hours read from the
    hourly marts and the rest from the events give exactly what the events alone give."""
    rng = qa.usage_range(db)
    assert rng is not None and rng["hours_from_at"] > rng["usage_from_at"]  # the sample holds 28 days
    events = db.query(
        "SELECT usage_at, cell_id, c.site_id FROM staging.charging JOIN staging.cells c USING (cell_id) "
        "WHERE usage_at >= $t - INTERVAL 9 DAY ORDER BY usage_id LIMIT 12 OFFSET 5000", {"t": at})
    specs = []
    for t, cell, site in events.rows():
        hour = t.replace(minute=0, second=0, microsecond=0)
        for raised in (t, t + timedelta(microseconds=1), hour, hour + timedelta(hours=1),
                       t + timedelta(hours=qa.IMPACT_WINDOW_HOURS), t + timedelta(hours=84, minutes=30)):
            for obj, kind in ((cell, "cell"), (site, "site")):
                specs.append(qa.AlarmSpec(f"X{len(specs):03d}", obj, kind, raised))
    windows = [qa.split_window(*qa.impact_window(s.raised_at, at), rng) for s in specs]
    assert any(w.hours and w.slices for w in windows) and any(w.hours is None for w in windows)
    hourly = qa.affected_customers(db, specs, as_of_at=at)
    events_only = qa.affected_customers(db, specs, as_of_at=at, hourly=False)
    assert hourly.height > 100
    _same_rows(hourly, events_only)
    for spec in specs[:4]:  # one alarm at a time, as the page asks
        _same_rows(qa.affected_customers(db, [spec], as_of_at=at),
                   qa.affected_customers(db, [spec], as_of_at=at, hourly=False))


def test_a_live_alarm_after_the_data_is_read_from_the_hourly_marts_alone(db: WarehouseReader, at: datetime) -> None:
    rng = qa.usage_range(db)
    w = qa.split_window(*qa.impact_window(at + timedelta(hours=5), at), rng)
    assert w == qa.ImpactWindow(at - timedelta(hours=168), at, (at - timedelta(hours=168), at), ())
    site = TRUTH["outages"][0]["site_id"]
    spec = qa.AlarmSpec("L", site, "site", at + timedelta(hours=5))
    _same_rows(qa.affected_customers(db, [spec], as_of_at=at),
               qa.affected_customers(db, [spec], as_of_at=at, hourly=False))


def test_split_window_reads_whole_hours_from_the_marts_and_the_rest_from_events() -> None:
    t = datetime(2026, 10, 20, 12, 34, 56)
    start, end = qa.impact_window(t, None)
    assert (start, end) == (t - timedelta(hours=168), t)
    assert qa.impact_window(t, datetime(2026, 10, 19)) == (datetime(2026, 10, 12), datetime(2026, 10, 19))
    h = datetime(2026, 10, 13, 13)  # the first whole hour of the window
    rng = {"hours_from_at": datetime(2026, 10, 1), "usage_from_at": datetime(2026, 9, 1)}
    assert qa.split_window(start, end, rng) == qa.ImpactWindow(
        start, end, (h, datetime(2026, 10, 20, 12)), ((start, h), (datetime(2026, 10, 20, 12), end)))
    # The marts start after the window does: the events up to their first hour, none before the first usage.
    rng = {"hours_from_at": datetime(2026, 10, 15), "usage_from_at": datetime(2026, 10, 14, 6)}
    w = qa.split_window(start, end, rng)
    assert w.hours == (datetime(2026, 10, 15), datetime(2026, 10, 20, 12))
    assert w.slices == ((datetime(2026, 10, 14, 6), datetime(2026, 10, 15)), (datetime(2026, 10, 20, 12), end))
    rng = {"hours_from_at": datetime(2026, 10, 15), "usage_from_at": datetime(2026, 10, 15)}
    assert qa.split_window(start, end, rng).slices == ((datetime(2026, 10, 20, 12), end),)
    # A window on whole hours: nothing from the events.
    s2, e2 = datetime(2026, 10, 13, 13), datetime(2026, 10, 20, 13)
    assert qa.split_window(s2, e2, rng).slices == () and qa.split_window(s2, e2, rng).hours == (rng["hours_from_at"], e2)
    # Marts that do not reach the window, no marts, or no usage loaded: every event of the window.
    whole = qa.ImpactWindow(start, end, None, ((start, end),))
    late = {"hours_from_at": datetime(2026, 10, 20, 12), "usage_from_at": datetime(2026, 9, 1)}
    assert qa.split_window(start, end, late) == whole
    assert qa.split_window(start, end, None) == whole
    assert qa.split_window(start, end, {"hours_from_at": datetime(2026, 10, 1), "usage_from_at": None}) == whole


def test_a_live_alarm_the_warehouse_holds_is_superseded(db: WarehouseReader, at: datetime, tmp_path: Path) -> None:
    outage = TRUTH["outages"][2]
    spec = spec_of(db, outage["alarm_id"])
    la.raise_alarm(tmp_path, object_id=spec.object_id, object_type=spec.object_type, alarm_id=outage["alarm_id"],
                   raised_at=spec.raised_at)
    rows, _, gone = qa.live_alarm_rows(db, la.scan(tmp_path), as_of_at=at, since=None)
    assert rows.height == 0 and gone == [outage["alarm_id"]]


def test_recent_alarms_are_open_or_in_the_window(db: WarehouseReader, at: datetime) -> None:
    since = at - timedelta(hours=72)
    recent = qa.refreshed_alarms(db, since=since)
    for r in recent.to_dicts():
        assert r["is_open"] or r["raised_at"] >= since or r["cleared_at"] >= since
    ids = set(recent["alarm_id"])
    for o in TRUTH["outages"]:
        expect = o["cleared_at"] is None or datetime.fromisoformat(o["cleared_at"]) >= since
        assert (o["alarm_id"] in ids) == expect, o["kind"]
    assert qa.refreshed_alarms(db, since=None).height == db.query("SELECT count(*) n FROM staging.alarms")["n"][0]


def alarm(alarm_id: str, site: str, kind: str, start: int, end: int | None) -> dict:
    t0 = datetime(2026, 10, 28)
    return {"alarm_id": alarm_id, "site_id": site, "alarmed_object_type": kind,
            "raised_at": t0 + timedelta(hours=start), "cleared_at": None if end is None else t0 + timedelta(hours=end)}


def test_alarms_on_one_site_that_overlap_share_the_site_alarm_as_root() -> None:
    df = pl.DataFrame([
        alarm("c1", "S1", "cell", 0, 3), alarm("s1", "S1", "site", 1, 2), alarm("c2", "S1", "cell", 2, None),
        alarm("c3", "S1", "cell", 10, 11),  # later, apart
        alarm("x1", "S2", "cell", 0, 5), alarm("x2", "S2", "cell", 4, 6),  # no site alarm: the earliest is root
    ])
    g = qa.group_alarms(df, as_of_at=datetime(2026, 10, 28, 5))
    group = dict(zip(g["alarm_id"], g["group_id"]))
    assert group == {"c1": "s1", "s1": "s1", "c2": "s1", "c3": "c3", "x1": "x1", "x2": "x1"}
    assert g.filter(pl.col("is_root"))["alarm_id"].sort().to_list() == ["c3", "s1", "x1"]
    assert g.filter(pl.col("alarm_id") == "s1")["group_size"][0] == 3
    # Each root comes first in its group.
    order = g["alarm_id"].to_list()
    assert order.index("s1") < order.index("c1") and order.index("x1") < order.index("x2")


def test_customers_are_ranked_vip_then_churn_risk_then_value() -> None:
    df = pl.DataFrame({
        "alarm_id": ["A"] * 5, "customer_id": ["c1", "c2", "c3", "c4", "c5"],
        "tier": ["majority", "majority", "majority", "majority", "home_cell"],
        "is_vip": [False, True, False, False, True], "churn_risk": ["low", None, "high", None, "high"],
        "revenue_per_hour": [9.0, 0.1, 0.2, 5.0, 99.0],
    })
    ranked = qa.rank_customers(df)
    assert ranked["customer_id"].to_list() == ["c2", "c3", "c1", "c4", "c5"]
    assert ranked["priority"].to_list() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize(("value", "safe"), [
    ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"), ("+39 312", "'+39 312"), ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"), ("\tx", "'\tx"), ("\rx", "'\rx"), ("plain", "plain"), ("a=b", "a=b"),
    ("", ""), (-2.5, -2.5), (3, 3), (None, None), (True, True),
])
def test_csv_safe_neutralises_formula_triggers(value, safe) -> None:
    assert qa.csv_safe(value) == safe


def test_safe_csv_text_opens_with_no_formula() -> None:
    df = pl.DataFrame({"=name": ["=1+1", "ok", None], "n": [-1.5, 2.0, None], "when": [datetime(2026, 1, 1)] * 3})
    text = qa.to_safe_csv(df)
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["'=name", "n", "when"]
    assert rows[1] == ["'=1+1", "-1.5", "2026-01-01 00:00:00"] and rows[3] == ["", "", "2026-01-01 00:00:00"]
    for row in rows:
        for cell in row:
            assert not (cell[:1] in ("=", "+", "@", "\t", "\r") or (cell.startswith("-") and not _number(cell)))


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_contact_list_says_why_what_to_do_and_what_to_tell(db: WarehouseReader, at: datetime) -> None:
    outage = next(o for o in TRUTH["outages"] if o["cleared_at"] is None)
    spec = spec_of(db, outage["alarm_id"])
    customers = qa.enrich_customers(db, qa.affected_customers(db, [spec], as_of_at=at))
    contacts = qa.contact_list(customers, {"raised_at": spec.raised_at, "cleared_at": None,
                                           "service_affecting": True}, zone_label="Centro")
    assert contacts.columns == list(qa.CONTACT_COLUMNS)
    assert set(contacts["customer_id"]) >= set(outage["affected_customer_ids"])
    assert contacts["priority"].to_list() == list(range(1, contacts.height + 1))
    assert contacts["msisdn"].str.starts_with("+").all()
    assert contacts["message"].str.contains("in Centro since").all()
    assert contacts["suggested_action"].is_not_null().all()
    safe = list(csv.reader(io.StringIO(qa.to_safe_csv(contacts))))
    msisdn = safe[0].index("msisdn")
    assert all(r[msisdn].startswith("'+") for r in safe[1:])
    cleared = qa.contact_message({"raised_at": datetime(2026, 10, 1, 8), "cleared_at": datetime(2026, 10, 1, 10, 30),
                                  "service_affecting": True}, zone_label=None)
    assert "has been fixed" in cleared and "2.5 hours" in cleared and "in your area" in cleared


def test_personal_data_of_the_page_is_masked_by_the_apps_one_mask() -> None:
    from app import auth

    assert set(qa.PII_COLUMNS) <= auth.PERSONAL_COLUMNS
    df = pl.DataFrame({"customer_id": ["c1", "c2"], "name": ["Ana", None], "msisdn": ["+391", "+392"]})
    executive = auth.Viewer(name="e", roles=frozenset({"executive"}))
    masked = auth.mask(df, executive)
    assert masked["name"].to_list() == [auth.MASK, None] and masked["msisdn"].to_list() == [auth.MASK] * 2
    assert masked["customer_id"].equals(df["customer_id"])
    for role in ("care", "assurance"):
        assert auth.mask(df, auth.Viewer(name="x", roles=frozenset({role}))).equals(df)


def test_the_area_map_draws_the_alarm_cells_in_red(db: WarehouseReader) -> None:
    spec = spec_of(db, TRUTH["outages"][0]["alarm_id"])
    area = qa.affected_area(db, [spec])
    zones = sorted(set(area.filter(pl.col("is_in_alarm"))["zone_id"]))
    geo, bbox = qa.zones_geojson(db, zones)
    fig = figs.affected_area_map(area, geo, bbox=bbox)
    red = next(t for t in fig.data if t.name == "cells in alarm")
    assert sorted(c[0] for c in red.customdata) == sorted(TRUTH["outages"][0]["cell_ids"])
    assert fig.layout.map.style == "white-bg"
    assert list(fig.data[0].locations) == zones


def test_the_serving_cells_chart_marks_the_need() -> None:
    cells = pl.DataFrame({"cell_id": ["a", "b"], "dl_throughput_median_mbps": [10.0, 3.0],
                          "dl_throughput_p10_mbps": [6.0, 1.0], "result": ["qualified", "unqualified"]})
    fig = figs.serving_cells_chart(cells, need_mbps=5.0)
    assert [list(t.y) for t in fig.data] == [[10.0, 3.0], [6.0, 1.0]]
    assert fig.layout.shapes[0].y0 == 5.0
