"""Formatters: one per storage name, found through a strict table.

``get_formatter("FitsStorage")`` returns the formatter a `ButlerLocation`'s
storage name asks for. Registering a name twice is an error unless forced, and
an unknown name raises `UnknownStorageError` listing the known ones.

Importing this package imports neither numpy nor astropy, nor any format's
module: the table holds each built-in formatter by the import string of its
class, and its module is imported when its name is first asked for (a command
that reads no pickle never imports `pickle`; the YAML formats import PyYAML);
each format imports its libraries when it first reads or writes.
`ParquetStorage` is registered only when pyarrow is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator
from typing import Any

from ..errors import UnknownStorageError
from .base import Formatter

__all__ = ["Formatter", "FormatterTable", "get_formatter", "register_formatter", "known_storage_names", "python_kind"]

#: the package's formatters: storage name -> ``"submodule:Class"``, imported on first use
BUILT_IN = {
    "PickleStorage": "pickle:PickleStorage",
    "NumpyStorage": "numpy:NumpyStorage",
    "TextStorage": "text:TextStorage",
    "FitsStorage": "fits:FitsStorage",
    "FitsCatalogStorage": "fits:FitsCatalogStorage",
    "YamlStorage": "yaml:YamlStorage",
    "ConfigStorage": "config:ConfigStorage",
}
#: the formatter registered only when its library is installed: storage name -> (``"submodule:Class"``, library)
OPTIONAL = {"ParquetStorage": ("parquet:ParquetStorage", "pyarrow")}


class FormatterTable:
    """A table of formatters keyed by storage name.

    The package keeps one (used by `get_formatter` and `register_formatter`);
    tests may make their own.
    """

    def __init__(self) -> None:
        self._formatters: dict[str, Formatter] = {}
        #: ``{storageName: "module:Class"}``: formatters registered by name, imported on first use
        self._deferred: dict[str, str] = {}

    def register(self, cls: type[Formatter], force: bool = False) -> None:
        """Add a formatter class under its ``storageName``.

        Parameters
        ----------
        cls : `type`
            A `Formatter` subclass.
        force : `bool`
            Replace a formatter already registered under the same name.

        Raises
        ------
        ValueError
            When the name is taken and ``force`` is false.
        """
        name = cls.storageName
        if name in self and not force:
            raise ValueError(f"a formatter for {name!r} is registered already "
                             f"({self._formatters.get(name) or self._deferred[name]!r}); pass force=True to "
                             "replace it")
        self._deferred.pop(name, None)
        self._formatters[name] = cls()

    def register_deferred(self, storageName: str, importString: str) -> None:
        """Add a formatter by the import string of its class (``"module:Class"``), imported on first use."""
        if storageName in self:
            raise ValueError(f"a formatter for {storageName!r} is registered already")
        self._deferred[storageName] = importString

    def get(self, storageName: str) -> Formatter:
        """Return the formatter of a storage name.

        Raises
        ------
        UnknownStorageError
            When no formatter has that name; the message lists the known ones.
        """
        formatter = self._formatters.get(storageName)
        if formatter is not None:
            return formatter
        deferred = self._deferred.get(storageName)
        if deferred is None:
            formatter = self._formatters.get(storageName)  # made by another thread since the first look
            if formatter is None:
                raise UnknownStorageError(f"no formatter for storage {storageName!r}; known: {', '.join(self)}")
            return formatter
        module, _, name = deferred.partition(":")
        made = getattr(importlib.import_module(module), name)()
        # threads asking at once agree on the first formatter stored; the name leaves the deferred
        # ones only once it is stored, so no thread finds it in neither
        formatter = self._formatters.setdefault(storageName, made)
        self._deferred.pop(storageName, None)
        return formatter

    def __contains__(self, storageName: object) -> bool:
        return storageName in self._formatters or storageName in self._deferred

    def __iter__(self) -> Iterator[str]:
        return iter(sorted({*self._formatters, *self._deferred}))


_table = FormatterTable()


def get_formatter(storageName: str) -> Formatter:
    """Return the formatter registered for ``storageName`` (see `FormatterTable.get`)."""
    return _table.get(storageName)


def register_formatter(cls: type[Formatter], force: bool = False) -> None:
    """Register a formatter class in the package table (see `FormatterTable.register`)."""
    _table.register(cls, force=force)


def known_storage_names() -> list[str]:
    """Return the registered storage names, sorted."""
    return list(_table)


def __getattr__(name: str) -> Any:
    """`python_kind`, from the FITS format's module (imported on first use, as the formats are)."""
    if name == "python_kind":
        from .fits import python_kind

        return python_kind
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


for _name, _where in BUILT_IN.items():
    _table.register_deferred(_name, f"{__name__}.{_where}")
for _name, (_where, _library) in OPTIONAL.items():
    if importlib.util.find_spec(_library) is not None:
        _table.register_deferred(_name, f"{__name__}.{_where}")
