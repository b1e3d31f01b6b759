"""`Registry`: the one interface of the metadata registries, and the factory choosing one.

Every caller (mappers, ingest, the demo, the CLI) reads and writes a registry
through this interface only; nothing probes a registry for optional methods.

Reads: `lookup` and `executeQuery` (the Gen2 query forms), `queryMetadata`
(distinct values, data-ID keys the tables lack ignored), `tables` and
`columns` (the schema), and the ``root`` and ``location`` attributes.

Writes: `create_table`, `create_index` and `insert`, each inside
``with registry.transaction():``, which commits everything or nothing; a
nested ``transaction()`` is a savepoint (its block is undone alone when it
raises). A registry that cannot be written raises `RegistryError`.
"""

from __future__ import annotations

import abc
import contextlib
import importlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeGuard

import attrs

from ..errors import RegistryError, RegistrySchemaError
from ..storage.base import split_uri
from ..utils import sequencify

__all__ = ["Registry", "TableSpec"]

_log = logging.getLogger(__name__)


#: a ``whereFields`` or range term that stands for a bound value
PLACEHOLDER = "?"

#: URI schemes naming a PostgreSQL registry
POSTGRES_SCHEMES = ("postgresql", "postgres")


def is_postgres_uri(location: Any) -> TypeGuard[str]:
    """Whether ``location`` is a string naming a PostgreSQL registry (``postgresql://...``)."""
    return (isinstance(location, str) and "://" in location
            and location.split("://", 1)[0].lower() in POSTGRES_SCHEMES)


def _names(names: Iterable[str]) -> tuple[str, ...]:
    """Return column names as a tuple (a typed converter: the bare `tuple` leaves mypy without an item type)."""
    return tuple(names)


@attrs.frozen
class TableSpec:
    """The definition of one registry table, for `Registry.create_table` and `Registry.create_index`.

    Attributes
    ----------
    name : `str`
        The table.
    columns : `tuple` of ``(name, SQL type)``
        The columns, in order.
    unique : `tuple` of `str`
        The columns of the table's UNIQUE constraint (none when empty).
    primary_key : `str`, optional
        An ``INTEGER PRIMARY KEY AUTOINCREMENT`` column put first (``id`` of ``raw``).
    indexes : `tuple` of ``(index name, columns)``
        Indexes to create with the table.
    row_per_raw : `bool`
        The table holds at least one row per ``raw`` row, keyed by its ``id``
        (``raw_skyTile``): ingest adds ``{id: <raw id>}`` for each file it
        registers, the other columns NULL (unknown), so lookups that join the
        table to ``raw`` still see the file.
    """

    name: str
    columns: tuple[tuple[str, str], ...] = attrs.field(converter=lambda c: tuple(map(tuple, c)))
    unique: tuple[str, ...] = attrs.field(default=(), converter=_names)
    primary_key: str | None = None
    indexes: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(
        default=(), converter=lambda i: tuple((name, tuple(cols)) for name, cols in i))
    row_per_raw: bool = False

    @property
    def column_names(self) -> tuple[str, ...]:
        """Every column, the primary key first."""
        names = tuple(name for name, _ in self.columns)
        return names if self.primary_key is None else (self.primary_key, *names)


class Registry(abc.ABC):
    """The interface of the registries that answer metadata lookups for a mapper.

    Attributes
    ----------
    root : `str`
        The directory the registry describes (a repository or calibration root).
    location : `str`
        Where the registry lives: its file, or the directory scanned.
    """

    root: str
    location: str

    @staticmethod
    def create(location: Any, path: str | None = None) -> Registry | None:
        """Return a registry for a location, opened for reading.

        Parameters
        ----------
        location : `str`, `os.PathLike`, storage or `None`
            A ``.sqlite3`` file (→ `SqliteRegistry`), a
            ``postgresql://[user@]host[:port]/db[?schema=NAME]`` URI or a
            legacy ``.pgsql`` file (→ `PostgresRegistry`), or a directory
            (→ `PosixRegistry`); or a repository's storage
            (`butler.storage.StorageInterface`), with ``path`` relative to it.
        path : `str`, optional
            With a storage: the registry file, or the directory scanned
            (``""``: the storage's root), relative to the storage; or a
            ``postgresql://`` URI. A ``NAME.sqlite3`` that does not exist
            beside a ``NAME.pgsql`` file opens the latter (as Gen2 looked
            for ``registry.pgsql`` first).

        Returns
        -------
        registry : `Registry` or `None`
            `None` when ``location`` is `None` or names a ``.sqlite3`` or
            ``.pgsql`` file that does not exist (as in Gen2).

        Raises
        ------
        butler.errors.RegistryError
            When ``location`` is neither, or is a storage whose files are not
            local (a SQLite file or a directory scan needs local files).
        """
        if location is None:
            return None
        for uri in (path, location):
            if is_postgres_uri(uri):
                from .postgres import PostgresRegistry

                return PostgresRegistry(uri, root=getattr(location, "root", ""))
        if not isinstance(location, (str, os.PathLike)):
            return _create_in_storage(location, path or "")
        location = os.fspath(location)
        if location.endswith(".pgsql"):
            return Registry.create(*_local_file(location))
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

    # -- reads ---------------------------------------------------------------------------------

    @abc.abstractmethod
    def lookup(self, lookupProperties: Any, reference: Any, dataId: Mapping | None,
               **kwargs: Any) -> list[tuple]:
        """Return the distinct values of ``lookupProperties`` for the entries matching ``dataId``.

        Parameters
        ----------
        lookupProperties : `str` or sequence of `str`
            The columns to return, in order (a bare string is one column).
        reference : `str` or sequence of `str`
            The tables, joined.
        dataId : mapping or `None`
            ``column: value`` equalities; a ``(start, end)`` key asks for
            ``value BETWEEN start AND end``.
        **kwargs
            Hints for registries that need them (``template``, ``storage``).

        Raises
        ------
        butler.errors.RegistrySchemaError
            When a key or property is no column of the tables.
        """

    def lookup_plan(self, lookupProperties: Sequence[str], reference: Sequence[str], keys: Sequence[str],
                    **kwargs: Any) -> Callable[[Sequence[Any]], list[tuple]]:
        """Return a callable running one `lookup` shape: these columns, tables and equality keys.

        The plan holds the shape only (names, statement text), never rows: each
        call queries the registry as it is now. This default calls `lookup`;
        SQL registries check the names and build the statement once, here.

        Parameters
        ----------
        lookupProperties : sequence of `str`
            The columns to return, in order.
        reference : sequence of `str`
            The tables, joined.
        keys : sequence of `str`
            The data-ID keys compared for equality, in the order their values are given.
        **kwargs
            Hints passed to `lookup` (``template``, ``storage``).

        Returns
        -------
        run : callable
            ``run(values)``: the rows for ``values`` (one per key, in order).

        Raises
        ------
        butler.errors.RegistrySchemaError
            When a table, key or property is unknown (SQL registries say so here).
        """
        properties, tables, names = list(lookupProperties), list(reference), tuple(keys)

        def run(values: Sequence[Any]) -> list[tuple]:
            return self.lookup(properties, tables, dict(zip(names, values)), **kwargs)

        return run

    def lookup_unique_plan(self, lookupProperties: Sequence[str], reference: Sequence[str], keys: Sequence[str],
                           **kwargs: Any) -> Callable[[Sequence[Any]], list[tuple]]:
        """As `lookup_plan`, for a caller that uses the answer only when it is one row.

        ``run(values)`` may return rows not made distinct, and not all of them:
        one row returned is the one row `lookup` answers; any other number says
        nothing of `lookup`'s answer (the caller asks `lookup` itself). SQL
        registries ask for at most two rows without ``DISTINCT``; this default
        is `lookup_plan`.

        Raises
        ------
        butler.errors.RegistrySchemaError
            When a table, key or property is unknown (SQL registries say so here).
        """
        return self.lookup_plan(lookupProperties, reference, keys, **kwargs)

    @abc.abstractmethod
    def executeQuery(self, returnFields: Any, joinClause: Any, whereFields: Iterable | None,
                     range: Sequence[str] | None, values: Sequence[Any]) -> list[tuple]:
        """Run a lookup given in the Gen2 ``executeQuery`` form (see `SqliteRegistry.executeQuery`)."""

    def queryMetadata(self, reference: Any, format: Any, dataId: Mapping | None = None,
                      **kwargs: Any) -> list:
        """Return the distinct values of the ``format`` columns for the rows matching ``dataId``.

        Unlike `lookup`, data-ID keys that no table of ``reference`` has do
        not restrict the answer (as in Gen2 ``queryMetadata``).

        Parameters
        ----------
        reference : `str` or sequence of `str`
            The tables, joined.
        format : `str` or sequence of `str`
            One column (the answer is a list of values) or several (a list of tuples).
        dataId : mapping, optional
            The (partial) data ID.
        **kwargs
            Passed to `lookup`.
        """
        known = {column for table in sequencify(reference) for column in self.columns(table)}
        where = {key: value for key, value in (dataId or {}).items()
                 if isinstance(key, tuple) or key in known}
        rows = self.lookup(format, reference, where, **kwargs)
        return [row[0] for row in rows] if isinstance(format, str) else rows

    @abc.abstractmethod
    def tables(self) -> list[str]:
        """The names of the registry's tables, sorted (none for a registry without tables)."""

    @abc.abstractmethod
    def columns(self, table: str) -> dict[str, str]:
        """``{column: declared SQL type}`` of a table, in schema order; empty for an unknown table."""

    def _check_names(self, tables: Iterable[str], columns: Iterable[str]) -> dict[str, str]:
        """Refuse unknown tables and columns (never pasted into SQL unchecked); return the tables' ``{column: type}``.

        SQLite reads a double-quoted name that is no column as a string
        literal, so a typo would silently match nothing (or everything).
        """
        tables = list(tables)
        known: dict[str, str] = {}
        for table in tables:
            table_columns = self.columns(table)
            if not table_columns:
                raise RegistrySchemaError(f"no such table {table!r} in registry {self.location} "
                                          f"(its tables: {', '.join(self.tables()) or 'none'})")
            known.update(table_columns)
        unknown = [c for c in columns if c != PLACEHOLDER and c not in known]
        if unknown:
            raise RegistrySchemaError(f"no such column {', '.join(map(repr, unknown))} in tables {tables!r} "
                                      f"of registry {self.location}; known columns: {', '.join(known)}")
        return known

    def require_columns(self, table: str, columns: Iterable[str]) -> None:
        """Check that a table exists with (at least) the given columns.

        Raises
        ------
        butler.errors.RegistrySchemaError
            Naming the registry, the table and the missing columns.
        """
        known = self.columns(table)
        if not known:
            raise RegistrySchemaError(f"registry {self.location} has no table {table!r} "
                                      f"(its tables: {', '.join(self.tables()) or 'none'})")
        missing = [column for column in columns if column not in known]
        if missing:
            raise RegistrySchemaError(
                f"registry {self.location}: table {table!r} has no column {', '.join(map(repr, missing))} "
                f"(its columns: {', '.join(known)}); is it a registry of another schema?")

    # -- writes (a read-only registry refuses them) ----------------------------------------------

    #: a registry opened for reading refuses every write
    readOnly: bool = True

    def _read_only(self, what: str) -> RegistryError:
        return RegistryError(f"cannot {what}: registry {self.location} is read-only")

    @property
    def _writing(self) -> bool:
        """Whether a `transaction` is open (registries that write say how they know)."""
        return False

    def _require_transaction(self, what: str) -> None:
        """Refuse a write to a read-only registry, or one outside `transaction`."""
        if self.readOnly:
            raise self._read_only(what)
        if not self._writing:
            raise RegistryError(f"cannot {what} in registry {self.location} outside a transaction: "
                                f"write inside `with registry.transaction():`")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: all of them are committed when the block ends, none if it raises.

        A nested ``transaction()`` is a savepoint: if its block raises, its
        writes alone are undone and the exception goes on.
        """
        raise self._read_only("start a transaction")
        yield  # pragma: no cover - a generator, for the context manager

    def create_table(self, name: str, columns: Sequence[tuple[str, str]], *, unique: Sequence[str] = (),
                     primary_key: str | None = None) -> None:
        """Create a table; an existing table must have the columns (`RegistrySchemaError` otherwise).

        Parameters
        ----------
        name : `str`
            The table.
        columns : sequence of ``(name, SQL type)``
            Its columns.
        unique : sequence of `str`
            The columns of a UNIQUE constraint.
        primary_key : `str`, optional
            An ``INTEGER PRIMARY KEY AUTOINCREMENT`` column, put first.
        """
        raise self._read_only(f"create table {name!r}")

    def _columns_to_create(self, name: str, columns: Sequence[tuple[str, str]], unique: Sequence[str],
                           primary_key: str | None) -> list[tuple[str, str]] | None:
        """The ``(column, type)`` pairs `create_table` must create, or None when the table exists with them.

        Raises
        ------
        butler.errors.RegistrySchemaError
            When the existing table lacks some of the columns, or ``unique``
            names a column the table would not have.
        """
        columns = list(columns)
        names = ([primary_key] if primary_key else []) + [column for column, _ in columns]
        if name in self.tables():
            self.require_columns(name, names)
            return None
        strange = [column for column in unique if column not in names]
        if strange:
            raise RegistrySchemaError(f"UNIQUE column {', '.join(map(repr, strange))} is not a column of "
                                      f"table {name!r} ({', '.join(names)}) in registry {self.location}")
        return columns

    def create_index(self, table: str, columns: Sequence[str], name: str | None = None) -> None:
        """Create an index on columns of a table (nothing when an index of that name exists)."""
        raise self._read_only(f"create an index on {table!r}")

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]], *,
               ignore_conflicts: bool = False) -> list[int | None]:
        """Insert rows (``{column: value}``) into a table.

        Parameters
        ----------
        table : `str`
            The table.
        rows : iterable of mappings
            The rows; every key must be a column of the table.
        ignore_conflicts : `bool`
            Skip a row that breaks a UNIQUE constraint, instead of raising.

        Returns
        -------
        rowids : `list`
            The row id of each row inserted (None for a row skipped).

        Raises
        ------
        butler.errors.RegistrySchemaError
            For a key that is no column (naming it and the known columns).
        butler.errors.RegistryConflictError
            When a row breaks a UNIQUE constraint (and ``ignore_conflicts`` is false).
        """
        raise self._read_only(f"insert into {table!r}")

    # -- lifetime ----------------------------------------------------------------------------------

    def close(self) -> None:  # noqa: B027 (a hook: registries holding nothing need not override it)
        """Release what the registry holds (nothing by default)."""

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: URI scheme of a storage -> the registry class (dotted path) that asks its server, for registries not local
_REMOTE_REGISTRIES = {"http": "butler.registry.http.HttpRegistry", "https": "butler.registry.http.HttpRegistry"}


def _create_in_storage(storage: Any, path: str) -> Registry | None:
    """The registry at ``path`` in a storage (see `Registry.create`).

    A SQLite file is opened where the storage keeps it (`localFile`: for a
    local storage, the stored file itself); a directory is scanned in place.
    """
    if path.endswith(".sqlite3") and not storage.exists(path):
        legacy = path[:-len(".sqlite3")] + ".pgsql"
        if storage.exists(legacy):
            return _open_legacy_pgsql(storage, legacy)
        _log.debug("no registry %s in %s", path, storage.root)
        return None
    if path.endswith(".pgsql"):
        return _open_legacy_pgsql(storage, path) if storage.exists(path) else None
    remote = _REMOTE_REGISTRIES.get(split_uri(storage.root)[0])
    if remote is not None and path.endswith(".sqlite3"):  # a served repository's registry: asked of its server
        module, _, name = remote.rpartition(".")
        return getattr(importlib.import_module(module), name)(storage, path)
    if not storage.hasLocalFiles and storage.keepsLocalCopies and path.endswith(".sqlite3"):
        return Registry.create(storage.cachedLocalFile(path))  # a remote file: its cached copy
    if not storage.hasLocalFiles:
        raise RegistryError(f"cannot open the registry {path or '(file names)'} of {storage.root}: "
                            f"{type(storage).__name__} keeps no local files")
    with storage.localFile(path) as local:
        return Registry.create(local)


def _local_file(path: str) -> tuple[Any, str]:
    """The storage of a file in no repository, and its name there."""
    from ..storage import Storage

    return Storage.forFile(path)


def _open_legacy_pgsql(storage: Any, path: str) -> Registry:
    """The `PostgresRegistry` a Gen2 ``registry.pgsql`` file in a storage names (its mode checked if local)."""
    from .postgres import PostgresRegistry, read_legacy_file

    name = storage.locationWithRoot(path)
    mode = None
    if storage.hasLocalFiles:
        with storage.localFile(path) as local:
            mode = os.stat(local).st_mode
    with storage.openRead(path) as stream:
        target = read_legacy_file(stream, name, mode)
    return PostgresRegistry(target, root=storage.root)
