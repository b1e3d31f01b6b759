"""`SqliteRegistry`: lookups in a Gen2 SQLite registry with one parameterised query builder.

Each query shape (columns, tables, where columns, range) is checked against
the schema and built into SQL once per registry; later lookups of the same
shape only bind their values.
"""

from __future__ import annotations

import functools
import logging
import numbers
import os
import sqlite3
import urllib.parse
from typing import Any, Iterable, Mapping, Sequence

from ..errors import RegistryError
from ..utils import sequencify
from .base import Registry

__all__ = ["SqliteRegistry", "quote_identifier", "build_select"]

_log = logging.getLogger(__name__)

#: a ``whereFields`` or range term that stands for a bound value
PLACEHOLDER = "?"


def quote_identifier(name: str) -> str:
    """Quote a table or column name for SQL (``"name"``, inner quotes doubled)."""
    return '"' + str(name).replace('"', '""') + '"'


def _term(term: str) -> str:
    return PLACEHOLDER if term == PLACEHOLDER else quote_identifier(term)


def build_select(returnFields: Iterable[str], tables: Iterable[str], whereColumns: Iterable[tuple[str, str]],
                 range: Sequence[str] | None = None) -> str:
    """Build ``SELECT DISTINCT ... FROM t1 NATURAL JOIN t2 WHERE ...``; every name is quoted.

    Parameters
    ----------
    returnFields : iterable of `str`
        Columns to return.
    tables : iterable of `str`
        Tables, natural-joined in order.
    whereColumns : iterable of ``(column, term)``
        Equality conditions; a term is ``'?'`` (a bound value) or a column name.
    range : ``(value, start, end)``, optional
        ``(value BETWEEN start AND end)``; each term ``'?'`` or a column name.
    """
    sql = (f"SELECT DISTINCT {', '.join(map(quote_identifier, returnFields))} "
           f"FROM {' NATURAL JOIN '.join(map(quote_identifier, tables))}")
    clauses = [f"{quote_identifier(column)} = {_term(term)}" for column, term in whereColumns]
    if range is not None:
        value, start, end = range
        clauses.append(f"({_term(value)} BETWEEN {_term(start)} AND {_term(end)})")
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    return sql


def _bindable(value: Any) -> Any:
    """Turn numpy and other numeric scalars into the Python types sqlite3 binds."""
    if value is None or isinstance(value, (str, bytes, int, float)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


class SqliteRegistry(Registry):
    """A Gen2 SQLite registry (``registry.sqlite3`` or ``calibRegistry.sqlite3``).

    Parameters
    ----------
    location : `str` or `os.PathLike`
        The SQLite file; it must exist.
    readOnly : `bool`
        Open with ``mode=ro`` (the default): the file is never modified.
        Pass False only to a writer that owns the registry.

    Attributes
    ----------
    conn : `sqlite3.Connection`
        The connection (shareable between threads).
    """

    def __init__(self, location: str | os.PathLike, readOnly: bool = True):
        self.location = os.path.abspath(os.fspath(location))
        if not os.path.isfile(self.location):
            raise RegistryError(f"registry file not found: {self.location}")
        uri = "file:" + urllib.parse.quote(self.location) + ("?mode=ro" if readOnly else "")
        try:
            self.conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open registry {self.location}: {exc}") from exc
        self.readOnly = readOnly
        self._columns: dict[str, tuple[str, ...]] = {}
        self._statements: dict[tuple, str] = {}

    def __repr__(self) -> str:
        return f"SqliteRegistry({self.location!r})"

    def close(self) -> None:
        """Close the connection (further queries fail)."""
        self.conn.close()

    def _execute(self, sql: str, values: Sequence[Any]) -> list[tuple]:
        _log.debug("%s: %s %r", self.location, sql, values)
        try:
            return self.conn.execute(sql, [_bindable(v) for v in values]).fetchall()
        except sqlite3.Error as exc:
            raise RegistryError(f"registry query failed on {self.location}: {exc}; SQL: {sql}; "
                                f"values: {list(values)!r}") from exc

    def lookup(self, lookupProperties: Any, reference: Any, dataId: Mapping | None,
               **kwargs: Any) -> list[tuple]:
        """Return the distinct values of some columns for the rows matching a data ID.

        Parameters
        ----------
        lookupProperties : `str` or sequence of `str`
            Columns to return, in order (a bare string is one column).
        reference : `str` or sequence of `str`
            Tables, natural-joined.
        dataId : mapping or `None`
            ``column: value`` equalities; a key that is a ``(start, end)``
            pair of columns asks for ``value BETWEEN start AND end``.
        **kwargs
            Ignored (``template``, ``storage``: for other registries).

        Returns
        -------
        rows : `list` of `tuple`

        Raises
        ------
        butler.errors.RegistryError
            When the query fails (unknown table or column, ...).
        """
        where: list[tuple[str, str]] = []
        values: list[Any] = []
        range_: tuple[str, str, str] | None = None
        range_value: list[Any] = []
        for key, value in (dataId or {}).items():
            if isinstance(key, tuple):
                if len(key) != 2 or range_ is not None:
                    raise RegistryError(f"a range key must be one (start, end) pair, got {key!r}")
                range_ = (PLACEHOLDER, key[0], key[1])
                range_value = [value]
            else:
                where.append((key, PLACEHOLDER))
                values.append(value)
        sql = self._select(tuple(sequencify(lookupProperties)), tuple(sequencify(reference)), tuple(where),
                           range_)
        return self._execute(sql, values + range_value)

    def executeQuery(self, returnFields: Any, joinClause: Any, whereFields: Iterable | None,
                     range: Sequence[str] | None, values: Sequence[Any]) -> list[tuple]:
        """Run a lookup described in the Gen2 ``executeQuery`` form.

        Parameters
        ----------
        returnFields : `str` or sequence of `str`
            Columns to return (a bare string is one column).
        joinClause : `str` or sequence of `str`
            Tables, natural-joined.
        whereFields : iterable of ``(column, term)`` or `str`, optional
            Equalities; a term is ``'?'`` or a column name; a bare column
            means ``(column, '?')``.
        range : ``(value, start, end)`` or ``(start, end)``, optional
            A ``BETWEEN`` condition (a pair means ``('?', start, end)``).
            Text compares as strings, as in Gen2: ``'2005-04-17T01:00:00'``
            is not between ``'2005-03-30'`` and ``'2005-04-17'``.
        values : sequence
            The bound values, in order of the ``'?'`` terms.
        """
        where = tuple((w, PLACEHOLDER) if isinstance(w, str) else tuple(w) for w in (whereFields or ()))
        if range is not None:
            range = (PLACEHOLDER, *range) if len(range) == 2 else tuple(range)
        sql = self._select(tuple(sequencify(returnFields)), tuple(sequencify(joinClause)), where, range)
        return self._execute(sql, list(values))

    def _select(self, fields: tuple[str, ...], tables: tuple[str, ...], where: tuple[tuple[str, str], ...],
                range: tuple[str, str, str] | None) -> str:
        """Return the ``SELECT`` of one query shape, its names checked and its SQL built on first use.

        The cache is bounded by the schema: a shape is made of checked names only.
        """
        shape = (fields, tables, where, range)
        sql = self._statements.get(shape)
        if sql is None:
            self._check_names(tables, [*fields, *(t for pair in where for t in pair), *(range or ())])
            sql = self._statements[shape] = build_select(fields, tables, where, range)
        return sql

    def _check_names(self, tables: Iterable[str], columns: Iterable[str]) -> None:
        """Refuse unknown tables and columns.

        SQLite reads a double-quoted name that is no column as a string
        literal, so a typo would silently match nothing (or everything).
        """
        known: set[str] = set()
        for table in tables:
            table_columns = self.columns(table)
            if not table_columns:
                raise RegistryError(f"no such table {table!r} in registry {self.location}")
            known.update(table_columns)
        unknown = [c for c in columns if c != PLACEHOLDER and c not in known]
        if unknown:
            raise RegistryError(f"no such column {', '.join(map(repr, unknown))} in tables "
                                f"{list(tables)!r} of registry {self.location}")

    # -- introspection (cached: a registry read by the butler does not change) --------------

    @functools.cached_property
    def _tables(self) -> list[str]:
        rows = self._execute("SELECT name FROM sqlite_master WHERE type = 'table' "
                             "AND name NOT LIKE 'sqlite_%' ORDER BY name", [])
        return [name for (name,) in rows]

    def getTables(self) -> list[str]:
        """The names of the registry's tables (SQLite's own excluded), sorted."""
        return list(self._tables)

    def columns(self, table: str) -> tuple[str, ...]:
        """The column names of a table, in schema order (empty for an unknown table)."""
        if table not in self._columns:
            rows = self._execute(f"PRAGMA table_info({quote_identifier(table)})", [])
            self._columns[table] = tuple(row[1] for row in rows)
        return self._columns[table]

    def columnTypes(self, table: str) -> dict[str, str]:
        """``{column: declared type}`` of a table, in schema order (empty for an unknown table)."""
        rows = self._execute(f"PRAGMA table_info({quote_identifier(table)})", [])
        return {row[1]: row[2] for row in rows}

    def rowCount(self, table: str) -> int:
        """The number of rows of a table."""
        self._check_names([table], [])
        return self._execute(f"SELECT COUNT(*) FROM {quote_identifier(table)}", [])[0][0]
