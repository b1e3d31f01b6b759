"""`CameraMapper`: a policy-driven mapper, one `Mapping` per dataset type.

The policy is composed once per mapper (camera files, repository policy,
central defaults). From it the mapper builds its mappings and a table of
generated methods (``map_X``, ``query_X``, ``std_X``, ``add_X`` and the
derived types ``X_filename``, ``X_md``, ``X_sub``, ...). A generated method is
made on first access and cached on the instance; a method the class defines
itself always wins.
"""

from __future__ import annotations

import collections.abc
import contextlib
import functools
import logging
import os
import posixpath
import re
import zlib
from collections.abc import Callable, Hashable, Iterable, Iterator
from typing import Any, ClassVar

import attrs

from butler.dataId import check_data_id
from butler.errors import (
    ButlerError,
    DatasetNotFoundError,
    DuplicatePolicyError,
    FormatterError,
    MapperError,
    NoResults,
    PolicyError,
    TemplateError,
    UnknownDataIdKeyError,
    describe_data_id,
)
from butler.formatters.fits import python_kind
from butler.location import ButlerLocation, split_hdu
from butler.mapper import Mapper
from butler.policy import Policy

from . import astro
from .camera import Camera, ExposureIdInfo, FilterDefinition, FilterLabel, best_filter
from .mapping import CalibrationMapping, DatasetMapping, ExposureMapping, ImageMapping, Mapping

__all__ = ["CameraMapper", "POLICY_DIR", "compose_policy", "local_file"]

_log = logging.getLogger(__name__)

#: directory of the project's YAML policies
POLICY_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "policy")

#: policy sections, in the order they are read, and the mapping class of each
SECTIONS: tuple[tuple[str, type[Mapping]], ...] = (
    ("images", ImageMapping),
    ("exposures", ExposureMapping),
    ("calibrations", CalibrationMapping),
    ("datasets", DatasetMapping),
)
_PLANES = ("image", "mask", "variance")
_RECIPE_GROUPS = ("compression", "scaling")


def _policy_path(name: str) -> str:
    return name if os.path.isabs(name) else os.path.join(POLICY_DIR, name)


def compose_policy(files: Iterable[str | Policy], repositoryPolicy: Any = None) -> Policy:
    """Compose a camera policy.

    Parameters
    ----------
    files : iterable of `str` or `Policy`
        Camera policy files (relative to ``policy/`` unless absolute) or policies;
        they are merged and the **first** wins.
    repositoryPolicy : mapping or `Policy`, optional
        The repository's own policy, updated in: it wins.

    Returns
    -------
    policy : `Policy`
        The composed policy; each section present is completed from the central
        defaults (``policy/<section>.yaml``), the camera winning.

    Raises
    ------
    butler.errors.DuplicatePolicyError
        A `ValueError`: the same dataset type is in two sections.
    """
    policy = Policy()
    for item in files:
        policy.merge(item if isinstance(item, Policy) else Policy(_policy_path(item)))
    if repositoryPolicy:
        policy.update(repositoryPolicy)
    for section, _ in SECTIONS:
        defaults = os.path.join(POLICY_DIR, section + ".yaml")
        if policy.get(section) is not None and os.path.exists(defaults):
            policy[section].merge(Policy(defaults)[section])
    seen: dict[str, str] = {}
    for section, _ in SECTIONS:
        for datasetType in policy.get(section) or ():
            if datasetType in seen:
                raise DuplicatePolicyError(f"Duplicate mapping policy for dataset type {datasetType}")
            seen[datasetType] = section
    return policy


@attrs.define(eq=False)
class _Blueprint:
    """What a camera mapper builds from its policy alone, shared by the mappers of one process.

    ``generated`` (the table of generated methods), ``keyDict`` and
    ``obsTimeNames`` (the calibrations' observation-time keys) are filled in
    by the first mapper built from the blueprint; later mappers only make
    their `Mapping` objects (which hold the registries and storages).
    Everything here is read, never changed, by the mappers sharing it.
    """

    policy: Policy
    levels: dict[str, frozenset[str]]
    defaultSubLevels: dict[str, Any]
    #: ``datasetType: (Mapping class, policy entry merged with the mapping defaults)``
    specs: dict[str, tuple[type[Mapping], Any]]
    #: section -> the specs of its dataset types that have a mapping
    sections: dict[str, dict[str, tuple[type[Mapping], Any]]]
    #: the generated ``map_X`` of the composite dataset types
    composites: dict[str, tuple[Callable, str]]
    generated: dict[str, tuple[Callable, str]] | None = None
    keyDict: dict[str, type] = attrs.Factory(dict)
    obsTimeNames: frozenset[str] = frozenset()


class _LazyMappings(collections.abc.Mapping):
    """Dataset type -> `Mapping`, each made on first use (a task uses a few of a camera's hundreds).

    Parameters
    ----------
    specs : `dict`
        ``datasetType: (Mapping class, policy entry)``.
    make : callable
        ``make(datasetType, cls, entry)`` makes one mapping.
    made : `dict`, optional
        The mappings made so far (shared by the sections of one mapper).
    """

    def __init__(self, specs: dict[str, tuple[type[Mapping], Any]],
                 make: Callable[[str, type[Mapping], Any], Mapping], made: dict[str, Mapping] | None = None):
        self._specs = specs
        self._make = make
        self._made = {} if made is None else made

    def __getitem__(self, datasetType: str) -> Mapping:
        mapping = self._made.get(datasetType)
        if mapping is None:
            mapping = self._made[datasetType] = self._make(datasetType, *self._specs[datasetType])
        return mapping

    def get(self, datasetType: str, default: Any = None) -> Any:
        """The mapping of a dataset type (made on first use), or ``default`` when it has none."""
        mapping = self._made.get(datasetType)
        if mapping is not None:
            return mapping
        return self[datasetType] if datasetType in self._specs else default

    def __contains__(self, datasetType: object) -> bool:
        return datasetType in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({list(self._specs)!r})"

    def section(self, specs: dict[str, tuple[type[Mapping], Any]]) -> _LazyMappings:
        """The mappings of some of the dataset types (``specs``, a part of this one's), sharing the ones made."""
        return _LazyMappings(specs, self._make, self._made)


#: blueprints by (mapper class, repository policy, provided keys); bounded, oldest dropped first
_BLUEPRINTS: dict[tuple, _Blueprint] = {}
_BLUEPRINTS_MAX = 64


def _blueprint(cls: type[CameraMapper], policy: Any, repositoryPolicy: Any,
               provided: Iterable[str] | None) -> _Blueprint:
    """The policy-derived part of a mapper: composed once per process for the camera's own policy files.

    A mapper given a ``policy`` argument composes its own (not cached). A
    worker that unpickles one Butler per task thus reads and composes the
    camera policy once, not on each task. The policy files are package data,
    read once per process like `_mapping_defaults`.
    """
    files = cls.policyFiles if policy is None else [policy if isinstance(policy, Policy) else Policy(policy)]
    key = None
    if policy is None:
        given = repositoryPolicy.toDict() if isinstance(repositoryPolicy, Policy) else repositoryPolicy
        key = (cls, repr(given) if given else None, frozenset(provided or ()))
        cached = _BLUEPRINTS.get(key)
        if cached is not None:
            return cached
    composed = compose_policy(files, repositoryPolicy)
    levels = {level: frozenset(composed["levels"].asArray(level)) for level in composed.get("levels") or ()}
    specs: dict[str, tuple[type[Mapping], Any]] = {}
    sections: dict[str, dict[str, tuple[type[Mapping], Any]]] = {}
    composites: dict[str, tuple[Callable, str]] = {}
    for section, mappingClass in SECTIONS:
        sections[section] = {}
        entries = composed.get(section)
        if entries is None:
            continue
        defaults = _mapping_defaults().get(section)
        for datasetType in entries:
            entry = entries[datasetType]
            if entry.get("composite") is not None:
                composites["map_" + datasetType] = (cls._mapComposite, datasetType)
                continue
            entry.merge(defaults)
            specs[datasetType] = sections[section][datasetType] = (mappingClass, entry)
    blueprint = _Blueprint(composed, levels, (composed.get("defaultSubLevels") or Policy()).toDict(), specs,
                           sections, composites)
    if key is not None:
        if len(_BLUEPRINTS) >= _BLUEPRINTS_MAX:
            del _BLUEPRINTS[next(iter(_BLUEPRINTS))]
        _BLUEPRINTS[key] = blueprint
    return blueprint


def _flatten_recipe(recipe: Any, defaults: Any) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for plane in _PLANES:
        for group in _RECIPE_GROUPS:
            values = dict(defaults[group])
            values.update((recipe.get(f"{plane}.{group}") or Policy()).toDict())
            flat.update((f"{plane}.{group}.{key}", value) for key, value in values.items())
    return flat


def _recipe_seed(dataId: Any) -> int:
    """The dithering seed of a data ID: a non-zero CRC of its sorted items, stable across runs."""
    return zlib.crc32(repr(sorted([(str(k), str(v)) for k, v in dict(dataId).items()])).encode()) % 2**31 or 1


@functools.lru_cache(maxsize=1)
def _base_write_recipes() -> tuple[dict[str, dict], Any]:
    policy = Policy(os.path.join(POLICY_DIR, "writeRecipes.yaml"))
    defaults = policy["defaults"]
    return {name: _flatten_recipe(policy["recipes"][name], defaults) for name in policy["recipes"]}, defaults


@functools.lru_cache(maxsize=1)
def _mapping_defaults() -> Policy:
    """The per-section defaults of every mapping (``policy/mappingDefaults.yaml``), read once.

    Callers only `Policy.merge` it into a mapping's entry, which copies, so the one copy is never changed.
    """
    return Policy(os.path.join(POLICY_DIR, "mappingDefaults.yaml"))


#: what a FITS decoder (astropy, gzip, zlib, numpy) raises on a corrupt, truncated or foreign file
_DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, TypeError, KeyError, IndexError,
                                                   zlib.error)


@contextlib.contextmanager
def local_file(location: ButlerLocation) -> Iterator[tuple[str, int | None]]:
    """A local file holding a location's first path, through the location's storage, and its HDU.

    For a local storage the file is the stored one (no copy), so astropy reads
    only the headers it needs. This is where a bypass reads its file: a
    missing file is a `DatasetNotFoundError` (the search moves on), and what a
    decoder raises inside the block on a bad file a `FormatterError` naming
    the file, the dataset type and the data ID.
    """
    path, hdu = split_hdu(location.locationList[0])
    storage = location.storage
    with storage.localFile(path) as local:
        try:
            yield local, hdu
        except ButlerError:
            raise
        except _DECODE_ERRORS as exc:
            source = storage.locationWithRoot(path)
            if isinstance(exc, FileNotFoundError) and not storage.exists(path):
                raise DatasetNotFoundError(f"no file at {source} for {location.datasetType} "
                                           f"{describe_data_id(location.dataId)}") from exc
            raise FormatterError(f"cannot read {source} ({location.datasetType} "
                                 f"{describe_data_id(location.dataId)}): {type(exc).__name__}: {exc}") from exc


#: at most this many compiled maps per mapper (`CameraMapper.map`: one per dataset type and data-ID keys)
_MAX_LOCATORS = 256

#: (class, name) -> whether the class or a base defines the name itself (see `_class_defines`)
_CLASS_DEFINES: dict[tuple[type, str], bool] = {}


def _class_defines(cls: type, name: str) -> bool:
    """Whether a class (or a base of it) defines ``name`` itself: a ``map_X`` of its own wins over the
    mapping's. Asked once per class and name in a process, not per mapper (workers make one per task)."""
    key = (cls, name)
    found = _CLASS_DEFINES.get(key)
    if found is None:
        found = _CLASS_DEFINES[key] = any(name in vars(base) for base in cls.__mro__)
    return found


# -- generated methods ----------------------------------------------------------------------------
# Each generator takes (mapper, datasetType) first; the instance binds both.


def _gen_map(self: CameraMapper, datasetType: str, dataId: Any, write: bool = False) -> ButlerLocation:
    return self.mappings[datasetType].map(self, dataId, write)


def _gen_query(self: CameraMapper, datasetType: str, format: Any, dataId: Any) -> list[tuple]:
    return self.mappings[datasetType].lookup([format] if isinstance(format, str) else format, dataId)


def _gen_std(self: CameraMapper, datasetType: str, item: Any, dataId: Any) -> Any:
    return self.mappings[datasetType].standardize(self, item, dataId)


def _gen_add(self: CameraMapper, datasetType: str, _datasetType: str, dataId: Any) -> dict[str, Any]:
    return self._writeRecipe(self.mappings[datasetType], dataId)


def _derived_map(self: CameraMapper, datasetType: str, dataId: Any, write: bool = False) -> Any:
    return getattr(self, "map_" + datasetType)(dataId, write)


def _derived_query(self: CameraMapper, datasetType: str, format: Any, dataId: Any) -> Any:
    return getattr(self, "query_" + datasetType)(format, dataId)


def _map_sub(self: CameraMapper, datasetType: str, dataId: Any, write: bool = False) -> ButlerLocation:
    subId = dict(dataId)
    bbox = subId.pop("bbox", None)
    try:
        if isinstance(bbox, (tuple, list)):
            x0, y0, width, height = bbox
        else:
            x0, y0, width, height = bbox.minX, bbox.minY, bbox.width, bbox.height
    except (AttributeError, ValueError):
        raise MapperError(f"{datasetType}_sub needs a 'bbox' in the data ID: (x0, y0, width, height) or a box "
                          f"with minX, minY, width and height; got {bbox!r} in data ID {dict(dataId)!r}") from None
    location = getattr(self, "map_" + datasetType)(subId, write)
    box = {"llcX": int(x0), "llcY": int(y0), "width": int(width), "height": int(height)}
    if "imageOrigin" in dataId:
        box["imageOrigin"] = dataId["imageOrigin"]
    return attrs.evolve(location, additionalData={**location.additionalData, **box})


def _map_detector(self: CameraMapper, datasetType: str, dataId: Any, write: bool = False) -> ButlerLocation:
    return self._internalLocation("mappers.camera.Detector", dataId, datasetType + "_detector")


def _bypass_filename(self, datasetType, _t, _pythonType, location, dataId):
    return location.getLocationsWithRoot()


def _bypass_md(self, datasetType, _t, _pythonType, location, dataId):
    with local_file(location) as (path, hdu):
        if hdu is None and self.mappings[datasetType].storage == "FitsCatalogStorage":
            hdu = 1
        return astro.read_header(path, hdu)


def _bypass_bbox(self, datasetType, _t, _pythonType, location, dataId):
    with local_file(location) as (path, hdu):
        return astro.image_bbox(astro.read_image_header(path, hdu))


def _bypass_wcs(self, datasetType, _t, _pythonType, location, dataId):
    with local_file(location) as (path, hdu):
        return astro.header_wcs(astro.read_header(path, hdu))


def _bypass_header_wcs(self, datasetType, _t, _pythonType, location, dataId):
    if not datasetType.startswith("raw"):
        raise NoResults("Can only get header WCS for raw exposures.", datasetType, dataId)
    with local_file(location) as (path, _):
        return astro.header_wcs(astro.read_header(path, 0))


def _header_filter(self: CameraMapper, header: Any, dataId: Any) -> FilterLabel | None:
    """The filter best matching a header's ``FILTER`` and the data ID's ``filter`` (see `best_filter`)."""
    stored = header.get("FILTER")
    label = FilterLabel(physical=str(stored).strip()) if stored else None
    return self._getBestFilter(label, (dataId or {}).get("filter"))


@functools.lru_cache(maxsize=1024)
def _remembered_best_filter(definitions: tuple[FilterDefinition, ...], stored: FilterLabel | None,
                            idFilter: str | None) -> FilterLabel | None:
    """`best_filter`, worked out once per camera's filters, stored label and data-ID filter."""
    return best_filter(definitions, stored, idFilter)


def _bypass_filter(self, datasetType, _t, _pythonType, location, dataId):
    with local_file(location) as (path, hdu):
        return _header_filter(self, astro.read_header(path, hdu), dataId)


def _bypass_detector(self, datasetType, _t, _pythonType, location, dataId):
    camera = self.camera
    if camera is None:
        raise MapperError("No camera dataset available.")
    return camera[self._extractDetectorName(dataId)]


def _bypass_len(self, datasetType, _t, _pythonType, location, dataId):
    with local_file(location) as (path, _):
        return astro.catalog_length(path)


def _bypass_schema(self, datasetType, _t, _pythonType, location, dataId):
    with local_file(location) as (path, _):
        return astro.catalog_schema(path)


def _is_fits(mapping: Mapping, section: str, declared: set) -> bool:
    return mapping.storage == "FitsStorage"


def _is_fits_image(mapping: Mapping, section: str, declared: set) -> bool:
    return mapping.storage == "FitsStorage" and section in ("images", "exposures")


def _is_exposure(mapping: Mapping, section: str, declared: set) -> bool:
    return section == "exposures"


def _is_catalog(mapping: Mapping, section: str, declared: set) -> bool:
    return mapping.storage == "FitsCatalogStorage"


def _has_schema(mapping: Mapping, section: str, declared: set) -> bool:
    return (_is_catalog(mapping, section, declared) and not mapping.datasetType.endswith("_schema")
            and mapping.datasetType + "_schema" not in declared)


#: derived dataset types: (suffix, applies to, map, bypass); map None = reuse ``map_X``, bypass None = none
DERIVED: tuple[tuple[str, Callable[..., bool], Callable | None, Callable | None], ...] = (
    ("filename", lambda *args: True, None, _bypass_filename),
    ("md", lambda m, s, d: m.storage in ("FitsStorage", "FitsCatalogStorage"), None, _bypass_md),
    ("sub", _is_fits, _map_sub, None),
    ("bbox", _is_fits_image, None, _bypass_bbox),
    ("wcs", _is_exposure, None, _bypass_wcs),
    ("header_wcs", _is_exposure, None, _bypass_header_wcs),
    ("filter", _is_exposure, None, _bypass_filter),
    ("detector", _is_exposure, _map_detector, _bypass_detector),
    ("len", _is_catalog, None, _bypass_len),
    ("schema", _has_schema, None, _bypass_schema),
)


class CameraMapper(Mapper):
    """A mapper driven by a camera policy.

    Parameters
    ----------
    policy : `Policy`, `str` or `None`
        The camera policy (or a file of it); None composes the class's `policyFiles`.
    repositoryDir : `str`, optional
        The camera package's policy directory (kept for the Gen2 signature).
    root : `str`, optional
        The repository root; else ``repositoryCfg.root``.
    registry : `str` or registry, optional
        The registry (a path relative to ``root`` or an open registry).
    calibRoot : `str`, optional
        The calibration root, relative to ``root``.
    calibRegistry : `str` or registry, optional
        The calibration registry.
    provided : iterable of `str`, optional
        Data-ID keys removed from every mapping.
    parentRegistry : registry, optional
        The nearest ancestor repository's registry, used when this root has none.
    repositoryCfg : `butler.cfg.RepositoryCfg`, optional
        The repository configuration (its ``policy`` is updated into the camera policy).
    repository : `butler.repository.Repository`, optional
        The repository this mapper maps (given by the Butler): its storage,
        registries and ancestors. A mapper constructed without one asks
        `butler.repository.open_repository_view` for the view of ``root``.

    Raises
    ------
    ValueError
        When the class sets no `packageName`.
    """

    #: name of the camera's package (required)
    packageName: ClassVar[str | None] = None
    #: camera policy files, relative to ``policy/``, merged first-file-wins
    policyFiles: ClassVar[tuple[str, ...]] = ()
    #: filters of the camera, for `_getBestFilter`
    filterDefinitions: ClassVar[tuple[FilterDefinition, ...]] = ()
    #: header translator used by raw ingest (set by `mappers.translators`)
    translator: ClassVar[Any] = None
    #: subdirectory of a repository where this camera keeps calibrations (obs_lsst: ``CALIB``)
    calibSubdir: ClassVar[str | None] = None
    #: data-ID keys that no template or registry column names but that the mapper reads
    #: (the box of the derived ``X_sub`` types); cameras may add their own
    extraDataIdKeys: ClassVar[frozenset[str]] = frozenset({"bbox", "imageOrigin"})

    def __init__(self, policy: Any = None, repositoryDir: str | None = None, root: str | None = None,
                 registry: Any = None, calibRoot: str | None = None, calibRegistry: Any = None,
                 provided: Iterable[str] | None = None, parentRegistry: Any = None,
                 repositoryCfg: Any = None, repository: Any = None, **kwargs: Any):
        self.getPackageName()
        if root is None and repositoryCfg is not None:
            root = getattr(repositoryCfg, "root", None)
        if repository is None:
            from butler.repository import open_repository_view

            repository = open_repository_view(os.fspath(root) if root is not None else ".", repositoryCfg)
        self.repository = repository
        self.root = os.fspath(root) if root is not None else repository.root
        self.repositoryCfg = repositoryCfg
        self._blueprint = _blueprint(type(self), policy, getattr(repositoryCfg, "policy", None), provided)
        self.policy = self._blueprint.policy
        self.repositoryDir = repositoryDir
        self.levels = {level: set(keys) for level, keys in self._blueprint.levels.items()}
        self.defaultLevel = self.policy.get("defaultLevel")
        self.defaultSubLevels = dict(self._blueprint.defaultSubLevels)

        self.rootStorage = repository.storage
        self.calibStorage = self._findCalibStorage(calibRoot)
        self.calibRoot = self.calibStorage.root
        self.registry = self._openRegistry(registry, parentRegistry)
        self.calibRegistry = (self._openCalibRegistry(calibRegistry)
                              if self.policy.get("needCalibRegistry") else None)
        self._writeRecipes = self._initWriteRecipes()
        self._recipeOfType: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {}
        #: dataset type -> its `Mapping`, for the types `map` hands straight to their mapping
        self._mappedDirectly: dict[str, Mapping] = {}
        #: (dataset type, *data-ID keys) -> the compiled map of that shape (`Mapping.locator`): shapes only
        self._locators: dict[tuple, Callable[[Any, Any, bool, bool], ButlerLocation]] = {}
        self._initMappings(provided)

    @functools.cached_property
    def camera(self) -> Camera | None:
        """The camera (`_makeCamera`), made on first use: constructing a mapper never asks the registry for it."""
        return self._makeCamera()

    # -- construction -----------------------------------------------------------------------------

    def _findCalibStorage(self, calibRoot: str | None) -> Any:
        """The storage of the calibration root.

        The argument (relative to root), else ``policy.calibRoot``, else the
        first directory holding ``calibRegistry.sqlite3`` among this repository
        and its ancestors (`butler.repository.Repository.ancestry`; each asked
        for ``<calibSubdir>/calibRegistry.sqlite3`` when the camera sets a
        subdirectory, then ``calibRegistry.sqlite3``), so an output chained to a
        camera repository finds the calibrations of its inputs; else the root.
        """
        for candidate in (calibRoot, self.policy.get("calibRoot")):
            if candidate:
                return self.repository.storageAt(os.fspath(candidate))
        subdirs = [self.calibSubdir, ""] if self.calibSubdir else [""]
        for ancestor in self.repository.ancestry():
            for subdir in subdirs:
                if ancestor.storage.exists(posixpath.join(subdir, "calibRegistry.sqlite3")):
                    return ancestor.storageAt(subdir)
        return self.rootStorage

    def _findRegistry(self, argument: Any, policyKey: str, storage: Any, filename: str) -> Any:
        """The registry given as argument (open, or a path relative to the root), else the one the
        policy names in ``storage``, else ``filename`` in ``storage``; None when there is none.
        """
        if argument is not None and not isinstance(argument, (str, os.PathLike)):
            return argument
        if argument is not None:
            path = os.fspath(argument)
            prefix = self.root.rstrip(os.sep) + os.sep
            if path.startswith(prefix):
                path = path[len(prefix):]
            if os.path.isabs(path) or posixpath.dirname(path).startswith(".."):
                directory, path = os.path.split(path)
                return self.repository.openRegistry(path, self.repository.storageAt(directory))
            return self.repository.openRegistry(path)
        configured = self.policy.get(policyKey)
        if configured:
            if os.path.isabs(configured):
                raise PolicyError(f"{policyKey} must be relative to the repository root: {configured}")
            if storage.exists(configured):
                return self.repository.openRegistry(configured, storage)
        return self.repository.openRegistry(filename, storage)

    def _openRegistry(self, argument: Any, parentRegistry: Any) -> Any:
        found = self._findRegistry(argument, "registryPath", self.rootStorage, "registry.sqlite3")
        if found is None:
            if parentRegistry is not None:
                _log.debug("%s: using the parent registry", self.root)
                return parentRegistry
            return self._fileNameRegistry()
        return found

    def _fileNameRegistry(self) -> Any:
        """The registry of file names under the root, or None where the storage keeps no local files."""
        if not self.rootStorage.hasLocalFiles:
            _log.debug("%s: no registry (no local files to scan)", self.root)
            return None
        return self.repository.openRegistry("")

    def _openCalibRegistry(self, argument: Any) -> Any:
        found = self._findRegistry(argument, "calibRegistryPath", self.calibStorage, "calibRegistry.sqlite3")
        if found is None:
            _log.debug("%s: no calibration registry", self.calibRoot)
        return found

    def _initWriteRecipes(self) -> dict[str, dict]:
        recipes, defaults = _base_write_recipes()
        extra = self.policy.get("writeRecipes")
        if not extra:
            return recipes
        recipes = dict(recipes)
        for name in extra:
            if name in recipes:
                raise PolicyError(f"Write recipe {name!r} is already defined and cannot be redefined")
            recipes[name] = _flatten_recipe(extra[name], defaults)
        return recipes

    def _initMappings(self, provided: Iterable[str] | None) -> None:
        """Set up the mappings (each made on first use) and the table of generated methods.

        The first mapper of a blueprint makes every mapping, so a policy error
        shows at construction, and records the policy-derived tables; later
        mappers of the process reuse those and make only the mappings they use.
        """
        self._provided = frozenset(provided or ())
        self._knownKeys: frozenset[str] | None = None
        blueprint = self._blueprint
        self.mappings = _LazyMappings(blueprint.specs, self._makeMapping)
        sections = {section: self.mappings.section(specs) for section, specs in blueprint.sections.items()}
        self.images, self.exposures = sections["images"], sections["exposures"]
        self.calibrations, self.datasets = sections["calibrations"], sections["datasets"]
        if blueprint.generated is not None:
            self._generated = blueprint.generated
            self.keyDict = dict(blueprint.keyDict)
            return
        self._generated = dict(blueprint.composites)
        self.keyDict = {}
        for mapping in self.mappings.values():
            self.keyDict.update(mapping.keys())
        declared = set(self.mappings)
        for section, names in blueprint.sections.items():
            for datasetType in names:
                self._addGenerated(datasetType, self.mappings[datasetType], section, declared)
        blueprint.obsTimeNames = frozenset(mapping.obsTimeName for mapping in self.mappings.values()
                                           if mapping.obsTimeName)
        blueprint.keyDict = dict(self.keyDict)
        blueprint.generated = self._generated  # last: a mapper seeing it finds the rest filled in

    def _makeMapping(self, datasetType: str, cls: type[Mapping], entry: Any) -> Mapping:
        """The `Mapping` of one dataset type, over this mapper's registries and storages."""
        provided = self._provided
        if cls is CalibrationMapping:
            return cls(datasetType, entry, self.registry, self.calibRegistry, self.calibStorage,
                       provided=provided, dataRoot=self.rootStorage)
        return cls(datasetType, entry, self.registry, self.rootStorage, provided=provided)

    def _addGenerated(self, datasetType: str, mapping: Mapping, section: str, declared: set) -> None:
        table = self._generated
        table["map_" + datasetType] = (_gen_map, datasetType)
        table["query_" + datasetType] = (_gen_query, datasetType)
        if section == "exposures" or (section == "calibrations"
                                      and python_kind(mapping.python) == "image"):
            table["std_" + datasetType] = (_gen_std, datasetType)
        if mapping.storage == "FitsStorage":
            table["add_" + datasetType] = (_gen_add, datasetType)
        for suffix, applies, mapImpl, bypassImpl in DERIVED:
            if not applies(mapping, section, declared):
                continue
            name = f"{datasetType}_{suffix}"
            table["map_" + name] = (mapImpl or _derived_map, datasetType)
            table["query_" + name] = (_derived_query, datasetType)
            if bypassImpl is not None:
                table["bypass_" + name] = (bypassImpl, datasetType)

    def __getattr__(self, name: str) -> Any:
        generated = self.__dict__.get("_generated")
        if generated is None or name not in generated:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        func, datasetType = generated[name]
        method = functools.partial(func, self, datasetType)
        self.__dict__[name] = method
        return method

    def __dir__(self) -> list[str]:
        return sorted(set(super().__dir__()) | set(self.__dict__.get("_generated", ())))

    def __getstate__(self) -> dict:
        generated = self.__dict__.get("_generated", {})
        return {key: value for key, value in self.__dict__.items() if key not in generated}

    # -- names ------------------------------------------------------------------------------------

    @classmethod
    def getPackageName(cls) -> str:
        """Return the camera package name.

        Raises
        ------
        ValueError
            When the class sets none.
        """
        if cls.packageName is None:
            raise ValueError("class variable packageName must not be None")
        return cls.packageName

    @classmethod
    def getCameraName(cls) -> str:
        """Return the camera name: ``(\\w+)Mapper`` of the class name, first letter lowered."""
        match = re.search(r"(\w+)Mapper", cls.__name__)
        name = match.group(1) if match else cls.__name__
        return name[:1].lower() + name[1:]

    @staticmethod
    def getShortCcdName(ccdName: str) -> str:
        """Return a detector name usable in a file name (spaces become underscores)."""
        return ccdName.replace(" ", "_")

    # -- protocol ---------------------------------------------------------------------------------

    def keys(self) -> Iterator[str]:
        """Iterate over every data-ID key of every mapping."""
        return iter(self.keyDict)

    def getKeys(self, datasetType: str | None, level: str | None) -> dict[str, type]:
        """Return ``{key: type}`` of a dataset type (all types when None) minus the keys not at ``level``.

        ``level == ''`` means the default level.
        """
        if level == "":
            level = self.getDefaultLevel()
        keyDict = dict(self.keyDict if datasetType is None else self.mappings[datasetType].keys())
        for key in self.levels.get(level, ()) if level is not None else ():
            keyDict.pop(key, None)
        return keyDict

    def getDefaultLevel(self) -> str | None:
        """Return the policy's ``defaultLevel``."""
        return self.defaultLevel

    def getDefaultSubLevel(self, level: str) -> str | None:
        """Return the policy's ``defaultSubLevels[level]``, or None."""
        return self.defaultSubLevels.get(level)

    def map(self, datasetType: str, dataId: Any, write: bool = False) -> Any:
        """As `Mapper.map`; the data-ID values are checked and converted first (`checkDataId`).

        A dataset type with a mapping of its own (and no ``map_<datasetType>``
        method of the class) is mapped by its `Mapping` directly, which checks
        the values once; where the camera has a `validate` of its own, they are
        checked here, handed to it, and checked again only where it changed
        them. Other types are checked here when the camera's `validate` would
        see the values first. Without a `validate` of the camera's own, a
        shape of data ID (dataset type and keys) the mapping has planned is
        mapped by its compiled plan straight away (`Mapping.locator`).
        """
        shape = (datasetType, *(dataId or ()))
        locate = self._locators.get(shape)
        if locate is not None:
            return locate(self, dataId, write, False)
        mapping = self._mappedDirectly.get(datasetType)
        if mapping is None:
            mapping = self.mappings.get(datasetType)
            if mapping is None or _class_defines(type(self), "map_" + datasetType):
                if mapping is None or type(self).validate is not Mapper.validate:
                    dataId = self.checkDataId(datasetType, dataId)
                return super().map(datasetType, dataId, write)
            self._mappedDirectly[datasetType] = mapping
        if type(self).validate is Mapper.validate:
            location = mapping.map(self, dataId, write)
            locate = mapping.locator(self, dataId)
            if locate is not None and len(self._locators) < _MAX_LOCATORS:
                self._locators[shape] = locate
            return location
        checked = mapping.checkDataId(self, dataId)
        validated = self.validate(checked)
        return mapping.map(self, validated, write, checked=validated is checked)

    def sharedReadPath(self, datasetType: str) -> tuple[Hashable, bool] | None:
        """As `Mapper.sharedReadPath`: for a dataset type mapped by its `Mapping` in the repository's own
        storage, mappers of one class, composed policy (`_blueprint`) and registry map alike (a rerun chain
        over one camera repository): the key is those three and the dataset type."""
        mapping = self.mappings.get(datasetType)
        if (mapping is None or _class_defines(type(self), "map_" + datasetType)
                or mapping.storageFor(False) is not self.rootStorage):
            return None
        return (type(self), self._blueprint, self.registry, datasetType), mapping.readsCompressed()

    def queryMetadata(self, datasetType: str, format: Any, dataId: Any) -> Any:
        """As `Mapper.queryMetadata`; the data-ID values are checked and converted first (`checkDataId`)."""
        return super().queryMetadata(datasetType, format, self.checkDataId(datasetType, dataId))

    def checkDataId(self, datasetType: str, dataId: Any) -> Any:
        """Return the data ID with its values converted to the kinds of their keys, before `validate`.

        The mapping of the dataset type (of the type it derives from, for
        ``X_filename``, ``X_sub``, ...) knows the kinds; other types are checked
        against the kinds of every template's fields.

        Raises
        ------
        butler.errors.DataIdValueError
            A `ValueError` naming the key, the value, the dataset type, the data ID and the root.
        butler.errors.UnknownDataIdKeyError
            A key the camera does not know (`checkDataIdKeys`).
        """
        mapping = self.mappings.get(datasetType)
        if mapping is None:
            generated = self._generated.get("map_" + datasetType)
            mapping = self.mappings.get(generated[1]) if generated is not None else None
        if mapping is not None:
            return mapping.checkDataId(self, dataId)
        self.checkDataIdKeys(datasetType, dataId)
        return check_data_id(dataId, self.keyDict, (), datasetType, self.root)

    def knownDataIdKeys(self) -> frozenset[str]:
        """Every data-ID key this camera knows, worked out once.

        The fields of every template (a key unused by one dataset type stays
        allowed, as in Gen2), the ``provided`` keys, the observation-time keys
        of the calibration validity ranges (``obsTimeName``), the columns of
        every table of the exposure and calibration registries and of the
        ``raw`` table ingest makes (`translator`), and `extraDataIdKeys`.
        """
        if self._knownKeys is None:
            known = set(self.keyDict) | self._provided | self.extraDataIdKeys
            known.update(self._blueprint.obsTimeNames)
            if self.translator is not None:  # the registry ingest makes, before it exists
                known.update(name for name, _ in self.translator.columns)
            for registry in (self.registry, self.calibRegistry):
                if registry is not None:
                    for table in registry.tables():
                        known.update(registry.columns(table))
            self._knownKeys = frozenset(known)
        return self._knownKeys

    def checkDataIdKeys(self, datasetType: str, dataId: Any) -> None:
        """Refuse a data-ID key that the camera does not know (see `knownDataIdKeys`).

        Raises
        ------
        butler.errors.UnknownDataIdKeyError
            A `DataIdValueError` (a `ValueError`) naming the key, the closest
            known keys, the dataset type, the data ID and the repository.
        """
        known = self._knownKeys if self._knownKeys is not None else self.knownDataIdKeys()
        if not dataId or known.issuperset(dataId):
            return
        import difflib  # only to word this error: a mapper that refuses nothing never loads it

        unknown = sorted(str(key) for key in dataId if key not in known)
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, known, n=3)
            hints.append(f"{key!r} (did you mean {' or '.join(map(repr, close))}?)" if close else repr(key))
        raise UnknownDataIdKeyError(
            f"unknown data-ID key{'s' if len(unknown) > 1 else ''} {', '.join(hints)}: no template or registry "
            f"column of {type(self).__name__} has {'them' if len(unknown) > 1 else 'it'}; datasetType: {datasetType}; "
            f"dataId: {describe_data_id(dataId)}; repository: {self.root}; known keys: {sorted(known)}")

    def canStandardize(self, datasetType: str) -> bool:
        """Return whether this mapper maps ``datasetType`` and has ``std_<datasetType>``."""
        return datasetType in self.mappings and hasattr(self, "std_" + datasetType)

    @classmethod
    def checksDataIdKeysByName(cls) -> bool:
        """Whether `checkDataIdKeys` answers from the names of the keys alone (the class overrides
        neither it nor `knownDataIdKeys`): `Mapping.map` then asks it once per set of keys."""
        return (cls.checkDataIdKeys is CameraMapper.checkDataIdKeys
                and cls.knownDataIdKeys is CameraMapper.knownDataIdKeys)

    @classmethod
    def fillsTemplateDirectly(cls) -> bool:
        """Whether this class fills a template with ``template % dataId`` (it overrides neither
        `_mapActualToPath` nor `_transformId`): `Mapping.map` then fills it without a call."""
        return cls._mapActualToPath is CameraMapper._mapActualToPath and cls._transformId is CameraMapper._transformId

    def _mapActualToPath(self, template: str, actualId: Any) -> str:
        """Fill a template from a data ID (after `_transformId`)."""
        transformedId = self._transformId(actualId)
        try:
            return template % transformedId
        except Exception as exc:
            raise TemplateError(f"Failed to format {template!r} with data {transformedId!r}: {exc}") from exc

    def _transformId(self, dataId: Any) -> dict:
        """Return the data ID used to fill templates (a copy; cameras may rename keys)."""
        return dict(dataId)

    def _mapComposite(self, datasetType: str, dataId: Any, write: bool = False) -> Any:
        from butler.location import ButlerComposite

        entry = self.policy[f"{self._sectionOf(datasetType)}.{datasetType}"]
        composite = ButlerComposite(entry.get("assembler"), entry.get("disassembler"), entry.get("python"),
                                    dict(dataId or {}), self, repository=self.repository,
                                    datasetType=datasetType)
        for name in entry["composite"]:
            part = entry["composite"][name]
            composite.add(name, part["datasetType"], setter=part.get("setter"), getter=part.get("getter"),
                          subset=bool(part.get("subset")), inputOnly=bool(part.get("inputOnly")))
        return composite

    def _sectionOf(self, datasetType: str) -> str:
        return next(section for section, _ in SECTIONS if datasetType in (self.policy.get(section) or ()))

    def _writeRecipe(self, mapping: Mapping, dataId: Any) -> dict[str, Any]:
        """The flattened write recipe of a FitsStorage mapping, with zero seeds made non-zero."""
        recipe, seedKeys = self._recipeOf(mapping)
        if not seedKeys:
            return dict(recipe)
        return {**recipe, **dict.fromkeys(seedKeys, _recipe_seed(dataId))}

    def _recipeOf(self, mapping: Mapping) -> tuple[dict[str, Any], tuple[str, ...]]:
        """The write recipe of a mapping and its zero seed keys, resolved once per dataset type.

        Raises
        ------
        butler.errors.PolicyError
            When the mapping names a recipe that is not defined.
        """
        resolved = self._recipeOfType.get(mapping.datasetType)
        if resolved is None:
            try:
                recipe = self._writeRecipes[mapping.recipe]
            except KeyError:
                raise PolicyError(f"Unrecognized write recipe {mapping.recipe!r} for dataset type "
                                  f"{mapping.datasetType}; known: {sorted(self._writeRecipes)}") from None
            seedKeys = tuple(key for key in (f"{plane}.scaling.seed" for plane in _PLANES)
                             if recipe.get(key) == 0)
            resolved = self._recipeOfType[mapping.datasetType] = (recipe, seedKeys)
        return resolved

    # -- fixed dataset types ----------------------------------------------------------------------

    def _internalLocation(self, pythonType: str, dataId: Any, datasetType: str) -> ButlerLocation:
        """The location of a dataset served from memory by its bypass (no file)."""
        return ButlerLocation(pythonType, None, "Internal", "ignored", dict(dataId or {}), self,
                              self.rootStorage, datasetType=datasetType, repository=self.repository)

    def map_camera(self, dataId: Any, write: bool = False) -> ButlerLocation:
        """Map the camera (served from memory by `bypass_camera`)."""
        return self._internalLocation("mappers.camera.Camera", dataId, "camera")

    def bypass_camera(self, datasetType: str, pythonType: Any, location: Any, dataId: Any) -> Camera:
        """Return the camera.

        Raises
        ------
        RuntimeError
            When the mapper has no camera.
        """
        if self.camera is None:
            raise MapperError("No camera dataset available.")
        return self.camera

    def map_expIdInfo(self, dataId: Any, write: bool = False) -> ButlerLocation:
        """Map the exposure-ID information (served by `bypass_expIdInfo`)."""
        return self._internalLocation("mappers.camera.ExposureIdInfo", dataId, "expIdInfo")

    def bypass_expIdInfo(self, datasetType: str, pythonType: Any, location: Any, dataId: Any) -> ExposureIdInfo:
        """Return the exposure id and its bit count for a data ID."""
        return ExposureIdInfo(self._computeCcdExposureId(dataId), self._ccdExposureIdBits())

    def map_skypolicy(self, dataId: Any, write: bool = False) -> ButlerLocation:
        """Map the sky-tiling policy (served by `bypass_skypolicy`)."""
        return self._internalLocation("butler.policy.Policy", dataId, "skypolicy")

    def bypass_skypolicy(self, datasetType: str, pythonType: Any, location: Any, dataId: Any) -> Policy:
        """Return the ``skytiles`` section of the policy (empty when absent)."""
        return self.policy.get("skytiles") or Policy()

    def bypass_ccdExposureId(self, datasetType: str, pythonType: Any, location: Any, dataId: Any) -> int:
        """Return the exposure id of a data ID."""
        return self._computeCcdExposureId(dataId)

    def bypass_ccdExposureId_bits(self, datasetType: str, pythonType: Any, location: Any, dataId: Any) -> int:
        """Return the number of bits of the exposure id."""
        return self._ccdExposureIdBits()

    def std_raw(self, item: Any, dataId: Any) -> Any:
        """Standardize a raw: untrimmed, with its exposure id."""
        return self._standardizeExposure(self.exposures["raw"], item, dataId, trimmed=False, setExposureId=True)

    def std_bfKernel(self, item: Any, dataId: Any) -> Any:
        """Return a brighter-fatter kernel as read (it is not an image)."""
        return item

    # -- hooks for cameras ------------------------------------------------------------------------

    def _computeCcdExposureId(self, dataId: Any) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not compute exposure ids")

    def _ccdExposureIdBits(self) -> int:
        raise NotImplementedError(f"{type(self).__name__} does not know its exposure-id bits")

    def _extractDetectorName(self, dataId: Any) -> str:
        raise NotImplementedError(f"{type(self).__name__} does not name detectors")

    def _makeCamera(self) -> Camera | None:
        """Return the camera, or None (the default) when the mapper has none."""
        return None

    def _getBestFilter(self, stored: FilterLabel | None, idFilter: str | None) -> FilterLabel | None:
        """Return the filter label best matching a stored label and a data-ID filter (see `best_filter`)."""
        definitions = self.filterDefinitions
        if type(definitions) is tuple:  # immutable: the answer can be remembered
            with contextlib.suppress(TypeError):  # unless a definition or the filter is unhashable
                return _remembered_best_filter(definitions, stored, idFilter)
        return best_filter(definitions, stored, idFilter)

    def _standardizeExposure(self, mapping: Mapping, item: Any, dataId: Any, filter: bool = True,
                             trimmed: bool = True, setVisitInfo: bool = True,
                             setExposureId: bool = False) -> Any:
        """Return what was read as a `~astropy.nddata.CCDData`.

        With ``filter``, the header ``FILTER`` is replaced by the best-matching
        filter's physical name (or band). Trimming, visit info and exposure ids are
        ISR's business: the flags are accepted for the Gen2 signature.
        """
        ccd = astro.to_ccddata(item)
        if filter:
            label = _header_filter(self, ccd.meta, dataId)
            if label is not None:
                astro.set_keyword(ccd.meta, "FILTER", label.physical or label.band)
        return ccd
