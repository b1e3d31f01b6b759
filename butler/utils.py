"""Small helpers of the Gen2 API: `sequencify`, `iterify`, `doImport`."""

from __future__ import annotations

import functools
import importlib
import logging
from typing import Any

__all__ = ["sequencify", "iterify", "as_list", "doImport", "LEGACY_PREFIXES"]

_log = logging.getLogger(__name__)

#: Legacy module prefixes of the Gen2 stack and the modules of this project that replace them.
LEGACY_PREFIXES = {
    "lsst.daf.persistence.": "butler.",
}

ENTRY_POINT_GROUP = "butler.mappers"


def sequencify(x: Any) -> Any:
    """Return ``x`` as a sequence.

    A tuple, list or set comes back unchanged; a dict becomes the sorted tuple
    of its keys; anything else (a string included) becomes ``(x,)``.
    """
    if isinstance(x, (tuple, list, set)):
        return x
    if isinstance(x, dict):
        return tuple(sorted(x.keys()))
    return (x,)


def iterify(x: Any) -> Any:
    """Return ``x`` itself if it is iterable (strings excepted), else ``[x]``."""
    if isinstance(x, str):
        return [x]
    try:
        iter(x)
    except TypeError:
        return [x]
    return x


def as_list(value: Any) -> list:
    """Return ``value`` as a new list: None is empty, a list or tuple is copied, anything else is wrapped."""
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [value]


@functools.lru_cache(maxsize=1)
def _entry_point_classes() -> dict[str, Any]:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}


def _import_dotted(name: str) -> Any:
    module_name, _, attr = name.rpartition(".")
    if not module_name:
        return importlib.import_module(name)
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        # "pkg.module.Class.method" or a nested attribute: walk up one more level.
        parent = _import_dotted(module_name)
        return getattr(parent, attr)
    try:
        return getattr(module, attr)
    except AttributeError:
        return importlib.import_module(name)


def doImport(importable: str) -> Any:
    """Import and return the object named by a dotted string.

    Legacy Gen2 names resolve too: ``lsst.daf.persistence.X`` becomes
    ``butler.X``, and camera mapper names (``lsst.obs.lsst.LsstCamMapper``, ...)
    resolve through the ``butler.mappers`` entry-point group, which the
    project's own cameras and third-party packages extend.

    Parameters
    ----------
    importable : `str`
        A dotted name such as ``"butler.test.EmptyTestMapper"``.

    Raises
    ------
    ImportError
        When the name cannot be resolved; the message names it.
    TypeError
        When ``importable`` is not a string.
    """
    if not isinstance(importable, str):
        raise TypeError(f"doImport needs a dotted string, got {importable!r}")
    name = importable.strip()
    for legacy, modern in LEGACY_PREFIXES.items():
        if name.startswith(legacy):
            name = modern + name[len(legacy):]
            break
    entry_points = _entry_point_classes()
    if name in entry_points:
        return entry_points[name].load()
    try:
        return _import_dotted(name)
    except (ImportError, AttributeError) as exc:
        raise ImportError(f"cannot import {importable!r}: {exc}") from exc
