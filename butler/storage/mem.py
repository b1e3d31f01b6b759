"""`MemStorage`: repositories at ``mem://`` URIs, held in this process's memory (for tests).

Like fsspec's memory file system, the contents live in a module-level table
for as long as the process does, so a repository written by one Butler is
read by the next. Nothing is shared between processes.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import posixpath
import threading
from collections.abc import Iterator
from typing import IO

from ..errors import DatasetNotFoundError, RepositoryError
from .base import StorageInterface, scratch_writer, split_uri

__all__ = ["MemStorage", "clear"]

_log = logging.getLogger(__name__)

#: full key (``root/relpath``) -> content
_files: dict[str, bytes] = {}
#: roots created (a root exists once created, even while empty)
_roots: set[str] = set()
#: full key -> lock of that dataset
_locks: dict[str, threading.Lock] = {}
#: guards the three tables' structure
_table_lock = threading.Lock()


def clear() -> None:
    """Forget every ``mem://`` repository (for test isolation)."""
    with _table_lock:
        _files.clear()
        _roots.clear()
        _locks.clear()


class MemStorage(StorageInterface):
    """A repository held in memory at a ``mem://name/...`` URI.

    Parameters
    ----------
    uri : `str`
        The root, ``mem://`` followed by a ``/``-separated name.
    create : `bool`
        Create the root if it does not exist; otherwise a missing root raises
        `RepositoryError`.
    """

    def __init__(self, uri: str, create: bool):
        scheme, rest = split_uri(uri)
        name = posixpath.normpath("/" + rest.strip("/")).lstrip("/")
        if scheme != "mem" or not name:
            raise RepositoryError(f"{uri!r} is not a mem:// repository root")
        self.root = f"mem://{name}"
        self._prefix = self.root + "/"
        if not self._root_exists():
            if not create:
                raise RepositoryError(f"no repository at {uri}")
            with _table_lock:
                _roots.add(self.root)

    def _root_exists(self) -> bool:
        return self.root in _roots or any(key.startswith(self._prefix) for key in _files)

    def _key(self, relpath: str) -> str:
        return self._prefix + relpath

    # -- primitives ------------------------------------------------------------------------

    def _exists(self, relpath: str) -> bool:
        if not relpath:
            return self._root_exists()
        key = self._key(relpath)
        if key in _files:
            return True
        directory = key.rstrip("/") + "/"
        return any(k.startswith(directory) for k in list(_files))

    def _openRead(self, relpath: str) -> IO[bytes]:
        try:
            return io.BytesIO(_files[self._key(relpath)])
        except KeyError:
            raise DatasetNotFoundError(f"no file {relpath} in {self.root}") from None

    def _writer(self, relpath: str) -> contextlib.AbstractContextManager[str]:
        return scratch_writer(relpath, lambda local: self.writeBytes(relpath, _read_local(local)))

    def writeBytes(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` (one assignment: atomic)."""
        _files[self._key(self._check(path))] = bytes(data)

    def _listNames(self, relpath: str) -> list[str]:
        directory = self._key(relpath).rstrip("/") + "/" if relpath else self._prefix
        return [key[len(self._prefix):] for key in list(_files) if key.startswith(directory)]

    def _putFile(self, localPath: str, relpath: str, mode: str) -> None:
        with open(localPath, "rb") as stream:
            data = stream.read()
        _files[self._key(relpath)] = data
        if mode == "move":
            os.unlink(localPath)

    def _remove(self, relpath: str) -> None:
        try:
            del _files[self._key(relpath)]
        except KeyError:
            raise DatasetNotFoundError(f"cannot remove {relpath} from {self.root}: no such file") from None

    @contextlib.contextmanager
    def _lock(self, relpath: str) -> Iterator[None]:
        key = self._key(relpath)
        with _table_lock:
            lock = _locks.setdefault(key, threading.Lock())
        with lock:
            yield


def _read_local(path: str) -> bytes:
    """The bytes of a local scratch file a library wrote."""
    with open(path, "rb") as stream:
        return stream.read()
