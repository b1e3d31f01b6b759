"""`DataId`: a data ID (a mapping of keys to values) that may carry tags; the checks of its values.

`check_data_id` is the one place where data-ID values are checked and
converted to the kind of their key (`int`, `float` or `str`) and where values
that would fill a path are refused when the path would be unsafe or impossible.
Mappers call it before they build a path or query a registry.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import DataIdValueError, UnsafeDataIdValueError, describe_data_id

__all__ = ["DataId", "check_data_id", "check_path", "kind_of_column"]

#: the range of integers SQLite stores (a signed 64-bit INTEGER)
INT_MIN, INT_MAX = -2**63, 2**63 - 1
#: the longest file name (one path component), in bytes, on the POSIX file systems in use
NAME_MAX = 255
#: the longest path, in bytes
PATH_MAX = 4096
#: the text of an integer: optional sign, ASCII digits
_INT_TEXT = re.compile(r"[+-]?[0-9]+")
#: the text of a decimal floating-point number
_FLOAT_TEXT = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
#: what a value filling a path must not hold: a path separator or ``..``
_LEAVES_ROOT = re.compile(r"[/\\]|\.\.")
#: control characters (NUL included), which no file name should hold
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: SQLite declared-type fragments and the kind they give, in SQLite's affinity order
_AFFINITIES = (("INT", int), ("CHAR", str), ("CLOB", str), ("TEXT", str), ("REAL", float), ("FLOA", float),
               ("DOUB", float))


def _as_tag_set(tag: Any) -> set:
    if tag is None:
        return set()
    if isinstance(tag, str):
        return {tag}
    if isinstance(tag, (list, tuple, set, frozenset)):
        return set(tag)
    return {tag}


class DataId(dict):
    """A data ID: a mutable mapping of data-ID keys to values, plus a set of tags.

    A tagged data ID restricts a read to the input repositories carrying one of
    its tags (and their parents). It is a `dict` (every lookup of a map is the
    dict's own); two data IDs are equal when their keys and values are, tags
    aside, as in Gen2.

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

    __slots__ = ("tag",)

    def __init__(self, initialdata: Any = None, tag: Any = None, **kwargs: Any):
        super().__init__()
        self.tag: set = set()
        if initialdata is not None:
            self.update(initialdata)
            if isinstance(initialdata, DataId):
                self.tag.update(initialdata.tag)
        if kwargs:
            self.update(kwargs)
        if tag is not None:
            self.tag.update(_as_tag_set(tag))

    def __repr__(self) -> str:
        if self.tag:
            return f"DataId({dict(self)!r}, tag={self.tag!r})"
        return f"DataId({dict(self)!r})"

    def copy(self) -> DataId:
        """Return a copy with the same data and tags."""
        return DataId(self)

    @property
    def data(self) -> dict:
        """The keys and values (as ``UserDict.data`` had them): the data ID itself, a dict."""
        return self

    def __reduce__(self) -> tuple[type[DataId], tuple[dict, set]]:
        return DataId, (dict(self), set(self.tag))

    def __setstate__(self, state: tuple[dict, set]) -> None:
        """Read a data ID pickled by an earlier version (a mapping over an inner dict: ``(data, tags)``)."""
        data, tags = state
        self.clear()
        self.update(data)
        self.tag = set(tags)


def merge_data_id(dataId: Any = None, rest: Iterable | None = None) -> DataId:
    """Return a new `DataId` from a dict or `DataId` plus extra keyword items.

    The input is never modified.
    """
    result = DataId(dataId)
    if rest:
        result.update(rest)
    return result


def kind_of_column(declaredType: str | None) -> type | None:
    """Return the kind (`int`, `float`, `str`) of an SQLite column from its declared type.

    SQLite's affinity rules: a type containing ``INT`` is an integer; ``CHAR``,
    ``CLOB`` or ``TEXT`` text; ``REAL``, ``FLOA`` or ``DOUB`` a float; anything
    else (``NUMERIC``, ``BLOB``, no type) gives None: no kind is enforced.
    """
    upper = (declaredType or "").upper()
    return next((kind for fragment, kind in _AFFINITIES if fragment in upper), None)


class _Refused(Exception):
    """Why a value is refused (internal: `check_data_id` turns it into a package error)."""

    def __init__(self, reason: str, unsafe: bool = False):
        super().__init__(reason)
        self.unsafe = unsafe


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _Refused("a boolean is not an integer")
    if isinstance(value, numbers.Integral):
        result = int(value)
    elif isinstance(value, numbers.Real):
        number = float(value)
        if not math.isfinite(number) or not number.is_integer():
            raise _Refused("not a whole number: converting it to an integer would lose its value")
        result = int(number)
    elif isinstance(value, str):
        if not _INT_TEXT.fullmatch(value):
            raise _Refused("text that is not an integer")
        result = int(value)
    else:
        raise _Refused(f"{type(value).__name__} is not an integer")
    if not INT_MIN <= result <= INT_MAX:
        raise _Refused("an integer out of the 64-bit range a registry stores")
    return result


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _Refused("a boolean is not a number")
    if isinstance(value, str):
        if not _FLOAT_TEXT.fullmatch(value):
            raise _Refused("text that is not a number")
        result = float(value)
    elif isinstance(value, numbers.Real):
        result = float(value)
        if isinstance(value, numbers.Integral) and math.isfinite(result) and int(result) != int(value):
            raise _Refused("an integer that a float cannot hold exactly")
    else:
        raise _Refused(f"{type(value).__name__} is not a number")
    if not math.isfinite(result):
        raise _Refused("not a finite number")
    return result


def _to_str(value: Any) -> str:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return str(_to_int(value))
    raise _Refused(f"{type(value).__name__} is not text")


def _to_scalar(value: Any) -> Any:
    """A value of a key of no known kind that fills a path: text or an integer."""
    if isinstance(value, str):
        return str(value)
    if not isinstance(value, numbers.Real):
        raise _Refused(f"{type(value).__name__} is neither text nor a number")
    return _to_int(value)


_CONVERTERS = {int: _to_int, float: _to_float, str: _to_str, None: _to_scalar}
#: the kind of a key `check_data_id` was not told about
_UNKNOWN = object()


def _convert(value: Any, kind: Any, inPath: bool) -> Any:
    """The value converted to ``kind`` and checked; a key not known keeps its value unless it is
    an integer out of range or text that cannot be encoded (what a registry cannot bind)."""
    if kind is not _UNKNOWN and (kind is not None or inPath) and (type(value) is not kind or kind is float):
        value = _CONVERTERS[kind](value)
    elif type(value) is int and not INT_MIN <= value <= INT_MAX:
        raise _Refused("an integer out of the 64-bit range a registry stores")
    if type(value) is str:
        if not value.isascii():
            _check_text(value)
        if inPath:
            _check_in_path(value)
    return value


def _check_text(value: str) -> None:
    """Refuse text that a registry or a file system cannot take."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _Refused("text that cannot be encoded as UTF-8", unsafe=True) from None


def _check_in_path(value: str) -> None:
    """Refuse text that would make an unsafe or impossible path component."""
    if value == "":
        raise _Refused("an empty value makes an ambiguous path", unsafe=True)
    if _LEAVES_ROOT.search(value):
        raise _Refused("a path separator or '..' could make the path leave the repository root", unsafe=True)
    if _CONTROL.search(value):
        raise _Refused("a control character (NUL, newline, ...) in a file name", unsafe=True)
    if len(value) > NAME_MAX // 4 and len(value.encode("utf-8")) > NAME_MAX:
        raise _Refused(f"longer than the file-name limit ({NAME_MAX} bytes)", unsafe=True)


def _refusal(refused: _Refused, key: Any, value: Any, datasetType: str | None, dataId: Any,
             repository: Any) -> DataIdValueError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    cls = UnsafeDataIdValueError if refused.unsafe else DataIdValueError
    return cls(f"bad value {shown} for data-ID key {key!r}: {refused}; datasetType: {datasetType}; "
               f"dataId: {describe_data_id(dataId)}; repository: {repository}")


def check_data_id(dataId: Any, kinds: Mapping[str, type | None], pathKeys: Iterable[str] = (),
                  datasetType: str | None = None, repository: Any = None) -> Any:
    """Return a data ID with its values converted to the kind of their keys; refuse bad values.

    Conversions must be exact: ``"12"``, ``12.0`` and ``numpy.int64(12)`` are
    the integer 12, but ``1.9``, ``True``, ``nan``, ``None``, bytes, containers
    and text that is not the number are refused. Any text must be encodable,
    any integer must fit a registry's 64-bit INTEGER. The values of
    ``pathKeys`` must also make a safe path component (no separator, ``..``,
    control character, empty text or name over the length limit).

    Parameters
    ----------
    dataId : mapping or `None`
        The data ID (a `DataId` keeps its tags; it is never modified).
    kinds : mapping of `str` to `type` or `None`
        The kind of each known key: `int`, `float`, `str`, or `None` for a key of
        no known kind (its value, if it fills a path, must be text or an integer).
        Values of keys not listed are kept as given.
    pathKeys : iterable of `str`
        The keys whose values fill a path.
    datasetType, repository
        For the messages.

    Returns
    -------
    dataId : mapping
        ``dataId`` itself when nothing changed, else a converted copy of the same type.

    Raises
    ------
    butler.errors.DataIdValueError
        A `ValueError`: a value of the wrong kind or a lossy conversion.
    butler.errors.UnsafeDataIdValueError
        A `DataIdValueError` and `UnsafePathError`: a value that would make an
        unsafe or impossible path, or text that cannot be encoded.
    """
    if not dataId:
        return dataId
    pathKeys = pathKeys if isinstance(pathKeys, (dict, set, frozenset)) else frozenset(pathKeys)
    converted: dict | None = None
    for key, value in dataId.items():
        kind = kinds.get(key, _UNKNOWN)
        inPath = key in pathKeys
        # the common case, told from cheap tests inline (this runs for every value of every map):
        # an `int` in range for an integer key or one of no or unknown kind; plain ASCII text
        # for a text key or one of no or unknown kind that, where it fills a path, holds no
        # separator, ``..`` or control character and is a non-empty name within the length
        # limit (for ASCII text, `str.isprintable` is False exactly for the control characters).
        # Anything else goes through `_convert`, which converts it or says why it is refused.
        valueType = type(value)
        if valueType is int:
            if (kind is int or kind is None or kind is _UNKNOWN) and INT_MIN <= value <= INT_MAX:
                continue
        elif (valueType is str and (kind is str or kind is None or kind is _UNKNOWN) and value.isascii()
              and (not inPath or (0 < len(value) <= NAME_MAX and value.isprintable() and "/" not in value
                                  and "\\" not in value and ".." not in value))):
            continue
        try:
            new = _convert(value, kind, inPath)
        except _Refused as refused:
            raise _refusal(refused, key, value, datasetType, dataId, repository) from None
        if new is not value:
            if converted is None:
                converted = {}
            converted[key] = new
    if converted is None:
        return dataId
    result = dataId.copy() if isinstance(dataId, DataId) else dict(dataId)
    result.update(converted)
    return result


def check_path(path: str, datasetType: str | None = None, dataId: Any = None, repository: Any = None) -> None:
    """Refuse a filled-in relative path whose components or whole are over the file system's limits.

    Raises
    ------
    butler.errors.UnsafeDataIdValueError
        Naming the path, the dataset type, the data ID and the repository.
    """
    if len(path) <= NAME_MAX and path.isascii():  # no component, nor the whole, can be over the limits
        return
    encoded = path.encode("utf-8", "surrogateescape")
    longest = max((len(part) for part in encoded.split(b"/")), default=0)
    if longest > NAME_MAX or len(encoded) > PATH_MAX:
        shown = path if len(path) <= 80 else path[:77] + "..."
        raise UnsafeDataIdValueError(
            f"the data ID makes a path over the file-name limits ({NAME_MAX} bytes a name, {PATH_MAX} a "
            f"path): {shown!r}; datasetType: {datasetType}; dataId: {describe_data_id(dataId)}; "
            f"repository: {repository}")
