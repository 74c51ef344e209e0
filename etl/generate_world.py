"""The synthetic operator's static world: city outline, zones, sites, cells, customers, subscriptions.

Kept apart from `etl/generate.py` (which streams the days and writes the files) so each part stays
readable. Everything is numpy arrays in local kilometres around a fixed city centre; nothing here
writes files. Randomness comes from named child generators (`rng_for`), so one part's draws never shift
another's.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
import shapely
from scipy.spatial import cKDTree

#: The city centre (Milan-like latitude): every coordinate is kilometres east/north of it.
CENTRE_LAT, CENTRE_LON = 45.46, 9.19
KM_PER_DEG_LAT = 110.574
KM_PER_DEG_LON = 111.320 * math.cos(math.radians(CENTRE_LAT))

SEGMENTS = ("consumer", "business", "vip")
SEGMENT_P = (0.85, 0.12, 0.03)
PAYMENT = ("prepaid", "postpaid")
#: Share of a segment's subscriptions that are postpaid (blended about 42%).
POSTPAID_P = (0.33, 0.90, 0.95)
#: Subscriptions per customer (1, 2, 3) by segment.
LINES_P = ((0.82, 0.14, 0.04), (0.50, 0.30, 0.20), (0.60, 0.30, 0.10))
MEAN_EVENTS_PER_DAY = 4.0
#: Customers created inside the window, per 30 days (gross adds), and lines that ended before it.
GROSS_ADDS_PER_MONTH = 0.028
ENDED_BEFORE_WINDOW = 0.06
MARKET_SHARE = 0.32
"""Residents per customer is 1/MARKET_SHARE: zone populations are customers scaled up by it."""

# Usage and rating (EUR). Services: 0 voice, 1 sms, 2 data, 3 roaming, 4 vas.
SERVICES = ("voice", "sms", "data", "roaming", "vas")
SERVICE_P = (0.33, 0.14, 0.495, 0.015, 0.02)
VOICE_MEDIAN_S, VOICE_SIGMA = 75.0, 1.0
DATA_MEDIAN_MB, DATA_SIGMA = 12.0, 1.3
PREPAID_VOICE_MIN, PREPAID_SMS, PREPAID_DATA_MB, PREPAID_DATA_CAP = 0.02, 0.03, 0.0015, 5.0
OOB_VOICE_MIN, OOB_SMS, OOB_DATA_MB, OOB_DATA_CAP = 0.15, 0.10, 0.01, 10.0
ROAMING_VOICE_MIN, ROAMING_DATA_MB, ROAMING_DATA_CAP = 0.20, 0.03, 50.0
VAS_PRICES = (0.29, 0.49, 0.79, 0.99)


def expected_event_amount(*, rate: float, postpaid: bool, oob: float) -> float:
    """Expected rated amount of one usage event (caps ignored: they bind rarely)."""
    minutes = VOICE_MEDIAN_S * math.exp(VOICE_SIGMA**2 / 2) / 60
    mb = DATA_MEDIAN_MB * math.exp(DATA_SIGMA**2 / 2)
    roaming = 0.5 * ROAMING_VOICE_MIN * minutes + 0.5 * ROAMING_DATA_MB * mb
    vas = sum(VAS_PRICES) / len(VAS_PRICES)
    if postpaid:
        home = oob * (SERVICE_P[0] * OOB_VOICE_MIN * minutes + SERVICE_P[1] * OOB_SMS + SERVICE_P[2] * OOB_DATA_MB * mb)
    else:
        home = rate * (SERVICE_P[0] * PREPAID_VOICE_MIN * minutes + SERVICE_P[1] * PREPAID_SMS
                       + SERVICE_P[2] * PREPAID_DATA_MB * mb)
    return home + SERVICE_P[3] * roaming + SERVICE_P[4] * vas


@dataclass(frozen=True)
class Offering:
    """A tariff: its recurring fee (EUR/month), usage-rate multiplier (prepaid) and out-of-bundle share."""

    name: str
    payment_type: str
    fee: float
    rate: float = 1.0
    oob: float = 0.0


OFFERINGS: tuple[Offering, ...] = (
    Offering("Prepaid Easy", "prepaid", 0.0, rate=1.6),
    Offering("Prepaid Smart 5", "prepaid", 4.99, rate=0.8),
    Offering("Prepaid Smart 8", "prepaid", 7.99, rate=0.55),
    Offering("Prepaid Giga 12", "prepaid", 11.99, rate=0.4),
    Offering("Postpaid S", "postpaid", 14.99, oob=0.06),
    Offering("Postpaid M", "postpaid", 24.99, oob=0.04),
    Offering("Postpaid L", "postpaid", 34.99, oob=0.025),
    Offering("Postpaid XL", "postpaid", 49.99, oob=0.01),
    Offering("Business Pro", "postpaid", 39.99, oob=0.02),
    Offering("Business Unlimited", "postpaid", 69.99, oob=0.005),
    Offering("VIP Infinity", "postpaid", 79.99, oob=0.0),
)
#: Offering weights by (segment, payment type), indexed like OFFERINGS.
OFFER_WEIGHTS: dict[tuple[int, int], tuple[float, ...]] = {
    (0, 0): (0.30, 0.35, 0.25, 0.10, 0, 0, 0, 0, 0, 0, 0),
    (1, 0): (0.20, 0.35, 0.30, 0.15, 0, 0, 0, 0, 0, 0, 0),
    (2, 0): (0.00, 0.10, 0.30, 0.60, 0, 0, 0, 0, 0, 0, 0),
    (0, 1): (0, 0, 0, 0, 0.30, 0.35, 0.25, 0.10, 0, 0, 0),
    (1, 1): (0, 0, 0, 0, 0.00, 0.15, 0.15, 0.00, 0.45, 0.25, 0),
    (2, 1): (0, 0, 0, 0, 0.00, 0.00, 0.00, 0.40, 0.00, 0.20, 0.40),
}

ZONE_PREFIXES = (
    "San", "Santa", "Porta", "Borgo", "Villa", "Ponte", "Monte", "Case", "Cascina", "Corte", "Prato",
    "Campo", "Colle", "Rio", "Pian", "Vigna", "Torre", "Castel", "Lago", "Bosco", "Valle", "Fonte",
)
ZONE_ROOTS = (
    "Nuova", "Vecchia", "Alta", "Bassa", "Verde", "Rosa", "Lunga", "Grande", "Fiorita", "Serena",
    "Maggiore", "Bianca", "del Sole", "dei Mulini", "di Sopra", "di Sotto", "al Piano", "Ardesia",
    "Lucente", "dei Pini", "delle Rose", "Marina", "Antica", "San Marco", "Olmo",
)
FIRST_NAMES = (
    "Giulia", "Marco", "Francesca", "Luca", "Sara", "Alessandro", "Chiara", "Matteo", "Elena", "Andrea",
    "Martina", "Davide", "Valentina", "Simone", "Federica", "Lorenzo", "Anna", "Paolo", "Silvia",
    "Giovanni", "Laura", "Stefano", "Alice", "Roberto", "Elisa", "Fabio", "Giorgia", "Nicola", "Marta",
    "Riccardo", "Ilaria", "Tommaso", "Aisha", "Omar", "Mei", "Wei", "Ana", "Jorge", "Olga", "Ivan",
    "Fatima", "Samuel", "Noemi", "Gabriele", "Beatrice", "Emma", "Pietro", "Camilla", "Diego", "Irene",
)
LAST_NAMES = (
    "Rossi", "Russo", "Ferrari", "Esposito", "Bianchi", "Romano", "Colombo", "Ricci", "Marino", "Greco",
    "Bruno", "Gallo", "Conti", "De Luca", "Mancini", "Costa", "Giordano", "Rizzo", "Lombardi", "Moretti",
    "Barbieri", "Fontana", "Santoro", "Mariani", "Rinaldi", "Caruso", "Ferrara", "Galli", "Martini",
    "Leone", "Longo", "Gentile", "Martinelli", "Vitale", "Lombardo", "Serra", "Coppola", "De Santis",
    "D'Angelo", "Marchetti", "Parisi", "Villa", "Conte", "Ferraro", "Ferri", "Fabbri", "Bianco",
    "Marini", "Grasso", "Valentini", "Chen", "Garcia", "Popescu", "Kowalski", "Haddad", "Nguyen",
)
STREETS = (
    "Via Roma", "Via Garibaldi", "Via Mazzini", "Corso Italia", "Via Verdi", "Via Dante", "Viale Europa",
    "Via Manzoni", "Via Cavour", "Piazza Duomo", "Via Volta", "Via dei Mille", "Via Torino", "Via Milano",
    "Viale Monza", "Via Solferino", "Corso Buenos Aires", "Via Padova", "Via Larga", "Via Marconi",
)


def rng_for(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """A generator for one named stream (and day): independent of how much any other stream drew."""
    return np.random.default_rng(
        np.random.SeedSequence(entropy=seed, spawn_key=(zlib.crc32(stream.encode()), *keys))
    )


def default_zones(customers: int) -> int:
    """Zones scale with size: about 40 for 3,000 customers, over 500 for a million."""
    return max(4, round(24 * (customers / 1000) ** 0.45))


def default_cells(customers: int) -> int:
    """Cells scale with size: about 300 for 3,000 customers, about 5,000 for a million."""
    return max(6, round(6.2 * customers**0.485))


def km_to_lonlat(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return CENTRE_LON + np.asarray(x) / KM_PER_DEG_LON, CENTRE_LAT + np.asarray(y) / KM_PER_DEG_LAT


# --------------------------------------------------------------------------------------------- city


@dataclass(frozen=True)
class City:
    """Outline, population density sampled on a grid, and the zone tessellation."""

    radius_km: float
    outline: shapely.Polygon
    grid_x: np.ndarray
    grid_y: np.ndarray
    grid_density: np.ndarray
    """Residents' density (relative) at each grid point inside the outline."""
    grid_day_density: np.ndarray
    """Where people spend the day (more central): used for work locations."""
    grid_step: float
    zone_seeds: np.ndarray
    zone_polygons: tuple  # shapely Polygon/MultiPolygon in km, one per zone
    zone_ids: tuple[str, ...]
    zone_names: tuple[str, ...]
    zone_types: tuple[str, ...]
    zone_population: np.ndarray
    zone_tree: cKDTree

    def zone_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Zone index of points inside the outline (a Voronoi zone is the set nearest to its seed)."""
        return self.zone_tree.query(np.column_stack([x, y]))[1].astype(np.int32)

    def sample_points(self, rng: np.random.Generator, n: int, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """n points drawn from the grid by weight, jittered inside the grid cell, always inside the city."""
        p = weights / weights.sum()
        i = rng.choice(len(p), size=n, p=p)
        h = self.grid_step / 2
        x = self.grid_x[i] + rng.uniform(-h, h, n)
        y = self.grid_y[i] + rng.uniform(-h, h, n)
        outside = ~shapely.contains_xy(self.outline, x, y)
        x[outside], y[outside] = self.grid_x[i[outside]], self.grid_y[i[outside]]
        return x, y


def _outline(rng: np.random.Generator, radius: float) -> shapely.Polygon:
    """A smooth random blob: a circle whose radius wobbles with a few low harmonics."""
    theta = np.linspace(0, 2 * np.pi, 240, endpoint=False)
    r = np.ones_like(theta)
    for k in range(2, 8):
        r += rng.uniform(0.03, 0.15) / (k / 2) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    r = 0.45 + (r - r.min()) / (r.max() - r.min()) * 0.85 if r.min() < 0.45 else r
    poly = shapely.Polygon(np.column_stack([radius * r * np.cos(theta), radius * r * np.sin(theta)]))
    return shapely.make_valid(poly) if not poly.is_valid else poly


def build_city(seed: int, *, customers: int, zones: int) -> City:
    """The city: outline, density with a centre and a few hotspots, and Voronoi zones clipped to it."""
    rng = rng_for(seed, "city")
    radius = max(2.5, 5.0 * (customers / 3000) ** 0.2)
    outline = _outline(rng, radius)
    minx, miny, maxx, maxy = outline.bounds
    n_grid = 360
    step = max(maxx - minx, maxy - miny) / n_grid
    gx, gy = np.meshgrid(np.arange(minx + step / 2, maxx, step), np.arange(miny + step / 2, maxy, step))
    gx, gy = gx.ravel(), gy.ravel()
    inside = shapely.contains_xy(outline, gx, gy)
    gx, gy = gx[inside], gy[inside]

    dist = np.hypot(gx, gy)
    density = np.exp(-dist / (0.3 * radius)) + 0.03
    day_density = 2.0 * np.exp(-dist / (0.18 * radius))
    n_hot = int(rng.integers(3, 7))
    for _ in range(n_hot):
        ang, rad = rng.uniform(0, 2 * np.pi), radius * rng.uniform(0.2, 0.75)
        cx, cy = rad * math.cos(ang), rad * math.sin(ang)
        s = radius * rng.uniform(0.05, 0.12)
        bump = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * s * s))
        density += rng.uniform(0.3, 0.8) * bump
        day_density += rng.uniform(0.5, 1.5) * bump

    # Zone seeds denser towards the centre and hotspots, relaxed twice (Lloyd) so zones look like districts.
    seed_w = density**0.6
    i = rng.choice(len(gx), size=zones, replace=False, p=seed_w / seed_w.sum())
    seeds = np.column_stack([gx[i], gy[i]])
    for _ in range(2):
        owner = cKDTree(seeds).query(np.column_stack([gx, gy]))[1]
        wsum = np.bincount(owner, seed_w, minlength=zones)
        cx = np.bincount(owner, seed_w * gx, minlength=zones)
        cy = np.bincount(owner, seed_w * gy, minlength=zones)
        moved = wsum > 0
        cand = seeds.copy()
        cand[moved] = np.column_stack([cx[moved] / wsum[moved], cy[moved] / wsum[moved]])
        ok = shapely.contains_xy(outline, cand[:, 0], cand[:, 1])
        seeds[ok] = cand[ok]
    seeds = seeds + rng.uniform(-1e-4, 1e-4, seeds.shape)  # no two seeds coincide

    cells = shapely.voronoi_polygons(
        shapely.MultiPoint(seeds), extend_to=outline.buffer(radius), ordered=True
    ).geoms
    polygons = []
    for k, cell in enumerate(cells):
        if not cell.contains(shapely.Point(seeds[k])):
            raise RuntimeError(f"Voronoi cell {k} does not hold its seed; GEOS >= 3.12 is needed")
        piece = shapely.intersection(cell, outline)
        if piece.geom_type not in ("Polygon", "MultiPolygon"):  # drop slivers of lower dimension
            parts = [g for g in shapely.get_parts(piece) if g.geom_type == "Polygon"]
            piece = parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)
        polygons.append(piece)

    tree = cKDTree(seeds)
    owner = tree.query(np.column_stack([gx, gy]))[1]
    zone_w = np.bincount(owner, density, minlength=zones)
    residents = customers / MARKET_SHARE
    population = np.round(residents * zone_w / zone_w.sum()).astype(np.int64)

    seed_dist = np.hypot(seeds[:, 0], seeds[:, 1]) / radius
    types = tuple("urban" if r < 0.35 else "suburban" if r < 0.7 else "rural" for r in seed_dist)
    width = max(3, len(str(zones)))
    ids = tuple(f"Z{k + 1:0{width}d}" for k in range(zones))
    names = _zone_names(rng, zones)
    return City(
        radius_km=radius, outline=outline, grid_x=gx, grid_y=gy, grid_density=density,
        grid_day_density=day_density, grid_step=step, zone_seeds=seeds, zone_polygons=tuple(polygons),
        zone_ids=ids, zone_names=names, zone_types=types, zone_population=population, zone_tree=tree,
    )


def _zone_names(rng: np.random.Generator, n: int) -> tuple[str, ...]:
    combos = [f"{p} {r}" for p in ZONE_PREFIXES for r in ZONE_ROOTS]
    order = rng.permutation(len(combos))
    out = []
    for k in range(n):
        base = combos[order[k % len(combos)]]
        out.append(base if k < len(combos) else f"{base} {k // len(combos) + 1}")
    return tuple(out)


# ------------------------------------------------------------------------------------------ network


@dataclass
class Network:
    """Sites and cells. Not frozen: capacity, technology and the degraded flag are filled in by the
    simulation's dimensioning step, once the demand on each cell is known."""

    site_x: np.ndarray
    site_y: np.ndarray
    site_zone: np.ndarray
    site_type: np.ndarray  # str
    site_in_service: np.ndarray  # bool
    site_commissioned_day: np.ndarray  # int days relative to the window start
    site_ids: np.ndarray  # str
    site_names: np.ndarray  # str
    cell_site: np.ndarray
    cell_sector: np.ndarray
    cell_azimuth: np.ndarray  # float, nan for omni cells
    cell_ids: np.ndarray  # str
    site_first_cell: np.ndarray
    site_n_cells: np.ndarray
    serving_tree: cKDTree
    serving_sites: np.ndarray  # in-service site index of each tree point
    cell_nominal_mbps: np.ndarray | None = None
    cell_degraded: np.ndarray | None = None
    cell_technology: np.ndarray | None = None
    cell_band: np.ndarray | None = None

    @property
    def cell_zone(self) -> np.ndarray:
        return self.site_zone[self.cell_site]

    @property
    def cell_in_service(self) -> np.ndarray:
        return self.site_in_service[self.cell_site]

    def serving_cell(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The cell that serves a point: the nearest in-service site, the sector facing the point."""
        site = self.serving_sites[self.serving_tree.query(np.column_stack([x, y]))[1]]
        bearing = np.degrees(np.arctan2(x - self.site_x[site], y - self.site_y[site])) % 360
        n = self.site_n_cells[site]
        base = self.cell_azimuth[self.site_first_cell[site]]
        base = np.where(np.isnan(base), 0.0, base)
        sector = np.round(((bearing - base) % 360) / (360 / np.maximum(n, 1))).astype(np.int64) % np.maximum(n, 1)
        return (self.site_first_cell[site] + sector).astype(np.int32)


def build_network(seed: int, city: City, *, customers: int) -> Network:
    """Macro sites (three sectors) spread by population, small cells in hotspots, a few planned sites."""
    rng = rng_for(seed, "network")
    target = default_cells(customers)
    n_small = max(1, round(0.06 * target))
    n_macro = max(2, round((target - n_small) / 3))
    gx, gy, w = city.grid_x, city.grid_y, city.grid_density

    # Weighted k-means (a few Lloyd steps) on the density: sites end up denser where people live.
    x, y = city.sample_points(rng, n_macro, w)
    pts = np.column_stack([gx, gy])
    for _ in range(8):
        owner = cKDTree(np.column_stack([x, y])).query(pts)[1]
        wsum = np.bincount(owner, w, minlength=n_macro)
        moved = wsum > 0
        nx = np.where(moved, np.bincount(owner, w * gx, minlength=n_macro) / np.where(moved, wsum, 1), x)
        ny = np.where(moved, np.bincount(owner, w * gy, minlength=n_macro) / np.where(moved, wsum, 1), y)
        ok = shapely.contains_xy(city.outline, nx, ny)
        x, y = np.where(ok, nx, x), np.where(ok, ny, y)
    jit = city.grid_step * 0.3
    x = x + rng.uniform(-jit, jit, n_macro)
    y = y + rng.uniform(-jit, jit, n_macro)
    sx, sy = city.sample_points(rng, n_small, w**2)
    x, y = np.concatenate([x, sx]), np.concatenate([y, sy])
    for _ in range(100):  # nudge strays towards the centre: the outline is star-shaped around it
        out = ~shapely.contains_xy(city.outline, x, y)
        if not out.any():
            break
        x[out], y[out] = x[out] * 0.97, y[out] * 0.97

    n_sites = n_macro + n_small
    site_type = np.array(["macro"] * n_macro + list(rng.choice(["small_cell", "micro", "indoor"], n_small,
                                                                p=[0.6, 0.25, 0.15])), dtype=object)
    in_service = np.ones(n_sites, bool)
    n_planned = max(1, round(0.02 * n_sites))
    in_service[rng.choice(n_macro, size=min(n_planned, n_macro - 1), replace=False)] = False
    commissioned = -rng.integers(60, 20 * 365, n_sites)
    width = max(4, len(str(n_sites)))
    site_ids = np.array([f"S{k + 1:0{width}d}" for k in range(n_sites)], dtype=object)
    zone = city.zone_of(x, y)
    kind = {"macro": "M", "small_cell": "SC", "micro": "MI", "indoor": "IN"}
    site_names = np.array([f"{city.zone_names[z]} {kind[t]}{k + 1}" for k, (z, t) in
                           enumerate(zip(zone, site_type))], dtype=object)

    n_cells_site = np.where(site_type == "macro", 3, 1)
    first = np.concatenate([[0], np.cumsum(n_cells_site)[:-1]])
    cell_site = np.repeat(np.arange(n_sites), n_cells_site)
    cell_sector = np.arange(len(cell_site)) - first[cell_site]
    base_az = np.round(rng.uniform(0, 120, n_sites))
    az = np.where(site_type[cell_site] == "macro", (base_az[cell_site] + 120 * cell_sector) % 360, np.nan)
    cell_ids = np.array([f"C{s + 1:0{width}d}-{k + 1}" for s, k in zip(cell_site, cell_sector)], dtype=object)

    serving = np.flatnonzero(in_service)
    return Network(
        site_x=x, site_y=y, site_zone=zone, site_type=site_type, site_in_service=in_service,
        site_commissioned_day=commissioned, site_ids=site_ids, site_names=site_names, cell_site=cell_site,
        cell_sector=cell_sector, cell_azimuth=az, cell_ids=cell_ids, site_first_cell=first,
        site_n_cells=n_cells_site, serving_tree=cKDTree(np.column_stack([x[serving], y[serving]])),
        serving_sites=serving,
    )


# ---------------------------------------------------------------------------------------- customers


@dataclass(frozen=True)
class Base:
    """Customers and their subscriptions (one array per attribute; subscriptions index customers)."""

    cust_x: np.ndarray
    cust_y: np.ndarray
    cust_zone: np.ndarray
    cust_segment: np.ndarray  # int8 index into SEGMENTS
    cust_created_s: np.ndarray  # seconds relative to the window start
    cust_payer: np.ndarray  # 0 pays on time, 1 pays late/partially, 2 does not pay
    sub_cust: np.ndarray
    sub_pay: np.ndarray  # 0 prepaid, 1 postpaid
    sub_offer: np.ndarray
    sub_fee: np.ndarray
    sub_price_index: np.ndarray
    """(fee - the segment's usual fee for that payment type) / usual fee: the churn price driver."""
    sub_start_day: np.ndarray
    sub_end_day: np.ndarray  # termination day (relative), NO_END while live
    sub_reason: np.ndarray  # 0 none, 1 voluntary, 2 involuntary, 3 migration
    sub_suspended: np.ndarray
    sub_lambda: np.ndarray  # expected usage events per day
    sub_home_cell: np.ndarray
    sub_work_cell: np.ndarray
    sub_msisdn: np.ndarray  # int64 national significant number
    sub_renew_dom: np.ndarray  # day of month of the prepaid bundle renewal
    sub_topup_period: np.ndarray
    sub_topup_phase: np.ndarray
    sub_topup_amount: np.ndarray
    promo_sub: np.ndarray
    promo_type: np.ndarray  # str
    promo_from_day: np.ndarray
    promo_to_day: np.ndarray  # NO_END when open-ended
    promo_discount: np.ndarray

    @property
    def n_subs(self) -> int:
        return len(self.sub_cust)


NO_END = np.int32(1 << 30)
PROMO_TYPES = ("discount", "bundle", "loyalty", "retention", "device")


def expected_monthly_usage_charge(rate: float, payment: int, oob: float) -> float:
    """Expected rated usage in EUR/month for a subscriber at the mean activity."""
    return 30 * MEAN_EVENTS_PER_DAY * expected_event_amount(rate=rate, postpaid=bool(payment), oob=oob)


def build_base(seed: int, city: City, net: Network, *, customers: int, days: int) -> Base:
    """Customers with homes, lines with tariffs, tenure, activity, home/work cells and promotions."""
    rng = rng_for(seed, "customers")
    n = customers
    cx, cy = city.sample_points(rng, n, city.grid_density)
    zone = city.zone_of(cx, cy)
    segment = rng.choice(3, size=n, p=SEGMENT_P).astype(np.int8)
    payer = rng.choice(3, size=n, p=(0.90, 0.06, 0.04)).astype(np.int8)
    new = rng.random(n) < GROSS_ADDS_PER_MONTH * days / 30

    lines = np.empty(n, np.int64)
    u = rng.random(n)
    for s in range(3):
        cum = np.cumsum(LINES_P[s])
        lines[segment == s] = 1 + np.searchsorted(cum, u[segment == s], side="right")
    lines = np.minimum(lines, 3)
    sub_cust = np.repeat(np.arange(n), lines).astype(np.int32)
    m = len(sub_cust)
    first_line = np.concatenate([[True], sub_cust[1:] != sub_cust[:-1]])

    # Tenure: most lines are years old, some recent; extra lines of a customer are younger than the first.
    tenure = np.where(rng.random(n) < 0.15, rng.uniform(1, 180, n), np.minimum(rng.exponential(4 * 365, n) + 30,
                                                                                15 * 365))
    cust_start = -np.ceil(tenure).astype(np.int64)
    cust_start[new] = rng.integers(0, max(days, 1), new.sum())
    frac = np.where(first_line, 0.0, rng.random(m))
    sub_start = (cust_start[sub_cust] + np.floor(frac * np.maximum(-cust_start[sub_cust], 0))).astype(np.int32)
    sub_start = np.where(new[sub_cust], np.maximum(sub_start, cust_start[sub_cust]), sub_start).astype(np.int32)
    created_s = cust_start * 86400 - rng.integers(0, 30 * 86400, n)
    created_s[new] = cust_start[new] * 86400 + rng.integers(0, 12 * 3600, new.sum())

    seg = segment[sub_cust]
    pay = (rng.random(m) < np.array(POSTPAID_P)[seg]).astype(np.int8)
    offer = np.empty(m, np.int16)
    u = rng.random(m)
    for (s, p), weights in OFFER_WEIGHTS.items():
        sel = (seg == s) & (pay == p)
        cum = np.cumsum(weights) / np.sum(weights)
        offer[sel] = np.searchsorted(cum, u[sel], side="right")
    offer = np.minimum(offer, len(OFFERINGS) - 1)
    list_fee = np.array([o.fee for o in OFFERINGS])[offer]
    # Legacy tariffs: some long-standing lines still pay an older, higher price.
    legacy = (sub_start < -730) & (rng.random(m) < 0.25) & (list_fee > 0)
    fee = np.where(legacy, np.minimum(np.floor(list_fee * rng.uniform(1.1, 1.4, m)) + 0.99, 79.99),
                   list_fee).round(2)
    norm = np.zeros(m)
    for (s, p), weights in OFFER_WEIGHTS.items():
        sel = (seg == s) & (pay == p)
        w = np.asarray(weights)
        norm[sel] = max(float(np.dot(w / w.sum(), [o.fee for o in OFFERINGS])), 5.0)
    price_index = np.clip((fee - norm) / norm, -1.0, 2.0)

    end = np.full(m, NO_END, np.int32)
    reason = np.zeros(m, np.int8)
    can_end = (sub_start < -60) & ~new[sub_cust]
    ended = can_end & (rng.random(m) < ENDED_BEFORE_WINDOW)
    end[ended] = (sub_start[ended] + 30 + np.floor(rng.random(ended.sum()) * (-sub_start[ended] - 31))).astype(
        np.int32)
    reason[ended] = rng.choice([1, 2, 3], size=ended.sum(), p=[0.8, 0.12, 0.08])
    suspended = (end == NO_END) & (pay == 1) & (payer[sub_cust] == 2) & (rng.random(m) < 0.25) & (sub_start < -90)

    activity = rng.lognormal(0, 0.7, m) * np.array([1.0, 1.2, 1.4])[seg]
    lam = MEAN_EVENTS_PER_DAY * activity / activity.mean()

    home_cell = net.serving_cell(cx, cy)[sub_cust]
    wx, wy = city.sample_points(rng, m, city.grid_day_density)
    stays_home = rng.random(m) < 0.2  # works at home or nearby: the "other" cell is a neighbour
    r, a = rng.uniform(0.3, 1.5, m), rng.uniform(0, 2 * np.pi, m)
    hx, hy = cx[sub_cust] + r * np.cos(a), cy[sub_cust] + r * np.sin(a)
    inside = shapely.contains_xy(city.outline, hx, hy)
    wx = np.where(stays_home & inside, hx, wx)
    wy = np.where(stays_home & inside, hy, wy)
    work_cell = net.serving_cell(wx, wy)

    msisdn = msisdn_numbers(np.arange(m, dtype=np.int64))

    start_dom = _day_of_month(sub_start, rng)
    period = rng.choice([7, 10, 14, 30], size=m, p=[0.3, 0.15, 0.3, 0.25]).astype(np.int16)
    monthly = np.array([o.fee + expected_monthly_usage_charge(o.rate, 0, 0.0) for o in OFFERINGS])[offer]
    spend = monthly * lam / MEAN_EVENTS_PER_DAY * period / 30 * rng.uniform(0.9, 1.3, m)
    topup_amount = np.maximum(5, np.round(spend / 5) * 5)
    phase = (rng.random(m) * period).astype(np.int16)

    promos = _promotions(rng, sub_start=sub_start, end=end, days=days)
    return Base(
        cust_x=cx, cust_y=cy, cust_zone=zone, cust_segment=segment, cust_created_s=created_s, cust_payer=payer,
        sub_cust=sub_cust, sub_pay=pay, sub_offer=offer, sub_fee=fee,
        sub_price_index=price_index, sub_start_day=sub_start, sub_end_day=end, sub_reason=reason,
        sub_suspended=suspended, sub_lambda=lam, sub_home_cell=home_cell, sub_work_cell=work_cell,
        sub_msisdn=msisdn, sub_renew_dom=start_dom, sub_topup_period=period, sub_topup_phase=phase,
        sub_topup_amount=topup_amount, **promos,
    )


def msisdn_numbers(k: np.ndarray) -> np.ndarray:
    """Distinct 10-digit mobile numbers (3xxxxxxxxx) for distinct k: an affine bijection mod 10**9."""
    return 3_000_000_000 + (k.astype(np.int64) * 7_919_113 + 123_456_789) % 1_000_000_000


def _day_of_month(start_day: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A renewal day of month (1..28) per line: months of any length have it."""
    return (1 + (np.abs(start_day) + rng.integers(0, 28, len(start_day))) % 28).astype(np.int8)


def _promotions(rng: np.random.Generator, *, sub_start: np.ndarray, end: np.ndarray, days: int) -> dict:
    """About 30% of lines live around the window get one promotion; a share of them end inside it."""
    m = len(sub_start)
    alive = (end > -60) & (sub_start < days)
    chosen = np.flatnonzero(alive & (rng.random(m) < 0.30))
    k = len(chosen)
    ptype = rng.choice(len(PROMO_TYPES), size=k, p=[0.4, 0.2, 0.15, 0.1, 0.15])
    duration = np.select(
        [ptype == 0, ptype == 1, ptype == 2, ptype == 3, ptype == 4],
        [rng.integers(90, 366, k), rng.integers(180, 731, k), np.full(k, 365), rng.integers(90, 181, k),
         np.full(k, 730)],
    )
    discount = np.select(
        [ptype == 0, ptype == 1, ptype == 2, ptype == 3, ptype == 4],
        [rng.choice([10, 20, 25, 30, 50], k), rng.choice([0, 10, 15, 20], k), rng.choice([10, 15, 20], k),
         rng.choice([20, 30, 40], k), np.zeros(k)],
    ).astype(float)
    earliest = np.maximum(sub_start[chosen], -720)
    latest = np.minimum(end[chosen], days - 1)
    valid_from = earliest + np.floor(rng.random(k) * np.maximum(latest - earliest, 1)).astype(np.int64)
    valid_to = valid_from + duration - 1
    # A quarter end in the month before or inside the window: "promotion just ended" is a churn driver.
    ends_now = (rng.random(k) < 0.25) & (end[chosen] == NO_END) & (sub_start[chosen] < -60)
    forced_to = rng.integers(-25, max(days, 2), k)
    valid_to = np.where(ends_now, forced_to, valid_to)
    valid_from = np.where(ends_now, np.minimum(valid_from, forced_to - rng.integers(60, 365, k)), valid_from)
    valid_from = np.maximum(valid_from, sub_start[chosen])
    valid_to = np.maximum(valid_to, valid_from)
    open_ended = (ptype == 1) & (rng.random(k) < 0.5) & ~ends_now
    valid_to = np.where(open_ended, NO_END, valid_to)
    return {
        "promo_sub": chosen.astype(np.int32), "promo_type": np.array(PROMO_TYPES, dtype=object)[ptype],
        "promo_from_day": valid_from.astype(np.int32), "promo_to_day": valid_to.astype(np.int32),
        "promo_discount": discount,
    }
