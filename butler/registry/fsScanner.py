"""Filename templates: the project's one template-key parser and `FsScanner`.

Templates use Gen2 ``%``-formatting (``raw/v%(visit)d_f%(filter)s.fits``); a
trailing ``[...]`` names an HDU and is not part of the file name.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import re
from collections.abc import Callable
from typing import Any

__all__ = ["TEMPLATE_FIELD", "FsScanner", "template_fields", "strip_hdu"]

_log = logging.getLogger(__name__)

#: one ``%(name)<flags width precision>conversion`` field of a template
TEMPLATE_FIELD = re.compile(r"%\((\w+)\).*?([diouxXeEfFgGcrs])")
_WIDTH = re.compile(r"\)[-+ #0]*(\d+)")

_TYPES: dict[str, type] = {**dict.fromkeys("diouxX", int), **dict.fromkeys("eEfFgG", float),
                           **dict.fromkeys("crs", str)}

#: conversion character -> (regular expression of a value, parser)
_PATTERNS: dict[str, tuple[str, Callable[[str], Any]]] = {
    **dict.fromkeys("diu", (r"[+-]?\d+", int)),
    "o": (r"[+-]?[0-7]+", lambda s: int(s, 8)),
    **dict.fromkeys("xX", (r"[+-]?[0-9a-fA-F]+", lambda s: int(s, 16))),
    **dict.fromkeys("eEfFgG", (r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", float)),
    **dict.fromkeys("crs", (r"[^/]+", str)),
}


def template_fields(template: str) -> dict[str, type]:
    """Return the data-ID keys of a template and their types, in order of appearance.

    ``diouxX`` conversions give `int`, ``eEfFgG`` `float`, ``crs`` `str`.
    The HDU part (``[%(channel)d]``) counts too.

    Parameters
    ----------
    template : `str`
        A ``%``-style template.
    """
    return dict(_template_fields(template))


@functools.lru_cache(maxsize=4096)
def _template_fields(template: str) -> tuple[tuple[str, type], ...]:
    """`template_fields`, parsed once per template and process (a tuple: callers get their own dict)."""
    fields: dict[str, type] = {}
    for match in TEMPLATE_FIELD.finditer(template):
        fields.setdefault(match.group(1), _TYPES[match.group(2)])
    return tuple(fields.items())


def strip_hdu(template: str) -> str:
    """Return the file part of a template (without a trailing ``[...]``)."""
    if template.endswith("]") and "[" in template:
        return template[:template.rindex("[")]
    return template


class FsScanner:
    """Find the files under a directory that match a template, and the values they encode.

    Parameters
    ----------
    template : `str`
        A ``%``-style template, relative to the directory scanned. A trailing
        ``[...]`` HDU selector is ignored. A string field with a width
        (``%(state)1s``) matches exactly that many characters; other string
        fields do not span directories.
    """

    def __init__(self, template: str):
        self.template = template
        path = strip_hdu(template)
        glob_parts: list[str] = []
        regex_parts: list[str] = []
        #: regex group name -> (field name, parser)
        self._groups: dict[str, tuple[str, Callable[[str], Any]]] = {}
        last = 0
        for i, match in enumerate(TEMPLATE_FIELD.finditer(path)):
            literal = path[last:match.start()]
            glob_parts.append(glob.escape(literal) + "*")
            pattern, parser = _PATTERNS[match.group(2)]
            width = _WIDTH.match(match.group(0), len(match.group(1)) + 2)
            if match.group(2) in "crs" and width:
                pattern = f"[^/]{{{int(width.group(1))}}}"
            regex_parts.append(f"{re.escape(literal)}(?P<g{i}>{pattern})")
            self._groups[f"g{i}"] = (match.group(1), parser)
            last = match.end()
        glob_parts.append(glob.escape(path[last:]))
        regex_parts.append(re.escape(path[last:]))
        self.globString = "".join(glob_parts)
        self._regex = re.compile("".join(regex_parts))

    def getFields(self) -> list[str]:
        """The field names of the template's file part, in order of appearance."""
        return list(dict.fromkeys(name for name, _ in self._groups.values()))

    def match(self, path: str) -> dict[str, Any] | None:
        """Return the field values encoded in a relative path, or None when it does not match.

        A field that appears several times must have the same value each time.
        """
        found = self._regex.fullmatch(path)
        if found is None:
            return None
        values: dict[str, Any] = {}
        for group, text in found.groupdict().items():
            name, parser = self._groups[group]
            value = parser(text)
            if values.setdefault(name, value) != value:
                return None
        return values

    def processPath(self, location: str | os.PathLike) -> dict[str, dict[str, Any]]:
        """Scan ``location`` for files matching the template.

        Returns
        -------
        found : `dict`
            ``{relative path: {field: value}}``, e.g.
            ``{'raw/raw_v1_fg.fits.gz': {'visit': 1, 'filter': 'g'}}``.
        """
        result: dict[str, dict[str, Any]] = {}
        for path in sorted(glob.glob(self.globString, root_dir=os.fspath(location))):
            values = self.match(path)
            if values is None:
                _log.debug("%s: %s does not match template %r", location, path, self.template)
            else:
                result[path] = values
        return result
