"""Compare two datasets, or every dataset of one type in two tagged versions.

`compare_objects` compares two objects of any kind the butler reads and returns
the list of their `Difference` records (empty when they are equal within
tolerance):

- images (``CCDData``/``NDData``, FITS HDUs and HDU lists, numpy arrays):
  shapes, then how many pixels differ, the largest ``|b - a|`` and the RMS of
  ``b - a``; mask, uncertainty and unit of ``NDData``; header keywords added,
  removed or changed;
- FITS headers: keywords added, removed or changed, with both values;
- astropy tables: columns added or removed, row counts, per column the values
  that differ (and in which rows), units and table metadata;
- mappings, sequences and scalars (YAML-like data): deep equality, each
  difference named by its path (``a.b[2]``).

Numbers are equal when ``|b - a| <= atol + rtol * |a|``; the default tolerance
is exact. NaNs in the same places count as equal.

`compare_versions` enumerates the data IDs of a dataset type in two tagged
inputs of one Butler and compares each pair into a `ComparisonReport`, which
renders as a text table or as JSON. With ``explain=True`` it also says why
each differing pair differs, from the provenance records of the two files
(`Explanation`: the recorded inputs whose digests or files differ, and the
run settings, a quantum's ``config``, that differ).

numpy and astropy are imported only when an object needs them: an object of
theirs can only exist once they are loaded, so the dispatch looks at
``sys.modules`` first.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
import numbers
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs

from .utils import text_table

__all__ = [
    "Difference",
    "ValueStats",
    "DatasetComparison",
    "ComparisonReport",
    "Explanation",
    "InputDifference",
    "compare_objects",
    "compare_versions",
    "explain_difference",
    "format_data_id",
    "text_table",
]

_log = logging.getLogger(__name__)

#: kinds of `Difference`
KINDS = ("changed", "added", "removed", "type", "shape", "length", "values")

#: how many differing rows or pixel positions a `ValueStats` names
MAX_POSITIONS = 10

#: how many characters of a value the text table shows
MAX_VALUE_WIDTH = 40


def _plain(value: Any) -> Any:
    """Return ``value`` as plain Python data (numpy scalars and arrays converted)."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return value.tolist()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def _jsonable(value: Any) -> Any:
    """Return plain data that `json.dumps` accepts strictly (non-finite floats become strings)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= MAX_VALUE_WIDTH else text[: MAX_VALUE_WIDTH - 3] + "..."


def _fmt_number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.6g}"


def _as_tuple(values: Iterable[Any]) -> tuple:
    """A value object's sequence field, frozen as a tuple."""
    return tuple(values)


@attrs.frozen
class ValueStats:
    """How the elements of two same-shaped arrays differ.

    Attributes
    ----------
    count : `int`
        Number of elements that differ beyond tolerance (NaN against a number included).
    total : `int`
        Number of elements compared.
    unit : `str`
        What the elements are: ``pixels``, ``rows`` or ``values``.
    maxAbsDiff : `float` or None
        Largest ``|b - a|`` over the finite differing elements (None when not numeric).
    rms : `float` or None
        Root mean square of ``b - a`` over all elements where both are finite.
    positions : `tuple`
        The first differing positions: row numbers for a table column,
        index tuples for an image.
    """

    count: int
    total: int
    unit: str = "values"
    maxAbsDiff: float | None = None
    rms: float | None = None
    positions: tuple = attrs.field(default=(), converter=_as_tuple)

    def describe(self) -> str:
        """Return a one-line summary."""
        text = f"{self.count} of {self.total} {self.unit} differ"
        if self.maxAbsDiff is not None:
            text += f"; max |diff| {_fmt_number(self.maxAbsDiff)}; rms {_fmt_number(self.rms)}"
        if self.positions:
            shown = ", ".join(str(p) for p in self.positions)
            more = ", ..." if self.count > len(self.positions) else ""
            text += f"; {'rows' if self.unit == 'rows' else 'at'} {shown}{more}"
        return text

    def to_dict(self) -> dict:
        """Return the statistics as plain data."""
        return {"count": self.count, "total": self.total, "unit": self.unit,
                "maxAbsDiff": self.maxAbsDiff,
                "rms": self.rms, "positions": _plain(list(self.positions))}


@attrs.frozen
class Difference:
    """One way in which two objects differ.

    Attributes
    ----------
    where : `str`
        Path of what differs: ``data``, ``header.EXPTIME``, ``column flux``,
        ``meta.filters[2]``; empty for the objects themselves.
    kind : `str`
        One of ``changed`` (a scalar value), ``added`` (only in B), ``removed``
        (only in A), ``type``, ``shape``, ``length`` (sequence length or table
        rows) and ``values`` (elements of arrays, with `stats`).
    a, b
        The values in A and in B, as plain data (type names, shapes or lengths
        for the kinds that describe those).
    stats : `ValueStats` or None
        Element statistics for kind ``values``.
    """

    where: str
    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    a: Any = attrs.field(default=None, converter=_plain)
    b: Any = attrs.field(default=None, converter=_plain)
    stats: ValueStats | None = None

    def describe(self, labelA: str = "A", labelB: str = "B") -> str:
        """Return a one-line description of the difference, naming the versions ``labelA`` and ``labelB``."""
        if self.kind == "changed":
            return f"changed: {_short(self.a)} -> {_short(self.b)}"
        if self.kind == "added":
            return f"only in {labelB}: {_short(self.b)}"
        if self.kind == "removed":
            return f"only in {labelA}: {_short(self.a)}"
        if self.kind == "values":
            return self.stats.describe() if self.stats else "values differ"
        prefix = "" if self.kind == "length" else f"{self.kind} "
        return f"{prefix}{self.a} in {labelA}, {self.b} in {labelB}"

    def to_dict(self) -> dict:
        """Return the difference as plain data."""
        result = {"where": self.where, "kind": self.kind, "a": self.a, "b": self.b}
        if self.stats is not None:
            result["stats"] = self.stats.to_dict()
        return result


def format_data_id(dataId: Mapping) -> str:
    """Render a data ID as ``key=value`` words, in its own key order."""
    return " ".join(f"{k}={v}" for k, v in dataId.items()) or "{}"


# -- object comparison -----------------------------------------------------------------------


def _loaded(module: str) -> Any:
    return sys.modules.get(module)


def _category(obj: Any) -> str:
    """Return the comparison category of an object."""
    if _loaded("astropy.nddata") is not None:
        from astropy.nddata import NDData

        if isinstance(obj, NDData):
            return "nddata"
    if _loaded("astropy.io.fits") is not None:
        from astropy.io import fits

        if isinstance(obj, fits.HDUList):
            return "hdulist"
        if isinstance(obj, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU, fits.BinTableHDU,
                            fits.TableHDU)):
            return "hdu"
        if isinstance(obj, fits.Header):
            return "header"
    if _loaded("astropy.table") is not None:
        from astropy.table import Table

        if isinstance(obj, Table):
            return "table"
    if _loaded("numpy") is not None:
        import numpy as np

        if isinstance(obj, np.ndarray):
            return "table" if obj.dtype.names else "array"
    if isinstance(obj, Mapping):
        return "mapping"
    if isinstance(obj, Sequence) and not isinstance(obj, (str, bytes)):
        return "sequence"
    if isinstance(obj, numbers.Number) and not isinstance(obj, bool):
        return "number"
    return "other"


def _join(where: str, name: Any) -> str:
    if isinstance(name, int):
        return f"{where}[{name}]"
    return f"{where}.{name}" if where else str(name)


@attrs.frozen
class _Comparer:
    """Compares two objects with one tolerance; each ``_<category>`` method yields differences."""

    rtol: float = 0.0
    atol: float = 0.0
    ignoreKeys: tuple[str, ...] = ()
    pixelsOnly: bool = False

    def _kept(self, values: Mapping) -> dict:
        """``values`` without the keys matching an `ignoreKeys` glob pattern (case-insensitive)."""
        patterns = [p.upper() for p in self.ignoreKeys]
        return {k: v for k, v in values.items()
                if not any(fnmatch.fnmatchcase(str(k).upper(), p) for p in patterns)}

    def compare(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        kind_a, kind_b = _category(a), _category(b)
        if kind_a != kind_b:
            if {kind_a, kind_b} <= {"number", "other"}:
                yield Difference(where, "changed", a, b)
            else:
                yield Difference(where, "type", type(a).__name__, type(b).__name__)
            return
        yield from getattr(self, "_" + kind_a)(where, a, b)

    # scalars

    def _close(self, a: float, b: float) -> bool:
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        if a == b:
            return True
        return abs(b - a) <= self.atol + self.rtol * abs(a)

    def _number(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        try:
            equal = self._close(float(a), float(b))
        except (TypeError, ValueError, OverflowError):
            equal = a == b
        if not equal:
            yield Difference(where, "changed", a, b)

    def _other(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        try:
            equal = bool(a == b)
        except (TypeError, ValueError):
            equal = repr(a) == repr(b)
        if not equal:
            yield Difference(where, "changed", a, b)

    # containers

    def _mapping(self, where: str, a: Mapping, b: Mapping) -> Iterator[Difference]:
        for key in sorted(set(a) | set(b), key=str):
            path = _join(where, str(key))
            if key not in b:
                yield Difference(path, "removed", a=a[key])
            elif key not in a:
                yield Difference(path, "added", b=b[key])
            else:
                yield from self.compare(path, a[key], b[key])

    def _sequence(self, where: str, a: Sequence, b: Sequence) -> Iterator[Difference]:
        if len(a) != len(b):
            yield Difference(where or "length", "length", len(a), len(b))
        for i, (item_a, item_b) in enumerate(zip(a, b)):
            yield from self.compare(_join(where, i), item_a, item_b)

    # arrays and images

    def _value_stats(self, a: Any, b: Any, rows: bool) -> ValueStats | None:
        """Return element statistics of two same-shaped arrays, None when they agree."""
        import numpy as np

        numeric = a.dtype.kind in "biuf" and b.dtype.kind in "biuf"
        if not numeric:
            differ = np.asarray(a != b, dtype=bool).reshape(np.shape(a))
        elif a.dtype.kind in "biu" and b.dtype.kind in "biu" and not (self.rtol or self.atol):
            differ = np.asarray(a != b)
        else:
            fa, fb = a.astype(np.float64), b.astype(np.float64)
            differ = ~np.isclose(fb, fa, rtol=self.rtol, atol=self.atol, equal_nan=True)
        count = int(np.count_nonzero(differ))
        if count == 0:
            return None
        if rows:
            unit = "rows"
            differing_rows = np.flatnonzero(differ.reshape(len(differ), -1).any(axis=1))
            count = len(differing_rows)
            positions: list = [int(p) for p in differing_rows[:MAX_POSITIONS]]
            total = len(differ)
        else:
            unit = "pixels" if differ.ndim >= 2 else "values"
            positions = [tuple(int(i) for i in p) for p in np.argwhere(differ)[:MAX_POSITIONS]]
            total = int(differ.size)
        max_abs = rms = None
        if numeric:
            delta = b.astype(np.float64) - a.astype(np.float64)
            finite = np.isfinite(delta)
            changed = delta[differ & finite]
            max_abs = float(np.max(np.abs(changed))) if changed.size else None
            rms = float(np.sqrt(np.mean(delta[finite] ** 2))) if finite.any() else None
        return ValueStats(count, total, unit, max_abs, rms, positions)

    def _array(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        import numpy as np

        a, b = np.asanyarray(a), np.asanyarray(b)
        if a.shape != b.shape:
            yield Difference(where or "shape", "shape", list(a.shape), list(b.shape))
            return
        stats = self._value_stats(a, b, rows=False)
        if stats is not None:
            yield Difference(where or "data", "values", stats=stats)

    def _optional_array(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        if a is None and b is None:
            return
        if a is None or b is None:
            yield Difference(where, "added" if a is None else "removed",
                             None if a is None else "present", None if b is None else "present")
            return
        yield from self._array(where, a, b)

    def _header_values(self, header: Any) -> dict:
        """Return a header as {keyword: value}; repeated keywords (COMMENT, HISTORY) give lists."""
        values: dict = {}
        repeated: set = set()
        for card in header.cards:
            key = card.keyword
            if key in values:
                if key not in repeated:
                    values[key] = [values[key]]
                    repeated.add(key)
                values[key].append(card.value)
            else:
                values[key] = card.value
        return self._kept({k: (str(v) if type(v).__name__ == "Undefined" else v) for k, v in values.items()})

    def _header(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        if self.pixelsOnly:
            return
        yield from self._mapping(where, self._header_values(a), self._header_values(b))

    def _meta(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        """Compare ``meta`` of NDData or tables: headers or plain mappings."""
        from astropy.io import fits

        def as_mapping(meta: Any) -> Mapping:
            if isinstance(meta, fits.Header):
                return self._header_values(meta)
            return self._kept(dict(meta or {}))

        if self.pixelsOnly:
            return
        yield from self._mapping(where, as_mapping(a), as_mapping(b))

    def _nddata(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        yield from self._array(_join(where, "data"), a.data, b.data)
        yield from self._optional_array(_join(where, "mask"), a.mask, b.mask)
        yield from self._optional_array(
            _join(where, "uncertainty"),
            None if a.uncertainty is None else a.uncertainty.array,
            None if b.uncertainty is None else b.uncertainty.array)
        if a.unit != b.unit:
            yield Difference(_join(where, "unit"), "changed", str(a.unit), str(b.unit))
        yield from self._meta(_join(where, "header"), a.meta, b.meta)
        if (a.wcs is None) != (b.wcs is None):
            yield Difference(_join(where, "wcs"), "added" if a.wcs is None else "removed",
                             None if a.wcs is None else "present", None if b.wcs is None else "present")
        elif a.wcs is not None:
            yield from self._header(_join(where, "wcs"), a.wcs.to_header(), b.wcs.to_header())

    def _hdu(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        yield from self._header(_join(where, "header"), a.header, b.header)
        if (a.data is None) != (b.data is None):
            yield Difference(_join(where, "data"), "added" if a.data is None else "removed")
        elif a.data is not None:
            yield from self.compare(_join(where, "data"), a.data, b.data)

    def _hdulist(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        if len(a) != len(b):
            yield Difference(_join(where, "hdus"), "length", len(a), len(b))
        for i, (hdu_a, hdu_b) in enumerate(zip(a, b)):
            yield from self.compare(_join(where, f"hdu{i}"), hdu_a, hdu_b)

    # tables

    def _table(self, where: str, a: Any, b: Any) -> Iterator[Difference]:
        import numpy as np
        from astropy.table import Table

        a, b = Table(a, copy=False), Table(b, copy=False)
        names_b = set(b.colnames)
        for name in a.colnames:
            if name not in names_b:
                yield Difference(_join(where, f"column {name}"), "removed", a=str(a[name].dtype))
        for name in b.colnames:
            if name not in a.colnames:
                yield Difference(_join(where, f"column {name}"), "added", b=str(b[name].dtype))
        if len(a) != len(b):
            yield Difference(_join(where, "rows"), "length", len(a), len(b))
        for name in (n for n in a.colnames if n in names_b):
            path = _join(where, f"column {name}")
            col_a, col_b = a[name], b[name]
            if (col_a.dtype.kind in "biuf") != (col_b.dtype.kind in "biuf"):
                yield Difference(path, "type", str(col_a.dtype), str(col_b.dtype))
                continue
            if col_a.unit != col_b.unit:
                yield Difference(path + ".unit", "changed", str(col_a.unit), str(col_b.unit))
            if len(a) != len(b):
                continue
            values_a, values_b = np.asarray(col_a), np.asarray(col_b)
            if values_a.shape != values_b.shape:
                yield Difference(path, "shape", list(values_a.shape), list(values_b.shape))
                continue
            stats = self._value_stats(values_a, values_b, rows=True)
            if stats is not None:
                yield Difference(path, "values", stats=stats)
        yield from self._meta(_join(where, "meta"), a.meta, b.meta)


def compare_objects(a: Any, b: Any, *, rtol: float = 0.0, atol: float = 0.0, ignoreKeys: Sequence[str] = (),
                    pixelsOnly: bool = False) -> list[Difference]:
    """Compare two objects and return how they differ.

    Parameters
    ----------
    a, b
        The objects: images, headers, tables, arrays, mappings, sequences or scalars.
    rtol, atol : `float`
        Relative and absolute tolerance for numbers: equal when
        ``|b - a| <= atol + rtol * |a|``. NaNs in the same places are equal.
    ignoreKeys : sequence of `str`, optional
        Header (and metadata) keywords not compared: glob patterns such as
        ``DATE*``, matched without regard to case.
    pixelsOnly : `bool`, optional
        Compare only values (pixels, masks, table columns), not headers or metadata.

    Returns
    -------
    differences : `list` of `Difference`
        Empty when the objects are equal within tolerance.
    """
    if rtol < 0 or atol < 0:
        raise ValueError(f"tolerances must not be negative (rtol={rtol}, atol={atol})")
    return list(_Comparer(rtol=rtol, atol=atol, ignoreKeys=tuple(ignoreKeys), pixelsOnly=pixelsOnly
                          ).compare("", a, b))


# -- why: provenance ---------------------------------------------------------------------------


@attrs.frozen
class InputDifference:
    """A recorded input that differs between two versions of a dataset.

    Attributes
    ----------
    datasetType : `str`
    dataId : `dict`
    kind : `str`
        ``digest`` (both recorded, other bytes), ``file`` (another file, or the
        same file changed: path, size or mtime), ``removed`` (an input of A
        only) or ``added`` (of B only).
    a, b : `str` or None
        The input in each version: where it was read, and its digest or size.
    """

    datasetType: str
    dataId: dict = attrs.field(converter=dict)
    kind: str = "digest"
    a: str | None = None
    b: str | None = None

    def describe(self, labelA: str = "A", labelB: str = "B") -> str:
        """One line."""
        what = f"input {self.datasetType} {format_data_id(self.dataId)}"
        if self.kind == "removed":
            return f"{what}: only in {labelA} ({self.a})"
        if self.kind == "added":
            return f"{what}: only in {labelB} ({self.b})"
        return f"{what}: {self.kind} differs: {self.a} in {labelA}, {self.b} in {labelB}"

    def to_dict(self) -> dict:
        """Plain data."""
        return {"datasetType": self.datasetType, "dataId": _plain(self.dataId), "kind": self.kind,
                "a": self.a, "b": self.b}


@attrs.frozen
class Explanation:
    """Why one data ID's datasets differ between two versions, from their provenance records.

    Attributes
    ----------
    dataId : `dict`
    inputs : `tuple` of `InputDifference`
        The recorded inputs that differ.
    settings : `tuple` of `Difference`
        The run settings (quantum ``config``) that differ, each named by its key path.
    missing : `str`
        What could not be explained (a version without a provenance record); empty otherwise.
    """

    dataId: dict = attrs.field(converter=dict)
    inputs: tuple = attrs.field(default=(), converter=_as_tuple)
    settings: tuple = attrs.field(default=(), converter=_as_tuple)
    missing: str = ""

    def lines(self, labelA: str, labelB: str) -> list[str]:
        """The explanation as text lines, the data ID first."""
        lines = [f"{format_data_id(self.dataId)}:"]
        if self.missing:
            lines.append(f"  {self.missing}")
        lines += [f"  setting {d.where or '(config)'}: {d.describe(labelA, labelB)}" for d in self.settings]
        lines += [f"  {d.describe(labelA, labelB)}" for d in self.inputs]
        if len(lines) == 1:
            lines.append("  same recorded inputs and settings (the code, or something unrecorded, differs)")
        return lines

    def to_dict(self) -> dict:
        """Plain data."""
        return {"dataId": _plain(self.dataId), "inputs": [d.to_dict() for d in self.inputs],
                "settings": [d.to_dict() for d in self.settings], "missing": self.missing}


def _input_key(item: Any) -> tuple:
    return item.datasetType, json.dumps(_plain(item.dataId), sort_keys=True)


def _input_text(item: Any) -> str:
    identity = f"sha256 {item.sha256[:16]}" if item.sha256 else f"{item.size} B, mtime {item.mtime}"
    return f"{item.repository}/{item.path}, {identity}"


def _compare_inputs(inputsA: Sequence[Any], inputsB: Sequence[Any]) -> list[InputDifference]:
    """The inputs of two records that differ, matched by dataset type and data ID."""
    byA = {_input_key(item): item for item in inputsA}
    byB = {_input_key(item): item for item in inputsB}
    found = []
    for key in sorted(set(byA) | set(byB)):
        a: Any = byA.get(key)
        b: Any = byB.get(key)
        if a is None:
            found.append(InputDifference(b.datasetType, b.dataId, "added", None, _input_text(b)))
        elif b is None:
            found.append(InputDifference(a.datasetType, a.dataId, "removed", _input_text(a), None))
        elif a.sha256 and b.sha256:
            if a.sha256 != b.sha256:
                found.append(InputDifference(a.datasetType, a.dataId, "digest", _input_text(a), _input_text(b)))
        elif (a.repository, a.path, a.size, a.mtime) != (b.repository, b.path, b.size, b.mtime):
            found.append(InputDifference(a.datasetType, a.dataId, "file", _input_text(a), _input_text(b)))
    return found


def explain_difference(butler: Any, datasetType: str, dataId: Mapping, tagA: str, tagB: str) -> Explanation:
    """Why a dataset differs between two tagged versions: its recorded inputs and settings, compared.

    Only the direct inputs are compared (an input that differs is where to look next).
    """
    from .dataId import DataId
    from .errors import NoResults

    records = []
    for tag in (tagA, tagB):
        try:
            records.append(butler.provenance(datasetType, DataId(dataId, tag=tag), depth=1))
        except NoResults:
            records.append(None)
    recordA, recordB = records
    if recordA is None or recordB is None:
        which = " and ".join(tag for tag, record in zip((tagA, tagB), records) if record is None)
        return Explanation(dataId, missing=f"no provenance record in {which}: cannot tell why")
    settings = compare_objects(recordA.config or {}, recordB.config or {})
    return Explanation(dataId, _compare_inputs(recordA.inputs, recordB.inputs), settings)


# -- reports -------------------------------------------------------------------------------


@attrs.frozen
class DatasetComparison:
    """The comparison of one data ID's dataset in two versions.

    Attributes
    ----------
    dataId : `dict`
        The data ID.
    differences : `tuple` of `Difference`
        Empty when the two datasets are equal within tolerance.
    """

    dataId: dict = attrs.field(converter=dict)
    differences: tuple = attrs.field(default=(), converter=_as_tuple)

    @property
    def identical(self) -> bool:
        """Whether the two datasets are equal within tolerance."""
        return not self.differences

    def to_dict(self) -> dict:
        """Return the comparison as plain data."""
        return {"dataId": _plain(self.dataId), "identical": self.identical,
                "differences": [d.to_dict() for d in self.differences]}


@attrs.frozen
class ComparisonReport:
    """Every dataset of one type compared in two versions A and B.

    Attributes
    ----------
    datasetType : `str`
        The dataset type compared.
    labelA, labelB : `str`
        Names of the two versions (their tags).
    rtol, atol : `float`
        The tolerance used.
    results : `tuple` of `DatasetComparison`
        One per data ID present in both versions.
    onlyInA, onlyInB : `tuple` of `dict`
        Data IDs whose dataset exists in one version only.
    explanations : `tuple` of `Explanation`
        Why each differing data ID differs (``compare_versions(explain=True)``).
    """

    datasetType: str
    labelA: str
    labelB: str
    rtol: float = 0.0
    atol: float = 0.0
    results: tuple = attrs.field(default=(), converter=_as_tuple)
    onlyInA: tuple = attrs.field(default=(), converter=_as_tuple)
    onlyInB: tuple = attrs.field(default=(), converter=_as_tuple)
    explanations: tuple = attrs.field(default=(), converter=_as_tuple)

    @property
    def identical(self) -> bool:
        """True when every data ID is in both versions and every pair is equal within tolerance."""
        return not self.onlyInA and not self.onlyInB and all(r.identical for r in self.results)

    @property
    def differing(self) -> list[DatasetComparison]:
        """The comparisons that found differences."""
        return [r for r in self.results if not r.identical]

    def summary(self) -> str:
        """Return the one-line verdict."""
        verdict = "IDENTICAL" if self.identical else "DIFFERENT"
        return (f"{self.datasetType}: {len(self.results)} compared, {len(self.differing)} different, "
                f"{len(self.onlyInA)} only in {self.labelA}, {len(self.onlyInB)} only in {self.labelB}"
                f" (rtol={self.rtol:g}, atol={self.atol:g}): {verdict}")

    def to_text(self) -> str:
        """Return the report as a text table followed by the summary line."""
        rows = []
        for result in self.results:
            data_id = format_data_id(result.dataId)
            if result.identical:
                rows.append((data_id, "identical", "", ""))
            for i, diff in enumerate(result.differences):
                rows.append((data_id if i == 0 else "", "different" if i == 0 else "",
                             diff.where or "(value)", diff.describe(self.labelA, self.labelB)))
        for label, data_ids in ((self.labelA, self.onlyInA), (self.labelB, self.onlyInB)):
            rows.extend((format_data_id(d), f"only in {label}", "", "") for d in data_ids)
        lines = [f"compare {self.datasetType}: {self.labelA} (A) vs {self.labelB} (B)"]
        if rows:
            lines.append(text_table(("data ID", "status", "where", "difference"), rows))
        if self.explanations:
            lines.append(self.why_text())
        lines.append(self.summary())
        return "\n".join(lines)

    def why_text(self) -> str:
        """The explanations alone: per differing data ID, the recorded inputs and settings that differ."""
        lines = [f"why {self.datasetType} differs ({self.labelA} -> {self.labelB}), from provenance:"]
        for explanation in self.explanations:
            lines.extend("  " + line for line in explanation.lines(self.labelA, self.labelB))
        if not self.explanations:
            lines.append("  nothing differs")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """Return the report as plain data."""
        return {
            "datasetType": self.datasetType, "A": self.labelA, "B": self.labelB,
            "rtol": self.rtol, "atol": self.atol, "identical": self.identical,
            "results": [r.to_dict() for r in self.results],
            "onlyInA": [_plain(d) for d in self.onlyInA],
            "onlyInB": [_plain(d) for d in self.onlyInB],
            "why": [e.to_dict() for e in self.explanations],
        }

    def to_json(self, indent: int | None = 2) -> str:
        """Return the report as strict JSON (non-finite numbers as strings)."""
        return json.dumps(_jsonable(self.to_dict()), indent=indent, allow_nan=False)


# -- tagged versions -------------------------------------------------------------------------


def _data_id_key(dataId: Mapping) -> tuple:
    return tuple(sorted(((str(k), repr(v)) for k, v in dataId.items())))


def _enumerate(butler: Any, datasetType: str, dataId: Mapping, tags: Sequence[str]) -> list[dict]:
    """Return the data IDs of ``datasetType`` matching ``dataId`` in any of the tagged versions."""
    from .dataId import DataId

    found: dict[tuple, dict] = {}
    for tag in tags:
        for ref in butler.subset(datasetType, dataId=DataId(dataId, tag=tag)):
            full = dict(dataId)
            full.update(ref.dataId)
            found.setdefault(_data_id_key(full), full)
    if not found and dataId:
        # No registry lists this dataset type: the data ID as given is the only candidate.
        found[_data_id_key(dataId)] = dict(dataId)
    return list(found.values())


def compare_versions(butler: Any, datasetType: str, dataId: Mapping | None = None,
                     tagA: str = "A", tagB: str = "B", *, rtol: float = 0.0, atol: float = 0.0,
                     progress: bool = False, ignoreKeys: Sequence[str] = (),
                     pixelsOnly: bool = False, explain: bool = False) -> ComparisonReport:
    """Compare every dataset of a type in two tagged inputs of one Butler.

    Parameters
    ----------
    butler : `butler.Butler`
        A Butler whose inputs carry the tags ``tagA`` and ``tagB``.
    datasetType : `str`
        The dataset type to compare.
    dataId : mapping, optional
        A partial data ID restricting the data IDs compared.
    tagA, tagB : `str`
        The tags of the two versions.
    rtol, atol : `float`
        Tolerance for numbers (see `compare_objects`).
    progress : `bool`
        Show a tqdm progress bar on standard error.
    ignoreKeys, pixelsOnly
        What not to compare (see `compare_objects`).
    explain : `bool`
        Say why each differing data ID differs, from the provenance records
        (`explain_difference`).

    Returns
    -------
    report : `ComparisonReport`

    Raises
    ------
    butler.errors.NoResults
        When neither version has a dataset matching the data ID.
    """
    from tqdm import tqdm

    from .dataId import DataId
    from .errors import NoResults

    dataId = dict(dataId or {})
    candidates = _enumerate(butler, datasetType, dataId, (tagA, tagB))
    results, only_a, only_b = [], [], []
    for candidate in tqdm(candidates, desc=f"compare {datasetType}", unit="dataset",
                          disable=not progress, file=sys.stderr):
        in_a = butler.datasetExists(datasetType, DataId(candidate, tag=tagA))
        in_b = butler.datasetExists(datasetType, DataId(candidate, tag=tagB))
        if in_a and in_b:
            obj_a = butler.get(datasetType, DataId(candidate, tag=tagA))
            obj_b = butler.get(datasetType, DataId(candidate, tag=tagB))
            differences = compare_objects(obj_a, obj_b, rtol=rtol, atol=atol, ignoreKeys=ignoreKeys,
                                          pixelsOnly=pixelsOnly)
            _log.debug("%s %s: %d differences", datasetType, candidate, len(differences))
            results.append(DatasetComparison(candidate, differences))
        elif in_a:
            only_a.append(candidate)
        elif in_b:
            only_b.append(candidate)
    if not (results or only_a or only_b):
        raise NoResults(f"no dataset in {tagA!r} or {tagB!r} matches", datasetType, dataId)
    explanations = [explain_difference(butler, datasetType, result.dataId, tagA, tagB)
                    for result in results if not result.identical] if explain else []
    return ComparisonReport(datasetType, tagA, tagB, rtol, atol, results, only_a, only_b, explanations)
