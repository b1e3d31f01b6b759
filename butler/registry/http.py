"""`HttpRegistry`: the registry of a served repository, read through the server's registry API.

A mapper of a repository opened at ``http://host:port/NAME`` opens its
registries as it would locally (`butler.registry.Registry.create` with the
repository's storage and a path); for an `butler.storage.http.HttpStorage`
that gives this class, which sends each read of the protocol to the server
(``/api/v1/repositories/NAME/registry/...``). The schema is asked once. The
server runs the lookup on its own registry, opened read-only; a server error
(an unknown column: `RegistrySchemaError`) is raised here as the same class.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..utils import sequencify
from .base import Registry

__all__ = ["HttpRegistry"]


def _plain(value: Any) -> Any:
    """A data-ID value or key as JSON carries it (tuples as lists, numpy scalars as numbers)."""
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (str, bytes)) else value


class HttpRegistry(Registry):
    """The registry file ``path`` of a served repository.

    Parameters
    ----------
    storage : `butler.storage.http.HttpStorage`
        The served repository (or a directory of it).
    path : `str`
        The registry file, relative to ``storage``.
    """

    def __init__(self, storage: Any, path: str):
        self._storage = storage
        self._path = path
        self.root = storage.root
        self.location = storage.locationWithRoot(path)
        self._schema: dict[str, dict[str, str]] | None = None

    def __repr__(self) -> str:
        return f"HttpRegistry({self.location!r})"

    def _rows(self, operation: str, query: dict) -> list[tuple]:
        return [tuple(row) for row in self._storage.registryQuery(operation, self._path, query)["rows"]]

    def lookup(self, lookupProperties: Any, reference: Any, dataId: Mapping | None,
               **kwargs: Any) -> list[tuple]:
        """Ask the server's registry (see `Registry.lookup`); the hints in ``kwargs`` are for local scans."""
        where = [[_plain(key), _plain(value)] for key, value in (dataId or {}).items()]
        return self._rows("lookup", {"properties": list(sequencify(lookupProperties)),
                                     "reference": list(sequencify(reference)), "dataId": where})

    def executeQuery(self, returnFields: Any, joinClause: Any, whereFields: Iterable | None,
                     range: Sequence[str] | None, values: Sequence[Any]) -> list[tuple]:
        """Ask the server's registry (see `Registry.executeQuery`)."""
        return self._rows("executeQuery", {
            "returnFields": list(sequencify(returnFields)), "joinClause": list(sequencify(joinClause)),
            "whereFields": _plain(list(whereFields)) if whereFields is not None else None,
            "range": _plain(range), "values": _plain(list(values))})

    def _tables(self) -> dict[str, dict[str, str]]:
        if self._schema is None:
            self._schema = self._storage.registryQuery("schema", self._path)["tables"]
        return self._schema

    def tables(self) -> list[str]:
        """The server's registry tables, sorted."""
        return sorted(self._tables())

    def columns(self, table: str) -> dict[str, str]:
        """``{column: declared type}`` of a table of the server's registry; empty for an unknown table."""
        return dict(self._tables().get(table, {}))
