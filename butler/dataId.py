"""`DataId`: a data ID (a mapping of keys to values) that may carry tags."""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any, Iterator

__all__ = ["DataId"]


def _as_tag_set(tag: Any) -> set:
    if tag is None:
        return set()
    if isinstance(tag, str):
        return {tag}
    if isinstance(tag, (list, tuple, set, frozenset)):
        return set(tag)
    return {tag}


class DataId(MutableMapping):
    """A data ID: a mutable mapping of data-ID keys to values, plus a set of tags.

    A tagged data ID restricts a read to the input repositories carrying one of
    its tags (and their parents).

    Parameters
    ----------
    initialdata : mapping or `DataId`, optional
        Initial keys and values; a `DataId` also gives its tags.
    tag : `str`, container or object, optional
        Tags to add: a string is one tag, a list/tuple/set gives its elements,
        any other object is one tag.
    **kwargs
        More keys and values.
    """

    __slots__ = ("_data", "tag")

    def __init__(self, initialdata: Any = None, tag: Any = None, **kwargs: Any):
        self._data: dict = {}
        self.tag: set = set()
        if initialdata is not None:
            self._data.update(initialdata)
            if isinstance(initialdata, DataId):
                self.tag.update(initialdata.tag)
        self._data.update(kwargs)
        self.tag.update(_as_tag_set(tag))

    def __getitem__(self, key: Any) -> Any:
        return self._data[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: Any) -> None:
        del self._data[key]

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DataId):
            return self._data == other._data
        if isinstance(other, dict):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if self.tag:
            return f"DataId({self._data!r}, tag={self.tag!r})"
        return f"DataId({self._data!r})"

    def copy(self) -> "DataId":
        """Return a copy with the same data and tags."""
        return DataId(self)

    @property
    def data(self) -> dict:
        """The underlying dict of keys and values (as ``UserDict.data`` had it)."""
        return self._data

    def __getstate__(self) -> tuple[dict, set]:
        return self._data, self.tag

    def __setstate__(self, state: tuple[dict, set]) -> None:
        self._data, self.tag = state


def merge_data_id(dataId: Any = None, rest: Iterable | None = None) -> DataId:
    """Return a new `DataId` from a dict or `DataId` plus extra keyword items.

    The input is never modified.
    """
    result = DataId(dataId)
    if rest:
        result.update(rest)
    return result
