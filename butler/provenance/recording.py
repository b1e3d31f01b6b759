"""`ProvenanceRecorder`: what one Butler read, grouped in scopes, and a record of every file its puts write.

A scope is the Butler's lifetime (always open) or a ``Butler.quantum`` block;
a read joins every open scope, a put records the inputs of the innermost one.
A read costs one ``stat`` of the file the read just opened (through its
storage), and nothing is looked up until a put needs it: only then is each
input's own record (its UUID and digest) found in its repository's store.

Each file a put writes is recorded in its output's store as ``pending``
before it is published (the storage's write observer, called between the last
byte and the rename), and marked done, in one transaction for many, when a
quantum ends, when provenance is asked, or when the Butler is collected (see
`butler.registry.provenance` for why that is crash-safe).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import itertools
import json
import logging
import os
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from ..errors import NoResults, UnwritableObjectError
from ..location import split_hdu
from ..storage.base import observe_writes

__all__ = ["ProvenanceRecorder", "recording_enabled", "canonical_data_id", "new_uuid", "utc_now"]

_log = logging.getLogger(__name__)

#: the environment variable that turns recording off for Butlers not told either way ("0", "false", "off", "no")
ENV_SWITCH = "BUTLER_PROVENANCE"
#: how many published records an output's journal holds before they are folded (bounds what its readers parse)
FOLD_EVERY = 256
#: the packages whose versions a run records
RECORDED_PACKAGES = ("butler", "numpy", "astropy", "pyyaml", "attrs")


#: how many times this process's ancestors forked it (a recorder made before a fork finds it changed)
_forks = 0


def _count_fork() -> None:
    global _forks
    _forks += 1


os.register_at_fork(after_in_child=_count_fork)


def recording_enabled(flag: bool | None) -> bool:
    """Whether a Butler records provenance: ``flag`` when given, else `ENV_SWITCH` (on unless turned off)."""
    if flag is not None:
        return bool(flag)
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in ("0", "false", "off", "no")


def new_uuid() -> str:
    """A random (version 4) UUID, as text."""
    return str(uuid.uuid4())


class _UuidSeries:
    """UUIDs for the records of one recorder: a random version-4 UUID's first 80 bits, then a counter.

    As unique as random UUIDs (80 random bits per recorder, then distinct
    counters), without a call to the random source per put. (``next`` of a
    `itertools.count` is atomic: threads draw distinct numbers.)
    """

    def __init__(self) -> None:
        self._prefix = new_uuid()[:24]  # "xxxxxxxx-xxxx-4xxx-yxxx-"
        self._count = itertools.count(1)

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._count):012x}"


#: the last whole second `utc_now` formatted, and its text
_second: tuple[int, str] = (-1, "")


def utc_now() -> str:
    """The time now, UTC, ISO 8601 with microseconds (as ``datetime.isoformat``; the date and time of day
    formatted once a second)."""
    global _second
    now = time.time()
    second = int(now)
    if second != _second[0]:
        _second = (second, datetime.datetime.fromtimestamp(second, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{_second[1]}.{int((now - second) * 1e6):06d}+00:00"


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # a numpy scalar
        return value.item()
    return str(value)


#: the types a data ID value is stored as they are
_JSON_SCALARS = frozenset({int, str, float, bool, type(None)})
#: one encoder for every data ID (`json.dumps` with options makes a new one per call); a data ID is flat,
#: so there is no cycle to look for
_SORTED_JSON = json.JSONEncoder(sort_keys=True, check_circular=False)


def canonical_data_id(dataId: Mapping[str, Any]) -> str:
    """A data ID as canonical JSON text (keys sorted), the form records store and compare."""
    # the store's module (and what it imports) is loaded when a Butler first records, not when it is made
    from ..registry.provenance import PLAIN_JSON

    quote = PLAIN_JSON[str]
    try:  # text keys and text or integer values (the usual data ID, on every put): joined by hand
        return "{" + ", ".join([f"{quote(key)}: {PLAIN_JSON[type(value)](value)}"
                                for key, value in sorted(dataId.items())]) + "}"
    except (KeyError, TypeError):  # another value type, a key that is not text: the encoder's general form
        return _SORTED_JSON.encode({str(key): value if type(value) in _JSON_SCALARS else _plain(value)
                                    for key, value in dataId.items()})


def _config_text(config: Mapping[str, Any] | None, label: str) -> str | None:
    """A quantum's settings as canonical JSON; `UnwritableObjectError` when they are not JSON-able data."""
    if config is None:
        return None
    if not isinstance(config, Mapping):
        raise UnwritableObjectError(f"the config of quantum {label!r} must be a mapping of settings, "
                                    f"not a {type(config).__name__}")
    try:
        return json.dumps(dict(config), sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise UnwritableObjectError(f"the config of quantum {label!r} cannot be recorded: {exc} (give plain "
                                    f"JSON data: numbers, strings, booleans, lists and mappings)") from exc


@functools.lru_cache(maxsize=1)
def _package_versions() -> str:
    from importlib import metadata

    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return json.dumps(versions, sort_keys=True)


def _user() -> str:
    import getpass  # once per run: a Butler that never writes does not load it (nor socket, shlex)

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no password entry
        return str(os.getuid())


class _Read:
    """One file a get read: its dataset, where it is, and its size and mtime as read."""

    __slots__ = ("datasetType", "dataId", "storage", "path", "size", "mtime", "_dataIdText")

    def __init__(self, datasetType: str, dataId: Mapping, storage: Any, path: str, size: int | None,
                 mtime: float | None):
        self.datasetType = datasetType
        self.dataId = dataId
        self.storage = storage
        self.path = path
        self.size = size
        self.mtime = mtime
        self._dataIdText: str | None = None

    @property
    def dataIdText(self) -> str:
        if self._dataIdText is None:
            self._dataIdText = canonical_data_id(self.dataId)
        return self._dataIdText


class _Scope:
    """The reads of a scope (``{(root, path): _Read}``, in read order), and its quantum row when it is one.

    ``generation`` changes when a read is dropped or a file is read again with
    another size or mtime: the input sets written before no longer prefix the
    reads. ``sets`` is, per output root, ``(generation, input set, reads covered)``
    of the last set written there.
    """

    __slots__ = ("reads", "quantum", "generation", "sets")

    def __init__(self, quantum: dict[str, Any] | None):
        self.reads: dict[tuple[str, str], _Read] = {}
        self.quantum = quantum
        self.generation = 0
        self.sets: dict[str, tuple[int, str | None, int]] = {}

    def add(self, key: tuple[str, str], entry: _Read) -> None:
        old = self.reads.get(key)
        if old is not None and (old.size, old.mtime) != (entry.size, entry.mtime):
            self.generation += 1
        self.reads[key] = entry


class _Output:
    """An output's store, and this Butler's records there whose files are published but not yet marked done."""

    __slots__ = ("store", "pending", "runWritten", "quanta")

    def __init__(self, store: Any):
        self.store = store
        self.pending: list[str] = []
        self.runWritten = False
        self.quanta: set[str] = set()


class _Writing(observe_writes):
    """The block of `ProvenanceRecorder.writing`: the storage's write observer records the location's files.

    (A class, not a generator: it wraps every put.)
    """

    __slots__ = ("recorder", "storage", "location", "datasetType", "dataId", "written")

    def __init__(self, recorder: ProvenanceRecorder, storage: Any, location: Any, datasetType: str,
                 dataId: Mapping):
        super().__init__(self.observe)
        self.recorder = recorder
        self.storage = storage
        self.location = location
        self.datasetType = datasetType
        self.dataId = dataId
        self.written: list[tuple[_Output, str, str, str, int]] = []

    def observe(self, writer: Any, relpath: str, size: int, sha256: str) -> None:
        if writer is not self.storage or not _names(self.location.locationList, relpath):
            return  # a backup copy, another repository
        recorded = self.recorder._record(self.storage, self.location, self.datasetType, self.dataId, relpath, size,
                                         sha256)
        if recorded is not None:
            self.written.append((recorded[0], relpath, recorded[1], sha256, size))

    def __exit__(self, *exc: object) -> None:
        super().__exit__(*exc)
        self._callback = None  # the bound observer refers back to this block: no cycle left for the collector
        if exc[0] is None and self.written:
            self.recorder._published(self.storage.root, self.written)


def _names(locations: list[str], relpath: str) -> bool:
    """Whether ``relpath`` is the file of one of a location's paths (an HDU selector set aside)."""
    return relpath in locations or any(split_hdu(path)[0] == relpath for path in locations if path[-1:] == "]")


class ProvenanceRecorder:
    """The reads and writes of one Butler.

    Parameters
    ----------
    inputs, outputs : sequence of `str`
        The Butler's input and output roots (recorded with its run).
    tags : sequence of `str`
        The tags of its inputs.
    """

    def __init__(self, inputs: list[str], outputs: list[str], tags: list[str]):
        self.runId = new_uuid()
        self._uuid = _UuidSeries()
        self._forks = _forks
        self._run = {"uuid": self.runId, "start": utc_now(), "inputs": json.dumps(inputs),
                     "outputs": json.dumps(outputs), "tags": json.dumps(sorted(tags))}
        self._scopes = [_Scope(None)]
        self._outputs: dict[str, _Output | None] = {}
        self._readers: dict[str, Any] = {}
        self._written: dict[tuple[str, str], tuple[str, str, int]] = {}
        self._resolved: dict[tuple, tuple[str | None, str | None]] = {}
        self._lock = threading.RLock()

    # -- reads ---------------------------------------------------------------------------------

    def read(self, storage: Any, location: Any, datasetType: str, dataId: Mapping) -> None:
        """Note the files of a location a get just read (one ``stat`` each, through ``storage``)."""
        dataId = location.dataId or dataId
        for path in location.locationList:
            if path[-1:] == "]":
                path = split_hdu(path)[0]
            info = storage.stat(path)
            if info is None and storage.hasLocalFiles:  # served without a file (a bypass)
                continue
            entry = _Read(datasetType, dataId, storage, path, *(info or (None, None)))
            key = (storage.root, path)
            for scope in self._scopes:
                scope.add(key, entry)

    def markInputUnused(self, datasetType: str, dataId: Mapping) -> None:
        """Drop the reads of a dataset from the current scope (they did not go into what it writes).

        Raises
        ------
        NoResults
            When the current scope read no such dataset.
        """
        scope = self._scopes[-1]
        wanted = dict(dataId)
        drop = [key for key, entry in scope.reads.items() if entry.datasetType == datasetType
                and all(entry.dataId.get(k, v) == v for k, v in wanted.items())]
        if not drop:
            where = f"quantum {scope.quantum['label']!r}" if scope.quantum else "this Butler"
            raise NoResults(f"cannot mark an input unused: {where} read no such dataset", datasetType, dataId)
        for key in drop:
            del scope.reads[key]
        scope.generation += 1

    @contextlib.contextmanager
    def quantum(self, label: str, config: Mapping[str, Any] | None) -> Iterator[None]:
        """A scope of its own for the block (see `butler.Butler.quantum`); its records are finished at the end."""
        row = {"uuid": new_uuid(), "run": self.runId, "label": str(label), "config": _config_text(config, label),
               "start": utc_now()}
        scope = _Scope(row)
        self._scopes.append(scope)
        try:
            yield
        finally:
            self._scopes.remove(scope)
            self.flush()

    # -- writes --------------------------------------------------------------------------------

    def _output(self, storage: Any) -> _Output | None:
        if self._forks != _forks:
            self._leave_parent_stores()
        root = storage.root
        try:
            return self._outputs[root]
        except KeyError:
            from ..registry.provenance import ProvenanceStore

            store = ProvenanceStore.for_writing(storage)
            output = self._outputs[root] = _Output(store) if store is not None else None
            return output

    def _leave_parent_stores(self) -> None:
        """In a forked child, forget the stores opened before the fork: their connections and journals are
        the parent's to write and finish (the child opens its own); and draw new record UUIDs (the parent's
        series goes on in the parent)."""
        if self._forks != _forks:
            self._forks = _forks
            self._outputs, self._readers, self._written = {}, {}, {}
            self._uuid = _UuidSeries()

    def writing(self, storage: Any, location: Any, datasetType: str, dataId: Mapping) -> _Writing:
        """Record each file of ``location`` that ``storage`` writes in the block, before it is published."""
        return _Writing(self, storage, location, datasetType, dataId)

    def _record(self, storage: Any, location: Any, datasetType: str, dataId: Mapping, relpath: str, size: int,
                sha256: str) -> tuple[_Output, str] | None:
        """Store the pending record of a file about to be published; its output and UUID (None: no store)."""
        output = self._output(storage)  # made with the first file a put publishes, not before
        if output is None:
            return None
        scope = self._scopes[-1]
        recordId = self._uuid()
        record = {"uuid": recordId, "run": self.runId, "quantum": scope.quantum["uuid"] if scope.quantum else None,
                  "datasetType": datasetType, "dataId": canonical_data_id(location.dataId or dataId),
                  "path": relpath, "size": size, "sha256": sha256, "time": utc_now()}
        self._add(output, record, scope)
        return output, recordId

    def _published(self, root: str, written: list[tuple[_Output, str, str, str, int]]) -> None:
        """Note the records of a put whose files are published (`flush` marks them done)."""
        with self._lock:
            for output, relpath, recordId, sha256, size in written:
                output.pending.append(recordId)
                self._written[(root, relpath)] = (recordId, sha256, size)
                if len(output.pending) >= FOLD_EVERY:  # fold them, done, so that readers parse a short journal
                    output.store.finish(output.pending)
                    output.pending = []

    def _add(self, output: _Output, record: dict[str, Any], scope: _Scope) -> None:
        """Store a pending record with its run, quantum and input set (one transaction).

        The scope's reads already in the last set written to this output (still
        a prefix of them) are not written again: the new reads make a set chained
        to it, and no new read means the same set.
        """
        root = output.store.location
        count = len(scope.reads)
        generation, parent, start = scope.sets.get(root, (None, None, 0))
        if generation != scope.generation or start > count:
            parent, start = None, 0
        inputset, edges = None, []
        setId = parent
        if start < count:  # new reads (only then are the reads copied: a scope may hold many)
            setId = self._uuid()
            inputset = {"uuid": setId, "parent": parent}
            edges = [{"inputset": setId, "position": position, "input": inputId, "sha256": digest,
                      "datasetType": entry.datasetType, "dataId": entry.dataIdText,
                      "repository": entry.storage.root, "path": entry.path, "size": entry.size,
                      "mtime": entry.mtime}
                     for position, entry in enumerate(list(scope.reads.values())[start:], start)
                     for inputId, digest in [self._resolve(entry)]]
        record["inputs"] = setId
        with self._lock:
            run = None if output.runWritten else self._run_row()
            quantum = scope.quantum if scope.quantum and scope.quantum["uuid"] not in output.quanta else None
            output.store.add_pending(record, inputset, edges, run, quantum)
            scope.sets[root] = (scope.generation, setId, count)
            output.runWritten = True
            if quantum is not None:
                output.quanta.add(quantum["uuid"])

    def _run_row(self) -> dict[str, Any]:
        import shlex
        import socket

        return {**self._run, "user": _user(), "host": socket.gethostname(), "command": shlex.join(sys.argv),
                "python": sys.version.split()[0], "packages": _package_versions()}

    def _resolve(self, entry: _Read) -> tuple[str | None, str | None]:
        """The UUID and digest of the record of a file read, when its repository has one that matches."""
        key = (entry.storage.root, entry.path, entry.size, entry.mtime)
        found = self._resolved.get(key)
        if found is None:
            own = self._written.get(key[:2])
            if own is not None and own[2] == entry.size:
                found = own[:2]
            else:
                from .lineage import current_row

                row = current_row(self._reader(entry.storage), entry.storage, entry.path, entry.size)
                found = (row["uuid"], row["sha256"]) if row is not None else (None, None)
            self._resolved[key] = found
        return found

    def _reader(self, storage: Any) -> Any:
        """The store of a repository read (this Butler's writer for its outputs), or None."""
        output = self._outputs.get(storage.root)
        if output is not None:
            return output.store
        if storage.root not in self._readers:
            from ..registry.provenance import ProvenanceStore

            self._readers[storage.root] = ProvenanceStore.for_reading(storage)
        return self._readers[storage.root]

    # -- lifetime ------------------------------------------------------------------------------

    def flush(self) -> None:
        """Mark the records whose files are published done, note the run's end so far, and close the stores
        of the repositories read (a connection left open would keep their writers' ``-wal`` files there)."""
        with self._lock:
            self._leave_parent_stores()
            for output in self._outputs.values():
                if output is not None and output.runWritten:
                    output.store.finish(output.pending, {self.runId: utc_now()})
                    output.pending = []
            for store in self._readers.values():
                if store is not None:
                    store.close()
            self._readers.clear()

    def close(self) -> None:
        """Flush, and close every store (a Butler's finaliser calls this)."""
        try:
            self.flush()
        finally:
            for output in self._outputs.values():
                if output is not None:
                    output.store.close()
            self._outputs.clear()
