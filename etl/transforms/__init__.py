"""Staging and mart models, written once as Ibis expressions and run on DuckDB or Spark.

Each model module registers its models with `@model(...)`; `etl.transforms.run` builds them in
dependency order. Importing this package registers every model (no I/O happens at import).
"""

from __future__ import annotations

from etl.transforms.registry import MODELS, Model, Tables, model

__all__ = ["MODELS", "Model", "Tables", "load_models", "model"]


def load_models() -> dict[str, Model]:
    """Import every model module so that its models are registered, and return the registry."""
    import importlib
    import pkgutil

    import etl.transforms as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name not in {"registry", "run"}:
            importlib.import_module(f"etl.transforms.{info.name}")
    return MODELS
