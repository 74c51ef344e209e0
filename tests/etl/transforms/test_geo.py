"""Geography: points placed in zones by spatial join, nearest zone within a distance, the simplified map."""

from __future__ import annotations

import dataclasses
import json
import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely

from etl.geo import assign_points, build_geo, zones_feature_collection, zones_frame, zones_map


def test_sites_cells_and_homes_are_placed_and_counted(raw_db, zt):
    con = raw_db({
        "zones": [zt.square("Z1", 0), zt.square("Z2", 1), {"zone_id": "ZX", "zone_name": "broken",
                                                             "geometry": "POLYGON((0 0, 1"}],
        "sites": [
            {"site_id": "S1", "latitude": 0.005, "longitude": 0.005},   # inside Z1
            {"site_id": "S2", "latitude": 0.005, "longitude": 0.01},    # on the Z1/Z2 edge: the smaller id
            {"site_id": "S3", "latitude": 0.005, "longitude": 0.0205},  # 0.0005 deg (55.7 m) east of Z2
            {"site_id": "S4", "latitude": 0.5, "longitude": 0.5},       # far from everything
        ],
        "cells": [{"cell_id": "C1", "site_id": "S1"},                   # the site's location
                  {"cell_id": "C2", "site_id": "S1", "latitude": 0.005, "longitude": 0.015},  # its own: Z2
                  {"cell_id": "C3", "site_id": "S4"}],
        "customers": [{"customer_id": "K1", "home_latitude": 0.009, "home_longitude": 0.019},
                      {"customer_id": "K2"}],
    })
    result = build_geo(con)
    assert result.n_zones == 2 and result.n_zones_without_geometry == 1
    assert (result.sites.n_within, result.sites.n_nearest, result.sites.n_unassigned) == (2, 1, 1)
    assert (result.customers.n_within, result.customers.n_no_location) == (1, 1)
    sites = zt.fetch(con, "SELECT site_id, zone_id, method, round(distance_m) AS d FROM staging.site_zone "
                          "ORDER BY site_id")
    assert sites == [
        {"site_id": "S1", "zone_id": "Z1", "method": "within", "d": 0.0},
        {"site_id": "S2", "zone_id": "Z1", "method": "within", "d": 0.0},
        {"site_id": "S3", "zone_id": "Z2", "method": "nearest", "d": 56.0},
        {"site_id": "S4", "zone_id": None, "method": "none", "d": None},
    ]
    cells = zt.fetch(con, "SELECT cell_id, latitude, longitude, zone_id, method FROM staging.cell_zone "
                          "ORDER BY cell_id")
    assert cells == [
        {"cell_id": "C1", "latitude": 0.005, "longitude": 0.005, "zone_id": "Z1", "method": "within"},
        {"cell_id": "C2", "latitude": 0.005, "longitude": 0.015, "zone_id": "Z2", "method": "within"},
        {"cell_id": "C3", "latitude": 0.5, "longitude": 0.5, "zone_id": None, "method": "none"},
    ]
    homes = zt.fetch(con, "SELECT customer_id, zone_id, method FROM staging.customer_zone ORDER BY 1")
    assert homes == [{"customer_id": "K1", "zone_id": "Z2", "method": "within"},
                     {"customer_id": "K2", "zone_id": None, "method": "no_location"}]


def test_unchanged_inputs_keep_the_placements_and_a_change_places_again(raw_db, zt):
    con = raw_db({"zones": [zt.square("Z1", 0), zt.square("Z2", 1)],
                  "sites": [{"site_id": "S1", "latitude": 0.005, "longitude": 0.005}],
                  "cells": [{"cell_id": "C1", "site_id": "S1"}],
                  "customers": [{"customer_id": "K1", "home_latitude": 0.009, "home_longitude": 0.019}]})
    first = build_geo(con, reuse=True)
    assert not first.reused
    con.execute("UPDATE staging.customer_zone SET zone_id = 'planted'")  # kept as is when nothing changed
    again = build_geo(con, reuse=True)
    assert again.reused and dataclasses.replace(again, reused=False) == first
    assert zt.fetch(con, "SELECT zone_id FROM staging.customer_zone") == [{"zone_id": "planted"}]
    assert not build_geo(con, reuse=True, max_distance_m=5.0).reused  # another distance: placed again
    assert not build_geo(con).reused  # without reuse: always placed
    assert zt.fetch(con, "SELECT zone_id FROM staging.customer_zone") == [{"zone_id": "Z2"}]
    con.execute("UPDATE raw.customers SET home_longitude = 0.005")  # the customer moved to Z1
    moved = build_geo(con, reuse=True)
    assert not moved.reused
    assert zt.fetch(con, "SELECT zone_id FROM staging.customer_zone") == [{"zone_id": "Z1"}]
    con.execute("DROP TABLE staging.cell_zone")  # a geo table missing: placed again
    assert not build_geo(con, reuse=True).reused


def test_the_stated_distance_bounds_the_nearest_zone(zt):
    zones = zones_frame(pd.DataFrame([zt.square("Z1", 0)]))
    pts = pd.DataFrame({"id": ["near", "far"], "latitude": [0.005, 0.005], "longitude": [0.0105, 0.0105]})
    out, counts = assign_points(pts, zones, kind="sites", max_distance_m=50.0)  # 0.0005 deg is 55.7 m
    assert out["method"].tolist() == ["none", "none"] and counts.n_unassigned == 2
    out, counts = assign_points(pts, zones, kind="sites", max_distance_m=60.0)
    assert out["zone_id"].tolist() == ["Z1", "Z1"] and counts.n_nearest == 2


def test_missing_raw_tables_give_empty_geo_tables(raw_db):
    con = raw_db({}, sources=("customers",))
    result = build_geo(con)
    assert result.n_zones == 0 and result.cells.n_points == 0
    for t in ("cell_zone", "site_zone", "customer_zone", "zones_map"):
        assert con.execute(f"SELECT count(*) FROM staging.{t}").fetchall() == [(0,)]


def test_zones_map_is_small_valid_and_keeps_shared_edges():
    # two zones sharing a wiggly edge of 400 vertices, and the map of both
    ys = np.linspace(0.0, 0.1, 400)
    edge = [(0.05 + 0.0004 * math.sin(60 * y), y) for y in ys]
    west = shapely.Polygon([(0.0, 0.0), *edge, (0.0, 0.1)])
    east = shapely.Polygon([(0.1, 0.0), (0.1, 0.1), *reversed(edge)])
    zones = gpd.GeoDataFrame({"zone_id": ["W", "E"], "zone_name": ["west", "east"]},
                             geometry=[west, east], crs="EPSG:4326")
    zmap, tolerance = zones_map(zones)
    assert tolerance == pytest.approx(0.1 / 2000)
    geoms = [shapely.from_geojson(g) for g in zmap["geojson"]]
    assert all(g.is_valid for g in geoms)
    assert zmap["n_vertices"].max() < 100  # from 400+
    # shared edges stay shared: no gap and no overlap between the neighbours
    assert geoms[0].intersection(geoms[1]).area == pytest.approx(0.0, abs=1e-9)
    assert shapely.union_all(geoms).area == pytest.approx(0.01, rel=1e-3)
    row = zmap.set_index("zone_id").loc["W"]
    assert row["area_km2"] == pytest.approx(0.05 * 0.1 * 111.32 * 110.57, rel=0.02)
    assert (row["bbox_min_lon"], row["bbox_max_lat"]) == (0.0, 0.1)
    assert 0.0 < row["centroid_lon"] < 0.05 and row["centroid_lat"] == pytest.approx(0.05, abs=1e-3)
    assert json.loads(row["geojson"])["type"] == "Polygon"


def test_a_square_zone_has_its_area_and_centroid(raw_db, zt):
    con = raw_db({"zones": [zt.square("Z1", 0)]})
    build_geo(con)
    (z,) = zt.fetch(con, "SELECT zone_id, zone_name, area_km2, centroid_lat, centroid_lon, n_vertices "
                         "FROM staging.zones_map")
    assert z["area_km2"] == pytest.approx(1.2308, rel=1e-3)  # 0.01 deg squared on the equator
    assert (round(z["centroid_lat"], 6), round(z["centroid_lon"], 6)) == (0.005, 0.005)
    assert z["n_vertices"] == 5 and z["zone_name"] == "Zone Z1"


def test_the_map_rows_make_a_feature_collection_keyed_by_zone(raw_db, zt):
    con = raw_db({"zones": [zt.square("Z1", 0), zt.square("Z2", 1)]})
    build_geo(con)
    fc = zones_feature_collection(con.sql("SELECT * FROM staging.zones_map ORDER BY zone_id").df())
    assert [f["id"] for f in fc["features"]] == ["Z1", "Z2"]
    assert fc["features"][1]["geometry"]["coordinates"][0][0] in ([0.01, 0.0], [0.02, 0.0], [0.02, 0.01],
                                                                  [0.01, 0.01])
