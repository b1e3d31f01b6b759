"""Helpers that Gen2 test code imports: `TestObject`, `EmptyTestMapper`, `MapperForTestWriting`."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from .dataId import check_data_id, check_path
from .location import ButlerLocation
from .mapper import Mapper

__all__ = ["TestObject", "EmptyTestMapper", "MapperForTestWriting"]


class TestObject:
    """A picklable object that holds ``data`` and compares equal by it."""

    __test__ = False  # not a pytest test class

    def __init__(self, data: Any):
        self.data = data

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TestObject) and self.data == other.data

    def __hash__(self) -> int:
        return hash(repr(self.data))

    def __repr__(self) -> str:
        return f"TestObject({self.data!r})"


class EmptyTestMapper(Mapper):
    """A mapper that only records its root and keyword arguments."""

    def __init__(self, root: Any = None, parentRegistry: Any = None, repositoryCfg: Any = None,
                 **kwargs: Any):
        self.root = root
        self.kwargs = kwargs


class MapperForTestWriting(Mapper):
    """A mapper of one dataset type, ``foo``, pickled at ``filename_<k1><v1>_<k2><v2>....txt``.

    Keys are sorted; a read location says whether its file was there when mapped
    (``found``: the Butler does not look again). Every instance maps alike, so a
    search through a chain of them maps once and probes the others
    (`sharedReadPath`).
    """

    def __init__(self, root: str, repository: Any = None, **kwargs: Any):
        if repository is None:  # constructed alone: ask the core for the repository, as CameraMapper does
            from .repository import open_repository_view

            repository = open_repository_view(root)
        self.root = root
        self.repository = repository
        self.storage = repository.storage

    def map_foo(self, dataId: Any, write: bool) -> ButlerLocation:
        """Map ``foo``: a `TestObject` in a pickle file named after the data ID.

        Every value fills the file name, so each must be text or an integer that
        makes a safe name (see `butler.dataId.check_data_id`).
        """
        if dataId is None:
            dataId = {}
        keys = dict.fromkeys(dataId)  # every key: of no known kind, and filling the name
        dataId = check_data_id(dataId, keys, keys, "foo", self.root)
        name = "filename" + "".join([f"_{key}{value}" for key, value in sorted(dataId.items())]) + ".txt"
        check_path(name, "foo", dataId, self.root)
        # complete (the repository hands it on as it is) and, for a read, saying whether the file is there
        return ButlerLocation(TestObject, None, "PickleStorage", name, dataId, self, self.storage,
                              datasetType="foo", repository=self.repository,
                              found=None if write else self.storage.exists(name))

    def sharedReadPath(self, datasetType: str) -> tuple[Hashable, bool] | None:
        """Every instance maps ``foo`` to the same name in its own storage (a pickle: no compressed
        variant); a subclass mapping ``foo`` its own way promises nothing."""
        if datasetType != "foo" or type(self).map_foo is not MapperForTestWriting.map_foo:
            return None
        return (type(self), datasetType), False
