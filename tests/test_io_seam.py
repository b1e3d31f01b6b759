"""The I/O seam: only the storages, the registries and `butler.safeio` touch files or databases.

Every other module of ``butler/`` and ``mappers/`` asks them (storage
primitives, the registry protocol, safeio's atomic write). This test reads the
source (AST, nothing imported) and lists each call or reference that opens,
writes, moves, links or removes a file or directory, makes a temporary file,
or connects to SQLite, outside them, as ``file:line: name (in function)``.

What counts, resolved through imports and their aliases (``from os import
replace as r``, ``import shutil as sh``): the builtin ``open``; ``io.open``,
``codecs.open`` and the compressed-file ``open``s; the ``os`` calls that
create, replace, link or remove; anything in ``shutil``; the file-making
``tempfile`` calls; ``sqlite3.connect``; and the `pathlib` methods that open,
write or remove (``.open``, ``.write_text``, ``.unlink``, ``.mkdir``...,
on any object, except ``.replace``/``.rename``, which are only counted on a
``Path(...)`` since ``str.replace`` is everywhere). Writing into the local
temporary a storage's ``writer`` gives is the seam's own protocol and is not
counted (astropy's ``writeto(tmp)`` for instance). Third-party readers given
a path (astropy's ``fits.open``, ``Table.read``) look the same as when they are
given a storage's stream, so they are left to review.
"""

from __future__ import annotations

import ast
from pathlib import Path

import attrs
import pytest

PROJECT = Path(__file__).resolve().parent.parent

#: the modules that may touch files and databases (the seam itself)
SEAM = ("butler/storage/", "butler/registry/", "butler/safeio.py")

#: ``module:function`` -> why it may touch a file directly
ALLOWED = {
    # `run_demo(directory=None)` makes the demo in a fresh private directory: no repository exists yet
    # to ask, and mkdtemp only creates a new, empty, uniquely named directory.
    "butler.demo:_fresh_directory": "a new private directory for the demo (tempfile.mkdtemp)",
    # The demo's raws are staged beside the input repository, moved in by ingest, and the (then empty)
    # staging directory is removed by the context manager: a scratch area of the demo, no repository.
    "butler.demo:make_input_repository": "a self-removing staging directory for the demo raws",
}

_OS_CALLS = {"open", "fdopen", "replace", "rename", "renames", "link", "symlink", "unlink", "remove",
             "removedirs", "makedirs", "mkdir", "rmdir", "truncate", "mkfifo"}
_TEMPFILE_CALLS = {"mkdtemp", "mkstemp", "TemporaryDirectory", "NamedTemporaryFile", "TemporaryFile",
                   "SpooledTemporaryFile"}
_OPENERS = {"io.open", "codecs.open", "gzip.open", "bz2.open", "lzma.open", "builtins.open",
            "sqlite3.connect", "pathlib.Path.open"}
#: methods of `pathlib.Path` that open, write or remove, counted on any object
_PATH_METHODS = {"open", "write_text", "write_bytes", "read_text", "read_bytes", "unlink", "mkdir", "rmdir",
                 "touch", "symlink_to", "hardlink_to", "link_to"}
#: methods of `pathlib.Path` counted only on ``Path(...)`` (strings have them too)
_PATH_ONLY_METHODS = {"replace", "rename"}
_PATH_CLASSES = {"pathlib.Path", "pathlib.PosixPath", "pathlib.PurePath"}


def _forbidden(name: str) -> bool:
    """Whether a resolved dotted name is a file or database access."""
    module, _, attr = name.rpartition(".")
    return (name in _OPENERS or module == "shutil" or (module == "os" and attr in _OS_CALLS)
            or (module == "tempfile" and attr in _TEMPFILE_CALLS))


@attrs.frozen
class Offence:
    """One access to a file or database outside the seam."""

    path: str
    line: int
    name: str
    function: str
    module: str

    @property
    def key(self) -> str:
        return f"{self.module}:{self.function}"

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name} (in {self.key})"


class _Scanner(ast.NodeVisitor):
    """Find the forbidden references of one module."""

    def __init__(self, path: str, module: str):
        self.path = path
        self.module = module
        self.aliases: dict[str, str] = {}  # local name -> dotted name it was imported as
        self.scope: list[str] = []
        self.found: list[Offence] = []

    # -- imports ---------------------------------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname is not None:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module is not None:
            for alias in node.names:
                self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    # -- scopes ----------------------------------------------------------------------------------

    def _visit_scope(self, node: ast.AST, name: str) -> None:
        self.scope.append(name)
        self.generic_visit(node)
        self.scope.pop()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._visit_scope(node, node.name)

    visit_AsyncFunctionDef = visit_FunctionDef  # type: ignore[assignment]

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._visit_scope(node, node.name)

    # -- references ------------------------------------------------------------------------------

    def _resolve(self, node: ast.AST) -> str | None:
        """The dotted name an expression refers to (``open`` -> ``builtins.open``), or None."""
        if isinstance(node, ast.Name):
            if node.id in self.aliases:
                return self.aliases[node.id]
            return "builtins.open" if node.id == "open" else None
        if isinstance(node, ast.Attribute):
            base = self._resolve(node.value)
            return f"{base}.{node.attr}" if base is not None else None
        return None

    def _report(self, node: ast.AST, name: str) -> None:
        function = ".".join(self.scope) or "<module>"
        self.found.append(Offence(self.path, node.lineno, name, function, self.module))

    def visit_Name(self, node: ast.Name) -> None:
        name = self._resolve(node)
        if isinstance(node.ctx, ast.Load) and name is not None and _forbidden(name):
            self._report(node, name)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        name = self._resolve(node)
        if name is not None and _forbidden(name):
            self._report(node, name)
            return
        if node.attr in _PATH_METHODS and name is None:
            self._report(node, f"<object>.{node.attr}")
        elif node.attr in _PATH_ONLY_METHODS and isinstance(node.value, ast.Call) \
                and self._resolve(node.value.func) in _PATH_CLASSES:
            self._report(node, f"Path(...).{node.attr}")
        if name is None:  # a module attribute's base is reported with it, not again
            self.generic_visit(node)


def scan_source(source: str, path: str, module: str) -> list[Offence]:
    """The offences in one module's source."""
    scanner = _Scanner(path, module)
    scanner.visit(ast.parse(source, filename=path))
    return scanner.found


def scan_project(root: Path = PROJECT) -> list[Offence]:
    """The offences of every module of ``butler/`` and ``mappers/`` outside the seam."""
    found = []
    for package in ("butler", "mappers"):
        for file in sorted((root / package).rglob("*.py")):
            relative = file.relative_to(root).as_posix()
            if relative.startswith(SEAM):
                continue
            module = relative.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
            found.extend(scan_source(file.read_text(encoding="utf-8"), relative, module))
    return found


# -- the seam --------------------------------------------------------------------------------------


def test_no_file_or_database_access_outside_the_seam():
    allowed = ALLOWED
    offenders = [str(offence) for offence in scan_project() if offence.key not in allowed]
    assert offenders == [], ("files or databases touched outside butler/storage/, butler/registry/ and "
                             "butler/safeio.py (ask a storage, a registry or safeio instead):\n"
                             + "\n".join(offenders))


def test_allow_list_entries_are_still_needed():
    used = {offence.key for offence in scan_project()}
    stale = sorted(set(ALLOWED) - used)
    assert stale == [], f"allow-list entries no longer needed (remove them): {stale}"


# -- the scanner itself ----------------------------------------------------------------------------

_CAUGHT = '''
import os
import os.path as osp
import shutil as sh
import io, sqlite3, tempfile
from os import replace as swap
from pathlib import Path
from shutil import copyfile

def a(p):
    open(p)
def b(p):
    swap(p, p)
def c(p):
    sh.rmtree(p)
def d(p):
    io.open(p)
def e(p):
    sqlite3.connect(p)
def f(p):
    p.write_text("x")
def g(p):
    Path(p).rename("y")
def h(p):
    os.makedirs(p)
def i(p):
    return map(open, [p])
def j(p):
    tempfile.mkdtemp()
def k(p):
    copyfile(p, p)
class K:
    def m(self, p):
        os.unlink(p)
'''

_NOT_CAUGHT = '''
import os
from .storage import Storage

def a(storage, text, p):
    text.replace("a", "b")
    storage.openRead(p)
    storage.writeBytes(p, b"")
    os.path.join(p, "x")
    os.path.exists(p)
    with storage.writer(p) as tmp:
        pass
'''


def test_scanner_finds_every_form():
    found = scan_source(_CAUGHT, "x.py", "x")
    assert [(o.function, o.name) for o in found] == [
        ("a", "builtins.open"), ("b", "os.replace"), ("c", "shutil.rmtree"), ("d", "io.open"),
        ("e", "sqlite3.connect"), ("f", "<object>.write_text"), ("g", "Path(...).rename"),
        ("h", "os.makedirs"), ("i", "builtins.open"), ("j", "tempfile.mkdtemp"), ("k", "shutil.copyfile"),
        ("K.m", "os.unlink")]
    assert str(found[-1]) == "x.py:34: os.unlink (in x:K.m)"


def test_scanner_leaves_ordinary_code_alone():
    assert scan_source(_NOT_CAUGHT, "y.py", "y") == []


@pytest.mark.parametrize("module", ["butler.ingest", "butler.cfg", "butler.policy", "butler.compare",
                                    "butler.repository"])
def test_core_modules_have_no_exemption(module):
    assert not any(key.startswith(module + ":") for key in ALLOWED)


# -- what the seam gives the modules outside it ------------------------------------------------------


def _dead_pid() -> int:
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(done.stdout)


def test_open_existing_creates_nothing(tmp_path):
    from butler.storage import MemStorage, PosixStorage, Storage

    missing = tmp_path / "missing"
    assert Storage.openExisting(str(missing)) is None
    assert not missing.exists()
    storage = Storage.openExisting(str(tmp_path))
    assert isinstance(storage, PosixStorage) and storage.root == str(tmp_path)
    assert Storage.openExisting("mem://seam-test/never-made") is None
    Storage.makeFromURI("mem://seam-test/made")
    assert isinstance(Storage.openExisting("mem://seam-test/made"), MemStorage)


def test_a_file_outside_any_repository_through_the_storage_of_its_directory(tmp_path):
    import hashlib

    from butler.errors import DatasetNotFoundError
    from butler.storage import Storage

    source = tmp_path / "incoming" / "raw.fits"
    source.parent.mkdir()
    source.write_bytes(b"x" * 3000)
    storage, name = Storage.forFile(str(source))
    assert (storage.root, name) == (str(source.parent), "raw.fits")
    assert storage.checksum(name) == hashlib.sha256(b"x" * 3000).hexdigest()
    storage.remove(name)
    assert not source.exists() and source.parent.exists()
    with pytest.raises(DatasetNotFoundError, match="elsewhere"):
        Storage.forFile(str(tmp_path / "elsewhere" / "raw.fits"))
    with pytest.raises(DatasetNotFoundError, match="raw.fits"):
        storage.checksum(name)


def test_stale_temporaries_of_dead_writers_are_swept_from_a_directory(tmp_path):
    import os

    from butler.errors import UnsafePathError
    from butler.storage import Storage

    dead, live = _dead_pid(), os.getpid()
    directory = tmp_path / "raw"
    directory.mkdir()
    stale = [f".a.fits.{dead}.0123456789ab.tmp", f".registry.sqlite3.{dead}.abcdef012345.tmp-journal"]
    kept = [f".a.fits.{live}.0123456789ab.tmp", "a.fits", ".a.fits.tmp", f".b.{dead}.notahex.tmp"]
    for name in stale + kept:
        (directory / name).write_text("x")
    storage = Storage.makeFromURI(str(tmp_path))
    removed = storage.removeStaleTemporaries("raw")
    assert sorted(os.path.basename(path) for path in removed) == sorted(stale)
    assert sorted(os.listdir(directory)) == sorted(kept)
    assert storage.removeStaleTemporaries() == []  # the root: none there
    with pytest.raises(UnsafePathError):
        storage.removeStaleTemporaries("../elsewhere")
    assert Storage.makeFromURI("mem://seam-test/sweep").removeStaleTemporaries() == []
