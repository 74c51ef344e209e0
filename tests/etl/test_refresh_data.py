"""A tiny canonical operator written as literal extract files, for the refresh tests (no tests here).

Two sites, three cells, two customers with a subscription each, one zone, and one charging file per day
with four usage rows (one of them on a cell that is not in inventory: `unknown_reference`).
"""

from __future__ import annotations

import json
from pathlib import Path

CHARGING_HEADER = ("usage_id,subscription_id,usage_at,service,cell_id,quantity,unit,amount,currency,payment_type,"
                   "is_billed")

SNAPSHOTS = {
    "sites.csv": """site_id,name,latitude,longitude,site_type,status,commissioned_at
S1,Alpha,48.10,11.50,macro,in_service,2020-01-01T00:00:00
S2,Beta,48.12,11.53,macro,in_service,2021-05-01T00:00:00
""",
    "cells.csv": """cell_id,site_id,technology,band_mhz,azimuth_deg,capacity_mbps,status
C1,S1,4G,1800,0,150,in_service
C2,S1,5G,3500,120,900,in_service
C3,S2,4G,800,,75,in_service
""",
    "customers.csv": """customer_id,name,segment,status,created_at,home_latitude,home_longitude
K1,Ann Example,consumer,active,2024-01-01T00:00:00,48.101,11.501
K2,Bob Example,business,active,2024-02-01T00:00:00,48.121,11.531
""",
    "subscriptions.csv": """subscription_id,customer_id,msisdn,product_offering,payment_type,status,start_date,termination_date,monthly_fee
P1,K1,+491700000001,Basic,prepaid,active,2024-01-01,,9.99
P2,K2,+491700000002,Pro,postpaid,active,2024-02-01,,29.99
""",
}

ZONES = {
    "type": "FeatureCollection",
    "features": [{
        "type": "Feature",
        "properties": {"zone_id": "Z1", "zone_name": "Centre", "zone_type": "urban", "population": 1000},
        "geometry": {"type": "Polygon",
                     "coordinates": [[[11.4, 48.0], [11.6, 48.0], [11.6, 48.2], [11.4, 48.2], [11.4, 48.0]]]},
    }],
}


def usage_line(usage_id: str, day: str, *, hour: int = 8, sub: str = "P1", cell: str = "C1",
               amount: float = 0.5) -> str:
    when = f"{day[:4]}-{day[4:6]}-{day[6:]}T{hour:02d}:00:00"
    pay = "prepaid" if sub == "P1" else "postpaid"
    return f"{usage_id},{sub},{when},data,{cell},100,megabyte,{amount},EUR,{pay},true"


def charging_rows(day: str) -> list[str]:
    """Four usage rows of a day: three good ones and one on cell C9, which is not in inventory."""
    return [usage_line(f"U{day}-1", day, hour=8), usage_line(f"U{day}-2", day, hour=9, sub="P2", cell="C2"),
            usage_line(f"U{day}-3", day, hour=10, cell="C3", amount=1.25),
            usage_line(f"U{day}-4", day, hour=11, cell="C9")]


def write_day(folder: Path, day: str, rows: list[str] | None = None) -> Path:
    """`charging_<day>.csv` with the given rows (default: `charging_rows(day)`)."""
    path = folder / f"charging_{day}.csv"
    path.write_text("\n".join([CHARGING_HEADER, *(charging_rows(day) if rows is None else rows)]) + "\n")
    return path


def write_operator(folder: Path, *, days: tuple[str, ...] = ("20261101",), zones: bool = True) -> Path:
    """The snapshots, the zones (optional) and one charging file per day; plus a file that is no extract."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in SNAPSHOTS.items():
        (folder / name).write_text(text)
    if zones:
        (folder / "zones.geojson").write_text(json.dumps(ZONES))
    (folder / "truth.json").write_text("{}")
    for day in days:
        write_day(folder, day)
    return folder
