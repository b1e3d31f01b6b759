"""Read parameters (``get(..., parameters=...)``): their checks, and their meaning for objects in memory.

A formatter declares the parameters it takes (`Formatter.acceptedParameters`)
and reads only what they select from the file: ``bbox`` (with ``imageOrigin``)
a section of an image, ``columns`` and ``rows`` a part of a table. The same
selection applied to an object already in memory (`select`) serves datasets
that no formatter reads (a mapper's bypass assembles them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..errors import UnknownParameterError

__all__ = ["IMAGE_PARAMETERS", "TABLE_PARAMETERS", "check_names", "box_of", "columns_of", "rows_of", "select"]

#: what an image read takes: a box (x0, y0, width, height), counted from the image origin (``"PARENT"``,
#: the default, as ``X_sub`` datasets do) or from the first pixel (``"LOCAL"``)
IMAGE_PARAMETERS = frozenset({"bbox", "imageOrigin"})
#: what a table read takes: column names, and a slice (or sequence of indices) of rows
TABLE_PARAMETERS = frozenset({"columns", "rows"})


def check_names(parameters: Mapping[str, Any], accepted: Iterable[str], reader: str) -> None:
    """Refuse a parameter ``reader`` does not take.

    Raises
    ------
    UnknownParameterError
        Naming the parameters refused and those accepted.
    """
    accepted = frozenset(accepted)
    unknown = sorted(set(parameters) - accepted)
    if unknown:
        takes = ", ".join(sorted(accepted)) if accepted else "no parameters"
        raise UnknownParameterError(f"{reader} does not take the parameter{'s' if len(unknown) > 1 else ''} "
                                    f"{', '.join(map(repr, unknown))}; it accepts: {takes}")


def box_of(parameters: Mapping[str, Any]) -> dict[str, Any]:
    """The ``llcX, llcY, width, height`` (and ``imageOrigin``) of a ``bbox`` parameter, as a ``_sub`` location has.

    Raises
    ------
    UnknownParameterError
        ``bbox`` is not four integers, or ``imageOrigin`` neither ``"PARENT"`` nor ``"LOCAL"``.
    """
    if "bbox" not in parameters:
        return {}
    bbox = parameters["bbox"]
    try:
        x0, y0, width, height = (int(value) for value in bbox)
    except (TypeError, ValueError):
        raise UnknownParameterError(f"bbox must be (x0, y0, width, height) in pixels; got {bbox!r}") from None
    box: dict[str, Any] = {"llcX": x0, "llcY": y0, "width": width, "height": height}
    origin = parameters.get("imageOrigin", "PARENT")
    if origin not in ("PARENT", "LOCAL"):
        raise UnknownParameterError(f"imageOrigin must be 'PARENT' or 'LOCAL'; got {origin!r}")
    box["imageOrigin"] = origin
    return box


def columns_of(parameters: Mapping[str, Any], available: Iterable[str], source: str) -> list[str] | None:
    """The ``columns`` asked for (None: all), each checked against the table's.

    Raises
    ------
    UnknownParameterError
        A column the table does not have; the message lists the table's columns.
    """
    columns = parameters.get("columns")
    if columns is None:
        return None
    names = [columns] if isinstance(columns, str) else list(columns)
    available = list(available)
    missing = [name for name in names if name not in available]
    if missing:
        raise UnknownParameterError(f"{source} has no column {', '.join(map(repr, missing))}; its columns: "
                                    f"{', '.join(available)}")
    return names


def rows_of(parameters: Mapping[str, Any]) -> Any:
    """The ``rows`` asked for: a slice, or a list of row indices (None: all).

    Raises
    ------
    UnknownParameterError
        ``rows`` is neither a slice nor a sequence of integers.
    """
    rows = parameters.get("rows")
    if rows is None or isinstance(rows, slice):
        return rows
    try:
        return [int(row) for row in rows]
    except (TypeError, ValueError):
        raise UnknownParameterError(f"rows must be a slice or a sequence of row numbers; got {rows!r}") from None


def select(obj: Any, parameters: Mapping[str, Any], source: str) -> Any:
    """Apply read parameters to an object in memory (an image or a table), for datasets no formatter reads.

    A ``bbox`` counted from the ``"PARENT"`` origin is shifted by the
    ``LTV1/LTV2`` of an image's metadata, as a formatter's section read is.

    Raises
    ------
    UnknownParameterError
        A parameter the object's kind does not take, or a bad value.
    """
    import numpy as np
    from astropy.nddata import NDData, NDSlicingMixin
    from astropy.table import Table

    if isinstance(obj, Table):
        check_names(parameters, TABLE_PARAMETERS, f"a table ({source})")
        names = columns_of(parameters, obj.colnames, source)
        rows = rows_of(parameters)
        picked = obj if names is None else obj[names]
        return picked if rows is None else picked[rows]
    if isinstance(obj, (NDSlicingMixin, np.ndarray)) and obj.ndim == 2:
        check_names(parameters, IMAGE_PARAMETERS, f"an image ({source})")
        box = box_of(parameters)
        if not box:
            return obj
        x, y = box["llcX"], box["llcY"]
        if box["imageOrigin"] == "PARENT" and isinstance(obj, NDData):
            x += int(obj.meta.get("LTV1", 0))
            y += int(obj.meta.get("LTV2", 0))
        height, width = obj.shape
        if x < 0 or y < 0 or x + box["width"] > width or y + box["height"] > height:
            raise UnknownParameterError(f"bbox {parameters['bbox']!r} is not inside the {width}x{height} image "
                                        f"({source})")
        return obj[y:y + box["height"], x:x + box["width"]]
    check_names(parameters, (), f"a {type(obj).__qualname__} ({source})")
    return obj
