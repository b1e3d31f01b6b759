"""`StorageInterface` (what one kind of storage provides) and `Storage` (the scheme table).

A storage is where a repository's bytes live. `Storage.makeFromURI` picks the
storage class from the URI's scheme (plain paths and ``file://`` are POSIX);
the Gen2 static helpers (`Storage.search`, `Storage.getMapperClass`, ...)
dispatch the same way. Classes are named by dotted path and imported on first
use, so registering a scheme costs nothing until it is used.
"""

from __future__ import annotations

import abc
import logging
import urllib.parse
from typing import Any, ClassVar

from ..errors import UnknownStorageError
from ..utils import doImport

__all__ = ["StorageInterface", "Storage"]

_log = logging.getLogger(__name__)


class StorageInterface(abc.ABC):
    """What a storage class provides.

    An instance is bound to one repository root; paths given to it are
    relative to that root and may end in an ``[N]`` HDU selector. The static
    methods take the root (a URI of the storage's scheme) explicitly.

    Parameters
    ----------
    uri : `str`
        The repository root.
    create : `bool`
        Create the root if it does not exist.
    """

    @abc.abstractmethod
    def __init__(self, uri: str, create: bool):
        """Bind the storage to a root."""

    @abc.abstractmethod
    def exists(self, relpath: str) -> bool:
        """Whether a file exists (an HDU selector is ignored)."""

    @abc.abstractmethod
    def read(self, butlerLocation: Any) -> Any:
        """Read the object(s) at a location: one object, or a list for several paths."""

    @abc.abstractmethod
    def write(self, butlerLocation: Any, obj: Any) -> None:
        """Write an object to every path of a location, atomically and inside the root."""

    @abc.abstractmethod
    def instanceSearch(self, path: str) -> list[str] | None:
        """Search for a path under this storage's root (see `search`)."""

    @abc.abstractmethod
    def getLocalFile(self, path: str) -> Any:
        """Return an open text file for a path, or None when it does not exist."""

    @abc.abstractmethod
    def locationWithRoot(self, location: str) -> str:
        """Return a location joined to the root."""

    @abc.abstractmethod
    def copyFile(self, fromLocation: str, toLocation: str) -> None:
        """Copy a file within the storage."""

    @staticmethod
    @abc.abstractmethod
    def search(root: str, path: str, searchParents: bool = False) -> list[str] | None:
        """Find a path under a root (and its parents): ``[match]`` or None."""

    @staticmethod
    @abc.abstractmethod
    def getRepositoryCfg(uri: str) -> Any:
        """Read the `RepositoryCfg` at a root, or None."""

    @staticmethod
    @abc.abstractmethod
    def putRepositoryCfg(cfg: Any, loc: str | None = None) -> None:
        """Write a `RepositoryCfg` at ``loc`` (default: ``cfg.root``)."""

    @staticmethod
    @abc.abstractmethod
    def getMapperClass(root: str) -> Any:
        """Return the mapper class of the repository at a root, or None."""

    @staticmethod
    @abc.abstractmethod
    def relativePath(fromPath: str, toPath: str) -> str:
        """Return ``toPath`` relative to ``fromPath``."""

    @staticmethod
    @abc.abstractmethod
    def absolutePath(fromPath: str, relativePath: str) -> str:
        """Return ``relativePath`` made absolute against ``fromPath``."""

    @staticmethod
    @abc.abstractmethod
    def storageExists(uri: str) -> bool:
        """Whether anything exists at a URI."""


def _scheme(uri: str) -> str:
    """The URI scheme; ``""`` for a plain path."""
    scheme = urllib.parse.urlparse(str(uri)).scheme
    # "C:" style drive letters and plain paths have no real scheme
    return scheme if len(scheme) > 1 else ""


class Storage:
    """The scheme table, the Gen2 static helpers, and a cache of repository cfgs.

    Instances only hold the cache: ``Storage().getRepositoryCfg(uri)`` reads a
    cfg once and keeps it in ``.repositoryCfgs``.
    """

    #: scheme -> storage class, or the dotted path of one (imported on first use)
    _storages: ClassVar[dict[str, Any]] = {
        "": "butler.storage.posix.PosixStorage",
        "file": "butler.storage.posix.PosixStorage",
    }

    def __init__(self) -> None:
        self.repositoryCfgs: dict[str, Any] = {}

    @classmethod
    def registerStorageClass(cls, scheme: str, storageClass: Any) -> None:
        """Register the storage class (or its dotted path) for a URI scheme, replacing any.

        Parameters
        ----------
        scheme : `str`
            E.g. ``"s3"``; ``""`` is plain paths.
        storageClass : `type` or `str`
            A `StorageInterface` subclass, or its importable dotted name.
        """
        if scheme in cls._storages:
            _log.debug("storage class for scheme %r replaced by %r", scheme, storageClass)
        cls._storages[scheme] = storageClass

    @classmethod
    def storageClass(cls, uri: str) -> type[StorageInterface]:
        """Return the storage class for a URI's scheme.

        Raises
        ------
        UnknownStorageError
            When no class is registered for the scheme.
        """
        scheme = _scheme(uri)
        try:
            entry = cls._storages[scheme]
        except KeyError:
            known = ", ".join(repr(s) for s in sorted(cls._storages))
            raise UnknownStorageError(f"no storage for scheme {scheme!r} of {uri!r}; known schemes: {known}") \
                from None
        if isinstance(entry, str):
            entry = cls._storages[scheme] = doImport(entry)
        return entry

    @classmethod
    def makeFromURI(cls, uri: str, create: bool = True) -> StorageInterface:
        """Return a storage bound to ``uri``, of the class its scheme names."""
        return cls.storageClass(uri)(uri, create)

    def getRepositoryCfg(self, uri: str) -> Any:
        """Return the `RepositoryCfg` at ``uri`` (cached), or None when there is none."""
        cfg = self.repositoryCfgs.get(uri)
        if cfg is None:
            cfg = self.storageClass(uri).getRepositoryCfg(uri)
            if cfg is not None:
                self.repositoryCfgs[uri] = cfg
        return cfg

    @staticmethod
    def putRepositoryCfg(cfg: Any, uri: str | None = None) -> None:
        """Write a `RepositoryCfg` at ``uri`` (default: ``cfg.root``)."""
        location = cfg.root if uri is None else uri
        Storage.storageClass(location).putRepositoryCfg(cfg, location)

    @staticmethod
    def getMapperClass(uri: str) -> Any:
        """Return the mapper class of the repository at ``uri``, or None."""
        return Storage.storageClass(uri).getMapperClass(uri)

    @staticmethod
    def relativePath(fromPath: str, toPath: str) -> str:
        """Return ``toPath`` relative to ``fromPath``."""
        return Storage.storageClass(fromPath).relativePath(fromPath, toPath)

    @staticmethod
    def absolutePath(fromPath: str, relativePath: str) -> str:
        """Return ``relativePath`` made absolute against ``fromPath``."""
        return Storage.storageClass(fromPath).absolutePath(fromPath, relativePath)

    @staticmethod
    def search(uri: str, path: str) -> list[str] | None:
        """Find ``path`` in the repository at ``uri``: ``[match]`` or None."""
        return Storage.storageClass(uri).search(uri, path)

    @staticmethod
    def storageExists(uri: str) -> bool:
        """Whether anything exists at ``uri``."""
        return Storage.storageClass(uri).storageExists(uri)
