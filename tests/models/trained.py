"""A copy of the session's sample warehouse with a churn model trained on it, made once per test session.

Both tests/models and the browser tests need it; the copy lives under the session's base temp folder, so
whichever asks first trains and the other reuses it (training is the slow part: tens of seconds).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from etl.config import Settings
from models.train import TrainOptions, run

RESULT = "train_result.json"


def trained_copy(base: Path, sample_warehouse: Path) -> tuple[Path, dict]:
    """The trained copy under `base` (created on first use) and its TrainResult as a dict."""
    root = base / "trained_sample"
    done = root / RESULT
    if not done.exists():
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(sample_warehouse, root)
        result = run(Settings(warehouse_dir=root), log=lambda _m: None, options=TrainOptions())
        assert result.ok, result.describe()
        done.write_text(json.dumps(result.to_dict(), default=str))
    return root, json.loads(done.read_text())
