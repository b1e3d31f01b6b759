"""Formatters: one per storage name, found through a strict table.

``get_formatter("FitsStorage")`` returns the formatter a `ButlerLocation`'s
storage name asks for. Registering a name twice is an error unless forced, and
an unknown name raises `UnknownStorageError` listing the known ones.

Importing this package imports neither numpy nor astropy: each format imports
its libraries when it first reads or writes. `ParquetStorage` is registered
only when pyarrow is installed.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

from ..errors import UnknownStorageError
from .base import Formatter
from .config import ConfigStorage
from .fits import FitsCatalogStorage, FitsStorage, python_kind
from .numpy import NumpyStorage
from .parquet import ParquetStorage
from .pickle import PickleStorage
from .text import TextStorage
from .yaml import YamlStorage

__all__ = ["Formatter", "FormatterTable", "get_formatter", "register_formatter", "known_storage_names", "python_kind"]


class FormatterTable:
    """A table of formatters keyed by storage name.

    The package keeps one (used by `get_formatter` and `register_formatter`);
    tests may make their own.
    """

    def __init__(self) -> None:
        self._formatters: dict[str, Formatter] = {}

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
        if name in self._formatters and not force:
            raise ValueError(f"a formatter for {name!r} is registered already "
                             f"({self._formatters[name]!r}); pass force=True to replace it")
        self._formatters[name] = cls()

    def get(self, storageName: str) -> Formatter:
        """Return the formatter of a storage name.

        Raises
        ------
        UnknownStorageError
            When no formatter has that name; the message lists the known ones.
        """
        try:
            return self._formatters[storageName]
        except KeyError:
            raise UnknownStorageError(f"no formatter for storage {storageName!r}; "
                                      f"known: {', '.join(sorted(self._formatters))}") from None

    def __contains__(self, storageName: object) -> bool:
        return storageName in self._formatters

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._formatters))


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


for _cls in (PickleStorage, YamlStorage, NumpyStorage, ConfigStorage, TextStorage, FitsStorage,
             FitsCatalogStorage):
    register_formatter(_cls)
if importlib.util.find_spec("pyarrow") is not None:
    register_formatter(ParquetStorage)
