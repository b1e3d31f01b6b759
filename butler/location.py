"""Where a dataset lives: `ButlerLocation`, `ButlerComposite` and HDU-suffix parsing.

A mapper answers "where is dataset X for data ID Y" with one of these value
objects; the storage and the formatters act on them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import attrs

from .utils import as_list

__all__ = ["ButlerLocation", "ButlerComposite", "ComponentInfo", "split_hdu"]

_HDU_SUFFIX = re.compile(r"^(?P<path>.*?)\[(?P<hdu>\d+)\]$")


def split_hdu(path: str) -> tuple[str, int | None]:
    """Split a trailing ``[N]`` HDU selector off a location.

    Parameters
    ----------
    path : `str`
        A location, e.g. ``"raw/a.fits[3]"``.

    Returns
    -------
    path, hdu : `str`, `int` or `None`
        The file path and the HDU index (None when there is no selector).
    """
    if not path.endswith("]"):
        return path, None
    match = _HDU_SUFFIX.match(path)
    if match is None:
        return path, None
    return match.group("path"), int(match.group("hdu"))


@attrs.define(eq=False, on_setattr=attrs.setters.NO_OP)
class ButlerLocation:
    """The answer of a mapper: the type, format and relative path(s) of a dataset.

    Parameters
    ----------
    pythonType : `type` or `str`
        The Python type of the object (a legacy type-name string is kept as is).
    cppType : `str` or `None`
        The legacy persistable type name.
    storageName : `str`
        Name of the formatter (``"FitsStorage"``, ``"PickleStorage"``, ...).
    locationList : `str` or `list` of `str`
        Path(s) relative to the storage root, optionally ending in ``[N]``.
    dataId : mapping
        The full data ID used.
    mapper : `Mapper`
        The mapper that made this location.
    storage : `Storage`
        The storage of the repository the paths are relative to.
    usedDataId : mapping, optional
        The data-ID keys the template used.
    datasetType : `str`, optional
        The dataset type.
    additionalData : mapping, optional
        Extra values for the formatter (sub-image boxes, write recipes, ...).
    repository : `butler.repository.Repository`, optional
        The repository the paths are in: given by a mapper that knows it;
        otherwise `Repository.map` hands on a completed copy.
    parameters : mapping, optional
        What part of the dataset a read selects (``get(..., parameters=...)``:
        ``bbox``, ``columns``, ``rows``), handed to the formatter, which checks
        them; set by the Butler on a copy (`with_parameters`), never by a mapper.
    found : `bool` or `None`, optional
        What the mapper saw when it made this location for this one call: True
        when its file existed, False when it did not, None when it did not look.
        The Butler answers from it instead of asking the storage again; a
        location is made per call, so nothing outlives the call that looked.
    """

    pythonType: Any
    cppType: Any
    storageName: str
    locationList: list[str] = attrs.field(converter=as_list)
    dataId: Any
    mapper: Any
    storage: Any
    usedDataId: Any = None
    datasetType: str | None = None
    additionalData: dict = attrs.field(default=None, converter=lambda v: dict(v) if v else {})
    repository: Any = None
    parameters: dict = attrs.field(factory=dict)
    found: bool | None = None

    def __repr__(self) -> str:
        return (f"ButlerLocation(datasetType={self.datasetType!r}, storageName={self.storageName!r}, "
                f"locationList={self.locationList!r}, dataId={self.dataId!r})")

    def getPythonType(self) -> Any:
        """Return the Python type (or type name) given at construction."""
        return self.pythonType

    def getCppType(self) -> Any:
        """Return the legacy persistable type name."""
        return self.cppType

    def getStorageName(self) -> str:
        """Return the storage (formatter) name."""
        return self.storageName

    def getLocations(self) -> list[str]:
        """Return the paths, relative to the storage root, as a list."""
        return self.locationList

    def getLocationsWithRoot(self) -> list[str]:
        """Return the paths joined to the storage root."""
        root = getattr(self.storage, "root", None)
        if not root:
            return list(self.locationList)
        prefix = root if root[-1] == "/" else root + "/"  # os.path.join's answer, without its call per path
        return [loc if loc[:1] == "/" else prefix + loc for loc in self.locationList]

    def getAdditionalData(self) -> dict:
        """Return the extra values for the formatter."""
        return self.additionalData

    def getStorage(self) -> Any:
        """Return the storage the paths are relative to."""
        return self.storage

    def setRepository(self, repository: Any) -> None:
        """Record the repository this location was found in."""
        self.repository = repository

    @classmethod
    def _mapped(cls, pythonType: Any, cppType: Any, storageName: str, path: str, dataId: dict, mapper: Any,
                storage: Any, usedDataId: dict, datasetType: str | None, additionalData: dict, repository: Any,
                found: bool | None) -> ButlerLocation:
        """The location of one path, made by a mapping from values already in their stored form.

        Private, for `mappers.mapping.Mapping.map`, which calls it on every map, and
        `butler.repository.Repository.relocate`: the
        converters of the public constructor are skipped, so ``additionalData`` must
        be a dict of the location's own (not shared with ``dataId``).
        """
        self = object.__new__(cls)
        self.pythonType = pythonType
        self.cppType = cppType
        self.storageName = storageName
        self.locationList = [path]
        self.dataId = dataId
        self.mapper = mapper
        self.storage = storage
        self.usedDataId = usedDataId
        self.datasetType = datasetType
        self.additionalData = additionalData
        self.repository = repository
        self.parameters = {}
        self.found = found
        return self

    def with_parameters(self, parameters: Any) -> ButlerLocation:
        """A copy of this location whose reads select ``parameters`` (this one when there are none)."""
        return attrs.evolve(self, parameters=dict(parameters)) if parameters else self


@attrs.define
class ComponentInfo:
    """One component of a composite dataset.

    Parameters
    ----------
    datasetType : `str`
        The component's own dataset type.
    obj : `object`
        The component object, once read or disassembled.
    setter, getter : `str`, optional
        Names of the composite object's methods that set / get this component.
    subset : `bool`
        The component is a list of objects from a subset of data IDs.
    inputOnly : `bool`
        The component is read but never written.
    """

    datasetType: str
    obj: Any = None
    setter: str | None = None
    getter: str | None = None
    subset: bool = False
    inputOnly: bool = False


@attrs.define(eq=False)
class ButlerComposite:
    """A dataset assembled from component datasets.

    Parameters
    ----------
    assembler, disassembler : callable or `None`
        ``assembler(dataId, componentInfo, cls)`` builds the object;
        ``disassembler(obj, dataId, componentInfo)`` fills ``componentInfo[...].obj``.
    python : `type` or `str`
        The composite's Python type.
    dataId : mapping
        The data ID.
    mapper : `Mapper`
        The mapper that made it.
    repository : `butler.repository.Repository`, optional
        The repository it was found in (as for `ButlerLocation`).
    datasetType : `str`, optional
        The dataset type.
    """

    assembler: Callable | None
    disassembler: Callable | None
    python: Any
    dataId: Any
    mapper: Any
    componentInfo: dict[str, ComponentInfo] = attrs.field(factory=dict)
    repository: Any = None
    datasetType: str | None = None

    def add(self, id: str, datasetType: str, setter: str | None = None, getter: str | None = None,
            subset: bool = False, inputOnly: bool = False) -> None:
        """Declare a component, reached through ``datasetType``."""
        self.componentInfo[id] = ComponentInfo(datasetType, None, setter, getter, subset, inputOnly)

    def setRepository(self, repository: Any) -> None:
        """Record the repository this composite was found in."""
        self.repository = repository

    def getPythonType(self) -> Any:
        """Return the composite's Python type."""
        return self.python
