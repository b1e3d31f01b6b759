"""`PostgresRegistry`: a Gen2 registry kept in PostgreSQL, read and written with psycopg 3.

A registry is named by a URI, ``postgresql://[user@]host[:port]/database[?schema=NAME]``
(the host may be a percent-encoded Unix-socket directory, as libpq accepts), or
by a legacy Gen2 ``registry.pgsql`` YAML file (``host``, ``port``, ``database``,
``user`` and an optional ``password``; a file holding a password must be
readable by its owner only). Passwords otherwise come from libpq itself
(``~/.pgpass``, ``PGPASSFILE``, ``PGPASSWORD``), never from a URI.

Every identifier is quoted by `psycopg.sql`, every value is a bound parameter,
and every table and column of a query is checked against the schema first.

Connections: one per process and server (host, port, database, user), shared by
the registries of the process, in autocommit mode outside ``transaction()``. A
child made by ``fork`` never uses its parent's: its copies are disowned at the
fork (their socket pointed at ``/dev/null``, so closing them cannot end the
parent's session), and connections are keyed by process id. A connection found
dropped is reopened once, and the read is tried again; opening one is bounded
(``connect_timeout=5``, retried until `CONNECT_BUDGET` seconds have passed), so
a dead server gives `~butler.errors.RegistryUnavailable` within 10 seconds,
and refused credentials give a one-line `~butler.errors.AccessDenied`.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import logging
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import IO, Any

import attrs

from ..errors import (
    AccessDenied,
    RegistryConflictError,
    RegistryError,
    RegistryUnavailable,
    describe_data_id,
)
from ..utils import sequencify
from .base import PLACEHOLDER, POSTGRES_SCHEMES, Registry
from .sqlite import _bindable, _Schema, _sql_type, lookup_terms

__all__ = ["PgTarget", "PostgresRegistry", "close_connections", "copy_sqlite_registry", "parse_postgres_uri",
           "postgres_type", "read_legacy_file"]

_log = logging.getLogger(__name__)

#: seconds libpq waits for one connection attempt
CONNECT_TIMEOUT = 5
#: seconds spent opening a connection, retries included, before the server is declared unavailable
CONNECT_BUDGET = 6.0
#: connection-failure texts that mean the credentials were refused (not worth retrying)
_REFUSED = re.compile(r"password authentication failed|no password supplied|authentication failed|"
                      r"role \"[^\"]*\" does not exist|permission denied|pg_hba\.conf rejects")
#: the declared types of a copied or created table, by SQLite affinity (``INT`` -> ``bigint``...)
_AFFINITY_TYPES = (("INT", "bigint"), ("CHAR", "text"), ("CLOB", "text"), ("TEXT", "text"),
                   ("BLOB", "bytea"), ("REAL", "double precision"), ("FLOA", "double precision"),
                   ("DOUB", "double precision"))
#: a value that no row can equal (a text that is no number, compared with a numeric column)
_NO_MATCH = object()
_INT_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")


@attrs.frozen
class PgTarget:
    """Where a PostgreSQL registry lives.

    Attributes
    ----------
    host : `str` or `None`
        A host name or address, or a Unix-socket directory (an absolute path);
        None: libpq's default.
    port : `int` or `None`
        The port (None: libpq's default).
    database : `str`
        The database.
    user : `str` or `None`
        The role (None: libpq's default).
    schema : `str` or `None`
        The schema holding the tables (None: the connection's current schema).
    password : `str` or `None`
        From a legacy ``registry.pgsql`` file only; never shown.
    """

    host: str | None
    port: int | None
    database: str
    user: str | None = None
    schema: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    def describe(self) -> str:
        """``postgresql://user@host:port/database[?schema=...]``, as messages show it (no password)."""
        user = f"{self.user}@" if self.user else ""
        host = urllib.parse.quote(self.host or "", safe="") if self.host else ""
        port = f":{self.port}" if self.port is not None else ""
        schema = f"?schema={self.schema}" if self.schema else ""
        return f"postgresql://{user}{host}{port}/{self.database}{schema}"

    def server(self) -> str:
        """The server and database, for messages: ``socket /dir port 5432, database db`` or ``host h ...``."""
        where = (f"socket directory {self.host}" if self.host and self.host.startswith("/")
                 else f"host {self.host or '(libpq default)'}")
        return f"{where}, port {self.port or '(default)'}, database {self.database!r}, user {self.user or '(default)'}"

    @functools.cached_property
    def key(self) -> tuple:
        """What one connection serves: host, port, database, user."""
        return (self.host, self.port, self.database, self.user)


def parse_postgres_uri(uri: str) -> PgTarget:
    """Read ``postgresql://[user@]host[:port]/database[?schema=NAME]``.

    Raises
    ------
    butler.errors.RegistryError
        For a password in the URI (passwords come from ``~/.pgpass``,
        ``PGPASSFILE`` or ``PGPASSWORD``), a bad port, no database, or a query
        parameter other than ``schema``.
    """
    parts = urllib.parse.urlsplit(uri)
    if parts.scheme.lower() not in POSTGRES_SCHEMES:
        raise RegistryError(f"not a PostgreSQL registry URI: {uri!r}")
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if ":" in userinfo:
        user = urllib.parse.unquote(userinfo.split(":", 1)[0])
        raise RegistryError(f"registry URI postgresql://{user}@{hostport}{parts.path}: a password is never read "
                            "from a registry URI; put it in ~/.pgpass (or PGPASSFILE, PGPASSWORD)")
    host, port_text = hostport, ""
    if not hostport.startswith("["):  # an IPv6 address in brackets keeps its colons
        host, _, port_text = hostport.partition(":")
    try:
        port = int(port_text) if port_text else None
    except ValueError:
        raise RegistryError(f"registry URI {uri!r}: port {port_text!r} is not a number") from None
    database = urllib.parse.unquote(parts.path.lstrip("/"))
    if not database:
        raise RegistryError(f"registry URI {uri!r} names no database (postgresql://host/DATABASE)")
    query = urllib.parse.parse_qs(parts.query, keep_blank_values=True)
    unknown = sorted(set(query) - {"schema"})
    if unknown or any(len(values) != 1 for values in query.values()):
        raise RegistryError(f"registry URI {uri!r}: only one ?schema=NAME is understood, not {unknown or query}")
    return PgTarget(host=urllib.parse.unquote(host) or None, port=port, database=database,
                    user=urllib.parse.unquote(userinfo) or None,
                    schema=query["schema"][0] if "schema" in query else None)


def read_legacy_file(stream: IO[bytes], name: str, mode: int | None) -> PgTarget:
    """Read a Gen2 ``registry.pgsql`` file: YAML with ``host``, ``port``, ``database``, ``user``[, ``password``].

    Parameters
    ----------
    stream : binary stream
        The file's content (read with the bounded loader `butler.cfg.load_yaml`).
    name : `str`
        The file, for messages.
    mode : `int` or `None`
        Its permission bits (None: unknown, e.g. an object store).

    Raises
    ------
    butler.errors.AccessDenied
        When the file holds a password and others than its owner may read it
        (or its mode cannot be known).
    butler.errors.RegistryError
        When it is not such a mapping.
    """
    from ..cfg import load_yaml

    data = load_yaml(stream, source=name)
    if not isinstance(data, Mapping) or not data.get("database"):
        raise RegistryError(f"{name}: a registry.pgsql file is a YAML mapping with host, port, database, user "
                            f"(and optionally password); this one has no database")
    unknown = sorted(set(map(str, data)) - {"host", "port", "database", "user", "password"})
    if unknown:
        raise RegistryError(f"{name}: unknown keys {', '.join(unknown)} (known: host, port, database, user, "
                            "password)")
    password = data.get("password")
    if password is not None and (mode is None or mode & 0o077):
        shown = "unknown" if mode is None else oct(mode & 0o777)
        raise AccessDenied(f"{name} holds a password but its mode is {shown}: it must be readable by its "
                           f"owner only (chmod 600 {name}), or keep the password in ~/.pgpass instead")
    try:
        port = int(data["port"]) if data.get("port") is not None else None
    except (TypeError, ValueError):
        raise RegistryError(f"{name}: port {data['port']!r} is not a number") from None
    return PgTarget(host=str(data["host"]) if data.get("host") else None, port=port,
                    database=str(data["database"]), user=str(data["user"]) if data.get("user") else None,
                    password=str(password) if password is not None else None)


# -- connections: one per process and server ---------------------------------------------------------

_CONNECTIONS: dict[tuple, Any] = {}
#: this process's id (kept current by the fork hook: one system call less per statement)
_PID = os.getpid()
_CONNECTIONS_LOCK = threading.Lock()
#: connections a forked child inherited, kept alive: were pointing one's socket away to fail, collecting it
#: would still end the parent's session
_DISOWNED: list[Any] = []


def _disown_after_fork() -> None:
    """In a forked child: point every inherited connection's socket at /dev/null and forget it.

    libpq says goodbye to the server when a connection is closed or collected;
    done on the parent's socket, that would end the parent's session.
    """
    global _PID
    _PID = os.getpid()
    if not _CONNECTIONS:
        return
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for conn in _CONNECTIONS.values():
            with contextlib.suppress(Exception):
                os.dup2(null, conn.pgconn.socket)
            _DISOWNED.append(conn)
    finally:
        os.close(null)
    _CONNECTIONS.clear()


def close_connections() -> None:
    """Close this process's connections (at exit, or to give them back to the server).

    Registries open a new one when next used; a registry inside a
    ``transaction()`` block loses it (its writes are rolled back).
    """
    with _CONNECTIONS_LOCK:  # (a forked child has forgotten its parent's: every one here is this process's)
        for conn in _CONNECTIONS.values():
            with contextlib.suppress(Exception):
                conn.close()
        _CONNECTIONS.clear()


os.register_at_fork(after_in_child=_disown_after_fork)
atexit.register(close_connections)


def _connect(target: PgTarget, dataId: Any = None) -> Any:
    """Open a connection, retrying transient failures until `CONNECT_BUDGET` seconds have passed.

    Each attempt waits at most `CONNECT_TIMEOUT` seconds, and never much past
    the budget (libpq counts whole seconds, at least 2).
    """
    import psycopg

    params: dict[str, Any] = {"dbname": target.database, "application_name": "butler", "autocommit": True}
    for name, value in (("host", target.host), ("port", target.port), ("user", target.user),
                        ("password", target.password)):
        if value is not None:
            params[name] = value
    deadline = time.monotonic() + CONNECT_BUDGET
    delay = 0.1
    while True:
        remaining = deadline - time.monotonic()
        try:
            return psycopg.connect(**params, connect_timeout=max(2, min(CONNECT_TIMEOUT, math.ceil(remaining))))
        except psycopg.OperationalError as exc:
            text = _one_line(exc, target)
            if _REFUSED.search(text):
                raise AccessDenied(f"PostgreSQL registry {target.describe()} refused the connection "
                                   f"({target.server()}): {text}") from None
            if time.monotonic() + delay + 1 >= deadline:
                raise RegistryUnavailable(
                    f"PostgreSQL registry {target.describe()} is unavailable ({target.server()})"
                    f"{_for_data_id(dataId)}: {text}") from None
            _log.debug("cannot connect to %s (%s); retrying in %.1f s", target.describe(), text, delay)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def _one_line(exc: BaseException, target: PgTarget) -> str:
    """The error's text on one line, without the password (should a server ever echo it)."""
    text = " ".join(str(exc).split())
    if target.password:
        text = text.replace(target.password, "***")
    return text


def _for_data_id(dataId: Any) -> str:
    return f" looking up data ID {describe_data_id(dataId)}" if dataId else ""


def _connection(target: PgTarget, dataId: Any = None) -> Any:
    """This process's connection to the target's server, opened (or reopened) when needed."""
    key = (_PID, *target.key)
    conn = _CONNECTIONS.get(key)
    if conn is not None and not conn.closed:
        return conn
    with _CONNECTIONS_LOCK:
        conn = _CONNECTIONS.get(key)
        if conn is None or conn.closed:
            conn = _CONNECTIONS[key] = _connect(target, dataId)
    return conn


def _drop_connection(target: PgTarget, conn: Any) -> None:
    """Forget (and close) a connection found broken, so the next use opens a new one."""
    key = (_PID, *target.key)
    with _CONNECTIONS_LOCK:
        if _CONNECTIONS.get(key) is conn:
            del _CONNECTIONS[key]
    with contextlib.suppress(Exception):
        conn.close()


# -- values, by the kind of column they are compared with ---------------------------------------------


def postgres_type(table: str, column: str, declared: str) -> str:
    """The PostgreSQL type of a column declared (in SQLite's manner) as ``declared``.

    SQLite's affinity rules choose: a type containing ``INT`` is ``bigint`` (a
    SQLite integer has 64 bits), ``CHAR``/``CLOB``/``TEXT`` are ``text``,
    ``BLOB`` is ``bytea``, ``REAL``/``FLOA``/``DOUB`` are ``double
    precision``; another type is kept as written (after the same check as
    SQLite's ``create_table``).
    """
    upper = declared.upper()
    for fragment, pg_type in _AFFINITY_TYPES:
        if fragment in upper:
            return pg_type
    return _sql_type(table, column, declared or "text")


def _kind(pg_type: str) -> type | None:
    upper = pg_type.upper()
    if "INT" in upper:
        return int
    if "TEXT" in upper or "CHAR" in upper:
        return str
    if "DOUBLE" in upper or "REAL" in upper or "NUMERIC" in upper:
        return float
    return None


def _coerce(value: Any, kind: type | None) -> Any:
    """A value as SQLite would compare it with a column of that kind (its affinity); `_NO_MATCH` if never equal."""
    value = _bindable(value)
    if value is None or kind is None or isinstance(value, kind) and not isinstance(value, bool):
        return value
    if kind is str:
        return value.decode() if isinstance(value, bytes) else str(value)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, str):
        if _INT_TEXT.fullmatch(value):
            return int(value)
        try:
            return float(value)
        except ValueError:
            return _NO_MATCH
    return _NO_MATCH


# -- the registry ---------------------------------------------------------------------------------------


class PostgresRegistry(Registry):
    """A Gen2 registry whose tables are in a PostgreSQL database.

    Parameters
    ----------
    target : `PgTarget` or `str`
        Where it is: a `PgTarget`, or a ``postgresql://`` URI.
    readOnly : `bool`
        True (the default): `transaction` raises. False: writes are allowed, through `transaction`.
    root : `str`, optional
        The directory the registry describes (a repository root).

    Attributes
    ----------
    target : `PgTarget`
    location : `str`
        The URI (no password).
    root : `str`
    """

    def __init__(self, target: PgTarget | str, readOnly: bool = True, root: str = ""):
        self.target = parse_postgres_uri(target) if isinstance(target, str) else target
        self.location = self.target.describe()
        self.root = root
        self.readOnly = readOnly
        self._schema = _Schema()
        #: statements built once per query shape, with the kind of each bound value (and primary keys)
        self._built: dict[tuple, Any] = {}
        self._schema_name: str | None = self.target.schema
        self._transaction: Any = None

    def __repr__(self) -> str:
        return f"PostgresRegistry({self.location!r})"

    def __reduce__(self) -> tuple:
        """Pickle what names the registry; the unpickled one opens its own process's connection."""
        return (type(self), (self.target, self.readOnly, self.root))

    # -- running statements --------------------------------------------------------------------

    def _run(self, query: Any, values: Sequence[Any] = (), dataId: Any = None) -> list:
        """Run one statement and return its rows; a dropped connection is reopened once (outside a transaction).

        Raises
        ------
        butler.errors.RegistryUnavailable
            When the server cannot be reached (after one reconnection).
        butler.errors.RegistryConflictError
            When a write breaks a UNIQUE constraint.
        butler.errors.RegistryError
            When the statement fails otherwise.
        """
        for attempt in (0, 1):
            conn = self._transaction if self._transaction is not None else _connection(self.target, dataId)
            try:
                cursor = conn.execute(query, values)
                return cursor.fetchall() if cursor.rownumber is not None else []  # (not .description: slower)
            except Exception as exc:  # psycopg is imported here only: an error, not every statement, pays for it
                import psycopg

                if isinstance(exc, psycopg.errors.UniqueViolation):
                    raise RegistryConflictError(f"{_one_line(exc, self.target)}: registry {self.location}; "
                                                f"values: {list(values)!r}") from exc
                if not isinstance(exc, psycopg.Error):
                    raise
                if not isinstance(exc, psycopg.OperationalError) or not (conn.closed or conn.broken):
                    raise self._failed(exc, query, values) from exc
                if self._transaction is not None or attempt:
                    raise RegistryUnavailable(
                        f"PostgreSQL registry {self.location} dropped the connection ({self.target.server()})"
                        f"{_for_data_id(dataId)}: {_one_line(exc, self.target)}") from None
                _log.info("%s: connection dropped (%s); reconnecting", self.location, _one_line(exc, self.target))
                _drop_connection(self.target, conn)
        raise AssertionError("unreachable")  # pragma: no cover

    def _failed(self, exc: BaseException, query: Any, values: Sequence[Any]) -> RegistryError:
        text = query.as_string(None) if hasattr(query, "as_string") else str(query)
        return RegistryError(f"registry query failed on {self.location}: {_one_line(exc, self.target)}; "
                             f"SQL: {text}; values: {list(values)!r}")

    def _table(self, name: str) -> Any:
        from psycopg import sql

        return sql.Identifier(self._schema_name, name) if self._schema_name else sql.Identifier(name)

    def _current_schema(self) -> str:
        if self._schema_name is None:
            self._schema_name = str(self._run("SELECT current_schema()")[0][0])
        return self._schema_name

    # -- reads ---------------------------------------------------------------------------------

    def lookup(self, lookupProperties: Any, reference: Any, dataId: Mapping | None,
               **kwargs: Any) -> list[tuple]:
        """Return the distinct values of some columns for the rows matching a data ID (see `Registry.lookup`).

        The rows come sorted by the values returned (text bytewise), so an
        answer's order is the same on every run.

        Raises
        ------
        butler.errors.RegistrySchemaError
            For an unknown table, or a key or property that is no column of the tables.
        butler.errors.RegistryUnavailable
            When the server cannot be reached (naming it and the data ID).
        """
        where, range_, values = lookup_terms(dataId)
        return self._select_rows(tuple(sequencify(lookupProperties)), tuple(sequencify(reference)), where,
                                 range_, values, dataId)

    def lookup_plan(self, lookupProperties: Sequence[str], reference: Sequence[str], keys: Sequence[str],
                    **kwargs: Any) -> Callable[[Sequence[Any]], list[tuple]]:
        """A `lookup` of one shape as a callable (see `Registry.lookup_plan`): the names are
        checked and the statement rendered here, once; each call only binds and runs it."""
        names = tuple(keys)
        query, kinds = self._select(tuple(lookupProperties), tuple(reference),
                                    tuple((key, PLACEHOLDER) for key in names), None)
        bind_and_run = self._bind_and_run

        def run(values: Sequence[Any]) -> list[tuple]:
            return bind_and_run(query, kinds, values, dict(zip(names, values)))

        return run

    def executeQuery(self, returnFields: Any, joinClause: Any, whereFields: Iterable | None,
                     range: Sequence[str] | None, values: Sequence[Any]) -> list[tuple]:
        """Run a lookup given in the Gen2 ``executeQuery`` form (see `SqliteRegistry.executeQuery`)."""
        where = tuple((w, PLACEHOLDER) if isinstance(w, str) else tuple(w) for w in (whereFields or ()))
        between: tuple[str, str, str] | None = None
        if range is not None:
            between = (PLACEHOLDER, range[0], range[1]) if len(range) == 2 else tuple(range)  # type: ignore
        return self._select_rows(tuple(sequencify(returnFields)), tuple(sequencify(joinClause)), where, between,
                                 list(values), None)

    def _select_rows(self, fields: tuple[str, ...], tables: tuple[str, ...], where: tuple[tuple[str, str], ...],
                     range_: tuple[str, str, str] | None, values: list[Any], dataId: Any) -> list[tuple]:
        query, kinds = self._select(fields, tables, where, range_)
        return self._bind_and_run(query, kinds, values, dataId)

    def _bind_and_run(self, query: str, kinds: list[type | None], values: Sequence[Any], dataId: Any) -> list[tuple]:
        """Run a built ``SELECT`` with its values coerced to the kinds of their columns (no row for
        a value that can never equal its column)."""
        bound = [_coerce(value, kind) for value, kind in zip(values, kinds)]
        if _NO_MATCH in bound:
            return []
        return self._run(query, bound, dataId)

    def _select(self, fields: tuple[str, ...], tables: tuple[str, ...], where: tuple[tuple[str, str], ...],
                range_: tuple[str, str, str] | None) -> tuple[Any, list[type | None]]:
        """The ``SELECT`` of one query shape, and the kind of column each bound value is compared with.

        Names are checked against the schema and the statement composed once per shape.
        """
        from psycopg import sql

        shape = ("select", fields, tables, where, range_)
        built = self._built.get(shape)
        if built is not None:
            return built
        known = self._check_names(tables, [*fields, *(t for pair in where for t in pair), *(range_ or ())])

        def term(name: str) -> Any:
            return sql.Placeholder() if name == PLACEHOLDER else sql.Identifier(name)

        kinds: list[type | None] = []
        clauses = []
        for column, value in where:
            clauses.append(sql.SQL("{} = {}").format(sql.Identifier(column), term(value)))
            if value == PLACEHOLDER:
                kinds.append(_kind(known[column]))
        if range_ is not None:
            value, start, end = range_
            clauses.append(sql.SQL("({} BETWEEN {} AND {})").format(term(value), term(start), term(end)))
            for name, other in ((value, start), (start, value), (end, value)):
                if name == PLACEHOLDER:
                    kinds.append(_kind(known.get(other, "")))
        query = sql.SQL("SELECT DISTINCT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, fields)),
            sql.SQL(" NATURAL JOIN ").join(map(self._table, tables)))
        if clauses:
            query = query + sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses)
        # in order of the values returned: the same answer in the same order on every run (a hash plan would not)
        query = query + sql.SQL(" ORDER BY ") + sql.SQL(", ").join(map(sql.Identifier, fields))
        built = self._built[shape] = (query.as_string(None), kinds)  # rendered once: later calls only bind
        return built

    def tables(self) -> list[str]:
        """The names of the tables (and views) of the registry's schema, sorted."""
        if self._schema.tables is None:
            rows = self._run("SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
                             [self._current_schema()])
            self._schema.tables = sorted(name for (name,) in rows)
        return list(self._schema.tables)

    def columns(self, table: str) -> dict[str, str]:
        """``{column: PostgreSQL type}`` of a table, in schema order (empty for an unknown table)."""
        columns = self._schema.columns
        if table not in columns:
            rows = self._run("SELECT column_name, data_type FROM information_schema.columns "
                             "WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                             [self._current_schema(), table])
            columns[table] = {name: data_type for name, data_type in rows}
        return dict(columns[table])

    def rowCount(self, table: str) -> int:
        """The number of rows of a table."""
        from psycopg import sql

        self._check_names([table], [])
        return self._run(sql.SQL("SELECT COUNT(*) FROM {}").format(self._table(table)))[0][0]

    def _primary_key(self, table: str) -> str | None:
        """The (single-column) primary key of a table, if any."""
        shape = ("primary key", table)
        if shape not in self._built:
            rows = self._run("SELECT k.column_name FROM information_schema.table_constraints c "
                             "JOIN information_schema.key_column_usage k USING (constraint_schema, constraint_name) "
                             "WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = %s AND c.table_name = %s",
                             [self._current_schema(), table])
            self._built[shape] = rows[0][0] if len(rows) == 1 else None
        return self._built[shape]

    def _forget_schema(self) -> None:
        self._schema = _Schema()
        self._built = {}

    # -- writes ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes: committed together when the block ends, none of them if it raises.

        A nested transaction is a savepoint. A client killed inside the block
        leaves nothing: the server rolls back a transaction whose connection ends.

        Raises
        ------
        butler.errors.RegistryError
            When the registry was opened read-only.
        butler.errors.RegistryUnavailable
            When the connection is lost inside the block (nothing is committed).
        """
        import psycopg

        if self.readOnly:
            raise self._read_only("start a transaction")
        outer = self._transaction is None
        if outer:
            self._run("SELECT 1")  # a connection dropped since its last use is reopened (once) here
        conn = _connection(self.target) if outer else self._transaction
        try:
            with conn.transaction():
                self._transaction = conn
                try:
                    yield
                except BaseException:
                    self._forget_schema()
                    raise
                finally:
                    if outer:
                        self._transaction = None
        except psycopg.OperationalError as exc:
            if outer and (conn.closed or conn.broken):
                _drop_connection(self.target, conn)
            raise RegistryUnavailable(f"PostgreSQL registry {self.location} ({self.target.server()}): "
                                      f"the transaction was not committed: {_one_line(exc, self.target)}") from None
        if outer:
            _log.debug("committed %s", self.location)

    @property
    def _writing(self) -> bool:
        return self._transaction is not None

    def create_table(self, name: str, columns: Sequence[tuple[str, str]], *, unique: Sequence[str] = (),
                     primary_key: str | None = None) -> None:
        """Create a table (and the schema, if missing); an existing table must have the columns.

        Declared types are mapped by SQLite's affinity (`postgres_type`); text
        columns compare bytewise (``COLLATE "C"``), as in SQLite. The primary
        key is a ``bigint`` identity column.
        """
        from psycopg import sql

        self._require_transaction(f"create table {name!r}")
        created = self._columns_to_create(name, columns, unique, primary_key)
        if created is None:
            return
        definitions = []
        if primary_key:
            definitions.append(sql.SQL("{} bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY").format(
                sql.Identifier(primary_key)))
        for column, declared in created:
            pg_type = postgres_type(name, column, declared)
            collate = ' COLLATE "C"' if pg_type == "text" else ""
            definitions.append(sql.SQL("{} " + pg_type + collate).format(sql.Identifier(column)))
        if unique:
            definitions.append(sql.SQL("UNIQUE ({})").format(sql.SQL(", ").join(map(sql.Identifier, unique))))
        if self.target.schema:
            self._run(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.target.schema)))
        self._run(sql.SQL("CREATE TABLE {} ({})").format(self._table(name), sql.SQL(", ").join(definitions)))
        self._forget_schema()

    def create_index(self, table: str, columns: Sequence[str], name: str | None = None,
                     unique: bool = False) -> None:
        """Create an index (named ``ix_<table>_<columns>`` by default) unless one of that name exists."""
        from psycopg import sql

        self._require_transaction(f"create an index on {table!r}")
        columns = list(columns)
        self.require_columns(table, columns)
        name = name or f"ix_{table}_{'_'.join(columns)}"
        self._run(sql.SQL("CREATE {}INDEX IF NOT EXISTS {} ON {} ({})").format(
            sql.SQL("UNIQUE " if unique else ""), sql.Identifier(name), self._table(table),
            sql.SQL(", ").join(map(sql.Identifier, columns))))

    def insert(self, table: str, rows: Iterable[Mapping[str, Any]], *,
               ignore_conflicts: bool = False) -> list[int | None]:
        """Insert rows into a table (see `Registry.insert`).

        The row id is the value of the table's primary key (0 for a table without one).
        """
        from psycopg import sql

        self._require_transaction(f"insert into {table!r}")
        rowids: list[int | None] = []
        for row in rows:
            keys = tuple(row)
            shape = ("insert", table, keys, ignore_conflicts)
            built = self._built.get(shape)
            if built is None:
                known = self._check_names([table], keys)
                key = self._primary_key(table)
                statement = sql.SQL("INSERT INTO {} ({}) VALUES ({}){} RETURNING {}").format(
                    self._table(table), sql.SQL(", ").join(map(sql.Identifier, keys)),
                    sql.SQL(", ").join(sql.Placeholder() * len(keys)),
                    sql.SQL(" ON CONFLICT DO NOTHING" if ignore_conflicts else ""),
                    sql.Identifier(key) if key else sql.SQL("0"))
                built = self._built[shape] = (statement.as_string(None), [_kind(known[k]) for k in keys])
            query, kinds = built
            values = [_coerce(row[k], kind) for k, kind in zip(keys, kinds)]
            if _NO_MATCH in values:
                raise RegistryError(f"cannot insert {dict(row)!r} into {table!r} of registry {self.location}: "
                                    f"a value is not of its column's type ({self.columns(table)})")
            result = self._run(query, values)
            rowids.append(result[0][0] if result else None)
        return rowids

    def copy_rows(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
        """Add rows (value tuples in the order of ``columns``) to a table with ``COPY``, inside a transaction.

        Returns the number of rows. Unlike `insert`, no row id is returned and
        no conflict is skipped: for bulk copies.
        """
        from psycopg import sql

        self._require_transaction(f"copy rows into {table!r}")
        self._check_names([table], columns)
        statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
            self._table(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        count = 0
        try:
            with self._transaction.cursor() as cursor, cursor.copy(statement) as copy:
                for row in rows:
                    copy.write_row([_bindable(value) for value in row])
                    count += 1
        except Exception as exc:
            import psycopg

            if isinstance(exc, psycopg.OperationalError) and (self._transaction.closed or self._transaction.broken):
                raise RegistryUnavailable(f"PostgreSQL registry {self.location} dropped the connection "
                                          f"({self.target.server()}): {_one_line(exc, self.target)}") from None
            if isinstance(exc, psycopg.Error):
                raise RegistryError(f"cannot copy rows into table {table!r} of registry {self.location}: "
                                    f"{_one_line(exc, self.target)}") from exc
            raise
        return count

    def restart_identity(self, table: str, column: str) -> None:
        """Make the next identity value of ``column`` follow the largest one in the table (after a copy)."""
        from psycopg import sql

        self._require_transaction(f"restart the identity of {table!r}")
        self._check_names([table], [column])
        qualified = self._table(table).as_string(self._transaction)
        self._run(sql.SQL("SELECT setval(pg_get_serial_sequence(%s, %s), "
                          "(SELECT COALESCE(MAX({}), 0) + 1 FROM {}), false)").format(
                              sql.Identifier(column), self._table(table)), [qualified, column])


def copy_sqlite_registry(source: str | os.PathLike, destination: str | PgTarget) -> dict[str, int]:
    """Copy a SQLite registry (tables, rows, indexes) into a PostgreSQL registry, in one transaction.

    Column types follow SQLite's affinity (`postgres_type`); an ``INTEGER
    PRIMARY KEY`` becomes an identity column that continues after the largest
    copied id; UNIQUE constraints and indexes are recreated under their names.

    Parameters
    ----------
    source : `str` or `os.PathLike`
        The ``.sqlite3`` file (read only).
    destination : `str` or `PgTarget`
        A ``postgresql://`` URI; its tables must not exist yet.

    Returns
    -------
    counts : `dict`
        ``{table: rows copied}``.

    Raises
    ------
    butler.errors.RegistryError
        When the source cannot be read, or a table exists in the destination
        already (nothing is written).
    """
    from .sqlite import SqliteRegistry, quote_identifier

    counts: dict[str, int] = {}
    dst = PostgresRegistry(destination, readOnly=False)
    with SqliteRegistry(source) as src:
        tables = [table for table in src.tables() if table != "sqlite_sequence"]
        existing = sorted(set(tables) & set(dst.tables()))
        if existing:
            raise RegistryError(f"cannot copy {src.location} into {dst.location}: table "
                                f"{', '.join(map(repr, existing))} exists there already")
        with dst.transaction():
            for table in tables:
                counts[table] = _copy_table(src, dst, table, quote_identifier(table))
    _log.info("copied %s into %s: %s", os.fspath(source), dst.location, counts)
    return counts


def _copy_table(src: Any, dst: PostgresRegistry, table: str, quoted: str) -> int:
    """Copy one table of a `SqliteRegistry` (schema, rows, indexes) into ``dst``, in its open transaction."""
    from .sqlite import quote_identifier

    info = src.conn.execute(f"PRAGMA table_info({quoted})").fetchall()
    keys = [row for row in info if row[5]]
    primary_key = keys[0][1] if len(keys) == 1 and "INT" in keys[0][2].upper() else None
    unique: list[str] = []
    indexes: list[tuple[str, list[str], bool]] = []
    for _, name, is_unique, origin, _partial in src.conn.execute(f"PRAGMA index_list({quoted})").fetchall():
        columns = [row[2] for row in src.conn.execute(f"PRAGMA index_info({quote_identifier(name)})").fetchall()]
        if origin == "u" and not unique:
            unique = columns
        elif origin != "pk":
            indexes.append((name, columns, bool(is_unique)))
    columns = [(row[1], row[2]) for row in info if row[1] != primary_key]
    dst.create_table(table, columns, unique=unique, primary_key=primary_key)
    names = [row[1] for row in info]
    count = dst.copy_rows(table, names, src.conn.execute(
        f"SELECT {', '.join(map(quote_identifier, names))} FROM {quoted}"))
    if primary_key:
        dst.restart_identity(table, primary_key)
    for name, index_columns, is_unique in indexes:
        dst.create_index(table, index_columns, name=name, unique=is_unique)
    return count
