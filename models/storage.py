"""Where model versions are kept: a local directory, or any filesystem fsspec knows (S3, GCS,
Azure) so that API replicas on other machines read what a worker wrote.

A version is a directory of files, written once and never changed. The registry stages it in a
local directory, then `commit` publishes it:

- `LocalStore`: the staging directory sits beside the versions and is renamed into place after
  every file and directory is fsynced (a pointer may move right after).
- `ObjectStore`: each file is uploaded (an object PUT is atomic), the metadata last: a version
  without its metadata is invisible, so a worker killed mid-upload leaves nothing a reader sees.
  Reads download a version's file once into a local cache (versions are immutable, so a cached
  copy never goes stale); the registry verifies it against the checksum in the metadata.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Protocol

#: The file whose presence makes a version complete.
METADATA = "metadata.json"


class ArtifactStore(Protocol):
    """Versions of model families, each a directory of immutable files."""

    @property
    def location(self) -> str: ...

    def staging(self, family: str, version: str) -> Any:
        """A context manager yielding a local directory to write the version's files into."""

    def commit(self, family: str, version: str, staged: Path) -> None:
        """Publish the staged files as ``version``, its metadata last."""

    def local_file(self, family: str, version: str, name: str) -> Path | None:
        """A local, readable copy of one of the version's files; None when there is none."""

    def versions(self, family: str) -> list[str]:
        """The family's complete versions, sorted by name."""

    def delete(self, family: str, version: str) -> None: ...


class LocalStore:
    """Versions under ``root/<family>/<version>/`` on this machine's disk."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def location(self) -> str:
        return str(self.root)

    @contextmanager
    def staging(self, family: str, version: str) -> Iterator[Path]:
        parent = self.root / family
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".{version}.tmp"  # the same filesystem, so the rename is atomic
        tmp.mkdir()
        try:
            yield tmp
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)

    def commit(self, family: str, version: str, staged: Path) -> None:
        for path in [*staged.iterdir(), staged]:
            _fsync(path)
        os.replace(staged, self.root / family / version)
        _fsync(self.root / family)

    def local_file(self, family: str, version: str, name: str) -> Path | None:
        path = self.root / family / version / name
        return path if path.is_file() else None

    def versions(self, family: str) -> list[str]:
        parent = self.root / family
        if not parent.is_dir():
            return []
        return sorted(p.name for p in parent.iterdir() if p.is_dir() and p.name[0] != ".")

    def delete(self, family: str, version: str) -> None:
        shutil.rmtree(self.root / family / version, ignore_errors=True)


class ObjectStore:
    """Versions under ``<url>/<family>/<version>/`` in an fsspec filesystem (``s3://bucket/x``),
    read through a local cache under ``cache_dir``.

    ``options`` go to the filesystem (for S3: ``endpoint_url``, ``key``, ``secret``; without
    them s3fs takes the usual AWS credential chain)."""

    def __init__(self, url: str, cache_dir: Path, options: Mapping[str, Any] | None = None) -> None:
        from fsspec.core import url_to_fs

        self._url = url.rstrip("/")
        self.fs, root = url_to_fs(self._url, **dict(options or {}))
        self._root = root.rstrip("/")
        self.cache_dir = Path(cache_dir)

    @property
    def location(self) -> str:
        return self._url

    def _path(self, *parts: str) -> str:
        return "/".join([self._root, *parts])

    @contextmanager
    def staging(self, family: str, version: str) -> Iterator[Path]:
        with tempfile.TemporaryDirectory(prefix=f"streamrec-{family}-") as tmp:
            yield Path(tmp)

    def commit(self, family: str, version: str, staged: Path) -> None:
        files = sorted(p for p in staged.iterdir() if p.name != METADATA)
        for path in [*files, staged / METADATA]:
            self.fs.put_file(str(path), self._path(family, version, path.name))

    def local_file(self, family: str, version: str, name: str) -> Path | None:
        cached = self.cache_dir / family / version / name
        if cached.is_file():
            return cached
        remote = self._path(family, version, name)
        if not self.fs.exists(remote):
            return None
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_name(f".{name}.{os.getpid()}.part")
        self.fs.get_file(remote, str(partial))
        os.replace(partial, cached)  # whole or absent, for a reader in another thread
        return cached

    def versions(self, family: str) -> list[str]:
        self.fs.invalidate_cache()  # another process may have written one since
        try:
            found = self.fs.glob(self._path(family, "*", METADATA))
        except FileNotFoundError:
            return []
        return sorted(str(p).rstrip("/").split("/")[-2] for p in found)

    def delete(self, family: str, version: str) -> None:
        with suppress(FileNotFoundError):
            self.fs.rm(self._path(family, version), recursive=True)
        shutil.rmtree(self.cache_dir / family / version, ignore_errors=True)


def open_store(
    location: str | Path, cache_dir: Path | None = None, options: Mapping[str, Any] | None = None
) -> LocalStore | ObjectStore:
    """The store at ``location``: a path or `file://` URL is a `LocalStore`, any other URL
    an `ObjectStore` caching under ``cache_dir``."""
    text = str(location)
    if "://" not in text:
        return LocalStore(Path(text))
    if text.startswith("file://"):
        return LocalStore(Path(text.removeprefix("file://")))
    if cache_dir is None:
        raise ValueError(f"a cache directory is needed to read models from {text}")
    return ObjectStore(text, cache_dir, options)


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file, or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
