"""Fixtures of the model tests; `trained_sample` (the sample with a trained churn model, made once per
session by tests/models/trained.py) comes from tests/conftest.py."""

from __future__ import annotations

import duckdb
import pytest


@pytest.fixture
def trained_con(trained_sample) -> duckdb.DuckDBPyConnection:
    """A read-only connection to the live version of the trained sample."""
    root, _ = trained_sample
    con = duckdb.connect(str(root / "versions" / (root / "CURRENT").read_text().strip()), read_only=True)
    yield con
    con.close()
