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
in place in SQLite's WAL mode (writers take turns on SQLite's lock with a long
busy timeout, readers never block writers), and a put does not even commit to
it: each writing store owns a **journal**, a file beside the database
(``provenance.sqlite3-<hex>.sqlite3-journal``, named like SQLite's own files
so that whatever skips those skips it; registered in the ``journal`` table
when the store opens) to which a put appends its rows as one JSON line (one
``write``). The journal is folded into the database in one transaction (its
rows inserted, its ``folded`` offset moved to its end) when its records are
finished, and every few hundred records (bounding what readers parse); the
store's last fold unregisters and removes it. Neither the journal nor the database is fsynced, as the package's
atomic writes; with ``BUTLER_FSYNC=1`` each append is fsynced and SQLite runs
``synchronous=FULL`` (else ``NORMAL``: a commit is not synced, the database is
never corrupted).

Readers read, in this order, the registered journals (from their ``folded``
offset: what is not yet in the database) and then the database, and take a row
found in both once: a fold between the two reads loses nothing. A line without
its newline (a writer killed mid-append) is ignored.

Crash consistency with the dataset file. A put appends its record, as
``pending``, *before* the file is published (renamed into place), and its
Butler marks it ``done`` when the quantum that wrote it ends, when its
provenance is asked, or when the Butler is collected. A reader takes a ``done``
record as it is, and a ``pending`` record only when the file at its path has
the record's digest. So a writer killed at any point leaves, to a reader,
either the new file and its record, or neither (the older file, if any, with
its older record). A journal's owner holds an ``flock`` on it for its
lifetime; the next store opened for writing folds the journals of dead owners
(their records stay pending) and removes them.

Readers never write an input repository: a database whose writers all closed
(no ``-wal`` file) is opened ``immutable``, so SQLite makes no ``-wal`` or
``-shm`` file beside it; one being written (or left by a killed writer) is
opened ``mode=ro`` and shares the writers' files. Journals are opened read-only.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import sqlite3
import time
import urllib.parse
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from json.encoder import encode_basestring_ascii
from typing import Any

from ..errors import RegistryError
from ..safeio import FSYNC, atomic_write

__all__ = ["ProvenanceStore", "PROVENANCE_FILENAME", "DONE", "PENDING", "is_store_file"]

_log = logging.getLogger(__name__)

#: the store's file, at the root of a repository
PROVENANCE_FILENAME = "provenance.sqlite3"
#: states of a dataset record
PENDING, DONE = "pending", "done"
#: the name of a journal, at the root beside the database
_JOURNAL_NAME = re.compile(re.escape(PROVENANCE_FILENAME) + r"-[0-9a-f]+\.sqlite3-journal")
#: the encoder of journal lines (one for all: `json.dumps` with options makes a new one per call; a line
#: holds lists of plain values, so there is no cycle to look for)
_LINE_JSON = json.JSONEncoder(separators=(",", ":"), check_circular=False)
#: the JSON text of a plain value, by its exact type, as `json` writes it (text is quoted by the function
#: `json` itself quotes with): what a record holds on every put, written without the encoder's set-up
PLAIN_JSON: dict[type, Callable[[Any], str]] = {str: encode_basestring_ascii, int: int.__repr__,
                                                type(None): lambda _: "null"}
#: how long a writer waits for another writer's transaction, in milliseconds
BUSY_TIMEOUT_MS = 120_000

RUN_COLUMNS = ("uuid", "start", "end", "user", "host", "command", "python", "packages", "inputs", "outputs",
               "tags")
QUANTUM_COLUMNS = ("uuid", "run", "label", "config", "start")
DATASET_COLUMNS = ("uuid", "run", "quantum", "datasetType", "dataId", "path", "size", "sha256", "time", "inputs",
                   "state")
#: the columns of a record a writer gives (``state`` is pending until the record is folded as done)
_RECORDED_COLUMNS = DATASET_COLUMNS[:-1]
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
    "CREATE TABLE IF NOT EXISTS journal (name TEXT PRIMARY KEY, folded INTEGER)",
)


def _insert_sql(table: str, columns: Sequence[str], verb: str = "INSERT") -> str:
    names = ", ".join(f'"{c}"' for c in columns)
    return f"{verb} INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"


_INSERT_RUN = _insert_sql("run", RUN_COLUMNS, "INSERT OR IGNORE")
_INSERT_QUANTUM = _insert_sql("quantum", QUANTUM_COLUMNS, "INSERT OR IGNORE")
_INSERT_DATASET = _insert_sql("dataset", DATASET_COLUMNS, "INSERT OR IGNORE")
_INSERT_INPUTSET = _insert_sql("inputset", INPUTSET_COLUMNS, "INSERT OR IGNORE")
_INSERT_EDGE = _insert_sql("edge", EDGE_COLUMNS)
#: the edges of an input set and of its ancestors, oldest first
_SELECT_EDGES = (
    "WITH RECURSIVE chain(uuid, depth) AS (SELECT ?, 0 UNION ALL SELECT s.parent, chain.depth + 1 "
    "FROM inputset AS s JOIN chain ON s.uuid = chain.uuid WHERE s.parent IS NOT NULL) "
    "SELECT edge.* FROM edge JOIN chain ON edge.inputset = chain.uuid ORDER BY chain.depth DESC, edge.position")


def _journal_line(entry: Mapping[str, Any]) -> bytes:
    """An entry as one journal line: a dataset row alone of plain values (a put's usual line) joined by hand,
    anything else by the encoder; the same JSON either way."""
    if len(entry) == 1:
        try:
            return ('{"d":[' + ",".join([PLAIN_JSON[type(value)](value) for value in entry["d"]]) + "]}\n").encode()
        except KeyError:  # a value of another type
            pass
    return (_LINE_JSON.encode(entry) + "\n").encode()


def _rows_as_dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


def is_store_file(name: str) -> bool:
    """Whether a name (relative to a repository's root) is one of the store's files: the database,
    SQLite's files beside it, or a journal."""
    return name.startswith(PROVENANCE_FILENAME) and "/" not in name


class _JournalRows:
    """The rows of journal lines, by table: what readers add to the database's answers."""

    def __init__(self) -> None:
        self.datasets: list[dict[str, Any]] = []
        self.inputsets: dict[str, str | None] = {}
        self.edges: dict[str, list[dict[str, Any]]] = {}
        self.runs: dict[str, dict[str, Any]] = {}
        self.quanta: dict[str, dict[str, Any]] = {}

    def add(self, entry: Mapping[str, Any]) -> None:
        """Add one line's rows (`ProvenanceStore.add_pending` writes them as column lists)."""
        if entry.get("r"):
            self.runs[entry["r"][0]] = dict(zip(RUN_COLUMNS, entry["r"]))
        if entry.get("q"):
            self.quanta[entry["q"][0]] = dict(zip(QUANTUM_COLUMNS, entry["q"]))
        if entry.get("s"):
            setId, parent = entry["s"]
            self.inputsets[setId] = parent
            self.edges[setId] = [dict(zip(EDGE_COLUMNS, edge)) for edge in entry.get("e", ())]
        self.datasets.append(dict(zip(DATASET_COLUMNS, entry["d"])))


def _parse_lines(data: bytes) -> Iterator[dict[str, Any]]:
    """The entries of complete journal lines (a last line without its newline was cut by a kill: ignored)."""
    for line in data.split(b"\n")[:-1]:
        try:
            entry = json.loads(line)
        except ValueError:
            _log.warning("ignored an unreadable provenance journal line: %r", line[:200])
            continue
        if isinstance(entry, dict) and isinstance(entry.get("d"), list):
            yield entry


def _read_from(path: str, offset: int) -> bytes:
    """The bytes of a file from ``offset`` to its end; empty when it is gone (removed after its last fold)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return b""
    try:
        return _read_fd(fd, offset)
    finally:
        os.close(fd)


def _read_fd(fd: int, offset: int) -> bytes:
    chunks = []
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _merge(journal: list[dict[str, Any]], rows: list[dict[str, Any]], newest_first: bool) -> list[dict[str, Any]]:
    """Database rows and journal rows, each UUID once (the database's row: it may be done), in time order."""
    known = {row["uuid"] for row in rows}
    merged = rows + [row for row in journal if row["uuid"] not in known]
    if len(merged) > len(rows):
        merged.sort(key=lambda row: row["time"] or "", reverse=newest_first)
    return merged


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
        self._root = os.path.dirname(location)
        # a writer's journal: its name, descriptor (locked), bytes appended, entries not yet folded
        self._journal: str | None = None
        self._fd = -1
        self._written = 0
        self._tail: list[dict[str, Any]] = []

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
        """The store of an output repository, made when missing, with a journal of its own; None when the
        storage keeps no local files. The journals of dead writers are folded into the database."""
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
            connection.execute(f"PRAGMA synchronous = {'FULL' if FSYNC else 'NORMAL'}")
            store = cls(location, connection, writable=True)
            with store._transaction():
                for statement in _SCHEMA:
                    connection.execute(statement)
            store._open_journal()
        except (sqlite3.Error, OSError) as exc:
            raise RegistryError(f"cannot open the provenance records {location} for writing: {exc}") from exc
        return store

    def _open_journal(self) -> None:
        """Create this writer's journal (locked before it has its name, so it is never taken for a dead
        writer's), and register it in the transaction that folds the journals of dead writers."""
        import secrets  # here: a Butler that never writes provenance does not load it (nor OpenSSL)

        name = f"{PROVENANCE_FILENAME}-{secrets.token_hex(8)}.sqlite3-journal"
        with atomic_write(name, root=self._root) as tmp:
            fd = os.open(tmp, os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BaseException:
                os.close(fd)
                raise
        self._journal, self._fd = name, fd
        with self._transaction() as conn:
            orphans = self._fold_orphans(conn)
            conn.execute("INSERT INTO journal (name, folded) VALUES (?, 0)", (name,))
        for path in orphans:  # folded and unregistered: no reader opens them any more
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _fold_orphans(self, conn: sqlite3.Connection) -> list[str]:
        """Fold and unregister the journals whose writers are gone (no lock on them); their paths."""
        orphans = []
        for name, folded in conn.execute("SELECT name, folded FROM journal").fetchall():
            path = os.path.join(self._root, name)
            if not _JOURNAL_NAME.fullmatch(name):
                raise RegistryError(f"{self.location} registers a journal with an unexpected name: {name!r}")
            try:
                fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except FileNotFoundError:
                fd = -1
            try:
                if fd >= 0:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    except BlockingIOError:
                        continue  # its writer is alive
                    _insert_entries(conn, list(_parse_lines(_read_fd(fd, folded or 0))))
                    orphans.append(path)
                conn.execute("DELETE FROM journal WHERE name = ?", (name,))
                _log.info("folded the provenance journal %s, left by a writer that is gone", path)
            finally:
                if fd >= 0:
                    os.close(fd)
        return orphans

    def close(self) -> None:
        """Fold and remove this writer's journal, and close the connection (the last writer to close folds
        the ``-wal`` file back into the database)."""
        try:
            if self._journal is not None:
                self._fold((), None, last=True)
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self._root, self._journal))
                self._journal = None
                os.close(self._fd)
        finally:
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
        """Record a dataset about to be published: one line appended to this writer's journal.

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
        entry: dict[str, Any] = {"d": [*map(dataset.get, _RECORDED_COLUMNS), PENDING]}
        if run is not None:
            entry["r"] = list(map(run.get, RUN_COLUMNS))
        if quantum is not None:
            entry["q"] = list(map(quantum.get, QUANTUM_COLUMNS))
        if inputset is not None:
            entry["s"] = list(map(inputset.get, INPUTSET_COLUMNS))
            entry["e"] = [list(map(edge.get, EDGE_COLUMNS)) for edge in edges]
        try:
            if self._journal is None:
                raise RegistryError(f"cannot write provenance records: {self.location} is not open for writing")
            self._append(_journal_line(entry))
        except (sqlite3.Error, OSError, ValueError) as exc:
            raise RegistryError(f"cannot record the provenance of {dataset.get('datasetType')} "
                                f"{dataset.get('dataId')} ({dataset.get('path')}) in {self.location}: {exc}") from exc
        self._tail.append(entry)

    def _append(self, line: bytes) -> None:
        """Append one line to the journal; on an error, cut it back to the lines before (no torn line)."""
        try:
            written = os.write(self._fd, line)
            while written < len(line):  # a short write (a signal, a full disk): the rest, or an error
                written += os.write(self._fd, line[written:])
            if FSYNC:
                os.fsync(self._fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._written)
            raise
        self._written += len(line)

    def finish(self, done: Sequence[str], runs: Mapping[str, str] | None = None) -> None:
        """Fold the journal, mark records done (their files are published) and set the end time of runs
        (``{uuid: end}``), in one transaction."""
        if not done and not runs and not self._tail:
            return
        try:
            self._fold(done, runs)
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot finish provenance records in {self.location}: {exc}") from exc

    def _fold(self, done: Sequence[str], runs: Mapping[str, str] | None, last: bool = False) -> None:
        """Insert the journal's entries not yet folded, and mark ``done`` and ``runs``, in one transaction;
        the ``last`` fold unregisters the journal."""
        published = set(done)
        with self._transaction() as conn:
            inserted = _insert_entries(conn, self._tail, published)
            if len(published) > len(inserted):  # records folded before their files were published
                conn.executemany("UPDATE dataset SET state = ? WHERE uuid = ?",
                                 [(DONE, u) for u in published - inserted])
            for uuid, end in (runs or {}).items():
                conn.execute('UPDATE run SET "end" = ? WHERE uuid = ?', (end, uuid))
            if last:
                conn.execute("DELETE FROM journal WHERE name = ?", (self._journal,))
            else:
                conn.execute("UPDATE journal SET folded = ? WHERE name = ?", (self._written, self._journal))
        self._tail = []

    # -- reads ---------------------------------------------------------------------------------

    def _select(self, sql: str, values: Sequence[Any] = ()) -> list[dict[str, Any]]:
        try:
            return _rows_as_dicts(self._conn.execute(sql, values))
        except sqlite3.Error as exc:
            raise RegistryError(f"cannot read the provenance records {self.location}: {exc}; SQL: {sql}") from exc

    def _journal_rows(self) -> _JournalRows:
        """The rows of the registered journals not yet folded (read before the database: see the module)."""
        rows = _JournalRows()
        try:
            journals = self._conn.execute("SELECT name, folded FROM journal").fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):  # a store written before journals
                return rows
            raise RegistryError(f"cannot read the provenance records {self.location}: {exc}") from exc
        for name, folded in journals:
            if not _JOURNAL_NAME.fullmatch(name):
                raise RegistryError(f"{self.location} registers a journal with an unexpected name: {name!r}")
            for entry in _parse_lines(_read_from(os.path.join(self._root, name), folded or 0)):
                rows.add(entry)
        return rows

    def datasets_at(self, path: str) -> list[dict[str, Any]]:
        """The ``dataset`` rows of a path, newest first (pending ones included: see `is_valid`)."""
        journal = [row for row in self._journal_rows().datasets if row["path"] == path]
        return _merge(journal, self._select("SELECT * FROM dataset WHERE path = ? ORDER BY rowid DESC", (path,)),
                      newest_first=True)

    def dataset(self, uuid: str) -> dict[str, Any] | None:
        """The ``dataset`` row of a UUID, or None."""
        journal = [row for row in self._journal_rows().datasets if row["uuid"] == uuid]
        rows = self._select("SELECT * FROM dataset WHERE uuid = ?", (uuid,)) or journal
        return rows[0] if rows else None

    def datasets(self, datasetTypes: Sequence[str] = ()) -> list[dict[str, Any]]:
        """Every ``dataset`` row (of the given dataset types), oldest first."""
        journal = [row for row in self._journal_rows().datasets
                   if not datasetTypes or row["datasetType"] in datasetTypes]
        if not datasetTypes:
            rows = self._select("SELECT * FROM dataset ORDER BY rowid")
        else:
            marks = ", ".join("?" * len(datasetTypes))
            rows = self._select(f"SELECT * FROM dataset WHERE datasetType IN ({marks}) ORDER BY rowid",
                                tuple(datasetTypes))
        return _merge(journal, rows, newest_first=False)

    def edges(self, inputset: str | None) -> list[dict[str, Any]]:
        """The ``edge`` rows of an input set (a dataset's ``inputs``) with its ancestors', in read order.

        The newest sets of a chain may be in a journal; the first set that is
        not is in the database with all its ancestors (a journal folds in order).
        """
        journal = self._journal_rows()
        newest_first = []
        while inputset is not None and inputset in journal.inputsets:
            newest_first.append(journal.edges[inputset])
            inputset = journal.inputsets[inputset]
        older = self._select(_SELECT_EDGES, (inputset,)) if inputset else []
        return older + [edge for edges in reversed(newest_first) for edge in edges]

    def run(self, uuid: str) -> dict[str, Any] | None:
        """The ``run`` row of a UUID (JSON columns decoded), or None."""
        journal = self._journal_rows().runs.get(uuid)
        rows = self._select("SELECT * FROM run WHERE uuid = ?", (uuid,))
        row = rows[0] if rows else journal
        if row is None:
            return None
        for column in ("packages", "inputs", "outputs", "tags"):
            row[column] = json.loads(row[column]) if row[column] else None
        return row

    def quantum(self, uuid: str | None) -> dict[str, Any] | None:
        """The ``quantum`` row of a UUID (its config decoded), or None."""
        if uuid is None:
            return None
        journal = self._journal_rows().quanta.get(uuid)
        rows = self._select("SELECT * FROM quantum WHERE uuid = ?", (uuid,))
        row = rows[0] if rows else journal
        if row is None:
            return None
        row["config"] = json.loads(row["config"]) if row["config"] else None
        return row


def _insert_entries(conn: sqlite3.Connection, entries: Sequence[Mapping[str, Any]],
                    done: Collection[str] = ()) -> set[str]:
    """Insert the rows of journal entries, those of ``done`` as done (a row already there is kept: folding
    twice changes nothing); the UUIDs inserted as done."""
    runs = [entry["r"] for entry in entries if entry.get("r")]
    quanta = [entry["q"] for entry in entries if entry.get("q")]
    sets = [entry for entry in entries if entry.get("s")]
    if runs:
        conn.executemany(_INSERT_RUN, runs)
    if quanta:
        conn.executemany(_INSERT_QUANTUM, quanta)
    for entry in sets:
        if conn.execute(_INSERT_INPUTSET, entry["s"]).rowcount:  # its edges only with the set itself
            conn.executemany(_INSERT_EDGE, entry.get("e", ()))
    datasets = [entry["d"] for entry in entries]
    inserted = set()
    for row in datasets:
        if row[0] in done:
            row[-1] = DONE
            inserted.add(row[0])
    conn.executemany(_INSERT_DATASET, datasets)
    return inserted


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
