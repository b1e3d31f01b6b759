"""Representations: one dataset in several Python forms, through a table of converters.

``butler.get(datasetType, dataId, as_type="pandas")`` reads a dataset as its
format gives it (an astropy `~astropy.table.Table`, say) and hands it to the
converter registered for (source type, target type). A converter is marked
lossless or not: `butler.Butler.put` takes another form of an object than the
one a get returns only through a lossless converter, so nothing written
differs from what the user had.

Types are named by import references (``"astropy.nddata:CCDData"``) and
resolved when first needed: a source type only once its package is imported
(an object of it exists), so registering converters and importing this module
import neither astropy nor pandas. Short names (``"numpy"``, ``"pandas"``,
``"dict"``, ...) are aliases of target types.

Plug-ins add converters through the entry-point group ``butler.converters``:
each entry point names a callable taking the `ConverterTable` to register into.
Installed entry points are trusted (installing a package is the user's
decision) and are loaded once, on the first lookup the table cannot answer.
"""

from __future__ import annotations

import importlib
import logging
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import attrs

from .errors import MissingDependencyError, UnknownConversionError, describe_data_id

__all__ = ["Converter", "ConverterTable", "ENTRY_POINT_GROUP", "convert", "get_converters", "register_converter",
           "type_reference"]

_log = logging.getLogger(__name__)

#: the package extra that installs a converter's missing module (pandas when the module is not named)
_EXTRAS = {"pandas": "pandas", "pyarrow": "parquet"}

#: the entry-point group whose callables register more converters
ENTRY_POINT_GROUP = "butler.converters"


def type_reference(pythonType: type | str) -> str:
    """The import reference of a type: ``"module:Qualname"`` (a dotted string ``"a.b.C"`` becomes ``"a.b:C"``)."""
    if isinstance(pythonType, str):
        if ":" in pythonType:
            return pythonType
        module, _, name = pythonType.rpartition(".")
        return f"{module or 'builtins'}:{name}"
    return f"{pythonType.__module__}:{pythonType.__qualname__}"


def _short(reference: str) -> str:
    return reference.rpartition(":")[2]


@attrs.frozen
class Converter:
    """One conversion: objects of ``source`` become objects of ``target``.

    Parameters
    ----------
    source, target : `str`
        Import references of the types (``"module:Qualname"``).
    function : callable
        Takes an object of ``source`` and returns one of ``target``.
    lossless : `bool`
        Whether every value of the source survives (so `Butler.put` may use it).
    """

    source: str
    target: str
    function: Callable[[Any], Any]
    lossless: bool = False

    def __call__(self, obj: Any) -> Any:
        return self.function(obj)

    def describe(self) -> str:
        """``"Table -> DataFrame"`` with ``" (lossless)"`` when it is."""
        return f"{_short(self.source)} -> {_short(self.target)}" + (" (lossless)" if self.lossless else "")


class ConverterTable:
    """Converters keyed by (source, target) type references, and short names for target types.

    The package keeps one (`get_converters`); tests may make their own.

    Parameters
    ----------
    entryPointGroup : `str` or `None`
        The entry-point group loaded on the first miss; None loads none.
    """

    def __init__(self, entryPointGroup: str | None = ENTRY_POINT_GROUP) -> None:
        self._converters: dict[tuple[str, str], Converter] = {}
        self._names: dict[str, str] = {}
        self._types: dict[str, type] = {}
        self._entryPointGroup = entryPointGroup

    @classmethod
    def standard(cls, entryPointGroup: str | None = ENTRY_POINT_GROUP) -> ConverterTable:
        """A new table holding the built-in converters (plug-ins of ``entryPointGroup`` load on its first miss)."""
        table = cls(entryPointGroup)
        _register_builtins(table)
        return table

    def register(self, source: type | str, target: type | str, function: Callable[[Any], Any], *,
                 lossless: bool = False, names: Iterable[str] = (), force: bool = False) -> Converter:
        """Add a converter, and short names for its target type.

        Parameters
        ----------
        source, target : `type` or `str`
            The types, or their import references (``"pandas:DataFrame"``, or dotted).
        function : callable
            Converts one object.
        lossless : `bool`
            Every value of the source survives the conversion.
        names : iterable of `str`
            Short names of the target type for ``as_type`` (case-insensitive).
        force : `bool`
            Replace a converter (or a short name) registered already.

        Raises
        ------
        ValueError
            The pair (or a short name for another type) is registered already and ``force`` is false.
        """
        converter = Converter(type_reference(source), type_reference(target), function, lossless)
        key = (converter.source, converter.target)
        if key in self._converters and not force:
            raise ValueError(f"a converter {self._converters[key].describe()} is registered already; pass "
                             f"force=True to replace it")
        for name in names:
            taken = self._names.get(name.lower())
            if taken is not None and taken != converter.target and not force:
                raise ValueError(f"the short name {name!r} names {taken} already; pass force=True to replace it")
        self._converters[key] = converter
        for name in names:
            self._names[name.lower()] = converter.target
        return converter

    # -- lookups -----------------------------------------------------------------------------------

    def _resolve(self, reference: str, *, importing: bool) -> type | None:
        """The class of a reference; None when it names none, or its package is not imported and
        ``importing`` is false (no object of it can exist yet)."""
        cls = self._types.get(reference)
        if cls is None:
            module, _, qualname = reference.partition(":")
            if not importing and module.split(".")[0] not in sys.modules:
                return None
            try:
                obj: Any = importlib.import_module(module)
                for part in qualname.split("."):
                    obj = getattr(obj, part)
            except (ImportError, AttributeError, ValueError):
                return None
            if not isinstance(obj, type):
                return None
            cls = self._types[reference] = obj
        return cls

    def _target(self, as_type: type | str) -> str:
        """The reference of the type ``as_type`` asks for (a type, a short name or a reference)."""
        if isinstance(as_type, str):
            return self._names.get(as_type.lower()) or type_reference(as_type)
        return type_reference(as_type)

    def _from(self, obj: Any) -> Iterator[Converter]:
        """The converters whose source is the class of ``obj`` or a base of it, the most specific first."""
        for cls in type(obj).__mro__:
            for converter in list(self._converters.values()):
                if self._resolve(converter.source, importing=False) is cls:
                    yield converter

    def _find(self, obj: Any, target: str) -> Converter | None:
        for converter in self._from(obj):
            if converter.target == target or self._same_type(converter.target, target):
                return converter
        return None

    def _same_type(self, one: str, other: str) -> bool:
        """Whether two references name one class (``astropy.table:Table`` and ``astropy.table.table:Table``)."""
        first, second = self._resolve(one, importing=False), self._resolve(other, importing=False)
        return first is not None and first is second

    def _load_plugins(self) -> bool:
        """Load the entry points of the group (once); whether any was loaded now."""
        group, self._entryPointGroup = self._entryPointGroup, None
        if group is None:
            return False
        from importlib.metadata import entry_points

        loaded = False
        for entry in entry_points(group=group):
            entry.load()(self)
            _log.debug("converters registered by entry point %s = %s", entry.name, entry.value)
            loaded = True
        return loaded

    def known(self, obj: Any) -> list[str]:
        """What ``obj`` converts to, as ``"Source -> Target"`` lines (plug-ins loaded first)."""
        self._load_plugins()
        return [converter.describe() for converter in self._from(obj)]

    def convert(self, obj: Any, as_type: type | str, *, datasetType: str | None = None,
                dataId: Any = None) -> Any:
        """Return ``obj`` in the form ``as_type`` names.

        An object already of that exact type comes back unchanged; otherwise the
        converter of the most specific source (the class of ``obj``, then its
        bases) is used; an object that is an instance of the type and has no
        converter to it comes back unchanged.

        Raises
        ------
        UnknownConversionError
            No converter; the message names the dataset type, the data ID, the
            form asked for and the forms ``obj`` converts to.
        """
        while True:  # a second time after loading the plug-ins, which may add converters and short names
            target = self._target(as_type)
            cls = self._resolve(target, importing=True) if isinstance(as_type, str) else as_type
            if cls is not None and type(obj) is cls:
                return obj
            converter = self._find(obj, target)
            if converter is not None:
                try:
                    return converter(obj)
                except ModuleNotFoundError as exc:  # the target's package (pandas, pyarrow) is not installed
                    raise MissingDependencyError(
                        f"converting a {type(obj).__qualname__} to {as_type!r} for datasetType: {datasetType}; "
                        f"dataId: {describe_data_id(dataId)} needs a package not installed ({exc}): "
                        f"pip install 'butler[{_EXTRAS.get(exc.name or '', 'pandas')}]'") from None
            if cls is not None and isinstance(obj, cls):
                return obj
            if not self._load_plugins():
                break
        given = type(obj)
        known = self.known(obj)
        raise UnknownConversionError(
            f"no converter from {given.__module__}.{given.__qualname__} to {as_type!r} for datasetType: "
            f"{datasetType}; dataId: {describe_data_id(dataId)}; known from {given.__qualname__}: "
            f"{', '.join(known) if known else 'none'}; short names: {', '.join(sorted(self._names))}")

    def lossless_into(self, obj: Any, accepted: tuple[type, ...]) -> tuple[Converter | None, list[Converter]]:
        """The lossless converter from ``obj`` to one of the ``accepted`` types, and the lossy ones there are.

        Returns
        -------
        lossless : `Converter` or None
            The first lossless converter (most specific source first), if any.
        lossy : `list` of `Converter`
            Converters to an accepted type that lose something (for the refusal's message).
        """
        def candidates() -> list[Converter]:
            found = []
            for converter in self._from(obj):
                # a target whose package is not imported yet is none of the accepted classes
                target = self._resolve(converter.target, importing=False)
                if target is not None and issubclass(target, accepted):
                    found.append(converter)
            return found

        found = candidates()
        if not any(c.lossless for c in found) and self._load_plugins():
            found = candidates()
        lossless = next((c for c in found if c.lossless), None)
        return lossless, [c for c in found if not c.lossless]


# -- the built-in converters ------------------------------------------------------------------------


def _ccd_to_array(ccd: Any) -> Any:
    import numpy as np

    return np.asarray(ccd.data)


def _ccd_to_nddata(ccd: Any) -> Any:
    from astropy.nddata import NDData

    return NDData(ccd.data, uncertainty=ccd.uncertainty, mask=ccd.mask, wcs=ccd.wcs, meta=ccd.meta, unit=ccd.unit,
                  psf=ccd.psf)


def _array_to_ccd(array: Any) -> Any:
    from astropy.nddata import CCDData

    return CCDData(array, unit="adu")


def _table_to_frame(table: Any) -> Any:
    return table.to_pandas()


def _frame_to_table(frame: Any) -> Any:
    from astropy.table import Table

    return Table.from_pandas(frame)


def _table_to_array(table: Any) -> Any:
    return table.as_array()


def _array_to_table(array: Any) -> Any:
    from astropy.table import Table

    if array.dtype.names is None:
        raise TypeError(f"only a structured array is a table; this one has dtype {array.dtype}")
    return Table(array)


_COMMENTARY = ("COMMENT", "HISTORY", "")


def _header_to_dict(header: Any) -> dict:
    """A header's keyword values (COMMENT and HISTORY as lists of lines); card comments are dropped."""
    values: dict[str, Any] = {}
    for card in header.cards:
        if card.keyword in _COMMENTARY:
            values.setdefault(card.keyword, []).append(str(card.value))
        else:
            values[card.keyword] = card.value
    return values


_CCDDATA, _NDDATA, _TABLE = "astropy.nddata:CCDData", "astropy.nddata:NDData", "astropy.table:Table"
_NDARRAY, _FRAME, _HEADER = "numpy:ndarray", "pandas:DataFrame", "astropy.io.fits:Header"


def _register_builtins(table: ConverterTable) -> None:
    table.register(_CCDDATA, _NDARRAY, _ccd_to_array, names=("numpy", "ndarray", "array"))
    table.register(_CCDDATA, _NDDATA, _ccd_to_nddata, lossless=True, names=("nddata",))
    table.register(_NDARRAY, _CCDDATA, _array_to_ccd, names=("ccddata",))  # no unit, mask nor WCS
    table.register(_TABLE, _FRAME, _table_to_frame, names=("pandas", "dataframe"))  # no units nor meta
    table.register(_FRAME, _TABLE, _frame_to_table, lossless=True, names=("table",))
    table.register(_TABLE, _NDARRAY, _table_to_array)  # no units nor meta
    table.register(_NDARRAY, _TABLE, _array_to_table, lossless=True)
    table.register(_HEADER, "builtins:dict", _header_to_dict, names=("dict",))  # no card comments


_table = ConverterTable.standard()


def get_converters() -> ConverterTable:
    """The package's converter table (built-ins, registrations, then plug-ins on the first miss)."""
    return _table


def register_converter(source: type | str, target: type | str, function: Callable[[Any], Any], *,
                       lossless: bool = False, names: Iterable[str] = (), force: bool = False) -> Converter:
    """Register a converter in the package table (see `ConverterTable.register`)."""
    return _table.register(source, target, function, lossless=lossless, names=names, force=force)


def convert(obj: Any, as_type: type | str, *, datasetType: str | None = None, dataId: Any = None) -> Any:
    """Convert with the package table (see `ConverterTable.convert`)."""
    return _table.convert(obj, as_type, datasetType=datasetType, dataId=dataId)
