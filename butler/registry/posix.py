"""`PosixRegistry`: answers lookups from the names of the files under a root."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from ..errors import RegistryError
from ..utils import sequencify
from .base import Registry
from .fsScanner import FsScanner

__all__ = ["PosixRegistry"]

_log = logging.getLogger(__name__)


def _same_value(found: Any, wanted: Any) -> bool:
    return found == wanted or str(found) == str(wanted)


class PosixRegistry(Registry):
    """A registry that scans file names against a template (no file is opened).

    Parameters
    ----------
    root : `str` or `os.PathLike`
        The directory scanned.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = os.fspath(root)
        self.location = self.root

    def __repr__(self) -> str:
        return f"PosixRegistry({self.root!r})"

    def lookup(self, lookupProperties: Any, reference: Any, dataId: Mapping | None, *,
               template: str | None = None, storage: str | None = None, **kwargs: Any) -> list[tuple]:
        """Return one tuple per file matching the template and the data ID.

        Parameters
        ----------
        lookupProperties : `str` or sequence of `str`
            The fields to return, in order (a bare string is one field).
        reference : any
            Unused (the tables of a SQL registry).
        dataId : mapping or `None`
            Values the files must have; keys the template lacks are ignored.
        template : `str`
            The template of the dataset's files; without one the answer is ``[]``.
        storage : `str`, optional
            Unused: headers are never read.

        Returns
        -------
        rows : `list` of `tuple`
            One per matching file, in path order. A field the template lacks
            cannot be found from names, so it gives no rows.
        """
        if not template:
            return []
        properties = sequencify(lookupProperties)
        scanner = FsScanner(template)
        missing = set(properties) - set(scanner.getFields())
        if missing:
            _log.debug("template %r does not give %s; no file names can answer", template, sorted(missing))
            return []
        wanted = dict(dataId or {})
        rows = []
        for values in scanner.processPath(self.root).values():
            if all(_same_value(values[k], v) for k, v in wanted.items() if k in values):
                rows.append(tuple(values[p] for p in properties))
        return rows

    def queryMetadata(self, reference: Any, format: Any, dataId: Mapping | None = None,
                      **kwargs: Any) -> list:
        """As `Registry.queryMetadata`; `lookup` already ignores keys the template lacks."""
        rows = self.lookup(format, reference, dataId, **kwargs)
        return [row[0] for row in rows] if isinstance(format, str) else rows

    def executeQuery(self, returnFields: Any, joinClause: Any, whereFields: Any, range: Any,
                     values: Any) -> list[tuple]:
        """Refused: file names answer `lookup` only.

        Raises
        ------
        butler.errors.RegistryError
            Always.
        """
        raise RegistryError(f"registry {self.root} answers lookups from file names only; it has no tables "
                            f"to query ({returnFields!r} from {joinClause!r})")

    def tables(self) -> list[str]:
        """None: a file-name registry has no tables."""
        return []

    def columns(self, table: str) -> dict[str, str]:
        """Empty: a file-name registry has no tables."""
        return {}
