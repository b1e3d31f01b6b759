"""Mappings: how one dataset type of a camera policy becomes a `ButlerLocation`.

A `Mapping` is built once per dataset type from its policy entry. It knows the
template and its keys, fills a partial data ID from the registry, checks and
converts the data-ID values (`butler.dataId.check_data_id`, against the kinds
of the template fields and of the registry columns) before any path is built
or any registry is queried, and finds compressed variants of a file on read
(through the repository's storage).
"""

from __future__ import annotations

import logging
import operator
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from butler.dataId import check_data_id, check_path, kind_of_column
from butler.errors import (
    IncompleteDataIdError,
    MapperError,
    NoResults,
    RegistryError,
    RegistrySchemaError,
    TemplateError,
    UnknownStorageError,
)
from butler.formatters import get_formatter
from butler.location import ButlerLocation
from butler.registry import template_fields

__all__ = ["Mapping", "ImageMapping", "ExposureMapping", "CalibrationMapping", "DatasetMapping"]

_log = logging.getLogger(__name__)

#: data-ID keys of a sky map; never looked up in a registry
SKYMAP_KEYS = ("tract", "patch")
_SKYMAP_SET = frozenset(SKYMAP_KEYS)
#: properties that the one-row-per-visit table ``raw_visit`` can answer
_VISIT_PROPERTIES = frozenset(("filter", "expTime", "taiObs"))


def _as_list(value: Any) -> list | None:
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


#: at most this many plans per mapping (one per mapper class and order of data-ID keys given)
_MAX_PLANS = 64


@attrs.frozen(slots=True)
class _MapPlan:
    """How `Mapping.map` maps one shape of data ID (see `Mapping._plan`): shapes only, never values."""

    #: the template keys the data ID lacks, in the template's order
    missing: tuple[str, ...]
    #: the data-ID keys the registry statement compares, in order of its values
    where: tuple[str, ...]
    #: ``query(values)`` -> rows of ``missing``, one when it is the answer (`Registry.lookup_unique_plan`),
    #: or None: `Mapping._complete` decides
    query: Callable[[Sequence[Any]], list[tuple]] | None
    #: the mapper fills templates as `CameraMapper` does (``template % dataId``): no call needed
    fillsDirectly: bool
    #: the mapper's key check is asked on every map (it is its own, or a key is unknown); the standard
    #: check (`CameraMapper.checksDataIdKeysByName`) passing for these keys is not asked again
    checksKeys: bool
    #: ``locate(mapper, dataId, write, checked)``: `Mapping.map` of this shape, compiled (`Mapping._locator`)
    locate: Callable[[Any, Any, bool, bool], ButlerLocation] = attrs.field(eq=False, repr=False)


def _getter(keys: tuple[str, ...]) -> Callable[[dict], tuple]:
    """``get(dataId)`` -> the values of ``keys`` in a tuple (`operator.itemgetter`, which gives one key's bare)."""
    if len(keys) > 1:
        return operator.itemgetter(*keys)
    if keys:
        (key,) = keys
        return lambda dataId: (dataId[key],)
    return lambda dataId: ()


def registry_name(registry: Any) -> str:
    """Return a printable name of a registry: where it lives (its file, or the directory scanned)."""
    return str(registry.location)


class Mapping:
    """The mapping of one dataset type.

    Parameters
    ----------
    datasetType : `str`
        The dataset type.
    policy : `butler.Policy` or mapping
        Its policy entry.
    registry : registry or `None`
        The registry that fills missing data-ID keys.
    rootStorage : `butler.storage.Storage`
        The storage of the repository the paths are relative to.
    provided : iterable of `str`, optional
        Keys the caller always gives; they are removed from the key dict.
    """

    def __init__(self, datasetType: str, policy: Any, registry: Any, rootStorage: Any,
                 provided: Iterable[str] | None = None):
        if policy is None:
            raise ValueError(f"No policy for dataset type {datasetType}")
        self.datasetType = datasetType
        self.registry = registry
        self.rootStorage = rootStorage
        self._template: str | None = policy.get("template")
        self.keyDict: dict[str, type] = dict(template_fields(self._template)) if self._template else {}
        for key in provided or ():
            self.keyDict.pop(key, None)
        self.python = policy.get("python")
        self.persistable = policy.get("persistable")
        self.storage = policy.get("storage")
        self.level = policy.get("level")
        self.tables = _as_list(policy.get("tables"))
        self.columns = _as_list(policy.get("columns"))
        self.obsTimeName = policy.get("obsTimeName")
        self.recipe = policy.get("recipe") or "default"
        self.range: tuple[str, str] | None = None
        if policy.get("validRange"):
            self.range = (policy.get("validStartName"), policy.get("validEndName"))
        #: data-ID keys that never restrict a registry query
        self._notQueried = frozenset((self.obsTimeName, *SKYMAP_KEYS))
        self._tableColumns: set[str] | None = None
        self._kinds: dict[str, type] | None = None
        self._compressed: bool | None = None
        #: ``{(mapper class, *data-ID keys): _MapPlan}``: shapes only, never registry rows or files
        self._plans: dict[tuple, _MapPlan] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.datasetType!r}, template={self._template!r})"

    @property
    def template(self) -> str:
        """The path template.

        Raises
        ------
        butler.errors.TemplateError
            A `RuntimeError`: the policy declares the dataset type without a template.
        """
        if self._template:
            return self._template
        raise TemplateError(f"Template is not defined for the {self.datasetType} dataset type, "
                            "it must be set before it can be used.")

    def keys(self) -> dict[str, type]:
        """Return ``{key: type}`` of the template keys."""
        return self.keyDict

    def map(self, mapper: Any, dataId: Any, write: bool = False, checked: bool = False) -> ButlerLocation:
        """Return the location of the dataset for a (possibly partial) data ID.

        Parameters
        ----------
        mapper : `mappers.cameraMapper.CameraMapper`
            The mapper (for ``_mapActualToPath`` and ``add_<datasetType>``).
        dataId : mapping
            The data ID; missing template keys are looked up in the registry.
        write : `bool`
            Map for writing: no search for compressed variants; the location's
            ``additionalData`` holds the write recipe (``add_<datasetType>``),
            which is computed for writes only.
        checked : `bool`
            The caller has already passed ``dataId`` through `checkDataId`
            (it is not checked a second time).
        """
        plan = self._plans.get((type(mapper), *(dataId or ())))
        if plan is None:  # the first map of this shape: checked as without a plan, then planned
            self.template  # noqa: B018 - a dataset type without a template raises TemplateError first
            dataId = dataId if checked else self.checkDataId(mapper, dataId or {})
            plan = self._plan(mapper, dataId)
            checked = True
        return plan.locate(mapper, dataId, write, checked)

    def locator(self, mapper: Any, dataId: Any) -> Callable[[Any, Any, bool, bool], ButlerLocation] | None:
        """The compiled `map` of the data ID's shape (its keys, in order) for this mapper's class, once
        `map` has planned it (None before): ``locate(mapper, dataId, write, checked)``, as `map`."""
        plan = self._plans.get((type(mapper), *(dataId or ())))
        return None if plan is None else plan.locate

    def _plan(self, mapper: Any, actualId: Any) -> _MapPlan:
        """Work out (once per mapper class and data-ID key order) how `map` completes such a data ID.

        The plan holds shapes only: the keys missing, the registry statement
        that supplies them (None where `_complete` must decide: no registry or
        table, a sky-map key, the ``raw_visit`` shortcut, a validity range, or
        names the registry refuses), and whether the template can be filled
        from the data ID as it is. Every `map` runs the statement afresh.
        """
        missing = tuple(key for key in self.keyDict if key not in actualId)
        where: tuple[str, ...] = ()
        query = None
        lasting = True  # a plan is kept unless the registry could not be asked (it may be back next call)
        if (missing and type(self).lookup is Mapping.lookup and self.registry is not None and self.tables
                and self.range is None and _SKYMAP_SET.isdisjoint(missing)
                and not (_VISIT_PROPERTIES.issuperset(missing) and "visit" in actualId and "raw" in self.tables)):
            where = self._whereKeys(actualId)
            try:
                query = self.registry.lookup_unique_plan(missing, self.tables, where, template=self._template)
            except RegistryError as exc:  # `_complete` decides, and raises what it raised before
                lasting = isinstance(exc, RegistrySchemaError)
                _log.debug("%s: no lookup plan for keys %s (%s)", self.datasetType, list(actualId), exc)
        mapperType = type(mapper)
        direct = getattr(mapperType, "fillsTemplateDirectly", None)
        fillsDirectly = direct is not None and direct()
        byName = getattr(mapperType, "checksDataIdKeysByName", None)
        checksKeys = not (byName is not None and byName() and mapper.knownDataIdKeys().issuperset(actualId))
        plan = _MapPlan(missing, where, query, fillsDirectly, checksKeys,
                        self._locator(mapper, tuple(actualId), missing, where, query, fillsDirectly,
                                      checksKeys))
        if lasting and len(self._plans) < _MAX_PLANS:
            key = (mapperType, *actualId)
            self._plans[key] = plan
        return plan

    def _locator(self, mapper: Any, given: tuple[str, ...], missing: tuple[str, ...], where: tuple[str, ...],
                 query: Callable[[Sequence[Any]], list[tuple]] | None, fillsDirectly: bool,
                 checksKeys: bool) -> Callable[[Any, Any, bool, bool], ButlerLocation]:
        """`map` of one shape of data ID as one function (see `_plan`).

        It holds this mapping's settings and the plan's shapes, never values: it
        checks the values given (the key check only where ``checksKeys``),
        runs ``query`` (or `_complete`, with its errors, where there is no
        query or no unique row), checks the values supplied, fills the
        template, checks the path, probes the file once (reads), and makes the
        location from values already in their stored form.
        """
        datasetType, template, keyDict = self.datasetType, self.template, self.keyDict
        kinds = self.keyKinds(mapper)
        whereValues = _getter(where)
        complete, checkDataId = self._complete, self.checkDataId
        compressed: bool | None = None  # `readsCompressed`, asked on the first read
        python, persistable, storageName = self.python, self.persistable, self.storage
        readStorage, writeStorage = self.storageFor(False), self.storageFor(True)
        probe = self.rootStorage.probe
        # where the keys given are template keys, the completed data ID holds the template's keys alone:
        # the used data ID is a copy of the template's keys (in their order) updated with its values
        usedKeys = dict.fromkeys(keyDict) if keyDict.keys() >= set(given) else None

        def locate(mapper: Any, dataId: Any, write: bool, checked: bool) -> ButlerLocation:
            nonlocal compressed
            root = mapper.root
            # the values given are checked before the registry is asked about them,
            # the values the registry supplies (once) before they fill the template
            if checked:
                actualId = dict(dataId)
            elif checksKeys:
                actualId = dict(checkDataId(mapper, dataId or {}))
            else:
                actualId = dict(check_data_id(dataId, kinds, keyDict, datasetType, root))
            if missing:
                rows = query(whereValues(actualId)) if query is not None else None
                if rows is None or len(rows) != 1:  # no statement, or no unique row: with its errors
                    rows = [complete(list(missing), actualId)]
                supplied = dict(zip(missing, rows[0]))
                # every key supplied fills the path: the dict itself is the set of path keys
                actualId.update(check_data_id(supplied, kinds, supplied, datasetType, root))
            if fillsDirectly:
                try:
                    path = template % actualId
                except Exception:  # noqa: BLE001 - the mapper's own fill raises the error that says why
                    path = mapper._mapActualToPath(template, actualId)
            else:
                path = mapper._mapActualToPath(template, actualId)
            check_path(path, datasetType, actualId, root)
            if path[:1] == "/":
                raise MapperError(f"Mapped path should not be absolute: {path!r} (dataset type {datasetType!r})")
            if write:
                addFunc = getattr(mapper, "add_" + datasetType, None)
                additionalData = dict(actualId) if addFunc is None else {**addFunc(datasetType, actualId),
                                                                          **actualId}
                storage, found = writeStorage, None
            else:
                if compressed is None:
                    compressed = self.readsCompressed()
                path, found = probe(path, compressed)
                additionalData, storage = dict(actualId), readStorage
            if usedKeys is not None:
                usedDataId = usedKeys.copy()
                usedDataId.update(actualId)
            else:
                usedDataId = {key: actualId[key] for key in keyDict}
            return ButlerLocation._mapped(python, persistable, storageName, path, actualId, mapper, storage,
                                          usedDataId, datasetType, additionalData, getattr(mapper, "repository", None),
                                          found)

        return locate

    def readsCompressed(self) -> bool:
        """Whether this dataset type's format reads ``.gz``/``.fz`` files (a storage name no
        formatter knows is searched as before: its read will say what is wrong). Worked out once."""
        if self._compressed is None:
            try:
                self._compressed = get_formatter(self.storage).readsCompressed
            except UnknownStorageError:
                self._compressed = True
        return self._compressed

    def storageFor(self, write: bool) -> Any:
        """The storage this mapping's locations are relative to (for reading, or for writing)."""
        return self.rootStorage

    def checkDataId(self, mapper: Any, dataId: Any) -> Any:
        """Return the data ID with its values converted to the kinds of their keys (see `keyKinds`).

        Parameters
        ----------
        mapper : `mappers.cameraMapper.CameraMapper`
            The mapper (its template keys and root).
        dataId : mapping
            The data ID as given; it is not modified.

        Raises
        ------
        butler.errors.DataIdValueError
            A `ValueError`: a value of the wrong kind, or one that converts only with a loss.
        butler.errors.UnsafeDataIdValueError
            Also an `UnsafePathError`: a template value that would make an unsafe or impossible path.
        butler.errors.UnknownDataIdKeyError
            A key the camera does not know (the mapper's ``checkDataIdKeys``, when it has one).
        """
        checkKeys = getattr(mapper, "checkDataIdKeys", None)
        if checkKeys is not None:
            checkKeys(self.datasetType, dataId)
        return check_data_id(dataId, self._kinds or self.keyKinds(mapper), self.keyDict, self.datasetType, mapper.root)

    def keyKinds(self, mapper: Any) -> dict[str, type]:
        """``{key: int, float or str}``: the kind of every data-ID key this mapping knows.

        The template's own fields win; then the declared types of the columns of
        the registry tables this mapping queries; then the fields of the mapper's
        other templates. Worked out once.
        """
        if self._kinds is None:
            kinds = dict(getattr(mapper, "keyDict", None) or {})
            for registry, tables in self._queriedTables():
                if registry is None:
                    continue
                for table in tables:
                    kinds.update((column, kind) for column, declared in registry.columns(table).items()
                                 if (kind := kind_of_column(declared)) is not None)
            kinds.update(self.keyDict)
            self._kinds = kinds
        return self._kinds

    def _queriedTables(self) -> list[tuple[Any, list[str]]]:
        """``(registry, tables)`` pairs this mapping looks data-ID keys up in."""
        return [(self.lookupRegistry, self.tables or [])]

    def _complete(self, missing: list[str], dataId: dict) -> tuple:
        """The registry values of the template keys a data ID lacks.

        Raises
        ------
        butler.errors.NoResults
            When the registry has not exactly one row for the data ID.
        butler.errors.IncompleteDataIdError
            A `RuntimeError`: the mapping names no registry table to ask.
        butler.errors.RegistryError
            A `RuntimeError`: there is no registry, or its query failed (naming the keys asked for).
        """
        try:
            return self._lookupUnique(missing, dataId)
        except RegistryError as exc:
            if self.tables:
                raise
            raise IncompleteDataIdError(f"cannot complete the data ID {dataId!r} of dataset type "
                                        f"{self.datasetType!r}: the template keys {missing} are missing and "
                                        f"the policy names no registry table to look them up in ({exc})") from exc

    def have(self, properties: Iterable[str], dataId: Any) -> bool:
        """Return whether every property is in the data ID."""
        return all(prop in dataId for prop in properties)

    def need(self, properties: Iterable[str], dataId: Any) -> dict:
        """Return a copy of the data ID with the missing properties looked up.

        Raises
        ------
        butler.errors.NoResults
            When the lookup does not give exactly one row.
        """
        newId = dict(dataId) if dataId else {}
        missing = [prop for prop in properties if prop not in newId]
        if missing:
            newId.update(zip(missing, self._lookupUnique(missing, newId)))
        return newId

    def _lookupUnique(self, properties: list[str], dataId: dict) -> tuple:
        """Return the one registry row of ``properties`` matching the data ID.

        Raises
        ------
        butler.errors.NoResults
            When the lookup does not give exactly one row.
        """
        rows = self.lookup(properties, dataId)
        if len(rows) != 1:
            raise NoResults(f"No unique lookup for {properties} from {dataId}: {len(rows)} matches",
                            self.datasetType, dataId, [registry_name(self.lookupRegistry)])
        return rows[0]

    @property
    def lookupRegistry(self) -> Any:
        """The registry `lookup` queries."""
        return self.registry

    def lookup(self, properties: Iterable[str], dataId: Any) -> list[tuple]:
        """Return the distinct registry rows of ``properties`` matching the data ID.

        Parameters
        ----------
        properties : iterable of `str`
            The columns wanted, in order.
        dataId : mapping or `None`
            The (partial) data ID restricting the rows.
        """
        template = self.template
        registry = self.lookupRegistry
        if registry is None:
            raise RegistryError(f"No registry for lookup of {properties!r} for dataset type "
                                f"{self.datasetType!r} with data ID {dict(dataId or {})!r}")
        dataId = dataId or {}
        properties = list(properties)
        skymap = {}
        if not _SKYMAP_SET.isdisjoint(properties):
            for prop in properties:
                if prop in SKYMAP_KEYS:
                    if prop not in dataId:
                        raise MapperError(f"Cannot look up skymap key '{prop}'; it must be explicitly "
                                          f"included in the data ID (dataset type {self.datasetType!r})")
                    skymap[prop] = dataId[prop]
        queried = [prop for prop in properties if prop not in skymap] if skymap else properties
        if (queried and _VISIT_PROPERTIES.issuperset(queried) and "visit" in dataId
                and self.tables is not None and "raw" in self.tables):
            rows = registry.lookup(queried, "raw_visit", {"visit": dataId["visit"]}, template=template)
        else:
            rows = self._lookupWhere(registry, queried, dataId)
        if not skymap:
            return rows
        result = []
        for row in rows:
            values = iter(row)
            result.append(tuple(skymap[prop] if prop in skymap else next(values) for prop in properties))
        return result

    def _whereKeys(self, dataId: Any) -> tuple[str, ...]:
        """The data-ID keys that restrict a registry lookup (not the observation time or a sky-map
        key; only the policy's ``columns`` when it names them), in the data ID's order."""
        columns, notQueried = self.columns, self._notQueried
        return tuple(key for key in dataId if key not in notQueried and (columns is None or key in columns))

    def _lookupWhere(self, registry: Any, properties: list[str], dataId: Any) -> list[tuple]:
        where: dict[Any, Any] = {key: dataId[key] for key in self._whereKeys(dataId)}
        if self.range is not None:
            where[self.range] = dataId[self.obsTimeName]
        try:
            return registry.lookup(properties, self.tables, where, template=self._template)
        except (sqlite3.OperationalError, RegistryError):
            known = self._registryColumns(registry)
            if known is None:
                raise
            reduced = {key: value for key, value in where.items() if isinstance(key, tuple) or key in known}
            if reduced == where:
                raise
            _log.debug("%s: retrying lookup without unknown keys %s", self.datasetType,
                       sorted(set(where) - set(reduced)))
            return registry.lookup(properties, self.tables, reduced, template=self._template)

    def _registryColumns(self, registry: Any) -> set[str] | None:
        """The columns of this mapping's tables in the registry (None when the mapping names no tables)."""
        if not self.tables:
            return None
        if self._tableColumns is None:
            self._tableColumns = {name for table in self.tables for name in registry.columns(table)}
        return self._tableColumns

    def standardize(self, mapper: Any, item: Any, dataId: Any) -> Any:
        """Return the object read unchanged (image and calibration mappings override this)."""
        return item


class ImageMapping(Mapping):
    """Mapping of an image dataset type (``images`` section)."""


class DatasetMapping(Mapping):
    """Mapping of a non-image dataset type (``datasets`` section)."""


class ExposureMapping(Mapping):
    """Mapping of an exposure dataset type (``exposures`` section): standardized on read."""

    def standardize(self, mapper: Any, item: Any, dataId: Any) -> Any:
        """Return the item as an astropy `~astropy.nddata.CCDData` (see `CameraMapper._standardizeExposure`)."""
        return mapper._standardizeExposure(self, item, dataId)


class CalibrationMapping(Mapping):
    """Mapping of a calibration dataset type, looked up by validity range in the calib registry.

    Parameters
    ----------
    datasetType, policy, provided
        As for `Mapping`.
    registry : registry or `None`
        The exposure registry (``reference`` tables are queried there).
    calibRegistry : registry or `None`
        The calibration registry.
    calibStorage : `butler.storage.Storage`
        The storage of the calibration root (read locations are relative to it).
    dataRoot : `butler.storage.Storage`, optional
        The output storage: written calibrations go there.
    """

    def __init__(self, datasetType: str, policy: Any, registry: Any, calibRegistry: Any, calibStorage: Any,
                 provided: Iterable[str] | None = None, dataRoot: Any = None):
        super().__init__(datasetType, policy, calibRegistry, calibStorage, provided=provided)
        self.refRegistry = registry
        self.reference = _as_list(policy.get("reference"))
        self.refCols = _as_list(policy.get("refCols"))
        self.setFilter = bool(policy.get("filter"))
        self.dataRoot = dataRoot

    def _queriedTables(self) -> list[tuple[Any, list[str]]]:
        """The calibration tables, and the reference tables of the exposure registry."""
        return [(self.registry, self.tables or []), (self.refRegistry, self.reference or [])]

    def storageFor(self, write: bool) -> Any:
        """The calibration root's storage; for writing, the output root's (``dataRoot``) when given."""
        return self.dataRoot if write and self.dataRoot is not None else self.rootStorage

    def lookup(self, properties: Iterable[str], dataId: Any) -> list[tuple]:
        """Look up calibration keys: the reference (exposure) registry first, then the calib registry."""
        self.template  # noqa: B018 - an undefined template cannot be queried
        properties = list(properties)
        dataId = dataId or {}
        if self.reference is None:
            return self._calibLookup(properties, dataId)
        where = {key: value for key, value in dataId.items() if not self.refCols or key in self.refCols}
        if self.columns is not None:
            columns = [col for col in self.columns if col not in dataId]
        else:
            columns = properties
        if not columns:
            return self._calibLookup(properties, dataId)
        if self.refRegistry is None:
            raise RegistryError(f"No registry for lookup of {columns!r} in {self.reference!r} for dataset "
                                f"type {self.datasetType!r} with data ID {dict(dataId)!r}")
        rows = self.refRegistry.lookup(columns, self.reference, where)
        if len(rows) != 1:
            raise NoResults(f"No unique lookup for {columns} from {dict(dataId)}: {len(rows)} matches",
                            self.datasetType, dataId, [registry_name(self.refRegistry)])
        if set(columns) == set(properties):
            return [tuple(rows[0][columns.index(prop)] for prop in properties)]
        newId = dict(dataId)
        newId.update(zip(columns, rows[0]))
        return self._calibLookup(properties, newId)

    def _calibLookup(self, properties: list[str], dataId: Any) -> list[tuple]:
        """`Mapping.lookup` in the calibration registry, which must exist."""
        if self.registry is None:
            where = getattr(self.rootStorage, "root", None)
            raise RegistryError(f"No registry for lookup of {properties!r} for dataset type {self.datasetType!r} "
                                f"with data ID {dict(dataId)!r}: no calibration registry (calibRegistry.sqlite3) "
                                f"in the calibration root {where or '(none)'}")
        return super().lookup(properties, dataId)

    def standardize(self, mapper: Any, item: Any, dataId: Any) -> Any:
        """Standardize a calibration image (its filter only when the policy says ``filter: true``)."""
        return mapper._standardizeExposure(self, item, dataId, filter=self.setFilter)
