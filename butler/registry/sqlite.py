"""`SqliteRegistry`: a Gen2 SQLite registry, read and written through one quoted, parameterised SQL layer.

Every identifier goes through `quote_identifier`; every value is a bound
parameter. Each query shape (columns, tables, where columns, range) is checked
against the schema and built into SQL once per registry; later lookups of the
same shape only bind their values.

Writing edits a copy. ``transaction()`` locks the registry's directory
(``flock``, so writers take turns), copies the file to a temporary beside it,
runs the writes there in one SQLite transaction and renames the copy over the
registry when the block succeeds. Editing the file in place with SQLite's own
locking was not chosen: readers open registries ``mode=ro``, and a read-only
connection can neither wait out a writer's commit gracefully nor roll back the
hot journal a killed writer leaves, whereas a renamed copy gives every reader
the old file or the new one, never a lock, and a killed writer leaves only a
temporary (``.registry.sqlite3.<pid>.<hex>.tmp``, its journal kept in memory)
that the next ingest removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import numbers
import os
import re
import shutil
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from ..errors import RegistryConflictError, RegistryError
from ..safeio import atomic_write
from ..utils import sequencify
from .base import PLACEHOLDER, Registry

__all__ = ["SqliteRegistry", "quote_identifier", "build_select", "build_insert"]

_log = logging.getLogger(__name__)



def lookup_terms(dataId: Mapping | None) -> tuple[tuple[tuple[str, str], ...], tuple[str, str, str] | None, list]:
    """A `Registry.lookup` data ID as query terms: ``(column, placeholder)`` equalities, the range, bound values.

    A tuple key ``(start, end)`` is the one validity range (the value lies
    between those two columns); its value is bound last.
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
    return tuple(where), range_, values + range_value


def quote_identifier(name: str) -> str:
    """Quote a table or column name for SQL (``"name"``, inner quotes doubled)."""
    return '"' + str(name).replace('"', '""') + '"'


def _term(term: str) -> str:
    return PLACEHOLDER if term == PLACEHOLDER else quote_identifier(term)


def build_select(returnFields: Iterable[str], tables: Iterable[str], whereColumns: Iterable[tuple[str, str]],
                 range: Sequence[str] | None = None, limit: int | None = None) -> str:
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
    limit : `int`, optional
        At most this many rows, not made distinct (``SELECT ... LIMIT n``).
    """
    sql = (f"SELECT {'DISTINCT ' if limit is None else ''}{', '.join(map(quote_identifier, returnFields))} "
           f"FROM {' NATURAL JOIN '.join(map(quote_identifier, tables))}")
    clauses = [f"{quote_identifier(column)} = {_term(term)}" for column, term in whereColumns]
    if range is not None:
        value, start, end = range
        clauses.append(f"({_term(value)} BETWEEN {_term(start)} AND {_term(end)})")
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return sql


def build_insert(table: str, columns: Iterable[str], ignore_conflicts: bool = False) -> str:
    """Build ``INSERT [OR IGNORE] INTO table (columns) VALUES (?, ...)``; every name is quoted."""
    columns = list(columns)
    return (f"INSERT {'OR IGNORE ' if ignore_conflicts else ''}INTO {quote_identifier(table)} "
            f"({', '.join(map(quote_identifier, columns))}) VALUES ({', '.join(PLACEHOLDER * len(columns))})")


#: a declared column type: words, and an optional size (``VARCHAR(16)``, ``DOUBLE PRECISION``)
_SQL_TYPE = re.compile(r"[A-Za-z]+(?: [A-Za-z]+)*(?:\(\d+(?:, ?\d+)?\))?")


def _sql_type(table: str, column: str, sql_type: str) -> str:
    if not _SQL_TYPE.fullmatch(sql_type):
        raise RegistryError(f"column {column!r} of table {table!r}: {sql_type!r} is not an SQL type")
    return sql_type


@contextlib.contextmanager
def _locked_directory(directory: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` on a directory (released when the block ends, or the process does)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


#: the types sqlite3 binds as they are (`_bindable` is not called for them)
_BOUND_AS_IS = frozenset((str, int, float, bytes, type(None)))


def _bindable(value: Any) -> Any:
    """Turn numpy and other numeric scalars into the Python types sqlite3 binds."""
    if value is None or isinstance(value, (str, bytes, int, float)):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return str(value)


@attrs.define(eq=False)
class _Schema:
    """What a registry learnt of its file's schema: tables, columns, and the SQL of each query shape."""

    tables: list[str] | None = None
    columns: dict[str, dict[str, str]] = attrs.Factory(dict)
    statements: dict[tuple, str] = attrs.Factory(dict)


#: schemas of read-only registry files, by (path, device, inode, mtime, size); bounded, oldest dropped first
_SCHEMAS: dict[tuple, _Schema] = {}
_SCHEMAS_MAX = 256


def _file_version(location: str) -> tuple | None:
    """(path, device, inode, mtime, size) of a file, None when it cannot be read."""
    try:
        st = os.stat(location)
    except OSError:
        return None
    return (location, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


#: read connections of read-only registry files, by file version (`_file_version`), shared by the
#: registries of this process: a worker that unpickles a Butler per task connects (and SQLite reads the
#: schema) once per file, not once per task. Bounded, oldest dropped first (a connection still used
#: by a registry stays open with it); never carried into a forked child.
_READERS: dict[tuple, sqlite3.Connection] = {}
_READERS_MAX = 64
os.register_at_fork(after_in_child=_READERS.clear)


@functools.cache
def _closed_connection() -> sqlite3.Connection:
    """What a closed registry that shared its connection queries: every statement fails as on its own."""
    connection = sqlite3.connect(":memory:", check_same_thread=False)
    connection.close()
    return connection


def _shared_schema(key: tuple | None) -> _Schema:
    """The schema learnt by every reader of one version of a file in this process.

    A writer replaces the file by renaming a copy over it (a new inode), so a
    changed file is a new key; writable registries never share theirs.
    """
    if key is None:
        return _Schema()
    schema = _SCHEMAS.get(key)
    if schema is None:
        if len(_SCHEMAS) >= _SCHEMAS_MAX:
            del _SCHEMAS[next(iter(_SCHEMAS))]
        schema = _SCHEMAS[key] = _Schema()
    return schema


class SqliteRegistry(Registry):
    """A Gen2 SQLite registry (``registry.sqlite3`` or ``calibRegistry.sqlite3``).

    Parameters
    ----------
    location : `str` or `os.PathLike`
        The SQLite file. It must exist unless ``readOnly`` is false; a
        registry to be made reads as empty until its first transaction commits.
    readOnly : `bool`
        True (the default): the file is never modified and `transaction`
        raises. False: writes are allowed, through `transaction`.

    Attributes
    ----------
    conn : `sqlite3.Connection`
        The read connection, always ``mode=ro`` (shareable between threads).
    root : `str`
        The directory holding the file.
    location : `str`
        The file.
    """

    def __init__(self, location: str | os.PathLike, readOnly: bool = True):
        self.location = os.path.abspath(os.fspath(location))
        self.root = os.path.dirname(self.location)
        self.readOnly = readOnly
        if readOnly and not os.path.isfile(self.location):
            raise RegistryError(f"registry file not found: {self.location}")
        version = _file_version(self.location) if readOnly else None
        shared = _READERS.get(version) if version is not None else None
        self.conn = shared if shared is not None else self._connect_reader()
        self._writer: sqlite3.Connection | None = None
        self._depth = 0
        # shared only when the file connected to is surely the version named (not replaced meanwhile)
        same = version is not None and version == _file_version(self.location)
        self._schema = _shared_schema(version) if same else _Schema()
        self._shares_connection = same
        if same and shared is None and version is not None:
            if len(_READERS) >= _READERS_MAX:
                del _READERS[next(iter(_READERS))]
            _READERS[version] = self.conn

    def __repr__(self) -> str:
        return f"SqliteRegistry({self.location!r})"

    def _connect_reader(self) -> sqlite3.Connection:
        if not os.path.exists(self.location):  # not made yet (writable only): an empty schema
            return sqlite3.connect(":memory:", check_same_thread=False)
        uri = "file:" + urllib.parse.quote(self.location) + "?mode=ro"
        try:
            return sqlite3.connect(uri, uri=True, check_same_thread=False)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open registry {self.location}: {exc}") from exc

    def close(self) -> None:
        """Close the registry: further queries fail. A read connection shared with the other registries
        of the same file in this process is left open for them."""
        if self._shares_connection:
            self.conn = _closed_connection()
        else:
            self.conn.close()

    def _execute(self, sql: str, values: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement: in the open transaction if any, else on the read connection."""
        connection = self._writer if self._writer is not None else self.conn
        _log.debug("%s: %s %r", self.location, sql, values)
        try:
            return connection.execute(sql, [v if type(v) in _BOUND_AS_IS else _bindable(v) for v in values])
        except sqlite3.IntegrityError as exc:
            raise RegistryConflictError(f"{exc}: registry {self.location}; SQL: {sql}; "
                                        f"values: {list(values)!r}") from exc
        except sqlite3.Error as exc:
            raise RegistryError(f"registry query failed on {self.location}: {exc}; SQL: {sql}; "
                                f"values: {list(values)!r}") from exc

    def _query(self, sql: str, values: Sequence[Any] = ()) -> list[tuple]:
        return self._execute(sql, values).fetchall()

    # -- reads -------------------------------------------------------------------------------

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
        butler.errors.RegistrySchemaError
            For an unknown table, or a key or property that is no column of
            the tables (naming it and the columns there are).
        butler.errors.RegistryError
            When the query fails otherwise.
        """
        return self._query(*self._lookup_sql(lookupProperties, reference, dataId))

    def lookup_plan(self, lookupProperties: Sequence[str], reference: Sequence[str], keys: Sequence[str],
                    **kwargs: Any) -> Callable[[Sequence[Any]], list[tuple]]:
        """A `lookup` of one shape as a callable (see `Registry.lookup_plan`): the names are
        checked and the ``SELECT`` built here, once; each call only binds and runs it (`_runner`)."""
        return self._runner(self._select(tuple(lookupProperties), tuple(reference),
                                         tuple((key, PLACEHOLDER) for key in keys), None))

    def lookup_unique_plan(self, lookupProperties: Sequence[str], reference: Sequence[str], keys: Sequence[str],
                           **kwargs: Any) -> Callable[[Sequence[Any]], list[tuple]]:
        """As `lookup_plan`, for an answer used only when it is one row (see `Registry.lookup_unique_plan`).

        Where SQLite finds the rows through an index, at most two rows, not made
        distinct: no temporary B-tree. Where it would scan a table, the
        ``DISTINCT`` statement of `lookup_plan` (for which it may scan an index
        instead). Decided once, from ``EXPLAIN QUERY PLAN``.
        """
        fields, tables = tuple(lookupProperties), tuple(reference)
        where = tuple((key, PLACEHOLDER) for key in keys)
        sql = self._select(fields, tables, where, None, limit=2)
        if any(step.startswith("SCAN") for step in self._explain(sql, [None] * len(where))):
            sql = self._select(fields, tables, where, None)
        return self._runner(sql)

    def _runner(self, sql: str) -> Callable[[Sequence[Any]], list[tuple]]:
        """``run(values)``: the rows of a built ``SELECT`` for these values.

        Outside a transaction, with debug logging off, the statement runs straight on
        the read connection; a value sqlite3 cannot bind as it is, or any failure, is
        run again through `_execute`, which converts, logs and names what failed.
        """
        execute = self._execute
        logs, debug = _log.isEnabledFor, logging.DEBUG

        def run(values: Sequence[Any]) -> list[tuple]:
            if self._writer is None and not logs(debug):
                try:
                    return self.conn.execute(sql, values).fetchall()
                except sqlite3.Error:
                    pass
            return execute(sql, values).fetchall()

        return run

    def queryPlan(self, lookupProperties: Any, reference: Any, dataId: Mapping | None) -> list[str]:
        """Return SQLite's ``EXPLAIN QUERY PLAN`` of the `lookup` with the same arguments.

        Each string is one step of the plan (``SEARCH raw USING INDEX ...``,
        ``SCAN raw``...): a way to check that a lookup is answered from an index.
        """
        return self._explain(*self._lookup_sql(lookupProperties, reference, dataId))

    def _explain(self, sql: str, values: Sequence[Any]) -> list[str]:
        """The steps of SQLite's ``EXPLAIN QUERY PLAN`` of a built ``SELECT``."""
        return [row[-1] for row in self._query("EXPLAIN QUERY PLAN " + sql, values)]

    def _lookup_sql(self, lookupProperties: Any, reference: Any, dataId: Mapping | None) -> tuple[str, list]:
        """The ``SELECT`` of a `lookup` and its bound values."""
        where, range_, values = lookup_terms(dataId)
        sql = self._select(tuple(sequencify(lookupProperties)), tuple(sequencify(reference)), where, range_)
        return sql, values

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
        between: tuple[str, str, str] | None = None
        if range is not None:
            if len(range) == 2:
                between = (PLACEHOLDER, range[0], range[1])
            else:
                value, start, end = range
                between = (value, start, end)
        sql = self._select(tuple(sequencify(returnFields)), tuple(sequencify(joinClause)), where, between)
        return self._query(sql, list(values))

    def _select(self, fields: tuple[str, ...], tables: tuple[str, ...], where: tuple[tuple[str, str], ...],
                range: tuple[str, str, str] | None, limit: int | None = None) -> str:
        """Return the ``SELECT`` of one query shape, its names checked and its SQL built on first use.

        The cache is bounded by the schema: a shape is made of checked names only.
        """
        shape = ("select", fields, tables, where, range, limit)
        sql = self._schema.statements.get(shape)
        if sql is None:
            self._check_names(tables, [*fields, *(t for pair in where for t in pair), *(range or ())])
            sql = self._schema.statements[shape] = build_select(fields, tables, where, range, limit)
        return sql

    def tables(self) -> list[str]:
        """The names of the registry's tables (SQLite's own excluded), sorted."""
        if self._schema.tables is None:
            rows = self._query("SELECT name FROM sqlite_master WHERE type = 'table' "
                               "AND name NOT LIKE 'sqlite_%' ORDER BY name")
            self._schema.tables = [name for (name,) in rows]
        return list(self._schema.tables)

    def columns(self, table: str) -> dict[str, str]:
        """``{column: declared type}`` of a table, in schema order (empty for an unknown table)."""
        columns = self._schema.columns
        if table not in columns:
            rows = self._query(f"PRAGMA table_info({quote_identifier(table)})")
            columns[table] = {row[1]: row[2] for row in rows}
        return dict(columns[table])

    def rowCount(self, table: str) -> int:
        """The number of rows of a table."""
        self._check_names([table], [])
        return self._query(f"SELECT COUNT(*) FROM {quote_identifier(table)}")[0][0]

    def _forget_schema(self) -> None:
        """Drop what was learnt of the schema (it changed, or a change was undone)."""
        self._schema = _Schema()

    # -- writes ------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: committed together when the block ends, none of them if it raises.

        The outermost transaction locks the registry's directory, edits a
        copy of the file and renames it over the file on success; the file
        (made if missing) is the old one or the new one, never a mix. A nested
        transaction is a savepoint: if its block raises, its writes alone are
        undone and the exception goes on.

        Raises
        ------
        butler.errors.RegistryError
            When the registry was opened read-only.
        """
        if self.readOnly:
            raise self._read_only("start a transaction")
        if self._writer is not None:
            with self._savepoint():
                yield
            return
        with _locked_directory(self.root), atomic_write(self.location) as tmp:
            if os.path.exists(self.location):  # the current file: another writer may have replaced it
                shutil.copyfile(self.location, tmp)
                shutil.copymode(self.location, tmp)
            writer = sqlite3.connect(tmp, isolation_level=None, check_same_thread=False)
            try:
                writer.execute("PRAGMA journal_mode = MEMORY")  # a killed writer leaves no journal
                writer.execute("BEGIN IMMEDIATE")
                self._writer = writer
                self._forget_schema()
                yield
                writer.execute("COMMIT")
            finally:
                self._writer = None
                writer.close()
                self._forget_schema()
        self.conn.close()
        self.conn = self._connect_reader()
        _log.debug("committed %s", self.location)

    @contextlib.contextmanager
    def _savepoint(self) -> Iterator[None]:
        name = quote_identifier(f"savepoint_{self._depth}")
        self._depth += 1
        self._execute(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            self._execute(f"ROLLBACK TO {name}")
            self._execute(f"RELEASE {name}")
            self._forget_schema()
            raise
        else:
            self._execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    @property
    def _writing(self) -> bool:
        return self._writer is not None

    def create_table(self, name: str, columns: Sequence[tuple[str, str]], *, unique: Sequence[str] = (),
                     primary_key: str | None = None) -> None:
        """Create a table; an existing table must have the columns (see `Registry.create_table`).

        Raises
        ------
        butler.errors.RegistrySchemaError
            When the table exists without some of the columns, or ``unique``
            names a column the table does not have.
        """
        self._require_transaction(f"create table {name!r}")
        created = self._columns_to_create(name, columns, unique, primary_key)
        if created is None:
            return
        definitions = []
        if primary_key:
            definitions.append(f"{quote_identifier(primary_key)} INTEGER PRIMARY KEY AUTOINCREMENT")
        definitions += [f"{quote_identifier(column)} {_sql_type(name, column, sql_type)}"
                        for column, sql_type in created]
        if unique:
            definitions.append(f"UNIQUE({', '.join(map(quote_identifier, unique))})")
        self._execute(f"CREATE TABLE {quote_identifier(name)} ({', '.join(definitions)})")
        self._forget_schema()

    def create_index(self, table: str, columns: Sequence[str], name: str | None = None) -> None:
        """Create an index (named ``ix_<table>_<columns>`` by default) unless one of that name exists."""
        self._require_transaction(f"create an index on {table!r}")
        columns = list(columns)
        self.require_columns(table, columns)
        name = name or f"ix_{table}_{'_'.join(columns)}"
        self._execute(f"CREATE INDEX IF NOT EXISTS {quote_identifier(name)} ON {quote_identifier(table)} "
                      f"({', '.join(map(quote_identifier, columns))})")

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]], *,
               ignore_conflicts: bool = False) -> list[int | None]:
        """Insert rows into a table (see `Registry.insert`)."""
        self._require_transaction(f"insert into {table!r}")
        rowids: list[int | None] = []
        for row in rows:
            keys = tuple(row)
            shape = ("insert", table, keys, ignore_conflicts)
            sql = self._schema.statements.get(shape)
            if sql is None:
                self._check_names([table], keys)
                sql = self._schema.statements[shape] = build_insert(table, keys, ignore_conflicts)
            cursor = self._execute(sql, [row[key] for key in keys])
            rowids.append(cursor.lastrowid if cursor.rowcount else None)
        return rowids
