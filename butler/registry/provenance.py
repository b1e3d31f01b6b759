"""`ProvenanceStore`: the provenance records of one repository, in ``provenance.sqlite3`` at its root.

Tables: ``run`` (one per Butler that wrote here), ``quantum`` (a
``Butler.quantum`` block and its settings), ``dataset`` (one row per file a put
wrote: UUID, dataset type, data ID, path, size, SHA-256, time, state, and its
input set), ``inputset`` and ``edge`` (the inputs: the input's UUID when it has
a record, and always its repository, path, size, mtime and digest as read).

An input set is its own edges plus those of its ``parent`` set. Puts of one
scope share a set while the scope reads nothing new, and a put after new
reads writes a set of the new edges only, chained to the last one: a Butler
that alternates gets and puts over its lifetime writes each input once, not
once per put after it.

Why not the `Registry` protocol's ``transaction()``: that edits a copy of the
whole file and renames it into place, one writer at a time. Provenance is
written on every put, by many processes at once, so this store edits the file
in place in SQLite's WAL mode: a write transaction is an append to the
``-wal`` file (no fsync, as the package's atomic writes; set
``BUTLER_FSYNC=1`` for ``synchronous=FULL``), writers take turns on SQLite's
lock with a long busy timeout, and readers never block writers.

Crash consistency with the dataset file. A put inserts its record as
``pending`` (one transaction) *before* the file is published (renamed into
place), and its Butler marks it ``done`` when the quantum that wrote it ends,
when its provenance is asked, or when the Butler is collected. A reader takes
a ``done`` record as it is, and a ``pending`` record only when the file at its
path has the record's digest. So a writer
killed at any point leaves, to a reader, either the new file and its record,
or neither (the older file, if any, with its older record).

Readers never write an input repository: a database whose writers all closed
(no ``-wal`` file) is opened ``immutable``, so SQLite makes no ``-wal`` or
``-shm`` file beside it; one being written (or left by a killed writer) is
opened ``mode=ro`` and shares the writers' files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import RegistryError

__all__ = ["ProvenanceStore", "PROVENANCE_FILENAME", "DONE", "PENDING"]

_log = logging.getLogger(__name__)

#: the store's file, at the root of a repository
PROVENANCE_FILENAME = "provenance.sqlite3"
#: states of a dataset record
PENDING, DONE = "pending", "done"
#: how long a writer waits for another writer's transaction, in milliseconds
BUSY_TIMEOUT_MS = 120_000

RUN_COLUMNS = ("uuid", "start", "end", "user", "host", "command", "python", "packages", "inputs", "outputs",
               "tags")
QUANTUM_COLUMNS = ("uuid", "run", "label", "config", "start")
DATASET_COLUMNS = ("uuid", "run", "quantum", "datasetType", "dataId", "path", "size", "sha256", "time", "inputs",
                   "state")
INPUTSET_COLUMNS = ("uuid", "parent")
EDGE_COLUMNS = ("inputset", "position", "input", "datasetType", "dataId", "repository", "path", "size", "mtime",
                "sha256")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS run (uuid TEXT PRIMARY KEY, start TEXT, end TEXT, user TEXT, host TEXT, "
    "command TEXT, python TEXT, packages TEXT, inputs TEXT, outputs TEXT, tags TEXT)",
    "CREATE TABLE IF NOT EXISTS quantum (uuid TEXT PRIMARY KEY, run TEXT, label TEXT, config TEXT, start TEXT)",
    "CREATE TABLE IF NOT EXISTS dataset (uuid TEXT PRIMARY KEY, run TEXT, quantum TEXT, datasetType TEXT, "
    "dataId TEXT, path TEXT, size INTEGER, sha256 TEXT, time TEXT, inputs TEXT, state TEXT)",
    "CREATE TABLE IF NOT EXISTS inputset (uuid TEXT PRIMARY KEY, parent TEXT)",
    "CREATE INDEX IF NOT EXISTS dataset_path ON dataset (path)",
    "CREATE TABLE IF NOT EXISTS edge (inputset TEXT, position INTEGER, input TEXT, datasetType TEXT, dataId TEXT, "
    "repository TEXT, path TEXT, size INTEGER, mtime REAL, sha256 TEXT)",
    "CREATE INDEX IF NOT EXISTS edge_inputset ON edge (inputset)",
)


def _insert_sql(table: str, columns: Sequence[str], verb: str = "INSERT") -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"


_INSERT_RUN = _insert_sql("run", RUN_COLUMNS, "INSERT OR IGNORE")
_INSERT_QUANTUM = _insert_sql("quantum", QUANTUM_COLUMNS, "INSERT OR IGNORE")
_INSERT_DATASET = _insert_sql("dataset", DATASET_COLUMNS)
_INSERT_INPUTSET = _insert_sql("inputset", INPUTSET_COLUMNS)
_INSERT_EDGE = _insert_sql("edge", EDGE_COLUMNS)
#: the edges of an input set and of its ancestors, oldest first
_SELECT_EDGES = (
    "WITH RECURSIVE chain(uuid, depth) AS (SELECT ?, 0 UNION ALL SELECT s.parent, chain.depth + 1 "
    "FROM inputset AS s JOIN chain ON s.uuid = chain.uuid WHERE s.parent IS NOT NULL) "
    "SELECT edge.* FROM edge JOIN chain ON edge.inputset = chain.uuid ORDER BY chain.depth DESC, edge.position")


def _rows_as_dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


class ProvenanceStore:
    """The provenance records of one repository.

    Made by `for_reading` (readers) or `for_writing` (the outputs of a Butler).

    Parameters
    ----------
    location : `str`
        The database file.
    connection : `sqlite3.Connection`
        An open connection (autocommit; transactions are explicit).
    writable : `bool`
        Whether this store may write.
    """

    def __init__(self, location: str, connection: sqlite3.Connection, writable: bool):
        self.location = location
        self._conn = connection
        self.writable = writable

    def __repr__(self) -> str:
        return f"ProvenanceStore({self.location!r}{', writable' if self.writable else ''})"

    # -- opening -------------------------------------------------------------------------------

    @staticmethod
    def _local(storage: Any) -> str | None:
        """The store's local file in a storage, or None when the storage keeps no local files."""
        if not storage.hasLocalFiles:
            return None
        with storage.localFile(PROVENANCE_FILENAME) as local:
            return local

    @classmethod
    def for_reading(cls, storage: Any) -> ProvenanceStore | None:
        """The store of a repository, opened for reading; None when it has none (or keeps no local files).

        Nothing is created or written (see the module's notes).
        """
        location = cls._local(storage)
        if location is None or not os.path.isfile(location):
            return None
        quoted = urllib.parse.quote(location)
        uri = f"file:{quoted}?mode=ro" if os.path.exists(location + "-wal") else f"file:{quoted}?immutable=1"
        try:
            connection = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            connection.execute("SELECT 1 FROM dataset LIMIT 1")
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot read the provenance records {location}: {exc}") from exc
        return cls(location, connection, writable=False)

    @classmethod
    def for_writing(cls, storage: Any) -> ProvenanceStore | None:
        """The store of an output repository, made when missing; None when the storage keeps no local files."""
        location = cls._local(storage)
        if location is None:
            _log.debug("no provenance recorded in %s: its storage keeps no local files", storage.root)
            return None
        try:
            connection = sqlite3.connect(location, isolation_level=None, check_same_thread=False,
                                         timeout=BUSY_TIMEOUT_MS / 1000)
            connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            _retry_busy(lambda: connection.execute("PRAGMA journal_mode = WAL"), location)
            # atomic, not synchronous, as every write of the package: a killed process loses nothing
            # committed (the kernel has it); BUTLER_FSYNC=1 adds durability across a power failure
            sync = "FULL" if os.environ.get("BUTLER_FSYNC") == "1" else "OFF"
            connection.execute(f"PRAGMA synchronous = {sync}")
            store = cls(location, connection, writable=True)
            with store._transaction():
                for statement in _SCHEMA:
                    connection.execute(statement)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot open the provenance records {location} for writing: {exc}") from exc
        return store

    def close(self) -> None:
        """Close the connection (the last writer to close folds the ``-wal`` file back into the database)."""
        self._conn.close()

    # -- writes --------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if not self.writable:
            raise RegistryError(f"cannot write provenance records: {self.location} is open for reading")
        _retry_busy(lambda: self._conn.execute("BEGIN IMMEDIATE"), self.location)
        try:
            yield self._conn
            _retry_busy(lambda: self._conn.execute("COMMIT"), self.location)
        except BaseException:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise

    def add_pending(self, dataset: Mapping[str, Any], inputset: Mapping[str, Any] | None,
                    edges: Sequence[Mapping[str, Any]], run: Mapping[str, Any] | None,
                    quantum: Mapping[str, Any] | None) -> None:
        """Record a dataset about to be published, in one transaction.

        Parameters
        ----------
        dataset : mapping
            The ``dataset`` row (`DATASET_COLUMNS` but ``state``: it is pending);
            its ``inputs`` names its input set.
        inputset : mapping, optional
            A new ``inputset`` row (``uuid``, ``parent``), when the dataset's set is new.
        edges : sequence of mappings
            The new set's own ``edge`` rows.
        run, quantum : mapping, optional
            The ``run`` and ``quantum`` rows (kept when already there).
        """
        values = [dataset.get(c) for c in DATASET_COLUMNS[:-1]] + [PENDING]
        try:
            if inputset is None and run is None and quantum is None:  # one statement: its own transaction
                _retry_busy(lambda: self._conn.execute(_INSERT_DATASET, values), self.location)
                return
            with self._transaction() as conn:
                if run is not None:
                    conn.execute(_INSERT_RUN, [run.get(c) for c in RUN_COLUMNS])
                if quantum is not None:
                    conn.execute(_INSERT_QUANTUM, [quantum.get(c) for c in QUANTUM_COLUMNS])
                if inputset is not None:
                    conn.execute(_INSERT_INPUTSET, [inputset.get(c) for c in INPUTSET_COLUMNS])
                    conn.executemany(_INSERT_EDGE, [[edge.get(c) for c in EDGE_COLUMNS] for edge in edges])
                conn.execute(_INSERT_DATASET, values)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot record the provenance of {dataset.get('datasetType')} "
                                f"{dataset.get('dataId')} ({dataset.get('path')}) in {self.location}: {exc}") from exc

    def finish(self, done: Sequence[str], runs: Mapping[str, str] | None = None) -> None:
        """Mark records done (their files are published) and set the end time of runs (``{uuid: end}``)."""
        if not done and not runs:
            return
        try:
            with self._transaction() as conn:
                self._mark_done(conn, done)
                for uuid, end in (runs or {}).items():
                    conn.execute('UPDATE run SET "end" = ? WHERE uuid = ?', (end, uuid))
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot finish provenance records in {self.location}: {exc}") from exc

    @staticmethod
    def _mark_done(conn: sqlite3.Connection, uuids: Sequence[str]) -> None:
        if uuids:
            conn.executemany("UPDATE dataset SET state = ? WHERE uuid = ?", [(DONE, u) for u in uuids])

    # -- reads ---------------------------------------------------------------------------------

    def _select(self, sql: str, values: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            return _rows_as_dicts(self._conn.execute(sql, values))
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot read the provenance records {self.location}: {exc}; SQL: {sql}") from exc

    def datasets_at(self, path: str) -> list[dict[str, Any]]:
        """The ``dataset`` rows of a path, newest first (pending ones included: see `is_valid`)."""
        return self._select("SELECT * FROM dataset WHERE path = ? ORDER BY rowid DESC", (path,))

    def dataset(self, uuid: str) -> dict[str, Any] | None:
        """The ``dataset`` row of a UUID, or None."""
        rows = self._select("SELECT * FROM dataset WHERE uuid = ?", (uuid,))
        return rows[0] if rows else None

    def datasets(self, datasetTypes: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every ``dataset`` row (of the given dataset types), oldest first."""
        if not datasetTypes:
            return self._select("SELECT * FROM dataset ORDER BY rowid")
        marks = ", ".join("?" * len(datasetTypes))
        return self._select(f"SELECT * FROM dataset WHERE datasetType IN ({marks}) ORDER BY rowid",
                            tuple(datasetTypes))

    def edges(self, inputset: str | None) -> list[dict[str, Any]]:
        """The ``edge`` rows of an input set (a dataset's ``inputs``) with its ancestors', in read order."""
        return self._select(_SELECT_EDGES, (inputset,)) if inputset else []

    def run(self, uuid: str) -> dict[str, Any] | None:
        """The ``run`` row of a UUID (JSON columns decoded), or None."""
        rows = self._select("SELECT * FROM run WHERE uuid = ?", (uuid,))
        if not rows:
            return None
        row = rows[0]
        for column in ("packages", "inputs", "outputs", "tags"):
            row[column] = json.loads(row[column]) if row[column] else None
        return row

    def quantum(self, uuid: str | None) -> dict[str, Any] | None:
        """The ``quantum`` row of a UUID (its config decoded), or None."""
        if uuid is None:
            return None
        rows = self._select("SELECT * FROM quantum WHERE uuid = ?", (uuid,))
        if not rows:
            return None
        row = rows[0]
        row["config"] = json.loads(row["config"]) if row["config"] else None
        return row


def _retry_busy(statement: Any, location: str, attempts: int = 50) -> Any:
    """Run a statement, retrying while SQLite answers "locked" or "busy" outside its busy handler
    (a journal-mode change or a lock upgrade it will not wait for)."""
    for attempt in range(attempts):
        try:
            return statement()
        except sqlite3.OperationalError as exc:
            message = str(exc)
            if ("locked" not in message and "busy" not in message) or attempt == attempts - 1:
                raise
            _log.debug("%s busy (%s): retrying", location, message)
            time.sleep(min(0.005 * (attempt + 1), 0.2))
    raise AssertionError("unreachable")
