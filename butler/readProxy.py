"""`ReadProxy`: the object ``Butler.get(immediate=False)`` returns.

The proxy reads its subject on first use and then forwards attribute access,
operators, iteration and comparisons to it. The subject is ``__subject__``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

__all__ = ["ReadProxy"]

_UNSET = object()


class ReadProxy:
    """A lazy stand-in for a dataset that is read on first use.

    Parameters
    ----------
    callback : callable
        Returns the object; called once, on first use.
    """

    __slots__ = ("__callback", "__cache")

    def __init__(self, callback: Callable[[], Any]):
        object.__setattr__(self, "_ReadProxy__callback", callback)
        object.__setattr__(self, "_ReadProxy__cache", _UNSET)

    @property
    def __subject__(self) -> Any:
        cache = object.__getattribute__(self, "_ReadProxy__cache")
        if cache is _UNSET:
            cache = object.__getattribute__(self, "_ReadProxy__callback")()
            object.__setattr__(self, "_ReadProxy__cache", cache)
        return cache

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__subject__, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.__subject__, name, value)

    def __delattr__(self, name: str) -> None:
        delattr(self.__subject__, name)

    def __repr__(self) -> str:
        return repr(self.__subject__)

    def __str__(self) -> str:
        return str(self.__subject__)

    def __bool__(self) -> bool:
        return bool(self.__subject__)

    def __hash__(self) -> int:
        return hash(self.__subject__)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__subject__(*args, **kwargs)

    def __reduce__(self) -> tuple:
        return operator.itemgetter(0), ((self.__subject__,),)


def _forward(name: str) -> Callable:
    def method(self: ReadProxy, *args: Any) -> Any:
        return getattr(self.__subject__, name)(*args)

    method.__name__ = name
    return method


for _name in ("__len__", "__iter__", "__contains__", "__getitem__", "__setitem__", "__delitem__",
              "__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__",
              "__add__", "__sub__", "__mul__", "__truediv__", "__floordiv__", "__mod__", "__pow__",
              "__radd__", "__rsub__", "__rmul__", "__rtruediv__", "__neg__", "__pos__", "__abs__",
              "__int__", "__float__", "__index__", "__array__", "__enter__", "__exit__"):
    setattr(ReadProxy, _name, _forward(_name))
del _name
