"""What a server serves: each repository given and each of its ancestors, by name, read-only.

Every answer of the service comes from here, through the library: a
`butler.Butler` opened on the repository (its inputs only, so nothing is ever
written), its `Repository`, the repository's storage and its registries. A
served repository's cfg is shown to clients with its parents rewritten as the
URLs this server serves them at (`Served.cfgView`), so a client follows the
chain over HTTP and never reads a path of the server's disk.
"""

from __future__ import annotations

import logging
import os
import posixpath
import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import attrs

from ..errors import (
    ButlerError,
    DatasetNotFoundError,
    MapperError,
    RegistryError,
    RepositoryError,
)

__all__ = ["Catalog", "Served", "DatasetFile"]

_log = logging.getLogger(__name__)

#: the name (in a rewritten cfg) of a parent that the server does not have: a client finds no repository there
_MISSING = "~missing~"
#: an absolute path in a text (not the path part of a URL or a relative path: none of ``\w:/.~-`` before it)
_ABSOLUTE_PATH = re.compile(r"(?<![\w:/.~-])/[^\s'\"]+")
#: how every FITS file begins
_FITS_SIGNATURE = b"SIMPLE  ="
#: the fields of a provenance record (`butler.provenance.ProvenanceRecord.to_dict`) that hold repository roots
_ROOT_FIELDS = ("repository", "inputs", "outputs")


@attrs.frozen
class DatasetFile:
    """The file of a dataset: its storage, its path there, the HDU its location names, its repository."""

    storage: Any
    path: str
    hdu: int | None
    repository: Any


@attrs.define(eq=False)
class Served:
    """One served repository.

    Attributes
    ----------
    name : `str`
        Its name in URLs (``/api/v1/repositories/NAME``, ``http://host:port/NAME``).
    root : `str`
        Its root on the server (never sent to a client).
    given : `bool`
        Named on the command line (else an ancestor of one that was).
    """

    name: str
    root: str
    given: bool
    _butler: Any = None
    _registries: dict = attrs.field(factory=dict)
    _located: dict = attrs.field(factory=dict)
    _catalog: Any = None
    _lock: threading.RLock = attrs.field(factory=threading.RLock)

    @property
    def butler(self) -> Any:
        """A Butler whose only input is this repository (read-only; made on first use)."""
        with self._lock:
            if self._butler is None:
                from ..butler import Butler
                from ..cfg import RepositoryArgs

                self._butler = Butler(inputs=RepositoryArgs(root=self.root, mode="r"))
            return self._butler

    @property
    def repository(self) -> Any:
        """This repository's `butler.repository.Repository`."""
        return self.butler.repositories()[0]

    @property
    def storage(self) -> Any:
        """This repository's storage."""
        return self.repository.storage

    def registry(self, path: str) -> tuple[Any, threading.RLock]:
        """The registry file ``path`` (relative to the root) opened read-only, and the lock its readers hold.

        Raises
        ------
        RegistryError
            When ``path`` names no ``.sqlite3`` file.
        UnsafePathError
            When ``path`` is outside the root.
        DatasetNotFoundError
            When there is no registry there.
        """
        if not path.endswith(".sqlite3"):
            raise RegistryError(f"{path!r} is no registry file of served repository {self.name} "
                                "(a registry is a .sqlite3 file)")
        with self._lock:
            if path not in self._registries:
                registry = self.repository.openRegistry(path)
                if registry is None:
                    raise DatasetNotFoundError(f"no registry {path} in served repository {self.name}")
                self._registries[path] = (registry, threading.RLock())
            return self._registries[path]

    def mapperName(self) -> str | None:
        """The mapper the repository records, as its files name it (nothing is imported)."""
        from ..cfg import _mapper_import_string

        return _mapper_import_string(self.repository.cfg.mapper)

    def parentRoots(self) -> list[str]:
        """The roots of the repository's parents, in order."""
        return [parent.root for parent in self.repository.parents]

    def locates(self, path: str) -> bool:
        """Whether the repository's mapper locates a dataset of its own at ``path``: the path matches a dataset
        type's template, and the data ID it encodes (completed from the registry) maps back to it, here."""
        with self._lock:
            if path not in self._located:
                self._located[path] = self._findLocated(path)
            return self._located[path]

    def _findLocated(self, path: str) -> bool:
        from ..registry import FsScanner

        mappings = getattr(self.repository.mapper, "mappings", None) or {}
        here = os.path.realpath(self.root)
        for datasetType in mappings:
            try:
                template = mappings[datasetType].template
            except (RuntimeError, ButlerError):  # declared without a template
                continue
            values = FsScanner(template).match(path)
            if values is None:
                continue
            try:
                found = self.locate(datasetType, values)
            except ButlerError:
                continue
            if found.path == path and os.path.realpath(found.repository.root) == here:
                return True
        return False

    def locate(self, datasetType: str, dataId: Mapping[str, Any]) -> DatasetFile:
        """Where the dataset's file is, by the mapper's search.

        Raises
        ------
        NoResults
            When no repository searched holds it.
        MapperError
            For a composite dataset (several files).
        DatasetNotFoundError
            When its file is refused (`Catalog.checkServable`).
        """
        from ..dataId import merge_data_id
        from ..location import ButlerComposite, split_hdu

        butler = self.butler
        datasetType = butler._resolve(datasetType)
        found = butler._locate(datasetType, merge_data_id(dataId), write=False, read=False)
        location = found.location[0] if isinstance(found.location, list) else found.location
        if isinstance(location, ButlerComposite):
            raise MapperError(f"{datasetType} {dict(dataId)!r} in served repository {self.name} is a composite "
                              "dataset: it has no single file")
        path, hdu = split_hdu(location.locationList[0])
        storage = location.storage or found.repository.storage
        if self._catalog is not None:
            self._catalog.checkServable(self, storage, path, located=True)
        return DatasetFile(storage, path, hdu, found.repository)


class Catalog:
    """The repositories a server serves, by name: those given, then their ancestors.

    Parameters
    ----------
    roots : iterable of `str`
        The repository roots given (local directories).

    Raises
    ------
    RepositoryError
        When a root is no directory.
    """

    def __init__(self, roots: Iterable[str]):
        self.served: dict[str, Served] = {}
        self._byReal: dict[str, Served] = {}
        for root in roots:
            if not os.path.isdir(root):
                raise RepositoryError(f"cannot serve {root}: no such directory")
            self._add(os.path.abspath(root), given=True)
        for served in [s for s in self.served.values() if s.given]:
            for ancestor in served.repository.ancestry()[1:]:
                if not ancestor.root.startswith(("/", ".")) and "://" in ancestor.root:
                    continue  # a parent served elsewhere: its URI is kept as it is
                self._add(ancestor.root, given=False)

    def _add(self, root: str, given: bool) -> Served:
        real = os.path.realpath(root)
        if real in self._byReal:
            return self._byReal[real]
        base = posixpath.basename(root.rstrip("/")) or "root"
        name, number = base, 1
        while name in self.served or name.startswith("~"):
            number += 1
            name = f"{base.lstrip('~')}-{number}"
        served = self.served[name] = self._byReal[real] = Served(name=name, root=root, given=given,
                                                                       catalog=self)
        _log.info("serving %s as %s", root, name)
        return served

    def get(self, name: str) -> Served:
        """The served repository ``name``; `RepositoryError` naming the known ones otherwise."""
        try:
            return self.served[name]
        except KeyError:
            raise RepositoryError(f"no served repository {name!r}; served: {', '.join(self.served)}") from None

    def nameOf(self, root: str) -> str | None:
        """The name a root is served under, or None."""
        served = self._byReal.get(os.path.realpath(root))
        return served.name if served is not None else None

    def checkServable(self, served: Served, storage: Any, path: str, located: bool = False) -> None:
        """Refuse a file that symbolic links take outside every served root, unless it is what ingest links:
        a regular FITS file that is the dataset file the mapper locates at ``path`` (``located``: the caller
        found ``path`` by the mapper's search; else `Served.locates` is asked).

        Links that stay inside the served roots are followed as the storage follows them. A refusal is
        logged (with the link's target, on the server only) and answered as a missing file (404), so a
        client learns nothing of what lies outside.

        Raises
        ------
        DatasetNotFoundError
            When the file is refused.
        """
        if not getattr(storage, "hasLocalFiles", False):
            return
        with storage.localFile(path) as local:
            target = os.path.realpath(local)
        if any(target == root or target.startswith(root.rstrip("/") + "/") for root in self._byReal):
            return
        if os.path.isfile(target) and self._isFits(storage, path) and (located or served.locates(path)):
            return
        _log.warning("refused %s of served repository %s: it leads to %s, outside every served root, and is no "
                     "FITS file the repository's mapper locates there", path, served.name, target)
        raise DatasetNotFoundError(f"no file {path} in served repository {served.name}")

    @staticmethod
    def _isFits(storage: Any, path: str) -> bool:
        with storage.openRead(path) as stream:
            return stream.read(len(_FITS_SIGNATURE)) == _FITS_SIGNATURE

    def publicText(self, text: str, baseUrl: str) -> str:
        """``text`` (an error message) with each served root replaced by its URL: a client is told which
        remote repository, never a path of the server's disk."""
        roots = sorted(((spelling, served.name) for served in self.served.values()
                        for spelling in {served.root, os.path.realpath(served.root)}),
                       key=lambda item: -len(item[0]))
        for root, name in roots:
            text = text.replace(root, f"{baseUrl.rstrip('/')}/{quote(name, safe='')}")
        return text

    def publicRoot(self, root: str, baseUrl: str) -> str:
        """The URL a root is served at; of a root this server does not serve, a URL where there is none
        (named by the root's last component), as a cfg's missing parent is shown."""
        if "://" in root:
            return root
        name = self.nameOf(root)
        if name is None:
            name = _MISSING + posixpath.basename(root.rstrip("/"))
        return f"{baseUrl.rstrip('/')}/{quote(name, safe='~')}"

    def publicRecord(self, data: Any, baseUrl: str, key: str | None = None) -> Any:
        """A provenance record as plain data (`butler.provenance.ProvenanceRecord.to_dict`) with no path of
        the server's disk: repository roots (``repository``, a run's ``inputs`` and ``outputs``) as
        `publicRoot` URLs; in any other text, served roots as their URLs and what else is an absolute path
        by its last component (``.../NAME``)."""
        if isinstance(data, Mapping):
            return {k: self.publicRecord(v, baseUrl, k) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return [self.publicRecord(item, baseUrl, key) for item in data]
        if not isinstance(data, str):
            return data
        if key in _ROOT_FIELDS and data.startswith("/"):
            return self.publicRoot(data, baseUrl)
        return _ABSOLUTE_PATH.sub(lambda m: ".../" + posixpath.basename(m.group(0).rstrip("/")),
                                  self.publicText(data, baseUrl))

    def cfgView(self, served: Served, baseUrl: str) -> bytes | None:
        """The repository's ``repositoryCfg.yaml`` as a client sees it: parents as this server's URLs.

        A parent this server does not have (gone from its disk) is named by a URL
        where there is no repository, so a client's read stops there as a local
        one would. None when the repository has no cfg file.
        """
        from ..cfg import RepositoryCfg

        cfg = RepositoryCfg.read(served.root, storage=served.storage)
        if cfg is None:
            return None
        view = attrs.evolve(cfg, root=None, parents=[self._parentUrl(p, baseUrl) for p in cfg.parents])
        return view.text(baseUrl).encode("utf-8")

    def _parentUrl(self, parent: Any, baseUrl: str) -> Any:
        from ..cfg import RepositoryCfg

        if isinstance(parent, RepositoryCfg):
            return attrs.evolve(parent, root=self._parentUrl(parent.root, baseUrl),
                                parents=[self._parentUrl(p, baseUrl) for p in parent.parents])
        if parent is None:
            return parent
        return self.publicRoot(str(parent), baseUrl)
