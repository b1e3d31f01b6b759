"""Raw ingest: register raw files in a repository's registry and put them in place.

:func:`ingest_raws` reads the primary header of each file (in parallel
processes), turns it into a ``raw`` registry row with a camera translator,
finds each file's place in the repository (the mapper's ``raw`` location, or a
``%``-template), and then, one file at a time, registers it and puts it in
place, both or neither. All registry writes go through the registry protocol
(`butler.registry.SqliteRegistry`, or `PostgresRegistry`) in one transaction: the registry is the old
one until everything is done, then the new one.

Restartable. An ingest killed part-way leaves files in place but unregistered
(and, with ``move``, every source still there: a moved file is hard-linked, or
copied, into place and its source removed only after the registry commit).
Running it again registers each file already in place whose content matches
its source (same size and SHA-256), places the others, and removes the
temporaries that dead ingests left (``.<name>.<pid>.<hex>.tmp`` whose process
is gone). The header-reading workers die with the ingest process, however it
ends.

This module is camera-agnostic: the translator comes from the caller or from
the repository's mapper (``mapper.translator``). A translator is any object
with ``columns`` (``(name, SQL type)`` pairs), ``unique``, ``visit_columns``,
``tables()`` (the `TableSpec` of every table of the camera's registry) and
``translate(header, filename) -> dict``, as in :mod:`mappers.translators`.
"""

from __future__ import annotations

import contextlib
import ctypes
import fnmatch
import functools
import gzip
import logging
import os
import posixpath
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Protocol

import attrs
from astropy.io import fits
from tqdm import tqdm

from .errors import DatasetNotFoundError, IngestError, RegistryConflictError, UnsafePathError
from .registry.base import Registry, TableSpec, is_postgres_uri
from .registry.fsScanner import template_fields
from .registry.postgres import PostgresRegistry
from .registry.sqlite import SqliteRegistry
from .safeio import ensure_within
from .storage import Storage, StorageInterface

__all__ = ["MODES", "IngestedFile", "IngestProblem", "IngestReport", "ingest_raws", "read_primary_header"]

_log = logging.getLogger(__name__)

MODES = ("link", "copy", "move", "skip")
"""How a file gets into the repository: symlink, copy, rename, or not at all (register in place)."""

REGISTRY_NAME = "registry.sqlite3"
#: a Gen2 file naming the repository's registry in PostgreSQL, used in place of `REGISTRY_NAME` when present
LEGACY_POSTGRES_NAME = "registry.pgsql"
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_BLOCK = 2880

#: ``prctl`` option: the signal a process gets when its parent dies (Linux)
_PR_SET_PDEATHSIG = 1


class Translator(Protocol):
    """What ingest needs from a camera's header translator."""

    columns: Sequence[tuple[str, str]]
    unique: Sequence[str]
    visit_columns: Sequence[str]

    def tables(self) -> Sequence[TableSpec]:
        ...

    def translate(self, header: fits.Header, filename: str) -> dict[str, Any]:
        ...


@attrs.frozen
class IngestedFile:
    """A file that was (or, in a dry run, would be) ingested.

    Attributes
    ----------
    source : `str`
        The file as given.
    destination : `str`
        Its path relative to the repository root.
    row : `dict`
        Its ``raw`` registry row (without ``id``).
    """

    source: str
    destination: str
    row: Mapping[str, Any]


@attrs.frozen
class IngestProblem:
    """A file that was not ingested, and why."""

    source: str
    reason: str

    def __str__(self) -> str:
        """``SOURCE: REASON``, the source named once (a translator's reason already names it)."""
        return self.reason if self.reason.startswith(f"{self.source}: ") else f"{self.source}: {self.reason}"


@attrs.define
class IngestReport:
    """The outcome of :func:`ingest_raws`.

    Attributes
    ----------
    ingested : `list` of `IngestedFile`
        In ingest (registry ``id``) order.
    skipped : `list` of `IngestProblem`
        Files already ingested (in the registry, or earlier in the same call)
        and files matching ``bad_files``.
    failed : `list` of `IngestProblem`
        Unreadable or untranslatable files, and files that could not be put in place.
    dry_run : `bool`
        True when nothing was written.
    """

    ingested: list[IngestedFile] = attrs.field(factory=list)
    skipped: list[IngestProblem] = attrs.field(factory=list)
    failed: list[IngestProblem] = attrs.field(factory=list)
    dry_run: bool = False

    def summary(self) -> str:
        """One line: counts of ingested, skipped and failed files."""
        verb = "would ingest" if self.dry_run else "ingested"
        return (f"{verb} {len(self.ingested)} file(s), skipped {len(self.skipped)}, "
                f"failed {len(self.failed)}")


def read_primary_header(path: str) -> fits.Header:
    """Read the primary header of a FITS file, gzip-compressed or not, whatever its name.

    Only the header blocks are read (and, for gzip, decompressed).  Two cheap
    checks catch most truncated files: a FITS file is a whole number of
    2880-byte blocks, so the size (for gzip, the uncompressed size in the gzip
    trailer) must be a multiple of 2880.

    Parameters
    ----------
    path : `str`
        The file (read through a storage over its directory, see
        `butler.storage.Storage.forFile`).

    Returns
    -------
    header : `astropy.io.fits.Header`

    Raises
    ------
    OSError, ValueError, EOFError
        When the file cannot be read or is not a complete FITS file.
    """
    storage, name = Storage.forFile(path)
    with storage.openRead(name) as stream:
        compressed = stream.read(2) == _GZIP_MAGIC
        if compressed:
            stream.seek(-4, os.SEEK_END)
            (size,) = struct.unpack("<I", stream.read(4))  # uncompressed size mod 2**32
        else:
            size = stream.seek(0, os.SEEK_END)
        if size % _FITS_BLOCK:
            raise ValueError(f"size {size} is not a whole number of FITS blocks (truncated?)")
        stream.seek(0)
        header = fits.Header.fromfile(gzip.GzipFile(fileobj=stream) if compressed else stream)
    if header.get("SIMPLE") is not True:
        raise ValueError("the first header is not a FITS primary header (SIMPLE = T)")
    return header


def _translate_file(translator: Translator, path: str) -> tuple[dict[str, Any] | None, str | None]:
    """Row of one file, or the reason there is none (runs in worker processes)."""
    try:
        header = read_primary_header(path)
    except (OSError, ValueError, EOFError) as err:
        return None, f"not a readable FITS file: {err}"
    try:
        return translator.translate(header, path), None
    except IngestError as err:
        return None, str(err)


def _die_with_parent(parent: int) -> None:
    """Worker initializer: end this worker when the process that started it ends, however it ends.

    On Linux the kernel sends SIGKILL when the parent dies (``PR_SET_PDEATHSIG``);
    elsewhere a daemon thread polls the parent pid. A parent that died before
    this ran is caught by the ``getppid`` check.
    """
    armed = False
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            armed = ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
    if os.getppid() != parent:
        os._exit(1)
    if not armed:
        threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _translate_all(translator: Translator, paths: Sequence[str], workers: int,
                   progress: bool) -> list[tuple[dict[str, Any] | None, str | None]]:
    """Row (or failure reason) of each file, in order: in this process, or ``workers`` processes."""
    task = functools.partial(_translate_file, translator)
    workers = min(workers, len(paths))
    rows: Iterable[tuple[dict[str, Any] | None, str | None]]
    with contextlib.ExitStack() as stack:
        if workers <= 1:
            rows = map(task, paths)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers, initializer=_die_with_parent,
                                                           initargs=(os.getpid(),)))
            rows = pool.map(task, paths, chunksize=max(1, len(paths) // (8 * workers)))
        bar = stack.enter_context(tqdm(total=len(paths), desc="reading headers", unit="file",
                                       disable=not progress))
        results = []
        for row in rows:
            results.append(row)
            bar.update()
        return results


def _contained(root: str, relpath: str) -> str:
    """``relpath`` normalised, after checking that its directory resolves inside ``root``.

    The directory, not the file, is resolved, so an existing symlink at the
    destination (a linked raw) does not count as leaving the root.
    """
    directory, name = posixpath.split(posixpath.normpath(relpath))
    if name in ("", ".", ".."):
        raise UnsafePathError(f"destination {relpath!r} does not name a file")
    ensure_within(root, directory or ".")
    return posixpath.join(directory, name)


def _destination(row: Mapping[str, Any], mapper: Any, template: str | None) -> str:
    """The repository-relative path of a raw, HDU selector removed."""
    if mapper is not None:
        path = mapper.map("raw", dict(row), write=True).getLocations()[0]
    else:
        assert template is not None, "ingest_raws requires a mapper or a template"
        try:
            path = template % row
        except (KeyError, TypeError, ValueError) as err:
            raise IngestError(f"cannot fill raw template {template!r} from {dict(row)}: {err}") from err
    return path.split("[", 1)[0]


# -- the registry ------------------------------------------------------------------------------


def _open_registry(root: str, translator: Translator, create: bool, registry: Any = None,
                   mapper: Any = None) -> Registry:
    """The repository's registry, opened for writing; its existing tables checked against the camera's.

    The registry is ``registry`` (a ``postgresql://`` URI or a ``.pgsql``
    file) when given, else ``ROOT/registry.pgsql`` when it exists, else the
    mapper's registry when it is in PostgreSQL, else ``ROOT/registry.sqlite3``.

    Raises
    ------
    butler.errors.IngestError
        When there is no registry (or no ``raw`` table) and ``create`` is false.
    butler.errors.RegistrySchemaError
        When a table of the camera's registry exists without one of its columns
        (a registry of another schema), naming the registry, table and column.
    """
    target = _postgres_target(root, registry, mapper)
    path = os.path.join(root, REGISTRY_NAME)
    if target is None and not create and not os.path.exists(path):
        raise IngestError(f"no registry at {path} (and create is false)")
    opened: Registry = (SqliteRegistry(path, readOnly=False) if target is None
                        else PostgresRegistry(target, readOnly=False, root=root))
    try:
        tables = opened.tables()
        if not create and "raw" not in tables:
            raise IngestError(f"{opened.location} has no raw table (and create is false)")
        for spec in translator.tables():
            if spec.name in tables:
                opened.require_columns(spec.name, spec.column_names)
    except BaseException:
        opened.close()
        raise
    return opened


def _postgres_target(root: str, registry: Any, mapper: Any) -> Any:
    """Where the PostgreSQL registry ingest writes to is (see `_open_registry`); None for the SQLite file."""
    if registry is None:
        legacy = os.path.join(root, LEGACY_POSTGRES_NAME)
        mapped = getattr(mapper, "registry", None)
        if os.path.exists(legacy):
            registry = legacy
        elif isinstance(mapped, PostgresRegistry):
            return mapped.target
        else:
            return None
    if is_postgres_uri(registry):
        return registry
    found = Registry.create(os.fspath(registry))
    if not isinstance(found, PostgresRegistry):
        raise IngestError(f"registry {registry}: ingest writes to a postgresql:// URI or a .pgsql file given "
                          f"here, or to ROOT/{REGISTRY_NAME}")
    return found.target


def _registry_missing(registry: Registry) -> bool:
    """Whether the registry is still to be made: no SQLite file yet, or no ``raw`` table in PostgreSQL."""
    if isinstance(registry, SqliteRegistry):
        return not os.path.exists(registry.location)
    return "raw" not in registry.tables()


def _existing_keys(registry: Registry, unique: Sequence[str]) -> set[tuple]:
    """The UNIQUE-column values already registered (none when there is no ``raw`` table yet)."""
    if "raw" not in registry.tables():
        return set()
    return set(registry.lookup(list(unique), "raw", {}))


def _create_schema(registry: Registry, translator: Translator, template_keys: Iterable[str]) -> None:
    """Create the camera's tables and indexes that are missing (existing tables are checked, not altered).

    ``raw`` also gets one index per key of the raw template that is a ``raw``
    column (and ``visit``), unless its UNIQUE constraint already starts with it.
    """
    existing = set(registry.tables())
    for spec in translator.tables():
        if spec.name in existing:
            continue
        registry.create_table(spec.name, spec.columns, unique=spec.unique, primary_key=spec.primary_key)
        indexes = list(spec.indexes)
        if spec.name == "raw":
            keys = dict.fromkeys([*template_keys, "visit"])
            indexes += [(f"ix_raw_{key}", (key,)) for key in keys
                        if key in spec.column_names and spec.unique[:1] != (key,)]
        for name, columns in indexes:
            registry.create_index(spec.name, columns, name=name)


# -- files -------------------------------------------------------------------------------------


def _same_content(source: str, storage: StorageInterface, relpath: str) -> bool:
    """Whether a source file and a file in the repository hold the same bytes (the same file, or same size
    and SHA-256)."""
    destination = storage.locationWithRoot(relpath)
    if os.path.samefile(source, destination):
        return True
    if os.path.getsize(source) != os.path.getsize(destination):
        return False
    source_storage, name = Storage.forFile(source)
    return source_storage.checksum(name) == storage.checksum(relpath)


def _transfer(storage: StorageInterface, source: str, relpath: str, mode: str) -> None:
    """Put one file in place; a destination with the source's content already is left alone.

    ``link`` places an absolute symbolic link; ``move`` places a hard link
    (a copy across file systems) and the caller removes the source once the
    registry is committed. The storage publishes each under its final name at
    once, so no partial destination is ever visible.
    """
    if mode == "skip":
        return
    if storage.exists(relpath) or storage.linkTarget(relpath) is not None:
        if storage.exists(relpath) and _same_content(source, storage, relpath):
            _log.debug("%s is in place already (%s)", source, relpath)
            return
        raise FileExistsError(f"{storage.locationWithRoot(relpath)} exists already and is another file")
    if mode != "move":
        storage.putFile(source, relpath, "symlink" if mode == "link" else mode)
        return
    try:
        storage.putFile(source, relpath, "link")
    except DatasetNotFoundError:
        raise
    except OSError:  # another file system, or no hard links there: copy
        storage.putFile(source, relpath, "copy")


def _remove_sources(storage: StorageInterface, pairs: Iterable[tuple[str, str]]) -> None:
    """End moves: remove each source whose destination (relative to the storage's root) holds its content.

    A source that is its own destination (a file registered in place) stays.
    """
    for source, relpath in pairs:
        destination = storage.locationWithRoot(relpath)
        if (os.path.exists(source) and storage.exists(relpath)
                and os.path.realpath(source) != os.path.realpath(destination)
                and _same_content(source, storage, relpath)):
            try:
                source_storage, name = Storage.forFile(source)
                source_storage.remove(name)
            except OSError as err:
                _log.warning("%s is ingested as %s but could not be removed: %s", source, destination, err)


# -- planning and placing ----------------------------------------------------------------------


@attrs.frozen
class _Plan:
    """What one ingest call will do: files to place, and duplicates with their destinations."""

    place: list[tuple[IngestedFile, str]]
    duplicates: list[tuple[IngestProblem, str]]

    def directories(self) -> set[str]:
        """The root (``""``) and every destination directory, relative to the root (where dead temporaries
        may lie)."""
        return {""} | {posixpath.dirname(destination) for _, destination in [*self.place, *self.duplicates]}


def _plan(root: str, registry: Registry, paths: Sequence[str], translator: Translator, mapper: Any,
          template: str | None, ignore_ingested: bool, workers: int, progress: bool,
          report: IngestReport) -> _Plan:
    """Translate every file and find its contained destination; report failures and duplicates.

    Raises before anything is written: `UnsafePathError` for a destination
    outside the root, `IngestError` for duplicates unless ``ignore_ingested``.
    """
    seen = _existing_keys(registry, translator.unique)
    plan = _Plan([], [])
    for path, (row, error) in zip(paths, _translate_all(translator, paths, workers, progress)):
        if row is None:
            assert error is not None, "a file without a row has a reason"
            report.failed.append(IngestProblem(path, error))
            _log.warning("not ingesting %s", report.failed[-1])
            continue
        key = tuple(row[name] for name in translator.unique)
        relpath = _destination(row, mapper, template)
        destination = _contained(root, relpath)
        if key in seen:
            plan.duplicates.append((IngestProblem(path, "already ingested: " + ", ".join(
                f"{name}={value!r}" for name, value in zip(translator.unique, key))), destination))
            continue
        seen.add(key)
        plan.place.append((IngestedFile(path, relpath, row), destination))
    if plan.duplicates and not ignore_ingested:
        raise IngestError(f"already ingested in {registry.location}: "
                          + "; ".join(f"{item.source} ({item.reason.removeprefix('already ingested: ')})"
                                      for item, _ in plan.duplicates)
                          + " (ignore_ingested=True, or butler ingest --ignore-ingested, skips them)")
    for item, _ in plan.duplicates:
        _log.info("skipping %s: %s", item.source, item.reason)
        report.skipped.append(item)
    return plan


def _place(registry: Registry, storage: StorageInterface, planned: Sequence[tuple[IngestedFile, str]],
           translator: Translator, mode: str, ignore_ingested: bool, progress: bool,
           report: IngestReport) -> None:
    """Register each file and put it in place, both or neither; then add the new visits to ``raw_visit``."""
    per_raw = [spec.name for spec in translator.tables() if spec.row_per_raw]
    for item, destination in tqdm(planned, desc=f"ingesting ({mode})", unit="file", disable=not progress):
        try:
            with registry.transaction():
                (rowid,) = registry.insert("raw", [item.row])
                for table in per_raw:
                    registry.insert(table, [{"id": rowid}])
                _transfer(storage, item.source, destination, mode)
        except (OSError, RegistryConflictError) as err:
            concurrent = isinstance(err, RegistryConflictError)
            reason = f"{err} (ingested concurrently?)" if concurrent else str(err)
            problem = IngestProblem(item.source, reason)
            _log.warning("not ingesting %s", problem)
            (report.skipped if concurrent and ignore_ingested else report.failed).append(problem)
        else:
            report.ingested.append(item)
    # the distinct visits of the new rows, in ingest order, that raw_visit lacks
    columns = list(translator.visit_columns)
    visits = dict.fromkeys(tuple(item.row[name] for name in columns) for item in report.ingested)
    known = set(registry.lookup(columns, "raw_visit", {}))
    registry.insert("raw_visit", [dict(zip(columns, visit)) for visit in visits if visit not in known],
                    ignore_conflicts=True)


def ingest_raws(root: str, files: Iterable[str], *, mode: str = "link", translator: Translator | None = None,
                mapper: Any = None, template: str | None = None, ignore_ingested: bool = False,
                create: bool = True, workers: int | None = None, progress: bool = True,
                bad_files: Iterable[str] = (), dry_run: bool = False, registry: Any = None) -> IngestReport:
    """Ingest raw files into a repository: put them in place and register them.

    Parameters
    ----------
    root : `str`
        The repository root (holding, or to hold, ``registry.sqlite3``).
    files : iterable of `str`
        The raw files, in ingest order (registry ``id`` order).
    mode : {'link', 'copy', 'move', 'skip'}
        Symlink (absolute), copy, rename, or leave the file alone and only register it.
    translator : translator, optional
        The camera's header translator; default ``mapper.translator``.
    mapper : optional
        The repository's mapper: each destination is ``mapper.map('raw', row,
        write=True)`` (first location, HDU selector removed).
    template : `str`, optional
        A ``%``-template filled from the row, used when no mapper is given.
    ignore_ingested : `bool`
        Skip (and report) files whose UNIQUE columns are already registered,
        or repeat an earlier file of the same call, instead of failing.
    create : `bool`
        Create the registry and its tables when missing.
    workers : `int`, optional
        Processes reading headers (default: the number of CPUs, at most 8).
        ``1`` reads them in this process.
    progress : `bool`
        Show progress bars.
    bad_files : iterable of `str`
        ``fnmatch`` patterns of file names (basenames) to skip.
    dry_run : `bool`
        Read and check everything, write nothing.
    registry : `str`, optional
        A PostgreSQL registry to write to: a ``postgresql://`` URI or a legacy
        ``.pgsql`` file. Default: ``ROOT/registry.pgsql`` when it exists, else
        the mapper's registry when it is in PostgreSQL, else
        ``ROOT/registry.sqlite3``. Tables are created when missing, never
        dropped; everything is written in one transaction, so a client killed
        part-way leaves no row.

    Returns
    -------
    report : `IngestReport`

    Raises
    ------
    ValueError
        For an unknown mode, or with neither ``mapper`` nor ``template``, or no translator.
    butler.errors.UnsafePathError
        When a destination would lie outside ``root`` (nothing is written).
    butler.errors.IngestError
        When files are already ingested and ``ignore_ingested`` is false, or
        the registry is missing and ``create`` is false (nothing is written).
    """
    if mode not in MODES:
        raise ValueError(f"unknown ingest mode {mode!r}; expected one of {MODES}")
    translator = translator if translator is not None else getattr(mapper, "translator", None)
    if translator is None:
        raise ValueError("no header translator: give translator= or a mapper with a translator")
    if mapper is None and template is None:
        raise ValueError("give a mapper or a raw template to place the files")
    root = os.path.abspath(root)
    if workers is None:
        workers = min(os.cpu_count() or 1, 8)

    report = IngestReport(dry_run=dry_run)
    patterns = list(bad_files)
    candidates = []
    for path in files:
        if any(fnmatch.fnmatch(os.path.basename(path), pattern) for pattern in patterns):
            report.skipped.append(IngestProblem(path, "matches a bad-file pattern"))
        else:
            candidates.append(path)
    with _open_registry(root, translator, create, registry, mapper) as registry:
        plan = _plan(root, registry, candidates, translator, mapper, template, ignore_ingested, workers,
                     progress, report)
        if dry_run:
            report.ingested.extend(item for item, _ in plan.place)
            return report
        storage = Storage.makeFromURI(root, create=True)
        for directory in plan.directories():
            storage.removeStaleTemporaries(directory)
        if plan.place or _registry_missing(registry):
            # else nothing to add: the registry (perhaps someone else's) is left byte for byte as it was
            keys = template_fields(template) if template is not None else mapper.getKeys("raw", None) or {}
            with registry.transaction():
                _create_schema(registry, translator, keys)
                _place(registry, storage, plan.place, translator, mode, ignore_ingested, progress, report)
    if mode == "move":  # the registry is committed: the moved sources can go
        ingested = {id(item) for item in report.ingested}
        moved = [(item.source, destination) for item, destination in plan.place if id(item) in ingested]
        duplicates = [(item.source, destination) for item, destination in plan.duplicates]
        _remove_sources(storage, moved + duplicates)
    _log.info("%s into %s", report.summary(), root)
    return report
