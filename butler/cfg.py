"""Repository configuration: `RepositoryArgs`, `RepositoryCfg` and their safe YAML form.

A new-style repository holds ``repositoryCfg.yaml``: a mapping tagged
``!RepositoryCfg_v1`` with the keys ``_root`` (null when the file sits in its
repository), ``_mapper`` (an import string), ``_mapperArgs``, ``_parents``
(paths relative to the repository's real, symlink-resolved location, or nested
``!RepositoryCfg_v1`` mappings) and ``_policy`` (a plain mapping or null).

Files written by Gen2 are read too, without an unsafe loader: ``!!python/name:X``
becomes the string ``"X"`` (nothing is imported), an embedded
``!!python/object:...Policy`` becomes a `Policy`, and every other Python or
unknown tag raises `UnsafeYamlError`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from typing import IO, Any

import attrs

from .dataId import _as_tag_set
from .errors import MapperImportError, ParentsMismatch, RepositoryError, RepositoryModeError, UnsafeYamlError
from .policy import Policy
from .utils import resolve_mapper

__all__ = [
    "CFG_FILENAME",
    "RepositoryArgs",
    "RepositoryCfg",
    "as_repository_args",
    "check_yaml_bytes",
    "find_mapper_file",
    "load_yaml",
    "mapper_source",
    "read_bounded",
    "read_mapper_file",
    "resolve_mapper_name",
]

_log = logging.getLogger(__name__)

#: name of the configuration file in a new-style repository
CFG_FILENAME = "repositoryCfg.yaml"
#: name of the file holding the mapper class of an old-style repository
MAPPER_FILENAME = "_mapper"
CFG_TAG = "!RepositoryCfg_v1"

_MODES = ("r", "w", "rw", None)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


# -- locations ---------------------------------------------------------------------------------

def _as_location(location: Any, absolute: bool) -> str | None:
    """Normalise a repository location.

    ``file://`` URIs become paths; other URIs are kept; with ``absolute`` a
    relative path is made absolute against the current directory.
    """
    if location is None:
        return None
    location = os.fspath(location)
    if location.startswith("file://"):
        location = location[len("file://"):]
    elif _SCHEME.match(location):
        return location.rstrip("/")
    if absolute:
        return os.path.abspath(location)
    return os.path.normpath(location)


def _is_local(location: str) -> bool:
    return not _SCHEME.match(location)


# -- mappers -----------------------------------------------------------------------------------

def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _mapper_import_string(mapper: Any) -> str | None:
    """The string that names ``mapper`` in a cfg file (nothing is imported)."""
    if mapper is None or isinstance(mapper, str):
        return mapper
    return _class_name(mapper if isinstance(mapper, type) else type(mapper))


#: class names of mapper strings resolved so far (a failed resolution is not kept: the
#: module may be imported or trusted later)
_RESOLVED_NAMES: dict[str, str] = {}


def _resolve_mapper_string(name: str) -> str:
    resolved = _RESOLVED_NAMES.get(name)
    if resolved is None:
        try:
            resolved = _RESOLVED_NAMES[name] = _class_name(resolve_mapper(name, "mapper name comparison"))
        except MapperImportError:
            return name
    return resolved


def resolve_mapper_name(mapper: Any) -> str | None:
    """Return the fully-qualified class name a mapper stands for.

    A class, an instance and an import string (legacy Gen2 names included,
    resolved through `butler.utils.resolve_mapper`, so only trusted modules are
    imported) of the same mapper give the same answer; a string that does not
    resolve to a mapper class is returned as is.

    Parameters
    ----------
    mapper : `type`, `str`, mapper instance or `None`
        The mapper.
    """
    if mapper is None:
        return None
    if isinstance(mapper, str):
        return _resolve_mapper_string(mapper.strip())
    return _class_name(mapper if isinstance(mapper, type) else type(mapper))


# -- value objects -----------------------------------------------------------------------------

def _validate_mode(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value not in _MODES:
        raise RepositoryModeError(f"repository mode must be one of 'r', 'w', 'rw' or None, not {value!r}")


def _as_policy(value: Any) -> Policy | None:
    return None if value is None else Policy(value)


@attrs.define
class RepositoryArgs:
    """How the user asked for a repository (Butler ``inputs``/``outputs`` items).

    Parameters
    ----------
    cfgRoot : `str`, optional
        Where the repository's cfg lives, when not in ``root``.
    root : `str` or `os.PathLike`, optional
        The repository location; a relative path is made absolute, a
        ``file://`` URI becomes a path.
    mapper : `type`, `str` or mapper instance, optional
        The mapper.
    mapperArgs : `dict`, optional
        Keyword arguments for the mapper; `None` means "not given".
    tags : `str`, iterable or object, optional
        Tags for the repository (a set, with the rules of `DataId` tags).
    mode : ``'r'``, ``'w'``, ``'rw'`` or `None`
        The access mode; anything else raises `RepositoryModeError`.
    policy : `dict` or `Policy`, optional
        Policy overrides.
    """

    _cfgRoot: str | None = attrs.field(default=None, converter=lambda x: _as_location(x, True))
    root: str | None = attrs.field(default=None, converter=lambda x: _as_location(x, True))
    mapper: Any = None
    mapperArgs: dict | None = None
    tags: set = attrs.field(default=None, converter=_as_tag_set)
    mode: str | None = attrs.field(default=None, validator=_validate_mode)
    policy: Policy | None = attrs.field(default=None, converter=_as_policy)

    @property
    def cfgRoot(self) -> str | None:
        """Where the cfg lives: ``cfgRoot`` when given, else ``root``."""
        return self._cfgRoot if self._cfgRoot is not None else self.root


def as_repository_args(value: Any) -> RepositoryArgs:
    """Return ``value`` as `RepositoryArgs`.

    Parameters
    ----------
    value : `RepositoryArgs`, `RepositoryCfg`, `dict`, `str` or `os.PathLike`
        Args (returned as is), a cfg (its root, mapper, mapperArgs and policy),
        a dict of `RepositoryArgs` keywords, or a location (path, relative
        path or ``file://`` URI), which becomes the root.

    Raises
    ------
    TypeError
        When ``value`` is none of these, or a dict has unknown keys.
    """
    if isinstance(value, RepositoryArgs):
        return value
    if isinstance(value, RepositoryCfg):
        return RepositoryArgs(root=value.root, mapper=value.mapper, mapperArgs=dict(value.mapperArgs),
                              policy=value.policy)
    if isinstance(value, Mapping):
        return RepositoryArgs(**value)
    if isinstance(value, (str, os.PathLike)):
        return RepositoryArgs(root=value)
    raise TypeError(f"cannot make RepositoryArgs from {type(value).__name__}: {value!r}")


def _as_parents(parents: Any) -> list:
    if parents is None:
        return []
    if isinstance(parents, (str, os.PathLike, RepositoryCfg)):
        parents = [parents]
    return [p if isinstance(p, RepositoryCfg) else _as_location(p, False) for p in parents]


@attrs.define(eq=False)
class RepositoryCfg:
    """The persisted configuration of a repository.

    Parameters
    ----------
    root : `str`, optional
        The repository location (`None` in a file that sits in its root).
    mapper : `type`, `str` or mapper instance, optional
        The mapper; written to files as an import string.
    mapperArgs : `dict`, optional
        Keyword arguments for the mapper (`None` becomes ``{}``).
    parents : `list` of `str` or `RepositoryCfg`, optional
        Parent repositories, in order: absolute locations, or nested cfgs for
        old-style parents and for parents opened with other arguments than
        their own cfg.
    policy : `dict` or `Policy`, optional
        Policy overrides of the repository.
    dirty : `bool`
        True when the cfg differs from what is on disk.

    Notes
    -----
    Equality compares root, mapper (class, instance and import string of one
    mapper are equal), mapperArgs, parents and policy.
    """

    root: str | None = attrs.field(default=None, converter=lambda x: _as_location(x, False))
    mapper: Any = None
    mapperArgs: dict = attrs.field(default=None, converter=lambda x: {} if x is None else dict(x))
    parents: list = attrs.field(default=None, converter=_as_parents)
    policy: Policy | None = attrs.field(default=None, converter=_as_policy)
    dirty: bool = attrs.field(default=True, kw_only=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RepositoryCfg):
            return NotImplemented
        return (self.root == other.root
                and self.mapperArgs == other.mapperArgs
                and self.parents == other.parents
                and self.policy == other.policy
                and resolve_mapper_name(self.mapper) == resolve_mapper_name(other.mapper))

    __hash__ = None  # type: ignore[assignment]

    @classmethod
    def makeFromArgs(cls, args: Any, parents: Iterable | None = None) -> RepositoryCfg:
        """Make the cfg of a new repository from the arguments it was asked for with.

        Parameters
        ----------
        args : `RepositoryArgs` or anything `as_repository_args` accepts
            The arguments.
        parents : iterable of `str` or `RepositoryCfg`, optional
            The parents of the new repository.
        """
        args = as_repository_args(args)
        return cls(root=args.root, mapper=args.mapper, mapperArgs=args.mapperArgs, parents=parents,
                   policy=args.policy)

    def matchesArgs(self, args: Any) -> bool:
        """Tell whether arguments given for this repository agree with its cfg.

        Unspecified arguments agree; mapperArgs must agree on the keys both have.
        """
        args = as_repository_args(args)
        if args.root is not None and self.root is not None and args.root != self.root:
            return False
        if args.mapper is not None and resolve_mapper_name(args.mapper) != resolve_mapper_name(self.mapper):
            return False
        if args.mapperArgs and any(self.mapperArgs[k] != v for k, v in args.mapperArgs.items()
                                   if k in self.mapperArgs):
            return False
        return not args.policy or args.policy == self.policy

    def extendParents(self, newParents: Iterable) -> None:
        """Set the parents to ``newParents``, which must start with the current parents.

        Raises
        ------
        butler.errors.ParentsMismatch
            When ``newParents`` does not begin with the current parents, in order.
        """
        newParents = _as_parents(newParents)
        count = len(self.parents)
        if newParents[:count] != self.parents:
            raise ParentsMismatch(f"parents {newParents!r} do not extend the recorded parents "
                                  f"{self.parents!r} of repository {self.root!r}")
        if len(newParents) > count:
            self.parents.extend(newParents[count:])
            self.dirty = True

    # -- files -----------------------------------------------------------------------------

    @staticmethod
    def _cfg_path(location: str | os.PathLike) -> str:
        path = _as_location(location, True)
        assert path is not None  # a location given (not None) stays one
        if os.path.basename(path) == CFG_FILENAME:
            return path
        return os.path.join(path, CFG_FILENAME)

    @classmethod
    def read(cls, location: str | os.PathLike, *, storage: Any = None,
             realDirectory: str | None = None) -> RepositoryCfg | None:
        """Read the cfg of a repository.

        Parameters
        ----------
        location : `str` or `os.PathLike`
            The repository root, or the path of its ``repositoryCfg.yaml``.
        storage : `butler.storage.StorageInterface`, optional
            The storage of the file's directory, when the caller has it open.
        realDirectory : `str`, optional
            The real path of the file's directory, when the caller knows it.

        Returns
        -------
        cfg : `RepositoryCfg` or `None`
            The cfg with absolute parent paths (relative ones are resolved
            against the file's real directory) and ``root`` set to the
            directory when the file records none; `None` when there is no file.

        Raises
        ------
        butler.errors.UnsafeYamlError
            When the file holds a tag the safe loader refuses.
        butler.errors.RepositoryError
            When the file does not hold a ``!RepositoryCfg_v1`` document.
        """
        path = cls._cfg_path(location)
        directory, name = os.path.split(path)
        if storage is None:
            storage = _storage_at(directory)
        if storage is None or not storage.exists(name):
            return None
        with storage.openRead(name) as stream:
            cfg = load_yaml(stream, source=path)
        if isinstance(cfg, dict):  # a cfg of another version is read as a mapping of its fields
            from .safeyaml import cfg_of_other_version

            cfg = cfg_of_other_version(cfg)
        if not isinstance(cfg, RepositoryCfg):
            raise RepositoryError(f"{path} does not hold a {CFG_TAG} document")
        if realDirectory is None:
            realDirectory = os.path.realpath(directory) if _is_local(directory) else directory
        cfg._resolve(realDirectory)
        if cfg.root is None:
            cfg.root = directory
        cfg.dirty = False
        return cfg

    def _resolve(self, base: str) -> None:
        """Make relative locations recorded in a file absolute against ``base`` (a path or a URI)."""
        if self.root is not None and _is_local(self.root) and not os.path.isabs(self.root):
            self.root = _joined(base, self.root)
        for i, parent in enumerate(self.parents):
            if isinstance(parent, RepositoryCfg):
                parent._resolve(base)
            elif _is_local(parent) and not os.path.isabs(parent):
                self.parents[i] = _joined(base, parent)

    def _to_yaml_mapping(self, base: str, root: str | None) -> _TaggedCfgMapping:
        """The ``!RepositoryCfg_v1`` mapping, local locations made relative to ``base``."""
        def relative(location: str) -> str:
            return os.path.relpath(location, base) \
                if _is_local(base) and _is_local(location) and os.path.isabs(location) else location

        return _TaggedCfgMapping({
            "_root": None if root is None else relative(root),
            "_mapper": _mapper_import_string(self.mapper),
            "_mapperArgs": dict(self.mapperArgs),
            "_parents": [p._to_yaml_mapping(base, p.root) if isinstance(p, RepositoryCfg) else relative(p)
                         for p in self.parents],
            "_policy": None if self.policy is None else self.policy.toDict(),
        })

    def text(self, base: str, root: str | None = None) -> str:
        """The cfg as the text of a ``repositoryCfg.yaml`` (``!RepositoryCfg_v1``), its local
        locations made relative to ``base`` and ``_root`` given as ``root`` (None: null)."""
        from .safeyaml import dump_cfg

        return dump_cfg(self._to_yaml_mapping(base, root))

    def write(self, location: str | os.PathLike) -> str:
        """Write the cfg to ``<location>/repositoryCfg.yaml``, atomically.

        ``_root`` is written as null when ``location`` is this cfg's root, and
        parents are written relative to the real location.  Several processes
        may write the same cfg at once: each replaces the file whole.

        Returns
        -------
        path : `str`
            The path of the file written.
        """
        path = self._cfg_path(location)
        directory, name = os.path.split(path)
        if _is_local(directory):
            base = os.path.realpath(directory)
            in_root = self.root is None or (_is_local(self.root) and os.path.realpath(self.root) == base)
        else:
            base = directory
            in_root = self.root is None or self.root.rstrip("/") == directory
        text = self.text(base, None if in_root else self.root)
        _storage_at(directory, create=True).writeBytes(name, text.encode("utf-8"))
        self.dirty = False
        _log.debug("wrote %s", path)
        return path


def _joined(base: str, relative: str) -> str:
    """A relative location recorded in a cfg, made absolute against the cfg's directory ``base``.

    A cfg in an object store (``s3://...``) resolves it in the store's own
    scheme; this package writes every parent across schemes, and every parent
    of a cfg that is not local, as an absolute location.
    """
    if _is_local(base):
        return os.path.normpath(os.path.join(base, relative))
    from .storage import Storage

    return Storage.absolutePath(base, relative)


def _storage_at(root: str, create: bool = False) -> Any:
    """The storage of the repository at ``root``; None when it does not exist (and ``create`` is false)."""
    from .storage import Storage

    return Storage.makeFromURI(root, create=True) if create else Storage.openExisting(root)


def read_mapper_file(root: str | os.PathLike) -> str | None:
    """Return the mapper class string of an old-style repository (first line of ``_mapper``).

    Returns `None` when ``root`` has no ``_mapper`` file.
    """
    storage = _storage_at(os.fspath(root))
    stream = storage.getLocalFile(MAPPER_FILENAME) if storage is not None else None
    if stream is None:
        return None
    with stream:
        line = stream.readline().strip()
    return line or None


def find_mapper_file(root: str | os.PathLike) -> tuple[str, str] | None:
    """Find the ``_mapper`` file of an old-style repository at ``root`` or up its ``_parent`` links.

    Returns
    -------
    found : ``(mapper class string, path of the _mapper file)`` or `None`
        `None` when no ``_mapper`` file is found (a ``_parent`` cycle ends the walk).
    """
    storage = _storage_at(os.fspath(root))
    seen = set()
    while storage is not None:
        key = os.path.realpath(storage.root) if _is_local(storage.root) else storage.root
        if key in seen:
            break
        seen.add(key)
        name = read_mapper_file(storage.root)
        if name is not None:
            return name, storage.locationWithRoot(MAPPER_FILENAME)
        parent = storage.parentRoot()
        storage = _storage_at(parent) if parent is not None else None
    return None


def mapper_source(root: str | os.PathLike) -> str:
    """Name the file a repository's mapper name comes from, for messages.

    The ``repositoryCfg.yaml`` at ``root`` when there is one, else the
    ``_mapper`` file found at ``root`` or up its ``_parent`` links, else the
    repository itself (a cfg recorded in a child's cfg, or given in a program).
    """
    cfg_path = RepositoryCfg._cfg_path(root)
    storage = _storage_at(os.path.dirname(cfg_path))
    if storage is not None and storage.exists(CFG_FILENAME):
        return cfg_path
    found = find_mapper_file(root)
    return found[1] if found is not None else f"the cfg of repository {os.fspath(root)}"


# -- safe YAML (PyYAML's part is `butler.safeyaml`, imported when a YAML file is read or written) --------

#: largest cfg or policy file read, in bytes
MAX_YAML_BYTES = 1 << 20
#: most alias uses (``*name``) in one file
MAX_YAML_ALIASES = 10_000
#: most nodes one file may stand for once every alias is expanded
MAX_YAML_NODES = 500_000
#: deepest nesting of mappings and sequences (libyaml's composer recurses in C)
MAX_YAML_DEPTH = 100


def read_bounded(stream: IO[bytes], source: str) -> bytes:
    """The bytes of a cfg or policy stream (at most one past the limit are read); `UnsafeYamlError` when
    it is over `MAX_YAML_BYTES`."""
    data = stream.read(MAX_YAML_BYTES + 1)
    if len(data) > MAX_YAML_BYTES:
        raise UnsafeYamlError(f"{source}: larger than {MAX_YAML_BYTES} bytes, the limit for a cfg or policy "
                              "file; it is not read")
    return data


class _TaggedCfgMapping(dict):
    """The mapping of one cfg, to be written under `CFG_TAG`."""


def load_yaml(file: str | os.PathLike | IO[bytes], source: str | None = None) -> Any:
    """Load a YAML file (or binary stream) with the safe repository-cfg loader.

    Plain YAML (anchors and aliases included), ``!RepositoryCfg_v1`` (to
    `RepositoryCfg`), another ``!RepositoryCfg_v<N>`` (to a plain mapping of
    its fields), ``!!python/name:X`` (to the string ``"X"``, not imported) and
    ``!!python/object:`` of a Gen2 or butler `Policy` (to `Policy`) are
    understood; legacy keys such as ``_isLegacyRepository`` are ignored.

    The file must be at most `MAX_YAML_BYTES` long, use at most
    `MAX_YAML_ALIASES` aliases, stand for at most `MAX_YAML_NODES` nodes with
    its aliases expanded and nest at most `MAX_YAML_DEPTH` levels; these are
    checked before anything is built; at most one byte past the size limit is
    read.

    Parameters
    ----------
    file : `str`, `os.PathLike` or binary stream
        A path (of a file in no repository: it is read through
        `butler.storage.Storage.forFile`), or a stream open for binary reading,
        such as a storage's ``openRead`` gives (read from its position, not
        closed).
    source : `str`, optional
        What messages call the file (default: the path, or the stream's ``name``).

    Raises
    ------
    butler.errors.UnsafeYamlError
        On any other tag, naming the file and the tag, or when the file is over
        a limit, naming the file and the limit; nothing is constructed.
    OSError
        When the file cannot be read.
    """
    from .safeyaml import load

    return load(file, source)


def check_yaml_bytes(data: bytes, name: str) -> None:
    """Check YAML bytes against the limits of `load_yaml` (size, aliases, nodes, depth); nothing is built.

    For YAML read with another loader (datasets: `butler.formatters.yaml`),
    so every YAML file a repository holds is read within the same limits.

    Raises
    ------
    butler.errors.UnsafeYamlError
        When a limit is exceeded, naming ``name`` and the limit.
    """
    from .safeyaml import check_bytes

    check_bytes(data, name)
