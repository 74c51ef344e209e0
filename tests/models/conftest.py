"""Fixtures of the model tests: the sample warehouse with a trained churn model (once per session)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import duckdb
import pytest

HELPER = Path(__file__).with_name("trained.py")


def trained_helper():
    """tests/models/trained.py as a module (loaded by path: the test folders are not packages)."""
    name = "opencem_tests_trained"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, HELPER)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="session")
def trained_sample(tmp_path_factory: pytest.TempPathFactory, sample_warehouse: Path) -> tuple[Path, dict]:
    """(warehouse root, TrainResult dict) of the sample with a model trained with the default options."""
    return trained_helper().trained_copy(tmp_path_factory.getbasetemp(), sample_warehouse)


@pytest.fixture
def trained_con(trained_sample) -> duckdb.DuckDBPyConnection:
    root, _ = trained_sample
    con = duckdb.connect(str(root / "versions" / (root / "CURRENT").read_text().strip()), read_only=True)
    yield con
    con.close()
