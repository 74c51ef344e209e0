"""The customer experience index (0-100): the KPIs of the cells each customer used, weighted by their usage.

The formula, in one place:

    KPI score (0-100)  = 100 x clip((value - bad) / (good - bad), 0, 1)   per KPI, per cell the customer used
    cell index         = sum(weight x KPI score) / sum(weight)             over the KPIs measured on that cell
    customer index     = sum(events with KPIs x cell index) / sum(events with KPIs)   over the cells used

The KPI values are what the customer met on each cell (`marts.subscriber_cell_usage`: the hourly KPIs of
the cell in the hour of each of their charged events, over the loaded window). Each zone's value is the
mean over the customers living there (their home zone, else the zone carrying most of their usage).

Weights and anchors default to `DEFAULT_KPIS` and can be changed in `WAREHOUSE/experience.toml`:

    [experience]
    poor_below = 60
    [experience.kpis.drop_rate_pct]
    weight = 0.3
    bad = 3.0
    good = 0.5

They are published with the values (`models.experience_formula`), so every page can state them.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import pandas as pd

from models.errors import ModelError

CONFIG_FILE = "experience.toml"


@dataclass(frozen=True)
class KpiScore:
    """How one KPI becomes a 0-100 score: linear from `bad` (0) to `good` (100), clipped."""

    kpi: str
    label: str
    unit: str
    weight: float
    bad: float
    good: float

    def sentence(self) -> str:
        direction = "higher" if self.good > self.bad else "lower"
        return (f"{self.label}: 0 at {self.bad:g} {self.unit}, 100 at {self.good:g} {self.unit} ({direction} is "
                f"better), weight {self.weight:g}")


DEFAULT_KPIS: tuple[KpiScore, ...] = (
    KpiScore("drop_rate_pct", "Dropped calls", "%", weight=0.30, bad=3.0, good=0.5),
    KpiScore("dl_throughput_mbps", "Downlink throughput", "Mbit/s", weight=0.25, bad=2.0, good=30.0),
    KpiScore("accessibility_pct", "Accessibility", "%", weight=0.15, bad=95.0, good=99.5),
    KpiScore("availability_pct", "Availability", "%", weight=0.15, bad=95.0, good=99.9),
    KpiScore("latency_ms", "Latency", "ms", weight=0.15, bad=150.0, good=30.0),
)
KNOWN = {k.kpi: k for k in DEFAULT_KPIS}


@dataclass(frozen=True)
class ExperienceConfig:
    kpis: tuple[KpiScore, ...] = DEFAULT_KPIS
    poor_below: float = 60.0
    """A customer whose index is below this has a poor experience (counted per zone)."""
    source: str = "defaults (models/experience.py)"

    def formula(self) -> str:
        total = sum(k.weight for k in self.kpis)
        parts = ", ".join(f"{k.weight / total:.0%} {k.label.lower()}" for k in self.kpis if k.weight > 0)
        return (f"Experience index (0-100) = weighted mean of KPI scores ({parts}) on the cells each customer "
                f"used, weighted by their events there; each KPI scores 0 at its 'bad' value and 100 at its "
                f"'good' one. Poor below {self.poor_below:g}. Weights from {self.source}.")


def load_config(warehouse_dir: Path | None = None, *, path: Path | None = None) -> ExperienceConfig:
    """The defaults, overridden by `path` or by `WAREHOUSE/experience.toml` when it exists."""
    file = path or (Path(warehouse_dir) / CONFIG_FILE if warehouse_dir is not None else None)
    if file is None or not file.exists():
        if path is not None:
            raise ModelError(f"experience index settings {path} do not exist")
        return ExperienceConfig()
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"{file}: not valid TOML ({exc})") from None
    section = data.get("experience", {})
    unknown = sorted(set(section) - {"poor_below", "kpis"})
    if unknown:
        raise ModelError(f"{file}: unknown key(s) {', '.join(unknown)} in [experience]; expected poor_below, kpis")
    kpis = {k.kpi: k for k in DEFAULT_KPIS}
    for name, spec in section.get("kpis", {}).items():
        if name not in KNOWN:
            raise ModelError(f"{file}: [experience.kpis.{name}] is not a KPI; expected one of {', '.join(KNOWN)}")
        bad_keys = sorted(set(spec) - {"weight", "bad", "good"})
        if bad_keys:
            raise ModelError(f"{file}: [experience.kpis.{name}] has unknown key(s) {', '.join(bad_keys)}; "
                             "expected weight, bad, good")
        try:
            kpis[name] = replace(kpis[name], **{k: float(v) for k, v in spec.items()})
        except (TypeError, ValueError):
            raise ModelError(f"{file}: [experience.kpis.{name}] values must be numbers, got {spec}") from None
    cfg = ExperienceConfig(kpis=tuple(kpis.values()), poor_below=float(section.get("poor_below", 60.0)),
                           source=str(file))
    validate(cfg)
    return cfg


def validate(cfg: ExperienceConfig) -> None:
    for k in cfg.kpis:
        if k.weight < 0:
            raise ModelError(f"experience index ({cfg.source}): weight of {k.kpi} is {k.weight}; expected >= 0")
        if k.bad == k.good:
            raise ModelError(f"experience index ({cfg.source}): {k.kpi} has bad = good = {k.bad}; expected two "
                             "different anchors")
    if sum(k.weight for k in cfg.kpis) <= 0:
        raise ModelError(f"experience index ({cfg.source}): every weight is 0; expected at least one above 0")
    if not 0 <= cfg.poor_below <= 100:
        raise ModelError(f"experience index ({cfg.source}): poor_below {cfg.poor_below}; expected 0 to 100")


def _sql(cfg: ExperienceConfig) -> tuple[str, dict[str, float]]:
    """The customer-level query; KPI names come from the fixed list, every number is a parameter."""
    params: dict[str, float] = {}
    score_cols, num, den = [], [], []
    for k in cfg.kpis:
        if k.kpi not in KNOWN:
            raise ModelError(f"unknown KPI {k.kpi}")
        params[f"{k.kpi}_bad"], params[f"{k.kpi}_good"], params[f"{k.kpi}_w"] = k.bad, k.good, k.weight
        # (greatest/least skip nulls in DuckDB: an unmeasured KPI must stay null, not score 0 or 100)
        s = (f"CASE WHEN exp_{k.kpi} IS NULL THEN NULL ELSE 100 * greatest(0, least(1, (exp_{k.kpi} - "
             f"${k.kpi}_bad) / (${k.kpi}_good - ${k.kpi}_bad))) END")
        score_cols.append(f"{s} AS s_{k.kpi}")
        num.append(f"coalesce(${k.kpi}_w * s_{k.kpi}, 0)")
        den.append(f"CASE WHEN s_{k.kpi} IS NULL THEN 0 ELSE ${k.kpi}_w END")
    per_kpi = ",\n       ".join(
        f"sum(w * s_{k.kpi}) / nullif(sum(w) FILTER (WHERE s_{k.kpi} IS NOT NULL), 0) AS {k.kpi}_score"
        for k in cfg.kpis)
    sql = f"""
WITH cells AS (
    SELECT customer_id, cell_id, zone_id, share_of_events, usage_zone_id,
           n_events_with_kpi::DOUBLE AS w, {", ".join(score_cols)}
    FROM marts.subscriber_cell_usage
    WHERE n_events_with_kpi > 0
),
idx AS (
    SELECT *, ({" + ".join(num)}) / nullif({" + ".join(den)}, 0) AS cell_index FROM cells
)
SELECT customer_id,
       sum(w * cell_index) / nullif(sum(w) FILTER (WHERE cell_index IS NOT NULL), 0) AS experience_index,
       {per_kpi},
       count(*) AS n_cells, sum(w)::BIGINT AS n_events_with_kpi,
       arg_min(cell_id, cell_index) FILTER (WHERE share_of_events >= 0.05) AS worst_cell_id,
       min(cell_index) FILTER (WHERE share_of_events >= 0.05) AS worst_cell_index,
       any_value(usage_zone_id) AS usage_zone_id
FROM idx
GROUP BY customer_id
"""
    return sql, params


def build(con: duckdb.DuckDBPyConnection, cfg: ExperienceConfig | None = None) -> dict[str, pd.DataFrame]:
    """`experience_customer`, `experience_zone` and `experience_formula` frames from the warehouse."""
    cfg = cfg or ExperienceConfig()
    validate(cfg)
    formula = pd.DataFrame([{"kpi": k.kpi, "label": k.label, "unit": k.unit, "weight": k.weight, "bad": k.bad,
                             "good": k.good, "description": k.sentence(), "formula": cfg.formula(),
                             "poor_below": cfg.poor_below, "source": cfg.source} for k in cfg.kpis])
    has = {r[0] for r in con.execute("SELECT table_schema || '.' || table_name FROM information_schema.tables")
           .fetchall()}
    if "marts.subscriber_cell_usage" not in has:
        empty = pd.DataFrame({"customer_id": pd.Series(dtype="object"),
                              "experience_index": pd.Series(dtype="float64")})
        return {"experience_customer": empty, "experience_zone": pd.DataFrame(
            {"zone_id": pd.Series(dtype="object"), "experience_index": pd.Series(dtype="float64")}),
            "experience_formula": formula}
    sql, params = _sql(cfg)
    cust = con.sql(sql, params=params).df()
    if "staging.customers" in has:
        homes = con.sql("SELECT customer_id, home_zone_id FROM staging.customers").df()
        cust = cust.merge(homes, on="customer_id", how="left")
    else:
        cust["home_zone_id"] = None
    cust["zone_id"] = cust["home_zone_id"].where(cust["home_zone_id"].notna(), cust["usage_zone_id"])
    cust["is_poor"] = cust["experience_index"] < cfg.poor_below
    known = cust[cust["experience_index"].notna() & cust["zone_id"].notna()]
    zone = known.groupby("zone_id").agg(
        n_customers=("customer_id", "size"), experience_index=("experience_index", "mean"),
        experience_index_p25=("experience_index", lambda s: float(s.quantile(0.25))),
        n_poor=("is_poor", "sum"),
    ).reset_index()
    zone["share_poor"] = zone["n_poor"] / zone["n_customers"]
    if "staging.zones_map" in has:
        names = con.sql("SELECT zone_id, zone_name FROM staging.zones_map").df()
        zone = zone.merge(names, on="zone_id", how="left")
    zone["formula"] = cfg.formula()
    return {"experience_customer": cust, "experience_zone": zone, "experience_formula": formula}
