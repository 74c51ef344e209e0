from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from etl.contracts import LOAD_ORDER, SOURCES, render_markdown, source_for_file, validate_contracts

ROOT = Path(__file__).resolve().parents[2]

DESIGN_KEYS = {  # DESIGN.md's table of canonical extracts: the key columns each source must have
    "zones": {"zone_id", "zone_name", "zone_type", "parent_zone_id", "geometry"},
    "sites": {"site_id", "name", "latitude", "longitude", "status", "commissioned_at"},
    "cells": {"cell_id", "site_id", "technology", "band_mhz", "azimuth_deg", "capacity_mbps", "status"},
    "customers": {"customer_id", "name", "segment", "status", "created_at"},
    "subscriptions": {"subscription_id", "customer_id", "msisdn", "product_offering", "payment_type", "status",
                      "start_date", "termination_date", "monthly_fee"},
    "promotions": {"promotion_id", "subscription_id", "promotion_type", "valid_from", "valid_to", "discount"},
    "charging": {"usage_id", "subscription_id", "usage_at", "service", "cell_id", "quantity", "unit", "amount",
                 "currency", "payment_type", "is_billed"},
    "topups": {"topup_id", "subscription_id", "topup_at", "amount", "channel"},
    "bills": {"bill_id", "customer_id", "bill_date", "billing_period_start", "billing_period_end", "amount_due",
              "amount_paid", "state"},
    "tickets": {"ticket_id", "customer_id", "subscription_id", "created_at", "resolved_at", "category",
                "channel", "severity", "status"},
    "kpi_hourly": {"cell_id", "period_start", "availability_pct", "accessibility_pct", "drop_rate_pct",
                   "dl_throughput_mbps", "latency_ms", "prb_utilisation_pct", "traffic_volume_mb"},
    "alarms": {"alarm_id", "alarmed_object_id", "alarm_type", "perceived_severity", "probable_cause",
               "service_affecting", "raised_at", "cleared_at"},
}


def test_contracts_are_consistent() -> None:
    validate_contracts()
    assert set(SOURCES) == set(DESIGN_KEYS) == set(LOAD_ORDER)


@pytest.mark.parametrize("name", sorted(DESIGN_KEYS))
def test_every_design_column_is_declared(name: str) -> None:
    missing = DESIGN_KEYS[name] - set(SOURCES[name].column_names)
    assert not missing, f"{name} lacks {missing}"


def test_expectation_reads_like_a_sentence() -> None:
    amount = SOURCES["charging"].column("amount")
    assert amount.expectation() == "float, between 0 and 1000, not empty"
    assert "present in cells.cell_id or sites.site_id" in SOURCES["alarms"].column("alarmed_object_id").expectation()


@pytest.mark.parametrize(
    ("file", "source"),
    [("charging_20261101.csv.gz", "charging"), ("kpi_hourly_20261101.csv", "kpi_hourly"),
     ("zones.geojson", "zones"), ("cells.parquet", "cells"), ("CELLS.CSV", None), ("truth.json", None),
     ("chargingX.csv", None), ("notes.txt", None)],
)
def test_source_for_file(file: str, source: str | None) -> None:
    found = source_for_file(file)
    assert (found.name if found else None) == source


def test_docs_are_generated_from_the_contracts() -> None:
    committed = (ROOT / "docs" / "contracts.md").read_text(encoding="utf-8")
    assert committed == render_markdown(), "docs/contracts.md is stale: run `make docs`"
    out = subprocess.run([sys.executable, "-m", "etl.contracts"], capture_output=True, text=True, check=True)
    assert out.stdout == committed
