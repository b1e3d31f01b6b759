"""`PosixStorage`: a repository in a local directory.

The primitives of `StorageInterface` on the local file system. Writes go
through :func:`butler.safeio.atomic_write` with the root as containment bound
(symlinks and ``..`` resolved), so nothing is ever written outside the
repository or half-written; locks are ``flock`` locks on the dataset's
directory, so they hold across processes and leave no file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from typing import IO, Any

from ..errors import DatasetNotFoundError, RepositoryError
from ..safeio import (
    atomic_write,
    contained_destination,
    ensure_within,
    locked_directory,
    makedirs,
    remove_stale_temporaries,
    write_bytes,
)
from ..utils import resolve_mapper
from .base import StorageInterface, split_uri

__all__ = ["PosixStorage"]

_PARENT_LINK = "_parent"


def _path_from_uri(uri: str) -> str:
    """A plain path from a ``file://`` URI; anything else as it is."""
    scheme, rest = split_uri(uri)
    return rest if scheme == "file" else os.fspath(uri)


def _strip_root(root: str, path: str) -> str | None:
    """``path`` relative to ``root`` when it lies under it (textually or after resolving links), else None."""
    root = root.rstrip("/") or "/"
    if path == root:
        return ""
    prefix = root if root.endswith("/") else root + "/"
    if path.startswith(prefix):
        return path[len(prefix):]
    real_root = os.path.realpath(root)
    head = os.path.dirname(path)
    while head not in ("", "/"):
        if os.path.realpath(head) == real_root:
            return os.path.relpath(path, head)
        head = os.path.dirname(head)
    return None


class PosixStorage(StorageInterface):
    """A repository stored in a POSIX directory.

    Parameters
    ----------
    uri : `str`
        The root: a path or a ``file://`` URI.
    create : `bool`
        Create the root directory if it does not exist; otherwise a missing
        root raises `RepositoryError`.
    """

    hasLocalFiles = True

    def __init__(self, uri: str, create: bool):
        self.root = _path_from_uri(uri)
        if self.root and not os.path.exists(self.root):
            if not create:
                raise RepositoryError(f"no repository at {uri}")
            makedirs(self.root)
        self._prefix = os.path.join(self.root, "")

    def _full(self, relpath: str) -> str:
        return self._prefix + relpath if relpath else self.root

    # -- primitives ------------------------------------------------------------------------

    def _exists(self, relpath: str) -> bool:
        try:  # os.path.exists, without its call: asked once or twice per map
            os.stat(self._prefix + relpath if relpath else self.root)
        except (OSError, ValueError):
            return False
        return True

    def _openRead(self, relpath: str) -> IO[bytes]:
        path = self._full(relpath)
        try:
            return open(path, "rb")
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise DatasetNotFoundError(f"no file {relpath} in {self.root} ({path})") from exc

    @contextlib.contextmanager
    def _localFile(self, relpath: str) -> Iterator[str]:
        yield self._full(relpath)

    def _writer(self, relpath: str) -> contextlib.AbstractContextManager[str]:
        return atomic_write(relpath, root=self.root)

    def writeBytes(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` atomically (see `writer`), through the temporary file's own descriptor."""
        relpath = self._check(path)
        self._announce(relpath, data)
        write_bytes(relpath, data, root=self.root)

    def stat(self, path: str) -> tuple[int, float] | None:
        """``(size, mtime)`` of the file at ``path`` (one ``os.stat``), None when there is none."""
        try:
            info = os.stat(self._full(self._check(path)))
        except OSError:
            return None
        return info.st_size, info.st_mtime

    def _listNames(self, relpath: str) -> list[str]:
        names: list[str] = []
        for directory, _dirs, files in os.walk(self._full(relpath)):
            below = os.path.relpath(directory, self.root)
            names.extend(name if below == "." else f"{below}/{name}" for name in files)
        return names

    def _contained(self, relpath: str) -> str:
        """The absolute destination of ``relpath``: its directory resolved inside the root, the name kept.

        An existing symlink at the destination is replaced, not followed.
        """
        return contained_destination(self.root, relpath)

    def _putFile(self, localPath: str, relpath: str, mode: str) -> None:
        if not os.path.isfile(localPath):
            raise DatasetNotFoundError(f"cannot place {localPath} at {relpath} in {self.root}: no such file")
        destination = self._contained(relpath)
        if mode == "move":
            makedirs(os.path.dirname(destination))
            try:
                os.rename(localPath, destination)
                return
            except OSError:  # another file system: copy, then remove the source
                self._putFile(localPath, relpath, "copy")
                os.unlink(localPath)
                return
        with atomic_write(destination) as tmp:  # its directory is contained: a link there is replaced
            if mode == "copy":
                shutil.copyfile(localPath, tmp)
            else:
                os.unlink(tmp)
                if mode == "link":
                    os.link(localPath, tmp)
                else:
                    os.symlink(os.path.abspath(localPath), tmp)

    def _remove(self, relpath: str) -> None:
        try:
            os.unlink(self._contained(relpath))
        except FileNotFoundError as exc:
            raise DatasetNotFoundError(f"cannot remove {relpath} from {self.root}: no such file") from exc

    @contextlib.contextmanager
    def _lock(self, relpath: str) -> Iterator[None]:
        directory = os.path.dirname(self._contained(relpath))
        makedirs(directory)
        with locked_directory(directory):
            yield

    def _sweep(self, relpath: str) -> None:
        remove_stale_temporaries(os.path.dirname(self._contained(relpath)), os.path.basename(relpath))

    def _sweepDirectory(self, relpath: str) -> list[str]:
        return remove_stale_temporaries(ensure_within(self.root, relpath or "."))

    def _linkTarget(self, relpath: str) -> str | None:
        try:
            return os.readlink(self._full(relpath))
        except OSError:
            return None

    def _relativeQuery(self, path: str) -> str | None:
        return _strip_root(self.root, _path_from_uri(path))

    # -- Gen2 static helpers ---------------------------------------------------------------

    @staticmethod
    def getParentSymlinkPath(root: str) -> str | None:
        """Return the target of ``root/_parent`` as stored in the link.

        A ``_parent`` that is a real directory gives ``"_parent"`` (relative to
        ``root``, like a relative link target); no ``_parent`` gives None.
        """
        link = os.path.join(_path_from_uri(root), _PARENT_LINK)
        if os.path.islink(link):
            return os.readlink(link)
        if os.path.isdir(link):
            return _PARENT_LINK
        return None

    @staticmethod
    def getMapperClass(root: str) -> Any:
        """Return the mapper class of the repository at ``root``, or None if it names none.

        The mapper comes from the repository's cfg, else from the first line of
        a ``_mapper`` file found by walking ``_parent`` links.

        Raises
        ------
        butler.errors.UntrustedMapperError
            When the name is from no trusted module or names no mapper class
            (see `butler.utils.resolve_mapper`); nothing is imported from an
            untrusted module. An `ImportError` naming the file.
        butler.errors.MapperImportError
            When a trusted name cannot be imported; an `ImportError` naming the file.
        """
        from ..cfg import CFG_FILENAME, RepositoryCfg, find_mapper_file

        root = _path_from_uri(root)
        cfg = RepositoryCfg.read(root)
        if cfg is not None and cfg.mapper is not None:
            return PosixStorage._mapper_class(cfg.mapper, os.path.join(root, CFG_FILENAME))
        found = find_mapper_file(root)
        return PosixStorage._mapper_class(*found) if found is not None else None

    @staticmethod
    def _mapper_class(mapper: Any, source: str) -> Any:
        return resolve_mapper(mapper, source) if isinstance(mapper, str) else mapper
