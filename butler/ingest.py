"""Raw ingest: register raw files in a repository's registry and put them in place.

:func:`ingest_raws` reads the primary header of each file (in parallel
processes), turns it into a ``raw`` registry row with a camera translator,
finds each file's place in the repository (the mapper's ``raw`` location, or a
``%``-template), and then, one file at a time, moves the file into place and
inserts its row.  The registry is edited as a temporary copy that replaces
``registry.sqlite3`` only when everything is done, so a failed or interrupted
ingest leaves the old registry untouched.

This module is camera-agnostic: the translator comes from the caller or from
the repository's mapper (``mapper.translator``).  A translator is any object
with ``columns`` (``(name, SQL type)`` pairs), ``unique``, ``visit_columns``
and ``translate(header, filename) -> dict``, as in :mod:`mappers.translators`.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import gzip
import logging
import os
import secrets
import shutil
import sqlite3
import struct
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Iterable, Iterator, Mapping, Protocol, Sequence

import attrs
from astropy.io import fits
from tqdm import tqdm

from .errors import IngestError, UnsafePathError
from .safeio import atomic_write, ensure_within, makedirs

__all__ = ["MODES", "IngestedFile", "IngestProblem", "IngestReport", "ingest_raws", "read_primary_header"]

_log = logging.getLogger(__name__)

MODES = ("link", "copy", "move", "skip")
"""How a file gets into the repository: symlink, copy, rename, or not at all (register in place)."""

REGISTRY_NAME = "registry.sqlite3"
_GZIP_MAGIC = b"\x1f\x8b"
_FITS_BLOCK = 2880


class Translator(Protocol):
    """What ingest needs from a camera's header translator."""

    columns: Sequence[tuple[str, str]]
    unique: Sequence[str]
    visit_columns: Sequence[str]

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
        The file.

    Returns
    -------
    header : `astropy.io.fits.Header`

    Raises
    ------
    OSError, ValueError, EOFError
        When the file cannot be read or is not a complete FITS file.
    """
    with open(path, "rb") as stream:
        compressed = stream.read(2) == _GZIP_MAGIC
        if compressed:
            stream.seek(-4, os.SEEK_END)
            (size,) = struct.unpack("<I", stream.read(4))  # uncompressed size mod 2**32
        else:
            size = os.fstat(stream.fileno()).st_size
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


def _translate_all(translator: Translator, paths: Sequence[str], workers: int,
                   progress: bool) -> list[tuple[dict[str, Any] | None, str | None]]:
    """Row (or failure reason) of each file, in order: in this process, or ``workers`` processes."""
    task = functools.partial(_translate_file, translator)
    workers = min(workers, len(paths))
    with contextlib.ExitStack() as stack:
        if workers <= 1:
            rows = map(task, paths)
        else:
            pool = stack.enter_context(ProcessPoolExecutor(max_workers=workers))
            rows = pool.map(task, paths, chunksize=max(1, len(paths) // (8 * workers)))
        bar = stack.enter_context(tqdm(total=len(paths), desc="reading headers", unit="file",
                                       disable=not progress))
        results = []
        for row in rows:
            results.append(row)
            bar.update()
        return results


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _names(columns: Iterable[str]) -> str:
    return ", ".join(_quote(name) for name in columns)


def _contained(root: str, relpath: str) -> str:
    """The absolute destination of ``relpath``: its directory must resolve inside ``root``.

    The directory, not the file, is resolved, so an existing symlink at the
    destination (a linked raw) does not count as leaving the root.
    """
    directory, name = os.path.split(os.path.normpath(relpath))
    if name in ("", ".", ".."):
        raise UnsafePathError(f"destination {relpath!r} does not name a file")
    return os.path.join(ensure_within(root, directory or "."), name)


def _destination(row: Mapping[str, Any], mapper: Any, template: str | None) -> str:
    """The repository-relative path of a raw, HDU selector removed."""
    if mapper is not None:
        path = mapper.map("raw", dict(row), write=True).getLocations()[0]
    else:
        try:
            path = template % row
        except (KeyError, TypeError, ValueError) as err:
            raise IngestError(f"cannot fill raw template {template!r} from {dict(row)}: {err}") from err
    return path.split("[", 1)[0]


def _existing_keys(registry: str, unique: Sequence[str], create: bool) -> set[tuple]:
    """The UNIQUE-column values already registered (none when the tables are still to be made)."""
    if not os.path.exists(registry):
        if create:
            return set()
        raise IngestError(f"no registry at {registry} (and create is false)")
    connection = sqlite3.connect(f"file:{registry}?mode=ro", uri=True)
    try:
        if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'raw'").fetchone():
            return set(connection.execute(f"SELECT {_names(unique)} FROM raw"))
        if create:
            return set()
        raise IngestError(f"{registry} has no raw table (and create is false)")
    except sqlite3.Error as err:
        raise IngestError(f"cannot read the raw table of {registry}: {err}") from err
    finally:
        connection.close()


def _create_tables(connection: sqlite3.Connection, translator: Translator) -> None:
    types = dict(translator.columns)
    columns = ", ".join(f"{_quote(name)} {sql_type}" for name, sql_type in translator.columns)
    connection.execute(f"CREATE TABLE IF NOT EXISTS raw (id INTEGER PRIMARY KEY AUTOINCREMENT, "
                       f"{columns}, UNIQUE({_names(translator.unique)}))")
    visit_unique = [name for name in translator.visit_columns if name in translator.unique]
    visit_columns = ", ".join(f"{_quote(name)} {types[name]}" for name in translator.visit_columns)
    connection.execute(f"CREATE TABLE IF NOT EXISTS raw_visit ({visit_columns}, "
                       f"UNIQUE({_names(visit_unique)}))")
    if "visit" in types:
        connection.execute("CREATE INDEX IF NOT EXISTS raw_by_visit ON raw (visit)")


@contextlib.contextmanager
def _registry_copy(root: str, create: bool, translator: Translator) -> Iterator[sqlite3.Connection]:
    """A connection to a temporary copy of the registry that replaces it when the block succeeds.

    The root directory is locked (``flock``) meanwhile, so concurrent ingests
    into one repository take turns instead of replacing each other's registry.
    """
    registry = os.path.join(root, REGISTRY_NAME)
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(directory, fcntl.LOCK_EX)
        with atomic_write(registry, root=root) as tmp:
            if os.path.exists(registry):
                shutil.copyfile(registry, tmp)
                shutil.copymode(registry, tmp)
            connection = sqlite3.connect(tmp, isolation_level=None)
            try:
                connection.execute("BEGIN")
                if create:
                    _create_tables(connection, translator)
                yield connection
                connection.execute("COMMIT")
            finally:
                connection.close()
    finally:
        os.close(directory)  # releases the lock


def _symlink(source: str, destination: str) -> None:
    """Point ``destination`` at ``source`` (absolute) atomically: link a temporary name, rename it."""
    directory, name = os.path.split(destination)
    makedirs(directory)
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(6)}.tmp")
    os.symlink(os.path.abspath(source), tmp)
    try:
        os.replace(tmp, destination)
    except BaseException:
        os.unlink(tmp)
        raise


def _copy(source: str, destination: str, root: str) -> None:
    with atomic_write(destination, root=root) as tmp:
        shutil.copyfile(source, tmp)


def _move(source: str, destination: str, root: str) -> None:
    makedirs(os.path.dirname(destination))
    try:
        os.rename(source, destination)
    except OSError:  # another file system: copy, then remove the source
        _copy(source, destination, root)
        os.unlink(source)


def _transfer(source: str, destination: str, mode: str, root: str) -> None:
    """Put one file in place; a destination that is already the source is left alone."""
    if mode == "skip":
        return
    if os.path.lexists(destination):
        if os.path.exists(destination) and os.path.samefile(source, destination):
            return
        raise FileExistsError(f"{destination} exists already and is another file")
    if mode == "link":
        _symlink(source, destination)
    elif mode == "copy":
        _copy(source, destination, root)
    else:
        _move(source, destination, root)


def _plan(root: str, paths: Sequence[str], translator: Translator, mapper: Any, template: str | None,
          create: bool, ignore_ingested: bool, workers: int, progress: bool,
          report: IngestReport) -> list[tuple[IngestedFile, str]]:
    """Translate every file and find its contained destination; report failures and duplicates.

    Returns the files to ingest, each with its absolute destination.  Raises
    before anything is written: `UnsafePathError` for a destination outside the
    root, `IngestError` for duplicates unless ``ignore_ingested``.
    """
    registry = os.path.join(root, REGISTRY_NAME)
    seen = _existing_keys(registry, translator.unique, create)
    duplicates = []
    planned = []
    for path, (row, error) in zip(paths, _translate_all(translator, paths, workers, progress)):
        if row is None:
            report.failed.append(IngestProblem(path, error))
            _log.warning("not ingesting %s", report.failed[-1])
            continue
        key = tuple(row[name] for name in translator.unique)
        if key in seen:
            duplicates.append(IngestProblem(path, "already ingested: " + ", ".join(
                f"{name}={value!r}" for name, value in zip(translator.unique, key))))
            continue
        seen.add(key)
        relpath = _destination(row, mapper, template)
        planned.append((IngestedFile(path, relpath, row), _contained(root, relpath)))
    if duplicates and not ignore_ingested:
        raise IngestError(f"already ingested in {registry}: "
                          + "; ".join(f"{item.source} ({item.reason.removeprefix('already ingested: ')})"
                                      for item in duplicates)
                          + " (ignore_ingested=True, or butler ingest --ignore-ingested, skips them)")
    for item in duplicates:
        _log.info("skipping %s: %s", item.source, item.reason)
    report.skipped.extend(duplicates)
    return planned


def _place(connection: sqlite3.Connection, planned: Sequence[tuple[IngestedFile, str]],
           translator: Translator, mode: str, root: str, ignore_ingested: bool, progress: bool,
           report: IngestReport) -> None:
    """Insert each row and put its file in place, both or neither; then fill ``raw_visit``."""
    insert = (f"INSERT INTO raw ({_names(name for name, _ in translator.columns)}) "
              f"VALUES ({', '.join('?' * len(translator.columns))})")
    for item, destination in tqdm(planned, desc=f"ingesting ({mode})", unit="file", disable=not progress):
        connection.execute("SAVEPOINT raw_file")
        try:
            connection.execute(insert, [item.row[name] for name, _ in translator.columns])
            _transfer(item.source, destination, mode, root)
        except (OSError, sqlite3.IntegrityError) as err:
            connection.execute("ROLLBACK TO raw_file")
            concurrent = isinstance(err, sqlite3.IntegrityError)
            reason = f"{err} (ingested concurrently?)" if concurrent else str(err)
            problem = IngestProblem(item.source, reason)
            _log.warning("not ingesting %s", problem)
            (report.skipped if concurrent and ignore_ingested else report.failed).append(problem)
        else:
            report.ingested.append(item)
        connection.execute("RELEASE raw_file")
    # the distinct projection of raw, in the order each was first ingested
    visit_columns = _names(translator.visit_columns)
    connection.execute(f"INSERT OR IGNORE INTO raw_visit ({visit_columns}) SELECT {visit_columns} "
                       f"FROM raw GROUP BY {visit_columns} ORDER BY MIN(id)")


def ingest_raws(root: str, files: Iterable[str], *, mode: str = "link", translator: Translator | None = None,
                mapper: Any = None, template: str | None = None, ignore_ingested: bool = False,
                create: bool = True, workers: int | None = None, progress: bool = True,
                bad_files: Iterable[str] = (), dry_run: bool = False) -> IngestReport:
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
    planned = _plan(root, candidates, translator, mapper, template, create, ignore_ingested, workers,
                    progress, report)
    if dry_run:
        report.ingested.extend(item for item, _ in planned)
        return report
    if not planned and os.path.exists(os.path.join(root, REGISTRY_NAME)):
        # nothing to add: the registry (perhaps someone else's) is left byte for byte as it was
        _log.info("%s into %s", report.summary(), root)
        return report
    makedirs(root)
    with _registry_copy(root, create, translator) as connection:
        _place(connection, planned, translator, mode, root, ignore_ingested, progress, report)
    _log.info("%s into %s", report.summary(), root)
    return report
