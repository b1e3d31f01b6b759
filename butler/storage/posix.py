"""`PosixStorage`: a repository in a local directory.

Reads go through the formatter named by a location's storage name; writes go
through :func:`butler.safeio.atomic_write` with the root as containment bound,
so nothing is ever written outside the repository or half-written.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from typing import IO, Any

from ..errors import ButlerError, DatasetNotFoundError, RepositoryError, describe_location
from ..formatters import get_formatter
from ..location import split_hdu
from ..safeio import atomic_write, makedirs
from ..utils import resolve_mapper
from .base import StorageInterface

__all__ = ["PosixStorage"]

_log = logging.getLogger(__name__)

_FILE_SCHEME = "file://"
_PARENT_LINK = "_parent"


def _path_from_uri(uri: str) -> str:
    """A plain path from a plain path or a ``file://`` URI."""
    uri = os.fspath(uri)
    return uri[len(_FILE_SCHEME):] if uri.startswith(_FILE_SCHEME) else uri


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

    def __init__(self, uri: str, create: bool):
        self.root = _path_from_uri(uri)
        if self.root and not os.path.exists(self.root):
            if not create:
                raise RepositoryError(f"no repository at {uri}")
            makedirs(self.root)

    def __repr__(self) -> str:
        return f"PosixStorage({self.root!r})"

    # -- Gen2 static helpers ---------------------------------------------------------------

    @staticmethod
    def relativePath(fromPath: str, toPath: str) -> str:
        """Return ``toPath`` relative to ``fromPath`` (``('/x/a', '/x/b') -> '../b'``)."""
        return os.path.relpath(_path_from_uri(toPath), _path_from_uri(fromPath))

    @staticmethod
    def absolutePath(fromPath: str, relativePath: str) -> str:
        """Return ``relativePath`` joined to ``fromPath`` and normalised (an absolute one as is)."""
        return os.path.normpath(os.path.join(_path_from_uri(fromPath), _path_from_uri(relativePath)))

    @staticmethod
    def storageExists(uri: str) -> bool:
        """Whether anything exists at ``uri``."""
        return os.path.exists(_path_from_uri(uri))

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
    def search(root: str, path: str, searchParents: bool = False) -> list[str] | None:
        """Find a file under ``root``, optionally through its ``_parent`` links.

        Parameters
        ----------
        root : `str`
            The repository root.
        path : `str`
            Relative to ``root``, or absolute; may hold glob wildcards and end
            in an ``[N]`` HDU selector.
        searchParents : `bool`
            Look in ``root/_parent``, ``root/_parent/_parent``, ... when the
            file is not in ``root``.

        Returns
        -------
        matches : `list` of `str` or `None`
            The matches, sorted, with the HDU selector kept: relative to
            ``root`` (through ``_parent/`` links when found in a parent) for a
            relative query, absolute for an absolute one; None when nothing
            matches.
        """
        root = _path_from_uri(root)
        path, hdu = split_hdu(path)
        absolute = os.path.isabs(path)
        relative = _strip_root(root, path) if absolute else path
        if relative is None:  # an absolute path outside the root
            candidates = sorted(glob.glob(path))
        else:
            candidates = []
            prefix = ""
            while True:
                found = sorted(glob.glob(os.path.join(root, prefix, relative)))
                if found:
                    candidates = found if absolute else [os.path.relpath(f, root) for f in found]
                    break
                prefix = os.path.join(prefix, _PARENT_LINK)
                if not searchParents or not os.path.exists(os.path.join(root, prefix)):
                    break
        if not candidates:
            return None
        suffix = f"[{hdu}]" if hdu is not None else ""
        return [c + suffix for c in candidates]

    @staticmethod
    def getRepositoryCfg(uri: str) -> Any:
        """Read the `RepositoryCfg` of the repository at ``uri``; None when it has none."""
        from ..cfg import RepositoryCfg

        return RepositoryCfg.read(_path_from_uri(uri))

    @staticmethod
    def putRepositoryCfg(cfg: Any, loc: str | None = None) -> None:
        """Write ``cfg`` into the repository at ``loc`` (default: ``cfg.root``), atomically."""
        cfg.write(_path_from_uri(cfg.root if loc is None else loc))

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

    # -- instance methods ------------------------------------------------------------------

    def instanceSearch(self, path: str) -> list[str] | None:
        """Search for ``path`` under this root only (see `search`)."""
        return self.search(self.root, path)

    def exists(self, relpath: str) -> bool:
        """Whether the file ``relpath`` exists under the root (an HDU selector is ignored).

        A plain existence check, no wildcards: it is on the path of every read.
        """
        return os.path.exists(self.locationWithRoot(split_hdu(relpath)[0]))

    def locationWithRoot(self, location: str) -> str:
        """Return ``location`` joined to the root."""
        return os.path.join(self.root, location)

    def getLocalFile(self, path: str) -> IO[str] | None:
        """Return ``path`` (relative to the root) open for reading as text, or None if it does not exist.

        The caller closes the file.
        """
        try:
            return open(self.locationWithRoot(path), encoding="utf-8")
        except FileNotFoundError:
            return None

    def read(self, butlerLocation: Any) -> Any:
        """Read the object at each path of a location with the formatter of its storage name.

        Returns
        -------
        obj : `object` or `list`
            The object, or a list of objects when the location has several paths.

        Raises
        ------
        DatasetNotFoundError
            When a file does not exist.
        UnknownStorageError
            When no formatter has the location's storage name.
        FormatterError
            When a file cannot be read as asked; the message names the dataset
            type, the data ID and the repository, as for any other package error
            a formatter raises.
        """
        formatter = get_formatter(butlerLocation.storageName)
        results = []
        try:
            for location in butlerLocation.locationList:
                path, hdu = split_hdu(location)
                results.append(formatter.read(os.path.join(self.root, path), hdu=hdu,
                                              pythonType=butlerLocation.pythonType,
                                              additionalData=butlerLocation.additionalData))
        except DatasetNotFoundError:
            raise  # a miss: the search moves on (and names everything when it ends)
        except ButlerError as exc:
            exc.add_context(describe_location(butlerLocation, self.root))
            raise
        return results[0] if len(results) == 1 else results

    def write(self, butlerLocation: Any, obj: Any) -> None:
        """Write ``obj`` to each path of a location, atomically and inside the root.

        Raises
        ------
        UnsafePathError
            When a path resolves outside the root; nothing is written.
        UnwritableObjectError
            When the formatter cannot write ``obj``; nothing is written. The
            message names the dataset type, the data ID and the repository.
        """
        formatter = get_formatter(butlerLocation.storageName)
        for location in butlerLocation.locationList:
            path, hdu = split_hdu(location)
            try:
                with atomic_write(path, root=self.root) as tmp:
                    formatter.write(obj, tmp, hdu=hdu, additionalData=butlerLocation.additionalData)
            except ButlerError as exc:
                exc.add_context(describe_location(butlerLocation, self.root))
                raise
            _log.debug("wrote %s %s in %s", butlerLocation.storageName, path, self.root)

    def copyFile(self, fromLocation: str, toLocation: str) -> None:
        """Copy a file to another path under the root, atomically and inside the root."""
        source = self.locationWithRoot(fromLocation)
        if not os.path.isfile(source):
            raise DatasetNotFoundError(f"cannot copy {source}: no such file")
        with atomic_write(toLocation, root=self.root) as tmp:
            shutil.copyfile(source, tmp)
