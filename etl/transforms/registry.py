"""The model registry: what each staging or mart table is, its grain and key, and how to build it."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal

import ibis.expr.types as ir

#: Input tables by qualified name (`raw.charging`, `staging.cells`, `marts.zone_daily`).
Tables = Mapping[str, ir.Table]


@dataclass(frozen=True)
class Model:
    """One table the transforms build: `build(tables)` returns an Ibis expression over its inputs."""

    name: str
    """Qualified name, `staging.<x>` or `marts.<x>`."""
    grain: str
    """What one row is, in words (the first line of the model's docstring says the same)."""
    key: tuple[str, ...]
    """Columns that are unique and not null together (checked after every build)."""
    depends_on: tuple[str, ...]
    """Qualified names of the tables the model reads."""
    build: Callable[[Tables], ir.Table]
    nullable_key: tuple[str, ...] = ()
    """Key columns that may be null (a null is one value of the key: still unique with the others)."""
    partition: str | None = None
    """A DATE column such that the model's rows of one date depend only on its fact inputs' rows of that
    date (and on its other inputs as a whole). Set, the DuckDB engine rebuilds only the dates whose input
    rows changed, while every other input is unchanged (`etl.transforms.incremental`)."""
    partition_floor: Callable[[Tables], ir.Table] | None = None
    """For a model that keeps a moving window of dates: one row, `from_date`, the first date it keeps
    (older dates are deleted on an incremental build)."""
    floor_inputs: tuple[str, ...] = ()
    """Inputs the model reads only to place its window (`partition_floor`): not dimensions of its rows."""
    always_whole: bool = False
    """A partitioned model whose dates are not independent (the calendar fills the span between the first
    and last dates): always rebuilt whole, its changed dates found by comparing its rows date by date."""

    subkey: str | None = None
    """For a partitioned model: a column such that the rows of one date and one value of it depend only on
    the fact inputs' rows of that date and value (`customer_id` for per-customer daily tables). When the
    inputs say which values changed on a date they already held (a few late events), only those values'
    rows of that date are rebuilt."""
    compare_rows: bool = False
    """For a partitioned model with a `subkey` whose values are copied from its inputs, never summed: a date
    it already holds is rebuilt by computing its rows and writing only those that differ from the stored
    ones; the subkey values of the rows that changed go to the models downstream."""

    key_fixes_partition: bool = False
    """Every row of one key value has the same partition date (set for a key that derives the date, such as
    an hour; implied when the partition column is in the key). A key check after an incremental build then
    reads only the rebuilt dates: a duplicate can only be within one date, and the other dates are as the
    last build checked them."""

    @property
    def key_within_date(self) -> bool:
        """Whether duplicates of the key can only occur within one partition date."""
        return bool(self.partition) and (self.key_fixes_partition or self.partition in self.key)

    @property
    def layer(self) -> Literal["staging", "marts"]:
        return "staging" if self.name.startswith("staging.") else "marts"


MODELS: dict[str, Model] = {}


def model(name: str, *, grain: str, key: tuple[str, ...], depends_on: tuple[str, ...],
          nullable_key: tuple[str, ...] = (), partition: str | None = None,
          partition_floor: Callable[[Tables], ir.Table] | None = None, floor_inputs: tuple[str, ...] = (),
          always_whole: bool = False, key_fixes_partition: bool = False, subkey: str | None = None,
          compare_rows: bool = False):
    """Register a model-building function under `name` (`staging.x` or `marts.x`)."""
    if not name.startswith(("staging.", "marts.")):
        raise ValueError(f"model name must be staging.<x> or marts.<x>, got {name}")
    if not set(nullable_key) <= set(key):
        raise ValueError(f"{name}: nullable_key {nullable_key} must be part of the key {key}")
    if (subkey or compare_rows) and not partition:
        raise ValueError(f"{name}: subkey and compare_rows need a partition")
    if compare_rows and not subkey:
        raise ValueError(f"{name}: compare_rows needs a subkey")

    def register(fn: Callable[[Tables], ir.Table]) -> Callable[[Tables], ir.Table]:
        if name in MODELS and MODELS[name].build is not fn:
            raise ValueError(f"model {name} registered twice")
        MODELS[name] = Model(name=name, grain=grain, key=key, depends_on=depends_on, build=fn,
                             nullable_key=nullable_key, partition=partition, partition_floor=partition_floor,
                             floor_inputs=floor_inputs, always_whole=always_whole,
                             key_fixes_partition=key_fixes_partition, subkey=subkey, compare_rows=compare_rows)
        return fn

    return register


def without(t: ir.Table, *names: str) -> ir.Table:
    """`t` without the columns `names`, the others in their order. Ibis's own `drop` of several columns
    compiles them in set order, which changes between processes: a model's SQL, and so its digest
    (`etl.transforms.incremental`), must be the same every time it is built."""
    return t.select(*[c for c in t.columns if c not in names])

