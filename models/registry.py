"""Model versions: one directory per family and version, artifact plus metadata, each staged and
then published at once (on local disk or in object storage: `models.storage`).

The registry knows model *families* (`cf`, and the content models), not classes: the caller hands
in the `{family: class}` map, so `models/` imports nothing above it. A class stores itself in one
file named by its `artifact` (`.npz` with `allow_pickle=False` for numpy models, a torch
`state_dict` loaded with `weights_only=True` for neural ones). Which version is *served* is not
decided here: the core keeps that pointer in Redis, so every worker and API replica agrees.

A version is durable before its name is handed out (artifact, metadata and directories are
fsynced before and after the rename: the pointer may move right after), and verified when read:
its metadata keeps the artifact's SHA-256, and a damaged artifact raises `CorruptModelError`
rather than whatever its format's reader would (a truncated `.npz` raised `BadZipFile` on every
request).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any, Generic, TypeVar

from models.base import Artifact
from models.errors import CorruptModelError, ModelError, ModelNotFoundError
from models.storage import METADATA, ArtifactStore, open_store

A = TypeVar("A", bound=Artifact)


class UnknownFamilyError(ModelError):
    """A family the registry was not told about."""


class ModelRegistry:
    """Stores versions of every family under ``<store>/<family>/<version>/``.

    Parameters
    ----------
    store
        Where versions are kept, shared by the worker and the API (a directory, or a
        `models.storage` store such as an S3 bucket's).
    families
        Family name -> the class that saves and loads its versions.
    """

    def __init__(
        self, store: ArtifactStore | Path | str, families: Mapping[str, type[Artifact]]
    ) -> None:
        self.store: ArtifactStore = open_store(store) if isinstance(store, (Path, str)) else store
        self._families = families

    @property
    def families(self) -> list[str]:
        return sorted(self._families)

    def family(self, name: str) -> FamilyRegistry[Any]:
        """The versions of one family."""
        if name not in self._families:
            raise UnknownFamilyError(
                f"no model family {name!r}; known: {', '.join(self.families) or 'none'}"
            )
        families = self._families
        return FamilyRegistry(self.store, lambda: families[name], name)


class FamilyRegistry(Generic[A]):
    """One family's versions: save, load, metadata, list.

    ``cls`` gives the family's class when first needed: a content family's class imports
    torch (two seconds), which a worker that serves no content model never spends."""

    def __init__(self, store: ArtifactStore, cls: Callable[[], type[A]], family: str) -> None:
        self.store = store
        self._cls = cls
        self.family = family

    @cached_property
    def cls(self) -> type[A]:
        return self._cls()

    def save(self, model: A, metadata: dict[str, Any]) -> str:
        """Write a new version and return its name (sortable by creation time)."""
        version = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"
        with self.store.staging(self.family, version) as staged:
            artifact = staged / self.cls.artifact
            model.save(artifact)
            meta = {
                "version": version,
                "family": self.family,
                "model": model.name,
                "created_at": time.time(),
                "artifact_sha256": _sha256(artifact),
                **metadata,
            }
            (staged / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True))
            self.store.commit(self.family, version, staged)
        return version

    def artifact(self, version: str) -> Path:
        """A local copy of ``version``'s artifact (downloaded once from an object store), for
        a reader that opens it by path; `ModelNotFoundError` when there is none."""
        path = self.store.local_file(self.family, version, self.cls.artifact)
        if path is None:
            raise ModelNotFoundError(
                f"no {self.family} artifact for model version {version!r} in {self.store.location}"
            )
        return path

    def load(self, version: str) -> A:
        """``version``'s model, verified against the checksum in its metadata (versions saved
        before checksums were kept are read unverified)."""
        path = self.artifact(version)
        expected = self.metadata(version).get("artifact_sha256")
        if expected is not None and _sha256(path) != expected:
            raise CorruptModelError(
                f"{self.family} model version {version!r}: {path} does not match its checksum"
            )
        try:
            return self.cls.load(path)
        except Exception as exc:
            raise CorruptModelError(
                f"{self.family} model version {version!r}: {path} cannot be read: {exc!r}"
            ) from exc

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.store.local_file(self.family, version, METADATA)
        if path is None:
            raise ModelNotFoundError(f"no metadata for {self.family} model version {version!r}")
        try:
            meta: dict[str, Any] = json.loads(path.read_text())
        except ValueError as exc:
            raise CorruptModelError(f"{self.family} model version {version!r}: {exc}") from exc
        return meta

    def prune(self, newest: int, keep: set[str]) -> list[str]:
        """Delete every version but the ``newest`` and those in ``keep``; return the deleted."""
        versions = sorted(self.versions(), key=self._created_at)  # names sort to the second
        doomed = [v for v in versions[: max(0, len(versions) - newest)] if v not in keep]
        for version in doomed:
            self.store.delete(self.family, version)
        return doomed

    def _created_at(self, version: str) -> tuple[float, str]:
        try:
            return float(self.metadata(version).get("created_at", 0.0)), version
        except ModelNotFoundError:
            return 0.0, version  # unreadable: the first to go

    def versions(self) -> list[str]:
        return self.store.versions(self.family)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
