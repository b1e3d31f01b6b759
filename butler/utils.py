"""Small helpers of the Gen2 API (`sequencify`, `iterify`, `doImport`) and the mapper resolver.

`doImport` imports whatever a program asks for. `resolve_mapper` is for mapper
names read from a repository's files: it imports only from sources the user
trusts, and returns only `butler.mapper.Mapper` subclasses.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import logging
import marshal
import os
import re
import sys
import zlib
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

__all__ = ["sequencify", "iterify", "as_list", "doImport", "resolve_mapper", "trusted_prefixes",
           "mapper_names", "resolve_short_mapper_name", "LEGACY_PREFIXES", "PACKAGE_PREFIXES",
           "TRUSTED_MAPPERS_ENV", "CACHE_ENV", "text_table", "cache_dir", "read_kept", "keep"]

_log = logging.getLogger(__name__)

#: Legacy module prefixes of the Gen2 stack and the modules of this project that replace them.
LEGACY_PREFIXES = {
    "lsst.daf.persistence.": "butler.",
}

ENTRY_POINT_GROUP = "butler.mappers"
#: version of the kept entry-point table (a marshalled list of (name, value)); bump when that changes
_ENTRY_POINTS_FORMAT = 2

#: environment variable naming the directory of kept results (parsed policies, entry points); empty: none
CACHE_ENV = "BUTLER_CACHE_DIR"

#: module prefixes of this project: always trusted as sources of mappers
PACKAGE_PREFIXES = ("butler", "mappers")

#: packages whose mapper classes may be named by their class name alone (``butler --mapper MinMapper2``)
SHORT_NAME_PACKAGES = ("mappers",)

#: environment variable holding more trusted module prefixes, comma-separated
TRUSTED_MAPPERS_ENV = "BUTLER_TRUSTED_MAPPERS"

_DOTTED_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def require_extra(module: str, extra: str, feature: str) -> Any:
    """Import the optional ``module`` that ``feature`` needs, or raise naming the extra that installs it.

    Raises
    ------
    butler.errors.MissingDependencyError
        When ``module`` (or a package it needs) is not installed.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        from .errors import MissingDependencyError

        raise MissingDependencyError(f"{feature} needs the package {exc.name!r}, not installed: "
                                     f"pip install 'butler[{extra}]'") from None


def sequencify(x: Any) -> Any:
    """Return ``x`` as a sequence.

    A tuple, list or set comes back unchanged; a dict becomes the sorted tuple
    of its keys; anything else (a string included) becomes ``(x,)``.
    """
    if isinstance(x, (tuple, list, set)):
        return x
    if isinstance(x, dict):
        return tuple(sorted(x.keys()))
    return (x,)


def iterify(x: Any) -> Any:
    """Return ``x`` itself if it is iterable (strings excepted), else ``[x]``."""
    if isinstance(x, str):
        return [x]
    try:
        iter(x)
    except TypeError:
        return [x]
    return x


def as_list(value: Any) -> list:
    """Return ``value`` as a new list: None is empty, a list or tuple is copied, anything else is wrapped."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


def text_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Return rows as a text table with left-aligned, space-padded columns.

    Parameters
    ----------
    header : sequence of `str`
        Column titles.
    rows : iterable of sequences
        Cells; each is rendered with `str`.
    """
    cells = [list(map(str, header))] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


# -- the per-user cache of what is costly to work out and cheap to fingerprint -------------------

def cache_dir(kind: str) -> str | None:
    """The directory of one kind of kept result: ``$BUTLER_CACHE_DIR/<kind>`` (an empty variable: no
    cache), else ``butler/<kind>`` in the user's cache directory (``$XDG_CACHE_HOME`` or ``~/.cache``).

    Nothing kept there is trusted to be current by itself: each kept file holds
    the fingerprint of everything its content was worked out from, and a read
    compares it with the caller's.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured is not None:
        return os.path.join(configured, kind) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "butler", kind)


def read_kept(kind: str, fingerprint: bytes, format: int) -> Any:
    """The plain data kept (`keep`) for a result worked out from ``fingerprint`` in ``format``, or None when
    there is none, the file is unreadable, or the file of that name holds another fingerprint."""
    from .errors import ButlerError
    from .storage import Storage

    directory = cache_dir(kind)
    if directory is None:
        return None
    name = _kept_name(fingerprint, format)
    try:
        storage, _ = Storage.forFile(os.path.join(directory, name))
        kept = marshal.loads(storage.readBytes(name))
    except (OSError, ValueError, EOFError, TypeError, ButlerError) as exc:
        _log.debug("nothing kept as %s in %s: %s", name, directory, exc)
        return None
    if type(kept) is tuple and len(kept) == 2 and kept[0] == fingerprint:
        return kept[1]
    _log.debug("%s in %s was worked out from something else", name, directory)
    return None


def keep(kind: str, fingerprint: bytes, format: int, data: Any) -> None:
    """Keep plain data (what `marshal` holds) worked out from ``fingerprint``, atomically, with the
    fingerprint; data marshal cannot hold, or a cache directory that cannot be written, only means the
    work is done again next time."""
    from .errors import ButlerError
    from .safeio import write_bytes

    directory = cache_dir(kind)
    if directory is None:
        return
    name = _kept_name(fingerprint, format)
    try:
        write_bytes(os.path.join(directory, name), marshal.dumps((fingerprint, data)), root=directory)
    except (OSError, ValueError, ButlerError) as exc:
        _log.debug("%s not kept in %s: %s", name, directory, exc)


def _kept_name(fingerprint: bytes, format: int) -> str:
    """The file name of a result worked out from ``fingerprint``, for one format and Python version.

    The CRC-32 and length of the fingerprint only index the file (the file holds
    the fingerprint, which `read_kept` compares), so no digest is computed: a
    command starts without loading ``hashlib`` and OpenSSL.
    """
    return (f"{zlib.crc32(fingerprint):08x}-{len(fingerprint):x}-v{format}"
            f"-py{sys.version_info[0]}{sys.version_info[1]}.marshal")


# -- entry points ----------------------------------------------------------------------------------

class _EntryPoint(NamedTuple):
    """One entry of the ``butler.mappers`` group: ``name = module:attribute``."""

    name: str
    value: str

    def load(self) -> Any:
        """Import the module and return the attribute the entry names."""
        module, _, attribute = self.value.partition(":")
        return functools.reduce(getattr, filter(None, attribute.strip().split(".")),
                                importlib.import_module(module.strip()))


def _installed_fingerprint() -> bytes | None:
    """What the entry points of the installed distributions are read from: each distribution in a
    ``sys.path`` directory with the size and modification time of its ``entry_points.txt``, and
    the size and modification time of each zip file on the path.

    None when a finder other than the standard path finder may supply
    distributions (their entry points cannot be fingerprinted here).
    """
    import importlib.machinery

    finders = [finder for finder in sys.meta_path if hasattr(finder, "find_distributions")]
    if finders != [importlib.machinery.PathFinder]:
        return None
    parts = []
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as listing:
                names = sorted(item.name for item in listing if item.name.endswith((".dist-info", ".egg-info")))
        except NotADirectoryError:  # a zip file on the path: its size and time
            try:
                stat = os.stat(entry)
                parts.append(f"{entry} {stat.st_mtime_ns} {stat.st_size}")
            except OSError:
                parts.append(f"{entry} -")
            continue
        except OSError:
            continue
        # only the distributions: a directory holding none (the working directory) changes nothing
        for name in names:
            try:
                stat = os.stat(os.path.join(entry or ".", name, "entry_points.txt"))
                parts.append(f"{entry} {name} {stat.st_mtime_ns} {stat.st_size}")
            except OSError:
                parts.append(f"{entry} {name} -")
    return "\n".join(parts).encode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=1)
def _entry_point_classes() -> dict[str, Any]:
    """The ``butler.mappers`` entry points of the installed distributions, by name.

    Scanning every distribution (and importing `importlib.metadata`) costs a
    command tens of milliseconds; the table is kept in the user's cache
    (`cache_dir`) under a fingerprint of the installed distributions' entry
    point files, so installing, removing or editing one makes a new scan.
    """
    fingerprint = _installed_fingerprint()
    kept = read_kept("entry-points", fingerprint, _ENTRY_POINTS_FORMAT) if fingerprint is not None else None
    if isinstance(kept, list) and all(isinstance(item, tuple) and len(item) == 2 for item in kept):
        return {entry: _EntryPoint(entry, value) for entry, value in kept}
    from importlib.metadata import entry_points

    found = {ep.name: _EntryPoint(ep.name, ep.value) for ep in entry_points(group=ENTRY_POINT_GROUP)}
    if fingerprint is not None:
        keep("entry-points", fingerprint, _ENTRY_POINTS_FORMAT, [(entry.name, entry.value) for entry in found.values()])
    return found


def _import_dotted(name: str) -> Any:
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        return importlib.import_module(name)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        # "pkg.module.Class.method" or a nested attribute: walk up one more level.
        parent = _import_dotted(module_name)
        return getattr(parent, attr)
    try:
        return getattr(module, attr)
    except AttributeError:
        return importlib.import_module(name)


def _modern_name(name: str) -> str:
    """``name`` with a legacy Gen2 module prefix replaced by this project's."""
    for legacy, modern in LEGACY_PREFIXES.items():
        if name.startswith(legacy):
            return modern + name[len(legacy):]
    return name


def doImport(importable: str) -> Any:
    """Import and return the object named by a dotted string.

    Legacy Gen2 names resolve too: ``lsst.daf.persistence.X`` becomes
    ``butler.X``, and camera mapper names (``lsst.obs.lsst.LsstCamMapper``, ...)
    resolve through the ``butler.mappers`` entry-point group, which the
    project's own cameras and third-party packages extend.

    Parameters
    ----------
    importable : `str`
        A dotted name such as ``"butler.test.EmptyTestMapper"``.

    Raises
    ------
    ImportError
        When the name cannot be resolved; the message names it.
    TypeError
        When ``importable`` is not a string.
    """
    if not isinstance(importable, str):
        raise TypeError(f"doImport needs a dotted string, got {importable!r}")
    name = _modern_name(importable.strip())
    entry_points = _entry_point_classes()
    if name in entry_points:
        return entry_points[name].load()
    try:
        return _import_dotted(name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"cannot import {importable!r}: {exc}") from exc


# -- mapper names read from a repository's files ----------------------------------------------

#: (name, trusted prefixes) -> the mapper class it resolved to; refusals are not kept, so a
#: module trusted or imported later resolves
_RESOLVED_MAPPERS: dict[tuple[str, tuple[str, ...]], type] = {}


def trusted_prefixes(trusted: Iterable[str] = ()) -> tuple[str, ...]:
    """Return the module prefixes a mapper name may be imported from.

    Parameters
    ----------
    trusted : iterable of `str`
        Prefixes (or whole names) the caller trusts explicitly.

    Returns
    -------
    prefixes : `tuple` of `str`
        This package's own (`PACKAGE_PREFIXES`), those of the environment
        variable ``BUTLER_TRUSTED_MAPPERS`` (comma-separated) and ``trusted``;
        each without a trailing dot.
    """
    return _prefixes(os.environ.get(TRUSTED_MAPPERS_ENV, ""), tuple(map(str, trusted)))


@functools.lru_cache(maxsize=64)
def _prefixes(env: str, trusted: tuple[str, ...]) -> tuple[str, ...]:
    """`trusted_prefixes` for one value of the environment variable (cached: asked per unpickled class)."""
    cleaned = (p.strip().rstrip(".") for p in (*PACKAGE_PREFIXES, *env.split(","), *trusted))
    return tuple(dict.fromkeys(p for p in cleaned if p))


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _already_loaded(name: str) -> Any:
    """The object ``name`` names in a module already imported, or None; nothing is imported or run.

    The longest prefix of ``name`` found in `sys.modules` is the module; the
    rest is looked up statically (no module ``__getattr__``, no descriptors).
    """
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        obj = sys.modules.get(".".join(parts[:end]))
        if obj is None:
            continue
        for part in parts[end:]:
            try:
                obj = inspect.getattr_static(obj, part)
            except AttributeError:
                return None
        return obj
    return None


# -- classes named by a repository's files ------------------------------------------------------

#: builtins a repository's files may name: plain data types, never functions (``eval``,
#: ``getattr``, ``open``...) nor ``type``
SAFE_BUILTINS = frozenset({"object", "bool", "int", "float", "complex", "str", "bytes", "bytearray", "list",
                           "tuple", "dict", "set", "frozenset", "slice", "range"})
#: standard-library modules whose classes are plain values (other standard-library classes,
#: ``subprocess.Popen`` or ``zipfile.ZipFile``, are never resolved)
SAFE_STDLIB_MODULES = frozenset({"collections", "datetime", "decimal", "fractions", "uuid"})
#: libraries whose classes are trusted (with the package's own and the trusted prefixes)
LIBRARY_PREFIXES = ("numpy", "astropy")
#: classes (and their subclasses) whose construction touches files or repositories: never resolved
_FILE_TOUCHING = ("numpy.memmap", "astropy.io.fits.file._File", "astropy.io.fits.hdu.streaming.StreamingHDU",
                  "astropy.io.fits.diff.FITSDiff", "butler.butler.Butler",
                  "butler.storage.base.StorageInterface")
#: modules of the trusted libraries whose classes are servers, caches, file sources or tools: never resolved
_UNTRUSTED_MODULES = ("astropy.samp", "astropy.config", "astropy.utils.data", "numpy.lib._datasource",
                      "numpy.f2py", "numpy.distutils", "numpy.testing")


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple[str, ...]:
    """The directories of the standard library and of installed packages, resolved, ending in a separator."""
    import site
    import sysconfig

    paths = {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths.update(site.getsitepackages())
    paths.add(site.getusersitepackages())
    return tuple(os.path.join(os.path.realpath(p), "") for p in paths if p)


def _program_module(module: str) -> Any:
    """The already-imported module ``module`` when it is the program's own code, else None.

    The program's own code is a module with a source file outside the standard
    library and outside every installed package's directory (a script, its
    modules, a test file); nothing is imported.
    """
    if module.partition(".")[0] in sys.stdlib_module_names or module in sys.builtin_module_names:
        return None
    found = sys.modules.get(module)
    filename = vars(found).get("__file__") if found is not None else None
    if not isinstance(filename, str) or os.path.realpath(filename).startswith(_installed_roots()):
        return None
    return found


def _touches_files(cls: type) -> bool:
    for name in _FILE_TOUCHING:
        base = _already_loaded(name)  # a base class of ``cls`` is loaded when ``cls`` is
        if isinstance(base, type) and issubclass(cls, base):
            return True
    return False


def _static_attribute(obj: Any, qualname: str) -> Any:
    """``obj.<qualname>`` looked up statically (no ``__getattr__``, no descriptors), or None."""
    for part in qualname.split("."):
        try:
            obj = inspect.getattr_static(obj, part)
        except AttributeError:
            return None
    return obj


def trusted_type(module: str, qualname: str, trusted: Iterable[str] = ()) -> type | None:
    """Return the class ``module.qualname`` when a repository's files may name it, else None.

    A class resolves when it is: a plain builtin type (`SAFE_BUILTINS`); a
    class of a standard-library value module (`SAFE_STDLIB_MODULES`); a class
    under numpy, astropy, this package (``lsst.daf.persistence.`` read as
    ``butler.``) or a trusted prefix (``BUTLER_TRUSTED_MAPPERS``,
    ``trusted``), whose module is imported; or a class of a module of the
    program's own code that is already imported (nothing is imported for it).
    Functions, methods and other objects never resolve, nor do classes whose
    construction touches files (``numpy.memmap``, `butler.Butler`, storages...)
    or that are servers and file sources (``astropy.samp``, ``astropy.utils.data``...).

    Parameters
    ----------
    module : `str`
        The module, as named by the file.
    qualname : `str`
        The class's qualified name in the module (dotted for nested classes).
    trusted : iterable of `str`, optional
        More trusted module prefixes.
    """
    if not (isinstance(module, str) and isinstance(qualname, str)
            and _DOTTED_NAME.match(module) and _DOTTED_NAME.match(qualname)):
        return None
    module = _modern_name(module + ".")[:-1]
    if any(_within(module, prefix) for prefix in _UNTRUSTED_MODULES):
        return None
    if module == "builtins":
        found = vars(sys.modules["builtins"]).get(qualname) if qualname in SAFE_BUILTINS else None
    elif module in SAFE_STDLIB_MODULES or any(_within(module, prefix)
                                              for prefix in (*LIBRARY_PREFIXES, *trusted_prefixes(trusted))):
        try:
            found = _static_attribute(importlib.import_module(module), qualname)
        except ImportError:
            return None
    else:
        program = _program_module(module)
        found = _static_attribute(program, qualname) if program is not None else None
    return found if isinstance(found, type) and not _touches_files(found) else None


def resolve_type_name(name: str, trusted: Iterable[str] = ()) -> type | None:
    """Return the class a dotted type name (a policy's ``python:``) names, through `trusted_type`, or None.

    ``"astropy.nddata.CCDData"``, ``"numpy.ndarray"``, ``"dict"`` resolve;
    ``"lsst.afw.image.ExposureF"`` (not installed, not trusted) and
    ``"os.system"`` give None, with nothing imported.
    """
    parts = name.strip().split(".") if isinstance(name, str) else []
    if len(parts) == 1:
        return trusted_type("builtins", parts[0], trusted)
    for end in range(len(parts) - 1, 0, -1):
        found = trusted_type(".".join(parts[:end]), ".".join(parts[end:]), trusted)
        if found is not None:
            return found
    return None


def resolve_mapper(name: str, source: str | Callable[[], str], trusted: Iterable[str] = ()) -> type:
    """Return the mapper class a repository's file names, importing only trusted modules.

    A name resolves through, in order: the ``butler.mappers`` entry-point
    group (legacy Gen2 names included), the modules under a trusted prefix
    (this package's, ``BUTLER_TRUSTED_MAPPERS``'s and ``trusted``; legacy
    ``lsst.daf.persistence.`` names map to ``butler.``), and the modules the
    running program has already imported (nothing new is imported). Anything
    else is refused before any import. What it finds must be a subclass of
    `butler.mapper.Mapper`; nothing is constructed.

    Parameters
    ----------
    name : `str`
        The dotted name, as read from the file.
    source : `str` or callable
        The file (or other place) the name was read from, for messages; a
        callable giving it is called only when a message needs it.
    trusted : iterable of `str`, optional
        More module prefixes to trust (``Butler(trustedMappers=...)``,
        ``butler --mapper``).

    Raises
    ------
    butler.errors.UntrustedMapperError
        When the name is from no trusted source, or does not name a mapper class.
    butler.errors.MapperImportError
        When a trusted name cannot be imported.
    """
    from .errors import MapperImportError, UntrustedMapperError
    from .mapper import Mapper

    def where() -> str:
        return source() if callable(source) else source

    key = (name, trusted_prefixes(trusted)) if isinstance(name, str) else None
    known = _RESOLVED_MAPPERS.get(key) if key is not None else None
    if known is not None:  # resolved before under the same trust: every Butler opening a chain asks again
        return known

    given = name.strip() if isinstance(name, str) else name
    if not isinstance(given, str) or not _DOTTED_NAME.match(given):
        raise UntrustedMapperError(f"{where()}: mapper {name!r} is not a dotted Python name; "
                                   "nothing was imported")
    target = _modern_name(given)
    entry = _entry_point_classes().get(target)
    if entry is not None or any(_within(target, prefix) for prefix in trusted_prefixes(trusted)):
        try:
            found = entry.load() if entry is not None else _import_dotted(target)
        except (ImportError, AttributeError) as exc:
            raise MapperImportError(f"{where()}: mapper {given!r} cannot be imported: {exc}") from exc
    else:
        found = _already_loaded(target)
        if found is None:
            module = target.rpartition(".")[0] or target
            raise UntrustedMapperError(
                f"{where()}: mapper {given!r} is not from a trusted module, so it was not imported; "
                f"to trust it, set {TRUSTED_MAPPERS_ENV}={module}, pass Butler(..., "
                f"trustedMappers=[{module!r}]), give butler --mapper {given}, or import {module} first")
    if not (isinstance(found, type) and issubclass(found, Mapper)):
        raise UntrustedMapperError(f"{where()}: {given!r} names {type(found).__name__} {found!r}, not a "
                                   "subclass of butler.mapper.Mapper; it is not constructed")
    if _log.isEnabledFor(logging.DEBUG):
        _log.debug("mapper %r named in %s resolved to %r", given, where(), found)
    if key is not None:
        _RESOLVED_MAPPERS[key] = found
    return found


# -- mapper names a user types ------------------------------------------------------------------

def _package_mapper_classes() -> dict[str, list[str]]:
    """``{class name: [import strings]}`` of the mapper classes in `SHORT_NAME_PACKAGES`' modules."""
    import pkgutil

    from .mapper import Mapper

    found: dict[str, list[str]] = {}
    for package in SHORT_NAME_PACKAGES:
        spec = importlib.util.find_spec(package)
        locations = spec.submodule_search_locations if spec is not None else None
        for info in pkgutil.iter_modules(locations or []):
            module = importlib.import_module(f"{package}.{info.name}")
            for name, obj in vars(module).items():
                if isinstance(obj, type) and issubclass(obj, Mapper) and obj.__module__ == module.__name__:
                    found.setdefault(name, []).append(f"{module.__name__}.{name}")
    return found


def mapper_names() -> dict[str, str]:
    """Every mapper name a user may type, with the import string it resolves to.

    Returns
    -------
    names : `dict` [`str`, `str`]
        The legacy Gen2 names and others of the ``butler.mappers`` entry-point
        group, and the short class names (``MinMapper2``) of the mapper classes
        of this project's camera modules and of the entry points, where a short
        name stands for one class only; sorted by name.
    """
    names = {name: entry.value.replace(":", ".") for name, entry in _entry_point_classes().items()}
    short = _package_mapper_classes()
    for target in names.values():
        short.setdefault(target.rpartition(".")[2], []).append(target)
    for name, targets in short.items():
        if len(set(targets)) == 1:
            names.setdefault(name, targets[0])
    return dict(sorted(names.items()))


def resolve_short_mapper_name(name: str) -> str:
    """Return the import string a name without a dot stands for (see `mapper_names`); others as given.

    Raises
    ------
    butler.errors.MapperImportError
        When a name without a dot is no known mapper; the message lists the known ones.
    """
    from .errors import MapperImportError

    if "." in name:
        return name
    known = mapper_names()
    if name not in known:
        short = ", ".join(n for n in known if "." not in n)
        raise MapperImportError(f"unknown mapper {name!r}; known: {short} "
                                "(or an import string such as mappers.testing.MinMapper2)")
    return known[name]
