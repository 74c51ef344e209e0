"""The synthetic operator (etl/generate.py): deterministic bytes, every file against its contract, the
truth recounted from the files themselves, plausible distributions, a real-looking geography, the
committed sample, and memory that does not grow with the number of days."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import shapely

from etl.contracts import FALSE_VALUES, SOURCES, TRUE_VALUES, Source, source_for_file
from etl.errors import UsageError
from etl.generate import generate, main

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "data" / "sample"
TS = "%Y-%m-%dT%H:%M:%S"
SNAPSHOTS = ("zones.geojson", "sites.csv", "cells.csv", "customers.csv", "subscriptions.csv", "promotions.csv",
             "bills.csv")
DAILY = ("charging", "topups", "tickets", "kpi_hourly", "alarms")


# ------------------------------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def op(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small operator: 400 customers, 5 days."""
    out = tmp_path_factory.mktemp("gen") / "operator"
    generate(out, customers=400, days=5, seed=11)
    return out


@pytest.fixture(scope="module")
def sample() -> Path:
    if not (SAMPLE / "truth.json").exists():
        pytest.fail("data/sample is missing: make it with the command in data/sample/README.md")
    return SAMPLE


def truth_of(folder: Path) -> dict:
    return json.loads((folder / "truth.json").read_text())


# ------------------------------------------------------------------------------------------- reading


def read_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def files_of(folder: Path, source: str) -> list[Path]:
    return sorted(p for p in folder.iterdir() if (s := source_for_file(p)) is not None and s.name == source)


@lru_cache(maxsize=64)
def read_source(folder: Path, source: str) -> pl.DataFrame:
    """Every value as text (empty = null), with the file name; zones come from the GeoJSON properties."""
    if source == "zones":
        feats = json.loads((folder / "zones.geojson").read_text())["features"]
        rows = [{k: (None if v is None else str(v)) for k, v in f["properties"].items()} for f in feats]
        df = pl.DataFrame(rows).with_columns(geometry=pl.Series([shapely.to_wkt(shapely.geometry.shape(
            f["geometry"])) for f in feats]))
        return df.with_columns(_file=pl.lit("zones.geojson"))
    if source == "charging":
        return read_charging(folder)[0]
    frames = [pl.read_csv(io.BytesIO(read_bytes(p)), infer_schema=False).with_columns(_file=pl.lit(p.name))
              for p in files_of(folder, source)]
    return pl.concat(frames, how="vertical")


@lru_cache(maxsize=4)
def read_charging(folder: Path) -> tuple[pl.DataFrame, list[tuple[str, int, str]]]:
    """Well-formed charging rows as text (with file, line and raw line) and the malformed lines.

    Split by hand, not by a CSV reader: a line with the wrong number of fields must be seen, not mended
    (charging values never hold commas or quotes).
    """
    frames, malformed = [], []
    for p in files_of(folder, "charging"):
        lines = read_bytes(p).decode().splitlines()
        header = lines[0].split(",")
        raw = pl.Series("_raw", lines[1:], dtype=pl.String)
        parts = raw.str.split(",")
        ok = parts.list.len() == len(header)
        lineno = pl.Series("_line", np.arange(2, len(lines) + 1))
        malformed += [(p.name, int(i), r) for i, r in zip(lineno.filter(~ok), raw.filter(~ok))]
        fields = parts.filter(ok).list.to_struct(fields=header).struct.unnest()
        frames.append(fields.with_columns(pl.when(pl.col(c) != "").then(pl.col(c)) for c in header).with_columns(
            _file=pl.lit(p.name), _line=lineno.filter(ok), _raw=raw.filter(ok)))
    return pl.concat(frames, how="vertical"), malformed


def _parse(s: pl.Series, dtype: str) -> tuple[pl.Series, pl.Series]:
    """Typed values and a mask of present values that do not parse."""
    present = s.is_not_null()
    if dtype == "int":
        ok = s.str.contains(r"^-?\d+$").fill_null(False)
        typed = pl.Series(np.where(ok, s.fill_null("0"), "0")).cast(pl.Int64).cast(pl.Float64)
    elif dtype == "float":
        typed = s.cast(pl.Float64, strict=False)
    elif dtype == "bool":
        typed = s.str.to_lowercase().is_in(TRUE_VALUES)
        ok = s.str.to_lowercase().is_in(TRUE_VALUES + FALSE_VALUES)
        return typed, present & ~ok.fill_null(False)
    elif dtype == "date":
        typed = s.str.to_date("%Y-%m-%d", strict=False)
    elif dtype == "timestamp":
        typed = s.str.to_datetime(TS, strict=False)
    else:
        return s, present & False
    if dtype == "int":
        return typed, present & ~ok
    return typed, present & typed.is_null()


def violations(df: pl.DataFrame, source: Source) -> Counter:
    """(reason, column) -> rows that break the contract (a small stand-in for etl.validate)."""
    out: Counter = Counter()
    missing = [c for c in source.required_columns if c not in df.columns]
    assert not missing, f"{source.name}: missing required columns {missing}"
    typed: dict[str, pl.Series] = {}
    for col in source.columns:
        if col.name not in df.columns:
            continue
        s = df[col.name]
        null = s.is_null()
        if not col.nullable:
            out[("null_required", col.name)] += int(null.sum())
        value, bad = _parse(s, col.dtype)
        out[("bad_type", col.name)] += int(bad.sum())
        good = ~null & ~bad
        typed[col.name] = pl.Series(np.where(good, value, None)) if col.dtype in ("int", "float") else value
        if col.allowed:
            out[("not_allowed", col.name)] += int((good & ~s.is_in(col.allowed)).sum())
        if col.dtype in ("int", "float"):
            v = value.fill_null(0)
            if col.min is not None:
                out[("out_of_range", col.name)] += int((good & (v < col.min)).sum())
            if col.max is not None:
                out[("out_of_range", col.name)] += int((good & (v > col.max)).sum())
        if col.pattern:
            out[("bad_pattern", col.name)] += int((good & ~s.str.contains(col.pattern).fill_null(True)).sum())
    for o in source.orders:
        if o.before in typed and o.after in typed:
            a, b = typed[o.before], typed[o.after]
            out[("bad_order", o.before)] += int((a.is_not_null() & b.is_not_null() & (a > b)).sum())
    return +out


@lru_cache(maxsize=4)
def valid_charging(folder: Path) -> pl.DataFrame:
    """Charging rows that pass validation (known cells, parseable times, amounts in range), each usage_id once."""
    ch, _ = read_charging(folder)
    cells = read_source(folder, "cells")["cell_id"].implode()
    amount = ch["amount"].cast(pl.Float64, strict=False)
    at = ch["usage_at"].str.to_datetime(TS, strict=False)
    ok = at.is_not_null() & (amount >= 0) & (amount <= 1000) & (ch["cell_id"].is_null() | ch["cell_id"].is_in(cells))
    return (ch.filter(ok).with_columns(usage_at=at.filter(ok), amount=amount.filter(ok))
            .unique("usage_id", keep="first", maintain_order=True))


# --------------------------------------------------------------------------------------- recounting


def recount(folder: Path) -> dict[str, int]:
    """Each planted inconsistency, counted from the files alone (no knowledge of how they were made)."""
    ch, malformed = read_charging(folder)
    cells = read_source(folder, "cells")
    sites = read_source(folder, "sites")
    subs = read_source(folder, "subscriptions")
    customers = read_source(folder, "customers")
    alarms = read_source(folder, "alarms")
    kpi = read_source(folder, "kpi_hourly")
    amount = ch["amount"].cast(pl.Float64, strict=False)
    at_ok = ch["usage_at"].str.to_datetime(TS, strict=False).is_not_null()
    known = ch["cell_id"].is_null() | ch["cell_id"].is_in(cells["cell_id"].implode())
    first_seen = ch.with_row_index("_i").group_by("usage_id").agg(pl.col("_i").min(), pl.len().alias("n"))
    active = subs.filter(pl.col("status") == "active")
    in_service = cells.filter(pl.col("status") == "in_service")["cell_id"]
    hours = kpi["period_start"].str.to_datetime(TS)
    n_hours = int((hours.max() - hours.min()) / timedelta(hours=1)) + 1
    present = (kpi.filter(pl.col("cell_id").is_in(in_service.implode())).select("cell_id", "period_start")
               .unique().height)
    return {
        "usage_on_unknown_cells": int((~known).sum()),
        "duplicate_msisdns": int(active.group_by("msisdn").len().select((pl.col("len") - 1).sum()).item()),
        "subscriptions_of_unknown_customers": int((~subs["customer_id"].is_in(
            customers["customer_id"].implode())).sum()),
        "negative_amounts": int((amount < 0).sum()),
        "absurd_amounts": int((amount > SOURCES["charging"].column("amount").max).sum()),
        "missing_kpi_hours": len(in_service) * n_hours - present,
        "alarms_on_unknown_resources": int((~alarms["alarmed_object_id"].is_in(
            pl.concat([cells["cell_id"], sites["site_id"]]).implode())).sum()),
        "malformed_rows": len(malformed),
        "unparseable_values": int((~at_ok).sum()),
        "duplicate_usage_records": int(first_seen.select((pl.col("n") - 1).sum()).item()),
    }


def affected_by_rule(folder: Path, outage: dict, valid: pl.DataFrame, subs: pl.DataFrame) -> list[str]:
    """Customers with usage on a cell in the 7 x 24 h before raised_at, more than half of it on the site."""
    raised = datetime.fromisoformat(outage["raised_at"])
    ev = valid.filter(pl.col("cell_id").is_not_null() & (pl.col("usage_at") >= raised - timedelta(days=7))
                      & (pl.col("usage_at") < raised))
    ev = ev.join(subs.select("subscription_id", "customer_id"), on="subscription_id")
    per = ev.group_by("customer_id").agg(tot=pl.len(), on=pl.col("cell_id").is_in(outage["cell_ids"]).sum())
    return sorted(per.filter((pl.col("tot") >= 1) & (2 * pl.col("on") > pl.col("tot")))["customer_id"].to_list())


def zone_of_points(folder: Path, lon: np.ndarray, lat: np.ndarray) -> list[str | None]:
    feats = json.loads((folder / "zones.geojson").read_text())["features"]
    polys = [shapely.geometry.shape(f["geometry"]) for f in feats]
    ids = [f["properties"]["zone_id"] for f in feats]
    tree = shapely.STRtree(polys)
    pts = shapely.points(lon, lat)
    out: list[str | None] = [None] * len(pts)
    for i, j in zip(*tree.query(pts, predicate="intersects")):
        out[int(i)] = out[int(i)] or ids[int(j)]
    return out


def cell_zones(folder: Path) -> pl.DataFrame:
    sites = read_source(folder, "sites")
    zones = zone_of_points(folder, sites["longitude"].cast(pl.Float64).to_numpy(),
                           sites["latitude"].cast(pl.Float64).to_numpy())
    site_zone = sites.select("site_id").with_columns(zone_id=pl.Series(zones, dtype=pl.String))
    return read_source(folder, "cells").join(site_zone, on="site_id")


def zone_kpis(folder: Path) -> pl.DataFrame:
    """Per zone over the whole window: throughput from volume and active time, drops from counters,
    PRB utilisation weighted by traffic."""
    k = read_source(folder, "kpi_hourly").with_columns(
        [pl.col(c).cast(pl.Float64) for c in ("traffic_volume_mb", "dl_active_time_s", "erab_releases",
                                              "erab_abnormal_releases", "prb_utilisation_pct")])
    return k.join(cell_zones(folder).select("cell_id", "zone_id"), on="cell_id").group_by("zone_id").agg(
        tput=pl.col("traffic_volume_mb").sum() * 8 / pl.col("dl_active_time_s").sum(),
        drop=100 * pl.col("erab_abnormal_releases").sum() / pl.col("erab_releases").sum(),
        prb=(pl.col("prb_utilisation_pct") * pl.col("traffic_volume_mb")).sum() / pl.col("traffic_volume_mb").sum(),
    )


# ------------------------------------------------------------------------------------------- tests


def test_same_seed_same_bytes_and_another_seed_differs(op: Path, tmp_path: Path) -> None:
    again = tmp_path / "operator"
    generate(again, customers=400, days=5, seed=11)
    names = sorted(p.name for p in op.iterdir())
    assert names == sorted(p.name for p in again.iterdir())
    for name in names:
        assert (op / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    generate(other, customers=400, days=5, seed=12)
    differing = [n for n in names if (op / n).read_bytes() != (other / n).read_bytes()]
    assert "truth.json" in differing and "charging_20261001.csv.gz" in differing and len(differing) > len(names) / 2


def test_plain_csv_holds_the_same_content_as_gzip(op: Path, tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    generate(plain, customers=400, days=5, seed=11, compress=False)
    gz = {p.name.removesuffix(".gz"): p for p in op.iterdir() if p.name.endswith(".gz")}
    assert sorted(gz) == sorted(p.name for p in plain.glob("*_*.csv"))
    for name, p in gz.items():
        assert read_bytes(p) == (plain / name).read_bytes(), name
    for name in SNAPSHOTS:
        assert (op / name).read_bytes() == (plain / name).read_bytes(), name


def test_files_are_the_canonical_set_with_deterministic_gzip(op: Path) -> None:
    tokens = [f"202610{d:02d}" for d in range(1, 6)]
    expected = set(SNAPSHOTS) | {"truth.json"} | {f"{s}_{t}.csv.gz" for s in DAILY for t in tokens}
    assert {p.name for p in op.iterdir()} == expected
    for p in op.glob("*.gz"):
        head = p.read_bytes()[:10]
        assert head[:3] == b"\x1f\x8b\x08" and head[3] == 0 and head[4:8] == b"\0\0\0\0", p.name  # no name, mtime 0


@pytest.mark.parametrize("where", ["op", "sample"])
def test_every_file_meets_its_contract_except_the_planted_rows(where: str, request: pytest.FixtureRequest) -> None:
    op = request.getfixturevalue(where)
    truth = truth_of(op)["inconsistencies"]
    for source in SOURCES.values():
        found = violations(read_source(op, source.name), source)
        if source.name == "charging":
            assert found == Counter({
                ("out_of_range", "amount"): truth["negative_amounts"]["count"] + truth["absurd_amounts"]["count"],
                ("bad_type", "usage_at"): truth["unparseable_values"]["count"],
            })
        else:
            assert found == Counter(), source.name
    assert len(read_charging(op)[1]) == truth["malformed_rows"]["count"] > 0


@pytest.mark.parametrize("where", ["op", "sample"])
def test_extraction_quarantines_exactly_the_planted_rows(where: str, request: pytest.FixtureRequest) -> None:
    """The project's own extraction and validation (etl.extract) agree with truth.json."""
    op = request.getfixturevalue(where)
    extract = pytest.importorskip("etl.extract")
    truth = truth_of(op)["inconsistencies"]
    reasons: Counter = Counter()
    for path in sorted(op.iterdir()):
        source = source_for_file(path)
        if source is None:
            continue
        result = extract.extract_file(path, source)
        assert result.rows_read == result.good.height + result.rejects.height
        for reason, column in result.rejects.select("reason", "column").iter_rows():
            reasons[(source.name, reason, column)] += 1
    assert reasons == Counter({
        ("charging", "out_of_range", "amount"): truth["negative_amounts"]["count"] + truth["absurd_amounts"]["count"],
        ("charging", "bad_type", "usage_at"): truth["unparseable_values"]["count"],
        ("charging", "malformed_row", None): truth["malformed_rows"]["count"],
    })


@pytest.mark.parametrize("where", ["op", "sample"])
def test_truth_counts_are_recounted_from_the_files(where: str, request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(where)
    truth = truth_of(folder)["inconsistencies"]
    assert recount(folder) == {k: v["count"] for k, v in truth.items()}
    assert all(v["count"] >= 1 for v in truth.values()), truth
    by_file = Counter(name for name, _, _ in read_charging(folder)[1])
    assert dict(by_file) == truth["malformed_rows"]["by_file"]
    # two entries share the out_of_range check, as docs/architecture.md says
    assert truth["negative_amounts"]["check"] == truth["absurd_amounts"]["check"]


def test_each_planted_row_has_exactly_one_problem(op: Path) -> None:
    ch, _ = read_charging(op)
    cells = read_source(op, "cells")["cell_id"]
    amount = ch["amount"].cast(pl.Float64, strict=False)
    at_ok = ch["usage_at"].str.to_datetime(TS, strict=False).is_not_null()
    known = ch["cell_id"].is_null() | ch["cell_id"].is_in(cells.implode())
    amount_ok = (amount >= 0) & (amount <= 1000)
    problems = (~at_ok).cast(pl.Int8) + (~known).cast(pl.Int8) + (~amount_ok).cast(pl.Int8)
    assert problems.max() == 1
    # exact duplicates: a later file repeats an earlier line verbatim
    dup = ch.filter(pl.col("usage_id").is_duplicated()).sort("_file", "_line")
    assert dup.height > 0
    for _, group in dup.group_by("usage_id"):
        assert group["_raw"].n_unique() == 1 and group["_file"].n_unique() == 2
    # nothing references the planted subscriptions
    truth = truth_of(op)["inconsistencies"]
    planted = truth["duplicate_msisdns"]["subscription_ids"] + truth["subscriptions_of_unknown_customers"][
        "subscription_ids"]
    for source, column in (("charging", "subscription_id"), ("topups", "subscription_id"),
                           ("promotions", "subscription_id"), ("tickets", "subscription_id")):
        assert not read_source(op, source)[column].is_in(planted).any(), source


def test_kpi_counters_agree_with_the_derived_kpis(op: Path) -> None:
    k = read_source(op, "kpi_hourly").with_columns(pl.all().exclude("cell_id", "period_start", "_file").cast(
        pl.Float64))
    assert k.select((pl.col("availability_pct") - 100 * (3600 - pl.col("unavailable_time_s")) / 3600).abs().max()
                    ).item() < 1e-3
    acc = k.filter(pl.col("rrc_setup_attempts") > 0).select(
        (pl.col("accessibility_pct") - 100 * pl.col("rrc_setup_successes") / pl.col("rrc_setup_attempts")
         * pl.col("erab_setup_successes") / pl.col("erab_setup_attempts")).abs().max()).item()
    drop = k.filter(pl.col("erab_releases") > 0).select(
        (pl.col("drop_rate_pct") - 100 * pl.col("erab_abnormal_releases") / pl.col("erab_releases")).abs().max()).item()
    tput = k.filter(pl.col("dl_active_time_s") > 0).select(
        ((pl.col("dl_throughput_mbps") - pl.col("traffic_volume_mb") * 8 / pl.col("dl_active_time_s")).abs()
         / pl.col("dl_throughput_mbps")).max()).item()
    assert acc < 1e-3 and drop < 1e-3 and tput < 1e-3
    assert k["dl_active_time_s"].max() <= 3600 and k["unavailable_time_s"].max() <= 3600
    # a cell that is down the whole hour carries nothing and reports no throughput or latency
    down = k.filter(pl.col("availability_pct") == 0)
    assert down.height > 0 and down["traffic_volume_mb"].max() == 0 and down["dl_throughput_mbps"].null_count() == \
        down.height


@pytest.mark.parametrize("where", ["op", "sample"])
def test_outages_hit_kpis_usage_and_the_affected_set_follows_the_rule(where: str,
                                                                     request: pytest.FixtureRequest) -> None:
    folder = request.getfixturevalue(where)
    truth = truth_of(folder)
    as_of = datetime.fromisoformat(truth["as_of"])
    outages = truth["outages"]
    assert len(outages) >= 3
    kinds = Counter(o["kind"] for o in outages)
    assert kinds["still_open"] == 1 and kinds["cleared_in_last_72h"] == 1 and kinds["older"] >= 1
    valid = valid_charging(folder)
    subs = read_source(folder, "subscriptions")
    alarms = read_source(folder, "alarms")
    kpi = read_source(folder, "kpi_hourly").with_columns(
        period_start=pl.col("period_start").str.to_datetime(TS), availability_pct=pl.col("availability_pct").cast(
            pl.Float64))
    for o in outages:
        raised = datetime.fromisoformat(o["raised_at"])
        cleared = datetime.fromisoformat(o["cleared_at"]) if o["cleared_at"] else None
        if o["kind"] == "still_open":
            assert cleared is None
        elif o["kind"] == "cleared_in_last_72h":
            assert as_of - timedelta(hours=72) < cleared <= as_of
        elif where == "sample":
            assert cleared < as_of - timedelta(hours=72)
        row = alarms.filter(pl.col("alarm_id") == o["alarm_id"]).to_dicts()
        assert len(row) == 1 and row[0]["alarmed_object_id"] == o["site_id"]
        assert row[0]["alarmed_object_type"] == "site" and row[0]["perceived_severity"] == "critical"
        assert row[0]["service_affecting"] == "true" and row[0]["cleared_at"] == (o["cleared_at"] or None)
        end = cleared or as_of
        # no usage on the site's cells while it is down
        during = valid.filter(pl.col("cell_id").is_in(o["cell_ids"]) & (pl.col("usage_at") >= raised)
                              & (pl.col("usage_at") < end))
        assert during.height == 0
        # full hours of the outage: availability 0 on every cell of the site, and the rows are there
        first_full = raised.replace(minute=0, second=0) + timedelta(hours=1)
        full = kpi.filter(pl.col("cell_id").is_in(o["cell_ids"]) & (pl.col("period_start") >= first_full)
                          & (pl.col("period_start") + timedelta(hours=1) <= end))
        n_full = int((end - first_full) / timedelta(hours=1))
        assert full.height == n_full * len(o["cell_ids"]) and (full["availability_pct"] == 0).all()
        assert o["affected_customer_ids"] == affected_by_rule(folder, o, valid, subs)
    assert sum(len(o["affected_customer_ids"]) for o in outages) > 0


def test_affected_customers_raise_more_tickets(sample: Path) -> None:
    tickets = read_source(sample, "tickets").with_columns(created=pl.col("created_at").str.to_datetime(TS))
    n_customers = read_source(sample, "customers").height
    ratios = []
    for o in truth_of(sample)["outages"]:
        raised = datetime.fromisoformat(o["raised_at"])
        window = tickets.filter((pl.col("created") >= raised) & (pl.col("created") < raised + timedelta(hours=24)))
        affected = set(o["affected_customer_ids"])
        hit = window.filter(pl.col("customer_id").is_in(affected)).height / max(len(affected), 1)
        rest = window.filter(~pl.col("customer_id").is_in(affected)).height / (n_customers - len(affected))
        ratios.append(hit / max(rest, 1e-9))
    assert min(ratios) > 5, ratios


def test_the_city_is_irregular_and_the_network_lies_inside_it(op: Path) -> None:
    feats = json.loads((op / "zones.geojson").read_text())["features"]
    polys = [shapely.geometry.shape(f["geometry"]) for f in feats]
    assert all(p.is_valid and p.geom_type in ("Polygon", "MultiPolygon") for p in polys)
    vertices = [shapely.get_num_coordinates(p) for p in polys]
    areas = np.array([p.area for p in polys])
    assert len(set(vertices)) >= 3 and areas.std() / areas.mean() > 0.2
    city = shapely.union_all(polys)
    assert abs(city.area - areas.sum()) < 1e-6 * areas.sum()  # a tessellation: no overlaps
    assert city.area / city.envelope.area < 0.9  # not a rectangle
    assert {f["properties"]["zone_type"] for f in feats} == {"urban", "suburban", "rural"}
    assert all(int(f["properties"]["population"]) > 0 for f in feats)
    sites = read_source(op, "sites").with_columns(pl.col("latitude", "longitude").cast(pl.Float64))
    homes = read_source(op, "customers").with_columns(pl.col("home_latitude", "home_longitude").cast(pl.Float64))
    grown = city.buffer(1e-6)
    assert shapely.contains_xy(grown, sites["longitude"].to_numpy(), sites["latitude"].to_numpy()).all()
    assert shapely.contains_xy(grown, homes["home_longitude"].to_numpy(), homes["home_latitude"].to_numpy()).all()


def test_sizes_scale_with_customers(op: Path, sample: Path) -> None:
    for folder, n in ((op, 400), (sample, 3000)):
        g = truth_of(folder)["generator"]
        assert g["zones"] == round(24 * (n / 1000) ** 0.45)
        assert abs(g["cells"] - 6.2 * n**0.485) / (6.2 * n**0.485) < 0.05
        cells = read_source(folder, "cells")
        per_site = cells.group_by("site_id").len()["len"]
        assert per_site.max() == 3 and 2.5 < per_site.mean() <= 3
    assert 35 <= truth_of(sample)["generator"]["zones"] <= 45


def test_usage_happens_where_people_are(sample: Path) -> None:
    ch = valid_charging(sample).filter(pl.col("cell_id").is_not_null())
    cz = cell_zones(sample).select("cell_id", pl.col("zone_id").alias("cell_zone"))
    cust = read_source(sample, "customers")
    home = zone_of_points(sample, cust["home_longitude"].cast(pl.Float64).to_numpy(),
                          cust["home_latitude"].cast(pl.Float64).to_numpy())
    cust = cust.select("customer_id").with_columns(home_zone=pl.Series(home, dtype=pl.String))
    subs = read_source(sample, "subscriptions").select("subscription_id", "customer_id")
    ev = ch.join(cz, on="cell_id").join(subs, on="subscription_id").join(cust, on="customer_id")
    share_home_zone = (ev["cell_zone"] == ev["home_zone"]).mean()
    top_cell = ev.group_by("subscription_id", "cell_id").len().group_by("subscription_id").agg(
        top=pl.col("len").max(), n=pl.col("len").sum())
    share_top_cell = top_cell["top"].sum() / top_cell["n"].sum()
    # about 75% on the home cell; a home's serving site is often across a zone border, so the zone share is lower
    assert 0.5 < share_home_zone < 0.95 and 0.65 < share_top_cell < 0.85, (share_home_zone, share_top_cell)
    roaming = valid_charging(sample).filter(pl.col("service") == "roaming")
    assert roaming.height > 0 and roaming["cell_id"].null_count() == roaming.height


def test_distributions_are_plausible(sample: Path) -> None:
    truth = truth_of(sample)
    start, end = truth["generator"]["start_date"], truth["generator"]["end_date"]
    days = truth["generator"]["days"]
    subs = read_source(sample, "subscriptions").with_columns(pl.col("monthly_fee").cast(pl.Float64))
    customers = read_source(sample, "customers")
    # churn: terminations inside the window per line-month at risk, from the subscriptions file alone
    planted = set(truth["inconsistencies"]["duplicate_msisdns"]["subscription_ids"]
                  + truth["inconsistencies"]["subscriptions_of_unknown_customers"]["subscription_ids"])
    s = subs.filter(~pl.col("subscription_id").is_in(planted) & (pl.col("status") != "suspended")).with_columns(
        start=pl.col("start_date").str.to_date(), stop=pl.col("termination_date").str.to_date())
    w0, w1 = datetime.fromisoformat(start).date(), datetime.fromisoformat(end).date()
    s = s.filter(pl.col("stop").is_null() | (pl.col("stop") >= w0))
    first = pl.max_horizontal(pl.col("start") + timedelta(days=1), pl.lit(w0))
    last = pl.min_horizontal(pl.col("stop").fill_null(w1), pl.lit(w1))
    s = s.with_columns(at_risk=((last - first).dt.total_days() + 1).clip(lower_bound=0),
                       churned=pl.col("stop").is_between(w0, w1))
    rate = {pt: g["churned"].sum() / g["at_risk"].sum() * 30 for (pt,), g in s.group_by("payment_type")}
    blended = s["churned"].sum() / s["at_risk"].sum() * 30
    assert 0.015 <= blended <= 0.04 and rate["prepaid"] > rate["postpaid"], (blended, rate)
    assert abs(blended - truth["churn"]["monthly_rate"]) < 0.002
    # lines, tariffs, segments
    live = subs.filter(pl.col("status") == "active")
    assert 0.35 < (live["payment_type"] == "postpaid").mean() < 0.5
    post_fees = live.filter(pl.col("payment_type") == "postpaid")["monthly_fee"]
    assert post_fees.min() >= 10 and post_fees.max() <= 80
    assert 0.015 < (customers["segment"] == "vip").mean() < 0.05
    assert 1.1 < subs.height / customers.height < 1.5
    # ARPU per live line-month: prepaid from charging, postpaid fees after promotions plus charging
    ch = valid_charging(sample).join(subs.select("subscription_id", "payment_type"), on="subscription_id",
                                     suffix="_sub")
    line_days = truth["totals"]["rows"]  # only to assert it exists
    assert line_days["charging"] > 0
    arpu = truth["totals"]["arpu_eur_month"]
    prepaid_charged = ch.filter(pl.col("payment_type") == "prepaid")["amount"].sum()
    assert abs(prepaid_charged - truth["totals"]["charging_revenue_eur"]["prepaid"]) < 1
    assert 8 <= arpu["prepaid"] <= 15 and 12 <= arpu["blended"] <= 30 and 20 <= arpu["postpaid"] <= 60, arpu
    events_per_line_day = valid_charging(sample).height / (live.height * days)
    assert 3 <= events_per_line_day <= 5
    # KPIs
    k = read_source(sample, "kpi_hourly").with_columns(pl.all().exclude("cell_id", "period_start", "_file").cast(
        pl.Float64))
    med = k.select(pl.all().exclude("cell_id", "period_start", "_file").median()).to_dicts()[0]
    assert med["availability_pct"] == 100 and med["accessibility_pct"] > 99 and med["drop_rate_pct"] < 1
    assert 10 < med["dl_throughput_mbps"] < 80 and 10 < med["latency_ms"] < 40 and med["prb_utilisation_pct"] < 60
    assert (k["availability_pct"] < 100).mean() < 0.01
    # bills: most settled, some partially paid or unpaid, some before the window
    bills = read_source(sample, "bills")
    states = bills["state"].value_counts(normalize=True)
    share = dict(zip(states["state"], states["proportion"]))
    assert share["settled"] > 0.7 and share.get("partially_paid", 0) > 0 and share.get("sent", 0) > 0
    assert (bills["bill_date"] < start).sum() > 0
    # top-ups only for prepaid lines; promotions on about 30% of lines, some ending inside the window
    top = read_source(sample, "topups").join(subs.select("subscription_id", "payment_type"), on="subscription_id")
    assert (top["payment_type"] == "prepaid").all()
    promos = read_source(sample, "promotions")
    assert 0.2 < promos.height / subs.height < 0.4
    assert promos["valid_to"].is_between(start, end).sum() > 0
    tickets = read_source(sample, "tickets")
    assert tickets["resolved_at"].null_count() > 0 and (tickets["resolved_at"] > tickets["created_at"]).all()


def test_degraded_high_value_zones_are_clearly_the_worst(sample: Path, op: Path) -> None:
    for folder in (sample, op):
        degraded = truth_of(folder)["degraded_high_value_zones"]
        assert 2 <= len(degraded) <= 4
        z = zone_kpis(folder)
        bad, good = z.filter(pl.col("zone_id").is_in(degraded)), z.filter(~pl.col("zone_id").is_in(degraded))
        assert bad.height == len(degraded)
        assert bad["tput"].max() < 10 <= good["tput"].min() / 1.5, (bad, good["tput"].min())
        assert bad["drop"].min() > 1.5 * good["drop"].max() and bad["prb"].min() > good["prb"].max() + 15
    # high value: the lines living there bring more revenue than most zones (sample)
    subs = read_source(sample, "subscriptions").filter(pl.col("status") == "active").with_columns(
        pl.col("monthly_fee").cast(pl.Float64))
    cust = read_source(sample, "customers")
    zone = zone_of_points(sample, cust["home_longitude"].cast(pl.Float64).to_numpy(),
                          cust["home_latitude"].cast(pl.Float64).to_numpy())
    cust = cust.select("customer_id").with_columns(zone_id=pl.Series(zone, dtype=pl.String))
    fees = subs.join(cust, on="customer_id").group_by("zone_id").agg(fee=pl.col("monthly_fee").sum())
    usage = valid_charging(sample).join(subs.select("subscription_id", "customer_id"), on="subscription_id").join(
        cust, on="customer_id").group_by("zone_id").agg(usage=pl.col("amount").sum())
    rev = fees.join(usage, on="zone_id", how="left").with_columns(rev=pl.col("fee") + pl.col("usage").fill_null(0))
    rank = rev.sort("rev", descending=True)["zone_id"].to_list()
    for zid in truth_of(sample)["degraded_high_value_zones"]:
        assert rank.index(zid) < len(rank) // 3, (zid, rank.index(zid))


def test_bad_experience_drives_tickets_and_churn(sample: Path) -> None:
    """The network driver is learnable: lines living in the degraded zones complain and churn more."""
    degraded = set(truth_of(sample)["degraded_high_value_zones"])
    cust = read_source(sample, "customers")
    zone = zone_of_points(sample, cust["home_longitude"].cast(pl.Float64).to_numpy(),
                          cust["home_latitude"].cast(pl.Float64).to_numpy())
    cust = cust.select("customer_id").with_columns(bad=pl.Series([z in degraded for z in zone]))
    tickets = read_source(sample, "tickets").filter(pl.col("category") == "network_quality").join(cust,
                                                                                                  on="customer_id")
    per_customer = cust.group_by("bad").len().join(tickets.group_by("bad").agg(t=pl.len()), on="bad")
    rate = {b: t / n for b, n, t in per_customer.iter_rows()}
    assert rate[True] > 4 * rate[False], rate
    start = truth_of(sample)["generator"]["start_date"]
    subs = read_source(sample, "subscriptions").join(cust, on="customer_id").filter(
        pl.col("termination_date").is_null() | (pl.col("termination_date") >= start))
    churn = subs.group_by("bad").agg(pl.col("termination_date").is_not_null().mean().alias("share"))
    share = dict(churn.iter_rows())
    assert share[True] > 1.5 * share[False], share


def test_one_day_and_the_module_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A one-day window still plants every problem (duplicates then repeat lines of the same file)."""
    assert main(["--out", str(tmp_path / "one"), "--customers", "120", "--days", "1", "--seed", "3", "--quiet"]) == 0
    printed = json.loads(capsys.readouterr().out)
    truth = truth_of(tmp_path / "one")
    assert printed["planted"] == {k: v["count"] for k, v in truth["inconsistencies"].items()}
    assert recount(tmp_path / "one") == printed["planted"]
    assert truth["generator"]["command"] == "opencem generate --out DIR --customers 120 --days 1 --seed 3"


def test_bad_arguments_are_usage_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="--customers"):
        generate(tmp_path, customers=10)
    with pytest.raises(UsageError, match="--days"):
        generate(tmp_path, customers=100, days=0)
    assert not any(tmp_path.iterdir())
    (tmp_path / "cells.csv").write_text("cell_id\n")  # someone's real extract: never overwritten
    with pytest.raises(UsageError, match="did not write"):
        generate(tmp_path, customers=100, days=1)
    assert (tmp_path / "cells.csv").read_text() == "cell_id\n"


def test_a_new_run_replaces_an_earlier_one(tmp_path: Path) -> None:
    generate(tmp_path, customers=100, days=3, seed=1)
    (tmp_path / "notes.txt").write_text("mine")
    generate(tmp_path, customers=100, days=2, seed=1)
    names = {p.name for p in tmp_path.iterdir()}
    assert "charging_20261003.csv.gz" not in names and "charging_20261002.csv.gz" in names
    assert "notes.txt" in names


# ---------------------------------------------------------------------------------------- the sample


def test_the_sample_is_complete_small_and_consistent_with_its_truth(sample: Path) -> None:
    truth = truth_of(sample)
    g = truth["generator"]
    assert (g["customers"], g["days"], g["seed"], g["start_date"]) == (3000, 28, 7, "2026-10-01")
    readme = (sample / "README.md").read_text()
    assert "opencem generate --out data/sample --customers 3000 --days 28 --seed 7" in readme
    tokens = [(datetime(2026, 10, 1) + timedelta(days=d)).strftime("%Y%m%d") for d in range(28)]
    expected = set(SNAPSHOTS) | {"truth.json", "README.md"} | {f"{s}_{t}.csv.gz" for s in DAILY for t in tokens}
    assert {p.name for p in sample.iterdir()} == expected
    size = sum(p.stat().st_size for p in sample.iterdir())
    assert size < 25 * 2**20, size
    rows: Counter = Counter()
    for p in sample.iterdir():
        src = source_for_file(p)
        if src is None:
            continue
        rows[src.name] += (len(json.loads(p.read_text())["features"]) if src.geo
                           else read_bytes(p).count(b"\n") - 1)
    assert dict(rows) == truth["totals"]["rows"]
    assert rows["customers"] == 3000 and 250 <= rows["cells"] <= 350 and rows["charging"] > 300_000


@pytest.mark.slow
def test_the_sample_is_what_the_generator_makes(sample: Path, tmp_path: Path) -> None:
    """The committed files match the code: regenerate with the README's command and compare bytes."""
    out = tmp_path / "sample"
    proc = subprocess.run([sys.executable, "-m", "etl.cli", "generate", "--out", str(out), "--customers", "3000",
                           "--days", "28", "--seed", "7"], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert proc.returncode == 0, proc.stderr
    digest = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()
    made = {p.name: digest(p) for p in out.iterdir()}
    committed = {p.name: digest(p) for p in sample.iterdir() if p.name != "README.md"}
    assert made == committed, sorted(n for n in made if made[n] != committed.get(n))


def _peak_rss_kb(out: Path, days: int) -> int:
    proc = subprocess.Popen([sys.executable, "-m", "etl.generate", "--out", str(out), "--customers", "20000",
                             "--days", str(days), "--no-compress", "--quiet"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, proc.stderr.read()
    return usage.ru_maxrss


@pytest.mark.slow
def test_memory_does_not_grow_with_days(tmp_path: Path) -> None:
    one, four = _peak_rss_kb(tmp_path / "d1", 1), _peak_rss_kb(tmp_path / "d4", 4)
    assert four < one * 1.15, (one, four)
