"""`ConfigStorage`: configuration objects.

An object with a ``save(path)`` method is written with it, and a type with a
``load(path)`` method is read as ``obj = pythonType(); obj.load(path)`` (the
pex_config protocol). Anything else is a mapping stored as safe YAML.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping

from ..errors import UnwritableObjectError
from ..utils import doImport
from .base import Formatter
from .yaml import dump_yaml_file, load_yaml_file

__all__ = ["ConfigStorage"]

_log = logging.getLogger(__name__)


def _loadable_type(pythonType: Any) -> type | None:
    """Return ``pythonType`` as a class with a ``load`` method, or None."""
    if isinstance(pythonType, str):
        try:
            pythonType = doImport(pythonType)
        except ImportError:
            _log.debug("config type %r cannot be imported; reading the file as YAML", pythonType)
            return None
    if isinstance(pythonType, type) and callable(getattr(pythonType, "load", None)):
        return pythonType
    return None


class ConfigStorage(Formatter):
    """Configuration files: the object's own ``save``/``load``, else a YAML mapping."""

    storageName = "ConfigStorage"
    extensions = (".py", ".yaml")

    def read_file(self, path: str, *, hdu: int | None, pythonType: Any, additionalData: dict) -> Any:
        cls = _loadable_type(pythonType)
        if cls is None:
            return load_yaml_file(path)
        config = cls()
        config.load(path)
        return config

    def write_file(self, obj: Any, path: str, *, hdu: int | None, additionalData: dict) -> None:
        if callable(getattr(obj, "save", None)):
            obj.save(path)
            return
        if not isinstance(obj, Mapping):
            raise UnwritableObjectError(f"ConfigStorage writes objects with a save(path) method or mappings, "
                            f"not {type(obj).__name__}")
        dump_yaml_file(dict(obj), path)
