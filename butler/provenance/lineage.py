"""Provenance records as value objects, read back through the repositories that hold them; `verify_repository`.

Which record describes a file: the newest of its path that is ``done``, or
``pending`` with the digest of the file there now (a put killed before it
published its file leaves a pending record that describes nothing; see
`butler.registry.provenance`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import attrs

from ..errors import DatasetNotFoundError
from ..registry.provenance import PENDING, is_store_file

__all__ = ["RunInfo", "ProvenanceInput", "ProvenanceRecord", "VerifyProblem", "read_lineage", "current_row",
           "verify_repository"]

#: files of a repository that are not datasets (`verify_repository` does not ask them for records)
_REPOSITORY_FILES = ("repositoryCfg.yaml", "_mapper", "_parent")
_DATABASE_SUFFIXES = (".sqlite3", ".sqlite3-wal", ".sqlite3-shm", ".sqlite3-journal")


def _loads(text: str | None) -> dict:
    return json.loads(text) if text else {}


@attrs.frozen
class RunInfo:
    """The Butler (process) that wrote a dataset.

    Attributes
    ----------
    uuid : `str`
    start, end : `str`
        ISO 8601 UTC; ``end`` is the last time the run finished records (None if it never did).
    user, host, command, python : `str`
        Who ran it, where, the command line, the Python version.
    packages : `dict`
        ``{package: version}``.
    inputs, outputs, tags : `tuple` of `str`
        The Butler's input and output roots and its tags.
    """

    uuid: str
    start: str | None = None
    end: str | None = None
    user: str | None = None
    host: str | None = None
    command: str | None = None
    python: str | None = None
    packages: dict = attrs.field(factory=dict)
    inputs: tuple = ()
    outputs: tuple = ()
    tags: tuple = ()

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunInfo:
        """From a decoded ``run`` row (`ProvenanceStore.run`)."""
        return cls(row["uuid"], row["start"], row["end"], row["user"], row["host"], row["command"], row["python"],
                   dict(row["packages"] or {}), tuple(row["inputs"] or ()), tuple(row["outputs"] or ()),
                   tuple(row["tags"] or ()))

    def to_dict(self) -> dict:
        """Plain data."""
        return attrs.asdict(self)


@attrs.frozen
class ProvenanceInput:
    """One input of a recorded dataset, as it was read, and its own record when it has one.

    Attributes
    ----------
    datasetType : `str`
    dataId : `dict`
    repository : `str`
        The root of the repository the file was read from.
    path : `str`
        Relative to ``repository``.
    size : `int` or None
    mtime : `float` or None
        As the read saw them (None when the storage does not tell).
    sha256 : `str` or None
        The digest from the input's record, when it had one.
    uuid : `str` or None
        The input's record, when it had one.
    record : `ProvenanceRecord` or None
        That record with its own inputs, when followed (``depth``) and still there.
    """

    datasetType: str
    dataId: dict
    repository: str
    path: str
    size: int | None = None
    mtime: float | None = None
    sha256: str | None = None
    uuid: str | None = None
    record: ProvenanceRecord | None = None

    def to_dict(self) -> dict:
        """Plain data (the followed record nested under ``record``)."""
        data = {field.name: getattr(self, field.name) for field in attrs.fields(ProvenanceInput)}
        data["record"] = self.record.to_dict() if self.record is not None else None
        return data


@attrs.frozen
class ProvenanceRecord:
    """What produced one dataset file.

    Attributes
    ----------
    uuid : `str`
    datasetType : `str`
    dataId : `dict`
    repository : `str`
        The root holding the file and this record.
    path : `str`
        Relative to ``repository``.
    size : `int`
    sha256 : `str`
        Of the bytes written.
    time : `str`
        When it was written (ISO 8601 UTC).
    state : `str`
        ``done``, or ``pending`` (a put whose Butler has not finished it; the file has its digest).
    run : `RunInfo` or None
    quantum : `str` or None
        The label of the ``Butler.quantum`` block that wrote it.
    quantumId : `str` or None
    config : `dict` or None
        The settings that block recorded.
    inputs : `tuple` of `ProvenanceInput`
        In the order they were read.
    """

    uuid: str
    datasetType: str
    dataId: dict
    repository: str
    path: str
    size: int
    sha256: str
    time: str
    state: str
    run: RunInfo | None = None
    quantum: str | None = None
    quantumId: str | None = None
    config: dict | None = None
    inputs: tuple = ()

    def to_dict(self) -> dict:
        """Plain data (inputs and their records nested)."""
        data = {field.name: getattr(self, field.name) for field in attrs.fields(ProvenanceRecord)}
        data["run"] = self.run.to_dict() if self.run is not None else None
        data["inputs"] = [item.to_dict() for item in self.inputs]
        return data

    def walk(self) -> Iterator[tuple[int, ProvenanceInput]]:
        """Every input below this record, depth first: ``(depth, input)``, direct inputs at depth 1."""
        stack = [(1, item) for item in reversed(self.inputs)]
        while stack:
            depth, item = stack.pop()
            yield depth, item
            if item.record is not None:
                stack.extend((depth + 1, child) for child in reversed(item.record.inputs))


def _is_current(row: Mapping[str, Any], storage: Any, digests: dict[str, str | None]) -> bool:
    """Whether a record describes the file at its path now (a pending one: the file has its digest)."""
    if row["state"] != PENDING:
        return True
    path = row["path"]
    if path not in digests:
        try:
            digests[path] = storage.checksum(path)
        except DatasetNotFoundError:
            digests[path] = None
    return digests[path] == row["sha256"]


def current_row(store: Any, storage: Any, path: str, size: int | None = None) -> dict[str, Any] | None:
    """The record of the file at ``path`` (of that ``size`` when given), or None (see the module's notes)."""
    if store is None:
        return None
    digests: dict[str, str | None] = {}
    for row in store.datasets_at(path):
        if (size is None or row["size"] == size) and _is_current(row, storage, digests):
            return row
    return None


class _LineageReader:
    """Follows records through the repositories holding them, each store opened once."""

    def __init__(self, storages: Mapping[str, Any]):
        self._storages = dict(storages)
        self._stores: dict[str, Any] = {}
        self._records: dict[tuple[str, int | None], ProvenanceRecord] = {}

    def storage(self, root: str) -> Any:
        if root not in self._storages:
            from ..storage import Storage

            self._storages[root] = Storage.openExisting(root)
        return self._storages[root]

    def store(self, root: str) -> Any:
        if root not in self._stores:
            from ..registry.provenance import ProvenanceStore

            storage = self.storage(root)
            self._stores[root] = ProvenanceStore.for_reading(storage) if storage is not None else None
        return self._stores[root]

    def close(self) -> None:
        for store in self._stores.values():
            if store is not None:
                store.close()

    def record(self, root: str, row: Mapping[str, Any], depth: int | None) -> ProvenanceRecord:
        """A record with its inputs followed ``depth`` levels (None: all the way)."""
        key = (row["uuid"], depth)
        if key in self._records:
            return self._records[key]
        store = self.store(root)
        runRow = store.run(row["run"]) if row["run"] else None
        quantum = store.quantum(row["quantum"])
        inputs = []
        for edge in store.edges(row["inputs"]) if depth is None or depth > 0 else ():
            child = None
            if edge["input"] and (depth is None or depth > 1):
                child = self._follow(edge["repository"], edge["input"], None if depth is None else depth - 1)
            inputs.append(ProvenanceInput(edge["datasetType"], _loads(edge["dataId"]), edge["repository"],
                                          edge["path"], edge["size"], edge["mtime"], edge["sha256"], edge["input"],
                                          child))
        record = ProvenanceRecord(
            row["uuid"], row["datasetType"], _loads(row["dataId"]), root, row["path"], row["size"], row["sha256"],
            row["time"], row["state"], RunInfo.from_row(runRow) if runRow else None,
            quantum["label"] if quantum else None, quantum["uuid"] if quantum else None,
            quantum["config"] if quantum else None, tuple(inputs))
        self._records[key] = record
        return record

    def _follow(self, root: str, uuid: str, depth: int | None) -> ProvenanceRecord | None:
        store = self.store(root)
        row = store.dataset(uuid) if store is not None else None
        if row is None or not _is_current(row, self.storage(root), {}):
            return None
        return self.record(root, row, depth)


def read_lineage(storage: Any, path: str, depth: int | None = None) -> ProvenanceRecord | None:
    """The record of the file at ``path`` in ``storage``, its inputs followed ``depth`` levels (None: all).

    Inputs are followed into the repositories they were read from, whatever
    their depth in the repository graph; a repository without records, or an
    input without one, ends that branch (the input is still named, by path,
    size and mtime). Returns None when the file has no record.
    """
    reader = _LineageReader({storage.root: storage})
    try:
        row = current_row(reader.store(storage.root), storage, path)
        return reader.record(storage.root, row, depth) if row is not None else None
    finally:
        reader.close()


@attrs.frozen
class VerifyProblem:
    """A file whose bytes differ from its record, a record whose file is gone, or a file without a record.

    Attributes
    ----------
    path : `str`
    problem : `str`
        ``"differs"``, ``"missing file"`` or ``"no record"``.
    datasetType : `str` or None
    dataId : `dict` or None
    expected, found : `str` or None
        The recorded and the actual SHA-256.
    """

    path: str
    problem: str
    datasetType: str | None = None
    dataId: dict | None = None
    expected: str | None = None
    found: str | None = None

    def describe(self) -> str:
        """One line."""
        what = f"{self.datasetType} {json.dumps(self.dataId, sort_keys=True)} " if self.datasetType else ""
        if self.problem == "differs":
            return f"DIFFERS  {what}{self.path}: recorded sha256 {self.expected}, file has {self.found}"
        if self.problem == "missing file":
            return f"MISSING  {what}{self.path}: recorded (sha256 {self.expected}) but the file is gone"
        return f"NO RECORD  {self.path}: sha256 {self.found}, no provenance record"


def _is_repository_file(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return (name in _REPOSITORY_FILES or name.startswith("_parent/") or base.startswith(".")
            or name.endswith(_DATABASE_SUFFIXES) or is_store_file(name) or "~" in base)


def verify_repository(storage: Any, datasetTypes: Sequence[str] = ()) -> tuple[int, list[VerifyProblem]]:
    """Re-hash the files a repository's records describe, and find the files no record describes.

    Parameters
    ----------
    storage : `butler.storage.StorageInterface`
        The repository.
    datasetTypes : sequence of `str`
        Only the records of these dataset types (files without records are then
        not looked for: a file names no dataset type).

    Returns
    -------
    checked : `int`
        How many files were re-hashed.
    problems : `list` of `VerifyProblem`
    """
    from ..registry.provenance import ProvenanceStore

    store = ProvenanceStore.for_reading(storage)
    current: dict[str, dict[str, Any]] = {}
    digests: dict[str, str | None] = {}
    try:
        for row in store.datasets(datasetTypes) if store is not None else ():
            if _is_current(row, storage, digests):
                current[row["path"]] = row  # oldest first: the newest current record wins
    finally:
        if store is not None:
            store.close()
    problems = []
    for path, row in sorted(current.items()):
        found = digests.get(path) if path in digests else _checksum(storage, path)
        kind = "missing file" if found is None else "differs" if found != row["sha256"] else None
        if kind is not None:
            problems.append(VerifyProblem(path, kind, row["datasetType"], _loads(row["dataId"]), row["sha256"],
                                          found))
    if not datasetTypes:
        for name in storage.listNames():
            if name not in current and not _is_repository_file(name):
                problems.append(VerifyProblem(name, "no record", found=_checksum(storage, name)))
    return len(current), problems


def _checksum(storage: Any, path: str) -> str | None:
    try:
        return storage.checksum(path)
    except DatasetNotFoundError:
        return None
