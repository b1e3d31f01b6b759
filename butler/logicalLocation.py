"""`LogicalLocation`: a location string with ``%(key)`` substitutions (Gen2 API)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, ClassVar

from .errors import TemplateError

__all__ = ["LogicalLocation"]

_log = logging.getLogger(__name__)

#: ``%(key)`` or ``%<printf spec>(key)``, e.g. ``%04d(visit)``
_FIELD = re.compile(r"%([-+ #0]*\d*(?:\.\d+)?[diouxXeEfFgGcrs]?)\((\w+)\)")


class LogicalLocation:
    """A location whose ``%(key)`` and ``%<spec>(key)`` fields are filled on demand.

    ``%(key)`` inserts the value as text; ``%04d(key)`` formats it with the
    printf spec ``%04d``. Values come from the global location map first
    (`setLocationMap`), then from ``additionalData``.

    Parameters
    ----------
    locString : `str`
        The location with fields.
    additionalData : mapping, optional
        Values for the fields that the global map lacks.
    """

    _locationMap: ClassVar[dict[str, Any]] = {}

    def __init__(self, locString: str, additionalData: Mapping[str, Any] | None = None):
        self._template = locString
        self._additionalData = additionalData if additionalData is not None else {}

    def __repr__(self) -> str:
        return f"LogicalLocation({self._template!r})"

    @classmethod
    def setLocationMap(cls, locationMap: Mapping[str, Any] | None) -> None:
        """Set the global values used before any instance's ``additionalData`` (`None` clears it)."""
        cls._locationMap = dict(locationMap) if locationMap is not None else {}

    def _value(self, key: str) -> Any:
        for source in (self._locationMap, self._additionalData):
            if key in source:
                return source[key]
        raise TemplateError(f"no value for {key!r} in location {self._template!r} "
                            "(neither in the location map nor in additionalData)")

    def locString(self) -> str:
        """Return the location with every field substituted.

        Raises
        ------
        butler.errors.TemplateError
            A `RuntimeError`: a field has no value, or its value does not fit the spec.
        """
        def substitute(match: re.Match) -> str:
            spec, key = match.groups()
            value = self._value(key)
            if not spec:
                return str(value)
            try:
                return f"%{spec}" % value
            except (TypeError, ValueError) as exc:
                raise TemplateError(f"cannot format {key}={value!r} with %{spec} in "
                                    f"{self._template!r}: {exc}") from exc

        result = _FIELD.sub(substitute, self._template)
        _log.debug("%r -> %s", self, result)
        return result
