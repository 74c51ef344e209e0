"""Geography: zones from `raw.zones` (WKT), sites, cells and customer homes placed in zones by a spatial join.

GeoPandas does the work in the ETL (DuckDB's spatial extension cannot be installed here). A point inside a
zone (or on its edge) takes that zone; a point outside every zone takes the nearest zone within
`max_distance_m`, else no zone; each outcome is counted. `staging.zones_map` carries one simplified GeoJSON
geometry per zone (tolerance scaled to the zones' extent, shared edges kept shared), with its centroid,
area and bounding box, small enough for the browser to draw hundreds of zones at once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import duckdb
import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from etl.config import Settings
from etl.transforms.checks import table_columns, table_exists
from etl.transforms.incremental import whole_fingerprint

log = logging.getLogger(__name__)

#: Points outside every zone but within this distance of one are placed in the nearest zone.
DEFAULT_MAX_DISTANCE_M = 1000.0
#: The map simplification tolerance, as a share of the larger side of the zones' bounding box.
SIMPLIFY_SHARE = 1 / 2000
#: Decimal places kept in the map's coordinates (6 places is about 0.1 m).
MAP_DECIMALS = 6
WGS84 = "EPSG:4326"

#: The tables this module writes, with their DuckDB column types (the runner creates empty ones if absent).
GEO_TABLES: dict[str, dict[str, str]] = {
    "staging.site_zone": {
        "site_id": "VARCHAR", "latitude": "DOUBLE", "longitude": "DOUBLE", "zone_id": "VARCHAR",
        "distance_m": "DOUBLE", "method": "VARCHAR",
    },
    "staging.cell_zone": {
        "cell_id": "VARCHAR", "site_id": "VARCHAR", "latitude": "DOUBLE", "longitude": "DOUBLE",
        "zone_id": "VARCHAR", "distance_m": "DOUBLE", "method": "VARCHAR",
    },
    "staging.customer_zone": {
        "customer_id": "VARCHAR", "zone_id": "VARCHAR", "distance_m": "DOUBLE", "method": "VARCHAR",
    },
    "staging.zones_map": {
        "zone_id": "VARCHAR", "zone_name": "VARCHAR", "zone_type": "VARCHAR", "parent_zone_id": "VARCHAR",
        "population": "BIGINT", "area_km2": "DOUBLE", "centroid_lat": "DOUBLE", "centroid_lon": "DOUBLE",
        "bbox_min_lon": "DOUBLE", "bbox_min_lat": "DOUBLE", "bbox_max_lon": "DOUBLE", "bbox_max_lat": "DOUBLE",
        "n_vertices": "BIGINT", "geojson": "VARCHAR",
    },
}

#: How a point found its zone (`method` column of the assignment tables).
METHODS = ("within", "nearest", "none", "no_location")


@dataclass(frozen=True)
class Assignment:
    """How the points of one kind were placed: inside a zone, in the nearest zone, in none, or not at all."""

    kind: str
    n_points: int
    n_within: int
    n_nearest: int
    n_unassigned: int
    """Points with a location but no zone within the stated distance."""
    n_no_location: int
    """Rows with no coordinates at all."""


@dataclass(frozen=True)
class GeoResult:
    """What `build_geo` did: zones read, the placement of each kind of point, and the map's size."""

    n_zones: int
    n_zones_without_geometry: int
    sites: Assignment
    cells: Assignment
    customers: Assignment
    max_distance_m: float
    simplify_tolerance_deg: float
    map_bytes: int
    reused: bool = False
    """The tables of the previous build were kept: its inputs and settings had not changed."""


def build_geo(con: duckdb.DuckDBPyConnection, settings: Settings | None = None, *,
              max_distance_m: float | None = None, reuse: bool = False) -> GeoResult:
    """Write `staging.site_zone`, `staging.cell_zone`, `staging.customer_zone` and `staging.zones_map`.

    Missing or empty raw tables give empty results, never an error. `max_distance_m` defaults to the
    settings' `zone_max_distance_m` if it has one, else `DEFAULT_MAX_DISTANCE_M`. With `reuse`, the tables
    already in the file are kept when they were built from the same raw zones, sites, cells and customers,
    with the same distance and this same module (`meta.geo_state` records that): a refresh that loads only
    daily files does not place a million homes again.
    """
    if max_distance_m is None:
        max_distance_m = float(getattr(settings, "zone_max_distance_m", DEFAULT_MAX_DISTANCE_M))
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    fingerprint = _inputs_fingerprint(con, max_distance_m)
    if reuse:
        kept = _kept_result(con, fingerprint)
        if kept is not None:
            log.info("geo: zones, sites, cells, customers and settings unchanged; placements kept")
            return kept
    zones_raw = _read(con, "zones", ("zone_id", "zone_name", "zone_type", "parent_zone_id", "population",
                                     "geometry"))
    zones = zones_frame(zones_raw)
    n_bad = len(zones_raw) - len(zones)
    if n_bad:
        log.warning("geo: %d zone(s) without a usable geometry are left off the map and the joins", n_bad)

    sites = _read(con, "sites", ("site_id", "latitude", "longitude"))
    site_pts = sites.rename(columns={"site_id": "id"})
    site_zone, site_a = assign_points(site_pts, zones, kind="sites", max_distance_m=max_distance_m)
    site_zone = site_zone.rename(columns={"id": "site_id"})

    cells = _read(con, "cells", ("cell_id", "site_id", "latitude", "longitude"))
    cells = _resolve_cell_locations(cells, sites)
    cell_zone, cell_a = assign_points(cells.rename(columns={"cell_id": "id"}), zones, kind="cells",
                                      max_distance_m=max_distance_m)
    cell_zone = cell_zone.rename(columns={"id": "cell_id"})

    cust = _read(con, "customers", ("customer_id", "home_latitude", "home_longitude"))
    cust_pts = cust.rename(columns={"customer_id": "id", "home_latitude": "latitude",
                                    "home_longitude": "longitude"})
    cust_zone, cust_a = assign_points(cust_pts, zones, kind="customers", max_distance_m=max_distance_m)
    cust_zone = cust_zone.rename(columns={"id": "customer_id"}).drop(columns=["latitude", "longitude"])

    zmap, tolerance = zones_map(zones)
    _write(con, "staging.site_zone", site_zone)
    _write(con, "staging.cell_zone", cell_zone)
    _write(con, "staging.customer_zone", cust_zone)
    _write(con, "staging.zones_map", zmap)
    result = GeoResult(
        n_zones=len(zones), n_zones_without_geometry=n_bad, sites=site_a, cells=cell_a, customers=cust_a,
        max_distance_m=max_distance_m, simplify_tolerance_deg=tolerance,
        map_bytes=int(zmap["geojson"].str.len().sum()) if len(zmap) else 0,
    )
    for a in (site_a, cell_a, cust_a):
        log.info("geo: %s: %d read, %d within a zone, %d in the nearest zone (<= %.0f m), %d unassigned, "
                 "%d without location", a.kind, a.n_points, a.n_within, a.n_nearest, max_distance_m,
                 a.n_unassigned, a.n_no_location)
    log.info("geo: %d zones mapped, %d bytes of GeoJSON (tolerance %.6f deg)", len(zmap), result.map_bytes,
             tolerance)
    _save_state(con, fingerprint, result)
    return result


STATE_TABLE = "meta.geo_state"
_INPUTS = ("zones", "sites", "cells", "customers")


def _inputs_fingerprint(con: duckdb.DuckDBPyConnection, max_distance_m: float) -> str:
    """What the placements depend on: the raw inputs' rows (count and XOR of row hashes), the distance, and
    this module's own source (a new version places again)."""
    parts = [f"distance={max_distance_m!r}", hashlib.sha256(Path(__file__).read_bytes()).hexdigest()]
    for source in _INPUTS:
        if table_exists(con, f"raw.{source}"):
            n, h = whole_fingerprint(con, f"raw.{source}")
            parts.append(f"{source}={n}:{h}")
        else:
            parts.append(f"{source}=absent")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()


def _kept_result(con: duckdb.DuckDBPyConnection, fingerprint: str) -> GeoResult | None:
    """The previous result, if the geo tables exist and were built from inputs with this fingerprint."""
    if not all(table_exists(con, n) for n in (STATE_TABLE, *GEO_TABLES)):
        return None
    rows = con.execute(f"SELECT result FROM {STATE_TABLE} WHERE fingerprint = ?", [fingerprint]).fetchall()
    if not rows:
        return None
    d = json.loads(rows[0][0])
    for kind in ("sites", "cells", "customers"):
        d[kind] = Assignment(**d[kind])
    return GeoResult(**(d | {"reused": True}))


def _save_state(con: duckdb.DuckDBPyConnection, fingerprint: str, result: GeoResult) -> None:
    con.execute("CREATE SCHEMA IF NOT EXISTS meta")
    con.execute(f"CREATE OR REPLACE TABLE {STATE_TABLE} (fingerprint VARCHAR, result JSON)")
    con.execute(f"INSERT INTO {STATE_TABLE} VALUES (?, ?)",
                [fingerprint, json.dumps(dataclasses.asdict(result), default=_plain)])


def _plain(value: object) -> object:
    """A NumPy scalar as the Python number it holds (for JSON)."""
    return value.item()  # type: ignore[attr-defined]


def ensure_geo_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Create each geo table that does not exist yet, empty, and return the names created."""
    created = []
    con.execute("CREATE SCHEMA IF NOT EXISTS staging")
    for name, cols in GEO_TABLES.items():
        schema, table = name.split(".")
        if not table_exists(con, name):
            ddl = ", ".join(f'"{c}" {t}' for c, t in cols.items())
            con.execute(f'CREATE TABLE "{schema}"."{table}" ({ddl})')
            created.append(name)
    return created


def zones_frame(zones: pd.DataFrame) -> gpd.GeoDataFrame:
    """Zones (with a WKT `geometry` column) as a GeoDataFrame in WGS84; unusable geometries are dropped,
    invalid ones repaired (`make_valid`, keeping the polygonal part)."""
    if zones.empty:
        return gpd.GeoDataFrame(zones.drop(columns=["geometry"]), geometry=gpd.GeoSeries([], crs=WGS84))
    geoms = shapely.from_wkt(zones["geometry"].astype(object).where(zones["geometry"].notna(), None),
                             on_invalid="ignore")
    geoms = np.array([_polygonal(g) for g in geoms], dtype=object)
    keep = np.array([g is not None and not g.is_empty for g in geoms], dtype=bool)
    gdf = gpd.GeoDataFrame(zones.drop(columns=["geometry"])[keep].reset_index(drop=True),
                           geometry=gpd.GeoSeries(list(geoms[keep]), crs=WGS84))
    return gdf.sort_values("zone_id", kind="stable").reset_index(drop=True)


def assign_points(points: pd.DataFrame, zones: gpd.GeoDataFrame, *, kind: str,
                  max_distance_m: float) -> tuple[pd.DataFrame, Assignment]:
    """Place points (`id`, `latitude`, `longitude`) in zones: inside or on the edge of a zone (the
    smallest zone_id when zones overlap), else the nearest zone within `max_distance_m`, else none.

    Returns the points with `zone_id`, `distance_m` (0 inside, metres to the zone when nearest, null
    otherwise) and `method` (one of `METHODS`), and the counts.
    """
    out = points[[c for c in points.columns]].copy()
    out["zone_id"] = pd.Series([None] * len(out), dtype=object, index=out.index)
    out["distance_m"] = np.nan
    has_loc = out["latitude"].notna() & out["longitude"].notna()
    out["method"] = np.where(has_loc, "none", "no_location")
    if has_loc.any() and len(zones):
        located = out[has_loc]
        pts = gpd.GeoDataFrame(
            {"_row": located.index}, geometry=gpd.points_from_xy(located["longitude"], located["latitude"]),
            crs=WGS84,
        )
        zz = zones[["zone_id", "geometry"]]
        hit = gpd.sjoin(pts, zz, how="inner", predicate="intersects")
        hit = hit.sort_values(["_row", "zone_id"]).drop_duplicates("_row")
        out.loc[hit["_row"].to_numpy(), "zone_id"] = hit["zone_id"].to_numpy()
        out.loc[hit["_row"].to_numpy(), "distance_m"] = 0.0
        out.loc[hit["_row"].to_numpy(), "method"] = "within"
        rest = pts[~pts["_row"].isin(hit["_row"])]
        if len(rest) and max_distance_m > 0:
            crs = zz.estimate_utm_crs()
            near = gpd.sjoin_nearest(rest.to_crs(crs), zz.to_crs(crs), how="inner",
                                     max_distance=max_distance_m, distance_col="_dist")
            near = near.sort_values(["_row", "_dist", "zone_id"]).drop_duplicates("_row")
            rows = near["_row"].to_numpy()
            out.loc[rows, "zone_id"] = near["zone_id"].to_numpy()
            out.loc[rows, "distance_m"] = near["_dist"].to_numpy()
            out.loc[rows, "method"] = "nearest"
    counts = out["method"].value_counts()
    a = Assignment(
        kind=kind, n_points=len(out), n_within=int(counts.get("within", 0)),
        n_nearest=int(counts.get("nearest", 0)), n_unassigned=int(counts.get("none", 0)),
        n_no_location=int(counts.get("no_location", 0)),
    )
    return out.reset_index(drop=True), a


def zones_map(zones: gpd.GeoDataFrame, *, tolerance_deg: float | None = None) -> tuple[pd.DataFrame, float]:
    """One row per zone: simplified GeoJSON, centroid, area (km², equal-area projection), bounding box.

    The tolerance defaults to `SIMPLIFY_SHARE` of the larger side of the zones' extent. A valid coverage
    (zones that share edges without overlapping) is simplified as a whole so neighbours stay joined;
    otherwise each zone is simplified on its own, keeping its topology.
    """
    cols = list(GEO_TABLES["staging.zones_map"])
    if zones.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols}), 0.0
    minx, miny, maxx, maxy = zones.total_bounds
    if tolerance_deg is None:
        tolerance_deg = max(maxx - minx, maxy - miny) * SIMPLIFY_SHARE
    geoms = zones.geometry.to_numpy()
    simple = None
    if len(geoms) > 1 and bool(shapely.coverage_is_valid(geoms)):
        simple = shapely.coverage_simplify(geoms, tolerance_deg)
    if simple is None:
        simple = shapely.simplify(geoms, tolerance_deg, preserve_topology=True)
    simple = np.array([s if s is not None and not s.is_empty else g for s, g in zip(simple, geoms)],
                      dtype=object)
    simple = shapely.transform(simple, lambda xy: np.round(xy, MAP_DECIMALS))

    lat0, lon0 = (miny + maxy) / 2, (minx + maxx) / 2
    laea = f"+proj=laea +lat_0={lat0:.6f} +lon_0={lon0:.6f} +datum=WGS84 +units=m +no_defs"
    projected = zones.geometry.to_crs(laea)
    centroids = gpd.GeoSeries(projected.centroid, crs=laea).to_crs(WGS84)
    bounds = zones.geometry.bounds
    out = pd.DataFrame({
        "zone_id": zones["zone_id"].astype(object),
        "zone_name": _opt(zones, "zone_name"),
        "zone_type": _opt(zones, "zone_type"),
        "parent_zone_id": _opt(zones, "parent_zone_id"),
        "population": pd.array(_opt(zones, "population"), dtype="Int64"),
        "area_km2": projected.area.to_numpy() / 1e6,
        "centroid_lat": centroids.y.to_numpy(),
        "centroid_lon": centroids.x.to_numpy(),
        "bbox_min_lon": bounds["minx"].to_numpy(),
        "bbox_min_lat": bounds["miny"].to_numpy(),
        "bbox_max_lon": bounds["maxx"].to_numpy(),
        "bbox_max_lat": bounds["maxy"].to_numpy(),
        "n_vertices": shapely.get_num_coordinates(simple).astype("int64"),
        "geojson": [shapely.to_geojson(g) for g in simple],
    })
    return out[cols], float(tolerance_deg)


def zones_feature_collection(zmap: pd.DataFrame) -> dict:
    """`staging.zones_map` rows as a GeoJSON FeatureCollection keyed by `zone_id` (what a map trace takes)."""
    return {
        "type": "FeatureCollection",
        "features": [
            {"type": "Feature", "id": r.zone_id, "properties": {"zone_id": r.zone_id, "zone_name": r.zone_name},
             "geometry": json.loads(r.geojson)}
            for r in zmap.itertuples(index=False)
        ],
    }


# --- helpers -----------------------------------------------------------------------------------------


def _polygonal(g):
    """The polygonal part of a geometry, repaired if invalid; None if there is none."""
    if g is None or g.is_empty:
        return None
    if not g.is_valid:
        g = shapely.make_valid(g)
    if g.geom_type in ("Polygon", "MultiPolygon"):
        return g
    if g.geom_type == "GeometryCollection":
        polys = [p for p in shapely.get_parts(g) if p.geom_type in ("Polygon", "MultiPolygon")]
        return shapely.union_all(polys) if polys else None
    return None


def _resolve_cell_locations(cells: pd.DataFrame, sites: pd.DataFrame) -> pd.DataFrame:
    """A cell's own coordinates when both are filled, else its site's (the same rule as staging.cells)."""
    s = sites.rename(columns={"latitude": "_slat", "longitude": "_slon"})[["site_id", "_slat", "_slon"]]
    s = s.drop_duplicates("site_id", keep="last")
    m = cells.merge(s, on="site_id", how="left")
    own = m["latitude"].notna() & m["longitude"].notna()
    m["latitude"] = np.where(own, m["latitude"], m["_slat"]).astype(float)
    m["longitude"] = np.where(own, m["longitude"], m["_slon"]).astype(float)
    return m.drop(columns=["_slat", "_slon"])


def _opt(df: pd.DataFrame, col: str) -> list:
    if col not in df.columns:
        return [None] * len(df)
    return [None if (v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA) else v
            for v in df[col].tolist()]


def _read(con: duckdb.DuckDBPyConnection, source: str, cols: tuple[str, ...]) -> pd.DataFrame:
    """`raw.<source>` restricted to `cols` (absent columns as nulls; an absent table as no rows)."""
    present = set(table_columns(con, f"raw.{source}"))
    if not present:
        return pd.DataFrame({c: pd.Series(dtype=float if c in _FLOATS else object) for c in cols})
    sel = ", ".join(f'"{c}"' if c in present else f'NULL::{"DOUBLE" if c in _FLOATS else "VARCHAR"} AS "{c}"'
                    for c in cols)
    df = con.sql(f'SELECT {sel} FROM "raw"."{source}"').df()
    for c in cols:
        if c in _FLOATS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype(float)
        elif c != "population":
            df[c] = df[c].astype(object).where(df[c].notna(), None)
    return df


_FLOATS = {"latitude", "longitude", "home_latitude", "home_longitude"}


def _write(con: duckdb.DuckDBPyConnection, name: str, df: pd.DataFrame) -> None:
    """Replace table `name` with `df`, cast to the declared column types of `GEO_TABLES`."""
    schema, table = name.split(".")
    cols = GEO_TABLES[name]
    frame = pd.DataFrame({c: df[c] if c in df.columns else None for c in cols})
    for c, t in cols.items():
        if t == "VARCHAR":
            frame[c] = frame[c].astype(object).where(frame[c].notna(), None)
    view = f"_geo_{table}"
    con.register(view, frame)
    try:
        sel = ", ".join(f'CAST("{c}" AS {t}) AS "{c}"' for c, t in cols.items())
        con.execute(f'CREATE OR REPLACE TABLE "{schema}"."{table}" AS SELECT {sel} FROM "{view}"')
    finally:
        con.unregister(view)
