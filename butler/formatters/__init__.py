"""Formatters: one per storage name, found through a strict table.

``get_formatter("FitsStorage")`` returns the formatter a `ButlerLocation`'s
storage name asks for. Registering a name twice is an error unless forced, and
an unknown name raises `UnknownStorageError` listing the known ones.

Importing this package imports neither numpy nor astropy: each format imports
its libraries when it first reads or writes; the YAML formats (and PyYAML) are
imported when their name is first asked for. `ParquetStorage` is registered
only when pyarrow is installed.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterator

from ..errors import UnknownStorageError
from .base import Formatter
from .fits import FitsCatalogStorage, FitsStorage, python_kind
from .numpy import NumpyStorage
from .parquet import ParquetStorage
from .pickle import PickleStorage
from .text import TextStorage

__all__ = ["Formatter", "FormatterTable", "get_formatter", "register_formatter", "known_storage_names", "python_kind"]


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
        deferred = self._deferred.pop(storageName, None)
        if deferred is None:
            raise UnknownStorageError(f"no formatter for storage {storageName!r}; known: {', '.join(self)}")
        module, _, name = deferred.partition(":")
        formatter = self._formatters[storageName] = getattr(importlib.import_module(module), name)()
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


for _cls in (PickleStorage, NumpyStorage, TextStorage, FitsStorage, FitsCatalogStorage):
    register_formatter(_cls)
_table.register_deferred("YamlStorage", f"{__name__}.yaml:YamlStorage")
_table.register_deferred("ConfigStorage", f"{__name__}.config:ConfigStorage")
if importlib.util.find_spec("pyarrow") is not None:
    register_formatter(ParquetStorage)
