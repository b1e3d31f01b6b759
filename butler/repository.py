"""`Repository`: one live repository = its configuration, its storage and its mapper.

The repository owns its storage and opens its registries; it hands both, and
its ancestry, to its mapper (``repository=``), asks the mapper for locations
and hands them to its storage; it enforces its mode. The mapper is built on
first use, so opening a Butler over many repositories costs only the reading
of their cfgs. A mapper constructed without a Butler gets the same view of
its root from `open_repository_view`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import Any

import attrs

from .cfg import RepositoryArgs, RepositoryCfg, _is_local, find_mapper_file, mapper_source
from .errors import MapperError, RepositoryError, RepositoryModeError, describe_data_id
from .graph import RepositoryNode, RepoSpec, build_graph
from .location import ButlerComposite, ButlerLocation, split_hdu
from .storage import Storage, StorageInterface
from .storage.base import split_uri
from .utils import resolve_mapper

__all__ = ["Repository", "describe_repository", "mapper_class", "open_repository_view"]

_log = logging.getLogger(__name__)

_UNSET = object()


#: the files that make a repository's registry: SQLite, or a legacy file naming a PostgreSQL database
REGISTRY_FILES = ("registry.sqlite3", "registry.pgsql")


def describe_repository(root: str) -> RepoSpec:
    """Read what is at a repository root, through its storage: its cfg, or its old-style (V1) markers.

    The spec's identity is the root's real path (symlinks resolved), or the
    URI itself for other storages, so every spelling of one repository is one.
    A ``_parent`` link is reported even when its target is gone.
    """
    identity = os.path.realpath(root) if _is_local(root) else root
    storage = Storage.openExisting(root)
    if storage is None:
        return RepoSpec(root=root, present=False, identity=identity)
    cfg = RepositoryCfg.read(root, storage=storage, realDirectory=identity)
    legacy_parent = storage.parentRoot() if cfg is None else None  # a cfg's parents are its own
    if legacy_parent is not None and not split_uri(legacy_parent)[0]:
        legacy_parent = os.path.realpath(legacy_parent)
    found = find_mapper_file(root) if cfg is None else None
    legacy_mapper = found[0] if found is not None else None
    has_registry: Any = _has_registry(storage) if storage.hasLocalFiles or cfg is None else _ExistsOnUse(storage)
    return RepoSpec(root=root, cfg=cfg, legacyMapper=legacy_mapper, legacyParent=legacy_parent,
                    hasRegistry=has_registry, present=True, identity=identity)


def _has_registry(storage: StorageInterface) -> bool:
    """Whether a repository keeps a registry: a ``registry.sqlite3``, or a legacy ``registry.pgsql`` naming one."""
    return any(storage.exists(name) for name in REGISTRY_FILES)


class _ExistsOnUse:
    """Whether a repository keeps a registry, in a remote storage: asked when first needed (a request saved when never).

    Opening a Butler over a chain of remote repositories then costs one read
    of each cfg; the registry file is looked for only when a mapper asks for a
    registry. Pickles as the answer.
    """

    def __init__(self, storage: StorageInterface):
        self._storage = storage
        self._answer: bool | None = None

    def __bool__(self) -> bool:
        if self._answer is None:
            self._answer = _has_registry(self._storage)
        return self._answer

    def __reduce__(self) -> tuple:
        return bool, (bool(self),)

    def __repr__(self) -> str:
        return f"registry in {self._storage.root}: {'?' if self._answer is None else self._answer}"


def mapper_class(mapper: Any, root: str, trusted: Iterable[str] = ()) -> Any:
    """The mapper class a repository's cfg names: a name goes through `butler.utils.resolve_mapper`.

    A class or instance given by the program is returned as is; a name (read
    from the repository's files) resolves only from trusted sources, to a
    `butler.mapper.Mapper` subclass, and errors name the file it came from.
    """
    if isinstance(mapper, str):
        return resolve_mapper(mapper, lambda: mapper_source(root), trusted)  # the file is named on error only
    return mapper


@functools.lru_cache(maxsize=64)
def _init_parameters(init: Any) -> tuple[frozenset[str], bool]:
    """The keyword names an ``__init__`` takes, and whether it takes any (``**kwargs``): read once per
    function, since every Butler a worker unpickles constructs its mappers again."""
    params: Mapping[str, inspect.Parameter]
    try:
        params = inspect.signature(init).parameters
    except (TypeError, ValueError):
        params = {}
    return frozenset(params), any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def construct_mapper(mapper: Any, repository: Repository) -> Any:
    """Construct a repository's mapper class with keywords only, passing only those its ``__init__`` accepts.

    Offered: ``root``, ``parentRegistry`` and ``repositoryCfg`` (the Gen2
    keywords), the cfg's mapper arguments, and ``repository`` (the live
    `Repository`: its storage, registries and ancestry) to a mapper that names
    it. A mapper given as an instance is used as it is (with a warning).
    """
    root, cfg = repository.root, repository.cfg
    mapper = mapper_class(mapper, root)
    if mapper is None:
        return None
    if not isinstance(mapper, type):
        _log.warning("mapper %r was given as an instance; it is used as is for %s", mapper, root)
        return mapper
    mapper_type: type[Any] = mapper  # some class: its own __init__ is read, not that of `type`
    offered = {"root": root, "parentRegistry": repository.parentRegistry, "repositoryCfg": cfg}
    mapper_args = dict(cfg.mapperArgs or {})
    if "root" in mapper_args:
        del offered["root"]
    offered.update(mapper_args)
    params, takes_any = _init_parameters(mapper_type.__init__)
    if not takes_any:
        offered = {k: v for k, v in offered.items() if k in params}
    if "repository" in params and "root" not in mapper_args:  # named, never through **kwargs
        offered["repository"] = repository
    try:
        return mapper(**offered)
    except TypeError as exc:
        raise MapperError(f"cannot construct mapper {mapper.__name__} for repository {root!r} "
                          f"with {sorted(offered)}: {exc}") from exc


def open_repository_view(root: str, repositoryCfg: RepositoryCfg | None = None) -> Repository:
    """The repository at ``root`` as a mapper constructed without a Butler sees it (read-only).

    Gen2 scripts and tests construct mappers alone (``TestMapper(root=...)``);
    such a mapper asks here for what a Butler would hand it: the root's
    storage and its ancestors, opened by the same graph code as a Butler's
    inputs (``repositoryCfg``, when given, stands for the cfg on disk). A
    directory that is not (yet) a repository is a view with no ancestors.

    Raises
    ------
    RepositoryError
        When nothing exists at ``root``.
    """
    root = os.fspath(root)
    spec = describe_repository(root)
    if not spec.present:
        raise RepositoryError(f"no repository at {root!r}: it does not exist")
    if repositoryCfg is None and not spec.exists:
        bare = RepositoryNode(cfg=RepositoryCfg(root, None, None, [], None), mode="r", role="input")
        return Repository(bare, [])
    absolute = os.path.abspath(root) if _is_local(root) else root  # the graph takes absolute roots
    entry: RepositoryCfg | RepositoryArgs = (RepositoryArgs(root=absolute, mode="r") if repositoryCfg is None
                                             else attrs.evolve(repositoryCfg, root=absolute))
    graph = build_graph([entry], [], describe_repository)
    # the view's root is the root as given, so the mapper's paths are spelled as the caller spelled it
    node = attrs.evolve(graph.inputs[0], cfg=attrs.evolve(graph.inputs[0].cfg, root=root))
    return open_repositories([node])[0]


def open_repositories(nodes: Iterable[RepositoryNode], made: dict[int, Repository] | None = None
                      ) -> list[Repository]:
    """The `Repository` of each node, each made after its parents' (with a stack: chains may be deep).

    ``made`` (``id(node) -> Repository``) keeps the repositories already made
    and receives the new ones.
    """
    made = {} if made is None else made
    nodes = list(nodes)
    stack = list(nodes)
    while stack:
        top = stack[-1]
        waiting = [p for p in top.parents if id(p) not in made]
        if waiting:
            stack.extend(waiting)
            continue
        stack.pop()
        if id(top) not in made:
            made[id(top)] = Repository(top, [made[id(p)] for p in top.parents])
    return [made[id(node)] for node in nodes]


class Repository:
    """A repository opened by a Butler.

    Parameters
    ----------
    node : `RepositoryNode`
        The repository's place in the graph (cfg, mode, tags, parents).
    parents : `list` of `Repository`
        The parent repositories, for the mapper's ``parentRegistry``.
    """

    def __init__(self, node: RepositoryNode, parents: list[Repository]):
        self.node = node
        self.cfg = node.cfg
        self.parents = parents
        self.storage: StorageInterface = Storage.makeFromURI(node.root, create=node.writable)
        self._mapper_instance: Any = None
        self._own_registry: Any = None
        self._hook_cache: dict[str, tuple[Any, bool, Any]] = {}
        self._readable, self._writable = node.readable, node.writable

    def __repr__(self) -> str:
        return f"Repository({self.root!r}, mode={self.mode!r})"

    @property
    def root(self) -> str:
        """Absolute root of the repository."""
        return self.node.root

    @property
    def mode(self) -> str:
        """``'r'``, ``'w'`` or ``'rw'``."""
        return self.node.mode

    @property
    def tags(self) -> frozenset:
        """Tags of the repository (own and inherited)."""
        return self.node.tags

    @property
    def _mapper(self) -> Any:
        """The mapper, constructed on first use."""
        if self._mapper_instance is None and self.cfg.mapper is not None:
            self._mapper_instance = construct_mapper(self.cfg.mapper, self)
        return self._mapper_instance

    @property
    def mapper(self) -> Any:
        """The mapper; a `MapperError` when the repository has none."""
        mapper = self._mapper
        if mapper is None:
            raise MapperError(f"repository {self.root!r} has no mapper")
        return mapper

    #: the memoised `parentRegistry` (set on first use; parents never change)
    _parent_registry: Any = _UNSET

    @property
    def parentRegistry(self) -> Any:
        """The registry of the nearest ancestor that has one (``registry.sqlite3`` or ``registry.pgsql``), or None.

        Parents are asked in order, depth-first, as far as the first registry;
        each repository's answer is kept, and a stack replaces recursion, so
        chains of any depth cost one visit per repository.
        """
        stack = [(self, 0)]
        while stack:
            repo, index = stack[-1]
            if repo._parent_registry is not _UNSET:
                stack.pop()
                continue
            if index == len(repo.parents):
                repo._parent_registry = None
                continue
            parent = repo.parents[index]
            if parent.node.hasRegistry:
                registry = parent.ownRegistry
            elif parent._parent_registry is _UNSET:
                stack.append((parent, 0))
                continue
            else:
                registry = parent._parent_registry
            if registry is not None:
                repo._parent_registry = registry
            else:
                stack[-1] = (repo, index + 1)
        return self._parent_registry

    @property
    def ownRegistry(self) -> Any:
        """This repository's own registry: its mapper's, else its ``registry.sqlite3`` (or ``registry.pgsql``)."""
        if self._own_registry is None and self.node.hasRegistry:
            mapper = self._mapper
            registry = mapper.getRegistry() if mapper is not None else None
            if registry is None:
                registry = self.openRegistry("registry.sqlite3")
            self._own_registry = registry
        return self._own_registry

    def openRegistry(self, path: str, storage: StorageInterface | None = None) -> Any:
        """The registry at ``path`` in this repository's storage: a ``.sqlite3`` file, or a directory scanned.

        Parameters
        ----------
        path : `str`
            Relative to the storage.
        storage : storage, optional
            Another storage of this repository (e.g. one from `storageAt`).

        Returns
        -------
        registry : `butler.registry.Registry` or `None`
            None when there is no ``.sqlite3`` file at ``path``.
        """
        from .registry import Registry

        return Registry.create(self.storage if storage is None else storage, path)

    def storageAt(self, path: str) -> StorageInterface:
        """The storage of a directory of this repository (``path`` relative to the root), or of another root.

        ``""`` and ``"."`` give this repository's own storage; an absolute path
        or a URI opens the storage there (which must exist).
        """
        if path in ("", "."):
            return self.storage
        absolute = os.path.isabs(path) or bool(split_uri(path)[0])
        return Storage.makeFromURI(path if absolute else self.storage.locationWithRoot(path), create=False)

    def ancestry(self) -> list[Repository]:
        """This repository, then its ancestors: depth-first through `parents`, each once.

        Parents that were recorded but do not exist (the graph keeps them as
        gaps) are not in the list; they are logged at debug level.
        """
        order: list[Repository] = []
        seen: set[int] = set()
        stack: list[Repository] = [self]
        while stack:
            repo = stack.pop()
            if id(repo) in seen:
                continue
            seen.add(id(repo))
            order.append(repo)
            for _, gap in repo.node.gaps:
                _log.debug("ancestry of %s: parent %s recorded by %s does not exist; skipped",
                           self.root, gap.root, gap.recordedBy)
            stack.extend(reversed(repo.parents))
        return order

    # -- mapping ---------------------------------------------------------------------------

    def map(self, datasetType: str, dataId: Any, write: bool = False) -> Any:
        """Ask the mapper for the location(s) of a dataset, complete (see `_completed`).

        Raises
        ------
        MapperError
            From the mapper, its message completed with the dataset type, the
            data ID and this repository.
        """
        if not (self._writable if write else self._readable):
            self._check_mode(write)
        mapper = self._mapper_instance if self._mapper_instance is not None else self.mapper
        try:
            location = mapper.map(datasetType, dataId, write=write)
        except MapperError as exc:
            exc.add_context(f"datasetType: {datasetType}; dataId: {describe_data_id(dataId)}; "
                            f"repository: {self.root}")
            raise
        return self._completed(location, datasetType)

    def _completed(self, location: Any, datasetType: str) -> Any:
        """A mapper's answer as this repository hands it on: every location naming this repository,
        its dataset type and its storage.

        A location the mapper made complete is returned as it is (the common
        case: a mapper built with ``repository``); otherwise a completed copy,
        so the mapper's own object is never changed.
        """
        if isinstance(location, (list, tuple)):
            return [self._completed(loc, datasetType) for loc in location]
        if not isinstance(location, (ButlerLocation, ButlerComposite)):
            return location  # None, or an answer of the mapper's own kind
        changes: dict[str, Any] = {}
        if location.repository is not self:
            changes["repository"] = self
        if location.datasetType is None:
            changes["datasetType"] = datasetType
        if isinstance(location, ButlerLocation) and location.storage is None:
            changes["storage"] = self.storage
        return attrs.evolve(location, **changes) if changes else location

    def bypass(self, datasetType: str) -> Any:
        """The mapper's ``bypass_<datasetType>``, or None (looked up once per dataset type)."""
        hooks = self._hooks(datasetType)
        return hooks[0]

    def canStandardize(self, datasetType: str) -> bool:
        """Whether the mapper post-processes what is read of ``datasetType`` (asked once per type)."""
        return self._hooks(datasetType)[1]

    def sharedReadProbe(self, datasetType: str) -> tuple[Hashable, Callable[[str], str | None]] | None:
        """The mapper's `butler.mapper.Mapper.sharedReadPath` promise for ``datasetType`` as this repository
        keeps it: the key, and how to look for a path another repository of the key mapped (asked once per
        type: `butler.storage.base.StorageInterface.prober`); None when the mapper makes none, has a bypass
        for it, or the repository is not read."""
        return self._hooks(datasetType)[2]

    def relocate(self, location: ButlerLocation, path: str) -> ButlerLocation:
        """The location another repository's mapper gave under the same `sharedReadProbe` key, as this
        repository holds it (its file found at ``path``)."""
        return ButlerLocation._mapped(location.pythonType, location.cppType, location.storageName, path,
                                      location.dataId, self.mapper, self.storage, location.usedDataId,
                                      location.datasetType, dict(location.additionalData), self, True)

    def _hooks(self, datasetType: str) -> tuple[Any, bool, Any]:
        hooks = self._hook_cache.get(datasetType)
        if hooks is None:
            mapper = self.mapper
            bypass = getattr(mapper, "bypass_" + datasetType, None)
            promises = getattr(mapper, "sharedReadPath", None)
            promise = promises(datasetType) if promises is not None and bypass is None and self._readable else None
            shared = None if promise is None else (promise[0], self.storage.prober(promise[1]))
            hooks = self._hook_cache[datasetType] = (bypass, bool(mapper.canStandardize(datasetType)), shared)
        return hooks

    def exists(self, location: ButlerLocation) -> bool:
        """Whether every file of a location exists in its storage."""
        storage = location.storage or self.storage
        return all(storage.exists(split_hdu(path)[0]) for path in location.locationList)

    def read(self, location: ButlerLocation) -> Any:
        """Read the object at a location."""
        if not self._readable:
            self._check_mode(write=False)
        storage = location.storage or self.storage
        return storage.read(location)

    def write(self, location: ButlerLocation, obj: Any, doBackup: bool = False) -> None:
        """Write an object to a location (atomically, inside the repository root).

        With ``doBackup`` the versions already there are kept first (see
        `backup`), under one lock with the write.
        """
        self._check_mode(write=True)
        storage = location.storage or self.storage
        storage.write(location, obj, doBackup=doBackup)

    def backup(self, location: ButlerLocation) -> list[str]:
        """Keep the existing versions of a location's files before they are overwritten.

        As Gen2 did: ``p~k`` becomes ``p~(k+1)`` and ``p`` becomes ``p~1``, so
        ``~1`` is always the newest backup (see `StorageInterface.backup`).
        Returns the backup names written.
        """
        self._check_mode(write=True)
        storage = location.storage or self.storage
        return [name for path in location.locationList for name in storage.backup(path)]

    def _check_mode(self, write: bool) -> None:
        if write and not self.node.writable:
            raise RepositoryModeError(f"repository {self.root!r} is read-only (mode {self.mode!r})")
        if not write and not self.node.readable:
            raise RepositoryModeError(f"repository {self.root!r} is write-only (mode {self.mode!r})")
