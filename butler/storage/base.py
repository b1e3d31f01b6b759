"""`StorageInterface` (the primitives of one kind of storage, and all that derives from them) and `Storage`.

A storage is where a repository's bytes live. A storage class implements a
few primitives on paths relative to its root (`exists`, `openRead`,
`localFile`, `writer`, `listNames`, `putFile`, `remove`, `linkTarget`,
`lock`); everything else is derived from them once, here: object reads and
writes through the formatters, cfg reads and writes, ``_parent`` resolution,
searches (with compressed variants), and backups.

`Storage` is the scheme table, in the style of fsspec's registry: a URI
scheme names a storage class by dotted path, imported on first use. Plain
paths and ``file://`` are POSIX; ``mem://`` is an in-process storage for
tests; ``s3://`` is `S3Storage` (boto3, imported on first use); ``http(s)://`` a
repository served by ``butler serve`` (read-only); a scheme whose backend is
not installed raises with an install hint; any other scheme raises naming the
known ones. A URI is never taken for a local path.
"""

from __future__ import annotations

import abc
import contextlib
import contextvars
import fnmatch
import importlib
import io
import logging
import os
import posixpath
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from typing import IO, Any, ClassVar

from ..errors import (
    ButlerError,
    DatasetNotFoundError,
    RepositoryError,
    UnknownStorageError,
    UnsafePathError,
    describe_location,
)
from ..formatters import get_formatter
from ..location import split_hdu

__all__ = ["StorageInterface", "Storage", "split_uri", "COMPRESSED_SUFFIXES", "observe_writes"]

_log = logging.getLogger(__name__)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PARENT_LINK = "_parent"
_WILDCARDS = frozenset("*?[")
#: The variants of a file name searched, in order, by `StorageInterface.findCompressed`.
COMPRESSED_SUFFIXES = (".gz", ".fz")


#: ``(storage, relpath, size, sha256)`` of each file about to be published, while `observe_writes` is active
_write_observer: contextvars.ContextVar[Callable[[Any, str, int, str], None] | None] = contextvars.ContextVar(
    "butler_write_observer", default=None)


class observe_writes:  # noqa: N801 - used as a function: ``with observe_writes(callback):``
    """Call ``callback(storage, relpath, size, sha256)`` for each file a storage writes in this block.

    The digest is of the bytes the storage writes (``writeBytes``: the data as
    handed over; ``writer``: the finished temporary file, the only place a
    library writing by path leaves its bytes), and the call comes after the
    bytes are complete and *before* the file is published at its path: what the
    callback records exists before the file does. An exception from the callback
    publishes nothing. (A class, not a generator: it wraps every recorded put.)
    """

    __slots__ = ("_callback", "_token")

    def __init__(self, callback: Callable[[Any, str, int, str], None]):
        self._callback: Callable[[Any, str, int, str], None] | None = callback

    def __enter__(self) -> None:
        self._token = _write_observer.set(self._callback)

    def __exit__(self, *exc: object) -> None:
        _write_observer.reset(self._token)


#: the lock of a write that keeps no backup (a ``nullcontext`` may be entered again and again)
_NO_LOCK = contextlib.nullcontext()


def _digest_file(path: str) -> tuple[int, str]:
    """Size and SHA-256 of a local file."""
    import hashlib  # here, as in each function that digests: a command that only reads never loads OpenSSL

    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


def split_uri(uri: str) -> tuple[str, str]:
    """Split a URI into its scheme (``""`` for a plain path) and the rest.

    ``file://`` URIs give the scheme ``"file"`` and the plain path.
    """
    uri = os.fspath(uri)
    match = _SCHEME.match(uri)
    if match is None:
        return "", uri
    return match.group(1).lower(), uri[match.end():]


def _is_within_textually(relpath: str) -> bool:
    return not (relpath == ".." or relpath.startswith(("/", "../")))


class StorageInterface(abc.ABC):
    """A repository root and the operations on its files.

    Paths given to an instance are relative to its root (``/``-separated) and
    may end in an ``[N]`` HDU selector where they name a dataset. A relative
    path that escapes the root (an absolute path, or ``..`` above the root)
    is refused with `UnsafePathError` by every operation.

    Parameters
    ----------
    uri : `str`
        The repository root.
    create : `bool`
        Create the root if it does not exist; otherwise a missing root raises
        `RepositoryError`.
    """

    #: The root, as the storage names it in messages (a path or a URI).
    root: str
    #: Whether `localFile` gives the stored file itself (readers may then memory-map it).
    hasLocalFiles: ClassVar[bool] = False
    #: Whether `cachedLocalFile` keeps local copies of remote files (a SQLite registry is opened from one).
    keepsLocalCopies: ClassVar[bool] = False

    @abc.abstractmethod
    def __init__(self, uri: str, create: bool):
        """Bind the storage to a root."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root!r})"

    # -- primitives -------------------------------------------------------------------------

    @abc.abstractmethod
    def _exists(self, relpath: str) -> bool:
        """Whether a file or a directory exists at a checked relative path."""

    @abc.abstractmethod
    def _openRead(self, relpath: str) -> IO[bytes]:
        """Open a checked relative path for binary reading; `DatasetNotFoundError` when missing."""

    @abc.abstractmethod
    def _writer(self, relpath: str) -> contextlib.AbstractContextManager[str]:
        """A context manager giving a new empty local temporary file, published atomically at exit."""

    @abc.abstractmethod
    def _listNames(self, relpath: str) -> list[str]:
        """Every file under a checked relative directory (``""``: the root), relative to the root."""

    @abc.abstractmethod
    def _putFile(self, localPath: str, relpath: str, mode: str) -> None:
        """Place a local file at a checked relative path (see `putFile`)."""

    @abc.abstractmethod
    def _remove(self, relpath: str) -> None:
        """Remove the file at a checked relative path; `DatasetNotFoundError` when missing."""

    @abc.abstractmethod
    def _lock(self, relpath: str) -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock on a dataset (across processes where the storage is shared)."""

    def _linkTarget(self, relpath: str) -> str | None:
        """The target of a symbolic link at a checked relative path, None when it is not a link."""
        return None

    @contextlib.contextmanager
    def _localFile(self, relpath: str) -> Iterator[str]:
        """A local file holding the bytes of a checked relative path, removed at exit."""
        with self._openRead(relpath) as stream, _scratch_file(relpath) as local:
            with open(local, "wb") as out:
                shutil.copyfileobj(stream, out)
            yield local

    # -- the checked public form of the primitives ---------------------------------------------

    def _check(self, path: str) -> str:
        """``path`` without its HDU selector, normalised; `UnsafePathError` when it escapes the root."""
        relpath = split_hdu(path)[0] if path[-1:] == "]" else path
        if relpath[:1] in ("/", ".") or "/." in relpath or "//" in relpath:  # on every read: cheap tests first
            relpath = posixpath.normpath(relpath)
            if not _is_within_textually(relpath):
                raise UnsafePathError(f"path {path!r} is outside the repository root {self.root!r}")
        return relpath

    def exists(self, path: str) -> bool:
        """Whether a file (or directory) exists at ``path`` (an HDU selector is ignored)."""
        return self._exists(self._check(path))

    def openRead(self, path: str) -> IO[bytes]:
        """Open ``path`` for binary reading (the caller closes it).

        Raises
        ------
        DatasetNotFoundError
            When there is no file at ``path``.
        """
        return self._openRead(self._check(path))

    def readBytes(self, path: str) -> bytes:
        """Return the bytes of the file at ``path`` (`DatasetNotFoundError` when missing)."""
        with self.openRead(path) as stream:
            return stream.read()

    def checksum(self, path: str) -> str:
        """The SHA-256 (hex) of the file at ``path``, read as a stream; `DatasetNotFoundError` when missing."""
        import hashlib

        digest = hashlib.sha256()
        with self.openRead(path) as stream:
            while block := stream.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def stat(self, path: str) -> tuple[int, float] | None:
        """``(size, mtime)`` of the file at ``path`` when the storage tells them cheaply, else None (the default).

        One metadata call, no read: what provenance records of each file a get reads.
        """
        return None

    def localFile(self, path: str) -> contextlib.AbstractContextManager[str]:
        """A context manager giving a local path holding the file at ``path``.

        For `hasLocalFiles` storages this is the stored file itself (it may not
        exist: readers report the miss); others give a private copy, removed
        when the block ends.
        """
        return self._localFile(self._check(path))

    def cachedLocalFile(self, path: str) -> str:
        """A local path holding the file at ``path`` that stays valid after the call.

        Only for storages that `keepsLocalCopies` (a remote storage's cache,
        keyed by the file's version); others raise `NotImplementedError`.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps no local copies (of {path} in {self.root})")

    def writer(self, path: str) -> contextlib.AbstractContextManager[str]:
        """A context manager giving a local temporary path to write ``path`` through.

        When the block ends without an error the temporary file is published at
        ``path`` atomically (replacing any file there); on an error nothing is
        published and the temporary file is removed. A reader sees the old file
        or the new one, never a part.

        Raises
        ------
        UnsafePathError
            When ``path`` is outside the root; nothing is written.
        """
        relpath = self._check(path)
        observer = _write_observer.get()
        return self._writer(relpath) if observer is None else self._observedWriter(relpath, observer)

    @contextlib.contextmanager
    def _observedWriter(self, relpath: str, observer: Callable[[Any, str, int, str], None]) -> Iterator[str]:
        """`writer`, telling the observer the finished temporary's size and digest before it is published."""
        with self._writer(relpath) as tmp:
            yield tmp
            observer(self, relpath, *_digest_file(tmp))

    def _announce(self, relpath: str, data: bytes) -> None:
        """Tell the write observer, if any, the size and digest of bytes about to be written (`observe_writes`)."""
        observer = _write_observer.get()
        if observer is not None:
            import hashlib

            observer(self, relpath, len(data), hashlib.sha256(data).hexdigest())

    def writeBytes(self, path: str, data: bytes) -> None:
        """Write ``data`` at ``path`` atomically (see `writer`)."""
        relpath = self._check(path)
        self._announce(relpath, data)
        with self._writer(relpath) as tmp, open(tmp, "wb") as stream:
            stream.write(data)

    def listNames(self, prefix: str = "") -> list[str]:
        """Return every file under the directory ``prefix`` (default: the root), relative to the root, sorted."""
        return sorted(self._listNames(self._check(prefix) if prefix else ""))

    def putFile(self, localPath: str, path: str, mode: str = "copy") -> None:
        """Place the local file ``localPath`` at ``path`` in this storage.

        Parameters
        ----------
        localPath : `str`
            An existing local file.
        path : `str`
            The destination, relative to the root; any file there is replaced.
        mode : `str`
            ``"copy"``, ``"move"`` (the local file is gone afterwards),
            ``"link"`` (a hard link) or ``"symlink"`` (a symbolic link to the
            absolute local path). Storages that cannot link copy instead.

        Raises
        ------
        UnsafePathError
            When ``path`` is outside the root.
        ValueError
            When ``mode`` is none of those.
        """
        if mode not in ("copy", "move", "link", "symlink"):
            raise ValueError(f"unknown placement mode {mode!r} for {path} in {self.root}; "
                             "use copy, move, link or symlink")
        self._putFile(localPath, self._check(path), mode)

    def remove(self, path: str) -> None:
        """Remove the file at ``path`` (`DatasetNotFoundError` when missing)."""
        self._remove(self._check(path))

    def lock(self, path: str) -> contextlib.AbstractContextManager[None]:
        """Hold an exclusive lock on the dataset at ``path`` for the duration of a ``with`` block."""
        return self._lock(self._check(path))

    def linkTarget(self, path: str) -> str | None:
        """The target of the symbolic link at ``path``, None when it is no link."""
        return self._linkTarget(self._check(path))

    # -- derived: objects through the formatters --------------------------------------------------

    def read(self, butlerLocation: Any) -> Any:
        """Read the object at each path of a location with the formatter of its storage name.

        Returns
        -------
        obj : `object` or `list`
            The object, or a list of objects when the location has several paths.

        Raises
        ------
        DatasetNotFoundError
            When a file does not exist.
        UnknownStorageError
            When no formatter has the location's storage name.
        FormatterError
            When a file cannot be read as asked; the message names the dataset
            type, the data ID and the repository, as for any other package error
            a formatter raises.
        """
        formatter = get_formatter(butlerLocation.storageName)
        results = []
        try:
            for location in butlerLocation.locationList:
                path, hdu = split_hdu(location)
                results.append(formatter.readFrom(self, path, hdu=hdu, pythonType=butlerLocation.pythonType,
                                                  additionalData=butlerLocation.additionalData,
                                                  parameters=getattr(butlerLocation, "parameters", None)))
        except DatasetNotFoundError:
            raise  # a miss: the search moves on (and names everything when it ends)
        except ButlerError as exc:
            exc.add_context(describe_location(butlerLocation, self.root))
            raise
        return results[0] if len(results) == 1 else results

    def write(self, butlerLocation: Any, obj: Any, doBackup: bool = False) -> None:
        """Write ``obj`` to each path of a location, atomically and inside the root.

        Parameters
        ----------
        butlerLocation : `ButlerLocation`
            Where and how (storage name) to write.
        obj : `object`
            The object.
        doBackup : `bool`
            Keep the versions already there (see `backup`); the backup and the
            write are done under one lock on the dataset, so concurrent
            backed-up writes keep every version.

        Raises
        ------
        UnsafePathError
            When a path resolves outside the root, or a backup name is a
            symbolic link; nothing is written.
        UnwritableObjectError
            When the formatter cannot write ``obj``; nothing is written. The
            message names the dataset type, the data ID and the repository.
        """
        formatter = get_formatter(butlerLocation.storageName)
        for location in butlerLocation.locationList:
            path, hdu = split_hdu(location)
            try:
                with self.lock(path) if doBackup else _NO_LOCK:
                    if doBackup:
                        self._shiftVersions(self._check(path))
                    formatter.writeTo(self, path, obj, hdu=hdu, additionalData=butlerLocation.additionalData)
            except ButlerError as exc:
                exc.add_context(describe_location(butlerLocation, self.root))
                raise
            _log.debug("wrote %s %s in %s", butlerLocation.storageName, path, self.root)

    # -- derived: backups ---------------------------------------------------------------------------

    def backup(self, path: str) -> list[str]:
        """Keep the versions of a file before it is overwritten, as Gen2 did: ``~1`` is the newest.

        ``p~k`` is written as ``p~(k+1)``, highest first, then ``p`` as
        ``p~1``; a version missing from the root is taken from its ``_parent``
        chain. Each version is written whole by the atomic write (a copy, never
        a rename chain), under the dataset's lock.

        Returns
        -------
        backups : `list` of `str`
            The backup names written, newest first (empty when ``path`` does
            not exist).

        Raises
        ------
        UnsafePathError
            When ``path`` is outside the root or a backup name is a symbolic
            link; nothing is touched.
        """
        relpath = self._check(path)
        with self._lock(relpath):
            return self._shiftVersions(relpath)

    def _shiftVersions(self, relpath: str) -> list[str]:
        """Copy ``relpath~(k-1)`` to ``relpath~k`` for every existing version, highest first (lock held)."""
        versions: list[str] = []
        name = relpath
        while True:
            if versions and self._linkTarget(name) is not None:
                raise UnsafePathError(f"backup name {name!r} in repository {self.root!r} is a symbolic link "
                                      f"({self._linkTarget(name)!r}); refusing to back up {relpath!r}")
            found = self._findVersion(name)
            if found is None:
                break
            versions.append(found)
            name = f"{relpath}~{len(versions)}"
        self._sweep(relpath)
        written = []
        for number in range(len(versions), 0, -1):
            name = f"{relpath}~{number}"
            self.writeBytes(name, self.readBytes(versions[number - 1]))
            written.append(name)
        if written:
            _log.debug("backed up %s in %s: %d version(s)", relpath, self.root, len(written))
        return written[::-1]

    def _sweep(self, relpath: str) -> None:  # noqa: B027 (a hook: only storages with temporaries override it)
        """Remove what interrupted writes of a dataset left behind (lock held); nothing by default."""

    def removeStaleTemporaries(self, directory: str = "") -> list[str]:
        """Remove what interrupted writes (of any dataset, by processes now dead) left in a directory.

        Parameters
        ----------
        directory : `str`
            Relative to the root (default: the root itself); not searched below.

        Returns
        -------
        removed : `list` of `str`
            What was removed (none for storages whose writes leave nothing behind).
        """
        return self._sweepDirectory(self._check(directory) if directory else "")

    def _sweepDirectory(self, relpath: str) -> list[str]:
        """Remove the stale temporaries in a checked relative directory; nothing by default."""
        return []

    def _findVersion(self, relpath: str) -> str | None:
        """``relpath`` when it exists, else its first copy up the ``_parent`` chain, else None (no wildcards)."""
        found = self._searchIn(relpath, searchParents=True, literal=True)
        return found[0] if found else None

    # -- derived: search ----------------------------------------------------------------------------

    def _glob(self, relpath: str) -> list[str]:
        """The files matching ``relpath`` (glob wildcards per path component), sorted."""
        parts = relpath.split("/")
        literal = 0
        while literal < len(parts) and not _WILDCARDS.intersection(parts[literal]):
            literal += 1
        if literal == len(parts):
            return [relpath] if self._exists(relpath) else []
        directory = "/".join(parts[:literal])
        if directory and not self._exists(directory):
            return []
        matches = []
        for name in self._listNames(directory):
            candidate = name.split("/")
            if len(candidate) == len(parts) and all(
                    fnmatch.fnmatchcase(c, p) for c, p in zip(candidate[literal:], parts[literal:])):
                matches.append(name)
        return sorted(matches)

    def _searchIn(self, relpath: str, searchParents: bool, literal: bool = False) -> list[str]:
        """Matches of a checked relative path (a glob pattern unless ``literal``) in the root, else
        (optionally) up the ``_parent`` chain."""
        prefix = ""
        seen = 0
        while True:
            candidate = prefix + relpath
            if literal:
                found = [candidate] if self._exists(candidate) else []
            else:
                found = self._glob(candidate)
            if found or not searchParents:
                return found
            prefix += _PARENT_LINK + "/"
            seen += 1
            if seen > 64 or not self._exists(prefix[:-1]):  # a _parent cycle ends the walk
                return []

    def _relativeQuery(self, path: str) -> str | None:
        """An absolute ``path`` relative to the root, or None when it is not under it."""
        prefix = self.root.rstrip("/") + "/"
        return path[len(prefix):] if path.startswith(prefix) else None

    def instanceSearch(self, path: str, searchParents: bool = False) -> list[str] | None:
        """Find ``path`` under this root (and optionally up its ``_parent`` chain).

        Parameters
        ----------
        path : `str`
            Relative to the root, or absolute (a path or URI under the root);
            may hold glob wildcards and end in an ``[N]`` HDU selector.
        searchParents : `bool`
            Look in ``_parent``, ``_parent/_parent``, ... when the file is not
            in the root.

        Returns
        -------
        matches : `list` of `str` or `None`
            The matches, sorted, with the HDU selector kept: relative to the
            root (through ``_parent/`` when found in a parent) for a relative
            query, absolute for an absolute one; None when nothing matches.

        Raises
        ------
        UnsafePathError
            When ``path`` is outside the root.
        """
        plain, hdu = split_hdu(path)
        absolute = plain.startswith("/") or _SCHEME.match(plain) is not None
        relative = self._relativeQuery(plain) if absolute else plain
        if relative is None:
            raise UnsafePathError(f"path {path!r} is outside the repository root {self.root!r}")
        found = self._searchIn(self._check(relative), searchParents)
        if not found:
            return None
        suffix = f"[{hdu}]" if hdu is not None else ""
        return [(self.locationWithRoot(f) if absolute else f) + suffix for f in found]

    def probe(self, path: str, compressed: bool = True, likelyMissing: bool = False) -> tuple[str, bool]:
        """Where the file of ``path`` is, and whether it exists, as one existence check sees it now.

        Parameters
        ----------
        path : `str`
            A location, relative to the root (an HDU selector is kept).
        compressed : `bool`
            The format reads compressed files: when ``path`` is missing, its
            ``.gz`` and ``.fz`` variants are looked for, only if its directory
            exists (a rerun that never wrote the dataset type costs two checks).
        likelyMissing : `bool`
            The caller expects a miss (a rerun searched on the way to the one
            holding the dataset): for a compressed-capable format the directory
            is looked at first, so a directory that is not there costs one
            check, and a file that is there two.

        Returns
        -------
        location, found : `str`, `bool`
            ``path`` or its first existing variant, and whether that exists;
            ``(path, False)`` when none does. The common case costs one check.
        """
        filename, hdu = split_hdu(path) if path[-1:] == "]" else (path, None)
        relpath = self._check(filename)  # once, for the path and its variants
        directoryExists = None  # looked at only where it decides: before a likely miss, after a miss
        if likelyMissing and compressed:
            directoryExists = self._directoryExists(relpath)
            if not directoryExists:
                return path, False
        if self._exists(relpath):
            return path, True
        if not compressed or not (directoryExists or self._directoryExists(relpath)):
            return path, False
        for ext in COMPRESSED_SUFFIXES:
            if not relpath.endswith(ext) and self._exists(relpath + ext):
                return filename + ext + ("" if hdu is None else f"[{hdu}]"), True
        return path, False

    def _directoryExists(self, relpath: str) -> bool:
        """Whether the directory of a checked relative path exists (the root always does)."""
        directory = posixpath.dirname(relpath)
        return not directory or self._exists(directory)

    def prober(self, compressed: bool) -> Callable[[str], str | None]:
        """A function answering `probe` with ``likelyMissing`` for path after path (a search on its way
        through many repositories): the location found (``path`` or, with ``compressed``, a variant), or
        None. It looks afresh on every call; only the choice of checks is made once."""
        if compressed:
            probe = self.probe

            def found_variant(path: str) -> str | None:
                location, exists = probe(path, True, likelyMissing=True)
                return location if exists else None

            return found_variant
        check, exists = self._check, self._exists
        return lambda path: path if exists(check(path)) else None

    def findCompressed(self, path: str) -> str:
        """Return ``path`` when its file exists, else its first existing ``.gz``/``.fz`` variant, else ``path``.

        The HDU selector is kept; see `probe`, which also says whether the file was found.
        """
        return self.probe(path)[0]

    # -- derived: Gen2 instance helpers -------------------------------------------------------

    def locationWithRoot(self, location: str) -> str:
        """Return ``location`` joined to the root."""
        return self.root.rstrip("/") + "/" + location if self.root else location

    def getLocalFile(self, path: str) -> IO[str] | None:
        """Return ``path`` open for reading as UTF-8 text, or None when it does not exist (the caller closes it)."""
        try:
            return io.TextIOWrapper(self.openRead(path), encoding="utf-8")
        except DatasetNotFoundError:
            return None

    def copyFile(self, fromLocation: str, toLocation: str) -> None:
        """Copy a file to another path under the root, atomically and inside the root."""
        self.writeBytes(toLocation, self.readBytes(fromLocation))

    def parentRoot(self) -> str | None:
        """The root of the old-style parent (``_parent`` link or directory), or None."""
        target = self._linkTarget(_PARENT_LINK)
        if target is not None:
            return self.absolutePath(self.root, target)
        return self.locationWithRoot(_PARENT_LINK) if self._exists(_PARENT_LINK) else None

    # -- derived: Gen2 static helpers ----------------------------------------------------------

    @classmethod
    def openExisting(cls, uri: str) -> StorageInterface | None:
        """The storage at an existing root, or None when there is none (nothing is created)."""
        try:
            return cls(uri, create=False)
        except RepositoryError:
            return None

    @classmethod
    def search(cls, root: str, path: str, searchParents: bool = False) -> list[str] | None:
        """Find ``path`` under ``root`` (see `instanceSearch`); None when the root does not exist."""
        storage = cls.openExisting(root)
        return storage.instanceSearch(path, searchParents) if storage is not None else None

    @classmethod
    def storageExists(cls, uri: str) -> bool:
        """Whether a root exists at ``uri``."""
        return cls.openExisting(uri) is not None

    @staticmethod
    def getRepositoryCfg(uri: str) -> Any:
        """Read the `RepositoryCfg` at a root, or None."""
        from ..cfg import RepositoryCfg

        return RepositoryCfg.read(uri)

    @staticmethod
    def putRepositoryCfg(cfg: Any, loc: str | None = None) -> None:
        """Write a `RepositoryCfg` at ``loc`` (default: ``cfg.root``), atomically."""
        cfg.write(cfg.root if loc is None else loc)

    @staticmethod
    def getMapperClass(root: str) -> Any:
        """Return the mapper class of the repository at ``root``, or None (see `PosixStorage.getMapperClass`)."""
        from .posix import PosixStorage

        return PosixStorage.getMapperClass(root)

    @staticmethod
    def relativePath(fromPath: str, toPath: str) -> str:
        """Return ``toPath`` relative to ``fromPath`` (``toPath`` as is when they are of other schemes)."""
        from_scheme, from_rest = split_uri(fromPath)
        to_scheme, to_rest = split_uri(toPath)
        if {from_scheme, to_scheme} <= {"", "file"}:
            return os.path.relpath(to_rest, from_rest)
        if from_scheme != to_scheme:
            return toPath
        return posixpath.relpath("/" + to_rest, "/" + from_rest)

    @staticmethod
    def absolutePath(fromPath: str, relativePath: str) -> str:
        """Return ``relativePath`` made absolute against ``fromPath`` (an absolute path or URI as is).

        Local paths come out absolute even when ``fromPath`` is relative.
        """
        scheme, rest = split_uri(fromPath)
        rel_scheme, rel_rest = split_uri(relativePath)
        if rel_scheme not in ("", "file"):
            return relativePath
        if scheme in ("", "file"):
            return os.path.abspath(os.path.join(rest, rel_rest))
        if rel_rest.startswith("/"):
            return relativePath
        return f"{scheme}://" + posixpath.normpath(posixpath.join(rest, rel_rest))


@contextlib.contextmanager
def _scratch_file(relpath: str) -> Iterator[str]:
    """A private local scratch file named like ``relpath`` (for libraries that sniff names), removed at exit."""
    directory = tempfile.mkdtemp(prefix="butler-")
    try:
        yield os.path.join(directory, posixpath.basename(relpath) or "file")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def scratch_writer(relpath: str, publish: Callable[[str], None]) -> Iterator[str]:
    """The writer of a storage that keeps no local files: an empty local scratch file, then ``publish(it)``.

    The writer gets an existing empty file, as from the POSIX storage; what a
    library wrote there is published only when its block ends without error.
    """
    with _scratch_file(relpath) as local:
        with open(local, "wb"):
            pass
        yield local
        publish(local)


class Storage:
    """The scheme table, the Gen2 static helpers, and a cache of repository cfgs.

    Instances only hold the cache: ``Storage().getRepositoryCfg(uri)`` reads a
    cfg once and keeps it in ``.repositoryCfgs``.
    """

    #: scheme -> storage class, or the dotted path of one (imported on first use)
    _storages: ClassVar[dict[str, Any]] = {
        "": "butler.storage.posix.PosixStorage",
        "file": "butler.storage.posix.PosixStorage",
        "mem": "butler.storage.mem.MemStorage",
        "http": "butler.storage.http.HttpStorage",
        "https": "butler.storage.http.HttpStorage",
        "s3": "butler.storage.s3.S3Storage",
    }
    #: scheme -> how to install its backend, for schemes known but not installed
    _install_hints: ClassVar[dict[str, str]] = {
        "s3": "pip install 'butler[s3]'",
        "gs": "pip install 'butler[gcs]'",
    }

    def __init__(self) -> None:
        self.repositoryCfgs: dict[str, Any] = {}

    @classmethod
    def registerStorageClass(cls, scheme: str, storageClass: Any, clobber: bool = False) -> None:
        """Register the storage class (or its dotted path) for a URI scheme.

        Parameters
        ----------
        scheme : `str`
            E.g. ``"s3"``; ``""`` is plain paths.
        storageClass : `type` or `str`
            A `StorageInterface` subclass, or its importable dotted name.
        clobber : `bool`
            Replace a class already registered for the scheme.

        Raises
        ------
        ValueError
            When the scheme is registered already and ``clobber`` is false.
        """
        scheme = scheme.lower()
        if scheme in cls._storages and not clobber:
            raise ValueError(f"storage scheme {scheme!r} is registered already ({cls._storages[scheme]!r}); "
                             "pass clobber=True to replace it")
        cls._storages[scheme] = storageClass

    @classmethod
    def knownSchemes(cls) -> list[str]:
        """The registered schemes, sorted (``""`` is plain paths)."""
        return sorted(cls._storages)

    @classmethod
    def storageClass(cls, uri: str) -> type[StorageInterface]:
        """Return the storage class for a URI's scheme.

        Raises
        ------
        UnknownStorageError
            When no class is registered for the scheme (with an install hint
            for a known optional backend); a URI is never taken for a path.
        """
        scheme = split_uri(str(uri))[0]
        try:
            entry = cls._storages[scheme]
        except KeyError:
            known = ", ".join(repr(s) for s in cls.knownSchemes())
            hint = cls._install_hints.get(scheme)
            help_text = f"; install its backend with {hint}" if hint else ""
            raise UnknownStorageError(f"no storage for scheme {scheme!r} of {uri!r}{help_text}; "
                                      f"known schemes: {known}") from None
        if isinstance(entry, str):  # a dotted path: import its module (no entry-point scan)
            module, _, name = entry.rpartition(".")
            try:
                loaded = importlib.import_module(module)
            except ImportError as exc:  # its backend (boto3 for s3) is not installed
                hint = cls._install_hints.get(scheme)
                raise UnknownStorageError(f"the storage for scheme {scheme!r} of {uri!r} cannot be loaded "
                                          f"({exc}){'; install its backend with ' + hint if hint else ''}"
                                          ) from exc
            entry = cls._storages[scheme] = getattr(loaded, name)
        return entry

    @classmethod
    def makeFromURI(cls, uri: str, create: bool = True) -> StorageInterface:
        """Return a storage bound to ``uri``, of the class its scheme names."""
        return cls.storageClass(uri)(uri, create)

    @classmethod
    def openExisting(cls, uri: str) -> StorageInterface | None:
        """Return the storage at an existing root ``uri``, or None when there is none (nothing is created)."""
        return cls.storageClass(uri).openExisting(uri)

    @classmethod
    def forFile(cls, uri: str) -> tuple[StorageInterface, str]:
        """The storage of a file's directory and the file's name in it, for a file that is in no repository.

        Ingest sources and policy files are read (and moved sources removed)
        through it, with the same primitives as a repository's files.

        Raises
        ------
        DatasetNotFoundError
            When the file's directory does not exist.
        """
        scheme, rest = split_uri(uri)
        if scheme in ("", "file"):
            directory, name = os.path.split(os.path.abspath(rest))
        else:
            directory, name = posixpath.split(str(uri))
        storage = cls.openExisting(directory)
        if storage is None or not name:
            raise DatasetNotFoundError(f"no file {uri}: no directory {directory}")
        return storage, name

    def getRepositoryCfg(self, uri: str) -> Any:
        """Return the `RepositoryCfg` at ``uri`` (cached), or None when there is none."""
        cfg = self.repositoryCfgs.get(uri)
        if cfg is None:
            cfg = self.storageClass(uri).getRepositoryCfg(uri)
            if cfg is not None:
                self.repositoryCfgs[uri] = cfg
        return cfg

    @staticmethod
    def putRepositoryCfg(cfg: Any, uri: str | None = None) -> None:
        """Write a `RepositoryCfg` at ``uri`` (default: ``cfg.root``)."""
        location = cfg.root if uri is None else uri
        Storage.storageClass(location).putRepositoryCfg(cfg, location)

    @staticmethod
    def getMapperClass(uri: str) -> Any:
        """Return the mapper class of the repository at ``uri``, or None."""
        return Storage.storageClass(uri).getMapperClass(uri)

    @staticmethod
    def relativePath(fromPath: str, toPath: str) -> str:
        """Return ``toPath`` relative to ``fromPath``."""
        return Storage.storageClass(fromPath).relativePath(fromPath, toPath)

    @staticmethod
    def absolutePath(fromPath: str, relativePath: str) -> str:
        """Return ``relativePath`` made absolute against ``fromPath``."""
        return Storage.storageClass(fromPath).absolutePath(fromPath, relativePath)

    @staticmethod
    def search(uri: str, path: str, searchParents: bool = False) -> list[str] | None:
        """Find ``path`` in the repository at ``uri``: the matches or None."""
        return Storage.storageClass(uri).search(uri, path, searchParents)

    @staticmethod
    def storageExists(uri: str) -> bool:
        """Whether anything exists at ``uri``."""
        return Storage.storageClass(uri).storageExists(uri)
