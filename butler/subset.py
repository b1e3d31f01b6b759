"""`ButlerSubset` and `ButlerDataRef`: the data IDs a partial data ID selects, as references."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .dataId import DataId, merge_data_id

if TYPE_CHECKING:
    from .butler import Butler

__all__ = ["ButlerSubset", "ButlerDataRef"]


class ButlerSubset:
    """The data references of one dataset type at one level that match a partial data ID.

    When every key of the level is in the data ID the subset holds that one
    reference, whether or not the dataset exists; otherwise the keys are looked
    up with `Butler.queryMetadata`, and values that match nothing give an empty subset.

    Parameters
    ----------
    butler : `Butler`
        The Butler to read through.
    datasetType : `str`
        The dataset type.
    level : `str` or `None`
        The level (e.g. ``"visit"``, ``"sensor"``).
    dataId : `DataId`
        The partial data ID.
    """

    def __init__(self, butler: Butler, datasetType: str, level: str | None, dataId: DataId):
        self.butler = butler
        self.datasetType = datasetType
        self.level = level
        self.dataId = DataId(dataId)
        keys = butler.getKeys(datasetType, level, tag=self.dataId.tag) or {}
        fields = list(keys)
        if all(k in self.dataId for k in fields):  # no query: the keys are checked here
            butler._check_keys(datasetType, self.dataId)
            rows = [tuple(self.dataId[k] for k in fields)]
        else:
            rows = butler.queryMetadata(datasetType, fields, self.dataId)
            if len(fields) == 1:
                rows = [(value,) for value in rows]
        self.cache = rows
        self._fields = fields

    def __len__(self) -> int:
        return len(self.cache)

    def __iter__(self) -> Iterator[ButlerDataRef]:
        for row in self.cache:
            dataId = DataId(self.dataId)
            dataId.update(zip(self._fields, row))
            yield ButlerDataRef(self, dataId)

    def __repr__(self) -> str:
        return f"ButlerSubset({self.datasetType!r}, level={self.level!r}, {len(self)} refs)"


class ButlerDataRef:
    """A reference to the datasets of one complete data ID.

    Parameters
    ----------
    butlerSubset : `ButlerSubset`
        The subset this reference belongs to.
    dataId : `DataId`
        The complete data ID.
    """

    def __init__(self, butlerSubset: ButlerSubset, dataId: DataId):
        self.butlerSubset = butlerSubset
        self.dataId = dataId

    def __repr__(self) -> str:
        return f"ButlerDataRef({self.butlerSubset.datasetType!r}, {self.dataId!r})"

    def _type(self, datasetType: str | None) -> str:
        return datasetType if datasetType is not None else self.butlerSubset.datasetType

    def get(self, datasetType: str | None = None, **rest: Any) -> Any:
        """Read a dataset of this data ID (the subset's dataset type by default)."""
        return self.butlerSubset.butler.get(self._type(datasetType), self.dataId, **rest)

    def put(self, obj: Any, datasetType: str | None = None, doBackup: bool = False, **rest: Any) -> None:
        """Write a dataset of this data ID."""
        self.butlerSubset.butler.put(obj, self._type(datasetType), self.dataId, doBackup=doBackup, **rest)

    def getUri(self, datasetType: str | None = None, write: bool = False, **rest: Any) -> str:
        """Return the path of a dataset of this data ID."""
        return self.butlerSubset.butler.getUri(self._type(datasetType), self.dataId, write=write, **rest)

    def datasetExists(self, datasetType: str | None = None, write: bool = False, **rest: Any) -> bool:
        """Return whether a dataset of this data ID exists."""
        return self.butlerSubset.butler.datasetExists(self._type(datasetType), self.dataId, write=write,
                                                      **rest)

    def subLevels(self) -> set[str]:
        """Return the keys of the dataset type that this reference's level does not fix."""
        butler = self.butlerSubset.butler
        every = butler.getKeys(self.butlerSubset.datasetType) or {}
        here = butler.getKeys(self.butlerSubset.datasetType, self.butlerSubset.level) or {}
        return set(every) - set(here)

    def subItems(self, level: str | None = None) -> Any:
        """Return the subset one level down (the mapper's default sub-level), or ``[]``."""
        butler = self.butlerSubset.butler
        if level is None:
            level = butler._default_sub_level(self.butlerSubset.level)
            if level is None:
                return []
        return butler.subset(self.butlerSubset.datasetType, level, merge_data_id(self.dataId))

    def getButler(self) -> Butler:
        """Return the Butler this reference reads through."""
        return self.butlerSubset.butler
