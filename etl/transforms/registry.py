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

    @property
    def layer(self) -> Literal["staging", "marts"]:
        return "staging" if self.name.startswith("staging.") else "marts"


MODELS: dict[str, Model] = {}


def model(name: str, *, grain: str, key: tuple[str, ...], depends_on: tuple[str, ...]):
    """Register a model-building function under `name` (`staging.x` or `marts.x`)."""
    if not name.startswith(("staging.", "marts.")):
        raise ValueError(f"model name must be staging.<x> or marts.<x>, got {name}")

    def register(fn: Callable[[Tables], ir.Table]) -> Callable[[Tables], ir.Table]:
        if name in MODELS and MODELS[name].build is not fn:
            raise ValueError(f"model {name} registered twice")
        MODELS[name] = Model(name=name, grain=grain, key=key, depends_on=depends_on, build=fn)
        return fn

    return register
