"""`Registry`: the base of the metadata registries, and the factory choosing one."""

from __future__ import annotations

import logging
import os
from typing import Any

from ..errors import RegistryError

__all__ = ["Registry"]

_log = logging.getLogger(__name__)


class Registry:
    """Base class of the registries that answer metadata lookups for a mapper."""

    @staticmethod
    def create(location: str | os.PathLike | None) -> "Registry | None":
        """Return a registry for a location.

        Parameters
        ----------
        location : `str`, `os.PathLike` or `None`
            A ``.sqlite3`` file (→ `SqliteRegistry`) or a directory
            (→ `PosixRegistry`).

        Returns
        -------
        registry : `Registry` or `None`
            `None` when ``location`` is `None` or names a ``.sqlite3`` file that
            does not exist (as in Gen2).

        Raises
        ------
        butler.errors.RegistryError
            When ``location`` is neither.
        """
        if location is None:
            return None
        location = os.fspath(location)
        if location.endswith(".sqlite3"):
            from .sqlite import SqliteRegistry

            if not os.path.exists(location):
                _log.debug("no registry at %s", location)
                return None
            return SqliteRegistry(location)
        if os.path.isdir(location):
            from .posix import PosixRegistry

            return PosixRegistry(location)
        raise RegistryError(f"unable to create a registry for location {location!r}")

    def lookup(self, lookupProperties: Any, reference: Any, dataId: Any, **kwargs: Any) -> list[tuple]:
        """Return the distinct values of ``lookupProperties`` for the entries matching ``dataId``."""
        raise NotImplementedError

    def close(self) -> None:
        """Release what the registry holds (nothing by default)."""

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
