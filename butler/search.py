"""The search over a Butler's repositories: the first one whose mapper's location answers, in order.

A `Search` is made once per tag set (a read) or for the outputs (a write) and
asked per call; it holds the order and the missing parents the graph computed,
never what any repository holds (nothing about the files is remembered between
calls). For a dataset type whose mappers promise to map alike
(`butler.mapper.Mapper.sharedReadPath`), a call maps in the first repository of a
promise and asks each other one of it only whether the file is there
(`Repository.sharedReadProbe`): a chain of reruns over one camera repository maps once
and checks each rerun with one existence test.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from .errors import MissingParentError, NoResults
from .location import ButlerLocation

if TYPE_CHECKING:
    from .dataId import DataId
    from .graph import MissingParent
    from .repository import Repository

__all__ = ["MISS", "Found", "Search"]

#: what a search callback answers for a repository that does not hold the dataset
MISS = object()
_UNASKED: Any = object()


class Found(NamedTuple):
    """Where a read found its dataset: the repository, the location, and a bypass result
    (a tuple: one is made by every get, existence question and URI)."""

    repository: Repository
    location: Any
    bypass: Callable[[], Any] | None = None


class _Step:
    """One repository of a search (None: one without a mapper, kept for the missing parent reached just
    before it), that parent, and the mapper's promises (`Repository.sharedReadProbe`), asked when the search
    first reaches it (the mapper is built then)."""

    __slots__ = ("position", "repository", "gap", "promises")

    def __init__(self, position: int, repository: Repository | None, gap: MissingParent | None):
        self.position = position
        self.repository = repository
        self.gap = gap
        self.promises: dict[str, tuple[Hashable, Callable[[str], str | None]] | None] = {}


class Search:
    """The repositories one kind of call searches, in order, and the loop that asks them.

    Parameters
    ----------
    repositories : sequence of `Repository`
        The search order (a read's, for a tag set) or the outputs (a write).
    missing : `dict` [`int`, `MissingParent`]
        The recorded parents that do not exist, by the position the search
        reaches them at (after that many repositories; see
        `RepositoryGraph.missing_parents`).
    write : `bool`
        Map for writing (no promise is used).
    unread : sequence of `str`
        Roots of outputs a read never searches (mode ``'w'``), named when it
        finds nothing.
    tagged : `bool`
        The search is restricted by tags (said when nothing is searched).
    """

    def __init__(self, repositories: Sequence[Repository], missing: dict[int, MissingParent], write: bool,
                 unread: Sequence[str] = (), tagged: bool = False):
        self.repositories = list(repositories)
        self._steps = [_Step(position, repo if repo.cfg.mapper is not None else None, missing.get(position))
                       for position, repo in enumerate(self.repositories)
                       if repo.cfg.mapper is not None or position in missing]
        self._end_gap = missing.get(len(self.repositories))
        self._write = write
        self._unread = list(unread)
        self._tagged = tagged

    def run(self, datasetType: str, dataId: DataId, take: Callable[[Repository, Any], Any]) -> Any:
        """The first answer of ``take(repository, location)`` that is not `MISS`, in search order.

        Raises
        ------
        NoResults
            When no repository answers; names every repository searched.
        MissingParentError
            When the search reaches a recorded parent that does not exist.
        """
        write = self._write
        failures: list[str] = []
        # this call's misses, by promise key: the location mapped where the file was not
        missed: dict[Hashable, ButlerLocation] = {}
        for step in self._steps:
            if step.gap is not None:
                self._raise_missing(step.gap, datasetType, dataId, step)
            repo = step.repository
            if repo is None:
                continue
            promise = None
            if not write:
                promise = step.promises.get(datasetType, _UNASKED)
                if promise is _UNASKED:
                    promise = step.promises[datasetType] = repo.sharedReadProbe(datasetType)
                if promise is not None and missed:
                    seen = missed.get(promise[0])
                    if seen is not None:
                        path = promise[1](seen.locationList[0])
                        if path is None:
                            continue
                        answer = take(repo, repo.relocate(seen, path))
                        if answer is not MISS:
                            return answer
                        continue
            try:
                location = repo.map(datasetType, dataId, write)
            except NoResults as exc:
                failures.append(str(exc))
                continue
            if location is None:
                continue
            if (promise is not None and location.__class__ is ButlerLocation and location.found is False
                    and location.storage is repo.storage):
                missed[promise[0]] = location
                continue  # a promise means no bypass: a location seen missing is a miss for every caller
            answer = take(repo, location)
            if answer is not MISS:
                return answer
        if self._end_gap is not None:
            self._raise_missing(self._end_gap, datasetType, dataId, None)
        raise self._no_results(datasetType, dataId, failures)

    def _raise_missing(self, parent: MissingParent, datasetType: str, dataId: DataId, before: _Step | None) -> None:
        """A read reached a recorded parent that does not exist (before the repository of step ``before``,
        or after the last one): searching past it could answer wrongly."""
        end = len(self.repositories) if before is None else before.position
        raise MissingParentError(parent.root, parent.recordedBy, datasetType, dataId,
                                 [repo.root for repo in self.repositories[:end]])

    def _no_results(self, datasetType: str, dataId: DataId, failures: list[str]) -> NoResults:
        searched = [repo.root for repo in self.repositories if repo.cfg.mapper is not None]
        reason = "no dataset found" if not failures else f"no dataset found ({failures[0]})"
        if not searched:
            reason = "no repository to search" + (" carries those tags" if self._tagged else "")
        if self._unread:
            reason += (f"; not searched: output{'s' if len(self._unread) > 1 else ''} {', '.join(self._unread)} "
                       f"(mode 'w': not read; give mode='rw' to read it back)")
        return NoResults(reason, datasetType, dataId, searched)

