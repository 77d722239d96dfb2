"""Model versions on disk: one directory per version, artifact plus metadata, written atomically.

Which version is *served* is not decided here: the core keeps that pointer in the feature store,
so every worker and API replica agrees on it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from models.als import ALSModel
from models.errors import ModelNotFoundError

ARTIFACT = "model.npz"
METADATA = "metadata.json"


class ModelRegistry:
    """Stores ALS versions under ``root`` (a directory shared by the worker and the API)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def save(self, model: ALSModel, metadata: dict[str, Any]) -> str:
        """Write a new version and return its name (sortable by creation time)."""
        version = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{version}.tmp"
        tmp.mkdir()
        try:
            model.save(tmp / ARTIFACT)
            meta = {"version": version, "model": model.name, "created_at": time.time(), **metadata}
            (tmp / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True))
            os.replace(tmp, self.root / version)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
        return version

    def load(self, version: str) -> ALSModel:
        path = self.root / version / ARTIFACT
        if not path.is_file():
            raise ModelNotFoundError(f"no artifact for model version {version!r} in {self.root}")
        return ALSModel.load(path)

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.root / version / METADATA
        if not path.is_file():
            raise ModelNotFoundError(f"no metadata for model version {version!r}")
        meta: dict[str, Any] = json.loads(path.read_text())
        return meta

    def versions(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")
        )
