"""Safe file I/O: the one atomic write, the one containment check, and file locks.

Every file the butler writes goes through :func:`atomic_write`: the content is
written to a temporary file beside the target and renamed over it only once it
is complete, so a reader sees the old file or the new one, never a part.
:func:`ensure_within` keeps writes inside a repository root
(:func:`contained_destination` for the file a write publishes).

The Gen2 names (`FileForWriteOnceCompareSame`, `SafeLockedFileForWrite`,
`SafeLockedFileForRead`, `safeMakeDir`) are built on the same two pieces and
re-exported by :mod:`butler.safeFileIo`.

Locking. The locked files are replaced by rename, so a lock held on an open
file could end up on an inode that is no longer the one at the path. Each lock
is therefore taken on the file currently at the path, then checked: if the path
now names another inode, the lock is dropped and taken again on the new one.
Readers and writers of the same path thus always exclude each other, across
processes and threads, without any extra lock file.
"""

from __future__ import annotations

import contextlib
import fcntl
import filecmp
import itertools
import logging
import os
import re
import shutil
import stat
from collections.abc import Iterator
from types import TracebackType
from typing import IO

from .errors import FileContentMismatch, UnsafePathError

__all__ = [
    "atomic_write",
    "contained_destination",
    "ensure_within",
    "locked_directory",
    "remove_stale_temporaries",
    "write_bytes",
    "makedirs",
    "FileForWriteOnceCompareSame",
    "SafeLockedFileForRead",
    "SafeLockedFileForWrite",
    "safeMakeDir",
]

_log = logging.getLogger(__name__)

#: fsync every atomically written file before it is renamed into place. Atomicity
#: (no reader ever sees a partial file) does not need it; durability across a power
#: failure does. Off by default for speed; set ``BUTLER_FSYNC=1`` to turn it on.
FSYNC = os.environ.get("BUTLER_FSYNC", "") not in ("", "0")


def makedirs(path: str) -> None:
    """Create a directory and its parents; safe when other processes create them too.

    Parameters
    ----------
    path : `str`
        The directory. Nothing happens when it exists already.
    """
    os.makedirs(path, exist_ok=True)


def safeMakeDir(directory: str) -> None:
    """Gen2 name of :func:`makedirs`."""
    makedirs(directory)


def remove_tree(directory: str) -> None:
    """Remove a directory and everything in it; symbolic links are removed, never followed."""
    shutil.rmtree(directory)


def _is_within(root: str, path: str) -> bool:
    return path == root or path.startswith(root if root.endswith(os.sep) else root + os.sep)


def ensure_within(root: str, path: str) -> str:
    """Check that a path, symlinks and ``..`` resolved, lies inside a root.

    Parameters
    ----------
    root : `str`
        The directory that must contain ``path``; it may itself be a symlink.
    path : `str`
        The path to check, absolute or relative to ``root``. Its tail need not
        exist yet; the existing part is resolved.

    Returns
    -------
    resolved : `str`
        The absolute, symlink-free form of ``path``.

    Raises
    ------
    UnsafePathError
        When ``path`` resolves outside ``root``.
    """
    real_root = _real_root(root)
    candidate = os.path.normpath(os.path.join(real_root, path))
    if _is_within(real_root, candidate) and ".." not in path.split(os.sep) and _no_link_below(real_root, candidate):
        return candidate
    resolved = os.path.realpath(os.path.join(real_root, path))
    if not _is_within(real_root, resolved):
        raise UnsafePathError(
            f"path {path!r} resolves to {resolved!r}, outside the repository root {root!r} ({real_root!r})")
    return resolved


_real_roots: dict[str, str] = {}


def _real_root(root: str) -> str:
    """``os.path.realpath(root)``, remembered once the root exists (it is on every write)."""
    real = _real_roots.get(root)
    if real is None:
        real = os.path.realpath(root)
        if os.path.isdir(real):
            _real_roots[root] = real
    return real


def _no_link_below(real_root: str, candidate: str) -> bool:
    """True when ``candidate`` (normalised, inside ``real_root``, no ``..``) has no symlink below the root.

    Then the textual path is the resolved path, and the full `os.path.realpath`
    walk (an ``lstat`` of every component from ``/``) is not needed. Every
    component is looked at on every call (a write asks about its directory
    only: `contained_destination`): a directory moved out of the root and
    replaced by a link keeps its inode, so no earlier answer can be trusted.
    """
    current = real_root
    for part in candidate[len(real_root):].split(os.sep):
        if not part:
            continue
        current = current + os.sep + part
        try:
            if stat.S_ISLNK(os.lstat(current).st_mode):
                return False
        except FileNotFoundError:
            return True  # nothing below a missing component can be a link
    return True


def contained_destination(root: str, path: str) -> str:
    """The absolute destination of a file to be written at ``path``: its directory resolved inside ``root``.

    Only the directory is resolved (`ensure_within`): the file itself is
    published by a rename, which replaces a symbolic link at that name and
    never follows it (as Gen2's writes did), so a link there cannot lead the
    write out of the root and its target is never written. A file directly
    in the root needs no system call here; each directory below the root
    costs one ``lstat`` (see `_no_link_below`).

    Parameters
    ----------
    root : `str`
        The directory that must contain the file.
    path : `str`
        The file, absolute or relative to ``root``.

    Returns
    -------
    destination : `str`
        The resolved directory joined with the file's name.

    Raises
    ------
    UnsafePathError
        When the directory resolves outside ``root``, or ``path`` names no
        file in it (the root itself, ``..``).
    """
    return _join(*_destination(root, path))


def _destination(root: str, path: str) -> tuple[str, str]:
    """`contained_destination` as its resolved directory and the file's name."""
    directory, name = os.path.split(path)
    if name in ("", ".", ".."):
        resolved = ensure_within(root, path)
        if resolved == _real_root(root):
            raise UnsafePathError(f"path {path!r} names the repository root {root!r}, not a file in it")
        return os.path.split(resolved)
    return ensure_within(root, directory) if directory else _real_root(root), name


class _TemporaryNames:
    """The names of this process's temporary files: ``.<name>.<pid>.<prefix><count>.tmp``.

    One random prefix per process (drawn again in a forked child, as is the
    pid) and a counter (``next`` of an `itertools.count` is atomic, so
    threads draw distinct numbers): unique across processes, threads and
    forks, and across a reused pid, without a call to the random source per
    file. The ``O_EXCL`` create still refuses a name that exists.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._pid = os.getpid()
        self._prefix = os.urandom(4).hex()  # as the secrets module draws tokens, without loading OpenSSL
        self._count = itertools.count()

    def __call__(self, name: str) -> str:
        return f".{name}.{self._pid}.{self._prefix}{next(self._count):x}.tmp"


_temporary_name = _TemporaryNames()
os.register_at_fork(after_in_child=_temporary_name.reset)


_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)


def _create_temporary(directory: str, name: str) -> tuple[str, int]:
    """Create a new empty file named after ``name`` in ``directory``; return its path and a descriptor open for writing.

    The kernel applies the umask to ``0o666``, so the file gets the mode a
    plain ``open(path, "w")`` would give it. Names are unique across
    processes and threads (`_TemporaryNames`). An `OSError` (read-only file
    system, no permission, ...) names the file that was to be written, not
    the temporary. The caller closes the descriptor.
    """
    made_directory = False
    while True:
        tmp = _join(directory, _temporary_name(name))
        try:
            return tmp, os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:
            continue
        except FileNotFoundError as exc:
            if made_directory:  # the directory is there and still cannot hold a file (/proc, a race)
                raise FileNotFoundError(exc.errno, f"cannot write {name}: {exc.strerror}",
                                        os.path.join(directory, name)) from exc
            _makedirs_for(directory, name)
            made_directory = True
        except OSError as exc:
            raise type(exc)(exc.errno, f"cannot write {name}: {exc.strerror}",
                            os.path.join(directory, name)) from exc


def _makedirs_for(directory: str, name: str) -> None:
    try:
        makedirs(directory)
    except OSError as exc:
        raise type(exc)(exc.errno, f"cannot make the directory for {name}: {exc.strerror}",
                        directory) from exc


@contextlib.contextmanager
def _temporary_beside(target: str) -> Iterator[str]:
    """Yield a new empty temporary file in ``target``'s directory; always removed on exit."""
    tmp, fd = _create_temporary(*os.path.split(target))
    os.close(fd)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str, root: str | None = None) -> Iterator[str]:
    """Write a file atomically: yield a temporary path, move it onto ``path`` on success.

    Parameters
    ----------
    path : `str`
        The destination. Missing directories are created.
    root : `str`, optional
        When given, ``path``'s directory must resolve inside ``root`` (checked
        by :func:`contained_destination` before anything is created: a link at
        the file's name is replaced, not followed); a relative ``path``
        is then taken relative to ``root``.

    Yields
    ------
    tmp : `str`
        A temporary file (existing and empty) in the destination directory, to
        be overwritten by the caller.

    Raises
    ------
    UnsafePathError
        When ``root`` is given and ``path`` resolves outside it.

    Notes
    -----
    On success the temporary file is renamed onto ``path`` with `os.replace`
    (fsynced first when `FSYNC` is set). If the block raises (or the rename
    fails), the temporary file is removed and ``path`` is left as it was.
    """
    target, tmp, fd = _begin_write(path, root)
    os.close(fd)  # the caller writes by path (a formatter may even replace the file)
    try:
        yield tmp
        if FSYNC:
            _fsync_path(tmp)
        _publish(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


def _begin_write(path: str, root: str | None) -> tuple[str, str, int]:
    """The contained destination of ``path``, and a new temporary file beside it with its open descriptor."""
    directory, name = _destination(root, path) if root is not None else os.path.split(os.path.abspath(path))
    return (_join(directory, name), *_create_temporary(directory, name))


def _join(directory: str, name: str) -> str:
    """``os.path.join`` of a normalised absolute directory and a plain name (on every write: no checks)."""
    return directory + name if directory[-1:] == os.sep else directory + os.sep + name


def _publish(tmp: str, target: str) -> None:
    os.replace(tmp, target)
    _log.debug("wrote %s", target)


def _discard(tmp: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)


@contextlib.contextmanager
def locked_directory(directory: str) -> Iterator[None]:
    """Hold an exclusive ``flock`` lock on a directory for the duration of a ``with`` block.

    A directory is never replaced by a rename, so the lock stays on the path
    while files in it are replaced; it holds across processes and threads
    (each holder opens the directory anew) and leaves nothing on disk. The
    lock is released when the block ends, or when the process dies.

    Parameters
    ----------
    directory : `str`
        An existing directory.
    """
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: a temporary of :func:`atomic_write` (``.<name>.<pid>.<hex>.tmp``), or the journal SQLite kept beside one
_TEMPORARY = re.compile(r"\.(?P<name>.+)\.(?P<pid>\d+)\.[0-9a-f]+\.tmp(?:-journal|-wal|-shm)?")


def remove_stale_temporaries(directory: str, name: str | None = None) -> list[str]:
    """Remove the temporary files that killed writers left in ``directory``.

    A write killed between the creation of its temporary file and the rename
    (SIGKILL, power loss) leaves the temporary behind (and, for a registry
    edited in place of one, its SQLite journal); it is never visible under the
    target's name. Temporaries of live processes (this one included) are kept.

    Parameters
    ----------
    directory : `str`
        The directory to sweep (not its subdirectories); a missing one has none.
    name : `str`, optional
        Only the temporaries of ``name`` (and ``name~N``); default: all of them.

    Returns
    -------
    removed : `list` of `str`
        The paths removed.
    """
    removed: list[str] = []
    try:
        entries = os.listdir(directory)
    except FileNotFoundError:
        return removed
    for entry in entries:
        found = _TEMPORARY.fullmatch(entry)
        if found is None or _pid_alive(int(found["pid"])):
            continue
        if name is not None and not (found["name"] == name or found["name"].startswith(name + "~")):
            continue
        path = os.path.join(directory, entry)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
            _log.info("removed %s, left by an interrupted write", path)
    return removed


def write_bytes(path: str, data: bytes, root: str | None = None) -> None:
    """Write ``data`` to ``path`` atomically, as :func:`atomic_write` does (same parameters).

    The bytes go through the descriptor the temporary file was created with:
    the file is not opened a second time.
    """
    target, tmp, fd = _begin_write(path, root)
    try:
        try:
            written = os.write(fd, data)
            if written < len(data):  # a short write (a signal, a full disk): the rest, or an error
                view = memoryview(data)[written:]
                while view:
                    view = view[os.write(fd, view):]
            if FSYNC:
                os.fsync(fd)
        finally:
            os.close(fd)
        _publish(tmp, target)
    except BaseException:
        _discard(tmp)
        raise


@contextlib.contextmanager
def FileForWriteOnceCompareSame(path: str) -> Iterator[IO[str]]:
    """Write a file that, once written, may only be rewritten with the same content.

    Parameters
    ----------
    path : `str`
        The destination file.

    Yields
    ------
    file : text file object
        Open for writing; the content is published when the block ends.

    Raises
    ------
    FileContentMismatch
        When ``path`` already exists with different content.

    Notes
    -----
    The content goes to a temporary file that is hard-linked to ``path``, which
    fails if ``path`` exists, so the first writer wins and no writer ever
    replaces an existing file. No temporary file is left behind.
    """
    target = os.path.abspath(path)
    with _temporary_beside(target) as tmp:
        with open(tmp, "w", encoding="utf-8") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            if not filecmp.cmp(tmp, target, shallow=False):
                raise FileContentMismatch(f"{target} exists already with different content") from None
            _log.debug("%s exists already with the same content", target)


class _LockedFile:
    """A path held under an ``flock`` lock for the duration of a ``with`` block.

    Parameters
    ----------
    path : `str`
        The file.
    """

    _exclusive = False

    def __init__(self, path: str):
        self.path = os.path.abspath(path)
        self._fd: int | None = None
        self._created = False

    def _open_current(self) -> int:
        """Open the file now at the path (subclasses may create it and set ``_created``)."""
        return os.open(self.path, os.O_RDONLY)

    def __enter__(self) -> _LockedFile:
        operation = fcntl.LOCK_EX if self._exclusive else fcntl.LOCK_SH
        while True:
            fd = self._open_current()
            fcntl.flock(fd, operation)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and os.path.samestat(current, os.fstat(fd)):
                self._fd = fd
                return self
            # The file was replaced or removed while we waited: lock the new one.
            os.close(fd)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._fd is not None
        os.close(self._fd)  # closing releases the lock
        self._fd = None

    def read(self) -> str:
        """Return the content of the file, as it is on disk."""
        assert self._fd is not None, "use inside a with block"
        os.lseek(self._fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(self._fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks).decode("utf-8")


class SafeLockedFileForRead(_LockedFile):
    """Read a file under a shared lock; waits while a writer (any process) holds it.

    Parameters
    ----------
    path : `str`
        The file; it must exist (else `FileNotFoundError`).

    Examples
    --------
    >>> with SafeLockedFileForRead(path) as f:  # doctest: +SKIP
    ...     text = f.read()
    """


class SafeLockedFileForWrite(_LockedFile):
    """Read and rewrite a file under an exclusive lock.

    Parameters
    ----------
    path : `str`
        The file; created empty if missing (and removed again if nothing is
        written).

    Notes
    -----
    ``write(s)`` collects text; when the block ends without an error and
    something was written, the collected text replaces the file atomically
    (keeping its mode). If nothing was written the file is unchanged. The lock
    is held until the new content is in place.
    """

    _exclusive = True

    def __init__(self, path: str):
        super().__init__(path)
        self._pending: list[str] = []

    def _open_current(self) -> int:
        makedirs(os.path.dirname(self.path))
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            self._created = False
            with contextlib.suppress(FileNotFoundError):
                return os.open(self.path, os.O_RDONLY)
            return self._open_current()  # removed in between: try again
        self._created = True
        return fd

    def write(self, text: str) -> None:
        """Add text to the new content of the file."""
        self._pending.append(text)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None and self._pending:
                self._publish("".join(self._pending))
            elif self._created:
                os.unlink(self.path)  # made only to hold the lock; leave no trace
        finally:
            self._pending = []
            self._created = False
            super().__exit__(exc_type, exc, traceback)

    def _publish(self, text: str) -> None:
        assert self._fd is not None, "published only while the lock is held"
        mode = os.fstat(self._fd).st_mode & 0o7777
        with atomic_write(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8") as stream:
                stream.write(text)
            os.chmod(tmp, mode)
