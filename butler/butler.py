"""`Butler`: reads and writes datasets by dataset type and data ID over many repositories.

The Butler only orchestrates: it resolves aliases, turns arguments into a
`DataId`, asks the repository graph for the repositories a read may search,
and hands each one's location to that repository's storage.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from . import deprecation
from .cfg import RepositoryArgs, RepositoryCfg, as_repository_args, resolve_mapper_name
from .dataId import DataId, merge_data_id
from .errors import (
    AliasError,
    DatasetNotFoundError,
    MapperError,
    NoResults,
    RepositoryError,
    UnwritableObjectError,
    describe_data_id,
    describe_location,
)
from .formatters import get_formatter
from .formatters.base import Formatter, type_name
from .graph import RepositoryGraph, RepositoryNode, _roots, build_graph
from .location import ButlerComposite, ButlerLocation, split_hdu
from .readProxy import ReadProxy
from .repository import Repository, describe_repository, mapper_class, open_repositories
from .search import MISS, Found, Search
from .storage import Storage
from .storage.base import split_uri
from .utils import as_list, resolve_mapper, resolve_type_name, sequencify

__all__ = ["Butler"]

_log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=256)
def _python_type(pythonType: str) -> Any:
    """The class a policy's type name names, through trusted modules only (`resolve_type_name`), else the string."""
    found = resolve_type_name(pythonType)
    return pythonType if found is None else found


#: the keys of a Butler's searches: a read's tag set (none: `_UNTAGGED`), or `_WRITING` for the outputs
_UNTAGGED: frozenset = frozenset()
_WRITING = "outputs"


@attrs.frozen
class RepoData:
    """One repository as Gen2 introspection code sees it (``butler._repos``).

    ``.repo`` is the `Repository`; its ``cfg``, ``parentRegistry``, ``tags``
    and ``mode`` are also read directly off the record.
    """

    repo: Repository

    def __getattr__(self, name: str) -> Any:
        if name in ("cfg", "parentRegistry", "tags", "mode"):
            return getattr(self.repo, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


@attrs.frozen
class RepositoriesView:
    """A read-only view of a Butler's repositories: ``inputs()`` and ``outputs()``.

    It holds the Butler's graph and repositories, not the Butler, so a Butler
    nothing else holds goes at once (closing its provenance databases) instead
    of waiting for the cycle collector, while ``Butler(...)._repos`` still works.
    """

    _graph: RepositoryGraph
    _repositories: dict
    _outputs: list

    def inputs(self) -> list[RepoData]:
        """The repositories reads search, in search order."""
        return [RepoData(self._repositories[id(n)]) for n in self._graph.search_order(frozenset())]

    def outputs(self) -> list[RepoData]:
        """The output repositories."""
        return [RepoData(r) for r in self._outputs]

    def all(self) -> list[RepoData]:
        """Every repository: outputs, then the read order."""
        return [RepoData(self._repositories[id(n)]) for n in self._graph.all_nodes()]


class Butler:
    """Reads and writes datasets by dataset type and data ID.

    Parameters
    ----------
    root : `str`, optional
        Old form: the root of one 'rw' repository.
    mapper : `str`, `type` or `Mapper`, optional
        Old form: the mapper of that repository.
    inputs : repository arguments or sequence of them, optional
        New form: the repositories to read, in search order. Each may be a
        `RepositoryArgs`, a `RepositoryCfg`, a dict of the same keys, a path or a
        ``file://`` URI.
    outputs : repository arguments or sequence of them, optional
        New form: the repositories to write (and, in mode 'rw', to read).
    trustedMappers : iterable of `str`, optional
        Module prefixes (such as ``"mycamera"`` or ``"mycamera.mapper.MyMapper"``)
        from which mapper names read from the repositories' files may be
        imported, beyond this package's own, the ``butler.mappers`` entry
        points, ``BUTLER_TRUSTED_MAPPERS`` and modules already imported (see
        `butler.utils.resolve_mapper`). A mapper string given in ``mapper``,
        ``inputs`` or ``outputs`` arguments is trusted too. Kept across pickling.
    recordProvenance : `bool`, optional
        Record what this Butler reads and, with every file a put writes, a
        provenance record in the output (see `quantum`, `provenance`). Default:
        on, unless the environment sets ``BUTLER_PROVENANCE=0``. Kept across pickling.
        A Butler without outputs records nothing: nothing it reads can become
        an input of a record.
    **mapperArgs
        Old form: keyword arguments for the mapper (e.g. ``calibRoot``).

    Raises
    ------
    RepositoryError
        The old and new forms are mixed; an input is not a repository; one
        repository (however spelled) is given twice as an output, or as an
        input and an output; an output is given with parents, or reopened
        with other mapperArgs or policy than its cfg records.
    RepositoryModeError
        A repository is used against its mode.
    ParentCycleError
        Recorded parents form a cycle, or an output is an ancestor of an input.
    ParentsMismatch
        An existing output is reopened with other parents.
    MapperError
        An output has no mapper (none given, recorded or inferable from the
        inputs), or is reopened with another mapper than it records.
    UntrustedMapperError
        A repository's files name a mapper from no trusted module, or
        something that is not a mapper class; nothing was imported or run.
    """

    def __init__(self, root: Any = None, mapper: Any = None, inputs: Any = None, outputs: Any = None, *,
                 trustedMappers: Iterable[str] | None = None, recordProvenance: bool | None = None,
                 **mapperArgs: Any):
        if deprecation.always_warn:
            warnings.warn("Butler is deprecated", FutureWarning, stacklevel=2)
        input_args, output_args, named = _normalise_arguments(root, mapper, inputs, outputs, mapperArgs)
        # absolute roots: an unpickled copy opens the same repositories from any directory
        self._init_args = (input_args, output_args)
        self._trustedMappers = tuple(as_list(trustedMappers))
        for name in named:  # the program's own names, imported before the graph compares them
            resolve_mapper(name, "the Butler arguments", (*self._trustedMappers, name))
        self._graph: RepositoryGraph = build_graph(input_args, output_args, describe_repository)
        for node in self._graph.all_nodes():  # names from the repositories' files: refused before any use
            mapper_class(node.cfg.mapper, node.root, self._trustedMappers)
        # accepted here (perhaps as a module this program imported): trusted by name in an unpickled copy,
        # such as a worker's, which has not imported that module
        self._acceptedMappers = tuple(sorted({node.cfg.mapper for node in self._graph.all_nodes()
                                              if isinstance(node.cfg.mapper, str)}))
        self._repositories: dict[int, Repository] = {}
        for node in self._graph.all_nodes():
            self._repository(node)
        self._outputs = [self._repositories[id(n)] for n in self._graph.outputs]
        for node in self._graph.outputs:
            if node.mustWriteCfg:
                if node.location != node.root:
                    Storage.makeFromURI(node.location, create=True)  # RepositoryArgs.cfgRoot
                Storage.putRepositoryCfg(node.cfg, node.location)
        self.datasetTypeAliasDict: dict[str, str] = {}
        self._orders: dict[frozenset, list[Repository]] = {}
        self._searches: dict[Any, Search] = {}
        self._repos = RepositoriesView(self._graph, self._repositories, self._outputs)
        self._recordProvenance = recordProvenance
        self._recorder = self._make_recorder(recordProvenance)

    def _repository(self, node: RepositoryNode) -> Repository:
        """The repository of a node, made after its parents' (see `open_repositories`)."""
        return open_repositories([node], self._repositories)[0]

    def __repr__(self) -> str:
        inputs = [r.root for r in self._read_order(())]
        outputs = [r.root for r in self._outputs]
        return f"Butler(inputs={inputs!r}, outputs={outputs!r})"

    # -- pickling: re-create from the original arguments -------------------------------------

    def __reduce__(self) -> tuple:
        trusted = tuple(dict.fromkeys((*self._trustedMappers, *self._acceptedMappers)))
        return _unpickle_butler, (self._init_args, dict(self.datasetTypeAliasDict), trusted, self._recordProvenance)

    # -- repositories --------------------------------------------------------------------

    def _read_order(self, tags: Iterable) -> list[Repository]:
        key = frozenset(tags) if tags else frozenset()
        order = self._orders.get(key)
        if order is None:
            order = self._orders[key] = [self._repositories[id(n)] for n in self._graph.search_order(key)]
        return order

    def repositories(self, tag: Any = None) -> list[Repository]:
        """Return the repositories a read searches, in search order.

        Readable outputs come first, then each input followed depth-first by
        its parents. With ``tag``, only those a read with that tag searches.
        """
        return list(self._read_order(DataId(tag=tag).tag))

    def outputRepositories(self) -> list[Repository]:
        """Return the output repositories, in the order given."""
        return list(self._outputs)

    def _all_repositories(self) -> list[Repository]:
        return [self._repositories[id(n)] for n in self._graph.all_nodes()]

    def _getDefaultMapper(self) -> Any:
        """The mapper class every repository uses, or None when they differ or have none."""
        mappers: dict[str | None, Repository] = {}
        for repo in self._all_repositories():
            if repo.cfg.mapper is not None:
                mappers.setdefault(resolve_mapper_name(repo.cfg.mapper), repo)
        if len(mappers) != 1:
            return None
        repo = next(iter(mappers.values()))
        mapper = mapper_class(repo.cfg.mapper, repo.root)
        return mapper if isinstance(mapper, type) else type(mapper)

    @staticmethod
    def getMapperClass(root: str, trustedMappers: Iterable[str] | None = None) -> Any:
        """Return the mapper class of the repository at ``root``, or None.

        The name read from the repository's files resolves as the Butler's do
        (`butler.utils.resolve_mapper`), ``trustedMappers`` adding trusted
        module prefixes; an `UntrustedMapperError` otherwise.
        """
        root = os.path.abspath(root)
        spec = describe_repository(root)
        mapper = spec.cfg.mapper if spec.cfg is not None else spec.legacyMapper
        return mapper_class(mapper, root, as_list(trustedMappers))

    # -- aliases -------------------------------------------------------------------------

    def defineAlias(self, alias: str, datasetType: str) -> None:
        """Define ``@alias`` (the ``@`` is optional here) as a name for ``datasetType``.

        Raises
        ------
        AliasError
            When the alias has ``@`` other than first, the dataset type has an
            ``@``, or the alias is a prefix of an existing one or has one as prefix.
        """
        at = alias.rfind("@")
        if at > 0:
            raise AliasError(f"badly formatted alias {alias!r}: '@' may only come first")
        if at == -1:
            alias = "@" + alias
        if "@" in datasetType:
            raise AliasError(f"an alias cannot name another alias: {datasetType!r}")
        for existing in self.datasetTypeAliasDict:
            if existing.startswith(alias) or alias.startswith(existing):
                raise AliasError(f"alias {alias!r} overlaps with existing alias {existing!r}")
        self.datasetTypeAliasDict[alias] = datasetType

    def _resolve(self, datasetType: str) -> str:
        if "@" not in datasetType:
            return datasetType
        for alias, target in self.datasetTypeAliasDict.items():
            datasetType = datasetType.replace(alias, target)
        if "@" in datasetType:
            raise AliasError(f"undefined alias in dataset type {datasetType!r}")
        return datasetType

    # -- reading -------------------------------------------------------------------------

    def _search(self, datasetType: str, dataId: DataId, write: bool, take: Callable[[Repository, Any], Any]) -> Any:
        """The first answer of ``take(repository, location)`` that is not `MISS`, over the repositories a read
        with the data ID's tags searches (the outputs, for ``write``): see `butler.search.Search.run`."""
        tags = dataId.tag
        key = _WRITING if write else frozenset(tags) if tags else _UNTAGGED
        search = self._searches.get(key)
        if search is None:
            search = self._searches[key] = self._make_search(write, key)
        return search.run(datasetType, dataId, take)

    def _make_search(self, write: bool, tags: Any) -> Search:
        if write:
            return Search(self._outputs, {}, write=True)
        unread = [repo.root for repo in self._outputs if "r" not in repo.mode]
        return Search(self._read_order(tags), self._graph.missing_parents(tags), write=False,
                      unread=unread, tagged=bool(tags))

    def _locate(self, datasetType: str, dataId: DataId, write: bool, read: bool = True) -> Found:
        """Find the first repository holding the dataset, in search order (``read``: see `_check_location`)."""
        def take(repo: Repository, location: Any) -> Any:
            found = self._check_location(repo, location, datasetType, dataId, read)
            return MISS if found is None else found

        return self._search(datasetType, dataId, write, take)

    def _locate_and_read(self, datasetType: str, dataId: DataId, parameters: Mapping | None = None) -> Any:
        """Read the first dataset found in search order (only what ``parameters`` select).

        A plain location is read straight away, and a missing file moves the
        search on: one open instead of a stat and an open, on the hot path.
        """
        def take(repo: Repository, location: Any) -> Any:
            if location.__class__ is ButlerLocation and repo.bypass(datasetType) is None:
                if location.found is False:  # the mapper saw no file: no open, no exception
                    return MISS
                try:
                    item = repo.read(location.with_parameters(parameters))
                except DatasetNotFoundError:
                    return MISS
                if self._recorder is not None:
                    self._recorder.read(location.storage or repo.storage, location, datasetType, dataId)
                if repo.canStandardize(datasetType):
                    item = repo.mapper.standardize(datasetType, item, dataId)
                return item
            found = self._check_location(repo, location, datasetType, dataId)
            return MISS if found is None else self._read(found, datasetType, dataId, parameters)

        return self._search(datasetType, dataId, False, take)

    @staticmethod
    def _check_location(repo: Repository, location: Any, datasetType: str, dataId: DataId,
                        read: bool = True) -> Found | None:
        """The dataset found at a location, or None when it is not there.

        For a read (``read``), the mapper's bypass, if any, is run here: its
        value is what is read, and its failure (`NoResults`, `OSError`) moves
        the search on. For an existence question (``datasetExists``,
        ``getUri``), a location whose files all exist is found without running
        the bypass, which may read every pixel; only when a file is missing
        does the bypass decide, since it may serve the dataset without one
        (the camera, exposure ids). What the mapper saw when it made the
        location in this call (``found``) answers without a second check.
        """
        bypass = repo.bypass(datasetType)
        if location.__class__ is ButlerLocation and location.found is not None:  # the common case, told at once
            if location.found and (bypass is None or not read):
                return Found(repo, location)
            if not location.found and bypass is None:
                return None
        if isinstance(location, ButlerComposite):
            return Found(repo, location)
        locations = location if isinstance(location, list) else [location]
        if bypass is None or not read:
            if all(repo.exists(loc) if loc.found is None else loc.found for loc in locations):
                return Found(repo, location)
            if bypass is None:
                return None
        first = locations[0]
        pythonType = first.pythonType
        if isinstance(pythonType, str):
            pythonType = _python_type(pythonType)
        try:
            value = bypass(datasetType, pythonType, first, dataId)
        except (NoResults, OSError) as exc:
            _log.debug("bypass_%s failed in %s: %s", datasetType, repo.root, exc)
            return None
        return Found(repo, location, lambda: value)

    def _read(self, found: Found, datasetType: str, dataId: DataId, parameters: Mapping | None = None) -> Any:
        """Read what was found: ``parameters`` go to the formatter, or select from a bypass's or assembly's object."""
        repo = found.repository
        if found.bypass is not None or isinstance(found.location, ButlerComposite):
            item = found.bypass() if found.bypass is not None else self._assemble(found.location, dataId)
            if parameters:
                item = _select(item, parameters, datasetType, dataId, repo.root)
        elif isinstance(found.location, list):
            item = [repo.read(loc.with_parameters(parameters)) for loc in found.location]
        else:
            item = repo.read(found.location.with_parameters(parameters))
        if self._recorder is not None and not isinstance(found.location, ButlerComposite):
            for location in found.location if isinstance(found.location, list) else [found.location]:
                self._recorder.read(location.storage or repo.storage, location, datasetType, dataId)
        if repo.canStandardize(datasetType):
            item = repo.mapper.standardize(datasetType, item, dataId)
        return item

    def get(self, datasetType: str, dataId: Any = None, immediate: bool = True, *, as_type: Any = None,
            parameters: Mapping[str, Any] | None = None, **rest: Any) -> Any:
        """Read a dataset.

        Parameters
        ----------
        datasetType : `str`
            The dataset type (aliases allowed).
        dataId : `dict` or `DataId`, optional
            The data ID; a tagged `DataId` searches only repositories with one of its tags.
        immediate : `bool`
            When False, return a `ReadProxy` that reads on first use.
        as_type : `type` or `str`, optional
            Return the dataset in this Python form (a type, or a short name such
            as ``"numpy"``, ``"pandas"``, ``"dict"``, ``"nddata"``), converted by
            the converter registered for it (`butler.converters`).
        parameters : mapping, optional
            Read only a part: ``{"bbox": (x0, y0, width, height)}`` of an image
            (counted from its origin, as ``X_sub`` datasets are; ``"imageOrigin":
            "LOCAL"`` from its first pixel), ``{"columns": [...], "rows": slice(...)}``
            of a table. Each format reads only what they select.
        **rest
            More data-ID keys.

        Raises
        ------
        NoResults
            No repository searched holds the dataset; the message names the
            dataset type, the data ID, its tags and every repository searched.
        UnknownConversionError
            No converter gives ``as_type``; the message lists the known ones.
        UnknownParameterError
            A parameter the dataset's format does not take; the message names
            those it accepts.
        """
        datasetType = self._resolve(datasetType)
        dataId = merge_data_id(dataId, rest)
        if immediate and as_type is None:  # the common call, without the partial below
            return self._locate_and_read(datasetType, dataId, parameters)
        if immediate:
            read = functools.partial(self._locate_and_read, datasetType, dataId, parameters)
        else:
            read = functools.partial(self._read, self._locate(datasetType, dataId, write=False), datasetType, dataId,
                                     parameters)
        if as_type is not None:
            read = functools.partial(_converted, read, as_type, datasetType, dataId)
        return read() if immediate else ReadProxy(read)

    def datasetExists(self, datasetType: str, dataId: Any = None, write: bool = False, **rest: Any) -> bool:
        """Return whether a dataset exists: in the inputs, or with ``write=True`` in the outputs.

        Answered from the mapper's location and its files' existence; the
        mapper's bypass (which may read the whole file) runs only when a file
        is missing. Never raises for a data ID that matches no registry row:
        that is False.
        """
        datasetType = self._resolve(datasetType)
        dataId = merge_data_id(dataId, rest)
        try:
            found = self._locate(datasetType, dataId, write=write, read=False)
        except NoResults:
            return False
        if isinstance(found.location, ButlerComposite):
            return all(self.datasetExists(info.datasetType, dataId, write=write)
                       for info in found.location.componentInfo.values() if not info.subset)
        return True

    def getUri(self, datasetType: str, dataId: Any = None, write: bool = False, **rest: Any) -> str:
        """Return the absolute path get would read, or with ``write=True`` where put would write."""
        datasetType = self._resolve(datasetType)
        dataId = merge_data_id(dataId, rest)
        if write:
            if not self._outputs:
                raise RepositoryError(f"no output repository to write {datasetType!r} "
                                      f"{describe_data_id(dataId)} to")
            location = self._outputs[0].map(datasetType, dataId, write=True)
            if location is None:
                raise MapperError(f"the mapper of {self._outputs[0].root!r} gives no location "
                                  f"to write {datasetType!r} for {dataId!r}")
        else:
            location = self._locate(datasetType, dataId, write=False, read=False).location
        if isinstance(location, list):
            location = location[0]
        if isinstance(location, ButlerComposite):
            raise MapperError(f"{datasetType!r} {describe_data_id(dataId)} is a composite dataset: it has "
                              f"no single URI")
        return location.getLocationsWithRoot()[0]

    def _assemble(self, composite: ButlerComposite, dataId: DataId) -> Any:
        for info in composite.componentInfo.values():
            if info.subset:
                refs = self.subset(info.datasetType, dataId=dataId)
                info.obj = [ref.get() for ref in refs]
            else:
                info.obj = self.get(info.datasetType, dataId)
        cls = composite.python
        if isinstance(cls, str):
            cls = _python_type(cls)
        if composite.assembler is not None:
            return composite.assembler(dataId, composite.componentInfo, cls)
        obj = cls()
        for name, info in composite.componentInfo.items():
            setter = info.setter or "set" + name[:1].upper() + name[1:]
            if hasattr(obj, setter):
                getattr(obj, setter)(info.obj)
            else:
                setattr(obj, name, info.obj)
        return obj

    # -- writing -------------------------------------------------------------------------

    def put(self, obj: Any, datasetType: str, dataId: Any = None, doBackup: bool = False,
            **rest: Any) -> None:
        """Write a dataset to every output repository.

        Parameters
        ----------
        obj : `object`
            The object to write.
        datasetType : `str`
            The dataset type (aliases allowed).
        dataId : `dict` or `DataId`, optional
            The data ID.
        doBackup : `bool`
            Rename an existing file to ``<name>~N`` before writing.
        **rest
            More data-ID keys.

        Notes
        -----
        Every output is asked for a location before anything is written. An
        output whose mapper has no location for the dataset (None) is skipped,
        as in Gen2; if any mapping fails with an error, nothing is written, and
        the object is checked against each location's format first.

        Raises
        ------
        RepositoryError
            The Butler has no output.
        MapperError
            No output's mapper gives a location to write to, or one fails.
        NoResults
            A mapper cannot complete the data ID from its registry (as in Gen2).
        UnwritableObjectError
            The object is not what a get of the dataset type gives back, nor
            converts to it through a lossless converter (`butler.converters`:
            a `pandas.DataFrame` for a table dataset, say); a lossy one is never used.
        """
        datasetType = self._resolve(datasetType)
        dataId = merge_data_id(dataId, rest)
        if not self._outputs:
            raise RepositoryError(f"cannot put {datasetType!r} {dataId!r}: this Butler has no output "
                                  f"repository")
        planned = [(repo, self._map_for_put(repo, datasetType, dataId)) for repo in self._outputs]
        planned = [(repo, location) for repo, location in planned if location is not None]
        if not planned:
            raise MapperError(f"no output takes {datasetType!r} {describe_data_id(dataId)}: the mappers of "
                              f"{[repo.root for repo in self._outputs]} give no location to write it")
        writes = [(repo, location, _check_put_types(obj, location, datasetType, repo.root))
                  for repo, location in planned]
        for repo, location, form in writes:
            self._put_into(repo, form, datasetType, dataId, doBackup, location)

    @classmethod
    def _map_for_put(cls, repo: Repository, datasetType: str, dataId: DataId) -> Any:
        """Where an output would write a dataset, or None when its mapper has no location for it.

        A mapper that cannot complete the data ID raises (`NoResults`), as in
        Gen2: that is an answer about the data ID, not about this output.

        The components of a composite are mapped too, so that a failure is
        found before anything is written.
        """
        location = repo.map(datasetType, dataId, write=True)  # NoResults (a lookup that fails) propagates, as in Gen2
        if isinstance(location, ButlerComposite):
            for info in location.componentInfo.values():
                if not info.inputOnly and cls._map_for_put(repo, info.datasetType, dataId) is None:
                    raise MapperError(f"the mapper of {repo.root!r} gives no location to write component "
                                      f"{info.datasetType!r} of {datasetType!r} {describe_data_id(dataId)}")
        return location

    def _put_into(self, repo: Repository, obj: Any, datasetType: str, dataId: DataId,
                  doBackup: bool, location: Any = None) -> None:
        if location is None:
            location = repo.map(datasetType, dataId, write=True)
        if location is None:
            raise MapperError(f"the mapper of {repo.root!r} gives no location to write {datasetType!r} "
                              f"for {dataId!r}")
        if isinstance(location, ButlerComposite):
            self._disassemble(repo, obj, location, dataId, doBackup)
            return
        recorder = self._recorder
        for loc in location if isinstance(location, list) else (location,):
            # a backup is kept under one lock with the write
            if recorder is None:
                repo.write(loc, obj, doBackup=doBackup)
                continue
            with recorder.writing(loc.storage or repo.storage, loc, datasetType, dataId):
                repo.write(loc, obj, doBackup=doBackup)

    def _disassemble(self, repo: Repository, obj: Any, composite: ButlerComposite, dataId: DataId,
                     doBackup: bool) -> None:
        if composite.disassembler is not None:
            composite.disassembler(obj, dataId, composite.componentInfo)
        else:
            for name, info in composite.componentInfo.items():
                getter = info.getter or "get" + name[:1].upper() + name[1:]
                info.obj = getattr(obj, getter)() if hasattr(obj, getter) else getattr(obj, name)
        planned = [(info, repo.map(info.datasetType, dataId, write=True))
                   for info in composite.componentInfo.values() if not info.inputOnly]
        forms = [_check_put_types(info.obj, location, info.datasetType, repo.root)  # all checked before any write
                 for info, location in planned]
        for (info, location), form in zip(planned, forms):
            self._put_into(repo, form, info.datasetType, dataId, doBackup, location)

    # -- provenance ------------------------------------------------------------------------

    def _make_recorder(self, recordProvenance: bool | None) -> Any:
        """The recorder of this Butler's reads and writes, or None when recording is off or there is no output."""
        if not self._outputs:  # a read-only Butler: no read of it is ever an input of a record
            return None
        from .provenance.recording import ProvenanceRecorder, recording_enabled

        if not recording_enabled(recordProvenance):
            return None
        tags = {str(tag) for repo in self._all_repositories() for tag in repo.tags}
        recorder = ProvenanceRecorder([repo.root for repo in self._read_order(())],
                                      [repo.root for repo in self._outputs], sorted(tags))
        weakref.finalize(self, recorder.close)  # marks its last records done when the Butler goes
        return recorder

    def quantum(self, label: str, config: Mapping[str, Any] | None = None) -> contextlib.AbstractContextManager[None]:
        """Group the reads and writes of one task (over one data reference) for provenance.

        Files put inside the block record the block's reads as their inputs
        (not everything the Butler read), with ``label`` and ``config``; when
        the block ends its records are finished. Outside any block, a put's
        inputs are everything the Butler has read so far.

        Parameters
        ----------
        label : `str`
            What the task is (``"isr"``, ``"detect"``).
        config : mapping, optional
            The settings the script ran with (plain JSON data); `butler compare`
            names those that differ between two versions.

        Raises
        ------
        UnwritableObjectError
            When ``config`` is not a mapping of JSON data.
        """
        if self._recorder is None:
            return contextlib.nullcontext()
        return self._recorder.quantum(label, config)

    def markInputUnused(self, datasetType: str, dataId: Any = None, **rest: Any) -> None:
        """Drop a dataset read in the current scope from the inputs of what the scope writes next.

        Raises
        ------
        NoResults
            When the current scope (the quantum, else the Butler) read no such dataset.
        """
        if self._recorder is not None:
            self._recorder.markInputUnused(self._resolve(datasetType), merge_data_id(dataId, rest))

    def provenance(self, datasetType: str, dataId: Any = None, depth: int | None = None, **rest: Any) -> Any:
        """Return what produced a dataset: its `butler.provenance.ProvenanceRecord`, inputs followed.

        Parameters
        ----------
        datasetType : `str`
            The dataset type (aliases allowed).
        dataId : `dict` or `DataId`, optional
            The data ID (tags select the version, as for `get`).
        depth : `int`, optional
            How many levels of inputs to follow (default: all, into every
            repository that recorded them).

        Raises
        ------
        NoResults
            When no repository holds the dataset, or its file has no record.
        """
        from .provenance import read_lineage

        datasetType = self._resolve(datasetType)
        dataId = merge_data_id(dataId, rest)
        if self._recorder is not None:
            self._recorder.flush()
        try:
            found = self._locate(datasetType, dataId, write=False, read=False)
        except NoResults:
            if not self._outputs:
                raise
            found = self._locate(datasetType, dataId, write=True, read=False)
        location = found.location[0] if isinstance(found.location, list) else found.location
        if isinstance(location, ButlerComposite):
            raise MapperError(f"{datasetType!r} {describe_data_id(dataId)} is a composite dataset: ask the "
                              f"provenance of its components")
        storage = location.storage or found.repository.storage
        path = split_hdu(location.locationList[0])[0]
        record = read_lineage(storage, path, depth)
        if record is None:
            raise NoResults(f"no provenance record of {path} in {storage.root}", datasetType, dataId,
                            [storage.root])
        return record

    # -- registry queries ------------------------------------------------------------------

    def queryMetadata(self, datasetType: str, format: Any, dataId: Any = None, **rest: Any) -> list:
        """Return the values of the ``format`` keys for every data ID that matches.

        A list of scalars for one key, of tuples for several; ``[]`` when
        nothing matches. The first repository (in search order) whose mapper
        answers with something is used.
        """
        datasetType = self._resolve(datasetType)
        dataId = merge_data_id(dataId, rest)
        keys = sequencify(format)
        rows = None
        for repo in self._read_order(dataId.tag):
            if repo.cfg.mapper is None:
                continue
            rows = repo.mapper.queryMetadata(datasetType, keys, dataId)
            if rows:
                break
        if not rows:
            return []
        if len(keys) == 1:
            return [row[0] if isinstance(row, (tuple, list)) else row for row in rows]
        return [tuple(row) for row in rows]

    def getKeys(self, datasetType: str | None = None, level: str | None = None, tag: Any = None) -> dict | None:
        """Return ``{key: type}`` of a dataset type's data-ID keys at a level.

        Returns None when no repository carrying the tag answers.
        """
        if datasetType is not None:
            datasetType = self._resolve(datasetType)
        for repo in self._read_order(DataId(tag=tag).tag):
            if repo.cfg.mapper is None:
                continue
            keys = repo.mapper.getKeys(datasetType, level)
            if keys is not None:
                return keys
        return None

    def getDatasetTypes(self, tag: Any = None) -> set[str]:
        """Return the dataset types known to the repositories (with ``tag``, to those carrying it)."""
        types: set[str] = set()
        for repo in self._read_order(DataId(tag=tag).tag):
            if repo.cfg.mapper is not None:
                types.update(repo.mapper.getDatasetTypes())
        return types

    def subset(self, datasetType: str, level: str | None = None, dataId: Any = None, **rest: Any) -> Any:
        """Return the `ButlerSubset` of data references matching a partial data ID."""
        from .subset import ButlerSubset

        datasetType = self._resolve(datasetType)
        dataId = merge_data_id(dataId, rest)
        if level is None:
            level = self._default_level(dataId)
        return ButlerSubset(self, datasetType, level, dataId)

    def dataRef(self, datasetType: str, level: str | None = None, dataId: Any = None, **rest: Any) -> Any:
        """Return the one `ButlerDataRef` a data ID selects.

        Raises
        ------
        NoResults
            When the data ID selects no reference or several.
        """
        refs = self.subset(datasetType, level, dataId, **rest)
        if len(refs) != 1:
            raise NoResults(f"dataRef needs exactly one match, found {len(refs)}", datasetType,
                            merge_data_id(dataId, rest), [r.root for r in self._read_order(())])
        return next(iter(refs))

    def _check_keys(self, datasetType: str, dataId: DataId) -> None:
        """Refuse data-ID keys the first mapper in search order does not know, if it checks keys.

        Raises
        ------
        UnknownDataIdKeyError
            A `DataIdValueError` naming the key, the dataset type, the data ID and the repository.
        """
        for repo in self._read_order(dataId.tag):
            if repo.cfg.mapper is not None:
                check = getattr(repo.mapper, "checkDataIdKeys", None)
                if check is not None:
                    check(datasetType, dataId)
                return

    def _default_level(self, dataId: DataId) -> str | None:
        for repo in self._read_order(dataId.tag):
            if repo.cfg.mapper is not None:
                return repo.mapper.getDefaultLevel()
        return None

    def _default_sub_level(self, level: str | None) -> str | None:
        for repo in self._read_order(()):
            if repo.cfg.mapper is not None:
                return repo.mapper.getDefaultSubLevel(level)
        return None


def _converted(read: Callable[[], Any], as_type: Any, datasetType: str, dataId: DataId) -> Any:
    """What ``read`` returns, in the form ``as_type`` names (`butler.converters`)."""
    from .converters import convert

    return convert(read(), as_type, datasetType=datasetType, dataId=dataId)


def _select(item: Any, parameters: Mapping[str, Any], datasetType: str, dataId: DataId, root: str) -> Any:
    """Read parameters applied to an object no formatter read (a bypass's, an assembly's)."""
    from .formatters.parameters import select

    return select(item, parameters, f"datasetType: {datasetType}; dataId: {describe_data_id(dataId)}; "
                                    f"repository: {root}")


#: the base formatter's `refusal`: a format that keeps it takes any object it can write
_REFUSES_NOTHING = Formatter.refusal


def _check_put_types(obj: Any, location: Any, datasetType: str, root: str) -> Any:
    """What to write for ``obj``: itself, or its lossless conversion to what a location's format takes.

    An object the format would not give back on get
    (`butler.formatters.base.Formatter.refusal`) is converted only by a
    lossless converter (`butler.converters`), and refused otherwise, before
    any byte is written; a composite's components are checked apart.

    Raises
    ------
    UnwritableObjectError
        A `TypeError` naming the dataset type, the data ID, the repository, the
        expected types, the type given and the lossy converters that were not used.
    """
    if location is None or isinstance(location, ButlerComposite):
        return obj
    write = obj
    for loc in location if isinstance(location, list) else (location,):
        formatter = get_formatter(loc.storageName)
        if type(formatter).refusal is _REFUSES_NOTHING:  # not asked: the answer is None whatever the object
            continue
        takes = formatter.refusal(write, loc.pythonType)
        if takes is None:
            continue
        lossy: list = []
        accepted = formatter.acceptedTypes(loc.pythonType)
        if accepted is not None and write is obj:
            from .converters import get_converters

            converter, lossy = get_converters().lossless_into(obj, accepted)
            if converter is not None:
                converted = _lossless_form(converter, obj, datasetType, loc, root)
                if formatter.refusal(converted, loc.pythonType) is None:
                    write = converted
                    continue
        given = f"{type(obj).__module__}.{type(obj).__qualname__}"
        python = loc.pythonType if isinstance(loc.pythonType, str) else type_name(loc.pythonType)
        not_used = (f"; put converts only losslessly, and {', '.join(c.describe() for c in lossy)} loses "
                    f"information" if lossy else "")
        raise UnwritableObjectError(
            f"cannot put a {given} as {datasetType!r}: its policy type {python} ({loc.storageName}) takes "
            f"{takes} (what its get returns, or a lossless form), unconverted{not_used}; "
            f"{describe_location(loc, root)}")
    return write


def _lossless_form(converter: Any, obj: Any, datasetType: str, location: Any, root: str) -> Any:
    """``converter(obj)``; a converter refusing this object is an `UnwritableObjectError`."""
    try:
        return converter(obj)
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise UnwritableObjectError(f"cannot put a {type(obj).__qualname__} as {datasetType!r} through "
                                    f"{converter.describe()}: {exc}; {describe_location(location, root)}") from exc


def _unpickle_butler(init_args: tuple, aliases: dict, trustedMappers: tuple = (),
                     recordProvenance: bool | None = None) -> Butler:
    inputs, outputs = init_args
    butler = Butler(inputs=inputs, outputs=outputs, trustedMappers=trustedMappers, recordProvenance=recordProvenance)
    butler.datasetTypeAliasDict.update(aliases)
    return butler


def _absolute(args: RepositoryArgs) -> RepositoryArgs:
    root = args.root if args.root is not None else args.cfgRoot
    if root is None:
        raise RepositoryError(f"repository arguments {args!r} name no root")
    return attrs.evolve(args, root=_absolute_root(root))


def _absolute_root(root: Any) -> str:
    """A local root made absolute (``~`` expanded); a URI (``mem://``, ``s3://``...) kept as it is."""
    root = os.fspath(root)
    if split_uri(root)[0] not in ("", "file"):
        Storage.storageClass(root)  # an unknown scheme is an error, never a local directory
        return root
    return os.path.abspath(os.path.expanduser(split_uri(root)[1]))


def _normalise_arguments(root: Any, mapper: Any, inputs: Any, outputs: Any,
                         mapperArgs: dict) -> tuple[list, list[RepositoryArgs], list[str]]:
    """Turn either form of the Butler arguments into lists of input and output arguments.

    Also returns the mapper names the program itself typed (the ``mapper``
    argument, or a string ``mapper`` of an input or output that is not a
    `RepositoryCfg`, which may have been read from a file): they are trusted.
    """
    new_form = inputs is not None or outputs is not None
    old_form = root is not None or mapper is not None or bool(mapperArgs)
    if new_form and old_form:
        raise RepositoryError("the old Butler form (root, mapper, mapper keywords) and the new form "
                              "(inputs, outputs) cannot be mixed")
    if not new_form:
        if root is None:
            root = getattr(mapper, "root", None) or "."
        # as in Gen2, no mapper keywords means mapperArgs not given
        args = RepositoryArgs(root=root, mapper=mapper, mapperArgs=mapperArgs or None, mode="rw")
        return [], [_absolute(args)], [mapper] if isinstance(mapper, str) else []
    input_args: list[RepositoryArgs | RepositoryCfg] = []
    for item in as_list(inputs):
        if isinstance(item, RepositoryCfg):
            input_args.append(attrs.evolve(item, root=_absolute_root(item.root)))
        else:
            input_args.append(_absolute(as_repository_args(item)))
    output_args = []
    for item in as_list(outputs):
        _refuse_given_parents(item)
        output_args.append(_absolute(as_repository_args(item)))
    given = [*as_list(inputs), *as_list(outputs)]
    named = [args.mapper for item, args in zip(given, [*input_args, *output_args], strict=True)
             if isinstance(args.mapper, str) and not isinstance(item, RepositoryCfg)]
    return input_args, output_args, named


def _refuse_given_parents(output: Any) -> None:
    """An output's parents are the Butler's inputs: parents given on the output itself are refused."""
    parents: Any
    if isinstance(output, RepositoryCfg):
        root, parents = output.root, output.parents
    elif isinstance(output, Mapping):
        root, parents = output.get("root", output.get("cfgRoot")), output.get("parents")
    else:
        return
    if parents:
        raise RepositoryError(f"output repository {root!r} is given with parents {_roots(parents)}; an "
                              f"output's parents are the Butler's inputs: give them as inputs")
