"""Suite-wide rules: in CI (CI=true) a browser or Spark test that cannot run fails instead of skipping."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"
MUST_RUN_IN_CI = ("browser", "spark")


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def shared_datasets() -> Path:
    """Where the real-world example exports live (`../shared/datasets` beside the clone)."""
    env = os.environ.get("OPENCEM_SHARED_DATASETS")
    return Path(env) if env else (ROOT.parent / "shared" / "datasets")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and in_ci()):
        return
    markers = [m for m in MUST_RUN_IN_CI if item.get_closest_marker(m)]
    if markers:
        reason = report.longrepr[-1] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"{'/'.join(markers)} test could not run in CI (CI=true turns this skip into a failure): {reason}"
        )


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A whole browser or Spark module skipped at collection (e.g. `importorskip`) fails in CI too."""
    outcome = yield
    report = outcome.get_result()
    nodeid = report.nodeid.replace("\\", "/")
    if report.skipped and in_ci() and ("tests/e2e/" in nodeid or "spark" in nodeid.rsplit("/", 1)[-1]):
        report.outcome = "failed"
        report.longrepr = f"{nodeid} was skipped at collection, which CI=true does not allow: {report.longrepr}"


def pytest_collection_modifyitems(config, items):
    """Everything under tests/e2e drives a browser: mark it so (and so CI refuses to skip it)."""
    for item in items:
        if "/tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def sample_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled sample loaded once per test session into a fresh warehouse (a published version)."""
    from etl.config import Settings
    from etl.pipeline import refresh

    root = tmp_path_factory.mktemp("sample_warehouse")
    result = refresh(Settings(warehouse_dir=root), source=SAMPLE, log=lambda _msg: None)
    assert result.ok, result.describe()
    return root


@pytest.fixture(scope="session")
def trained_sample(tmp_path_factory: pytest.TempPathFactory, sample_warehouse: Path) -> tuple[Path, dict]:
    """(warehouse root, TrainResult dict): a copy of the sample warehouse with the churn model trained on
    it, made once per session (tests/models/trained.py) for any test that reads the published scores."""
    import importlib.util
    import sys

    name = "opencem_tests_trained"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, ROOT / "tests" / "models" / "trained.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name].trained_copy(tmp_path_factory.getbasetemp(), sample_warehouse)
