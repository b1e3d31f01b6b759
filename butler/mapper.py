"""The `Mapper` base class: dataset type + data ID -> `ButlerLocation`.

A mapper subclass defines ``map_<datasetType>(dataId, write)`` per dataset type
and, optionally, ``query_<datasetType>``, ``bypass_<datasetType>`` and
``std_<datasetType>``. The base dispatches to them. It knows nothing of search
order or of other repositories; that is the Butler's job.

Subclasses need not call ``Mapper.__init__``: every base method works on an
instance whose ``__init__`` never ran.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from .errors import MapperError

__all__ = ["Mapper"]


class Mapper:
    """Base class of all mappers.

    Parameters
    ----------
    **kwargs
        Ignored by the base; subclasses take ``root``, ``parentRegistry``,
        ``repositoryCfg`` and their own arguments.
    """

    def __init__(self, **kwargs: Any):
        pass

    def __getstate__(self) -> dict:
        return dict(self.__dict__)

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def keys(self) -> Iterable[str]:
        """Return the data-ID keys this mapper knows (none for the base)."""
        raise NotImplementedError(f"{type(self).__name__} does not list its keys")

    def queryMetadata(self, datasetType: str, format: Any, dataId: Any) -> Any:
        """Return the values of the ``format`` keys for the data IDs matching ``dataId``.

        Calls ``query_<datasetType>(format, dataId)``; returns None when the
        mapper has no query for the dataset type.
        """
        func = getattr(self, "query_" + datasetType, None)
        if func is None:
            return None
        return func(format, self.validate(dataId))

    def getDatasetTypes(self) -> list[str]:
        """Return the dataset types this mapper maps (the ``map_*`` method names)."""
        return sorted(name[4:] for name in dir(self) if name.startswith("map_") and callable(getattr(self, name)))

    def map(self, datasetType: str, dataId: Any, write: bool = False) -> Any:
        """Return the location(s) of a dataset, or None when it is not in this repository.

        Raises
        ------
        MapperError
            When the mapper has no ``map_<datasetType>``.
        """
        func = getattr(self, "map_" + datasetType, None)
        if func is None:
            raise MapperError(f"{type(self).__name__} has no mapping for dataset type {datasetType!r}")
        return func(self.validate(dataId), write)

    def sharedReadPath(self, datasetType: str) -> tuple[Hashable, bool] | None:
        """A promise that lets a search map a dataset type once and only probe the other repositories.

        Returns
        -------
        promise : `tuple` (``key``, ``compressed``) or None
            Mappers answering the same ``key`` map any data ID of
            ``datasetType`` for reading to one plain location with the same
            path relative to their own repository's storage, which is there
            when ``storage.probe(path, compressed)`` finds it, and serve it no
            other way (no bypass). Their locations differ only in the
            repository, mapper and storage (and the path a probe found): the
            search takes one mapped in another repository for theirs. The base
            promises nothing (None).
        """
        return None

    def canStandardize(self, datasetType: str) -> bool:
        """Return whether ``std_<datasetType>`` exists."""
        return hasattr(self, "std_" + datasetType)

    def standardize(self, datasetType: str, item: Any, dataId: Any) -> Any:
        """Post-process an object just read, through ``std_<datasetType>`` if it exists."""
        func = getattr(self, "std_" + datasetType, None)
        if func is None:
            return item
        return func(item, dataId)

    def validate(self, dataId: Any) -> Any:
        """Check and normalise a data ID; the base returns it unchanged."""
        return dataId

    def knownDataIdKeys(self) -> frozenset[str] | None:
        """Every data-ID key this mapper knows, or None when it does not say (the base)."""
        return None

    def backup(self, datasetType: str, dataId: Any) -> None:
        """Keep the existing versions of a dataset's files before they are overwritten.

        The files the dataset would be written to are backed up by their
        storage (`butler.storage.StorageInterface.backup`): ``~1`` is the
        newest version.

        Raises
        ------
        NotImplementedError
            When the mapper gives no location with a storage for the dataset.
        """
        location = self.map(datasetType, dataId, write=True)
        storage = getattr(location, "storage", None)
        if storage is None:
            raise NotImplementedError(f"{type(self).__name__} gives no storage to back up {datasetType!r} "
                                      f"{dataId!r} in")
        for path in location.locationList:
            storage.backup(path)

    def getKeys(self, datasetType: str | None, level: str | None) -> dict | None:
        """Return ``{key: type}`` of the keys of a dataset type at a level; the base knows none."""
        return None

    def getDefaultLevel(self) -> str | None:
        """Return the level used when a subset is asked for without one."""
        return getattr(self, "defaultLevel", None)

    def getDefaultSubLevel(self, level: str) -> str | None:
        """Return the level below ``level``, or None."""
        return getattr(self, "defaultSubLevels", {}).get(level)

    def getRegistry(self) -> Any:
        """Return this mapper's registry, or None."""
        return getattr(self, "registry", None)

    @classmethod
    def getShortName(cls) -> str:
        """Return a short name for the mapper class."""
        return cls.__name__

