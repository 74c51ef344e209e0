"""The registry loads only artifacts it wrote: signed manifest, matching sha256, same scikit-learn."""

from __future__ import annotations

import json
import shutil

import pytest
import sklearn
from sklearn.linear_model import LogisticRegression

from models.errors import RegistryError
from models.registry import ARTIFACT, KEY, MANIFEST, Registry


@pytest.fixture
def registry(tmp_path):
    reg = Registry(tmp_path / "models")
    model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
    reg.save(reg.next_version(), model, {"data_hash": "abc", "features": ["x"]}, card="# card\n")
    return reg


def test_save_then_load(registry):
    assert registry.versions() == ["churn-v0001"] and registry.next_version() == "churn-v0002"
    model, manifest = registry.load()
    assert model.predict([[3.0]])[0] == 1
    assert manifest["sklearn_version"] == sklearn.__version__
    assert len(manifest["artifact_sha256"]) == 64 and manifest["data_hash"] == "abc"
    assert (registry.root / "churn-v0001" / "model_card.md").read_text() == "# card\n"
    assert oct((registry.root / KEY).stat().st_mode)[-3:] == "600"


def test_a_tampered_artifact_is_refused(registry):
    path = registry.root / "churn-v0001" / ARTIFACT
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(RegistryError, match="sha256 .* differs from the manifest"):
        registry.load("churn-v0001")


def test_an_edited_manifest_is_refused(registry):
    path = registry.root / "churn-v0001" / MANIFEST
    body = json.loads(path.read_text())
    body["artifact_sha256"] = "0" * 64
    path.write_text(json.dumps(body))
    with pytest.raises(RegistryError, match="signature does not match"):
        registry.load("churn-v0001")


def test_another_scikit_learn_version_is_refused(registry):
    path = registry.root / "churn-v0001" / MANIFEST
    body = json.loads(path.read_text())
    body["sklearn_version"] = "0.24.2"
    body["signature"] = registry.sign(body)  # even a correctly signed manifest from another version
    path.write_text(json.dumps(body))
    with pytest.raises(RegistryError, match="scikit-learn 0.24.2"):
        registry.load("churn-v0001")


def test_an_artifact_from_another_registry_is_refused(registry, tmp_path):
    other = Registry(tmp_path / "elsewhere" / "models")
    other.save(other.next_version(), {"x": 1}, {}, card="")
    shutil.rmtree(registry.root / "churn-v0001")
    shutil.copytree(other.root / "churn-v0001", registry.root / "churn-v0001")
    with pytest.raises(RegistryError, match="signature does not match"):
        registry.load("churn-v0001")


def test_no_key_no_model(registry):
    (registry.root / KEY).unlink()
    with pytest.raises(RegistryError, match="registry.key is missing"):
        registry.load()


def test_unknown_version_and_empty_registry(tmp_path, registry):
    with pytest.raises(RegistryError, match="no model churn-v0009"):
        registry.load("churn-v0009")
    with pytest.raises(RegistryError, match="run `opencem train` first"):
        Registry(tmp_path / "empty").load()
    with pytest.raises(RegistryError, match="never overwritten"):
        registry.save("churn-v0001", {}, {}, card="")
