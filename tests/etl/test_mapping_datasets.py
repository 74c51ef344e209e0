"""The example mappings on the real datasets in ../shared/datasets: every row kept or quarantined with a reason.

The datasets are not part of the clone; these tests skip with a clear message where they are absent
(set OPENCEM_SHARED_DATASETS to point at them elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import polars as pl
import pytest

from etl.contracts import REASONS
from etl.extract import extract_file, extract_source_dir
from etl.mapping import check_mapping, load_mapping

ROOT = Path(__file__).resolve().parents[2]
MAPPINGS = ROOT / "examples" / "mappings"


def datasets() -> Path:
    env = os.environ.get("OPENCEM_SHARED_DATASETS")
    return Path(env) if env else (ROOT / ".." / "shared" / "datasets").resolve()


@pytest.fixture(scope="module")
def shared() -> Path:
    folder = datasets()
    if not folder.is_dir():
        pytest.skip(f"the shared datasets are not at {folder} (set OPENCEM_SHARED_DATASETS to their folder)")
    return folder


def extract_all(mapping_name: str, folder: Path) -> dict[tuple[str, str], object]:
    mapping = load_mapping(MAPPINGS / f"{mapping_name}.toml")
    assert check_mapping(mapping, folder) == ()
    found = extract_source_dir(folder, mapping=mapping)
    results = {}
    for path, source in found:
        if source.name not in mapping.sources:
            continue
        result = extract_file(path, source, name=found.name(path), mapping=mapping)
        assert result.rows_read == result.good.height + result.rejects.height
        assert set(result.rejects.get_column("reason").to_list()) <= set(REASONS)
        print(f"{mapping_name}: {source.name} from {result.file}: read {result.rows_read:,}, "
              f"kept {result.good.height:,}, quarantined {result.rejects.height:,}")
        results[(source.name, result.file)] = result
    return results


def test_california_counties_as_zones(shared):
    results = extract_all("california_zones", shared)
    (zones,) = results.values()
    assert (zones.rows_read, zones.good.height, zones.rejects.height) == (58, 58, 0)
    assert zones.good.get_column("zone_id").n_unique() == 58
    assert "CA-LOS-ANGELES" in zones.good.get_column("zone_id").to_list()
    assert zones.good.get_column("zone_type").unique().to_list() == ["county"]
    assert zones.good.get_column("geometry").str.starts_with("POLYGON").sum() + \
        zones.good.get_column("geometry").str.starts_with("MULTIPOLYGON").sum() == 58
    assert zones.good.get_column("_line").to_list() == list(range(1, 59))


def test_opencellid_rows_as_sites_and_cells(shared):
    results = extract_all("opencellid_sites_cells", shared)
    sites = next(r for (s, _), r in results.items() if s == "sites")
    cells = next(r for (s, _), r in results.items() if s == "cells")
    for result in (sites, cells):
        assert (result.rows_read, result.good.height, result.rejects.height) == (2231, 2231, 0)
    assert sites.good.get_column("site_id").n_unique() == 2231
    assert cells.good.get_column("cell_id").n_unique() == 2231
    assert set(cells.good.get_column("site_id")) == set(sites.good.get_column("site_id"))
    by_tech = dict(cells.good.group_by("technology").len().rows())
    assert by_tech == {"4G": 1724, "2G": 507}
    assert sites.good.select(pl.col("latitude").is_between(48.0, 48.3).all()).item()


def test_churn_table_as_customers_subscriptions_usage_and_tickets(shared):
    results = extract_all("churn_bigml", shared)
    counts = {key: (r.rows_read, r.good.height, r.rejects.height) for key, r in results.items()}
    for part, rows, calls in (("80", 2666, 4166), ("20", 667, 1043)):
        file = f"churn_bigml/churn-bigml-{part}.csv"
        assert counts[("customers", file)] == (rows, rows, 0)
        assert counts[("subscriptions", file)] == (rows, rows, 0)
        assert counts[("charging", file)] == (4 * rows, 4 * rows, 0)
        assert counts[("tickets", file)] == (calls, calls, 0)
    customers = pl.concat([r.good for (s, _), r in results.items() if s == "customers"])
    assert customers.height == 2666 + 667 and customers.get_column("customer_id").n_unique() == 3333
    assert dict(customers.group_by("status").len().rows()) == {"active": 2278 + 572, "terminated": 388 + 95}
    subscriptions = pl.concat([r.good for (s, _), r in results.items() if s == "subscriptions"])
    assert subscriptions.get_column("msisdn").n_unique() == 3333
    charging = pl.concat([r.good for (s, _), r in results.items() if s == "charging"])
    assert charging.get_column("usage_id").n_unique() == 4 * 3333
    tickets = pl.concat([r.good for (s, _), r in results.items() if s == "tickets"])
    assert tickets.get_column("ticket_id").n_unique() == 4166 + 1043
    assert set(tickets.get_column("customer_id")) <= set(customers.get_column("customer_id"))
