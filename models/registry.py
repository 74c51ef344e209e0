"""The model registry: versioned churn models under `WAREHOUSE/models/`, loaded only if this system wrote them.

    WAREHOUSE/models/registry.key          a random key made on the first save (mode 0600)
    WAREHOUSE/models/churn-v0003/model.joblib
    WAREHOUSE/models/churn-v0003/manifest.json   sha256 of the artifact, versions, features, data, metrics,
                                                 signed with an HMAC of the registry key
    WAREHOUSE/models/churn-v0003/model_card.md

A pickle runs code when it is loaded, so `load` reads nothing before it has checked that the manifest's
signature is this registry's, that the artifact's sha256 is the one the manifest states, and that the
installed scikit-learn is the version that wrote it. Versions are written whole (a temporary folder
renamed into place) and never rewritten.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import sklearn

from models.errors import RegistryError

ARTIFACT = "model.joblib"
MANIFEST = "manifest.json"
CARD = "model_card.md"
KEY = "registry.key"
PREFIX = "churn-v"
VERSION_RE = re.compile(r"^churn-v(\d{4,})$")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _canonical(manifest: dict[str, Any]) -> bytes:
    body = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


@dataclass(frozen=True)
class Registry:
    """The models folder of one warehouse."""

    root: Path

    @classmethod
    def for_warehouse(cls, warehouse_dir: Path) -> Registry:
        return cls(Path(warehouse_dir) / "models")

    # -- the key ---------------------------------------------------------------------------------------

    def _key(self, *, create: bool) -> bytes:
        path = self.root / KEY
        if not path.exists():
            if not create:
                raise RegistryError(f"{path} is missing: the models under {self.root} were not written by this "
                                    "registry (or its key was removed); retrain with `opencem train`")
            self.root.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return self._key(create=False)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
        return bytes.fromhex(path.read_text().strip())

    def sign(self, manifest: dict[str, Any]) -> str:
        return hmac.new(self._key(create=True), _canonical(manifest), hashlib.sha256).hexdigest()

    # -- versions --------------------------------------------------------------------------------------

    def versions(self) -> list[str]:
        """Model versions on disk, oldest first (folders only; half-written ones are not versions)."""
        if not self.root.is_dir():
            return []
        names = [p.name for p in self.root.iterdir() if p.is_dir() and VERSION_RE.match(p.name)]
        return sorted(names, key=lambda n: int(VERSION_RE.match(n).group(1)))

    def latest(self) -> str | None:
        v = self.versions()
        return v[-1] if v else None

    def next_version(self) -> str:
        last = self.latest()
        n = int(VERSION_RE.match(last).group(1)) + 1 if last else 1
        return f"{PREFIX}{n:04d}"

    def save(self, version: str, model: Any, manifest: dict[str, Any], *,
             card: str | Callable[[dict[str, Any]], str]) -> Path:
        """Write `model`, its signed manifest (with the artifact's sha256 added) and its card as `version`;
        `card` is the text, or a function of the final manifest that renders it."""
        if not VERSION_RE.match(version):
            raise RegistryError(f"model version {version!r} is not of the form {PREFIX}0001")
        final = self.root / version
        if final.exists():
            raise RegistryError(f"{final} already exists; a model version is never overwritten")
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{version}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            joblib.dump(model, tmp / ARTIFACT, compress=3)
            body = {**manifest, "model_version": version, "artifact": ARTIFACT,
                    "artifact_sha256": sha256_file(tmp / ARTIFACT), "sklearn_version": sklearn.__version__}
            body["signature"] = self.sign(body)
            (tmp / MANIFEST).write_text(json.dumps(body, indent=2, sort_keys=True, default=str) + "\n")
            (tmp / CARD).write_text(card(body) if callable(card) else card)
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def manifest(self, version: str) -> dict[str, Any]:
        """The manifest of `version`, after checking it carries this registry's signature."""
        path = self.root / version / MANIFEST
        try:
            body = json.loads(path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"no model {version}: {path} does not exist; known versions: "
                                f"{', '.join(self.versions()) or 'none'}") from None
        except json.JSONDecodeError as exc:
            raise RegistryError(f"{path} is not valid JSON ({exc}); the model cannot be trusted") from None
        expected = hmac.new(self._key(create=False), _canonical(body), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(str(body.get("signature", "")), expected):
            raise RegistryError(f"{path}: the signature does not match this registry's key: the manifest was "
                                "not written by this system or was edited; refusing to load the model")
        return body

    def load(self, version: str | None = None) -> tuple[Any, dict[str, Any]]:
        """The model and manifest of `version` (default: the latest), checked before anything is unpickled."""
        version = version or self.latest()
        if version is None:
            raise RegistryError(f"no model in {self.root}: run `opencem train` first")
        body = self.manifest(version)
        artifact = self.root / version / str(body.get("artifact", ARTIFACT))
        if not artifact.is_file():
            raise RegistryError(f"{artifact} is missing; expected the artifact the manifest names")
        actual = sha256_file(artifact)
        if actual != body.get("artifact_sha256"):
            raise RegistryError(f"{artifact}: sha256 {actual[:16]}... differs from the manifest's "
                                f"{str(body.get('artifact_sha256'))[:16]}...: the file was altered or replaced; "
                                "refusing to load it")
        if body.get("sklearn_version") != sklearn.__version__:
            raise RegistryError(f"{artifact} was written with scikit-learn {body.get('sklearn_version')}, and "
                                f"{sklearn.__version__} is installed; retrain with `opencem train` (a model is "
                                "only loaded under the version that wrote it)")
        return joblib.load(artifact), body
